//! The block map of a restore point in manifest version 2: its runs, in chunks of at most
//! 512 KiB, each stored like a block (sealed into a pack, named by its keyed hash, listed by
//! an index file); the manifest lists the chunks. A backup writes its map as it goes, a reader
//! reads it chunk by chunk, so neither holds the map of a whole volume; and an incremental
//! backup reuses, as they are, the chunks of its parent that no change touches.
//!
//! A chunk is `"bwm2"` then runs, each `start (u64 LE) || count (u32 LE) || count ids of 32
//! bytes`, in increasing order, not overlapping, inside the chunk's `start..end` as the
//! manifest lists it.

use std::collections::{HashSet, VecDeque};

use serde::{Deserialize, Serialize};

use crate::error::RepoError;
use crate::format::{Manifest, Run, BLOCK_SIZE};
use crate::id::Id;
use crate::repository::{Index, Repository};

/// The first bytes of a map chunk.
pub const MAP_MAGIC: &[u8; 4] = b"bwm2";
/// Largest map chunk: a block, so that it packs like one.
pub const MAP_CHUNK_MAX: usize = BLOCK_SIZE as usize;
/// Bytes a run's header takes in a chunk.
const RUN_HEADER: usize = 12;

/// One chunk of a block map, as the manifest lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapChunk {
    /// The first block index it may hold.
    pub start: u64,
    /// One past the last block index it may hold.
    pub end: u64,
    /// Its id: keyed hash of its bytes, as a block's.
    pub id: Id,
}

/// Encodes runs as a chunk.
pub fn encode_chunk(runs: &[Run]) -> Vec<u8> {
    let len = MAP_MAGIC.len() + runs.iter().map(|r| RUN_HEADER + 32 * r.ids.len()).sum::<usize>();
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(MAP_MAGIC);
    for run in runs {
        out.extend_from_slice(&run.start.to_le_bytes());
        out.extend_from_slice(&(run.ids.len() as u32).to_le_bytes());
        for id in &run.ids {
            out.extend_from_slice(&id.0);
        }
    }
    out
}

/// Decodes a chunk listed as `start..end`: every run inside, in order, apart.
pub fn decode_chunk(bytes: &[u8], start: u64, end: u64) -> Result<Vec<Run>, String> {
    let mut rest = bytes
        .strip_prefix(MAP_MAGIC.as_slice())
        .ok_or("not a block map chunk (no bwm2 magic)")?;
    if bytes.len() > MAP_CHUNK_MAX {
        return Err(format!(
            "{} bytes, more than a chunk's {MAP_CHUNK_MAX}",
            bytes.len()
        ));
    }
    let mut runs = Vec::new();
    let mut next = start;
    while !rest.is_empty() {
        let header: [u8; RUN_HEADER] = rest
            .get(..RUN_HEADER)
            .and_then(|h| h.try_into().ok())
            .ok_or("a run header is cut short")?;
        let (first, count) = header.split_at(8);
        let first = u64::from_le_bytes(first.try_into().map_err(|_| "bad run start")?);
        let count = u32::from_le_bytes(count.try_into().map_err(|_| "bad run count")?) as usize;
        rest = &rest[RUN_HEADER..];
        // Checked against what is there before anything is allocated for it.
        let ids_len = count
            .checked_mul(32)
            .filter(|n| *n <= rest.len())
            .ok_or_else(|| format!("a run of {count} blocks at {first} is longer than the chunk"))?;
        let stop = first.checked_add(count as u64).filter(|s| *s <= end);
        match stop {
            _ if count == 0 => return Err(format!("an empty run at block {first}")),
            _ if first < next => {
                return Err(format!(
                    "the run at block {first} overlaps or precedes block {next}"
                ))
            }
            None => {
                return Err(format!(
                    "the run of {count} blocks at {first} is past the chunk's end {end}"
                ))
            }
            Some(stop) => next = stop,
        }
        let ids = rest[..ids_len]
            .chunks_exact(32)
            .map(|c| Id(c.try_into().unwrap_or([0; 32])))
            .collect();
        rest = &rest[ids_len..];
        runs.push(Run { start: first, ids });
    }
    Ok(runs)
}

/// Checks a manifest's chunk list: in increasing order, apart, inside the volume.
pub fn check_chunks(chunks: &[MapChunk], blocks: u64) -> Result<(), String> {
    let mut next = 0;
    for c in chunks {
        if c.start >= c.end || c.start < next || c.end > blocks {
            return Err(format!(
                "map chunk {} covers blocks {}..{}, out of order or outside the volume's {blocks}",
                c.id.short(),
                c.start,
                c.end
            ));
        }
        next = c.end;
    }
    Ok(())
}

impl Repository {
    /// Reads a blob (a block or a map chunk) by id, through `index`.
    pub fn read_blob(&self, index: &Index, id: &Id) -> Result<Vec<u8>, RepoError> {
        let loc = index.blocks.get(id).ok_or_else(|| {
            RepoError::Corrupt(format!("{} is in no index: the repository lost it", id.short()))
        })?;
        let pack = index
            .packs
            .get(loc.pack as usize)
            .ok_or_else(|| RepoError::Corrupt(format!("{}: a pack number out of range", id.short())))?;
        let sealed = self.backend().get_range(
            bulwark_storage::FileKind::Pack,
            &pack.to_hex(),
            u64::from(loc.entry.offset),
            u64::from(loc.entry.length),
        )?;
        self.open_block(&loc.entry, &sealed, &|| format!("{} in pack {pack}", id.short()))
    }

    /// Reads one chunk of a block map.
    pub fn read_map_chunk(&self, index: &Index, chunk: &MapChunk) -> Result<Vec<Run>, RepoError> {
        let bytes = self.read_blob(index, &chunk.id)?;
        decode_chunk(&bytes, chunk.start, chunk.end)
            .map_err(|e| RepoError::Corrupt(format!("block map chunk {}: {e}", chunk.id)))
    }

    /// Calls `f` with the non-zero blocks of a restore point as (index, id), in increasing
    /// order, a window of at most a chunk (or `max` blocks of a version 1 manifest) at a time.
    pub fn for_each_block<E: From<RepoError>>(
        &self,
        manifest: &Manifest,
        index: &Index,
        max: usize,
        mut f: impl FnMut(&[(u64, Id)]) -> Result<(), E>,
    ) -> Result<(), E> {
        let max = max.max(1);
        let runs = manifest.blocks.iter().flat_map(|run| {
            run.ids
                .iter()
                .enumerate()
                .map(move |(k, id)| (run.start + k as u64, *id))
        });
        let mut window: Vec<(u64, Id)> = Vec::new();
        for block in runs {
            window.push(block);
            if window.len() >= max {
                f(&window)?;
                window.clear();
            }
        }
        if !window.is_empty() {
            f(&window)?;
            window.clear();
        }
        for chunk in &manifest.map {
            for run in self.read_map_chunk(index, chunk)? {
                window.extend(
                    run.ids
                        .iter()
                        .enumerate()
                        .map(|(k, id)| (run.start + k as u64, *id)),
                );
            }
            if !window.is_empty() {
                f(&window)?;
                window.clear();
            }
        }
        Ok(())
    }
}

/// What a map being built takes from its parent: chunks it may reuse whole, and blocks of a
/// chunk (or a version 1 manifest) that a change touches.
#[derive(Debug)]
enum Piece {
    Chunk(MapChunk),
    Blocks(VecDeque<(u64, Id)>),
}

/// Builds the block map of a new restore point from blocks given in increasing order: full
/// chunks are handed out to be stored as they fill, so memory stays at a chunk or two. With a
/// parent, the given blocks are changes (`None`: the block is now zeros) applied to the
/// parent's map, whose untouched chunks are reused as they are.
pub struct MapBuilder<'r> {
    repo: &'r Repository,
    index: &'r Index,
    parent: VecDeque<Piece>,
    /// The chunk being filled.
    runs: Vec<Run>,
    bytes: usize,
    /// The chunks of the map so far.
    chunks: Vec<MapChunk>,
    /// Full chunks not yet taken for storing.
    ready: Vec<(Id, Vec<u8>)>,
    /// The last block added, so that order is checked.
    last: Option<u64>,
    /// The packs (of `index`) the map's blocks and chunks are in, when asked for.
    used_packs: Option<HashSet<u32>>,
}

impl<'r> MapBuilder<'r> {
    /// A builder of a map on top of `parent` (or none). With `track_packs`, it records which
    /// packs of `index` the map uses (reading the reused chunks to know their blocks).
    pub fn new(repo: &'r Repository, index: &'r Index, parent: Option<&Manifest>, track_packs: bool) -> Self {
        let mut pieces = VecDeque::new();
        if let Some(p) = parent {
            let inline: VecDeque<(u64, Id)> = p.block_ids().collect();
            if !inline.is_empty() {
                pieces.push_back(Piece::Blocks(inline));
            }
            pieces.extend(p.map.iter().copied().map(Piece::Chunk));
        }
        Self {
            repo,
            index,
            parent: pieces,
            runs: Vec::new(),
            bytes: MAP_MAGIC.len(),
            chunks: Vec::new(),
            ready: Vec::new(),
            last: None,
            used_packs: track_packs.then(HashSet::new),
        }
    }

    /// Block `i` is `id` (or zeros); `i` is greater than every index given before.
    pub fn push(&mut self, i: u64, id: Option<Id>) -> Result<(), RepoError> {
        if self.last.is_some_and(|last| i <= last) {
            return Err(RepoError::Corrupt(format!("block {i} given out of order")));
        }
        self.last = Some(i);
        self.take_parent_before(i)?;
        if let Some(id) = id {
            self.add(i, id);
        }
        Ok(())
    }

    /// Moves the parent's blocks before `i` into the map, drops the parent's block `i`.
    fn take_parent_before(&mut self, i: u64) -> Result<(), RepoError> {
        loop {
            match self.parent.front_mut() {
                None => return Ok(()),
                Some(Piece::Chunk(c)) if c.end <= i => {
                    let c = *c;
                    self.parent.pop_front();
                    self.reuse(c)?;
                }
                Some(Piece::Chunk(c)) if c.start <= i => {
                    let c = *c;
                    let blocks = self
                        .repo
                        .read_map_chunk(self.index, &c)?
                        .into_iter()
                        .flat_map(|r| {
                            let start = r.start;
                            r.ids
                                .into_iter()
                                .enumerate()
                                .map(move |(k, id)| (start + k as u64, id))
                        })
                        .collect();
                    self.parent[0] = Piece::Blocks(blocks);
                }
                Some(Piece::Chunk(_)) => return Ok(()),
                Some(Piece::Blocks(q)) => {
                    let mut moved = Vec::new();
                    while let Some(&(j, id)) = q.front() {
                        if j > i {
                            break;
                        }
                        q.pop_front();
                        if j < i {
                            moved.push((j, id));
                        }
                    }
                    let emptied = q.is_empty();
                    for (j, id) in moved {
                        self.add(j, id);
                    }
                    if !emptied {
                        return Ok(());
                    }
                    self.parent.pop_front();
                }
            }
        }
    }

    /// Adds one block to the chunk being filled, closing it first if it is full.
    fn add(&mut self, i: u64, id: Id) {
        if let Some(packs) = &mut self.used_packs {
            if let Some(loc) = self.index.blocks.get(&id) {
                packs.insert(loc.pack);
            }
        }
        let extends = self
            .runs
            .last()
            .is_some_and(|r| r.start + r.ids.len() as u64 == i);
        let cost = if extends { 32 } else { RUN_HEADER + 32 };
        if self.bytes + cost > MAP_CHUNK_MAX {
            self.close();
            return self.add(i, id);
        }
        self.bytes += cost;
        match self.runs.last_mut() {
            Some(run) if extends => run.ids.push(id),
            _ => self.runs.push(Run {
                start: i,
                ids: vec![id],
            }),
        }
    }

    /// Reuses a parent's chunk as it is.
    fn reuse(&mut self, chunk: MapChunk) -> Result<(), RepoError> {
        self.close();
        if self.used_packs.is_some() {
            for run in self.repo.read_map_chunk(self.index, &chunk)? {
                for id in &run.ids {
                    if let (Some(packs), Some(loc)) = (&mut self.used_packs, self.index.blocks.get(id)) {
                        packs.insert(loc.pack);
                    }
                }
            }
            if let (Some(packs), Some(loc)) = (&mut self.used_packs, self.index.blocks.get(&chunk.id)) {
                packs.insert(loc.pack);
            }
        }
        self.chunks.push(chunk);
        Ok(())
    }

    /// Closes the chunk being filled, if it holds anything.
    fn close(&mut self) {
        let Some(first) = self.runs.first().map(|r| r.start) else {
            return;
        };
        let end = self.runs.last().map_or(first, |r| r.start + r.ids.len() as u64);
        let bytes = encode_chunk(&self.runs);
        let id = self.repo.keys().block_id(&bytes);
        self.chunks.push(MapChunk {
            start: first,
            end,
            id,
        });
        self.ready.push((id, bytes));
        self.runs.clear();
        self.bytes = MAP_MAGIC.len();
    }

    /// The full chunks to store (each is stored before the manifest that lists it).
    pub fn take_ready(&mut self) -> Vec<(Id, Vec<u8>)> {
        std::mem::take(&mut self.ready)
    }

    /// Ends the map: the parent's remaining blocks, the last chunk.
    pub fn finish(mut self) -> Result<FinishedMap, RepoError> {
        self.take_parent_before(u64::MAX)?;
        self.close();
        Ok(FinishedMap {
            chunks: self.chunks,
            ready: self.ready,
            used_packs: self.used_packs,
        })
    }
}

/// A block map, built.
#[derive(Debug)]
pub struct FinishedMap {
    /// The chunk list, for the manifest.
    pub chunks: Vec<MapChunk>,
    /// The chunks still to store, as (id, bytes).
    pub ready: Vec<(Id, Vec<u8>)>,
    /// The packs of the index the map uses, if tracked.
    pub used_packs: Option<HashSet<u32>>,
}

#[cfg(test)]
#[path = "map_tests.rs"]
mod tests;
