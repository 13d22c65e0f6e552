//! The XFS superblock (sector 0 of allocation group 0), checked as the kernel's
//! `xfs_validate_sb_common` does for what a reader relies on, and the address arithmetic it
//! defines: filesystem block numbers `(agno << agblklog) | agbno` and inode numbers
//! `(agno << (agblklog + inopblog)) | (agbno << inopblog) | index`.

use crate::bytes::Bytes;
use crate::crc::crc32c_skipping;
use crate::error::{FsError, Result};

/// v5 incompatible features this reader understands: ftype, sparse inodes, meta UUID,
/// bigtime, needsrepair, nrext64, exchange-range, parent pointers, metadir. Not the zoned
/// realtime allocator (1 << 9) nor anything later.
const KNOWN_INCOMPAT: u32 = 0x1ff;
const INCOMPAT_FTYPE: u32 = 1 << 0;
const INCOMPAT_META_UUID: u32 = 1 << 2;
const INCOMPAT_NREXT64: u32 = 1 << 5;
const V2_FTYPE: u32 = 0x200;
const VERSION_MOREBITS: u16 = 0x8000;
const VERSION_DIRV2: u16 = 0x2000;
/// Where the superblock's CRC is.
const SB_CRC_OFF: usize = 224;

#[derive(Debug, Clone)]
pub(crate) struct Superblock {
    pub block_size: u32,
    pub blocklog: u8,
    pub dblocks: u64,
    pub agblocks: u32,
    pub agcount: u32,
    pub agblklog: u8,
    pub inode_size: u32,
    pub inopblog: u8,
    pub root_ino: u64,
    pub dirblklog: u8,
    /// Version 5: CRCs on all metadata, v3 inodes, self-describing block headers.
    pub v5: bool,
    /// Directory entries carry the file type.
    pub ftype: bool,
    /// Inodes may carry a 64-bit data extent count.
    pub nrext64: bool,
    /// The UUID metadata blocks carry (sb_meta_uuid with the meta_uuid feature).
    pub meta_uuid: [u8; 16],
    pub label: String,
    /// xfs_repair was interrupted (the needsrepair feature).
    pub needs_repair: bool,
}

impl Superblock {
    pub fn parse(raw: &[u8]) -> Result<Self> {
        let b = Bytes::new(raw, "XFS superblock", 0);
        if b.slice(0, 4)? != b"XFSB" {
            return Err(b.damaged(0, "no XFSB magic"));
        }
        let version = b.be16(100)?;
        let v5 = match version & 0xf {
            5 => true,
            4 => false,
            v => return Err(FsError::unsupported(format!("XFS superblock version {v}"))),
        };
        if !v5 && version & VERSION_DIRV2 == 0 {
            return Err(FsError::unsupported("XFS with version 1 directories"));
        }
        let block_size = b.be32(4)?;
        let blocklog = b.u8(120)?;
        if !(9..=16).contains(&blocklog) || block_size != 1 << blocklog {
            return Err(b.damaged(4, format!("block size {block_size}, log {blocklog}")));
        }
        let sect_size = u32::from(b.be16(102)?);
        let sectlog = b.u8(121)?;
        if !(9..=15).contains(&sectlog) || sect_size != 1 << sectlog || sect_size > block_size {
            return Err(b.damaged(102, format!("sector size {sect_size}, log {sectlog}")));
        }
        // Checked before any other field: on v5, damage shows as a CRC mismatch.
        if v5 {
            let stored = b.le32(SB_CRC_OFF)?;
            let sect = b.slice(0, sect_size as usize)?;
            if crc32c_skipping(sect, SB_CRC_OFF) != stored {
                return Err(b.damaged(SB_CRC_OFF, "superblock CRC mismatch"));
            }
        }
        let inode_size = u32::from(b.be16(104)?);
        let inodelog = b.u8(122)?;
        if !(8..=11).contains(&inodelog) || inode_size != 1 << inodelog || inode_size > block_size {
            return Err(b.damaged(104, format!("inode size {inode_size}, log {inodelog}")));
        }
        let inopblock = u32::from(b.be16(106)?);
        let inopblog = b.u8(123)?;
        if inopblock != block_size / inode_size || u32::from(inopblog) != u32::from(blocklog - inodelog) {
            return Err(b.damaged(106, format!("{inopblock} inodes per block, log {inopblog}")));
        }
        let agblocks = b.be32(84)?;
        let agcount = b.be32(88)?;
        let agblklog = b.u8(124)?;
        // The kernel's minimum AG is 64 blocks (XFS_MIN_AG_BLOCKS); agblklog rounds up.
        if agblocks < 64 || agcount == 0 || u32::from(agblklog) != ceil_log2(agblocks) {
            return Err(b.damaged(84, format!("{agcount} AGs of {agblocks} blocks, log {agblklog}")));
        }
        if u32::from(agblklog) + u32::from(inopblog) > 32 {
            return Err(b.damaged(124, "AG inode numbers wider than 32 bits"));
        }
        let dblocks = b.be64(8)?;
        let max = u64::from(agcount) * u64::from(agblocks);
        let min = u64::from(agcount - 1) * u64::from(agblocks);
        if dblocks > max || dblocks <= min {
            return Err(b.damaged(
                8,
                format!("{dblocks} blocks do not fit {agcount} AGs of {agblocks}"),
            ));
        }
        let dirblklog = b.u8(192)?;
        if u32::from(blocklog) + u32::from(dirblklog) > 16 {
            return Err(b.damaged(192, format!("directory block log {dirblklog}")));
        }
        if b.u8(126)? != 0 {
            return Err(b.damaged(126, "mkfs did not finish (sb_inprogress)"));
        }
        let features2 = if version & VERSION_MOREBITS != 0 || v5 {
            b.be32(200)?
        } else {
            0
        };
        let incompat = if v5 { b.be32(216)? } else { 0 };
        if v5 && incompat & !KNOWN_INCOMPAT != 0 {
            return Err(FsError::unsupported(format!(
                "XFS with unknown incompatible features {:#x}",
                incompat & !KNOWN_INCOMPAT
            )));
        }
        let uuid: [u8; 16] = b.slice(32, 16)?.try_into().unwrap_or([0; 16]);
        let meta_uuid = if v5 && incompat & INCOMPAT_META_UUID != 0 {
            b.slice(248, 16)?.try_into().unwrap_or([0; 16])
        } else {
            uuid
        };
        let label_raw = b.slice(108, 12)?;
        let label_len = label_raw.iter().position(|&c| c == 0).unwrap_or(12);
        let sb = Superblock {
            block_size,
            blocklog,
            dblocks,
            agblocks,
            agcount,
            agblklog,
            inode_size,
            inopblog,
            root_ino: b.be64(56)?,
            dirblklog,
            v5,
            ftype: if v5 {
                incompat & INCOMPAT_FTYPE != 0
            } else {
                features2 & V2_FTYPE != 0
            },
            nrext64: v5 && incompat & INCOMPAT_NREXT64 != 0,
            meta_uuid,
            needs_repair: v5 && incompat & (1 << 4) != 0,
            label: String::from_utf8_lossy(&label_raw[..label_len]).into_owned(),
        };
        sb.inode_offset(sb.root_ino).map_err(|_| {
            b.damaged(
                56,
                format!("root inode {} is outside the filesystem", sb.root_ino),
            )
        })?;
        Ok(sb)
    }

    /// Byte offset of filesystem block `fsb`; `len` blocks from it must stay in its AG.
    pub fn block_offset(&self, fsb: u64, len: u64) -> Result<u64> {
        let agno = fsb >> self.agblklog;
        let agbno = fsb & ((1u64 << self.agblklog) - 1);
        let outside = || {
            FsError::damaged(
                format!("XFS block {fsb} (AG {agno} block {agbno}, {len} blocks) is outside the filesystem"),
                0,
            )
        };
        if agno >= u64::from(self.agcount) || agbno.saturating_add(len) > u64::from(self.agblocks) {
            return Err(outside());
        }
        (agno * u64::from(self.agblocks) + agbno)
            .checked_mul(u64::from(self.block_size))
            .ok_or_else(outside)
    }

    /// Byte offset of inode `ino`.
    pub fn inode_offset(&self, ino: u64) -> Result<u64> {
        let agino_bits = u32::from(self.agblklog) + u32::from(self.inopblog);
        let agno = ino >> agino_bits;
        let agino = ino & ((1u64 << agino_bits) - 1);
        let agbno = agino >> self.inopblog;
        let index = agino & ((1u64 << self.inopblog) - 1);
        if agno >= u64::from(self.agcount) || agbno >= u64::from(self.agblocks) || ino == 0 {
            return Err(FsError::damaged(
                format!("XFS inode number {ino} is outside the filesystem"),
                0,
            ));
        }
        let block = agno * u64::from(self.agblocks) + agbno;
        block
            .checked_mul(u64::from(self.block_size))
            .and_then(|b| b.checked_add(index * u64::from(self.inode_size)))
            .ok_or_else(|| FsError::damaged(format!("XFS inode number {ino} overflows"), 0))
    }
}

fn ceil_log2(n: u32) -> u32 {
    if n <= 1 {
        0
    } else {
        32 - (n - 1).leading_zeros()
    }
}
