//! Properties of every plan, over generated estates and operations:
//! - no plan shares a snapshot encrypted with `aws/ebs`;
//! - every key a step touches is in the key grants of the role that acts, with the actions
//!   that use needs, and no role is granted another account's `aws/ebs`;
//! - cleanup removes everything the steps create and do not keep, exactly once, and nothing
//!   else (never the production worker role); rollback does the same for what they keep;
//! - every role the appliance uses is assumed before it acts, in its own account;
//! - the generated policies allow every step, and key policies name every role using a CMK.
//!
//! The key each step touches is worked out here from the resources themselves (the snapshot
//! a volume comes from, the volume attached), not from the step's own list of key needs, so
//! that a step that forgot a key fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

use bulwark_model::iam::Principals;
use bulwark_model::{
    Account, AccountId, Appliance, Estate, Instance, KeyRef, Region, Repository, RoleArn, Volume,
};
use bulwark_plan::{
    plan, policies, Actor, Call, KeyUse, Operation, Placement, Plan, RefusalCode, Resource, RestoreSource,
    Share, SnapshotOrigin, Step,
};
use proptest::prelude::*;

const BACKUP: &str = "111111111111";
const PRODUCTION: [&str; 3] = ["222222222222", "333333333333", "444444444444"];
const REGIONS: [&str; 3] = ["us-east-1", "eu-west-1", "us-west-2"];

fn account(s: &str) -> AccountId {
    s.parse().unwrap()
}
fn region(i: usize) -> Region {
    REGIONS[i % REGIONS.len()].parse().unwrap()
}
fn role(account: &str, name: &str) -> RoleArn {
    format!("arn:aws:iam::{account}:role/{name}").parse().unwrap()
}
/// A customer managed key; `n` tells keys of the same account and region apart.
fn cmk(account: &str, region: &Region, n: u8) -> KeyRef {
    let id = format!(
        "{:08x}-0000-4000-8000-{:012x}",
        account[..8].parse::<u32>().unwrap(),
        n
    );
    KeyRef::Customer(
        format!("arn:aws:kms:{region}:{account}:key/{id}")
            .parse()
            .unwrap(),
    )
}

/// A key choice: 0 none, 1 aws/ebs, 2 a CMK of the owner, 3 a CMK of another account.
fn key_choice(choice: u8, owner: &str, region: &Region, other: &str) -> Option<KeyRef> {
    match choice % 4 {
        0 => None,
        1 => Some(KeyRef::AwsManaged {
            account: account(owner),
            region: region.clone(),
        }),
        2 => Some(cmk(owner, region, 1)),
        _ => Some(cmk(other, region, 2)),
    }
}

#[derive(Debug, Clone)]
struct Gen {
    /// Per production account: has backup role, restore role, worker role, external id.
    roles: Vec<(bool, bool, bool, bool)>,
    /// Whether the backup account is also a production account.
    backup_is_production: bool,
    /// Per (account index incl. backup at 0, region): default key choice, encryption by default.
    defaults: Vec<(u8, bool)>,
    /// Instances: (account index, region index, volume key choices).
    instances: Vec<(usize, usize, Vec<u8>)>,
    repository: bool,
    /// Operation: kind, instance index, target account index, target region, key choice, placement.
    op: (u8, usize, usize, usize, u8, u8),
}

fn gen() -> impl Strategy<Value = Gen> {
    (
        prop::collection::vec(
            (
                prop::bool::weighted(0.9),
                prop::bool::weighted(0.9),
                prop::bool::weighted(0.7),
                any::<bool>(),
            ),
            3,
        ),
        any::<bool>(),
        prop::collection::vec((0u8..2, prop::bool::weighted(0.3)), 12),
        prop::collection::vec((0usize..4, 0usize..3, prop::collection::vec(0u8..4, 1..4)), 1..4),
        prop::bool::weighted(0.9),
        (0u8..6, 0usize..4, 0usize..4, 0usize..3, 0u8..5, 0u8..4),
    )
        .prop_map(
            |(roles, backup_is_production, defaults, instances, repository, op)| Gen {
                roles,
                backup_is_production,
                defaults,
                instances,
                repository,
                op,
            },
        )
}

/// Account ids by index: 0 is the backup account, 1.. the production accounts.
fn account_id(i: usize) -> &'static str {
    if i == 0 {
        BACKUP
    } else {
        PRODUCTION[(i - 1) % PRODUCTION.len()]
    }
}

fn build(g: &Gen) -> Option<(Estate, Operation)> {
    let mut accounts = BTreeMap::new();
    for (i, (backup, restore, worker, external)) in g.roles.iter().enumerate() {
        let id = account_id(i + 1);
        accounts.insert(
            account(id),
            Account {
                id: account(id),
                backup_role: backup.then(|| role(id, "Backup")),
                restore_role: restore.then(|| role(id, "Restore")),
                worker_role: worker.then(|| role(id, "Worker")),
                external_id: external.then(|| "bulwark-external".to_owned()),
            },
        );
    }
    if g.backup_is_production {
        accounts.insert(
            account(BACKUP),
            Account {
                id: account(BACKUP),
                backup_role: Some(role(BACKUP, "Backup")),
                restore_role: Some(role(BACKUP, "Restore")),
                worker_role: Some(role(BACKUP, "Worker")),
                external_id: None,
            },
        );
    }
    let mut default_keys = BTreeMap::new();
    let mut encryption_by_default = BTreeSet::new();
    for (n, (choice, on)) in g.defaults.iter().enumerate() {
        let (a, r) = (account_id(n / 3), region(n % 3));
        if *choice == 1 {
            default_keys.insert((account(a), r.clone()), cmk(a, &r, 9));
        }
        if *on {
            encryption_by_default.insert((account(a), r));
        }
    }
    let mut instances = Vec::new();
    for (n, (a, r, keys)) in g.instances.iter().enumerate() {
        let owner = if *a == 0 && !g.backup_is_production {
            account_id(1)
        } else {
            account_id(*a)
        };
        let region = region(*r);
        let other = account_id((*a % 3) + 1).to_owned();
        let other = if other == owner { BACKUP } else { &other };
        let volumes = keys
            .iter()
            .enumerate()
            .map(|(v, choice)| Volume {
                id: format!("vol-{:017x}", n * 16 + v).parse().unwrap(),
                size_gib: 8,
                key: key_choice(*choice, owner, &region, other),
            })
            .collect();
        instances.push(Instance {
            id: format!("i-{:017x}", n).parse().unwrap(),
            account: account(owner),
            region,
            volumes,
            tags: Default::default(),
        });
    }
    let estate = Estate {
        appliance: Appliance {
            account: account(BACKUP),
            worker_deployment_role: role(BACKUP, "WorkerDeployment"),
            role: None,
        },
        accounts,
        default_keys,
        encryption_by_default,
        instances,
        repository: g.repository.then(|| Repository {
            bucket: "bulwark-test".parse().unwrap(),
            prefix: String::new(),
            region: region(0),
            role: role(BACKUP, "Repository"),
        }),
        workers: Default::default(),
        embedded: Default::default(),
    };

    let (kind, i, to, to_region, key, placement) = g.op;
    let instance = estate.instances.get(i % estate.instances.len())?.id.clone();
    let to_account = account(account_id(to));
    let to_region = region(to_region);
    let target_key = match key {
        0 | 1 => None,
        2 => Some(KeyRef::AwsManaged {
            account: to_account.clone(),
            region: to_region.clone(),
        }),
        3 => Some(cmk(to_account.as_str(), &to_region, 5)),
        // A key of another region: must be refused.
        _ => Some(cmk(
            to_account.as_str(),
            &region(REGIONS.iter().position(|r| *r == to_region.as_str())? + 1),
            5,
        )),
    };
    let workers = match placement {
        0 => None,
        1 => Some(Placement::BackupAccount),
        2 => Some(Placement::ProductionAccount),
        _ => Some(Placement::NoWorker),
    };
    let op = match kind {
        0 => Operation::Snapshot { instance },
        1 => Operation::Backup {
            instance,
            workers,
            file_index: false,
        },
        2 => Operation::Replicate {
            instance,
            to_account,
            to_region,
            target_key,
        },
        3 => Operation::Restore {
            instance,
            from: RestoreSource::Snapshot,
            to_account,
            to_region,
            target_key,
            workers: None,
            launch: Default::default(),
        },
        _ => Operation::Restore {
            instance,
            from: RestoreSource::Backup,
            to_account,
            to_region,
            target_key,
            workers,
            launch: Default::default(),
        },
    };
    Some((estate, op))
}

/// The keys a step touches and how, worked out from its resources.
fn touched_keys(step: &Step) -> Vec<(KeyRef, KeyUse)> {
    let ebs = |r: &Resource| r.key().cloned().map(|k| (k, KeyUse::Ebs));
    let creates = step.creates();
    let created = || creates.iter().filter_map(ebs);
    match step.action().as_str() {
        "ec2:CreateVolume" => ebs(&step.resource()).into_iter().chain(created()).collect(),
        "ec2:CopySnapshot" => ebs(&step.resource()).into_iter().chain(created()).collect(),
        "ec2:AttachVolume" => ebs(&step.resource()).into_iter().collect(),
        "ebs:GetSnapshotBlock" => step
            .resource()
            .key()
            .map(|k| (k.clone(), KeyUse::DirectRead))
            .into_iter()
            .collect(),
        "ebs:StartSnapshot" => step
            .creates()
            .iter()
            .filter_map(|r| r.key().map(|k| (k.clone(), KeyUse::DirectWrite)))
            .collect(),
        "ec2:ModifySnapshotAttribute" if !step.creates().is_empty() => step
            .resource()
            .key()
            .cloned()
            .map(|k| (k, KeyUse::Describe))
            .into_iter()
            .collect(),
        _ => Vec::new(),
    }
}

fn is_removal(step: &Step) -> bool {
    matches!(step.call, Call::Remove { .. })
}

fn check_plan(estate: &Estate, plan: &Plan) -> Result<(), TestCaseError> {
    // A plan stored as JSON and read back is the same plan.
    let json = serde_json::to_string(plan).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let back: Plan = serde_json::from_str(&json).map_err(|e| TestCaseError::fail(format!("{e}: {json}")))?;
    prop_assert_eq!(&back, plan, "the plan read back from JSON differs");

    // No aws/ebs snapshot is ever shared.
    for step in plan.all_steps() {
        for created in &step.creates() {
            if let Resource::SnapshotShare(Share { snapshot, .. }) = created {
                prop_assert!(
                    !snapshot.key.as_ref().is_some_and(KeyRef::is_aws_managed),
                    "shares {created}"
                );
            }
        }
    }

    // Every touched key is granted to the actor, with the actions of its use.
    for step in plan.all_steps() {
        for (key, usage) in touched_keys(step) {
            let grant = plan
                .key_grants
                .iter()
                .find(|g| g.role == step.actor && g.key == key);
            prop_assert!(
                grant.is_some(),
                "{} by {:?} touches {key} without a grant",
                step.action(),
                step.actor
            );
            let actions = &grant.map(|g| g.actions.clone()).unwrap_or_default();
            for needed in usage.actions() {
                prop_assert!(
                    actions.contains(&needed),
                    "{key}: {needed} missing for {:?}",
                    step.actor
                );
            }
        }
    }
    for grant in &plan.key_grants {
        if grant.key.is_aws_managed() {
            let role_account = grant.role.role().map(|r| r.account().clone());
            prop_assert_eq!(
                role_account.as_ref(),
                Some(grant.key.account()),
                "foreign aws/ebs for {:?}",
                grant.role
            );
        }
    }

    // Cleanup removes every temporary creation exactly once (in cleanup, or in the main steps
    // for what the operation itself releases); rollback every kept one.
    let created = |kept: bool| -> BTreeMap<Resource, usize> {
        let mut m = BTreeMap::new();
        for step in plan.steps.iter().filter(|s| s.kept == kept && !is_removal(s)) {
            for r in &step.creates() {
                *m.entry(r.clone()).or_insert(0) += 1;
            }
        }
        m
    };
    let removed = |steps: &mut dyn Iterator<Item = &Step>| -> BTreeMap<Resource, usize> {
        let mut m = BTreeMap::new();
        for step in steps.filter(|s| is_removal(s)) {
            *m.entry(step.resource()).or_insert(0) += 1;
        }
        m
    };
    let temporary = created(false);
    // The one thing a plan removes without creating it: the base snapshot of the previous
    // direct backup, replaced by the new one.
    let replaced = |s: &&Step| !matches!(&s.resource(), Resource::Snapshot(snap) if snap.origin == SnapshotOrigin::PreviousBase);
    // (A kept resource the operation itself removes, like a restored volume once the
    // restored instance has its own, is removed in the main steps and in the rollback.)
    let cleaned: BTreeMap<Resource, usize> =
        removed(&mut plan.steps.iter().chain(&plan.cleanup).filter(replaced))
            .into_iter()
            .filter(|(r, _)| !created(true).contains_key(r))
            .collect();
    prop_assert_eq!(
        &temporary,
        &cleaned,
        "cleanup does not match what the steps create"
    );
    prop_assert!(temporary.values().all(|n| *n == 1));
    let kept = created(true);
    let rolled_back = removed(&mut plan.rollback.iter());
    prop_assert_eq!(&kept, &rolled_back, "rollback does not match what the steps keep");
    for step in plan.cleanup.iter().chain(&plan.rollback) {
        prop_assert!(is_removal(step), "cleanup step {} removes nothing", step.action());
        prop_assert!(
            !matches!(step.resource(), Resource::Role(_) | Resource::Instance(_)),
            "removes {}",
            step.resource()
        );
    }
    let production_worker_roles: BTreeSet<&RoleArn> = estate
        .accounts
        .values()
        .filter_map(|a| a.worker_role.as_ref())
        .collect();
    for step in plan.all_steps() {
        if let Resource::Role(role) = &step.resource() {
            prop_assert!(
                step.action().as_str() == "sts:AssumeRole" || !production_worker_roles.contains(role),
                "{} on a worker role",
                step.action()
            );
        }
    }

    // Roles are assumed before they act, and act in their own account.
    let mut assumed = BTreeSet::new();
    for step in &plan.steps {
        if step.action().as_str() == "sts:AssumeRole" {
            if let Resource::Role(role) = &step.resource() {
                assumed.insert(role.clone());
            }
        }
        if let Actor::Role(role) = &step.actor {
            prop_assert!(assumed.contains(role), "{} acts before it is assumed", role);
        }
        if let Some(role) = step.actor.role() {
            prop_assert_eq!(&step.account, role.account());
        }
    }

    // The generated policies allow every step by its actor, and key policies name the roles.
    let pol = policies(estate, plan);
    for step in plan
        .all_steps()
        .filter(|s| !s.action().as_str().starts_with("kms:"))
    {
        let arn = step
            .actor
            .role()
            .map_or(plan.appliance.clone(), ToString::to_string);
        let doc = &pol.roles.iter().find(|r| r.role == arn).map(|r| r.policy.clone());
        prop_assert!(doc.is_some(), "no policy for {arn}");
        let statements = doc.as_ref().map(|d| d.statements.clone()).unwrap_or_default();
        let allowed = statements.iter().any(|s| {
            s.action
                .iter()
                .flatten()
                .any(|a| a == step.action().as_str() || a.ends_with(":*") || a == "*")
        });
        prop_assert!(allowed, "{arn} may not {}", step.action());
    }
    for grant in plan.key_grants.iter().filter(|g| !g.implicit()) {
        let arn = grant
            .role
            .role()
            .map_or(plan.appliance.clone(), ToString::to_string);
        let key = pol.keys.iter().find(|k| k.key == grant.key.arn());
        prop_assert!(key.is_some_and(|k| k
            .statements
            .iter()
            .any(|s| s.principal == Some(Principals::aws(arn.clone())))));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_plan_keeps_the_rules(g in gen()) {
        let Some((estate, op)) = build(&g) else { return Ok(()) };
        match plan(&estate, &op) {
            Ok(p) => {
                check_plan(&estate, &p)?;
                // Plans are a pure function of their input.
                prop_assert_eq!(plan(&estate, &op), Ok(p));
            }
            Err(refusal) => {
                prop_assert!(!refusal.message.is_empty() && !refusal.remedy.is_empty());
                if let Operation::Replicate { target_key: Some(k), to_region, .. }
                | Operation::Restore { target_key: Some(k), to_region, .. } = &op
                {
                    if k.region() != to_region && refusal.code != RefusalCode::UnknownAccount {
                        prop_assert_eq!(refusal.code, RefusalCode::KeyNotInTargetRegion);
                    }
                }
            }
        }
    }

    /// The refusal of aws/ebs sharing is never a false alarm: with every aws/ebs key of the
    /// estate replaced by a customer managed key, the same operation never gets that refusal.
    #[test]
    fn aws_managed_key_refusals_come_only_from_aws_managed_keys(g in gen()) {
        let Some((mut estate, op)) = build(&g) else { return Ok(()) };
        for instance in &mut estate.instances {
            for v in &mut instance.volumes {
                if let Some(KeyRef::AwsManaged { account, region }) = &v.key {
                    v.key = Some(cmk(account.as_str(), region, 7));
                }
            }
        }
        let places: Vec<(AccountId, Region)> = PRODUCTION
            .iter()
            .chain(std::iter::once(&BACKUP))
            .flat_map(|a| (0..3).map(move |r| (account(a), region(r))))
            .collect();
        for (a, r) in places {
            estate.default_keys.entry((a.clone(), r.clone())).or_insert_with(|| cmk(a.as_str(), &r, 8));
        }
        if let Err(refusal) = plan(&estate, &op) {
            prop_assert_ne!(refusal.code, RefusalCode::AwsManagedKeyNotShareable, "{}", refusal);
        }
    }
}
