//! Errors of the repository. Each says what is wrong and, where the user can act, what to do.

use bulwark_storage::BackendError;

/// A repository operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// The storage failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// No repository at the location.
    #[error("no repository at {0}: create one with `bulwark repo init`")]
    NotARepository(String),
    /// `init` on an existing repository.
    #[error("a repository exists at {0} already")]
    AlreadyInitialized(String),
    /// The repository is of a format version this program does not know.
    #[error(
        "the repository at {location} has format version {found}; this bulwark reads version {supported}"
    )]
    UnsupportedVersion {
        /// Where.
        location: String,
        /// Its version.
        found: u32,
        /// Ours.
        supported: u32,
    },
    /// The repository is encrypted and no passphrase or key file was given.
    #[error("the repository is encrypted: give --password-file (or BULWARK_PASSWORD_FILE) or --key-file")]
    NoSecret,
    /// No stored key opens with the given secret.
    #[error("wrong passphrase or key file: none of the repository's {0} keys opens with it")]
    WrongSecret(usize),
    /// No key opened, and some key files could not be used.
    #[error(
        "no key opens the repository: {tried} keys tried with the given secret; {} key files \
         could not be used: {}",
        bad.len(), bad.join("; ")
    )]
    NoKeyOpens {
        /// Key files that were tried.
        tried: usize,
        /// The key files that could not be used, and why.
        bad: Vec<String>,
    },
    /// Object Lock was asked of a store that cannot retain files.
    #[error(
        "{0} cannot retain files: Object Lock needs an S3 bucket created with Object Lock enabled \
         (aws s3api create-bucket ... --object-lock-enabled-for-bucket), or a local directory"
    )]
    NoObjectLock(String),
    /// A key file that is not a key.
    #[error("bad key file {0}")]
    BadKeyFile(String),
    /// Data that fails authentication: altered, damaged, or sealed under another key.
    #[error("{0} failed authentication: it was altered or damaged")]
    Unauthentic(String),
    /// Data that is malformed.
    #[error("{0}")]
    Corrupt(String),
    /// A block a restore point needs is in no index.
    #[error("block {block} (block {index} of {point}) is in no index: the repository lost it; run `bulwark image verify`")]
    MissingBlock {
        /// The block id.
        block: String,
        /// Its index in the volume.
        index: u64,
        /// The restore point.
        point: String,
    },
    /// No restore point with this id (or prefix).
    #[error("no restore point {0}: `bulwark image list` shows them")]
    PointNotFound(String),
    /// A prefix that matches several restore points.
    #[error("{0} matches several restore points; give more digits")]
    AmbiguousPoint(String),
    /// Another process holds a conflicting lock.
    #[error("the repository is locked by {0}; if that process is gone, its lock expires {1}")]
    Locked(String, String),
    /// A lock file that cannot be read or understood: it counts as held, by anyone.
    #[error(
        "the repository may be locked: {path} cannot be used ({reason}), so it counts as held; \
         if no bulwark process is using the repository, delete {path}"
    )]
    UnreadableLock {
        /// The lock file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// This process's lock may have lapsed: it writes nothing more.
    #[error(
        "stopped before writing to the repository: this process's lock cannot be vouched for ({0}), \
         so a prune may be running; nothing was committed: run it again"
    )]
    LockLost(String),
    /// The operating system's random source failed.
    #[error("the system's random number generator failed")]
    Random,
}
