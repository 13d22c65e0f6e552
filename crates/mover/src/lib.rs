//! Bulwark's data path: a volume's blocks from a block source (a file or block device; later
//! an EBS snapshot through the direct APIs) into the repository, and back into a block target.
//! Parallel, streaming, in memory bounded by the number of threads, whatever the volume size.
//!
//! It also makes a restore point a block device for `bulwark-fs` ([`PointDevice`]), so that
//! files are read from a backup without restoring the volume.
//!
//! It depends on the repository crate (and `bulwark-fs` for its `Device` trait) only; it knows
//! nothing of clouds, sessions or workers, and prints nothing: progress is counters the caller
//! reads.
#![deny(missing_docs)]

mod backup;
mod device;
mod error;
mod file_index;
mod files;
mod parallel;
mod progress;
mod restore;
mod stream;

pub use backup::{
    backup, backup_all, backup_volumes, parse_changed_blocks, BackupOutcome, Base, Volume, VolumeSource,
};
pub use device::{BlockSource, BlockTarget, FileSource, FileTarget};
pub use error::MoverError;
pub use files::PointDevice;
pub use progress::Progress;
pub use restore::{restore, RestoreOutcome};

/// Threads for a transfer: one per core to compress and seal, plus two whose time goes to
/// waiting on reads and uploads.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get) + 2
}
