//! A repository whose store holds what this program did not write: damaged, misnamed, foreign
//! or planted files. Nothing of it may stop the repository from opening with a good key, and
//! nothing of it may be obeyed (like a key file's demand for terabytes of memory).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use bulwark_repo::{Id, RepoError, Repository, Secret};
use bulwark_storage::{Backend, FileKind, MemoryBackend};

const PASSPHRASE: &str = "correct horse battery staple";

fn secret() -> Secret {
    Secret::Passphrase(PASSPHRASE.into())
}

/// Stores `bytes` as a key file under the hash of its content, as a writer would.
fn put_key(backend: &dyn Backend, bytes: &[u8]) -> String {
    let name = Id::of_file(bytes).to_hex();
    backend.put(FileKind::Key, &name, bytes).unwrap();
    name
}

/// A key file asking for 4 GiB of argon2 memory (which a client obeying it would allocate
/// before it could tell the passphrase is wrong).
fn greedy_key() -> Vec<u8> {
    format!(
        r#"{{"kind":"passphrase","kdf":{{"algorithm":"argon2id","memory_kib":4194304,"passes":1,"lanes":1,"salt":"{}"}},"wrapped":"{}"}}"#,
        "11".repeat(16),
        "22".repeat(92)
    )
    .into_bytes()
}

fn planted_keys(backend: &dyn Backend) -> Vec<u8> {
    // Damaged: not JSON.
    put_key(backend, b"\x89PNG not a key");
    put_key(backend, &greedy_key());
    // The key of another repository, with the same passphrase: it unwraps, but its key does
    // not open this config.
    let other = Arc::new(MemoryBackend::default());
    Repository::init(other.clone(), &secret()).unwrap();
    let (name, _) = other.list(FileKind::Key).unwrap().remove(0);
    let foreign = other.get(FileKind::Key, &name).unwrap();
    put_key(backend, &foreign);
    foreign
}

#[test]
fn a_bad_key_file_does_not_hide_a_good_one() {
    let backend = Arc::new(MemoryBackend::default());
    Repository::init(backend.clone(), &secret()).unwrap();
    let (good, _) = backend.list(FileKind::Key).unwrap().remove(0);
    let good_bytes = backend.get(FileKind::Key, &good).unwrap();
    planted_keys(backend.as_ref());
    // The good key under a name that is not its hash as well.
    backend.put(FileKind::Key, &"ff".repeat(32), &good_bytes).unwrap();
    let started = std::time::Instant::now();
    Repository::open(backend.clone(), &secret()).expect("the good key opens it");
    assert!(
        started.elapsed().as_secs() < 20,
        "no key's demands are obeyed: {:?}",
        started.elapsed()
    );
}

#[test]
fn when_no_key_opens_the_bad_key_files_are_named() {
    let backend = Arc::new(MemoryBackend::default());
    Repository::init(backend.clone(), &secret()).unwrap();
    let (good, _) = backend.list(FileKind::Key).unwrap().remove(0);
    let good_bytes = backend.get(FileKind::Key, &good).unwrap();
    backend.delete(FileKind::Key, &good).unwrap();
    planted_keys(backend.as_ref());
    let misnamed = "ff".repeat(32);
    backend.put(FileKind::Key, &misnamed, &good_bytes).unwrap();
    let err = Repository::open(backend.clone(), &secret()).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, RepoError::NoKeyOpens { .. }), "{text}");
    for says in [
        "memory of 4194304 KiB is above the bound of 1048576 KiB",
        &format!("keys/{misnamed}: its name is not the hash of its content"),
        "does not open the config",
        "expected value",
    ] {
        assert!(text.contains(says), "{says:?} missing from: {text}");
    }
    // A wrong passphrase with only sound key files is the plain error.
    let clean = Arc::new(MemoryBackend::default());
    Repository::init(clean.clone(), &secret()).unwrap();
    let err = Repository::open(clean, &Secret::Passphrase("wrong".into())).unwrap_err();
    assert!(matches!(err, RepoError::WrongSecret(1)), "{err}");
}

#[test]
fn stray_files_are_skipped_with_a_warning() {
    let backend = Arc::new(MemoryBackend::default());
    let repo = Repository::init(backend.clone(), &Secret::KeyFile([3; 32])).unwrap();
    for (kind, name) in [
        (FileKind::Index, ".4f2a.tmp"),
        (FileKind::Index, "README"),
        (FileKind::Point, "notes.txt"),
        (FileKind::Point, &"AB".repeat(32)),
        (FileKind::Pack, "ab-copy"),
        (FileKind::Key, "backup.txt"),
    ] {
        backend.put(kind, name, b"not ours").unwrap();
    }
    let repo2 = Repository::open(backend.clone(), &Secret::KeyFile([3; 32])).expect("opens");
    let index = repo.load_index().expect("the index loads");
    assert!(index.files.is_empty());
    assert!(repo.points().expect("points list").is_empty());
    let warnings = repo.take_warnings();
    for name in ["index/.4f2a.tmp", "index/README", "points/notes.txt"] {
        assert!(
            warnings.iter().any(|w| w.starts_with(name)),
            "{name} not in {warnings:?}"
        );
    }
    assert!(repo.take_warnings().is_empty(), "taken once");
    drop(repo2);
}

#[test]
fn a_damaged_index_file_is_skipped_by_readers() {
    let backend = Arc::new(MemoryBackend::default());
    let repo = Repository::init(backend.clone(), &Secret::KeyFile([3; 32])).unwrap();
    // Named by its hash, so it passes the name check, but it does not open.
    let junk = b"sealed by nobody".to_vec();
    backend
        .put(FileKind::Index, &Id::of_file(&junk).to_hex(), &junk)
        .unwrap();
    assert!(repo.load_index().unwrap().files.is_empty());
    let warnings = repo.take_warnings();
    assert!(
        warnings.iter().any(|w| w.contains("failed authentication")),
        "{warnings:?}"
    );
}
