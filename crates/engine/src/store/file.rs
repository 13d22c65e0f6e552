//! The state store in a directory: `sessions/ID.journal`, one JSON line per entry, synced
//! (with its directory when the file is new) before a record returns; a session's lease is an
//! exclusive lock on its journal file, which the operating system releases when the process
//! dies. The catalog is `catalog.json`, replaced atomically.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use bulwark_model::SnapshotId;

use super::{JournalHandle, SnapshotPoint, StateStore};
use crate::journal::Entry;
use crate::{EngineError, SessionId};

/// Journals and the catalog in a directory.
#[derive(Debug)]
pub struct FileStore {
    dir: PathBuf,
    /// Serializes this process's catalog updates (others replace the file atomically).
    catalog: Mutex<()>,
}

fn error(path: &Path, e: impl std::fmt::Display) -> EngineError {
    EngineError::Journal {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

impl FileStore {
    /// The store in `dir` (created when first written).
    pub fn new(dir: &Path) -> FileStore {
        FileStore {
            dir: dir.to_path_buf(),
            catalog: Mutex::new(()),
        }
    }

    fn sessions(&self) -> PathBuf {
        self.dir.join("sessions")
    }

    fn journal_path(&self, session: &SessionId) -> PathBuf {
        self.sessions().join(format!("{session}.journal"))
    }

    fn catalog_path(&self) -> PathBuf {
        self.dir.join("catalog.json")
    }

    /// Opens a journal file and takes its lease, unless a live process holds it.
    /// Changes the catalog under its lock, replacing the file atomically.
    fn rewrite_catalog(&self, change: impl FnOnce(&mut Vec<SnapshotPoint>)) -> Result<(), EngineError> {
        let _guard = crate::lock(&self.catalog);
        let path = self.catalog_path();
        let mut all = self.points()?;
        change(&mut all);
        let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
        let bytes = serde_json::to_vec_pretty(&all).map_err(|e| error(&path, e))?;
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            fs::rename(&tmp, &path)
        };
        write().map_err(|e| error(&path, e))?;
        sync_dir(&self.dir)
    }

    fn lease(&self, session: &SessionId, create: bool) -> Result<Option<FileJournal>, EngineError> {
        let path = self.journal_path(session);
        // A new journal is made and locked under a name no one lists, then linked to its own
        // name: another process (a `recover` listing unfinished sessions) never finds it
        // unlocked, and so never takes it over from the session that is starting.
        let opened = if create {
            path.with_extension("journal.new")
        } else {
            path.clone()
        };
        let file = OpenOptions::new()
            .create_new(create)
            .read(true)
            .append(true)
            .open(&opened)
            .map_err(|e| error(&opened, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Ok(None),
            Err(TryLockError::Error(e)) => return Err(error(&opened, e)),
        }
        if create {
            let linked = fs::hard_link(&opened, &path);
            let _ = fs::remove_file(&opened);
            linked.map_err(|e| error(&path, e))?;
            sync_dir(&self.sessions())?;
        }
        Ok(Some(FileJournal {
            session: session.clone(),
            path,
            file,
        }))
    }
}

/// Makes a new directory entry durable.
fn sync_dir(dir: &Path) -> Result<(), EngineError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| error(dir, e))
}

impl StateStore for FileStore {
    fn begin(&self, session: &SessionId) -> Result<Box<dyn JournalHandle>, EngineError> {
        let dir = self.sessions();
        if !dir.is_dir() {
            fs::create_dir_all(&dir).map_err(|e| error(&dir, e))?;
            sync_dir(dir.parent().unwrap_or(&dir))?;
        }
        match self.lease(session, true)? {
            Some(journal) => Ok(Box::new(journal)),
            None => Err(error(
                &self.journal_path(session),
                "another process holds this new journal",
            )),
        }
    }

    fn unfinished(&self) -> Result<Vec<SessionId>, EngineError> {
        let dir = self.sessions();
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(error(&dir, e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let path = entry.map_err(|e| error(&dir, e))?.path();
            if path.extension().is_none_or(|x| x != "journal") {
                continue;
            }
            let session = path
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.parse::<SessionId>().ok())
                .ok_or_else(|| {
                    error(
                        &path,
                        "the file name is not a session id; move it out of the directory",
                    )
                })?;
            let closed = read_entries(&path)?.iter().any(|e| matches!(e, Entry::Closed));
            if !closed {
                out.push(session);
            }
        }
        out.sort();
        Ok(out)
    }

    fn take_over(&self, session: &SessionId) -> Result<Option<Box<dyn JournalHandle>>, EngineError> {
        Ok(self
            .lease(session, false)?
            .map(|j| Box::new(j) as Box<dyn JournalHandle>))
    }

    fn add_points(&self, points: &[SnapshotPoint]) -> Result<(), EngineError> {
        self.rewrite_catalog(|all| all.extend_from_slice(points))
    }

    fn remove_points(&self, snapshots: &[SnapshotId]) -> Result<(), EngineError> {
        self.rewrite_catalog(|all| all.retain(|p| !snapshots.contains(&p.snapshot)))
    }

    fn points(&self) -> Result<Vec<SnapshotPoint>, EngineError> {
        let path = self.catalog_path();
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| error(&path, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(error(&path, e)),
        }
    }
}

/// A journal file, locked.
struct FileJournal {
    session: SessionId,
    path: PathBuf,
    file: File,
}

impl JournalHandle for FileJournal {
    fn session(&self) -> &SessionId {
        &self.session
    }

    fn record(&mut self, entry: &Entry) -> Result<(), EngineError> {
        let mut line = serde_json::to_vec(entry).map_err(|e| error(&self.path, e))?;
        line.push(b'\n');
        self.file.write_all(&line).map_err(|e| error(&self.path, e))?;
        self.file.sync_data().map_err(|e| error(&self.path, e))
    }

    fn entries(&self) -> Result<Vec<Entry>, EngineError> {
        read_entries(&self.path)
    }

    fn location(&self) -> String {
        self.path.display().to_string()
    }
}

/// Reads a journal's entries. A torn last line (the process died while writing it) is
/// ignored: the entry it held was not yet durable, so the call it records had not yet
/// returned. Any other line that does not read is an error naming it.
fn read_entries(path: &Path) -> Result<Vec<Entry>, EngineError> {
    let file = File::open(path).map_err(|e| error(path, e))?;
    let lines: Vec<String> = BufReader::new(file)
        .lines()
        .collect::<Result<_, _>>()
        .map_err(|e| error(path, e))?;
    let last = lines.len().saturating_sub(1);
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        match serde_json::from_str::<Entry>(line) {
            Ok(entry) => out.push(entry),
            Err(_) if i == last => {}
            Err(e) => {
                return Err(error(
                    path,
                    format!(
                        "line {} is damaged ({e}); what it recorded may be left in the cloud: \
                         look for resources tagged bulwark:session={} and remove them, then \
                         move the journal away",
                        i + 1,
                        path.file_stem().and_then(|s| s.to_str()).unwrap_or("?")
                    ),
                ))
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{Target, Undo};

    fn store() -> (tempfile::TempDir, FileStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path());
        (dir, store)
    }

    /// A process that takes over every unfinished session it finds, as `recover` does, never
    /// gets between a new session and its journal's lock.
    #[test]
    fn a_new_journal_is_never_found_unlocked() {
        let (_dir, store) = store();
        let store = std::sync::Arc::new(store);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let recover = {
            let (store, stop) = (store.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut taken = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    for session in store.unfinished().unwrap_or_default() {
                        if let Ok(Some(journal)) = store.take_over(&session) {
                            drop(journal);
                            taken += 1;
                        }
                    }
                }
                taken
            })
        };
        let mut held = Vec::new();
        for _ in 0..200 {
            held.push(store.begin(&SessionId::new()).expect("a new session's journal"));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(
            recover.join().unwrap(),
            0,
            "a journal held by its session was taken over"
        );
        let names: Vec<String> = fs::read_dir(store.sessions())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| n.ends_with(".journal")), "{names:?}");
        drop(held);
    }

    fn created(name: &str) -> Entry {
        Entry::Created {
            name: name.into(),
            undo: Undo {
                actor: None,
                action: bulwark_model::Action::SqsDeleteQueue,
                target: Target::Queue("us-east-1".parse().unwrap(), format!("https://q/{name}")),
            },
            kept: false,
        }
    }

    #[test]
    fn a_live_session_is_not_taken_over_and_a_dead_one_is() {
        let (_dir, store) = store();
        let id = SessionId::new();
        let mut journal = store.begin(&id).unwrap();
        journal.record(&created("queue")).unwrap();
        assert_eq!(store.unfinished().unwrap(), vec![id.clone()]);
        // Held by a live owner (this process, through another open file): not taken.
        assert!(store.take_over(&id).unwrap().is_none());
        drop(journal);
        let taken = store
            .take_over(&id)
            .unwrap()
            .expect("the lease lapsed with its owner");
        assert_eq!(taken.entries().unwrap(), vec![created("queue")]);
    }

    #[test]
    fn a_torn_last_line_is_ignored_and_a_damaged_one_is_reported() {
        let (dir, store) = store();
        let id = SessionId::new();
        let mut journal = store.begin(&id).unwrap();
        journal.record(&created("a")).unwrap();
        drop(journal);
        let path = dir.path().join("sessions").join(format!("{id}.journal"));
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(b"{\"event\":\"crea");
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(
            store.take_over(&id).unwrap().unwrap().entries().unwrap(),
            vec![created("a")]
        );

        let good = serde_json::to_string(&created("b")).unwrap();
        std::fs::write(&path, format!("{{\"event\":\"created\",\"name\":1}}\n{good}\n")).unwrap();
        let error = store
            .take_over(&id)
            .unwrap()
            .unwrap()
            .entries()
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("line 1 is damaged") && error.contains("bulwark:session"),
            "{error}"
        );
    }

    #[test]
    fn a_journal_of_a_newer_format_is_refused() {
        let newer = Entry::Started {
            version: crate::journal::VERSION + 1,
            session: "s".into(),
            summary: String::new(),
        };
        let error = crate::journal::replay(&[newer]).unwrap_err().to_string();
        assert!(error.contains("journal format 2"), "{error}");
    }

    #[test]
    fn the_catalog_keeps_points_across_opens() {
        let (dir, store) = store();
        let point = SnapshotPoint {
            volume: "vol-0123456789abcdef0".parse().unwrap(),
            account: "111111111111".parse().unwrap(),
            region: "us-east-1".parse().unwrap(),
            snapshot: "snap-0123456789abcdef0".parse().unwrap(),
            key: Some(
                "arn:aws:kms:us-east-1:111111111111:key/0a1b2c3d-0000-4000-8000-00000000000a"
                    .parse()
                    .unwrap(),
            ),
            session: "s".into(),
            instance: None,
        };
        store.add_points(std::slice::from_ref(&point)).unwrap();
        assert_eq!(FileStore::new(dir.path()).points().unwrap(), vec![point]);
    }
}
