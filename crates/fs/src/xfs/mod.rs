//! XFS, read-only, written from the on-disk format (the kernel's `libxfs` headers and the
//! "XFS Algorithms & Data Structures" document): v4 and v5 superblocks, any number of AGs,
//! inode cores v1-v3, data forks in local, extents and btree format, every directory form,
//! local and remote symlinks, bigtime. Every v5 metadata block's CRC, owner and location are
//! checked. Not read: extended attributes, the realtime device, the log (no replay: a
//! snapshot of a mounted filesystem reads as its metadata stands on disk).

mod bmap;
mod dir;
mod inode;
mod superblock;
mod symlink;

use std::sync::Arc;

use crate::device::{read, read_vec, Device};
use crate::error::{FsError, Result};
use crate::model::{DirEntry, FileData, FileKind, Filesystem, FsType, Metadata, NodeId};

use inode::Inode;
use superblock::Superblock;

pub(crate) struct Inner {
    dev: Arc<dyn Device>,
    sb: Superblock,
}

impl Inner {
    /// Reads `len` bytes at `at` (metadata: at most 1 MiB at once).
    fn read(&self, at: u64, len: u64, what: &str) -> Result<Vec<u8>> {
        read_vec(self.dev.as_ref(), at, len, 1 << 20, what)
    }

    fn read_into(&self, at: u64, buf: &mut [u8]) -> Result<()> {
        read(self.dev.as_ref(), at, buf)
    }

    fn inode(&self, ino: u64) -> Result<Inode> {
        let at = self.sb.inode_offset(ino)?;
        let raw = self.read(at, u64::from(self.sb.inode_size), "XFS inode")?;
        Inode::parse(&self.sb, ino, &raw, at)
    }
}

/// An XFS filesystem.
pub struct Xfs(Arc<Inner>);

impl Xfs {
    /// Reads and checks the superblock.
    pub fn open(dev: Arc<dyn Device>) -> Result<Self> {
        let mut raw = vec![0u8; 512];
        read(dev.as_ref(), 0, &mut raw)?;
        // The superblock's CRC covers a whole sector, which may be larger than 512 bytes.
        let sect = u64::from(u16::from_be_bytes([raw[102], raw[103]]));
        if (512..=32768).contains(&sect) && sect > 512 && sect <= dev.size() {
            raw = read_vec(dev.as_ref(), 0, sect, 32768, "XFS superblock")?;
        }
        let sb = Superblock::parse(&raw)?;
        let need = sb.dblocks.saturating_mul(u64::from(sb.block_size));
        if need > dev.size() {
            return Err(FsError::damaged(
                format!(
                    "XFS: {} blocks of {} bytes need {need} bytes; the device has {}",
                    sb.dblocks,
                    sb.block_size,
                    dev.size()
                ),
                8,
            ));
        }
        Ok(Self(Arc::new(Inner { dev, sb })))
    }
}

impl Filesystem for Xfs {
    fn fs_type(&self) -> FsType {
        FsType::Xfs
    }

    fn label(&self) -> Option<String> {
        Some(self.0.sb.label.clone()).filter(|l| !l.is_empty())
    }

    fn warnings(&self) -> Vec<String> {
        if self.0.sb.needs_repair {
            vec!["the filesystem is marked as needing xfs_repair (a repair was interrupted)".to_string()]
        } else {
            Vec::new()
        }
    }

    fn root(&self) -> NodeId {
        NodeId(self.0.sb.root_ino)
    }

    fn read_dir(&self, dir: NodeId) -> Result<Vec<DirEntry>> {
        let inode = self.0.inode(dir.0)?;
        if inode.kind != FileKind::Dir {
            return Err(FsError::NotADirectory(format!("inode {}", dir.0)));
        }
        dir::read_dir(&self.0, &inode)
    }

    fn metadata(&self, node: NodeId) -> Result<Metadata> {
        Ok(self.0.inode(node.0)?.metadata())
    }

    fn read_link(&self, node: NodeId) -> Result<Vec<u8>> {
        let inode = self.0.inode(node.0)?;
        if inode.kind != FileKind::Symlink {
            return Err(FsError::NotASymlink(format!("inode {}", node.0)));
        }
        symlink::read_link(&self.0, &inode)
    }

    fn open(&self, node: NodeId) -> Result<Box<dyn FileData>> {
        let inode = self.0.inode(node.0)?;
        match inode.kind {
            FileKind::File => {}
            FileKind::Dir => return Err(FsError::IsADirectory(format!("inode {}", node.0))),
            k => return Err(FsError::unsupported(format!("reading the data of a {k:?}"))),
        }
        if inode.realtime {
            return Err(FsError::unsupported(
                "XFS realtime file (data on the realtime device)",
            ));
        }
        let extents = bmap::extents(&self.0, &inode)?;
        Ok(Box::new(bmap::XfsFile {
            fs: self.0.clone(),
            size: inode.size,
            extents,
        }))
    }
}
