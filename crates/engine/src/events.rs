//! What a host sees of a running session and how it steers it: the session's id, the events it
//! reports, and cancellation.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bulwark_model::Action;
use serde::{Deserialize, Serialize};

/// A session's id: the time it started, then eight hex digits that differ between sessions
/// started in the same second. Sortable, and valid in queue names, IAM names and tags.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionId(String);

impl SessionId {
    /// A new id.
    pub fn new() -> SessionId {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let now = chrono::Utc::now();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let mix = now.timestamp_subsec_nanos() ^ std::process::id().rotate_left(12) ^ n.rotate_left(24);
        SessionId(format!("{}-{:08x}", now.format("%Y%m%dT%H%M%SZ"), mix))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for SessionId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a text is not a session id.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a session id (like 20261201T120000Z-0a1b2c3d: letters, digits and dashes, at most 40)")]
pub struct BadSessionId(String);

impl FromStr for SessionId {
    type Err = BadSessionId;

    /// Session ids name queues (`bulwark-ID`, at most 80 characters) and IAM roles (at most
    /// 64 with `worker-ID-i-...`), so they are short and plain.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let plain =
            !s.is_empty() && s.len() <= 40 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if plain {
            Ok(SessionId(s.to_owned()))
        } else {
            Err(BadSessionId(s.to_owned()))
        }
    }
}

impl Serialize for SessionId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SessionId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// What a running session reports as it goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A step starts (1-based).
    Step {
        /// Its number.
        number: usize,
        /// Of how many.
        of: usize,
        /// Its action.
        action: Action,
        /// Its resource.
        resource: String,
    },
    /// A transfer's progress (a worker's, or the appliance's own without workers).
    Transfer {
        /// Bytes done.
        done: u64,
        /// Bytes in total.
        total: u64,
    },
    /// Something the session's log should say: why a volume is read in full.
    Note {
        /// What, in a sentence.
        message: String,
    },
    /// A resource is being removed.
    Cleanup {
        /// What.
        name: String,
    },
}

/// Receives each event with the id of the session that reports it.
pub type Listener = Arc<dyn Fn(&SessionId, &Event) + Send + Sync>;

/// A session's id and its cancellation, shared between the host and the running session.
/// Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct SessionControl {
    id: SessionId,
    cancelled: Arc<AtomicBool>,
}

impl SessionControl {
    /// The control of a new session.
    pub fn new() -> SessionControl {
        Self::default()
    }

    /// The control of a session whose id the host chose.
    pub fn with_id(id: SessionId) -> SessionControl {
        SessionControl {
            id,
            cancelled: Arc::default(),
        }
    }

    /// The session's id.
    pub fn id(&self) -> &SessionId {
        &self.id
    }

    /// Asks the session to stop: it stops at its next step, or within a second during a
    /// transfer, removes what it created and fails as cancelled.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
    }

    /// Whether the session was asked to stop.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }
}
