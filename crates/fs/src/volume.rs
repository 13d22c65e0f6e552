//! A disk as one namespace: `/` lists the partitions, `/1/etc/hosts` is a path in partition
//! 1's filesystem, `/0/...` one on the whole disk (no partition table).

use std::collections::HashMap;
use std::io::{self, Read, Seek, SeekFrom};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::detect::{detect, Content};
use crate::device::{read, Device, Window};
use crate::error::{FsError, Result};
use crate::ext4::Ext4;
use crate::fat::Fat;
use crate::model::{DirEntry, FileData, FileKind, Filesystem, FsType, Metadata, Name, NodeId};
use crate::ntfs::Ntfs;
use crate::part::{
    looks_gpt, looks_mbr, read_gpt, read_mbr, PartType, PartitionEntry, PartitionTable, TableKind,
};
use crate::xfs::Xfs;

/// Linux's limit on symbolic links followed while resolving one path (ELOOP).
pub const MAX_SYMLINK_HOPS: usize = 40;
/// Directories whose listings are kept for lookups.
const DIR_CACHE: usize = 32;

/// One partition and what it holds.
pub struct Partition {
    /// Its table entry (number 0 for a whole disk).
    pub entry: PartitionEntry,
    /// What detection found.
    pub content: Content,
    /// The filesystem, when one was found and opened.
    pub fs: Option<Arc<dyn Filesystem>>,
    /// Why a filesystem found could not be opened (damaged, unsupported feature), or why the
    /// partition could not be read.
    pub error: Option<String>,
}

impl Partition {
    /// The filesystem's label.
    pub fn label(&self) -> Option<String> {
        self.fs.as_ref().and_then(|f| f.label())
    }

    /// What it holds, in words: `xfs`, `unsupported: LVM2 physical volume`, `empty`, ...
    pub fn describe(&self) -> String {
        match &self.content {
            Content::Filesystem(t) if self.entry.part_type.is_efi_system() => {
                format!("{t} (EFI system partition)")
            }
            Content::Filesystem(t) => t.to_string(),
            Content::Unsupported { found } => format!("unsupported: {found}"),
            Content::Empty => "empty (zeros)".to_string(),
            Content::Unknown => "unknown".to_string(),
        }
    }
}

/// A directory entry with its metadata, as `ls -l` shows it.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The name (a partition number at `/`).
    pub name: Name,
    /// The entry's own metadata (symlinks not followed), or why it could not be read (a
    /// damaged inode among good ones). At `/`, a directory of the partition's size.
    pub metadata: std::result::Result<Metadata, String>,
    /// At `/`: the partition.
    pub partition: Option<PartitionInfo>,
}

/// What `ls /` says of a partition.
#[derive(Debug, Clone)]
pub struct PartitionInfo {
    /// Its number.
    pub number: u32,
    /// The filesystem, when one was recognised.
    pub fs_type: Option<FsType>,
    /// What it holds, in words.
    pub content: String,
    /// The filesystem's label.
    pub label: Option<String>,
    /// Its size in bytes.
    pub size: u64,
    /// Its first byte on the disk.
    pub start: u64,
    /// Its type in the partition table.
    pub part_type: String,
    /// Why its filesystem cannot be read, if it cannot.
    pub error: Option<String>,
    /// What its filesystem reader says is off but readable (a journal not replayed).
    pub warnings: Vec<String>,
}

type DirMap = Arc<HashMap<Vec<u8>, DirEntry>>;

/// A disk (or a disk image, or a snapshot) opened for reading files.
pub struct Volume {
    table: PartitionTable,
    parts: Vec<Partition>,
    dirs: Mutex<Vec<((usize, NodeId), DirMap)>>,
}

/// A parsed volume path.
struct Parsed {
    part: Option<usize>,
    comps: Vec<Vec<u8>>,
    trailing_slash: bool,
}

impl Volume {
    /// Reads the partition table (GPT, MBR, or none) and opens every filesystem found. A
    /// partition that cannot be read is listed with its error; only a GPT with neither header
    /// valid, or a device too small to hold a sector, fails the whole volume. Give it a
    /// [`crate::Cached`] device for anything slower than a local file.
    pub fn open(device: impl Device + 'static) -> Result<Volume> {
        let dev: Arc<dyn Device> = Arc::new(device);
        let mut sector0 = [0u8; 512];
        read(dev.as_ref(), 0, &mut sector0)?;
        let whole = |content| PartitionTable {
            kind: TableKind::None,
            sector_size: 512,
            partitions: vec![PartitionEntry {
                number: 0,
                start: 0,
                size: dev.size(),
                part_type: PartType::Whole,
                name: None,
                guid: None,
            }],
            warnings: match content {
                Content::Empty | Content::Unknown => {
                    vec!["no partition table and no filesystem recognised".to_string()]
                }
                _ => Vec::new(),
            },
        };
        let table = if looks_gpt(dev.as_ref(), &sector0) {
            read_gpt(dev.as_ref())?
        } else {
            let content = detect(dev.as_ref())?;
            match content {
                Content::Filesystem(_) | Content::Unsupported { .. } => whole(content),
                _ if looks_mbr(&sector0, dev.size()) => read_mbr(dev.as_ref(), &sector0)?,
                _ => whole(content),
            }
        };
        let parts = table.partitions.iter().map(|e| open_partition(&dev, e)).collect();
        Ok(Volume {
            table,
            parts,
            dirs: Mutex::new(Vec::new()),
        })
    }

    /// The partition table (its kind and warnings).
    pub fn table(&self) -> &PartitionTable {
        &self.table
    }

    /// The partitions, in order.
    pub fn partitions(&self) -> &[Partition] {
        &self.parts
    }

    /// Partition `number`.
    pub fn partition(&self, number: u32) -> Option<&Partition> {
        self.parts.iter().find(|p| p.entry.number == number)
    }

    fn parse(&self, path: &[u8]) -> Result<Parsed> {
        let shown = String::from_utf8_lossy(path).into_owned();
        if path.first() != Some(&b'/') {
            return Err(FsError::InvalidPath {
                path: shown,
                why: "volume paths are absolute: /N/... with N a partition number".to_string(),
            });
        }
        let mut comps: Vec<Vec<u8>> = path
            .split(|&c| c == b'/')
            .filter(|c| !c.is_empty() && *c != b".")
            .map(<[u8]>::to_vec)
            .collect();
        // `..` above a partition's root stays at `/`.
        while comps.first().is_some_and(|c| c == b"..") {
            comps.remove(0);
        }
        if comps.is_empty() {
            return Ok(Parsed {
                part: None,
                comps,
                trailing_slash: true,
            });
        }
        let first = comps.remove(0);
        let number: u32 = std::str::from_utf8(&first)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| FsError::InvalidPath {
                path: shown.clone(),
                why: format!("{:?} is not a partition number", String::from_utf8_lossy(&first)),
            })?;
        let part = self
            .parts
            .iter()
            .position(|p| p.entry.number == number)
            .ok_or_else(|| FsError::NotFound(format!("{shown} (no partition {number})")))?;
        Ok(Parsed {
            part: Some(part),
            comps,
            trailing_slash: path.ends_with(b"/"),
        })
    }

    fn fs(&self, part: usize) -> Result<&Arc<dyn Filesystem>> {
        let p = &self.parts[part];
        p.fs.as_ref().ok_or_else(|| match (&p.content, &p.error) {
            (_, Some(e)) => FsError::unsupported(format!("partition {}: {e}", p.entry.number)),
            (c, None) => FsError::unsupported(format!("partition {}: {}", p.entry.number, describe(c))),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Vec<((usize, NodeId), DirMap)>> {
        self.dirs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A directory's entries by name, from the cache of recent listings.
    fn dir_map(&self, part: usize, dir: NodeId) -> Result<DirMap> {
        {
            let mut cache = self.lock();
            if let Some(i) = cache.iter().position(|(k, _)| *k == (part, dir)) {
                let hit = cache.remove(i);
                let map = hit.1.clone();
                cache.push(hit);
                return Ok(map);
            }
        }
        let entries = self.fs(part)?.read_dir(dir)?;
        let map: DirMap = Arc::new(entries.into_iter().map(|e| (e.name.0.clone(), e)).collect());
        let mut cache = self.lock();
        if cache.len() >= DIR_CACHE {
            cache.remove(0);
        }
        cache.push(((part, dir), map.clone()));
        Ok(map)
    }

    fn lookup(&self, part: usize, dir: NodeId, name: &[u8]) -> Result<Option<DirEntry>> {
        let map = self.dir_map(part, dir)?;
        if let Some(e) = map.get(name) {
            return Ok(Some(e.clone()));
        }
        // Windows names are case-insensitive.
        let fs = self.fs(part)?;
        if matches!(
            fs.fs_type(),
            FsType::Ntfs | FsType::Fat12 | FsType::Fat16 | FsType::Fat32
        ) {
            let want = String::from_utf8_lossy(name).to_lowercase();
            return Ok(map
                .values()
                .find(|e| e.name.to_string_lossy().to_lowercase() == want)
                .cloned());
        }
        Ok(None)
    }

    /// Resolves `comps` in partition `part`, following symlinks in every component but the
    /// last unless `follow_last`; `..` goes up (never above the root).
    fn resolve(&self, part: usize, comps: &[Vec<u8>], follow_last: bool, shown: &str) -> Result<NodeId> {
        let fs = self.fs(part)?;
        let mut stack = vec![fs.root()];
        let mut queue: std::collections::VecDeque<Vec<u8>> = comps.iter().cloned().collect();
        let mut hops = 0;
        while let Some(c) = queue.pop_front() {
            if c.is_empty() || c == b"." {
                continue;
            }
            if c == b".." {
                if stack.len() > 1 {
                    stack.pop();
                }
                continue;
            }
            let cur = *stack.last().unwrap_or(&fs.root());
            let entry = self
                .lookup(part, cur, &c)?
                .ok_or_else(|| FsError::NotFound(shown.to_string()))?;
            let last = queue.is_empty();
            let kind = match entry.kind {
                Some(k) => k,
                None => fs.metadata(entry.node)?.kind,
            };
            if kind == FileKind::Symlink && (!last || follow_last) {
                hops += 1;
                if hops > MAX_SYMLINK_HOPS {
                    return Err(FsError::SymlinkLoop(shown.to_string()));
                }
                let target = fs.read_link(entry.node)?;
                if target.first() == Some(&b'/') {
                    stack.truncate(1);
                }
                for t in target.split(|&b| b == b'/').rev() {
                    queue.push_front(t.to_vec());
                }
                continue;
            }
            if !last && kind != FileKind::Dir {
                return Err(FsError::NotADirectory(shown.to_string()));
            }
            stack.push(entry.node);
        }
        Ok(*stack.last().unwrap_or(&fs.root()))
    }

    /// The partition and node a path names; symlinks in the last component are followed only
    /// when `follow` (or the path ends with `/`). `None` for `/`.
    pub fn node(&self, path: impl AsRef<[u8]>, follow: bool) -> Result<Option<(u32, NodeId)>> {
        let path = path.as_ref();
        let p = self.parse(path)?;
        let Some(part) = p.part else { return Ok(None) };
        let shown = String::from_utf8_lossy(path).into_owned();
        let node = self.resolve(part, &p.comps, follow || p.trailing_slash, &shown)?;
        Ok(Some((self.parts[part].entry.number, node)))
    }

    fn index(&self, number: u32) -> Result<usize> {
        self.parts
            .iter()
            .position(|p| p.entry.number == number)
            .ok_or_else(|| FsError::NotFound(format!("partition {number}")))
    }

    /// The filesystem of partition `number`.
    pub fn filesystem(&self, number: u32) -> Result<&Arc<dyn Filesystem>> {
        self.fs(self.index(number)?)
    }

    /// The entries of a directory (cheap: no metadata read). At `/`, the partitions.
    pub fn read_dir(&self, path: impl AsRef<[u8]>) -> Result<Vec<DirEntry>> {
        let path = path.as_ref();
        match self.node(path, true)? {
            None => Ok(self
                .parts
                .iter()
                .map(|p| DirEntry {
                    name: Name(p.entry.number.to_string().into_bytes()),
                    node: NodeId(u64::from(p.entry.number)),
                    kind: Some(FileKind::Dir),
                })
                .collect()),
            Some((n, node)) => self.filesystem(n)?.read_dir(node),
        }
    }

    /// `ls -l`: at `/` the partitions (number, filesystem, label, size, start); of a
    /// directory its entries with their metadata; of anything else (a symlink not followed:
    /// add `/` to follow it), that one entry.
    pub fn ls(&self, path: impl AsRef<[u8]>) -> Result<Vec<Entry>> {
        let path = path.as_ref();
        let Some((n, node)) = self.node(path, false)? else {
            return Ok(self.parts.iter().map(partition_entry).collect());
        };
        let fs = self.filesystem(n)?;
        let md = fs.metadata(node)?;
        if md.kind != FileKind::Dir {
            let name = path
                .rsplit(|&c| c == b'/')
                .find(|c| !c.is_empty())
                .unwrap_or(b"/");
            return Ok(vec![Entry {
                name: Name(name.to_vec()),
                metadata: Ok(md),
                partition: None,
            }]);
        }
        Ok(fs
            .read_dir(node)?
            .into_iter()
            .map(|e| Entry {
                metadata: fs.metadata(e.node).map_err(|err| err.to_string()),
                name: e.name,
                partition: None,
            })
            .collect())
    }

    /// `lstat`: the metadata of what the path names, a symlink itself.
    pub fn metadata(&self, path: impl AsRef<[u8]>) -> Result<Metadata> {
        let path = path.as_ref();
        match self.node(path, false)? {
            None => Ok(root_metadata(0)),
            Some((n, node)) => self.filesystem(n)?.metadata(node),
        }
    }

    /// A symbolic link's target, as stored.
    pub fn read_link(&self, path: impl AsRef<[u8]>) -> Result<Vec<u8>> {
        let path = path.as_ref();
        match self.node(path, false)? {
            None => Err(FsError::NotASymlink("/".to_string())),
            Some((n, node)) => self.filesystem(n)?.read_link(node),
        }
    }

    /// Opens a regular file (symlinks followed, the last one too) for streaming.
    pub fn open_file(&self, path: impl AsRef<[u8]>) -> Result<FileReader> {
        let path = path.as_ref();
        match self.node(path, true)? {
            None => Err(FsError::IsADirectory("/".to_string())),
            Some((n, node)) => Ok(FileReader::new(self.filesystem(n)?.open(node)?)),
        }
    }
}

fn describe(c: &Content) -> String {
    match c {
        Content::Filesystem(t) => t.to_string(),
        Content::Unsupported { found } => found.clone(),
        Content::Empty => "empty (zeros)".to_string(),
        Content::Unknown => "no filesystem recognised".to_string(),
    }
}

fn root_metadata(size: u64) -> Metadata {
    Metadata {
        kind: FileKind::Dir,
        size,
        mode: 0o555,
        uid: 0,
        gid: 0,
        atime: None,
        mtime: Default::default(),
        ctime: None,
        crtime: None,
        nlink: 1,
        ino: 0,
        rdev: None,
    }
}

fn partition_entry(p: &Partition) -> Entry {
    Entry {
        name: Name(p.entry.number.to_string().into_bytes()),
        metadata: Ok(root_metadata(p.entry.size)),
        partition: Some(PartitionInfo {
            number: p.entry.number,
            fs_type: match p.content {
                Content::Filesystem(t) => Some(t),
                _ => None,
            },
            content: p.describe(),
            label: p.label(),
            size: p.entry.size,
            start: p.entry.start,
            part_type: p.entry.part_type.name(),
            error: p.error.clone(),
            warnings: p.fs.as_ref().map(|f| f.warnings()).unwrap_or_default(),
        }),
    }
}

fn open_partition(dev: &Arc<dyn Device>, e: &PartitionEntry) -> Partition {
    let win: Arc<dyn Device> = Arc::new(Window::new(dev.clone(), e.start, e.size));
    let mut p = Partition {
        entry: e.clone(),
        content: Content::Unknown,
        fs: None,
        error: None,
    };
    match detect(win.as_ref()) {
        Ok(c) => p.content = c,
        Err(err) => {
            p.error = Some(err.to_string());
            return p;
        }
    }
    let opened: Option<Result<Arc<dyn Filesystem>>> = match p.content {
        Content::Filesystem(FsType::Xfs) => Some(Xfs::open(win).map(|f| Arc::new(f) as _)),
        Content::Filesystem(FsType::Ext2 | FsType::Ext3 | FsType::Ext4) => {
            Some(Ext4::open(win).map(|f| Arc::new(f) as _))
        }
        Content::Filesystem(FsType::Ntfs) => Some(Ntfs::open(win).map(|f| Arc::new(f) as _)),
        Content::Filesystem(FsType::Fat12 | FsType::Fat16 | FsType::Fat32) => {
            Some(Fat::open(win).map(|f| Arc::new(f) as _))
        }
        _ => None,
    };
    match opened {
        Some(Ok(fs)) => p.fs = Some(fs),
        Some(Err(err)) => p.error = Some(err.to_string()),
        None => {}
    }
    p
}

/// A file being read start to end (`Read`, and `Seek` too), in reads of 1 MiB so that the
/// device's read-ahead sees a sequential stream and each read reaches the filesystem once.
pub struct FileReader {
    data: Box<dyn FileData>,
    pos: u64,
    buf: Vec<u8>,
    buf_start: u64,
    buf_len: usize,
}

const READ_SIZE: usize = 1 << 20;

impl FileReader {
    /// Wraps an open file.
    pub fn new(data: Box<dyn FileData>) -> Self {
        Self {
            data,
            pos: 0,
            buf: Vec::new(),
            buf_start: 0,
            buf_len: 0,
        }
    }

    /// The file's size.
    pub fn size(&self) -> u64 {
        self.data.size()
    }

    /// The open file, for `read_at` and `next_data`.
    pub fn data(&mut self) -> &mut dyn FileData {
        self.data.as_mut()
    }
}

impl Read for FileReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.data.size() || out.is_empty() {
            return Ok(0);
        }
        let in_buf = self.pos >= self.buf_start && self.pos < self.buf_start + self.buf_len as u64;
        if !in_buf {
            if self.buf.is_empty() {
                self.buf = vec![0u8; READ_SIZE];
            }
            let n = self
                .data
                .read_at(self.pos, &mut self.buf)
                .map_err(io::Error::other)?;
            self.buf_start = self.pos;
            self.buf_len = n;
            if n == 0 {
                return Ok(0);
            }
        }
        let at = (self.pos - self.buf_start) as usize;
        let n = out.len().min(self.buf_len - at);
        out[..n].copy_from_slice(&self.buf[at..at + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for FileReader {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let new = match pos {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.data.size().checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = new.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek out of range"))?;
        Ok(self.pos)
    }
}
