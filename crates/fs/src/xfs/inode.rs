//! XFS inodes: the v1/v2 core (100 bytes) and the v3 core of v5 filesystems (176 bytes, CRC,
//! its own number, creation time), bigtime timestamps, 64-bit extent counts (nrext64), and
//! the data fork that follows the core.

use super::superblock::Superblock;
use crate::bytes::Bytes;
use crate::crc::crc32c_skipping;
use crate::error::{FsError, Result};
use crate::model::{FileKind, Metadata, Timestamp};

/// Data fork formats (`di_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// A device number (device nodes, FIFOs, sockets).
    Dev,
    /// The data itself in the fork: short-form directories, short symlinks.
    Local,
    /// An array of extent records in the fork.
    Extents,
    /// The root of a bmap btree in the fork.
    Btree,
}

const DIFLAG_REALTIME: u16 = 0x1;
const DIFLAG2_BIGTIME: u64 = 1 << 3;
const DIFLAG2_NREXT64: u64 = 1 << 4;
const CRC_OFF: usize = 100;

#[derive(Debug, Clone)]
pub(crate) struct Inode {
    pub ino: u64,
    pub mode: u16,
    pub kind: FileKind,
    pub format: Format,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    pub atime: Timestamp,
    pub mtime: Timestamp,
    pub ctime: Timestamp,
    pub crtime: Option<Timestamp>,
    pub size: u64,
    /// Data fork extent count.
    pub nextents: u64,
    pub realtime: bool,
    /// The data fork's bytes (up to the attribute fork, or the inode's end).
    pub fork: Vec<u8>,
    /// Byte offset of the data fork on disk (for error messages).
    pub fork_at: u64,
}

impl Inode {
    /// Parses inode `ino` from its `inode_size` bytes read at `at`.
    pub fn parse(sb: &Superblock, ino: u64, raw: &[u8], at: u64) -> Result<Self> {
        let b = Bytes::new(raw, "XFS inode", at);
        if b.slice(0, 2)? != b"IN" {
            return Err(b.damaged(0, format!("inode {ino}: no IN magic")));
        }
        let version = b.u8(4)?;
        let core = match (sb.v5, version) {
            (true, 3) => 176,
            (false, 1 | 2) => 100,
            _ => {
                return Err(b.damaged(
                    4,
                    format!(
                        "inode {ino}: version {version} on a v{} filesystem",
                        if sb.v5 { 5 } else { 4 }
                    ),
                ))
            }
        };
        if version == 3 {
            let stored = b.le32(CRC_OFF)?;
            if crc32c_skipping(raw, CRC_OFF) != stored {
                return Err(b.damaged(CRC_OFF, format!("inode {ino}: CRC mismatch")));
            }
            let own = b.be64(152)?;
            if own != ino {
                return Err(b.damaged(152, format!("inode {ino} says it is inode {own}")));
            }
            if b.slice(160, 16)? != sb.meta_uuid {
                return Err(b.damaged(160, format!("inode {ino}: belongs to another filesystem (UUID)")));
            }
        }
        let mode = b.be16(2)?;
        let kind = FileKind::from_mode(u32::from(mode))
            .ok_or_else(|| b.damaged(2, format!("inode {ino}: mode {mode:#o} (a free inode?)")))?;
        let format = match b.u8(5)? {
            0 => Format::Dev,
            1 => Format::Local,
            2 => Format::Extents,
            3 => Format::Btree,
            f => return Err(b.damaged(5, format!("inode {ino}: data fork format {f}"))),
        };
        let ok = match kind {
            FileKind::File => matches!(format, Format::Extents | Format::Btree),
            FileKind::Dir => matches!(format, Format::Local | Format::Extents | Format::Btree),
            FileKind::Symlink => matches!(format, Format::Local | Format::Extents | Format::Btree),
            _ => format == Format::Dev,
        };
        if !ok {
            return Err(b.damaged(5, format!("inode {ino}: {format:?} data fork for a {kind:?}")));
        }
        let flags = b.be16(90)?;
        let flags2 = if version == 3 { b.be64(120)? } else { 0 };
        let bigtime = flags2 & DIFLAG2_BIGTIME != 0;
        let time = |off: usize| -> Result<Timestamp> {
            if bigtime {
                let ns = b.be64(off)?;
                let secs = (ns / 1_000_000_000) as i64 - (1i64 << 31);
                Ok(Timestamp::new(secs, (ns % 1_000_000_000) as u32))
            } else {
                Ok(Timestamp::new(i64::from(b.be32(off)? as i32), b.be32(off + 4)?))
            }
        };
        let nextents = if flags2 & DIFLAG2_NREXT64 != 0 {
            if !sb.nrext64 {
                return Err(b.damaged(120, format!("inode {ino}: nrext64 flag without the feature")));
            }
            b.be64(24)?
        } else {
            u64::from(b.be32(76)?)
        };
        let forkoff = usize::from(b.u8(82)?) * 8;
        let literal = raw.len().saturating_sub(core);
        if forkoff >= literal && forkoff != 0 {
            return Err(b.damaged(
                82,
                format!("inode {ino}: attribute fork offset {forkoff} past the inode"),
            ));
        }
        let fork_len = if forkoff == 0 { literal } else { forkoff };
        let fork = b.slice(core, fork_len)?.to_vec();
        let size = b.be64(56)?;
        if size > i64::MAX as u64 {
            return Err(b.damaged(56, format!("inode {ino}: size {size}")));
        }
        Ok(Inode {
            ino,
            mode,
            kind,
            format,
            uid: b.be32(8)?,
            gid: b.be32(12)?,
            nlink: if version == 1 {
                u32::from(b.be16(6)?)
            } else {
                b.be32(16)?
            },
            atime: time(32)?,
            mtime: time(40)?,
            ctime: time(48)?,
            crtime: if version == 3 { Some(time(144)?) } else { None },
            size,
            nextents,
            realtime: flags & DIFLAG_REALTIME != 0,
            fork,
            fork_at: at + core as u64,
        })
    }

    /// The device number of a device node: Linux's old 32-bit encoding, major in the top 14
    /// bits, minor in the low 18.
    pub fn rdev(&self) -> Option<(u32, u32)> {
        if !matches!(self.kind, FileKind::BlockDevice | FileKind::CharDevice) {
            return None;
        }
        let raw = u32::from_be_bytes(self.fork.get(..4)?.try_into().ok()?);
        Some(((raw >> 18) & 0x3fff, raw & 0x3ffff))
    }

    pub fn metadata(&self) -> Metadata {
        Metadata {
            kind: self.kind,
            size: self.size,
            mode: u32::from(self.mode) & 0o7777,
            uid: self.uid,
            gid: self.gid,
            atime: Some(self.atime),
            mtime: self.mtime,
            ctime: Some(self.ctime),
            crtime: self.crtime,
            nlink: self.nlink,
            ino: self.ino,
            rdev: self.rdev(),
        }
    }

    pub fn damaged(&self, what: impl std::fmt::Display) -> FsError {
        FsError::damaged(format!("XFS inode {}: {what}", self.ino), self.fork_at)
    }
}
