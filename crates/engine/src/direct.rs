//! Image backup and restore through the EBS direct APIs: the data path between EBS snapshots
//! and the repository that needs no worker instance.
//!
//! A completed snapshot is read block by block (`ListSnapshotBlocks` or, against a parent of
//! the same lineage, `ListChangedBlocks`, then `GetSnapshotBlock`, each block checked against
//! its SHA-256) as a [`BlockSource`] of the mover; a restore point is written into a new
//! snapshot (`StartSnapshot`, `PutSnapshotBlock`, `CompleteSnapshot`) as a [`BlockTarget`].
//! The mover's threads share one [`RateLimiter`] per snapshot, which keeps the block calls
//! under EBS's quota of 1000 requests per second per snapshot and slows down when EBS
//! throttles all the same (the account's quota is shared with other transfers).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bulwark_cloud::checksum::{block_checksum, block_digest, linear_checksum};
use bulwark_cloud::{
    BlockRef, Cloud, CloudError, Credentials, ErrorKind, StartSnapshot, Tag, EBS_BLOCK_SIZE,
};
use bulwark_model::{Region, SnapshotId, MAX_VOLUME_GIB};
use bulwark_mover::{BackupOutcome, BlockSource, BlockTarget, MoverError, Progress};
use bulwark_repo::{Id, RepoError, Repository};

/// The most `GetSnapshotBlock` or `PutSnapshotBlock` requests per second EBS accepts for one
/// snapshot (a fixed quota).
pub const SNAPSHOT_REQUESTS_PER_SECOND: f64 = 1000.0;

/// Attempts of one call before a throttled or unavailable EBS is reported.
pub const ATTEMPTS: u32 = 10;

/// What `describe()` of a [`SnapshotSource`] calls its kind, in the restore points it makes.
pub const SOURCE_KIND: &str = "snapshot";

/// Threads of a direct transfer: more than the mover's default, as most of a block call's
/// time is spent waiting on EBS, not on the CPU; memory stays one pack per thread.
const THREADS: usize = 8;
/// The rate the limiter never goes below, however often EBS throttles.
const MIN_RATE: f64 = 10.0;
/// Additive increase: the rate grows by this many requests per second for each second of
/// calls that succeed.
const RATE_GROWTH_PER_SECOND: f64 = 100.0;
/// The bucket holds this long's worth of requests: short bursts, never a second's worth.
const BURST: Duration = Duration::from_millis(50);
/// The first pause after a throttled or failed call; doubled at each attempt, with jitter.
const FIRST_PAUSE: Duration = Duration::from_millis(25);
/// The longest pause between two attempts.
const MAX_PAUSE: Duration = Duration::from_secs(5);
/// How long a new snapshot may take to be `completed` after `CompleteSnapshot`.
const COMPLETION_TIMEOUT: Duration = Duration::from_secs(3600);

/// A direct transfer that failed.
#[derive(Debug, thiserror::Error)]
pub enum DirectError {
    /// A call was refused.
    #[error("{0}\n  what to do: {remedy}", remedy = remedy(.0))]
    Cloud(CloudError),
    /// A call was still throttled, or EBS still unavailable, after every attempt.
    #[error(
        "{action} still failed after {attempts} attempts ({last})\n  what to do: the account's \
         EBS direct API quota is used by other transfers, or EBS is unavailable; retry later, \
         or run fewer transfers at once"
    )]
    Busy {
        /// The API.
        action: String,
        /// Attempts made.
        attempts: u32,
        /// The last error.
        last: CloudError,
    },
    /// A block does not match the checksum EBS sent with it: nothing was stored for it.
    #[error(
        "block {index} of snapshot {snapshot} does not match its checksum (EBS sent {expected}, \
         the data hashes to {actual}); no restore point was written\n  what to do: retry the \
         backup; if it fails again on the same block the snapshot is damaged: take a new one"
    )]
    Checksum {
        /// The snapshot.
        snapshot: SnapshotId,
        /// The block index.
        index: u64,
        /// The checksum EBS sent.
        expected: String,
        /// The checksum of the data received.
        actual: String,
    },
    /// A block of the wrong length, or at a place no EBS block starts.
    #[error("block {index} of snapshot {snapshot}: {reason}\n  what to do: {remedy}")]
    BadBlock {
        /// The snapshot.
        snapshot: SnapshotId,
        /// The block index.
        index: u64,
        /// What is wrong.
        reason: String,
        /// What to do.
        remedy: String,
    },
    /// An incremental backup against a parent snapshot whose restore point is not the
    /// volume's latest: the changes would apply to the wrong data.
    #[error(
        "the latest restore point of {volume} ({latest}) is not a backup of {parent}: the changes \
         since {parent} cannot apply to it\n  what to do: back up {snapshot} in full (no parent \
         snapshot), or give as parent the snapshot of the latest restore point"
    )]
    ParentMismatch {
        /// The volume.
        volume: String,
        /// The parent snapshot given.
        parent: SnapshotId,
        /// The snapshot to back up.
        snapshot: SnapshotId,
        /// The latest restore point and what it was read from, or `none`.
        latest: String,
    },
    /// A restore point that no snapshot can hold.
    #[error("restore point {point}: {reason}\n  what to do: restore it to a volume through a worker")]
    Unsupported {
        /// The restore point.
        point: String,
        /// Why.
        reason: String,
    },
    /// The new snapshot did not reach `completed`.
    #[error(
        "snapshot {snapshot} is {state} after CompleteSnapshot\n  what to do: check that its KMS \
         key is enabled and usable, delete the snapshot and restore again"
    )]
    Incomplete {
        /// The snapshot.
        snapshot: SnapshotId,
        /// Its last state.
        state: String,
    },
    /// The repository failed.
    #[error("{0}")]
    Repo(#[from] RepoError),
    /// The mover failed (reading or writing the repository).
    #[error("{0}")]
    Mover(#[from] MoverError),
}

/// What to do about a refused call.
fn remedy(e: &CloudError) -> &'static str {
    match e.kind {
        ErrorKind::AccessDenied => {
            "allow the action to this identity; on an encrypted snapshot the EBS direct APIs also \
             need kms:Decrypt, kms:GenerateDataKey* and kms:Encrypt on its key, in the key policy \
             too when the key is in another account"
        }
        ErrorKind::NotFound => {
            "check the snapshot id and its region; a snapshot of another account must be shared \
             with this one"
        }
        ErrorKind::Invalid => {
            "a parent snapshot must be of the same volume lineage, a snapshot must be completed \
             to be read, and a KMS key must be given as a key ARN, not an alias"
        }
        ErrorKind::NotPermitted | ErrorKind::Conflict => {
            "the snapshot is not in a state that allows this: wait until it is completed"
        }
        ErrorKind::Throttled | ErrorKind::Unavailable => "retry later",
    }
}

// ---- rate ----------------------------------------------------------------------------------

/// Paces the block calls of one snapshot, shared by the threads that transfer it: a token
/// bucket refilled at the allowed rate, capped at [`SNAPSHOT_REQUESTS_PER_SECOND`], and AIMD
/// on that rate: halved at each throttle, grown additively while calls succeed.
#[derive(Debug)]
pub struct RateLimiter {
    ceiling: f64,
    bucket: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    /// Requests per second allowed now.
    rate: f64,
    /// Requests that may start without waiting.
    tokens: f64,
    /// When `tokens` was last refilled.
    refilled: Instant,
}

impl Bucket {
    fn capacity(&self) -> f64 {
        (self.rate * BURST.as_secs_f64()).max(1.0)
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity());
        self.refilled = now;
    }
}

impl RateLimiter {
    /// A limiter allowing at most `ceiling` requests per second (starting there).
    pub fn new(ceiling: f64) -> Self {
        let ceiling = ceiling.max(MIN_RATE);
        let bucket = Bucket {
            rate: ceiling,
            tokens: 0.0,
            refilled: Instant::now(),
        };
        Self {
            ceiling,
            bucket: Mutex::new(bucket),
        }
    }

    /// A limiter for one snapshot's block calls.
    pub fn per_snapshot() -> Self {
        Self::new(SNAPSHOT_REQUESTS_PER_SECOND)
    }

    /// The requests per second allowed now.
    pub fn rate(&self) -> f64 {
        self.lock().rate
    }

    /// Waits until one more request may start.
    pub fn acquire(&self) {
        loop {
            let wait = {
                let mut bucket = self.lock();
                bucket.refill(Instant::now());
                if bucket.tokens >= 1.0 {
                    bucket.tokens -= 1.0;
                    return;
                }
                Duration::from_secs_f64((1.0 - bucket.tokens) / bucket.rate)
            };
            std::thread::sleep(wait);
        }
    }

    /// A request succeeded: grow the rate additively (per second of successes, not per
    /// success, so that it grows linearly whatever the rate).
    pub fn succeeded(&self) {
        let mut bucket = self.lock();
        bucket.rate = (bucket.rate + RATE_GROWTH_PER_SECOND / bucket.rate).min(self.ceiling);
    }

    /// A request was throttled: halve the rate, and spend what the bucket held so that the
    /// other threads slow down at once too.
    pub fn throttled(&self) {
        let mut bucket = self.lock();
        bucket.rate = (bucket.rate / 2.0).max(MIN_RATE);
        bucket.tokens = bucket.tokens.min(0.0);
    }

    fn lock(&self) -> MutexGuard<'_, Bucket> {
        // A thread that panicked holding the lock left a valid bucket.
        self.bucket.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Runs `call` until it succeeds, retrying what EBS may accept later (throttling, an
/// unavailable service) up to [`ATTEMPTS`] times with exponential backoff and jitter. With a
/// `limiter`, each attempt waits its turn and tells the limiter how it went.
fn with_retries<T>(
    action: &str,
    limiter: Option<&RateLimiter>,
    mut call: impl FnMut() -> Result<T, CloudError>,
) -> Result<T, DirectError> {
    let mut pause = FIRST_PAUSE;
    let mut attempt = 1;
    loop {
        if let Some(l) = limiter {
            l.acquire();
        }
        let error = match call() {
            Ok(value) => {
                if let Some(l) = limiter {
                    l.succeeded();
                }
                return Ok(value);
            }
            Err(e) if e.kind.retryable() => e,
            Err(e) => return Err(DirectError::Cloud(e)),
        };
        if error.kind == ErrorKind::Throttled {
            if let Some(l) = limiter {
                l.throttled();
            }
        }
        if attempt >= ATTEMPTS {
            return Err(DirectError::Busy {
                action: action.to_owned(),
                attempts: attempt,
                last: error,
            });
        }
        std::thread::sleep(jittered(pause));
        pause = (pause * 2).min(MAX_PAUSE);
        attempt += 1;
    }
}

/// Between half of `pause` and all of it, at random: threads throttled together must not
/// come back together.
fn jittered(pause: Duration) -> Duration {
    let mut bytes = [0u8; 4];
    let fraction = match ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes) {
        Ok(()) => f64::from(u32::from_le_bytes(bytes)) / f64::from(u32::MAX),
        Err(_) => 1.0,
    };
    pause.mul_f64(0.5 + fraction / 2.0)
}

// ---- checksums -----------------------------------------------------------------------------

// ---- the first failure ---------------------------------------------------------------------

/// The first error of a transfer's threads, kept whole: the mover's traits carry only a
/// [`MoverError`], so the source and the writer keep the [`DirectError`] it stands for.
#[derive(Debug, Default)]
struct FirstFailure(Mutex<Option<DirectError>>);

impl FirstFailure {
    /// Keeps `error` if it is the first, and answers the I/O error the mover reports.
    fn keep(&self, error: DirectError) -> std::io::Error {
        let io = std::io::Error::other(error.to_string());
        let mut first = self.0.lock().unwrap_or_else(|e| e.into_inner());
        first.get_or_insert(error);
        io
    }

    /// The kept error, or the mover's own.
    fn or(&self, error: MoverError) -> DirectError {
        let mut first = self.0.lock().unwrap_or_else(|e| e.into_inner());
        first.take().unwrap_or(DirectError::Mover(error))
    }
}

// ---- reading a snapshot --------------------------------------------------------------------

/// A completed snapshot as a [`BlockSource`]: its listed blocks are fetched with
/// `GetSnapshotBlock` and checked against their checksums; every other block reads as zeros.
pub struct SnapshotSource<'a> {
    cloud: &'a dyn Cloud,
    who: &'a Credentials,
    region: &'a Region,
    snapshot: SnapshotId,
    size: u64,
    /// The listed blocks: EBS block index -> block token.
    tokens: BTreeMap<u64, String>,
    /// Whether the listing is of the changes since a parent snapshot.
    incremental: bool,
    limiter: RateLimiter,
    failure: FirstFailure,
}

impl<'a> SnapshotSource<'a> {
    /// Lists the blocks of `snapshot` (every page): all its written blocks, or with `parent`
    /// (a snapshot of the same lineage) those that changed since it.
    pub fn open(
        cloud: &'a dyn Cloud,
        who: &'a Credentials,
        region: &'a Region,
        snapshot: &SnapshotId,
        parent: Option<&SnapshotId>,
    ) -> Result<Self, DirectError> {
        let action = match parent {
            None => "ebs:ListSnapshotBlocks",
            Some(_) => "ebs:ListChangedBlocks",
        };
        let mut tokens = BTreeMap::new();
        let mut next: Option<String> = None;
        let size_gib = loop {
            let page = with_retries(action, None, || match parent {
                None => cloud.list_snapshot_blocks(who, region, snapshot, next.as_deref()),
                Some(p) => cloud.list_changed_blocks(who, region, p, snapshot, next.as_deref()),
            })?;
            tokens.extend(page.blocks.into_iter().map(|b| (b.index, b.token)));
            next = page.next_token;
            if next.is_none() {
                break page.volume_size_gib;
            }
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
        })
    }

    /// The snapshot.
    pub fn snapshot(&self) -> &SnapshotId {
        &self.snapshot
    }

    /// The listed EBS block indexes, in order.
    pub fn listed(&self) -> impl Iterator<Item = u64> + '_ {
        self.tokens.keys().copied()
    }

    /// For a listing against a parent, the indexes of the `block_size` blocks that changed,
    /// in order: the list to give the mover's `backup`. `None` for a full listing.
    pub fn changed_blocks(&self, block_size: u64) -> Option<Vec<u64>> {
        self.incremental.then(|| self.blocks_of(block_size))
    }

    /// The indexes of the `block_size` blocks that overlap a listed EBS block.
    fn blocks_of(&self, block_size: u64) -> Vec<u64> {
        let mut out: Vec<u64> = Vec::with_capacity(self.tokens.len());
        for &index in self.tokens.keys() {
            let start = index * EBS_BLOCK_SIZE;
            let first = start / block_size;
            let last = (start + EBS_BLOCK_SIZE - 1) / block_size;
            for b in first..=last {
                if out.last() != Some(&b) {
                    out.push(b);
                }
            }
        }
        out
    }

    /// One listed EBS block, fetched at the snapshot's pace and checked.
    fn fetch(&self, index: u64, token: &str) -> Result<Vec<u8>, DirectError> {
        let block = BlockRef {
            index,
            token: token.to_owned(),
        };
        let (data, checksum) = with_retries("ebs:GetSnapshotBlock", Some(&self.limiter), || {
            self.cloud
                .get_snapshot_block(self.who, self.region, &self.snapshot, &block)
        })?;
        if data.len() as u64 != EBS_BLOCK_SIZE {
            return Err(DirectError::BadBlock {
                snapshot: self.snapshot.clone(),
                index,
                reason: format!("EBS answered {} bytes, not {EBS_BLOCK_SIZE}", data.len()),
                remedy: "retry the backup".into(),
            });
        }
        let actual = block_checksum(&data);
        if actual != checksum {
            return Err(DirectError::Checksum {
                snapshot: self.snapshot.clone(),
                index,
                expected: checksum,
                actual,
            });
        }
        Ok(data)
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
                Some(token) => out.copy_from_slice(&self.fetch(index, token)?[within..within + n]),
                None => out.fill(0),
            }
            done += n;
        }
        Ok(())
    }
}

impl BlockSource for SnapshotSource<'_> {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), MoverError> {
        self.read(offset, buf).map_err(|e| MoverError::Source {
            path: PathBuf::from(self.snapshot.as_str()),
            source: self.failure.keep(e),
        })
    }

    fn describe(&self) -> (String, String) {
        (SOURCE_KIND.into(), self.snapshot.to_string())
    }

    /// Only the listed blocks: a snapshot's listing leaves out what was never written.
    fn written_blocks(&self, block_size: u64) -> Option<Vec<u64>> {
        Some(self.blocks_of(block_size))
    }
}

// ---- writing a snapshot --------------------------------------------------------------------

/// A new snapshot as a [`BlockTarget`]: each block written is put with `PutSnapshotBlock`
/// and its checksum; [`BlockTarget::finish`] completes the snapshot. Blocks are 512 KiB,
/// written at multiples of 512 KiB, from any thread in any order.
pub struct SnapshotWriter<'a> {
    cloud: &'a dyn Cloud,
    who: &'a Credentials,
    region: &'a Region,
    snapshot: SnapshotId,
    /// The raw SHA-256 of every block put, by index: CompleteSnapshot needs them in order.
    checksums: Mutex<BTreeMap<u64, Vec<u8>>>,
    limiter: RateLimiter,
    failure: FirstFailure,
}

impl<'a> SnapshotWriter<'a> {
    /// Starts a snapshot of a `size_gib` volume: encrypted with `key_arn` (a key ARN, not an
    /// alias) if given, else as the region's EBS defaults say.
    pub fn start(
        cloud: &'a dyn Cloud,
        who: &'a Credentials,
        region: &'a Region,
        size_gib: u32,
        key_arn: Option<&str>,
        tags: &[Tag],
    ) -> Result<Self, DirectError> {
        let start = StartSnapshot {
            volume_size_gib: size_gib,
            parent: None,
            // A key is only taken with Encrypted; without one, EBS's defaults decide.
            encrypted: key_arn.is_some(),
            kms_key_arn: key_arn.map(str::to_owned),
            tags: tags.to_vec(),
        };
        let snapshot = with_retries("ebs:StartSnapshot", None, || {
            cloud.start_snapshot(who, region, &start)
        })?;
        Ok(Self {
            cloud,
            who,
            region,
            snapshot,
            checksums: Mutex::new(BTreeMap::new()),
            limiter: RateLimiter::per_snapshot(),
            failure: FirstFailure::default(),
        })
    }

    /// The snapshot being written.
    pub fn snapshot(&self) -> &SnapshotId {
        &self.snapshot
    }

    fn put(&self, offset: u64, data: &[u8]) -> Result<(), DirectError> {
        let index = offset / EBS_BLOCK_SIZE;
        if offset % EBS_BLOCK_SIZE != 0 || data.len() as u64 > EBS_BLOCK_SIZE {
            return Err(DirectError::BadBlock {
                snapshot: self.snapshot.clone(),
                index,
                reason: format!(
                    "{} bytes at offset {offset} are not one block of {EBS_BLOCK_SIZE} bytes",
                    data.len()
                ),
                remedy: "restore through a worker: the restore point's block size is not EBS's".into(),
            });
        }
        // The last block of a volume that is not a whole number of blocks: EBS takes only
        // whole blocks, and the rest of a snapshot reads as zeros anyway.
        let padded;
        let block = if data.len() as u64 == EBS_BLOCK_SIZE {
            data
        } else {
            let mut whole = data.to_vec();
            whole.resize(EBS_BLOCK_SIZE as usize, 0);
            padded = whole;
            &padded
        };
        let raw = block_digest(block);
        let checksum = BASE64.encode(&raw);
        with_retries("ebs:PutSnapshotBlock", Some(&self.limiter), || {
            self.cloud
                .put_snapshot_block(self.who, self.region, &self.snapshot, index, block, &checksum)
        })?;
        self.lock_checksums().insert(index, raw);
        Ok(())
    }

    /// Completes the snapshot with the count and the linear checksum of the blocks put.
    fn complete(&self) -> Result<(), DirectError> {
        let (count, checksum) = {
            let checksums = self.lock_checksums();
            (
                checksums.len() as u64,
                linear_checksum(checksums.values().map(Vec::as_slice)),
            )
        };
        with_retries("ebs:CompleteSnapshot", None, || {
            self.cloud
                .complete_snapshot(self.who, self.region, &self.snapshot, count, &checksum)
        })
    }

    /// Waits until EBS has made the completed snapshot available (`completed`).
    pub fn wait_completed(&self) -> Result<(), DirectError> {
        let deadline = Instant::now() + COMPLETION_TIMEOUT;
        let mut pause = Duration::from_millis(100);
        loop {
            let info = with_retries("ec2:DescribeSnapshots", None, || {
                self.cloud
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

    /// Deletes the unfinished snapshot, as well as it can: it holds part of a volume, and a
    /// pending one counts against the account's 100 pending snapshots until it times out.
    fn abandon(&self) {
        let _ = self.cloud.delete_snapshot(self.who, self.region, &self.snapshot);
    }

    fn lock_checksums(&self) -> MutexGuard<'_, BTreeMap<u64, Vec<u8>>> {
        // A thread that panicked holding the lock left a valid map.
        self.checksums.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn target_error(&self, error: DirectError) -> MoverError {
        MoverError::Target {
            path: PathBuf::from(self.snapshot.as_str()),
            source: self.failure.keep(error),
        }
    }
}

impl BlockTarget for SnapshotWriter<'_> {
    fn write_at(&self, offset: u64, data: &[u8]) -> Result<(), MoverError> {
        self.put(offset, data).map_err(|e| self.target_error(e))
    }

    /// A new snapshot without a parent reads zeros where nothing was put.
    fn reads_zeros(&self) -> bool {
        true
    }

    fn finish(&self) -> Result<(), MoverError> {
        self.complete().map_err(|e| self.target_error(e))
    }
}

// ---- backup and restore --------------------------------------------------------------------

/// Backs up the completed `snapshot` as a restore point of `volume_id`. With `parent` (an
/// earlier snapshot of the same volume, whose backup is the volume's latest restore point),
/// reads only the blocks that changed since it and builds on that restore point.
#[allow(clippy::too_many_arguments)]
pub fn backup_snapshot(
    cloud: &dyn Cloud,
    who: &Credentials,
    region: &Region,
    snapshot: &SnapshotId,
    parent: Option<&SnapshotId>,
    repo: &Repository,
    volume_id: &str,
    progress: &Progress,
) -> Result<BackupOutcome, DirectError> {
    if let Some(parent) = parent {
        // The changes since `parent` apply only to the restore point read from it.
        let latest = repo.latest_point(volume_id)?;
        let from_parent = latest
            .as_ref()
            .is_some_and(|(_, m)| m.source.kind == SOURCE_KIND && m.source.name == parent.as_str());
        if !from_parent {
            return Err(DirectError::ParentMismatch {
                volume: volume_id.to_owned(),
                parent: parent.clone(),
                snapshot: snapshot.clone(),
                latest: latest.map_or_else(
                    || "none".to_owned(),
                    |(id, m)| format!("{}, read from {} {}", id.to_hex(), m.source.kind, m.source.name),
                ),
            });
        }
    }
    let source = SnapshotSource::open(cloud, who, region, snapshot, parent)?;
    let changed = source.changed_blocks(u64::from(repo.config().block_size));
    bulwark_mover::backup(repo, &source, volume_id, changed.as_deref(), progress, THREADS)
        .map_err(|e| source.failure.or(e))
}

/// Restores restore point `point` into a new snapshot, encrypted with `key_arn` (a key ARN)
/// if given, else as the region's EBS defaults say; answers the snapshot once `completed`.
/// The volume size is the restore point's, rounded up to whole GiB. A restore that fails
/// deletes the snapshot it started.
pub fn restore_to_snapshot(
    cloud: &dyn Cloud,
    who: &Credentials,
    region: &Region,
    repo: &Repository,
    point: &Id,
    key_arn: Option<&str>,
    progress: &Progress,
) -> Result<SnapshotId, DirectError> {
    let manifest = repo.read_point(point)?;
    let unsupported = |reason: String| DirectError::Unsupported {
        point: point.to_hex(),
        reason,
    };
    if u64::from(manifest.block_size) != EBS_BLOCK_SIZE {
        return Err(unsupported(format!(
            "its blocks have {} bytes, EBS's {EBS_BLOCK_SIZE}",
            manifest.block_size
        )));
    }
    let size_gib = manifest.size.div_ceil(1 << 30).max(1);
    let size_gib = u32::try_from(size_gib)
        .ok()
        .filter(|g| *g <= MAX_VOLUME_GIB)
        .ok_or_else(|| unsupported(format!("{size_gib} GiB is more than an EBS volume holds")))?;
    let tags = [Tag::new("bulwark:restore-point", point.to_hex())];
    let writer = SnapshotWriter::start(cloud, who, region, size_gib, key_arn, &tags)?;
    let written = bulwark_mover::restore(repo, point, &writer, progress, THREADS)
        .map_err(|e| writer.failure.or(e))
        .and_then(|_| writer.wait_completed());
    match written {
        Ok(()) => Ok(writer.snapshot.clone()),
        Err(e) => {
            writer.abandon();
            Err(e)
        }
    }
}
