//! FAT12/16/32 images made with mkfs.fat and mtools, NTFS images made with mkntfs and
//! ntfscp (no root, no mount), read back and compared with their source; then damaged ones.
//!
//! NTFS: ntfs-3g's tools cannot make directories without mounting, so the NTFS tree is one
//! directory (its index large enough to need $INDEX_ALLOCATION); subdirectories are read in
//! the system directory $Extend. mtools and ntfscp keep files' mtimes, not directories'.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use bulwark_fs::{
    walk_all, walk_volume, Cached, Content, Device, FileDevice, FileKind, FsType, MemDevice, NodeId, Volume,
};
use common::*;

const MTOOLS: &[(&str, &str)] = &[("MTOOLS_SKIP_CHECK", "1"), ("TZ", "UTC")];

fn fat_image(
    dir: &Path,
    name: &str,
    size: u64,
    fat: &str,
    f: Features,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let src = source_tree(
        dir,
        Features {
            symlinks: false,
            fifo: false,
            short_names: true,
            ..f
        },
    );
    let img = image(dir, name, size);
    run("mkfs.fat", &["-F", fat, "-n", "BULWARK", img.to_str().unwrap()]);
    let mut args = vec!["-i", img.to_str().unwrap(), "-s", "-m"];
    let entries: Vec<String> = std::fs::read_dir(&src)
        .unwrap()
        .map(|e| e.unwrap().path().to_str().unwrap().to_string())
        .collect();
    args.extend(entries.iter().map(String::as_str));
    args.push("::/");
    run_env("mcopy", &args, MTOOLS);
    (img, src)
}

fn fat_expect() -> Expect {
    Expect {
        mtime_ns: false,
        mtime: true,
        fat_time: true,
        unix: false,
        owner: None,
        mode_mask: 0o7777,
        dir_mtime: false,
    }
}

fn check_fat(img: &Path, src: &Path, t: FsType, min: usize) -> Volume {
    let v = Volume::open(Cached::new(FileDevice::open(img).unwrap())).unwrap();
    let p = v.partition(0).unwrap();
    assert_eq!(p.content, Content::Filesystem(t));
    assert!(p.error.is_none(), "{:?}", p.error);
    assert_eq!(p.label().as_deref(), Some("BULWARK"));
    let n = compare(&v, "/0", src, fat_expect(), &[]);
    assert!(n >= min, "compared {n}");
    let s = walk_volume(&v);
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    v
}

#[test]
fn fat32_long_names_deep_paths_and_a_big_directory() {
    let t = tempfile::tempdir().unwrap();
    let (img, src) = fat_image(t.path(), "fat32.img", 128 << 20, "32", ALL);
    let v = check_fat(&img, &src, FsType::Fat32, 10_000);
    // Windows names: a lookup in another case finds the entry.
    assert_eq!(v.metadata("/0/HELLO.TXT").unwrap().size, 13);
    // Read-only: no write bits.
    run_env(
        "mattrib",
        &["-i", img.to_str().unwrap(), "+r", "::/hello.txt"],
        MTOOLS,
    );
    let v = Volume::open(FileDevice::open(&img).unwrap()).unwrap();
    assert_eq!(v.metadata("/0/hello.txt").unwrap().mode, 0o444);
    // The mtime is the source's (TZ=UTC for mtools), to FAT's 2 seconds.
    let m = v.metadata("/0/hello.txt").unwrap();
    assert!((m.mtime.secs - T1.0).abs() <= 2, "{:?}", m.mtime);
    assert!(m.crtime.is_some());
}

#[test]
fn fat16_and_fat12() {
    let t = tempfile::tempdir().unwrap();
    let small = Features {
        many: 300,
        big: 2 << 20,
        sparse: false,
        ..ALL
    };
    let (img, src) = fat_image(t.path(), "fat16.img", 32 << 20, "16", small);
    check_fat(&img, &src, FsType::Fat16, 300);
    let t = tempfile::tempdir().unwrap();
    let tiny = Features {
        many: 40,
        big: 300_000,
        sparse: false,
        ..ALL
    };
    let (img, src) = fat_image(t.path(), "fat12.img", 2 << 20, "12", tiny);
    check_fat(&img, &src, FsType::Fat12, 40);
}

fn ntfs_image(dir: &Path, many: usize) -> (std::path::PathBuf, std::path::PathBuf) {
    let src = source_tree(
        dir,
        Features {
            symlinks: false,
            fifo: false,
            subdirs: false,
            many: 0,
            ..ALL
        },
    );
    for i in 0..many {
        std::fs::write(src.join(format!("entry-{i:04}.txt")), format!("{i}\n")).unwrap();
    }
    let img = image(dir, "ntfs.img", 96 << 20);
    run(
        "mkntfs",
        &["-q", "-F", "-f", "-L", "Windows", img.to_str().unwrap()],
    );
    for e in std::fs::read_dir(&src).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_str().unwrap().to_string();
        run(
            "ntfscp",
            &["-q", "-t", img.to_str().unwrap(), p.to_str().unwrap(), &name],
        );
    }
    // A sparse file: 4 bytes, extended to 8 MB by ntfstruncate (which wants its inode).
    let head = dir.join("head");
    std::fs::write(&head, b"head").unwrap();
    run(
        "ntfscp",
        &["-q", img.to_str().unwrap(), head.to_str().unwrap(), "sparse.bin"],
    );
    let ino = run("ntfsls", &["-i", img.to_str().unwrap()])
        .lines()
        .find_map(|l| l.strip_suffix(" sparse.bin").map(|n| n.trim().to_string()))
        .unwrap();
    run("ntfstruncate", &[img.to_str().unwrap(), &ino, "8000000"]);
    (img, src)
}

#[test]
fn ntfs_files_times_big_index_and_system_directories() {
    let t = tempfile::tempdir().unwrap();
    let (img, src) = ntfs_image(t.path(), 400);
    let v = Volume::open(Cached::new(FileDevice::open(&img).unwrap())).unwrap();
    let p = v.partition(0).unwrap();
    assert_eq!(p.content, Content::Filesystem(FsType::Ntfs));
    assert!(p.error.is_none(), "{:?}", p.error);
    assert_eq!(p.label().as_deref(), Some("Windows"));
    let e = Expect {
        mtime_ns: false,
        mtime: true,
        fat_time: false,
        unix: false,
        owner: None,
        mode_mask: 0o7777,
        dir_mtime: false,
    };
    let n = compare(&v, "/0", &src, e, &["sparse.bin"]);
    assert!(n >= 400, "compared {n}");
    // A sparse file: 4 bytes written, extended to 8 MB by ntfstruncate.
    let mut data = Vec::new();
    v.open_file("/0/sparse.bin")
        .unwrap()
        .read_to_end(&mut data)
        .unwrap();
    assert_eq!(data.len(), 8_000_000);
    assert!(&data[..4] == b"head" && data[4..].iter().all(|&b| b == 0));
    let s = walk_volume(&v);
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    // ntfscp -t keeps the mtime's seconds; the times without -t (mkntfs's, ntfscp's own)
    // have 100 ns units.
    let m = v.metadata("/0/hello.txt").unwrap();
    assert_eq!(m.mtime.secs, T1.0);
    let root = fs_root_times(&v);
    assert!(root.nanos.is_multiple_of(100) && root.nanos != 0, "{root:?}");
    assert!(m.crtime.is_some() && m.ctime.is_some());
    // A subdirectory: the system directory $Extend (record 11), hidden from listings.
    let fs = v.filesystem(0).unwrap();
    assert!(!fs
        .read_dir(fs.root())
        .unwrap()
        .iter()
        .any(|e| e.name.as_bytes() == b"$Extend"));
    let names: Vec<String> = fs
        .read_dir(NodeId(11))
        .unwrap()
        .into_iter()
        .map(|e| e.name.to_string_lossy())
        .collect();
    for want in ["$ObjId", "$Quota", "$Reparse"] {
        assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
    }
    assert_eq!(fs.metadata(NodeId(11)).unwrap().kind, FileKind::Dir);
}

/// The mtime of a file ntfscp copied without -t: its own time, with sub-second digits.
fn fs_root_times(v: &Volume) -> bulwark_fs::Timestamp {
    v.metadata("/0/entry-0001.txt").unwrap().crtime.unwrap()
}

#[test]
fn corrupt_fat_and_ntfs_and_walk_everything() {
    let t = tempfile::tempdir().unwrap();
    let tiny = Features {
        many: 200,
        big: 100_000,
        sparse: false,
        ..ALL
    };
    let (fat, _) = fat_image(t.path(), "fat16.img", 20 << 20, "16", tiny);
    let t2 = tempfile::tempdir().unwrap();
    let (ntfs, _) = ntfs_image(t2.path(), 60);
    for img in [fat, ntfs] {
        let raw = load(&img);
        let blocks = written_blocks(&raw);
        let base: Arc<dyn Device> = Arc::new(MemDevice(raw.clone()));
        assert!(walk_all(base.clone()).unwrap().errors.is_empty());
        for seed in 1..=250u64 {
            let mut rng = Rng(seed * 104_729);
            let mut flips = std::collections::BTreeMap::new();
            for _ in 0..1 + rng.below(24) {
                let b = blocks[rng.below(blocks.len() as u64) as usize];
                flips.insert(b + rng.below(4096), (rng.next() as u8) | 1);
            }
            let _ = walk_all(Flipped {
                base: base.clone(),
                flips,
                len: raw.len() as u64,
            });
        }
        for cut in [512u64, 8192, 1 << 20, raw.len() as u64 / 2] {
            let _ = walk_all(Flipped {
                base: base.clone(),
                flips: Default::default(),
                len: cut,
            });
        }
    }
}
