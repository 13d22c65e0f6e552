//! Incremental forever with workers: a backup keeps its snapshots as the base of the next,
//! whose worker reads only the blocks changed since them (listed by the appliance in the
//! snapshots' account), and whose restore points restore bit for bit. A base that is gone, a
//! volume resized and a previous restore point that cannot be read each make a full read,
//! and the session says why.

use std::sync::{Arc, Mutex};

use bulwark_engine::incremental::VolumeBackup;
use bulwark_engine::{Event, Listener, SessionReport};
use bulwark_model::{SnapshotId, VolumeId};
use bulwark_plan::{Operation, Placement, RestoreSource};
use bulwark_storage::FileKind;

use crate::common::*;

/// The backups of `report`, by volume.
fn read(report: &SessionReport, volume: &VolumeId) -> VolumeBackup {
    report
        .backups
        .iter()
        .find(|b| b.volume == volume.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("no backup of {volume} in {:#?}", report.backups))
}

/// How many snapshots the world holds beyond `before`.
fn snapshots(world: &World, before: &bulwark_sim::Inventory) -> usize {
    world
        .inventory()
        .added_since(before)
        .iter()
        .filter(|r| r.starts_with("snapshot snap-"))
        .count()
}

/// The volumes of `instance`.
fn volumes(world: &World, instance: &str) -> Vec<VolumeId> {
    let id = instance.parse().expect("instance id");
    let instance = world.embedded.estate.instance(&id).expect("instance");
    instance.volumes.iter().map(|v| v.id.clone()).collect()
}

/// Restores `instance` from its latest backups and checks every volume byte for byte.
fn assert_restores(world: &World, instance: &str, workers: Placement, account: &str, region: &str) {
    let report = engine(world)
        .run_operation(&restore(
            instance,
            RestoreSource::Backup,
            account,
            region,
            Some(workers),
        ))
        .expect("restore session");
    let restored = world.restored(&report, account);
    assert_eq!(restored.len(), volumes(world, instance).len());
    for (of, digest, _) in &restored {
        assert_eq!(
            digest,
            &world.source(PROD, US, &of.parse().expect("id")),
            "restored {of} differs from its source"
        );
    }
}

#[test]
fn backups_with_workers_read_only_the_changed_blocks_and_restore_bit_for_bit() {
    for (instance, workers, account, region) in [
        (DB, Placement::BackupAccount, DR, EU),
        (WEB, Placement::ProductionAccount, PROD, US),
    ] {
        let world = World::new();
        let before = world.inventory();
        let op = backup(instance, workers);
        let vols = volumes(&world, instance);

        // The first backup reads every volume; its snapshots stay as the next one's base.
        let first = engine(&world).run_operation(&op).expect("first backup");
        for v in &vols {
            let b = read(&first, v);
            assert_eq!(b.read, "full", "{b:?}");
            assert!(
                b.why
                    .as_deref()
                    .is_some_and(|w| w.contains("no restore point yet")),
                "{b:?}"
            );
            assert!(b.blocks_read > 4, "every block of data: {b:?}");
        }
        assert_eq!(
            snapshots(&world, &before),
            vols.len(),
            "{instance}: the bases stay"
        );

        // Four blocks of the first volume change: 4 KiB in block 2, and 1 MiB from within
        // block 6 into block 8.
        let (prod, us) = ids(PROD, US);
        let sim = &world.embedded.sim;
        sim.write_volume(&prod, &us, &vols[0], 1 << 20, &[0x5a; 4096])
            .expect("write");
        sim.write_volume(&prod, &us, &vols[0], (3 << 20) + 100, &[0xa5; 1 << 20])
            .expect("write");
        let second = engine(&world).run_operation(&op).expect("second backup");
        let repo = open_repository(&world);
        for (n, v) in vols.iter().enumerate() {
            let b = read(&second, v);
            let changed = if n == 0 { 4 } else { 0 };
            assert_eq!(
                (b.read.as_str(), b.blocks_read, b.blocks_changed),
                ("incremental", changed, Some(changed)),
                "{instance}: {b:?}"
            );
            let manifest = repo
                .read_point(&repo.find_point(&b.point).expect("point"))
                .expect("manifest");
            let parent = read(&first, v).point;
            assert_eq!(
                manifest.parent.map(|p| p.to_hex()),
                Some(parent),
                "builds on the first"
            );
        }
        assert_eq!(
            snapshots(&world, &before),
            vols.len(),
            "{instance}: the new bases replace the previous ones"
        );
        assert_restores(&world, instance, workers, account, region);
        assert_nothing_left(
            &before,
            &world.inventory(),
            &["snapshot snap-", "volume vol-", "instance i-", "grant "],
        );
        assert_repository_intact(&world);
    }
}

/// An engine whose notes (what the session log says) are kept in `notes`.
fn noting(world: &World, notes: &Arc<Mutex<Vec<String>>>) -> bulwark_engine::Engine {
    let notes = Arc::clone(notes);
    let listener: Listener = Arc::new(move |_, event| {
        if let Event::Note { message } = event {
            notes.lock().expect("notes").push(message.clone());
        }
    });
    engine(world).on_event(listener)
}

/// Runs `op`, and answers its report and what its log said.
fn run_noting(world: &World, op: &Operation) -> (SessionReport, Vec<String>) {
    let notes = Arc::new(Mutex::new(Vec::new()));
    let report = noting(world, &notes).run_operation(op).expect("backup");
    let notes = notes.lock().expect("notes").clone();
    (report, notes)
}

/// Asserts that `volume` was read in full for a reason containing `why`, and that the
/// session's log said so.
fn assert_full(report: &SessionReport, notes: &[String], volume: &VolumeId, why: &str) {
    let b = read(report, volume);
    assert_eq!(b.read, "full", "{b:?}");
    assert!(b.why.as_deref().is_some_and(|w| w.contains(why)), "{b:?}");
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with(&format!("{volume} is read in full: ")) && n.contains(why)),
        "the log does not say why {volume} is read in full: {notes:#?}"
    );
}

#[test]
fn a_lost_base_a_resized_volume_or_an_unreadable_point_is_read_in_full_and_the_log_says_why() {
    let world = World::new();
    let before = world.inventory();
    let op = backup(DB, Placement::BackupAccount);
    let vols = volumes(&world, DB);
    let (d, e) = (&vols[0], &vols[1]);
    let (prod, us) = ids(PROD, US);
    let first = engine(&world).run_operation(&op).expect("first backup");

    // The base of the first volume is deleted by hand.
    let repo = open_repository(&world);
    let (_, latest) = repo.latest_point(d.as_str()).expect("points").expect("a point");
    let base: SnapshotId = latest.source.name.parse().expect("a snapshot id");
    let root = world.embedded.sim.root_credentials(&prod).expect("root");
    world
        .embedded
        .sim
        .cloud()
        .ec2
        .delete_snapshot(&root, &us, &base)
        .expect("the base is deleted");
    let (report, notes) = run_noting(&world, &op);
    assert_full(&report, &notes, d, &format!("the base snapshot {base}"));
    assert_full(&report, &notes, d, "is gone");
    assert_eq!(read(&report, e).read, "incremental");
    assert_eq!(
        read(&report, d).blocks_read,
        read(&first, d).blocks_read,
        "every block of data"
    );

    // The second volume grows: read in full, and its previous base is replaced all the same.
    world.embedded.sim.grow_volume(&prod, &us, e, 600).expect("grown");
    let (report, notes) = run_noting(&world, &op);
    assert_full(&report, &notes, e, "resized");
    assert_full(&report, &notes, e, "500 GiB then, 600 GiB now");
    assert_eq!(read(&report, d).read, "incremental");
    assert_eq!(snapshots(&world, &before), 2, "one base per volume");

    // The latest restore point of the first volume cannot be read.
    let damaged = read(&report, d).point;
    let backend = repo.backend();
    // (Restore points are written once: replaced by deleting it first.)
    backend.delete(FileKind::Point, &damaged).expect("deleted");
    backend
        .put(FileKind::Point, &damaged, b"not a restore point")
        .expect("the point is overwritten");
    // Any restore point that cannot be read might be a volume's latest: every volume is read
    // in full, and the backup succeeds.
    let (report, notes) = run_noting(&world, &op);
    assert_full(&report, &notes, d, "latest restore point is unknown");
    assert_full(&report, &notes, e, "latest restore point is unknown");

    // Once the damaged point is gone, the volumes restore as they are.
    backend.delete(FileKind::Point, &damaged).expect("deleted");
    assert_restores(&world, DB, Placement::BackupAccount, DR, EU);
    assert_repository_intact(&world);
    assert_journals_closed(&world, "after the fallbacks");
}

#[test]
fn a_failed_backup_keeps_the_previous_base_and_the_next_one_reads_only_changes() {
    let world = World::new();
    let before = world.inventory();
    let op = backup(WEB, Placement::ProductionAccount);
    engine(&world).run_operation(&op).expect("first backup");
    let bases = world.inventory().added_since(&before);

    // A backup whose worker dies on its way: nothing of it stays, the bases are those of the
    // first backup.
    change_volumes(&world, WEB, 2 << 20);
    world
        .embedded
        .sim
        .inject(bulwark_sim::Fault::WorkerDies { after_bytes: 1 << 20 })
        .expect("fault injected");
    engine(&world).run_operation(&op).expect_err("the worker dies");
    world.embedded.sim.wait_idle();
    world.embedded.sim.clear_faults().expect("faults cleared");
    assert_eq!(
        world.inventory().added_since(&before),
        bases,
        "the previous bases are kept"
    );

    // The next backup reads the changes since them: 2 MiB of each volume.
    let report = engine(&world).run_operation(&op).expect("next backup");
    for v in volumes(&world, WEB) {
        let b = read(&report, &v);
        assert_eq!((b.read.as_str(), b.blocks_read), ("incremental", 4), "{b:?}");
    }
    assert_restores(&world, WEB, Placement::ProductionAccount, PROD, US);
}

/// `grants` without `kms:Decrypt` for `role`: neither in its own policy nor in key policies.
fn without_decrypt(grants: &mut bulwark_embedded::Grants, role: &str) {
    let strip = |s: &mut bulwark_model::iam::Statement| {
        if let Some(actions) = &mut s.action {
            actions.retain(|a| a != "kms:Decrypt");
        }
    };
    if let Some((_, statements)) = grants.roles.get_mut(role) {
        statements.iter_mut().for_each(strip);
    }
    for statements in grants.keys.values_mut() {
        statements
            .iter_mut()
            .filter(|s| serde_json::to_string(&s.principal).is_ok_and(|p| p.contains(role)))
            .for_each(strip);
    }
    for statements in grants
        .roles
        .values_mut()
        .map(|(_, s)| s)
        .chain(grants.keys.values_mut())
    {
        statements.retain(|s| s.action.as_ref().is_none_or(|a| !a.is_empty()));
    }
}

#[test]
fn the_listing_of_changes_needs_the_backup_role_to_decrypt_with_the_volume_key() {
    let estate = estate();
    let mut grants = bulwark_embedded::Grants::from_plans(
        &estate,
        &bulwark_embedded::plans(&estate, &bulwark_embedded::all_operations(&estate)),
    );
    let backup_role = "arn:aws:iam::222222222222:role/Backup";
    without_decrypt(&mut grants, backup_role);
    let world = World::with_grants(&estate, &grants);
    let op = backup(DB, Placement::BackupAccount);
    // A first backup lists no changes: it succeeds.
    engine(&world).run_operation(&op).expect("first backup");
    let points = restore_points(&world);
    let before = world.inventory();
    let err = engine(&world)
        .run_operation(&op)
        .expect_err("the listing is refused");
    match &err {
        bulwark_engine::EngineError::Step(f) => {
            assert_eq!(f.action.as_str(), "ebs:ListChangedBlocks", "{f}");
            assert_eq!(f.actor, backup_role, "{f}");
            assert!(f.to_string().contains("kms:Decrypt"), "{f}");
        }
        other => panic!("expected the listing to fail, got {other}"),
    }
    world.embedded.sim.wait_idle();
    assert_unchanged(&before, &world.inventory(), "a refused listing");
    assert_eq!(restore_points(&world), points);
}
