//! Volume restores: some volumes of a restore point, left as volumes in the zone asked for,
//! from snapshots and from backups (with a worker and without), into the instance's account
//! and into another; and the volumes the planner refuses.

use bulwark_engine::journal::Target;
use bulwark_plan::{Operation, Placement, RefusalCode, RestoreSource};

use crate::common::*;

const ROOT: &str = "vol-0aaaaaaaaaaaaaaaa";
const DATA: &str = "vol-0cccccccccccccccc";

fn restore_volumes(
    volumes: &[&str],
    from: RestoreSource,
    account: &str,
    region: &str,
    workers: Option<Placement>,
    zone: Option<&str>,
) -> Operation {
    let (to_account, to_region) = ids(account, region);
    Operation::RestoreVolumes {
        instance: WEB.parse().expect("instance"),
        volumes: volumes.iter().map(|v| v.parse().expect("volume")).collect(),
        from,
        to_account,
        to_region,
        target_key: None,
        workers,
        zone: zone.map(str::to_owned),
        attach_to: None,
        devices: Vec::new(),
        volume_type: None,
        iops: None,
        throughput: None,
    }
}

/// The restore kept exactly the volumes asked for, no instance, each with its source's bytes,
/// in `zone`; nothing else is left.
fn check(
    world: &World,
    before: &bulwark_sim::Inventory,
    op: &Operation,
    account: &str,
    zone: &str,
    wanted: &[&str],
) {
    let report = world.embedded.engine().run_operation(op).expect("volume restore");
    assert!(
        report.kept.iter().all(|(_, t)| matches!(t, Target::Volume(..))),
        "only volumes are kept: {:#?}",
        report.kept
    );
    let restored = world.restored(&report, account);
    let mut of: Vec<&str> = restored.iter().map(|(v, _, _)| v.as_str()).collect();
    of.sort_unstable();
    assert_eq!(of, wanted, "{:#?}", report.kept);
    for (v, digest, _) in &restored {
        assert_eq!(digest, &world.source(PROD, US, &v.parse().expect("id")), "{v}");
    }
    let (acct, _) = ids(account, US);
    for (_, t) in &report.kept {
        if let Target::Volume(region, id) = t {
            let placement = world.embedded.sim.volume_placement(&acct, region, id);
            assert_eq!(placement.map(|p| p.0).as_deref(), Some(zone), "{id}");
        }
    }
    assert_nothing_left(before, &world.inventory(), &["volume vol-", "grant "]);
}

#[test]
fn volumes_are_restored_from_snapshots_as_volumes_in_the_zone_asked_for() {
    let world = World::new();
    let engine = world.embedded.engine();
    engine.run_operation(&snapshot(WEB)).expect("snapshot session");
    let before = world.inventory();
    let op = restore_volumes(
        &[ROOT],
        RestoreSource::Snapshot,
        PROD,
        US,
        None,
        Some("us-east-1c"),
    );
    check(&world, &before, &op, PROD, "us-east-1c", &[ROOT]);
    let before = world.inventory();
    let op = restore_volumes(&[ROOT, DATA], RestoreSource::Snapshot, DR, EU, None, None);
    check(&world, &before, &op, DR, "eu-west-1a", &[ROOT, DATA]);
}

#[test]
fn volumes_are_restored_from_backups_with_and_without_workers() {
    let world = World::new();
    let engine = world.embedded.engine();
    engine
        .run_operation(&backup(WEB, Placement::ProductionAccount))
        .expect("backup session");
    let before = world.inventory();
    let op = restore_volumes(
        &[DATA],
        RestoreSource::Backup,
        DR,
        EU,
        Some(Placement::BackupAccount),
        Some("eu-west-1b"),
    );
    check(&world, &before, &op, DR, "eu-west-1b", &[DATA]);
    let before = world.inventory();
    let op = restore_volumes(
        &[ROOT],
        RestoreSource::Backup,
        PROD,
        US,
        Some(Placement::NoWorker),
        Some("us-east-1d"),
    );
    check(&world, &before, &op, PROD, "us-east-1d", &[ROOT]);
}

#[test]
fn a_volume_the_instance_lacks_or_a_zone_of_another_region_is_refused() {
    let estate = estate();
    for (op, code, words) in [
        (
            restore_volumes(
                &["vol-0ffffffffffffffff"],
                RestoreSource::Snapshot,
                PROD,
                US,
                None,
                None,
            ),
            RefusalCode::UnknownVolume,
            "has no volume vol-0ffffffffffffffff",
        ),
        (
            restore_volumes(&[], RestoreSource::Snapshot, PROD, US, None, None),
            RefusalCode::UnknownVolume,
            "names no volume",
        ),
        (
            restore_volumes(
                &[ROOT],
                RestoreSource::Snapshot,
                PROD,
                US,
                None,
                Some("eu-west-1a"),
            ),
            RefusalCode::ZoneNotInTargetRegion,
            "not a zone of the target region us-east-1",
        ),
    ] {
        let refusal = bulwark_plan::plan(&estate, &op).expect_err("refused");
        assert_eq!(refusal.code, code, "{refusal}");
        assert!(refusal.message.contains(words), "{refusal}");
        assert!(
            refusal.remedy.contains(ROOT) || code == RefusalCode::ZoneNotInTargetRegion,
            "{refusal}"
        );
    }
}

#[test]
fn restored_volumes_are_attached_to_an_existing_instance_in_its_zone() {
    let world = World::new();
    let engine = world.embedded.engine();
    engine.run_operation(&snapshot(WEB)).expect("snapshot session");
    let attach = |to: &str, devices: &[&str]| {
        let mut op = restore_volumes(&[DATA, ROOT], RestoreSource::Snapshot, PROD, US, None, None);
        if let Operation::RestoreVolumes {
            attach_to,
            devices: d,
            ..
        } = &mut op
        {
            *attach_to = Some(to.parse().expect("instance"));
            *d = devices.iter().map(|d| (*d).to_owned()).collect();
        }
        op
    };
    // An instance that is not there: nothing is made.
    let before = world.inventory();
    let err = engine
        .run_operation(&attach("i-0000000000000000f", &["/dev/sdk", "/dev/sdl"]))
        .expect_err("no such instance");
    assert!(err.to_string().contains("i-0000000000000000f"), "{err}");
    assert_nothing_left(&before, &world.inventory(), &["grant "]);
    // The database instance takes web's volumes: data at /dev/sdk, root at /dev/sdl.
    let report = engine
        .run_operation(&attach(DB, &["/dev/sdk", "/dev/sdl"]))
        .expect("volume restore");
    let restored = world.restored(&report, PROD);
    assert_eq!(restored.len(), 2, "{:#?}", report.kept);
    let inventory = world.inventory();
    let attachments = report
        .kept
        .iter()
        .filter(|(_, t)| matches!(t, Target::Attachment(..)))
        .count();
    assert_eq!(attachments, 2, "the attachments are kept too: {:#?}", report.kept);
    for (_, target) in &report.kept {
        let Target::Volume(_, id) = target else {
            continue;
        };
        let line = inventory
            .resources
            .iter()
            .find(|r| r.starts_with(&format!("volume {id} ")))
            .unwrap_or_else(|| panic!("{id} is gone"));
        let of = report
            .kept
            .iter()
            .find(|(_, t)| t == target)
            .map(|(what, _)| what.clone())
            .unwrap_or_default();
        let device = if of.contains(DATA) { "/dev/sdk" } else { "/dev/sdl" };
        assert!(
            line.contains(&format!("attached to {DB} as {device}")),
            "{line} ({of})"
        );
    }
    // Devices EC2 would refuse are refused before anything runs.
    for devices in [
        &["/dev/sdk"][..],
        &["/dev/sda", "/dev/sdb"],
        &["/dev/sdk", "/dev/sdk"],
        &["sdk", "/dev/sdl"],
    ] {
        let refusal = bulwark_plan::plan(&estate(), &attach(DB, devices)).expect_err("bad devices");
        assert_eq!(refusal.code, RefusalCode::BadAttachment, "{devices:?}: {refusal}");
    }
}

#[test]
fn restored_volumes_take_the_type_iops_and_throughput_asked_for() {
    let world = World::new();
    let engine = world.embedded.engine();
    engine.run_operation(&snapshot(WEB)).expect("snapshot session");
    let with = |volume_type: &str, iops: Option<u32>, throughput: Option<u32>| {
        let mut op = restore_volumes(&[ROOT], RestoreSource::Snapshot, PROD, US, None, None);
        if let Operation::RestoreVolumes {
            volume_type: t,
            iops: i,
            throughput: th,
            ..
        } = &mut op
        {
            *t = Some(volume_type.parse().expect("type"));
            *i = iops;
            *th = throughput;
        }
        op
    };
    let report = engine
        .run_operation(&with("io2", Some(4000), None))
        .expect("io2 restore");
    let (account, _) = ids(PROD, US);
    let (region, id) = report
        .kept
        .iter()
        .find_map(|(_, t)| match t {
            Target::Volume(r, v) => Some((r.clone(), v.clone())),
            _ => None,
        })
        .expect("a volume");
    let (_, performance) = world
        .embedded
        .sim
        .volume_placement(&account, &region, &id)
        .expect("volume");
    let performance = performance.expect("a volume type");
    assert_eq!(performance.volume_type.as_str(), "io2");
    assert_eq!(performance.iops, Some(4000));
    // What CreateVolume would refuse is refused first, with AWS's reason.
    for (t, iops, throughput, words) in [
        ("io1", None, None, "MissingParameter"),
        ("gp3", Some(100), None, "InvalidParameterValue"),
        ("st1", None, None, "InvalidParameterValue"),
        ("gp2", None, Some(500), "InvalidParameterCombination"),
    ] {
        let refusal = bulwark_plan::plan(&estate(), &with(t, iops, throughput)).expect_err(t);
        assert_eq!(refusal.code, RefusalCode::BadVolumeType, "{t}: {refusal}");
        assert!(refusal.message.contains(words), "{t}: {refusal}");
    }
}
