//! Locks: backups, restores and verifies take a shared lock, prune an exclusive one, so that
//! prune never deletes a block that a running backup has just deduplicated against.
//!
//! Lock files are immutable like every other file: a holder refreshes its lock by writing a
//! new one and deleting the old. A lock not refreshed for [`STALE_AFTER`] belongs to a process
//! that died, and is ignored (and removed by the next exclusive locker).

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use chrono::Utc;

use crate::crypto;
use crate::error::RepoError;
use crate::format::LockFile;
use bulwark_storage::{Backend, FileKind};

/// How often a holder writes a fresh lock.
const REFRESH_EVERY: Duration = Duration::from_secs(5 * 60);
/// How old a lock must be to count as left behind: several refresh periods, so that a slow
/// store or a paused process does not lose its lock.
pub const STALE_AFTER: Duration = Duration::from_secs(30 * 60);

/// A held lock, released when dropped.
pub struct Lock {
    backend: Arc<dyn Backend>,
    name: Arc<Mutex<String>>,
    /// Dropping it wakes the refresher at once and tells it to stop.
    stop: Option<mpsc::Sender<()>>,
    refresher: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Lock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lock").finish_non_exhaustive()
    }
}

/// Which lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockKind {
    /// Many holders at once; excludes an exclusive holder.
    Shared,
    /// One holder; excludes every other.
    Exclusive,
}

impl LockKind {
    fn as_str(self) -> &'static str {
        match self {
            LockKind::Shared => "shared",
            LockKind::Exclusive => "exclusive",
        }
    }
}

fn write_lock(backend: &dyn Backend, kind: LockKind) -> Result<String, RepoError> {
    let file = LockFile {
        kind: kind.as_str().into(),
        host: hostname(),
        pid: std::process::id(),
        time: Utc::now(),
    };
    let mut name = [0u8; 16];
    crypto::random(&mut name)?;
    let name = hex::encode(name);
    let json = serde_json::to_vec(&file).map_err(|e| RepoError::Corrupt(e.to_string()))?;
    backend.put(FileKind::Lock, &name, &json)?;
    Ok(name)
}

/// This machine's name, as lock files record it.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default()
}

/// Whether a lock's holder ran on this machine and has exited (killed, crashed): its lock is
/// stale at once, not after [`STALE_AFTER`].
fn holder_is_gone(file: &LockFile) -> bool {
    !file.host.is_empty()
        && file.host == hostname()
        && file.pid != std::process::id()
        && !std::path::Path::new(&format!("/proc/{}", file.pid)).exists()
}

impl Lock {
    /// Takes a lock, or fails with `Locked` if a live conflicting lock exists.
    pub fn acquire(backend: Arc<dyn Backend>, kind: LockKind) -> Result<Self, RepoError> {
        let name = write_lock(backend.as_ref(), kind)?;
        // Check after writing: two lockers that race both see each other and both back off,
        // never both proceed.
        let now = Utc::now();
        for (other, _) in backend.list(FileKind::Lock)? {
            if other == name {
                continue;
            }
            let Ok(bytes) = backend.get(FileKind::Lock, &other) else {
                continue;
            };
            let Ok(file) = serde_json::from_slice::<LockFile>(&bytes) else {
                continue;
            };
            let age = (now - file.time).to_std().unwrap_or_default();
            if age > STALE_AFTER || holder_is_gone(&file) {
                if kind == LockKind::Exclusive {
                    let _ = backend.delete(FileKind::Lock, &other);
                }
                continue;
            }
            if kind == LockKind::Exclusive || file.kind == "exclusive" {
                let _ = backend.delete(FileKind::Lock, &name);
                let holder = format!(
                    "a {} lock of process {} on {} since {}",
                    file.kind,
                    file.pid,
                    if file.host.is_empty() { "?" } else { &file.host },
                    file.time.to_rfc3339()
                );
                let expiry = format!("at {}", (file.time + STALE_AFTER).to_rfc3339());
                return Err(RepoError::Locked(holder, expiry));
            }
        }
        let name = Arc::new(Mutex::new(name));
        let (stop, stopped) = mpsc::channel();
        let refresher = {
            let (backend, name) = (backend.clone(), name.clone());
            std::thread::spawn(move || refresh(backend.as_ref(), kind, &name, &stopped))
        };
        Ok(Self {
            backend,
            name,
            stop: Some(stop),
            refresher: Some(refresher),
        })
    }
}

/// Replaces the lock with a fresh one every [`REFRESH_EVERY`] until the lock is dropped.
fn refresh(backend: &dyn Backend, kind: LockKind, name: &Mutex<String>, stopped: &mpsc::Receiver<()>) {
    while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(REFRESH_EVERY) {
        if let Ok(fresh) = write_lock(backend, kind) {
            let mut current = name.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let _ = backend.delete(FileKind::Lock, &current);
            *current = fresh;
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.refresher.take() {
            let _ = t.join();
        }
        let name = self
            .name
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let _ = self.backend.delete(FileKind::Lock, &name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulwark_storage::MemoryBackend;

    #[test]
    fn shared_locks_coexist_and_exclude_an_exclusive_one() {
        let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::default());
        let a = Lock::acquire(backend.clone(), LockKind::Shared).unwrap();
        let b = Lock::acquire(backend.clone(), LockKind::Shared).unwrap();
        assert!(matches!(
            Lock::acquire(backend.clone(), LockKind::Exclusive),
            Err(RepoError::Locked(..))
        ));
        drop((a, b));
        assert!(backend.list(FileKind::Lock).unwrap().is_empty());
        let x = Lock::acquire(backend.clone(), LockKind::Exclusive).unwrap();
        assert!(matches!(
            Lock::acquire(backend.clone(), LockKind::Shared),
            Err(RepoError::Locked(..))
        ));
        drop(x);
        assert!(Lock::acquire(backend.clone(), LockKind::Shared).is_ok());
    }

    #[test]
    fn locks_of_dead_processes_on_this_host_are_stale_at_once() {
        let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::default());
        // pid_max on Linux is at most 2^22: this pid cannot exist.
        let dead = LockFile {
            kind: "shared".into(),
            host: hostname(),
            pid: 1 << 23,
            time: Utc::now(),
        };
        backend
            .put(FileKind::Lock, "dead", &serde_json::to_vec(&dead).unwrap())
            .unwrap();
        let alive = LockFile {
            kind: "shared".into(),
            host: "another-host".into(),
            pid: 1 << 23,
            time: Utc::now(),
        };
        backend
            .put(FileKind::Lock, "alive", &serde_json::to_vec(&alive).unwrap())
            .unwrap();
        assert!(
            matches!(
                Lock::acquire(backend.clone(), LockKind::Exclusive),
                Err(RepoError::Locked(..))
            ),
            "another host's lock counts"
        );
        backend.delete(FileKind::Lock, "alive").unwrap();
        assert!(
            Lock::acquire(backend, LockKind::Exclusive).is_ok(),
            "the dead process's lock does not"
        );
    }

    #[test]
    fn stale_locks_are_ignored_and_removed() {
        let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::default());
        let old = LockFile {
            kind: "exclusive".into(),
            host: "gone".into(),
            pid: 1,
            time: Utc::now() - STALE_AFTER * 2,
        };
        backend
            .put(FileKind::Lock, "old", &serde_json::to_vec(&old).unwrap())
            .unwrap();
        let x = Lock::acquire(backend.clone(), LockKind::Exclusive).unwrap();
        assert_eq!(
            backend.list(FileKind::Lock).unwrap().len(),
            1,
            "the stale lock is removed"
        );
        drop(x);
    }
}
