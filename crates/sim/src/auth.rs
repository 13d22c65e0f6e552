//! Who may do what: every call resolves its credentials to an identity, then asks the IAM
//! policy evaluator with the identity's policies and, where the resource has one, its
//! resource policy (a role's trust policy, a key policy, a queue policy). KMS grants allow
//! their grantee on top of the key policy, as in KMS.

use std::collections::BTreeMap;

use bulwark_cloud::policy::{authorize, Policy, Principal, Request, ResourcePolicy, ResourcePolicyKind};
use bulwark_cloud::CloudError;
use bulwark_model::{AccountId, Action, Region};

use crate::state::{Identity, Key, World};

/// The caller of one request, and what the request says about itself (condition keys).
pub(crate) struct Caller {
    pub identity: Identity,
    pub action: Action,
}

/// A resource policy to evaluate with a request.
pub(crate) struct Guard<'a> {
    pub document: &'a str,
    pub owner: &'a AccountId,
    pub kind: ResourcePolicyKind,
}

impl Caller {
    pub fn account(&self) -> &AccountId {
        self.identity.account()
    }

    /// The principal as policies name it.
    pub fn principal(&self, world: &World) -> Principal {
        match &self.identity {
            Identity::Root(account) => Principal::Account(account.clone()),
            Identity::Role { account, name, .. } => Principal::Role {
                arn: role_arn(world, account, name),
                account: account.clone(),
            },
        }
    }

    /// The ARN the caller identity answers with.
    pub fn arn(&self, world: &World) -> String {
        match &self.identity {
            Identity::Root(account) => format!("arn:aws:iam::{account}:root"),
            Identity::Role {
                account,
                name,
                session,
            } => {
                let _ = world;
                format!("arn:aws:sts::{account}:assumed-role/{name}/{session}")
            }
        }
    }

    /// Decides `action` on `resource` (for the caller's own call, or for a call a service
    /// makes on its behalf, like EBS using a KMS key), with the request's condition keys.
    pub fn check(
        &self,
        world: &World,
        action: Action,
        resource: &str,
        context: &[(&str, String)],
        guard: Option<Guard<'_>>,
    ) -> Result<(), CloudError> {
        let principal = self.principal(world);
        let mut ctx: BTreeMap<String, String> = context
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        ctx.insert("aws:PrincipalAccount".into(), self.account().to_string());
        if let Principal::Role { arn, .. } = &principal {
            ctx.insert("aws:PrincipalArn".into(), arn.clone());
        }
        let request = Request {
            principal: &principal,
            action,
            resource,
            context: &ctx,
        };
        let identity_docs = self.identity_policies(world)?;
        let identity_refs: Vec<&Policy> = identity_docs.iter().collect();
        let guard_doc = match &guard {
            Some(g) => Some(parse(self.action, g.document)?),
            None => None,
        };
        let resource_policy = match (&guard, &guard_doc) {
            (Some(g), Some(doc)) => Some(ResourcePolicy {
                document: doc,
                owner: g.owner,
                kind: g.kind,
            }),
            _ => None,
        };
        // The root user needs no identity policy in its own account (the evaluator knows);
        // a role's identity policies are its inline policies.
        let decision = authorize(&request, &identity_refs, resource_policy);
        if decision.is_allowed() {
            Ok(())
        } else {
            let who = self.arn(world);
            let reason = match guard.map(|g| g.kind) {
                Some(ResourcePolicyKind::KeyPolicy) => {
                    " (the key policy and the caller's IAM policies must both allow it)"
                }
                Some(ResourcePolicyKind::TrustPolicy) => " (the role's trust policy must allow it)",
                _ => "",
            };
            Err(CloudError::denied(
                self.action,
                format!("User: {who} is not authorized to perform: {action} on resource: {resource}{reason}"),
            ))
        }
    }

    fn identity_policies(&self, world: &World) -> Result<Vec<Policy>, CloudError> {
        match &self.identity {
            Identity::Root(_) => Ok(Vec::new()),
            Identity::Role { account, name, .. } => {
                let role = world.accounts.get(account).and_then(|a| a.roles.get(name));
                role.map_or(Ok(Vec::new()), |r| {
                    r.policies.values().map(|doc| parse(self.action, doc)).collect()
                })
            }
        }
    }

    /// Decides a use of a KMS key: the key policy with the caller's IAM policies, or a grant
    /// naming the caller. `via_ebs` marks uses EBS makes on the caller's behalf.
    pub fn check_key(
        &self,
        world: &World,
        key_owner: &AccountId,
        region: &Region,
        key: &Key,
        action: Action,
        via_ebs: bool,
    ) -> Result<(), CloudError> {
        let principal_arn = match self.principal(world) {
            Principal::Role { arn, .. } => arn,
            Principal::Account(a) => format!("arn:aws:iam::{a}:root"),
            Principal::Service(s) => s,
        };
        let op = action.name();
        if key
            .grants
            .iter()
            .any(|g| g.grantee == principal_arn && g.operations.iter().any(|o| o == op))
        {
            return Ok(());
        }
        let mut context = vec![("kms:CallerAccount", self.account().to_string())];
        if via_ebs {
            context.push(("kms:ViaService", format!("ec2.{region}.amazonaws.com")));
            if action == Action::KmsCreateGrant {
                context.push(("kms:GrantIsForAWSResource", "true".into()));
            }
        }
        let arn = key_arn(key_owner, region, &key.id);
        self.check(
            world,
            action,
            &arn,
            &context,
            Some(Guard {
                document: &key.policy,
                owner: key_owner,
                kind: ResourcePolicyKind::KeyPolicy,
            }),
        )
        .map_err(|mut e| {
            // EBS reports a key it may not use under its own action name.
            e.action = self.action;
            e
        })
    }
}

fn parse(action: Action, doc: &str) -> Result<Policy, CloudError> {
    Policy::parse(doc).map_err(|e| malformed(action, e))
}

fn malformed(action: Action, e: impl std::fmt::Display) -> CloudError {
    CloudError::invalid(action, "MalformedPolicy", e.to_string())
}

/// A role's ARN.
pub(crate) fn role_arn(world: &World, account: &AccountId, name: &str) -> String {
    let path = world
        .accounts
        .get(account)
        .and_then(|a| a.roles.get(name))
        .map_or("/", |r| r.path.as_str());
    format!("arn:aws:iam::{account}:role{path}{name}")
}

/// A key's ARN.
pub(crate) fn key_arn(account: &AccountId, region: &Region, id: &str) -> String {
    format!("arn:aws:kms:{region}:{account}:key/{id}")
}
