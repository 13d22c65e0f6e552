//! Writing a new snapshot as the mover's [`BlockTarget`], with puts in the background.
//!
//! The mover's threads hand each block over and go on; [`IN_FLIGHT`](super::IN_FLIGHT)
//! putters send the queued blocks with `PutSnapshotBlock`. The queue holds at most
//! [`AHEAD`](super::AHEAD) blocks, so a slow EBS slows the mover instead of filling memory.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bulwark_cloud::checksum::{block_digest, linear_checksum};
use bulwark_cloud::{Cloud, Credentials, EBS_BLOCK_SIZE};
use bulwark_model::{Action, Region, SnapshotId};
use bulwark_mover::{BlockTarget, MoverError};

use super::rate::RateLimiter;
use super::{DirectError, FirstFailure, AHEAD};
use crate::retry::Retry;
use crate::wait;

/// How long a new snapshot may take to be `completed` after `CompleteSnapshot`.
const COMPLETION_TIMEOUT: Duration = Duration::from_secs(3600);

/// A new snapshot as a [`BlockTarget`]: each block written is put with `PutSnapshotBlock`
/// and its checksum; [`BlockTarget::finish`] waits for every put, then completes the
/// snapshot. Blocks are 512 KiB, written at multiples of 512 KiB, from any thread in any
/// order.
pub(super) struct SnapshotWriter<'a> {
    cloud: &'a Cloud,
    who: &'a Credentials,
    region: &'a Region,
    snapshot: SnapshotId,
    limiter: RateLimiter,
    pub(super) failure: FirstFailure,
    puts: Mutex<Puts>,
    /// Signalled to one putter when a block is queued.
    queued: Condvar,
    /// Signalled to the mover's threads when a put is done (room in the queue) or failed.
    done: Condvar,
}

#[derive(Default)]
struct Puts {
    /// Blocks handed over and not yet taken by a putter: (index, data, raw SHA-256).
    queued: VecDeque<(u64, Vec<u8>, Vec<u8>)>,
    /// Blocks a putter is sending.
    putting: usize,
    /// The raw SHA-256 of every block put, by index: CompleteSnapshot needs them in order.
    checksums: BTreeMap<u64, Vec<u8>>,
    /// A put failed: nothing more is put.
    failed: bool,
    /// The transfer is over: putters return.
    stopped: bool,
}

impl<'a> SnapshotWriter<'a> {
    /// A writer of `snapshot`, started and not yet completed.
    pub(super) fn new(
        cloud: &'a Cloud,
        who: &'a Credentials,
        region: &'a Region,
        snapshot: &SnapshotId,
    ) -> Self {
        Self {
            cloud,
            who,
            region,
            snapshot: snapshot.clone(),
            limiter: RateLimiter::per_snapshot(),
            failure: FirstFailure::default(),
            puts: Mutex::new(Puts::default()),
            queued: Condvar::new(),
            done: Condvar::new(),
        }
    }

    /// Checks and queues one block, waiting for room in the queue.
    fn queue(&self, offset: u64, data: &[u8]) -> Result<(), MoverError> {
        let index = offset / EBS_BLOCK_SIZE;
        if !offset.is_multiple_of(EBS_BLOCK_SIZE) || data.len() as u64 > EBS_BLOCK_SIZE {
            return Err(self.target_error(DirectError::BadBlock {
                snapshot: self.snapshot.clone(),
                index,
                reason: format!(
                    "{} bytes at offset {offset} are not one block of {EBS_BLOCK_SIZE} bytes",
                    data.len()
                ),
                remedy: "restore through a worker: the restore point's block size is not EBS's".into(),
            }));
        }
        // The last block of a volume that is not a whole number of blocks: EBS takes only
        // whole blocks, and the rest of a snapshot reads as zeros anyway.
        let mut block = data.to_vec();
        block.resize(EBS_BLOCK_SIZE as usize, 0);
        let digest = block_digest(&block);
        let mut puts = self.lock();
        while !puts.failed && puts.queued.len() + puts.putting >= AHEAD {
            puts = wait(&self.done, puts);
        }
        if puts.failed {
            return Err(self.failed());
        }
        puts.queued.push_back((index, block, digest));
        drop(puts);
        self.queued.notify_one();
        Ok(())
    }

    /// Puts queued blocks until the transfer stops or a put fails: the work of one putter.
    pub(super) fn put_queued(&self) {
        let mut puts = self.lock();
        loop {
            if puts.stopped || puts.failed {
                return;
            }
            let Some((index, block, digest)) = puts.queued.pop_front() else {
                puts = wait(&self.queued, puts);
                continue;
            };
            puts.putting += 1;
            drop(puts);
            let put = self.put(index, &block, &digest);
            puts = self.lock();
            puts.putting -= 1;
            match put {
                Ok(()) => {
                    puts.checksums.insert(index, digest);
                }
                Err(e) => {
                    puts.failed = true;
                    self.failure.keep(e);
                    // The other putters stop too.
                    self.queued.notify_all();
                }
            }
            self.done.notify_all();
        }
    }

    /// Ends the putters: they return once their call is done.
    pub(super) fn stop(&self) {
        self.lock().stopped = true;
        self.queued.notify_all();
        self.done.notify_all();
    }

    fn put(&self, index: u64, block: &[u8], digest: &[u8]) -> Result<(), DirectError> {
        let checksum = BASE64.encode(digest);
        Retry::BLOCKS
            .run(Action::EbsPutSnapshotBlock, Some(&self.limiter), || {
                self.cloud.ebs.put_snapshot_block(
                    self.who,
                    self.region,
                    &self.snapshot,
                    index,
                    block,
                    &checksum,
                )
            })
            .map_err(DirectError::from)
    }

    /// Waits for every queued block to be put, then completes the snapshot with the count
    /// and the linear checksum of the blocks put.
    fn complete(&self) -> Result<(), MoverError> {
        let mut puts = self.lock();
        while !puts.failed && (puts.putting > 0 || !puts.queued.is_empty()) {
            puts = wait(&self.done, puts);
        }
        if puts.failed {
            return Err(self.failed());
        }
        let count = puts.checksums.len() as u64;
        let checksum = linear_checksum(puts.checksums.values().map(Vec::as_slice));
        drop(puts);
        Retry::BLOCKS
            .run(Action::EbsCompleteSnapshot, None, || {
                self.cloud
                    .ebs
                    .complete_snapshot(self.who, self.region, &self.snapshot, count, &checksum)
            })
            .map_err(|e| self.target_error(e.into()))
    }

    /// Waits until EBS has made the completed snapshot available (`completed`).
    pub(super) fn wait_completed(&self) -> Result<(), DirectError> {
        let deadline = Instant::now() + COMPLETION_TIMEOUT;
        let mut pause = Duration::from_millis(100);
        loop {
            let info = Retry::BLOCKS.run(Action::Ec2DescribeSnapshots, None, || {
                self.cloud
                    .ec2
                    .describe_snapshots(self.who, self.region, std::slice::from_ref(&self.snapshot))
            })?;
            let state = info
                .first()
                .map_or_else(|| "missing".to_owned(), |s| s.state.clone());
            match state.as_str() {
                "completed" => return Ok(()),
                "pending" if Instant::now() < deadline => {}
                _ => {
                    return Err(DirectError::Incomplete {
                        snapshot: self.snapshot.clone(),
                        state,
                    })
                }
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_secs(15));
        }
    }

    fn lock(&self) -> MutexGuard<'_, Puts> {
        crate::lock(&self.puts)
    }

    fn target_error(&self, error: DirectError) -> MoverError {
        MoverError::Target {
            path: PathBuf::from(self.snapshot.as_str()),
            error: self.failure.keep(error),
        }
    }

    /// The mover's error after a put failed: the put's own error is the first kept.
    fn failed(&self) -> MoverError {
        MoverError::Target {
            path: PathBuf::from(self.snapshot.as_str()),
            error: std::io::Error::other("a block could not be put"),
        }
    }
}

impl BlockTarget for SnapshotWriter<'_> {
    fn write_at(&self, offset: u64, data: &[u8]) -> Result<(), MoverError> {
        self.queue(offset, data)
    }

    /// A new snapshot without a parent reads zeros where nothing was put.
    fn reads_zeros(&self) -> bool {
        true
    }

    fn finish(&self) -> Result<(), MoverError> {
        self.complete()
    }
}
