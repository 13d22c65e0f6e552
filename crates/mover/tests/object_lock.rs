//! Immutable backups: a repository with Object Lock, on the local backend's emulation (the
//! same logic runs on S3 Object Lock: crates/s3/tests/moto.rs). Every file a restore point
//! needs is retained at least as long as the point; forget and prune never delete what is
//! retained, and say until when; verify tells missing, damaged and retained-and-intact apart.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bulwark_mover::{backup, restore, FileTarget, Progress};
use bulwark_repo::{
    forget, forget_points, prune, verify, Id, InitOptions, ObjectLock, ObjectState, Reason, RepoError,
    Repository, Retention, Secret, BLOCK_SIZE,
};
use bulwark_storage::{Backend, BackendError, FileKind, LocalBackend, LockMode, MemoryBackend};
use chrono::{Duration, Utc};
use common::{noise, TempDir};

const BS: usize = BLOCK_SIZE as usize;

fn locked(mode: &str, days: u32) -> InitOptions {
    InitOptions {
        object_lock: Some(ObjectLock {
            mode: mode.into(),
            days,
        }),
    }
}

struct Fixture {
    dir: TempDir,
    backend: Arc<LocalBackend>,
    repo: Repository,
}

impl Fixture {
    fn new(name: &str, mode: &str) -> Self {
        let dir = TempDir::new(&format!("lock-{name}"));
        let backend = Arc::new(LocalBackend::new(dir.path("repo")));
        let repo =
            Repository::init_with(backend.clone(), &Secret::KeyFile([4; 32]), &locked(mode, 30)).unwrap();
        Self { dir, backend, repo }
    }

    fn backup(&self, volume: &str, data: &[u8]) -> Id {
        let path = self.dir.path(&format!("{volume}.img"));
        std::fs::write(&path, data).unwrap();
        let source = bulwark_mover::FileSource::open(&path).unwrap();
        backup(&self.repo, &source, volume, None, &Progress::default(), 2)
            .unwrap()
            .id
    }

    fn restored(&self, point: &Id) -> Vec<u8> {
        let size = self.repo.read_point(point).unwrap().size;
        let path = self.dir.path("restored.img");
        let target = FileTarget::create(&path, size).unwrap();
        restore(&self.repo, point, &target, &Progress::default(), 2).unwrap();
        std::fs::read(&path).unwrap()
    }

    fn file(&self, kind: FileKind, name: &str) -> PathBuf {
        self.dir.path("repo").join(kind.path(name))
    }

    /// Lets a file's retention lapse, as time would (the emulation's records removed).
    fn expire(&self, kind: FileKind, name: &str) {
        let file = self.file(kind, name);
        let records = file.with_file_name(format!(".{name}.retention"));
        match std::fs::remove_dir_all(records) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => panic!("{e}"),
            _ => {}
        }
    }

    fn names(&self, kind: FileKind) -> Vec<String> {
        let mut names: Vec<String> = self
            .backend
            .list(kind)
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        names.sort();
        names
    }
}

fn until(backend: &dyn Backend, kind: FileKind, name: &str) -> chrono::DateTime<Utc> {
    backend
        .retention(kind, name)
        .unwrap()
        .unwrap_or_else(|| panic!("{kind:?} {name} is not retained"))
        .until
}

#[test]
fn object_lock_needs_a_store_that_retains() {
    /// A store without retention (like one whose bucket has no Object Lock).
    #[derive(Debug, Default)]
    struct Plain(MemoryBackend);
    impl Backend for Plain {
        fn location(&self) -> String {
            "plain".into()
        }
        fn put(&self, k: FileKind, n: &str, d: &[u8]) -> Result<(), BackendError> {
            self.0.put(k, n, d)
        }
        fn get(&self, k: FileKind, n: &str) -> Result<Vec<u8>, BackendError> {
            self.0.get(k, n)
        }
        fn get_range(&self, k: FileKind, n: &str, o: u64, l: u64) -> Result<Vec<u8>, BackendError> {
            self.0.get_range(k, n, o, l)
        }
        fn list(&self, k: FileKind) -> Result<Vec<(String, u64)>, BackendError> {
            self.0.list(k)
        }
        fn delete(&self, k: FileKind, n: &str) -> Result<(), BackendError> {
            self.0.delete(k, n)
        }
    }
    let err = Repository::init_with(
        Arc::new(Plain::default()),
        &Secret::None,
        &locked("compliance", 7),
    )
    .unwrap_err();
    assert!(matches!(err, RepoError::NoObjectLock(_)), "{err}");
    assert!(err.to_string().contains("Object Lock enabled"), "{err}");
    let err = Repository::init_with(
        Arc::new(MemoryBackend::default()),
        &Secret::None,
        &locked("forever", 7),
    )
    .unwrap_err();
    assert!(err.to_string().contains("governance or compliance"), "{err}");
}

#[test]
fn every_file_a_point_needs_is_retained_as_long_as_the_point() {
    let f = Fixture::new("retained", "governance");
    let started = Utc::now();
    let a = f.backup("vol-a", &[noise(1, 3 * BS), vec![0; BS]].concat());
    let point_until = until(f.backend.as_ref(), FileKind::Point, &a.to_hex());
    let expected = started + Duration::days(30);
    assert!(
        (point_until - expected).num_seconds().abs() <= 5,
        "{point_until} is 30 days after the backup"
    );
    for kind in [FileKind::Pack, FileKind::Index, FileKind::Key, FileKind::Config] {
        for name in f.names(kind) {
            let u = until(f.backend.as_ref(), kind, &name);
            assert!(u >= point_until, "{kind:?} {name}: {u} < {point_until}");
        }
    }
    let report = verify(&f.repo, true, 2).unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert!(!report.objects.is_empty());
    for (path, state) in &report.objects {
        assert!(
            matches!(state, ObjectState::Intact { retained_until: Some(u) } if *u >= point_until),
            "{path}: {state:?}"
        );
    }
}

#[test]
fn a_later_point_extends_the_packs_it_reuses_before_it_is_written() {
    let f = Fixture::new("extend", "compliance");
    let data = noise(2, 4 * BS);
    let first = f.backup("vol-a", &data);
    let packs_before = f.names(FileKind::Pack);
    let old_until = until(f.backend.as_ref(), FileKind::Pack, &packs_before[0]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    // The same data: every block is deduplicated against the first backup's pack.
    let second = f.backup("vol-b", &data);
    let second_until = until(f.backend.as_ref(), FileKind::Point, &second.to_hex());
    assert!(second_until > old_until);
    for name in &packs_before {
        let u = until(f.backend.as_ref(), FileKind::Pack, name);
        assert!(
            u >= second_until,
            "reused pack {name} extended: {u} >= {second_until}"
        );
    }
    for name in f.names(FileKind::Index) {
        assert!(until(f.backend.as_ref(), FileKind::Index, &name) >= old_until);
    }
    assert!(verify(&f.repo, false, 2).unwrap().is_clean());
    // Nothing can shorten a compliance retention.
    let shorter = bulwark_storage::Retention {
        mode: LockMode::Compliance,
        until: old_until,
    };
    assert!(matches!(
        f.backend.set_retention(FileKind::Pack, &packs_before[0], shorter),
        Err(BackendError::ShorterRetention { .. })
    ));
    assert_eq!(f.restored(&first), data);
}

#[test]
fn forget_keeps_retained_points_and_says_until_when() {
    let f = Fixture::new("forget", "governance");
    let old = f.backup("vol-a", &noise(3, 2 * BS));
    let new = f.backup("vol-a", &noise(4, 2 * BS));
    let policy = Retention {
        keep_last: 1,
        ..Retention::default()
    };
    for dry_run in [true, false] {
        let decisions = forget(&f.repo, &policy, Utc::now(), dry_run).unwrap();
        let (d, _) = decisions.iter().find(|(d, _)| d.id == old.to_hex()).unwrap();
        assert!(d.keep, "a retained point is kept");
        match d.reasons.as_slice() {
            [Reason::Retained(u)] => assert!(*u > Utc::now() + Duration::days(29)),
            other => panic!("{other:?}"),
        }
        assert!(d.reasons[0].to_string().contains("deletable then"));
    }
    assert_eq!(f.repo.point_ids().unwrap().len(), 2, "nothing was deleted");
    // Once its retention lapses, forget deletes it.
    f.expire(FileKind::Point, &old.to_hex());
    forget(&f.repo, &policy, Utc::now(), false).unwrap();
    assert_eq!(f.repo.point_ids().unwrap(), vec![new]);
}

#[test]
fn forget_points_keeps_a_retained_point_and_says_until_when() {
    let f = Fixture::new("forget-points", "governance");
    let old = f.backup("vol-a", &noise(7, 2 * BS));
    let retained = forget_points(&f.repo, &[old.to_hex()]).unwrap();
    assert!(
        matches!(retained.as_slice(), [Some(u)] if *u > Utc::now() + Duration::days(29)),
        "{retained:?}"
    );
    assert_eq!(f.repo.point_ids().unwrap(), vec![old], "nothing was deleted");
}

#[test]
fn prune_never_deletes_what_is_retained_and_says_when_it_may() {
    let f = Fixture::new("prune", "governance");
    let a_data = noise(5, 2 * BS);
    let a = f.backup("vol-a", &a_data);
    let b = f.backup("vol-b", &noise(6, 3 * BS));
    let b_packs: Vec<String> = f.names(FileKind::Pack);
    // What only vol-b needs: its packs and the index file listing them.
    let index = f.repo.load_index().unwrap();
    let packs_of = |point: &Id| {
        f.repo
            .packs_of(&f.repo.read_point(point).unwrap(), &index)
            .unwrap()
    };
    let only_b: Vec<u32> = packs_of(&b).difference(&packs_of(&a)).copied().collect();
    assert!(!only_b.is_empty());
    let only_b_count = only_b.len();
    f.expire(FileKind::Point, &b.to_hex());
    f.repo.delete_point(&b).unwrap();
    // vol-b's pack is unused now, but retained: prune keeps it and says until when.
    let plan = prune(&f.repo).unwrap();
    assert!(plan.delete.is_empty() && plan.repack.is_empty(), "{plan:?}");
    assert!(!plan.retained.is_empty(), "{plan:?}");
    for (path, u) in &plan.retained {
        assert!(*u > Utc::now() + Duration::days(29), "{path} until {u}");
    }
    assert_eq!(f.names(FileKind::Pack), b_packs, "every pack is still there");
    // Its retention lapses (and that of the index file listing it): now prune deletes it.
    for p in only_b {
        f.expire(FileKind::Pack, &index.packs[p as usize].to_hex());
        let file = index.files[index.pack_files[p as usize] as usize];
        f.expire(FileKind::Index, &file.to_hex());
    }
    let plan = prune(&f.repo).unwrap();
    // vol-a's index file stays (retained, with vol-a): prune would have merged it.
    assert!(
        plan.retained.iter().all(|(path, _)| path.starts_with("index/")),
        "{plan:?}"
    );
    assert_eq!(plan.delete.len(), only_b_count, "{plan:?}");
    assert!(plan.bytes_freed > 0, "{plan:?}");
    assert!(f.names(FileKind::Pack).len() < b_packs.len());
    assert_eq!(f.restored(&a), a_data);
    let report = verify(&f.repo, true, 2).unwrap();
    assert!(report.is_clean(), "{report:?}");
}

#[test]
fn verify_tells_missing_damaged_and_retained_intact_apart() {
    let f = Fixture::new("verify", "governance");
    let a = f.backup("vol-a", &noise(7, 2 * BS));
    let b = f.backup("vol-b", &noise(8, 2 * BS));
    let index = f.repo.load_index().unwrap();
    let pack_of = |point: &Id| {
        let m = f.repo.read_point(point).unwrap();
        let packs = f.repo.packs_of(&m, &index).unwrap();
        index.packs[*packs.iter().next().unwrap() as usize].to_hex()
    };
    let (pa, pb) = (pack_of(&a), pack_of(&b));
    assert_ne!(pa, pb);
    // Someone with access to the disk (which the emulation cannot stop) damages one pack and
    // removes the other.
    let path = f.file(FileKind::Pack, &pa);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    std::fs::remove_file(f.file(FileKind::Pack, &pb)).unwrap();
    let report = verify(&f.repo, true, 2).unwrap();
    let state = |kind: FileKind, name: &str| report.objects.get(&kind.path(name)).cloned();
    assert!(
        matches!(state(FileKind::Pack, &pa), Some(ObjectState::Damaged(_))),
        "{report:?}"
    );
    assert_eq!(state(FileKind::Pack, &pb), Some(ObjectState::Missing));
    for id in [a, b] {
        assert!(matches!(
            state(FileKind::Point, &id.to_hex()),
            Some(ObjectState::Intact {
                retained_until: Some(_)
            })
        ));
    }
    assert_eq!(report.damaged_points.len(), 2);
}

#[test]
fn verify_finds_a_file_retained_shorter_than_a_point_that_needs_it() {
    let f = Fixture::new("short", "governance");
    f.backup("vol-a", &noise(9, 2 * BS));
    // A pack whose retention lapsed early (as one written by a bulwark without Object Lock).
    let pack = f.names(FileKind::Pack).remove(0);
    f.expire(FileKind::Pack, &pack);
    let report = verify(&f.repo, false, 2).unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains(&pack) && p.contains("not retained") && p.contains("could be deleted first")),
        "{report:?}"
    );
    let _: &Path = f.dir.0.as_path();
}
