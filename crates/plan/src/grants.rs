//! The policies of many plans merged: what a role must be granted to run every one of them.
//! The embedded cloud creates its roles and keys with exactly these, and `bulwark policy
//! cloudformation` writes them into a template.

use std::collections::{BTreeMap, BTreeSet};

use bulwark_model::iam::{PolicyDocument, Statement};
use bulwark_model::Estate;

use crate::step::Plan;

/// IAM and KMS policies merged over several plans: per role its trust policy and the union of
/// its statements; per key the union of its statements.
#[derive(Debug, Default)]
pub struct Grants {
    /// Role ARN to (trust policy, identity statements).
    pub roles: BTreeMap<String, (Option<PolicyDocument>, Vec<Statement>)>,
    /// Key ARN to key-policy statements.
    pub keys: BTreeMap<String, Vec<Statement>>,
}

impl Grants {
    /// The policies `bulwark policy plan` generates for each of `plans`, merged.
    pub fn from_plans(estate: &Estate, plans: &[Plan]) -> Grants {
        let mut out = Grants::default();
        for plan in plans {
            let p = crate::policies(estate, plan);
            for role in p.roles {
                let entry = out
                    .roles
                    .entry(role.role.clone())
                    .or_insert_with(|| (role.trust.clone(), Vec::new()));
                for s in role.policy.statements {
                    if !entry.1.contains(&s) {
                        entry.1.push(s);
                    }
                }
            }
            for key in p.keys {
                let entry = out.keys.entry(key.key).or_default();
                for s in key.statements {
                    // Statement ids must be unique within a key policy: the same Sid (the same
                    // role) from another plan merges its actions into the statement.
                    match entry.iter_mut().find(|e| e.sid == s.sid) {
                        Some(existing) => merge_actions(existing, &s),
                        None => entry.push(s),
                    }
                }
            }
        }
        out
    }

    /// The same grants, with what the appliance does beside plans: the read-only discovery
    /// permissions on each account's backup role ([`crate::discovery_statement`]) and
    /// repository maintenance on the repository role ([`crate::maintenance_statements`]).
    pub fn with_appliance(mut self, estate: &Estate) -> Grants {
        for account in estate.accounts.values() {
            let Some(role) = &account.backup_role else {
                continue;
            };
            if let Some((_, statements)) = self.roles.get_mut(role.as_str()) {
                statements.push(crate::discovery_statement());
            }
        }
        if let Some((role, extra)) = crate::maintenance_statements(estate) {
            if let Some((_, statements)) = self.roles.get_mut(role.as_str()) {
                statements.extend(extra);
            }
        }
        self
    }
}

/// Adds the actions of `from` to those of `into`, sorted, once.
fn merge_actions(into: &mut Statement, from: &Statement) {
    let mut actions: BTreeSet<String> = into.action.iter().flatten().cloned().collect();
    actions.extend(from.action.iter().flatten().cloned());
    into.action = Some(actions.into_iter().collect());
}
