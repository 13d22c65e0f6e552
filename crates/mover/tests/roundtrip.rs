//! Backups and restores through real files and a repository: every restore must be identical
//! to its source, bit for bit.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::sync::Arc;

use bulwark_mover::{backup, restore, FileSource, FileTarget, MoverError, Progress};
use bulwark_repo::{RepoError, Repository, Secret, BLOCK_SIZE};
use bulwark_storage::{Backend, FileKind, LocalBackend, MemoryBackend};
use common::{noise, TempDir};

const BS: usize = BLOCK_SIZE as usize;

/// A volume image: random blocks, zero blocks, repeated blocks, text-like blocks, and a short
/// last block.
fn image() -> Vec<u8> {
    let mut v = Vec::new();
    v.extend(noise(1, BS)); // 0 random
    v.extend(vec![0u8; 2 * BS]); // 1-2 zeros
    v.extend(noise(1, BS)); // 3 = block 0
    v.extend(b"log line 42: all is well\n".iter().cycle().take(BS)); // 4 compressible
    v.extend(noise(2, BS)); // 5 random
    v.extend(noise(3, BS / 3)); // 6 short
    v
}

fn write(path: &Path, data: &[u8]) {
    std::fs::write(path, data).unwrap();
}

fn repo(backend: Arc<dyn Backend>) -> Repository {
    Repository::init(backend, &Secret::Passphrase("test".into())).unwrap()
}

fn restore_to(
    repo: &Repository,
    id: &bulwark_repo::Id,
    path: &Path,
    size: u64,
) -> bulwark_mover::RestoreOutcome {
    let target = FileTarget::create(path, size).unwrap();
    restore(repo, id, &target, &Progress::default(), 3).unwrap()
}

#[test]
fn a_restore_is_identical_to_its_source() {
    let dir = TempDir::new("identical");
    let data = image();
    write(&dir.path("vol.img"), &data);
    let repo = repo(Arc::new(LocalBackend::new(dir.path("repo"))));
    let progress = Progress::default();
    let out = backup(
        &repo,
        &FileSource::open(&dir.path("vol.img")).unwrap(),
        "vol-1",
        None,
        &progress,
        3,
    )
    .unwrap();
    let stats = &out.manifest.stats;
    assert_eq!(stats.blocks_read, 7);
    assert_eq!(stats.blocks_zero, 2, "zero blocks are never stored");
    assert_eq!(stats.blocks_new, 4, "block 3 repeats block 0 and is stored once");
    assert_eq!(progress.snapshot(), (data.len() as u64, data.len() as u64));

    let restored = restore_to(&repo, &out.id, &dir.path("restored.img"), data.len() as u64);
    assert_eq!(std::fs::read(dir.path("restored.img")).unwrap(), data);
    assert_eq!(restored.blocks_written, 5);
    assert_eq!(restored.blocks_zero, 2);

    // Reopened from disk, with the passphrase, it reads the same.
    let reopened = Repository::open(
        Arc::new(LocalBackend::new(dir.path("repo"))),
        &Secret::Passphrase("test".into()),
    )
    .unwrap();
    restore_to(&reopened, &out.id, &dir.path("again.img"), data.len() as u64);
    assert_eq!(std::fs::read(dir.path("again.img")).unwrap(), data);
}

#[test]
fn identical_volumes_are_stored_once() {
    let dir = TempDir::new("dedup");
    write(&dir.path("a.img"), &image());
    let repo = repo(Arc::new(MemoryBackend::default()));
    let a = backup(
        &repo,
        &FileSource::open(&dir.path("a.img")).unwrap(),
        "vol-a",
        None,
        &Progress::default(),
        2,
    )
    .unwrap();
    let b = backup(
        &repo,
        &FileSource::open(&dir.path("a.img")).unwrap(),
        "vol-b",
        None,
        &Progress::default(),
        2,
    )
    .unwrap();
    assert_eq!(a.manifest.stats.blocks_new, 4);
    assert_eq!(
        b.manifest.stats.blocks_new, 0,
        "a second volume with the same data adds no block"
    );
    assert_eq!(b.manifest.stats.bytes_stored, 0);
    assert_eq!(a.manifest.blocks, b.manifest.blocks);
}

#[test]
fn a_changed_block_list_reads_only_those_blocks_and_the_result_stands_alone() {
    let dir = TempDir::new("incremental");
    let mut data = image();
    write(&dir.path("vol.img"), &data);
    let repo = repo(Arc::new(MemoryBackend::default()));
    let full = backup(
        &repo,
        &FileSource::open(&dir.path("vol.img")).unwrap(),
        "vol-1",
        None,
        &Progress::default(),
        2,
    )
    .unwrap();

    // Change block 1 (was zeros) and block 5; block 4 changes on disk too but is not listed,
    // to prove that unlisted blocks are taken from the previous point, not read.
    data[BS..2 * BS].copy_from_slice(&noise(9, BS));
    data[5 * BS..6 * BS].copy_from_slice(&vec![0u8; BS]);
    let mut on_disk = data.clone();
    on_disk[4 * BS] ^= 0xff;
    write(&dir.path("vol.img"), &on_disk);
    let progress = Progress::default();
    let inc = backup(
        &repo,
        &FileSource::open(&dir.path("vol.img")).unwrap(),
        "vol-1",
        Some(&[1, 5]),
        &progress,
        2,
    )
    .unwrap();
    assert_eq!(inc.manifest.stats.blocks_read, 2);
    assert_eq!(progress.snapshot().0, 2 * BS as u64);
    assert_eq!(inc.manifest.parent, Some(full.id));

    restore_to(&repo, &inc.id, &dir.path("inc.img"), data.len() as u64);
    assert_eq!(
        std::fs::read(dir.path("inc.img")).unwrap(),
        data,
        "the incremental point restores on its own"
    );
    restore_to(&repo, &full.id, &dir.path("full.img"), data.len() as u64);
    assert_eq!(
        std::fs::read(dir.path("full.img")).unwrap(),
        image(),
        "the earlier point is untouched"
    );
}

#[test]
fn changed_blocks_need_a_previous_point_of_the_same_size() {
    let dir = TempDir::new("incremental-errors");
    write(&dir.path("vol.img"), &image());
    let repo = repo(Arc::new(MemoryBackend::default()));
    let src = FileSource::open(&dir.path("vol.img")).unwrap();
    let err = backup(&repo, &src, "vol-1", Some(&[0]), &Progress::default(), 2).unwrap_err();
    assert!(
        matches!(&err, MoverError::ChangedBlocks(m) if m.contains("full backup first")),
        "{err}"
    );
    backup(&repo, &src, "vol-1", None, &Progress::default(), 2).unwrap();
    let err = backup(&repo, &src, "vol-1", Some(&[99]), &Progress::default(), 2).unwrap_err();
    assert!(err.to_string().contains("past the end"), "{err}");
    write(&dir.path("vol.img"), &[image(), vec![1; BS]].concat());
    let err = backup(
        &repo,
        &FileSource::open(&dir.path("vol.img")).unwrap(),
        "vol-1",
        Some(&[0]),
        &Progress::default(),
        2,
    )
    .unwrap_err();
    assert!(err.to_string().contains("changed size"), "{err}");
}

#[test]
fn a_damaged_block_is_never_written_and_is_named() {
    let dir = TempDir::new("damaged");
    write(&dir.path("vol.img"), &image());
    let backend = Arc::new(MemoryBackend::default());
    let repo = repo(backend.clone());
    let out = backup(
        &repo,
        &FileSource::open(&dir.path("vol.img")).unwrap(),
        "vol-1",
        None,
        &Progress::default(),
        1,
    )
    .unwrap();
    let (pack, _) = backend.list(FileKind::Pack).unwrap().remove(0);
    let mut bytes = backend.get(FileKind::Pack, &pack).unwrap();
    bytes[100] ^= 0x01; // inside the first sealed block
    backend.overwrite(FileKind::Pack, &pack, bytes);
    let target = FileTarget::create(&dir.path("out.img"), image().len() as u64).unwrap();
    let err = restore(&repo, &out.id, &target, &Progress::default(), 1).unwrap_err();
    match err {
        MoverError::BadBlock {
            index,
            block,
            pack: p,
            ..
        } => {
            assert_eq!(index, 0, "block 0 (and 3, its copy) is the first in the pack");
            assert_eq!(p, pack);
            assert_eq!(block.len(), 64);
        }
        other => panic!("expected BadBlock, got {other}"),
    }
    let written = std::fs::read(dir.path("out.img")).unwrap();
    assert!(
        written[..BS].iter().all(|b| *b == 0),
        "nothing of the bad block was written"
    );
}

#[test]
fn a_wrong_passphrase_is_a_clear_error() {
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::default());
    repo(backend.clone());
    let err = Repository::open(backend.clone(), &Secret::Passphrase("nope".into())).unwrap_err();
    assert!(matches!(err, RepoError::WrongSecret(1)), "{err}");
    assert!(err.to_string().contains("wrong passphrase"));
    assert!(matches!(
        Repository::open(backend, &Secret::None),
        Err(RepoError::NoSecret)
    ));
}

#[test]
fn an_unencrypted_repository_refuses_a_secret_and_works_without() {
    let dir = TempDir::new("plain");
    write(&dir.path("vol.img"), &image());
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::default());
    let repo = Repository::init(backend.clone(), &Secret::None).unwrap();
    let out = backup(
        &repo,
        &FileSource::open(&dir.path("vol.img")).unwrap(),
        "v",
        None,
        &Progress::default(),
        2,
    )
    .unwrap();
    assert!(
        Repository::open(backend.clone(), &Secret::Passphrase("x".into())).is_err(),
        "a downgraded config is refused"
    );
    let repo = Repository::open(backend, &Secret::None).unwrap();
    restore_to(&repo, &out.id, &dir.path("r.img"), image().len() as u64);
    assert_eq!(std::fs::read(dir.path("r.img")).unwrap(), image());
}

#[test]
fn a_volume_larger_than_a_pack_spans_packs_and_restores() {
    let dir = TempDir::new("large");
    // 48 MiB of random data: three packs at least.
    let data: Vec<u8> = (0..96u64).flat_map(|i| noise(100 + i, BS)).collect();
    write(&dir.path("vol.img"), &data);
    let backend = Arc::new(MemoryBackend::default());
    let repo = repo(backend.clone());
    let out = backup(
        &repo,
        &FileSource::open(&dir.path("vol.img")).unwrap(),
        "v",
        None,
        &Progress::default(),
        4,
    )
    .unwrap();
    assert!(backend.list(FileKind::Pack).unwrap().len() >= 3);
    assert_eq!(
        backend.list(FileKind::Index).unwrap().len(),
        1,
        "one index file per backup"
    );
    let r = restore_to(&repo, &out.id, &dir.path("r.img"), data.len() as u64);
    assert!(
        r.reads < 96,
        "neighbouring blocks are read together: {} reads",
        r.reads
    );
    assert_eq!(std::fs::read(dir.path("r.img")).unwrap(), data);
}

/// A source whose reads fail past a point, like a device whose instance died.
struct Failing {
    size: u64,
    fail_from: u64,
}

impl bulwark_mover::BlockSource for Failing {
    fn size(&self) -> u64 {
        self.size
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), MoverError> {
        if offset >= self.fail_from {
            return Err(MoverError::Source {
                path: "failing".into(),
                error: std::io::Error::other("the device is gone"),
            });
        }
        buf.copy_from_slice(&noise(offset, buf.len()));
        Ok(())
    }
    fn describe(&self) -> (String, String) {
        ("device".into(), "failing".into())
    }
}

#[test]
fn several_volumes_back_up_all_or_none() {
    let repo = repo(Arc::new(MemoryBackend::default()));
    let good = Failing {
        size: 4 * u64::from(BLOCK_SIZE),
        fail_from: u64::MAX,
    };
    let bad = Failing {
        size: 4 * u64::from(BLOCK_SIZE),
        fail_from: 2 * u64::from(BLOCK_SIZE),
    };
    let progress = Progress::default();
    // The second volume fails: not even the first volume's restore point is written.
    let err = bulwark_mover::backup_all(
        &repo,
        &[volume(&good, "vol-1"), volume(&bad, "vol-2")],
        &progress,
        2,
    );
    assert!(err.is_err());
    assert!(
        repo.points().unwrap().is_empty(),
        "no restore point from a failed run"
    );
    // Both succeed: both points, each restorable.
    let outcomes = bulwark_mover::backup_all(
        &repo,
        &[volume(&good, "vol-1"), volume(&good, "vol-2")],
        &progress,
        2,
    )
    .unwrap();
    assert_eq!(outcomes.len(), 2);
    assert_eq!(repo.points().unwrap().len(), 2);
    assert_eq!(outcomes[0].manifest.volume_id, "vol-1");
    assert_eq!(outcomes[1].manifest.volume_id, "vol-2");
}

/// A sparse source that says which blocks were written; reading any other block fails, so the
/// test proves they are never read.
struct Sparse {
    written: Vec<u64>,
}

impl bulwark_mover::BlockSource for Sparse {
    fn size(&self) -> u64 {
        128 * u64::from(BLOCK_SIZE)
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), MoverError> {
        let index = offset / u64::from(BLOCK_SIZE);
        if !self.written.contains(&index) {
            return Err(MoverError::Source {
                path: "sparse".into(),
                error: std::io::Error::other(format!("block {index} was read, but it was never written")),
            });
        }
        buf.copy_from_slice(&noise(index, buf.len()));
        Ok(())
    }
    fn describe(&self) -> (String, String) {
        ("device".into(), "sparse".into())
    }
    fn written_blocks(&self, _block_size: u64) -> Option<Vec<u64>> {
        Some(self.written.clone())
    }
}

#[test]
fn a_sparse_source_is_read_only_where_it_was_written() {
    let repo = repo(Arc::new(MemoryBackend::default()));
    let source = Sparse {
        written: vec![3, 100],
    };
    let outcome = backup(&repo, &source, "vol-sparse", None, &Progress::default(), 2).unwrap();
    assert_eq!(outcome.manifest.stats.blocks_read, 2);
    let dir = TempDir::new("sparse");
    let path = dir.path("restored");
    restore_to(
        &repo,
        &outcome.id,
        &path,
        bulwark_mover::BlockSource::size(&source),
    );
    let restored = std::fs::read(&path).unwrap();
    for i in 0..128u64 {
        let block =
            &restored[(i * u64::from(BLOCK_SIZE)) as usize..((i + 1) * u64::from(BLOCK_SIZE)) as usize];
        if source.written.contains(&i) {
            assert_eq!(block, noise(i, BS).as_slice(), "block {i}");
        } else {
            assert!(block.iter().all(|&b| b == 0), "block {i} is zeros");
        }
    }
}

/// A volume of `backup_all`, read in full.
fn volume<'a>(
    source: &'a dyn bulwark_mover::BlockSource,
    volume_id: &'a str,
) -> bulwark_mover::VolumeSource<'a> {
    bulwark_mover::VolumeSource {
        source,
        volume_id,
        changed: None,
        instance: None,
        index_files: false,
    }
}

#[test]
fn the_holes_of_a_sparse_file_are_not_read_and_restore_as_zeros() {
    let dir = TempDir::new("holes");
    let path = dir.path("sparse.img");
    // A 1 TiB file of three written blocks (and a fourth written half), the rest holes.
    let size = 1u64 << 40;
    let file = std::fs::File::create(&path).unwrap();
    file.set_len(size).unwrap();
    let bs = BS as u64;
    let at = [0, 1_000_003 * bs, size - bs];
    for (k, offset) in at.iter().enumerate() {
        std::os::unix::fs::FileExt::write_all_at(&file, &noise(k as u64, BS), *offset).unwrap();
    }
    std::os::unix::fs::FileExt::write_all_at(&file, &noise(9, BS / 2), 7 * bs + bs / 4).unwrap();
    drop(file);
    let repo = repo(Arc::new(MemoryBackend::default()));
    let progress = Progress::default();
    let started = std::time::Instant::now();
    let out = backup(
        &repo,
        &FileSource::open(&path).unwrap(),
        "vol-holes",
        None,
        &progress,
        3,
    )
    .unwrap();
    assert!(
        out.manifest.stats.blocks_read <= 8,
        "only the blocks holding data are read, not 2 million: {:?}",
        out.manifest.stats
    );
    assert_eq!(progress.snapshot(), (size, size), "holes count as done");
    assert!(started.elapsed().as_secs() < 60, "{:?}", started.elapsed());
    let target = dir.path("restored.img");
    restore_to(&repo, &out.id, &target, size);
    let restored = std::fs::File::open(&target).unwrap();
    let mut block = vec![0u8; BS];
    for (k, offset) in at.iter().enumerate() {
        std::os::unix::fs::FileExt::read_exact_at(&restored, &mut block, *offset).unwrap();
        assert_eq!(block, noise(k as u64, BS), "block at {offset}");
    }
    std::os::unix::fs::FileExt::read_exact_at(&restored, &mut block, 7 * bs).unwrap();
    assert!(block[..BS / 4].iter().all(|b| *b == 0));
    assert_eq!(&block[BS / 4..BS / 4 + BS / 2], noise(9, BS / 2).as_slice());
    std::os::unix::fs::FileExt::read_exact_at(&restored, &mut block, 500 * bs).unwrap();
    assert!(block.iter().all(|b| *b == 0), "a hole restores as zeros");
}
