//! The XFS block map: where a file's (or directory's) blocks are. Extent records in the inode,
//! or a bmap btree rooted in the inode with long-format blocks (`BMAP`, or `BMA3` with a CRC
//! header on v5). The map is read whole and checked: sorted, non-overlapping, inside the
//! filesystem, as many records as the inode says.

use std::collections::HashSet;
use std::sync::Arc;

use super::inode::{Format, Inode};
use super::Inner;
use crate::bytes::{alloc, be64, Bytes};
use crate::crc::crc32c_skipping;
use crate::error::{FsError, Result};
use crate::model::FileData;

/// One extent: `len` blocks of the file from block `off` are at filesystem block `start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Extent {
    pub off: u64,
    pub start: u64,
    pub len: u64,
    /// Preallocated, never written: reads as zeros.
    pub unwritten: bool,
}

/// XFS_BM_MAXLEVELS for 64-bit extent counts is 9 or fewer.
const MAX_LEVELS: u16 = 9;
/// Most extents one file may have here (4 Mi records, 100+ MiB of map): beyond it is more
/// likely damage than a file.
const MAX_EXTENTS: u64 = 4 << 20;
const BMAP_MAGIC: &[u8; 4] = b"BMAP";
const BMA3_MAGIC: &[u8; 4] = b"BMA3";

/// Decodes one 16-byte packed extent record.
fn record(r: &[u8]) -> Extent {
    let l0 = be64(r, 0);
    let l1 = be64(r, 8);
    Extent {
        off: (l0 & ((1u64 << 63) - 1)) >> 9,
        start: ((l0 & 0x1ff) << 43) | (l1 >> 21),
        len: l1 & ((1u64 << 21) - 1),
        unwritten: l0 >> 63 != 0,
    }
}

/// The extent map of the inode's data fork.
pub(crate) fn extents(fs: &Inner, inode: &Inode) -> Result<Vec<Extent>> {
    if inode.nextents > MAX_EXTENTS {
        return Err(inode.damaged(format!("{} extents", inode.nextents)));
    }
    let mut out = Vec::new();
    match inode.format {
        Format::Extents => {
            let n = inode.nextents as usize;
            let b = Bytes::new(&inode.fork, "XFS extent list", inode.fork_at);
            for i in 0..n {
                out.push(record(b.slice(i * 16, 16)?));
            }
        }
        Format::Btree => {
            let b = Bytes::new(&inode.fork, "XFS bmap btree root", inode.fork_at);
            let level = b.be16(0)?;
            let numrecs = usize::from(b.be16(2)?);
            let maxrecs = (inode.fork.len().saturating_sub(4)) / 16;
            if level == 0 || level > MAX_LEVELS || numrecs == 0 || numrecs > maxrecs {
                return Err(b.damaged(
                    0,
                    format!("level {level}, {numrecs} records of at most {maxrecs}"),
                ));
            }
            let mut seen = HashSet::new();
            for i in 0..numrecs {
                let ptr = b.be64(4 + maxrecs * 8 + i * 8)?;
                walk(fs, inode, ptr, level - 1, &mut seen, &mut out)?;
            }
        }
        Format::Local | Format::Dev => return Ok(out),
    }
    check(fs, inode, &out)?;
    Ok(out)
}

/// Reads btree block `fsb` expected at `level`, appending its records (leaf) or walking its
/// children (node). `seen` ends cycles; the levels strictly decrease, which bounds depth.
fn walk(
    fs: &Inner,
    inode: &Inode,
    fsb: u64,
    level: u16,
    seen: &mut HashSet<u64>,
    out: &mut Vec<Extent>,
) -> Result<()> {
    if !seen.insert(fsb) {
        return Err(inode.damaged(format!("bmap btree block {fsb} is reached twice (a cycle)")));
    }
    let at = fs
        .sb
        .block_offset(fsb, 1)
        .map_err(|_| inode.damaged(format!("bmap btree pointer {fsb}")))?;
    let raw = fs.read(at, u64::from(fs.sb.block_size), "XFS bmap btree block")?;
    let b = Bytes::new(&raw, "XFS bmap btree block", at);
    let hdr = if fs.sb.v5 {
        if b.slice(0, 4)? != BMA3_MAGIC {
            return Err(b.damaged(0, "no BMA3 magic"));
        }
        if crc32c_skipping(&raw, 64) != b.le32(64)? {
            return Err(b.damaged(64, "CRC mismatch"));
        }
        if b.be64(24)? != at / 512 {
            return Err(b.damaged(24, "block number in header is not where it is"));
        }
        if b.be64(56)? != inode.ino {
            return Err(b.damaged(56, format!("owned by inode {} not {}", b.be64(56)?, inode.ino)));
        }
        72
    } else {
        if b.slice(0, 4)? != BMAP_MAGIC {
            return Err(b.damaged(0, "no BMAP magic"));
        }
        24
    };
    let got_level = b.be16(4)?;
    if got_level != level {
        return Err(b.damaged(4, format!("level {got_level}, expected {level}")));
    }
    let numrecs = usize::from(b.be16(6)?);
    let maxrecs = (raw.len() - hdr) / 16;
    if numrecs == 0 || numrecs > maxrecs {
        return Err(b.damaged(6, format!("{numrecs} records of at most {maxrecs}")));
    }
    if level == 0 {
        if out.len() as u64 + numrecs as u64 > MAX_EXTENTS {
            return Err(inode.damaged("more extents than the limit"));
        }
        for i in 0..numrecs {
            out.push(record(b.slice(hdr + i * 16, 16)?));
        }
    } else {
        for i in 0..numrecs {
            let ptr = b.be64(hdr + maxrecs * 8 + i * 8)?;
            walk(fs, inode, ptr, level - 1, seen, out)?;
        }
    }
    Ok(())
}

/// Checks the map: the count the inode gives, sorted and disjoint, inside the filesystem,
/// mapping no more blocks than the filesystem has.
fn check(fs: &Inner, inode: &Inode, ext: &[Extent]) -> Result<()> {
    if ext.len() as u64 != inode.nextents {
        return Err(inode.damaged(format!(
            "{} extents found, the inode says {}",
            ext.len(),
            inode.nextents
        )));
    }
    let mut end = 0u64;
    let mut total = 0u64;
    // File offsets stay within i64 bytes, so block-to-byte products cannot overflow.
    let max_blocks = (i64::MAX as u64) >> fs.sb.blocklog;
    for e in ext {
        if e.len == 0 || e.off < end {
            return Err(inode.damaged(format!("extent at file block {} overlaps or is empty", e.off)));
        }
        if e.off + e.len > max_blocks {
            return Err(inode.damaged(format!("extent at file block {} is past the largest file", e.off)));
        }
        fs.sb.block_offset(e.start, e.len).map_err(|_| {
            inode.damaged(format!(
                "extent of {} blocks at block {} is outside the filesystem",
                e.len, e.start
            ))
        })?;
        end = e.off + e.len;
        total += e.len;
    }
    if total > fs.sb.dblocks {
        return Err(inode.damaged(format!("maps {total} blocks, more than the filesystem has")));
    }
    Ok(())
}

/// Index of the extent containing file block `fb`, or of the first one after it.
fn find(ext: &[Extent], fb: u64) -> usize {
    ext.partition_point(|e| e.off + e.len <= fb)
}

/// Reads `buf.len()` bytes of the mapped data at byte `pos` of a file with extents `ext`;
/// holes and unwritten extents read as zeros. The caller keeps `pos + buf.len()` within the
/// file's size.
pub(crate) fn read_mapped(fs: &Inner, ext: &[Extent], pos: u64, buf: &mut [u8]) -> Result<()> {
    let bs = u64::from(fs.sb.block_size);
    let mut done = 0usize;
    while done < buf.len() {
        let p = pos + done as u64;
        let fb = p / bs;
        let i = find(ext, fb);
        let left = buf.len() - done;
        match ext.get(i) {
            Some(e) if e.off <= fb => {
                let ext_end = (e.off + e.len) * bs;
                let n = left.min(usize::try_from(ext_end - p).unwrap_or(usize::MAX));
                if e.unwritten {
                    buf[done..done + n].fill(0);
                } else {
                    let base = fs.sb.block_offset(e.start, e.len)?;
                    fs.read_into(base + (p - e.off * bs), &mut buf[done..done + n])?;
                }
                done += n;
            }
            next => {
                let hole_end = next.map_or(u64::MAX, |e| e.off.saturating_mul(bs));
                let n = left.min(usize::try_from(hole_end - p).unwrap_or(usize::MAX));
                buf[done..done + n].fill(0);
                done += n;
            }
        }
    }
    Ok(())
}

/// An open XFS regular file.
pub(crate) struct XfsFile {
    pub fs: Arc<Inner>,
    pub size: u64,
    pub extents: Vec<Extent>,
}

impl FileData for XfsFile {
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
        read_mapped(&self.fs, &self.extents, offset, &mut buf[..n])?;
        Ok(n)
    }

    fn next_data(&mut self, offset: u64) -> Result<Option<u64>> {
        let bs = u64::from(self.fs.sb.block_size);
        let i = find(&self.extents, offset / bs);
        let next = self.extents[i.min(self.extents.len())..]
            .iter()
            .find(|e| !e.unwritten)
            .map(|e| offset.max(e.off * bs));
        Ok(next.filter(|&o| o < self.size))
    }
}

/// Reads `len` bytes from the start of a mapped object (a remote symlink, a directory block)
/// at file block `fb`, refusing holes.
pub(crate) fn read_blocks(fs: &Inner, inode: &Inode, ext: &[Extent], fb: u64, count: u64) -> Result<Vec<u8>> {
    let bs = u64::from(fs.sb.block_size);
    let len = count
        .checked_mul(bs)
        .ok_or_else(|| FsError::damaged("block count overflows", inode.fork_at))?;
    let mut buf = alloc(len, 1 << 20, "XFS mapped blocks", inode.fork_at)?;
    for k in 0..count {
        let b = fb + k;
        let i = find(ext, b);
        match ext.get(i) {
            Some(e) if e.off <= b && !e.unwritten => {}
            _ => return Err(inode.damaged(format!("block {b} of a directory or symlink is a hole"))),
        }
    }
    read_mapped(fs, ext, fb * bs, &mut buf)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_record() {
        // startoff 5, startblock 0x1234567, blockcount 17, unwritten.
        let off: u64 = 5;
        let start: u64 = 0x123_4567;
        let len: u64 = 17;
        let l0 = (1u64 << 63) | (off << 9) | (start >> 43);
        let l1 = ((start & ((1u64 << 43) - 1)) << 21) | len;
        let mut r = [0u8; 16];
        r[..8].copy_from_slice(&l0.to_be_bytes());
        r[8..].copy_from_slice(&l1.to_be_bytes());
        assert_eq!(
            record(&r),
            Extent {
                off,
                start,
                len,
                unwritten: true
            }
        );
    }
}
