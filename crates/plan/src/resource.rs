//! The AWS resources a plan acts on: those that exist, and those the plan creates.
//!
//! A resource that does not exist yet has no id; it is named by what it will be ("snapshot of
//! vol-0aaa... owned by 222222222222"). Two resources are the same exactly when their values
//! are equal, which is how cleanup is checked against creation.

use std::fmt;

use bulwark_model::{AccountId, BucketName, InstanceId, KeyRef, Partition, Region, RoleArn, VolumeId};
use serde::{Deserialize, Serialize};

/// Where in a plan a snapshot comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SnapshotOrigin {
    /// A snapshot of the production volume itself (made by this plan, or, for restores, the
    /// restore point being restored).
    Volume,
    /// A CopySnapshot of the snapshot of the production volume.
    Copy,
    /// A snapshot of a volume a worker restored from the repository.
    Restored,
    /// A snapshot of the production volume an image-level backup reads (through the EBS
    /// direct APIs, or a worker's volume made from it), kept after the backup so that the next
    /// one reads only the blocks changed since it (ListChangedBlocks).
    #[serde(alias = "direct-base")]
    Base,
    /// The base snapshot of the previous backup, removed once the new backup is written.
    #[serde(alias = "previous-direct-base")]
    PreviousBase,
    /// A new snapshot written from a restore point through the EBS direct APIs.
    Written,
    /// A snapshot of a restored volume, which the image that boots the restored instance is
    /// registered from.
    Image,
}

/// Where a volume made by a plan comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VolumeOrigin {
    /// Created from a snapshot so that a worker can read it.
    ForWorker,
    /// Created empty, for a worker to write a restore into.
    Empty,
    /// The final restored volume.
    Restored,
}

/// An existing EC2 instance.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct InstanceRef {
    /// Owner.
    pub account: AccountId,
    /// Region.
    pub region: Region,
    /// Id.
    pub id: InstanceId,
}

/// A snapshot of one volume of a protected instance, existing or to be made by the plan.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
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

/// The permission for another account to create volumes from a snapshot.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Share {
    /// The shared snapshot.
    pub snapshot: Snapshot,
    /// The account it is shared with.
    pub with: AccountId,
}

/// A volume the plan creates.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NewVolume {
    /// Owner.
    pub account: AccountId,
    /// Region.
    pub region: Region,
    /// The production volume whose data it holds.
    pub of: VolumeId,
    /// Why it exists.
    pub origin: VolumeOrigin,
    /// The key that encrypts it; `None` if unencrypted.
    pub key: Option<KeyRef>,
}

/// A worker instance serving one protected instance.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct WorkerRef {
    /// The account the worker runs in.
    pub account: AccountId,
    /// Its region.
    pub region: Region,
    /// The protected instance it works for.
    pub serves: InstanceId,
}

/// The instance a restore creates.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RestoredRef {
    /// Target account.
    pub account: AccountId,
    /// Target region.
    pub region: Region,
    /// The instance being restored.
    pub from: InstanceId,
}

/// An instance a plan attaches volumes to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Machine {
    /// A worker of the session.
    Worker(WorkerRef),
    /// The instance a restore launches.
    Restored(RestoredRef),
    /// An instance that exists already: a volume restore attaches its volumes to it.
    Existing(InstanceRef),
}

/// A volume attached to an instance.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Attachment {
    /// The volume.
    pub volume: NewVolume,
    /// The instance.
    pub instance: Machine,
    /// The device name asked for; `None`: the next free one from `/dev/sdf`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
}

/// The temporary IAM identity of one worker in the backup account: a role, its inline policy,
/// an instance profile of the same name (path `/bulwark/`), and the role's membership in it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct WorkerIdentity {
    /// The backup account.
    pub account: AccountId,
    /// The protected instance the worker serves.
    pub serves: InstanceId,
}

/// The SQS queue of a session, over which the appliance and its workers talk.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct QueueRef {
    /// The backup account.
    pub account: AccountId,
    /// The queue's region (the workers').
    pub region: Region,
}

/// The objects of the backup repository.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RepositoryRef {
    /// Bucket.
    pub bucket: BucketName,
    /// Key prefix (may be empty).
    pub prefix: String,
}

/// An AWS resource, existing or to be created by the plan.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Resource {
    /// An existing EC2 instance.
    Instance(InstanceRef),
    /// A snapshot of one volume of a protected instance.
    Snapshot(Snapshot),
    /// The permission for another account to create volumes from a snapshot.
    SnapshotShare(Share),
    /// A volume the plan creates.
    Volume(NewVolume),
    /// A volume attached to an instance.
    Attachment(Attachment),
    /// A worker instance serving one protected instance.
    Worker(WorkerRef),
    /// The instance a restore creates.
    RestoredInstance(RestoredRef),
    /// The temporary image that boots the instance a restore creates.
    Image(RestoredRef),
    /// An existing IAM role.
    Role(RoleArn),
    /// The temporary role of a worker in the backup account.
    TemporaryRole(WorkerIdentity),
    /// The inline policy of a temporary worker role.
    TemporaryRolePolicy(WorkerIdentity),
    /// The instance profile of a temporary worker role.
    InstanceProfile(WorkerIdentity),
    /// The temporary role's membership in its instance profile.
    ProfileMembership(WorkerIdentity),
    /// The SQS queue of a session.
    Queue(QueueRef),
    /// The objects of the backup repository.
    Repository(RepositoryRef),
    /// A KMS key.
    Key(KeyRef),
}

impl From<Machine> for Resource {
    fn from(m: Machine) -> Resource {
        match m {
            Machine::Worker(w) => Resource::Worker(w),
            Machine::Restored(r) => Resource::RestoredInstance(r),
            Machine::Existing(i) => Resource::Instance(i),
        }
    }
}

/// Prefix of the names of everything Bulwark creates in IAM (a path) and SQS (a name prefix),
/// so that least-privilege policies can name them before they exist.
pub const NAME_PREFIX: &str = "bulwark";

impl Resource {
    /// The region the resource lives in; `None` for global IAM resources and S3 objects.
    pub fn region(&self) -> Option<&Region> {
        match self {
            Resource::Snapshot(s) => Some(&s.region),
            Resource::Instance(InstanceRef { region, .. })
            | Resource::Volume(NewVolume { region, .. })
            | Resource::Worker(WorkerRef { region, .. })
            | Resource::RestoredInstance(RestoredRef { region, .. })
            | Resource::Image(RestoredRef { region, .. })
            | Resource::Queue(QueueRef { region, .. }) => Some(region),
            Resource::SnapshotShare(share) => Some(&share.snapshot.region),
            Resource::Attachment(a) => Some(&a.volume.region),
            Resource::Key(key) => Some(key.region()),
            Resource::Role(_)
            | Resource::TemporaryRole(_)
            | Resource::TemporaryRolePolicy(_)
            | Resource::InstanceProfile(_)
            | Resource::ProfileMembership(_)
            | Resource::Repository(_) => None,
        }
    }

    /// The key that encrypts the data of this resource, if any.
    pub fn key(&self) -> Option<&KeyRef> {
        match self {
            Resource::Snapshot(Snapshot { key, .. }) | Resource::Volume(NewVolume { key, .. }) => {
                key.as_ref()
            }
            Resource::SnapshotShare(share) => share.snapshot.key.as_ref(),
            Resource::Attachment(a) => a.volume.key.as_ref(),
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
            Resource::Instance(InstanceRef { account, region, id }) => {
                vec![format!("arn:{p}:ec2:{region}:{account}:instance/{id}")]
            }
            // Snapshot ARNs carry no account: AWS writes them arn:aws:ec2:REGION::snapshot/ID.
            Resource::Snapshot(s) => vec![format!("arn:{p}:ec2:{}::snapshot/*", s.region)],
            Resource::SnapshotShare(share) => {
                Resource::Snapshot(share.snapshot.clone()).iam_resources(partition)
            }
            Resource::Volume(NewVolume { account, region, .. }) => {
                vec![format!("arn:{p}:ec2:{region}:{account}:volume/*")]
            }
            Resource::Attachment(a) => {
                let mut v = Resource::Volume(a.volume.clone()).iam_resources(partition);
                v.extend(Resource::from(a.instance.clone()).iam_resources(partition));
                v
            }
            Resource::Worker(WorkerRef { account, region, .. })
            | Resource::RestoredInstance(RestoredRef { account, region, .. }) => {
                vec![format!("arn:{p}:ec2:{region}:{account}:instance/*")]
            }
            // Image ARNs carry no account either.
            Resource::Image(RestoredRef { region, .. }) => vec![format!("arn:{p}:ec2:{region}::image/*")],
            Resource::Role(role) => vec![role.to_string()],
            Resource::TemporaryRole(w) | Resource::TemporaryRolePolicy(w) => {
                vec![format!("arn:{p}:iam::{}:role/{NAME_PREFIX}/*", w.account)]
            }
            Resource::InstanceProfile(w) | Resource::ProfileMembership(w) => {
                vec![format!(
                    "arn:{p}:iam::{}:instance-profile/{NAME_PREFIX}/*",
                    w.account
                )]
            }
            Resource::Queue(QueueRef { account, region }) => {
                vec![format!("arn:{p}:sqs:{region}:{account}:{NAME_PREFIX}-*")]
            }
            Resource::Repository(RepositoryRef { bucket, prefix }) => {
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

    /// The name of an instance-like resource without its account and region, for text that
    /// already names them.
    fn short_name(&self) -> String {
        match self {
            Resource::Worker(w) => format!("worker for {}", w.serves),
            Resource::RestoredInstance(r) => format!("restored instance of {}", r.from),
            Resource::Instance(i) => format!("instance {}", i.id),
            other => other.to_string(),
        }
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resource::Instance(InstanceRef { account, region, id }) => {
                write!(f, "instance {id} ({account}, {region})")
            }
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
                    SnapshotOrigin::Base => "base snapshot",
                    SnapshotOrigin::PreviousBase => "previous base snapshot",
                    SnapshotOrigin::Written => "snapshot written from the backup",
                    SnapshotOrigin::Image => "image snapshot of the restored",
                };
                write!(f, "{what} of {volume} ({owner}, {region})")
            }
            Resource::SnapshotShare(Share { snapshot, with }) => {
                write!(
                    f,
                    "share of the {} with {with}",
                    Resource::Snapshot(snapshot.clone())
                )
            }
            Resource::Volume(NewVolume {
                account,
                region,
                of,
                origin,
                ..
            }) => {
                let what = match origin {
                    VolumeOrigin::ForWorker => "volume from the snapshot",
                    VolumeOrigin::Empty => "empty volume for the restore",
                    VolumeOrigin::Restored => "restored volume",
                };
                write!(f, "{what} of {of} ({account}, {region})")
            }
            Resource::Attachment(a) => write!(
                f,
                "attachment of the {} to the {}",
                Resource::Volume(a.volume.clone()),
                Resource::from(a.instance.clone()).short_name()
            ),
            Resource::Worker(WorkerRef {
                account,
                region,
                serves,
            }) => write!(f, "worker for {serves} ({account}, {region})"),
            Resource::RestoredInstance(RestoredRef {
                account,
                region,
                from,
            }) => {
                write!(f, "restored instance of {from} ({account}, {region})")
            }
            Resource::Image(RestoredRef {
                account,
                region,
                from,
            }) => {
                write!(
                    f,
                    "image of the restored instance of {from} ({account}, {region})"
                )
            }
            Resource::Role(role) => write!(f, "role {role}"),
            Resource::TemporaryRole(WorkerIdentity { account, serves }) => {
                write!(
                    f,
                    "temporary role {NAME_PREFIX}/worker-SESSION-{serves} ({account})"
                )
            }
            Resource::TemporaryRolePolicy(WorkerIdentity { account, serves }) => {
                write!(
                    f,
                    "policy of the temporary role {NAME_PREFIX}/worker-SESSION-{serves} ({account})"
                )
            }
            Resource::InstanceProfile(WorkerIdentity { account, serves }) => {
                write!(
                    f,
                    "instance profile {NAME_PREFIX}/worker-SESSION-{serves} ({account})"
                )
            }
            Resource::ProfileMembership(WorkerIdentity { account, serves }) => write!(
                f,
                "role {NAME_PREFIX}/worker-SESSION-{serves} in its instance profile ({account})"
            ),
            Resource::Queue(QueueRef { account, region }) => {
                write!(f, "session queue {NAME_PREFIX}-SESSION ({account}, {region})")
            }
            Resource::Repository(RepositoryRef { bucket, prefix }) => {
                write!(f, "repository s3://{bucket}/{prefix}")
            }
            Resource::Key(key) => write!(f, "key {key}"),
        }
    }
}
