//! Where an ext file's blocks are: an extent tree (ext4), a classic block map of direct and
//! indirect blocks (ext2/3), or inline data in the inode. Holes and unwritten extents read as
//! zeros.

use std::collections::HashSet;
use std::sync::Arc;

use super::inode::{Inode, FLAG_ENCRYPT, FLAG_EXTENTS, FLAG_INLINE_DATA};
use super::Inner;
use crate::bytes::{le32, Bytes};
use crate::crc::crc32c_raw;
use crate::error::{FsError, Result};
use crate::model::FileData;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Extent {
    pub lblk: u64,
    pub len: u64,
    pub pblk: u64,
    pub unwritten: bool,
}

/// The kernel's limit on extent tree depth.
const MAX_DEPTH: u16 = 5;
/// Most extents one file may have here (4 Mi: beyond it is more likely damage).
const MAX_EXTENTS: usize = 4 << 20;

pub(crate) enum Map {
    Extents(Vec<Extent>),
    /// i_block's 15 block pointers: 12 direct, single, double, triple indirect.
    Indirect([u32; 15]),
    Inline(Vec<u8>),
}

impl Map {
    pub fn of(fs: &Inner, inode: &Inode) -> Result<Map> {
        if inode.flags & FLAG_ENCRYPT != 0 {
            return Err(FsError::unsupported("ext4 encrypted file"));
        }
        if inode.flags & FLAG_INLINE_DATA != 0 {
            return Ok(Map::Inline(inode.inline_data()?));
        }
        if inode.flags & FLAG_EXTENTS != 0 {
            let mut out = Vec::new();
            let mut seen = HashSet::new();
            tree(
                fs,
                inode,
                &inode.i_block,
                inode.at + 40,
                None,
                &mut seen,
                &mut out,
            )?;
            check(fs, inode, &out)?;
            return Ok(Map::Extents(out));
        }
        let mut p = [0u32; 15];
        for (i, v) in p.iter_mut().enumerate() {
            *v = le32(&inode.i_block, i * 4);
        }
        Ok(Map::Indirect(p))
    }

    /// The physical block of logical block `lblk` and how many blocks from it are
    /// contiguous (at most `want`); `None` for a hole (or an unwritten extent).
    fn lookup(&self, fs: &Inner, lblk: u64, want: u64) -> Result<Option<(u64, u64)>> {
        match self {
            Map::Extents(ext) => {
                let i = ext.partition_point(|e| e.lblk + e.len <= lblk);
                Ok(ext.get(i).filter(|e| e.lblk <= lblk && !e.unwritten).map(|e| {
                    let off = lblk - e.lblk;
                    (e.pblk + off, (e.len - off).min(want))
                }))
            }
            Map::Indirect(p) => indirect(fs, p, lblk).map(|o| o.map(|b| (b, 1))),
            Map::Inline(_) => Ok(None),
        }
    }

    /// The first logical block at or after `lblk` that may hold data.
    fn next_data(&self, lblk: u64) -> Option<u64> {
        match self {
            Map::Extents(ext) => {
                let i = ext.partition_point(|e| e.lblk + e.len <= lblk);
                ext[i.min(ext.len())..]
                    .iter()
                    .find(|e| !e.unwritten)
                    .map(|e| e.lblk.max(lblk))
            }
            _ => Some(lblk),
        }
    }
}

fn tree(
    fs: &Inner,
    inode: &Inode,
    node: &[u8],
    at: u64,
    depth_expected: Option<u16>,
    seen: &mut HashSet<u64>,
    out: &mut Vec<Extent>,
) -> Result<()> {
    let b = Bytes::new(node, "ext4 extent tree node", at);
    if b.le16(0)? != 0xF30A {
        return Err(b.damaged(0, format!("inode {}: no extent header magic", inode.ino)));
    }
    let entries = usize::from(b.le16(2)?);
    let max = usize::from(b.le16(4)?);
    let depth = b.le16(6)?;
    let capacity = (node.len() - 12) / 12;
    if entries > max || max > capacity || depth > MAX_DEPTH || depth_expected.is_some_and(|d| d != depth) {
        return Err(b.damaged(
            2,
            format!("inode {}: {entries} entries of {max}, depth {depth}", inode.ino),
        ));
    }
    for i in 0..entries {
        let e = 12 + i * 12;
        let lblk = u64::from(b.le32(e)?);
        if depth == 0 {
            let raw_len = u64::from(b.le16(e + 4)?);
            let (len, unwritten) = if raw_len > 32768 {
                (raw_len - 32768, true)
            } else {
                (raw_len, false)
            };
            let pblk = (u64::from(b.le16(e + 6)?) << 32) | u64::from(b.le32(e + 8)?);
            if out.len() >= MAX_EXTENTS {
                return Err(inode.damaged("more extents than the limit"));
            }
            out.push(Extent {
                lblk,
                len,
                pblk,
                unwritten,
            });
        } else {
            let child = u64::from(b.le32(e + 4)?) | (u64::from(b.le16(e + 8)?) << 32);
            if !seen.insert(child) {
                return Err(inode.damaged(format!("extent tree block {child} is reached twice (a cycle)")));
            }
            let raw = fs.block(child, "ext4 extent tree block")?;
            if let Some(seed) = inode.csum_seed {
                let cmax = usize::from(le16_at(&raw, 4));
                let tail = 12 + 12 * cmax;
                if tail + 4 <= raw.len() && crc32c_raw(seed, &raw[..tail]) != le32(&raw, tail) {
                    return Err(FsError::damaged(
                        format!("ext4 extent tree block of inode {}: checksum mismatch", inode.ino),
                        child * fs.sb.block_size,
                    ));
                }
            }
            tree(
                fs,
                inode,
                &raw,
                child * fs.sb.block_size,
                Some(depth - 1),
                seen,
                out,
            )?;
        }
    }
    Ok(())
}

fn le16_at(b: &[u8], off: usize) -> u16 {
    crate::bytes::le16(b, off)
}

fn check(fs: &Inner, inode: &Inode, ext: &[Extent]) -> Result<()> {
    let mut end = 0u64;
    let mut total = 0u64;
    for e in ext {
        if e.len == 0 || e.lblk < end {
            return Err(inode.damaged(format!("extent at logical block {} overlaps or is empty", e.lblk)));
        }
        if e.pblk.checked_add(e.len).is_none_or(|x| x > fs.sb.blocks_count) || e.pblk == 0 {
            return Err(inode.damaged(format!(
                "extent of {} blocks at block {} is outside the filesystem",
                e.len, e.pblk
            )));
        }
        end = e.lblk + e.len;
        total += e.len;
    }
    if total > fs.sb.blocks_count {
        return Err(inode.damaged(format!("maps {total} blocks, more than the filesystem has")));
    }
    Ok(())
}

/// The classic block map: pointers 0-11 direct, 12 single, 13 double, 14 triple indirect.
fn indirect(fs: &Inner, p: &[u32; 15], lblk: u64) -> Result<Option<u64>> {
    let per = fs.sb.block_size / 4;
    let (mut ptr, mut path): (u32, Vec<u64>) = if lblk < 12 {
        (p[lblk as usize], Vec::new())
    } else if lblk < 12 + per {
        (p[12], vec![lblk - 12])
    } else if lblk < 12 + per + per * per {
        let r = lblk - 12 - per;
        (p[13], vec![r / per, r % per])
    } else if lblk < 12 + per + per * per + per * per * per {
        let r = lblk - 12 - per - per * per;
        (p[14], vec![r / (per * per), (r / per) % per, r % per])
    } else {
        return Ok(None);
    };
    for idx in path.drain(..) {
        if ptr == 0 {
            return Ok(None);
        }
        if u64::from(ptr) >= fs.sb.blocks_count {
            return Err(FsError::damaged(
                format!("ext2/3 indirect block {ptr} is outside the filesystem"),
                0,
            ));
        }
        let mut v = [0u8; 4];
        fs.read_into(u64::from(ptr) * fs.sb.block_size + idx * 4, &mut v)?;
        ptr = u32::from_le_bytes(v);
    }
    if ptr == 0 {
        return Ok(None);
    }
    if u64::from(ptr) >= fs.sb.blocks_count {
        return Err(FsError::damaged(
            format!("ext2/3 data block {ptr} is outside the filesystem"),
            0,
        ));
    }
    Ok(Some(u64::from(ptr)))
}

/// Reads `buf.len()` bytes at byte `pos` through `map`; the caller keeps it within the size.
pub(crate) fn read_mapped(fs: &Inner, map: &Map, pos: u64, buf: &mut [u8]) -> Result<()> {
    if let Map::Inline(d) = map {
        let start = usize::try_from(pos).unwrap_or(usize::MAX);
        let src = start
            .checked_add(buf.len())
            .and_then(|end| d.get(start..end))
            .ok_or_else(|| FsError::damaged("ext4 inline data shorter than the file", 0))?;
        buf.copy_from_slice(src);
        return Ok(());
    }
    let bs = fs.sb.block_size;
    let mut done = 0usize;
    while done < buf.len() {
        let p = pos + done as u64;
        let lblk = p / bs;
        let within = p % bs;
        let left = (buf.len() - done) as u64;
        let want_blocks = (within + left).div_ceil(bs);
        let n = match map.lookup(fs, lblk, want_blocks)? {
            Some((pblk, count)) => {
                let n = (count * bs - within).min(left) as usize;
                fs.read_into(pblk * bs + within, &mut buf[done..done + n])?;
                n
            }
            None => {
                let n = (bs - within).min(left) as usize;
                buf[done..done + n].fill(0);
                n
            }
        };
        done += n;
    }
    Ok(())
}

/// An open ext regular file.
pub(crate) struct Ext4File {
    fs: Arc<Inner>,
    size: u64,
    map: Map,
}

impl Ext4File {
    pub fn new(fs: Arc<Inner>, inode: &Inode) -> Result<Self> {
        let map = Map::of(&fs, inode)?;
        Ok(Self {
            size: inode.size,
            map,
            fs,
        })
    }
}

impl FileData for Ext4File {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        if offset >= self.size {
            return Ok(0);
        }
        let n = buf
            .len()
            .min(usize::try_from(self.size - offset).unwrap_or(usize::MAX));
        read_mapped(&self.fs, &self.map, offset, &mut buf[..n])?;
        Ok(n)
    }

    fn next_data(&mut self, offset: u64) -> Result<Option<u64>> {
        let bs = self.fs.sb.block_size;
        Ok(self
            .map
            .next_data(offset / bs)
            .map(|b| (b * bs).max(offset))
            .filter(|&o| o < self.size))
    }
}

/// A symlink's target: in i_block (fast), inline data, or its first block.
pub(crate) fn read_link(fs: &Inner, inode: &Inode) -> Result<Vec<u8>> {
    if inode.flags & FLAG_ENCRYPT != 0 {
        return Err(FsError::unsupported("ext4 encrypted symlink"));
    }
    let size = inode.size;
    if size == 0 || size > fs.sb.block_size.min(4096) {
        return Err(inode.damaged(format!("symlink of {size} bytes")));
    }
    let acl_sectors = if inode.file_acl != 0 {
        fs.sb.block_size / 512
    } else {
        0
    };
    let fast = inode.flags & (FLAG_EXTENTS | FLAG_INLINE_DATA) == 0
        && size < 60
        && inode.sectors.saturating_sub(acl_sectors) == 0;
    if fast {
        return Ok(inode.i_block[..size as usize].to_vec());
    }
    let map = Map::of(fs, inode)?;
    let mut buf = vec![0u8; size as usize];
    read_mapped(fs, &map, 0, &mut buf)?;
    Ok(buf)
}
