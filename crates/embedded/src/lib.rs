//! An estate file made real in the embedded cloud. From the same estate the planner reads, it
//! creates what an AWS administrator would have set up before running Bulwark: the accounts;
//! every role the plans use, with exactly the least-privilege identity and trust policies
//! `bulwark policy plan` prints; the customer managed keys, with the key-policy statements the
//! plans need; the default EBS keys and encryption-by-default switches; the protected
//! instances, with volumes holding realistic data; the repository's bucket and repository.
//! Then it installs the worker program as the machine image instances boot.
//!
//! The estate file's `[embedded]` section replaces any generated key, identity or trust policy
//! with the one given, so an estate's real policies can be tried here first.
//!
//! It is what the demo, the end-to-end tests and `bulwark run` run on. It must not be used
//! with the AWS cloud: it writes no real IAM policy.

mod data;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bulwark_cloud::Credentials;
use bulwark_engine::{Engine, FileStore};
use bulwark_model::iam::{PolicyDocument, Principals, Statement};
use bulwark_model::{AccountId, Estate, KeyRef, Region, RoleArn};
use bulwark_plan::{Operation, Placement, Plan, RestoreSource};
use bulwark_repo::{Repository, Secret};
use bulwark_sim::{Sim, SimError, SimVolume};

pub use data::fill;

/// A failure to build or open the embedded estate.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    /// The embedded cloud failed.
    #[error(transparent)]
    Sim(#[from] SimError),
    /// A cloud call failed.
    #[error(transparent)]
    Cloud(#[from] bulwark_cloud::CloudError),
    /// The repository could not be created.
    #[error("creating the repository: {0}")]
    Repository(bulwark_repo::RepoError),
    /// A file of the data directory.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        error: std::io::Error,
    },
}

/// The embedded estate: the cloud, and who the appliance is in it.
pub struct Embedded {
    /// The embedded cloud.
    pub sim: Sim,
    /// The estate it was built from.
    pub estate: Estate,
    /// The appliance's credentials.
    pub appliance: Credentials,
    /// The repository's key-encryption key (hex).
    pub repository_key: String,
    dir: PathBuf,
}

/// Every operation the estate can plan: for each instance, snapshots, backups with workers in
/// either place, replicas and restores (from snapshots and backups, workers in either place,
/// the instance started or stopped) into every account and region the estate knows.
pub fn all_operations(estate: &Estate) -> Vec<Operation> {
    let mut regions: BTreeSet<Region> = estate.instances.iter().map(|i| i.region.clone()).collect();
    regions.extend(estate.default_keys.keys().map(|(_, r)| r.clone()));
    let mut ops = Vec::new();
    for i in &estate.instances {
        let instance = i.id.clone();
        ops.push(Operation::Snapshot {
            instance: instance.clone(),
        });
        for workers in [
            Placement::BackupAccount,
            Placement::ProductionAccount,
            Placement::NoWorker,
        ] {
            ops.push(Operation::Backup {
                instance: instance.clone(),
                workers: Some(workers),
                file_index: false,
            });
        }
        for account in estate.accounts.keys() {
            for region in &regions {
                ops.push(Operation::Replicate {
                    instance: instance.clone(),
                    to_account: account.clone(),
                    to_region: region.clone(),
                    target_key: None,
                });
                ops.push(Operation::Restore {
                    instance: instance.clone(),
                    from: RestoreSource::Snapshot,
                    to_account: account.clone(),
                    to_region: region.clone(),
                    target_key: None,
                    workers: None,
                    // Left stopped: what a restore role needs for either.
                    launch: bulwark_plan::Launch {
                        stopped: true,
                        ..Default::default()
                    },
                });
                for workers in [
                    Placement::BackupAccount,
                    Placement::ProductionAccount,
                    Placement::NoWorker,
                ] {
                    ops.push(Operation::Restore {
                        instance: instance.clone(),
                        from: RestoreSource::Backup,
                        to_account: account.clone(),
                        to_region: region.clone(),
                        target_key: None,
                        workers: Some(workers),
                        launch: Default::default(),
                    });
                }
            }
        }
    }
    ops
}

/// The plans of `operations` that the planner accepts (refusals need no permissions).
pub fn plans(estate: &Estate, operations: &[Operation]) -> Vec<Plan> {
    operations
        .iter()
        .filter_map(|op| bulwark_plan::plan(estate, op).ok())
        .collect()
}

pub use bulwark_plan::Grants;

/// How much data each protected volume holds.
#[derive(Clone, Copy, Debug)]
pub struct DataSize {
    /// Bytes written into each volume (the rest reads as zeros, as a fresh EBS volume does).
    pub bytes_per_volume: u64,
}

const KEY_FILE: &str = "repository.key";

impl Embedded {
    /// Builds a new embedded estate in `dir` (which must not hold one), granting the roles
    /// and keys exactly what `grants` lists.
    pub fn create(
        dir: &Path,
        estate: &Estate,
        grants: &Grants,
        data: DataSize,
    ) -> Result<Embedded, EmbeddedError> {
        let sim = Sim::open(&dir.join("cloud"))?;
        // One batch: the world is saved once at the end, not after each of thousands of calls.
        sim.batch(|| Self::build(&sim, dir, estate, grants, data))
    }

    fn build(
        sim: &Sim,
        dir: &Path,
        estate: &Estate,
        grants: &Grants,
        data: DataSize,
    ) -> Result<Embedded, EmbeddedError> {
        let partition = estate.partition();
        let mut accounts: BTreeSet<AccountId> = estate.accounts.keys().cloned().collect();
        accounts.insert(estate.appliance.account.clone());
        for a in &accounts {
            sim.root_credentials(a)?;
        }
        // Keys: every customer managed key the estate names, with the default key policy
        // (the account's IAM decides) plus the statements the plans need.
        for key in customer_keys(estate) {
            let KeyRef::Customer(arn) = &key else { continue };
            let id = arn.as_str().rsplit('/').next().unwrap_or_default();
            let policy = match estate.embedded.key_policies.get(arn) {
                Some(given) => given.clone(),
                None => {
                    let mut statements = vec![Statement::allow(["kms:*"], ["*"])
                        .with_sid("Enable IAM User Permissions")
                        .for_principal(Principals::aws(format!(
                            "arn:{}:iam::{}:root",
                            partition.as_str(),
                            arn.account()
                        )))];
                    statements.extend(grants.keys.get(&key.arn()).cloned().unwrap_or_default());
                    PolicyDocument::new(statements).to_string()
                }
            };
            sim.create_key(arn.account(), arn.region(), id, &policy)?;
        }
        for ((account, region), key) in &estate.default_keys {
            let arn = match key {
                KeyRef::Customer(arn) => Some(arn.as_str()),
                KeyRef::AwsManaged { .. } => None,
            };
            sim.set_ebs_defaults(account, region, arn, estate.encrypts_by_default(account, region))?;
        }
        for (account, region) in &estate.encryption_by_default {
            if !estate
                .default_keys
                .contains_key(&(account.clone(), region.clone()))
            {
                sim.set_ebs_defaults(account, region, None, true)?;
            }
        }
        // Roles, with their trust and identity policies; worker roles in an instance profile
        // of their own name.
        for (arn, (trust, statements)) in &grants.roles {
            let Ok(role) = arn.parse::<RoleArn>() else {
                continue;
            };
            if role.as_str().contains(":role/bulwark/") {
                continue; // temporary worker roles are the sessions' to create
            }
            let policy = match estate.embedded.role_policies.get(&role) {
                Some(given) => given.clone(),
                None => PolicyDocument::new(statements.clone()).to_string(),
            };
            let trust = match (estate.embedded.trust_policies.get(&role), trust) {
                (Some(given), _) => given.clone(),
                (None, Some(trust)) => trust.to_string(),
                (None, None) => continue, // the appliance's own identity: not a role to create
            };
            let (path, name) = (role.path(), role.name().to_owned());
            sim.put_role(role.account(), &path, &name, &trust, &[("bulwark", policy)])?;
            let worker = trust.contains("ec2.amazonaws.com");
            if worker {
                sim.put_instance_profile(role.account(), &name, &name)?;
            }
        }
        // Instances with data.
        for instance in &estate.instances {
            let volumes: Vec<SimVolume> = instance
                .volumes
                .iter()
                .map(|v| SimVolume {
                    id: v.id.clone(),
                    size_gib: v.size_gib,
                    key: v.key.as_ref().map(|k| match k {
                        KeyRef::Customer(arn) => arn.to_string(),
                        KeyRef::AwsManaged { .. } => "aws/ebs".to_owned(),
                    }),
                })
                .collect();
            sim.create_instance(
                &instance.account,
                &instance.region,
                &instance.id,
                &volumes,
                &instance.tags,
            )?;
            for v in &instance.volumes {
                let bytes = data.bytes_per_volume.min(u64::from(v.size_gib) << 30);
                fill(sim, &instance.account, &instance.region, &v.id, bytes)?;
            }
        }
        // The repository, created by the bucket owner.
        let mut key = [0u8; 32];
        bulwark_repo::random(&mut key).map_err(EmbeddedError::Repository)?;
        let repository_key = hex::encode(key);
        let key_path = dir.join(KEY_FILE);
        write_private(&key_path, repository_key.as_bytes()).map_err(|error| EmbeddedError::Io {
            path: key_path,
            error,
        })?;
        if let Some(repo) = &estate.repository {
            let owner = repo.role.account();
            sim.create_bucket(repo.bucket.as_str(), owner)?;
            let root = sim.root_credentials(owner)?;
            let backend = sim.cloud().s3.object_store(
                &root.into(),
                &repo.region,
                repo.bucket.as_str(),
                &repo.prefix,
            )?;
            Repository::init(Arc::from(backend), &Secret::KeyFile(key)).map_err(EmbeddedError::Repository)?;
        }
        let appliance = appliance_credentials(sim, estate)?;
        sim.set_boot(Arc::new(bulwark_engine::worker::boot));
        Ok(Embedded {
            sim: sim.clone(),
            estate: estate.clone(),
            appliance,
            repository_key,
            dir: dir.to_path_buf(),
        })
    }

    /// Opens the embedded estate of `dir`, built earlier from `estate`.
    pub fn open(dir: &Path, estate: &Estate) -> Result<Embedded, EmbeddedError> {
        let sim = Sim::open(&dir.join("cloud"))?;
        let key_path = dir.join(KEY_FILE);
        let repository_key = std::fs::read_to_string(&key_path)
            .map_err(|error| EmbeddedError::Io {
                path: key_path,
                error,
            })?
            .trim()
            .to_owned();
        let appliance = appliance_credentials(&sim, estate)?;
        sim.set_boot(Arc::new(bulwark_engine::worker::boot));
        Ok(Embedded {
            sim,
            estate: estate.clone(),
            appliance,
            repository_key,
            dir: dir.to_path_buf(),
        })
    }

    /// An engine for this estate, keeping its journals in the data directory.
    pub fn engine(&self) -> Engine {
        self.engine_for(self.estate.clone())
    }

    /// An engine for `estate` on this embedded cloud (the appliance's: the instances it
    /// discovered instead of those of the file).
    pub fn engine_for(&self, estate: Estate) -> Engine {
        Engine::new(
            self.sim.cloud(),
            estate,
            self.appliance.clone(),
            Arc::new(FileStore::new(&self.dir.join("appliance"))),
            Some(self.repository_key.clone()),
        )
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The appliance's credentials: its role's session if the estate names one, else the backup
/// account's own.
fn appliance_credentials(sim: &Sim, estate: &Estate) -> Result<Credentials, EmbeddedError> {
    let root = sim.root_credentials(&estate.appliance.account)?;
    match &estate.appliance.role {
        Some(role) => Ok(sim
            .cloud()
            .sts
            .assume_role(&root, role, "bulwark-appliance", None)?),
        None => Ok(root),
    }
}

/// Every customer managed key the estate names.
fn customer_keys(estate: &Estate) -> BTreeSet<KeyRef> {
    let mut keys: BTreeSet<KeyRef> = estate.default_keys.values().cloned().collect();
    keys.extend(
        estate
            .instances
            .iter()
            .flat_map(|i| i.volumes.iter().filter_map(|v| v.key.clone())),
    );
    keys.retain(|k| !k.is_aws_managed());
    keys
}

/// Writes a file only its owner may read (a key): created 0600, or made so if it was there.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(bytes)?;
    file.sync_all()
}
