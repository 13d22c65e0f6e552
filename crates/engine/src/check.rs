//! `bulwark check`: a preflight of the roles and keys an estate's plans use, against the cloud
//! itself, before any session runs. The seeds require of worker roles that they be in an
//! instance profile, trusted by `ec2.amazonaws.com`, assumable by the appliance, and holding
//! the documented permissions; every role must be assumable by the appliance; every customer
//! managed key's policy must let each role do what the plans need. Each missing piece is named
//! with its fix.
//!
//! The IAM policy simulator never evaluates key policies (`reference/aws-rules.md`), so key
//! policies are read (`kms:GetKeyPolicy`, with credentials of the key's account where the
//! caller provides them) and evaluated here; where they cannot be read, each role is probed with
//! `kms:DescribeKey`, which every key use includes.

use std::collections::{BTreeMap, BTreeSet};

use bulwark_cloud::policy::{Policy, Principal, Request};
use bulwark_cloud::{Credentials, ErrorKind};
use bulwark_model::iam::Principals;
use bulwark_model::{AccountId, Action, KeyRef, RoleArn};
use bulwark_plan::{Actor, Plan, NAME_PREFIX};
use serde::Serialize;

use crate::Engine;

/// One thing found wrong.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The role or key.
    pub subject: String,
    /// What is wrong.
    pub problem: String,
    /// What to change.
    pub fix: String,
}

/// What a check found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CheckReport {
    /// What was checked and is right.
    pub passed: Vec<String>,
    /// What is wrong.
    pub findings: Vec<Finding>,
}

/// Credentials able to read key policies in an account (an administrator's), if available.
pub type KeyReader<'a> = &'a dyn Fn(&AccountId) -> Option<Credentials>;

impl Engine {
    /// Checks every role and key `plans` use.
    pub fn check(&self, plans: &[Plan], key_reader: KeyReader<'_>) -> CheckReport {
        let mut report = CheckReport::default();
        let mut roles: BTreeSet<RoleArn> = BTreeSet::new();
        let mut workers: BTreeSet<RoleArn> = BTreeSet::new();
        let mut keys: BTreeMap<(RoleArn, KeyRef), BTreeSet<Action>> = BTreeMap::new();
        let mut fixes: BTreeMap<String, String> = BTreeMap::new();
        for plan in plans {
            for step in plan.all_steps() {
                match &step.actor {
                    Actor::Role(r) => {
                        roles.insert(r.clone());
                    }
                    Actor::Worker(r) if !r.as_str().contains(&format!(":role/{NAME_PREFIX}/")) => {
                        workers.insert(r.clone());
                    }
                    _ => {}
                }
            }
            for grant in plan.key_grants.iter().filter(|g| !g.implicit()) {
                if let Some(role) = grant.role.role() {
                    keys.entry((role.clone(), grant.key.clone()))
                        .or_default()
                        .extend(grant.actions.iter().copied());
                }
            }
            let policies = bulwark_plan::policies(&self.estate, plan);
            for role in policies.roles {
                if let Some(trust) = role.trust {
                    fixes.entry(role.role).or_insert_with(|| trust.to_string());
                }
            }
            for key in policies.keys {
                for s in key.statements {
                    let principal = match &s.principal {
                        Some(Principals::ByType(types)) => types.get("AWS").and_then(|a| a.first()).cloned(),
                        _ => None,
                    };
                    let entry = fixes
                        .entry(format!("{}|{}", key.key, principal.unwrap_or_default()))
                        .or_default();
                    entry.push_str(&serde_json::to_string(&s).unwrap_or_default());
                    entry.push('\n');
                }
            }
        }

        for role in roles.iter().chain(&workers) {
            match self.identities.role(role) {
                Ok(_) => report.passed.push(format!("the appliance can assume {role}")),
                Err(e) => report.findings.push(Finding {
                    subject: role.to_string(),
                    problem: format!("the appliance cannot assume it: {}: {}", e.code, e.message),
                    fix: format!(
                        "make its trust policy {} (external id included where the account has one), and let the appliance's identity call sts:AssumeRole on it",
                        fixes.get(role.as_str()).map_or("name the appliance", String::as_str)
                    ),
                }),
            }
        }
        for worker in &workers {
            self.check_worker(worker, &mut report);
        }
        for ((role, key), actions) in &keys {
            let fix = fixes.get(&format!("{}|{role}", key.arn())).map_or_else(
                || "see `bulwark policy plan`".to_owned(),
                |s| format!("add to its key policy:\n{}", s.trim_end()),
            );
            self.check_key(role, key, actions, key_reader, &fix, &mut report);
        }
        report
    }

    /// A production account's worker role: trusted by EC2, in an instance profile of its
    /// name, holding the documented permissions. Read as the role itself: the documented
    /// worker permissions include reading its own role and profiles.
    fn check_worker(&self, worker: &RoleArn, report: &mut CheckReport) {
        let finding = |problem: String, fix: &str| Finding {
            subject: worker.to_string(),
            problem,
            fix: fix.to_owned(),
        };
        let Ok(creds) = self.identities.role(worker) else {
            return;
        };
        let role = match self.cloud.iam.get_role(&creds, worker) {
            Ok(r) => r,
            Err(e) => {
                report.findings.push(finding(
                    format!("cannot read the role as itself: {}: {}", e.code, e.message),
                    "give it the worker permissions: `bulwark policy worker-role`",
                ));
                return;
            }
        };
        let context = BTreeMap::new();
        let ec2 = Principal::Service("ec2.amazonaws.com".into());
        let trusted = Policy::parse(&role.trust_policy).is_ok_and(|doc| {
            let request = Request {
                principal: &ec2,
                action: Action::StsAssumeRole,
                resource: worker.as_str(),
                context: &context,
            };
            doc.evaluate_resource(&request).allows_principal
        });
        if trusted {
            report
                .passed
                .push(format!("{worker} is trusted by ec2.amazonaws.com"));
        } else {
            report.findings.push(finding(
                "its trust policy does not let ec2.amazonaws.com assume it, so no instance can use it".into(),
                "add the statement of `bulwark policy worker-role --trust` to its trust policy",
            ));
        }
        match self.cloud.iam.list_instance_profiles_for_role(&creds, worker) {
            Ok(profiles) if profiles.iter().any(|p| p.ends_with(&format!("/{}", worker.name()))) => {
                report.passed.push(format!("{worker} is in the instance profile {}", worker.name()));
            }
            Ok(profiles) => report.findings.push(finding(
                format!(
                    "it is in no instance profile named {} (profiles: {}); Bulwark launches workers with the profile of the role's name",
                    worker.name(),
                    if profiles.is_empty() { "none".to_owned() } else { profiles.join(", ") }
                ),
                &format!(
                    "aws iam create-instance-profile --instance-profile-name {0} && aws iam add-role-to-instance-profile --instance-profile-name {0} --role-name {0}",
                    worker.name()
                ),
            )),
            Err(e) => report.findings.push(finding(
                format!("cannot list its instance profiles as itself: {}: {}", e.code, e.message),
                "give it the worker permissions: `bulwark policy worker-role`",
            )),
        }
        let principal = Principal::role(worker);
        let docs: Vec<Policy> = role
            .inline_policies
            .iter()
            .filter_map(|(_, d)| Policy::parse(d).ok())
            .collect();
        let required = bulwark_plan::worker_role_permissions();
        let missing: Vec<&str> = required
            .statements
            .iter()
            .flat_map(|s| s.action.iter().flatten())
            .filter_map(|a| a.parse::<Action>().ok())
            .filter(|&action| {
                let request = Request {
                    principal: &principal,
                    action,
                    resource: "*",
                    context: &context,
                };
                !docs.iter().any(|d| d.evaluate_identity(&request).is_allowed())
            })
            .map(Action::as_str)
            .collect();
        if missing.is_empty() {
            report
                .passed
                .push(format!("{worker} holds the worker permissions"));
        } else {
            report.findings.push(finding(
                format!("its inline policies lack {}", missing.join(", ")),
                "attach the policy of `bulwark policy worker-role`",
            ));
        }
    }

    /// Whether `role` may use `key` as the plans need.
    fn check_key(
        &self,
        role: &RoleArn,
        key: &KeyRef,
        actions: &BTreeSet<Action>,
        key_reader: KeyReader<'_>,
        fix: &str,
        report: &mut CheckReport,
    ) {
        let subject = format!("key {} for {role}", key.arn());
        // The key policy, read with the key account's credentials, must allow each action to
        // the role itself, or to its account (then the role's IAM policy must allow it too).
        if let Some(creds) = key_reader(key.account()) {
            match self.cloud.kms.get_key_policy(&creds, key.region(), &key.arn()) {
                Ok(text) => {
                    let Ok(doc) = Policy::parse(&text) else {
                        report.findings.push(Finding {
                            subject,
                            problem: "its key policy does not parse".into(),
                            fix: fix.to_owned(),
                        });
                        return;
                    };
                    let principal = Principal::role(role);
                    let context: BTreeMap<String, String> = [
                        ("kms:GrantIsForAWSResource".to_owned(), "true".to_owned()),
                        ("kms:CallerAccount".to_owned(), role.account().to_string()),
                        ("kms:ViaService".to_owned(), format!("ec2.{}.amazonaws.com", key.region())),
                    ]
                    .into();
                    let cross_account = role.account() != key.account();
                    let missing: Vec<&str> = actions
                        .iter()
                        .copied()
                        .filter(|&action| {
                            // The pattern the grant names stands for both re-encryptions.
                            let action = if action == Action::KmsReEncryptAll {
                                Action::KmsReEncryptFrom
                            } else {
                                action
                            };
                            let request = Request {
                                principal: &principal,
                                action,
                                resource: &key.arn(),
                                context: &context,
                            };
                            let m = doc.evaluate_resource(&request);
                            m.denies || !(m.allows_principal || (m.allows_account && !cross_account))
                        })
                        .map(Action::as_str)
                        .collect();
                    if missing.is_empty() {
                        report.passed.push(format!("the key policy of {} allows {role}", key.arn()));
                    } else {
                        report.findings.push(Finding {
                            subject: subject.clone(),
                            problem: format!("its key policy does not allow {}", missing.join(", ")),
                            fix: fix.to_owned(),
                        });
                        return;
                    }
                }
                Err(e) => report.findings.push(Finding {
                    subject: subject.clone(),
                    problem: format!("cannot read its key policy: {}: {}", e.code, e.message),
                    fix: "check the key exists in its region and the reading credentials may call kms:GetKeyPolicy".into(),
                }),
            }
        }
        // Probe the whole chain (key policy and the role's IAM policy) with DescribeKey, which
        // every use of a key includes.
        let probe = self
            .identities
            .role(role)
            .and_then(|creds| self.cloud.kms.describe_key(&creds, key.region(), &key.arn()));
        match probe {
            Ok(_) => report.passed.push(format!("{role} can read {}", key.arn())),
            Err(e) if e.kind == ErrorKind::AccessDenied => report.findings.push(Finding {
                subject,
                problem: format!("{role} may not use the key: {}", e.message),
                fix: format!("{fix}\nand let the role's IAM policy allow the same actions on {} (`bulwark policy plan`)", key.arn()),
            }),
            Err(e) => report.findings.push(Finding {
                subject,
                problem: format!("{}: {}", e.code, e.message),
                fix: "check the key exists, is enabled, and is in the region the estate says".into(),
            }),
        }
    }
}
