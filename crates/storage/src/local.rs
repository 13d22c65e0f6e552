//! A repository in a local directory.
//!
//! `put` writes beside the target, then hard-links the new file to its name: `link(2)` fails if
//! the name exists, so of two writers of one name exactly one succeeds, and a reader (or a
//! crash) sees the whole file or none. Local file systems that Bulwark runs on (ext4, XFS,
//! btrfs, tmpfs, NFS) all have hard links.
//!
//! Retention is *emulated*, so that Object Lock logic can be tested without S3: a retained file
//! `name` has a folder `.name.retention/` beside it holding one empty file per retention ever
//! set, named `MODE-UNIXSECONDS`. The file's retention is the latest of them; records are only
//! ever added, so two processes extending at once cannot shorten it. `delete` refuses a file
//! before its date. It protects against mistakes of this program, not against anyone who can
//! delete files in the directory: that takes a store that enforces retention (S3 Object Lock).

use std::fs;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};

use crate::{Backend, BackendError, Capabilities, FileKind, LockMode, Retention};

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

    /// The folder of retention records of the file at `path`.
    fn records(path: &Path) -> PathBuf {
        let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
        path.with_file_name(format!(".{name}.retention"))
    }

    /// The retention the records of `path` give, if any.
    fn read_retention(path: &Path) -> Result<Option<Retention>, BackendError> {
        let dir = Self::records(path);
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&dir)(e)),
        };
        let mut best: Option<Retention> = None;
        for entry in entries {
            let entry = entry.map_err(io_err(&dir))?;
            let record = entry.file_name().to_string_lossy().into_owned();
            if record.starts_with('.') {
                continue; // a record being written
            }
            // An unreadable record fails closed: the file cannot be deleted until it is fixed.
            let retention = parse_record(&record).ok_or_else(|| BackendError::Io {
                path: dir.join(&record).display().to_string(),
                error: io::Error::new(
                    io::ErrorKind::InvalidData,
                    "not a retention record (MODE-UNIXSECONDS): remove it only if the file may be deleted",
                ),
            })?;
            best = Some(match best {
                None => retention,
                Some(b) => Retention {
                    mode: b.mode.max(retention.mode),
                    until: b.until.max(retention.until),
                },
            });
        }
        Ok(best)
    }

    /// Adds a retention record for the file at `path`.
    fn add_record(path: &Path, retention: Retention) -> Result<(), BackendError> {
        let dir = Self::records(path);
        create_dirs_durably(&dir).map_err(io_err(&dir))?;
        let name = format!("{}-{}", retention.mode.as_str(), retention.until.timestamp());
        let record = dir.join(name);
        let write = || -> io::Result<()> {
            match fs::OpenOptions::new().write(true).create_new(true).open(&record) {
                Ok(f) => f.sync_all()?,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
            fs::File::open(&dir)?.sync_all()
        };
        write().map_err(io_err(&record))
    }
}

fn parse_record(record: &str) -> Option<Retention> {
    let (mode, secs) = record.split_once('-')?;
    Some(Retention {
        mode: LockMode::parse(mode)?,
        until: DateTime::from_timestamp(secs.parse().ok()?, 0)?,
    })
}

/// Creates `dir` and its missing parents, making each new entry durable in its parent (a
/// directory entry is durable only once its parent directory is synced), so that a file put
/// into a new pack folder survives a crash together with the folder.
fn create_dirs_durably(dir: &Path) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut at = dir;
    // A relative path ends in "", which is the current directory, not one to create.
    while !at.as_os_str().is_empty() && !at.is_dir() {
        missing.push(at);
        match at.parent() {
            Some(parent) => at = parent,
            None => break,
        }
    }
    for new in missing.into_iter().rev() {
        match fs::create_dir(new) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
        if let Some(parent) = new.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::File::open(parent)?.sync_all()?;
        }
    }
    Ok(())
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> BackendError + '_ {
    move |source| {
        if source.kind() == io::ErrorKind::NotFound {
            BackendError::NotFound(path.display().to_string())
        } else {
            BackendError::Io {
                path: path.display().to_string(),
                error: source,
            }
        }
    }
}

/// A name for a temporary file no other writer uses: the process id and a counter (threads of
/// one process write the same name at once when two backups store the same restore point).
fn temporary_name(name: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

impl Backend for LocalBackend {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn put(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<(), BackendError> {
        let path = self.full(kind, name);
        let exists = || BackendError::AlreadyExists(path.display().to_string());
        if path.exists() {
            return Err(exists());
        }
        let dir = path.parent().unwrap_or(&self.root);
        create_dirs_durably(dir).map_err(io_err(dir))?;
        // Write beside the target, make it durable, then link it to its name, which fails if
        // the name exists: the check above is only a shortcut. Temporary names start with '.'
        // and are never listed. Readable by the owner only: the repository's key files are
        // among what it writes, and the rest is no one else's either.
        let tmp = dir.join(temporary_name(name));
        let write = || -> io::Result<()> {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(data)?;
            f.sync_all()?;
            fs::hard_link(&tmp, &path)?;
            fs::remove_file(&tmp)?;
            fs::File::open(dir)?.sync_all()
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            if e.kind() == io::ErrorKind::AlreadyExists {
                exists()
            } else {
                io_err(&path)(e)
            }
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
            let size = f.metadata()?.len();
            if offset.checked_add(length).is_none_or(|end| end > size) {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the file is shorter than expected",
                ));
            }
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
                let name = entry.file_name().to_string_lossy().into_owned();
                // Temporary files and retention records.
                if name.starts_with('.') {
                    continue;
                }
                let meta = entry.metadata().map_err(io_err(&dir))?;
                if meta.is_dir() {
                    dirs.push(entry.path());
                } else {
                    out.push((name, meta.len()));
                }
            }
        }
        Ok(out)
    }

    fn delete(&self, kind: FileKind, name: &str) -> Result<(), BackendError> {
        let path = self.full(kind, name);
        if !path.exists() {
            return Ok(());
        }
        if let Some(r) = Self::read_retention(&path)?.filter(|r| r.holds_at(Utc::now())) {
            return Err(BackendError::Locked {
                path: path.display().to_string(),
                until: r.until,
            });
        }
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_err(&path)(e)),
            _ => {}
        }
        let records = Self::records(&path);
        match fs::remove_dir_all(&records) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(&records)(e)),
            _ => Ok(()),
        }
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            atomic_create: true,
            retention: true,
        }
    }

    /// The record first, then the file: a crash between leaves a record of a file that does not
    /// exist, which retains the file if it is written later (harmless for content-named files).
    fn put_retained(
        &self,
        kind: FileKind,
        name: &str,
        data: &[u8],
        retention: Retention,
    ) -> Result<(), BackendError> {
        let path = self.full(kind, name);
        if path.exists() {
            return Err(BackendError::AlreadyExists(path.display().to_string()));
        }
        Self::add_record(&path, retention)?;
        self.put(kind, name, data)
    }

    fn set_retention(&self, kind: FileKind, name: &str, retention: Retention) -> Result<(), BackendError> {
        let path = self.full(kind, name);
        if !path.exists() {
            return Err(BackendError::NotFound(path.display().to_string()));
        }
        if let Some(current) = Self::read_retention(&path)? {
            if !retention.extends(&current) {
                return Err(BackendError::ShorterRetention {
                    path: path.display().to_string(),
                    current,
                });
            }
        }
        Self::add_record(&path, retention)
    }

    fn retention(&self, kind: FileKind, name: &str) -> Result<Option<Retention>, BackendError> {
        let path = self.full(kind, name);
        if !path.exists() {
            return Err(BackendError::NotFound(path.display().to_string()));
        }
        Self::read_retention(&path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("bulwark-local-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn what_it_writes_only_its_owner_may_read() {
        use std::os::unix::fs::PermissionsExt;
        let dir = temp("private");
        let backend = LocalBackend::new(&dir);
        backend.put(FileKind::Key, "k1", b"wrapped key").unwrap();
        backend.put(FileKind::Pack, "ab01", b"pack").unwrap();
        for (kind, name) in [(FileKind::Key, "k1"), (FileKind::Pack, "ab01")] {
            let mode = fs::metadata(dir.join(kind.path(name)))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{kind:?} {name}");
        }
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn local_backend_conforms_and_spreads_packs() {
        let dir = temp("conform");
        let backend = LocalBackend::new(&dir);
        crate::conformance(&backend);
        backend.put(FileKind::Pack, "cdef", b"x").unwrap();
        assert!(dir.join("data/cd/cdef").exists());
        assert!(matches!(
            backend.put(FileKind::Pack, "cdef", b"y"),
            Err(BackendError::AlreadyExists(_))
        ));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_relative_root_works() {
        // Relative to the package directory, where tests run.
        let dir = PathBuf::from(format!("bulwark-relative-{}", std::process::id()));
        let backend = LocalBackend::new(&dir);
        let result = backend.put(FileKind::Pack, "ab01", b"x");
        let exists = dir.join("data/ab/ab01").exists();
        let _ = fs::remove_dir_all(&dir);
        result.unwrap();
        assert!(exists);
    }

    #[test]
    fn local_retention_is_emulated() {
        let dir = temp("retention");
        let backend = LocalBackend::new(&dir);
        crate::retention_conformance(&backend);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn of_many_racing_writers_of_one_name_exactly_one_succeeds() {
        let dir = temp("race");
        let backend = LocalBackend::new(&dir);
        for round in 0..20 {
            let name = format!("ab{round:04}");
            let wins: usize = std::thread::scope(|s| {
                let handles: Vec<_> = (0..8u8)
                    .map(|t| {
                        let (backend, name) = (&backend, &name);
                        s.spawn(move || match backend.put(FileKind::Point, name, &[t; 4096]) {
                            Ok(()) => 1,
                            Err(BackendError::AlreadyExists(_)) => 0,
                            Err(e) => panic!("{e}"),
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).sum()
            });
            assert_eq!(wins, 1, "round {round}");
            let data = backend.get(FileKind::Point, &name).unwrap();
            assert!(data.iter().all(|b| *b == data[0]), "one writer's bytes, whole");
        }
        let leftovers: Vec<_> = fs::read_dir(dir.join("points"))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "no temporary files are left behind");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_expired_retention_lets_the_file_go_and_a_bad_record_keeps_it() {
        let dir = temp("expiry");
        let backend = LocalBackend::new(&dir);
        let past = Retention {
            mode: LockMode::Compliance,
            until: DateTime::from_timestamp(Utc::now().timestamp() - 60, 0).unwrap(),
        };
        backend.put_retained(FileKind::Pack, "ab01", b"x", past).unwrap();
        backend.delete(FileKind::Pack, "ab01").unwrap();
        assert!(
            !dir.join("data/ab/.ab01.retention").exists(),
            "its records go with it"
        );
        backend.put(FileKind::Pack, "ab02", b"y").unwrap();
        fs::create_dir_all(dir.join("data/ab/.ab02.retention")).unwrap();
        fs::write(dir.join("data/ab/.ab02.retention/forever"), b"").unwrap();
        assert!(backend.delete(FileKind::Pack, "ab02").is_err(), "fails closed");
        assert!(backend.get(FileKind::Pack, "ab02").is_ok());
        fs::remove_dir_all(&dir).unwrap();
    }
}
