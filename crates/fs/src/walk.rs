//! Visit everything: every partition, every directory entry, every file's data (for tests and
//! fuzzing), or every entry's metadata only (for a file index). On any input it must end,
//! without a panic, with every problem in the summary.

use std::collections::HashSet;

use crate::device::Device;
use crate::error::Result;
use crate::model::{FileKind, Filesystem, Metadata, NodeId};
use crate::volume::Volume;

/// What [`walk_all`] saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Partitions (or the whole disk).
    pub partitions: usize,
    /// Filesystems opened.
    pub filesystems: usize,
    /// Directories listed (roots included).
    pub dirs: u64,
    /// Regular files read.
    pub files: u64,
    /// Symbolic links read.
    pub symlinks: u64,
    /// Other nodes (devices, FIFOs, sockets, reparse points).
    pub others: u64,
    /// Bytes of file data read (holes skipped).
    pub bytes: u64,
    /// Problems, in order of finding: the first [`MAX_ERRORS`] of them.
    pub errors: Vec<String>,
    /// How many problems in all.
    pub error_count: u64,
}

/// How many error messages a summary keeps.
pub const MAX_ERRORS: usize = 100;
/// Most entries visited in one filesystem (a bound for hostile images).
const MAX_ENTRIES: u64 = 10_000_000;
const CHUNK: usize = 1 << 20;

impl Summary {
    fn error(&mut self, what: String) {
        self.error_count += 1;
        if self.errors.len() < MAX_ERRORS {
            self.errors.push(what);
        }
    }
}

/// Opens the volume on `device` and visits every entry of every filesystem: lists every
/// directory, reads every node's metadata, every symlink's target and every file's data.
/// Fails only if the volume cannot be opened at all; everything else is counted.
pub fn walk_all(device: impl Device + 'static) -> Result<Summary> {
    let volume = Volume::open(device)?;
    Ok(walk_volume(&volume))
}

/// [`walk_all`] on an open volume.
pub fn walk_volume(volume: &Volume) -> Summary {
    visit(volume, true, &mut |_, _| {})
}

/// Visits every node of every filesystem of `volume` without reading file data or link
/// targets: `each` gets its path (`/1/etc/hosts`, raw bytes) and metadata, in the order of
/// a depth-first walk (a directory before what it holds), a hard-linked file under each of
/// its paths. What a file index records; problems are in the summary, never fatal.
pub fn list_volume(volume: &Volume, each: &mut dyn FnMut(&[u8], &Metadata)) -> Summary {
    visit(volume, false, each)
}

fn visit(volume: &Volume, read_data: bool, each: &mut dyn FnMut(&[u8], &Metadata)) -> Summary {
    let mut s = Summary {
        partitions: volume.partitions().len(),
        ..Summary::default()
    };
    for p in volume.partitions() {
        if let Some(e) = &p.error {
            s.error(format!("partition {}: {e}", p.entry.number));
        }
        let Some(fs) = &p.fs else { continue };
        s.filesystems += 1;
        visit_fs(fs.as_ref(), p.entry.number, read_data, each, &mut s);
    }
    s
}

fn visit_fs(
    fs: &dyn Filesystem,
    number: u32,
    read_data: bool,
    each: &mut dyn FnMut(&[u8], &Metadata),
    s: &mut Summary,
) {
    let mut dirs_seen: HashSet<NodeId> = HashSet::new();
    let mut files_seen: HashSet<NodeId> = HashSet::new();
    let mut stack = vec![(fs.root(), format!("/{number}").into_bytes())];
    let mut visited = 0u64;
    let lossy = |path: &[u8]| String::from_utf8_lossy(path).into_owned();
    while let Some((dir, path)) = stack.pop() {
        if !dirs_seen.insert(dir) {
            s.error(format!(
                "{}: directory reached twice (a cycle or a hard-linked directory)",
                lossy(&path)
            ));
            continue;
        }
        s.dirs += 1;
        let entries = match fs.read_dir(dir) {
            Ok(e) => e,
            Err(e) => {
                s.error(format!("{}: {e}", lossy(&path)));
                continue;
            }
        };
        for e in entries {
            visited += 1;
            if visited > MAX_ENTRIES {
                s.error(format!("/{number}: more than {MAX_ENTRIES} entries; stopped"));
                return;
            }
            let mut child = Vec::with_capacity(path.len() + 1 + e.name.as_bytes().len());
            child.extend_from_slice(&path);
            child.push(b'/');
            child.extend_from_slice(e.name.as_bytes());
            let md = match fs.metadata(e.node) {
                Ok(m) => m,
                Err(err) => {
                    s.error(format!("{}: {err}", lossy(&child)));
                    continue;
                }
            };
            if e.kind.is_some_and(|k| k != md.kind) {
                s.error(format!(
                    "{}: the directory says {:?}, the inode {:?}",
                    lossy(&child),
                    e.kind,
                    md.kind
                ));
            }
            each(&child, &md);
            match md.kind {
                FileKind::Dir => stack.push((e.node, child)),
                FileKind::Symlink if read_data => match fs.read_link(e.node) {
                    Ok(_) => s.symlinks += 1,
                    Err(err) => s.error(format!("{}: {err}", lossy(&child))),
                },
                FileKind::Symlink => s.symlinks += 1,
                FileKind::File if !read_data => s.files += 1,
                FileKind::File => {
                    if files_seen.insert(e.node) {
                        match read_file(fs, e.node) {
                            Ok(n) => {
                                s.files += 1;
                                s.bytes += n;
                            }
                            Err(err) => s.error(format!("{}: {err}", lossy(&child))),
                        }
                    }
                }
                _ => s.others += 1,
            }
        }
    }
}

/// Reads a file's data, skipping holes; returns the bytes read.
fn read_file(fs: &dyn Filesystem, node: NodeId) -> Result<u64> {
    let mut f = fs.open(node)?;
    let mut buf = vec![0u8; CHUNK];
    let mut pos = 0u64;
    let mut total = 0u64;
    while let Some(at) = f.next_data(pos)? {
        if at < pos {
            break;
        }
        let n = f.read_at(at, &mut buf)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        pos = at + n as u64;
    }
    Ok(total)
}
