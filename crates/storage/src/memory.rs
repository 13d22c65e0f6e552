//! A repository in memory, for tests.

use std::collections::BTreeMap;
use std::io;
use std::sync::Mutex;

use chrono::Utc;

use crate::{Backend, BackendError, Capabilities, FileKind, Retention};

/// A file and its retention.
type Files = BTreeMap<(FileKind, String), (Vec<u8>, Option<Retention>)>;

/// A repository in memory, for tests: the same behaviour as the others, no I/O. Retention is
/// emulated as in the local backend.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    files: Mutex<Files>,
}

impl MemoryBackend {
    fn files(&self) -> std::sync::MutexGuard<'_, Files> {
        // A panic while holding the lock leaves a consistent map (every update is one insert
        // or remove), so a poisoned lock can be used as is.
        self.files
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Replaces a file's content, for tests that corrupt a repository.
    pub fn overwrite(&self, kind: FileKind, name: &str, data: Vec<u8>) {
        let mut files = self.files();
        let retention = files.get(&(kind, name.to_owned())).and_then(|f| f.1);
        files.insert((kind, name.to_owned()), (data, retention));
    }

    fn put_with(
        &self,
        kind: FileKind,
        name: &str,
        data: &[u8],
        retention: Option<Retention>,
    ) -> Result<(), BackendError> {
        let mut files = self.files();
        let key = (kind, name.to_owned());
        if files.contains_key(&key) {
            return Err(BackendError::AlreadyExists(kind.path(name)));
        }
        files.insert(key, (data.to_vec(), retention));
        Ok(())
    }
}

impl Backend for MemoryBackend {
    fn location(&self) -> String {
        "memory".to_owned()
    }

    fn put(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<(), BackendError> {
        self.put_with(kind, name, data, None)
    }

    fn get(&self, kind: FileKind, name: &str) -> Result<Vec<u8>, BackendError> {
        self.files()
            .get(&(kind, name.to_owned()))
            .map(|f| f.0.clone())
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
                error: io::Error::new(io::ErrorKind::UnexpectedEof, "the file is shorter than expected"),
            })
    }

    fn list(&self, kind: FileKind) -> Result<Vec<(String, u64)>, BackendError> {
        Ok(self
            .files()
            .iter()
            .filter(|((k, _), _)| *k == kind)
            .map(|((_, name), data)| (name.clone(), data.0.len() as u64))
            .collect())
    }

    fn delete(&self, kind: FileKind, name: &str) -> Result<(), BackendError> {
        let mut files = self.files();
        let key = (kind, name.to_owned());
        if let Some(r) = files
            .get(&key)
            .and_then(|f| f.1)
            .filter(|r| r.holds_at(Utc::now()))
        {
            return Err(BackendError::Locked {
                path: kind.path(name),
                until: r.until,
            });
        }
        files.remove(&key);
        Ok(())
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            atomic_create: true,
            retention: true,
        }
    }

    fn put_retained(
        &self,
        kind: FileKind,
        name: &str,
        data: &[u8],
        retention: Retention,
    ) -> Result<(), BackendError> {
        self.put_with(kind, name, data, Some(retention))
    }

    fn set_retention(&self, kind: FileKind, name: &str, retention: Retention) -> Result<(), BackendError> {
        let mut files = self.files();
        let file = files
            .get_mut(&(kind, name.to_owned()))
            .ok_or_else(|| BackendError::NotFound(kind.path(name)))?;
        if let Some(current) = file.1.filter(|c| !retention.extends(c)) {
            return Err(BackendError::ShorterRetention {
                path: kind.path(name),
                current,
            });
        }
        file.1 = Some(retention);
        Ok(())
    }

    fn retention(&self, kind: FileKind, name: &str) -> Result<Option<Retention>, BackendError> {
        self.files()
            .get(&(kind, name.to_owned()))
            .map(|f| f.1)
            .ok_or_else(|| BackendError::NotFound(kind.path(name)))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn memory_backend_conforms() {
        crate::conformance(&super::MemoryBackend::default());
        crate::retention_conformance(&super::MemoryBackend::default());
    }
}
