//! Writing blocks: each thread fills its own pack; a block already in the repository (or being
//! stored by another thread of the same backup) is not stored again; all-zero blocks are never
//! stored. When all threads are done, one index file lists the new packs. The caller then
//! writes the restore point: packs, then index, then manifest, so a backup killed at any moment
//! leaves only unreferenced packs behind, which `prune` removes.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::crypto::Compressor;
use crate::error::RepoError;
use crate::format::{aad, BlockEntry, IndexFile, IndexPack, PackHeader, BLOCK_SIZE};
use crate::id::Id;
use crate::repository::{Index, Repository};
use bulwark_storage::{BackendError, FileKind};

/// A block of zeros, to compare with (a slice comparison is a vectorised memcmp).
static ZEROS: [u8; BLOCK_SIZE as usize] = [0; BLOCK_SIZE as usize];

/// Whether a block is all zeros (such blocks are never stored).
pub fn is_zero(block: &[u8]) -> bool {
    block.chunks(ZEROS.len()).all(|c| c == &ZEROS[..c.len()])
}

/// The blocks of one backup being written.
pub struct Writer<'r> {
    repo: &'r Repository,
    index: &'r Index,
    /// Blocks new to the repository that some thread of this backup has taken to store.
    claimed: Mutex<HashSet<Id>>,
    /// Packs uploaded by this backup.
    packs: Mutex<Vec<IndexPack>>,
    blocks_new: AtomicU64,
    bytes_stored: AtomicU64,
}

/// One thread's pack being filled.
pub struct Packer {
    compressor: Compressor,
    buf: Vec<u8>,
    entries: Vec<BlockEntry>,
}

impl<'r> Writer<'r> {
    /// A writer that deduplicates against `index` (the repository's index when the backup
    /// started, read under a shared lock).
    pub fn new(repo: &'r Repository, index: &'r Index) -> Self {
        Self {
            repo,
            index,
            claimed: Mutex::new(HashSet::new()),
            packs: Mutex::new(Vec::new()),
            blocks_new: AtomicU64::new(0),
            bytes_stored: AtomicU64::new(0),
        }
    }

    /// A packer for one thread.
    pub fn packer(&self) -> Result<Packer, RepoError> {
        Ok(Packer {
            compressor: Compressor::new()?,
            buf: Vec::with_capacity(self.repo.config().pack_size as usize + BLOCK_SIZE as usize),
            entries: Vec::new(),
        })
    }

    /// Stores one block (unless it is zeros, or stored already); returns its id, or `None`
    /// for a zero block.
    pub fn store(&self, packer: &mut Packer, block: &[u8]) -> Result<Option<Id>, RepoError> {
        if is_zero(block) {
            return Ok(None);
        }
        let id = self.repo.keys().block_id(block);
        if self.index.contains(&id)
            || !self
                .claimed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(id)
        {
            return Ok(Some(id));
        }
        let offset = packer.buf.len();
        self.repo
            .keys()
            .seal_into(&mut packer.compressor, block, &id.0, &mut packer.buf)?;
        let length = packer.buf.len() - offset;
        packer.entries.push(BlockEntry {
            id,
            offset: u32::try_from(offset).map_err(|_| RepoError::Corrupt("pack too large".into()))?,
            length: u32::try_from(length).map_err(|_| RepoError::Corrupt("block too large".into()))?,
            raw_length: u32::try_from(block.len())
                .map_err(|_| RepoError::Corrupt("block too large".into()))?,
        });
        self.blocks_new.fetch_add(1, Ordering::Relaxed);
        if packer.buf.len() >= self.repo.config().pack_size as usize {
            self.flush(packer)?;
        }
        Ok(Some(id))
    }

    /// Uploads the packer's pack, if it holds anything.
    pub fn flush(&self, packer: &mut Packer) -> Result<(), RepoError> {
        if packer.entries.is_empty() {
            return Ok(());
        }
        let header = serde_json::to_vec(&PackHeader {
            blocks: packer.entries.clone(),
        })
        .map_err(|e| RepoError::Corrupt(e.to_string()))?;
        let before = packer.buf.len();
        self.repo
            .keys()
            .seal_into(&mut packer.compressor, &header, aad::PACK_HEADER, &mut packer.buf)?;
        let header_len = u32::try_from(packer.buf.len() - before)
            .map_err(|_| RepoError::Corrupt("header too large".into()))?;
        packer.buf.extend_from_slice(&header_len.to_le_bytes());
        let id = Id::of_file(&packer.buf);
        match self.repo.backend().put(FileKind::Pack, &id.to_hex(), &packer.buf) {
            Ok(()) | Err(BackendError::AlreadyExists(_)) => {}
            Err(e) => return Err(e.into()),
        }
        self.bytes_stored
            .fetch_add(packer.buf.len() as u64, Ordering::Relaxed);
        self.packs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(IndexPack {
                id,
                blocks: std::mem::take(&mut packer.entries),
            });
        packer.buf.clear();
        Ok(())
    }

    /// Writes the index file of the new packs (after every packer is flushed). Returns the
    /// number of new blocks and the bytes of the new packs.
    pub fn finish(self) -> Result<(u64, u64), RepoError> {
        let packs = self
            .packs
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !packs.is_empty() {
            self.repo.write_index_file(&IndexFile { packs })?;
        }
        Ok((self.blocks_new.into_inner(), self.bytes_stored.into_inner()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_detection() {
        assert!(is_zero(&[0u8; 1000]));
        assert!(is_zero(&vec![0u8; BLOCK_SIZE as usize]));
        let mut b = vec![0u8; BLOCK_SIZE as usize];
        b[BLOCK_SIZE as usize - 1] = 1;
        assert!(!is_zero(&b));
        assert!(is_zero(&[]));
    }
}
