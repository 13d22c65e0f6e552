//! XFS directories in every form. Short-form directories live in the inode. Every other form
//! (block, leaf, node, and any of them mapped by a btree) keeps its entries in data blocks
//! in the first 32 GiB of the directory's address space; the leaf, node and free-index
//! blocks above that only index them. So reading every data block below 32 GiB lists the
//! directory whatever its form, and a lookup is a search of that list.

use super::bmap::{extents, read_blocks};
use super::inode::{Format, Inode};
use super::Inner;
use crate::bytes::Bytes;
use crate::crc::crc32c_skipping;
use crate::error::Result;
use crate::model::{DirEntry, FileKind, Name, NodeId};

/// XFS_DIR2_LEAF_OFFSET: the byte offset of the leaf section in a directory's address space.
const LEAF_OFFSET: u64 = 1 << 35;

pub(crate) fn read_dir(fs: &Inner, inode: &Inode) -> Result<Vec<DirEntry>> {
    match inode.format {
        Format::Local => shortform(fs, inode),
        Format::Extents | Format::Btree => blocks(fs, inode),
        Format::Dev => Err(inode.damaged("a directory with a device fork")),
    }
}

fn entry(fs: &Inner, inode: &Inode, name: &[u8], ino: u64, ftype: Option<u8>) -> Result<DirEntry> {
    if fs.sb.inode_offset(ino).is_err() {
        return Err(inode.damaged(format!(
            "entry {:?} names inode {ino}, outside the filesystem",
            String::from_utf8_lossy(name)
        )));
    }
    Ok(DirEntry {
        name: Name(name.to_vec()),
        node: NodeId(ino),
        kind: ftype.and_then(FileKind::from_dirent_type),
    })
}

/// A short-form directory: header (count, i8count, parent), then entries of name length,
/// a 2-byte offset, the name, the file type (with ftype) and a 4 or 8-byte inode number.
fn shortform(fs: &Inner, inode: &Inode) -> Result<Vec<DirEntry>> {
    let size = usize::try_from(inode.size).unwrap_or(usize::MAX);
    if size > inode.fork.len() || size < 6 {
        return Err(inode.damaged(format!(
            "short-form directory of {size} bytes in a fork of {}",
            inode.fork.len()
        )));
    }
    let b = Bytes::new(&inode.fork[..size], "XFS short-form directory", inode.fork_at);
    let count = usize::from(b.u8(0)?);
    let i8 = b.u8(1)? != 0;
    let inosize = if i8 { 8 } else { 4 };
    let mut pos = 2 + inosize;
    let ft = usize::from(fs.sb.ftype);
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let namelen = usize::from(b.u8(pos)?);
        if namelen == 0 {
            return Err(b.damaged(pos, "entry with an empty name"));
        }
        let name = b.slice(pos + 3, namelen)?;
        let ftype = if fs.sb.ftype {
            Some(b.u8(pos + 3 + namelen)?)
        } else {
            None
        };
        let at = pos + 3 + namelen + ft;
        let ino = if i8 { b.be64(at)? } else { u64::from(b.be32(at)?) };
        out.push(entry(fs, inode, name, ino, ftype)?);
        pos = at + inosize;
    }
    Ok(out)
}

/// Every data block below the leaf offset, in order.
fn blocks(fs: &Inner, inode: &Inode) -> Result<Vec<DirEntry>> {
    let ext = extents(fs, inode)?;
    let dbf = 1u64 << fs.sb.dirblklog;
    let leaf_fb = LEAF_OFFSET >> fs.sb.blocklog;
    let mut dir_blocks: Vec<u64> = Vec::new();
    for e in ext.iter().filter(|e| e.off < leaf_fb) {
        let first = e.off / dbf;
        let last = (e.off + e.len).min(leaf_fb).saturating_sub(1) / dbf;
        for d in first..=last {
            if dir_blocks.last() != Some(&d) {
                dir_blocks.push(d);
            }
        }
    }
    let mut out = Vec::new();
    for d in dir_blocks {
        let raw = read_blocks(fs, inode, &ext, d * dbf, dbf)?;
        let first = ext
            .iter()
            .find(|e| e.off <= d * dbf && d * dbf < e.off + e.len)
            .map(|e| e.start + (d * dbf - e.off))
            .unwrap_or(0);
        let at = fs.sb.block_offset(first, 1).unwrap_or(0);
        data_block(fs, inode, &raw, at, &mut out)?;
    }
    Ok(out)
}

/// One data block (or the single block of a block-form directory): a header, then entries
/// and free spaces, each 8-byte aligned and ending with a tag that is its own offset.
fn data_block(fs: &Inner, inode: &Inode, raw: &[u8], at: u64, out: &mut Vec<DirEntry>) -> Result<()> {
    let b = Bytes::new(raw, "XFS directory block", at);
    let magic = b.slice(0, 4)?;
    let (hdr, single) = match (fs.sb.v5, magic) {
        (true, b"XDB3") => (64, true),
        (true, b"XDD3") => (64, false),
        (false, b"XD2B") => (16, true),
        (false, b"XD2D") => (16, false),
        _ => {
            return Err(b.damaged(
                0,
                format!("directory of inode {}: bad magic {magic:02x?}", inode.ino),
            ))
        }
    };
    if fs.sb.v5 {
        if crc32c_skipping(raw, 4) != b.le32(4)? {
            return Err(b.damaged(4, "CRC mismatch"));
        }
        if b.be64(8)? != at / 512 {
            return Err(b.damaged(8, "block number in header is not where it is"));
        }
        if b.be64(40)? != inode.ino {
            return Err(b.damaged(40, format!("owned by inode {} not {}", b.be64(40)?, inode.ino)));
        }
    }
    let end = if single {
        // The block tail: leaf entry count and stale count; the leaf entries precede it.
        let count = u64::from(b.be32(raw.len() - 8)?);
        let leaf = count
            .checked_mul(8)
            .and_then(|l| (raw.len() as u64 - 8).checked_sub(l))
            .filter(|&e| e >= hdr as u64)
            .ok_or_else(|| {
                b.damaged(
                    raw.len() - 8,
                    format!("{count} leaf entries do not fit the block"),
                )
            })?;
        leaf as usize
    } else {
        raw.len()
    };
    let ft = usize::from(fs.sb.ftype);
    let mut pos = hdr;
    while pos < end {
        if b.be16(pos)? == 0xffff {
            let len = usize::from(b.be16(pos + 2)?);
            if len < 8 || len % 8 != 0 || pos + len > end {
                return Err(b.damaged(pos, format!("free space of {len} bytes")));
            }
            pos += len;
            continue;
        }
        let ino = b.be64(pos)?;
        let namelen = usize::from(b.u8(pos + 8)?);
        if namelen == 0 {
            return Err(b.damaged(pos, "entry with an empty name"));
        }
        let size = (8 + 1 + namelen + ft + 2).div_ceil(8) * 8;
        if pos + size > end {
            return Err(b.damaged(pos, "entry runs past the data"));
        }
        let tag = usize::from(b.be16(pos + size - 2)?);
        if tag != pos {
            return Err(b.damaged(pos, format!("entry tag {tag} is not its offset")));
        }
        let name = b.slice(pos + 9, namelen)?;
        let ftype = if fs.sb.ftype {
            Some(b.u8(pos + 9 + namelen)?)
        } else {
            None
        };
        if name != b"." && name != b".." {
            out.push(entry(fs, inode, name, ino, ftype)?);
        }
        pos += size;
    }
    Ok(())
}
