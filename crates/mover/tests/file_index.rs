//! File indexes: made as a backup ends by reading the new restore point back, on full and
//! incremental backups; kept by prune while their point is; and a volume the readers cannot
//! read still backed up, with why in its index.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use bulwark_mover::{backup_all, FileSource, Progress, VolumeSource};
use bulwark_repo::{
    forget_points, prune, verify, EntryKind, FileEntry, Manifest, Repository, Secret, BLOCK_SIZE,
};
use bulwark_storage::MemoryBackend;
use common::{noise, TempDir};

/// An ext4 filesystem of 64 MiB made from `tree` (mke2fs from Debian's e2fsprogs, which
/// scripts/fs-tools installs).
fn ext4(tree: &Path, image: &Path) {
    std::fs::File::create(image).unwrap().set_len(64 << 20).unwrap();
    let out = Command::new("mke2fs")
        .env(
            "PATH",
            format!("{}:/usr/sbin:/sbin", std::env::var("PATH").unwrap_or_default()),
        )
        .args(["-q", "-t", "ext4", "-d"])
        .arg(tree)
        .arg(image)
        .output()
        .expect("mke2fs: run scripts/fs-tools to install the image tools");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Backs up `image` as `vol` with a file index, reading only `changed` blocks if given.
fn backup(repo: &Repository, image: &Path, changed: Option<&[u64]>) -> (bulwark_repo::Id, Manifest) {
    let source = FileSource::open(image).unwrap();
    let volume = VolumeSource {
        source: &source,
        volume_id: "vol",
        changed,
        instance: None,
        index_files: true,
    };
    let mut out = backup_all(repo, &[volume], &Progress::default(), 2).unwrap();
    let out = out.pop().unwrap();
    (out.id, out.manifest)
}

/// The entries of a point's file index, by path.
fn entries(repo: &Repository, manifest: &Manifest) -> BTreeMap<String, FileEntry> {
    let index = repo.load_index().unwrap();
    let mut all = BTreeMap::new();
    repo.for_each_file::<bulwark_repo::RepoError>(&index, manifest.files.as_ref().unwrap(), |chunk| {
        for e in chunk {
            all.insert(String::from_utf8(e.path.clone()).unwrap(), e.clone());
        }
        Ok(())
    })
    .unwrap();
    all
}

/// The indexes of the blocks in which two images differ.
fn changed_blocks(a: &Path, b: &Path) -> Vec<u64> {
    let (a, b) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    let bs = BLOCK_SIZE as usize;
    (0..a.len().div_ceil(bs))
        .filter(|i| a[i * bs..((i + 1) * bs).min(a.len())] != b[i * bs..((i + 1) * bs).min(b.len())])
        .map(|i| i as u64)
        .collect()
}

#[test]
fn an_index_lists_every_entry_on_full_and_incremental_backups_and_outlives_prune() {
    let dir = TempDir::new("file-index");
    let tree = dir.path("tree");
    for d in 0..20 {
        std::fs::create_dir_all(tree.join(format!("d{d:02}"))).unwrap();
        for f in 0..250 {
            std::fs::write(
                tree.join(format!("d{d:02}/file-with-a-longer-name-{f:03}")),
                vec![b'x'; f],
            )
            .unwrap();
        }
    }
    std::os::unix::fs::symlink("d00", tree.join("link")).unwrap();
    let (one, two) = (dir.path("one.img"), dir.path("two.img"));
    ext4(&tree, &one);
    let repo = Repository::init(Arc::new(MemoryBackend::default()), &Secret::None).unwrap();
    let (first, m1) = backup(&repo, &one, None);
    let files = m1.files.as_ref().unwrap();
    assert!(files.problems.is_empty(), "{:?}", files.problems);
    // 20 directories of 250 files, a link and lost+found.
    assert_eq!(files.entries, 20 + 20 * 250 + 2);
    assert!(files.chunks.len() >= 3, "{} chunks", files.chunks.len());
    let listed = entries(&repo, &m1);
    assert_eq!(listed.len() as u64, files.entries);
    let e = &listed["/0/d07/file-with-a-longer-name-123"];
    let on_disk = std::fs::metadata(tree.join("d07/file-with-a-longer-name-123")).unwrap();
    assert_eq!((e.kind, e.size, e.mode), (EntryKind::File, 123, 0o644));
    use std::os::unix::fs::MetadataExt;
    // Seconds: a filesystem this small has 128-byte inodes, without nanoseconds.
    assert_eq!(e.mtime_secs, on_disk.mtime());
    assert_eq!(listed["/0/link"].kind, EntryKind::Symlink);
    assert_eq!(listed["/0/d19"].kind, EntryKind::Dir);

    // One file changes, one is added: an incremental backup reads only the changed blocks
    // and indexes the whole filesystem as it now is.
    std::fs::write(tree.join("d03/file-with-a-longer-name-007"), b"changed!").unwrap();
    std::fs::write(tree.join("d11/new"), b"new").unwrap();
    ext4(&tree, &two);
    let changed = changed_blocks(&one, &two);
    let (second, m2) = backup(&repo, &two, Some(&changed));
    assert_eq!(m2.stats.blocks_read, changed.len() as u64);
    let now = entries(&repo, &m2);
    assert_eq!(now.len(), listed.len() + 1);
    assert_eq!(now["/0/d03/file-with-a-longer-name-007"].size, 8);
    assert_eq!(now["/0/d11/new"].size, 3);
    // The chunks of the directories that did not change are stored once.
    let before = &m1.files.as_ref().unwrap().chunks;
    let shared = m2
        .files
        .as_ref()
        .unwrap()
        .chunks
        .iter()
        .filter(|c| before.contains(c))
        .count();
    assert!(
        shared >= 1,
        "no chunk shared between {before:?} and {:?}",
        m2.files
    );

    // The first point goes; the second's index stays whole.
    forget_points(&repo, &[first.to_hex()]).unwrap();
    prune(&repo).unwrap();
    assert_eq!(entries(&repo, &m2), now);
    assert!(verify(&repo, true, 2).unwrap().is_clean());
    assert_eq!(repo.read_point(&second).unwrap().files, m2.files);
}

#[test]
fn a_volume_no_reader_can_read_is_backed_up_with_why_in_its_index() {
    let dir = TempDir::new("file-index-noise");
    let image = dir.path("noise.img");
    std::fs::write(&image, noise(7, 3 * BLOCK_SIZE as usize)).unwrap();
    let repo = Repository::init(Arc::new(MemoryBackend::default()), &Secret::None).unwrap();
    let (id, manifest) = backup(&repo, &image, None);
    let files = manifest.files.as_ref().unwrap();
    assert_eq!((files.entries, files.chunks.len()), (0, 0));
    assert!(!files.problems.is_empty(), "{files:?}");
    assert!(verify(&repo, true, 2).unwrap().is_clean());
    assert_eq!(repo.read_point(&id).unwrap().stats.blocks_read, 3);
}

#[test]
fn with_object_lock_the_chunks_an_index_reuses_are_retained_as_long_as_its_point() {
    use bulwark_storage::{Backend, FileKind, LocalBackend};
    let dir = TempDir::new("file-index-lock");
    let tree = dir.path("tree");
    std::fs::create_dir_all(tree.join("etc")).unwrap();
    std::fs::write(tree.join("etc/hosts"), "127.0.0.1 localhost\n").unwrap();
    let image = dir.path("disk.img");
    ext4(&tree, &image);
    let backend = Arc::new(LocalBackend::new(dir.path("repo")));
    let lock = bulwark_repo::InitOptions {
        object_lock: Some(bulwark_repo::ObjectLock {
            mode: "governance".into(),
            days: 30,
        }),
    };
    let repo = Repository::init_with(backend.clone(), &Secret::KeyFile([4; 32]), &lock).unwrap();
    backup(&repo, &image, None);
    // Retention is in whole seconds: the second point's ends later than the first's.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (second, m2) = backup(&repo, &image, None);
    let point = backend
        .retention(FileKind::Point, &second.to_hex())
        .unwrap()
        .unwrap();
    let index = repo.load_index().unwrap();
    let chunks = &m2.files.as_ref().unwrap().chunks;
    assert!(!chunks.is_empty());
    for chunk in chunks {
        let pack = index.packs[index.blocks[chunk].pack as usize];
        let held = backend
            .retention(FileKind::Pack, &pack.to_hex())
            .unwrap()
            .unwrap();
        assert!(
            held.until >= point.until,
            "pack {pack} of chunk {chunk}: {held:?} < {point:?}"
        );
    }
}
