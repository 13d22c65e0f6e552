//! ext2, ext3 and ext4 images made with `mkfs.ext* -d` (no root, no mount), read back and
//! compared entry by entry with the source tree; then damaged ones.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bulwark_fs::{walk_all, Cached, Content, FileDevice, FileKind, FsError, FsType, MemDevice, Volume};
use common::*;

fn build(
    dir: &std::path::Path,
    name: &str,
    size: u64,
    args: &[&str],
    src: &std::path::Path,
) -> std::path::PathBuf {
    let img = image(dir, name, size);
    let mut a: Vec<&str> = vec!["-q", "-F", "-E", "root_owner"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["-d", src.to_str().unwrap(), img.to_str().unwrap()]);
    run("mke2fs", &a);
    img
}

/// mke2fs 1.47 stores whole seconds cut to 32 bits: give two files nanoseconds, and the one
/// past 2038 its epoch bit, with debugfs (which rewrites the inode checksum).
fn set_extra_times(img: &std::path::Path) {
    let img = img.to_str().unwrap();
    let hello = format!("sif /hello.txt mtime_extra {}", T1.1 << 2);
    let suid = format!("sif /setuid-prog mtime_extra {}", (T2.1 << 2) | 1);
    for cmd in [hello, suid] {
        run("debugfs", &["-w", "-R", &cmd, img]);
    }
}

/// An inode's flags, as debugfs reads them.
fn flags(img: &std::path::Path, path: &str) -> u32 {
    let out = run("debugfs", &["-R", &format!("stat {path}"), img.to_str().unwrap()]);
    let f = out
        .split("Flags: 0x")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or("0");
    u32::from_str_radix(f, 16).unwrap()
}

fn check(img: &std::path::Path, src: &std::path::Path, t: FsType, extra: bool) -> Volume {
    if extra {
        set_extra_times(img);
    }
    let volume = Volume::open(Cached::new(FileDevice::open(img).unwrap())).unwrap();
    let p = volume.partition(0).expect("a whole-disk filesystem");
    assert_eq!(p.content, Content::Filesystem(t));
    assert!(p.error.is_none(), "{:?}", p.error);
    let e = Expect {
        mtime_ns: false,
        mtime: true,
        fat_time: false,
        unix: true,
        owner: None,
        mode_mask: 0o7777,
        dir_mtime: true,
    };
    let n = compare(&volume, "/0", src, e, &["lost+found"]);
    assert!(n > 50, "compared {n} entries");
    let s = bulwark_fs::walk_volume(&volume);
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    if extra {
        let m = volume.metadata("/0/hello.txt").unwrap();
        assert_eq!((m.mtime.secs, m.mtime.nanos), T1);
        let m = volume.metadata("/0/setuid-prog").unwrap();
        assert_eq!((m.mtime.secs, m.mtime.nanos), T2);
    }
    volume
}

#[test]
fn ext4_default_features_4k_blocks() {
    // 64bit, extents, flex_bg, metadata_csum, huge_file, dir_nlink, extra_isize: today's
    // mke2fs defaults; the 10,000-entry directory is an htree.
    let t = tempfile::tempdir().unwrap();
    let src = source_tree(t.path(), ALL);
    std::fs::hard_link(src.join("hello.txt"), src.join("dir/hard-link.txt")).unwrap();
    let img = build(
        t.path(),
        "ext4.img",
        256 << 20,
        &["-t", "ext4", "-b", "4096", "-I", "256", "-L", "rootfs"],
        &src,
    );
    // mke2fs -d writes linear directories; e2fsck -D indexes the large ones (htree).
    run_ok("e2fsck", &["-fyD", img.to_str().unwrap()], &[0, 1]);
    assert!(
        flags(&img, "/many") & 0x1000 != 0,
        "/many is not an htree directory"
    );
    assert!(flags(&img, "/big.bin") & 0x8_0000 != 0, "big.bin has no extents");
    let v = check(&img, &src, FsType::Ext4, true);
    assert_eq!(v.partition(0).unwrap().label().as_deref(), Some("rootfs"));
    assert!(v.metadata("/0/setuid-prog").unwrap().crtime.is_some());
    // The sparse file reads zeros in its holes (compare did) and is sparse on disk.
    let mut f = v.open_file("/0/sparse.img").unwrap();
    assert_eq!(f.data().next_data(8192).unwrap(), Some(5 << 20));
    let fifo = v.metadata("/0/fifo").unwrap();
    assert_eq!(fifo.kind, FileKind::Fifo);
    assert!(v.metadata("/0/many").unwrap().nlink >= 2);
    // A hard link: one inode, two names.
    let (a, b) = (
        v.metadata("/0/hello.txt").unwrap(),
        v.metadata("/0/dir/hard-link.txt").unwrap(),
    );
    assert_eq!((a.ino, a.nlink), (b.ino, 2));
}

#[test]
fn ext4_small_inodes_1k_blocks_no_checksums() {
    // 128-byte inodes: seconds only, no creation time; 1 KiB blocks; 32-bit descriptors.
    let t = tempfile::tempdir().unwrap();
    let src = source_tree(
        t.path(),
        Features {
            big: 3 << 20,
            many: 2000,
            y2038: false,
            ..ALL
        },
    );
    let img = build(
        t.path(),
        "ext4.img",
        128 << 20,
        &[
            "-t",
            "ext4",
            "-b",
            "1024",
            "-I",
            "128",
            "-O",
            "^metadata_csum,^64bit",
        ],
        &src,
    );
    let v = check(&img, &src, FsType::Ext4, false);
    assert_eq!(v.metadata("/0/hello.txt").unwrap().crtime, None);
    assert!(v.ls("/").unwrap()[0]
        .partition
        .as_ref()
        .unwrap()
        .warnings
        .is_empty());
    // A filesystem snapshotted while mounted: its journal needs recovery, which is not
    // replayed; the listing says so and the files still read.
    run(
        "debugfs",
        &["-w", "-R", "feature needs_recovery", img.to_str().unwrap()],
    );
    let v = Volume::open(FileDevice::open(&img).unwrap()).unwrap();
    let w = v.ls("/").unwrap()[0].partition.clone().unwrap().warnings;
    assert!(w.iter().any(|w| w.contains("journal")), "{w:?}");
    assert_eq!(v.metadata("/0/hello.txt").unwrap().size, 13);
}

#[test]
fn ext4_inline_data() {
    let t = tempfile::tempdir().unwrap();
    let src = source_tree(
        t.path(),
        Features {
            big: 1 << 20,
            many: 500,
            ..ALL
        },
    );
    let img = build(
        t.path(),
        "ext4.img",
        64 << 20,
        &["-t", "ext4", "-I", "256", "-O", "inline_data"],
        &src,
    );
    // Small files and directories in the inode; hello.txt entirely in i_block, exec.sh
    // (19 bytes) too; medium.txt (100 bytes) continues in the system.data attribute.
    for p in ["/hello.txt", "/medium.txt", "/dir", "/dir/sub/file.txt"] {
        assert!(flags(&img, p) & 0x1000_0000 != 0, "{p} is not inline");
    }
    check(&img, &src, FsType::Ext4, true);
}

#[test]
fn ext3_and_ext2_block_maps() {
    // No extents: direct, indirect, double-indirect blocks (the 24 MiB file with 1 KiB
    // blocks needs them).
    for (fs, t) in [("ext3", FsType::Ext3), ("ext2", FsType::Ext2)] {
        let d = tempfile::tempdir().unwrap();
        let src = source_tree(d.path(), Features { many: 3000, ..ALL });
        let img = build(
            d.path(),
            "img",
            192 << 20,
            &["-t", fs, "-b", "1024", "-I", "256"],
            &src,
        );
        check(&img, &src, t, true);
    }
}

fn small_image(dir: &std::path::Path) -> Vec<u8> {
    let src = source_tree(
        dir,
        Features {
            big: 300_000,
            many: 300,
            ..ALL
        },
    );
    let img = build(
        dir,
        "small.img",
        8 << 20,
        &["-t", "ext4", "-b", "1024", "-I", "256", "-N", "2048"],
        &src,
    );
    load(&img)
}

#[test]
fn damaged_superblock_inode_and_directory_are_errors() {
    let t = tempfile::tempdir().unwrap();
    let img = small_image(t.path());
    // The magic.
    let mut bad = img.clone();
    bad[1024 + 56] ^= 0xff;
    let v = Volume::open(MemDevice(bad)).unwrap();
    assert!(v.partition(0).unwrap().fs.is_none());
    // A checksummed superblock field.
    let mut bad = img.clone();
    bad[1024 + 4] ^= 1;
    let v = Volume::open(MemDevice(bad)).unwrap();
    assert!(v
        .partition(0)
        .unwrap()
        .error
        .as_deref()
        .unwrap_or("")
        .contains("checksum"));
    // The image cut short: the superblock says more blocks than there are.
    let v = Volume::open(MemDevice(img[..img.len() / 2].to_vec())).unwrap();
    assert!(v.partition(0).unwrap().error.is_some());
    // An inode: find hello.txt's and flip its mode; its checksum catches it.
    let v = Volume::open(MemDevice(img.clone())).unwrap();
    let ino = v.metadata("/0/hello.txt").unwrap().ino;
    let (_, node) = v.node("/0/hello.txt", false).unwrap().unwrap();
    assert_eq!(node.0, ino);
    let mut found = None;
    // Inode tables hold the inode's bytes; look for the known size and mode.
    for off in (0..img.len() - 256).step_by(256) {
        if img[off..off + 2] == 0o100644u16.to_le_bytes() && img[off + 4..off + 8] == 13u32.to_le_bytes() {
            found = Some(off);
        }
    }
    let off = found.expect("hello.txt's inode");
    let mut bad = img.clone();
    bad[off + 8] ^= 0x55;
    let v = Volume::open(MemDevice(bad)).unwrap();
    let err = v.metadata("/0/hello.txt").unwrap_err();
    assert!(matches!(err, FsError::Damaged { .. }), "{err}");
}

#[test]
fn corrupt_random_bytes_and_walk_everything() {
    // Deterministic: the same 300 corruptions each run. Each must end (loop limits, not a
    // timer) without a panic; the metadata region is where damage matters.
    let t = tempfile::tempdir().unwrap();
    let img = small_image(t.path());
    let meta_end = 2 << 20;
    for seed in 0..300u64 {
        let n = 1 + (seed % 16) as usize;
        let bad = corrupt(&img, 1024..meta_end, n, seed);
        match walk_all(MemDevice(bad)) {
            Ok(s) => assert!(s.partitions == 1),
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
    // Truncated anywhere.
    for cut in [1024usize, 2048, 4096, 65536, 1 << 20, img.len() - 1] {
        let _ = walk_all(MemDevice(img[..cut].to_vec()));
    }
}
