//! Command-line arguments, in two stages (as ripgrep does): clap reads the raw flags, then
//! [`PlanArgs::resolve`] turns them, with the estate file, into a validated operation, so a
//! bad flag or a reference the estate does not define fails before anything runs.

use std::path::{Path, PathBuf};

use bulwark_model::{AccountId, Estate, InstanceId, KeyRef, Region};
use bulwark_plan::{Operation, Placement, RestoreSource};
use clap::{Args, Parser, Subcommand, ValueEnum};

/// Bulwark: backups of EC2 instances across accounts and regions.
#[derive(Parser)]
#[command(name = "bulwark", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// How log events are written on standard error: text for a person, json for a log
    /// collector (one object per line, with the session id, step, account and region).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// The least severe log events written: error, warn, info, debug or trace, or a filter
    /// per crate (`warn,bulwark_engine=debug`).
    #[arg(long, global = true, value_name = "LEVEL", default_value = "warn")]
    pub log_level: String,
}

/// How log events are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Lines for a person (colored on a terminal).
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Subcommand)]
pub enum Command {
    /// Show what an operation will do: every API call, who makes it, which KMS permissions it
    /// needs, and the cleanup; or why AWS would refuse it.
    Plan(Box<PlanCommand>),
    /// Print IAM and KMS policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// The backup repository.
    #[command(subcommand)]
    Repo(crate::image::RepoCommand),
    /// Image-level backups of files and block devices: backup, list, restore, verify, forget,
    /// prune.
    #[command(subcommand)]
    Image(crate::image::ImageCommand),
    /// Browse and fetch files of a backup's restore point or a snapshot, without restoring a
    /// volume: ls, get.
    #[command(subcommand)]
    Files(crate::files::FilesCommand),
    /// Run an operation as a session on the embedded cloud: snapshots, backups with workers,
    /// replicas, restores. Unfinished sessions' leftovers are removed first.
    Run(RunCommand),
    /// Preflight of every role and key the estate's plans use: worker roles in an instance
    /// profile, trusted by EC2, assumable by the appliance, holding their permissions; key
    /// policies allowing what the plans need. Names each missing piece with its fix.
    Check {
        /// The estate file.
        #[arg(long, value_name = "FILE")]
        estate: PathBuf,
        #[command(flatten)]
        cloud: CloudArgs,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Remove what unfinished sessions left behind (after a crash of the appliance).
    Recover {
        /// The estate file the sessions ran on.
        #[arg(long, value_name = "FILE")]
        estate: PathBuf,
        #[command(flatten)]
        cloud: CloudArgs,
    },
    /// The embedded cloud: make an estate file real in it, or show what it holds.
    #[command(subcommand)]
    Embedded(EmbeddedCommand),
    /// The worker program, which a worker instance's user data runs at boot: takes the task
    /// from the session queue, moves the data between the instance's attached volumes and the
    /// repository, and reports to the appliance. Runs only on an EC2 worker instance.
    Worker(crate::worker::WorkerCommand),
    /// The appliance: discovers the estate, runs policies on their schedules, keeps and
    /// expires restore points, records every session, and answers the REST API.
    Serve(crate::serve::ServeCommand),
    /// The appliance's API tokens.
    #[command(subcommand)]
    Token(crate::serve::TokenCommand),
    /// Run every documented scenario end to end on an embedded copy of the example estate,
    /// check the restored bytes, and show that nothing was left behind.
    Demo {
        /// Keep the embedded cloud here instead of a temporary directory.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Data written into each protected volume, in MiB.
        #[arg(long, value_name = "MIB", default_value_t = 600, value_parser = clap::value_parser!(u32).range(1..=65536))]
        data_mib: u32,
    },
}

/// Where the embedded cloud keeps its world.
#[derive(Args)]
pub struct DataDir {
    /// The embedded cloud's data directory (made by `bulwark embedded init`).
    #[arg(
        long,
        value_name = "DIR",
        env = "BULWARK_DATA_DIR",
        default_value = "bulwark-data"
    )]
    pub data_dir: PathBuf,
}

/// Which cloud sessions run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CloudKind {
    /// The embedded cloud in the data directory.
    Embedded,
    /// AWS, through the AWS SDK (credentials from the standard chain).
    Aws,
}

/// Where sessions run: the embedded cloud (its data directory) or AWS.
#[derive(Args, Clone)]
pub struct CloudArgs {
    /// The cloud: the embedded one (default), or AWS.
    #[arg(
        long,
        value_enum,
        env = "BULWARK_CLOUD",
        default_value = "embedded",
        global = true
    )]
    pub cloud: CloudKind,
    /// With --cloud aws: an AWS-compatible endpoint for every service (like moto's).
    #[arg(long, value_name = "URL", env = "BULWARK_AWS_ENDPOINT", global = true)]
    pub endpoint_url: Option<String>,
    /// With --cloud aws: the image workers boot in a region, as REGION=AMI (repeat per region).
    #[arg(long, value_name = "REGION=AMI", global = true)]
    pub worker_image: Vec<String>,
    /// With --cloud aws: the file holding the repository's key-encryption key (64 hex digits),
    /// handed to workers with their task.
    #[arg(long, value_name = "FILE", env = "BULWARK_KEY_FILE", global = true)]
    pub key_file: Option<PathBuf>,
    /// The data directory: the embedded cloud's world, and the appliance's session journals.
    #[arg(
        long,
        value_name = "DIR",
        env = "BULWARK_DATA_DIR",
        default_value = "bulwark-data",
        global = true
    )]
    pub data_dir: PathBuf,
}

#[derive(Args)]
pub struct RunCommand {
    #[command(subcommand)]
    pub operation: PlanArgs,
    #[command(flatten)]
    pub cloud: CloudArgs,
}

#[derive(Subcommand)]
pub enum EmbeddedCommand {
    /// Create the estate of an estate file in a new embedded cloud: accounts, roles with the
    /// least-privilege policies of every operation, keys and key policies, instances with
    /// generated data, and the repository.
    Init {
        /// The estate file.
        #[arg(long, value_name = "FILE")]
        estate: PathBuf,
        #[command(flatten)]
        data: DataDir,
        /// Data written into each protected volume, in MiB (default: the estate's
        /// `[embedded] data_mib`, else 64).
        #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u32).range(0..=65536))]
        data_mib: Option<u32>,
    },
    /// List every resource of the embedded cloud, one per line.
    Status {
        #[command(flatten)]
        data: DataDir,
    },
    /// Write a file's bytes into an embedded volume at a byte offset, as a program on its
    /// instance would (to see what the next snapshot or backup picks up).
    Write {
        #[command(flatten)]
        data: DataDir,
        /// The volume.
        #[arg(long, value_name = "VOL-ID")]
        volume: bulwark_model::VolumeId,
        /// Where in the volume, in bytes.
        #[arg(long, value_name = "BYTES", default_value_t = 0)]
        offset: u64,
        /// The bytes to write.
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
    },
}

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// The worker role of production accounts: its permissions, or with --trust its trust
    /// policy, as JSON.
    WorkerRole {
        /// Print the trust policy instead of the permissions.
        #[arg(long)]
        trust: bool,
    },
    /// The least-privilege IAM policy of each role a plan uses, with its trust policy, and
    /// the statements each customer managed key's policy needs.
    Plan(Box<PlanCommand>),
    /// The read-only permissions the appliance's discovery needs on each account's backup role,
    /// beside those of its plans, as JSON.
    Discovery,
    /// The permissions the appliance's repository maintenance (forgetting expired backups,
    /// prune, verify) needs on the repository role, beside those of its plans, as JSON.
    Maintenance {
        /// The estate file (its `[repository]`).
        #[arg(long, value_name = "FILE")]
        estate: PathBuf,
    },
    /// A CloudFormation template that creates a production account's backup, restore and
    /// worker roles (trust in the appliance, the least-privilege policies of every operation of
    /// the estate, the worker instance profile), ready for a StackSet over many accounts.
    Cloudformation {
        /// The estate file.
        #[arg(long, value_name = "FILE")]
        estate: PathBuf,
        /// The production account whose roles the template makes.
        #[arg(long, value_name = "ACCOUNT")]
        account: String,
    },
}

#[derive(Args)]
pub struct PlanCommand {
    #[command(subcommand)]
    pub operation: PlanArgs,
}

/// Flags every plan takes.
#[derive(Args)]
pub struct Common {
    /// The estate file (TOML; see docs/estate.md).
    #[arg(long, value_name = "FILE")]
    pub estate: PathBuf,
    /// The instance to process.
    #[arg(long, value_name = "ID")]
    pub instance: InstanceId,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum PlanArgs {
    /// Cloud-native snapshots of an instance.
    Snapshot {
        #[command(flatten)]
        common: Common,
    },
    /// An image-level backup into the repository.
    Backup {
        #[command(flatten)]
        common: Common,
        /// Where workers run (default: backup-account), or none (the EBS direct APIs).
        #[arg(long, value_enum)]
        workers: Option<Workers>,
        /// Index the files of each restore point (paths, sizes and times), for `bulwark files
        /// find`: the new points are read back as the backup ends.
        #[arg(long)]
        file_index: bool,
    },
    /// A snapshot replica in another region and/or account.
    Replicate {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        target: Target,
    },
    /// A restore of the whole instance.
    Restore {
        #[command(flatten)]
        common: Common,
        /// What to restore from.
        #[arg(long, value_enum)]
        from: From,
        #[command(flatten)]
        target: Target,
        /// Where workers run, for restores from backups (default: backup-account), or none
        /// (the EBS direct APIs).
        #[arg(long, value_enum)]
        workers: Option<Workers>,
        /// Restore only this volume of the instance, left as a volume (no instance is
        /// launched); repeat for several.
        #[arg(long = "volume", value_name = "VOL-ID")]
        volumes: Vec<bulwark_model::VolumeId>,
        /// With --volume: the availability zone of the new volumes (default: the region's
        /// first, or the worker's).
        #[arg(long, value_name = "ZONE", requires = "volumes", conflicts_with = "attach_to")]
        zone: Option<String>,
        /// With --volume: attach the restored volumes to this instance of the target account
        /// and region (they are made in its zone).
        #[arg(long, value_name = "INSTANCE-ID", requires = "volumes", requires = "devices")]
        attach_to: Option<bulwark_model::InstanceId>,
        /// With --attach-to: the device of each volume, in the order of --volume (like
        /// /dev/sdf); repeat per volume.
        #[arg(long = "device", value_name = "DEVICE", requires = "attach_to")]
        devices: Vec<String>,
        /// With --volume: the type of the new volumes (gp2, gp3, io1, io2, st1, sc1,
        /// standard; default gp3).
        #[arg(long, value_name = "TYPE", requires = "volumes")]
        volume_type: Option<bulwark_model::VolumeType>,
        /// With --volume: their provisioned IOPS (gp3, io1, io2).
        #[arg(long, value_name = "N", requires = "volumes")]
        iops: Option<u32>,
        /// With --volume: their throughput in MiB/s (gp3).
        #[arg(long, value_name = "MIB/S", requires = "volumes")]
        throughput: Option<u32>,
        /// The restored instance's subnet (default: the original's in its own account and
        /// region, else the target's default VPC).
        #[arg(long, value_name = "SUBNET-ID", conflicts_with = "volumes")]
        subnet: Option<String>,
        /// With --subnet: a security group of the restored instance; repeat for several
        /// (default: the VPC's default group).
        #[arg(long = "security-group", value_name = "SG-ID", requires = "subnet")]
        security_groups: Vec<String>,
        /// Leave the restored instance stopped.
        #[arg(long, conflicts_with = "volumes")]
        stopped: bool,
    },
}

/// Where a replica or restore goes.
#[derive(Args)]
pub struct Target {
    /// The target account.
    #[arg(long, value_name = "ACCOUNT")]
    pub to_account: AccountId,
    /// The target region.
    #[arg(long, value_name = "REGION")]
    pub to_region: Region,
    /// The KMS key of the result: a key ARN in the target region, or aws/ebs. Default: the
    /// default EBS key of the target account and region.
    #[arg(long, value_name = "ARN")]
    pub target_key: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Workers {
    /// Workers in the backup account, with temporary roles.
    BackupAccount,
    /// Workers in the production account, with its worker role.
    ProductionAccount,
    /// No workers: the appliance reads or writes snapshots itself through the EBS direct
    /// APIs, in the instance's (or the restore target's) account.
    None,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum From {
    /// The latest cloud-native snapshots.
    Snapshot,
    /// The latest image-level backup.
    Backup,
}

/// A wrong argument or estate: the user must change what they typed (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("cannot read the estate file {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error(transparent)]
    Estate(#[from] bulwark_model::EstateError),
    #[error("{file}: {what} is not defined in this file; {fix}")]
    Undefined { file: String, what: String, fix: String },
    #[error("--target-key: {0}")]
    TargetKey(bulwark_model::InvalidId),
    #[error(
        "--workers applies to backups and restores from backups; a restore from snapshots uses no workers"
    )]
    WorkersWithoutWorkers,
}

/// A resolved plan request: the estate and the operation.
pub struct Resolved {
    pub estate: Estate,
    pub operation: Operation,
}

impl PlanArgs {
    fn common(&self) -> &Common {
        match self {
            PlanArgs::Snapshot { common }
            | PlanArgs::Backup { common, .. }
            | PlanArgs::Replicate { common, .. }
            | PlanArgs::Restore { common, .. } => common,
        }
    }

    /// Whether the output should be JSON; known before the estate is read, so that errors
    /// reading it are reported in the right form.
    pub fn json(&self) -> bool {
        self.common().json
    }

    /// Reads the estate and checks every reference the arguments make to it.
    pub fn resolve(&self) -> Result<Resolved, InputError> {
        let common = self.common();
        let estate = read_estate(&common.estate)?;
        let file = common.estate.display().to_string();
        if estate.instance(&common.instance).is_none() {
            let known: Vec<String> = estate.instances.iter().map(|i| i.id.to_string()).collect();
            return Err(InputError::Undefined {
                file,
                what: format!("instance {}", common.instance),
                fix: format!("the instances it defines are: {}", list_or_none(&known)),
            });
        }
        let instance = common.instance.clone();
        let operation = match self {
            PlanArgs::Snapshot { .. } => Operation::Snapshot { instance },
            PlanArgs::Backup {
                workers, file_index, ..
            } => Operation::Backup {
                instance,
                workers: workers.map(placement),
                file_index: *file_index,
            },
            PlanArgs::Replicate { target, .. } => {
                let target_key = target.resolve(&estate, &file)?;
                Operation::Replicate {
                    instance,
                    to_account: target.to_account.clone(),
                    to_region: target.to_region.clone(),
                    target_key,
                }
            }
            PlanArgs::Restore {
                from,
                target,
                workers,
                volumes,
                zone,
                attach_to,
                devices,
                volume_type,
                iops,
                throughput,
                subnet,
                security_groups,
                stopped,
                ..
            } => {
                let from = match from {
                    From::Snapshot => RestoreSource::Snapshot,
                    From::Backup => RestoreSource::Backup,
                };
                if from == RestoreSource::Snapshot && workers.is_some() {
                    return Err(InputError::WorkersWithoutWorkers);
                }
                let target_key = target.resolve(&estate, &file)?;
                if volumes.is_empty() {
                    Operation::Restore {
                        instance,
                        from,
                        to_account: target.to_account.clone(),
                        to_region: target.to_region.clone(),
                        target_key,
                        workers: workers.map(placement),
                        launch: bulwark_plan::Launch {
                            subnet: subnet.clone(),
                            security_groups: security_groups.clone(),
                            stopped: *stopped,
                        },
                    }
                } else {
                    Operation::RestoreVolumes {
                        instance,
                        volumes: volumes.clone(),
                        from,
                        to_account: target.to_account.clone(),
                        to_region: target.to_region.clone(),
                        target_key,
                        workers: workers.map(placement),
                        zone: zone.clone(),
                        attach_to: attach_to.clone(),
                        devices: devices.clone(),
                        volume_type: *volume_type,
                        iops: *iops,
                        throughput: *throughput,
                    }
                }
            }
        };
        Ok(Resolved { estate, operation })
    }
}

impl Target {
    /// Checks the target account is defined and parses the key in its context.
    fn resolve(&self, estate: &Estate, file: &str) -> Result<Option<KeyRef>, InputError> {
        if estate.account(&self.to_account).is_none() {
            let known: Vec<String> = estate.accounts.keys().map(ToString::to_string).collect();
            return Err(InputError::Undefined {
                file: file.to_owned(),
                what: format!("account {}", self.to_account),
                fix: format!(
                    "add an [[account]] with id = \"{}\" and its roles (the accounts it defines are: {})",
                    self.to_account,
                    list_or_none(&known)
                ),
            });
        }
        self.target_key
            .as_deref()
            .map(|k| KeyRef::parse_in(k, &self.to_account, &self.to_region))
            .transpose()
            .map_err(InputError::TargetKey)
    }
}

fn placement(w: Workers) -> Placement {
    match w {
        Workers::BackupAccount => Placement::BackupAccount,
        Workers::ProductionAccount => Placement::ProductionAccount,
        Workers::None => Placement::NoWorker,
    }
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

/// Reads and validates an estate file.
pub fn read_estate(path: &Path) -> Result<Estate, InputError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| InputError::Read {
        path: name.clone(),
        error: source,
    })?;
    Ok(Estate::parse(&name, &text)?)
}

/// Reads a file holding a secret (a passphrase, a key, a webhook secret), refused when others
/// than its owner may read it: a secret readable by the group is not one. The mode is checked
/// on the file opened, so that the file checked is the file read. What is read is wiped from
/// memory when dropped.
pub fn read_secret_file(path: &Path, what: &str) -> anyhow::Result<zeroize::Zeroizing<Vec<u8>>> {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    let shown = path.display();
    let reading = |e: std::io::Error| anyhow::anyhow!("reading the {what} {shown}: {e}");
    let mut file = std::fs::File::open(path).map_err(reading)?;
    let mode = file.metadata().map_err(reading)?.permissions().mode();
    if mode & 0o077 != 0 {
        anyhow::bail!(
            "the {what} {shown} may be read by others than its owner (mode {:04o}); run `chmod 600 {shown}`",
            mode & 0o7777
        );
    }
    let mut secret = zeroize::Zeroizing::new(Vec::new());
    file.read_to_end(&mut secret).map_err(reading)?;
    Ok(secret)
}
