//! Policies: which instances (by account, region, tags and ids) get what (cloud-native
//! snapshots, replicas in other regions or accounts, image-level backups into the repository),
//! when, and how many are kept. An instance
//! selected by several policies is processed by the one of highest priority.
//!
//! Validation runs the planner over every instance a policy selects, so that a policy AWS
//! would refuse says which instance, why and the remedy when it is saved, not at 2 am.

use std::collections::BTreeMap;

use bulwark_model::{AccountId, Estate, Instance, InstanceId, KeyRef, Region};
use bulwark_plan::{Operation, Placement};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::schedule::Schedule;

/// A policy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Its name, unique.
    pub name: String,
    /// Of the policies that select an instance, the highest priority one processes it.
    #[serde(default)]
    pub priority: i64,
    /// A disabled policy keeps its restore points but never runs on its schedule.
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// Which instances.
    pub selection: Selection,
    /// When it runs; without one, only on demand.
    #[serde(default)]
    pub schedule: Option<Schedule>,
    /// Cloud-native snapshots, and how many are kept (without it, as many as the replicas
    /// that need them keep).
    #[serde(default)]
    pub snapshots: Option<Keep>,
    /// Snapshot replicas in other regions or accounts.
    #[serde(default)]
    pub replicas: Vec<Replica>,
    /// Image-level backups into the repository.
    #[serde(default)]
    pub backups: Option<Backups>,
    /// Called (POST, JSON) when a run or retention of the policy ends in `warning` or
    /// `failed`, besides the appliance's own webhook.
    #[serde(default)]
    pub webhook: Option<String>,
}

fn enabled() -> bool {
    true
}

/// Which instances a policy selects: those listed in `instances`, and those that match every
/// given filter (`accounts`, `regions`, `tags`: all of them must match); any of
/// `exclude_tags` excludes an instance, listed or not.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Selection {
    /// In these accounts (any, if empty).
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub accounts: Vec<AccountId>,
    /// In these regions (any, if empty).
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub regions: Vec<Region>,
    /// Carrying every one of these tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Not carrying any of these tags.
    #[serde(default)]
    pub exclude_tags: BTreeMap<String, String>,
    /// These instances, whatever the filters.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub instances: Vec<InstanceId>,
}

/// How many restore points are kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Keep {
    /// The newest this many (at least 1).
    pub keep: u32,
}

/// Replicas of each snapshot restore point in another region or account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Replica {
    /// The account that owns the replicas.
    #[schema(value_type = String)]
    pub account: AccountId,
    /// Their region.
    #[schema(value_type = String)]
    pub region: Region,
    /// Their key (a key ARN, or `aws/ebs`); by default the target's default EBS key.
    #[serde(default)]
    pub key: Option<String>,
    /// The newest this many are kept (at least 1).
    pub keep: u32,
}

/// Image-level backups: where workers run, and which restore points of each instance are
/// kept (the rules of `bulwark image forget`, applied to the instance's backups: a point is
/// kept when any rule keeps it, and the newest always is).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Backups {
    /// `backup-account` (the default), `production-account`, or `none` (no worker: the
    /// appliance reads the snapshots through the EBS direct APIs).
    #[serde(default = "backup_account")]
    #[schema(value_type = String, example = "production-account")]
    pub workers: Placement,
    /// The newest this many.
    #[serde(default)]
    pub keep_last: u32,
    /// The newest of each of this many most recent days.
    #[serde(default)]
    pub keep_daily: u32,
    /// The newest of each of this many most recent ISO weeks.
    #[serde(default)]
    pub keep_weekly: u32,
    /// The newest of each of this many most recent months.
    #[serde(default)]
    pub keep_monthly: u32,
    /// The newest of each of this many most recent years.
    #[serde(default)]
    pub keep_yearly: u32,
    /// Index the files of each restore point (paths, sizes and times) so that `bulwark files
    /// find` and the API's file search answer which restore points hold a file, without
    /// reading any volume.
    #[serde(default)]
    pub file_index: bool,
    /// No restore point younger than this many days is forgotten, whatever the `keep_*` rules
    /// say (AWS Backup Vault Lock's minimum retention).
    #[serde(default)]
    pub min_retention_days: Option<u32>,
    /// Every restore point older than this many days is forgotten, whatever the `keep_*`
    /// rules say, the newest too (Vault Lock's maximum retention). A point the repository's
    /// Object Lock still retains is forgotten once it may be.
    #[serde(default)]
    pub max_retention_days: Option<u32>,
}

fn backup_account() -> Placement {
    Placement::BackupAccount
}

impl Backups {
    /// The retention rules, as the repository states them.
    pub fn retention(&self) -> bulwark_repo::Retention {
        bulwark_repo::Retention {
            keep_last: self.keep_last,
            keep_daily: self.keep_daily,
            keep_weekly: self.keep_weekly,
            keep_monthly: self.keep_monthly,
            keep_yearly: self.keep_yearly,
        }
    }
}

impl Selection {
    /// Whether filters, not only ids, select instances.
    fn filters(&self) -> bool {
        !self.accounts.is_empty() || !self.regions.is_empty() || !self.tags.is_empty()
    }

    /// Whether it selects `instance`.
    pub fn selects(&self, instance: &Instance) -> bool {
        let tagged =
            |tags: &BTreeMap<String, String>| tags.iter().any(|(k, v)| instance.tags.get(k) == Some(v));
        if tagged(&self.exclude_tags) {
            return false;
        }
        if self.instances.contains(&instance.id) {
            return true;
        }
        self.filters()
            && (self.accounts.is_empty() || self.accounts.contains(&instance.account))
            && (self.regions.is_empty() || self.regions.contains(&instance.region))
            && self.tags.iter().all(|(k, v)| instance.tags.get(k) == Some(v))
    }
}

/// What is wrong with a policy, field by field, or with one of the instances it selects.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct Problem {
    /// The field (`schedule.cron`), or the instance.
    pub at: String,
    /// The refusal's code, for an instance the planner refuses.
    pub code: Option<String>,
    /// What is wrong.
    pub message: String,
    /// What to change.
    pub remedy: String,
}

impl Policy {
    /// How many snapshot restore points are kept: as said, or else as many as the most a
    /// replica target keeps.
    pub fn snapshots_kept(&self) -> Option<u32> {
        self.snapshots
            .as_ref()
            .map(|k| k.keep)
            .or_else(|| self.replicas.iter().map(|r| r.keep).max())
    }

    /// The operations the policy runs on one instance, in order. A replica is made from a
    /// snapshot restore point taken in the same session, so with replicas no separate
    /// snapshot session runs.
    pub fn operations(&self, instance: &InstanceId) -> Result<Vec<Operation>, Problem> {
        let mut ops = Vec::new();
        if self.snapshots.is_some() && self.replicas.is_empty() {
            ops.push(Operation::Snapshot {
                instance: instance.clone(),
            });
        }
        for (i, r) in self.replicas.iter().enumerate() {
            let target_key = match &r.key {
                Some(k) => Some(KeyRef::parse_in(k, &r.account, &r.region).map_err(|e| Problem {
                    at: format!("replicas[{i}].key"),
                    code: None,
                    message: e.to_string(),
                    remedy: "give a key ARN of the target region, or aws/ebs".into(),
                })?),
                None => None,
            };
            ops.push(Operation::Replicate {
                instance: instance.clone(),
                to_account: r.account.clone(),
                to_region: r.region.clone(),
                target_key,
            });
        }
        if let Some(b) = &self.backups {
            ops.push(Operation::Backup {
                instance: instance.clone(),
                workers: Some(b.workers),
                file_index: b.file_index,
            });
        }
        Ok(ops)
    }

    /// Checks the policy on its own (names, counts, schedule) and against `estate` (the
    /// estate as discovered): every selected instance must be plannable.
    pub fn validate(&self, estate: &Estate) -> Vec<Problem> {
        let mut problems = Vec::new();
        let field = |at: &str, message: String, remedy: &str| Problem {
            at: at.to_owned(),
            code: None,
            message,
            remedy: remedy.to_owned(),
        };
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !name_ok {
            problems.push(field(
                "name",
                format!("{:?} is not a policy name", self.name),
                "use 1 to 64 letters, digits, '-', '_' or '.'",
            ));
        }
        if !self.selection.filters() && self.selection.instances.is_empty() {
            problems.push(field(
                "selection",
                "the selection selects nothing".into(),
                "give accounts, regions, tags or instances",
            ));
        }
        if self.snapshots.is_none() && self.replicas.is_empty() && self.backups.is_none() {
            problems.push(field(
                "snapshots",
                "the policy makes nothing".into(),
                "give snapshots (with keep), replicas or backups",
            ));
        }
        if self.backups.as_ref().is_some_and(|b| b.retention().is_empty()) {
            problems.push(field(
                "backups",
                "the backups keep nothing: every keep_* is 0".into(),
                "give keep_last, keep_daily, keep_weekly, keep_monthly or keep_yearly (at least 1)",
            ));
        }
        if let Some(b) = &self.backups {
            match (b.min_retention_days, b.max_retention_days) {
                (_, Some(0)) => problems.push(field(
                    "backups.max_retention_days",
                    "max_retention_days is 0: every backup would be forgotten at once".into(),
                    "give at least 1 day, or leave it out",
                )),
                (Some(min), Some(max)) if min > max => problems.push(field(
                    "backups.min_retention_days",
                    format!("min_retention_days ({min}) is more than max_retention_days ({max})"),
                    "make the minimum at most the maximum",
                )),
                _ => {}
            }
        }
        if self.snapshots.as_ref().is_some_and(|k| k.keep == 0) {
            problems.push(field(
                "snapshots.keep",
                "keep is 0".into(),
                "keep at least 1 restore point",
            ));
        }
        for (i, r) in self.replicas.iter().enumerate() {
            if r.keep == 0 {
                problems.push(field(
                    &format!("replicas[{i}].keep"),
                    "keep is 0".into(),
                    "keep at least 1 replica",
                ));
            }
        }
        if let Some(Err(e)) = self.webhook.as_deref().map(crate::webhook::check_url) {
            problems.push(field("webhook", e, "give an http:// or https:// URL"));
        }
        if let Some(Err(e)) = self.schedule.as_ref().map(Schedule::check) {
            problems.push(e);
        }
        for instance in estate.instances.iter().filter(|i| self.selection.selects(i)) {
            let ops = match self.operations(&instance.id) {
                Ok(ops) => ops,
                Err(p) => {
                    problems.push(p);
                    break;
                }
            };
            for op in ops {
                if let Err(r) = bulwark_plan::plan(estate, &op) {
                    problems.push(Problem {
                        at: format!("instance {} ({})", instance.id, op.name()),
                        code: Some(r.code.to_string()),
                        message: r.message,
                        remedy: r.remedy,
                    });
                }
            }
        }
        problems
    }
}

/// For each instance of `estate`, the policy that processes it: the highest priority policy
/// that selects it (ties go to the first name).
pub fn owners<'p>(
    estate: &Estate,
    policies: &'p [(String, Policy)],
) -> BTreeMap<InstanceId, &'p (String, Policy)> {
    let mut ranked: Vec<&(String, Policy)> = policies.iter().collect();
    ranked.sort_by(|a, b| {
        b.1.priority
            .cmp(&a.1.priority)
            .then_with(|| a.1.name.cmp(&b.1.name))
    });
    estate
        .instances
        .iter()
        .filter_map(|i| {
            let owner = ranked.iter().find(|(_, p)| p.selection.selects(i))?;
            Some((i.id.clone(), *owner))
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn instance(id: &str, account: &str, tags: &[(&str, &str)]) -> Instance {
        Instance {
            id: id.parse().unwrap(),
            account: account.parse().unwrap(),
            region: "us-east-1".parse().unwrap(),
            volumes: Vec::new(),
            tags: tags
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn tags_must_all_match_and_any_exclusion_excludes() {
        let selection: Selection = serde_json::from_value(serde_json::json!({
            "tags": {"backup": "nightly", "team": "a"},
            "exclude_tags": {"backup": "never", "legal-hold": "yes"},
            "instances": ["i-00000000000000003"]
        }))
        .unwrap();
        let both = instance(
            "i-00000000000000001",
            "222222222222",
            &[("backup", "nightly"), ("team", "a")],
        );
        let one = instance("i-00000000000000002", "222222222222", &[("backup", "nightly")]);
        let listed = instance("i-00000000000000003", "222222222222", &[]);
        let held = instance("i-00000000000000003", "222222222222", &[("legal-hold", "yes")]);
        assert!(selection.selects(&both));
        assert!(!selection.selects(&one));
        assert!(selection.selects(&listed));
        assert!(!selection.selects(&held));
    }

    #[test]
    fn the_highest_priority_policy_owns_an_instance() {
        let mut estate_instances = vec![instance(
            "i-00000000000000001",
            "222222222222",
            &[("backup", "yes")],
        )];
        let policy = |name: &str, priority| Policy {
            name: name.into(),
            priority,
            enabled: true,
            selection: Selection {
                tags: [("backup".to_owned(), "yes".to_owned())].into(),
                ..Selection::default()
            },
            schedule: None,
            snapshots: Some(Keep { keep: 1 }),
            replicas: Vec::new(),
            backups: None,
            webhook: None,
        };
        let policies = vec![
            ("p1".to_owned(), policy("low", 1)),
            ("p2".to_owned(), policy("high", 5)),
        ];
        let estate = Estate {
            instances: std::mem::take(&mut estate_instances),
            ..test_estate()
        };
        let owners = owners(&estate, &policies);
        assert_eq!(owners.values().next().unwrap().0, "p2");
    }

    fn test_estate() -> Estate {
        let text = r#"
            [appliance]
            account = "111111111111"
            worker_deployment_role = "arn:aws:iam::111111111111:role/Deploy"
        "#;
        Estate::parse("test.toml", text).unwrap()
    }
}
