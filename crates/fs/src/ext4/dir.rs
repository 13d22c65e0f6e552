//! ext directories: linear entries in every block (htree index blocks read as one empty entry
//! spanning the block, so a linear scan lists indexed directories too), or inline in the
//! inode (the parent's number, then entries, continued in the `system.data` attribute).

use super::inode::{Inode, FLAG_ENCRYPT, FLAG_INLINE_DATA};
use super::map::{read_mapped, Map};
use super::Inner;
use crate::bytes::{le32, Bytes};
use crate::crc::crc32c_raw;
use crate::error::{FsError, Result};
use crate::model::{DirEntry, FileKind, Name, NodeId};

/// Most directory bytes read (a directory of millions of entries is some hundreds of MiB).
const MAX_DIR_BYTES: u64 = 1 << 30;

pub(crate) fn read_dir(fs: &Inner, inode: &Inode, filetype: bool) -> Result<Vec<DirEntry>> {
    if inode.flags & FLAG_ENCRYPT != 0 {
        return Err(FsError::unsupported("ext4 encrypted directory"));
    }
    let mut out = Vec::new();
    if inode.flags & FLAG_INLINE_DATA != 0 {
        let data = inode.inline_data()?;
        let b = Bytes::new(&data, "ext4 inline directory", inode.at + 40);
        let split = data.len().min(60);
        // The first 4 bytes are the parent's inode number: no entries there.
        entries(fs, &b.sub(4, split.saturating_sub(4))?, inode, filetype, &mut out)?;
        if data.len() > 60 {
            entries(fs, &b.sub(60, data.len() - 60)?, inode, filetype, &mut out)?;
        }
        return Ok(out);
    }
    let bs = fs.sb.block_size;
    if !inode.size.is_multiple_of(bs) || inode.size > MAX_DIR_BYTES {
        return Err(inode.damaged(format!("directory of {} bytes", inode.size)));
    }
    let map = Map::of(fs, inode)?;
    let mut block = vec![0u8; bs as usize];
    for lblk in 0..inode.size / bs {
        read_mapped(fs, &map, lblk * bs, &mut block)?;
        if block.iter().all(|&x| x == 0) {
            // A hole (or a never-written block): no entries.
            continue;
        }
        let b = Bytes::new(&block, "ext4 directory block", 0);
        let mut data = b;
        if let Some(seed) = inode.csum_seed {
            // A leaf block ends in a 12-byte tail entry holding its checksum; index blocks
            // (htree) have their own tail and are only skipped over here.
            let t = block.len() - 12;
            if le32(&block, t) == 0 && block[t + 4..t + 8] == [12, 0, 0, 0xde] {
                if crc32c_raw(seed, &block[..t]) != le32(&block, t + 8) {
                    return Err(FsError::damaged(
                        format!(
                            "ext4 directory block {lblk} of inode {}: checksum mismatch",
                            inode.ino
                        ),
                        inode.at,
                    ));
                }
                data = b.sub(0, t)?;
            }
        }
        entries(fs, &data, inode, filetype, &mut out)?;
    }
    Ok(out)
}

fn rec_len(raw: u16, bs: u64) -> usize {
    if bs >= 65536 && (raw == 65535 || raw == 0) {
        bs as usize
    } else {
        usize::from(raw & 65532) | (usize::from(raw & 3) << 16)
    }
}

fn entries(fs: &Inner, b: &Bytes<'_>, inode: &Inode, filetype: bool, out: &mut Vec<DirEntry>) -> Result<()> {
    let mut pos = 0usize;
    while pos + 8 <= b.len() {
        let ino = u64::from(b.le32(pos)?);
        let len = rec_len(b.le16(pos + 4)?, fs.sb.block_size);
        let (name_len, ft) = if filetype {
            (usize::from(b.u8(pos + 6)?), Some(b.u8(pos + 7)?))
        } else {
            (usize::from(b.le16(pos + 6)?), None)
        };
        if len < 8 || !len.is_multiple_of(4) || pos + len > b.len() || (ino != 0 && 8 + name_len > len) {
            return Err(b.damaged(
                pos,
                format!(
                    "directory of inode {}: entry of length {len}, name of {name_len}",
                    inode.ino
                ),
            ));
        }
        if ino != 0 {
            let name = b.slice(pos + 8, name_len)?;
            if name_len == 0 {
                return Err(b.damaged(
                    pos,
                    format!("directory of inode {}: entry with an empty name", inode.ino),
                ));
            }
            if ino > fs.sb.inodes_count {
                return Err(b.damaged(
                    pos,
                    format!(
                        "entry {:?} names inode {ino}, outside the filesystem",
                        String::from_utf8_lossy(name)
                    ),
                ));
            }
            if name != b"." && name != b".." {
                out.push(DirEntry {
                    name: Name(name.to_vec()),
                    node: NodeId(ino),
                    kind: ft.and_then(FileKind::from_dirent_type),
                });
            }
        }
        pos += len;
    }
    Ok(())
}
