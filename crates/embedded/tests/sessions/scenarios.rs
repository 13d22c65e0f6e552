//! Every scenario of the seed documents, end to end.

use bulwark_engine::journal::Target;
use bulwark_engine::EngineError;
use bulwark_model::{Estate, VolumeId};
use bulwark_plan::{Operation, Placement, RefusalCode, RestoreSource};

use crate::common::*;

fn volumes(estate: &Estate, instance: &str) -> Vec<VolumeId> {
    let id = instance.parse().expect("instance id");
    estate
        .instance(&id)
        .expect("instance")
        .volumes
        .iter()
        .map(|v| v.id.clone())
        .collect()
}

#[test]
fn snapshots_are_kept_and_nothing_else() {
    let world = World::new();
    let before = world.inventory();
    let op = Operation::Snapshot {
        instance: DB.parse().expect("id"),
    };
    let report = world
        .embedded
        .engine()
        .run_operation(&op)
        .expect("snapshot session");
    let snapshots: Vec<_> = report
        .kept
        .iter()
        .filter(|(_, t)| matches!(t, Target::Snapshot(..)))
        .collect();
    assert_eq!(snapshots.len(), 2);
    // Each snapshot holds exactly its volume's bytes, under the volume's key.
    for (name, target) in snapshots {
        let Target::Snapshot(region, id) = target else {
            unreachable!()
        };
        let (_, digest, key) = world
            .embedded
            .sim
            .snapshot_digest(region, id)
            .expect("snapshot exists");
        let volume: VolumeId = name
            .trim_start_matches("snapshot of ")
            .split(' ')
            .next()
            .expect("volume")
            .parse()
            .expect("id");
        assert_eq!(digest, world.source(PROD, US, &volume), "{name}");
        assert!(key
            .expect("encrypted")
            .ends_with("22222222-aaaa-4bbb-8ccc-000000000001"));
    }
    assert_nothing_left(&before, &world.inventory(), &["snapshot snap-"]);
    assert_eq!(
        world.embedded.engine().snapshot_points().expect("catalog").len(),
        2
    );
}

#[test]
fn backup_in_the_backup_account_then_restore_into_another_account_and_region() {
    let world = World::new();
    let estate = estate();
    let before = world.inventory();
    let engine = world.embedded.engine();
    let report = engine
        .run_operation(&backup(DB, Placement::BackupAccount))
        .expect("backup session");
    assert_eq!(report.points.len(), 2, "one restore point per volume");
    // The snapshots stay, as the base of the next backup; their shares go.
    assert_nothing_left(&before, &world.inventory(), &["snapshot snap-"]);

    // Restore from the backup into the disaster-recovery account, in Europe: the worker
    // restores in the backup account, which shares a snapshot that the target account's
    // restore role turns into volumes.
    let report = engine
        .run_operation(&restore(DB, RestoreSource::Backup, DR, EU, None))
        .expect("restore session");
    let restored = world.restored(&report, DR);
    assert_eq!(restored.len(), 2);
    for (of, digest, key) in &restored {
        let of: VolumeId = of.parse().expect("id");
        assert_eq!(
            digest,
            &world.source(PROD, US, &of),
            "restored {of} differs from its source"
        );
        assert!(
            key.as_deref()
                .expect("encrypted")
                .ends_with("33333333-aaaa-4bbb-8ccc-000000000002"),
            "{key:?}"
        );
    }
    assert!(
        report.kept.iter().any(|(_, t)| matches!(t, Target::Instance(..))),
        "a restored instance"
    );
    let kept = ["snapshot snap-", "volume vol-", "instance i-", "grant "];
    assert_nothing_left(&before, &world.inventory(), &kept);
    let _ = volumes(&estate, DB);
}

#[test]
fn aws_ebs_volumes_are_refused_with_workers_in_the_backup_account_before_anything_runs() {
    let world = World::new();
    let before = world.inventory();
    let err = world
        .embedded
        .engine()
        .run_operation(&backup(WEB, Placement::BackupAccount))
        .expect_err("refused");
    match err {
        EngineError::Refused(r) => assert_eq!(r.code, RefusalCode::AwsManagedKeyNotShareable),
        other => panic!("expected a refusal, got {other}"),
    }
    assert_eq!(world.inventory(), before, "a refusal changes nothing");
}

#[test]
fn aws_ebs_volumes_back_up_with_workers_in_the_production_account_and_restore_there() {
    let world = World::new();
    let before = world.inventory();
    let engine = world.embedded.engine();
    let report = engine
        .run_operation(&backup(WEB, Placement::ProductionAccount))
        .expect("backup session");
    assert_eq!(report.points.len(), 3);
    assert_nothing_left(&before, &world.inventory(), &["snapshot snap-"]);
    let report = engine
        .run_operation(&restore(
            WEB,
            RestoreSource::Backup,
            PROD,
            US,
            Some(Placement::ProductionAccount),
        ))
        .expect("restore session");
    let restored = world.restored(&report, PROD);
    assert_eq!(restored.len(), 3);
    for (of, digest, _) in restored {
        assert_eq!(digest, world.source(PROD, US, &of.parse().expect("id")), "{of}");
    }
    assert_nothing_left(
        &before,
        &world.inventory(),
        &["snapshot snap-", "volume vol-", "instance i-", "grant "],
    );
}

#[test]
fn replica_in_another_account_and_region_holds_the_same_bytes() {
    let world = World::new();
    let before = world.inventory();
    let (to_account, to_region) = ids(DR, EU);
    let op = Operation::Replicate {
        instance: DB.parse().expect("id"),
        to_account,
        to_region: to_region.clone(),
        target_key: None,
    };
    let report = world
        .embedded
        .engine()
        .run_operation(&op)
        .expect("replicate session");
    let copies: Vec<_> = report
        .kept
        .iter()
        .filter(|(name, t)| {
            name.starts_with("snapshot copy") && matches!(t, Target::Snapshot(r, _) if r == &to_region)
        })
        .collect();
    assert_eq!(copies.len(), 2, "{:#?}", report.kept);
    for (name, target) in copies {
        let Target::Snapshot(region, id) = target else {
            unreachable!()
        };
        let (_, digest, key) = world.embedded.sim.snapshot_digest(region, id).expect("copy");
        let volume: VolumeId = name
            .trim_start_matches("snapshot copy of ")
            .split(' ')
            .next()
            .expect("v")
            .parse()
            .expect("id");
        assert_eq!(digest, world.source(PROD, US, &volume));
        assert!(
            key.expect("encrypted").contains(":333333333333:key/"),
            "the replica is under a key of the target account"
        );
    }
    assert_nothing_left(&before, &world.inventory(), &["snapshot snap-"]);
}

#[test]
fn restore_from_a_snapshot_into_another_account_and_region() {
    let world = World::new();
    let engine = world.embedded.engine();
    let op = Operation::Snapshot {
        instance: DB.parse().expect("id"),
    };
    engine.run_operation(&op).expect("snapshot session");
    let before = world.inventory();
    let report = engine
        .run_operation(&restore(DB, RestoreSource::Snapshot, DR, EU, None))
        .expect("restore session");
    let restored = world.restored(&report, DR);
    assert_eq!(restored.len(), 2, "{:#?}", report.kept);
    for (of, digest, _) in restored {
        assert_eq!(digest, world.source(PROD, US, &of.parse().expect("id")), "{of}");
    }
    assert_nothing_left(
        &before,
        &world.inventory(),
        &["volume vol-", "instance i-", "grant "],
    );
}

#[test]
fn restore_from_a_snapshot_needs_a_snapshot_first() {
    let world = World::new();
    let before = world.inventory();
    let err = world
        .embedded
        .engine()
        .run_operation(&restore(DB, RestoreSource::Snapshot, PROD, US, None))
        .expect_err("no snapshot yet");
    assert!(err.to_string().contains("run `bulwark run snapshot`"), "{err}");
    assert_eq!(world.inventory().added_since(&before), Vec::<String>::new());
}

#[test]
fn backups_without_workers_read_only_changes_and_restore_anywhere_even_from_aws_ebs() {
    let world = World::new();
    let before = world.inventory();
    let engine = world.embedded.engine();
    let (prod, us) = ids(PROD, US);
    let web_volumes = volumes(&estate(), WEB);

    // The first backup reads every written block of the three aws/ebs volumes, in their own
    // account; the snapshots stay as the base of the next backup.
    let first = engine
        .run_operation(&backup(WEB, Placement::NoWorker))
        .expect("backup without workers");
    assert_eq!(first.points.len(), 3);
    assert_nothing_left(&before, &world.inventory(), &["snapshot snap-"]);
    let snapshots = |inventory: &bulwark_sim::Inventory| {
        inventory
            .added_since(&before)
            .into_iter()
            .filter(|r| r.contains("snapshot snap-"))
            .count()
    };
    assert_eq!(snapshots(&world.inventory()), 3);
    assert!(
        engine.snapshot_points().expect("catalog").is_empty(),
        "base snapshots are not cloud-native restore points"
    );

    // One volume changes: the next backup reads only that block, and its base snapshots
    // replace the previous ones.
    world
        .embedded
        .sim
        .write_volume(&prod, &us, &web_volumes[1], 1 << 20, &[0x5a; 4096])
        .expect("write");
    let second = engine
        .run_operation(&backup(WEB, Placement::NoWorker))
        .expect("incremental backup without workers");
    assert_eq!(
        snapshots(&world.inventory()),
        3,
        "the previous base snapshots are removed"
    );
    let repo = open_repository(&world);
    for (volume, point) in &second.points {
        let manifest = repo
            .read_point(&repo.find_point(point).expect("point"))
            .expect("manifest");
        let changed = usize::from(*volume == web_volumes[1].to_string());
        assert_eq!(manifest.stats.blocks_read, changed as u64, "{volume}");
        assert!(
            manifest.parent.is_some(),
            "{volume} builds on its previous restore point"
        );
    }

    // Restored into another account and region: nothing is shared, so aws/ebs is no
    // obstacle; the volumes hold the data of the latest backup.
    let report = engine
        .run_operation(&restore(
            WEB,
            RestoreSource::Backup,
            DR,
            EU,
            Some(Placement::NoWorker),
        ))
        .expect("restore without workers");
    let restored = world.restored(&report, DR);
    assert_eq!(restored.len(), 3);
    for (of, digest, key) in &restored {
        assert_eq!(digest, &world.source(PROD, US, &of.parse().expect("id")), "{of}");
        assert!(
            key.as_deref().is_some_and(|k| k.contains(":333333333333:key/")),
            "{key:?}"
        );
    }
    // And in its own account and region, under aws/ebs (a key ARN looked up by its alias).
    let report = engine
        .run_operation(&restore(
            WEB,
            RestoreSource::Backup,
            PROD,
            US,
            Some(Placement::NoWorker),
        ))
        .expect("restore in place without workers");
    assert_eq!(world.restored(&report, PROD).len(), 3);
    assert_nothing_left(
        &before,
        &world.inventory(),
        &["snapshot snap-", "volume vol-", "instance i-", "grant "],
    );
    assert_eq!(snapshots(&world.inventory()), 3, "written snapshots are removed");
    assert_repository_intact(&world);
}

#[test]
fn workers_launch_with_the_estates_network_settings_and_a_size_for_their_data() {
    let text = include_str!("../../../../examples/estate.toml");
    let text = format!(
        r#"{text}
[workers."111111111111/us-east-1"]
subnet = "subnet-0123456789abcdef0"
security_groups = ["sg-0123456789abcdef0", "sg-0fedcba9876543210"]
tags = {{ CostCenter = "backup" }}

[workers."222222222222/us-east-1"]
instance_type = "m7i.2xlarge"
"#
    );
    let estate = Estate::parse("estate.toml", &text).expect("the estate parses");
    let grants = bulwark_embedded::Grants::from_plans(
        &estate,
        &bulwark_embedded::plans(&estate, &bulwark_embedded::all_operations(&estate)),
    );
    let world = World::with_grants(&estate, &grants);
    let engine = world.embedded.engine();
    let (backup_account, us) = ids("111111111111", US);
    let (prod, _) = ids(PROD, US);

    // DB's 516 GiB need more than a c6i.large's baseline EBS bandwidth moves in an hour.
    let plan = bulwark_plan::plan(&estate, &backup(DB, Placement::BackupAccount)).expect("plan");
    let run = plan
        .steps
        .iter()
        .find(|s| s.action().as_str() == "ec2:RunInstances")
        .expect("a worker launch");
    assert!(
        run.why.contains("c6i.xlarge") && run.why.contains("subnet-0123456789abcdef0"),
        "{}",
        run.why
    );
    engine
        .run_operation(&backup(DB, Placement::BackupAccount))
        .expect("backup with workers in the backup account");
    let launches = world.embedded.sim.launches(&backup_account, &us);
    assert_eq!(launches.len(), 1, "{launches:#?}");
    let worker = &launches[0];
    assert_eq!(worker.instance_type, "c6i.xlarge");
    assert_eq!(worker.subnet.as_deref(), Some("subnet-0123456789abcdef0"));
    assert_eq!(
        worker.security_groups,
        ["sg-0123456789abcdef0", "sg-0fedcba9876543210"]
    );
    assert!(
        worker
            .tags
            .iter()
            .any(|t| t.key == "CostCenter" && t.value == "backup")
            && worker.tags.iter().any(|t| t.key == "bulwark:session"),
        "{:?}",
        worker.tags
    );

    // In the production account: the estate's instance type, the default network.
    let before: Vec<_> = world
        .embedded
        .sim
        .launches(&prod, &us)
        .into_iter()
        .map(|l| l.id)
        .collect();
    engine
        .run_operation(&backup(WEB, Placement::ProductionAccount))
        .expect("backup with workers in the production account");
    let worker = world
        .embedded
        .sim
        .launches(&prod, &us)
        .into_iter()
        .find(|l| !before.contains(&l.id))
        .expect("the production worker");
    assert_eq!(
        (worker.instance_type.as_str(), worker.subnet.as_deref()),
        ("m7i.2xlarge", None)
    );
}

/// Someone who can read the session queue sees sealed messages only: not the repository key,
/// not the repository role's credentials, not even which message is which. Someone who can
/// write it cannot end the session with a forged report: the session's restore points are
/// the worker's, and the forgeries are ignored.
#[test]
fn the_session_queue_shows_no_secret_and_takes_no_forged_report() {
    let world = World::new();
    let sim = &world.embedded.sim;
    sim.tap_queues();
    let forged = [
        // A `Done` in the clear, as before messages were sealed.
        r#"{"protocol":2,"type":"done","points":[["vol-0aaaaaaaaaaaaaaaa","0000"]]}"#.to_owned(),
        // One sealed with a key that is not the session's.
        format!(
            r#"{{"protocol":2,"to":"appliance","sealed":"{}"}}"#,
            "QUJD".repeat(40)
        ),
        // A task for the worker, in the clear.
        r#"{"protocol":2,"to":"worker","type":"task"}"#.to_owned(),
    ];
    for body in &forged {
        sim.plant_message(body);
    }
    let report = world
        .embedded
        .engine()
        .run_operation(&backup(DB, Placement::BackupAccount))
        .expect("backup session");
    assert_eq!(report.points.len(), 2, "{:?}", report.points);
    assert!(
        report.points.iter().all(|(_, p)| p.len() == 64),
        "{:?}",
        report.points
    );
    assert_eq!(assert_repository_intact(&world), 2);

    // The queue is encrypted at rest and keeps messages no longer than a worker may take.
    let queues = sim.created_queues();
    assert_eq!(queues.len(), 1, "{queues:?}");
    assert!(queues[0].1, "not encrypted: {queues:?}");
    assert!((60..=7 * 3600).contains(&queues[0].2), "{queues:?}");

    let sent = sim.sent_messages();
    assert!(sent.len() >= 3, "a task, reports and an end: {sent:?}");
    let key = &world.embedded.repository_key;
    for (queue, body) in &sent {
        assert!(
            !body.contains(key.as_str()),
            "the repository key on {queue}: {body}"
        );
        let fields: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(body).expect("a JSON message");
        let names: Vec<&str> = fields.keys().map(String::as_str).collect();
        assert_eq!(names, ["protocol", "sealed", "to"], "{body}");
    }
}
