//! Repositories written by each format version, committed in crates/repo/tests/vectors: v1
//! (manifest version 1) and v2 (manifest version 2, block maps in chunks, and an incremental
//! point built on the first); every later version must open them and restore them
//! bit for bit. To write a new one (only when a format version changes, into a new folder; set
//! `VECTORS` below): `BULWARK_WRITE_VECTORS=1 cargo test -p bulwark-mover --test format_vectors
//! -- --ignored`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bulwark_mover::{backup, restore, FileSource, FileTarget, Progress};
use bulwark_repo::{verify, Repository, Secret, BLOCK_SIZE, MANIFEST_VERSION};
use bulwark_storage::LocalBackend;

const KEY: [u8; 32] = [0x42; 32];
const BS: usize = BLOCK_SIZE as usize;

/// The folder `write_vectors` writes: that of the newest version.
const VECTORS: &str = "v2";

fn vectors(version: &str) -> PathBuf {
    // At run time: a test binary another clone built into a shared cache keeps its env!.
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo"))
        .join("../repo/tests/vectors")
        .join(version)
}

/// The volume in the vectors: a text block, a zero block, the text block again, and a short
/// block of pseudo-random bytes.
fn volume() -> Vec<u8> {
    let text: Vec<u8> = b"Bulwark format vector, block of text. "
        .iter()
        .cycle()
        .take(BS)
        .copied()
        .collect();
    let mut x: u32 = 42;
    let tail: Vec<u8> = (0..64 * 1024)
        .map(|_| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (x >> 24) as u8
        })
        .collect();
    [text.clone(), vec![0; BS], text, tail].concat()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

#[test]
fn version_1_vectors_restore_bit_for_bit() {
    // Work on a copy: opening takes a lock, which writes to the repository.
    let tmp = std::env::temp_dir().join(format!("bulwark-vectors-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    copy_dir(&vectors("v1"), &tmp.join("repo"));
    let repo = Repository::open(
        Arc::new(LocalBackend::new(tmp.join("repo"))),
        &Secret::KeyFile(KEY),
    )
    .unwrap();
    let points = repo.points().unwrap();
    assert_eq!(points.len(), 1);
    let (id, manifest) = &points[0];
    assert_eq!(manifest.volume_id, "vol-0123456789abcdef0");
    let target = FileTarget::create(&tmp.join("out.img"), manifest.size).unwrap();
    restore(&repo, id, &target, &Progress::default(), 2).unwrap();
    assert_eq!(std::fs::read(tmp.join("out.img")).unwrap(), volume());
    assert!(verify(&repo, true, 1).unwrap().is_clean());

    // A version 2 restore point on top of the version 1 one: block 1 (zeros) now holds data.
    let changed = changed_volume();
    std::fs::write(tmp.join("changed.img"), &changed).unwrap();
    let source = FileSource::open(&tmp.join("changed.img")).unwrap();
    let child = backup(
        &repo,
        &source,
        &manifest.volume_id,
        Some(&[1]),
        &Progress::default(),
        2,
    )
    .unwrap();
    assert_eq!(child.manifest.version, MANIFEST_VERSION);
    assert_eq!(child.manifest.parent, Some(*id));
    let target = FileTarget::create(&tmp.join("child.img"), manifest.size).unwrap();
    restore(&repo, &child.id, &target, &Progress::default(), 2).unwrap();
    assert_eq!(std::fs::read(tmp.join("child.img")).unwrap(), changed);
    assert!(verify(&repo, true, 1).unwrap().is_clean());
    std::fs::remove_dir_all(&tmp).unwrap();
}

/// The v2 volume's second point: block 1 (zeros in the first) holds data.
fn changed_volume() -> Vec<u8> {
    let mut v = volume();
    v[BS..2 * BS].fill(0x5a);
    v
}

#[test]
fn version_2_vectors_restore_bit_for_bit() {
    let tmp = std::env::temp_dir().join(format!("bulwark-vectors2-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    copy_dir(&vectors("v2"), &tmp.join("repo"));
    let repo = Repository::open(
        Arc::new(LocalBackend::new(tmp.join("repo"))),
        &Secret::KeyFile(KEY),
    )
    .unwrap();
    let points = repo.points().unwrap();
    assert_eq!(points.len(), 2);
    let (first, parent) = (&points[0], &points[1]);
    assert_eq!(parent.1.parent, Some(first.0), "the second is built on the first");
    for ((id, manifest), want) in [(first, volume()), (parent, changed_volume())] {
        assert_eq!(manifest.version, MANIFEST_VERSION);
        assert!(!manifest.map.is_empty() && manifest.blocks.is_empty());
        let out = tmp.join(format!("{}.img", id.short()));
        let target = FileTarget::create(&out, manifest.size).unwrap();
        restore(&repo, id, &target, &Progress::default(), 2).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), want, "{id}");
    }
    assert!(verify(&repo, true, 1).unwrap().is_clean());
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
#[ignore = "writes the vectors; run by hand when the format version changes"]
fn write_vectors() {
    if std::env::var_os("BULWARK_WRITE_VECTORS").is_none() {
        return;
    }
    let dir = vectors(VECTORS);
    assert!(
        !dir.exists(),
        "{} exists: vectors of a released version never change",
        dir.display()
    );
    let repo = Repository::init(Arc::new(LocalBackend::new(&dir)), &Secret::KeyFile(KEY)).unwrap();
    let img = std::env::temp_dir().join("bulwark-vector.img");
    std::fs::write(&img, volume()).unwrap();
    backup(
        &repo,
        &FileSource::open(&img).unwrap(),
        "vol-0123456789abcdef0",
        None,
        &Progress::default(),
        1,
    )
    .unwrap();
    std::fs::write(&img, changed_volume()).unwrap();
    backup(
        &repo,
        &FileSource::open(&img).unwrap(),
        "vol-0123456789abcdef0",
        Some(&[1]),
        &Progress::default(),
        1,
    )
    .unwrap();
    std::fs::remove_file(img).unwrap();
}
