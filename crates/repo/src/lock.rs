//! Locks: backups, restores and verifies take a shared lock, prune an exclusive one, so that
//! prune never deletes a block that a running backup has just deduplicated against.
//!
//! Locks fail closed. A lock file that cannot be read or parsed counts as held, by a holder of
//! unknown kind, which excludes everyone (a person removes it, once no process uses the
//! repository). Lock files are immutable like every other file: a holder refreshes its lock by
//! writing a new one, and removes the old one only a while later ([`LockTiming::overlap`]), so
//! that a listing running meanwhile sees at least one of them; an exclusive locker also looks at
//! the other locks twice, across a pause. A holder whose refresh failed, or whose lock is gone
//! or old, is told so by [`Lock::ensure_held`], which a backup asks before it commits anything.
//!
//! A lock not refreshed for [`STALE_AFTER`] belongs to a process that died, and is ignored (and
//! removed by the next exclusive locker). A lock whose holder ran on this machine, in this pid
//! namespace (the boot id and the namespace say so; containers share host names and pids), and
//! has exited is stale at once. A lock without those fields (written before they existed) is
//! judged by its age only.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::crypto;
use crate::error::RepoError;
use crate::format::LockFile;
use bulwark_storage::{Backend, BackendError, FileKind};

/// How old a lock must be to count as left behind: several refresh periods, so that a slow
/// store or a paused process does not lose its lock.
pub const STALE_AFTER: Duration = Duration::from_secs(30 * 60);

/// Largest lock file read: a lock is a hundred bytes of JSON; a larger file is not one of ours
/// and counts as an unreadable lock.
const MAX_LOCK_BYTES: u64 = 64 * 1024;

/// The timing of locks. Tests shorten it; everyone else uses the default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockTiming {
    /// How often a holder writes a fresh lock: 5 minutes.
    pub refresh_every: Duration,
    /// How old a lock must be to count as left behind: [`STALE_AFTER`].
    pub stale_after: Duration,
    /// How long a fresh lock and the one it replaces both exist: 10 s, far longer than a
    /// listing of the locks takes.
    pub overlap: Duration,
    /// How long an exclusive locker waits before it looks at the other locks a second time, so
    /// that it sees a refresh that was in flight during the first look: 2 s.
    pub recheck_after: Duration,
    /// How soon a failed refresh is tried again: 30 s.
    pub retry_after: Duration,
}

impl Default for LockTiming {
    fn default() -> Self {
        Self {
            refresh_every: Duration::from_secs(5 * 60),
            stale_after: STALE_AFTER,
            overlap: Duration::from_secs(10),
            recheck_after: Duration::from_secs(2),
            retry_after: Duration::from_secs(30),
        }
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

/// The holder's view of its lock, shared with the refresher.
#[derive(Debug)]
struct State {
    /// The current lock file.
    name: String,
    /// The time written in it.
    time: DateTime<Utc>,
    /// Why the last refresh failed, until one succeeds.
    failure: Option<String>,
}

/// A held lock, released when dropped.
pub struct Lock {
    backend: Arc<dyn Backend>,
    state: Arc<Mutex<State>>,
    timing: LockTiming,
    /// Dropping it wakes the refresher at once and tells it to stop.
    stop: Option<mpsc::Sender<()>>,
    refresher: Option<JoinHandle<()>>,
    warnings: Vec<String>,
}

impl std::fmt::Debug for Lock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lock").finish_non_exhaustive()
    }
}

fn state(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What this process is, as lock files record it.
#[derive(Debug)]
struct ThisProcess {
    host: String,
    boot_id: Option<String>,
    pid_namespace: Option<String>,
    start_time: Option<u64>,
    /// Whether `/proc` shows this process's pid namespace (its `self` is our pid): only then do
    /// `/proc/PID` paths name the processes of lock files written in it.
    proc_is_ours: bool,
}

fn this_process() -> &'static ThisProcess {
    static THIS: OnceLock<ThisProcess> = OnceLock::new();
    THIS.get_or_init(|| {
        let read = |path: &str| {
            std::fs::read_to_string(path)
                .ok()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
        };
        let link = |path: &str| {
            std::fs::read_link(path)
                .ok()
                .map(|p| p.to_string_lossy().into_owned())
        };
        let pid = std::process::id();
        ThisProcess {
            host: read("/proc/sys/kernel/hostname").unwrap_or_default(),
            boot_id: read("/proc/sys/kernel/random/boot_id"),
            pid_namespace: link("/proc/self/ns/pid"),
            start_time: start_time(pid).ok().flatten(),
            proc_is_ours: link("/proc/self").is_some_and(|p| p == pid.to_string()),
        }
    })
}

/// The start time of process `pid` (field 22 of `/proc/PID/stat`), `None` if it has none
/// readable; `NotFound` if there is no such process.
fn start_time(pid: u32) -> std::io::Result<Option<u64>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) is in parentheses and may hold spaces and parentheses: the
    // fields after the last ')' are the 3rd onwards.
    Ok(stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(22 - 3))
        .and_then(|f| f.parse().ok()))
}

/// Whether a lock's holder ran on this machine, in this pid namespace, and has exited (killed,
/// crashed): its lock is stale at once, not after [`STALE_AFTER`]. Anything unknown means alive.
fn holder_is_gone(file: &LockFile) -> bool {
    let me = this_process();
    let same_place = me.proc_is_ours
        && me.boot_id.is_some()
        && me.pid_namespace.is_some()
        && file.boot_id == me.boot_id
        && file.pid_namespace == me.pid_namespace;
    if !same_place {
        return false;
    }
    match start_time(file.pid) {
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
        // The pid is in use: by the holder, unless it started at another time.
        Ok(started) => matches!((file.start_time, started), (Some(a), Some(b)) if a != b),
    }
}

/// Whether a name in `locks/` is one this program writes: 32 lowercase hex digits.
fn is_lock_name(name: &str) -> bool {
    name.len() == 32
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Writes a fresh lock; returns its name and time.
fn write_lock(backend: &dyn Backend, kind: LockKind) -> Result<(String, DateTime<Utc>), RepoError> {
    let me = this_process();
    let file = LockFile {
        kind: kind.as_str().into(),
        host: me.host.clone(),
        pid: std::process::id(),
        time: Utc::now(),
        boot_id: me.boot_id.clone(),
        pid_namespace: me.pid_namespace.clone(),
        start_time: me.start_time,
    };
    let mut name = [0u8; 16];
    crypto::random(&mut name)?;
    let name = hex::encode(name);
    let json = serde_json::to_vec(&file).map_err(|e| RepoError::Corrupt(e.to_string()))?;
    backend.put(FileKind::Lock, &name, &json)?;
    Ok((name, file.time))
}

/// Decodes a lock file. Bytes from the store: checked, never trusted.
pub fn decode_lock(bytes: &[u8]) -> Result<LockFile, String> {
    if bytes.len() as u64 > MAX_LOCK_BYTES {
        return Err(format!(
            "{} bytes, more than a lock's {MAX_LOCK_BYTES}",
            bytes.len()
        ));
    }
    let file: LockFile = serde_json::from_slice(bytes).map_err(|e| format!("not a lock: {e}"))?;
    if file.kind != "shared" && file.kind != "exclusive" {
        return Err(format!("a lock of unknown kind {:?}", file.kind));
    }
    Ok(file)
}

/// Reads another process's lock: `Ok(None)` if it was released meanwhile, `Err(why)` if it
/// cannot be read or understood (which counts as held).
fn read_lock(backend: &dyn Backend, name: &str, size: u64) -> Result<Option<LockFile>, String> {
    if size > MAX_LOCK_BYTES {
        return Err(format!("{size} bytes, more than a lock's {MAX_LOCK_BYTES}"));
    }
    match backend.get(FileKind::Lock, name) {
        Ok(bytes) => decode_lock(&bytes).map(Some),
        Err(BackendError::NotFound(_)) => Ok(None),
        Err(e) => Err(format!("it cannot be read: {e}")),
    }
}

/// Looks at every other lock; fails if one excludes a lock of `kind`. Stale locks are removed
/// by exclusive lockers; names that are not locks are skipped with a warning.
fn check_others(
    backend: &dyn Backend,
    kind: LockKind,
    own: &str,
    timing: &LockTiming,
    warnings: &mut Vec<String>,
) -> Result<(), RepoError> {
    let now = Utc::now();
    for (other, size) in backend.list(FileKind::Lock)? {
        if other == own {
            continue;
        }
        if !is_lock_name(&other) {
            let warning = format!("locks/{other}: not a lock (its name is not 32 hex digits); ignored");
            if !warnings.contains(&warning) {
                warnings.push(warning);
            }
            continue;
        }
        let file = match read_lock(backend, &other, size) {
            Ok(Some(file)) => file,
            Ok(None) => continue,
            Err(reason) => {
                return Err(RepoError::UnreadableLock {
                    path: format!("{}/{}", backend.location(), FileKind::Lock.path(&other)),
                    reason,
                })
            }
        };
        // A lock dated in the future (clock skew) is young.
        let age = (now - file.time).to_std().unwrap_or_default();
        if age > timing.stale_after || holder_is_gone(&file) {
            if kind == LockKind::Exclusive {
                let _ = backend.delete(FileKind::Lock, &other);
            }
            continue;
        }
        if kind == LockKind::Exclusive || file.kind == "exclusive" {
            let holder = format!(
                "a {} lock of process {} on {} since {}",
                file.kind,
                file.pid,
                if file.host.is_empty() { "?" } else { &file.host },
                file.time.to_rfc3339()
            );
            let expiry = format!("at {}", (file.time + timing.stale_after).to_rfc3339());
            return Err(RepoError::Locked(holder, expiry));
        }
    }
    Ok(())
}

impl Lock {
    /// Takes a lock with the default timing, or fails with `Locked` if a live conflicting lock
    /// exists (`UnreadableLock` if a lock that cannot be read might be one).
    pub fn acquire(backend: Arc<dyn Backend>, kind: LockKind) -> Result<Self, RepoError> {
        Self::acquire_with(backend, kind, LockTiming::default())
    }

    /// Takes a lock with the given timing.
    pub fn acquire_with(
        backend: Arc<dyn Backend>,
        kind: LockKind,
        timing: LockTiming,
    ) -> Result<Self, RepoError> {
        let (name, time) = write_lock(backend.as_ref(), kind)?;
        // Check after writing: two lockers that race both see each other and both back off,
        // never both proceed. An exclusive locker looks twice, across a pause, so that a lock
        // being refreshed during the first look is seen in the second.
        let mut warnings = Vec::new();
        let looks = if kind == LockKind::Exclusive { 2 } else { 1 };
        for look in 0..looks {
            if look > 0 {
                std::thread::sleep(timing.recheck_after);
            }
            if let Err(e) = check_others(backend.as_ref(), kind, &name, &timing, &mut warnings) {
                let _ = backend.delete(FileKind::Lock, &name);
                return Err(e);
            }
        }
        let state = Arc::new(Mutex::new(State {
            name,
            time,
            failure: None,
        }));
        let (stop, stopped) = mpsc::channel();
        let refresher = {
            let (backend, state) = (backend.clone(), state.clone());
            std::thread::spawn(move || refresh(backend.as_ref(), kind, &state, &timing, &stopped))
        };
        Ok(Self {
            backend,
            state,
            timing,
            stop: Some(stop),
            refresher: Some(refresher),
            warnings,
        })
    }

    /// What acquiring saw that is not a lock (stray files in `locks/`).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Fails unless the lock is certainly still held: its last refresh did not fail, it is
    /// younger than half of [`LockTiming::stale_after`] (no one can judge it stale for a long
    /// while yet), and its file is still there (no one judged it stale already). A backup asks
    /// before each index file and before its restore point: a prune may be running otherwise.
    pub fn ensure_held(&self) -> Result<(), RepoError> {
        let (name, time, failure) = {
            let s = state(&self.state);
            (s.name.clone(), s.time, s.failure.clone())
        };
        if let Some(failure) = failure {
            return Err(RepoError::LockLost(format!("its refresh failed: {failure}")));
        }
        let age = (Utc::now() - time).to_std().unwrap_or_default();
        if age > self.timing.stale_after / 2 {
            return Err(RepoError::LockLost(format!(
                "it was last refreshed {} s ago, and others judge it stale after {} s",
                age.as_secs(),
                self.timing.stale_after.as_secs()
            )));
        }
        match self.backend.get(FileKind::Lock, &name) {
            Ok(_) => Ok(()),
            Err(BackendError::NotFound(_)) => Err(RepoError::LockLost(format!(
                "locks/{name} was removed by another process (which judged it stale)"
            ))),
            Err(e) => Err(RepoError::LockLost(format!("it cannot be read back: {e}"))),
        }
    }
}

/// Replaces the lock with a fresh one every `refresh_every` until the lock is dropped; the old
/// one goes `overlap` after the new one is written. A failed refresh is recorded (for
/// [`Lock::ensure_held`]) and tried again after `retry_after`; the old lock stays meanwhile.
fn refresh(
    backend: &dyn Backend,
    kind: LockKind,
    state: &Mutex<State>,
    timing: &LockTiming,
    stopped: &mpsc::Receiver<()>,
) {
    let mut wait = timing.refresh_every;
    while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(wait) {
        match write_lock(backend, kind) {
            Ok((fresh, time)) => {
                let old = {
                    let mut s = crate::lock::state(state);
                    s.time = time;
                    s.failure = None;
                    std::mem::replace(&mut s.name, fresh)
                };
                let stopping = !matches!(
                    stopped.recv_timeout(timing.overlap),
                    Err(RecvTimeoutError::Timeout)
                );
                let _ = backend.delete(FileKind::Lock, &old);
                if stopping {
                    return;
                }
                wait = timing.refresh_every;
            }
            Err(e) => {
                crate::lock::state(state).failure = Some(e.to_string());
                wait = timing.retry_after;
            }
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.refresher.take() {
            let _ = t.join();
        }
        let name = state(&self.state).name.clone();
        let _ = self.backend.delete(FileKind::Lock, &name);
    }
}

#[cfg(test)]
#[path = "lock_tests.rs"]
mod tests;
