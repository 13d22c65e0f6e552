//! Whole-instance restores give the instance as it was: its type, boot (an image of its
//! restored volumes with the recorded architecture, boot mode and root device), every volume
//! at its device with its delete-on-termination, its tags and a tag naming the restore point;
//! in its own network at home, in the target's default VPC (or the subnet asked for)
//! elsewhere; started or stopped. The image and its snapshots are gone afterwards.

use bulwark_cloud::{Ec2, InstanceInfo};
use bulwark_engine::journal::Target;
use bulwark_engine::SessionReport;
use bulwark_plan::{Launch, Operation, Placement, RestoreSource};
use bulwark_sim::{LAUNCHED_FROM, ROOT_DEVICE};

use crate::common::*;

/// What a whole-instance restore leaves: the instance, its volumes, and their grants.
const KEPT_BY_A_RESTORE: &[&str] = &["volume vol-", "instance i-", "grant "];

/// The restored instance of a report, as EC2 describes it in its account.
fn restored_instance(world: &World, report: &SessionReport, account: &str) -> InstanceInfo {
    let (region, id) = report
        .kept
        .iter()
        .find_map(|(_, t)| match t {
            Target::Instance(r, id) => Some((r.clone(), id.clone())),
            _ => None,
        })
        .expect("a restored instance");
    let account = account.parse().expect("account");
    let root = world.embedded.sim.root_credentials(&account).expect("root");
    world
        .embedded
        .sim
        .describe_instances(&root, &region, std::slice::from_ref(&id))
        .expect("described")
        .remove(0)
}

/// The original instance DB as it is in the production account.
fn original(world: &World) -> InstanceInfo {
    let (account, region) = ids(PROD, US);
    let root = world.embedded.sim.root_credentials(&account).expect("root");
    world
        .embedded
        .sim
        .describe_instances(&root, &region, &[DB.parse().expect("id")])
        .expect("described")
        .remove(0)
}

fn tag<'i>(i: &'i InstanceInfo, key: &str) -> Option<&'i str> {
    i.tags.iter().find(|t| t.key == key).map(|t| t.value.as_str())
}

/// Checks that `restored` boots and looks as `original` did, and that each of its volumes
/// holds the bytes of the production volume at the same device.
fn assert_as_it_was(world: &World, report: &SessionReport, restored: &InstanceInfo, original: &InstanceInfo) {
    let (setup, was) = (&restored.setup, &original.setup);
    assert_eq!(
        setup.instance_type.as_deref(),
        Some("m6i.large"),
        "the original's type"
    );
    assert_eq!(setup.boot.architecture, was.boot.architecture);
    assert_eq!(setup.boot.boot_mode.as_deref(), Some("uefi-preferred"));
    assert_eq!(setup.boot.root_device.as_deref(), Some(ROOT_DEVICE));
    assert!(setup.boot.ena_support);
    let image = setup.boot.image.as_ref().expect("launched from an image");
    assert_ne!(
        image.as_str(),
        LAUNCHED_FROM,
        "from the image of its restored volumes"
    );
    let devices = |i: &InstanceInfo| i.volumes.iter().map(|(_, d)| d.clone()).collect::<Vec<_>>();
    assert_eq!(devices(restored), devices(original), "every volume at its device");
    assert_eq!(
        setup.deleted_on_termination, was.deleted_on_termination,
        "delete-on-termination as the original's"
    );
    assert_eq!(tag(restored, "role"), Some("database"), "the original's tags");
    assert_eq!(tag(restored, "Name"), tag(original, "Name"));
    assert_eq!(tag(restored, "bulwark:restored-from"), Some(DB));
    assert!(
        tag(restored, "bulwark:restore-point").is_some(),
        "{:?}",
        restored.tags
    );
    // Each volume the instance has holds the data of the production volume at its device.
    let account = restored.owner.to_string();
    let restored_volumes = world.restored(report, &account);
    assert_eq!(
        restored_volumes.len(),
        original.volumes.len(),
        "{:#?}",
        report.kept
    );
    for (of, digest, _) in &restored_volumes {
        let of = of.parse().expect("id");
        assert_eq!(
            digest,
            &world.source(PROD, US, &of),
            "restored {of} differs from its source"
        );
    }
}

#[test]
fn an_instance_restored_from_its_snapshots_at_home_is_the_instance_as_it_was() {
    let world = World::new();
    let engine = world.embedded.engine();
    engine.run_operation(&snapshot(DB)).expect("snapshot session");
    let points = engine.snapshot_points().expect("catalog");
    let record = points[0]
        .instance
        .as_ref()
        .expect("the restore point records its instance");
    assert_eq!(record.instance_type.as_deref(), Some("m6i.large"));
    assert_eq!(record.volumes.len(), 2);
    assert_eq!(record.volumes[0].device, ROOT_DEVICE);

    let before = world.inventory();
    let report = engine
        .run_operation(&restore(DB, RestoreSource::Snapshot, PROD, US, None))
        .expect("restore session");
    let was = original(&world);
    let restored = restored_instance(&world, &report, PROD);
    assert_as_it_was(&world, &report, &restored, &was);
    assert_eq!(
        restored.setup.subnet, was.setup.subnet,
        "at home: the original's subnet"
    );
    assert_eq!(restored.setup.security_groups, was.setup.security_groups);
    assert_eq!(restored.state, "running");
    assert_eq!(
        tag(&restored, "bulwark:restore-point"),
        Some(points[0].snapshot.as_str()),
        "the tag names the root's snapshot"
    );
    // No image, no image snapshot, no intermediate volume is left.
    assert_nothing_left(&before, &world.inventory(), KEPT_BY_A_RESTORE);
    let volumes_now = world
        .inventory()
        .added_since(&before)
        .into_iter()
        .filter(|r| r.starts_with("volume "))
        .count();
    assert_eq!(volumes_now, 2, "only the restored instance's own volumes");
}

#[test]
fn an_instance_restored_from_a_backup_into_another_account_and_region_boots_as_it_did_in_the_default_vpc() {
    let world = World::new();
    let engine = world.embedded.engine();
    engine
        .run_operation(&backup(DB, Placement::BackupAccount))
        .expect("backup session");
    let before = world.inventory();
    let report = engine
        .run_operation(&restore(DB, RestoreSource::Backup, DR, EU, None))
        .expect("restore session");
    let restored = restored_instance(&world, &report, DR);
    assert_eq!(restored.region.as_str(), EU);
    assert_as_it_was(&world, &report, &restored, &original(&world));
    assert_eq!(restored.setup.subnet, None, "the target's default VPC");
    assert!(restored.setup.security_groups.is_empty());
    assert_nothing_left(&before, &world.inventory(), KEPT_BY_A_RESTORE);
}

#[test]
fn a_restored_instance_takes_the_subnet_and_groups_asked_for_and_stays_stopped_if_asked() {
    let world = World::new();
    let engine = world.embedded.engine();
    engine.run_operation(&snapshot(DB)).expect("snapshot session");
    let Operation::Restore {
        instance,
        from,
        to_account,
        to_region,
        target_key,
        workers,
        ..
    } = restore(DB, RestoreSource::Snapshot, DR, US, None)
    else {
        unreachable!()
    };
    let subnet = "subnet-0aaaaaaaaaaaaaaaa";
    let group = "sg-0bbbbbbbbbbbbbbbb";
    let op = Operation::Restore {
        instance,
        from,
        to_account,
        to_region,
        target_key,
        workers,
        launch: Launch {
            subnet: Some(subnet.into()),
            security_groups: vec![group.into()],
            stopped: true,
        },
    };
    let report = engine.run_operation(&op).expect("restore session");
    let restored = restored_instance(&world, &report, DR);
    assert_eq!(restored.setup.subnet.as_deref(), Some(subnet));
    assert_eq!(restored.setup.security_groups, vec![group.to_owned()]);
    assert_eq!(restored.state, "stopped");
    assert_as_it_was(&world, &report, &restored, &original(&world));

    // Ids EC2 would refuse are refused before anything runs.
    let Operation::Restore { launch, .. } = &op else {
        unreachable!()
    };
    for bad in [
        Launch {
            subnet: Some("subnet-12".into()),
            ..launch.clone()
        },
        Launch {
            security_groups: vec!["default".into()],
            ..launch.clone()
        },
        Launch {
            subnet: None,
            ..launch.clone()
        },
    ] {
        let mut op = op.clone();
        if let Operation::Restore { launch, .. } = &mut op {
            *launch = bad.clone();
        }
        let refusal = bulwark_plan::plan(&estate(), &op).expect_err("bad network");
        assert_eq!(
            refusal.code,
            bulwark_plan::RefusalCode::BadNetwork,
            "{bad:?}: {refusal}"
        );
    }
}

#[test]
fn an_instance_restored_from_its_backups_alone_is_as_it_was_the_repository_keeps_its_record() {
    let world = World::new();
    let engine = world.embedded.engine();
    // No snapshot session: each backup's restore points keep the instance's record.
    for (backup_with, restore_with) in [
        (Placement::BackupAccount, Placement::ProductionAccount),
        (Placement::NoWorker, Placement::NoWorker),
    ] {
        engine
            .run_operation(&backup(DB, backup_with))
            .expect("backup session");
        let repo = open_repository(&world);
        let (_, latest) = repo
            .latest_point("vol-0dddddddddddddddd")
            .expect("points")
            .expect("a point");
        let kept = latest
            .instance
            .as_deref()
            .expect("the restore point keeps the instance");
        let record = bulwark_engine::record::InstanceRecord::parse(kept).expect("a record");
        assert_eq!(record.instance.as_str(), DB);
        assert_eq!(record.instance_type.as_deref(), Some("m6i.large"));

        let before = world.inventory();
        let report = engine
            .run_operation(&restore(DB, RestoreSource::Backup, PROD, US, Some(restore_with)))
            .expect("restore session");
        let restored = restored_instance(&world, &report, PROD);
        assert_as_it_was(&world, &report, &restored, &original(&world));
        assert_nothing_left(&before, &world.inventory(), KEPT_BY_A_RESTORE);
    }
}

#[test]
fn a_restore_of_a_point_that_recorded_no_instance_boots_with_defaults() {
    let world = World::new();
    let engine = world.embedded.engine();
    engine.run_operation(&snapshot(DB)).expect("snapshot session");
    // A catalog written before instances were recorded.
    let catalog = world._dir.path().join("appliance/catalog.json");
    let mut points: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&catalog).expect("catalog")).expect("json");
    for p in &mut points {
        p.as_object_mut().expect("a point").remove("instance");
    }
    std::fs::write(&catalog, serde_json::to_string(&points).expect("json")).expect("written");
    assert!(engine
        .snapshot_points()
        .expect("catalog")
        .iter()
        .all(|p| p.instance.is_none()));

    let report = engine
        .run_operation(&restore(DB, RestoreSource::Snapshot, PROD, US, None))
        .expect("restore session");
    let restored = restored_instance(&world, &report, PROD);
    assert_eq!(restored.setup.instance_type.as_deref(), Some("c6i.large"));
    assert_eq!(restored.setup.boot.root_device.as_deref(), Some(ROOT_DEVICE));
    assert_eq!(restored.volumes.len(), 2);
    assert_eq!(
        restored.volumes[1].1, "/dev/sdf",
        "the next device after the root"
    );
}
