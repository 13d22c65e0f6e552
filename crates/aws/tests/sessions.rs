//! Conformance: the sessions of the embedded cloud's end-to-end tests, run by the same engine
//! through the AWS provider against moto, where moto models what they need (one account;
//! snapshots, replicas in another region, restores from snapshots). moto does not run worker
//! instances and does not let another account use a shared snapshot, so image-level backups
//! and cross-account sessions stay on the embedded cloud (docs/sessions.md lists moto's gaps).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::sync::Arc;

use bulwark_aws::{AwsCloud, AwsOptions};
use bulwark_cloud::{Cloud, CreateVolume, Credentials, Ec2, Iam, ObjectStore, RunInstance, Sts};
use bulwark_engine::journal::Target;
use bulwark_engine::{Engine, FileStore};
use bulwark_model::{Estate, Region};
use bulwark_plan::{Operation, RestoreSource};

const ENDPOINT_VAR: &str = "BULWARK_TEST_S3_ENDPOINT";

fn endpoint() -> Option<String> {
    match std::env::var(ENDPOINT_VAR) {
        Ok(e) if !e.is_empty() => Some(e),
        _ if std::env::var_os("CI").is_some() => {
            panic!("moto was not started: {ENDPOINT_VAR} is unset; run scripts/test")
        }
        _ => {
            let _ = writeln!(
                std::io::stderr(),
                "AWS session tests skipped: {ENDPOINT_VAR} is unset (run scripts/test)"
            );
            None
        }
    }
}

/// The I/O runtime of the test binary, as the bulwark binary has one.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: std::sync::LazyLock<tokio::runtime::Runtime> =
        std::sync::LazyLock::new(|| bulwark_s3::io_runtime().unwrap());
    &RUNTIME
}

/// moto's first image, in every region the tests use.
fn image(endpoint: &str) -> String {
    let runtime = runtime();
    runtime.block_on(async {
        let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(bulwark_s3::http_client())
            .endpoint_url(endpoint)
            .region(aws_config::Region::from_static("us-east-1"))
            .load()
            .await;
        let images = aws_sdk_ec2::Client::new(&conf)
            .describe_images()
            .send()
            .await
            .unwrap();
        images.images()[0].image_id().unwrap().to_owned()
    })
}

#[test]
fn snapshot_replica_and_restore_sessions_run_on_aws_apis() {
    let Some(endpoint) = endpoint() else { return };
    let us: Region = "us-east-1".parse().unwrap();
    let west: Region = "us-west-2".parse().unwrap();
    let ami = image(&endpoint);
    let cloud = Arc::new(AwsCloud::new(
        AwsOptions {
            endpoint_url: Some(endpoint),
            worker_images: [(us.clone(), ami.clone()), (west.clone(), ami)].into(),
        },
        runtime().handle().clone(),
    ));
    let who = cloud.appliance_credentials().unwrap();
    let account = cloud.caller_identity(&who).unwrap().account;

    // What an administrator has: the roles, and an instance with two volumes.
    let suffix = format!("{}", std::process::id());
    let trust = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::{account}:root"}},"Action":"sts:AssumeRole"}}]}}"#
    );
    for role in ["Backup", "Restore", "WorkerDeployment"] {
        let _ = cloud.create_role(&who, "/", &format!("{role}{suffix}"), &trust, &[]);
    }
    let instance = cloud
        .run_instance(
            &who,
            &us,
            &RunInstance {
                instance_type: "t3.micro".into(),
                ..Default::default()
            },
        )
        .unwrap();
    let mut volumes = Vec::new();
    for (size, device) in [(1, "/dev/sdf"), (2, "/dev/sdg")] {
        let v = cloud
            .create_volume(
                &who,
                &us,
                &CreateVolume {
                    size_gib: Some(size),
                    ..Default::default()
                },
            )
            .unwrap();
        cloud
            .attach_volume(&who, &us, &v.id, &instance.id, device)
            .unwrap();
        volumes.push((v.id, size));
    }
    let estate_text = format!(
        r#"
[appliance]
account = "{account}"
worker_deployment_role = "arn:aws:iam::{account}:role/WorkerDeployment{suffix}"

[[account]]
id = "{account}"
backup_role = "arn:aws:iam::{account}:role/Backup{suffix}"
restore_role = "arn:aws:iam::{account}:role/Restore{suffix}"

[[instance]]
id = "{}"
account = "{account}"
region = "us-east-1"
volumes = [ {{ id = "{}", size_gib = {} }}, {{ id = "{}", size_gib = {} }} ]
"#,
        instance.id, volumes[0].0, volumes[0].1, volumes[1].0, volumes[1].1
    );
    let estate = Estate::parse("moto.toml", &estate_text).unwrap();
    let state = tempfile::tempdir().unwrap();
    let engine = engine_on(&cloud, estate, &who, state.path());

    // Snapshots: one per volume, kept, completed.
    let report = engine
        .run_operation(&Operation::Snapshot {
            instance: instance.id.clone(),
        })
        .unwrap();
    let snapshots: Vec<_> = report
        .kept
        .iter()
        .filter_map(|(_, t)| match t {
            Target::Snapshot(r, id) => Some((r.clone(), id.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(snapshots.len(), 2, "{:#?}", report.kept);
    for (region, id) in &snapshots {
        let s = cloud
            .describe_snapshots(&who, region, std::slice::from_ref(id))
            .unwrap();
        assert_eq!(s[0].state, "completed");
        assert!(
            s[0].tags.iter().any(|t| t.key == "bulwark:session"),
            "{:?}",
            s[0].tags
        );
    }

    // A replica in another region of the same account.
    let report = engine
        .run_operation(&Operation::Replicate {
            instance: instance.id.clone(),
            to_account: account.clone(),
            to_region: west.clone(),
            target_key: None,
        })
        .unwrap();
    let copies = report
        .kept
        .iter()
        .filter(|(n, t)| n.starts_with("snapshot copy") && matches!(t, Target::Snapshot(r, _) if r == &west))
        .count();
    assert_eq!(copies, 2, "{:#?}", report.kept);

    // A restore from the snapshots into the other region: copies, volumes, their snapshots,
    // an image of them, the instance launched from it; then the image and everything
    // temporary are removed. moto ignores an image's block device mappings (it gives the
    // instance a root of its own), so here the check is the instance, its image and type, and
    // that nothing temporary is left; the embedded cloud's tests check the volumes' bytes and
    // devices.
    let report = engine
        .run_operation(&Operation::Restore {
            instance: instance.id.clone(),
            from: RestoreSource::Snapshot,
            to_account: account.clone(),
            to_region: west.clone(),
            target_key: None,
            workers: None,
            launch: Default::default(),
        })
        .unwrap();
    let Some(Target::Instance(_, new_instance)) = report
        .kept
        .iter()
        .map(|(_, t)| t)
        .find(|t| matches!(t, Target::Instance(..)))
    else {
        panic!("a restored instance: {:#?}", report.kept)
    };
    let restored = cloud
        .describe_instances(&who, &west, std::slice::from_ref(new_instance))
        .unwrap();
    let image = restored[0]
        .setup
        .boot
        .image
        .clone()
        .expect("launched from an image");
    assert_eq!(
        restored[0].setup.instance_type, instance.setup.instance_type,
        "the original's type, as the snapshot session recorded it"
    );
    assert!(
        restored[0]
            .tags
            .iter()
            .any(|t| t.key == "bulwark:restored-from" && t.value == instance.id.as_str()),
        "{:?}",
        restored[0].tags
    );
    let images = cloud.describe_images(&who, &west, std::slice::from_ref(&image));
    assert!(
        images
            .as_ref()
            .map_or(true, |found| found.iter().all(|i| i.state == "deregistered")),
        "the temporary image is deregistered: {images:?}"
    );

    // One volume restored as a volume, a gp3 of 4,000 IOPS and 250 MiB/s attached to the original instance
    // at /dev/sdh: no instance launched.
    let report = engine
        .run_operation(&Operation::RestoreVolumes {
            instance: instance.id.clone(),
            volumes: vec![volumes[1].0.clone()],
            from: RestoreSource::Snapshot,
            to_account: account.clone(),
            to_region: us.clone(),
            target_key: None,
            workers: None,
            zone: None,
            attach_to: Some(instance.id.clone()),
            devices: vec!["/dev/sdh".into()],
            volume_type: Some(bulwark_model::VolumeType::Gp3),
            iops: Some(4000),
            throughput: Some(250),
        })
        .unwrap();
    assert!(
        !report.kept.iter().any(|(_, t)| matches!(t, Target::Instance(..))),
        "{:#?}",
        report.kept
    );
    let restored: Vec<_> = report
        .kept
        .iter()
        .filter_map(|(_, t)| match t {
            Target::Volume(_, id) => Some(id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(restored.len(), 1, "{:#?}", report.kept);
    let v = cloud.describe_volumes(&who, &us, &restored).unwrap().remove(0);
    assert_eq!(
        v.attachment,
        Some((instance.id.clone(), "/dev/sdh".to_owned())),
        "{v:?}"
    );
    assert_eq!(v.size_gib, volumes[1].1, "{v:?}");
    let performance = v.performance.expect("moto describes the volume type");
    assert_eq!(performance.volume_type, bulwark_model::VolumeType::Gp3, "{v:?}");
    assert_eq!(
        (performance.iops, performance.throughput),
        (Some(4000), Some(250)),
        "{v:?}"
    );
    assert!(engine.recover().unwrap().is_empty(), "every journal is closed");
}

/// A restore without workers: the restore role writes the latest restore point into a new
/// snapshot through the EBS direct APIs, creates the volume from it and launches the
/// instance. (A backup without workers cannot run on moto: its EBS direct APIs know only the
/// snapshots they started, not those of ec2:CreateSnapshots; docs/aws.md.)
#[test]
fn a_restore_without_workers_runs_on_aws_apis() {
    let Some(endpoint) = endpoint() else { return };
    let us: Region = "us-east-1".parse().unwrap();
    let ami = image(&endpoint);
    let cloud = Arc::new(AwsCloud::new(
        AwsOptions {
            endpoint_url: Some(endpoint.clone()),
            worker_images: [(us.clone(), ami)].into(),
        },
        runtime().handle().clone(),
    ));
    let who = cloud.appliance_credentials().unwrap();
    let account = cloud.caller_identity(&who).unwrap().account;
    let suffix = format!("{}", std::process::id());
    let trust = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::{account}:root"}},"Action":"sts:AssumeRole"}}]}}"#
    );
    for role in ["Backup", "Restore", "WorkerDeployment", "Repository"] {
        let _ = cloud.create_role(&who, "/", &format!("{role}D{suffix}"), &trust, &[]);
    }

    // The repository, with one restore point of a 3 MiB volume (in moto's S3).
    let bucket = format!("bulwark-direct-{suffix}");
    let runtime = runtime();
    runtime.block_on(async {
        let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(bulwark_s3::http_client())
            .endpoint_url(&endpoint)
            .region(aws_config::Region::from_static("us-east-1"))
            .load()
            .await;
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&conf)
                .force_path_style(true)
                .build(),
        );
        s3.create_bucket().bucket(&bucket).send().await.unwrap();
    });
    let backend = cloud
        .object_store(&who.clone().into(), &us, &bucket, "ec2")
        .unwrap();
    let repo = bulwark_repo::Repository::init(Arc::from(backend), &bulwark_repo::Secret::None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("volume.img");
    let data: Vec<u8> = (0..3u32 << 20).map(|i| (i % 253) as u8).collect();
    std::fs::write(&image, &data).unwrap();
    let volume = "vol-0d1d1d1d1d1d1d1d1";
    let source = bulwark_mover::FileSource::open(&image).unwrap();
    let point = bulwark_mover::backup(
        &repo,
        &source,
        volume,
        None,
        &bulwark_mover::Progress::default(),
        2,
    )
    .unwrap()
    .id;

    let instance = "i-0d1d1d1d1d1d1d1d1";
    let estate_text = format!(
        r#"
[appliance]
account = "{account}"
worker_deployment_role = "arn:aws:iam::{account}:role/WorkerDeploymentD{suffix}"

[repository]
bucket = "{bucket}"
prefix = "ec2"
region = "us-east-1"
role = "arn:aws:iam::{account}:role/RepositoryD{suffix}"

[[account]]
id = "{account}"
backup_role = "arn:aws:iam::{account}:role/BackupD{suffix}"
restore_role = "arn:aws:iam::{account}:role/RestoreD{suffix}"

[[instance]]
id = "{instance}"
account = "{account}"
region = "us-east-1"
volumes = [ {{ id = "{volume}", size_gib = 1 }} ]
"#
    );
    let estate = Estate::parse("moto.toml", &estate_text).unwrap();
    let state = tempfile::tempdir().unwrap();
    let engine = engine_on(&cloud, estate, &who, state.path());
    let report = engine
        .run_operation(&Operation::Restore {
            instance: instance.parse().unwrap(),
            from: RestoreSource::Backup,
            to_account: account.clone(),
            to_region: us.clone(),
            target_key: None,
            workers: Some(bulwark_plan::Placement::NoWorker),
            launch: Default::default(),
        })
        .unwrap();
    assert_eq!(report.points, vec![(volume.to_owned(), point.to_hex())]);
    // The instance, launched from the image of the written snapshot (moto gives it a root of
    // its own: it ignores an image's mappings).
    let Some(Target::Instance(_, restored)) = report
        .kept
        .iter()
        .map(|(_, t)| t)
        .find(|t| matches!(t, Target::Instance(..)))
    else {
        panic!("a restored instance: {:#?}", report.kept)
    };
    let described = cloud
        .describe_instances(&who, &us, std::slice::from_ref(restored))
        .unwrap();
    assert!(described[0].setup.boot.image.is_some(), "{:?}", described[0]);
    assert!(engine.recover().unwrap().is_empty(), "every journal is closed");
}

/// An engine on moto with short retry pauses, its state in `dir`.
fn engine_on(cloud: &Arc<AwsCloud>, estate: Estate, who: &Credentials, dir: &std::path::Path) -> Engine {
    Engine::new(
        Cloud::of(cloud.clone()),
        estate,
        who.clone(),
        Arc::new(FileStore::new(dir)),
        None,
    )
    .with_timing(
        std::time::Duration::from_millis(50),
        std::time::Duration::from_secs(5),
    )
}
