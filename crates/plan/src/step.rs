//! What a plan is made of: steps (who makes which call, in which account and region), key
//! grants (who needs which KMS permissions on which key, and why), and cleanup steps.
//!
//! A step's [`Call`] is a closed enum: each variant is one thing the engine knows how to do,
//! with exactly the resources it needs, so the engine's dispatch is an exhaustive `match` and
//! a plan the engine cannot run cannot be built. The IAM action, the resource a policy names
//! and what the call creates all derive from the call.

use std::collections::BTreeMap;

use bulwark_model::{AccountId, Action, KeyRef, Region, RoleArn, SnapshotId};
use serde::{Deserialize, Serialize};

use crate::operation::Operation;
use crate::resource::{
    Attachment, InstanceRef, Machine, NewVolume, QueueRef, RepositoryRef, Resource, RestoredRef, Share,
    Snapshot, WorkerIdentity, WorkerRef,
};

/// Who performs a step.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Actor {
    /// The appliance's own identity: it assumes the other roles and runs session queues.
    Appliance,
    /// An IAM role the appliance assumes.
    Role(RoleArn),
    /// The role attached to a worker instance (through its instance profile): EC2 assumes
    /// it, not the appliance.
    Worker(RoleArn),
}

impl Actor {
    /// The role, if the actor is one.
    pub fn role(&self) -> Option<&RoleArn> {
        match self {
            Actor::Appliance => None,
            Actor::Role(role) | Actor::Worker(role) => Some(role),
        }
    }
}

/// How a step uses a KMS key; each use needs its own set of KMS actions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyUse {
    /// EBS encrypts or decrypts with the key on the caller's behalf (CreateVolume,
    /// CopySnapshot, AttachVolume, RunInstances): the actions AWS documents for EBS keys.
    Ebs,
    /// Bulwark reads the key's metadata (to confirm a snapshot's key is customer managed
    /// before sharing it).
    Describe,
    /// The EBS direct APIs decrypt the blocks of an encrypted snapshot they return
    /// (GetSnapshotBlock).
    DirectRead,
    /// The EBS direct APIs encrypt a snapshot they write (StartSnapshot, then
    /// PutSnapshotBlock): the actions AWS documents for the EBS direct APIs on encrypted
    /// snapshots.
    DirectWrite,
}

/// KMS actions EBS needs on a key, from the EBS user guide ("permissions to use KMS keys").
/// `kms:CreateGrant` is listed apart because it carries the condition
/// `kms:GrantIsForAWSResource = true`, which limits grants to those EBS creates.
pub const EBS_KEY_ACTIONS: &[Action] = &[
    Action::KmsDecrypt,
    Action::KmsDescribeKey,
    Action::KmsGenerateDataKeyWithoutPlaintext,
    Action::KmsReEncryptAll,
];

/// KMS actions the EBS direct APIs need on the key of a snapshot they write, besides
/// `kms:CreateGrant` (`reference/aws-rules.md`, "KMS keys and EBS": they also use
/// `kms:GenerateDataKey` and `kms:Encrypt`).
pub const DIRECT_WRITE_KEY_ACTIONS: &[Action] = &[
    Action::KmsDecrypt,
    Action::KmsDescribeKey,
    Action::KmsEncrypt,
    Action::KmsGenerateDataKey,
    Action::KmsGenerateDataKeyWithoutPlaintext,
];

/// The grant action, always conditioned on `kms:GrantIsForAWSResource`.
pub const CREATE_GRANT: Action = Action::KmsCreateGrant;

impl KeyUse {
    /// The KMS actions this use needs, `kms:CreateGrant` included where it applies.
    pub fn actions(self) -> Vec<Action> {
        match self {
            KeyUse::Ebs => std::iter::once(CREATE_GRANT)
                .chain(EBS_KEY_ACTIONS.iter().copied())
                .collect(),
            KeyUse::Describe => vec![Action::KmsDescribeKey],
            KeyUse::DirectRead => vec![Action::KmsDecrypt],
            KeyUse::DirectWrite => std::iter::once(CREATE_GRANT)
                .chain(DIRECT_WRITE_KEY_ACTIONS.iter().copied())
                .collect(),
        }
    }
}

/// One use of a key by a step, with the reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyNeed {
    /// The key.
    pub key: KeyRef,
    /// How it is used.
    pub usage: KeyUse,
    /// Why, in a sentence.
    pub why: String,
}

/// An IAM permission: an action on a resource pattern.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Permission {
    /// The IAM action, like `iam:PassRole`.
    pub action: Action,
    /// The resource ARN pattern, or `*` for actions without resource-level permissions.
    pub resource: String,
}

/// What a step does: one thing the engine knows how to do, with the resources it acts on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Call {
    /// The appliance assumes a role (`sts:AssumeRole`).
    AssumeRole {
        /// The role.
        role: RoleArn,
    },
    /// Crash-consistent snapshots of every volume of an instance (`ec2:CreateSnapshots`).
    CreateSnapshots {
        /// The instance.
        instance: InstanceRef,
        /// One per volume, in the instance's order.
        snapshots: Vec<Snapshot>,
    },
    /// A snapshot of a volume the plan created (`ec2:CreateSnapshot`).
    CreateSnapshot {
        /// The volume.
        volume: NewVolume,
        /// The snapshot.
        snapshot: Snapshot,
    },
    /// Reads a key's metadata to confirm it is customer managed (`kms:DescribeKey`).
    DescribeKey {
        /// The key.
        key: KeyRef,
    },
    /// Lets another account create volumes from a snapshot (`ec2:ModifySnapshotAttribute`).
    ShareSnapshot {
        /// The share.
        share: Share,
    },
    /// Copies a snapshot, called in the copy's region (`ec2:CopySnapshot`).
    CopySnapshot {
        /// The snapshot copied.
        source: Snapshot,
        /// The copy.
        copy: Snapshot,
    },
    /// Creates a volume, from a snapshot or empty (`ec2:CreateVolume`).
    CreateVolume {
        /// The snapshot; `None` for an empty volume of the size of the volume it restores.
        from: Option<Snapshot>,
        /// The volume.
        volume: NewVolume,
    },
    /// Attaches a volume to an instance (`ec2:AttachVolume`).
    AttachVolume {
        /// The attachment.
        attachment: Attachment,
    },
    /// A temporary role for a worker, trusted by EC2 (`iam:CreateRole`).
    CreateWorkerRole {
        /// Whose.
        identity: WorkerIdentity,
    },
    /// The worker permissions on the temporary role (`iam:PutRolePolicy`).
    PutWorkerRolePolicy {
        /// Whose.
        identity: WorkerIdentity,
    },
    /// The temporary role's instance profile (`iam:CreateInstanceProfile`).
    CreateWorkerProfile {
        /// Whose.
        identity: WorkerIdentity,
    },
    /// Puts the temporary role in its instance profile (`iam:AddRoleToInstanceProfile`).
    AddWorkerRoleToProfile {
        /// Whose.
        identity: WorkerIdentity,
    },
    /// The session's queue (`sqs:CreateQueue`).
    CreateQueue {
        /// The queue.
        queue: QueueRef,
    },
    /// Lets the worker's role use the queue (`sqs:SetQueueAttributes`).
    SetQueuePolicy {
        /// The queue.
        queue: QueueRef,
    },
    /// Launches a worker (`ec2:RunInstances`).
    LaunchWorker {
        /// The worker.
        worker: WorkerRef,
    },
    /// Launches the restored instance (`ec2:RunInstances`), from its image if the plan
    /// registers one.
    LaunchRestoredInstance {
        /// The instance.
        instance: RestoredRef,
    },
    /// Registers the image that boots the restored instance as the original booted, from
    /// snapshots of its restored volumes, at their original devices (`ec2:RegisterImage`).
    RegisterImage {
        /// The instance the image boots.
        image: RestoredRef,
        /// The snapshots of its restored volumes, the root first.
        snapshots: Vec<Snapshot>,
    },
    /// Gives the restored instance's volumes the delete-on-termination setting the original's
    /// had (`ec2:ModifyInstanceAttribute`); until then every one is deleted with it, so that a
    /// failed restore leaves none behind.
    KeepVolumesAsTheyWere {
        /// The instance.
        instance: RestoredRef,
    },
    /// Leaves the restored instance stopped, as asked (`ec2:StopInstances`).
    StopRestoredInstance {
        /// The instance.
        instance: RestoredRef,
    },
    /// The appliance sends the worker its task (`sqs:SendMessage`).
    SendTask {
        /// The queue.
        queue: QueueRef,
    },
    /// The worker takes its task from the queue (`sqs:ReceiveMessage`, by the worker).
    WorkerTakesTask {
        /// The queue.
        queue: QueueRef,
    },
    /// The worker reports its progress and result (`sqs:SendMessage`, by the worker).
    WorkerReports {
        /// The queue.
        queue: QueueRef,
    },
    /// The appliance follows the worker until it ends (`sqs:ReceiveMessage`).
    FollowWorker {
        /// The queue.
        queue: QueueRef,
    },
    /// Lists the blocks of a snapshot changed since the previous backup's base snapshot
    /// (`ebs:ListChangedBlocks`), for the worker to read only those.
    ListChangedBlocks {
        /// The snapshot.
        snapshot: Snapshot,
    },
    /// Reads a snapshot's blocks through the EBS direct APIs (`ebs:GetSnapshotBlock`).
    ReadSnapshotBlocks {
        /// The snapshot.
        snapshot: Snapshot,
    },
    /// Stores a backup in the repository (`s3:PutObject`).
    WriteBackup {
        /// The repository.
        repository: RepositoryRef,
        /// Who moves the data.
        by: DataPath,
    },
    /// Reads a restore point from the repository (`s3:GetObject`).
    ReadBackup {
        /// The repository.
        repository: RepositoryRef,
        /// Who moves the data.
        by: DataPath,
    },
    /// Writes a restore point into a new snapshot through the EBS direct APIs
    /// (`ebs:StartSnapshot`, then `PutSnapshotBlock` and `CompleteSnapshot`).
    WriteSnapshot {
        /// The snapshot written.
        snapshot: Snapshot,
    },
    /// A role proves it may make every removal it will make (`iam:SimulatePrincipalPolicy`
    /// on itself), before the session creates anything.
    ProveCleanup {
        /// The role.
        role: RoleArn,
    },
    /// Deletes an existing snapshot restore point that retention expires
    /// (`ec2:DeleteSnapshot`); one already gone counts as deleted.
    ExpireSnapshot {
        /// The restore point, as policies name it.
        snapshot: Snapshot,
        /// The snapshot.
        id: SnapshotId,
    },
    /// Removes what another step created.
    Remove {
        /// What and how.
        removal: Removal,
    },
}

/// Who moves image data between volumes and the repository.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DataPath {
    /// A worker, with the repository role's credentials it was given.
    Worker,
    /// The appliance itself, through the EBS direct APIs.
    Appliance,
}

/// A removal of what a step created: the one list of them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "remove", rename_all = "kebab-case")]
pub enum Removal {
    /// `ec2:DeleteSnapshot`.
    DeleteSnapshot {
        /// The snapshot.
        snapshot: Snapshot,
    },
    /// `ec2:ModifySnapshotAttribute`, removing the account.
    Unshare {
        /// The share.
        share: Share,
    },
    /// `ec2:DeleteVolume`.
    DeleteVolume {
        /// The volume.
        volume: NewVolume,
    },
    /// `ec2:DetachVolume`.
    DetachVolume {
        /// The attachment.
        attachment: Attachment,
    },
    /// `ec2:TerminateInstances`.
    Terminate {
        /// The instance.
        instance: Machine,
    },
    /// `iam:DeleteRole`.
    DeleteRole {
        /// Whose.
        identity: WorkerIdentity,
    },
    /// `iam:DeleteRolePolicy`.
    DeleteRolePolicy {
        /// Whose.
        identity: WorkerIdentity,
    },
    /// `iam:DeleteInstanceProfile`.
    DeleteInstanceProfile {
        /// Whose.
        identity: WorkerIdentity,
    },
    /// `iam:RemoveRoleFromInstanceProfile`.
    RemoveRoleFromProfile {
        /// Whose.
        identity: WorkerIdentity,
    },
    /// `sqs:DeleteQueue`.
    DeleteQueue {
        /// The queue.
        queue: QueueRef,
    },
    /// `ec2:DeregisterImage`.
    DeregisterImage {
        /// The instance the image boots.
        image: RestoredRef,
    },
}

impl Removal {
    /// The API it calls.
    pub fn action(&self) -> Action {
        match self {
            Removal::DeleteSnapshot { .. } => Action::Ec2DeleteSnapshot,
            Removal::Unshare { .. } => Action::Ec2ModifySnapshotAttribute,
            Removal::DeleteVolume { .. } => Action::Ec2DeleteVolume,
            Removal::DetachVolume { .. } => Action::Ec2DetachVolume,
            Removal::Terminate { .. } => Action::Ec2TerminateInstances,
            Removal::DeleteRole { .. } => Action::IamDeleteRole,
            Removal::DeleteRolePolicy { .. } => Action::IamDeleteRolePolicy,
            Removal::DeleteInstanceProfile { .. } => Action::IamDeleteInstanceProfile,
            Removal::RemoveRoleFromProfile { .. } => Action::IamRemoveRoleFromInstanceProfile,
            Removal::DeleteQueue { .. } => Action::SqsDeleteQueue,
            Removal::DeregisterImage { .. } => Action::Ec2DeregisterImage,
        }
    }

    /// What it removes.
    pub fn removes(&self) -> Resource {
        match self {
            Removal::DeleteSnapshot { snapshot } => Resource::Snapshot(snapshot.clone()),
            Removal::Unshare { share } => Resource::SnapshotShare(share.clone()),
            Removal::DeleteVolume { volume } => Resource::Volume(volume.clone()),
            Removal::DetachVolume { attachment } => Resource::Attachment(attachment.clone()),
            Removal::Terminate { instance } => Resource::from(instance.clone()),
            Removal::DeleteRole { identity } => Resource::TemporaryRole(identity.clone()),
            Removal::DeleteRolePolicy { identity } => Resource::TemporaryRolePolicy(identity.clone()),
            Removal::DeleteInstanceProfile { identity } => Resource::InstanceProfile(identity.clone()),
            Removal::RemoveRoleFromProfile { identity } => Resource::ProfileMembership(identity.clone()),
            Removal::DeleteQueue { queue } => Resource::Queue(queue.clone()),
            Removal::DeregisterImage { image } => Resource::Image(image.clone()),
        }
    }
}

impl Call {
    /// The API, as an IAM action.
    pub fn action(&self) -> Action {
        match self {
            Call::AssumeRole { .. } => Action::StsAssumeRole,
            Call::ProveCleanup { .. } => Action::IamSimulatePrincipalPolicy,
            Call::CreateSnapshots { .. } => Action::Ec2CreateSnapshots,
            Call::CreateSnapshot { .. } => Action::Ec2CreateSnapshot,
            Call::DescribeKey { .. } => Action::KmsDescribeKey,
            Call::ShareSnapshot { .. } => Action::Ec2ModifySnapshotAttribute,
            Call::CopySnapshot { .. } => Action::Ec2CopySnapshot,
            Call::CreateVolume { .. } => Action::Ec2CreateVolume,
            Call::AttachVolume { .. } => Action::Ec2AttachVolume,
            Call::CreateWorkerRole { .. } => Action::IamCreateRole,
            Call::PutWorkerRolePolicy { .. } => Action::IamPutRolePolicy,
            Call::CreateWorkerProfile { .. } => Action::IamCreateInstanceProfile,
            Call::AddWorkerRoleToProfile { .. } => Action::IamAddRoleToInstanceProfile,
            Call::CreateQueue { .. } => Action::SqsCreateQueue,
            Call::SetQueuePolicy { .. } => Action::SqsSetQueueAttributes,
            Call::LaunchWorker { .. } | Call::LaunchRestoredInstance { .. } => Action::Ec2RunInstances,
            Call::RegisterImage { .. } => Action::Ec2RegisterImage,
            Call::StopRestoredInstance { .. } => Action::Ec2StopInstances,
            Call::KeepVolumesAsTheyWere { .. } => Action::Ec2ModifyInstanceAttribute,
            Call::SendTask { .. } | Call::WorkerReports { .. } => Action::SqsSendMessage,
            Call::WorkerTakesTask { .. } | Call::FollowWorker { .. } => Action::SqsReceiveMessage,
            Call::ListChangedBlocks { .. } => Action::EbsListChangedBlocks,
            Call::ReadSnapshotBlocks { .. } => Action::EbsGetSnapshotBlock,
            Call::WriteBackup { .. } => Action::S3PutObject,
            Call::ReadBackup { .. } => Action::S3GetObject,
            Call::WriteSnapshot { .. } => Action::EbsStartSnapshot,
            Call::ExpireSnapshot { .. } => Action::Ec2DeleteSnapshot,
            Call::Remove { removal } => removal.action(),
        }
    }

    /// What the call acts on, as policies name it.
    pub fn resource(&self) -> Resource {
        match self {
            Call::AssumeRole { role } | Call::ProveCleanup { role } => Resource::Role(role.clone()),
            Call::CreateSnapshots { instance, .. } => Resource::Instance(instance.clone()),
            Call::CreateSnapshot { volume, .. } => Resource::Volume(volume.clone()),
            Call::DescribeKey { key } => Resource::Key(key.clone()),
            Call::ShareSnapshot { share } => Resource::Snapshot(share.snapshot.clone()),
            Call::CopySnapshot { source, .. } => Resource::Snapshot(source.clone()),
            Call::CreateVolume { from: Some(s), .. } => Resource::Snapshot(s.clone()),
            Call::CreateVolume { from: None, volume } => Resource::Volume(volume.clone()),
            Call::AttachVolume { attachment } => Resource::Attachment(attachment.clone()),
            Call::CreateWorkerRole { identity } => Resource::TemporaryRole(identity.clone()),
            Call::PutWorkerRolePolicy { identity } => Resource::TemporaryRolePolicy(identity.clone()),
            Call::CreateWorkerProfile { identity } => Resource::InstanceProfile(identity.clone()),
            Call::AddWorkerRoleToProfile { identity } => Resource::ProfileMembership(identity.clone()),
            Call::CreateQueue { queue }
            | Call::SetQueuePolicy { queue }
            | Call::SendTask { queue }
            | Call::WorkerTakesTask { queue }
            | Call::WorkerReports { queue }
            | Call::FollowWorker { queue } => Resource::Queue(queue.clone()),
            Call::LaunchWorker { worker } => Resource::Worker(worker.clone()),
            Call::LaunchRestoredInstance { instance }
            | Call::StopRestoredInstance { instance }
            | Call::KeepVolumesAsTheyWere { instance } => Resource::RestoredInstance(instance.clone()),
            Call::RegisterImage { image, .. } => Resource::Image(image.clone()),
            Call::ReadSnapshotBlocks { snapshot }
            | Call::ListChangedBlocks { snapshot }
            | Call::WriteSnapshot { snapshot }
            | Call::ExpireSnapshot { snapshot, .. } => Resource::Snapshot(snapshot.clone()),
            Call::WriteBackup { repository, .. } | Call::ReadBackup { repository, .. } => {
                Resource::Repository(repository.clone())
            }
            Call::Remove { removal } => removal.removes(),
        }
    }

    /// What the call creates.
    pub fn creates(&self) -> Vec<Resource> {
        match self {
            Call::CreateSnapshots { snapshots, .. } => {
                snapshots.iter().cloned().map(Resource::Snapshot).collect()
            }
            Call::CreateSnapshot { snapshot, .. } | Call::WriteSnapshot { snapshot } => {
                vec![Resource::Snapshot(snapshot.clone())]
            }
            Call::ShareSnapshot { share } => vec![Resource::SnapshotShare(share.clone())],
            Call::CopySnapshot { copy, .. } => vec![Resource::Snapshot(copy.clone())],
            Call::CreateVolume { volume, .. } => vec![Resource::Volume(volume.clone())],
            Call::AttachVolume { .. }
            | Call::CreateWorkerRole { .. }
            | Call::PutWorkerRolePolicy { .. }
            | Call::CreateWorkerProfile { .. }
            | Call::AddWorkerRoleToProfile { .. }
            | Call::CreateQueue { .. }
            | Call::LaunchWorker { .. }
            | Call::LaunchRestoredInstance { .. }
            | Call::RegisterImage { .. } => vec![self.resource()],
            Call::AssumeRole { .. }
            | Call::ProveCleanup { .. }
            | Call::DescribeKey { .. }
            | Call::SetQueuePolicy { .. }
            | Call::SendTask { .. }
            | Call::WorkerTakesTask { .. }
            | Call::WorkerReports { .. }
            | Call::FollowWorker { .. }
            | Call::ReadSnapshotBlocks { .. }
            | Call::ListChangedBlocks { .. }
            | Call::WriteBackup { .. }
            | Call::ReadBackup { .. }
            | Call::ExpireSnapshot { .. }
            | Call::StopRestoredInstance { .. }
            | Call::KeepVolumesAsTheyWere { .. }
            | Call::Remove { .. } => Vec::new(),
        }
    }
}

/// One API call of a plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// Who calls.
    pub actor: Actor,
    /// The account the call is made in (the actor's).
    pub account: AccountId,
    /// The region of the endpoint; `None` for global services (IAM).
    pub region: Option<Region>,
    /// What the call does, and on what.
    pub call: Call,
    /// Why the step exists, citing the rule that shapes it.
    pub why: String,
    /// Whether what it creates outlives the session (a restore point, a restored volume).
    /// Everything else it creates is removed by a cleanup step.
    pub kept: bool,
    /// Keys the call uses.
    pub keys: Vec<KeyNeed>,
    /// Further permissions the call needs besides its action on its resource.
    pub also: Vec<Permission>,
}

impl Step {
    /// The API, as an IAM action (`ec2:CopySnapshot`).
    pub fn action(&self) -> Action {
        self.call.action()
    }

    /// What the call acts on.
    pub fn resource(&self) -> Resource {
        self.call.resource()
    }

    /// What the call creates.
    pub fn creates(&self) -> Vec<Resource> {
        self.call.creates()
    }
}

/// The KMS permissions one role needs on one key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KeyGrant {
    /// The role (or the appliance) that needs them.
    pub role: Actor,
    /// The key.
    pub key: KeyRef,
    /// The KMS actions.
    pub actions: Vec<Action>,
    /// Why, one reason per step that needs them.
    pub why: Vec<String>,
}

impl KeyGrant {
    /// True when AWS grants this without any policy change: the AWS managed key `aws/ebs`
    /// allows every principal of its own account to use it through EBS.
    pub fn implicit(&self) -> bool {
        self.key.is_aws_managed()
    }
}

/// What will happen, in order, when an operation runs. It serializes to JSON and back
/// (`plan_json` in docs/plans.md), so a plan can be shown, approved, stored and run later.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "crate::json::PlanJson", try_from = "crate::json::PlanJson")]
pub struct Plan {
    /// The ARN of the appliance's identity (its role, or the backup account's root).
    pub appliance: String,
    /// The operation planned.
    pub operation: Operation,
    /// A one-line summary.
    pub summary: String,
    /// The API calls, in order.
    pub steps: Vec<Step>,
    /// The KMS permissions each role needs, derived from the steps.
    pub key_grants: Vec<KeyGrant>,
    /// The calls that remove what the steps created and do not keep, in order. They run
    /// whatever happens: at the end of the session, after a failure, or after a crash.
    pub cleanup: Vec<Step>,
    /// The calls that remove what the steps created to keep (restored volumes, new restore
    /// points), in order, run before the cleanup only when the session fails: a failed
    /// session leaves the estate as it found it.
    pub rollback: Vec<Step>,
}

impl Plan {
    /// Every step: main, cleanup and rollback.
    pub fn all_steps(&self) -> impl Iterator<Item = &Step> {
        self.steps.iter().chain(&self.cleanup).chain(&self.rollback)
    }
}

/// Collects the key needs of `steps` into one grant per (role, key), actions deduplicated in a
/// stable order.
pub(crate) fn key_grants<'a>(steps: impl Iterator<Item = &'a Step>) -> Vec<KeyGrant> {
    let mut grants: BTreeMap<(Actor, KeyRef), KeyGrant> = BTreeMap::new();
    for step in steps {
        for need in &step.keys {
            let grant = grants
                .entry((step.actor.clone(), need.key.clone()))
                .or_insert_with(|| KeyGrant {
                    role: step.actor.clone(),
                    key: need.key.clone(),
                    actions: Vec::new(),
                    why: Vec::new(),
                });
            for action in need.usage.actions() {
                if !grant.actions.contains(&action) {
                    grant.actions.push(action);
                }
            }
            if !grant.why.contains(&need.why) {
                grant.why.push(need.why.clone());
            }
        }
    }
    let mut grants: Vec<KeyGrant> = grants.into_values().collect();
    for g in &mut grants {
        g.actions.sort_unstable();
    }
    grants
}

/// An actor as an ARN; the appliance's ARN comes from the estate, so plans carry it.
pub(crate) fn actor_arn(actor: &Actor, appliance_arn: &str) -> String {
    match actor {
        Actor::Appliance => appliance_arn.to_owned(),
        Actor::Role(role) | Actor::Worker(role) => role.to_string(),
    }
}
