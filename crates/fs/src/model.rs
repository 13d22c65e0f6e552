//! What every filesystem reader gives: nodes, directory entries, metadata, file data.

use std::fmt;

use crate::error::Result;

/// A node (inode) in one filesystem: the inode number on ext and XFS, the MFT reference on
/// NTFS, the byte offset of the directory entry on FAT (which has no inode numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u64);

/// What kind of node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A block device node.
    BlockDevice,
    /// A character device node.
    CharDevice,
    /// A named pipe.
    Fifo,
    /// A Unix socket.
    Socket,
    /// Anything else (an NTFS reparse point that is not a plain file or directory).
    Other,
}

impl FileKind {
    /// The kind from the type bits of a Unix `st_mode`.
    pub fn from_mode(mode: u32) -> Option<Self> {
        Some(match mode & 0o170000 {
            0o100000 => FileKind::File,
            0o040000 => FileKind::Dir,
            0o120000 => FileKind::Symlink,
            0o060000 => FileKind::BlockDevice,
            0o020000 => FileKind::CharDevice,
            0o010000 => FileKind::Fifo,
            0o140000 => FileKind::Socket,
            _ => return None,
        })
    }

    /// The kind from a directory entry's file type byte (ext's and XFS's share the values).
    pub(crate) fn from_dirent_type(t: u8) -> Option<Self> {
        Some(match t {
            1 => FileKind::File,
            2 => FileKind::Dir,
            3 => FileKind::CharDevice,
            4 => FileKind::BlockDevice,
            5 => FileKind::Fifo,
            6 => FileKind::Socket,
            7 => FileKind::Symlink,
            _ => return None,
        })
    }
}

/// A point in time: seconds since the Unix epoch and nanoseconds. FAT stores local time with
/// no zone; its times are the wall-clock time as stored, read as if it were UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp {
    /// Seconds since 1970-01-01T00:00:00Z (negative before).
    pub secs: i64,
    /// Nanoseconds, 0..1_000_000_000.
    pub nanos: u32,
}

impl Timestamp {
    /// A timestamp; `nanos` over a second is clamped (damaged nanoseconds do not overflow).
    pub fn new(secs: i64, nanos: u32) -> Self {
        Self {
            secs,
            nanos: nanos.min(999_999_999),
        }
    }
}

/// A name in a directory: the bytes on disk (Linux names are bytes, not text), UTF-8 for
/// NTFS and FAT whose names are UTF-16 on disk (unpaired surrogates become U+FFFD).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(pub Vec<u8>);

impl Name {
    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
    /// The name as UTF-8, when it is.
    pub fn to_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }
    /// The name as text, invalid UTF-8 replaced by U+FFFD.
    pub fn to_string_lossy(&self) -> String {
        String::from_utf8_lossy(&self.0).into_owned()
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.to_string_lossy())
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_string_lossy())
    }
}

/// An entry of a directory (never `.` or `..`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// Its name.
    pub name: Name,
    /// The node it names.
    pub node: NodeId,
    /// Its kind when the directory records it (ext with `filetype`, XFS with `ftype`, NTFS,
    /// FAT); `None` means read its metadata to know.
    pub kind: Option<FileKind>,
}

/// What `lstat` says of a node, the same for every filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    /// Its kind.
    pub kind: FileKind,
    /// Size in bytes (a symlink's: its target's length).
    pub size: u64,
    /// Permission bits with setuid, setgid and sticky (`mode & 0o7777`); NTFS and FAT have
    /// none and get 0o755 for directories, 0o644 for files, without write bits when read-only.
    pub mode: u32,
    /// Owner; 0 where the filesystem has none (NTFS, FAT).
    pub uid: u32,
    /// Group; 0 where the filesystem has none.
    pub gid: u32,
    /// Last access.
    pub atime: Option<Timestamp>,
    /// Last data change.
    pub mtime: Timestamp,
    /// Last inode change (NTFS: the MFT record's change time; FAT has none).
    pub ctime: Option<Timestamp>,
    /// Creation, where the filesystem keeps it (ext4 large inodes, XFS v5, NTFS, FAT).
    pub crtime: Option<Timestamp>,
    /// Hard links.
    pub nlink: u32,
    /// The node's number ([`NodeId`]'s value).
    pub ino: u64,
    /// Device number (major, minor) of a device node.
    pub rdev: Option<(u32, u32)>,
}

/// The data of one open file, read at any offset.
pub trait FileData: Send {
    /// The file's size.
    fn size(&self) -> u64;
    /// Reads at `offset` into `buf`; returns the bytes read, 0 at or past the end. Holes and
    /// unwritten extents read as zeros.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize>;
    /// The first offset at or after `offset` that may hold data (like `SEEK_DATA`), or `None`
    /// when only holes follow. Readers that cannot tell say `Some(offset)`.
    fn next_data(&mut self, offset: u64) -> Result<Option<u64>> {
        Ok((offset < self.size()).then_some(offset))
    }
}

/// Which filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FsType {
    /// ext2 (no journal).
    Ext2,
    /// ext3 (journal, no extents).
    Ext3,
    /// ext4.
    Ext4,
    /// XFS.
    Xfs,
    /// NTFS.
    Ntfs,
    /// FAT12.
    Fat12,
    /// FAT16.
    Fat16,
    /// FAT32.
    Fat32,
}

impl fmt::Display for FsType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FsType::Ext2 => "ext2",
            FsType::Ext3 => "ext3",
            FsType::Ext4 => "ext4",
            FsType::Xfs => "xfs",
            FsType::Ntfs => "ntfs",
            FsType::Fat12 => "fat12",
            FsType::Fat16 => "fat16",
            FsType::Fat32 => "fat32",
        })
    }
}

/// A read-only filesystem. Every method may be called from many threads at once.
pub trait Filesystem: Send + Sync {
    /// Which filesystem it is.
    fn fs_type(&self) -> FsType;
    /// Its label, if it has one.
    fn label(&self) -> Option<String>;
    /// What is off but readable (an ext4 journal that needs recovery, which is not
    /// replayed).
    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }
    /// Its root directory.
    fn root(&self) -> NodeId;
    /// The entries of a directory, without `.` and `..`, in on-disk order.
    fn read_dir(&self, dir: NodeId) -> Result<Vec<DirEntry>>;
    /// A node's metadata.
    fn metadata(&self, node: NodeId) -> Result<Metadata>;
    /// A symbolic link's target, as the bytes stored.
    fn read_link(&self, node: NodeId) -> Result<Vec<u8>>;
    /// Opens a regular file's data.
    fn open(&self, node: NodeId) -> Result<Box<dyn FileData>>;
    /// Reads a file at `offset`; see [`FileData::read_at`].
    fn read(&self, node: NodeId, offset: u64, buf: &mut [u8]) -> Result<usize> {
        self.open(node)?.read_at(offset, buf)
    }
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
pub(crate) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}
