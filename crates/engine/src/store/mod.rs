//! Where what outlives a session lives: each session's journal, owned by the process that runs
//! the session through a lease, and the catalog of snapshot restore points. [`FileStore`] keeps
//! them in the appliance's data directory (the command line, one appliance); the appliance's
//! database implements the same traits for several appliances over one database.
//!
//! A lease is what lets recovery tell a dead session from a live one: a session's journal is
//! written only by the holder of its lease, the lease lapses when its holder dies, and only a
//! journal whose lease has lapsed is recovered. Two sessions at once, in one process or two,
//! never tear each other down.

mod file;

use bulwark_model::{AccountId, KeyRef, Region, SnapshotId, VolumeId};
use serde::{Deserialize, Serialize};

pub use file::FileStore;

use crate::journal::Entry;
use crate::{EngineError, SessionId};

/// One snapshot restore point.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotPoint {
    /// The production volume.
    pub volume: VolumeId,
    /// The account that owns the snapshot.
    pub account: AccountId,
    /// Its region.
    pub region: Region,
    /// The snapshot.
    pub snapshot: SnapshotId,
    /// The key that encrypts it (`None`: unencrypted).
    #[serde(default)]
    pub key: Option<KeyRef>,
    /// The session that made it.
    pub session: String,
    /// Its instance as it was (`None` in points made before instances were recorded, and
    /// when the instance could not be described).
    #[serde(default)]
    pub instance: Option<crate::record::InstanceRecord>,
}

/// The engine's durable state.
pub trait StateStore: Send + Sync {
    /// Starts the journal of a new session and takes its lease.
    fn begin(&self, session: &SessionId) -> Result<Box<dyn JournalHandle>, EngineError>;
    /// The sessions whose journal is not closed, live or not.
    fn unfinished(&self) -> Result<Vec<SessionId>, EngineError>;
    /// Takes the lease of an unfinished session whose owner is gone; `None` while a live owner
    /// holds it.
    fn take_over(&self, session: &SessionId) -> Result<Option<Box<dyn JournalHandle>>, EngineError>;
    /// Adds snapshot restore points to the catalog.
    fn add_points(&self, points: &[SnapshotPoint]) -> Result<(), EngineError>;
    /// Removes restore points from the catalog (retention deleted their snapshots).
    fn remove_points(&self, snapshots: &[SnapshotId]) -> Result<(), EngineError>;
    /// Every snapshot restore point, oldest first.
    fn points(&self) -> Result<Vec<SnapshotPoint>, EngineError>;
}

/// A session's journal, held with its lease: dropping it releases the lease.
pub trait JournalHandle: Send {
    /// The session.
    fn session(&self) -> &SessionId;
    /// Appends an entry, durable before this returns.
    fn record(&mut self, entry: &Entry) -> Result<(), EngineError>;
    /// The entries recorded so far. An entry the store cannot read is an error that names it,
    /// never skipped: what it recorded would be left behind.
    fn entries(&self) -> Result<Vec<Entry>, EngineError>;
    /// Where the journal is, for messages (a path, or a database row).
    fn location(&self) -> String;
}

/// The latest snapshot restore point of `volume` in `account`/`region`.
pub(crate) fn latest_snapshot(
    store: &dyn StateStore,
    volume: &VolumeId,
    account: &AccountId,
    region: &Region,
) -> Result<Option<SnapshotId>, EngineError> {
    Ok(store
        .points()?
        .into_iter()
        .rev()
        .find(|p| &p.volume == volume && &p.account == account && &p.region == region)
        .map(|p| p.snapshot))
}
