//! Image backup and restore through the EBS direct APIs: the data path between EBS snapshots
//! and the repository that needs no worker instance.
//!
//! A completed snapshot is read block by block (`ListSnapshotBlocks` or, against a parent of
//! the same lineage, `ListChangedBlocks`, then `GetSnapshotBlock`, each block checked against
//! its SHA-256) as a [`BlockSource`](bulwark_mover::BlockSource) of the mover; a restore
//! point is written into a new snapshot (`StartSnapshot`, `PutSnapshotBlock`,
//! `CompleteSnapshot`) as a [`BlockTarget`](bulwark_mover::BlockTarget).
//!
//! A block call mostly waits on EBS, so the calls are not made by the mover's threads (as
//! many as there are cores, to compress and encrypt) but by [`IN_FLIGHT`] helper threads
//! that fetch ahead of the mover, or put behind it, through a window of at most [`AHEAD`]
//! blocks. They share one [`RateLimiter`] per snapshot, which keeps the block calls under
//! EBS's quota of 1000 requests per second per snapshot and slows down when EBS throttles
//! all the same (the account's quota is shared with other transfers).

mod device;
mod rate;
mod source;
mod writer;

use std::sync::Mutex;

use bulwark_cloud::{Cloud, CloudError, Credentials, ErrorKind, StartSnapshot, Tag, EBS_BLOCK_SIZE};
use bulwark_model::{Action, Region, SnapshotId, MAX_VOLUME_GIB};
use bulwark_mover::{BackupOutcome, Base, MoverError, Progress, Volume};
use bulwark_repo::{Id, RepoError, Repository};

pub use device::SnapshotDevice;
pub use rate::{RateLimiter, ATTEMPTS, SNAPSHOT_REQUESTS_PER_SECOND};
use source::SnapshotSource;
use writer::SnapshotWriter;

/// What `describe()` of a snapshot source calls its kind, in the restore points it makes.
pub const SOURCE_KIND: &str = "snapshot";

/// Block calls in flight for one snapshot. At 1000 requests per second, each call may take
/// up to 64 ms before these are too few to reach the quota (EBS answers in tens of ms).
pub const IN_FLIGHT: usize = 64;

/// Blocks fetched ahead of the mover or queued behind it, at most: the memory of a transfer
/// beyond the mover's own (128 x 512 KiB = 64 MiB). More than [`IN_FLIGHT`], so that calls
/// keep going while the mover catches up.
pub const AHEAD: usize = 2 * IN_FLIGHT;

/// The mover's threads: they hash, compress and encrypt (or decrypt and check), so as many
/// as the machine has cores.
fn mover_threads() -> usize {
    bulwark_mover::default_threads()
}

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
        action: Action,
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
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// The mover failed (reading or writing the repository).
    #[error(transparent)]
    Mover(#[from] MoverError),
}

impl DirectError {
    /// What to do: the message's own "what to do", one place for each remedy.
    pub fn remedy(&self) -> String {
        match self {
            DirectError::Repo(_) | DirectError::Mover(_) => {
                "check the repository (`bulwark repo verify`) and its bucket, then run the session again"
                    .into()
            }
            other => other.to_string().split_once("what to do: ").map_or_else(
                || "see the message; run the session again".into(),
                |(_, r)| r.to_owned(),
            ),
        }
    }
}

impl From<crate::retry::Gave> for DirectError {
    fn from(gave: crate::retry::Gave) -> Self {
        match gave {
            crate::retry::Gave::Refused(e) => DirectError::Cloud(e),
            crate::retry::Gave::Up {
                action,
                attempts,
                last,
            } => DirectError::Busy {
                action,
                attempts,
                last,
            },
        }
    }
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
        ErrorKind::Throttled | ErrorKind::Unavailable | ErrorKind::Propagating => "retry later",
    }
}

// ---- the first failure ---------------------------------------------------------------------

/// The first error of a transfer's threads, kept whole: the mover's traits carry only a
/// [`MoverError`], so the source and the writer keep the [`DirectError`] it stands for.
#[derive(Debug, Default)]
struct FirstFailure(Mutex<Option<DirectError>>);

impl FirstFailure {
    /// Keeps `error` if it is the first, and answers the I/O error the mover reports.
    fn keep(&self, error: DirectError) -> std::io::Error {
        let io = std::io::Error::other(error.to_string());
        let mut first = crate::lock(&self.0);
        first.get_or_insert(error);
        io
    }

    /// The kept error, if any.
    fn take(&self) -> Option<DirectError> {
        crate::lock(&self.0).take()
    }
}

/// Runs `main` while `helpers` threads run `helper`; `stop` makes the helpers return, and is
/// called once `main` is done, even if it panicked (the helpers would wait forever).
fn with_helpers<R>(helpers: usize, helper: impl Fn() + Sync, stop: impl Fn(), main: impl FnOnce() -> R) -> R {
    struct StopOnDrop<F: Fn()>(F);
    impl<F: Fn()> Drop for StopOnDrop<F> {
        fn drop(&mut self) {
            (self.0)();
        }
    }
    std::thread::scope(|scope| {
        for _ in 0..helpers {
            scope.spawn(&helper);
        }
        let _stop = StopOnDrop(stop);
        main()
    })
}

// ---- backup and restore --------------------------------------------------------------------

/// One volume of [`backup_snapshots`].
#[derive(Clone, Copy, Debug)]
pub struct SnapshotVolume<'a> {
    /// A completed snapshot of the volume.
    pub snapshot: &'a SnapshotId,
    /// An earlier snapshot of the same volume, whose backup is the volume's latest restore
    /// point: only the blocks changed since it are read. `None` reads every written block.
    pub parent: Option<&'a SnapshotId>,
    /// The volume the restore point is of.
    pub volume_id: &'a str,
    /// The instance's record, kept with the restore point (`InstanceRecord`'s JSON).
    pub instance: Option<&'a str>,
    /// Whether the restore point gets a file index.
    pub index_files: bool,
}

/// Backs up the completed snapshots of several volumes as one (all restore points or none,
/// like a worker's backup), each as a restore point of its volume.
pub fn backup_snapshots(
    cloud: &Cloud,
    who: &Credentials,
    region: &Region,
    volumes: &[SnapshotVolume<'_>],
    repo: &Repository,
    progress: &Progress,
) -> Result<Vec<BackupOutcome>, DirectError> {
    // The parent checked is the parent used, whatever another backup of a volume commits
    // meanwhile.
    let parents = volumes
        .iter()
        .map(|v| {
            v.parent
                .map(|parent| check_parent(repo, v.volume_id, parent, v.snapshot))
                .transpose()
        })
        .collect::<Result<Vec<_>, _>>()?;
    let sources = volumes
        .iter()
        .map(|v| SnapshotSource::open(cloud, who, region, v.snapshot, v.parent))
        .collect::<Result<Vec<_>, _>>()?;
    let block_size = u64::from(repo.config().block_size);
    let changed: Vec<Option<Vec<u64>>> = sources.iter().map(|s| s.changed_blocks(block_size)).collect();
    let mover_volumes: Vec<Volume> = sources
        .iter()
        .zip(volumes)
        .zip(changed.iter().zip(&parents))
        .map(|((source, v), (changed, parent))| Volume {
            source,
            volume_id: v.volume_id,
            base: match (parent, changed) {
                (Some(parent), Some(blocks)) => Base::Changed {
                    parent: *parent,
                    blocks,
                },
                _ => Base::Full,
            },
            instance: v.instance,
            index_files: v.index_files,
        })
        .collect();
    with_helpers(
        IN_FLIGHT,
        // A fetcher done with one snapshot goes on to the next once the mover has taken what
        // it read ahead.
        || {
            for source in &sources {
                source.fetch_ahead();
                source.wait_drained();
            }
        },
        || sources.iter().for_each(SnapshotSource::stop),
        || bulwark_mover::backup_volumes(repo, &mover_volumes, progress, mover_threads()),
    )
    .map_err(|e| {
        sources
            .iter()
            .find_map(|s| s.failure.take())
            .unwrap_or(DirectError::Mover(e))
    })
}

/// Backs up the completed `snapshot` as a restore point of `volume_id`. With `parent` (an
/// earlier snapshot of the same volume, whose backup is the volume's latest restore point),
/// reads only the blocks that changed since it and builds on that restore point.
#[allow(clippy::too_many_arguments)]
pub fn backup_snapshot(
    cloud: &Cloud,
    who: &Credentials,
    region: &Region,
    snapshot: &SnapshotId,
    parent: Option<&SnapshotId>,
    repo: &Repository,
    volume_id: &str,
    progress: &Progress,
) -> Result<BackupOutcome, DirectError> {
    let volume = SnapshotVolume {
        snapshot,
        parent,
        volume_id,
        instance: None,
        index_files: false,
    };
    let mut outcomes = backup_snapshots(cloud, who, region, &[volume], repo, progress)?;
    outcomes
        .pop()
        .ok_or_else(|| DirectError::Mover(MoverError::ChangedBlocks("no restore point was written".into())))
}

/// The indexes of the `block_size` blocks of `snapshot` changed since `base`, a snapshot of the
/// same lineage (ListChangedBlocks, every page), in order: what a worker reads of a volume made
/// from `snapshot` when its latest restore point was read from `base`.
pub fn changed_blocks(
    cloud: &Cloud,
    who: &Credentials,
    region: &Region,
    snapshot: &SnapshotId,
    base: &SnapshotId,
    block_size: u64,
) -> Result<Vec<u64>, DirectError> {
    let (listed, _) = source::list_blocks(cloud, who, region, snapshot, Some(base))?;
    Ok(source::blocks_of(listed.into_keys(), block_size))
}

/// The changes since `parent` apply only to the restore point read from it: the volume's
/// latest, whose id this answers.
fn check_parent(
    repo: &Repository,
    volume_id: &str,
    parent: &SnapshotId,
    snapshot: &SnapshotId,
) -> Result<Id, DirectError> {
    let latest = repo.latest_point(volume_id)?;
    if let Some((id, m)) = &latest {
        if m.source.kind == SOURCE_KIND && m.source.name == parent.as_str() {
            return Ok(*id);
        }
    }
    Err(DirectError::ParentMismatch {
        volume: volume_id.to_owned(),
        parent: parent.clone(),
        snapshot: snapshot.clone(),
        latest: latest.map_or_else(
            || "none".to_owned(),
            |(id, m)| format!("{}, read from {} {}", id.to_hex(), m.source.kind, m.source.name),
        ),
    })
}

/// The size in GiB of the snapshot restore point `point` needs: its volume's size, rounded up
/// to whole GiB. Refuses a restore point no EBS snapshot can hold.
pub fn snapshot_size_gib(repo: &Repository, point: &Id) -> Result<u32, DirectError> {
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
    u32::try_from(size_gib)
        .ok()
        .filter(|g| *g <= MAX_VOLUME_GIB)
        .ok_or_else(|| unsupported(format!("{size_gib} GiB is more than an EBS volume holds")))
}

/// Starts a new snapshot (see [`new_snapshot`]).
pub fn start_snapshot(
    cloud: &Cloud,
    who: &Credentials,
    region: &Region,
    start: &StartSnapshot,
) -> Result<SnapshotId, DirectError> {
    Ok(
        crate::retry::Retry::BLOCKS.run(Action::EbsStartSnapshot, None, || {
            cloud.ebs.start_snapshot(who, region, start)
        })?,
    )
}

/// StartSnapshot's request for a new snapshot of a `size_gib` volume to write a restore point
/// into: encrypted with `key_arn` (a key ARN, not an alias) if given, else with the region's
/// default EBS key if `encrypted`, else as the region's EBS defaults say.
pub fn new_snapshot(size_gib: u32, encrypted: bool, key_arn: Option<&str>, tags: &[Tag]) -> StartSnapshot {
    StartSnapshot {
        volume_size_gib: size_gib,
        parent: None,
        // A key is only taken with Encrypted.
        encrypted: encrypted || key_arn.is_some(),
        kms_key_arn: key_arn.map(str::to_owned),
        tags: tags.to_vec(),
        client_token: None,
    }
}

/// Writes restore point `point` into `snapshot` (started by [`start_snapshot`]), completes it
/// and waits until it is `completed`. A failed write leaves the snapshot to its caller.
pub fn write_snapshot(
    cloud: &Cloud,
    who: &Credentials,
    region: &Region,
    snapshot: &SnapshotId,
    repo: &Repository,
    point: &Id,
    progress: &Progress,
) -> Result<(), DirectError> {
    let writer = SnapshotWriter::new(cloud, who, region, snapshot);
    with_helpers(
        IN_FLIGHT,
        || writer.put_queued(),
        || writer.stop(),
        || bulwark_mover::restore(repo, point, &writer, progress, mover_threads()),
    )
    .map_err(|e| writer.failure.take().unwrap_or(DirectError::Mover(e)))?;
    writer.wait_completed()
}

/// Restores restore point `point` into a new snapshot, encrypted with `key_arn` (a key ARN)
/// if given, else as the region's EBS defaults say; answers the snapshot once `completed`.
/// The volume size is the restore point's, rounded up to whole GiB. A restore that fails
/// deletes the snapshot it started.
pub fn restore_to_snapshot(
    cloud: &Cloud,
    who: &Credentials,
    region: &Region,
    repo: &Repository,
    point: &Id,
    key_arn: Option<&str>,
    progress: &Progress,
) -> Result<SnapshotId, DirectError> {
    let size_gib = snapshot_size_gib(repo, point)?;
    let tags = [Tag::new("bulwark:restore-point", point.to_hex())];
    let snapshot = start_snapshot(cloud, who, region, &new_snapshot(size_gib, false, key_arn, &tags))?;
    match write_snapshot(cloud, who, region, &snapshot, repo, point, progress) {
        Ok(()) => Ok(snapshot),
        Err(e) => {
            // As well as it can: the snapshot holds part of a volume, and a pending one counts
            // against the account's 100 pending snapshots until it times out.
            let _ = cloud.ec2.delete_snapshot(who, region, &snapshot);
            Err(e)
        }
    }
}
