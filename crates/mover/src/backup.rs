//! Backup: read a volume's blocks in parallel into the repository, and commit a restore point.
//!
//! Threads take block indexes in order from a shared cursor (so reads stay nearly sequential
//! for the disk), and each reads, hashes, compresses, seals and packs its blocks, uploading a
//! pack when it is full. The blocks read go back into order into the block map, which is
//! written in chunks as it fills (`stream.rs`); a sparse source's holes are skipped. Memory is a
//! block buffer and one pack per thread, and a chunk or two of the map, whatever the volume
//! size. With a changed-block list, only the listed blocks are read, and the new restore point
//! is the previous one with those blocks replaced (its untouched map chunks reused): it stays
//! restorable on its own.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bulwark_repo::{
    Id, Lock, LockKind, Manifest, MapBuilder, Repository, Source, Stats, Writer, MANIFEST_VERSION,
};
use bulwark_storage::Retention as ObjectRetention;
use chrono::Utc;

use crate::device::BlockSource;
use crate::error::MoverError;
use crate::file_index::index_files;
use crate::parallel;
use crate::progress::Progress;
use crate::stream::{Collector, Feed, Work};

/// What a backup made.
#[derive(Debug)]
pub struct BackupOutcome {
    /// The new restore point.
    pub id: Id,
    /// Its manifest.
    pub manifest: Manifest,
    /// What the backup skipped in the repository (files that are not the repository's, index
    /// files that cannot be read), for the caller to show; on the last outcome of a run.
    pub warnings: Vec<String>,
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
    let base = match changed {
        None => Base::Full,
        Some(blocks) => Base::ChangedSinceLatest(blocks),
    };
    let mut outcomes = backup_volumes(
        repo,
        &[Volume {
            source,
            volume_id,
            base,
            instance: None,
            index_files: false,
        }],
        progress,
        threads,
    )?;
    outcomes
        .pop()
        .ok_or_else(|| MoverError::ChangedBlocks("no restore point was written".into()))
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
    /// What the caller recorded of the instance the volume belongs to, kept with the restore
    /// point (the manifest's `instance`).
    pub instance: Option<&'a str>,
    /// Whether the restore point gets a file index: its filesystems' paths, sizes and times,
    /// for `bulwark files find` (read back from the new point as the backup ends).
    pub index_files: bool,
}

/// What a backup of a volume builds on.
#[derive(Clone, Copy, Debug)]
pub enum Base<'a> {
    /// Nothing: every block is read.
    Full,
    /// Restore point `parent`: only `blocks` changed since the data it was read from, and the
    /// new point is `parent` with those blocks replaced. The parent checked by the caller is
    /// the parent used, whatever other backups of the volume commit meanwhile.
    Changed {
        /// The restore point the changes apply to.
        parent: Id,
        /// The indexes of the changed blocks.
        blocks: &'a [u64],
    },
    /// The changes apply to the volume's newest restore point when the backup starts (with
    /// the shared lock held). Two backups of one volume may then pick different points; give
    /// the parent (`Changed`) when the changes are relative to a known point.
    ChangedSinceLatest(&'a [u64]),
}

/// One volume of [`backup_volumes`].
#[derive(Clone, Copy)]
pub struct Volume<'a> {
    /// What to read.
    pub source: &'a dyn BlockSource,
    /// The volume the restore point is of.
    pub volume_id: &'a str,
    /// What it builds on.
    pub base: Base<'a>,
    /// What the caller recorded of the instance, as for [`VolumeSource`].
    pub instance: Option<&'a str>,
    /// Whether the restore point gets a file index, as for [`VolumeSource`].
    pub index_files: bool,
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
    let volumes: Vec<Volume<'_>> = volumes
        .iter()
        .map(|v| Volume {
            source: v.source,
            volume_id: v.volume_id,
            base: v.changed.map_or(Base::Full, Base::ChangedSinceLatest),
            instance: v.instance,
            index_files: v.index_files,
        })
        .collect();
    backup_volumes(repo, &volumes, progress, threads)
}

/// Backs up several volumes as one, like [`backup_all`], each on the base it names.
pub fn backup_volumes(
    repo: &Repository,
    volumes: &[Volume<'_>],
    progress: &Progress,
    threads: usize,
) -> Result<Vec<BackupOutcome>, MoverError> {
    // One lock over the whole run: prune must not remove the blocks of the first volume while
    // the last is still being read.
    let lock = repo.lock(LockKind::Shared)?;
    let mut manifests = Vec::new();
    for v in volumes {
        let parent = match v.base {
            Base::Full => None,
            Base::Changed { parent, blocks } => Some((parent_point(repo, v.volume_id, parent)?, blocks)),
            Base::ChangedSinceLatest(blocks) => {
                let latest = repo.latest_point(v.volume_id)?.ok_or_else(|| {
                    MoverError::ChangedBlocks(format!(
                        "volume {} has no restore point to apply changes to: run a full backup first",
                        v.volume_id
                    ))
                })?;
                Some((latest, blocks))
            }
        };
        let (mut manifest, retention) = store(repo, &lock, v, parent, progress, threads)?;
        manifest.instance = v.instance.map(str::to_owned);
        manifests.push((manifest, retention));
    }
    // The commit: only while the lock is certainly held (a prune may run otherwise, and remove
    // the packs this backup just wrote, which no index listed until now).
    let mut outcomes = Vec::new();
    for (manifest, retention) in manifests {
        lock.ensure_held()?;
        let id = repo.write_point_retained(&manifest, retention)?;
        outcomes.push(BackupOutcome {
            id,
            manifest,
            warnings: Vec::new(),
        });
    }
    if let Some(last) = outcomes.last_mut() {
        last.warnings = repo.take_warnings();
    }
    Ok(outcomes)
}

/// Reads the parent `id` a backup of `volume_id` names, checking it is of that volume.
fn parent_point(repo: &Repository, volume_id: &str, id: Id) -> Result<(Id, Manifest), MoverError> {
    let manifest = repo.read_point(&id).map_err(|e| {
        MoverError::ChangedBlocks(format!(
            "the parent restore point {id} of volume {volume_id} cannot be read: {e}"
        ))
    })?;
    if manifest.volume_id != volume_id {
        return Err(MoverError::ChangedBlocks(format!(
            "the parent restore point {id} is of volume {}, not {volume_id}",
            manifest.volume_id
        )));
    }
    Ok((id, manifest))
}

/// Stores the blocks of `v.source` (and the file index, if asked) and answers the manifest
/// of its restore point, unwritten, and its retention (Object Lock), everything it needs
/// retained as long already; with a parent, only the changed blocks are read. The caller
/// holds `lock`.
fn store(
    repo: &Repository,
    lock: &Lock,
    v: &Volume<'_>,
    parent: Option<((Id, Manifest), &[u64])>,
    progress: &Progress,
    threads: usize,
) -> Result<(Manifest, Option<ObjectRetention>), MoverError> {
    let (source, volume_id) = (v.source, v.volume_id);
    let time = Utc::now();
    let size = source.size();
    let block_size = u64::from(repo.config().block_size);
    let block_count = size.div_ceil(block_size);

    let changed = parent.as_ref().map(|(_, list)| *list);
    let parent = match parent {
        None => None,
        Some(((id, manifest), list)) => {
            if manifest.size != size {
                return Err(MoverError::ChangedBlocks(format!(
                    "the source has {size} bytes, the restore point {} of {volume_id} has {}: \
                     the volume changed size, so run a full backup",
                    id.short(),
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
    // A changed-block list in increasing order, as the block map is built.
    let sorted: Option<Vec<u64>> = changed.filter(|l| !l.is_sorted_by(|a, b| a < b)).map(|l| {
        let mut l = l.to_vec();
        l.sort_unstable();
        l.dedup();
        l
    });
    // A full backup of a sparse source reads only what may hold data: the sources that list
    // their blocks (EBS), or the data extents of a sparse file, found as the backup goes.
    let listed = match changed {
        Some(_) => None,
        None => source.written_blocks(block_size),
    };
    let work = match sorted.as_deref().or(changed).or(listed.as_deref()) {
        Some(list) => Work::List { list, next: 0 },
        None => Work::extents(source, block_size),
    };
    let total = match &work {
        Work::List { list, .. } => list.len() as u64 * block_size,
        Work::Extents { .. } => size,
    };
    progress.total.store(total, Ordering::Relaxed);

    let index = repo.load_index()?;
    // With Object Lock, everything written is retained as long as the point, and the map
    // records which older packs the point uses, to extend them.
    let retention = repo.point_retention(time)?;
    let writer = Writer::new(repo, &index)
        .with_lock(lock)
        .with_retention(retention);
    let feed = Feed::new(work);
    let collector = Collector::new(MapBuilder::new(
        repo,
        &index,
        parent.as_ref().map(|(_, m)| m),
        retention.is_some(),
    ));
    let (blocks_read, blocks_zero) = (AtomicU64::new(0), AtomicU64::new(0));
    let mut packers = parallel::run(threads, |stop| {
        let mut packer = writer.packer()?;
        let mut buf = vec![0u8; usize::try_from(block_size).unwrap_or(0)];
        while let Some((seq, index)) = feed.take(stop, progress)? {
            progress.checkpoint()?;
            let offset = index * block_size;
            let len = usize::try_from(block_size.min(size - offset)).unwrap_or(0);
            source.read_at(offset, &mut buf[..len])?;
            let id = writer.store(&mut packer, &buf[..len])?;
            blocks_read.fetch_add(1, Ordering::Relaxed);
            if id.is_none() {
                blocks_zero.fetch_add(1, Ordering::Relaxed);
            }
            for (chunk, bytes) in collector.deliver(seq, index, id, stop)? {
                writer.store_blob(&mut packer, chunk, &bytes)?;
            }
            progress.add(len as u64);
        }
        Ok(packer)
    })?;
    // The map's last chunk joins the first thread's last pack; then every pack goes.
    let map = collector.into_map()?.finish()?;
    if let Some(packer) = packers.first_mut() {
        for (chunk, bytes) in map.ready {
            writer.store_blob(packer, chunk, &bytes)?;
        }
    }
    for packer in &mut packers {
        writer.flush(packer)?;
    }
    let written = writer.finish()?;
    let (kind, name) = source.describe();
    let mut manifest = Manifest {
        version: MANIFEST_VERSION,
        volume_id: volume_id.to_owned(),
        size,
        block_size: repo.config().block_size,
        time,
        source: Source { kind, name },
        parent: parent.map(|(id, _)| id),
        blocks: Vec::new(),
        map: map.chunks,
        stats: Stats {
            blocks_read: blocks_read.into_inner(),
            blocks_zero: blocks_zero.into_inner(),
            blocks_new: written.blocks_new,
            bytes_stored: written.bytes_stored,
        },
        instance: None,
        files: None,
    };
    let mut used_packs = map.used_packs;
    let mut index = index;
    if v.index_files {
        // The point is read back through an index that lists what this backup wrote.
        for id in &written.index_files {
            index.add(*id, &repo.read_index_file(id)?);
        }
    }
    let index = Arc::new(index);
    if v.index_files {
        let indexed = index_files(repo, lock, retention, &index, &manifest, used_packs.as_mut())?;
        manifest.stats.bytes_stored += indexed.bytes_stored;
        manifest.files = Some(indexed.files);
    }
    if let (Some(retention), Some(used)) = (retention, &used_packs) {
        repo.retain_for_point(&index, used, retention)?;
    }
    Ok((manifest, retention))
}
