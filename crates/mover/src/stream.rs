//! The two ends of a backup's stream, in memory that does not grow with the volume: the blocks
//! to read, handed out in increasing order (a list, or the data extents of a sparse source found
//! as the threads go), and the blocks read, put back in that order into the block map, which
//! writes its chunks as they fill. Threads that run ahead of the oldest block still being read
//! wait, so the reordering buffer stays small.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use bulwark_repo::{Id, MapBuilder, RepoError};

use crate::device::BlockSource;
use crate::error::MoverError;
use crate::progress::Progress;

/// Blocks read but not yet in the map (because an older one is still being read) beyond which
/// a thread waits: a few per thread in normal running.
const MAX_PENDING: usize = 1024;

/// The blocks a backup reads, in increasing order.
pub(crate) enum Work<'a> {
    /// These blocks (sorted, without duplicates).
    List { list: &'a [u64], next: usize },
    /// Every block of `source` that may hold data, found extent by extent.
    Extents {
        source: &'a dyn BlockSource,
        block_size: u64,
        size: u64,
        /// The next block to consider.
        cursor: u64,
        /// One past the last block of the current extent.
        extent_end: u64,
        done: bool,
    },
}

impl<'a> Work<'a> {
    /// The blocks of `source` that may hold data.
    pub(crate) fn extents(source: &'a dyn BlockSource, block_size: u64) -> Self {
        Work::Extents {
            source,
            block_size,
            size: source.size(),
            cursor: 0,
            extent_end: 0,
            done: false,
        }
    }

    /// The next block to read; the bytes of holes skipped count as done in `progress`.
    fn next(&mut self, progress: &Progress) -> Result<Option<u64>, MoverError> {
        match self {
            Work::List { list, next } => {
                let item = list.get(*next).copied();
                *next += 1;
                Ok(item)
            }
            Work::Extents {
                source,
                block_size,
                size,
                cursor,
                extent_end,
                done,
            } => loop {
                if cursor < extent_end {
                    *cursor += 1;
                    return Ok(Some(*cursor - 1));
                }
                let offset = cursor.saturating_mul(*block_size);
                if *done || offset >= *size {
                    *done = true;
                    return Ok(None);
                }
                match source.next_data(offset)? {
                    Some(r) if r.end > r.start.max(offset) => {
                        let start = r.start.max(offset);
                        let first = start / *block_size;
                        let end = r.end.min(*size).div_ceil(*block_size);
                        progress.add(first * *block_size - offset);
                        *cursor = first;
                        *extent_end = end.max(first + 1);
                    }
                    _ => {
                        progress.add(*size - offset);
                        *done = true;
                    }
                }
            },
        }
    }
}

/// Hands out blocks to read, each with its place in the order.
pub(crate) struct Feed<'a> {
    work: Mutex<(Work<'a>, u64)>,
}

impl<'a> Feed<'a> {
    pub(crate) fn new(work: Work<'a>) -> Self {
        Self {
            work: Mutex::new((work, 0)),
        }
    }

    /// The next (place, block index), or `None` when all are taken or the backup is stopping.
    pub(crate) fn take(
        &self,
        stop: &AtomicBool,
        progress: &Progress,
    ) -> Result<Option<(u64, u64)>, MoverError> {
        if stop.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let mut work = lock(&self.work);
        let (work, seq) = &mut *work;
        Ok(work.next(progress)?.map(|index| {
            *seq += 1;
            (*seq - 1, index)
        }))
    }
}

/// The blocks read, put back in order into the map.
pub(crate) struct Collector<'r> {
    state: Mutex<Collecting<'r>>,
    advanced: Condvar,
}

struct Collecting<'r> {
    pending: BTreeMap<u64, (u64, Option<Id>)>,
    next: u64,
    map: MapBuilder<'r>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl<'r> Collector<'r> {
    pub(crate) fn new(map: MapBuilder<'r>) -> Self {
        Self {
            state: Mutex::new(Collecting {
                pending: BTreeMap::new(),
                next: 0,
                map,
            }),
            advanced: Condvar::new(),
        }
    }

    /// Block `index` (at place `seq` of the order) is `id`; answers the map chunks that filled
    /// meanwhile, for the caller to store. Waits while too many blocks after an unfinished one
    /// are pending.
    pub(crate) fn deliver(
        &self,
        seq: u64,
        index: u64,
        id: Option<Id>,
        stop: &AtomicBool,
    ) -> Result<Vec<(Id, Vec<u8>)>, RepoError> {
        let mut state = lock(&self.state);
        state.pending.insert(seq, (index, id));
        let mut moved = false;
        loop {
            let next = state.next;
            let Some((index, id)) = state.pending.remove(&next) else {
                break;
            };
            state.next += 1;
            state.map.push(index, id)?;
            moved = true;
        }
        let ready = state.map.take_ready();
        if moved {
            self.advanced.notify_all();
        }
        while state.pending.len() > MAX_PENDING && !stop.load(Ordering::Relaxed) {
            state = self
                .advanced
                .wait_timeout(state, Duration::from_millis(50))
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
        Ok(ready)
    }

    /// The map, once every block is delivered.
    pub(crate) fn into_map(self) -> Result<MapBuilder<'r>, RepoError> {
        let state = self
            .state
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !state.pending.is_empty() {
            return Err(RepoError::Corrupt(format!(
                "{} blocks were read out of order and never placed",
                state.pending.len()
            )));
        }
        Ok(state.map)
    }
}
