//! Backup: read a volume's blocks in parallel into the repository, and commit a restore point.
//!
//! Threads take block indexes in order from a shared cursor (so reads stay nearly sequential
//! for the disk), and each reads, hashes, compresses, seals and packs its blocks, uploading a
//! pack when it is full. Memory is a block buffer and one pack per thread, whatever the volume
//! size. With a changed-block list, only the listed blocks are read, and the new restore point
//! is the previous one with those blocks replaced: it stays restorable on its own.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use bulwark_repo::{Id, Lock, LockKind, Manifest, Repository, Source, Stats, Writer, VERSION};
use chrono::Utc;

use crate::device::BlockSource;
use crate::error::MoverError;
use crate::parallel::{self, Queue};
use crate::progress::Progress;

/// What a backup made.
#[derive(Debug)]
pub struct BackupOutcome {
    /// The new restore point.
    pub id: Id,
    /// Its manifest.
    pub manifest: Manifest,
}

/// Parses a changed-block list: block indexes, one per line; blank lines and `#` comments
/// are ignored. Indexes are returned sorted, without duplicates.
pub fn parse_changed_blocks(text: &str) -> Result<Vec<u64>, MoverError> {
    let mut blocks = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let index = line.parse::<u64>().map_err(|_| {
            MoverError::ChangedBlocks(format!("line {}: {line:?} is not a block index", n + 1))
        })?;
        blocks.push(index);
    }
    blocks.sort_unstable();
    blocks.dedup();
    Ok(blocks)
}

/// The blocks to read: all of them, or a list.
enum Work<'a> {
    All(u64),
    List(&'a [u64]),
}

impl Work<'_> {
    fn len(&self) -> usize {
        match self {
            Work::All(n) => usize::try_from(*n).unwrap_or(usize::MAX),
            Work::List(l) => l.len(),
        }
    }
    fn get(&self, i: usize) -> u64 {
        match self {
            Work::All(_) => i as u64,
            Work::List(l) => l[i],
        }
    }
}

/// Backs up `source` as a restore point of `volume_id`. With `changed`, reads only those
/// blocks (indexes relative to the volume's latest restore point) and builds on that point.
pub fn backup(
    repo: &Repository,
    source: &dyn BlockSource,
    volume_id: &str,
    changed: Option<&[u64]>,
    progress: &Progress,
    threads: usize,
) -> Result<BackupOutcome, MoverError> {
    let _lock = Lock::acquire(repo.backend().clone(), LockKind::Shared)?;
    let manifest = store(repo, source, volume_id, changed, progress, threads)?;
    let id = repo.write_point(&manifest)?;
    Ok(BackupOutcome { id, manifest })
}

/// One volume of [`backup_all`].
#[derive(Clone, Copy)]
pub struct VolumeSource<'a> {
    /// What to read.
    pub source: &'a dyn BlockSource,
    /// The volume the restore point is of.
    pub volume_id: &'a str,
    /// The blocks changed since the volume's latest restore point, as for [`backup`]; `None`
    /// reads every block.
    pub changed: Option<&'a [u64]>,
}

/// Backs up several volumes as one: every volume's blocks are stored first, and only when all
/// are, their restore points are written. A failure on any volume (a worker dying on its last
/// volume) writes no restore point at all, so an instance's backup is all of its volumes or
/// none. The blocks of a failed run are unreferenced until `prune` removes them.
pub fn backup_all(
    repo: &Repository,
    volumes: &[VolumeSource<'_>],
    progress: &Progress,
    threads: usize,
) -> Result<Vec<BackupOutcome>, MoverError> {
    // One lock over the whole run: prune must not remove the blocks of the first volume while
    // the last is still being read.
    let _lock = Lock::acquire(repo.backend().clone(), LockKind::Shared)?;
    let mut manifests = Vec::new();
    for v in volumes {
        manifests.push(store(repo, v.source, v.volume_id, v.changed, progress, threads)?);
    }
    manifests
        .into_iter()
        .map(|manifest| {
            let id = repo.write_point(&manifest)?;
            Ok(BackupOutcome { id, manifest })
        })
        .collect()
}

/// Stores the blocks of `source` and answers the manifest of its restore point, unwritten.
/// The caller holds a shared lock.
fn store(
    repo: &Repository,
    source: &dyn BlockSource,
    volume_id: &str,
    changed: Option<&[u64]>,
    progress: &Progress,
    threads: usize,
) -> Result<Manifest, MoverError> {
    let time = Utc::now();
    let size = source.size();
    let block_size = u64::from(repo.config().block_size);
    let block_count = size.div_ceil(block_size);

    let parent = match changed {
        None => None,
        Some(list) => {
            let (id, manifest) = repo.latest_point(volume_id)?.ok_or_else(|| {
                MoverError::ChangedBlocks(format!(
                    "volume {volume_id} has no restore point to apply changes to: run a full backup first"
                ))
            })?;
            if manifest.size != size {
                return Err(MoverError::ChangedBlocks(format!(
                    "the source has {size} bytes, the latest restore point of {volume_id} has {}: \
                     the volume changed size, so run a full backup",
                    manifest.size
                )));
            }
            if let Some(bad) = list.iter().find(|i| **i >= block_count) {
                return Err(MoverError::ChangedBlocks(format!(
                    "block {bad} is past the end of the volume ({block_count} blocks)"
                )));
            }
            Some((id, manifest))
        }
    };
    // A full backup of a sparse source reads only what may hold data.
    let written = match changed {
        Some(_) => None,
        None => source.written_blocks(block_size),
    };
    let work = match (changed, &written) {
        (Some(list), _) => Work::List(list),
        (None, Some(list)) => Work::List(list),
        (None, None) => Work::All(block_count),
    };

    let index = repo.load_index()?;
    let writer = Writer::new(repo, &index);
    progress
        .total
        .store(work.len() as u64 * block_size, Ordering::Relaxed);
    let queue = Queue::new(work.len());
    let per_thread = parallel::run(threads, |stop| {
        let mut packer = writer.packer()?;
        let mut buf = vec![0u8; usize::try_from(block_size).unwrap_or(0)];
        let mut done = Vec::new();
        while let Some(i) = queue.take(stop) {
            progress.checkpoint()?;
            let index = work.get(i);
            let offset = index * block_size;
            let len = usize::try_from(block_size.min(size - offset)).unwrap_or(0);
            source.read_at(offset, &mut buf[..len])?;
            done.push((index, writer.store(&mut packer, &buf[..len])?));
            progress.add(len as u64);
        }
        writer.flush(&mut packer)?;
        Ok(done)
    })?;

    let mut stats = Stats::default();
    let read: Vec<(u64, Option<Id>)> = per_thread.into_iter().flatten().collect();
    stats.blocks_read = read.len() as u64;
    stats.blocks_zero = read.iter().filter(|(_, id)| id.is_none()).count() as u64;
    let (blocks_new, bytes_stored) = writer.finish()?;
    stats.blocks_new = blocks_new;
    stats.bytes_stored = bytes_stored;

    let mut map: Vec<(u64, Id)> = match &parent {
        None => read.iter().filter_map(|(i, id)| id.map(|id| (*i, id))).collect(),
        Some((_, manifest)) => {
            let changes: HashMap<u64, Option<Id>> = read.iter().copied().collect();
            let mut map: Vec<(u64, Id)> = manifest
                .block_ids()
                .filter(|(i, _)| !changes.contains_key(i))
                .collect();
            map.extend(read.iter().filter_map(|(i, id)| id.map(|id| (*i, id))));
            map
        }
    };
    map.sort_unstable_by_key(|(i, _)| *i);
    let (kind, name) = source.describe();
    let manifest = Manifest {
        version: VERSION,
        volume_id: volume_id.to_owned(),
        size,
        block_size: repo.config().block_size,
        time,
        source: Source { kind, name },
        parent: parent.map(|(id, _)| id),
        blocks: Manifest::runs_from_sorted(map),
        stats,
    };
    Ok(manifest)
}
