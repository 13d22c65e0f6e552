//! The cloud Bulwark's engine talks to: the subset of EC2, the EBS direct APIs, KMS, IAM, STS,
//! SQS and S3 that plans use, as one trait ([`Cloud`]) whose errors carry AWS's codes
//! ([`CloudError`]). Two implementations exist: the embedded cloud (`bulwark-sim`, in process,
//! the default) and AWS itself (through the AWS SDK for Rust). A plan that runs on one must run
//! on the other, so the trait speaks AWS's terms, not Bulwark's.
//!
//! Also here, because both clouds and the preflight check need it: the IAM policy evaluator
//! ([`policy`]), which decides a request the way AWS documents it (explicit deny, wildcards,
//! `NotAction`, conditions, the cross-account intersection of identity and resource policies).
//!
//! The trait is synchronous: the engine runs workers and transfers on threads, and the AWS
//! implementation drives the SDK on its own runtime (as `bulwark-s3` does).
//!
//! This crate does no I/O and must not depend on the AWS SDK, on the planner or on the engine.
#![deny(missing_docs)]

pub mod checksum;
mod error;
pub mod policy;
mod types;

use std::sync::Arc;
use std::time::Duration;

use bulwark_model::{InstanceId, Region, RoleArn, SnapshotId, VolumeId};
use bulwark_storage::Backend;

pub use error::{CloudError, ErrorKind, Result};
pub use types::*;

/// The calls Bulwark makes. Every call is signed by `who`; regional calls go to `region`.
/// Names and parameters follow the AWS APIs; each method's doc names the IAM action it needs.
pub trait Cloud: Send + Sync {
    // ---- STS ------------------------------------------------------------------------------

    /// `sts:GetCallerIdentity`.
    fn caller_identity(&self, who: &Credentials) -> Result<CallerIdentity>;
    /// `sts:AssumeRole`, with `sts:ExternalId` when the role's trust requires it.
    fn assume_role(
        &self,
        who: &Credentials,
        role: &RoleArn,
        session_name: &str,
        external_id: Option<&str>,
    ) -> Result<Credentials>;

    // ---- EC2 ------------------------------------------------------------------------------

    /// `ec2:DescribeInstances` of the given instances.
    fn describe_instances(
        &self,
        who: &Credentials,
        region: &Region,
        ids: &[InstanceId],
    ) -> Result<Vec<InstanceInfo>>;
    /// `ec2:DescribeVolumes` of the given volumes.
    fn describe_volumes(
        &self,
        who: &Credentials,
        region: &Region,
        ids: &[VolumeId],
    ) -> Result<Vec<VolumeInfo>>;
    /// `ec2:DescribeSnapshots` of the given snapshots (owned or shared with the caller).
    fn describe_snapshots(
        &self,
        who: &Credentials,
        region: &Region,
        ids: &[SnapshotId],
    ) -> Result<Vec<SnapshotInfo>>;
    /// `ec2:CreateSnapshots`: crash-consistent snapshots of every volume of an instance, in
    /// the order of its volumes. Encrypted with each volume's key; takes no key.
    fn create_snapshots(
        &self,
        who: &Credentials,
        region: &Region,
        instance: &InstanceId,
        tags: &[Tag],
    ) -> Result<Vec<SnapshotInfo>>;
    /// `ec2:CreateSnapshot` of one volume.
    fn create_snapshot(
        &self,
        who: &Credentials,
        region: &Region,
        volume: &VolumeId,
        tags: &[Tag],
    ) -> Result<SnapshotInfo>;
    /// `ec2:CopySnapshot`, called in the destination `region`.
    fn copy_snapshot(&self, who: &Credentials, region: &Region, copy: &CopySnapshot) -> Result<SnapshotId>;
    /// `ec2:ModifySnapshotAttribute` on `createVolumePermission`: adds and removes accounts.
    fn modify_snapshot_sharing(
        &self,
        who: &Credentials,
        region: &Region,
        snapshot: &SnapshotId,
        add: &[bulwark_model::AccountId],
        remove: &[bulwark_model::AccountId],
    ) -> Result<()>;
    /// `ec2:DeleteSnapshot`.
    fn delete_snapshot(&self, who: &Credentials, region: &Region, snapshot: &SnapshotId) -> Result<()>;
    /// `ec2:CreateVolume`.
    fn create_volume(&self, who: &Credentials, region: &Region, volume: &CreateVolume) -> Result<VolumeInfo>;
    /// `ec2:DeleteVolume`.
    fn delete_volume(&self, who: &Credentials, region: &Region, volume: &VolumeId) -> Result<()>;
    /// `ec2:AttachVolume` as `device`.
    fn attach_volume(
        &self,
        who: &Credentials,
        region: &Region,
        volume: &VolumeId,
        instance: &InstanceId,
        device: &str,
    ) -> Result<()>;
    /// `ec2:DetachVolume`.
    fn detach_volume(&self, who: &Credentials, region: &Region, volume: &VolumeId) -> Result<()>;
    /// `ec2:RunInstances` of one instance (with `iam:PassRole` on its profile's role).
    fn run_instance(&self, who: &Credentials, region: &Region, run: &RunInstance) -> Result<InstanceInfo>;
    /// `ec2:TerminateInstances` of one instance.
    fn terminate_instance(&self, who: &Credentials, region: &Region, instance: &InstanceId) -> Result<()>;
    /// `ec2:GetEbsDefaultKmsKeyId`: the key ARN new encrypted volumes get by default.
    fn ebs_default_key(&self, who: &Credentials, region: &Region) -> Result<String>;
    /// `ec2:GetEbsEncryptionByDefault`.
    fn ebs_encryption_by_default(&self, who: &Credentials, region: &Region) -> Result<bool>;

    // ---- EBS direct APIs --------------------------------------------------------------------

    /// `ebs:ListSnapshotBlocks`: the written blocks of a completed snapshot, a page at a time.
    fn list_snapshot_blocks(
        &self,
        who: &Credentials,
        region: &Region,
        snapshot: &SnapshotId,
        next_token: Option<&str>,
    ) -> Result<BlockPage>;
    /// `ebs:ListChangedBlocks`: the blocks of `second` that differ from `first`, which must
    /// be of the same lineage.
    fn list_changed_blocks(
        &self,
        who: &Credentials,
        region: &Region,
        first: &SnapshotId,
        second: &SnapshotId,
        next_token: Option<&str>,
    ) -> Result<BlockPage>;
    /// `ebs:GetSnapshotBlock`: the block's data and its SHA-256 checksum (base64).
    fn get_snapshot_block(
        &self,
        who: &Credentials,
        region: &Region,
        snapshot: &SnapshotId,
        block: &BlockRef,
    ) -> Result<(Vec<u8>, String)>;
    /// `ebs:StartSnapshot`.
    fn start_snapshot(&self, who: &Credentials, region: &Region, start: &StartSnapshot)
        -> Result<SnapshotId>;
    /// `ebs:PutSnapshotBlock` with the data's SHA-256 checksum (base64).
    fn put_snapshot_block(
        &self,
        who: &Credentials,
        region: &Region,
        snapshot: &SnapshotId,
        index: u64,
        data: &[u8],
        checksum: &str,
    ) -> Result<()>;
    /// `ebs:CompleteSnapshot` with the number of blocks written and the linear checksum
    /// (SHA-256 over the block checksums in index order, base64).
    fn complete_snapshot(
        &self,
        who: &Credentials,
        region: &Region,
        snapshot: &SnapshotId,
        changed_blocks: u64,
        checksum: &str,
    ) -> Result<()>;

    // ---- KMS --------------------------------------------------------------------------------

    /// `kms:DescribeKey` of a key id, key ARN, alias name or alias ARN.
    fn describe_key(&self, who: &Credentials, region: &Region, key: &str) -> Result<KeyInfo>;
    /// `kms:GetKeyPolicy` (policy name `default`).
    fn get_key_policy(&self, who: &Credentials, region: &Region, key: &str) -> Result<String>;
    /// `kms:ListGrants`.
    fn list_grants(&self, who: &Credentials, region: &Region, key: &str) -> Result<Vec<Grant>>;
    /// `kms:GenerateDataKey` (AES-256): the plaintext and its encrypted form.
    fn generate_data_key(&self, who: &Credentials, region: &Region, key: &str) -> Result<(Vec<u8>, Vec<u8>)>;
    /// `kms:Decrypt` of what `generate_data_key` returned.
    fn decrypt(&self, who: &Credentials, region: &Region, ciphertext: &[u8]) -> Result<Vec<u8>>;

    // ---- IAM --------------------------------------------------------------------------------

    /// `iam:GetRole`, with its inline policies (`iam:GetRolePolicy`).
    fn get_role(&self, who: &Credentials, role: &RoleArn) -> Result<RoleInfo>;
    /// `iam:CreateRole` in the caller's account.
    fn create_role(
        &self,
        who: &Credentials,
        path: &str,
        name: &str,
        trust_policy: &str,
        tags: &[Tag],
    ) -> Result<RoleArn>;
    /// `iam:DeleteRole`.
    fn delete_role(&self, who: &Credentials, role: &RoleArn) -> Result<()>;
    /// `iam:PutRolePolicy`.
    fn put_role_policy(&self, who: &Credentials, role: &RoleArn, name: &str, document: &str) -> Result<()>;
    /// `iam:DeleteRolePolicy`.
    fn delete_role_policy(&self, who: &Credentials, role: &RoleArn, name: &str) -> Result<()>;
    /// `iam:CreateInstanceProfile` in the caller's account; returns its ARN.
    fn create_instance_profile(&self, who: &Credentials, path: &str, name: &str) -> Result<String>;
    /// `iam:DeleteInstanceProfile`, by ARN.
    fn delete_instance_profile(&self, who: &Credentials, profile: &str) -> Result<()>;
    /// `iam:AddRoleToInstanceProfile`.
    fn add_role_to_instance_profile(&self, who: &Credentials, profile: &str, role: &RoleArn) -> Result<()>;
    /// `iam:RemoveRoleFromInstanceProfile`.
    fn remove_role_from_instance_profile(
        &self,
        who: &Credentials,
        profile: &str,
        role: &RoleArn,
    ) -> Result<()>;
    /// `iam:ListInstanceProfilesForRole`: the ARNs of the profiles holding the role.
    fn list_instance_profiles_for_role(&self, who: &Credentials, role: &RoleArn) -> Result<Vec<String>>;

    // ---- SQS --------------------------------------------------------------------------------

    /// `sqs:CreateQueue`; returns its URL.
    fn create_queue(&self, who: &Credentials, region: &Region, name: &str) -> Result<String>;
    /// `sqs:SetQueueAttributes` with the queue's access policy.
    fn set_queue_policy(&self, who: &Credentials, region: &Region, queue: &str, policy: &str) -> Result<()>;
    /// `sqs:DeleteQueue`.
    fn delete_queue(&self, who: &Credentials, region: &Region, queue: &str) -> Result<()>;
    /// `sqs:SendMessage`.
    fn send_message(&self, who: &Credentials, region: &Region, queue: &str, body: &str) -> Result<()>;
    /// `sqs:ReceiveMessage`, waiting up to `wait` for at least one message.
    fn receive_messages(
        &self,
        who: &Credentials,
        region: &Region,
        queue: &str,
        wait: Duration,
    ) -> Result<Vec<Message>>;
    /// `sqs:DeleteMessage`.
    fn delete_message(&self, who: &Credentials, region: &Region, queue: &str, receipt: &str) -> Result<()>;

    // ---- S3 ---------------------------------------------------------------------------------

    /// The repository's objects under `s3://bucket/prefix`, accessed with `who`'s credentials
    /// (`s3:ListBucket`, `s3:GetObject`, `s3:PutObject`, `s3:DeleteObject`), as they are at
    /// each request: replacing them renews the access of an open repository.
    fn object_store(
        &self,
        who: &SharedCredentials,
        region: &Region,
        bucket: &str,
        prefix: &str,
    ) -> Result<Box<dyn Backend>>;
}

/// An EBS volume as a program on the instance sees it: a block device.
pub trait Device: Send + Sync {
    /// Its size in bytes.
    fn size(&self) -> u64;
    /// Reads `buf.len()` bytes at `offset`.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()>;
    /// Writes `data` at `offset`.
    fn write_at(&self, offset: u64, data: &[u8]) -> std::io::Result<()>;
    /// Makes written data durable.
    fn flush(&self) -> std::io::Result<()>;
    /// The indexes of the 512 KiB blocks that were ever written, where the device can tell
    /// (the embedded cloud's volumes); every other block reads as zeros. `None` if unknown.
    fn written_blocks(&self) -> Option<Vec<u64>> {
        None
    }
}

/// What a program running on an instance has: its identity (the instance profile's role
/// credentials, from the instance metadata service on AWS), its attached devices, and the cloud
/// to call.
pub trait InstanceHost: Send + Sync {
    /// The instance.
    fn instance_id(&self) -> &InstanceId;
    /// Its region.
    fn region(&self) -> &Region;
    /// The credentials of the instance profile's role.
    fn credentials(&self) -> Result<Credentials>;
    /// The volume attached as `name` (`/dev/sdf`). `volume`, the attached volume's id where the
    /// caller knows it, finds the device where the instance does not name it as it was attached
    /// (NVMe devices on Nitro instances).
    fn device(&self, name: &str, volume: Option<&VolumeId>) -> std::io::Result<Arc<dyn Device>>;
    /// The cloud, for calls with [`InstanceHost::credentials`].
    fn cloud(&self) -> Arc<dyn Cloud>;
    /// False once the instance is terminated or has died: the program must stop.
    fn running(&self) -> bool;
}

/// What an instance runs at boot: called on a thread of its own with the instance's host and
/// its user data. The engine installs the worker here; it is the embedded cloud's machine image.
pub type Boot = Arc<dyn Fn(Arc<dyn InstanceHost>, String) + Send + Sync>;
