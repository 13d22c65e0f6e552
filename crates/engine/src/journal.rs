//! The session journal: one file per session, one JSON line per event, flushed to disk before
//! the session goes on. It lists everything the session created and how to remove it, so that
//! after a failure, or after the appliance itself was killed, the next start removes exactly
//! what is left (`Engine::recover`).

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use bulwark_model::{AccountId, Action, InstanceId, Region, RoleArn, SnapshotId, VolumeId};
use serde::{Deserialize, Serialize};

use crate::{EngineError, SessionId};

/// A concrete resource, by its AWS ids.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Target {
    /// A snapshot.
    Snapshot(Region, SnapshotId),
    /// A snapshot's permission for another account.
    Share(Region, SnapshotId, AccountId),
    /// A volume.
    Volume(Region, VolumeId),
    /// A volume attached to an instance.
    Attachment(Region, VolumeId, InstanceId),
    /// An instance.
    Instance(Region, InstanceId),
    /// An IAM role.
    Role(RoleArn),
    /// A role's inline policy.
    RolePolicy(RoleArn, String),
    /// An instance profile, by ARN.
    Profile(String),
    /// A role in an instance profile.
    Membership(String, RoleArn),
    /// A queue, by URL.
    Queue(Region, String),
}

/// How to remove a created resource: who calls which API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Undo {
    /// The role that removes it; `None` for the appliance itself.
    pub actor: Option<RoleArn>,
    /// The API, as in the plan's cleanup step.
    pub action: Action,
    /// What it removes.
    pub target: Target,
}

/// One line of a journal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Entry {
    /// The session started.
    Started {
        /// Session id.
        session: String,
        /// The plan's summary.
        summary: String,
    },
    /// A resource was created. `kept` resources stay when the session succeeds.
    Created {
        /// The plan's name for it.
        name: String,
        /// How to remove it.
        undo: Undo,
        /// Whether it outlives a successful session.
        kept: bool,
    },
    /// A resource was removed.
    Removed {
        /// The plan's name for it.
        name: String,
    },
    /// The session's own work is done; only cleanup of temporary resources remains.
    Succeeded,
    /// Nothing is left to remove.
    Closed,
}

/// An open journal.
pub struct Journal {
    path: PathBuf,
    file: File,
}

fn journal_error(path: &Path, e: impl std::fmt::Display) -> EngineError {
    EngineError::Journal {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

impl Journal {
    /// Creates the journal of a new session in `dir`.
    pub fn create(dir: &Path, session: &SessionId) -> Result<Journal, EngineError> {
        fs::create_dir_all(dir).map_err(|e| journal_error(dir, e))?;
        let path = dir.join(format!("{session}.journal"));
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(|e| journal_error(&path, e))?;
        Ok(Journal { path, file })
    }

    /// Reopens a journal to go on recording (recovery).
    pub fn reopen(path: &Path) -> Result<Journal, EngineError> {
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| journal_error(path, e))?;
        Ok(Journal {
            path: path.to_path_buf(),
            file,
        })
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends an entry and makes it durable before returning.
    pub fn record(&mut self, entry: &Entry) -> Result<(), EngineError> {
        let mut line = serde_json::to_vec(entry).map_err(|e| journal_error(&self.path, e))?;
        line.push(b'\n');
        self.file
            .write_all(&line)
            .map_err(|e| journal_error(&self.path, e))?;
        self.file.sync_data().map_err(|e| journal_error(&self.path, e))
    }
}

/// What a journal says is left.
#[derive(Debug, Default)]
pub struct Leftovers {
    /// Resources created and not removed, in creation order, with whether they are kept.
    pub created: Vec<(String, Undo, bool)>,
    /// Whether the session's work succeeded (then kept resources stay).
    pub succeeded: bool,
    /// Whether the journal is closed (nothing left).
    pub closed: bool,
}

/// Reads a journal. A torn last line (the process died while writing it) is ignored: the
/// entry it held was not yet durable, so the call it records had not yet returned.
pub fn read(path: &Path) -> Result<Leftovers, EngineError> {
    let file = File::open(path).map_err(|e| journal_error(path, e))?;
    let mut out = Leftovers::default();
    for line in BufReader::new(file).lines() {
        let line = line.map_err(|e| journal_error(path, e))?;
        let Ok(entry) = serde_json::from_str::<Entry>(&line) else {
            continue;
        };
        match entry {
            Entry::Started { .. } => {}
            Entry::Created { name, undo, kept } => out.created.push((name, undo, kept)),
            Entry::Removed { name } => {
                if let Some(i) = out.created.iter().rposition(|(n, _, _)| *n == name) {
                    out.created.remove(i);
                }
            }
            Entry::Succeeded => out.succeeded = true,
            Entry::Closed => out.closed = true,
        }
    }
    Ok(out)
}

/// The session a journal file belongs to (its name).
pub fn session_of(path: &Path) -> Result<SessionId, EngineError> {
    path.file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| journal_error(path, "the file name is not a session id"))
}

/// The journals in `dir` that are not closed.
pub fn open_journals(dir: &Path) -> Result<Vec<PathBuf>, EngineError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(journal_error(dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| journal_error(dir, e))?.path();
        if path.extension().is_some_and(|x| x == "journal") && !read(&path)?.closed {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}
