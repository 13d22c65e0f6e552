//! ext inodes: the 128-byte base, the extra fields of large inodes (nanoseconds, epoch bits,
//! creation time, the checksum's high half), and the in-inode extended attribute that holds
//! the rest of inline data.

use super::Sb;
use crate::bytes::{le16, le32, Bytes};
use crate::crc::crc32c_raw;
use crate::error::{FsError, Result};
use crate::model::{FileKind, Metadata, Timestamp};

pub(crate) const FLAG_ENCRYPT: u32 = 0x800;
pub(crate) const FLAG_EXTENTS: u32 = 0x8_0000;
pub(crate) const FLAG_INLINE_DATA: u32 = 0x1000_0000;

pub(crate) struct Inode {
    pub ino: u64,
    pub kind: FileKind,
    pub mode: u16,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub links: u32,
    pub flags: u32,
    pub atime: Timestamp,
    pub mtime: Timestamp,
    pub ctime: Timestamp,
    pub crtime: Option<Timestamp>,
    /// i_block: block map, extent tree root, inline data or a fast symlink's target.
    pub i_block: [u8; 60],
    /// 512-byte sectors the inode uses (i_blocks; without huge_file's block units).
    pub sectors: u64,
    pub file_acl: u64,
    /// The metadata_csum seed of this inode (from its number and generation).
    pub csum_seed: Option<u32>,
    /// Inline data beyond i_block (the `system.data` attribute).
    pub inline_tail: Vec<u8>,
    pub at: u64,
}

impl Inode {
    pub fn parse(sb: &Sb, ino: u64, raw: &[u8], at: u64) -> Result<Self> {
        let b = Bytes::new(raw, "ext4 inode", at);
        let extra = if raw.len() > 128 {
            usize::from(b.le16(128)?)
        } else {
            0
        };
        if raw.len() > 128 && (128 + extra > raw.len() || extra % 4 != 0) {
            return Err(b.damaged(128, format!("inode {ino}: extra size {extra}")));
        }
        let fits = |off: usize, len: usize| off + len <= 128 + extra;
        let generation = b.le32(100)?;
        let csum_seed = sb.csum_seed.map(|seed| {
            crc32c_raw(
                crc32c_raw(seed, &(ino as u32).to_le_bytes()),
                &generation.to_le_bytes(),
            )
        });
        if let Some(seed) = csum_seed {
            let mut d = raw.to_vec();
            d[0x7c..0x7e].fill(0);
            let hi = fits(0x82, 2);
            if hi {
                d[0x82..0x84].fill(0);
            }
            let crc = crc32c_raw(seed, &d);
            let stored = u32::from(le16(raw, 0x7c)) | if hi { u32::from(le16(raw, 0x82)) << 16 } else { 0 };
            let want = if hi { crc } else { crc & 0xffff };
            if stored != want {
                return Err(b.damaged(0x7c, format!("inode {ino}: checksum mismatch")));
            }
        }
        let mode = b.le16(0)?;
        let kind = FileKind::from_mode(u32::from(mode))
            .ok_or_else(|| b.damaged(0, format!("inode {ino}: mode {mode:#o} (a free inode?)")))?;
        let links = u32::from(b.le16(26)?);
        if links == 0 {
            return Err(b.damaged(26, format!("inode {ino}: no links (a deleted inode)")));
        }
        let time = |base: usize, extra_off: Option<usize>| -> Result<Timestamp> {
            let secs = i64::from(b.le32(base)? as i32);
            match extra_off.filter(|&o| fits(o, 4)) {
                Some(o) => {
                    let x = b.le32(o)?;
                    Ok(Timestamp::new(secs + (i64::from(x & 3) << 32), x >> 2))
                }
                None => Ok(Timestamp::new(secs, 0)),
            }
        };
        let mut i_block = [0u8; 60];
        i_block.copy_from_slice(b.slice(40, 60)?);
        let flags = b.le32(32)?;
        let size = u64::from(b.le32(4)?) | (u64::from(b.le32(108)?) << 32);
        if size > i64::MAX as u64 {
            return Err(b.damaged(4, format!("inode {ino}: size {size}")));
        }
        let inline_tail = if flags & FLAG_INLINE_DATA != 0 {
            inline_xattr(&b, 128 + extra, ino)?
        } else {
            Vec::new()
        };
        Ok(Inode {
            ino,
            kind,
            mode,
            uid: u32::from(b.le16(2)?) | (u32::from(b.le16(120)?) << 16),
            gid: u32::from(b.le16(24)?) | (u32::from(b.le16(122)?) << 16),
            size,
            links,
            flags,
            atime: time(8, Some(0x8c))?,
            mtime: time(16, Some(0x88))?,
            ctime: time(12, Some(0x84))?,
            crtime: if fits(0x90, 4) {
                Some(time(0x90, Some(0x94))?)
            } else {
                None
            },
            i_block,
            sectors: u64::from(b.le32(28)?) | (u64::from(b.le16(116)?) << 32),
            file_acl: u64::from(b.le32(104)?) | (u64::from(b.le16(118)?) << 32),
            csum_seed,
            inline_tail,
            at,
        })
    }

    /// A device node's number: the old 16-bit encoding in i_block[0], or the new one in
    /// i_block[1].
    pub fn rdev(&self) -> Option<(u32, u32)> {
        if !matches!(self.kind, FileKind::BlockDevice | FileKind::CharDevice) {
            return None;
        }
        let old = le32(&self.i_block, 0);
        if old != 0 {
            return Some(((old >> 8) & 0xff, old & 0xff));
        }
        let new = le32(&self.i_block, 4);
        Some(((new & 0xfff00) >> 8, (new & 0xff) | ((new >> 12) & 0xfff00)))
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
            nlink: self.links,
            ino: self.ino,
            rdev: self.rdev(),
        }
    }

    /// Inline data: i_block then the `system.data` attribute, cut to the size.
    pub fn inline_data(&self) -> Result<Vec<u8>> {
        let mut d = self.i_block.to_vec();
        d.extend_from_slice(&self.inline_tail);
        let size = usize::try_from(self.size).unwrap_or(usize::MAX);
        if size > d.len() {
            return Err(self.damaged(format!("inline data of {size} bytes, {} stored", d.len())));
        }
        d.truncate(size);
        Ok(d)
    }

    pub fn damaged(&self, what: impl std::fmt::Display) -> FsError {
        FsError::damaged(format!("ext4 inode {}: {what}", self.ino), self.at)
    }
}

/// The value of `system.data` among the in-inode extended attributes at `start`.
fn inline_xattr(b: &Bytes<'_>, start: usize, ino: u64) -> Result<Vec<u8>> {
    if start + 4 > b.len() || b.le32(start)? != 0xEA02_0000 {
        return Ok(Vec::new());
    }
    let first = start + 4;
    let mut pos = first;
    // Entries are at least 16 bytes: the loop ends within the inode.
    while pos + 16 <= b.len() {
        if b.le32(pos)? == 0 {
            break;
        }
        let name_len = usize::from(b.u8(pos)?);
        let index = b.u8(pos + 1)?;
        let value_off = usize::from(b.le16(pos + 2)?);
        let value_inum = b.le32(pos + 4)?;
        let value_size = b.le32(pos + 8)? as usize;
        let name = b.slice(pos + 16, name_len)?;
        if index == 7 && name == b"data" {
            if value_inum != 0 {
                return Err(b.damaged(pos, format!("inode {ino}: inline data in an EA inode")));
            }
            return Ok(b.slice(first + value_off, value_size)?.to_vec());
        }
        pos += (16 + name_len).div_ceil(4) * 4;
    }
    Ok(Vec::new())
}
