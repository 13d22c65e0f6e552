//! XFS symbolic links: the target in the inode (local), or in blocks (remote), which on v5
//! filesystems start with a 56-byte `XSLM` header carrying a CRC, the target offset and
//! length the block holds, and the owning inode.

use super::bmap::{extents, read_blocks};
use super::inode::{Format, Inode};
use super::Inner;
use crate::bytes::Bytes;
use crate::crc::crc32c_skipping;
use crate::error::Result;

/// XFS_SYMLINK_MAXLEN.
const MAX_LEN: u64 = 1024;
const HDR: usize = 56;

pub(crate) fn read_link(fs: &Inner, inode: &Inode) -> Result<Vec<u8>> {
    if inode.size == 0 || inode.size > MAX_LEN {
        return Err(inode.damaged(format!("symlink of {} bytes", inode.size)));
    }
    let len = inode.size as usize;
    match inode.format {
        Format::Local => inode
            .fork
            .get(..len)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| inode.damaged("inline symlink longer than its fork")),
        Format::Extents | Format::Btree => remote(fs, inode, len),
        Format::Dev => Err(inode.damaged("a symlink with a device fork")),
    }
}

fn remote(fs: &Inner, inode: &Inode, len: usize) -> Result<Vec<u8>> {
    let ext = extents(fs, inode)?;
    let bs = fs.sb.block_size as usize;
    if !fs.sb.v5 {
        let blocks = len.div_ceil(bs) as u64;
        let mut raw = read_blocks(fs, inode, &ext, 0, blocks)?;
        raw.truncate(len);
        return Ok(raw);
    }
    let per = bs - HDR;
    let mut out = Vec::with_capacity(len);
    let mut fb = 0u64;
    while out.len() < len {
        let raw = read_blocks(fs, inode, &ext, fb, 1)?;
        let at = ext
            .iter()
            .find(|e| e.off <= fb && fb < e.off + e.len)
            .and_then(|e| fs.sb.block_offset(e.start + (fb - e.off), 1).ok())
            .unwrap_or(0);
        let b = Bytes::new(&raw, "XFS remote symlink block", at);
        if b.slice(0, 4)? != b"XSLM" {
            return Err(b.damaged(0, "no XSLM magic"));
        }
        if crc32c_skipping(&raw, 12) != b.le32(12)? {
            return Err(b.damaged(12, "CRC mismatch"));
        }
        let offset = b.be32(4)? as usize;
        let bytes = b.be32(8)? as usize;
        let want = per.min(len - out.len());
        if offset != out.len() || bytes != want {
            return Err(b.damaged(
                4,
                format!(
                    "holds {bytes} bytes at {offset}, expected {want} at {}",
                    out.len()
                ),
            ));
        }
        if b.be64(32)? != inode.ino {
            return Err(b.damaged(32, format!("owned by inode {} not {}", b.be64(32)?, inode.ino)));
        }
        out.extend_from_slice(b.slice(HDR, bytes)?);
        fb += 1;
    }
    Ok(out)
}
