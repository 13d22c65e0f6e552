//! A backup commits only what it can vouch for, and a restore writes only what belongs to its
//! target: the repository's failures, races and foreign files stop an operation (or are
//! skipped with a warning), never turn into a wrong restore point or a wrong disk.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bulwark_mover::{
    backup, backup_volumes, restore, Base, BlockSource, FileTarget, MoverError, Progress, Volume,
};
use bulwark_repo::{
    forget, prune, verify, Id, LockTiming, RepoError, Repository, Retention, Secret, BLOCK_SIZE,
};
use bulwark_storage::testing::{Faulty, Op};
use bulwark_storage::{Backend, BackendError, FileKind, MemoryBackend};
use common::{noise, TempDir};

const BS: usize = BLOCK_SIZE as usize;

/// A volume in memory, optionally slow, optionally doing something when its last block is
/// read (while the backup is under way).
struct Mem {
    data: Vec<u8>,
    delay: Duration,
    on_last: Option<Box<dyn Fn() + Sync>>,
}

impl Mem {
    fn new(data: Vec<u8>) -> Self {
        Self {
            data,
            delay: Duration::ZERO,
            on_last: None,
        }
    }
}

impl BlockSource for Mem {
    fn size(&self) -> u64 {
        self.data.len() as u64
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), MoverError> {
        std::thread::sleep(self.delay);
        let start = offset as usize;
        buf.copy_from_slice(&self.data[start..start + buf.len()]);
        if start + buf.len() == self.data.len() {
            if let Some(f) = &self.on_last {
                f();
            }
        }
        Ok(())
    }
    fn describe(&self) -> (String, String) {
        ("file".into(), "memory".into())
    }
}

fn fast_locks() -> LockTiming {
    LockTiming {
        refresh_every: Duration::from_millis(30),
        overlap: Duration::from_millis(5),
        recheck_after: Duration::from_millis(5),
        retry_after: Duration::from_millis(10),
        ..LockTiming::default()
    }
}

fn restored(repo: &Repository, point: &Id) -> Vec<u8> {
    let dir = TempDir::new(&format!("restored-{}", point.short()));
    let size = repo.read_point(point).unwrap().size;
    let path = dir.path("out");
    let target = FileTarget::create(&path, size).unwrap();
    restore(repo, point, &target, &Progress::default(), 2).unwrap();
    std::fs::read(&path).unwrap()
}

#[test]
fn the_parent_a_caller_names_is_the_parent_used() {
    let repo = Repository::init(Arc::new(MemoryBackend::default()), &Secret::KeyFile([1; 32])).unwrap();
    let a = noise(1, 4 * BS);
    let p1 = backup(&repo, &Mem::new(a.clone()), "vol", None, &Progress::default(), 2)
        .unwrap()
        .id;
    // The caller checked that p1 is the point its changed blocks apply to; meanwhile another
    // backup of the volume commits a newer point.
    backup(
        &repo,
        &Mem::new(noise(2, 4 * BS)),
        "vol",
        None,
        &Progress::default(),
        2,
    )
    .unwrap();
    let mut changed = a.clone();
    changed[2 * BS..3 * BS].copy_from_slice(&noise(3, BS));
    let outcome = backup_volumes(
        &repo,
        &[Volume {
            source: &Mem::new(changed.clone()),
            volume_id: "vol",
            base: Base::Changed {
                parent: p1,
                blocks: &[2],
            },
            instance: None,
            index_files: false,
        }],
        &Progress::default(),
        2,
    )
    .unwrap()
    .remove(0);
    assert_eq!(outcome.manifest.parent, Some(p1));
    assert_eq!(outcome.manifest.stats.blocks_read, 1);
    assert_eq!(restored(&repo, &outcome.id), changed, "p1 with block 2 changed");
    // A parent of another volume is refused.
    let err = backup_volumes(
        &repo,
        &[Volume {
            source: &Mem::new(changed),
            volume_id: "other",
            base: Base::Changed {
                parent: p1,
                blocks: &[2],
            },
            instance: None,
            index_files: false,
        }],
        &Progress::default(),
        2,
    )
    .unwrap_err();
    assert!(err.to_string().contains("is of volume vol, not other"), "{err}");
}

#[test]
fn a_backup_whose_lock_refresh_failed_commits_nothing() {
    let faulty = Arc::new(Faulty::new(Arc::new(MemoryBackend::default())));
    let backend: Arc<dyn Backend> = faulty.clone();
    let repo = Repository::init(backend, &Secret::KeyFile([1; 32]))
        .unwrap()
        .with_lock_timing(fast_locks());
    // The backup's own lock is written; every refresh after it fails.
    let locks_written = std::sync::atomic::AtomicUsize::new(0);
    faulty.fail_when(move |op| match op {
        Op::Put(FileKind::Lock, _) if locks_written.fetch_add(1, Ordering::Relaxed) >= 1 => {
            Some(BackendError::Remote {
                operation: "PUT",
                path: "locks/x".into(),
                message: "ServiceUnavailable (still failing after retries)".into(),
                retryable: true,
            })
        }
        _ => None,
    });
    let mut source = Mem::new(noise(1, 6 * BS));
    source.delay = Duration::from_millis(40);
    let err = backup(&repo, &source, "vol", None, &Progress::default(), 1).unwrap_err();
    assert!(matches!(err, MoverError::Repo(RepoError::LockLost(_))), "{err}");
    let inner = faulty.inner();
    assert!(
        inner.list(FileKind::Point).unwrap().is_empty(),
        "no restore point"
    );
    assert!(inner.list(FileKind::Index).unwrap().is_empty(), "no index either");
}

#[test]
fn a_backup_whose_lock_was_removed_commits_nothing() {
    let backend = Arc::new(MemoryBackend::default());
    let repo = Repository::init(backend.clone(), &Secret::KeyFile([1; 32])).unwrap();
    let mut source = Mem::new(noise(1, 3 * BS));
    let removed = Arc::new(AtomicBool::new(false));
    let (b, r) = (backend.clone(), removed.clone());
    // Someone judges the lock stale and removes it while the backup reads.
    source.on_last = Some(Box::new(move || {
        for (name, _) in b.list(FileKind::Lock).unwrap() {
            b.delete(FileKind::Lock, &name).unwrap();
        }
        r.store(true, Ordering::Relaxed);
    }));
    let err = backup(&repo, &source, "vol", None, &Progress::default(), 1).unwrap_err();
    assert!(removed.load(Ordering::Relaxed));
    assert!(
        err.to_string().contains("was removed by another process"),
        "{err}"
    );
    assert!(backend.list(FileKind::Point).unwrap().is_empty());
}

#[test]
fn a_restore_never_writes_past_the_end_of_its_volume() {
    let repo = Repository::init(Arc::new(MemoryBackend::default()), &Secret::KeyFile([1; 32])).unwrap();
    let data = noise(1, 2 * BS);
    let outcome = backup(&repo, &Mem::new(data), "vol", None, &Progress::default(), 1).unwrap();
    // A restore point (as anyone with the key could write) claiming a volume that ends 100
    // bytes into its second block, whose stored block is whole.
    let mut lying = outcome.manifest.clone();
    lying.size = BS as u64 + 100;
    let point = repo.write_point(&lying).unwrap();
    let dir = TempDir::new("past-end");
    let path = dir.path("out");
    let target = FileTarget::create(&path, lying.size).unwrap();
    let err = restore(&repo, &point, &target, &Progress::default(), 2).unwrap_err();
    assert!(
        err.to_string()
            .contains("holds 524288 bytes, block 1 of the volume has 100"),
        "{err}"
    );
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        lying.size,
        "nothing written past the end"
    );
}

#[test]
fn foreign_files_never_stop_a_backup_a_restore_a_verify_or_a_prune() {
    let backend = Arc::new(MemoryBackend::default());
    let repo = Repository::init(backend.clone(), &Secret::KeyFile([1; 32])).unwrap();
    let first = backup(
        &repo,
        &Mem::new(noise(1, 2 * BS)),
        "vol",
        None,
        &Progress::default(),
        2,
    )
    .unwrap();
    for (kind, name) in [
        (FileKind::Pack, "ab.tmp"),
        (FileKind::Pack, "README"),
        (FileKind::Index, ".upload.tmp"),
        (FileKind::Point, "thumbs.db"),
        (FileKind::Lock, "stale.txt"),
    ] {
        backend.put(kind, name, b"another tool's").unwrap();
    }
    let data = noise(2, 3 * BS);
    let second = backup(
        &repo,
        &Mem::new(data.clone()),
        "vol",
        None,
        &Progress::default(),
        2,
    )
    .unwrap();
    assert!(
        second.warnings.iter().any(|w| w.contains("index/.upload.tmp")),
        "{:?}",
        second.warnings
    );
    assert_eq!(restored(&repo, &second.id), data);
    let report = verify(&repo, true, 2).unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert!(
        report.warnings.iter().any(|w| w.contains("data/RE/README")),
        "{:?}",
        report.warnings
    );
    forget(
        &repo,
        &Retention {
            keep_last: 1,
            ..Retention::default()
        },
        chrono::Utc::now(),
        false,
    )
    .unwrap();
    let plan = prune(&repo).unwrap();
    assert!(plan.bytes_freed > 0);
    assert!(!plan.warnings.is_empty());
    assert_eq!(
        backend.get(FileKind::Pack, "README").unwrap(),
        b"another tool's",
        "prune leaves what is not the repository's"
    );
    assert_eq!(restored(&repo, &second.id), data);
    let _ = first;
}
