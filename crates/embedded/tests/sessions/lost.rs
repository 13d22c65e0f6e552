//! Lost answers: the call of a step takes effect and its answer is lost on the way back (a
//! timeout after AWS made the change), at every step that changes something, in every session
//! type. The engine looks for what the call made (by client token, by its session tags, by
//! name) before calling again, so the session succeeds and makes exactly what a session
//! without the fault makes: no second snapshot, volume, worker or role, nothing left behind.
//!
//! The appliance killed right after a lost answer is tested through the binary
//! (`bulwark-cli`'s `sessions::a_session_killed_after_a_lost_answer_*`).

use std::collections::BTreeMap;
use std::sync::Arc;

use bulwark_engine::{Event, Listener, SessionId};
use bulwark_plan::{Operation, Placement, RestoreSource};
use bulwark_sim::{Fault, Inventory};

use crate::common::*;

/// What a session changed in the world: resources added and removed, counted by kind (the
/// first word of an inventory line: `volume`, `snapshot`, `share`, ...), and restore points
/// added.
#[derive(Debug, PartialEq, Eq)]
struct Change {
    added: BTreeMap<String, usize>,
    removed: BTreeMap<String, usize>,
    points: isize,
}

fn kinds(lines: Vec<String>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for line in lines {
        let kind = line.split_whitespace().next().unwrap_or_default().to_owned();
        *counts.entry(kind).or_default() += 1;
    }
    counts
}

/// Runs `op` with `listener` and answers what it changed; the session must succeed and close
/// its journal.
fn change(world: &World, op: &Operation, listener: Option<Listener>, what: &str) -> Change {
    let before: Inventory = world.inventory();
    let points = restore_points(world) as isize;
    let mut engine = engine(world);
    if let Some(l) = listener {
        engine = engine.on_event(l);
    }
    let result = engine.run_operation(op);
    world.embedded.sim.wait_idle();
    let pending = world.embedded.sim.pending_faults().expect("the faults read");
    world.embedded.sim.clear_faults().expect("faults cleared");
    if let Err(e) = result {
        panic!("{what}: the session failed: {e}");
    }
    assert!(pending.is_empty(), "{what}: the fault was not met: {pending:?}");
    assert_journals_closed(world, what);
    let after = world.inventory();
    Change {
        added: kinds(after.added_since(&before)),
        removed: kinds(before.added_since(&after)),
        points: restore_points(world) as isize - points,
    }
}

/// Loses the answer of each step of `op` that changes something, one run per step, and checks
/// that each run changes the world exactly as a run without the fault. Answers the actions
/// whose answers were lost.
fn lose_each_answer(world: &World, op: &Operation) -> Vec<&'static str> {
    let plan = bulwark_plan::plan(&world.embedded.estate, op).expect("the operation plans");
    // The first run of a backup only adds its base snapshots; every later one also removes
    // the previous ones: the runs below are later ones.
    change(world, op, None, &plan.summary);
    let clean = change(world, op, None, &plan.summary);
    let mut lost = Vec::new();
    for (i, step) in plan.steps.iter().enumerate() {
        let action = step.action();
        if !engine_calls(step) || action.is_read() {
            continue;
        }
        let number = i + 1;
        let what = format!(
            "{}, the answer of step {number} ({action} on {}) lost",
            plan.summary,
            step.resource()
        );
        let sim = world.embedded.sim.clone();
        let inject: Listener = Arc::new(move |_: &SessionId, event: &Event| {
            if matches!(event, Event::Step { number: n, .. } if *n == number) {
                sim.inject(Fault::LoseResponse { action })
                    .expect("fault injected");
            }
        });
        eprintln!("{what}");
        let changed = change(world, op, Some(inject), &what);
        assert_eq!(
            changed, clean,
            "{what}: the world changed otherwise than without the fault"
        );
        lost.push(action.as_str());
    }
    lost
}

fn assert_lost(lost: &[&str], expected: &[&str]) {
    for action in expected {
        assert!(lost.contains(action), "{action}'s answer was not lost: {lost:?}");
    }
}

#[test]
fn a_lost_answer_at_any_step_of_a_snapshot_session_makes_one_of_each() {
    let world = World::new();
    let lost = lose_each_answer(&world, &snapshot(DB));
    assert_lost(&lost, &["sts:AssumeRole", "ec2:CreateSnapshots"]);
}

#[test]
fn a_lost_answer_at_any_step_of_a_replication_makes_one_of_each() {
    let world = World::new();
    let lost = lose_each_answer(&world, &replicate(DB, DR, EU));
    assert_lost(
        &lost,
        &[
            "ec2:CreateSnapshots",
            "ec2:ModifySnapshotAttribute",
            "ec2:CopySnapshot",
        ],
    );
}

#[test]
fn a_lost_answer_at_any_step_of_a_backup_with_workers_makes_one_of_each() {
    let world = World::new();
    let lost = lose_each_answer(&world, &backup(DB, Placement::BackupAccount));
    assert_lost(
        &lost,
        &[
            "ec2:CreateSnapshots",
            "ec2:ModifySnapshotAttribute",
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
    let lost = lose_each_answer(&world, &backup(WEB, Placement::ProductionAccount));
    assert_lost(&lost, &["ec2:CreateSnapshots", "ec2:RunInstances"]);
    assert_repository_intact(&world);
}

#[test]
fn a_lost_answer_at_any_step_of_a_backup_without_workers_makes_one_of_each() {
    let world = World::new();
    let op = backup(WEB, Placement::NoWorker);
    // The first backup makes the base snapshots that each later one replaces.
    engine(&world).run_operation(&op).expect("a first backup");
    let lost = lose_each_answer(&world, &op);
    assert_lost(&lost, &["ec2:CreateSnapshots"]);
    assert_repository_intact(&world);
}

#[test]
fn a_lost_answer_at_any_step_of_a_restore_makes_one_of_each() {
    let world = World::new();
    engine(&world)
        .run_operation(&snapshot(DB))
        .expect("a snapshot session");
    let lost = lose_each_answer(&world, &restore(DB, RestoreSource::Snapshot, DR, EU, None));
    assert_lost(
        &lost,
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
    engine(&world)
        .run_operation(&backup(DB, Placement::BackupAccount))
        .expect("a backup");
    let lost = lose_each_answer(
        &world,
        &restore(DB, RestoreSource::Backup, DR, EU, Some(Placement::BackupAccount)),
    );
    assert_lost(
        &lost,
        &[
            "iam:CreateRole",
            "ec2:RunInstances",
            "ec2:CreateVolume",
            "ec2:CreateSnapshot",
        ],
    );
    let lost = lose_each_answer(
        &world,
        &restore(DB, RestoreSource::Backup, DR, EU, Some(Placement::NoWorker)),
    );
    assert_lost(
        &lost,
        &["ebs:StartSnapshot", "ec2:CreateVolume", "ec2:RunInstances"],
    );
}
