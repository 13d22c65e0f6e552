//! Verify, forget and prune on repositories made by real backups.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use bulwark_mover::{backup, restore, FileSource, FileTarget, Progress};
use bulwark_repo::{
    forget, forget_points, prune, verify, Id, Lock, LockKind, RepoError, Repository, Retention, Secret,
    BLOCK_SIZE,
};
use bulwark_storage::{Backend, FileKind, MemoryBackend};
use chrono::Utc;
use common::noise;

const BS: usize = BLOCK_SIZE as usize;

struct Fixture {
    dir: PathBuf,
    backend: Arc<MemoryBackend>,
    repo: Repository,
}

impl Fixture {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("bulwark-maint-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let backend = Arc::new(MemoryBackend::default());
        let repo = Repository::init(backend.clone(), &Secret::KeyFile([7; 32])).unwrap();
        Self { dir, backend, repo }
    }

    /// Backs up `data` as `volume`; returns the restore point.
    fn backup(&self, volume: &str, data: &[u8]) -> Id {
        let path = self.dir.join(format!("{volume}.img"));
        std::fs::write(&path, data).unwrap();
        backup(
            &self.repo,
            &FileSource::open(&path).unwrap(),
            volume,
            None,
            &Progress::default(),
            2,
        )
        .unwrap()
        .id
    }

    fn restored(&self, point: &Id) -> Vec<u8> {
        let size = self.repo.read_point(point).unwrap().size;
        let path = self.dir.join(format!("{}.restored", point.short()));
        let target = FileTarget::create(&path, size).unwrap();
        restore(&self.repo, point, &target, &Progress::default(), 2).unwrap();
        std::fs::read(&path).unwrap()
    }

    fn stored_bytes(&self) -> u64 {
        self.backend
            .list(FileKind::Pack)
            .unwrap()
            .iter()
            .map(|(_, n)| n)
            .sum()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn verify_is_clean_after_backups() {
    let f = Fixture::new("clean");
    f.backup("vol-a", &[noise(1, 3 * BS), vec![0; BS]].concat());
    f.backup("vol-b", &noise(2, 2 * BS));
    let report = verify(&f.repo, true, 2).unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.points, 2);
    assert_eq!(report.blocks_read, 5 + 2, "the blocks and the two block maps");
}

#[test]
fn verify_names_the_points_a_missing_pack_breaks_and_only_those() {
    let f = Fixture::new("missing");
    let a = f.backup("vol-a", &noise(1, 2 * BS));
    let b = f.backup("vol-b", &noise(2, 2 * BS));
    // Each backup wrote one pack; remove the one vol-b's blocks are in.
    let index = f.repo.load_index().unwrap();
    let mut b_blocks = Vec::new();
    f.repo
        .for_each_block(&f.repo.read_point(&b).unwrap(), &index, 10, |w| {
            b_blocks.extend_from_slice(w);
            Ok::<(), RepoError>(())
        })
        .unwrap();
    let b_block = b_blocks[0].1;
    let pack = index.packs[index.blocks[&b_block].pack as usize];
    f.backend.delete(FileKind::Pack, &pack.to_hex()).unwrap();
    let report = verify(&f.repo, false, 2).unwrap();
    assert!(!report.is_clean());
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains(&pack.to_hex()) && p.contains("missing")),
        "{report:?}"
    );
    assert_eq!(
        report.damaged_points.keys().collect::<Vec<_>>(),
        vec![&b],
        "only vol-b is damaged"
    );
    assert!(report.damaged_points[&b].starts_with("vol-b"));
    let _ = a;
}

#[test]
fn reading_the_data_finds_bit_rot_that_the_structure_check_cannot() {
    let f = Fixture::new("rot");
    let a = f.backup("vol-a", &noise(1, 3 * BS));
    // The pack of the data blocks: the largest (another holds the small block map chunk, and
    // pack names, random, sort either way).
    let pack = f
        .backend
        .list(FileKind::Pack)
        .unwrap()
        .into_iter()
        .map(|(name, _)| {
            let len = f.backend.get(FileKind::Pack, &name).unwrap().len();
            (len, name)
        })
        .max()
        .unwrap()
        .1;
    let mut bytes = f.backend.get(FileKind::Pack, &pack).unwrap();
    bytes[BS] ^= 0x80; // inside the second or third sealed block
    f.backend.overwrite(FileKind::Pack, &pack, bytes);
    assert!(
        verify(&f.repo, false, 2).unwrap().is_clean(),
        "the structure is intact"
    );
    let report = verify(&f.repo, true, 2).unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("failed authentication")),
        "{report:?}"
    );
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("does not match its name")),
        "{report:?}"
    );
    assert_eq!(report.damaged_points.keys().collect::<Vec<_>>(), vec![&a]);
}

#[test]
fn forget_then_prune_frees_space_and_keeps_what_kept_points_need() {
    let f = Fixture::new("prune");
    let shared = noise(10, 4 * BS);
    let old = f.backup("vol-a", &[shared.clone(), noise(11, 8 * BS)].concat());
    let new_data = [shared.clone(), noise(12, 8 * BS)].concat();
    let new = f.backup("vol-a", &new_data);
    let before = f.stored_bytes();

    let decisions = forget(
        &f.repo,
        &Retention {
            keep_last: 1,
            ..Retention::default()
        },
        Utc::now(),
        false,
    )
    .unwrap();
    assert_eq!(decisions.iter().filter(|(d, _)| !d.keep).count(), 1);
    assert_eq!(f.repo.point_ids().unwrap(), vec![new]);
    let _ = old;

    let plan = prune(&f.repo).unwrap();
    assert!(plan.bytes_freed > 0, "{plan:?}");
    assert!(f.stored_bytes() < before, "{} < {before}", f.stored_bytes());
    assert_eq!(f.restored(&new), new_data, "the kept point restores bit for bit");
    assert!(verify(&f.repo, true, 2).unwrap().is_clean());
    assert!(
        prune(&f.repo).unwrap().is_empty(),
        "a second prune has nothing to do"
    );
}

#[test]
fn forget_points_removes_exactly_the_points_named() {
    let f = Fixture::new("forget-points");
    let a1 = f.backup("vol-a", &noise(20, 2 * BS));
    let a2 = f.backup("vol-a", &noise(21, 2 * BS));
    let b1 = f.backup("vol-b", &noise(22, 2 * BS));
    // A point already gone counts as removed: the appliance may ask again after a crash.
    let retained = forget_points(&f.repo, &[a1.to_hex(), a1.to_hex(), b1.to_hex()]).unwrap();
    assert_eq!(retained, vec![None, None, None]);
    assert_eq!(f.repo.point_ids().unwrap(), vec![a2]);
    // Something that is not a restore point id is refused, and nothing is deleted.
    let refused = forget_points(&f.repo, &[a2.to_hex(), "../config".into()]);
    assert!(
        matches!(&refused, Err(RepoError::Corrupt(m)) if m.contains("not a restore point id")),
        "{refused:?}"
    );
    assert_eq!(f.repo.point_ids().unwrap(), vec![a2]);
    assert!(verify(&f.repo, true, 2).unwrap().is_clean());
}

#[test]
fn prune_rewrites_packs_that_are_mostly_unused() {
    let f = Fixture::new("repack");
    // One single-threaded backup puts the blocks of A and B (and its block map) in one pack; a
    // second volume holds only A (deduplicated: its new pack holds only its block map).
    // Forgetting the first leaves the first pack 3/4 unused.
    let (a_data, b_data) = (noise(20, 2 * BS), noise(21, 6 * BS));
    let path = f.dir.join("ab.img");
    std::fs::write(&path, [a_data.clone(), b_data].concat()).unwrap();
    let both = backup(
        &f.repo,
        &FileSource::open(&path).unwrap(),
        "vol-ab",
        None,
        &Progress::default(),
        1,
    )
    .unwrap()
    .id;
    let a = f.backup("vol-a", &a_data);
    assert_eq!(f.backend.list(FileKind::Pack).unwrap().len(), 2);
    f.repo.delete_point(&both).unwrap();
    let plan = prune(&f.repo).unwrap();
    assert_eq!((plan.delete.len(), plan.repack.len()), (0, 1), "{plan:?}");
    assert_eq!(
        f.backend.list(FileKind::Pack).unwrap().len(),
        2,
        "the old pack is replaced by a smaller one"
    );
    assert!(f.stored_bytes() < 3 * BS as u64);
    assert_eq!(f.restored(&a), a_data);
    assert!(verify(&f.repo, true, 1).unwrap().is_clean());
}

#[test]
fn prune_waits_for_no_one_and_never_runs_beside_a_backup() {
    let f = Fixture::new("locked");
    f.backup("vol-a", &noise(1, BS));
    let backend: Arc<dyn Backend> = f.backend.clone();
    let backup_lock = Lock::acquire(backend, LockKind::Shared).unwrap();
    assert!(matches!(prune(&f.repo), Err(RepoError::Locked(..))));
    drop(backup_lock);
    prune(&f.repo).unwrap();
}

#[test]
fn prune_removes_the_leftovers_of_an_interrupted_backup() {
    let f = Fixture::new("leftover");
    let a = f.backup("vol-a", &noise(1, 2 * BS));
    // An interrupted backup: a pack was uploaded, then the process died before its index.
    f.backend
        .put(FileKind::Pack, &"ab".repeat(32), b"half a backup")
        .unwrap();
    let report = verify(&f.repo, true, 1).unwrap();
    assert!(report.is_clean(), "a leftover pack is no damage: {report:?}");
    assert_eq!(report.unreferenced_packs, 1);
    let plan = prune(&f.repo).unwrap();
    assert_eq!(plan.unreferenced.len(), 1);
    assert_eq!(f.restored(&a), noise(1, 2 * BS));
}

#[test]
fn two_backups_at_once_do_not_disturb_each_other() {
    let f = Fixture::new("concurrent");
    let (da, db) = (
        [noise(1, 6 * BS), noise(3, 2 * BS)].concat(),
        [noise(2, 6 * BS), noise(3, 2 * BS)].concat(),
    );
    let (pa, pb) = std::thread::scope(|s| {
        let ha = s.spawn(|| f.backup("vol-a", &da));
        let hb = s.spawn(|| f.backup("vol-b", &db));
        (ha.join().unwrap(), hb.join().unwrap())
    });
    assert_eq!(f.restored(&pa), da);
    assert_eq!(f.restored(&pb), db);
    assert!(verify(&f.repo, true, 2).unwrap().is_clean());
}
