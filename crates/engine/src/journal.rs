//! What a session's journal records: every resource it created and how to remove it, so that
//! after a failure, or after the appliance itself was killed, the next start removes exactly
//! what is left (`Engine::recover`). Each entry is made durable by the state store
//! ([`crate::store`]) before the session goes on.
//!
//! The journal outlives the process that wrote it, so it is versioned: its first entry says
//! which version wrote it, and a reader refuses a version it does not know.

use bulwark_cloud::Tag;
use bulwark_model::{AccountId, Action, ImageId, InstanceId, Region, RoleArn, SnapshotId, VolumeId};
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
    /// An image.
    Image(Region, ImageId),
}

impl Target {
    /// The AWS id of a kept result (a snapshot, a volume, an instance), as users look it up.
    pub fn resource_id(&self) -> Option<String> {
        match self {
            Target::Snapshot(_, id) => Some(id.to_string()),
            Target::Volume(_, id) => Some(id.to_string()),
            Target::Instance(_, id) => Some(id.to_string()),
            _ => None,
        }
    }
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

/// How to find what a call created when its answer never came (lost, or the appliance died
/// before it could journal it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Finder {
    /// EC2 resources of the caller carrying `tags` (the session's and the call's own).
    Tagged {
        /// What kind of resource.
        kind: Ec2Kind,
        /// Where.
        region: Region,
        /// The tags the call gave it.
        tags: Vec<Tag>,
    },
    /// The session's queue, by name.
    Queue {
        /// Where.
        region: Region,
        /// Its name.
        name: String,
    },
    /// A resource known before it is made (an IAM role of the session's name, a share, an
    /// attachment): its removal treats "not found" as removed.
    Named(Target),
}

/// The kinds of EC2 resources a [`Finder`] looks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ec2Kind {
    /// Snapshots (made by CreateSnapshots, CreateSnapshot, CopySnapshot, StartSnapshot).
    Snapshot,
    /// Volumes.
    Volume,
    /// Instances.
    Instance,
    /// Images.
    Image,
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
    /// A call that creates something is about to be made: written before the call, so that
    /// if its answer never comes, what it made is found and removed all the same.
    Intent {
        /// The call, in words.
        name: String,
        /// Who removes what it makes, and with which call.
        actor: Option<RoleArn>,
        /// The removal call.
        action: Action,
        /// How to find what it made.
        finder: Finder,
        /// Whether what it makes outlives a successful session.
        kept: bool,
    },
    /// The call of an intent answered, and what it made is journaled as created.
    Settled {
        /// The intent's name.
        name: String,
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
    /// What the session made and did not remove, in the order it was made.
    pub left: Vec<Left>,
    /// Whether the session's work succeeded (then kept resources stay).
    pub succeeded: bool,
    /// Whether the journal is closed (nothing left).
    pub closed: bool,
}

/// One thing a session may have left.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Left {
    /// A resource it made.
    Made {
        /// The plan's name for it.
        name: String,
        /// How to remove it.
        undo: Undo,
        /// Whether it outlives a successful session.
        kept: bool,
    },
    /// What a call whose answer never came may have made: to be found, then removed.
    Unknown(Unsettled),
}

impl Left {
    /// Its name in the journal.
    pub fn name(&self) -> &str {
        match self {
            Left::Made { name, .. } => name,
            Left::Unknown(u) => &u.name,
        }
    }

    /// Whether it outlives a successful session.
    pub fn kept(&self) -> bool {
        match self {
            Left::Made { kept, .. } => *kept,
            Left::Unknown(u) => u.kept,
        }
    }
}

/// A creating call whose answer never came.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unsettled {
    /// The call, in words.
    pub name: String,
    /// Who removes what it made.
    pub actor: Option<RoleArn>,
    /// The removal call.
    pub action: Action,
    /// How to find what it made.
    pub finder: Finder,
    /// Whether what it made outlives a successful session.
    pub kept: bool,
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
    let position = |left: &[Left], name: &str, made: bool| {
        left.iter()
            .rposition(|l| l.name() == name && matches!(l, Left::Made { .. }) == made)
    };
    for entry in entries {
        match entry {
            Entry::Started { version, .. } if *version > VERSION => {
                return Err(ReplayError::Version(*version))
            }
            Entry::Started { .. } => {}
            Entry::Intent {
                name,
                actor,
                action,
                finder,
                kept,
            } => out.left.push(Left::Unknown(Unsettled {
                name: name.clone(),
                actor: actor.clone(),
                action: *action,
                finder: finder.clone(),
                kept: *kept,
            })),
            Entry::Settled { name } => {
                if let Some(i) = position(&out.left, name, false) {
                    out.left.remove(i);
                }
            }
            Entry::Created { name, undo, kept } => out.left.push(Left::Made {
                name: name.clone(),
                undo: undo.clone(),
                kept: *kept,
            }),
            Entry::Removed { name } => {
                if let Some(i) = position(&out.left, name, true).or_else(|| position(&out.left, name, false))
                {
                    out.left.remove(i);
                }
            }
            Entry::Succeeded => out.succeeded = true,
            Entry::Closed => out.closed = true,
        }
    }
    Ok(out)
}
