//! Restore: write a restore point's blocks into a target, in parallel, checking each block's
//! authenticity and id before it is written.
//!
//! The blocks are sorted by pack and offset and grouped into ranged reads of neighbouring
//! blocks (so S3 sees few, large GETs), which threads take in turn. A block used at several
//! places of the volume is read once and written at each. Zero blocks are skipped where the
//! target reads zeros already (a sparse file), written otherwise.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use bulwark_repo::{Id, Location, LockKind, Manifest, RepoError, Repository};
use bulwark_storage::FileKind;

use crate::device::BlockTarget;
use crate::error::MoverError;
use crate::parallel::{self, Queue};
use crate::progress::Progress;

/// Largest single ranged read: big enough to amortise a request, small enough to bound each
/// thread's memory.
const MAX_READ: u32 = 8 * 1024 * 1024;
/// Largest gap between two wanted blocks of a pack still read in one request (reading a few
/// unwanted bytes is cheaper than another request).
const MAX_GAP: u32 = 1024 * 1024;

/// What a restore wrote.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RestoreOutcome {
    /// Blocks written with data.
    pub blocks_written: u64,
    /// Zero blocks (skipped on targets that read zeros).
    pub blocks_zero: u64,
    /// Ranged reads made.
    pub reads: u64,
    /// What the restore skipped in the repository (files that are not the repository's, index
    /// files that cannot be read), for the caller to show.
    pub warnings: Vec<String>,
}

/// One ranged read: blocks `first..last` of the sorted list, from one pack.
struct Read {
    pack: u32,
    start: u32,
    end: u32,
    blocks: std::ops::Range<usize>,
}

/// Restores restore point `point` into `target`.
pub fn restore(
    repo: &Repository,
    point: &Id,
    target: &dyn BlockTarget,
    progress: &Progress,
    threads: usize,
) -> Result<RestoreOutcome, MoverError> {
    let _lock = repo.lock(LockKind::Shared)?;
    let manifest = repo.read_point(point)?;
    let index = repo.load_index()?;
    let block_size = u64::from(manifest.block_size);

    // Where each distinct block goes, and where it is.
    let mut positions: HashMap<Id, Vec<u64>> = HashMap::new();
    for (i, id) in manifest.block_ids() {
        positions.entry(id).or_default().push(i);
    }
    let mut located: Vec<(Location, Id)> = Vec::with_capacity(positions.len());
    for (id, at) in &positions {
        let location = index.blocks.get(id).ok_or_else(|| RepoError::MissingBlock {
            block: id.to_hex(),
            index: at[0],
            point: point.to_hex(),
        })?;
        located.push((*location, *id));
    }
    located.sort_unstable_by_key(|(l, _)| (l.pack, l.entry.offset));
    let reads = group_reads(&located);

    let zeros = zero_ranges(&manifest);
    let zero_count: u64 = zeros.iter().map(|r| r.end - r.start).sum();
    progress.total.store(manifest.size, Ordering::Relaxed);
    if target.reads_zeros() {
        progress.add(
            zeros
                .iter()
                .flat_map(Clone::clone)
                .map(|i| block_len(&manifest, i))
                .sum(),
        );
    }

    let job = Job {
        repo,
        manifest: &manifest,
        index: &index,
        point,
        located: &located,
        positions: &positions,
        target,
        progress,
        block_size,
    };
    let (read_queue, zero_queue) = (Queue::new(reads.len()), Queue::new(zeros.len()));
    let written = parallel::run(threads, |stop| {
        let mut written = 0;
        while let Some(r) = read_queue.take(stop) {
            progress.checkpoint()?;
            written += job.read(&reads[r])?;
        }
        if !target.reads_zeros() {
            let buf = vec![0u8; usize::try_from(block_size).unwrap_or(0)];
            while let Some(z) = zero_queue.take(stop) {
                for i in zeros[z].clone() {
                    let len = block_len(&manifest, i);
                    target.write_at(i * block_size, &buf[..usize::try_from(len).unwrap_or(0)])?;
                    progress.add(len);
                }
            }
        }
        Ok(written)
    })?;
    let blocks_written = written.iter().sum();
    target.finish()?;
    Ok(RestoreOutcome {
        blocks_written,
        blocks_zero: zero_count,
        reads: reads.len() as u64,
        warnings: repo.take_warnings(),
    })
}

/// Groups sorted block locations into ranged reads.
fn group_reads(located: &[(Location, Id)]) -> Vec<Read> {
    let mut reads: Vec<Read> = Vec::new();
    for (i, (l, _)) in located.iter().enumerate() {
        // The index's entries end within 32 bits (checked when it was read).
        let end = l.entry.offset.saturating_add(l.entry.length);
        match reads.last_mut() {
            Some(r)
                if r.pack == l.pack
                    && l.entry.offset.saturating_sub(r.end) <= MAX_GAP
                    && end - r.start <= MAX_READ =>
            {
                r.end = end;
                r.blocks.end = i + 1;
            }
            _ => reads.push(Read {
                pack: l.pack,
                start: l.entry.offset,
                end,
                blocks: i..i + 1,
            }),
        }
    }
    reads
}

/// What every thread of a restore shares.
struct Job<'a> {
    repo: &'a Repository,
    manifest: &'a Manifest,
    index: &'a bulwark_repo::Index,
    point: &'a Id,
    located: &'a [(Location, Id)],
    positions: &'a HashMap<Id, Vec<u64>>,
    target: &'a dyn BlockTarget,
    progress: &'a Progress,
    block_size: u64,
}

impl Job<'_> {
    /// Fetches one ranged read and writes its blocks wherever they go; returns blocks written.
    fn read(&self, read: &Read) -> Result<u64, MoverError> {
        let pack = self.index.packs[read.pack as usize];
        let bytes = self
            .repo
            .backend()
            .get_range(
                FileKind::Pack,
                &pack.to_hex(),
                u64::from(read.start),
                u64::from(read.end - read.start),
            )
            .map_err(RepoError::from)?;
        let mut written = 0;
        for (location, id) in self.located.get(read.blocks.clone()).unwrap_or_default() {
            let at = self.positions.get(id).map_or(&[][..], Vec::as_slice);
            let bad = |reason: String| MoverError::BadBlock {
                index: at.first().copied().unwrap_or_default(),
                point: self.point.to_hex(),
                block: id.to_hex(),
                pack: pack.to_hex(),
                reason,
            };
            let from = (location.entry.offset - read.start) as usize;
            let sealed = bytes
                .get(from..from + location.entry.length as usize)
                .ok_or_else(|| bad("the pack is shorter than its index says".into()))?;
            // Authenticated and checked against its id before anything is written.
            let block = self
                .repo
                .open_block(&location.entry, sealed, &|| format!("block {id}"))
                .map_err(|e| bad(e.to_string()))?;
            for i in at {
                // Never past the volume's end, nor short of it: a block is written whole at its
                // place, or not at all.
                let want = block_len(self.manifest, *i);
                if block.len() as u64 != want {
                    return Err(bad(format!(
                        "it holds {} bytes, block {i} of the volume has {want}",
                        block.len()
                    )));
                }
                self.target.write_at(i * self.block_size, &block)?;
                self.progress.add(block.len() as u64);
                written += 1;
            }
        }
        Ok(written)
    }
}

/// The ranges of zero blocks of a restore point (the gaps between its runs).
fn zero_ranges(manifest: &Manifest) -> Vec<std::ops::Range<u64>> {
    let mut zeros = Vec::new();
    let mut next = 0;
    for run in &manifest.blocks {
        if run.start > next {
            zeros.push(next..run.start);
        }
        next = run.start + run.ids.len() as u64;
    }
    if manifest.block_count() > next {
        zeros.push(next..manifest.block_count());
    }
    zeros
}

/// Length of block `i` (the last block of a volume may be short).
fn block_len(manifest: &Manifest, i: u64) -> u64 {
    let bs = u64::from(manifest.block_size);
    bs.min(manifest.size - i * bs)
}
