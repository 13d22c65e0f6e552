//! A repository in a local directory.

use std::fs;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::{Backend, BackendError, FileKind};

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

/// Creates `dir` and its missing parents, making each new entry durable in its parent (a
/// directory entry is durable only once its parent directory is synced), so that a file put
/// into a new pack folder survives a crash together with the folder.
fn create_dirs_durably(dir: &Path) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut at = dir;
    while !at.is_dir() {
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
        create_dirs_durably(dir).map_err(io_err(dir))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_backend_conforms_and_spreads_packs() {
        let dir = std::env::temp_dir().join(format!("bulwark-local-{}", std::process::id()));
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
}
