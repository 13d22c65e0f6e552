//! FAT12, FAT16 and FAT32 (EFI system partitions among them), read-only: the BPB, cluster
//! chains, long file names (VFAT, checked against the short name's checksum), the lower-case
//! flags of short names. Times are local wall-clock time as stored: FAT has no time zone,
//! so they are reported as if UTC. FAT has no owners or permissions: files are 0644 and
//! directories 0755, without write bits when read-only. FAT has no inode numbers: a node is
//! the byte offset of its directory entry.
//!
//! Not the `fatfs` crate: it needs a writable device (`Read + Write + Seek`), its handle is not
//! `Sync`, and it was not written for hostile images; FAT is small enough to read directly.

mod dir;

use std::sync::Arc;

use crate::bytes::Bytes;
use crate::device::{read, read_vec, Device};
use crate::error::{FsError, Result};
use crate::model::{DirEntry, FileData, FileKind, Filesystem, FsType, Metadata, NodeId};

/// The root directory's node: offset 0 is the boot sector, never a directory entry.
const ROOT: NodeId = NodeId(0);
/// The largest directory FAT allows: 65536 entries of 32 bytes.
const MAX_DIR_BYTES: u64 = 65536 * 32;

#[derive(Debug, Clone)]
pub(crate) struct Bpb {
    pub fat_type: FsType,
    pub cluster_size: u64,
    /// Byte offset of the FAT in use.
    pub fat_start: u64,
    /// Byte offset and length of the FAT12/16 fixed root directory.
    pub root_start: u64,
    pub root_len: u64,
    /// FAT32's root directory cluster.
    pub root_cluster: u32,
    /// Byte offset of cluster 2.
    pub data_start: u64,
    pub clusters: u32,
    pub total_bytes: u64,
    pub label: Option<String>,
}

impl Bpb {
    pub fn parse(b: &[u8]) -> Option<Bpb> {
        let b = Bytes::new(b, "FAT boot sector", 0);
        let jump = b.u8(0).ok()?;
        if !(jump == 0xeb && b.u8(2).ok()? == 0x90 || jump == 0xe9) {
            return None;
        }
        let sector_size = u64::from(b.le16(11).ok()?);
        let spc = u64::from(b.u8(13).ok()?);
        let reserved = u64::from(b.le16(14).ok()?);
        let fats = u64::from(b.u8(16).ok()?);
        let root_entries = u64::from(b.le16(17).ok()?);
        let media = b.u8(21).ok()?;
        if !matches!(sector_size, 512 | 1024 | 2048 | 4096)
            || !spc.is_power_of_two()
            || spc > 128
            || reserved == 0
            || !(1..=4).contains(&fats)
            || !(media == 0xf0 || media >= 0xf8)
        {
            return None;
        }
        let total = match b.le16(19).ok()? {
            0 => u64::from(b.le32(32).ok()?),
            n => u64::from(n),
        };
        let fat16 = u64::from(b.le16(22).ok()?);
        let fat32 = fat16 == 0;
        let fat_sectors = if fat32 { u64::from(b.le32(36).ok()?) } else { fat16 };
        if total == 0 || fat_sectors == 0 || fat32 && root_entries != 0 || !fat32 && root_entries == 0 {
            return None;
        }
        let root_sectors = (root_entries * 32).div_ceil(sector_size);
        let meta = reserved + fats * fat_sectors + root_sectors;
        let data_sectors = total.checked_sub(meta)?;
        let clusters = u32::try_from(data_sectors / spc).ok()?;
        if clusters == 0 {
            return None;
        }
        // The FAT must hold an entry for every cluster (12, 16 or 32 bits each).
        let entry_bits: u64 = if fat32 {
            32
        } else if clusters <= 4084 {
            12
        } else {
            16
        };
        if (u64::from(clusters) + 2) * entry_bits > fat_sectors * sector_size * 8 {
            return None;
        }
        let fat_type = if fat32 {
            FsType::Fat32
        } else if clusters <= 4084 {
            FsType::Fat12
        } else {
            FsType::Fat16
        };
        // FAT32 may mirror no FAT and use one given in the extended flags.
        let active = if fat32 && b.le16(40).ok()? & 0x80 != 0 {
            u64::from(b.le16(40).ok()? & 0xf)
        } else {
            0
        };
        if active >= fats {
            return None;
        }
        let (sig_off, label_off) = if fat32 { (66, 71) } else { (38, 43) };
        let label = if b.u8(sig_off).ok()? == 0x29 {
            let raw = b.slice(label_off, 11).ok()?;
            let s: String = raw.iter().map(|&c| dir::cp437(c)).collect();
            let s = s.trim_end().to_string();
            (!s.is_empty() && s != "NO NAME").then_some(s)
        } else {
            None
        };
        Some(Bpb {
            fat_type,
            cluster_size: spc * sector_size,
            fat_start: (reserved + active * fat_sectors) * sector_size,
            root_start: (reserved + fats * fat_sectors) * sector_size,
            root_len: root_sectors * sector_size,
            root_cluster: if fat32 { b.le32(44).ok()? } else { 0 },
            data_start: meta * sector_size,
            clusters,
            total_bytes: total * sector_size,
            label,
        })
    }
}

/// The FAT type of a boot sector, if it is a plausible FAT one.
pub(crate) fn probe(b: &[u8]) -> Option<FsType> {
    Bpb::parse(b.get(..512)?).map(|p| p.fat_type)
}

pub(crate) struct Inner {
    dev: Arc<dyn Device>,
    bpb: Bpb,
}

impl Inner {
    fn read_into(&self, at: u64, buf: &mut [u8]) -> Result<()> {
        read(self.dev.as_ref(), at, buf)
    }

    fn valid(&self, c: u32) -> bool {
        c >= 2 && c - 2 < self.bpb.clusters
    }

    fn cluster_offset(&self, c: u32) -> Result<u64> {
        if !self.valid(c) {
            return Err(FsError::damaged(
                format!("FAT cluster {c} is outside the filesystem"),
                self.bpb.fat_start,
            ));
        }
        Ok(self.bpb.data_start + u64::from(c - 2) * self.bpb.cluster_size)
    }

    /// The FAT entry of cluster `c`: the next cluster, or `None` at the chain's end.
    fn next(&self, c: u32) -> Result<Option<u32>> {
        let fat = self.bpb.fat_start;
        let (v, eoc) = match self.bpb.fat_type {
            FsType::Fat12 => {
                let mut b = [0u8; 2];
                self.read_into(fat + u64::from(c) + u64::from(c / 2), &mut b)?;
                let v = u16::from_le_bytes(b);
                (u32::from(if c % 2 == 1 { v >> 4 } else { v & 0xfff }), 0xff8)
            }
            FsType::Fat16 => {
                let mut b = [0u8; 2];
                self.read_into(fat + 2 * u64::from(c), &mut b)?;
                (u32::from(u16::from_le_bytes(b)), 0xfff8)
            }
            _ => {
                let mut b = [0u8; 4];
                self.read_into(fat + 4 * u64::from(c), &mut b)?;
                (u32::from_le_bytes(b) & 0x0fff_ffff, 0x0fff_fff8)
            }
        };
        if v >= eoc {
            return Ok(None);
        }
        if !self.valid(v) {
            return Err(FsError::damaged(
                format!("FAT entry of cluster {c} points to {v:#x}"),
                fat,
            ));
        }
        Ok(Some(v))
    }

    /// The chain from `first`: `max` clusters at most, or all to its end when `max` is
    /// `None`. A chain longer than the filesystem has clusters loops.
    fn chain(&self, first: u32, max: Option<u64>) -> Result<Vec<u32>> {
        let mut out = Vec::new();
        let mut c = Some(first);
        let limit = max.unwrap_or(u64::from(self.bpb.clusters));
        while let Some(cur) = c {
            if !self.valid(cur) {
                return Err(FsError::damaged(
                    format!("FAT cluster chain reaches cluster {cur:#x}"),
                    self.bpb.fat_start,
                ));
            }
            if out.len() as u64 >= limit {
                if max.is_some() {
                    break;
                }
                return Err(FsError::damaged(
                    format!("FAT cluster chain from {first} loops"),
                    self.bpb.fat_start,
                ));
            }
            out.push(cur);
            c = self.next(cur)?;
        }
        Ok(out)
    }
}

/// A FAT12, FAT16 or FAT32 filesystem.
pub struct Fat(Arc<Inner>);

impl Fat {
    /// Reads and checks the boot sector.
    pub fn open(dev: Arc<dyn Device>) -> Result<Self> {
        let raw = read_vec(dev.as_ref(), 0, 512, 512, "FAT boot sector")?;
        let bpb = Bpb::parse(&raw).ok_or_else(|| FsError::damaged("not a valid FAT boot sector (BPB)", 0))?;
        if bpb.total_bytes > dev.size() {
            return Err(FsError::damaged(
                format!(
                    "FAT: {} bytes do not fit a device of {} bytes",
                    bpb.total_bytes,
                    dev.size()
                ),
                0,
            ));
        }
        let mut inner = Inner { dev, bpb };
        // The volume label entry of the root directory is what Windows and Linux show.
        if let Ok(Some(label)) = dir::root_label(&inner) {
            inner.bpb.label = Some(label);
        }
        Ok(Self(Arc::new(inner)))
    }
}

impl Filesystem for Fat {
    fn fs_type(&self) -> FsType {
        self.0.bpb.fat_type
    }

    fn label(&self) -> Option<String> {
        self.0.bpb.label.clone()
    }

    fn root(&self) -> NodeId {
        ROOT
    }

    fn read_dir(&self, dir: NodeId) -> Result<Vec<DirEntry>> {
        let bytes = if dir == ROOT {
            dir::root_bytes(&self.0)?
        } else {
            let e = dir::entry_at(&self.0, dir)?;
            if !e.is_dir() {
                return Err(FsError::NotADirectory(format!("FAT entry at byte {}", dir.0)));
            }
            dir::cluster_bytes(&self.0, e.cluster(self.0.bpb.fat_type))?
        };
        dir::parse(&self.0, &bytes)
    }

    fn metadata(&self, node: NodeId) -> Result<Metadata> {
        if node == ROOT {
            return Ok(Metadata {
                kind: FileKind::Dir,
                size: 0,
                mode: 0o755,
                uid: 0,
                gid: 0,
                atime: None,
                mtime: Default::default(),
                ctime: None,
                crtime: None,
                nlink: 1,
                ino: 0,
                rdev: None,
            });
        }
        Ok(dir::entry_at(&self.0, node)?.metadata(node))
    }

    fn read_link(&self, node: NodeId) -> Result<Vec<u8>> {
        Err(FsError::NotASymlink(format!("FAT entry at byte {}", node.0)))
    }

    fn open(&self, node: NodeId) -> Result<Box<dyn FileData>> {
        if node == ROOT {
            return Err(FsError::IsADirectory("/".to_string()));
        }
        let e = dir::entry_at(&self.0, node)?;
        if e.is_dir() {
            return Err(FsError::IsADirectory(format!("FAT entry at byte {}", node.0)));
        }
        let size = u64::from(e.size);
        let need = size.div_ceil(self.0.bpb.cluster_size);
        let chain = if need == 0 {
            Vec::new()
        } else {
            self.0.chain(e.cluster(self.0.bpb.fat_type), Some(need))?
        };
        if (chain.len() as u64) < need {
            return Err(FsError::damaged(
                format!(
                    "FAT file of {size} bytes has a chain of {} clusters, needs {need}",
                    chain.len()
                ),
                node.0,
            ));
        }
        Ok(Box::new(FatFile {
            fs: self.0.clone(),
            size,
            chain,
        }))
    }
}

struct FatFile {
    fs: Arc<Inner>,
    size: u64,
    chain: Vec<u32>,
}

impl FileData for FatFile {
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
        let cs = self.fs.bpb.cluster_size;
        let mut done = 0usize;
        while done < n {
            let p = offset + done as u64;
            let idx = (p / cs) as usize;
            let within = p % cs;
            // Read as far as the clusters stay consecutive on disk.
            let mut run = 1usize;
            while idx + run < self.chain.len()
                && self.chain[idx + run] == self.chain[idx + run - 1].wrapping_add(1)
                && (run as u64) * cs < (n - done) as u64 + within
            {
                run += 1;
            }
            let c = *self
                .chain
                .get(idx)
                .ok_or_else(|| FsError::damaged("FAT chain shorter than the file", 0))?;
            let len = ((run as u64 * cs - within) as usize).min(n - done);
            let at = self.fs.cluster_offset(c)? + within;
            self.fs.read_into(at, &mut buf[done..done + len])?;
            done += len;
        }
        Ok(n)
    }
}
