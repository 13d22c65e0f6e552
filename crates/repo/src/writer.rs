//! Writing blocks: each thread fills its own pack; a block already in the repository (or being
//! stored by another thread of the same backup) is not stored again; all-zero blocks are never
//! stored. Index files list the new packs as they accumulate (so memory does not grow with the
//! backup) and when all threads are done. The caller then writes the restore point: packs, then
//! index, then manifest, so a backup killed at any moment leaves only unreferenced packs (and
//! index files listing them) behind, which `prune` removes.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::crypto::Compressor;
use crate::error::RepoError;
use crate::format::{aad, BlockEntry, IndexFile, IndexPack, PackHeader, BLOCK_SIZE};
use crate::id::Id;
use crate::lock::Lock;
use crate::repository::{Index, Repository};
use bulwark_storage::{FileKind, Retention};

/// A block of zeros, to compare with (a slice comparison is a vectorised memcmp).
static ZEROS: [u8; BLOCK_SIZE as usize] = [0; BLOCK_SIZE as usize];

/// Blocks listed before an index file is written mid-backup: about 3 MiB of index, 32 GiB of
/// incompressible data.
const INDEX_EVERY: usize = 64 * 1024;

/// Whether a block is all zeros (such blocks are never stored).
pub fn is_zero(block: &[u8]) -> bool {
    block.chunks(ZEROS.len()).all(|c| c == &ZEROS[..c.len()])
}

/// The packs uploaded and not yet in an index file, and the index files written.
#[derive(Default)]
struct Unlisted {
    packs: Vec<IndexPack>,
    blocks: usize,
    files: Vec<Id>,
}

/// The blocks of one backup being written.
pub struct Writer<'r> {
    repo: &'r Repository,
    index: &'r Index,
    /// Asked before every index file: a backup whose lock lapsed writes none.
    lock: Option<&'r Lock>,
    /// The retention of every file written (Object Lock).
    retention: Option<Retention>,
    /// Blocks new to the repository that some thread of this backup has taken to store.
    claimed: Mutex<HashSet<Id>>,
    unlisted: Mutex<Unlisted>,
    blocks_new: AtomicU64,
    bytes_stored: AtomicU64,
}

/// One thread's pack being filled.
pub struct Packer {
    compressor: Compressor,
    buf: Vec<u8>,
    entries: Vec<BlockEntry>,
}

/// What a writer stored, once finished.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Written {
    /// Blocks new to the repository (map chunks not counted).
    pub blocks_new: u64,
    /// Bytes of the packs written.
    pub bytes_stored: u64,
    /// The index files written.
    pub index_files: Vec<Id>,
}

impl<'r> Writer<'r> {
    /// A writer that deduplicates against `index` (the repository's index when the backup
    /// started, read under a shared lock).
    pub fn new(repo: &'r Repository, index: &'r Index) -> Self {
        Self {
            repo,
            index,
            lock: None,
            retention: None,
            claimed: Mutex::new(HashSet::new()),
            unlisted: Mutex::new(Unlisted::default()),
            blocks_new: AtomicU64::new(0),
            bytes_stored: AtomicU64::new(0),
        }
    }

    /// Asks `lock` before every index file it writes.
    pub fn with_lock(mut self, lock: &'r Lock) -> Self {
        self.lock = Some(lock);
        self
    }

    /// Writes every pack and index file with `retention`.
    pub fn with_retention(mut self, retention: Option<Retention>) -> Self {
        self.retention = retention;
        self
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
        if self.add(packer, id, block)? {
            self.blocks_new.fetch_add(1, Ordering::Relaxed);
        }
        Ok(Some(id))
    }

    /// Stores a blob that is not a block of the volume (a chunk of a block map or of a file
    /// index, never zeros), like a block but not counted as one; `id` is its keyed hash.
    pub fn store_blob(&self, packer: &mut Packer, id: Id, chunk: &[u8]) -> Result<(), RepoError> {
        self.add(packer, id, chunk).map(drop)
    }

    /// Seals `blob` into the packer unless the repository or this backup has it; answers
    /// whether it was new.
    fn add(&self, packer: &mut Packer, id: Id, blob: &[u8]) -> Result<bool, RepoError> {
        if self.index.contains(&id)
            || !self
                .claimed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(id)
        {
            return Ok(false);
        }
        let offset = packer.buf.len();
        self.repo
            .keys()
            .seal_into(&mut packer.compressor, blob, &id.0, &mut packer.buf)?;
        let length = packer.buf.len() - offset;
        packer.entries.push(BlockEntry {
            id,
            offset: u32::try_from(offset).map_err(|_| RepoError::Corrupt("pack too large".into()))?,
            length: u32::try_from(length).map_err(|_| RepoError::Corrupt("block too large".into()))?,
            raw_length: u32::try_from(blob.len())
                .map_err(|_| RepoError::Corrupt("block too large".into()))?,
        });
        if packer.buf.len() >= self.repo.config().pack_size as usize {
            self.flush(packer)?;
        }
        Ok(true)
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
        self.repo
            .store_file(FileKind::Pack, &id.to_hex(), &packer.buf, self.retention)?;
        self.bytes_stored
            .fetch_add(packer.buf.len() as u64, Ordering::Relaxed);
        let blocks = std::mem::take(&mut packer.entries);
        packer.buf.clear();
        let mut unlisted = self
            .unlisted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        unlisted.blocks += blocks.len();
        unlisted.packs.push(IndexPack { id, blocks });
        if unlisted.blocks >= INDEX_EVERY {
            write_index(self.repo, self.lock, self.retention, &mut unlisted)?;
        }
        Ok(())
    }

    /// Writes the index file of the remaining new packs (after every packer is flushed).
    pub fn finish(self) -> Result<Written, RepoError> {
        let mut unlisted = self
            .unlisted
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        write_index(self.repo, self.lock, self.retention, &mut unlisted)?;
        Ok(Written {
            blocks_new: self.blocks_new.into_inner(),
            bytes_stored: self.bytes_stored.into_inner(),
            index_files: unlisted.files,
        })
    }
}

/// Writes an index file of the packs not yet listed, if the lock (if any) is certainly held.
fn write_index(
    repo: &Repository,
    lock: Option<&Lock>,
    retention: Option<Retention>,
    unlisted: &mut Unlisted,
) -> Result<(), RepoError> {
    if unlisted.packs.is_empty() {
        return Ok(());
    }
    if let Some(lock) = lock {
        lock.ensure_held()?;
    }
    let file = IndexFile {
        packs: std::mem::take(&mut unlisted.packs),
    };
    unlisted.blocks = 0;
    let id = repo.write_index_file_retained(&file, retention)?;
    unlisted.files.push(id);
    Ok(())
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
