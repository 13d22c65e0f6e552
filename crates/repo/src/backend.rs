//! Storage backends: where repository files live. A backend stores whole, immutable files by
//! kind and name; it knows nothing of their content. Implementations: a local directory,
//! memory (for tests), and S3 (crate `bulwark-s3`).
//!
//! Every operation is blocking: the data path runs on threads, and the S3 backend drives its
//! own async runtime inside. A backend must make `put` atomic: a reader sees the whole file
//! or no file, never a part, also if the writer is killed mid-way.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

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

// ---- local directory ------------------------------------------------------------------------

/// A repository in a local directory (or any mounted file system).
#[derive(Debug)]
pub struct LocalBackend {
    root: PathBuf,
}

impl LocalBackend {
    /// A backend rooted at `root` (which `init` creates).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    fn full(&self, kind: FileKind, name: &str) -> PathBuf {
        self.root.join(kind.path(name))
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> BackendError + '_ {
    move |source| {
        if source.kind() == io::ErrorKind::NotFound {
            BackendError::NotFound(path.display().to_string())
        } else {
            BackendError::Io {
                path: path.display().to_string(),
                source,
            }
        }
    }
}

impl Backend for LocalBackend {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn put(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<(), BackendError> {
        let path = self.full(kind, name);
        if path.exists() {
            return Err(BackendError::AlreadyExists(path.display().to_string()));
        }
        let dir = path.parent().unwrap_or(&self.root);
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        // Write beside the target, make it durable, then rename: a reader (or a crash) sees
        // the whole file or none of it. Temporary names start with '.' and are never listed.
        let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let write = || -> io::Result<()> {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(data)?;
            f.sync_all()?;
            fs::rename(&tmp, &path)?;
            fs::File::open(dir)?.sync_all()
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            io_err(&path)(e)
        })
    }

    fn get(&self, kind: FileKind, name: &str) -> Result<Vec<u8>, BackendError> {
        let path = self.full(kind, name);
        fs::read(&path).map_err(io_err(&path))
    }

    fn get_range(
        &self,
        kind: FileKind,
        name: &str,
        offset: u64,
        length: u64,
    ) -> Result<Vec<u8>, BackendError> {
        let path = self.full(kind, name);
        let read = || -> io::Result<Vec<u8>> {
            let mut f = fs::File::open(&path)?;
            f.seek(SeekFrom::Start(offset))?;
            let mut buf = Vec::with_capacity(usize::try_from(length).unwrap_or(0));
            f.take(length).read_to_end(&mut buf)?;
            if buf.len() as u64 != length {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the file is shorter than expected",
                ));
            }
            Ok(buf)
        };
        read().map_err(io_err(&path))
    }

    fn list(&self, kind: FileKind) -> Result<Vec<(String, u64)>, BackendError> {
        if kind == FileKind::Config {
            let path = self.full(kind, "config");
            return match fs::metadata(&path) {
                Ok(m) => Ok(vec![("config".to_owned(), m.len())]),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
                Err(e) => Err(io_err(&path)(e)),
            };
        }
        let dir = self.root.join(kind.dir());
        let mut out = Vec::new();
        let mut dirs = vec![dir];
        while let Some(dir) = dirs.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(&dir)(e)),
            };
            for entry in entries {
                let entry = entry.map_err(io_err(&dir))?;
                let meta = entry.metadata().map_err(io_err(&dir))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if meta.is_dir() {
                    dirs.push(entry.path());
                } else if !name.starts_with('.') {
                    out.push((name, meta.len()));
                }
            }
        }
        Ok(out)
    }

    fn delete(&self, kind: FileKind, name: &str) -> Result<(), BackendError> {
        let path = self.full(kind, name);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(&path)(e)),
            _ => Ok(()),
        }
    }
}

// ---- memory ---------------------------------------------------------------------------------

/// A repository in memory, for tests: the same behaviour as the others, no I/O.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    files: Mutex<BTreeMap<(FileKind, String), Vec<u8>>>,
}

impl MemoryBackend {
    fn files(&self) -> std::sync::MutexGuard<'_, BTreeMap<(FileKind, String), Vec<u8>>> {
        // A panic while holding the lock leaves a consistent map (every update is one insert
        // or remove), so a poisoned lock can be used as is.
        self.files
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Replaces a file's content, for tests that corrupt a repository.
    pub fn overwrite(&self, kind: FileKind, name: &str, data: Vec<u8>) {
        self.files().insert((kind, name.to_owned()), data);
    }
}

impl Backend for MemoryBackend {
    fn location(&self) -> String {
        "memory".to_owned()
    }

    fn put(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<(), BackendError> {
        let mut files = self.files();
        let key = (kind, name.to_owned());
        if files.contains_key(&key) {
            return Err(BackendError::AlreadyExists(kind.path(name)));
        }
        files.insert(key, data.to_vec());
        Ok(())
    }

    fn get(&self, kind: FileKind, name: &str) -> Result<Vec<u8>, BackendError> {
        self.files()
            .get(&(kind, name.to_owned()))
            .cloned()
            .ok_or_else(|| BackendError::NotFound(kind.path(name)))
    }

    fn get_range(
        &self,
        kind: FileKind,
        name: &str,
        offset: u64,
        length: u64,
    ) -> Result<Vec<u8>, BackendError> {
        let data = self.get(kind, name)?;
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let end = start.saturating_add(usize::try_from(length).unwrap_or(usize::MAX));
        data.get(start..end)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| BackendError::Io {
                path: kind.path(name),
                source: io::Error::new(io::ErrorKind::UnexpectedEof, "the file is shorter than expected"),
            })
    }

    fn list(&self, kind: FileKind) -> Result<Vec<(String, u64)>, BackendError> {
        Ok(self
            .files()
            .iter()
            .filter(|((k, _), _)| *k == kind)
            .map(|((_, name), data)| (name.clone(), data.len() as u64))
            .collect())
    }

    fn delete(&self, kind: FileKind, name: &str) -> Result<(), BackendError> {
        self.files().remove(&(kind, name.to_owned()));
        Ok(())
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
    backend.delete(kind, name).expect("delete");
    backend.delete(kind, name).expect("delete twice");
    assert!(backend.list(kind).expect("list").is_empty());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_backend_conforms() {
        conformance(&MemoryBackend::default());
    }

    #[test]
    fn local_backend_conforms_and_spreads_packs() {
        let dir = std::env::temp_dir().join(format!("bulwark-local-{}", std::process::id()));
        let backend = LocalBackend::new(&dir);
        conformance(&backend);
        backend.put(FileKind::Pack, "cdef", b"x").unwrap();
        assert!(dir.join("data/cd/cdef").exists());
        assert!(matches!(
            backend.put(FileKind::Pack, "cdef", b"y"),
            Err(BackendError::AlreadyExists(_))
        ));
        fs::remove_dir_all(&dir).unwrap();
    }
}
