//! A repository in memory, for tests.

use std::collections::BTreeMap;
use std::io;
use std::sync::Mutex;

use crate::{Backend, BackendError, FileKind};

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

#[cfg(test)]
mod tests {
    #[test]
    fn memory_backend_conforms() {
        crate::conformance(&super::MemoryBackend::default());
    }
}
