//! A restore point as a block device for `bulwark-fs`, for file-level recovery: any byte of
//! the volume read on demand, without restoring it. Only the blocks asked for are fetched
//! (one ranged GET each, authenticated), and only the map chunks that cover them; the
//! filesystem readers' cache ([`bulwark_fs::Cached`]) sits on top.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bulwark_repo::{Id, Index, Lock, LockKind, Manifest, MapChunk, RepoError, Repository, Run};

/// Map chunks kept decoded (each maps up to 16,383 blocks, 8 GiB of volume, in 512 KiB).
const CHUNKS_KEPT: usize = 16;

/// One restore point of a repository, readable at any offset from many threads.
pub struct PointDevice {
    repo: Repository,
    index: Arc<Index>,
    manifest: Manifest,
    /// The point, in errors: `restore point 1a2b3c4d`.
    what: String,
    /// Decoded map chunks of a version 2 manifest, by position in `manifest.map`, least
    /// recently used first.
    chunks: Mutex<VecDeque<(usize, Arc<Vec<Run>>)>>,
    bytes_fetched: AtomicU64,
    /// Held while the device lives: a prune must not remove the packs being read (`None`
    /// when the caller holds one).
    _lock: Option<Lock>,
}

impl PointDevice {
    /// Opens restore point `point` of `repo` (under a shared lock, as a restore).
    pub fn open(repo: Repository, point: &Id) -> Result<Self, RepoError> {
        let lock = repo.lock(LockKind::Shared)?;
        let manifest = repo.read_point(point)?;
        let index = Arc::new(repo.load_index()?);
        let mut device = Self::unwritten(repo, index, manifest);
        device.what = format!("restore point {}", point.short());
        device._lock = Some(lock);
        Ok(device)
    }

    /// The restore point `manifest` describes, before it is written: its blocks and map chunks
    /// are stored and in `index`. The caller holds a lock on the repository.
    pub(crate) fn unwritten(repo: Repository, index: Arc<Index>, manifest: Manifest) -> Self {
        PointDevice {
            what: format!("the new restore point of {}", manifest.volume_id),
            repo,
            index,
            manifest,
            chunks: Mutex::new(VecDeque::new()),
            bytes_fetched: AtomicU64::new(0),
            _lock: None,
        }
    }

    /// The restore point's manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Bytes of blocks fetched from the repository so far (before decompression: what the
    /// store served).
    pub fn bytes_fetched(&self) -> u64 {
        self.bytes_fetched.load(Ordering::Relaxed)
    }

    /// The id of block `index`, `None` for a block of zeros.
    fn block_id(&self, index: u64) -> Result<Option<Id>, RepoError> {
        if !self.manifest.blocks.is_empty() {
            return Ok(find(&self.manifest.blocks, index));
        }
        let map = &self.manifest.map;
        let at = map.partition_point(|c| c.end <= index);
        match map.get(at) {
            Some(chunk) if chunk.start <= index => Ok(find(&self.chunk(at, chunk)?, index)),
            _ => Ok(None),
        }
    }

    /// The runs of map chunk `at`, decoded once and kept while they are used.
    fn chunk(&self, at: usize, chunk: &MapChunk) -> Result<Arc<Vec<Run>>, RepoError> {
        let mut kept = self.chunks.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(i) = kept.iter().position(|(n, _)| *n == at) {
            let entry = kept.remove(i).unwrap_or((at, Arc::default()));
            let runs = entry.1.clone();
            kept.push_back(entry);
            return Ok(runs);
        }
        drop(kept);
        let runs = Arc::new(self.repo.read_map_chunk(&self.index, chunk)?);
        let mut kept = self.chunks.lock().unwrap_or_else(PoisonError::into_inner);
        if kept.len() >= CHUNKS_KEPT {
            kept.pop_front();
        }
        kept.push_back((at, runs.clone()));
        Ok(runs)
    }

    /// Fills `out` from block `index`, starting `within` bytes into it.
    fn read_block(&self, index: u64, within: usize, out: &mut [u8]) -> Result<(), RepoError> {
        let Some(id) = self.block_id(index)? else {
            out.fill(0);
            return Ok(());
        };
        if let Some(location) = self.index.blocks.get(&id) {
            self.bytes_fetched
                .fetch_add(u64::from(location.entry.length), Ordering::Relaxed);
        }
        let data = self.repo.read_blob(&self.index, &id)?;
        // A block shorter than asked for (the volume's last) reads as zeros past its end.
        let have = data.len().saturating_sub(within).min(out.len());
        out[..have].copy_from_slice(&data[within..within + have]);
        out[have..].fill(0);
        Ok(())
    }
}

/// The id at `index` in runs sorted by start.
fn find(runs: &[Run], index: u64) -> Option<Id> {
    let at = runs.partition_point(|r| r.start <= index).checked_sub(1)?;
    let run = &runs[at];
    let offset = usize::try_from(index - run.start).ok()?;
    run.ids.get(offset).copied()
}

impl bulwark_fs::Device for PointDevice {
    fn size(&self) -> u64 {
        self.manifest.size
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let block_size = u64::from(self.manifest.block_size.max(1));
        let end = offset
            .checked_add(buf.len() as u64)
            .filter(|end| *end <= self.manifest.size)
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "a read past the volume's end"))?;
        let mut at = offset;
        let mut done = 0;
        while at < end {
            let within = at % block_size;
            let n = usize::try_from((block_size - within).min(end - at)).unwrap_or(usize::MAX);
            let within = usize::try_from(within).unwrap_or(0);
            self.read_block(at / block_size, within, &mut buf[done..done + n])
                .map_err(|e| io::Error::other(format!("{}, block {}: {e}", self.what, at / block_size)))?;
            at += n as u64;
            done += n;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulwark_fs::Device;
    use bulwark_repo::Secret;
    use bulwark_storage::MemoryBackend;

    /// The blocks a point's map holds, for tests: (index -> id).
    fn all_blocks(device: &PointDevice) -> std::collections::HashMap<u64, Id> {
        let mut out = std::collections::HashMap::new();
        let _ = device
            .repo
            .for_each_block::<RepoError>(&device.manifest, &device.index, 1 << 16, |w| {
                out.extend(w.iter().copied());
                Ok(())
            });
        out
    }

    /// A volume of `blocks` blocks, some zero, written through the mover and read back at
    /// odd offsets across block boundaries.
    #[test]
    fn reads_any_range_of_a_point_as_the_source_holds_it() {
        let block = bulwark_repo::BLOCK_SIZE as usize;
        let size = block * 5 + 1234;
        let mut data = vec![0u8; size];
        for (i, b) in data.iter_mut().enumerate() {
            // Block 2 stays zeros.
            if i / block != 2 {
                *b = (i % 251) as u8;
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk");
        std::fs::write(&path, &data).unwrap();
        let repo = Repository::init(Arc::new(MemoryBackend::default()), &Secret::None).unwrap();
        let source = crate::FileSource::open(&path).unwrap();
        let out = crate::backup(&repo, &source, "vol-1", None, &crate::Progress::default(), 2).unwrap();
        let device = PointDevice::open(repo, &out.id).unwrap();
        assert_eq!(device.size(), size as u64);
        assert_eq!(
            all_blocks(&device).len(),
            5,
            "4 full blocks and the tail hold data"
        );
        for (offset, len) in [
            (0, 10),
            (block - 3, 7),
            (2 * block + 5, block),
            (size - 100, 100),
            (0, size),
        ] {
            let mut buf = vec![0xAA; len];
            device.read_at(offset as u64, &mut buf).unwrap();
            assert_eq!(buf, data[offset..offset + len], "{len} bytes at {offset}");
        }
        let mut past = [0u8; 2];
        assert!(device.read_at(size as u64 - 1, &mut past).is_err());
        assert!(device.bytes_fetched() > 0);
    }
}
