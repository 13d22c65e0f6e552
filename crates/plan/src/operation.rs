//! The operations Bulwark plans.

use std::fmt;

use bulwark_model::{AccountId, InstanceId, KeyRef, Region, SnapshotId, VolumeId, VolumeType};
use serde::{Deserialize, Serialize};

/// How a restored instance is launched, beside what its restore point recorded.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Launch {
    /// Its subnet; `None`: the original's in its own account and region, else the target's
    /// default VPC.
    #[serde(default)]
    pub subnet: Option<String>,
    /// Its security groups; none: the original's in its own account and region, else the
    /// VPC's default group.
    #[serde(default)]
    pub security_groups: Vec<String>,
    /// Leave it stopped once its volumes are attached.
    #[serde(default)]
    pub stopped: bool,
}

/// Where worker instances run (`reference/seeds`, "worker deployment options").
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Placement {
    /// In the backup account: the worker deployment role launches one worker per processed
    /// instance and creates a temporary role and instance profile for it, removed at the end.
    /// The default for image-level backups and restores from them.
    BackupAccount,
    /// In the account of the processed instance (or of the restore target): the backup or
    /// restore role launches it with the account's pre-configured worker role, which stays.
    ProductionAccount,
    /// No worker: the appliance moves the data itself through the EBS direct APIs, reading
    /// the instance's snapshots with its account's backup role, or writing new snapshots
    /// with the target account's restore role. Nothing leaves the account, so no snapshot is
    /// shared and `aws/ebs` is no obstacle.
    #[serde(rename = "none")]
    NoWorker,
}

impl Placement {
    /// The name used on the command line and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Placement::BackupAccount => "backup-account",
            Placement::ProductionAccount => "production-account",
            Placement::NoWorker => "none",
        }
    }

    /// The account kind workers run in, or `None` without workers.
    pub(crate) fn worker(self) -> Option<WorkerAccount> {
        match self {
            Placement::BackupAccount => Some(WorkerAccount::Backup),
            Placement::ProductionAccount => Some(WorkerAccount::Production),
            Placement::NoWorker => None,
        }
    }
}

/// Where a worker runs, once it is decided that there is one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WorkerAccount {
    /// The backup account (see [`Placement::BackupAccount`]).
    Backup,
    /// The production account (see [`Placement::ProductionAccount`]).
    Production,
}

impl fmt::Display for Placement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a restore reads from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestoreSource {
    /// The instance's latest cloud-native snapshots, in its own account and region.
    Snapshot,
    /// The instance's latest image-level backup, in the repository.
    Backup,
}

/// An operation to plan. As JSON, the fields of `bulwark plan` with the operation as `type`:
/// `{"type": "backup", "instance": "i-...", "workers": "production-account"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Operation {
    /// Cloud-native snapshots of every volume of an instance, in its account and region.
    Snapshot {
        /// The instance.
        instance: InstanceId,
    },
    /// An image-level backup: volume data read by a worker into the repository.
    Backup {
        /// The instance.
        instance: InstanceId,
        /// Where workers run; `None` for the default (the backup account).
        #[serde(default)]
        workers: Option<Placement>,
        /// Whether each restore point gets a file index (its files' paths, sizes and times,
        /// for `bulwark files find`). It changes what the data path writes, not the plan.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        file_index: bool,
    },
    /// A snapshot replica in another region and/or account.
    Replicate {
        /// The instance.
        instance: InstanceId,
        /// The account that will own the replica.
        to_account: AccountId,
        /// The region of the replica.
        to_region: Region,
        /// The key of the replica; `None` for the default EBS key of the target account and
        /// region.
        #[serde(default)]
        target_key: Option<KeyRef>,
    },
    /// A restore of the whole instance into an account and region.
    Restore {
        /// The instance.
        instance: InstanceId,
        /// Snapshot or backup.
        from: RestoreSource,
        /// Target account.
        to_account: AccountId,
        /// Target region.
        to_region: Region,
        /// The key of the restored volumes; `None` keeps the source key where AWS allows it,
        /// else the default EBS key of the target account and region.
        #[serde(default)]
        target_key: Option<KeyRef>,
        /// Where workers run for restores from backups; `None` for the default (the backup
        /// account). Restores from snapshots use no workers.
        #[serde(default)]
        workers: Option<Placement>,
        /// The restored instance's network and state.
        #[serde(default)]
        launch: Launch,
    },
    /// A restore of some volumes of an instance into an account, region and availability
    /// zone, left as volumes (no instance is launched): the same sources, keys and plan as a
    /// whole-instance restore.
    RestoreVolumes {
        /// The instance whose restore point holds the volumes.
        instance: InstanceId,
        /// The volumes (the instance's volume ids), at least one.
        volumes: Vec<VolumeId>,
        /// Snapshot or backup.
        from: RestoreSource,
        /// Target account.
        to_account: AccountId,
        /// Target region.
        to_region: Region,
        /// The key of the restored volumes, as for [`Operation::Restore`].
        #[serde(default)]
        target_key: Option<KeyRef>,
        /// Where workers run for restores from backups, as for [`Operation::Restore`].
        #[serde(default)]
        workers: Option<Placement>,
        /// The availability zone of the new volumes (where the instance that will use them
        /// runs); `None` for the region's first (or, with a worker, the worker's; or, with
        /// `attach_to`, that instance's).
        #[serde(default)]
        zone: Option<String>,
        /// Attach the restored volumes to this instance of the target account and region.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        attach_to: Option<InstanceId>,
        /// With `attach_to`: the device name of each volume, in the order of `volumes`, like
        /// `/dev/sdf`.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        devices: Vec<String>,
        /// The type of the new volumes; `None`: gp3.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        volume_type: Option<VolumeType>,
        /// Their provisioned IOPS (gp3, io1, io2); `None`: the type's default.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        iops: Option<u32>,
        /// Their throughput in MiB/s (gp3); `None`: the type's default.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        throughput: Option<u32>,
    },
    /// Retention: deletes snapshot restore points (and replicas) of an instance that its
    /// policy no longer keeps. The instance itself may be gone.
    Expire {
        /// The instance the restore points are of.
        instance: InstanceId,
        /// The snapshots to delete.
        snapshots: Vec<ExpiredSnapshot>,
    },
}

/// A snapshot restore point that retention deletes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpiredSnapshot {
    /// The snapshot.
    pub id: SnapshotId,
    /// The production volume it holds the data of.
    pub volume: VolumeId,
    /// The account that owns it (the instance's, or a replica's target).
    pub account: AccountId,
    /// Its region.
    pub region: Region,
}

impl Operation {
    /// The instance the operation processes.
    pub fn instance(&self) -> &InstanceId {
        match self {
            Operation::Snapshot { instance }
            | Operation::Backup { instance, .. }
            | Operation::Replicate { instance, .. }
            | Operation::Restore { instance, .. }
            | Operation::RestoreVolumes { instance, .. }
            | Operation::Expire { instance, .. } => instance,
        }
    }

    /// The operation's name, as on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            Operation::Snapshot { .. } => "snapshot",
            Operation::Backup { .. } => "backup",
            Operation::Replicate { .. } => "replicate",
            Operation::Restore { .. } => "restore",
            Operation::RestoreVolumes { .. } => "restore-volumes",
            Operation::Expire { .. } => "expire",
        }
    }
}
