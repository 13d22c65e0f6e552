//! Reading a completed snapshot as the mover's [`BlockSource`], with read-ahead.
//!
//! A block call spends its time waiting on EBS, and the mover has only as many threads as
//! there are cores to compress with. So [`IN_FLIGHT`](super::IN_FLIGHT) fetchers read the
//! listed blocks ahead, in the order the mover takes them, into a window of at most
//! [`AHEAD`](super::AHEAD) blocks; the mover's threads take each block from the window, or
//! fetch it themselves if the fetchers have not come to it yet.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Condvar, Mutex, MutexGuard};

use bulwark_cloud::checksum::block_checksum;
use bulwark_cloud::{BlockRef, Cloud, Credentials, EBS_BLOCK_SIZE};
use bulwark_model::{Action, Region, SnapshotId};
use bulwark_mover::{BlockSource, MoverError};

use super::rate::RateLimiter;
use super::{DirectError, FirstFailure, AHEAD, SOURCE_KIND};
use crate::retry::Retry;
use crate::wait;

/// A completed snapshot as a [`BlockSource`]: its listed blocks are fetched with
/// `GetSnapshotBlock` and checked against their checksums; every other block reads as zeros.
pub(super) struct SnapshotSource<'a> {
    cloud: &'a Cloud,
    who: &'a Credentials,
    region: &'a Region,
    snapshot: SnapshotId,
    size: u64,
    /// The listed blocks: EBS block index -> block token.
    tokens: BTreeMap<u64, String>,
    /// Whether the listing is of the changes since a parent snapshot.
    incremental: bool,
    limiter: RateLimiter,
    pub(super) failure: FirstFailure,
    ahead: ReadAhead,
}

/// The blocks fetched ahead of the mover.
struct ReadAhead {
    /// The listed blocks that hold data (a block removed since the parent has no token),
    /// in order: the order the mover reads them in.
    order: Vec<u64>,
    state: Mutex<Window>,
    /// Signalled to one fetcher when the mover takes a block (room in the window).
    room: Condvar,
    /// Signalled to the mover's threads when a block is fetched (or failed).
    arrived: Condvar,
}

struct Window {
    /// The state of each block of `order`.
    slots: Vec<Slot>,
    /// The first position of `order` no fetcher has come to.
    next: usize,
    /// Blocks being fetched or fetched and not yet taken: the window's memory.
    held: usize,
    /// The transfer is over: fetchers return.
    stopped: bool,
}

enum Slot {
    /// Not fetched yet.
    Waiting,
    /// A fetcher is on it.
    Fetching,
    /// Fetched, for the mover to take.
    Ready(Vec<u8>),
    /// The fetch failed: the mover takes the error.
    Failed(DirectError),
    /// Taken by the mover, or left for it to fetch itself.
    Taken,
}

impl<'a> SnapshotSource<'a> {
    /// Lists the blocks of `snapshot` (every page): all its written blocks, or with `parent`
    /// (a snapshot of the same lineage) those that changed since it.
    pub(super) fn open(
        cloud: &'a Cloud,
        who: &'a Credentials,
        region: &'a Region,
        snapshot: &SnapshotId,
        parent: Option<&SnapshotId>,
    ) -> Result<Self, DirectError> {
        let (tokens, size_gib) = list_blocks(cloud, who, region, snapshot, parent)?;
        let order: Vec<u64> = tokens
            .iter()
            .filter(|(_, token)| !token.is_empty())
            .map(|(index, _)| *index)
            .collect();
        let window = Window {
            slots: order.iter().map(|_| Slot::Waiting).collect(),
            next: 0,
            held: 0,
            stopped: false,
        };
        Ok(Self {
            cloud,
            who,
            region,
            snapshot: snapshot.clone(),
            size: u64::from(size_gib) << 30,
            tokens,
            incremental: parent.is_some(),
            limiter: RateLimiter::per_snapshot(),
            failure: FirstFailure::default(),
            ahead: ReadAhead {
                order,
                state: Mutex::new(window),
                room: Condvar::new(),
                arrived: Condvar::new(),
            },
        })
    }

    /// For a listing against a parent, the indexes of the `block_size` blocks that changed,
    /// in order: the list to give the mover's `backup`. `None` for a full listing.
    pub(super) fn changed_blocks(&self, block_size: u64) -> Option<Vec<u64>> {
        self.incremental
            .then(|| blocks_of(self.tokens.keys().copied(), block_size))
    }

    /// Fetches blocks ahead of the mover until the transfer stops or every block is
    /// fetched: the work of one fetcher thread.
    pub(super) fn fetch_ahead(&self) {
        while let Some((position, index)) = self.next_to_fetch() {
            // Every block of `order` has a token.
            let token = self.tokens.get(&index).map_or("", String::as_str);
            let fetched = self.fetch(index, token);
            let mut window = self.window();
            window.slots[position] = match fetched {
                Ok(data) => Slot::Ready(data),
                Err(e) => Slot::Failed(e),
            };
            drop(window);
            self.ahead.arrived.notify_all();
        }
    }

    /// Claims the next block to fetch ahead, waiting for room in the window.
    fn next_to_fetch(&self) -> Option<(usize, u64)> {
        let mut window = self.window();
        loop {
            if window.stopped || window.next >= self.ahead.order.len() {
                return None;
            }
            if window.held < AHEAD {
                let position = window.next;
                window.next += 1;
                if matches!(window.slots[position], Slot::Waiting) {
                    window.slots[position] = Slot::Fetching;
                    window.held += 1;
                    return Some((position, self.ahead.order[position]));
                }
                // The mover came to it first.
                continue;
            }
            window = wait(&self.ahead.room, window);
        }
    }

    /// Waits until the mover has taken every block fetched ahead (or the transfer stopped):
    /// a fetcher done with this snapshot waits here before it reads the next one ahead, so
    /// that one window at a time holds memory.
    pub(super) fn wait_drained(&self) {
        let mut window = self.window();
        while !window.stopped && window.held > 0 {
            window = wait(&self.ahead.room, window);
        }
    }

    /// Ends the read-ahead: the fetchers return once their call is done.
    pub(super) fn stop(&self) {
        self.window().stopped = true;
        self.ahead.room.notify_all();
        self.ahead.arrived.notify_all();
    }

    /// The data of EBS block `index`: from the window if a fetcher has it or is on it, else
    /// fetched now.
    fn block(&self, index: u64, token: &str) -> Result<Vec<u8>, DirectError> {
        let Ok(position) = self.ahead.order.binary_search(&index) else {
            return self.fetch(index, token);
        };
        let mut window = self.window();
        loop {
            match std::mem::replace(&mut window.slots[position], Slot::Taken) {
                Slot::Fetching => {
                    window.slots[position] = Slot::Fetching;
                    window = wait(&self.ahead.arrived, window);
                }
                Slot::Ready(data) => {
                    self.taken(window);
                    return Ok(data);
                }
                Slot::Failed(e) => {
                    self.taken(window);
                    return Err(e);
                }
                // Not fetched ahead (or read a second time, by a mover block smaller than
                // EBS's): fetch it here.
                Slot::Waiting | Slot::Taken => {
                    drop(window);
                    return self.fetch(index, token);
                }
            }
        }
    }

    /// A block left the window: room for one more fetch, and once the window is empty, the
    /// fetchers waiting for it to drain go on.
    fn taken(&self, mut window: MutexGuard<'_, Window>) {
        window.held -= 1;
        let drained = window.held == 0;
        drop(window);
        if drained {
            self.ahead.room.notify_all();
        } else {
            self.ahead.room.notify_one();
        }
    }

    /// One listed EBS block, fetched at the snapshot's pace and checked.
    fn fetch(&self, index: u64, token: &str) -> Result<Vec<u8>, DirectError> {
        fetch_block(
            self.cloud,
            self.who,
            self.region,
            &self.snapshot,
            &self.limiter,
            index,
            token,
        )
    }

    /// Fills `buf` with the bytes at `offset`, from whichever EBS blocks it spans.
    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), DirectError> {
        let mut done = 0;
        while done < buf.len() {
            let at = offset + done as u64;
            let index = at / EBS_BLOCK_SIZE;
            let within = usize::try_from(at % EBS_BLOCK_SIZE).unwrap_or(0);
            let n = (buf.len() - done).min(EBS_BLOCK_SIZE as usize - within);
            let out = &mut buf[done..done + n];
            // A block listed without a token was removed in the newer snapshot
            // (ListChangedBlocks gives it no second token): it reads as zeros.
            match self.tokens.get(&index).filter(|t| !t.is_empty()) {
                Some(token) => out.copy_from_slice(&self.block(index, token)?[within..within + n]),
                None => out.fill(0),
            }
            done += n;
        }
        Ok(())
    }

    fn window(&self) -> MutexGuard<'_, Window> {
        crate::lock(&self.ahead.state)
    }
}

/// Lists the blocks of `snapshot` (every page): all its written blocks, or with `parent`
/// those that changed since it. Answers EBS block index -> block token (empty for a block
/// removed since the parent), and the volume's size in GiB.
pub(super) fn list_blocks(
    cloud: &Cloud,
    who: &Credentials,
    region: &Region,
    snapshot: &SnapshotId,
    parent: Option<&SnapshotId>,
) -> Result<(BTreeMap<u64, String>, u32), DirectError> {
    let action = match parent {
        None => Action::EbsListSnapshotBlocks,
        Some(_) => Action::EbsListChangedBlocks,
    };
    let mut tokens = BTreeMap::new();
    let mut next: Option<String> = None;
    loop {
        let page = Retry::BLOCKS.run(action, None, || match parent {
            None => cloud
                .ebs
                .list_snapshot_blocks(who, region, snapshot, next.as_deref()),
            Some(p) => cloud
                .ebs
                .list_changed_blocks(who, region, p, snapshot, next.as_deref()),
        })?;
        tokens.extend(page.blocks.into_iter().map(|b| (b.index, b.token)));
        next = page.next_token;
        if next.is_none() {
            return Ok((tokens, page.volume_size_gib));
        }
    }
}

/// The indexes of the `block_size` blocks that overlap the EBS blocks `ebs_blocks` (in
/// increasing order), in order.
pub(super) fn blocks_of(ebs_blocks: impl Iterator<Item = u64>, block_size: u64) -> Vec<u64> {
    let mut out: Vec<u64> = Vec::new();
    for index in ebs_blocks {
        let start = index.saturating_mul(EBS_BLOCK_SIZE);
        let first = start / block_size;
        let last = start.saturating_add(EBS_BLOCK_SIZE - 1) / block_size;
        for b in first..=last {
            if out.last() != Some(&b) {
                out.push(b);
            }
        }
    }
    out
}

/// One listed EBS block of `snapshot`, fetched at the pace `limiter` keeps and checked
/// against the checksum EBS sends with it.
pub(super) fn fetch_block(
    cloud: &Cloud,
    who: &Credentials,
    region: &Region,
    snapshot: &SnapshotId,
    limiter: &RateLimiter,
    index: u64,
    token: &str,
) -> Result<Vec<u8>, DirectError> {
    let block = BlockRef {
        index,
        token: token.to_owned(),
    };
    let (data, checksum) = Retry::BLOCKS.run(Action::EbsGetSnapshotBlock, Some(limiter), || {
        cloud.ebs.get_snapshot_block(who, region, snapshot, &block)
    })?;
    if data.len() as u64 != EBS_BLOCK_SIZE {
        return Err(DirectError::BadBlock {
            snapshot: snapshot.clone(),
            index,
            reason: format!("EBS answered {} bytes, not {EBS_BLOCK_SIZE}", data.len()),
            remedy: "retry the backup".into(),
        });
    }
    let actual = block_checksum(&data);
    if actual != checksum {
        return Err(DirectError::Checksum {
            snapshot: snapshot.clone(),
            index,
            expected: checksum,
            actual,
        });
    }
    Ok(data)
}

impl BlockSource for SnapshotSource<'_> {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), MoverError> {
        self.read(offset, buf).map_err(|e| MoverError::Source {
            path: PathBuf::from(self.snapshot.as_str()),
            error: self.failure.keep(e),
        })
    }

    fn describe(&self) -> (String, String) {
        (SOURCE_KIND.into(), self.snapshot.to_string())
    }

    /// Only the listed blocks: a snapshot's listing leaves out what was never written.
    fn written_blocks(&self, block_size: u64) -> Option<Vec<u64>> {
        Some(blocks_of(self.tokens.keys().copied(), block_size))
    }
}
