//! Errors of the data path.

use std::path::PathBuf;

use bulwark_repo::RepoError;

/// A backup or restore that failed.
#[derive(Debug, thiserror::Error)]
pub enum MoverError {
    /// The repository failed.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// Reading the source failed.
    #[error("reading {path}: {error}")]
    Source {
        /// The source.
        path: PathBuf,
        /// The error.
        error: std::io::Error,
    },
    /// Writing the target failed.
    #[error("writing {path}: {error}")]
    Target {
        /// The target.
        path: PathBuf,
        /// The error.
        error: std::io::Error,
    },
    /// The target device is smaller than the volume.
    #[error("{path} has {size} bytes, the restore point needs {needed}")]
    TargetTooSmall {
        /// The target.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The volume size.
        needed: u64,
    },
    /// The transfer was cancelled; a backup wrote no restore point.
    #[error("the transfer was cancelled")]
    Cancelled,
    /// A changed-block list that cannot apply.
    #[error("changed-block list: {0}")]
    ChangedBlocks(String),
    /// A block that fails authentication or does not match its id: nothing was written for it.
    #[error("block {index} of restore point {point} (id {block}, in pack {pack}) is damaged: {reason}; it was not written")]
    BadBlock {
        /// Index of the block in the volume.
        index: u64,
        /// The restore point.
        point: String,
        /// The block id.
        block: String,
        /// The pack.
        pack: String,
        /// What is wrong.
        reason: String,
    },
}
