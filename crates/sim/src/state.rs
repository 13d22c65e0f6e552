//! The world the embedded cloud holds: every account's IAM, and per region its KMS keys,
//! volumes, snapshots, instances and queues. It is plain data, saved whole to the data
//! directory after every change so that separate `bulwark` commands see the same world
//! (`persist`).

use std::collections::BTreeMap;

use bulwark_cloud::{InstanceBoot, RegisterImage, Tag};
use bulwark_model::{AccountId, ImageId, InstanceId, Performance, Region, SnapshotId, VolumeId};
use serde::{Deserialize, Serialize};

use crate::store::BlockMap;

/// Everything.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct World {
    /// The state format's version (`persist::STATE_VERSION`).
    #[serde(default)]
    pub version: u32,
    pub accounts: BTreeMap<AccountId, Account>,
    /// Credentials issued, by access key id.
    pub sessions: BTreeMap<String, Session>,
    /// The next number for generated ids.
    pub next_id: u64,
    /// Faults waiting to fire.
    pub faults: Vec<crate::Fault>,
    /// S3 buckets and their owners.
    pub buckets: BTreeMap<String, AccountId>,
    /// Role sessions shorter than AWS's default hour, by `ACCOUNT/path/name` (the role as in
    /// [`Identity::Role`]): for tests of credential renewal.
    #[serde(default)]
    pub session_seconds: BTreeMap<String, u64>,
    /// How long what AWS does in the background takes here, in milliseconds (`clock`).
    #[serde(default = "default_latency")]
    pub latency_ms: u64,
    /// Client tokens of idempotent creations, `ACCOUNT/REGION/TOKEN` to the id they created.
    #[serde(default)]
    pub tokens: BTreeMap<String, String>,
}

/// A few milliseconds: long enough that every wait is a real wait, short enough for the demo.
fn default_latency() -> u64 {
    5
}

/// Whom a set of credentials belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Identity {
    /// The account's root credentials.
    Root(AccountId),
    /// A session of a role (`path/name` in its account).
    Role {
        account: AccountId,
        name: String,
        session: String,
    },
}

impl Identity {
    pub fn account(&self) -> &AccountId {
        match self {
            Identity::Root(account) | Identity::Role { account, .. } => account,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Session {
    pub identity: Identity,
    pub secret: String,
    /// When a role session expires (seconds since the epoch); root keys do not.
    #[serde(default)]
    pub expires: Option<u64>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Account {
    /// Roles by name (the last part of their path).
    pub roles: BTreeMap<String, Role>,
    /// Instance profiles by name.
    pub profiles: BTreeMap<String, Profile>,
    pub regions: BTreeMap<Region, RegionState>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Role {
    /// `/` or `/bulwark/`.
    pub path: String,
    pub name: String,
    pub trust: String,
    /// Inline policies by name.
    pub policies: BTreeMap<String, String>,
    pub tags: Vec<Tag>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Profile {
    pub path: String,
    pub name: String,
    /// The one role it holds.
    pub role: Option<String>,
    /// How many more launches refuse it: IAM is eventually consistent, and a fresh profile is
    /// not yet visible to EC2.
    pub unseen_launches: u32,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct RegionState {
    /// The default EBS key's id; `None` is the AWS managed key `aws/ebs`.
    pub default_key: Option<String>,
    pub encryption_by_default: bool,
    /// KMS keys by key id.
    pub keys: BTreeMap<String, Key>,
    /// Alias name (`alias/x`) to key id.
    pub aliases: BTreeMap<String, String>,
    pub volumes: BTreeMap<VolumeId, Volume>,
    pub snapshots: BTreeMap<SnapshotId, Snapshot>,
    pub instances: BTreeMap<InstanceId, Instance>,
    /// Images registered from snapshots.
    #[serde(default)]
    pub images: BTreeMap<ImageId, Image>,
    /// Queues by name.
    pub queues: BTreeMap<String, Queue>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Key {
    pub id: String,
    pub aws_managed: bool,
    /// `Enabled`, `Disabled` or `PendingDeletion`.
    pub state: String,
    /// `SYMMETRIC_DEFAULT` or an asymmetric spec.
    pub spec: String,
    pub policy: String,
    /// The key material (hex), for data keys.
    pub material: String,
    pub grants: Vec<GrantState>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct GrantState {
    pub id: String,
    pub grantee: String,
    pub operations: Vec<String>,
    /// The volume whose attachment made EBS create it; retired at detach.
    pub for_volume: Option<VolumeId>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Volume {
    pub size_gib: u32,
    pub snapshot: Option<SnapshotId>,
    /// The key ARN, if encrypted.
    pub key: Option<String>,
    pub attachment: Option<(InstanceId, String)>,
    pub tags: Vec<Tag>,
    /// The snapshot lineage: snapshots of this volume can be compared block by block.
    pub lineage: u64,
    pub blocks: BlockMap,
    /// Its availability zone (empty in older state: the region's first).
    #[serde(default)]
    pub zone: String,
    /// `creating` until then (ms since the epoch).
    #[serde(default)]
    pub ready_at: u64,
    /// Its attachment is `attaching` until then.
    #[serde(default)]
    pub attach_at: u64,
    /// Its attachment is `detaching` until then, and then ends.
    #[serde(default)]
    pub detach_at: Option<u64>,
    /// Its type and performance (`None` in older state: gp2, as AWS's default).
    #[serde(default)]
    pub performance: Option<Performance>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Snapshot {
    pub volume: VolumeId,
    pub size_gib: u32,
    /// The key ARN, if encrypted.
    pub key: Option<String>,
    pub shared_with: Vec<AccountId>,
    /// `pending` (EBS direct API writes), `completed`, `error`.
    pub state: String,
    pub tags: Vec<Tag>,
    pub lineage: u64,
    pub blocks: BlockMap,
    /// Checksums of the blocks written through the EBS direct APIs, while `pending`.
    #[serde(default)]
    pub written: BTreeMap<u64, String>,
    /// A completed snapshot reads `pending` until then (ms since the epoch).
    #[serde(default)]
    pub ready_at: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Instance {
    pub state: String,
    pub state_reason: Option<String>,
    /// The ARN of the instance profile.
    pub profile: Option<String>,
    pub volumes: Vec<(VolumeId, String)>,
    pub tags: Vec<Tag>,
    pub user_data: String,
    /// Its availability zone (empty in older state: the region's first).
    #[serde(default)]
    pub zone: String,
    /// The subnet and security groups it was launched with.
    #[serde(default)]
    pub subnet: Option<String>,
    #[serde(default)]
    pub security_groups: Vec<String>,
    #[serde(default)]
    pub instance_type: String,
    /// A running instance reads `pending` until then (ms since the epoch).
    #[serde(default)]
    pub ready_at: u64,
    /// A `shutting-down` instance is `terminated` then.
    #[serde(default)]
    pub terminate_at: Option<u64>,
    /// Whether its metadata service requires session tokens (IMDSv2 only).
    #[serde(default)]
    pub imds_v2_only: bool,
    /// How it boots (the image it was launched from, its architecture, ...).
    #[serde(default)]
    pub boot: InstanceBoot,
    /// The devices whose volume is deleted when it terminates.
    #[serde(default)]
    pub deleted_on_termination: Vec<String>,
}

/// An image of EBS snapshots (RegisterImage).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Image {
    pub spec: RegisterImage,
    /// `pending` until then (ms since the epoch), then `available`.
    pub ready_at: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Queue {
    pub policy: Option<String>,
    /// Encrypted at rest with SQS-managed keys (queues made before this was modelled: no).
    #[serde(default)]
    pub encrypted: bool,
    /// How long a message is kept, in seconds (0: SQS's default, 4 days).
    #[serde(default)]
    pub retention_seconds: u64,
}
