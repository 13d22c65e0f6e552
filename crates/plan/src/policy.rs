//! Least-privilege policies derived from a plan: for every role that acts, the identity
//! policy that allows exactly its steps, and its trust policy; for every customer managed key,
//! the key-policy statements that let those roles use it. KMS needs both sides: a key policy
//! must allow a principal explicitly (or delegate to its account's IAM), and across accounts
//! the caller's IAM policy must allow the same actions (`reference/aws-rules.md`, "IAM and
//! STS"). The AWS managed key `aws/ebs` gets no statement: its policy cannot be edited, and
//! already allows principals of its own account through EBS.
//!
//! Worker roles get the permissions the seeds document for worker IAM roles ("worker
//! deployment role permissions in production accounts"), exactly.

use std::collections::{BTreeMap, BTreeSet};

use bulwark_model::iam::{PolicyDocument, Principals, Statement};
use bulwark_model::{Action, Estate};
use serde::Serialize;

use crate::step::{actor_arn, Actor, Plan, CREATE_GRANT};

/// The permissions of a worker role, as the seeds list them: the SSM agent's channels, SQS for
/// the session queue, and the IAM reads a worker uses to check its own role.
const WORKER_ACTIONS: &[Action] = &[
    Action::Ec2MessagesAcknowledgeMessage,
    Action::Ec2MessagesDeleteMessage,
    Action::Ec2MessagesFailMessage,
    Action::Ec2MessagesGetEndpoint,
    Action::Ec2MessagesGetMessages,
    Action::Ec2MessagesSendReply,
    Action::IamGetContextKeysForPrincipalPolicy,
    Action::IamGetRole,
    Action::IamListInstanceProfilesForRole,
    Action::IamSimulatePrincipalPolicy,
    Action::SqsDeleteMessage,
    Action::SqsListQueues,
    Action::SqsReceiveMessage,
    Action::SqsSendMessage,
    Action::SsmDescribeAssociation,
    Action::SsmDescribeDocument,
    Action::SsmGetDeployablePatchSnapshotForInstance,
    Action::SsmGetDocument,
    Action::SsmGetManifest,
    Action::SsmGetParameter,
    Action::SsmGetParameters,
    Action::SsmListAssociations,
    Action::SsmListInstanceAssociations,
    Action::SsmPutComplianceItems,
    Action::SsmPutConfigurePackageResult,
    Action::SsmPutInventory,
    Action::SsmUpdateAssociationStatus,
    Action::SsmUpdateInstanceAssociationStatus,
    Action::SsmUpdateInstanceInformation,
    Action::SsmMessagesCreateControlChannel,
    Action::SsmMessagesCreateDataChannel,
    Action::SsmMessagesOpenControlChannel,
    Action::SsmMessagesOpenDataChannel,
];

/// What discovery reads with an account's backup role, all read-only and on `"*"` (EC2's
/// describe calls take no resource): the instances and their volumes, the region's EBS
/// encryption defaults, and `kms:DescribeKey` to tell `aws/ebs` from a customer managed key.
pub const DISCOVERY_ACTIONS: &[Action] = &[
    Action::Ec2DescribeInstances,
    Action::Ec2DescribeVolumes,
    Action::Ec2GetEbsDefaultKmsKeyId,
    Action::Ec2GetEbsEncryptionByDefault,
    Action::KmsDescribeKey,
];

/// The statement that lets a backup role discover its account ([`DISCOVERY_ACTIONS`]), part of
/// its policy beside what the plans need.
pub fn discovery_statement() -> Statement {
    Statement::allow(DISCOVERY_ACTIONS.iter().map(|a| a.as_str()), ["*"]).with_sid("BulwarkDiscovery")
}

/// What the appliance's repository maintenance (forgetting expired restore points, prune,
/// verify) does with the repository role: list the repository, read every object, write the
/// new index, repacked packs and its lock, and delete forgotten restore points, the packs and
/// index files a prune replaces, and its lock.
pub const MAINTENANCE_ACTIONS: &[Action] = &[
    Action::S3ListBucket,
    Action::S3GetObject,
    Action::S3PutObject,
    Action::S3DeleteObject,
];

/// The statements that let the repository role maintain the repository
/// ([`MAINTENANCE_ACTIONS`], listing on the bucket, the rest on the repository's objects),
/// part of its policy beside what the plans need; `None` when the estate has no repository.
pub fn maintenance_statements(estate: &Estate) -> Option<(bulwark_model::RoleArn, Vec<Statement>)> {
    let repository = estate.repository.as_ref()?;
    let [bucket, objects] = crate::Resource::Repository(crate::RepositoryRef {
        bucket: repository.bucket.clone(),
        prefix: repository.prefix.clone(),
    })
    .iam_resources(estate.partition())
    .try_into()
    .ok()?;
    let (list, rest) = MAINTENANCE_ACTIONS.split_at(1);
    Some((
        repository.role.clone(),
        vec![
            Statement::allow(list.iter().map(|a| a.as_str()), [bucket]).with_sid("BulwarkMaintenanceList"),
            Statement::allow(rest.iter().map(|a| a.as_str()), [objects]).with_sid("BulwarkMaintenance"),
        ],
    ))
}

/// The condition AWS recommends on `kms:CreateGrant`: grants only for AWS resources (EBS).
const GRANT_IS_FOR_AWS_RESOURCE: &str = "kms:GrantIsForAWSResource";

/// The permissions policy of a worker role (production accounts' pre-configured role, and
/// the temporary roles of the backup account), as the seeds document it.
pub fn worker_role_permissions() -> PolicyDocument {
    PolicyDocument::new(vec![Statement::allow(
        WORKER_ACTIONS.iter().map(|a| a.as_str()),
        ["*"],
    )])
}

/// The trust policy of a worker role, as the seeds document it: EC2 may assume it.
pub fn worker_role_trust() -> PolicyDocument {
    PolicyDocument::new(vec![Statement::allow(
        [Action::StsAssumeRole.as_str()],
        Vec::<String>::new(),
    )
    .on_any_resource()
    .for_principal(Principals::service("ec2.amazonaws.com"))])
}

/// The policies of one role (or of the appliance's identity).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RolePolicy {
    /// The role ARN (or the appliance's principal ARN).
    pub role: String,
    /// What the role is, in a few words.
    pub purpose: String,
    /// Its identity (permissions) policy.
    pub policy: PolicyDocument,
    /// Its trust policy; `None` where Bulwark does not decide it (the appliance's own).
    pub trust: Option<PolicyDocument>,
}

/// Statements to add to one customer managed key's key policy.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KeyPolicy {
    /// The key ARN.
    pub key: String,
    /// Statements to add to its key policy.
    pub statements: Vec<Statement>,
}

/// Everything a plan needs in IAM and KMS.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Policies {
    /// One entry per acting role, appliance first.
    pub roles: Vec<RolePolicy>,
    /// One entry per customer managed key used.
    pub keys: Vec<KeyPolicy>,
}

/// Derives the least-privilege policies `plan` needs.
pub fn policies(estate: &Estate, plan: &Plan) -> Policies {
    let partition = estate.partition();
    // IAM permissions per actor, from the steps. KMS permissions come from the key grants.
    let mut permissions: BTreeMap<Actor, BTreeMap<Action, BTreeSet<String>>> = BTreeMap::new();
    for step in plan.all_steps() {
        let perms = permissions.entry(step.actor.clone()).or_default();
        if step.action().service() != "kms" {
            perms
                .entry(step.action())
                .or_default()
                .extend(step.resource().iam_resources(partition));
        }
        for p in &step.also {
            perms.entry(p.action).or_default().insert(p.resource.clone());
        }
    }

    let appliance_arn = plan.appliance.as_str();
    let mut roles = Vec::new();
    for (actor, perms) in &permissions {
        let arn = actor_arn(actor, appliance_arn);
        let (purpose, policy, trust) = match actor {
            Actor::Worker(role) => {
                let temporary = role
                    .as_str()
                    .contains(&format!(":role/{}/", crate::resource::NAME_PREFIX));
                let (purpose, trust) = if temporary {
                    (
                        "temporary worker role, created and removed by the worker deployment role",
                        worker_role_trust(),
                    )
                } else {
                    // The seeds require that the appliance can assume the worker role too (to
                    // check it), under the account's external id like every other role there.
                    let external_id = estate
                        .account(role.account())
                        .and_then(|a| a.external_id.as_deref());
                    let mut trust = worker_role_trust();
                    trust
                        .statements
                        .push(assume_statement(appliance_arn, external_id));
                    (
                        "pre-configured worker role (kept); put it in an instance profile",
                        trust,
                    )
                };
                (purpose.to_owned(), worker_role_permissions(), Some(trust))
            }
            Actor::Appliance => (
                "the appliance's identity".to_owned(),
                identity_policy(perms, actor, plan),
                None,
            ),
            Actor::Role(role) => {
                let external_id = estate
                    .account(role.account())
                    .and_then(|a| a.external_id.as_deref());
                let trust = PolicyDocument::new(vec![assume_statement(appliance_arn, external_id)]);
                (
                    role_purpose(estate, role),
                    identity_policy(perms, actor, plan),
                    Some(trust),
                )
            }
        };
        roles.push(RolePolicy {
            role: arn,
            purpose,
            policy,
            trust,
        });
    }

    let mut keys: BTreeMap<String, Vec<Statement>> = BTreeMap::new();
    for grant in plan.key_grants.iter().filter(|g| !g.implicit()) {
        let role_arn = actor_arn(&grant.role, appliance_arn);
        let sid = sid_for(&role_arn);
        let statements = keys.entry(grant.key.arn()).or_default();
        statements.push(
            Statement::allow(plain_key_actions(&grant.actions), ["*"])
                .with_sid(format!("BulwarkUse{sid}"))
                .for_principal(Principals::aws(role_arn.clone())),
        );
        if grant.actions.contains(&CREATE_GRANT) {
            statements.push(
                create_grant("*")
                    .with_sid(format!("BulwarkGrant{sid}"))
                    .for_principal(Principals::aws(role_arn.clone())),
            );
        }
    }
    Policies {
        roles,
        keys: keys
            .into_iter()
            .map(|(key, statements)| KeyPolicy { key, statements })
            .collect(),
    }
}

/// The KMS actions of a grant but `kms:CreateGrant`, which has a statement of its own.
fn plain_key_actions(actions: &[Action]) -> Vec<&'static str> {
    actions
        .iter()
        .filter(|a| **a != CREATE_GRANT)
        .map(|a| a.as_str())
        .collect()
}

/// `kms:CreateGrant` on `resource`, for AWS resources only.
fn create_grant(resource: &str) -> Statement {
    Statement::allow([CREATE_GRANT.as_str()], [resource]).when(
        "Bool",
        GRANT_IS_FOR_AWS_RESOURCE,
        ["true".to_owned()],
    )
}

/// An identity policy: the actor's IAM permissions grouped by identical resource lists, then
/// its KMS permissions on customer managed keys (CreateGrant only for AWS resources).
fn identity_policy(perms: &BTreeMap<Action, BTreeSet<String>>, actor: &Actor, plan: &Plan) -> PolicyDocument {
    let mut by_resources: BTreeMap<&BTreeSet<String>, Vec<&str>> = BTreeMap::new();
    for (action, resources) in perms {
        by_resources.entry(resources).or_default().push(action.as_str());
    }
    let mut statements: Vec<Statement> = by_resources
        .into_iter()
        .map(|(resources, actions)| Statement::allow(actions, resources.iter().cloned()))
        .collect();
    for grant in plan
        .key_grants
        .iter()
        .filter(|g| &g.role == actor && !g.implicit())
    {
        statements.push(Statement::allow(
            plain_key_actions(&grant.actions),
            [grant.key.arn()],
        ));
        if grant.actions.contains(&CREATE_GRANT) {
            statements.push(create_grant(&grant.key.arn()));
        }
    }
    PolicyDocument::new(statements)
}

fn assume_statement(appliance_arn: &str, external_id: Option<&str>) -> Statement {
    let statement = Statement::allow([Action::StsAssumeRole.as_str()], Vec::<String>::new())
        .on_any_resource()
        .for_principal(Principals::aws(appliance_arn));
    match external_id {
        Some(id) => statement.when("StringEquals", "sts:ExternalId", [id.to_owned()]),
        None => statement,
    }
}

fn role_purpose(estate: &Estate, role: &bulwark_model::RoleArn) -> String {
    if role == &estate.appliance.worker_deployment_role {
        return "worker deployment role of the backup account".into();
    }
    if estate.repository.as_ref().is_some_and(|r| &r.role == role) {
        return "repository role (its session credentials are passed to workers)".into();
    }
    let Some(account) = estate.account(role.account()) else {
        return "role".into();
    };
    let mut uses = Vec::new();
    if account.backup_role.as_ref() == Some(role) {
        uses.push("backup role");
    }
    if account.restore_role.as_ref() == Some(role) {
        uses.push("restore role");
    }
    format!("{} of account {}", uses.join(" and "), account.id)
}

/// A statement id from an ARN: IAM Sids are alphanumeric.
fn sid_for(arn: &str) -> String {
    let tail = arn.rsplit(':').next().unwrap_or(arn);
    let account: String = arn.split(':').nth(4).unwrap_or_default().to_owned();
    let name: String = tail
        .rsplit('/')
        .next()
        .unwrap_or(tail)
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    format!("{account}{name}")
}
