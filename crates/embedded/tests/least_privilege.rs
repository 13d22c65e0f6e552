//! The policies `bulwark policy plan` generates are sufficient and least-privilege, checked
//! end to end on the embedded cloud over generated estates:
//!
//! - sufficient: for every operation the planner accepts, roles and keys given exactly
//!   `Grants::from_plans(estate, [prerequisite, plan])` run the session to success (restores
//!   first run their prerequisite, a snapshot or a backup, in the same world);
//! - least privilege: removing any one permission the main plan needs (one action of one
//!   identity-policy statement of one role, or of one key-policy statement) makes the session
//!   fail, at a step of the plan that needs it: the failed step's action, one of its `also`
//!   permissions, a key it uses (KMS actions), or an assume step / a step of the assumed role
//!   (sts:AssumeRole); a worker failure when the permission is one the worker or the
//!   repository role uses; without workers, the transfer's error naming the action refused to
//!   the identity that lost it (the appliance's transfer makes the calls of several steps at
//!   once); an incomplete cleanup naming the action when only cleanup or
//!   rollback needs it (rollback-only permissions are exercised by failing the session's last
//!   step with an injected fault).
//!
//! What counts as one permission follows AWS's evaluation rules (IAM user guide, "Policy
//! evaluation logic"; `reference/aws-rules.md`, "IAM and STS"): within one account, a role
//! trust policy or a KMS key policy that names the principal ARN is enough on its own, so the
//! identity-policy half of such a grant is redundant with its resource-policy half. There a
//! permission is the pair, removed together: the appliance's `sts:AssumeRole` on a role of its
//! own account with that role's trust statement naming the appliance; a role's KMS action on a
//! key of its own account with the same action in the key-policy statement naming the role.
//! Across accounts each half is a permission of its own, and each is checked alone.
//!
//! Exclusions:
//! - the permissions of worker roles other than `sqs:ReceiveMessage`, `sqs:SendMessage` and
//!   `sqs:DeleteMessage` (the SSM agent's `ec2messages:*`, `ssm:*`, `ssmmessages:*`, the IAM
//!   reads, and `sqs:ListQueues`): the vendor documentation mandates them for the worker's
//!   management channel, `bulwark policy worker-role` prints that list exactly, and Bulwark's
//!   worker calls none of them (it gets its queue URL in its user data), so removing one
//!   changes nothing a session does;
//! - temporary worker roles (`role/bulwark/...`): their policy is not an administrator's
//!   grant but the document the session itself writes (iam:PutRolePolicy), so there is
//!   nothing to remove from the world;
//! - a permission the prerequisite session's plan also grants to the same role on the same
//!   resource: it stays, as the prerequisite needs it;
//! - `ebs:ListChangedBlocks` of a backup without workers: the first backup of a volume lists
//!   every block, and only the next one lists the changes since it (the session test
//!   `faults::a_refusal_at_any_step_of_a_backup_without_workers_keeps_the_previous_backup_and_its_base`
//!   refuses it in a second backup);
//! - `kms:Decrypt` of a backup role whose only decrypting step is the listing of changes of a
//!   backup with workers: a first backup lists none; the session test
//!   `incremental::the_listing_of_changes_needs_the_backup_role_to_decrypt_with_the_volume_key`
//!   removes it before a second backup;
//! - `ec2:DetachVolume` of a restore with a single volume, needed only to roll back an
//!   attachment: the only attachment is the last step, so no injected failure can come after
//!   it (restores of several volumes check it).
//!
//! (Over 800 lines: the estate generator, the permission model and the checks belong together.)
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bulwark_cloud::policy::resource_matches;
use bulwark_cloud::ErrorKind;
use bulwark_embedded::{DataSize, Embedded, Grants};
use bulwark_engine::EngineError;
use bulwark_model::iam::{PolicyDocument, Principals, Statement};
use bulwark_model::{
    Account, AccountId, Appliance, Estate, Instance, KeyRef, Region, Repository, RoleArn, Volume,
};
use bulwark_plan::{Actor, Operation, Placement, Plan, Resource, RestoreSource, Step};
use bulwark_sim::Fault;

const BACKUP: &str = "111111111111";
const PRODUCTION: [&str; 2] = ["222222222222", "333333333333"];
const REGIONS: [&str; 2] = ["us-east-1", "eu-west-1"];
const APPLIANCE_ROLE: &str = "arn:aws:iam::111111111111:role/BulwarkAppliance";

/// How many estates, and how many of each kind of plan get every permission checked (the
/// others get a deterministic sample of `SAMPLE` permissions).
const ESTATES: u64 = 6;
const FULL_PER_KIND: usize = 1;
const SAMPLE: usize = 2;

// ---- estates ------------------------------------------------------------------------------

/// A small deterministic generator (SplitMix64), so that a failure names its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

fn account(s: &str) -> AccountId {
    s.parse().unwrap()
}
fn role(account: &str, name: &str) -> RoleArn {
    format!("arn:aws:iam::{account}:role/{name}").parse().unwrap()
}
fn cmk(account: &str, region: &str, n: u8) -> KeyRef {
    let id = format!("{}-aaaa-4bbb-8ccc-{:012x}", &account[..8], n);
    KeyRef::Customer(
        format!("arn:aws:kms:{region}:{account}:key/{id}")
            .parse()
            .unwrap(),
    )
}

/// An estate: the backup account with an appliance role, one or two production accounts
/// (some with an external id), one or two regions, one or two instances of one to three
/// 1 GiB volumes under a customer managed key, aws/ebs or none, customer managed default keys
/// here and there, and a repository.
fn estate(seed: u64) -> Estate {
    let mut rng = Rng(seed);
    let regions = &REGIONS[..1 + rng.below(2) as usize];
    let production = &PRODUCTION[..1 + rng.below(2) as usize];
    let mut accounts = BTreeMap::new();
    for id in production {
        accounts.insert(
            account(id),
            Account {
                id: account(id),
                backup_role: Some(role(id, "Backup")),
                restore_role: Some(role(id, "Restore")),
                worker_role: Some(role(id, "Worker")),
                external_id: rng.chance(50).then(|| format!("bulwark-{id}")),
            },
        );
    }
    let mut default_keys = BTreeMap::new();
    let mut encryption_by_default = BTreeSet::new();
    for id in std::iter::once(&BACKUP).chain(production) {
        for region in regions {
            if rng.chance(60) {
                default_keys.insert((account(id), region.parse().unwrap()), cmk(id, region, 9));
            }
            if rng.chance(25) {
                encryption_by_default.insert((account(id), region.parse().unwrap()));
            }
        }
    }
    let mut instances = Vec::new();
    for n in 0..1 + rng.below(2) {
        let owner = production[rng.below(production.len() as u64) as usize];
        let region = regions[rng.below(regions.len() as u64) as usize];
        let volumes = (0..1 + rng.below(3))
            .map(|v| Volume {
                id: format!("vol-{:017x}", n * 16 + v + 1).parse().unwrap(),
                size_gib: 1,
                key: match rng.below(5) {
                    0 => None,
                    1 => Some(KeyRef::AwsManaged {
                        account: account(owner),
                        region: region.parse().unwrap(),
                    }),
                    _ => Some(cmk(owner, region, 1)),
                },
            })
            .collect();
        instances.push(Instance {
            id: format!("i-{:017x}", n + 1).parse().unwrap(),
            account: account(owner),
            region: region.parse().unwrap(),
            volumes,
            tags: Default::default(),
        });
    }
    Estate {
        appliance: Appliance {
            account: account(BACKUP),
            worker_deployment_role: role(BACKUP, "WorkerDeployment"),
            role: Some(APPLIANCE_ROLE.parse().unwrap()),
        },
        accounts,
        default_keys,
        encryption_by_default,
        instances,
        repository: Some(Repository {
            bucket: format!("bulwark-lp-{BACKUP}").parse().unwrap(),
            prefix: if rng.chance(50) {
                "ec2".into()
            } else {
                String::new()
            },
            region: regions[0].parse().unwrap(),
            role: role(BACKUP, "BulwarkRepository"),
        }),
        workers: Default::default(),
        embedded: Default::default(),
    }
}

// ---- cases --------------------------------------------------------------------------------

struct Case {
    seed: u64,
    estate: Estate,
    prereq: Option<Plan>,
    plan: Plan,
    /// Every permission checked, or a sample.
    full: bool,
}

fn kind(op: &Operation) -> String {
    match op {
        Operation::Snapshot { .. } => "snapshot".into(),
        Operation::Backup { workers, .. } => format!("backup {:?}", workers),
        Operation::Replicate { .. } => "replicate".into(),
        Operation::Restore { from, workers, .. } => format!("restore {from:?} {workers:?}"),
        Operation::RestoreVolumes { from, workers, .. } => format!("restore volumes {from:?} {workers:?}"),
        Operation::Expire { .. } => "expire".into(),
    }
}

/// Every operation the planner accepts on `estate`, with its prerequisite's plan.
fn cases(seed: u64, estate: &Estate) -> Vec<Case> {
    let regions: BTreeSet<Region> = REGIONS.iter().map(|r| r.parse().unwrap()).collect();
    let plan = |op: &Operation| bulwark_plan::plan(estate, op).ok();
    let mut out = Vec::new();
    for i in &estate.instances {
        let instance = i.id.clone();
        let snapshot = Operation::Snapshot {
            instance: instance.clone(),
        };
        let backups: Vec<Operation> = [
            Placement::BackupAccount,
            Placement::ProductionAccount,
            Placement::NoWorker,
        ]
        .into_iter()
        .map(|w| Operation::Backup {
            instance: instance.clone(),
            workers: Some(w),
            file_index: false,
        })
        .collect();
        // The backup a restore from backup reads: any placement that works.
        let backup_plan = backups.iter().find_map(plan);
        let mut ops: Vec<(Option<Plan>, Operation)> = vec![(None, snapshot.clone())];
        ops.extend(backups.iter().map(|b| (None, b.clone())));
        let snapshot_plan = plan(&snapshot);
        for to_account in estate.accounts.keys() {
            for to_region in regions.iter().filter(|r| {
                r.as_str() == i.region.as_str() || estate.instances.iter().any(|j| &j.region == *r)
            }) {
                ops.push((
                    None,
                    Operation::Replicate {
                        instance: instance.clone(),
                        to_account: to_account.clone(),
                        to_region: to_region.clone(),
                        target_key: None,
                    },
                ));
                ops.push((
                    snapshot_plan.clone(),
                    Operation::Restore {
                        instance: instance.clone(),
                        from: RestoreSource::Snapshot,
                        to_account: to_account.clone(),
                        to_region: to_region.clone(),
                        target_key: None,
                        workers: None,
                        launch: Default::default(),
                    },
                ));
                for w in [
                    Placement::BackupAccount,
                    Placement::ProductionAccount,
                    Placement::NoWorker,
                ] {
                    ops.push((
                        backup_plan.clone(),
                        Operation::Restore {
                            instance: instance.clone(),
                            from: RestoreSource::Backup,
                            to_account: to_account.clone(),
                            to_region: to_region.clone(),
                            target_key: None,
                            workers: Some(w),
                            launch: Default::default(),
                        },
                    ));
                }
            }
        }
        for (prereq, op) in ops {
            let needs_prereq = matches!(op, Operation::Restore { .. });
            if needs_prereq && prereq.is_none() {
                continue;
            }
            if let Some(p) = plan(&op) {
                out.push(Case {
                    seed,
                    estate: estate.clone(),
                    prereq,
                    plan: p,
                    full: false,
                });
            }
        }
    }
    out
}

// ---- grants and permissions ---------------------------------------------------------------

fn actions(s: &Statement) -> Vec<String> {
    s.action.clone().unwrap_or_default()
}

fn resources(s: &Statement) -> Vec<String> {
    s.resource.clone().unwrap_or_default()
}

/// The `AWS` principals a statement names.
fn principals(s: &Statement) -> Vec<String> {
    match &s.principal {
        Some(Principals::ByType(types)) => types.get("AWS").cloned().unwrap_or_default(),
        _ => Vec::new(),
    }
}

fn arn_account(arn: &str) -> &str {
    arn.split(':').nth(4).unwrap_or_default()
}

/// The grants of `plans`, with the appliance role's trust (which `bulwark policy plan` leaves
/// to the administrator) letting the backup account assume it, as the appliance host does.
fn grants(estate: &Estate, plans: &[&Plan]) -> Grants {
    let plans: Vec<Plan> = plans.iter().map(|p| (*p).clone()).collect();
    let mut g = Grants::from_plans(estate, &plans);
    if let Some((trust, _)) = g.roles.get_mut(APPLIANCE_ROLE) {
        *trust = Some(PolicyDocument::new(vec![Statement::allow(
            ["sts:AssumeRole"],
            Vec::<String>::new(),
        )
        .on_any_resource()
        .for_principal(Principals::aws(format!("arn:aws:iam::{BACKUP}:root")))]));
    }
    g
}

/// One change to the grants.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Edit {
    /// Drop `action` from `role`'s statements on exactly `resources`.
    Identity {
        role: String,
        action: String,
        resources: Vec<String>,
    },
    /// Drop `action` from `key`'s statements naming `principal`.
    Key {
        key: String,
        principal: String,
        action: String,
    },
    /// Drop `role`'s trust statements naming `principal`.
    Trust { role: String, principal: String },
}

/// One permission: who holds it, the action, and the edits that take it away.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Permission {
    owner: String,
    action: String,
    /// The resources it is on (roles for sts:AssumeRole, keys for KMS actions).
    resources: Vec<String>,
    edits: Vec<Edit>,
}

impl std::fmt::Display for Permission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sides: Vec<&str> = self
            .edits
            .iter()
            .map(|e| match e {
                Edit::Identity { .. } => "identity",
                Edit::Key { .. } => "key policy",
                Edit::Trust { .. } => "trust",
            })
            .collect();
        write!(
            f,
            "{} of {} on {:?} ({})",
            self.action,
            self.owner,
            self.resources,
            sides.join(" + ")
        )
    }
}

fn remove_action(statements: &mut Vec<Statement>, matches: impl Fn(&Statement) -> bool, action: &str) {
    for s in statements.iter_mut().filter(|s| matches(s)) {
        let left: Vec<String> = actions(s).into_iter().filter(|a| a != action).collect();
        s.action = Some(left);
    }
    statements.retain(|s| !actions(s).is_empty());
}

fn apply(grants: &Grants, edits: &[Edit]) -> Grants {
    let mut g = Grants {
        roles: grants.roles.clone(),
        keys: grants.keys.clone(),
    };
    for edit in edits {
        match edit {
            Edit::Identity {
                role,
                action,
                resources,
            } => {
                if let Some((_, statements)) = g.roles.get_mut(role) {
                    remove_action(statements, |s| &self::resources(s) == resources, action);
                }
            }
            Edit::Key {
                key,
                principal,
                action,
            } => {
                if let Some(statements) = g.keys.get_mut(key) {
                    remove_action(statements, |s| principals(s).contains(principal), action);
                }
            }
            Edit::Trust { role, principal } => {
                if let Some((Some(trust), _)) = g.roles.get_mut(role) {
                    trust.statements.retain(|s| !principals(s).contains(principal));
                }
            }
        }
    }
    g
}

/// Whether `grants` give `role` `action` on any of `resources`.
fn holds(grants: &Grants, role: &str, action: &str, resources: &[String]) -> bool {
    grants.roles.get(role).is_some_and(|(_, statements)| {
        statements.iter().any(|s| {
            actions(s).iter().any(|a| a == action)
                && self::resources(s)
                    .iter()
                    .any(|pattern| resources.iter().any(|r| resource_matches(pattern, r)))
        })
    })
}

fn key_holds(grants: &Grants, key: &str, principal: &str, action: &str) -> bool {
    grants.keys.get(key).is_some_and(|statements| {
        statements
            .iter()
            .any(|s| principals(s).iter().any(|p| p == principal) && actions(s).iter().any(|a| a == action))
    })
}

/// What is excluded, and why (see the module documentation).
fn excluded(plan: &Plan, role: &str, trust: &Option<PolicyDocument>, action: &str) -> Option<&'static str> {
    if role.contains(":role/bulwark/") {
        return Some("temporary worker role: the session writes its policy");
    }
    if action == "ebs:ListChangedBlocks" {
        return Some("ebs:ListChangedBlocks: a first direct backup lists every block (sessions::faults checks the next)");
    }
    if action == "kms:Decrypt" && only_listing_decrypts(plan, role) {
        return Some("kms:Decrypt for the listing of changes: a first backup lists none (sessions::incremental checks the next)");
    }
    let worker = trust
        .as_ref()
        .is_some_and(|t| t.to_string().contains("ec2.amazonaws.com"));
    let used = ["sqs:ReceiveMessage", "sqs:SendMessage", "sqs:DeleteMessage"];
    (worker && !used.contains(&action)).then_some("worker role: vendor-documented, unused by the worker")
}

/// Whether the only steps of `role` that decrypt with a key are listings of changes, which a
/// first backup with workers does not make.
fn only_listing_decrypts(plan: &Plan, role: &str) -> bool {
    let decrypting: Vec<&Step> = plan
        .all_steps()
        .filter(|s| actor_arn(plan, &s.actor) == role)
        .filter(|s| {
            s.keys
                .iter()
                .any(|k| k.usage.actions().contains(&bulwark_model::Action::KmsDecrypt))
        })
        .collect();
    !decrypting.is_empty()
        && decrypting
            .iter()
            .all(|s| matches!(s.call, bulwark_plan::Call::ListChangedBlocks { .. }))
}

/// The permissions the main plan needs beyond the prerequisite's, and how many were left out.
fn permissions(case: &Case) -> (Vec<Permission>, BTreeMap<&'static str, usize>) {
    let main = grants(&case.estate, &[&case.plan]);
    let prereq = case
        .prereq
        .as_ref()
        .map(|p| grants(&case.estate, &[p]))
        .unwrap_or_default();
    let appliance = case.plan.appliance.clone();
    let mut out = BTreeSet::new();
    let mut skipped: BTreeMap<&'static str, usize> = BTreeMap::new();
    for (role, (trust, statements)) in &main.roles {
        for s in statements {
            let resources = self::resources(s);
            for action in actions(s) {
                if let Some(why) = excluded(&case.plan, role, trust, &action) {
                    *skipped.entry(why).or_default() += 1;
                    continue;
                }
                if holds(&prereq, role, &action, &resources) {
                    *skipped.entry("needed by the prerequisite").or_default() += 1;
                    continue;
                }
                let mut edits = vec![Edit::Identity {
                    role: role.clone(),
                    action: action.clone(),
                    resources: resources.clone(),
                }];
                let same_account = |r: &String| arn_account(r) == arn_account(role);
                if action.starts_with("kms:") {
                    for key in resources.iter().filter(|k| same_account(k)) {
                        edits.push(Edit::Key {
                            key: key.clone(),
                            principal: role.clone(),
                            action: action.clone(),
                        });
                    }
                }
                if action == "sts:AssumeRole" {
                    for target in resources.iter().filter(|r| same_account(r)) {
                        edits.push(Edit::Trust {
                            role: target.clone(),
                            principal: role.clone(),
                        });
                    }
                }
                out.insert(Permission {
                    owner: role.clone(),
                    action,
                    resources: resources.clone(),
                    edits,
                });
            }
        }
    }
    for (key, statements) in &main.keys {
        for s in statements {
            for principal in principals(s) {
                if arn_account(&principal) == arn_account(key) {
                    continue; // paired with the identity statement above
                }
                for action in actions(s) {
                    if key_holds(&prereq, key, &principal, &action) {
                        *skipped.entry("needed by the prerequisite").or_default() += 1;
                        continue;
                    }
                    out.insert(Permission {
                        owner: principal.clone(),
                        action: action.clone(),
                        resources: vec![key.clone()],
                        edits: vec![Edit::Key {
                            key: key.clone(),
                            principal: principal.clone(),
                            action,
                        }],
                    });
                }
            }
        }
    }
    let _ = appliance;
    (out.into_iter().collect(), skipped)
}

// ---- running ------------------------------------------------------------------------------

fn actor_arn(plan: &Plan, actor: &Actor) -> String {
    actor
        .role()
        .map_or_else(|| plan.appliance.clone(), ToString::to_string)
}

/// What a session that succeeded left behind that it should not have: repository locks.
/// The lock is released when the worker's transfer ends, where an error cannot surface
/// (`bulwark_repo::Lock` drops it and ignores a failed delete), so a missing
/// `s3:DeleteObject` on the locks shows as a lock left in the repository, blocking exclusive
/// operations (prune) until it is stale.
fn leftovers(dir: &std::path::Path, estate: &Estate) -> Vec<String> {
    let Some(repo) = &estate.repository else {
        return Vec::new();
    };
    let locks = dir
        .join("cloud/s3")
        .join(repo.bucket.as_str())
        .join(&repo.prefix)
        .join("locks");
    std::fs::read_dir(locks)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| format!("repository lock {}", e.file_name().to_string_lossy()))
                .collect()
        })
        .unwrap_or_default()
}

/// Builds a world granting `grants`, runs the prerequisite (which must succeed), injects
/// `fault`, and runs the plan; a success that leaves a repository lock is answered as an
/// incomplete cleanup.
fn run(case: &Case, grants: &Grants, fault: Option<Fault>) -> Result<(), EngineError> {
    let dir = tempfile::tempdir().expect("temp dir");
    let world = Embedded::create(
        dir.path(),
        &case.estate,
        grants,
        DataSize {
            bytes_per_volume: 1 << 20,
        },
    )
    .unwrap_or_else(|e| panic!("seed {}: the world builds: {e}", case.seed));
    let engine = world
        .engine()
        .with_timing(Duration::from_millis(5), Duration::from_millis(500))
        .with_worker_timeout(Duration::from_secs(8));
    if let Some(p) = &case.prereq {
        engine
            .run(p)
            .unwrap_or_else(|e| panic!("seed {}: the prerequisite {} fails: {e}", case.seed, p.summary));
    }
    if let Some(f) = fault {
        world.sim.inject(f).expect("fault");
    }
    let result = engine.run(&case.plan).map(|_| ());
    world.sim.wait_idle();
    let left = leftovers(dir.path(), &case.estate);
    match result {
        Ok(()) if !left.is_empty() => Err(EngineError::CleanupIncomplete {
            failure: "the session succeeded".into(),
            left,
            journal: String::new(),
        }),
        other => other,
    }
}

/// Whether `step` needs `p`.
fn step_needs(plan: &Plan, step: &Step, p: &Permission) -> bool {
    let a = p.action.as_str();
    let by_owner = actor_arn(plan, &step.actor) == p.owner;
    let direct =
        by_owner && (step.action().as_str() == a || step.also.iter().any(|x| x.action.as_str() == a));
    let key =
        a.starts_with("kms:") && by_owner && step.keys.iter().any(|k| p.resources.contains(&k.key.arn()));
    let assume = a == "sts:AssumeRole"
        && (matches!(&step.resource(), Resource::Role(r) if step.action().as_str() == a && p.resources.contains(&r.to_string()))
            || step
                .actor
                .role()
                .is_some_and(|r| p.resources.contains(&r.to_string())));
    direct || key || assume
}

/// The permissions the worker and the repository role use, whose loss the worker reports.
fn worker_side(case: &Case, p: &Permission) -> bool {
    let repository = case
        .estate
        .repository
        .as_ref()
        .is_some_and(|r| r.role.as_str() == p.owner);
    let worker = case
        .plan
        .all_steps()
        .any(|s| matches!(&s.actor, Actor::Worker(r) if r.as_str() == p.owner));
    (repository && p.action.as_str().starts_with("s3:")) || (worker && p.action.as_str().starts_with("sqs:"))
}

/// A failure that rolls back everything the plan keeps: the last main step the engine runs
/// fails after the others succeeded (for a last step that creates snapshots, the wait for the
/// last of them, so that they exist).
fn last_step_fault(plan: &Plan) -> Option<Fault> {
    let engine_steps: Vec<&Step> = plan
        .steps
        .iter()
        .filter(|s| !matches!(s.actor, Actor::Worker(_)) && !s.action().as_str().starts_with("s3:"))
        .collect();
    let last = engine_steps.last()?;
    let fail = |action: &str, skip: usize| Fault::Fail {
        action: action.parse().expect("a known action"),
        skip: skip as u64,
        code: "InjectedFailure".into(),
        kind: ErrorKind::NotPermitted,
    };
    match last.action().as_str() {
        "ec2:CreateSnapshots" | "ec2:CopySnapshot" | "ec2:CreateSnapshot" => {
            let describes: usize = engine_steps
                .iter()
                .map(|s| match s.action().as_str() {
                    "ec2:CreateSnapshots" => s.creates().len(),
                    "ec2:CopySnapshot" | "ec2:CreateSnapshot" => 1,
                    _ => 0,
                })
                .sum();
            Some(fail("ec2:DescribeSnapshots", describes - 1))
        }
        action => {
            let before = engine_steps
                .iter()
                .filter(|s| s.action().as_str() == action)
                .count()
                - 1;
            Some(fail(action, before))
        }
    }
}

/// Whether `message` is AWS's refusal of `p` to its owner, in a session without workers.
fn refused_in(case: &Case, p: &Permission, message: &str) -> bool {
    let no_worker = !case
        .plan
        .steps
        .iter()
        .any(|s| matches!(s.resource(), Resource::Worker { .. }));
    let session = p
        .owner
        .split_once(":role/")
        .map(|(account, name)| format!("{}:assumed-role/{name}/", account.replace(":iam:", ":sts:")));
    // With workers, the appliance still reads the repository with its role, to choose what
    // each volume's backup reads.
    let appliance_reads = no_worker || (worker_side(case, p) && p.action.as_str().starts_with("s3:"));
    appliance_reads
        && message.contains(&format!("perform: {}", p.action))
        && session.is_some_and(|s| message.contains(&s))
}

fn left_names(left: &[String], action: &str) -> bool {
    left.iter().any(|l| l.contains(&format!("perform: {action}")))
}

/// Checks that losing `p` makes the session fail where the plan says; answers a violation.
fn check_permission(case: &Case, full: &Grants, p: &Permission) -> Result<&'static str, String> {
    let g = apply(full, &p.edits);
    let plan = &case.plan;
    let outcome = run(case, &g, None);
    let undo_needs = plan
        .cleanup
        .iter()
        .chain(&plan.rollback)
        .any(|s| s.action().as_str() == p.action && actor_arn(plan, &s.actor) == p.owner);
    match outcome {
        Err(EngineError::Step(f)) => {
            let step = &plan.steps[f.step - 1];
            if step_needs(plan, step, p) {
                Ok("step")
            } else {
                Err(format!(
                    "failed at step {} ({} {} by {}), which does not need it: {}",
                    f.step, f.action, f.resource, f.actor, f.error
                ))
            }
        }
        // A permission a removal needs is proven before the first creation.
        Err(EngineError::CannotCleanUp { role, missing })
            if role == p.owner
                && missing
                    .iter()
                    .any(|m| m.starts_with(&format!("{} on ", p.action))) =>
        {
            Ok("proof")
        }
        Err(EngineError::Worker { message, .. }) if worker_side(case, p) => {
            let _ = message;
            Ok("worker")
        }
        Err(EngineError::CleanupIncomplete { left, failure, .. }) => {
            if undo_needs && left_names(&left, &p.action) {
                Ok("cleanup")
            } else if p.action.as_str() == "s3:DeleteObject"
                && left.iter().any(|l| l.starts_with("repository lock"))
            {
                Ok("lock left")
            } else {
                Err(format!(
                    "cleanup incomplete without needing it: {failure}; left {left:?}"
                ))
            }
        }
        // Without workers the appliance's transfer makes the calls of several steps at once
        // (the EBS direct APIs, the repository): it names the call and the identity refused.
        Err(error @ (EngineError::Direct(_) | EngineError::NotReady(_)))
            if refused_in(case, p, &error.to_string()) =>
        {
            Ok("direct")
        }
        Err(other) => Err(format!("failed otherwise: {other}")),
        Ok(()) if undo_needs && plan.rollback.iter().any(|s| s.action().as_str() == p.action) => {
            // Needed only to roll back: fail the session at its end.
            let fault = last_step_fault(plan).ok_or("no step to fail")?;
            match run(case, &g, Some(fault)) {
                Err(EngineError::CleanupIncomplete { left, .. }) if left_names(&left, &p.action) => {
                    Ok("rollback")
                }
                Err(EngineError::Step(_))
                    if p.action.as_str() == "ec2:DetachVolume"
                        && plan
                            .steps
                            .iter()
                            .filter(|s| s.action().as_str() == "ec2:AttachVolume" && s.kept)
                            .count()
                            == 1 =>
                {
                    Ok("unexercisable rollback")
                }
                other => Err(format!(
                    "the session succeeds without it, and a failed session rolls back without it too: {:?}",
                    other.err().map(|e| e.to_string())
                )),
            }
        }
        Ok(()) => Err("the session succeeds without it".into()),
    }
}

#[test]
fn generated_policies_are_sufficient_and_least_privilege() {
    let started = Instant::now();
    let mut all: Vec<Case> = (1..=ESTATES)
        .flat_map(|seed| cases(seed, &estate(seed)))
        .collect();
    // Every permission for the first plans of each kind, a sample for the rest.
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for c in &mut all {
        let n = seen.entry(kind(&c.plan.operation)).or_default();
        c.full = *n < FULL_PER_KIND;
        *n += 1;
    }
    // Jobs: one success run per case, one run per permission checked.
    let mut jobs: Vec<(usize, Option<Permission>)> = Vec::new();
    let mut skipped_total: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut sampled_out = 0;
    for (i, c) in all.iter().enumerate() {
        jobs.push((i, None));
        let (perms, skipped) = permissions(c);
        for (k, v) in skipped {
            *skipped_total.entry(k).or_default() += v;
        }
        let n = perms.len();
        let mut rng = Rng(c.seed * 1000 + i as u64);
        let chosen: BTreeSet<usize> = if c.full {
            (0..n).collect()
        } else {
            (0..SAMPLE.min(n) * 3)
                .map(|_| rng.below(n.max(1) as u64) as usize)
                .take(SAMPLE)
                .collect()
        };
        sampled_out += n - chosen.len();
        jobs.extend(chosen.into_iter().map(|k| (i, Some(perms[k].clone()))));
    }
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::<String>::new());
    let kinds = Mutex::new(BTreeMap::<&'static str, usize>::new());
    std::thread::scope(|scope| {
        // Sessions mostly wait (worker polls, queues): three at a time keep two cores busy.
        for _ in 0..3 {
            scope.spawn(|| loop {
                let j = next.fetch_add(1, Ordering::SeqCst);
                let Some((i, perm)) = jobs.get(j) else { break };
                let case = &all[*i];
                let mut plans = vec![&case.plan];
                plans.extend(&case.prereq);
                let full = grants(&case.estate, &plans);
                let what = format!("seed {}: {}", case.seed, case.plan.summary);
                let result = match perm {
                    None => run(case, &full, None)
                        .map(|()| "sufficient")
                        .map_err(|e| format!("fails with every generated permission: {e}")),
                    Some(p) => check_permission(case, &full, p).map_err(|e| format!("without {p}: {e}")),
                };
                match result {
                    Ok(k) => *kinds.lock().unwrap().entry(k).or_default() += 1,
                    Err(e) => failures.lock().unwrap().push(format!("{what}\n    {e}")),
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    eprintln!(
        "{} plans of {} estates; {} permissions checked ({:?}); {} sampled out; left out: {:?}; {:?}",
        all.len(),
        ESTATES,
        jobs.len() - all.len(),
        kinds.into_inner().unwrap(),
        sampled_out,
        skipped_total,
        started.elapsed()
    );
    assert!(
        failures.is_empty(),
        "{} problems:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
