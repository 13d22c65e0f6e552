//! What a session's journal records: every resource it created and how to remove it, so that
//! after a failure, or after the appliance itself was killed, the next start removes exactly
//! what is left (`Engine::recover`). Each entry is made durable by the state store
//! ([`crate::store`]) before the session goes on.
//!
//! The journal outlives the process that wrote it, so it is versioned: its first entry says
//! which version wrote it, and a reader refuses a version it does not know.

use bulwark_model::{AccountId, Action, InstanceId, Region, RoleArn, SnapshotId, VolumeId};
use serde::{Deserialize, Serialize};

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
        /// The journal format's version ([`VERSION`]).
        #[serde(default = "first_version")]
        version: u32,
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

/// The version of the journal format this engine writes and reads.
pub const VERSION: u32 = 1;

/// Journals written before entries carried a version.
fn first_version() -> u32 {
    1
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

/// Why a journal cannot be replayed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// A journal of a newer engine.
    #[error("the journal was written by journal format {0}, and this bulwark knows up to {VERSION}: run the newer bulwark that wrote it")]
    Version(u32),
}

/// Replays a journal's entries into what is left.
pub fn replay(entries: &[Entry]) -> Result<Leftovers, ReplayError> {
    let mut out = Leftovers::default();
    for entry in entries {
        match entry {
            Entry::Started { version, .. } if *version > VERSION => {
                return Err(ReplayError::Version(*version))
            }
            Entry::Started { .. } => {}
            Entry::Created { name, undo, kept } => out.created.push((name.clone(), undo.clone(), *kept)),
            Entry::Removed { name } => {
                if let Some(i) = out.created.iter().rposition(|(n, _, _)| n == name) {
                    out.created.remove(i);
                }
            }
            Entry::Succeeded => out.succeeded = true,
            Entry::Closed => out.closed = true,
        }
    }
    Ok(out)
}
