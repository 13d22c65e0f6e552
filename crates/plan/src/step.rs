//! What a plan is made of: steps (who calls which API on what), key grants (who needs which
//! KMS permissions on which key, and why), and cleanup steps.

use std::collections::BTreeMap;

use bulwark_model::{AccountId, Action, KeyRef, Region, RoleArn};
use serde::ser::{SerializeStruct, Serializer};
use serde::Serialize;

use crate::operation::Operation;
use crate::resource::Resource;

/// Who performs a step.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
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
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyNeed {
    /// The key.
    pub key: KeyRef,
    /// How it is used.
    pub usage: KeyUse,
    /// Why, in a sentence.
    pub why: String,
}

/// An IAM permission: an action on a resource pattern.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Permission {
    /// The IAM action, like `iam:PassRole`.
    pub action: Action,
    /// The resource ARN pattern, or `*` for actions without resource-level permissions.
    pub resource: String,
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
    /// The API, as an IAM action (`ec2:CopySnapshot`).
    pub action: Action,
    /// What the call acts on.
    pub resource: Resource,
    /// Why the step exists, citing the rule that shapes it.
    pub why: String,
    /// What the call creates.
    pub creates: Vec<Resource>,
    /// Whether what it creates outlives the session (a restore point, a restored volume).
    /// Everything else it creates is removed by a cleanup step.
    pub kept: bool,
    /// Keys the call uses.
    pub keys: Vec<KeyNeed>,
    /// Further permissions the call needs besides `action` on `resource`.
    pub also: Vec<Permission>,
}

/// The KMS permissions one role needs on one key.
#[derive(Clone, Debug, PartialEq, Eq)]
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

/// What will happen, in order, when an operation runs.
#[derive(Clone, Debug, PartialEq, Eq)]
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

// ---- JSON form: the shape scripts rely on (documented in docs/plans.md) -------------------

/// An actor as an ARN; the appliance's ARN comes from the estate, so plans carry it.
pub(crate) fn actor_arn(actor: &Actor, appliance_arn: &str) -> String {
    match actor {
        Actor::Appliance => appliance_arn.to_owned(),
        Actor::Role(role) | Actor::Worker(role) => role.to_string(),
    }
}

impl Serialize for Plan {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let a = self.appliance.as_str();
        fn steps<'p>(steps: &'p [Step], a: &'p str) -> Vec<StepJson<'p>> {
            steps
                .iter()
                .map(|step| StepJson {
                    step,
                    appliance_arn: a,
                })
                .collect()
        }
        let grants: Vec<KeyGrantJson> = self
            .key_grants
            .iter()
            .map(|grant| KeyGrantJson {
                grant,
                appliance_arn: a,
            })
            .collect();
        let mut st = s.serialize_struct("Plan", 6)?;
        st.serialize_field("operation", self.operation.name())?;
        st.serialize_field("summary", &self.summary)?;
        st.serialize_field("steps", &steps(&self.steps, a))?;
        st.serialize_field("key_grants", &grants)?;
        st.serialize_field("cleanup", &steps(&self.cleanup, a))?;
        st.serialize_field("rollback", &steps(&self.rollback, a))?;
        st.end()
    }
}

/// A step with its actor resolved to an ARN, for JSON output.
pub(crate) struct StepJson<'a> {
    pub step: &'a Step,
    pub appliance_arn: &'a str,
}

impl Serialize for StepJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let step = self.step;
        let mut st = s.serialize_struct("Step", 9)?;
        st.serialize_field("actor", &actor_arn(&step.actor, self.appliance_arn))?;
        st.serialize_field("account", &step.account)?;
        st.serialize_field("region", step.region.as_ref().map_or("global", Region::as_str))?;
        st.serialize_field("action", &step.action)?;
        st.serialize_field("resource", &step.resource.to_string())?;
        st.serialize_field("why", &step.why)?;
        let creates: Vec<String> = step.creates.iter().map(ToString::to_string).collect();
        st.serialize_field("creates", &creates)?;
        st.serialize_field("kept", &step.kept)?;
        let keys: Vec<String> = step.keys.iter().map(|k| k.key.arn()).collect();
        st.serialize_field("keys", &keys)?;
        st.end()
    }
}

/// A key grant with its role resolved to an ARN, for JSON output.
pub(crate) struct KeyGrantJson<'a> {
    pub grant: &'a KeyGrant,
    pub appliance_arn: &'a str,
}

impl Serialize for KeyGrantJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let g = self.grant;
        let mut st = s.serialize_struct("KeyGrant", 5)?;
        st.serialize_field("role", &actor_arn(&g.role, self.appliance_arn))?;
        st.serialize_field("key", &g.key.arn())?;
        st.serialize_field("actions", &g.actions)?;
        st.serialize_field("why", &g.why.join(" "))?;
        st.serialize_field("implicit", &g.implicit())?;
        st.end()
    }
}
