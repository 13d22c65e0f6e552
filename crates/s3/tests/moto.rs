//! The S3 backend against a real S3 API: moto's server, which scripts/test installs and starts,
//! passing its address in `BULWARK_TEST_S3_ENDPOINT` with fake credentials and a region in the
//! usual AWS variables. Each test works in a bucket of its own.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Once;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_config::BehaviorVersion;
use bulwark_s3::{S3Backend, S3Options};
use bulwark_storage::{conformance, retention_conformance, Backend, BackendError, FileKind};

const ENDPOINT_VAR: &str = "BULWARK_TEST_S3_ENDPOINT";

/// A connection to moto for the test's own set-up (creating buckets, raw objects).
struct Moto {
    endpoint: String,
    client: aws_sdk_s3::Client,
    runtime: tokio::runtime::Runtime,
}

/// moto, or `None` (the test is skipped) outside CI when scripts/test did not start it.
fn moto() -> Option<Moto> {
    let endpoint = match std::env::var(ENDPOINT_VAR) {
        Ok(endpoint) if !endpoint.is_empty() => endpoint,
        _ if std::env::var_os("CI").is_some() => panic!(
            "moto was not started: {ENDPOINT_VAR} is unset; scripts/test installs and starts moto \
             and sets it, so run the tests through scripts/test"
        ),
        _ => {
            static SKIPPED: Once = Once::new();
            // Straight to stderr, past the test harness's capture, so the skip is seen.
            SKIPPED.call_once(|| {
                let _ = writeln!(
                    std::io::stderr(),
                    "S3 tests skipped: {ENDPOINT_VAR} is unset (run scripts/test, which starts moto)"
                );
            });
            return None;
        }
    };
    let runtime = bulwark_s3::io_runtime().unwrap();
    let config = runtime.block_on(
        aws_config::defaults(BehaviorVersion::latest())
            .http_client(aws_smithy_http_client::Builder::new().build_http())
            .endpoint_url(&endpoint)
            .region(aws_config::Region::from_static("us-east-1"))
            .load(),
    );
    let config = aws_sdk_s3::config::Builder::from(&config)
        .force_path_style(true)
        .build();
    Some(Moto {
        endpoint,
        client: aws_sdk_s3::Client::from_conf(config),
        runtime,
    })
}

impl Moto {
    /// A new bucket with a name no other test (or earlier run) uses.
    fn bucket(&self, tag: &str) -> String {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!(
            "bulwark-{tag}-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        self.runtime
            .block_on(self.client.create_bucket().bucket(&name).send())
            .unwrap_or_else(|e| panic!("create bucket {name}: {e:?}"));
        name
    }

    /// A new bucket with Object Lock enabled (which turns versioning on).
    fn locked_bucket(&self, tag: &str) -> String {
        let name = format!("{}-lock", self.bucket(tag));
        self.runtime
            .block_on(
                self.client
                    .create_bucket()
                    .bucket(&name)
                    .object_lock_enabled_for_bucket(true)
                    .send(),
            )
            .unwrap_or_else(|e| panic!("create bucket {name}: {e:?}"));
        name
    }

    /// The versions and delete markers of `key`.
    fn versions(&self, bucket: &str, key: &str) -> usize {
        let out = self
            .runtime
            .block_on(
                self.client
                    .list_object_versions()
                    .bucket(bucket)
                    .prefix(key)
                    .send(),
            )
            .unwrap();
        out.versions().len() + out.delete_markers().len()
    }

    /// A backend on `s3://bucket/prefix` through moto. The region is left to the default
    /// chain (scripts/test sets AWS_REGION; without one, an endpoint means us-east-1).
    fn backend(&self, bucket: &str, prefix: &str) -> S3Backend {
        let options = S3Options {
            endpoint_url: Some(self.endpoint.clone()),
            region: None,
            credentials: None,
        };
        S3Backend::open(
            &format!("s3://{bucket}/{prefix}"),
            &options,
            self.runtime.handle().clone(),
        )
        .unwrap()
    }

    fn put_raw(&self, bucket: &str, key: &str, data: &[u8]) {
        let put = self
            .client
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(data.to_vec().into())
            .send();
        self.runtime.block_on(put).unwrap();
    }
}

#[test]
fn conforms_at_the_bucket_root() {
    let Some(moto) = moto() else { return };
    let bucket = moto.bucket("root");
    let backend = moto.backend(&bucket, "");
    assert_eq!(backend.location(), format!("s3://{bucket}"));
    conformance(&backend);
}

#[test]
fn conforms_under_a_prefix_and_sees_nothing_outside_it() {
    let Some(moto) = moto() else { return };
    let bucket = moto.bucket("prefix");
    // Objects beside the repository: at the root, under a sibling prefix that starts with the
    // same characters, and a config look-alike.
    moto.put_raw(&bucket, "data/ab/ab0123", b"outside");
    moto.put_raw(&bucket, "repo-other/data/ab/ab9999", b"outside");
    moto.put_raw(&bucket, "repo-other/config", b"outside");
    moto.put_raw(&bucket, "team/repo/config.old", b"outside");
    let backend = moto.backend(&bucket, "/team/repo/");
    assert_eq!(backend.location(), format!("s3://{bucket}/team/repo"));
    conformance(&backend);
    backend.put(FileKind::Pack, "cd01", b"x").unwrap();
    let keys = moto.runtime.block_on(async {
        let out = moto
            .client
            .list_objects_v2()
            .bucket(&bucket)
            .prefix("team/repo/")
            .send()
            .await;
        let out = out.unwrap();
        let mut keys: Vec<String> = out
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_owned))
            .collect();
        keys.sort();
        keys
    });
    assert_eq!(
        keys,
        [
            "team/repo/config",
            "team/repo/config.old",
            "team/repo/data/cd/cd01",
            "team/repo/index/i1"
        ]
    );
}

#[test]
fn missing_files_are_not_found() {
    let Some(moto) = moto() else { return };
    let bucket = moto.bucket("missing");
    let backend = moto.backend(&bucket, "r");
    for result in [
        backend.get(FileKind::Pack, "ab0123"),
        backend.get_range(FileKind::Pack, "ab0123", 0, 10),
        backend.get_range(FileKind::Pack, "ab0123", 0, 0),
        backend.get(FileKind::Config, "config"),
    ] {
        match result {
            Err(BackendError::NotFound(path)) => {
                assert!(path.starts_with(&format!("s3://{bucket}/r/")), "{path}");
            }
            other => panic!("expected NotFound, got {other:?}"),
        }
    }
    match backend.get(FileKind::Pack, "ab0123") {
        Err(e) => assert_eq!(
            e.to_string(),
            format!("s3://{bucket}/r/data/ab/ab0123 does not exist")
        ),
        Ok(_) => panic!("found"),
    }
    backend.delete(FileKind::Point, "nothing").unwrap();
    for kind in FileKind::ALL {
        assert_eq!(backend.list(kind).unwrap(), vec![], "{kind:?}");
    }
}

#[test]
fn a_range_past_the_end_is_an_error() {
    let Some(moto) = moto() else { return };
    let bucket = moto.bucket("range");
    let backend = moto.backend(&bucket, "");
    backend.put(FileKind::Pack, "ab01", b"0123456789").unwrap();
    let range = |offset, length| backend.get_range(FileKind::Pack, "ab01", offset, length);
    assert_eq!(range(0, 10).unwrap(), b"0123456789");
    assert_eq!(range(3, 4).unwrap(), b"3456");
    assert_eq!(range(9, 1).unwrap(), b"9");
    assert_eq!(range(10, 0).unwrap(), b"");
    for (offset, length) in [
        (5, 6),
        (0, 11),
        (10, 1),
        (20, 5),
        (11, 0),
        (u64::MAX, 2),
        (1, u64::MAX),
    ] {
        match range(offset, length) {
            Err(BackendError::Io { path, error: source }) => {
                assert_eq!(
                    source.kind(),
                    std::io::ErrorKind::UnexpectedEof,
                    "{offset}+{length}"
                );
                assert_eq!(path, format!("s3://{bucket}/data/ab/ab01"));
            }
            other => panic!("{offset}+{length}: expected a short-file error, got {other:?}"),
        }
    }
}

#[test]
fn lists_more_than_a_thousand_packs_across_folders() {
    let Some(moto) = moto() else { return };
    let bucket = moto.bucket("list");
    let backend = moto.backend(&bucket, "big");
    // 1100 packs in 6 folders (data/00 .. data/05): more than one ListObjectsV2 page (1000).
    let mut expected: Vec<(String, u64)> = (0..1100u64)
        .map(|i| (format!("{:02x}{i:030x}", i % 6), i % 10 + 1))
        .collect();
    std::thread::scope(|scope| {
        for chunk in expected.chunks(expected.len().div_ceil(8)) {
            let backend = &backend;
            scope.spawn(move || {
                for (name, size) in chunk {
                    backend
                        .put(FileKind::Pack, name, &vec![7; *size as usize])
                        .unwrap();
                }
            });
        }
    });
    backend.put(FileKind::Index, "i1", b"not a pack").unwrap();
    let mut listed = backend.list(FileKind::Pack).unwrap();
    listed.sort();
    expected.sort();
    assert_eq!(listed.len(), 1100);
    assert_eq!(listed, expected);
    assert_eq!(
        backend.list(FileKind::Index).unwrap(),
        vec![("i1".to_owned(), 10)]
    );
}

#[test]
fn a_missing_bucket_is_a_clear_permanent_error() {
    let Some(moto) = moto() else { return };
    let bucket = format!("bulwark-never-created-{}", std::process::id());
    let backend = moto.backend(&bucket, "r");
    let results = [
        backend.get(FileKind::Config, "config").map(drop),
        backend.put(FileKind::Config, "config", b"c"),
        backend.list(FileKind::Pack).map(drop),
    ];
    for result in results {
        match result {
            Err(BackendError::Remote {
                retryable: false,
                message,
                ..
            }) => assert!(
                message.contains(&format!(
                    "bucket {bucket} does not exist or is not in region us-east-1"
                )),
                "{message}"
            ),
            other => panic!("expected a non-retryable remote error, got {other:?}"),
        }
    }
}

#[test]
fn serves_eight_threads_at_once() {
    let Some(moto) = moto() else { return };
    let bucket = moto.bucket("threads");
    let backend = moto.backend(&bucket, "t");
    let content = |t: usize, i: usize| -> Vec<u8> {
        let len = (t * 7919 + i * 104_729) % 300_000 + 1;
        (0..len).map(|j| (j * 31 + t * 7 + i) as u8).collect()
    };
    std::thread::scope(|scope| {
        for t in 0..8 {
            let backend = &backend;
            scope.spawn(move || {
                for i in 0..12 {
                    let name = format!("{t:02x}{i:04x}");
                    let data = content(t, i);
                    backend.put(FileKind::Pack, &name, &data).unwrap();
                    assert_eq!(backend.get(FileKind::Pack, &name).unwrap(), data);
                    let (offset, length) = (data.len() / 3, data.len() / 2);
                    let range = backend.get_range(FileKind::Pack, &name, offset as u64, length as u64);
                    assert_eq!(range.unwrap(), &data[offset..offset + length]);
                }
            });
        }
    });
    assert_eq!(backend.list(FileKind::Pack).unwrap().len(), 96);
}

#[test]
fn a_put_never_replaces_an_object() {
    let Some(moto) = moto() else { return };
    let bucket = moto.bucket("ifnonematch");
    let backend = moto.backend(&bucket, "r");
    assert!(backend.capabilities().atomic_create);
    backend.put(FileKind::Point, "p1", b"first").unwrap();
    match backend.put(FileKind::Point, "p1", b"second") {
        Err(BackendError::AlreadyExists(path)) => assert_eq!(path, format!("s3://{bucket}/r/points/p1")),
        other => panic!("expected AlreadyExists (412 to If-None-Match: *), got {other:?}"),
    }
    assert_eq!(backend.get(FileKind::Point, "p1").unwrap(), b"first");
}

#[test]
fn without_conditional_writes_a_head_refuses_an_existing_object() {
    let Some(moto) = moto() else { return };
    let bucket = moto.bucket("headfirst");
    let backend = moto.backend(&bucket, "").without_conditional_writes();
    assert!(
        !backend.capabilities().atomic_create,
        "racing writers may both succeed"
    );
    conformance(&backend);
    backend.put(FileKind::Index, "i2", b"first").unwrap();
    assert!(matches!(
        backend.put(FileKind::Index, "i2", b"second"),
        Err(BackendError::AlreadyExists(_))
    ));
    assert_eq!(backend.get(FileKind::Index, "i2").unwrap(), b"first");
}

#[test]
fn object_lock_retains_files_and_deletes_versions_for_good() {
    let Some(moto) = moto() else { return };
    let bucket = moto.locked_bucket("objlock");
    let backend = moto.backend(&bucket, "r");
    assert!(backend.capabilities().retention);
    retention_conformance(&backend);
    // The unretained file went for good: no version, no delete marker left.
    assert_eq!(moto.versions(&bucket, "r/points/r2"), 0);
    // The retained one is still there, as its only version.
    assert_eq!(moto.versions(&bucket, "r/points/r1"), 1);
    // Lock files come and go in such a bucket too, without leaving versions behind.
    backend.put(FileKind::Lock, "l1", b"{}").unwrap();
    backend.delete(FileKind::Lock, "l1").unwrap();
    assert_eq!(moto.versions(&bucket, "r/locks/l1"), 0);
}

#[test]
fn a_bucket_without_object_lock_cannot_retain() {
    let Some(moto) = moto() else { return };
    let bucket = moto.bucket("nolock");
    let backend = moto.backend(&bucket, "");
    assert!(!backend.capabilities().retention);
}

#[test]
fn an_object_lock_repository_retains_what_its_points_need() {
    use bulwark_repo::{
        forget, prune, verify, InitOptions, ObjectLock, ObjectState, Reason, Repository, Retention, Secret,
    };
    use std::sync::Arc;

    let Some(moto) = moto() else { return };
    let bucket = moto.locked_bucket("repo");
    let backend = Arc::new(moto.backend(&bucket, "repo"));
    let options = InitOptions {
        object_lock: Some(ObjectLock {
            mode: "governance".into(),
            days: 1,
        }),
    };
    let repo = Repository::init_with(backend.clone(), &Secret::KeyFile([6; 32]), &options).unwrap();
    let dir = std::env::temp_dir().join(format!("bulwark-s3-lock-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut points = Vec::new();
    for seed in 1..=2u8 {
        let path = dir.join(format!("vol{seed}.img"));
        std::fs::write(&path, vec![seed; 3 << 19]).unwrap();
        let source = bulwark_mover::FileSource::open(&path).unwrap();
        let out = bulwark_mover::backup(
            &repo,
            &source,
            "vol",
            None,
            &bulwark_mover::Progress::default(),
            2,
        )
        .unwrap();
        points.push(out.id);
    }
    std::fs::remove_dir_all(&dir).unwrap();

    // S3 itself holds the retention: every object of the repository but the locks.
    let tomorrow = chrono::Utc::now() + chrono::Duration::hours(23);
    let objects = moto
        .runtime
        .block_on(
            moto.client
                .list_objects_v2()
                .bucket(&bucket)
                .prefix("repo/")
                .send(),
        )
        .unwrap();
    let keys: Vec<String> = objects
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect();
    assert!(keys.len() >= 6, "{keys:?}");
    for key in &keys {
        let head = moto
            .runtime
            .block_on(moto.client.head_object().bucket(&bucket).key(key).send())
            .unwrap();
        assert_eq!(
            head.object_lock_mode().map(|m| m.as_str()),
            Some("GOVERNANCE"),
            "{key}"
        );
        let until = head.object_lock_retain_until_date().unwrap().secs();
        assert!(until >= tomorrow.timestamp(), "{key} retained until {until}");
    }
    // Forget keeps the older point, retained; prune deletes nothing.
    let policy = Retention {
        keep_last: 1,
        ..Retention::default()
    };
    let decisions = forget(&repo, &policy, chrono::Utc::now(), false).unwrap();
    assert!(decisions.iter().all(|(d, _)| d.keep), "{decisions:?}");
    assert!(decisions
        .iter()
        .any(|(d, _)| matches!(d.reasons.as_slice(), [Reason::Retained(_)])));
    assert_eq!(repo.point_ids().unwrap().len(), 2);
    let plan = prune(&repo).unwrap();
    assert!(plan.delete.is_empty() && plan.repack.is_empty(), "{plan:?}");
    // Whoever deletes a version behind bulwark's back is refused by S3.
    let key = format!("repo/points/{}", points[0]);
    let head = moto
        .runtime
        .block_on(moto.client.head_object().bucket(&bucket).key(&key).send())
        .unwrap();
    let refused = moto.runtime.block_on(
        moto.client
            .delete_object()
            .bucket(&bucket)
            .key(&key)
            .version_id(head.version_id().unwrap())
            .send(),
    );
    assert!(refused.is_err(), "a retained version cannot be deleted");
    // And bulwark's own delete is not even tried.
    assert!(matches!(
        backend.delete(FileKind::Point, &points[0].to_hex()),
        Err(BackendError::Locked { .. })
    ));
    let report = verify(&repo, true, 2).unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert!(report.objects.values().all(|s| matches!(
        s,
        ObjectState::Intact {
            retained_until: Some(_)
        }
    )));
}
