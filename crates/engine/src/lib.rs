//! Bulwark's engine: runs sessions. A session runs a [`Plan`] against a [`Cloud`] step by
//! step: it assumes each role when the plan says, creates snapshots, volumes, temporary roles
//! and workers, hands each worker its task over the session queue, follows its progress, and
//! removes everything the session created, whatever happens. Every creation is journaled,
//! with the plan's own step that removes it, before the session goes on; after a crash,
//! [`Engine::recover`] removes what a dead session left.
//!
//! A host (the command line, the appliance) gives the engine a plan and a [`SessionControl`]
//! (the session's id, and a way to cancel it), and receives [`Event`]s tagged with that id.
//! The plan given is the plan run: it may have been shown, approved and stored before.
//!
//! The worker program ([`worker::serve`]) lives here too: the same code runs on an EC2 worker
//! instance (`bulwark worker`) and, in the embedded cloud, as a thread.
//!
//! Layout: `session/` runs one session (a module per kind of step), `cleanup` removes what
//! sessions made (also after a crash), `retry` is the one retry policy of every cloud call,
//! `identities` the role sessions, `journal` and `store` what outlives a process, `direct`
//! the data path through the EBS direct APIs, `files` file-level recovery (restore points and
//! snapshots opened as volumes of files), `worker` the worker program, `check` the
//! preflight of an estate's roles and keys.
//!
//! It depends on the cloud traits, not on any cloud: no AWS SDK and no embedded cloud here.
#![deny(missing_docs)]

pub mod block_list;
pub mod channel;
pub mod check;
mod cleanup;
pub mod direct;
pub mod discover;
mod error;
mod events;
pub mod files;
pub mod find;
mod identities;
pub mod incremental;
pub mod journal;
mod maintain;
pub mod record;
pub mod retry;
mod session;
pub mod store;
pub mod worker;

use std::sync::Arc;
use std::time::Duration;

use bulwark_cloud::{Cloud, Credentials};
use bulwark_model::Estate;
use bulwark_plan::{Operation, Plan};

pub use cleanup::Recovery;
pub use error::{EngineError, StepFailure};
pub use events::{BadSessionId, Event, Listener, SessionControl, SessionId};
use identities::Identities;
use journal::Target;
use retry::Retry;
pub use store::{FileStore, JournalHandle, SnapshotPoint, StateStore};

/// What a finished session made.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SessionReport {
    /// The session id.
    pub session: SessionId,
    /// The plan's summary.
    pub summary: String,
    /// What it created and kept: (what, AWS ids).
    pub kept: Vec<(String, Target)>,
    /// Image-level restore points written or restored: (volume, point id).
    pub points: Vec<(String, String)>,
    /// Snapshot restore points made (snapshots and replicas), as the catalog keeps them.
    #[serde(default)]
    pub snapshots: Vec<SnapshotPoint>,
    /// Of an image-level backup, what each volume's restore point read: in full or only the
    /// changes, why, and how much.
    #[serde(default)]
    pub backups: Vec<incremental::VolumeBackup>,
    /// How many steps ran.
    pub steps: usize,
}

/// Runs sessions against one cloud for one estate.
pub struct Engine {
    pub(crate) cloud: Cloud,
    pub(crate) estate: Estate,
    pub(crate) identities: Identities,
    pub(crate) store: Arc<dyn StateStore>,
    /// The repository key-encryption key, hex, handed to workers with their task.
    pub(crate) repository_key: Option<String>,
    events: Option<Listener>,
    /// How long a worker may stay silent before its instance is checked.
    pub(crate) worker_silence: Duration,
    /// How long a worker may take in all.
    pub(crate) worker_timeout: Duration,
    /// How often the repository role's session is renewed during a transfer (for a worker,
    /// sent over the session queue).
    pub(crate) credential_renewal: Duration,
    /// How the calls of steps are retried.
    pub(crate) retry: Retry,
    /// How long a new resource may take to be ready.
    pub(crate) ready_timeout: Duration,
}

impl Engine {
    /// An engine acting as `appliance` on `cloud`, keeping journals and its catalog in
    /// `store`. `repository_key` (64 hex digits) unlocks the repository.
    pub fn new(
        cloud: Cloud,
        estate: Estate,
        appliance: Credentials,
        store: Arc<dyn StateStore>,
        repository_key: Option<String>,
    ) -> Engine {
        Engine {
            identities: Identities::new(cloud.clone(), estate.clone(), appliance),
            store,
            cloud,
            estate,
            repository_key,
            events: None,
            worker_silence: Duration::from_secs(5),
            worker_timeout: Duration::from_secs(6 * 3600),
            credential_renewal: identities::ROLE_SESSION_REUSE,
            retry: Retry::CONTROL,
            ready_timeout: Duration::from_secs(3600),
        }
    }

    /// Keeps journals and the catalog in `store` instead (the appliance's database, so that
    /// another appliance can recover what this one leaves).
    pub fn with_store(mut self, store: Arc<dyn StateStore>) -> Self {
        self.store = store;
        self
    }

    /// Reports events to `f` while sessions run.
    pub fn on_event(mut self, f: Listener) -> Self {
        self.events = Some(f);
        self
    }

    /// Shortens waits (the first retry pause, worker silence) for tests.
    pub fn with_timing(mut self, backoff: Duration, worker_silence: Duration) -> Self {
        self.retry = self.retry.starting_at(backoff);
        self.identities.retry = self.retry;
        self.worker_silence = worker_silence;
        self
    }

    /// Renews the repository role's session this often during transfers (45 minutes by
    /// default, within the hour a role session lasts), for tests of short sessions.
    pub fn with_credential_renewal(mut self, every: Duration) -> Self {
        self.credential_renewal = every.max(Duration::from_secs(1));
        self
    }

    /// Bounds how long a session waits for its worker's result (six hours by default), for
    /// tests of workers that cannot report.
    pub fn with_worker_timeout(mut self, timeout: Duration) -> Self {
        self.worker_timeout = timeout;
        self
    }

    /// The estate the engine acts on.
    pub fn estate(&self) -> &Estate {
        &self.estate
    }

    pub(crate) fn emit(&self, session: &SessionId, event: &Event) {
        if let Some(f) = &self.events {
            f(session, event);
        }
    }

    /// The snapshot restore points made so far.
    pub fn snapshot_points(&self) -> Result<Vec<SnapshotPoint>, EngineError> {
        self.store.points()
    }

    /// Plans `operation` on the engine's estate.
    pub fn plan(&self, operation: &Operation) -> Result<Plan, EngineError> {
        Ok(bulwark_plan::plan(&self.estate, operation)?)
    }

    /// Plans `operation` and runs that plan as a new session: for callers that need not show
    /// the plan first.
    pub fn run_operation(&self, operation: &Operation) -> Result<SessionReport, EngineError> {
        self.run(&self.plan(operation)?)
    }

    /// Runs `plan` as a new session.
    pub fn run(&self, plan: &Plan) -> Result<SessionReport, EngineError> {
        self.run_with(plan, &SessionControl::new())
    }

    /// Runs `plan` as the session `control` names, which the host may cancel meanwhile.
    pub fn run_with(&self, plan: &Plan, control: &SessionControl) -> Result<SessionReport, EngineError> {
        session::run(self, plan, control)
    }

    /// Cleans up after sessions that did not finish (the appliance was killed, or cleanup
    /// failed): answers, per journal, what was removed and what is still left.
    pub fn recover(&self) -> Result<Vec<Recovery>, EngineError> {
        cleanup::recover(self)
    }
}

/// Locks `mutex`. A thread that panicked while holding one of the engine's locks left its value
/// whole (no critical section here stops half way on purpose), so the value is used as is.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Waits on `condvar` with `guard`, as [`lock`] treats a poisoned lock.
pub(crate) fn wait<'g, T>(
    condvar: &std::sync::Condvar,
    guard: std::sync::MutexGuard<'g, T>,
) -> std::sync::MutexGuard<'g, T> {
    condvar
        .wait(guard)
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
