//! Shared by the integration tests: the Debian tools that build images without root or
//! mounts, a source tree of every kind of entry, and the comparison of a volume's tree
//! against the source it was built from.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use bulwark_fs::{FileKind, Volume};

/// The path of a tool the tests need; panics naming scripts/fs-tools when it is missing.
pub fn tool(name: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from));
    for d in dirs {
        let p = d.join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "`{name}` is not installed: run scripts/fs-tools (as root) to install the Debian packages the \
         filesystem tests build their images with"
    );
}

/// Runs a tool and asserts it succeeded; returns its standard output.
pub fn run(name: &str, args: &[&str]) -> String {
    run_env(name, args, &[])
}

pub fn run_env(name: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let mut c = Command::new(tool(name));
    c.args(args).envs(env.iter().copied());
    let out = c.output().unwrap_or_else(|e| panic!("running {name}: {e}"));
    assert!(
        out.status.success(),
        "{name} {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a tool that may exit with a status in `ok` (e2fsck says 1 when it changed things).
pub fn run_ok(name: &str, args: &[&str], ok: &[i32]) -> String {
    let out = Command::new(tool(name))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {name}: {e}"));
    let code = out.status.code().unwrap_or(-1);
    assert!(
        ok.contains(&code),
        "{name} {args:?} exited {code}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A sparse image file of `size` bytes.
pub fn image(dir: &Path, name: &str, size: u64) -> PathBuf {
    let p = dir.join(name);
    let f = fs::File::create(&p).unwrap();
    f.set_len(size).unwrap();
    p
}

/// Deterministic bytes: xorshift from `seed`.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A small deterministic generator for the corruption tests.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// What the source tree holds: which kinds of entry, and which names a filesystem allows.
#[derive(Clone, Copy)]
pub struct Features {
    pub symlinks: bool,
    pub fifo: bool,
    /// Names with spaces (mkfs.xfs protofiles have none).
    pub spaces: bool,
    /// Subdirectories (ntfs-3g's tools cannot make them without mounting).
    pub subdirs: bool,
    /// Entries in the directory of many.
    pub many: usize,
    /// Size of the big file.
    pub big: usize,
    /// Sparse files.
    pub sparse: bool,
    /// A time past 2038 (setuid-prog's mtime), which 128-byte ext inodes cannot hold.
    pub y2038: bool,
    /// Names in the directory of many that fit 8.3 (mtools takes quadratic time to find
    /// unique short names for thousands of long ones).
    pub short_names: bool,
}

pub const ALL: Features = Features {
    symlinks: true,
    fifo: true,
    spaces: true,
    subdirs: true,
    many: 10_000,
    big: 24 << 20,
    sparse: true,
    y2038: true,
    short_names: false,
};

/// A fixed time with nanoseconds: 2001-02-03T04:05:06.123456789Z.
pub const T1: (i64, u32) = (981_173_106, 123_456_789);
/// 2038-01-20T00:00:02.5Z: past the 32-bit signed limit (ext4 epoch bits, XFS bigtime).
pub const T2: (i64, u32) = (2_147_558_402, 500_000_000);

fn set_mtime(p: &Path, t: (i64, u32)) {
    let ft = filetime::FileTime::from_unix_time(t.0, t.1);
    filetime::set_symlink_file_times(p, ft, ft).unwrap();
}

/// Builds the source tree under `dir/src` and returns it.
pub fn source_tree(dir: &Path, f: Features) -> PathBuf {
    let src = dir.join("src");
    fs::create_dir_all(&src).unwrap();
    let w = |rel: &str, data: &[u8], mode: u32| {
        let p = src.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, data).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        p
    };
    let hello = w("hello.txt", b"hello, world\n", 0o644);
    set_mtime(&hello, T1);
    w("empty", b"", 0o600);
    w("exec.sh", b"#!/bin/sh\necho hi\n", 0o755);
    w("medium.txt", &pseudo_random(100, 4), 0o644);
    let suid = w("setuid-prog", b"\x7fELF not really", 0o4755);
    set_mtime(&suid, if f.y2038 { T2 } else { T1 });
    w("ünïcödé-名前.txt", "grüße\n".as_bytes(), 0o640);
    w("big.bin", &pseudo_random(f.big, 1), 0o644);
    if f.spaces {
        w("name with spaces.txt", b"spaces\n", 0o644);
    }
    if f.sparse {
        // 16 MiB with data at the start, at 5 MiB and at the end; holes between.
        let p = src.join("sparse.img");
        let mut file = fs::File::create(&p).unwrap();
        file.write_all(&pseudo_random(4096, 2)).unwrap();
        use std::io::{Seek, SeekFrom};
        file.seek(SeekFrom::Start(5 << 20)).unwrap();
        file.write_all(&pseudo_random(8192, 3)).unwrap();
        file.seek(SeekFrom::Start((16 << 20) - 3)).unwrap();
        file.write_all(b"end").unwrap();
    }
    if f.subdirs {
        fs::create_dir_all(src.join("dir/empty-dir")).unwrap();
        w("dir/sub/file.txt", b"in a subdirectory\n", 0o644);
        let mut deep = String::from("deep");
        for i in 0..24 {
            deep.push_str(&format!("/level-{i}"));
        }
        w(&format!("{deep}/bottom.txt"), b"at the bottom\n", 0o644);
        fs::set_permissions(src.join("dir/sub"), fs::Permissions::from_mode(0o2750)).unwrap();
        fs::set_permissions(src.join("dir/empty-dir"), fs::Permissions::from_mode(0o1777)).unwrap();
        if f.many > 0 {
            let many = src.join("many");
            fs::create_dir_all(&many).unwrap();
            for i in 0..f.many {
                let name = if f.short_names {
                    format!("e{i:05}")
                } else {
                    format!("entry-{i:05}")
                };
                fs::write(
                    many.join(name),
                    if i % 1000 == 0 {
                        format!("{i}\n")
                    } else {
                        String::new()
                    },
                )
                .unwrap();
            }
        }
        set_mtime(&src.join("dir"), T1);
    }
    if f.symlinks {
        let l = |target: &str, rel: &str| std::os::unix::fs::symlink(target, src.join(rel)).unwrap();
        l("hello.txt", "link-to-hello");
        l("dir/sub", "link-to-dir");
        l("../../hello.txt", "dir/sub/up-link");
        l("/dir/sub/file.txt", "absolute-link");
        l("does-not-exist", "dangling");
        l(&"long/".repeat(80), "long-link");
        l("loop-b", "loop-a");
        l("loop-a", "loop-b");
    }
    if f.fifo {
        run("mkfifo", &[src.join("fifo").to_str().unwrap()]);
    }
    src
}

/// The owner a protofile gave a source path.
pub type OwnerOf = fn(&Path) -> (u32, u32);

/// Which metadata a filesystem keeps, to compare with the source.
#[derive(Clone, Copy)]
pub struct Expect {
    /// mtime to the nanosecond; else to the second (small ext inodes); `fat` to 2 s.
    pub mtime_ns: bool,
    pub mtime: bool,
    pub fat_time: bool,
    /// Modes and owners as the source's (else the FAT/NTFS fixed ones).
    pub unix: bool,
    /// Owners: the source's (else a function of the path, for protofiles).
    pub owner: Option<OwnerOf>,
    /// The mode bits kept (protofiles have no sticky bit).
    pub mode_mask: u32,
    /// Directories' mtimes too (mtools and ntfscp set only files').
    pub dir_mtime: bool,
}

/// Compares every entry under `src` with the volume's tree under `prefix` (`/N`): kinds,
/// sizes, modes, owners, mtimes as `e` says, symlink targets, every byte of every file,
/// and each directory's names. Returns how many entries were compared.
pub fn compare(volume: &Volume, prefix: &str, src: &Path, e: Expect, extra: &[&str]) -> usize {
    let mut count = 0;
    let mut stack = vec![(src.to_path_buf(), prefix.to_string())];
    while let Some((local, vpath)) = stack.pop() {
        let mut want: BTreeSet<Vec<u8>> = BTreeSet::new();
        for ent in fs::read_dir(&local).unwrap() {
            let ent = ent.unwrap();
            want.insert(ent.file_name().as_bytes().to_vec());
        }
        let mut got: BTreeSet<Vec<u8>> = volume
            .read_dir(&vpath)
            .unwrap_or_else(|e| panic!("{vpath}: {e}"))
            .into_iter()
            .map(|e| e.name.0)
            .collect();
        if vpath == prefix {
            for x in extra {
                got.remove(x.as_bytes());
            }
        }
        assert_eq!(
            got.iter()
                .map(|n| String::from_utf8_lossy(n).into_owned())
                .collect::<Vec<_>>(),
            want.iter()
                .map(|n| String::from_utf8_lossy(n).into_owned())
                .collect::<Vec<_>>(),
            "listing of {vpath}"
        );
        for name in want {
            let lp = local.join(std::ffi::OsStr::from_bytes(&name));
            let mut vp = vpath.clone().into_bytes();
            vp.push(b'/');
            vp.extend_from_slice(&name);
            let shown = String::from_utf8_lossy(&vp).into_owned();
            let lm = fs::symlink_metadata(&lp).unwrap();
            let vm = volume
                .metadata(&vp)
                .unwrap_or_else(|err| panic!("{shown}: {err}"));
            count += 1;
            let kind = if lm.file_type().is_symlink() {
                FileKind::Symlink
            } else if lm.is_dir() {
                FileKind::Dir
            } else if lm.is_file() {
                FileKind::File
            } else {
                FileKind::Fifo
            };
            assert_eq!(vm.kind, kind, "{shown}: kind");
            if e.unix {
                assert_eq!(vm.mode, lm.mode() & e.mode_mask, "{shown}: mode");
                let (uid, gid) = match e.owner {
                    Some(f) => f(&lp),
                    None => (lm.uid(), lm.gid()),
                };
                assert_eq!((vm.uid, vm.gid), (uid, gid), "{shown}: owner");
            } else {
                let base = if kind == FileKind::Dir { 0o755 } else { 0o644 };
                assert_eq!(vm.mode, base, "{shown}: mode");
            }
            if e.mtime && (e.dir_mtime || kind != FileKind::Dir) {
                let (s, ns) = (lm.mtime(), lm.mtime_nsec() as u32);
                if e.fat_time {
                    assert!(
                        (vm.mtime.secs - s).abs() <= 2,
                        "{shown}: mtime {:?} vs {s}",
                        vm.mtime
                    );
                } else if e.mtime_ns {
                    assert_eq!((vm.mtime.secs, vm.mtime.nanos), (s, ns), "{shown}: mtime");
                } else {
                    assert_eq!(vm.mtime.secs, s, "{shown}: mtime");
                }
            }
            match kind {
                FileKind::Dir => stack.push((lp, shown)),
                FileKind::Symlink => {
                    let t = fs::read_link(&lp).unwrap();
                    assert_eq!(
                        volume.read_link(&vp).unwrap(),
                        t.as_os_str().as_bytes(),
                        "{shown}: target"
                    );
                    assert_eq!(vm.size, t.as_os_str().len() as u64, "{shown}: size");
                }
                FileKind::File => {
                    assert_eq!(vm.size, lm.len(), "{shown}: size");
                    let want = fs::read(&lp).unwrap();
                    let mut got = Vec::new();
                    volume.open_file(&vp).unwrap().read_to_end(&mut got).unwrap();
                    assert!(
                        got == want,
                        "{shown}: contents differ ({} vs {} bytes)",
                        got.len(),
                        want.len()
                    );
                }
                _ => {}
            }
        }
    }
    count
}

/// Flips `n` random bytes of `img` (a copy) within `range`, deterministically by `seed`.
pub fn corrupt(img: &[u8], range: std::ops::Range<usize>, n: usize, seed: u64) -> Vec<u8> {
    let mut out = img.to_vec();
    let mut rng = Rng(seed | 1);
    let len = (range.end - range.start) as u64;
    for _ in 0..n {
        let at = range.start + rng.below(len) as usize;
        out[at] ^= (rng.next() as u8) | 1;
    }
    out
}

/// Reads an image file into memory, keeping only what is written (holes read as zeros).
pub fn load(p: &Path) -> Vec<u8> {
    fs::read(p).unwrap()
}

/// A device over another with bytes flipped and an end: damage without copying the image.
pub struct Flipped {
    pub base: std::sync::Arc<dyn bulwark_fs::Device>,
    pub flips: std::collections::BTreeMap<u64, u8>,
    pub len: u64,
}

impl bulwark_fs::Device for Flipped {
    fn size(&self) -> u64 {
        self.len
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        if offset + buf.len() as u64 > self.len {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "past the end",
            ));
        }
        self.base.read_at(offset, buf)?;
        for (&at, &x) in self.flips.range(offset..offset + buf.len() as u64) {
            buf[(at - offset) as usize] ^= x;
        }
        Ok(())
    }
}

/// The offsets of the non-zero 4 KiB blocks of an image: where its metadata (and data) are.
pub fn written_blocks(img: &[u8]) -> Vec<u64> {
    img.chunks(4096)
        .enumerate()
        .filter(|(_, b)| b.iter().any(|&x| x != 0))
        .map(|(i, _)| i as u64 * 4096)
        .collect()
}
