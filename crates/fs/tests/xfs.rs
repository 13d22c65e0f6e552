//! XFS images made with `mkfs.xfs -p PROTOFILE` (no root, no mount), read back and compared
//! entry by entry with the source tree; then damaged ones.
//!
//! What mkfs can make, the tests check with `xfs_db` that they made: short-form, block,
//! leaf, node and btree-format directories (a directory of 10,000 entries, and one whose
//! blocks interleave with its files' data), local and remote symlinks, devices, FIFOs, v4
//! and v5, several AGs. What it cannot make, the test makes by rewriting an image and has
//! `xfs_repair -n` confirm the result is valid XFS: a regular file in btree format with
//! holes and an unwritten extent, and (mkfs 6.1 writes them without their header) v5
//! remote symlink blocks. Not covered: mtimes as the source had them (protofiles set the
//! time of mkfs), names with spaces or colons (protofile syntax), the sticky bit, hard
//! links.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bulwark_fs::{
    walk_all, walk_volume, Cached, Content, Device, FileDevice, FileKind, FsError, FsType, MemDevice, Volume,
};
use common::*;

/// The variables that let mkfs.xfs make filesystems under 300 MB (as fstests does).
const SMALL: &[(&str, &str)] = &[("TEST_DEV", "1"), ("TEST_DIR", "1"), ("QA_CHECK_FS", "1")];

/// The owner the protofile gives a source path: a function of the path, so every entry's
/// differs and a wrong inode shows.
fn owner_of(p: &Path) -> (u32, u32) {
    let h = p
        .as_os_str()
        .as_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
    (1000 + (h % 97) as u32, 2000 + ((h >> 8) % 89) as u32)
}

fn mode_str(kind: char, mode: u32) -> String {
    let u = if mode & 0o4000 != 0 { 'u' } else { '-' };
    let g = if mode & 0o2000 != 0 { 'g' } else { '-' };
    format!("{kind}{u}{g}{:03o}", mode & 0o777)
}

/// A protofile for the tree at `src`, plus `extra` lines in the root.
fn protofile(src: &Path, extra: &[&str]) -> String {
    fn dir(p: &Path, out: &mut String) {
        let mut names: Vec<_> = fs::read_dir(p).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        for n in names {
            let lp = p.join(&n);
            let m = fs::symlink_metadata(&lp).unwrap();
            let (uid, gid) = owner_of(&lp);
            let name = n.to_str().unwrap();
            assert!(
                !name.contains(' ') && !name.contains(':'),
                "protofiles cannot name {name:?}"
            );
            let ft = m.file_type();
            if ft.is_dir() {
                out.push_str(&format!("{name} {} {uid} {gid}\n", mode_str('d', m.mode())));
                dir(&lp, out);
                out.push_str("$\n");
            } else if ft.is_symlink() {
                let t = fs::read_link(&lp).unwrap();
                out.push_str(&format!("{name} l--777 {uid} {gid} {}\n", t.to_str().unwrap()));
            } else if ft.is_file() {
                out.push_str(&format!(
                    "{name} {} {uid} {gid} {}\n",
                    mode_str('-', m.mode()),
                    lp.to_str().unwrap()
                ));
            } else {
                out.push_str(&format!("{name} {} {uid} {gid}\n", mode_str('p', m.mode())));
            }
        }
    }
    let mut out = String::from("bulwark-fs-test\n0 0\nd--755 0 0\n");
    dir(src, &mut out);
    for e in extra {
        out.push_str(e);
        out.push('\n');
    }
    out.push_str("$\n$\n");
    out
}

/// The XFS source tree: everything but names with spaces, plus directories sized for each
/// directory form and one whose blocks interleave with its files' data (btree format).
fn xfs_tree(dir: &Path, f: Features) -> PathBuf {
    let src = source_tree(dir, f);
    let mk = |name: &str, n: usize, data: bool| {
        let d = src.join(name);
        fs::create_dir_all(&d).unwrap();
        for i in 0..n {
            let body = if data {
                pseudo_random(600, i as u64)
            } else {
                Vec::new()
            };
            fs::write(d.join(format!("entry-{i:05}")), body).unwrap();
        }
    };
    mk("blockdir", 40, false);
    mk("leafdir", 300, false);
    mk("fragdir", 3000, true);
    src
}

fn mkfs(dir: &Path, name: &str, size: u64, args: &[&str], proto: &str) -> PathBuf {
    let img = image(dir, name, size);
    let pf = dir.join(format!("{name}.proto"));
    fs::write(&pf, proto).unwrap();
    let mut a = vec!["-q", "-f", "-p", pf.to_str().unwrap()];
    a.extend_from_slice(args);
    a.push(img.to_str().unwrap());
    run_env("mkfs.xfs", &a, SMALL);
    img
}

fn db(img: &Path, cmds: &[&str]) -> String {
    let mut a = vec!["-r"];
    for c in cmds {
        a.push("-c");
        a.push(c);
    }
    a.push(img.to_str().unwrap());
    run("xfs_db", &a)
}

/// A field `name = value` from xfs_db's output.
fn field(out: &str, name: &str) -> String {
    out.lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{name} = ")))
        .unwrap_or_else(|| panic!("no {name} in {out}"))
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// An inode's data fork format and extent count, as xfs_db reads them.
fn fork(img: &Path, path: &str) -> (u32, u64) {
    let out = db(img, &[&format!("path {path}"), "p core.format core.nextents"]);
    (
        field(&out, "core.format").parse().unwrap(),
        field(&out, "core.nextents").parse().unwrap(),
    )
}

struct Geometry {
    block: u64,
    agblocks: u64,
    agblklog: u32,
    inopblog: u32,
    uuid: [u8; 16],
}

fn geometry(img: &Path) -> Geometry {
    let out = db(img, &["sb 0", "p blocksize agblocks agblklog inopblog"]);
    let raw = fs::read(img).unwrap();
    Geometry {
        block: field(&out, "blocksize").parse().unwrap(),
        agblocks: field(&out, "agblocks").parse().unwrap(),
        agblklog: field(&out, "agblklog").parse().unwrap(),
        inopblog: field(&out, "inopblog").parse().unwrap(),
        uuid: raw[32..48].try_into().unwrap(),
    }
}

impl Geometry {
    fn byte(&self, fsb: u64) -> u64 {
        ((fsb >> self.agblklog) * self.agblocks + (fsb & ((1 << self.agblklog) - 1))) * self.block
    }
}

/// The extents xfs_db maps for a path: (file block, fs block, count, unwritten).
fn bmap(img: &Path, path: &str) -> Vec<(u64, u64, u64, bool)> {
    db(img, &[&format!("path {path}"), "bmap"])
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            // "data offset 0 startblock 24 (0/24) count 3185 flag 0"
            (w.first() == Some(&"data")).then(|| {
                (
                    w[2].parse().unwrap(),
                    w[4].parse().unwrap(),
                    w[7].parse().unwrap(),
                    w[9] == "1",
                )
            })
        })
        .collect()
}

/// The magic of the directory block at a directory's logical block `fb`.
fn da_magic(img: &Path, g: &Geometry, dir: &str, fb: u64) -> Option<u16> {
    let raw = fs::read(img).unwrap();
    bmap(img, dir)
        .iter()
        .find(|e| e.0 <= fb && fb < e.0 + e.2)
        .map(|e| {
            let at = g.byte(e.1 + (fb - e.0)) as usize + 8;
            u16::from_be_bytes([raw[at], raw[at + 1]])
        })
}

fn inode_of(img: &Path, path: &str) -> u64 {
    let (parent, name) = path.rsplit_once('/').unwrap();
    let out = db(
        img,
        &[
            &format!("path {}", if parent.is_empty() { "/" } else { parent }),
            "ls",
        ],
    );
    out.lines()
        .find_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w.len() >= 6 && w[5] == name).then(|| w[1].parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no {path} in {out}"))
}

fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Sets the little-endian CRC at `off` of `block` over the block.
fn set_crc(block: &mut [u8], off: usize) {
    block[off..off + 4].fill(0);
    let c = crc32c(block);
    block[off..off + 4].copy_from_slice(&c.to_le_bytes());
}

fn write_at(img: &Path, at: u64, data: &[u8]) {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = fs::OpenOptions::new().write(true).open(img).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(data).unwrap();
}

fn repair_ok(img: &Path) {
    run("xfs_repair", &["-n", "-f", img.to_str().unwrap()]);
}

/// mkfs 6.1 writes v5 remote symlinks without their XSLM header (xfs_repair rejects
/// them): give each its header (magic, offset, bytes, CRC, UUID, owner, block number).
fn fix_remote_symlinks(img: &Path, g: &Geometry, paths: &[&str]) {
    for path in paths {
        let ino = inode_of(img, path);
        let exts = bmap(img, path);
        let raw = fs::read(img).unwrap();
        let mut target = Vec::new();
        for e in &exts {
            for k in 0..e.2 {
                let at = g.byte(e.1 + k) as usize;
                target.extend_from_slice(&raw[at..at + g.block as usize]);
            }
        }
        if &target[..4] == b"XSLM" {
            continue;
        }
        let size: usize = field(&db(img, &[&format!("path {path}"), "p core.size"]), "core.size")
            .parse()
            .unwrap();
        target.truncate(size);
        let per = g.block as usize - 56;
        for (i, piece) in target.chunks(per).enumerate() {
            let fb = i as u64;
            let e = exts.iter().find(|e| e.0 <= fb && fb < e.0 + e.2).unwrap();
            let at = g.byte(e.1 + (fb - e.0));
            let mut b = vec![0u8; g.block as usize];
            b[..4].copy_from_slice(b"XSLM");
            b[4..8].copy_from_slice(&((i * per) as u32).to_be_bytes());
            b[8..12].copy_from_slice(&(piece.len() as u32).to_be_bytes());
            b[16..32].copy_from_slice(&g.uuid);
            b[32..40].copy_from_slice(&ino.to_be_bytes());
            b[40..48].copy_from_slice(&(at / 512).to_be_bytes());
            b[56..56 + piece.len()].copy_from_slice(piece);
            set_crc(&mut b, 12);
            write_at(img, at, &b);
        }
    }
}

fn expect() -> Expect {
    Expect {
        mtime_ns: false,
        mtime: false,
        fat_time: false,
        unix: true,
        owner: Some(owner_of),
        mode_mask: 0o6777,
        dir_mtime: false,
    }
}

/// Checks the forms the tree was built to have, with xfs_db.
fn assert_forms(img: &Path, g: &Geometry, v5: bool) {
    let leaf_fb = (1u64 << 35) / g.block;
    let (leaf1, node) = if v5 { (0x3df1, 0x3ebe) } else { (0xd2f1, 0xfebe) };
    assert_eq!(fork(img, "/dir/sub").0, 1, "/dir/sub is short-form");
    assert_eq!(fork(img, "/blockdir"), (2, 1), "/blockdir is one block");
    assert_eq!(
        da_magic(img, g, "/leafdir", leaf_fb),
        Some(leaf1),
        "/leafdir has a single leaf"
    );
    assert_eq!(
        da_magic(img, g, "/many", leaf_fb),
        Some(node),
        "/many is a node directory"
    );
    assert_eq!(fork(img, "/fragdir").0, 3, "/fragdir's fork is a btree");
    assert_eq!(fork(img, "/hello.txt").0, 2, "files are extents");
    assert_eq!(fork(img, "/link-to-hello").0, 1, "short symlinks are local");
    assert_eq!(fork(img, "/long-link").0, 2, "long symlinks are remote");
}

fn check(img: &Path, src: &Path, v5: bool) -> Volume {
    let g = geometry(img);
    assert_forms(img, &g, v5);
    let before = std::time::SystemTime::now();
    let volume = Volume::open(Cached::new(FileDevice::open(img).unwrap())).unwrap();
    let p = volume.partition(0).unwrap();
    assert_eq!(p.content, Content::Filesystem(FsType::Xfs));
    assert!(p.error.is_none(), "{:?}", p.error);
    assert_eq!(p.label().as_deref(), Some("xfsroot"));
    let n = compare(&volume, "/0", src, expect(), &["blockdev", "chardev"]);
    assert!(n > 13_000, "compared {n}");
    let s = walk_volume(&volume);
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    // Several AGs hold inodes (mkfs spreads directories over them).
    let agino_bits = g.agblklog + g.inopblog;
    let mut ags = std::collections::BTreeSet::new();
    for e in volume
        .ls("/0")
        .unwrap()
        .into_iter()
        .chain(volume.ls("/0/many").unwrap())
    {
        ags.insert(e.metadata.unwrap().ino >> agino_bits);
    }
    assert!(ags.len() > 1, "inodes only in AGs {ags:?}");
    // Devices from the protofile.
    let b = volume.metadata("/0/blockdev").unwrap();
    assert_eq!(
        (b.kind, b.rdev, b.mode),
        (FileKind::BlockDevice, Some((8, 1)), 0o640)
    );
    let c = volume.metadata("/0/chardev").unwrap();
    assert_eq!(
        (c.kind, c.rdev, c.uid, c.gid),
        (FileKind::CharDevice, Some((4, 64)), 7, 8)
    );
    // Times are mkfs's: now, with nanoseconds, the same as xfs_db's.
    let m = volume.metadata("/0/hello.txt").unwrap();
    let now = before.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!((now - m.mtime.secs).abs() < 600, "mtime {:?}", m.mtime);
    let ns: u32 = field(
        &db(img, &["path /hello.txt", "p core.mtime.nsec"]),
        "core.mtime.nsec",
    )
    .parse()
    .unwrap();
    assert_eq!(m.mtime.nanos, ns);
    assert_eq!(m.crtime.is_some(), v5);
    volume
}

const DEVICES: &[&str] = &["blockdev b--640 0 0 8 1", "chardev c--600 7 8 4 64"];

#[test]
fn xfs_v5_every_directory_form_and_symlinks() {
    let t = tempfile::tempdir().unwrap();
    let src = xfs_tree(t.path(), Features { spaces: false, ..ALL });
    let img = mkfs(
        t.path(),
        "v5.img",
        320 << 20,
        &["-L", "xfsroot", "-d", "agcount=4"],
        &protofile(&src, DEVICES),
    );
    let g = geometry(&img);
    fix_remote_symlinks(&img, &g, &["/long-link"]);
    repair_ok(&img);
    check(&img, &src, true);
}

#[test]
fn xfs_v4_without_ftype() {
    let t = tempfile::tempdir().unwrap();
    let src = xfs_tree(
        t.path(),
        Features {
            spaces: false,
            big: 4 << 20,
            ..ALL
        },
    );
    let img = mkfs(
        t.path(),
        "v4.img",
        200 << 20,
        &[
            "-L",
            "xfsroot",
            "-m",
            "crc=0",
            "-n",
            "ftype=0",
            "-i",
            "size=256",
            "-d",
            "agcount=3",
        ],
        &protofile(&src, DEVICES),
    );
    repair_ok(&img);
    let v = check(&img, &src, false);
    // Without ftype, entries carry no kind: the reader asked the inodes.
    assert!(v.read_dir("/0").unwrap().iter().all(|e| e.kind.is_none()));
}

#[test]
fn xfs_v4_512_byte_blocks_multi_block_remote_symlink() {
    // 512-byte blocks: a 1000-byte symlink spans two blocks; 4 KiB directory blocks span
    // eight filesystem blocks (-n size=4096). (v5's remote symlinks of more than one block
    // cannot be made: mkfs 6.1 allocates them without room for their headers.)
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    fs::create_dir_all(src.join("d")).unwrap();
    let target = "x/".repeat(500);
    std::os::unix::fs::symlink(&target, src.join("two-block-link")).unwrap();
    for i in 0..2000 {
        fs::write(src.join("d").join(format!("f{i}")), b"data").unwrap();
    }
    let img = mkfs(
        t.path(),
        "512.img",
        64 << 20,
        &[
            "-L",
            "xfsroot",
            "-m",
            "crc=0",
            "-b",
            "size=512",
            "-n",
            "size=4096",
        ],
        &protofile(&src, &[]),
    );
    repair_ok(&img);
    assert_eq!(bmap(&img, "/two-block-link").iter().map(|e| e.2).sum::<u64>(), 2);
    let v = Volume::open(FileDevice::open(&img).unwrap()).unwrap();
    assert_eq!(v.read_link("/0/two-block-link").unwrap(), target.as_bytes());
    let mut e = expect();
    e.mode_mask = 0o7777;
    compare(&v, "/0", &src, e, &[]);
    assert!(walk_volume(&v).errors.is_empty());
}

/// Rewrites a contiguous 64-block file into a btree-format one: 40 one-block extents at
/// every other file block (holes between), 20 unwritten blocks, 3 more written; the last
/// of its blocks becomes the bmap btree leaf. The same blocks stay owned, so xfs_repair
/// accepts it. Returns what the file must now read as.
fn make_btree_file(img: &Path, g: &Geometry, path: &str, original: &[u8]) -> Vec<u8> {
    let ino = inode_of(img, path);
    let exts = bmap(img, path);
    assert_eq!(exts.len(), 1, "{path} is contiguous");
    let (_, start, count, _) = exts[0];
    assert_eq!(count, 64);
    let bs = g.block as usize;
    // (file block, fs block, count, unwritten)
    let mut recs: Vec<(u64, u64, u64, bool)> = (0..40).map(|i| (2 * i, start + i, 1, false)).collect();
    recs.push((80, start + 40, 20, true));
    recs.push((100, start + 60, 3, false));
    let leaf = start + 63;
    let mut want = vec![0u8; 103 * bs];
    for &(off, fsb, n, unwritten) in &recs {
        if !unwritten {
            let src = (fsb - start) as usize * bs;
            want[off as usize * bs..(off + n) as usize * bs]
                .copy_from_slice(&original[src..src + n as usize * bs]);
        }
    }
    // The leaf block.
    let leaf_at = g.byte(leaf);
    let mut b = vec![0u8; bs];
    b[..4].copy_from_slice(b"BMA3");
    b[6..8].copy_from_slice(&(recs.len() as u16).to_be_bytes());
    b[8..16].fill(0xff);
    b[16..24].fill(0xff);
    b[24..32].copy_from_slice(&(leaf_at / 512).to_be_bytes());
    b[40..56].copy_from_slice(&g.uuid);
    b[56..64].copy_from_slice(&ino.to_be_bytes());
    for (i, &(off, fsb, n, unwritten)) in recs.iter().enumerate() {
        let l0 = (u64::from(unwritten) << 63) | (off << 9) | (fsb >> 43);
        let l1 = ((fsb & ((1 << 43) - 1)) << 21) | n;
        b[72 + i * 16..80 + i * 16].copy_from_slice(&l0.to_be_bytes());
        b[80 + i * 16..88 + i * 16].copy_from_slice(&l1.to_be_bytes());
    }
    set_crc(&mut b, 64);
    write_at(img, leaf_at, &b);
    // The inode: btree format, 42 extents, the new size, the root in the fork.
    let at: u64 = db(img, &[&format!("convert ino {ino} byte")])
        .split_whitespace()
        .nth(1)
        .unwrap()
        .trim_matches(|c| c == '(' || c == ')')
        .parse()
        .unwrap();
    let isize = 512usize;
    let raw = fs::read(img).unwrap();
    let mut inode = raw[at as usize..at as usize + isize].to_vec();
    inode[5] = 3;
    inode[56..64].copy_from_slice(&((103 * bs) as u64).to_be_bytes());
    inode[76..80].copy_from_slice(&(recs.len() as u32).to_be_bytes());
    let fork = &mut inode[176..];
    fork.fill(0);
    let maxrecs = (fork.len() - 4) / 16;
    fork[0..2].copy_from_slice(&1u16.to_be_bytes());
    fork[2..4].copy_from_slice(&1u16.to_be_bytes());
    fork[4..12].copy_from_slice(&0u64.to_be_bytes());
    fork[4 + maxrecs * 8..12 + maxrecs * 8].copy_from_slice(&leaf.to_be_bytes());
    set_crc(&mut inode, 100);
    write_at(img, at, &inode);
    want
}

#[test]
fn xfs_btree_file_with_holes_and_unwritten_extent() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    fs::create_dir_all(&src).unwrap();
    let original = pseudo_random(64 * 4096, 9);
    fs::write(src.join("frag.bin"), &original).unwrap();
    let img = mkfs(
        t.path(),
        "bt.img",
        64 << 20,
        &["-L", "xfsroot"],
        &protofile(&src, &[]),
    );
    let g = geometry(&img);
    let want = make_btree_file(&img, &g, "/frag.bin", &original);
    repair_ok(&img);
    assert_eq!(fork(&img, "/frag.bin"), (3, 42));
    let v = Volume::open(Cached::new(FileDevice::open(&img).unwrap())).unwrap();
    let mut got = Vec::new();
    v.open_file("/0/frag.bin").unwrap().read_to_end(&mut got).unwrap();
    assert!(got == want, "btree file reads wrong");
    let mut f = v.open_file("/0/frag.bin").unwrap();
    // Data at block 0, a hole at 1, data at 2; the unwritten run 80..100 is not data.
    assert_eq!(f.data().next_data(4096).unwrap(), Some(2 * 4096));
    assert_eq!(f.data().next_data(79 * 4096 + 1).unwrap(), Some(100 * 4096));
    assert_eq!(v.metadata("/0/frag.bin").unwrap().size, 103 * 4096);
}

fn fuzz_image(dir: &Path, crc: &str) -> (Vec<u8>, Vec<u64>) {
    let src = dir.join("src");
    fs::create_dir_all(src.join("d/e")).unwrap();
    for i in 0..400 {
        fs::write(
            src.join("d").join(format!("file-{i}")),
            pseudo_random(i * 37 % 9000, i as u64),
        )
        .unwrap();
    }
    for i in 0..20 {
        fs::write(src.join("d/e").join(format!("f{i}")), b"x").unwrap();
        std::os::unix::fs::symlink(format!("../file-{i}"), src.join("d/e").join(format!("l{i}"))).unwrap();
    }
    let img = mkfs(
        dir,
        "fuzz.img",
        24 << 20,
        &["-L", "xfsroot", "-m", crc],
        &protofile(&src, &[]),
    );
    let raw = load(&img);
    let blocks = written_blocks(&raw);
    (raw, blocks)
}

#[test]
fn damaged_xfs_is_an_error() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    fs::create_dir_all(src.join("dir")).unwrap();
    fs::write(src.join("dir/hello"), b"hello\n").unwrap();
    let img = mkfs(
        t.path(),
        "d.img",
        24 << 20,
        &["-L", "xfsroot"],
        &protofile(&src, &[]),
    );
    let raw = load(&img);
    let open = |b: Vec<u8>| Volume::open(MemDevice(b)).unwrap();
    // The superblock's CRC.
    let mut bad = raw.clone();
    bad[8] ^= 1;
    let v = open(bad);
    assert!(
        v.partition(0).unwrap().error.as_deref().unwrap().contains("CRC"),
        "{:?}",
        v.partition(0).unwrap().error
    );
    // An inode's CRC.
    let g = geometry(&img);
    let ino = inode_of(&img, "/dir/hello");
    let agino_bits = g.agblklog + g.inopblog;
    let agbno = (ino & ((1 << agino_bits) - 1)) >> g.inopblog;
    let at = ((ino >> agino_bits) * g.agblocks + agbno) * g.block + (ino & ((1 << g.inopblog) - 1)) * 512;
    let mut bad = raw.clone();
    bad[at as usize + 40] ^= 1;
    let err = open(bad).metadata("/0/dir/hello").unwrap_err();
    assert!(
        matches!(&err, FsError::Damaged { what, .. } if what.contains("CRC")),
        "{err}"
    );
    // Cut short: the superblock says more blocks than there are.
    let v = open(raw[..raw.len() / 2].to_vec());
    assert!(v.partition(0).unwrap().error.is_some());
}

#[test]
fn corrupt_random_bytes_and_walk_everything() {
    // v4 (no CRCs: damage reaches the decoders instead of stopping at a checksum) and
    // deterministic: 400 corruptions of 1-32 bytes in written blocks, each walked whole.
    let t = tempfile::tempdir().unwrap();
    let (raw, blocks) = fuzz_image(t.path(), "crc=0");
    let base: Arc<dyn Device> = Arc::new(MemDevice(raw.clone()));
    let clean = walk_all(base.clone()).unwrap();
    assert!(clean.errors.is_empty(), "{:?}", clean.errors);
    let mut damaged = 0;
    for seed in 1..=400u64 {
        let mut rng = Rng(seed * 7919);
        let mut flips = BTreeMap::new();
        for _ in 0..1 + rng.below(32) {
            let block = blocks[rng.below(blocks.len() as u64) as usize];
            flips.insert(block + rng.below(4096), (rng.next() as u8) | 1);
        }
        let dev = Flipped {
            base: base.clone(),
            flips,
            len: raw.len() as u64,
        };
        match walk_all(dev) {
            Ok(s) if s != clean => damaged += 1,
            Ok(_) => {}
            Err(_) => damaged += 1,
        }
    }
    // Most flips land in file data, which has no checksum on v4 and changes no count.
    assert!(
        damaged > 20,
        "only {damaged} corruptions changed what the walk saw"
    );
    for cut in [512u64, 4096, 65536, 1 << 20, raw.len() as u64 - 1] {
        let dev = Flipped {
            base: base.clone(),
            flips: BTreeMap::new(),
            len: cut,
        };
        let _ = walk_all(dev);
    }
}

#[test]
fn corrupt_v5_and_walk_everything() {
    // v5: most damage stops at a CRC; what gets past (a CRC flipped to match is not
    // possible by chance) must still end without a panic.
    let t = tempfile::tempdir().unwrap();
    let (raw, blocks) = fuzz_image(t.path(), "crc=1");
    let base: Arc<dyn Device> = Arc::new(MemDevice(raw.clone()));
    assert!(walk_all(base.clone()).unwrap().errors.is_empty());
    let mut errors = 0;
    for seed in 1..=200u64 {
        let mut rng = Rng(seed * 6007);
        let mut flips = BTreeMap::new();
        for _ in 0..1 + rng.below(8) {
            let block = blocks[rng.below(blocks.len() as u64) as usize];
            flips.insert(block + rng.below(4096), (rng.next() as u8) | 1);
        }
        match walk_all(Flipped {
            base: base.clone(),
            flips,
            len: raw.len() as u64,
        }) {
            Ok(s) => errors += s.error_count.min(1),
            Err(_) => errors += 1,
        }
    }
    assert!(errors > 20, "only {errors} corruptions were errors");
}
