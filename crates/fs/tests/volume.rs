//! Whole disks: GPT (sgdisk) and MBR (sfdisk) tables with filesystem images placed at their
//! partitions' offsets, what is recognised but not read, damaged tables; path resolution;
//! extraction and tar; what the cache reads.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bulwark_fs::{
    extract, walk_volume, write_tar, Cached, Content, FileDevice, FileKind, FsError, FsType, MemDevice,
    TableKind, Volume,
};
use common::*;

const MIB: u64 = 1 << 20;
const SMALL_XFS: &[(&str, &str)] = &[("TEST_DEV", "1"), ("TEST_DIR", "1"), ("QA_CHECK_FS", "1")];

/// Copies `img` into `disk` at byte `at`, only its non-zero 64 KiB pieces (both stay sparse).
fn place(disk: &Path, at: u64, img: &Path) {
    let data = fs::read(img).unwrap();
    let mut d = fs::OpenOptions::new().write(true).open(disk).unwrap();
    for (i, piece) in data.chunks(65536).enumerate() {
        if piece.iter().any(|&b| b != 0) {
            d.seek(SeekFrom::Start(at + i as u64 * 65536)).unwrap();
            d.write_all(piece).unwrap();
        }
    }
}

fn write_bytes(disk: &Path, at: u64, data: &[u8]) {
    let mut d = fs::OpenOptions::new().write(true).open(disk).unwrap();
    d.seek(SeekFrom::Start(at)).unwrap();
    d.write_all(data).unwrap();
}

fn small_src(dir: &Path) -> PathBuf {
    source_tree(
        dir,
        Features {
            symlinks: false,
            fifo: false,
            spaces: false,
            many: 100,
            big: 2 << 20,
            sparse: false,
            short_names: true,
            // mke2fs 1.47 cuts times to 32 bits.
            y2038: false,
            ..ALL
        },
    )
}

fn ext4_of(dir: &Path, src: &Path, size: u64, label: &str) -> PathBuf {
    let img = image(dir, &format!("{label}.ext4"), size);
    run(
        "mke2fs",
        &[
            "-q",
            "-F",
            "-t",
            "ext4",
            "-L",
            label,
            "-d",
            src.to_str().unwrap(),
            img.to_str().unwrap(),
        ],
    );
    img
}

fn fat_of(dir: &Path, src: &Path, size: u64) -> PathBuf {
    let img = image(dir, "esp.fat", size);
    run("mkfs.fat", &["-F", "32", "-n", "ESP", img.to_str().unwrap()]);
    run_env(
        "mmd",
        &["-i", img.to_str().unwrap(), "::/EFI", "::/EFI/BOOT"],
        &[("MTOOLS_SKIP_CHECK", "1")],
    );
    run_env(
        "mcopy",
        &[
            "-i",
            img.to_str().unwrap(),
            src.join("hello.txt").to_str().unwrap(),
            "::/EFI/BOOT/BOOTX64.EFI",
        ],
        &[("MTOOLS_SKIP_CHECK", "1")],
    );
    img
}

fn xfs_of(dir: &Path, size: u64) -> PathBuf {
    let img = image(dir, "data.xfs", size);
    run_env(
        "mkfs.xfs",
        &["-q", "-f", "-L", "data", img.to_str().unwrap()],
        SMALL_XFS,
    );
    img
}

/// (start sector, end sector) of each partition, as sgdisk prints them.
fn sgdisk_layout(disk: &Path) -> Vec<(u32, u64, u64)> {
    run("sgdisk", &["-p", disk.to_str().unwrap()])
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let n = w.first()?.parse().ok()?;
            Some((n, w.get(1)?.parse().ok()?, w.get(2)?.parse().ok()?))
        })
        .collect()
}

fn gpt_disk(dir: &Path) -> (PathBuf, PathBuf) {
    let src = small_src(dir);
    let disk = image(dir, "disk.img", 320 * MIB);
    let d = disk.to_str().unwrap();
    let parts = [
        ("2048:+40M", "ef00", "EFI system"),
        ("0:+64M", "8300", "root"),
        ("0:+64M", "8300", "data"),
        ("0:+8M", "8e00", "lvm"),
        ("0:+8M", "8200", "swap"),
        ("0:+8M", "8309", "luks"),
        ("0:+8M", "8300", "never formatted"),
        ("0:+8M", "8300", "noise"),
    ];
    let mut args = Vec::new();
    for (i, (range, code, name)) in parts.iter().enumerate() {
        let n = i + 1;
        args.extend([
            format!("-n{n}:{range}"),
            format!("-t{n}:{code}"),
            format!("-c{n}:{name}"),
        ]);
    }
    args.push(d.to_string());
    run("sgdisk", &args.iter().map(String::as_str).collect::<Vec<_>>());
    let layout = sgdisk_layout(&disk);
    let start = |n: u32| layout.iter().find(|p| p.0 == n).unwrap().1 * 512;
    place(&disk, start(1), &fat_of(dir, &src, 40 * MIB));
    place(&disk, start(2), &ext4_of(dir, &src, 64 * MIB, "root"));
    place(&disk, start(3), &xfs_of(dir, 64 * MIB));
    // An LVM2 label in sector 1, a swap signature from mkswap, a LUKS header's magic.
    let mut lvm = vec![0u8; 1024];
    lvm[512..520].copy_from_slice(b"LABELONE");
    lvm[536..544].copy_from_slice(b"LVM2 001");
    write_bytes(&disk, start(4), &lvm);
    let swap = image(dir, "swap", 8 * MIB);
    run("mkswap", &[swap.to_str().unwrap()]);
    place(&disk, start(5), &swap);
    write_bytes(&disk, start(6), b"LUKS\xba\xbe\x00\x02");
    write_bytes(&disk, start(8), &pseudo_random(65536, 5));
    (disk, src)
}

#[test]
fn gpt_disk_with_every_kind_of_partition() {
    let t = tempfile::tempdir().unwrap();
    let (disk, src) = gpt_disk(t.path());
    let v = Volume::open(Cached::new(FileDevice::open(&disk).unwrap())).unwrap();
    assert_eq!(v.table().kind, TableKind::Gpt);
    assert!(v.table().warnings.is_empty(), "{:?}", v.table().warnings);
    let layout = sgdisk_layout(&disk);
    let ls = v.ls("/").unwrap();
    assert_eq!(ls.len(), 8);
    let want = [
        (1, "fat32 (EFI system partition)", Some("ESP")),
        (2, "ext4", Some("root")),
        (3, "xfs", Some("data")),
        (4, "unsupported: LVM2 physical volume", None),
        (5, "unsupported: Linux swap", None),
        (6, "unsupported: LUKS encrypted volume", None),
        (7, "empty (zeros)", None),
        (8, "unknown", None),
    ];
    for (e, (n, content, label)) in ls.iter().zip(want) {
        let p = e.partition.as_ref().unwrap();
        assert_eq!(e.name.as_bytes(), n.to_string().as_bytes());
        assert_eq!(
            (p.number, p.content.as_str(), p.label.as_deref()),
            (n, content, label)
        );
        let (_, first, last) = layout.iter().find(|l| l.0 == n).copied().unwrap();
        assert_eq!(
            (p.start, p.size),
            (first * 512, (last - first + 1) * 512),
            "partition {n}"
        );
        assert_eq!(e.metadata.as_ref().unwrap().kind, FileKind::Dir);
    }
    assert_eq!(ls[0].partition.as_ref().unwrap().part_type, "EFI System");
    assert_eq!(v.partition(2).unwrap().entry.name.as_deref(), Some("root"));
    // Files in three filesystems of one disk.
    let mut s = String::new();
    v.open_file("/1/EFI/BOOT/BOOTX64.EFI")
        .unwrap()
        .read_to_string(&mut s)
        .unwrap();
    assert_eq!(s, "hello, world\n");
    let e = Expect {
        mtime_ns: false,
        mtime: true,
        fat_time: false,
        unix: true,
        owner: None,
        mode_mask: 0o7777,
        dir_mtime: true,
    };
    compare(&v, "/2", &src, e, &["lost+found"]);
    assert!(v.read_dir("/3").unwrap().is_empty());
    // What is not read says what it is.
    let err = v.ls("/4").unwrap_err();
    assert!(
        matches!(&err, FsError::Unsupported { found } if found.contains("LVM2")),
        "{err}"
    );
    assert!(matches!(v.ls("/9"), Err(FsError::NotFound(_))));
    let s = walk_volume(&v);
    assert_eq!((s.partitions, s.filesystems), (8, 3));
    assert!(s.errors.is_empty(), "{:?}", s.errors);
}

#[test]
fn damaged_primary_gpt_falls_back_to_the_backup() {
    let t = tempfile::tempdir().unwrap();
    let (disk, _) = gpt_disk(t.path());
    let raw = load(&disk);
    // A flipped byte in the primary header, then one in the primary entries.
    for at in [512 + 40, 1024 + 100] {
        let mut bad = raw.clone();
        bad[at] ^= 0x10;
        let v = Volume::open(MemDevice(bad)).unwrap();
        let w = &v.table().warnings;
        assert!(
            w.iter()
                .any(|w| w.contains("primary GPT damaged") && w.contains("backup")),
            "{w:?}"
        );
        assert_eq!(v.partitions().len(), 8);
        assert!(v.metadata("/2/hello.txt").is_ok());
    }
    // The primary gone altogether.
    let mut bad = raw.clone();
    bad[512..1024].fill(0);
    let v = Volume::open(MemDevice(bad)).unwrap();
    assert!(
        v.table().warnings[0].contains("backup"),
        "{:?}",
        v.table().warnings
    );
    assert_eq!(v.partitions().len(), 8);
    // Both damaged: the disk says GPT (protective MBR) and no table can be trusted.
    let mut bad = raw.clone();
    bad[512 + 40] ^= 1;
    let backup = raw.len() - 512;
    bad[backup + 40] ^= 1;
    assert!(matches!(
        Volume::open(MemDevice(bad)),
        Err(FsError::Damaged { .. })
    ));
}

#[test]
fn mbr_with_extended_and_logical_partitions() {
    let t = tempfile::tempdir().unwrap();
    let src = small_src(t.path());
    let disk = image(t.path(), "mbr.img", 200 * MIB);
    let script = "label: dos\nstart=2048, size=65536, type=83\nstart=67584, size=262144, type=5\nstart=69632, size=65536, type=83\nstart=137216, size=81920, type=c\n";
    let out = std::process::Command::new(tool("sfdisk"))
        .arg(&disk)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(script.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    place(&disk, 2048 * 512, &ext4_of(t.path(), &src, 32 * MIB, "first"));
    place(&disk, 69632 * 512, &ext4_of(t.path(), &src, 32 * MIB, "logical"));
    let fat = image(t.path(), "l6.fat", 40 * MIB);
    run("mkfs.fat", &["-F", "32", "-n", "SIXTH", fat.to_str().unwrap()]);
    place(&disk, 137216 * 512, &fat);
    let v = Volume::open(FileDevice::open(&disk).unwrap()).unwrap();
    assert_eq!(v.table().kind, TableKind::Mbr);
    let nums: Vec<(u32, u64, Option<String>)> = v
        .partitions()
        .iter()
        .map(|p| (p.entry.number, p.entry.start, p.label()))
        .collect();
    assert_eq!(
        nums,
        vec![
            (1, 2048 * 512, Some("first".into())),
            (5, 69632 * 512, Some("logical".into())),
            (6, 137216 * 512, Some("SIXTH".into()))
        ]
    );
    assert_eq!(v.metadata("/5/hello.txt").unwrap().size, 13);
    assert_eq!(
        v.partition(6).unwrap().content,
        Content::Filesystem(FsType::Fat32)
    );
    // The second EBR's link pointing at itself: the chain loops, and ends with a warning.
    let mut raw = load(&disk);
    let ext_start = 67584usize;
    let link_at = |ebr: usize| ebr * 512 + 446 + 16;
    let link = u32::from_le_bytes(
        raw[link_at(ext_start) + 8..link_at(ext_start) + 12]
            .try_into()
            .unwrap(),
    ) as usize;
    let second = ext_start + link;
    raw[link_at(second) + 4] = 5;
    raw[link_at(second) + 8..link_at(second) + 12].copy_from_slice(&(link as u32).to_le_bytes());
    raw[link_at(second) + 12..link_at(second) + 16].copy_from_slice(&2048u32.to_le_bytes());
    let v = Volume::open(MemDevice(raw)).unwrap();
    assert!(
        v.table().warnings.iter().any(|w| w.contains("loops")),
        "{:?}",
        v.table().warnings
    );
}

fn ext4_all(dir: &Path, f: Features) -> (Volume, PathBuf, PathBuf) {
    // mke2fs 1.47 cuts times to 32 bits.
    let src = source_tree(dir, Features { y2038: false, ..f });
    let img = image(dir, "all.ext4", 160 * MIB);
    run(
        "mke2fs",
        &[
            "-q",
            "-F",
            "-t",
            "ext4",
            "-I",
            "256",
            "-d",
            src.to_str().unwrap(),
            img.to_str().unwrap(),
        ],
    );
    (
        Volume::open(Cached::new(FileDevice::open(&img).unwrap())).unwrap(),
        src,
        img,
    )
}

#[test]
fn paths_and_symlinks_resolve_like_linux() {
    let t = tempfile::tempdir().unwrap();
    let src = source_tree(
        t.path(),
        Features {
            many: 10,
            big: 1000,
            ..ALL
        },
    );
    // A chain of 41 links: c0 -> c1 -> ... -> c40 -> hello.txt.
    for i in 0..=40 {
        let target = if i == 40 {
            "hello.txt".to_string()
        } else {
            format!("c{}", i + 1)
        };
        std::os::unix::fs::symlink(target, src.join(format!("c{i}"))).unwrap();
    }
    let img = image(t.path(), "p.ext4", 64 * MIB);
    run(
        "mke2fs",
        &[
            "-q",
            "-F",
            "-t",
            "ext4",
            "-d",
            src.to_str().unwrap(),
            img.to_str().unwrap(),
        ],
    );
    let v = Volume::open(FileDevice::open(&img).unwrap()).unwrap();
    let read = |p: &str| -> Result<String, FsError> {
        let mut s = String::new();
        v.open_file(p)?.read_to_string(&mut s).unwrap();
        Ok(s)
    };
    let hello = "hello, world\n";
    // lstat does not follow; open does.
    assert_eq!(v.metadata("/0/link-to-hello").unwrap().kind, FileKind::Symlink);
    assert_eq!(read("/0/link-to-hello").unwrap(), hello);
    // Intermediate links, relative and absolute (from this filesystem's root).
    assert_eq!(read("/0/link-to-dir/file.txt").unwrap(), "in a subdirectory\n");
    assert_eq!(read("/0/dir/sub/up-link").unwrap(), hello);
    assert_eq!(read("/0/absolute-link").unwrap(), "in a subdirectory\n");
    assert_eq!(
        v.metadata("/0/link-to-dir/file.txt").unwrap().kind,
        FileKind::File
    );
    // `..` after a link is the link target's parent, as in Linux; never above the root.
    assert!(matches!(
        read("/0/link-to-dir/../hello.txt"),
        Err(FsError::NotFound(_))
    ));
    assert_eq!(read("/0/link-to-dir/../../hello.txt").unwrap(), hello);
    assert_eq!(read("/0/../../hello.txt").unwrap(), hello);
    assert_eq!(read("/../0/./dir//sub/../../hello.txt").unwrap(), hello);
    // A trailing slash follows a final link; ls lists the link itself otherwise.
    assert_eq!(v.ls("/0/link-to-dir").unwrap().len(), 1);
    let names: Vec<String> = v
        .ls("/0/link-to-dir/")
        .unwrap()
        .iter()
        .map(|e| e.name.to_string_lossy())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    // Loops and Linux's 40-link limit.
    assert!(matches!(read("/0/loop-a"), Err(FsError::SymlinkLoop(_))));
    assert!(v.metadata("/0/loop-a").is_ok());
    assert_eq!(read("/0/c1").unwrap(), hello);
    assert!(matches!(read("/0/c0"), Err(FsError::SymlinkLoop(_))));
    assert!(matches!(read("/0/dangling"), Err(FsError::NotFound(_))));
    assert!(matches!(read("/0/hello.txt/x"), Err(FsError::NotADirectory(_))));
    assert!(matches!(read("/0/dir"), Err(FsError::IsADirectory(_))));
    assert!(matches!(v.ls("0/dir"), Err(FsError::InvalidPath { .. })));
    assert!(matches!(v.ls("/boot"), Err(FsError::InvalidPath { .. })));
    assert_eq!(v.read_link("/0/dir/sub/up-link").unwrap(), b"../../hello.txt");
    assert!(matches!(
        v.read_link("/0/hello.txt"),
        Err(FsError::NotASymlink(_))
    ));
}

#[test]
fn extract_keeps_modes_times_links_and_holes() {
    let t = tempfile::tempdir().unwrap();
    let (v, src, _) = ext4_all(
        t.path(),
        Features {
            many: 200,
            big: 3 << 20,
            ..ALL
        },
    );
    let out = t.path().join("out");
    let report = extract(
        &v,
        &[
            "/0/dir",
            "/0/hello.txt",
            "/0/sparse.img",
            "/0/link-to-hello",
            "/0/deep",
            "/0/fifo",
        ],
        &out,
    )
    .unwrap();
    assert_eq!(report.skipped.len(), 1, "{:?}", report.skipped);
    assert!(report.skipped[0].1.contains("Fifo"));
    let same = |rel: &str| {
        let a = fs::symlink_metadata(src.join(rel)).unwrap();
        let b = fs::symlink_metadata(out.join(rel)).unwrap();
        assert_eq!(a.file_type(), b.file_type(), "{rel}");
        if !a.file_type().is_symlink() {
            assert_eq!(
                a.permissions().mode() & 0o7777,
                b.permissions().mode() & 0o7777,
                "{rel}"
            );
        }
        assert_eq!(a.mtime(), b.mtime(), "{rel}: mtime");
        if a.is_file() {
            assert!(
                fs::read(src.join(rel)).unwrap() == fs::read(out.join(rel)).unwrap(),
                "{rel}"
            );
        }
        if b.file_type().is_symlink() {
            assert_eq!(
                fs::read_link(src.join(rel)).unwrap(),
                fs::read_link(out.join(rel)).unwrap()
            );
        }
    };
    for rel in [
        "dir",
        "dir/sub",
        "dir/sub/file.txt",
        "dir/sub/up-link",
        "dir/empty-dir",
        "hello.txt",
        "sparse.img",
        "link-to-hello",
    ] {
        same(rel);
    }
    // The sparse file stays sparse.
    let m = fs::metadata(out.join("sparse.img")).unwrap();
    assert!(
        m.blocks() * 512 < m.len() / 2,
        "{} blocks for {} bytes",
        m.blocks(),
        m.len()
    );
    let mut deep = out.join("deep");
    for i in 0..24 {
        deep.push(format!("level-{i}"));
    }
    assert_eq!(fs::read(deep.join("bottom.txt")).unwrap(), b"at the bottom\n");
    // Never over something that exists.
    assert!(matches!(
        extract(&v, &["/0/hello.txt"], &out),
        Err(FsError::Extract { .. })
    ));
    // Owners are kept only as root: here the files are ours either way.
    let me = fs::metadata(&out).unwrap().uid();
    assert_eq!(
        fs::metadata(out.join("hello.txt")).unwrap().uid(),
        if me == 0 {
            fs::metadata(src.join("hello.txt")).unwrap().uid()
        } else {
            me
        }
    );
}

#[test]
fn names_that_would_escape_are_skipped() {
    // Rename entries on disk to "../A" and "B/CD" (same lengths), in an image without
    // directory checksums so the change stands.
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    fs::create_dir_all(src.join("d")).unwrap();
    fs::write(src.join("d/AAAA"), b"escape").unwrap();
    fs::write(src.join("d/BBBB"), b"slash").unwrap();
    fs::write(src.join("d/fine"), b"fine").unwrap();
    let img = image(t.path(), "n.ext4", 16 * MIB);
    run(
        "mke2fs",
        &[
            "-q",
            "-F",
            "-t",
            "ext4",
            "-O",
            "^metadata_csum",
            "-d",
            src.to_str().unwrap(),
            img.to_str().unwrap(),
        ],
    );
    let mut raw = load(&img);
    for (from, to) in [(b"AAAA", b"../A"), (b"BBBB", b"B/CD")] {
        let at = raw.windows(4).position(|w| w == from).unwrap();
        raw[at..at + 4].copy_from_slice(to);
    }
    let v = Volume::open(MemDevice(raw)).unwrap();
    let out = t.path().join("out");
    let report = extract(&v, &["/0/d"], &out).unwrap();
    let mut skipped: Vec<&str> = report.skipped.iter().map(|s| s.0.as_str()).collect();
    skipped.sort();
    assert_eq!(skipped, ["/0/d/../A", "/0/d/B/CD"]);
    assert_eq!(fs::read(out.join("d/fine")).unwrap(), b"fine");
    assert!(!t.path().join("A").exists() && !out.join("A").exists() && !out.join("d/B").exists());
    let mut tar = Vec::new();
    let r = write_tar(&v, &["/0/d"], &mut tar).unwrap();
    assert_eq!((r.files, r.skipped.len()), (1, 2));
}

#[test]
fn tar_holds_modes_owners_links_devices_and_long_names() {
    let t = tempfile::tempdir().unwrap();
    let (v, src, _) = ext4_all(
        t.path(),
        Features {
            many: 50,
            big: 2 << 20,
            ..ALL
        },
    );
    let mut buf = Vec::new();
    let report = write_tar(&v, &["/0"], &mut buf).unwrap();
    assert!(
        report.files > 50 && report.symlinks >= 8 && report.specials == 1,
        "{report:?}"
    );
    let mut archive = tar::Archive::new(&buf[..]);
    let mut seen = 0;
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().into_owned();
        let rel: PathBuf = path.components().skip(1).collect();
        if rel.as_os_str().is_empty() || rel.starts_with("lost+found") {
            continue;
        }
        let local = src.join(&rel);
        let m = fs::symlink_metadata(&local).unwrap_or_else(|e| panic!("{}: {e}", rel.display()));
        let h = entry.header();
        assert_eq!(h.mode().unwrap() & 0o7777, m.mode() & 0o7777, "{}", rel.display());
        assert_eq!(
            (h.uid().unwrap(), h.gid().unwrap()),
            (u64::from(m.uid()), u64::from(m.gid()))
        );
        assert_eq!(h.mtime().unwrap() as i64, m.mtime(), "{}", rel.display());
        let ft = m.file_type();
        if ft.is_symlink() {
            assert_eq!(
                entry.link_name().unwrap().unwrap().as_os_str().as_bytes(),
                fs::read_link(&local).unwrap().as_os_str().as_bytes()
            );
        } else if ft.is_file() {
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            assert!(data == fs::read(&local).unwrap(), "{}", rel.display());
        } else if !ft.is_dir() {
            assert_eq!(entry.header().entry_type(), tar::EntryType::Fifo);
        }
        seen += 1;
    }
    // Everything under src, the deep path (over 100 bytes: a GNU long name) among them.
    let total = walk_volume(&v);
    assert!(
        seen as u64 >= total.files + total.symlinks + total.dirs - 3,
        "{seen} entries"
    );
}

#[test]
fn volumes_and_readers_cross_threads() {
    fn shared<T: Send + Sync>() {}
    fn sent<T: Send>() {}
    shared::<Volume>();
    shared::<Cached<FileDevice>>();
    sent::<bulwark_fs::FileReader>();
    let t = tempfile::tempdir().unwrap();
    let (v, _, _) = ext4_all(
        t.path(),
        Features {
            many: 100,
            big: 1 << 20,
            ..ALL
        },
    );
    let v = Arc::new(v);
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let v = v.clone();
            std::thread::spawn(move || {
                let mut data = Vec::new();
                v.open_file(format!("/0/many/entry-{:05}", i * 10))
                    .unwrap()
                    .read_to_end(&mut data)
                    .unwrap();
                v.open_file("/0/big.bin").unwrap().read_to_end(&mut data).unwrap();
                data.len()
            })
        })
        .collect();
    for t in threads {
        assert!(t.join().unwrap() >= 1 << 20);
    }
}

#[test]
fn the_cache_reads_only_what_is_needed_and_ahead() {
    let t = tempfile::tempdir().unwrap();
    let src = small_src(t.path());
    fs::write(src.join("large.bin"), pseudo_random(24 << 20, 11)).unwrap();
    let img = image(t.path(), "c.ext4", 256 * MIB);
    run(
        "mke2fs",
        &[
            "-q",
            "-F",
            "-t",
            "ext4",
            "-d",
            src.to_str().unwrap(),
            img.to_str().unwrap(),
        ],
    );
    let dev = Arc::new(Cached::new(FileDevice::open(&img).unwrap()));
    let v = Volume::open(dev.clone()).unwrap();
    // Listing reads metadata only: a few chunks, not the image.
    v.ls("/0").unwrap();
    let after_ls = dev.bytes_read();
    assert!(after_ls < 8 * MIB, "ls read {after_ls} bytes");
    // A 24 MiB file: about 24 MiB, in reads that grow to 4 MiB, then chunk by chunk in the
    // background.
    let reads_before = dev.reads();
    let mut f = v.open_file("/0/large.bin").unwrap();
    let mut n = 0u64;
    let mut buf = vec![0u8; 65536];
    loop {
        let k = f.read(&mut buf).unwrap();
        if k == 0 {
            break;
        }
        n += k as u64;
    }
    assert_eq!(n, 24 << 20);
    let file_bytes = dev.bytes_read() - after_ls;
    // (Past the file's end, at most the rest of the read-ahead window it ends in and the two
    // after it, of 4 MiB each, come in the background.)
    assert!(
        (24 * MIB..36 * MIB + bulwark_fs::CHUNK_SIZE).contains(&file_bytes),
        "read {file_bytes} bytes for 24 MiB"
    );
    let reads = dev.reads() - reads_before;
    assert!(reads <= 4 + 66, "{reads} reads for 24 MiB");
    // Read again: all cached (64 MiB cache), but for at most the two windows the background
    // read-ahead takes past where the reader stops (8 MiB).
    let before = dev.bytes_read();
    std::io::copy(&mut v.open_file("/0/large.bin").unwrap(), &mut std::io::sink()).unwrap();
    assert!(
        dev.bytes_read() - before <= 8 * MIB,
        "read {} bytes again",
        dev.bytes_read() - before
    );
}
