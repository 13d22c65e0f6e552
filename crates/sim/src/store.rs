//! Where the bytes of volumes and snapshots live: 512 KiB blocks stored once each in the data
//! directory, named by their BLAKE3 hash, and block maps (block index to hash) per volume and
//! snapshot. A snapshot shares every unchanged block with its parent, as EBS snapshots do, so
//! comparing two maps is what ListChangedBlocks answers. Zero blocks are never stored: a block
//! missing from a map reads as zeros, as an unwritten EBS block does.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use bulwark_cloud::EBS_BLOCK_SIZE;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The hash of a stored block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct BlockHash(pub [u8; 32]);

impl Serialize for BlockHash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(self.0))
    }
}

impl<'de> Deserialize<'de> for BlockHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(&s, &mut out).map_err(serde::de::Error::custom)?;
        Ok(BlockHash(out))
    }
}

/// The written blocks of a volume or snapshot.
pub(crate) type BlockMap = BTreeMap<u64, BlockHash>;

/// The block files.
#[derive(Debug)]
pub(crate) struct BlockStore {
    dir: PathBuf,
}

impl BlockStore {
    pub fn new(dir: &Path) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    fn path(&self, hash: &BlockHash) -> PathBuf {
        let name = hex::encode(hash.0);
        self.dir.join(&name[..2]).join(name)
    }

    /// Stores a whole block; `None` for a zero block, which is never stored.
    pub fn put(&self, data: &[u8]) -> io::Result<Option<BlockHash>> {
        if data.iter().all(|&b| b == 0) {
            return Ok(None);
        }
        let hash = BlockHash(*blake3::hash(data).as_bytes());
        let path = self.path(&hash);
        if !path.exists() {
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent)?;
            }
            // Write then rename: a killed process leaves no half block under its hash.
            let tmp = path.with_extension(format!("tmp{}", std::process::id()));
            fs::write(&tmp, data)?;
            fs::rename(&tmp, &path)?;
        }
        Ok(Some(hash))
    }

    /// Reads a block into `buf` (a whole block); `None` reads zeros.
    pub fn read(&self, hash: Option<&BlockHash>, buf: &mut [u8]) -> io::Result<()> {
        match hash {
            None => buf.fill(0),
            Some(hash) => {
                let data = fs::read(self.path(hash))?;
                if data.len() != buf.len() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("block {} has {} bytes", hex::encode(hash.0), data.len()),
                    ));
                }
                buf.copy_from_slice(&data);
            }
        }
        Ok(())
    }
}

/// The block index of a byte offset, and the offset within it.
pub(crate) fn locate(offset: u64) -> (u64, usize) {
    (offset / EBS_BLOCK_SIZE, (offset % EBS_BLOCK_SIZE) as usize)
}
