//! Faults: a call refused at any step of any session type leaves no resource behind, no
//! unclosed journal and an intact repository; a worker that dies fails its session cleanly;
//! throttling is absorbed; what a cleanup could not remove, recovery removes.
//!
//! Each fault is injected when the engine announces the step it targets (`Event::Step`), so
//! that it hits that step's own call whatever calls came before: the worker's launch is
//! retried while its fresh instance profile is not yet visible to EC2, and the worker also
//! calls `sqs:ReceiveMessage` while it waits for its task, so counting earlier plan steps
//! would miss the step.
//!
//! (Over 800 lines: one test per fault and session type, sharing the fault helpers above them.)

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bulwark_cloud::ErrorKind;
use bulwark_embedded::{all_operations, plans, Grants};
use bulwark_engine::{EngineError, Event, Listener, SessionId};
use bulwark_plan::{Operation, Placement, RestoreSource};
use bulwark_sim::{Fault, Inventory};

use crate::common::*;

/// A refusal AWS would not have the engine retry: alternately a denial, with the code the
/// service answers, and a refused operation.
fn refusal(step: usize, action: &str) -> (ErrorKind, &'static str) {
    if step.is_multiple_of(2) {
        return (ErrorKind::NotPermitted, "OperationNotPermitted");
    }
    match action.split(':').next() {
        Some("ec2") => (ErrorKind::AccessDenied, "UnauthorizedOperation"),
        Some("kms") => (ErrorKind::AccessDenied, "AccessDeniedException"),
        _ => (ErrorKind::AccessDenied, "AccessDenied"),
    }
}

fn fail(action: &str, kind: ErrorKind, code: &str) -> Fault {
    Fault::Fail {
        action: action.parse().expect("a known action"),
        skip: 0,
        code: code.to_owned(),
        kind,
    }
}

/// Whether every fault injected was spent.
fn faults_spent(world: &World) -> bool {
    world
        .embedded
        .sim
        .pending_faults()
        .expect("the faults read")
        .is_empty()
}

/// Runs `op` with the call of its main step `number` (1-based) refused: the run must fail
/// naming that step, leave the world as it was and close its journal; then `check` runs
/// (repository, catalog). Answers the action refused.
fn fail_step(world: &World, op: &Operation, number: usize, check: &dyn Fn(&World, &str)) -> &'static str {
    let plan = bulwark_plan::plan(&world.embedded.estate, op).expect("the operation plans");
    let step = &plan.steps[number - 1];
    let action = step.action().as_str();
    let (kind, code) = refusal(number, action);
    // While it waits for its task the worker calls sqs:ReceiveMessage too: a second fault
    // makes sure that the appliance's call meets one whoever calls first.
    let faults = if action == "sqs:ReceiveMessage" { 2 } else { 1 };
    let sim = world.embedded.sim.clone();
    let inject: Listener = Arc::new(move |_session: &SessionId, event: &Event| {
        if matches!(event, Event::Step { number: n, .. } if *n == number) {
            for _ in 0..faults {
                sim.inject(fail(action, kind, code)).expect("fault injected");
            }
        }
    });
    let what = format!(
        "{}, step {number} ({action} on {}) refused with {code}",
        plan.summary,
        step.resource()
    );
    let before = world.inventory();
    let result = engine(world).on_event(inject).run_operation(op);
    world.embedded.sim.wait_idle();
    world.embedded.sim.clear_faults().expect("faults cleared");
    match result {
        Err(EngineError::Step(f)) => {
            assert_eq!(
                (f.step, f.action.as_str()),
                (number, action),
                "{what}: another step failed: {f}"
            );
            assert_eq!((f.error.kind, f.error.code.as_str()), (kind, code), "{what}: {f}");
            let message = f.to_string();
            assert!(
                message.contains(action) && message.contains(&format!("step {number} ")),
                "{what}: the error does not name the step: {message}"
            );
        }
        Err(other) => panic!("{what}: expected the step to fail, got: {other}"),
        Ok(report) => panic!("{what}: the session succeeded: {report:#?}"),
    }
    assert_unchanged(&before, &world.inventory(), &what);
    assert_journals_closed(world, &what);
    check(world, &what);
    action
}

/// [`fail_step`] for every main step the engine calls itself, but those whose action is in
/// `except`. Answers the actions refused.
fn fail_each_step(
    world: &World,
    op: &Operation,
    except: &[&str],
    check: &dyn Fn(&World, &str),
) -> BTreeSet<&'static str> {
    let plan = bulwark_plan::plan(&world.embedded.estate, op).expect("the operation plans");
    plan.steps
        .iter()
        .enumerate()
        .filter(|(_, step)| engine_calls(step) && !except.contains(&step.action().as_str()))
        .map(|(i, _)| fail_step(world, op, i + 1, check))
        .collect()
}

/// The number of the last main step of `op` whose action is `action`.
fn last_step(world: &World, op: &Operation, action: &str) -> usize {
    let plan = bulwark_plan::plan(&world.embedded.estate, op).expect("the operation plans");
    plan.steps
        .iter()
        .rposition(|s| s.action().as_str() == action && engine_calls(s))
        .map(|i| i + 1)
        .expect("the step")
}

fn assert_failed(failed: &BTreeSet<&str>, expected: &[&str]) {
    for action in expected {
        assert!(
            failed.contains(action),
            "{action} was not made to fail: {failed:?}"
        );
    }
}

#[test]
fn a_refusal_at_any_step_of_a_snapshot_session_leaves_nothing() {
    let world = World::new();
    let op = snapshot(DB);
    let failed = fail_each_step(&world, &op, &[], &|w, what| {
        let points = engine(w).snapshot_points().expect("catalog");
        assert!(points.is_empty(), "{what}: a failed session cataloged {points:?}");
    });
    assert_failed(&failed, &["sts:AssumeRole", "ec2:CreateSnapshots"]);
    // The world is still usable.
    engine(&world)
        .run_operation(&op)
        .expect("the snapshot session succeeds without faults");
}

#[test]
fn a_refusal_at_any_step_of_a_backup_with_workers_in_the_backup_account_leaves_nothing_and_the_repository_intact(
) {
    let world = World::new();
    let op = backup(DB, Placement::BackupAccount);
    engine(&world).run_operation(&op).expect("a first backup");
    let points = assert_repository_intact(&world);
    assert_eq!(points, 2);
    let failed = fail_each_step(&world, &op, &["sqs:ReceiveMessage"], &|w, what| {
        assert_eq!(
            restore_points(w),
            points,
            "{what}: a failed backup wrote a restore point"
        );
    });
    assert_failed(
        &failed,
        &[
            "ec2:CreateSnapshots",
            "kms:DescribeKey",
            "ec2:ModifySnapshotAttribute",
            "ebs:ListChangedBlocks",
            "iam:CreateRole",
            "iam:PutRolePolicy",
            "iam:CreateInstanceProfile",
            "iam:AddRoleToInstanceProfile",
            "sqs:CreateQueue",
            "sqs:SetQueueAttributes",
            "ec2:RunInstances",
            "ec2:CreateVolume",
            "ec2:AttachVolume",
            "sqs:SendMessage",
        ],
    );
    refuse_while_the_worker_backs_up(&world, &op);
    assert!(assert_repository_intact(&world) >= points);
}

#[test]
fn a_refusal_at_any_step_of_a_backup_with_workers_in_the_production_account_leaves_nothing_and_the_repository_intact(
) {
    let world = World::new();
    let op = backup(WEB, Placement::ProductionAccount);
    engine(&world).run_operation(&op).expect("a first backup");
    let points = assert_repository_intact(&world);
    assert_eq!(points, 3);
    let failed = fail_each_step(&world, &op, &["sqs:ReceiveMessage"], &|w, what| {
        assert_eq!(
            restore_points(w),
            points,
            "{what}: a failed backup wrote a restore point"
        );
    });
    assert_failed(
        &failed,
        &[
            "ec2:CreateSnapshots",
            "ebs:ListChangedBlocks",
            "ec2:RunInstances",
            "sqs:SendMessage",
        ],
    );
    refuse_while_the_worker_backs_up(&world, &op);
    assert!(assert_repository_intact(&world) >= points);
    // The bases survived every failure: the next backup reads only changes. (Unless a worker
    // wrote its restore points just before its session failed, whose cleanup then removed
    // their new base: then the volume is read in full, and says so.)
    let report = engine(&world)
        .run_operation(&op)
        .expect("a backup without faults");
    assert!(
        report
            .backups
            .iter()
            .all(|b| b.read == "incremental" || b.why.as_deref().is_some_and(|w| w.contains("is gone"))),
        "{:#?}",
        report.backups
    );
}

/// The appliance's sqs:ReceiveMessage refused while the worker backs up: nothing is left and
/// the repository verifies; the test below checks that no restore point is added.
fn refuse_while_the_worker_backs_up(world: &World, op: &Operation) {
    let step = last_step(world, op, "sqs:ReceiveMessage");
    fail_step(world, op, step, &|w, _| {
        assert_repository_intact(w);
    });
}

#[test]
fn a_backup_that_fails_while_its_worker_runs_writes_no_restore_point() {
    let world = World::new();
    let op = backup(WEB, Placement::ProductionAccount);
    engine(&world).run_operation(&op).expect("a first backup");
    let points = restore_points(&world);
    let step = last_step(&world, &op, "sqs:ReceiveMessage");
    for _ in 0..3 {
        // Changes for the worker to read (a backup of no change ends before it can fail).
        change_volumes(&world, WEB, 6 << 20);
        fail_step(&world, &op, step, &|w, what| {
            assert_eq!(
                restore_points(w),
                points,
                "{what}: a failed backup wrote a restore point"
            );
        });
    }
    assert_eq!(assert_repository_intact(&world), points);
}

#[test]
fn a_refusal_at_any_step_of_a_replication_leaves_nothing() {
    let world = World::new();
    let op = replicate(DB, DR, EU);
    let failed = fail_each_step(&world, &op, &[], &|w, what| {
        let points = engine(w).snapshot_points().expect("catalog");
        assert!(points.is_empty(), "{what}: a failed session cataloged {points:?}");
    });
    assert_failed(
        &failed,
        &[
            "ec2:CreateSnapshots",
            "ec2:ModifySnapshotAttribute",
            "ec2:CopySnapshot",
        ],
    );
}

#[test]
fn a_refusal_at_any_step_of_a_restore_from_snapshots_leaves_nothing() {
    let world = World::new();
    engine(&world)
        .run_operation(&snapshot(DB))
        .expect("a snapshot session");
    let points = engine(&world).snapshot_points().expect("catalog").len();
    let op = restore(DB, RestoreSource::Snapshot, DR, EU, None);
    let failed = fail_each_step(&world, &op, &[], &|w, what| {
        let now = engine(w).snapshot_points().expect("catalog").len();
        assert_eq!(now, points, "{what}: the catalog changed");
    });
    assert_failed(
        &failed,
        &[
            "ec2:CopySnapshot",
            "ec2:CreateVolume",
            "ec2:CreateSnapshot",
            "ec2:RegisterImage",
            "ec2:RunInstances",
            "ec2:DeregisterImage",
            "ec2:ModifyInstanceAttribute",
        ],
    );
}

/// Runs `op` with `action` refused (after `skip` calls) while the appliance moves the data
/// without workers: the session fails naming the call and what to do, and leaves the world as
/// it was, its journal closed.
fn refuse_during_transfer(world: &World, op: &Operation, action: &str, skip: u64) {
    let what = format!("{action} refused during the transfer");
    let before = world.inventory();
    world
        .embedded
        .sim
        .inject(Fault::Fail {
            action: action.parse().expect("a known action"),
            skip,
            code: "AccessDeniedException".into(),
            kind: ErrorKind::AccessDenied,
        })
        .expect("fault");
    let err = engine(world).run_operation(op).expect_err(&what);
    world.embedded.sim.clear_faults().expect("faults cleared");
    let message = err.to_string();
    assert!(
        message.contains(action) && message.contains("what to do"),
        "{what}: {message}"
    );
    assert_unchanged(&before, &world.inventory(), &what);
    assert_journals_closed(world, &what);
}

#[test]
fn a_refusal_at_any_step_of_a_backup_without_workers_keeps_the_previous_backup_and_its_base() {
    let world = World::new();
    let op = backup(WEB, Placement::NoWorker);
    engine(&world).run_operation(&op).expect("a first backup");
    let points = assert_repository_intact(&world);
    assert_eq!(points, 3);
    // The block reads are made at the repository step, all volumes at once; they are
    // refused below, one API at a time.
    let failed = fail_each_step(&world, &op, &["ebs:GetSnapshotBlock"], &|w, what| {
        assert_eq!(
            restore_points(w),
            points,
            "{what}: a failed backup wrote a restore point"
        );
    });
    assert_failed(&failed, &["sts:AssumeRole", "ec2:CreateSnapshots"]);
    // One block changes, so that the next backup reads a block.
    let (prod, us) = ids(PROD, US);
    let changed: bulwark_model::VolumeId = "vol-0bbbbbbbbbbbbbbbb".parse().expect("id");
    world
        .embedded
        .sim
        .write_volume(&prod, &us, &changed, 0, &[7; 512])
        .expect("write");
    for action in [
        "ebs:ListChangedBlocks",
        "ebs:GetSnapshotBlock",
        "ec2:DescribeSnapshots",
    ] {
        // DescribeSnapshots is also how the engine waits for the new snapshots: refuse the
        // call that looks for the previous base, after those.
        let skip = if action == "ec2:DescribeSnapshots" { 3 } else { 0 };
        refuse_during_transfer(&world, &op, action, skip);
        assert_eq!(restore_points(&world), points, "{action} refused");
    }
    // The base snapshots survived every failure: the next backup still reads only changes.
    let report = engine(&world)
        .run_operation(&op)
        .expect("the backup succeeds without faults");
    let repo = open_repository(&world);
    for (volume, point) in &report.points {
        let manifest = repo
            .read_point(&repo.find_point(point).expect("point"))
            .expect("manifest");
        let blocks = u64::from(*volume == changed.to_string());
        assert_eq!(manifest.stats.blocks_read, blocks, "{volume}");
    }
    assert_repository_intact(&world);
}

#[test]
fn a_refusal_at_any_step_of_a_restore_without_workers_leaves_nothing() {
    let world = World::new();
    engine(&world)
        .run_operation(&backup(DB, Placement::NoWorker))
        .expect("a backup");
    let points = restore_points(&world);
    let op = restore(DB, RestoreSource::Backup, DR, EU, Some(Placement::NoWorker));
    let failed = fail_each_step(&world, &op, &[], &|w, what| {
        assert_eq!(restore_points(w), points, "{what}: the repository changed");
    });
    assert_failed(
        &failed,
        &[
            "ebs:StartSnapshot",
            "ec2:CreateVolume",
            "ec2:CreateSnapshot",
            "ec2:RegisterImage",
            "ec2:RunInstances",
            "ec2:DeregisterImage",
            "ec2:ModifyInstanceAttribute",
        ],
    );
    for action in ["ebs:PutSnapshotBlock", "ebs:CompleteSnapshot"] {
        refuse_during_transfer(&world, &op, action, 0);
    }
    assert_eq!(assert_repository_intact(&world), points);
}

#[test]
fn a_refusal_at_any_step_of_a_restore_from_a_backup_with_workers_in_the_backup_account_leaves_nothing() {
    let world = World::new();
    engine(&world)
        .run_operation(&backup(DB, Placement::BackupAccount))
        .expect("a backup");
    let points = restore_points(&world);
    let op = restore(DB, RestoreSource::Backup, DR, EU, Some(Placement::BackupAccount));
    let failed = fail_each_step(&world, &op, &[], &|w, what| {
        assert_eq!(restore_points(w), points, "{what}: the repository changed");
    });
    assert_failed(
        &failed,
        &[
            "iam:CreateRole",
            "ec2:RunInstances",
            "ec2:CreateVolume",
            "sqs:ReceiveMessage",
            "ec2:CreateSnapshot",
            "ec2:ModifySnapshotAttribute",
        ],
    );
    assert_eq!(assert_repository_intact(&world), points);
}

#[test]
fn a_refusal_at_any_step_of_a_restore_from_a_backup_with_workers_in_the_production_account_leaves_nothing() {
    let world = World::new();
    engine(&world)
        .run_operation(&backup(WEB, Placement::ProductionAccount))
        .expect("a backup");
    let points = restore_points(&world);
    let op = restore(
        WEB,
        RestoreSource::Backup,
        PROD,
        US,
        Some(Placement::ProductionAccount),
    );
    let failed = fail_each_step(&world, &op, &[], &|w, what| {
        assert_eq!(restore_points(w), points, "{what}: the repository changed");
    });
    assert_failed(
        &failed,
        &[
            "ec2:RunInstances",
            "ec2:CreateVolume",
            "sqs:ReceiveMessage",
            "ec2:DetachVolume",
        ],
    );
    assert_eq!(assert_repository_intact(&world), points);
}

/// Runs `op` with the next launched worker dying after 1 MiB of device I/O.
fn run_with_a_dying_worker(world: &World, op: &Operation, what: &str) {
    // A backup reads only changes: 2 MiB of them, so that the worker dies on its way.
    if let Operation::Backup { instance, .. } = op {
        change_volumes(world, instance.as_str(), 2 << 20);
    }
    let before = world.inventory();
    let points = restore_points(world);
    world
        .embedded
        .sim
        .inject(Fault::WorkerDies { after_bytes: 1 << 20 })
        .expect("fault injected");
    let result = world
        .embedded
        .engine()
        .with_timing(Duration::from_millis(10), Duration::from_millis(300))
        .run_operation(op);
    world.embedded.sim.wait_idle();
    assert!(faults_spent(world), "{what}: no worker was launched");
    world.embedded.sim.clear_faults().expect("faults cleared");
    match result {
        Err(EngineError::Worker {
            instance, message, ..
        }) => {
            assert!(instance.starts_with("i-"), "{what}: {instance}");
            assert!(!message.is_empty());
        }
        Err(other) => panic!("{what}: expected a worker failure, got: {other}"),
        Ok(report) => panic!("{what}: the session succeeded: {report:#?}"),
    }
    assert_unchanged(&before, &world.inventory(), what);
    assert_journals_closed(world, what);
    assert_eq!(
        restore_points(world),
        points,
        "{what}: the restore points changed"
    );
    assert_eq!(assert_repository_intact(world), points);
}

#[test]
fn a_worker_that_dies_fails_its_backup_or_restore_and_leaves_nothing() {
    let world = World::new();
    let op = backup(DB, Placement::BackupAccount);
    engine(&world).run_operation(&op).expect("a first backup");
    run_with_a_dying_worker(&world, &op, "backup with a dying worker");
    run_with_a_dying_worker(
        &world,
        &restore(DB, RestoreSource::Backup, DR, EU, Some(Placement::BackupAccount)),
        "restore with a dying worker",
    );
}

#[test]
fn a_worker_in_the_production_account_that_dies_fails_its_backup_and_leaves_nothing() {
    let world = World::new();
    let op = backup(WEB, Placement::ProductionAccount);
    engine(&world).run_operation(&op).expect("a first backup");
    run_with_a_dying_worker(&world, &op, "backup with a dying worker");
    run_with_a_dying_worker(
        &world,
        &restore(
            WEB,
            RestoreSource::Backup,
            PROD,
            US,
            Some(Placement::ProductionAccount),
        ),
        "restore with a dying worker",
    );
}

#[test]
fn throttling_is_absorbed() {
    let world = World::new();
    let sim = &world.embedded.sim;
    let before = world.inventory();
    sim.inject(Fault::Throttle {
        action: bulwark_model::Action::Ec2CreateSnapshots,
        times: 3,
    })
    .expect("fault injected");
    let report = engine(&world)
        .run_operation(&snapshot(DB))
        .expect("a throttled snapshot session succeeds");
    assert!(faults_spent(&world), "the throttle was not hit");
    assert_eq!(report.kept.len(), 2, "{:#?}", report.kept);
    assert_nothing_left(&before, &world.inventory(), &["snapshot snap-"]);

    let before = world.inventory();
    sim.inject(Fault::Throttle {
        action: bulwark_model::Action::Ec2CreateVolume,
        times: 3,
    })
    .expect("fault injected");
    let report = engine(&world)
        .run_operation(&restore(DB, RestoreSource::Snapshot, DR, EU, None))
        .expect("a throttled restore succeeds");
    assert!(faults_spent(&world), "the throttle was not hit");
    let restored = world.restored(&report, DR);
    assert_eq!(restored.len(), 2);
    for (of, digest, _) in restored {
        assert_eq!(digest, world.source(PROD, US, &of.parse().expect("id")), "{of}");
    }
    assert_nothing_left(
        &before,
        &world.inventory(),
        &["volume vol-", "instance i-", "grant "],
    );

    // And in a session with a worker: each call of the backup is throttled in turn.
    let before = world.inventory();
    for action in [
        "ec2:CreateSnapshots",
        "ec2:CreateVolume",
        "ec2:RunInstances",
        "sqs:SendMessage",
    ] {
        sim.inject(Fault::Throttle {
            action: action.parse().expect("a known action"),
            times: 2,
        })
        .expect("fault injected");
    }
    let report = engine(&world)
        .run_operation(&backup(DB, Placement::BackupAccount))
        .expect("a throttled backup succeeds");
    world.embedded.sim.wait_idle();
    assert!(faults_spent(&world), "a throttle was not hit");
    assert_eq!(report.points.len(), 2);
    // Its base snapshots stay, for the next backup's changes.
    assert_nothing_left(&before, &world.inventory(), &["snapshot snap-"]);
    assert_journals_closed(&world, "throttled sessions");
}

/// The worker of a DB backup whose termination is refused at cleanup.
fn terminate_refused(world: &World) {
    world
        .embedded
        .sim
        .inject(fail(
            "ec2:TerminateInstances",
            ErrorKind::AccessDenied,
            "UnauthorizedOperation",
        ))
        .expect("fault injected");
}

/// Checks a cleanup that left the worker only, then recovers as a restarted appliance would.
fn recover_the_worker(
    world: &World,
    before: &Inventory,
    result: Result<bulwark_engine::SessionReport, EngineError>,
    failure: &str,
) {
    let (left, journal) = match result {
        Err(EngineError::CleanupIncomplete {
            failure: f,
            left,
            journal,
        }) => {
            assert!(f.contains(failure), "the failure is {f:?}, expected {failure:?}");
            (left, journal)
        }
        Err(other) => panic!("expected an incomplete cleanup, got: {other}"),
        Ok(report) => panic!("the session succeeded: {report:#?}"),
    };
    assert_eq!(left.len(), 1, "{left:#?}");
    assert!(
        left[0].starts_with("worker for ") && left[0].contains("UnauthorizedOperation"),
        "{left:?}"
    );
    assert!(std::path::Path::new(&journal).exists(), "{journal}");
    // A backup that succeeded keeps its base snapshots.
    let kept: &[&str] = if failure == "the session succeeded" {
        &["snapshot snap-"]
    } else {
        &[]
    };
    let added: Vec<String> = world
        .inventory()
        .added_since(before)
        .into_iter()
        .filter(|a| !kept.iter().any(|k| a.starts_with(k)))
        .collect();
    assert!(
        added.len() == 1 && added[0].starts_with("instance i-"),
        "cleanup should have left the worker only: {added:#?}"
    );
    world.embedded.sim.clear_faults().expect("faults cleared");

    // The appliance restarts: a new engine on the same state directory.
    let recovered = engine(world).recover().expect("recovery runs");
    assert_eq!(recovered.len(), 1, "{recovered:#?}");
    assert_eq!(recovered[0].journal, std::path::PathBuf::from(&journal));
    assert!(recovered[0].left.is_empty(), "{recovered:#?}");
    assert_eq!(recovered[0].removed, 1, "{recovered:#?}");
    world.embedded.sim.wait_idle();
    assert_nothing_left(before, &world.inventory(), kept);
    assert!(
        engine(world).recover().expect("recovery runs").is_empty(),
        "a second recovery found work"
    );
}

#[test]
fn what_cleanup_could_not_remove_recovery_removes() {
    let world = World::new();
    let op = backup(DB, Placement::BackupAccount);

    // The backup succeeds but its worker cannot be terminated.
    let before = world.inventory();
    let points = restore_points(&world);
    terminate_refused(&world);
    let result = engine(&world).run_operation(&op);
    world.embedded.sim.wait_idle();
    recover_the_worker(&world, &before, result, "the session succeeded");
    assert_eq!(restore_points(&world), points + 2, "the backup itself succeeded");

    // A step fails, and the cleanup cannot terminate the worker either.
    let before = world.inventory();
    let points = restore_points(&world);
    world
        .embedded
        .sim
        .inject(fail(
            "ec2:AttachVolume",
            ErrorKind::AccessDenied,
            "UnauthorizedOperation",
        ))
        .expect("fault injected");
    terminate_refused(&world);
    let result = engine(&world).run_operation(&op);
    recover_the_worker(&world, &before, result, "ec2:AttachVolume");
    assert_eq!(restore_points(&world), points);
    assert_eq!(assert_repository_intact(&world), points);
}

/// The engine waits for what it creates to be ready (Describe calls that are no step of the
/// plan); a failure while it waits must leave nothing either.
#[test]
fn a_refusal_while_waiting_for_new_copies_volumes_and_instances_leaves_nothing() {
    let world = World::new();
    engine(&world)
        .run_operation(&snapshot(DB))
        .expect("a snapshot session");
    let op = restore(DB, RestoreSource::Snapshot, DR, EU, None);
    for (describe, step) in [
        ("ec2:DescribeSnapshots", "ec2:CopySnapshot"),
        ("ec2:DescribeVolumes", "ec2:CreateVolume"),
        ("ec2:DescribeInstances", "ec2:RunInstances"),
    ] {
        let before = world.inventory();
        world
            .embedded
            .sim
            .inject(fail(describe, ErrorKind::AccessDenied, "UnauthorizedOperation"))
            .expect("fault injected");
        let result = engine(&world).run_operation(&op);
        world.embedded.sim.clear_faults().expect("faults cleared");
        match result {
            Err(EngineError::Step(f)) => {
                assert_eq!(f.action.as_str(), step, "{f}");
                assert_eq!(f.error.action.as_str(), describe, "{f}");
            }
            Err(other) => panic!("{describe}: expected a step failure, got: {other}"),
            Ok(report) => panic!("{describe}: the session succeeded: {report:#?}"),
        }
        assert_unchanged(&before, &world.inventory(), describe);
        assert_journals_closed(&world, describe);
    }
}

/// New snapshots must be journaled before the engine waits for them to complete.
#[test]
fn a_refusal_while_waiting_for_new_snapshots_leaves_nothing() {
    let world = World::new();
    let before = world.inventory();
    world
        .embedded
        .sim
        .inject(fail(
            "ec2:DescribeSnapshots",
            ErrorKind::AccessDenied,
            "UnauthorizedOperation",
        ))
        .expect("fault injected");
    let result = engine(&world).run_operation(&snapshot(DB));
    world.embedded.sim.clear_faults().expect("faults cleared");
    match result {
        Err(EngineError::Step(f)) => assert_eq!(f.action.as_str(), "ec2:CreateSnapshots", "{f}"),
        Err(other) => panic!("expected a step failure, got: {other}"),
        Ok(report) => panic!("the session succeeded: {report:#?}"),
    }
    assert_unchanged(
        &before,
        &world.inventory(),
        "DescribeSnapshots refused after CreateSnapshots",
    );
    assert_journals_closed(&world, "DescribeSnapshots refused after CreateSnapshots");
}

#[test]
fn a_worker_that_dies_on_its_second_volume_writes_no_restore_point() {
    let world = World::new();
    let op = backup(DB, Placement::BackupAccount);
    engine(&world).run_operation(&op).expect("a first backup");
    change_volumes(&world, DB, 6 << 20);
    let before = world.inventory();
    let points = restore_points(&world);
    // Past the first volume's 6 MiB of changes, within the second's.
    world
        .embedded
        .sim
        .inject(Fault::WorkerDies {
            after_bytes: (6 << 20) + (1 << 20),
        })
        .expect("fault injected");
    let result = world
        .embedded
        .engine()
        .with_timing(Duration::from_millis(10), Duration::from_millis(300))
        .run_operation(&op);
    world.embedded.sim.wait_idle();
    world.embedded.sim.clear_faults().expect("faults cleared");
    assert!(matches!(result, Err(EngineError::Worker { .. })), "{result:?}");
    assert_unchanged(&before, &world.inventory(), "a worker dying on its second volume");
    assert_eq!(assert_repository_intact(&world), restore_points(&world));
    assert_eq!(
        restore_points(&world),
        points,
        "a failed backup wrote a restore point"
    );
}

#[test]
fn a_worker_whose_transfer_outlasts_the_repository_session_gets_new_credentials_in_time() {
    let world = World::new();
    let (backup_account, _) = ids("111111111111", US);
    // The repository role's sessions last 3 s, and the worker moves DB's 12 MiB at 2 MiB/s.
    world
        .embedded
        .sim
        .set_session_duration(&backup_account, "BulwarkRepository", 3)
        .expect("session duration");
    let slow = Fault::SlowWorker {
        bytes_per_second: 2 << 20,
    };
    let op = backup(DB, Placement::BackupAccount);

    // Renewed only every hour, the worker's session expires mid-transfer: the backup fails
    // cleanly.
    let before = world.inventory();
    world.embedded.sim.inject(slow.clone()).expect("fault");
    let err = engine(&world)
        .with_credential_renewal(Duration::from_secs(3600))
        .run_operation(&op)
        .expect_err("the session expires");
    world.embedded.sim.wait_idle();
    world.embedded.sim.clear_faults().expect("faults cleared");
    assert!(err.to_string().contains("ExpiredToken"), "{err}");
    assert_unchanged(&before, &world.inventory(), "expired repository session");
    assert_eq!(restore_points(&world), 0);

    // Renewed every second, it succeeds.
    world.embedded.sim.inject(slow).expect("fault");
    let report = engine(&world)
        .with_credential_renewal(Duration::from_secs(1))
        .run_operation(&op)
        .expect("the renewed session lasts the transfer");
    world.embedded.sim.wait_idle();
    assert_eq!(report.points.len(), 2);
    assert_eq!(assert_repository_intact(&world), 2);
}

/// Takes `action` from every statement of `role`'s generated identity policy.
fn without(grants: &mut Grants, role: &str, action: &str) {
    let (_, statements) = grants.roles.get_mut(role).expect("the role has grants");
    for s in statements.iter_mut() {
        if let Some(actions) = s.action.as_mut() {
            actions.retain(|a| a != action);
        }
    }
    statements.retain(|s| s.action.as_ref().is_some_and(|a| !a.is_empty()));
}

/// Tried as a new user would: a worker deployment role that may launch workers and make roles
/// but not remove them. The session proves its cleanup first, so it is refused before it
/// creates anything, naming the role and what it lacks, instead of failing at cleanup and
/// leaving a worker or a temporary role behind.
#[test]
fn a_session_that_could_not_clean_up_is_refused_before_it_creates_anything() {
    let deployer = "arn:aws:iam::111111111111:role/WorkerDeployment";
    for action in ["iam:DeleteRole", "ec2:TerminateInstances", "ec2:DeleteVolume"] {
        let estate = estate();
        let mut grants = Grants::from_plans(&estate, &plans(&estate, &all_operations(&estate)));
        without(&mut grants, deployer, action);
        let world = World::with_grants(&estate, &grants);
        let before = world.inventory();
        let result = engine(&world).run_operation(&backup(DB, Placement::BackupAccount));
        match result {
            Err(EngineError::CannotCleanUp { role, missing }) => {
                assert_eq!(role, deployer);
                assert!(
                    missing.iter().any(|m| m.starts_with(action)),
                    "{action}: {missing:?}"
                );
            }
            other => panic!("without {action}: expected a refusal before anything, got {other:?}"),
        }
        assert_unchanged(&before, &world.inventory(), action);
        assert_journals_closed(&world, action);
    }
}
