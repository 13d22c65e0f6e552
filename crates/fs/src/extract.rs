//! Getting files out: into a local directory (modes, times, and owners when running as
//! root), or as a tar stream. Names read from disk are checked: one that is empty, `.`,
//! `..`, or holds `/` or NUL is skipped and reported, so nothing is written outside the
//! target directory; files are created new (never through an existing file or symlink).

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use filetime::FileTime;

use crate::error::{FsError, Result};
use crate::model::{FileData, FileKind, Filesystem, Metadata, NodeId, Timestamp};
use crate::volume::{FileReader, Volume};

/// What an extraction did.
#[derive(Debug, Clone, Default)]
pub struct ExtractReport {
    /// Regular files written.
    pub files: u64,
    /// Directories created.
    pub dirs: u64,
    /// Symbolic links created.
    pub symlinks: u64,
    /// Device nodes and FIFOs (written to tar only; never created locally).
    pub specials: u64,
    /// Bytes of file data written.
    pub bytes: u64,
    /// What was not extracted, with why: (volume path, reason).
    pub skipped: Vec<(String, String)>,
}

/// One node to extract: its filesystem, node, metadata, volume path (for messages) and
/// relative path in the output.
struct Item {
    node: NodeId,
    md: Metadata,
    shown: String,
    rel: Vec<Vec<u8>>,
}

fn safe_name(name: &[u8]) -> bool {
    !name.is_empty() && name != b"." && name != b".." && !name.contains(&b'/') && !name.contains(&0)
}

/// Every node under each of `paths` (each one included), depth first, parents before
/// children; a directory met twice (a damaged filesystem's cycle) is skipped.
fn collect(
    volume: &Volume,
    paths: &[&str],
    report: &mut ExtractReport,
    mut each: impl FnMut(&Arc<dyn Filesystem>, &Item, &mut ExtractReport) -> Result<()>,
) -> Result<()> {
    for path in paths {
        let Some((number, node)) = volume.node(path, false)? else {
            return Err(FsError::InvalidPath {
                path: path.to_string(),
                why: "extract a partition (/N) or a path in one".to_string(),
            });
        };
        let fs = volume.filesystem(number)?;
        let top = path
            .rsplit('/')
            .find(|c| !c.is_empty() && *c != "." && *c != "..")
            .unwrap_or("root")
            .as_bytes()
            .to_vec();
        let mut seen = std::collections::HashSet::new();
        let mut stack = vec![Item {
            node,
            md: fs.metadata(node)?,
            shown: path.trim_end_matches('/').to_string(),
            rel: vec![top],
        }];
        while let Some(item) = stack.pop() {
            each(fs, &item, report)?;
            if item.md.kind != FileKind::Dir {
                continue;
            }
            if !seen.insert(item.node) {
                report.skipped.push((
                    item.shown.clone(),
                    "directory reached twice (damaged filesystem)".into(),
                ));
                continue;
            }
            let entries = fs.read_dir(item.node)?;
            for e in entries.into_iter().rev() {
                let shown = format!("{}/{}", item.shown, e.name);
                if !safe_name(&e.name.0) {
                    report.skipped.push((shown, "unsafe name".into()));
                    continue;
                }
                let md = match fs.metadata(e.node) {
                    Ok(m) => m,
                    Err(err) => {
                        report.skipped.push((shown, err.to_string()));
                        continue;
                    }
                };
                let mut rel = item.rel.clone();
                rel.push(e.name.0);
                stack.push(Item {
                    node: e.node,
                    md,
                    shown,
                    rel,
                });
            }
        }
    }
    Ok(())
}

fn local(to: &Path, rel: &[Vec<u8>]) -> PathBuf {
    let mut p = to.to_path_buf();
    for c in rel {
        p.push(OsStr::from_bytes(c));
    }
    p
}

fn io_err(path: &Path) -> impl Fn(io::Error) -> FsError + '_ {
    move |source| FsError::Extract {
        path: path.to_path_buf(),
        source,
    }
}

fn file_time(t: Timestamp) -> FileTime {
    FileTime::from_unix_time(t.secs, t.nanos)
}

/// Copies a file's data into `out`, seeking over holes (so a sparse file stays sparse) and
/// setting the length at the end.
fn copy_data(data: &mut dyn FileData, out: &mut File) -> Result<u64> {
    let size = data.size();
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = 0u64;
    let mut written = 0u64;
    let path = PathBuf::from("(file)");
    while let Some(at) = data.next_data(pos)? {
        if at < pos || at >= size {
            break;
        }
        let n = data.read_at(at, &mut buf)?;
        if n == 0 {
            break;
        }
        out.seek(SeekFrom::Start(at)).map_err(io_err(&path))?;
        out.write_all(&buf[..n]).map_err(io_err(&path))?;
        written += n as u64;
        pos = at + n as u64;
    }
    out.set_len(size).map_err(io_err(&path))?;
    Ok(written)
}

/// Extracts `paths` (each `/N/...`) into `to` (created if missing): each path becomes
/// `to/<its last component>` (`to/<N>` for a partition's root). Directories, regular files
/// and symlinks are written; device nodes, FIFOs and sockets are skipped (they need mknod),
/// hard links become copies. Modes and times are kept; owners too when running as root
/// (else silently not: only root may give files away). Fails on the first local write
/// error, or if something to create already exists.
pub fn extract(volume: &Volume, paths: &[&str], to: &Path) -> Result<ExtractReport> {
    fs::create_dir_all(to).map_err(io_err(to))?;
    let root = is_root();
    let mut report = ExtractReport::default();
    // Directories' modes and times are set last, deepest first: a read-only directory
    // would refuse its children, and writing children changes its mtime.
    let mut dirs: Vec<(PathBuf, Metadata)> = Vec::new();
    collect(volume, paths, &mut report, |fs, item, report| {
        let path = local(to, &item.rel);
        let md = &item.md;
        match md.kind {
            FileKind::Dir => {
                match fs::create_dir(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        let m = fs::symlink_metadata(&path).map_err(io_err(&path))?;
                        if !m.is_dir() {
                            return Err(FsError::Extract {
                                path,
                                source: io::Error::new(
                                    io::ErrorKind::AlreadyExists,
                                    "exists and is not a directory",
                                ),
                            });
                        }
                    }
                    Err(e) => return Err(io_err(&path)(e)),
                }
                report.dirs += 1;
                dirs.push((path, md.clone()));
                return Ok(());
            }
            FileKind::File => {
                let mut out = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&path)
                    .map_err(io_err(&path))?;
                let mut data = fs.open(item.node)?;
                report.bytes += copy_data(data.as_mut(), &mut out).map_err(|e| relabel(e, &path))?;
                report.files += 1;
            }
            FileKind::Symlink => {
                let target = fs.read_link(item.node)?;
                std::os::unix::fs::symlink(OsStr::from_bytes(&target), &path).map_err(io_err(&path))?;
                report.symlinks += 1;
            }
            _ => {
                report.skipped.push((
                    item.shown.clone(),
                    format!("{:?} not created (needs mknod)", md.kind),
                ));
                return Ok(());
            }
        }
        finish(&path, md, root)
    })?;
    for (path, md) in dirs.iter().rev() {
        finish(path, md, root)?;
    }
    Ok(report)
}

fn relabel(e: FsError, path: &Path) -> FsError {
    match e {
        FsError::Extract { source, .. } => FsError::Extract {
            path: path.to_path_buf(),
            source,
        },
        e => e,
    }
}

/// Whether the process may give files away: /proc/self belongs to the effective user.
fn is_root() -> bool {
    fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

/// Owner (as root), then mode (chown clears setuid bits), then times.
fn finish(path: &Path, md: &Metadata, root: bool) -> Result<()> {
    let link = md.kind == FileKind::Symlink;
    if root {
        std::os::unix::fs::lchown(path, Some(md.uid), Some(md.gid)).map_err(io_err(path))?;
    }
    if !link {
        fs::set_permissions(path, fs::Permissions::from_mode(md.mode & 0o7777)).map_err(io_err(path))?;
    }
    let mtime = file_time(md.mtime);
    let atime = md.atime.map_or(mtime, file_time);
    if link {
        filetime::set_symlink_file_times(path, atime, mtime).map_err(io_err(path))?;
    } else {
        filetime::set_file_times(path, atime, mtime).map_err(io_err(path))?;
    }
    Ok(())
}

/// Writes `paths` (each `/N/...`) as a tar stream to `writer`, named as [`extract`] names
/// them: modes, owners, mtimes (whole seconds; before 1970 as 0), symlinks, device nodes and
/// FIFOs; long names and link targets through GNU extensions. Sockets are skipped.
pub fn write_tar<W: Write>(volume: &Volume, paths: &[&str], writer: W) -> Result<ExtractReport> {
    let mut tar = tar::Builder::new(writer);
    let mut report = ExtractReport::default();
    let tar_err = |source: io::Error| FsError::Extract {
        path: PathBuf::from("(tar)"),
        source,
    };
    collect(volume, paths, &mut report, |fs, item, report| {
        let md = &item.md;
        let mut name = item.rel.join(&b'/');
        let mut h = tar::Header::new_gnu();
        h.set_mode(md.mode & 0o7777);
        h.set_uid(u64::from(md.uid));
        h.set_gid(u64::from(md.gid));
        h.set_mtime(u64::try_from(md.mtime.secs).unwrap_or(0));
        h.set_size(0);
        let path = Path::new(OsStr::from_bytes(&name)).to_path_buf();
        match md.kind {
            FileKind::Dir => {
                name.push(b'/');
                h.set_entry_type(tar::EntryType::Directory);
                tar.append_data(&mut h, Path::new(OsStr::from_bytes(&name)), io::empty())
                    .map_err(tar_err)?;
                report.dirs += 1;
            }
            FileKind::File => {
                let data = fs.open(item.node)?;
                let size = data.size();
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(size);
                let mut r = Counted {
                    inner: FileReader::new(data),
                    n: 0,
                };
                tar.append_data(&mut h, &path, &mut r).map_err(tar_err)?;
                report.bytes += r.n;
                report.files += 1;
            }
            FileKind::Symlink => {
                let target = fs.read_link(item.node)?;
                h.set_entry_type(tar::EntryType::Symlink);
                tar.append_link(&mut h, &path, Path::new(OsStr::from_bytes(&target)))
                    .map_err(tar_err)?;
                report.symlinks += 1;
            }
            FileKind::BlockDevice | FileKind::CharDevice | FileKind::Fifo => {
                h.set_entry_type(match md.kind {
                    FileKind::BlockDevice => tar::EntryType::Block,
                    FileKind::CharDevice => tar::EntryType::Char,
                    _ => tar::EntryType::Fifo,
                });
                if let Some((major, minor)) = md.rdev {
                    h.set_device_major(major).map_err(tar_err)?;
                    h.set_device_minor(minor).map_err(tar_err)?;
                }
                tar.append_data(&mut h, &path, io::empty()).map_err(tar_err)?;
                report.specials += 1;
            }
            FileKind::Socket | FileKind::Other => {
                report
                    .skipped
                    .push((item.shown.clone(), format!("{:?} has no tar form", md.kind)));
            }
        }
        Ok(())
    })?;
    tar.finish().map_err(tar_err)?;
    Ok(report)
}

/// A reader that counts what passed, and turns a short file into an error (tar would pad
/// it with zeros silently otherwise).
struct Counted {
    inner: FileReader,
    n: u64,
}

impl Read for Counted {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() && self.n < self.inner.size() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file ended before its size",
            ));
        }
        self.n += n as u64;
        Ok(n)
    }
}
