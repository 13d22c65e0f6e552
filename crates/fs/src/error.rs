//! The one error type of the crate.

use std::path::PathBuf;

/// What went wrong reading a volume. Damage is an error, never a panic and never data made up.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// The device failed a read.
    #[error("read of {len} bytes at byte {offset} failed")]
    Io {
        /// Byte offset of the read on the device it was made from.
        offset: u64,
        /// Length of the read.
        len: usize,
        /// What the device said.
        #[source]
        source: std::io::Error,
    },
    /// A structure on disk is inconsistent: a bad magic number, checksum, length or pointer,
    /// or a loop. `at` is the byte offset of the structure within its filesystem (within the
    /// partition), or within the disk for partition tables.
    #[error("damaged {what} (at byte {at})")]
    Damaged {
        /// What is wrong, in words.
        what: String,
        /// Where: a byte offset.
        at: u64,
    },
    /// Something recognised that this crate does not read (an LVM physical volume, LUKS, a
    /// compressed NTFS file, an ext4 feature it does not know).
    #[error("unsupported: {found}")]
    Unsupported {
        /// What was found.
        found: String,
    },
    /// No entry of that name.
    #[error("no such file or directory: {0}")]
    NotFound(String),
    /// A path component that must be a directory is not one.
    #[error("not a directory: {0}")]
    NotADirectory(String),
    /// A file operation on a directory.
    #[error("is a directory: {0}")]
    IsADirectory(String),
    /// `read_link` of something that is not a symbolic link.
    #[error("not a symbolic link: {0}")]
    NotASymlink(String),
    /// More than 40 symbolic links while resolving a path, as Linux's ELOOP.
    #[error("too many levels of symbolic links: {0}")]
    SymlinkLoop(String),
    /// A path that names nothing in the volume's namespace (`/N/...`).
    #[error("invalid path {path:?}: {why}")]
    InvalidPath {
        /// The path as given.
        path: String,
        /// Why it is invalid.
        why: String,
    },
    /// Writing extracted files failed.
    #[error("extracting to {path}")]
    Extract {
        /// The local path being written.
        path: PathBuf,
        /// What the local filesystem said.
        #[source]
        source: std::io::Error,
    },
}

impl FsError {
    /// A [`FsError::Damaged`] at byte `at`.
    pub fn damaged(what: impl Into<String>, at: u64) -> Self {
        FsError::Damaged {
            what: what.into(),
            at,
        }
    }

    /// A [`FsError::Unsupported`].
    pub fn unsupported(found: impl Into<String>) -> Self {
        FsError::Unsupported { found: found.into() }
    }
}

/// The crate's result type.
pub type Result<T, E = FsError> = std::result::Result<T, E>;
