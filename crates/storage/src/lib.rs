//! Where Bulwark's repository files live. A [`Backend`] stores whole, immutable files by kind
//! and name; it knows nothing of their content. Implementations: a local directory
//! ([`LocalBackend`]), memory for tests ([`MemoryBackend`]), S3 (crate `bulwark-s3`) and the
//! embedded cloud's buckets (crate `bulwark-sim`).
//!
//! It is a crate of its own so that the clouds, which hand out object stores, need not link the
//! repository format, and the format need not know where its files go.
//!
//! Every operation is blocking: the data path runs on threads. A backend must make `put`
//! atomic: a reader sees the whole file or no file, never a part, also if the writer is killed
//! mid-way.
//!
//! It depends on nothing of Bulwark's.
#![deny(missing_docs)]

mod local;
mod memory;

pub use local::LocalBackend;
pub use memory::MemoryBackend;

use std::fmt;
use std::io;

/// The kinds of files in a repository, each in its own folder (see docs/repository-format.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FileKind {
    /// `config`: the repository's identity and parameters (one file, name `config`).
    Config,
    /// `keys/`: the repository key, wrapped by a passphrase or a key-encryption key.
    Key,
    /// `data/`: packs of blocks.
    Pack,
    /// `index/`: where each block is, in which pack.
    Index,
    /// `points/`: restore point manifests.
    Point,
    /// `locks/`: who is using the repository.
    Lock,
}

impl FileKind {
    /// Every kind, in the order a reader would want them.
    pub const ALL: [FileKind; 6] = [
        FileKind::Config,
        FileKind::Key,
        FileKind::Pack,
        FileKind::Index,
        FileKind::Point,
        FileKind::Lock,
    ];

    /// The folder of the kind.
    pub fn dir(self) -> &'static str {
        match self {
            FileKind::Config => "",
            FileKind::Key => "keys",
            FileKind::Pack => "data",
            FileKind::Index => "index",
            FileKind::Point => "points",
            FileKind::Lock => "locks",
        }
    }

    /// The path of file `name` relative to the repository root. Packs are spread over 256
    /// folders by the first two characters of their name, so no folder grows too large.
    pub fn path(self, name: &str) -> String {
        match self {
            FileKind::Config => "config".to_owned(),
            FileKind::Pack => format!("data/{}/{name}", name.get(..2).unwrap_or("00")),
            _ => format!("{}/{name}", self.dir()),
        }
    }
}

/// A failed backend operation.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The file does not exist.
    #[error("{0} does not exist")]
    NotFound(String),
    /// The file exists already (files are immutable).
    #[error("{0} exists already")]
    AlreadyExists(String),
    /// Local I/O failed.
    #[error("{path}: {source}")]
    Io {
        /// The path involved.
        path: String,
        /// The error.
        source: io::Error,
    },
    /// The remote store failed; `retryable` tells whether trying again can help.
    #[error("{operation} {path}: {message}")]
    Remote {
        /// The operation (`PUT`, `GET`, ...).
        operation: &'static str,
        /// The path involved.
        path: String,
        /// What the store said.
        message: String,
        /// Whether a retry may succeed (throttling, a timeout, a dropped connection).
        retryable: bool,
    },
}

/// Where repository files are stored.
pub trait Backend: Send + Sync + fmt::Debug {
    /// A short description, like `/srv/repo` or `s3://bucket/prefix`.
    fn location(&self) -> String;
    /// Stores a new file atomically. Fails with `AlreadyExists` if it exists (where the store
    /// can tell cheaply; S3 may overwrite, which is harmless for content-addressed names).
    fn put(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<(), BackendError>;
    /// Reads a whole file.
    fn get(&self, kind: FileKind, name: &str) -> Result<Vec<u8>, BackendError>;
    /// Reads `length` bytes at `offset` of a file.
    fn get_range(
        &self,
        kind: FileKind,
        name: &str,
        offset: u64,
        length: u64,
    ) -> Result<Vec<u8>, BackendError>;
    /// Names and sizes of every file of a kind, in no particular order.
    fn list(&self, kind: FileKind) -> Result<Vec<(String, u64)>, BackendError>;
    /// Removes a file; removing a missing file is not an error.
    fn delete(&self, kind: FileKind, name: &str) -> Result<(), BackendError>;
}

/// The behaviour every backend must have; run by each backend's tests.
#[doc(hidden)]
pub fn conformance(backend: &dyn Backend) {
    let kind = FileKind::Pack;
    let name = "ab0123";
    assert!(matches!(backend.get(kind, name), Err(BackendError::NotFound(_))));
    backend.put(kind, name, b"hello, world").expect("put");
    assert_eq!(backend.get(kind, name).expect("get"), b"hello, world");
    assert_eq!(backend.get_range(kind, name, 7, 5).expect("range"), b"world");
    assert!(
        backend.get_range(kind, name, 7, 50).is_err(),
        "a range past the end is an error"
    );
    backend.put(FileKind::Index, "i1", b"x").expect("put index");
    backend.put(FileKind::Config, "config", b"c").expect("put config");
    let packs = backend.list(kind).expect("list");
    assert_eq!(packs, vec![(name.to_owned(), 12)]);
    assert_eq!(
        backend.list(FileKind::Config).expect("list config"),
        vec![("config".to_owned(), 1)]
    );
    assert_eq!(backend.list(FileKind::Point).expect("list points"), vec![]);
    backend.delete(kind, name).expect("delete");
    backend.delete(kind, name).expect("delete twice");
    assert!(backend.list(kind).expect("list").is_empty());
}
