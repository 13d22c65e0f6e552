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

use bulwark_model::Estate;
use serde::Serialize;
use serde_json::{json, Value};

use crate::step::{actor_arn, Actor, Plan, CREATE_GRANT};

/// The permissions of a worker role, as the seeds list them: the SSM agent's channels, SQS for
/// the session queue, and the IAM reads a worker uses to check its own role.
const WORKER_ACTIONS: &[&str] = &[
    "ec2messages:AcknowledgeMessage",
    "ec2messages:DeleteMessage",
    "ec2messages:FailMessage",
    "ec2messages:GetEndpoint",
    "ec2messages:GetMessages",
    "ec2messages:SendReply",
    "iam:GetContextKeysForPrincipalPolicy",
    "iam:GetRole",
    "iam:ListInstanceProfilesForRole",
    "iam:SimulatePrincipalPolicy",
    "sqs:DeleteMessage",
    "sqs:ListQueues",
    "sqs:ReceiveMessage",
    "sqs:SendMessage",
    "ssm:DescribeAssociation",
    "ssm:DescribeDocument",
    "ssm:GetDeployablePatchSnapshotForInstance",
    "ssm:GetDocument",
    "ssm:GetManifest",
    "ssm:GetParameter",
    "ssm:GetParameters",
    "ssm:ListAssociations",
    "ssm:ListInstanceAssociations",
    "ssm:PutComplianceItems",
    "ssm:PutConfigurePackageResult",
    "ssm:PutInventory",
    "ssm:UpdateAssociationStatus",
    "ssm:UpdateInstanceAssociationStatus",
    "ssm:UpdateInstanceInformation",
    "ssmmessages:CreateControlChannel",
    "ssmmessages:CreateDataChannel",
    "ssmmessages:OpenControlChannel",
    "ssmmessages:OpenDataChannel",
];

const VERSION: &str = "2012-10-17";

/// The permissions policy of a worker role (production accounts' pre-configured role, and
/// the temporary roles of the backup account), as the seeds document it.
pub fn worker_role_permissions() -> Value {
    json!({
        "Version": VERSION,
        "Statement": [{ "Action": WORKER_ACTIONS, "Resource": "*", "Effect": "Allow" }]
    })
}

/// The trust policy of a worker role, as the seeds document it: EC2 may assume it.
pub fn worker_role_trust() -> Value {
    json!({
        "Version": VERSION,
        "Statement": [{
            "Effect": "Allow",
            "Action": "sts:AssumeRole",
            "Principal": { "Service": "ec2.amazonaws.com" }
        }]
    })
}

/// The policies of one role (or of the appliance's identity).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RolePolicy {
    /// The role ARN (or the appliance's principal ARN).
    pub role: String,
    /// What the role is, in a few words.
    pub purpose: String,
    /// Its identity (permissions) policy.
    pub policy: Value,
    /// Its trust policy; `None` where Bulwark does not decide it (the appliance's own).
    pub trust: Option<Value>,
}

/// Statements to add to one customer managed key's key policy.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KeyPolicy {
    /// The key ARN.
    pub key: String,
    /// Statements to add to its key policy.
    pub statements: Vec<Value>,
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
    let mut permissions: BTreeMap<Actor, BTreeMap<&'static str, BTreeSet<String>>> = BTreeMap::new();
    for step in plan.all_steps() {
        let perms = permissions.entry(step.actor.clone()).or_default();
        if !step.action.starts_with("kms:") {
            perms
                .entry(step.action)
                .or_default()
                .extend(step.resource.iam_resources(partition));
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
                    if let Some(statements) = trust["Statement"].as_array_mut() {
                        statements.push(assume_statement(appliance_arn, external_id));
                    }
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
                let trust = json!({ "Version": VERSION, "Statement": [assume_statement(appliance_arn, external_id)] });
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

    let mut keys: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for grant in plan.key_grants.iter().filter(|g| !g.implicit()) {
        let role_arn = actor_arn(&grant.role, appliance_arn);
        let sid = sid_for(&role_arn);
        let statements = keys.entry(grant.key.arn()).or_default();
        let plain: Vec<&str> = grant
            .actions
            .iter()
            .copied()
            .filter(|a| *a != CREATE_GRANT)
            .collect();
        statements.push(json!({
            "Sid": format!("BulwarkUse{sid}"),
            "Effect": "Allow",
            "Principal": { "AWS": role_arn },
            "Action": plain,
            "Resource": "*"
        }));
        if grant.actions.contains(&CREATE_GRANT) {
            statements.push(json!({
                "Sid": format!("BulwarkGrant{sid}"),
                "Effect": "Allow",
                "Principal": { "AWS": role_arn },
                "Action": CREATE_GRANT,
                "Resource": "*",
                "Condition": { "Bool": { "kms:GrantIsForAWSResource": "true" } }
            }));
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

/// An identity policy: the actor's IAM permissions grouped by identical resource lists, then
/// its KMS permissions on customer managed keys (CreateGrant only for AWS resources).
fn identity_policy(perms: &BTreeMap<&'static str, BTreeSet<String>>, actor: &Actor, plan: &Plan) -> Value {
    let mut by_resources: BTreeMap<&BTreeSet<String>, Vec<&str>> = BTreeMap::new();
    for (action, resources) in perms {
        by_resources.entry(resources).or_default().push(action);
    }
    let mut statements: Vec<Value> = by_resources
        .into_iter()
        .map(|(resources, actions)| json!({ "Effect": "Allow", "Action": actions, "Resource": resources }))
        .collect();
    for grant in plan
        .key_grants
        .iter()
        .filter(|g| &g.role == actor && !g.implicit())
    {
        let plain: Vec<&str> = grant
            .actions
            .iter()
            .copied()
            .filter(|a| *a != CREATE_GRANT)
            .collect();
        statements.push(json!({ "Effect": "Allow", "Action": plain, "Resource": grant.key.arn() }));
        if grant.actions.contains(&CREATE_GRANT) {
            statements.push(json!({
                "Effect": "Allow",
                "Action": CREATE_GRANT,
                "Resource": grant.key.arn(),
                "Condition": { "Bool": { "kms:GrantIsForAWSResource": "true" } }
            }));
        }
    }
    json!({ "Version": VERSION, "Statement": statements })
}

fn assume_statement(appliance_arn: &str, external_id: Option<&str>) -> Value {
    let mut statement = json!({
        "Effect": "Allow",
        "Action": "sts:AssumeRole",
        "Principal": { "AWS": appliance_arn }
    });
    if let Some(id) = external_id {
        statement["Condition"] = json!({ "StringEquals": { "sts:ExternalId": id } });
    }
    statement
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
