//! ext2, ext3 and ext4, read-only, written from the on-disk format (the kernel's
//! Documentation/filesystems/ext4): 32 and 64-bit group descriptors, meta_bg, flex_bg,
//! extent trees and indirect block maps, inline data, linear and htree directories (read
//! linearly: htree index blocks look like empty entries), fast and slow symlinks. With
//! metadata_csum, the superblock's, group descriptors', inodes', extent blocks' and
//! directory blocks' checksums are checked. Not read: extended attributes, encrypted
//! files, the journal (no replay: a snapshot of a mounted filesystem reads as its metadata
//! stands on disk, and says so in a warning).
//!
//! Not the `ext4-view` crate: its metadata has no ctime, link count, inode number or device
//! number, and its handle is `Rc`, so not `Send`.

mod dir;
mod inode;
mod map;

use std::sync::Arc;

use crate::bytes::{le16, Bytes};
use crate::crc::crc32c_raw;
use crate::device::{read, read_vec, Device};
use crate::error::{FsError, Result};
use crate::model::{DirEntry, FileData, FileKind, Filesystem, FsType, Metadata, NodeId};

use inode::Inode;

const INCOMPAT_FILETYPE: u32 = 0x2;
const INCOMPAT_RECOVER: u32 = 0x4;
const INCOMPAT_META_BG: u32 = 0x10;
const INCOMPAT_64BIT: u32 = 0x80;
const INCOMPAT_CSUM_SEED: u32 = 0x2000;
/// filetype, recover, meta_bg, extents, 64bit, mmp, flex_bg, ea_inode, csum_seed, largedir,
/// inline_data, encrypt (per file: refused), casefold.
const KNOWN_INCOMPAT: u32 =
    0x2 | 0x4 | 0x10 | 0x40 | 0x80 | 0x100 | 0x200 | 0x400 | 0x2000 | 0x4000 | 0x8000 | 0x1_0000 | 0x2_0000;
const RO_COMPAT_SPARSE_SUPER: u32 = 0x1;
const RO_COMPAT_METADATA_CSUM: u32 = 0x400;

pub(crate) struct Sb {
    pub block_size: u64,
    pub blocks_count: u64,
    pub first_data_block: u64,
    pub blocks_per_group: u64,
    pub inodes_per_group: u64,
    pub inodes_count: u64,
    pub inode_size: u64,
    pub desc_size: u64,
    pub group_count: u64,
    pub first_meta_bg: u64,
    pub incompat: u32,
    pub ro_compat: u32,
    /// The metadata_csum seed, when checksums are on.
    pub csum_seed: Option<u32>,
    pub label: String,
    pub fs_type: FsType,
}

pub(crate) struct Inner {
    dev: Arc<dyn Device>,
    sb: Sb,
}

impl Inner {
    fn read(&self, at: u64, len: u64, what: &str) -> Result<Vec<u8>> {
        read_vec(self.dev.as_ref(), at, len, 1 << 20, what)
    }

    fn read_into(&self, at: u64, buf: &mut [u8]) -> Result<()> {
        read(self.dev.as_ref(), at, buf)
    }

    fn block(&self, n: u64, what: &str) -> Result<Vec<u8>> {
        if n >= self.sb.blocks_count {
            return Err(FsError::damaged(
                format!("{what}: block {n} is past the filesystem's end"),
                0,
            ));
        }
        self.read(n * self.sb.block_size, self.sb.block_size, what)
    }

    /// The block holding group descriptor block `index` (meta_bg puts later ones in the
    /// first, second and last group of each meta group).
    fn desc_block(&self, index: u64) -> u64 {
        let sb = &self.sb;
        if sb.incompat & INCOMPAT_META_BG == 0 || index < sb.first_meta_bg {
            return sb.first_data_block + 1 + index;
        }
        let per_block = sb.block_size / sb.desc_size;
        let group = index * per_block;
        group * sb.blocks_per_group + sb.first_data_block + u64::from(self.has_super(group))
    }

    fn has_super(&self, group: u64) -> bool {
        if self.sb.ro_compat & RO_COMPAT_SPARSE_SUPER == 0 || group <= 1 {
            return true;
        }
        [3u64, 5, 7].iter().any(|&p| {
            let mut g = group;
            while g.is_multiple_of(p) {
                g /= p;
            }
            g == 1
        })
    }

    /// The first block of the inode table of `group`, checking the descriptor.
    fn inode_table(&self, group: u64) -> Result<u64> {
        let sb = &self.sb;
        let per_block = sb.block_size / sb.desc_size;
        let blk = self.desc_block(group / per_block);
        let at = blk
            .checked_mul(sb.block_size)
            .and_then(|b| b.checked_add((group % per_block) * sb.desc_size))
            .ok_or_else(|| FsError::damaged("group descriptor offset overflows", 0))?;
        let raw = self.read(at, sb.desc_size, "ext4 group descriptor")?;
        let b = Bytes::new(&raw, "ext4 group descriptor", at);
        if let Some(seed) = sb.csum_seed {
            let mut d = raw.clone();
            d[0x1e..0x20].fill(0);
            let crc = crc32c_raw(crc32c_raw(seed, &(group as u32).to_le_bytes()), &d) & 0xffff;
            if crc != u32::from(le16(&raw, 0x1e)) {
                return Err(b.damaged(0x1e, format!("group {group}: checksum mismatch")));
            }
        }
        let mut table = u64::from(b.le32(8)?);
        if sb.incompat & INCOMPAT_64BIT != 0 && sb.desc_size >= 64 {
            table |= u64::from(b.le32(0x28)?) << 32;
        }
        if table == 0 || table >= sb.blocks_count {
            return Err(b.damaged(8, format!("group {group}: inode table at block {table}")));
        }
        Ok(table)
    }

    fn inode(&self, ino: u64) -> Result<Inode> {
        let sb = &self.sb;
        if ino == 0 || ino > sb.inodes_count {
            return Err(FsError::damaged(
                format!("ext4 inode number {ino} is outside the filesystem"),
                0,
            ));
        }
        let group = (ino - 1) / sb.inodes_per_group;
        if group >= sb.group_count {
            return Err(FsError::damaged(
                format!("ext4 inode {ino} is in group {group} of {}", sb.group_count),
                0,
            ));
        }
        let index = (ino - 1) % sb.inodes_per_group;
        let table = self.inode_table(group)?;
        let at = table * sb.block_size + index * sb.inode_size;
        let raw = self.read(at, sb.inode_size, "ext4 inode")?;
        Inode::parse(sb, ino, &raw, at)
    }
}

/// An ext2, ext3 or ext4 filesystem.
pub struct Ext4(Arc<Inner>);

impl Ext4 {
    /// Reads and checks the superblock.
    pub fn open(dev: Arc<dyn Device>) -> Result<Self> {
        let raw = read_vec(dev.as_ref(), 1024, 1024, 1024, "ext4 superblock")?;
        let sb = parse_sb(&raw)?;
        if sb.blocks_count.saturating_mul(sb.block_size) > dev.size() {
            return Err(FsError::damaged(
                format!(
                    "ext4: {} blocks of {} bytes do not fit a device of {} bytes",
                    sb.blocks_count,
                    sb.block_size,
                    dev.size()
                ),
                1024,
            ));
        }
        Ok(Self(Arc::new(Inner { dev, sb })))
    }
}

fn parse_sb(raw: &[u8]) -> Result<Sb> {
    let b = Bytes::new(raw, "ext4 superblock", 1024);
    if b.le16(56)? != 0xEF53 {
        return Err(b.damaged(56, "no ext2/3/4 magic"));
    }
    let incompat = b.le32(96)?;
    let ro_compat = b.le32(100)?;
    if incompat & 0x1 != 0 {
        return Err(FsError::unsupported("ext2 compression"));
    }
    if incompat & 0x8 != 0 {
        return Err(FsError::unsupported("ext3/4 external journal device"));
    }
    if incompat & 0x1000 != 0 {
        return Err(FsError::unsupported("ext4 dirdata (Lustre)"));
    }
    if incompat & !KNOWN_INCOMPAT != 0 {
        return Err(FsError::unsupported(format!(
            "ext4 with unknown incompatible features {:#x}",
            incompat & !KNOWN_INCOMPAT
        )));
    }
    let csum_seed = if ro_compat & RO_COMPAT_METADATA_CSUM != 0 {
        let stored = b.le32(0x3fc)?;
        if crc32c_raw(!0, b.slice(0, 0x3fc)?) != stored {
            return Err(b.damaged(0x3fc, "superblock checksum mismatch"));
        }
        Some(if incompat & INCOMPAT_CSUM_SEED != 0 {
            b.le32(0x270)?
        } else {
            crc32c_raw(!0, b.slice(104, 16)?)
        })
    } else {
        None
    };
    let log = b.le32(24)?;
    if log > 6 {
        return Err(b.damaged(24, format!("block size 2^{}", log + 10)));
    }
    let block_size = 1024u64 << log;
    let mut blocks_count = u64::from(b.le32(4)?);
    let desc_size = if incompat & INCOMPAT_64BIT != 0 {
        blocks_count |= u64::from(b.le32(0x150)?) << 32;
        u64::from(b.le16(0xfe)?)
    } else {
        32
    };
    if !(32..=1024).contains(&desc_size) || !desc_size.is_power_of_two() {
        return Err(b.damaged(0xfe, format!("group descriptor size {desc_size}")));
    }
    let rev = b.le32(76)?;
    let inode_size = if rev == 0 { 128 } else { u64::from(b.le16(88)?) };
    if inode_size < 128 || inode_size > block_size || !inode_size.is_power_of_two() {
        return Err(b.damaged(88, format!("inode size {inode_size}")));
    }
    let first_data_block = u64::from(b.le32(20)?);
    let blocks_per_group = u64::from(b.le32(32)?);
    let inodes_per_group = u64::from(b.le32(40)?);
    let inodes_count = u64::from(b.le32(0)?);
    if blocks_per_group == 0
        || blocks_per_group > 8 * block_size
        || inodes_per_group == 0
        || blocks_count <= first_data_block
    {
        return Err(b.damaged(
            32,
            format!("{blocks_per_group} blocks and {inodes_per_group} inodes per group"),
        ));
    }
    let group_count = (blocks_count - first_data_block).div_ceil(blocks_per_group);
    if inodes_count > group_count.saturating_mul(inodes_per_group) {
        return Err(b.damaged(
            0,
            format!("{inodes_count} inodes in {group_count} groups of {inodes_per_group}"),
        ));
    }
    let label_raw = b.slice(120, 16)?;
    let label_len = label_raw.iter().position(|&c| c == 0).unwrap_or(16);
    let fs_type = match crate::detect::ext_kind(raw) {
        crate::detect::Content::Filesystem(t) => t,
        _ => FsType::Ext4,
    };
    Ok(Sb {
        block_size,
        blocks_count,
        first_data_block,
        blocks_per_group,
        inodes_per_group,
        inodes_count,
        inode_size,
        desc_size,
        group_count,
        first_meta_bg: u64::from(b.le32(260)?),
        incompat,
        ro_compat,
        csum_seed,
        label: String::from_utf8_lossy(&label_raw[..label_len]).into_owned(),
        fs_type,
    })
}

impl Filesystem for Ext4 {
    fn fs_type(&self) -> FsType {
        self.0.sb.fs_type
    }

    fn label(&self) -> Option<String> {
        Some(self.0.sb.label.clone()).filter(|l| !l.is_empty())
    }

    fn warnings(&self) -> Vec<String> {
        if self.0.sb.incompat & INCOMPAT_RECOVER != 0 {
            vec!["the journal needs recovery (the filesystem was in use); it is not replayed, so the last changes may be missing".to_string()]
        } else {
            Vec::new()
        }
    }

    fn root(&self) -> NodeId {
        NodeId(2)
    }

    fn read_dir(&self, dir: NodeId) -> Result<Vec<DirEntry>> {
        let inode = self.0.inode(dir.0)?;
        if inode.kind != FileKind::Dir {
            return Err(FsError::NotADirectory(format!("inode {}", dir.0)));
        }
        dir::read_dir(&self.0, &inode, self.0.sb.incompat & INCOMPAT_FILETYPE != 0)
    }

    fn metadata(&self, node: NodeId) -> Result<Metadata> {
        Ok(self.0.inode(node.0)?.metadata())
    }

    fn read_link(&self, node: NodeId) -> Result<Vec<u8>> {
        let inode = self.0.inode(node.0)?;
        if inode.kind != FileKind::Symlink {
            return Err(FsError::NotASymlink(format!("inode {}", node.0)));
        }
        map::read_link(&self.0, &inode)
    }

    fn open(&self, node: NodeId) -> Result<Box<dyn FileData>> {
        let inode = self.0.inode(node.0)?;
        match inode.kind {
            FileKind::File => {}
            FileKind::Dir => return Err(FsError::IsADirectory(format!("inode {}", node.0))),
            k => return Err(FsError::unsupported(format!("reading the data of a {k:?}"))),
        }
        Ok(Box::new(map::Ext4File::new(self.0.clone(), &inode)?))
    }
}
