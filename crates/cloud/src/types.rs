//! The values cloud calls take and return, named as AWS names them.

use bulwark_model::{AccountId, ImageId, InstanceId, Performance, Region, SnapshotId, VolumeId, VolumeType};
use serde::{Deserialize, Serialize};

/// Credentials a call is signed with: long-term keys, or the temporary ones of an assumed
/// role or an instance profile.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// Session token of temporary credentials.
    pub session_token: Option<String>,
}

/// The access key id only: logs and panics never show the secret or the session token.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"..")
            .field("session_token", &self.session_token.as_ref().map(|_| ".."))
            .finish()
    }
}

/// Credentials that can be replaced while they are in use: a repository opened with the
/// repository role's session keeps working when the appliance sends a new session before the
/// old one expires. Clones share the same credentials.
#[derive(Clone, Debug)]
pub struct SharedCredentials(std::sync::Arc<std::sync::RwLock<Credentials>>);

impl SharedCredentials {
    /// Shares `credentials`.
    pub fn new(credentials: Credentials) -> Self {
        Self(std::sync::Arc::new(std::sync::RwLock::new(credentials)))
    }

    /// The credentials now.
    pub fn get(&self) -> Credentials {
        // A writer that panicked left whole credentials.
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the credentials for every clone.
    pub fn replace(&self, credentials: Credentials) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = credentials;
    }
}

impl From<Credentials> for SharedCredentials {
    fn from(credentials: Credentials) -> Self {
        Self::new(credentials)
    }
}

/// Who a set of credentials belongs to (sts:GetCallerIdentity).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallerIdentity {
    /// The account.
    pub account: AccountId,
    /// The principal ARN (`arn:aws:sts::A:assumed-role/NAME/SESSION` for a role session).
    pub arn: String,
}

/// A tag.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Tag {
    /// Key.
    pub key: String,
    /// Value.
    pub value: String,
}

impl Tag {
    /// A tag `key=value`.
    pub fn new(key: &str, value: impl Into<String>) -> Self {
        Self {
            key: key.to_owned(),
            value: value.into(),
        }
    }
}

/// The encryption of a volume or snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Encryption {
    /// The key ARN (`arn:aws:kms:R:A:key/ID`; the AWS managed key is also a key ARN).
    pub key_arn: String,
}

/// An EBS snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    /// Id.
    pub id: SnapshotId,
    /// Owner.
    pub owner: AccountId,
    /// Region.
    pub region: Region,
    /// The volume it was taken of (`vol-ffffffff` for copies and direct-API snapshots, as AWS
    /// writes it).
    pub volume: VolumeId,
    /// Size in GiB.
    pub size_gib: u32,
    /// `pending`, `completed` or `error`.
    pub state: String,
    /// The key, if encrypted.
    pub encryption: Option<Encryption>,
    /// Accounts allowed to create volumes from it.
    pub shared_with: Vec<AccountId>,
    /// Tags.
    pub tags: Vec<Tag>,
}

/// An EBS volume.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeInfo {
    /// Id.
    pub id: VolumeId,
    /// Owner.
    pub owner: AccountId,
    /// Region.
    pub region: Region,
    /// Size in GiB.
    pub size_gib: u32,
    /// The snapshot it was created from.
    pub snapshot: Option<SnapshotId>,
    /// `available`, `in-use` or `error`.
    pub state: String,
    /// The key, if encrypted.
    pub encryption: Option<Encryption>,
    /// The instance it is attached to, and the device name.
    pub attachment: Option<(InstanceId, String)>,
    /// The attachment's state: `attaching`, `attached` or `detaching`.
    #[serde(default)]
    pub attachment_state: Option<String>,
    /// Tags.
    pub tags: Vec<Tag>,
    /// Its type, IOPS and throughput (`None`: a type Bulwark does not know).
    #[serde(default)]
    pub performance: Option<Performance>,
}

/// An EC2 instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceInfo {
    /// Id.
    pub id: InstanceId,
    /// Owner.
    pub owner: AccountId,
    /// Region.
    pub region: Region,
    /// `pending`, `running`, `stopped`, `terminated`.
    pub state: String,
    /// Why it is in that state (`Client.InternalError: Client error on launch`).
    pub state_reason: Option<String>,
    /// Attached volumes and their device names, in attachment order.
    pub volumes: Vec<(VolumeId, String)>,
    /// The ARN of its instance profile.
    pub instance_profile: Option<String>,
    /// Tags.
    pub tags: Vec<Tag>,
    /// Its availability zone: the volumes it attaches must be in the same one.
    #[serde(default)]
    pub availability_zone: Option<String>,
    /// Its type and network.
    #[serde(default)]
    pub setup: InstanceSetup,
}

/// An instance's type, network and boot, as it was launched.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceSetup {
    /// Its type (`c6i.large`).
    pub instance_type: Option<String>,
    /// Its subnet.
    pub subnet: Option<String>,
    /// Its security groups' ids.
    pub security_groups: Vec<String>,
    /// How it boots.
    #[serde(default)]
    pub boot: InstanceBoot,
    /// The devices whose volume is deleted when it terminates (`DeleteOnTermination`).
    #[serde(default)]
    pub deleted_on_termination: Vec<String>,
}

/// How an instance boots: what an image registered to boot it again must say.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceBoot {
    /// The image it was launched from.
    pub image: Option<ImageId>,
    /// `x86_64`, `arm64`, `i386` or `x86_64_mac`.
    pub architecture: Option<String>,
    /// `legacy-bios`, `uefi` or `uefi-preferred`; `None`: the instance type's default.
    pub boot_mode: Option<String>,
    /// The root device's name (`/dev/xvda`).
    pub root_device: Option<String>,
    /// Whether enhanced networking with ENA is on.
    pub ena_support: bool,
    /// The name of its key pair.
    pub key_name: Option<String>,
}

/// A device of an image: a volume made from a snapshot when an instance is launched.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageDevice {
    /// The device name (`/dev/xvda`).
    pub device: String,
    /// The snapshot its volume is made from.
    pub snapshot: SnapshotId,
    /// Its size in GiB; `None`: the snapshot's.
    pub size_gib: Option<u32>,
    /// Its type, IOPS and throughput; `None`: gp2 at its baseline.
    pub performance: Option<Performance>,
    /// Whether the volume is deleted with the instance.
    pub delete_on_termination: bool,
}

/// What an image of EBS snapshots is: RegisterImage's parameters, and what DescribeImages
/// answers of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterImage {
    /// Its name: 3 to 128 characters, unique among the caller's images of the region.
    pub name: String,
    /// `x86_64`, `arm64`, `i386` or `x86_64_mac`.
    pub architecture: String,
    /// `legacy-bios`, `uefi` or `uefi-preferred`; `None`: the instance type's default.
    pub boot_mode: Option<String>,
    /// The root device's name: one of `devices`.
    pub root_device: String,
    /// `EnaSupport`.
    pub ena_support: bool,
    /// Its devices.
    pub devices: Vec<ImageDevice>,
    /// Tags of the image.
    pub tags: Vec<Tag>,
}

/// An image (DescribeImages).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    /// Id.
    pub id: ImageId,
    /// Owner.
    pub owner: AccountId,
    /// Region.
    pub region: Region,
    /// `pending`, `available`, `failed` or `deregistered`.
    pub state: String,
    /// What it is.
    pub image: RegisterImage,
}

/// CreateVolume's parameters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateVolume {
    /// The snapshot to create it from.
    pub snapshot: Option<SnapshotId>,
    /// Size in GiB; defaults to the snapshot's.
    pub size_gib: Option<u32>,
    /// `Encrypted`.
    pub encrypted: bool,
    /// `KmsKeyId`: a key id, key ARN, alias name or alias ARN.
    pub kms_key_id: Option<String>,
    /// Tags.
    pub tags: Vec<Tag>,
    /// The availability zone; `None` for the region's first.
    #[serde(default)]
    pub availability_zone: Option<String>,
    /// `ClientToken`: a call repeated with the same token (after a lost answer) creates one
    /// volume, not two.
    #[serde(default)]
    pub client_token: Option<String>,
    /// `VolumeType`; `None` for AWS's default (gp2).
    #[serde(default)]
    pub volume_type: Option<VolumeType>,
    /// `Iops`.
    #[serde(default)]
    pub iops: Option<u32>,
    /// `Throughput`, in MiB/s.
    #[serde(default)]
    pub throughput: Option<u32>,
}

/// CopySnapshot's parameters; the call is made in the destination region.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopySnapshot {
    /// The source region.
    pub source_region: Region,
    /// The source snapshot.
    pub source: SnapshotId,
    /// `Encrypted`.
    pub encrypted: bool,
    /// `KmsKeyId`.
    pub kms_key_id: Option<String>,
    /// Tags.
    pub tags: Vec<Tag>,
}

/// RunInstances' parameters (one instance).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunInstance {
    /// The instance profile, by ARN.
    pub instance_profile: Option<String>,
    /// The instance type.
    pub instance_type: String,
    /// User data: what the instance runs at boot.
    pub user_data: String,
    /// Tags.
    pub tags: Vec<Tag>,
    /// The subnet (`SubnetId`); `None` for the default VPC's subnet of the zone.
    #[serde(default)]
    pub subnet: Option<String>,
    /// Security groups (`SecurityGroupIds`); none for the VPC's default group.
    #[serde(default)]
    pub security_groups: Vec<String>,
    /// The availability zone when no subnet is given (a subnet decides the zone); `None` for
    /// the region's first.
    #[serde(default)]
    pub availability_zone: Option<String>,
    /// `ClientToken`: a launch repeated with the same token starts one instance, not two.
    #[serde(default)]
    pub client_token: Option<String>,
    /// Whether the instance metadata service requires session tokens (IMDSv2,
    /// `HttpTokens=required`, hop limit 1).
    #[serde(default)]
    pub imds_v2_only: bool,
    /// The image (`ImageId`); `None` for the machine image the cloud gives workers.
    #[serde(default)]
    pub image: Option<ImageId>,
    /// The key pair (`KeyName`).
    #[serde(default)]
    pub key_name: Option<String>,
}

/// A KMS key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    /// The key ARN.
    pub arn: String,
    /// Owner.
    pub account: AccountId,
    /// `CUSTOMER` or `AWS`.
    pub manager: KeyManager,
    /// `Enabled`, `Disabled`, `PendingDeletion`.
    pub state: String,
    /// `SYMMETRIC_DEFAULT` or an asymmetric spec.
    pub spec: String,
}

/// Who manages a KMS key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyManager {
    /// A customer managed key: its policy is the customer's.
    Customer,
    /// An AWS managed key (`aws/ebs`): its policy cannot be changed.
    Aws,
}

/// A KMS grant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// Id.
    pub id: String,
    /// Who may use the key through it.
    pub grantee: String,
    /// The operations it allows (`Decrypt`, ...).
    pub operations: Vec<String>,
}

/// An IAM role.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleInfo {
    /// ARN.
    pub arn: String,
    /// Its trust policy.
    pub trust_policy: String,
    /// Its inline policies: name and document.
    pub inline_policies: Vec<(String, String)>,
}

/// A message received from a queue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// The handle to delete it with.
    pub receipt: String,
    /// The body.
    pub body: String,
}

/// One block of a snapshot, as the EBS direct APIs list it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockRef {
    /// The block index (offset / 512 KiB).
    pub index: u64,
    /// The token GetSnapshotBlock needs; empty for a block that ListChangedBlocks reports as
    /// removed in the second snapshot (it reads as zeros).
    pub token: String,
}

/// A page of a block listing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockPage {
    /// The blocks of this page.
    pub blocks: Vec<BlockRef>,
    /// The volume size in GiB.
    pub volume_size_gib: u32,
    /// The token of the next page.
    pub next_token: Option<String>,
}

/// StartSnapshot's parameters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartSnapshot {
    /// Volume size in GiB.
    pub volume_size_gib: u32,
    /// The parent snapshot whose blocks the new one starts from.
    pub parent: Option<SnapshotId>,
    /// `Encrypted`.
    pub encrypted: bool,
    /// `KmsKeyArn` (a key ARN, never an alias).
    pub kms_key_arn: Option<String>,
    /// Tags.
    pub tags: Vec<Tag>,
    /// `ClientToken`: a start repeated with the same token starts one snapshot, not two.
    #[serde(default)]
    pub client_token: Option<String>,
}

/// The EBS block size, which the EBS direct APIs read and write.
pub const EBS_BLOCK_SIZE: u64 = 512 * 1024;
