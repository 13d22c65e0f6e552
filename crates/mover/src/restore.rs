//! Restore: write a restore point's blocks into a target, in parallel, checking each block's
//! authenticity and id before it is written.
//!
//! The block map is restored a window at a time (a map chunk), so that memory does not grow
//! with the volume. In each, the blocks are sorted by pack and offset and grouped into ranged
//! reads of neighbouring blocks (so S3 sees few, large GETs), which threads take in turn. A
//! block used at several places of the window is read once and written at each. Zero blocks are
//! skipped where the target reads zeros already (a sparse file), written otherwise.

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

/// Blocks of a version 1 manifest restored per round (a version 2 manifest's rounds are its
/// map chunks, of up to 16,383 blocks): what a round holds in memory is bounded.
const WINDOW: usize = 1 << 16;

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
    progress.total.store(manifest.size, Ordering::Relaxed);
    let job = Job {
        repo,
        manifest: &manifest,
        index: &index,
        point,
        target,
        progress,
        block_size: u64::from(manifest.block_size),
        threads,
    };
    // Round by round, each a window of the block map and the zero blocks before it.
    let mut outcome = RestoreOutcome::default();
    let mut next = 0;
    repo.for_each_block(&manifest, &index, WINDOW, |window| {
        let mut zeros = Vec::new();
        for &(i, _) in window {
            if i > next {
                zeros.push(next..i);
            }
            next = i + 1;
        }
        job.round(window, &zeros, &mut outcome)
    })?;
    if manifest.block_count() > next {
        let tail = std::iter::once(next..manifest.block_count()).collect::<Vec<_>>();
        job.round(&[], &tail, &mut outcome)?;
    }
    target.finish()?;
    outcome.warnings = repo.take_warnings();
    Ok(outcome)
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
    target: &'a dyn BlockTarget,
    progress: &'a Progress,
    block_size: u64,
    threads: usize,
}

/// What the threads of one round share.
struct Round<'a> {
    located: &'a [(Location, Id)],
    positions: &'a HashMap<Id, Vec<u64>>,
}

impl Job<'_> {
    /// Restores the blocks of `window` and the zero blocks of `zeros`, in parallel.
    fn round(
        &self,
        window: &[(u64, Id)],
        zeros: &[std::ops::Range<u64>],
        outcome: &mut RestoreOutcome,
    ) -> Result<(), MoverError> {
        // Where each distinct block goes, and where it is.
        let mut positions: HashMap<Id, Vec<u64>> = HashMap::new();
        for &(i, id) in window {
            positions.entry(id).or_default().push(i);
        }
        let mut located: Vec<(Location, Id)> = Vec::with_capacity(positions.len());
        for (id, at) in &positions {
            let location = self.index.blocks.get(id).ok_or_else(|| RepoError::MissingBlock {
                block: id.to_hex(),
                index: at.first().copied().unwrap_or_default(),
                point: self.point.to_hex(),
            })?;
            located.push((*location, *id));
        }
        located.sort_unstable_by_key(|(l, _)| (l.pack, l.entry.offset));
        let reads = group_reads(&located);
        let zero_count: u64 = zeros.iter().map(|r| r.end - r.start).sum();
        let target = self.target;
        if target.reads_zeros() {
            let bytes = zeros
                .iter()
                .flat_map(Clone::clone)
                .map(|i| block_len(self.manifest, i))
                .sum();
            self.progress.add(bytes);
        }
        let round = Round {
            located: &located,
            positions: &positions,
        };
        let (read_queue, zero_queue) = (Queue::new(reads.len()), Queue::new(zeros.len()));
        let written = parallel::run(self.threads, |stop| {
            let mut written = 0;
            while let Some(r) = read_queue.take(stop) {
                self.progress.checkpoint()?;
                written += self.read(&round, &reads[r])?;
            }
            if !target.reads_zeros() {
                let buf = vec![0u8; usize::try_from(self.block_size).unwrap_or(0)];
                while let Some(z) = zero_queue.take(stop) {
                    for i in zeros[z].clone() {
                        let len = block_len(self.manifest, i);
                        target.write_at(i * self.block_size, &buf[..usize::try_from(len).unwrap_or(0)])?;
                        self.progress.add(len);
                    }
                }
            }
            Ok(written)
        })?;
        outcome.blocks_written += written.iter().sum::<u64>();
        outcome.blocks_zero += zero_count;
        outcome.reads += reads.len() as u64;
        Ok(())
    }

    /// Fetches one ranged read and writes its blocks wherever they go; returns blocks written.
    fn read(&self, round: &Round<'_>, read: &Read) -> Result<u64, MoverError> {
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
        for (location, id) in round.located.get(read.blocks.clone()).unwrap_or_default() {
            let at = round.positions.get(id).map_or(&[][..], Vec::as_slice);
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

/// Length of block `i` (the last block of a volume may be short).
fn block_len(manifest: &Manifest, i: u64) -> u64 {
    let bs = u64::from(manifest.block_size);
    bs.min(manifest.size - i * bs)
}
