//! A completed snapshot as a block device for `bulwark-fs`, for file-level recovery: the
//! blocks a filesystem reader asks for are fetched with `GetSnapshotBlock` (checked against
//! their checksums) in the snapshot's account, and nothing else. No volume is created and
//! nothing is shared.

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use bulwark_cloud::{Cloud, Credentials, EBS_BLOCK_SIZE};
use bulwark_model::{Region, SnapshotId};

use super::rate::RateLimiter;
use super::source::{fetch_block, list_blocks};
use super::DirectError;

/// A snapshot, readable at any offset from many threads.
pub struct SnapshotDevice {
    cloud: Cloud,
    who: Credentials,
    region: Region,
    snapshot: SnapshotId,
    size: u64,
    /// The written blocks: EBS block index -> block token.
    tokens: BTreeMap<u64, String>,
    limiter: RateLimiter,
    bytes_fetched: AtomicU64,
}

impl SnapshotDevice {
    /// Lists the written blocks of `snapshot` (`ListSnapshotBlocks`, every page) as `who`.
    pub fn open(
        cloud: Cloud,
        who: Credentials,
        region: Region,
        snapshot: SnapshotId,
    ) -> Result<Self, DirectError> {
        let (tokens, size_gib) = list_blocks(&cloud, &who, &region, &snapshot, None)?;
        Ok(SnapshotDevice {
            cloud,
            who,
            region,
            snapshot,
            size: u64::from(size_gib) << 30,
            tokens,
            limiter: RateLimiter::per_snapshot(),
            bytes_fetched: AtomicU64::new(0),
        })
    }

    /// Bytes fetched with `GetSnapshotBlock` so far.
    pub fn bytes_fetched(&self) -> u64 {
        self.bytes_fetched.load(Ordering::Relaxed)
    }
}

impl bulwark_fs::Device for SnapshotDevice {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let end = offset
            .checked_add(buf.len() as u64)
            .filter(|end| *end <= self.size)
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "a read past the snapshot's end"))?;
        // The pieces of `buf`, one per EBS block it spans.
        let mut pieces: Vec<(u64, usize, &mut [u8])> = Vec::new();
        let (mut at, mut rest) = (offset, buf);
        while at < end {
            let within = usize::try_from(at % EBS_BLOCK_SIZE).unwrap_or(0);
            let n = usize::try_from(EBS_BLOCK_SIZE - at % EBS_BLOCK_SIZE)
                .unwrap_or(usize::MAX)
                .min(rest.len());
            let (piece, tail) = rest.split_at_mut(n);
            pieces.push((at / EBS_BLOCK_SIZE, within, piece));
            rest = tail;
            at += n as u64;
        }
        // A block call mostly waits on EBS: the blocks of one read (the cache's read-ahead
        // asks for several) are fetched side by side, at most IN_FLIGHT at once.
        let per_thread = pieces.len().div_ceil(super::IN_FLIGHT).max(1);
        std::thread::scope(|scope| {
            let workers: Vec<_> = pieces
                .chunks_mut(per_thread)
                .map(|group| {
                    scope.spawn(move || {
                        group
                            .iter_mut()
                            .try_for_each(|(i, w, out)| self.fill(*i, *w, out))
                    })
                })
                .collect();
            workers.into_iter().try_for_each(|w| {
                w.join()
                    .unwrap_or_else(|_| Err(io::Error::other("a block fetch panicked")))
            })
        })
    }
}

impl SnapshotDevice {
    /// Fills `out` from EBS block `index`, from byte `within` of it.
    fn fill(&self, index: u64, within: usize, out: &mut [u8]) -> io::Result<()> {
        match self.tokens.get(&index).filter(|t| !t.is_empty()) {
            Some(token) => {
                let data = fetch_block(
                    &self.cloud,
                    &self.who,
                    &self.region,
                    &self.snapshot,
                    &self.limiter,
                    index,
                    token,
                )
                .map_err(io::Error::other)?;
                self.bytes_fetched.fetch_add(EBS_BLOCK_SIZE, Ordering::Relaxed);
                out.copy_from_slice(&data[within..within + out.len()]);
            }
            // Never written: zeros.
            None => out.fill(0),
        }
        Ok(())
    }
}
