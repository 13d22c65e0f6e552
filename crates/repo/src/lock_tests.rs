use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use bulwark_storage::testing::{Faulty, Op};
use bulwark_storage::MemoryBackend;

/// A timing that runs refreshes within a test's patience.
fn fast() -> LockTiming {
    LockTiming {
        refresh_every: Duration::from_millis(40),
        stale_after: STALE_AFTER,
        overlap: Duration::from_millis(15),
        recheck_after: Duration::from_millis(30),
        retry_after: Duration::from_millis(20),
    }
}

/// pid_max on Linux is at most 2^22: this pid cannot exist.
const DEAD_PID: u32 = 1 << 23;

fn lock_here(pid: u32) -> LockFile {
    let me = this_process();
    LockFile {
        kind: "shared".into(),
        host: me.host.clone(),
        pid,
        time: Utc::now(),
        boot_id: me.boot_id.clone(),
        pid_namespace: me.pid_namespace.clone(),
        start_time: None,
    }
}

fn put(backend: &dyn Backend, name: &str, file: &LockFile) {
    backend
        .put(FileKind::Lock, name, &serde_json::to_vec(file).unwrap())
        .unwrap();
}

fn name(n: u8) -> String {
    format!("{n:02x}").repeat(16)
}

fn exclusive(backend: &Arc<dyn Backend>) -> Result<Lock, RepoError> {
    Lock::acquire_with(backend.clone(), LockKind::Exclusive, fast())
}

fn shared(backend: &Arc<dyn Backend>) -> Result<Lock, RepoError> {
    Lock::acquire_with(backend.clone(), LockKind::Shared, fast())
}

#[test]
fn shared_locks_coexist_and_exclude_an_exclusive_one() {
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::default());
    let a = shared(&backend).unwrap();
    let b = shared(&backend).unwrap();
    assert!(matches!(exclusive(&backend), Err(RepoError::Locked(..))));
    drop((a, b));
    assert!(backend.list(FileKind::Lock).unwrap().is_empty());
    let x = exclusive(&backend).unwrap();
    assert!(matches!(shared(&backend), Err(RepoError::Locked(..))));
    drop(x);
    assert!(shared(&backend).is_ok());
}

#[test]
fn locks_of_exited_processes_of_this_pid_namespace_are_stale_at_once() {
    if !this_process().proc_is_ours || this_process().boot_id.is_none() {
        return; // no /proc of our own: nothing can be judged
    }
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::default());
    put(backend.as_ref(), &name(1), &lock_here(DEAD_PID));
    // Our own pid, but a process that started at another time: the pid was reused.
    let reused = LockFile {
        start_time: this_process().start_time.map(|t| t + 1),
        ..lock_here(std::process::id())
    };
    put(backend.as_ref(), &name(2), &reused);
    let x = exclusive(&backend).expect("the dead holders' locks do not count");
    assert_eq!(backend.list(FileKind::Lock).unwrap().len(), 1, "and are removed");
    drop(x);
}

#[test]
fn a_host_name_and_a_pid_alone_do_not_make_a_lock_stale() {
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::default());
    // Written before locks had a boot id and a pid namespace: judged by its age only.
    let old_format = LockFile {
        boot_id: None,
        pid_namespace: None,
        ..lock_here(DEAD_PID)
    };
    put(backend.as_ref(), &name(1), &old_format);
    assert!(matches!(exclusive(&backend), Err(RepoError::Locked(..))));
    backend.delete(FileKind::Lock, &name(1)).unwrap();
    // The same host and boot, another container: its pid 8388608 is not ours to look up.
    let other_container = LockFile {
        pid_namespace: Some("pid:[1]".into()),
        ..lock_here(DEAD_PID)
    };
    put(backend.as_ref(), &name(2), &other_container);
    assert!(matches!(exclusive(&backend), Err(RepoError::Locked(..))));
    backend.delete(FileKind::Lock, &name(2)).unwrap();
    // Another machine.
    let elsewhere = LockFile {
        boot_id: Some("0f1e2d3c-0000-4000-8000-000000000000".into()),
        ..lock_here(DEAD_PID)
    };
    put(backend.as_ref(), &name(3), &elsewhere);
    assert!(matches!(exclusive(&backend), Err(RepoError::Locked(..))));
}

#[test]
fn stale_locks_are_ignored_and_removed() {
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::default());
    let old = LockFile {
        kind: "exclusive".into(),
        host: "gone".into(),
        pid: 1,
        time: Utc::now() - STALE_AFTER * 2,
        boot_id: None,
        pid_namespace: None,
        start_time: None,
    };
    put(backend.as_ref(), &name(9), &old);
    let x = exclusive(&backend).unwrap();
    assert_eq!(
        backend.list(FileKind::Lock).unwrap().len(),
        1,
        "the stale lock is removed"
    );
    drop(x);
}

#[test]
fn a_lock_that_cannot_be_understood_counts_as_held_by_anyone() {
    for (what, content) in [
        ("garbage", b"\x00\x01 not json".to_vec()),
        ("truncated", b"{\"kind\":\"shared\",\"host\":\"h\"".to_vec()),
        (
            "unknown kind",
            br#"{"kind":"superexclusive","host":"h","pid":1,"time":"2026-01-01T00:00:00Z"}"#.to_vec(),
        ),
        ("huge", vec![b' '; 100_000]),
    ] {
        let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::default());
        backend.put(FileKind::Lock, &name(1), &content).unwrap();
        for result in [shared(&backend), exclusive(&backend)] {
            match result {
                Err(RepoError::UnreadableLock { path, .. }) => {
                    assert!(path.ends_with(&format!("locks/{}", name(1))), "{what}: {path}");
                }
                other => panic!("{what}: expected UnreadableLock, got {other:?}"),
            }
        }
        assert_eq!(
            backend.list(FileKind::Lock).unwrap().len(),
            1,
            "{what}: never removed, and the failed lockers left nothing"
        );
    }
}

#[test]
fn a_lock_that_cannot_be_fetched_counts_as_held() {
    let inner: Arc<dyn Backend> = Arc::new(MemoryBackend::default());
    let other = shared(&inner).unwrap();
    let faulty = Arc::new(Faulty::new(inner));
    faulty.fail_when(|op| match op {
        Op::Get(FileKind::Lock, _) => Some(BackendError::Remote {
            operation: "GET",
            path: "locks/x".into(),
            message: "AccessDenied".into(),
            retryable: false,
        }),
        _ => None,
    });
    let backend: Arc<dyn Backend> = faulty;
    let err = shared(&backend).unwrap_err();
    assert!(matches!(err, RepoError::UnreadableLock { .. }), "{err}");
    assert!(err.to_string().contains("AccessDenied"), "{err}");
    drop(other);
}

#[test]
fn stray_files_in_locks_are_skipped_with_a_warning() {
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::default());
    backend.put(FileKind::Lock, "README", b"not a lock").unwrap();
    let lock = exclusive(&backend).expect("a stray file is not a lock");
    assert_eq!(lock.warnings().len(), 1, "{:?}", lock.warnings());
    assert!(lock.warnings()[0].contains("locks/README"));
    drop(lock);
    assert_eq!(
        backend.list(FileKind::Lock).unwrap(),
        vec![("README".to_owned(), 10)],
        "and left alone"
    );
}

#[test]
fn the_refresher_writes_the_new_lock_before_it_removes_the_old() {
    let faulty = Arc::new(Faulty::new(Arc::new(MemoryBackend::default())));
    let backend: Arc<dyn Backend> = faulty.clone();
    let lock = shared(&backend).unwrap();
    std::thread::sleep(Duration::from_millis(250));
    drop(lock);
    let mut live: Vec<String> = Vec::new();
    let (mut puts, mut deletes) = (0, 0);
    let log: Vec<Op> = faulty
        .log()
        .into_iter()
        .filter(|op| !matches!(op, Op::List(_) | Op::Get(..)))
        .collect();
    for (i, op) in log.iter().enumerate() {
        match op {
            Op::Put(FileKind::Lock, n) => {
                puts += 1;
                live.push(n.clone());
            }
            Op::Delete(FileKind::Lock, n) => {
                deletes += 1;
                live.retain(|l| l != n);
                assert!(
                    !live.is_empty() || i == log.len() - 1,
                    "no lock visible after operation {i} of {log:?}"
                );
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(puts >= 3, "refreshed at least twice: {log:?}");
    assert_eq!(puts, deletes, "every lock removed in the end");
}

#[test]
fn an_exclusive_locker_looks_twice_so_a_refresh_in_flight_is_seen() {
    let inner: Arc<dyn Backend> = Arc::new(MemoryBackend::default());
    let backup = shared(&inner).unwrap();
    let faulty = Arc::new(Faulty::new(inner));
    // The first listing misses the backup's lock, as one running while the lock is replaced
    // can on a store whose listings are not atomic.
    let hidden = state(&backup.state).name.clone();
    let listings = AtomicUsize::new(0);
    faulty.filter_lists(move |kind, mut listed| {
        if kind == FileKind::Lock && listings.fetch_add(1, Ordering::Relaxed) == 0 {
            listed.retain(|(n, _)| *n != hidden);
        }
        listed
    });
    let backend: Arc<dyn Backend> = faulty.clone();
    assert!(matches!(exclusive(&backend), Err(RepoError::Locked(..))));
    drop(backup);
}

#[test]
fn a_holder_learns_when_its_lock_cannot_be_vouched_for() {
    let faulty = Arc::new(Faulty::new(Arc::new(MemoryBackend::default())));
    let backend: Arc<dyn Backend> = faulty.clone();
    let lock = shared(&backend).unwrap();
    lock.ensure_held().unwrap();
    // Refreshes fail: the store refuses new lock files.
    faulty.fail_when(|op| match op {
        Op::Put(FileKind::Lock, _) => Some(BackendError::Remote {
            operation: "PUT",
            path: "locks/x".into(),
            message: "SlowDown (still failing after retries)".into(),
            retryable: true,
        }),
        _ => None,
    });
    std::thread::sleep(Duration::from_millis(120));
    let err = lock.ensure_held().unwrap_err();
    assert!(matches!(err, RepoError::LockLost(_)), "{err}");
    assert!(err.to_string().contains("SlowDown"), "{err}");
    assert_eq!(
        faulty.inner().list(FileKind::Lock).unwrap().len(),
        1,
        "the old lock stays while refreshes fail"
    );
    // The store recovers: the next refresh succeeds.
    faulty.fail_when(|_| None);
    std::thread::sleep(Duration::from_millis(120));
    lock.ensure_held().unwrap();
    // Someone removes the lock (judging it stale).
    for (name, _) in faulty.inner().list(FileKind::Lock).unwrap() {
        faulty.inner().delete(FileKind::Lock, &name).unwrap();
    }
    // Catch it between refreshes: the refresher writes a new one every 40 ms.
    let mut lost = false;
    for _ in 0..50 {
        if matches!(lock.ensure_held(), Err(RepoError::LockLost(_))) {
            lost = true;
            break;
        }
        for (name, _) in faulty.inner().list(FileKind::Lock).unwrap() {
            faulty.inner().delete(FileKind::Lock, &name).unwrap();
        }
    }
    assert!(lost, "a removed lock is noticed");
    drop(lock);
}
