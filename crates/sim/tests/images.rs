//! Images of EBS snapshots in the embedded cloud, with AWS's rules and error codes:
//! RegisterImage's checks, RunInstances from an image (its architecture, its volumes made
//! from the snapshots with their keys), delete-on-termination, and snapshots an image holds.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bulwark_cloud::{Ec2, ErrorKind, ImageDevice, RegisterImage, RunInstance};
use bulwark_model::{ImageId, SnapshotId};
use common::*;

const KEY: &str = "aaaaaaaa-0000-4000-8000-00000000000a";

fn image_of(snapshots: &[&SnapshotId], name: &str) -> RegisterImage {
    RegisterImage {
        name: name.into(),
        architecture: "x86_64".into(),
        boot_mode: Some("uefi".into()),
        root_device: "/dev/xvda".into(),
        ena_support: true,
        devices: snapshots
            .iter()
            .enumerate()
            .map(|(i, s)| ImageDevice {
                device: if i == 0 {
                    "/dev/xvda".into()
                } else {
                    format!("/dev/sd{}", (b'f' + i as u8) as char)
                },
                snapshot: (*s).clone(),
                size_gib: None,
                performance: None,
                delete_on_termination: i == 0,
            })
            .collect(),
        tags: Vec::new(),
    }
}

fn launch(image: &ImageId, instance_type: &str) -> RunInstance {
    RunInstance {
        instance_type: instance_type.into(),
        image: Some(image.clone()),
        ..RunInstance::default()
    }
}

#[test]
fn an_instance_launched_from_an_image_gets_its_volumes_bytes_and_boot() {
    let w = World::new();
    w.instance(
        &w.a,
        &w.east,
        "i-000000a1",
        &[("vol-000000a1", None), ("vol-000000a2", None)],
    );
    w.write(&w.a, &w.east, "vol-000000a1", &[(0, 7), (3, 9)]);
    w.write(&w.a, &w.east, "vol-000000a2", &[(1, 5)]);
    let root = w.snapshot(&w.a, &w.east, "vol-000000a1");
    let data = w.snapshot(&w.a, &w.east, "vol-000000a2");
    let me = w.root(&w.a);
    let image = w
        .sim
        .register_image(&me, &w.east, &image_of(&[&root, &data], "restore-1"))
        .unwrap();
    let info = w
        .sim
        .describe_images(&me, &w.east, std::slice::from_ref(&image))
        .unwrap();
    assert_eq!(info[0].state, "available");
    assert_eq!(info[0].image.root_device, "/dev/xvda");

    let launched = w
        .sim
        .run_instance(&me, &w.east, &launch(&image, "m6i.large"))
        .unwrap();
    let described = w
        .sim
        .describe_instances(&me, &w.east, std::slice::from_ref(&launched.id))
        .unwrap();
    let i = &described[0];
    assert_eq!(i.setup.boot.image.as_ref(), Some(&image));
    assert_eq!(i.setup.boot.architecture.as_deref(), Some("x86_64"));
    assert_eq!(i.setup.boot.boot_mode.as_deref(), Some("uefi"));
    assert_eq!(i.setup.boot.root_device.as_deref(), Some("/dev/xvda"));
    assert_eq!(
        i.volumes.iter().map(|(_, d)| d.as_str()).collect::<Vec<_>>(),
        ["/dev/xvda", "/dev/sdg"]
    );
    assert_eq!(i.setup.deleted_on_termination, vec!["/dev/xvda".to_owned()]);
    // Each volume holds its snapshot's bytes.
    for ((volume, _), source) in i.volumes.iter().zip(["vol-000000a1", "vol-000000a2"]) {
        let made = w.sim.volume_digest(&w.a, &w.east, volume).unwrap().1;
        let original = w.sim.volume_digest(&w.a, &w.east, &volume_id(source)).unwrap().1;
        assert_eq!(made, original, "{volume} from {source}");
    }

    // A snapshot an image uses cannot be deleted; once the image is gone it can.
    let error = expect_error(
        w.sim.delete_snapshot(&me, &w.east, &root),
        "InvalidSnapshot.InUse",
        ErrorKind::Conflict,
    );
    assert!(error.message.contains(image.as_str()), "{error}");
    w.sim.deregister_image(&me, &w.east, &image).unwrap();
    expect_error(
        w.sim.describe_images(&me, &w.east, std::slice::from_ref(&image)),
        "InvalidAMIID.NotFound",
        ErrorKind::NotFound,
    );
    w.sim.delete_snapshot(&me, &w.east, &root).unwrap();

    // Terminated, it takes the volumes deleted on termination with it, and leaves the rest.
    w.sim
        .set_delete_on_termination(&me, &w.east, &launched.id, "/dev/sdg", false)
        .unwrap();
    w.sim.terminate_instance(&me, &w.east, &launched.id).unwrap();
    let (root_volume, data_volume) = (&i.volumes[0].0, &i.volumes[1].0);
    std::thread::sleep(std::time::Duration::from_millis(20));
    let _ = w
        .sim
        .describe_instances(&me, &w.east, std::slice::from_ref(&launched.id));
    expect_error(
        w.sim
            .describe_volumes(&me, &w.east, std::slice::from_ref(root_volume)),
        "InvalidVolume.NotFound",
        ErrorKind::NotFound,
    );
    w.sim
        .describe_volumes(&me, &w.east, std::slice::from_ref(data_volume))
        .unwrap();
}

#[test]
fn register_image_refuses_what_aws_refuses() {
    let w = World::new();
    w.instance(&w.a, &w.east, "i-000000a1", &[("vol-000000a1", None)]);
    let snap = w.snapshot(&w.a, &w.east, "vol-000000a1");
    let me = w.root(&w.a);
    let good = image_of(&[&snap], "restore-1");
    let refused = |image: RegisterImage, code: &str| {
        expect_error(
            w.sim.register_image(&me, &w.east, &image),
            code,
            ErrorKind::Invalid,
        );
    };
    refused(
        RegisterImage {
            name: "x".into(),
            ..good.clone()
        },
        "InvalidAMIName.Malformed",
    );
    refused(
        RegisterImage {
            name: "a*b*c".into(),
            ..good.clone()
        },
        "InvalidAMIName.Malformed",
    );
    refused(
        RegisterImage {
            architecture: "sparc".into(),
            ..good.clone()
        },
        "InvalidParameterValue",
    );
    refused(
        RegisterImage {
            boot_mode: Some("bios".into()),
            ..good.clone()
        },
        "InvalidParameterValue",
    );
    refused(
        RegisterImage {
            root_device: "/dev/sda1".into(),
            ..good.clone()
        },
        "InvalidBlockDeviceMapping",
    );
    let mut small = good.clone();
    small.devices[0].size_gib = Some(0);
    refused(small, "InvalidBlockDeviceMapping");
    let mut twice = good.clone();
    twice.devices.push(twice.devices[0].clone());
    refused(twice, "InvalidBlockDeviceMapping");

    w.sim.register_image(&me, &w.east, &good).unwrap();
    refused(good.clone(), "InvalidAMIName.Duplicate");

    // A snapshot of another account, even shared with the caller, is not registered here.
    let theirs = image_of(&[&snap], "theirs");
    w.sim
        .modify_snapshot_sharing(&me, &w.east, &snap, std::slice::from_ref(&w.b), &[])
        .unwrap();
    expect_error(
        w.sim.register_image(&w.root(&w.b), &w.east, &theirs),
        "AuthFailure",
        ErrorKind::NotPermitted,
    );
    // One that does not exist is not found.
    let mut missing = good;
    missing.name = "missing".into();
    missing.devices[0].snapshot = "snap-0123456789abcdef0".parse().unwrap();
    expect_error(
        w.sim.register_image(&me, &w.east, &missing),
        "InvalidSnapshot.NotFound",
        ErrorKind::NotFound,
    );
}

#[test]
fn an_image_launches_only_on_an_instance_type_of_its_architecture() {
    let w = World::new();
    w.instance(&w.a, &w.east, "i-000000a1", &[("vol-000000a1", None)]);
    let snap = w.snapshot(&w.a, &w.east, "vol-000000a1");
    let me = w.root(&w.a);
    let image = w
        .sim
        .register_image(&me, &w.east, &image_of(&[&snap], "x86"))
        .unwrap();
    let error = expect_error(
        w.sim.run_instance(&me, &w.east, &launch(&image, "m7g.large")),
        "InvalidParameterValue",
        ErrorKind::Invalid,
    );
    assert!(error.message.contains("arm64"), "{error}");
    // Another account's private image is not found.
    expect_error(
        w.sim
            .run_instance(&w.root(&w.b), &w.east, &launch(&image, "m6i.large")),
        "InvalidAMIID.NotFound",
        ErrorKind::NotFound,
    );
    w.sim
        .run_instance(&me, &w.east, &launch(&image, "c6i.large"))
        .unwrap();
}

#[test]
fn a_launch_whose_image_key_the_caller_may_not_use_ends_at_boot() {
    let w = World::new();
    let key = w.cmk(&w.a, &w.east, KEY, &key_policy(&w.a, &[]));
    w.instance(&w.a, &w.east, "i-000000a1", &[("vol-000000a1", Some(&key))]);
    let snap = w.snapshot(&w.a, &w.east, "vol-000000a1");
    let image = w
        .sim
        .register_image(&w.root(&w.a), &w.east, &image_of(&[&snap], "encrypted"))
        .unwrap();
    // EC2 permissions, none on the key: AWS accepts the launch, then the instance ends.
    let launcher = w.role(&w.a, "Launcher", &[("ec2", ec2_all())]);
    let launched = w
        .sim
        .run_instance(&launcher, &w.east, &launch(&image, "m6i.large"))
        .unwrap();
    assert_eq!(launched.state, "terminated");
    assert!(
        launched
            .state_reason
            .as_deref()
            .unwrap_or("")
            .starts_with("Client.InternalError"),
        "{launched:?}"
    );
    assert!(launched.volumes.is_empty(), "no volume is made");
}

fn volume_id(s: &str) -> bulwark_model::VolumeId {
    s.parse().unwrap()
}
