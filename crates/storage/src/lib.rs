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
//! mid-way. Where the store can, `put` also never replaces a file: two writers of one name
//! cannot both succeed ([`Capabilities::atomic_create`]).
//!
//! Files can be *retained* where the store supports it (S3 Object Lock; an emulation in the local
//! and memory backends): a retained file cannot be deleted or replaced before its date, and its
//! date can be extended, never shortened ([`Retention`]).
//!
//! It depends on nothing of Bulwark's.
#![deny(missing_docs)]

mod local;
mod memory;
#[doc(hidden)]
pub mod testing;

pub use local::LocalBackend;
pub use memory::MemoryBackend;

use std::fmt;
use std::io;

use chrono::{DateTime, Utc};

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
    #[error("{path}: {error}")]
    Io {
        /// The path involved.
        path: String,
        /// The error.
        error: io::Error,
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
    /// The file is retained (Object Lock): it cannot be deleted or replaced before `until`.
    #[error("{path} is retained until {}: it cannot be deleted before then", until.to_rfc3339())]
    Locked {
        /// The path involved.
        path: String,
        /// When it becomes deletable.
        until: DateTime<Utc>,
    },
    /// A retention that would end earlier, or in a weaker mode, than the file's current one.
    #[error(
        "{path} is retained until {} ({}): a retention can be extended, never shortened or weakened",
        current.until.to_rfc3339(), current.mode
    )]
    ShorterRetention {
        /// The path involved.
        path: String,
        /// The file's retention now.
        current: Retention,
    },
    /// The store cannot do what was asked.
    #[error("{location} cannot {operation}: {hint}")]
    Unsupported {
        /// The store.
        location: String,
        /// What was asked.
        operation: &'static str,
        /// What to do instead.
        hint: &'static str,
    },
}

/// How a retained file is protected (the two modes of S3 Object Lock).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LockMode {
    /// Users with a special permission (`s3:BypassGovernanceRetention`) can shorten or remove
    /// the retention; no one else can.
    Governance,
    /// No one, not even the account's root user, can shorten the retention or delete the file
    /// before its date.
    Compliance,
}

impl LockMode {
    /// `governance` or `compliance`, as the repository's config spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            LockMode::Governance => "governance",
            LockMode::Compliance => "compliance",
        }
    }

    /// Parses `governance` or `compliance` (any case).
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "governance" => Some(LockMode::Governance),
            "compliance" => Some(LockMode::Compliance),
            _ => None,
        }
    }
}

impl fmt::Display for LockMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A file's retention: it cannot be deleted or replaced before `until`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// How it is protected.
    pub mode: LockMode,
    /// Until when (whole seconds: what S3 keeps).
    pub until: DateTime<Utc>,
}

impl Retention {
    /// Whether `self` may replace `current`: not earlier, and not in a weaker mode.
    pub fn extends(&self, current: &Retention) -> bool {
        self.until >= current.until && self.mode >= current.mode
    }

    /// Whether it still protects its file at `now`.
    pub fn holds_at(&self, now: DateTime<Utc>) -> bool {
        self.until > now
    }
}

/// What a backend can do beyond the operations every backend has.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// `put` refuses an existing file atomically: of two writers of one name, one fails with
    /// `AlreadyExists`. Without it, `put` checks first, and two racing writers may both succeed.
    pub atomic_create: bool,
    /// Files can be retained: [`Backend::put_retained`], [`Backend::set_retention`] and
    /// [`Backend::retention`] work.
    pub retention: bool,
}

/// Where repository files are stored.
pub trait Backend: Send + Sync + fmt::Debug {
    /// A short description, like `/srv/repo` or `s3://bucket/prefix`.
    fn location(&self) -> String;
    /// Stores a new file atomically. Fails with `AlreadyExists` if it exists: atomically where
    /// [`Capabilities::atomic_create`] says so, by a check before the write otherwise.
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
    /// Removes a file; removing a missing file is not an error. A retained file is not removed
    /// before its date: that is `Locked`.
    fn delete(&self, kind: FileKind, name: &str) -> Result<(), BackendError>;

    /// What the store can do. The default promises nothing.
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    /// Stores a new file, as `put` does, retained until `retention.until`.
    fn put_retained(
        &self,
        kind: FileKind,
        name: &str,
        data: &[u8],
        retention: Retention,
    ) -> Result<(), BackendError> {
        let _ = (kind, name, data, retention);
        Err(no_retention(self.location()))
    }

    /// Extends the retention of an existing file. Fails with `ShorterRetention` if the file is
    /// retained longer (or in a stronger mode) already: nothing shortens a retention.
    fn set_retention(&self, kind: FileKind, name: &str, retention: Retention) -> Result<(), BackendError> {
        let _ = (kind, name, retention);
        Err(no_retention(self.location()))
    }

    /// The retention of a file (`None`: never retained, or the store has no retention); a
    /// missing file is `NotFound`.
    fn retention(&self, kind: FileKind, name: &str) -> Result<Option<Retention>, BackendError> {
        let _ = (kind, name);
        Ok(None)
    }
}

/// The error of a retention operation on a store without retention.
fn no_retention(location: String) -> BackendError {
    BackendError::Unsupported {
        location,
        operation: "retain files",
        hint: "use an S3 bucket created with Object Lock enabled, or a local directory",
    }
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
    assert!(
        matches!(
            backend.put(kind, name, b"other"),
            Err(BackendError::AlreadyExists(_))
        ),
        "put never replaces a file"
    );
    assert_eq!(backend.get(kind, name).expect("get"), b"hello, world");
    backend.delete(kind, name).expect("delete");
    backend.delete(kind, name).expect("delete twice");
    assert!(backend.list(kind).expect("list").is_empty());
}

/// The behaviour of every backend with [`Capabilities::retention`]; run by each one's tests.
/// `now` is the store's clock (a few seconds of skew are tolerated).
#[doc(hidden)]
pub fn retention_conformance(backend: &dyn Backend) {
    assert!(backend.capabilities().retention);
    let now = Utc::now();
    let whole = |t: DateTime<Utc>| DateTime::from_timestamp(t.timestamp(), 0).expect("a time");
    let day = chrono::Duration::days(1);
    let kind = FileKind::Point;
    let retention = Retention {
        mode: LockMode::Governance,
        until: whole(now + day),
    };
    backend
        .put_retained(kind, "r1", b"kept", retention)
        .expect("put retained");
    assert_eq!(backend.retention(kind, "r1").expect("retention"), Some(retention));
    match backend.delete(kind, "r1") {
        Err(BackendError::Locked { until, .. }) => assert_eq!(until, retention.until),
        other => panic!("a retained file must not be deleted: {other:?}"),
    }
    assert_eq!(backend.get(kind, "r1").expect("still there"), b"kept");
    let longer = Retention {
        mode: LockMode::Compliance,
        until: whole(now + day * 2),
    };
    backend.set_retention(kind, "r1", longer).expect("extend");
    assert_eq!(backend.retention(kind, "r1").expect("retention"), Some(longer));
    for shorter in [
        retention,
        Retention {
            mode: LockMode::Governance,
            until: longer.until,
        },
    ] {
        assert!(
            matches!(
                backend.set_retention(kind, "r1", shorter),
                Err(BackendError::ShorterRetention { .. })
            ),
            "{shorter:?} must not replace {longer:?}"
        );
    }
    assert_eq!(backend.retention(kind, "r1").expect("retention"), Some(longer));
    backend.put(kind, "r2", b"free").expect("put");
    assert_eq!(backend.retention(kind, "r2").expect("retention"), None);
    assert!(matches!(
        backend.retention(kind, "r3"),
        Err(BackendError::NotFound(_))
    ));
    assert!(matches!(
        backend.set_retention(kind, "r3", retention),
        Err(BackendError::NotFound(_))
    ));
    backend.delete(kind, "r2").expect("an unretained file is deleted");
    let mut names: Vec<String> = backend
        .list(kind)
        .expect("list")
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    names.sort();
    assert_eq!(names, vec!["r1"], "retention records are not listed");
}
