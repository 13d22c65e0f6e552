//! The AWS resources a plan acts on: those that exist, and those the plan creates.
//!
//! A resource that does not exist yet has no id; it is named by what it will be ("snapshot of
//! vol-0aaa... owned by 222222222222"). Two resources are the same exactly when their values
//! are equal, which is how cleanup is checked against creation.

use std::fmt;

use bulwark_model::{AccountId, BucketName, InstanceId, KeyRef, Partition, Region, RoleArn, VolumeId};

/// Where in a plan a snapshot comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SnapshotOrigin {
    /// A snapshot of the production volume itself (made by this plan, or, for restores, the
    /// restore point being restored).
    Volume,
    /// A CopySnapshot of the snapshot of the production volume.
    Copy,
    /// A snapshot of a volume a worker restored from the repository.
    Restored,
    /// A snapshot of the production volume read through the EBS direct APIs and kept after
    /// the backup, so that the next backup reads only the blocks changed since it
    /// (ListChangedBlocks).
    DirectBase,
    /// The base snapshot of the previous direct backup, removed once the new backup is
    /// written.
    PreviousDirectBase,
    /// A new snapshot written from a restore point through the EBS direct APIs.
    Written,
}

/// Where a volume made by a plan comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum VolumeOrigin {
    /// Created from a snapshot so that a worker can read it.
    ForWorker,
    /// Created empty, for a worker to write a restore into.
    Empty,
    /// The final restored volume.
    Restored,
}

/// A snapshot of one volume of a protected instance, existing or to be made by the plan.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Snapshot {
    /// The account that owns the snapshot.
    pub owner: AccountId,
    /// Region.
    pub region: Region,
    /// The production volume whose data it holds.
    pub volume: VolumeId,
    /// How it was made.
    pub origin: SnapshotOrigin,
    /// The key that encrypts it; `None` if unencrypted.
    pub key: Option<KeyRef>,
}

/// An AWS resource, existing or to be created by the plan.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Resource {
    /// An existing EC2 instance.
    Instance {
        /// Owner.
        account: AccountId,
        /// Region.
        region: Region,
        /// Id.
        id: InstanceId,
    },
    /// A snapshot of one volume of a protected instance.
    Snapshot(Snapshot),
    /// The permission for another account to create volumes from a snapshot.
    SnapshotShare {
        /// The shared snapshot.
        snapshot: Snapshot,
        /// The account it is shared with.
        with: AccountId,
    },
    /// A volume the plan creates.
    Volume {
        /// Owner.
        account: AccountId,
        /// Region.
        region: Region,
        /// The production volume whose data it holds.
        of: VolumeId,
        /// Why it exists.
        origin: VolumeOrigin,
        /// The key that encrypts it; `None` if unencrypted.
        key: Option<KeyRef>,
    },
    /// A volume attached to an instance.
    Attachment {
        /// The volume.
        volume: Box<Resource>,
        /// The instance.
        instance: Box<Resource>,
    },
    /// A worker instance serving one protected instance.
    Worker {
        /// The account the worker runs in.
        account: AccountId,
        /// Its region.
        region: Region,
        /// The protected instance it works for.
        serves: InstanceId,
    },
    /// The instance a restore creates.
    RestoredInstance {
        /// Target account.
        account: AccountId,
        /// Target region.
        region: Region,
        /// The instance being restored.
        from: InstanceId,
    },
    /// An existing IAM role.
    Role(RoleArn),
    /// The temporary role of a worker in the backup account, and its instance profile (same
    /// name, path `/bulwark/`).
    TemporaryRole {
        /// The backup account.
        account: AccountId,
        /// The protected instance the worker serves.
        serves: InstanceId,
    },
    /// The inline policy of a temporary worker role.
    TemporaryRolePolicy {
        /// The backup account.
        account: AccountId,
        /// The protected instance the worker serves.
        serves: InstanceId,
    },
    /// The instance profile of a temporary worker role.
    InstanceProfile {
        /// The backup account.
        account: AccountId,
        /// The protected instance the worker serves.
        serves: InstanceId,
    },
    /// The temporary role's membership in its instance profile.
    ProfileMembership {
        /// The backup account.
        account: AccountId,
        /// The protected instance the worker serves.
        serves: InstanceId,
    },
    /// The SQS queue of a session, over which the appliance and its workers talk.
    Queue {
        /// The backup account.
        account: AccountId,
        /// The queue's region (the workers').
        region: Region,
    },
    /// The objects of the backup repository.
    Repository {
        /// Bucket.
        bucket: BucketName,
        /// Key prefix (may be empty).
        prefix: String,
    },
    /// A KMS key.
    Key(KeyRef),
}

/// Prefix of the names of everything Bulwark creates in IAM (a path) and SQS (a name prefix),
/// so that least-privilege policies can name them before they exist.
pub const NAME_PREFIX: &str = "bulwark";

impl Resource {
    /// The region the resource lives in; `None` for global IAM resources and S3 objects.
    pub fn region(&self) -> Option<&Region> {
        match self {
            Resource::Snapshot(s) => Some(&s.region),
            Resource::Instance { region, .. }
            | Resource::Volume { region, .. }
            | Resource::Worker { region, .. }
            | Resource::RestoredInstance { region, .. }
            | Resource::Queue { region, .. } => Some(region),
            Resource::SnapshotShare { snapshot, .. } => Some(&snapshot.region),
            Resource::Attachment { volume, .. } => volume.region(),
            Resource::Key(key) => Some(key.region()),
            Resource::Role(_)
            | Resource::TemporaryRole { .. }
            | Resource::TemporaryRolePolicy { .. }
            | Resource::InstanceProfile { .. }
            | Resource::ProfileMembership { .. }
            | Resource::Repository { .. } => None,
        }
    }

    /// The key that encrypts the data of this resource, if any.
    pub fn key(&self) -> Option<&KeyRef> {
        match self {
            Resource::Snapshot(Snapshot { key, .. }) | Resource::Volume { key, .. } => key.as_ref(),
            Resource::SnapshotShare { snapshot, .. } => snapshot.key.as_ref(),
            Resource::Attachment { volume, .. } => volume.key(),
            Resource::Key(key) => Some(key),
            _ => None,
        }
    }

    /// The ARN patterns an IAM policy statement must name for an API call on this resource.
    /// Resources that do not exist yet are matched with a wildcard for their id, scoped to
    /// their account and region.
    pub fn iam_resources(&self, partition: Partition) -> Vec<String> {
        let p = partition.as_str();
        match self {
            Resource::Instance { account, region, id } => {
                vec![format!("arn:{p}:ec2:{region}:{account}:instance/{id}")]
            }
            // Snapshot ARNs carry no account: AWS writes them arn:aws:ec2:REGION::snapshot/ID.
            Resource::Snapshot(s) => vec![format!("arn:{p}:ec2:{}::snapshot/*", s.region)],
            Resource::SnapshotShare { snapshot, .. } => {
                Resource::Snapshot(snapshot.clone()).iam_resources(partition)
            }
            Resource::Volume { account, region, .. } => {
                vec![format!("arn:{p}:ec2:{region}:{account}:volume/*")]
            }
            Resource::Attachment { volume, instance } => {
                let mut v = volume.iam_resources(partition);
                v.extend(instance.iam_resources(partition));
                v
            }
            Resource::Worker { account, region, .. } | Resource::RestoredInstance { account, region, .. } => {
                vec![format!("arn:{p}:ec2:{region}:{account}:instance/*")]
            }
            Resource::Role(role) => vec![role.to_string()],
            Resource::TemporaryRole { account, .. } | Resource::TemporaryRolePolicy { account, .. } => {
                vec![format!("arn:{p}:iam::{account}:role/{NAME_PREFIX}/*")]
            }
            Resource::InstanceProfile { account, .. } | Resource::ProfileMembership { account, .. } => {
                vec![format!("arn:{p}:iam::{account}:instance-profile/{NAME_PREFIX}/*")]
            }
            Resource::Queue { account, region } => {
                vec![format!("arn:{p}:sqs:{region}:{account}:{NAME_PREFIX}-*")]
            }
            Resource::Repository { bucket, prefix } => {
                let objects = if prefix.is_empty() {
                    "*".to_owned()
                } else {
                    format!("{prefix}/*")
                };
                vec![
                    format!("arn:{p}:s3:::{bucket}"),
                    format!("arn:{p}:s3:::{bucket}/{objects}"),
                ]
            }
            Resource::Key(key) => vec![key.arn()],
        }
    }
}

impl Resource {
    /// The name of an instance-like resource without its account and region, for text that
    /// already names them.
    fn short_name(&self) -> String {
        match self {
            Resource::Worker { serves, .. } => format!("worker for {serves}"),
            Resource::RestoredInstance { from, .. } => format!("restored instance of {from}"),
            Resource::Instance { id, .. } => format!("instance {id}"),
            other => other.to_string(),
        }
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resource::Instance { account, region, id } => write!(f, "instance {id} ({account}, {region})"),
            Resource::Snapshot(Snapshot {
                owner,
                region,
                volume,
                origin,
                ..
            }) => {
                let what = match origin {
                    SnapshotOrigin::Volume => "snapshot",
                    SnapshotOrigin::Copy => "snapshot copy",
                    SnapshotOrigin::Restored => "snapshot of the restored",
                    SnapshotOrigin::DirectBase => "base snapshot",
                    SnapshotOrigin::PreviousDirectBase => "previous base snapshot",
                    SnapshotOrigin::Written => "snapshot written from the backup",
                };
                write!(f, "{what} of {volume} ({owner}, {region})")
            }
            Resource::SnapshotShare { snapshot, with } => {
                write!(
                    f,
                    "share of the {} with {with}",
                    Resource::Snapshot(snapshot.clone())
                )
            }
            Resource::Volume {
                account,
                region,
                of,
                origin,
                ..
            } => {
                let what = match origin {
                    VolumeOrigin::ForWorker => "volume from the snapshot",
                    VolumeOrigin::Empty => "empty volume for the restore",
                    VolumeOrigin::Restored => "restored volume",
                };
                write!(f, "{what} of {of} ({account}, {region})")
            }
            Resource::Attachment { volume, instance } => {
                write!(f, "attachment of the {volume} to the {}", instance.short_name())
            }
            Resource::Worker {
                account,
                region,
                serves,
            } => write!(f, "worker for {serves} ({account}, {region})"),
            Resource::RestoredInstance {
                account,
                region,
                from,
            } => {
                write!(f, "restored instance of {from} ({account}, {region})")
            }
            Resource::Role(role) => write!(f, "role {role}"),
            Resource::TemporaryRole { account, serves } => {
                write!(f, "temporary role {NAME_PREFIX}/worker-{serves} ({account})")
            }
            Resource::TemporaryRolePolicy { account, serves } => {
                write!(
                    f,
                    "policy of the temporary role {NAME_PREFIX}/worker-{serves} ({account})"
                )
            }
            Resource::InstanceProfile { account, serves } => {
                write!(f, "instance profile {NAME_PREFIX}/worker-{serves} ({account})")
            }
            Resource::ProfileMembership { account, serves } => write!(
                f,
                "role {NAME_PREFIX}/worker-{serves} in its instance profile ({account})"
            ),
            Resource::Queue { account, region } => {
                write!(f, "session queue {NAME_PREFIX}-SESSION ({account}, {region})")
            }
            Resource::Repository { bucket, prefix } => write!(f, "repository s3://{bucket}/{prefix}"),
            Resource::Key(key) => write!(f, "key {key}"),
        }
    }
}
