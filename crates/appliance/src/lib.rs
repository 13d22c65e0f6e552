//! The Bulwark appliance (`bulwark serve`): protects an estate unattended. It discovers what runs
//! in each account and region, applies policies on their schedules, keeps and expires restore
//! points, records every session with its items and log, and answers a REST API.
//!
//! Layout: `db/` is the state (SQLite in the data directory or PostgreSQL, one set of portable
//! queries, migrations embedded); `policy` the policies and what they select; `schedule` when
//! they run; `inventory` discovery; `runner` the sessions (policy runs, discovery, restores),
//! on blocking threads, since the engine is synchronous, with `retention` (what policies no
//! longer keep) and `health` (the repository's prune and verify); `scheduler` the loop that
//! starts due runs; `webhook` the calls made when a session ends badly; `auth` the API tokens;
//! `api/` the HTTP routes and the OpenAPI document.
//!
//! It drives the engine it is given ([`Appliance::new`] takes a factory of engines over a
//! [`bulwark_cloud::Cloud`]) and never names a cloud: no AWS SDK, no embedded cloud here. It
//! prints nothing; it logs through `tracing`.
#![deny(missing_docs)]

pub mod api;
pub mod auth;
pub mod db;
mod error;
pub mod health;
pub mod inventory;
pub mod policy;
pub mod retention;
pub mod runner;
pub mod schedule;
pub mod scheduler;
pub mod slots;
pub mod webhook;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bulwark_engine::{Engine, SessionControl};
use bulwark_model::{Estate, Region};

pub use db::Db;
pub use error::ApplianceError;

/// Makes an engine for an estate: the host's cloud, the appliance's credentials and state
/// store, the repository key. The appliance gives it the estate as discovered.
pub type EngineFactory = Arc<dyn Fn(Estate) -> Engine + Send + Sync>;

/// How the appliance runs.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The regions discovered in every account (besides those the estate names).
    pub regions: Vec<Region>,
    /// How often the scheduler looks for due runs.
    pub tick: Duration,
    /// How often the inventory is refreshed; `None` only on demand.
    pub discovery_every: Option<Duration>,
    /// How often the repository's health check (prune, then verify) runs, the first one this
    /// long after the database was made; `None` only on demand.
    pub health_check_every: Option<Duration>,
    /// The name of this appliance, owner of the sessions it runs.
    pub name: String,
    /// How many items of a policy's run are processed at once.
    pub parallel: usize,
    /// How many engine sessions run at once in one account and region (within AWS's quotas).
    pub per_region: usize,
    /// The webhook called when any session ends in `warning` or `failed` (policies may name
    /// their own besides).
    pub webhook: Option<String>,
    /// The key webhook calls are signed with, if any.
    pub webhook_key: Option<webhook::WebhookKey>,
    /// How long the first retry of a failed webhook call waits; each next one twice as long.
    pub webhook_backoff: Duration,
    /// How long the appliance holds a session without renewing its lease: one that died is
    /// known after this, and its sessions are recovered by the next appliance to look.
    pub lease: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            regions: Vec::new(),
            tick: Duration::from_secs(5),
            discovery_every: Some(Duration::from_secs(3600)),
            health_check_every: Some(Duration::from_secs(24 * 3600)),
            parallel: 4,
            per_region: 2,
            webhook: None,
            webhook_key: None,
            webhook_backoff: Duration::from_secs(2),
            // Random: two appliances on one database must never share a name, whatever host
            // and process id they have.
            name: db::new_id("appliance"),
            lease: Duration::from_secs(30),
        }
    }
}

/// The running appliance, shared by the API handlers, the scheduler and the sessions.
pub struct Appliance {
    pub(crate) db: Db,
    pub(crate) estate: Estate,
    pub(crate) engines: EngineFactory,
    /// The engine's journals and catalog, in the database.
    pub(crate) journals: Arc<dyn bulwark_engine::StateStore>,
    pub(crate) settings: Settings,
    pub(crate) runtime: tokio::runtime::Handle,
    /// The engine sessions running in each account and region, bounded.
    pub(crate) slots: slots::Slots,
    /// Whether this appliance is recovering engine sessions now (one recovery at a time).
    pub(crate) recovering: std::sync::atomic::AtomicBool,
    /// The sessions this appliance runs now, by id, to cancel them.
    pub(crate) running: Mutex<HashMap<String, Running>>,
}

/// A session in progress: cancelling it stops the engine sessions of its current items and
/// every item after them.
#[derive(Clone, Default)]
pub(crate) struct Running {
    pub(crate) current: Arc<Mutex<Vec<SessionControl>>>,
    pub(crate) cancelled: Arc<std::sync::atomic::AtomicBool>,
}

impl Appliance {
    /// An appliance over `db`, protecting `estate` (its accounts, roles, keys and repository;
    /// instances come from discovery). Must be called inside the tokio runtime that serves it.
    pub fn new(db: Db, estate: Estate, engines: EngineFactory, settings: Settings) -> Arc<Appliance> {
        let runtime = tokio::runtime::Handle::current();
        let journals = Arc::new(db::journals::Journals(db::journals::DbStore::new(
            db.clone(),
            runtime.clone(),
            &settings.name,
            db::ms(settings.lease),
        )));
        let slots = slots::Slots::new(
            db.clone(),
            runtime.clone(),
            &settings.name,
            settings.per_region,
            db::ms(settings.lease),
        );
        Arc::new(Appliance {
            db,
            estate,
            engines,
            journals,
            settings,
            runtime,
            slots,
            recovering: std::sync::atomic::AtomicBool::new(false),
            running: Mutex::new(HashMap::new()),
        })
    }

    /// The end of a lease taken now (ms since the epoch).
    pub(crate) fn lease_until(&self) -> i64 {
        db::now_ms().saturating_add(db::ms(self.settings.lease))
    }

    /// An engine for `estate`, keeping its journals and catalog in the database.
    pub(crate) fn engine(&self, estate: Estate) -> Engine {
        (self.engines)(estate).with_store(Arc::clone(&self.journals))
    }

    /// The database.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The regions discovered in each account: those of the settings, and every region the
    /// estate names.
    pub fn regions(&self) -> Vec<Region> {
        let mut regions: Vec<Region> = self.settings.regions.clone();
        let named = self
            .estate
            .instances
            .iter()
            .map(|i| i.region.clone())
            .chain(self.estate.default_keys.keys().map(|(_, r)| r.clone()))
            .chain(self.estate.encryption_by_default.iter().map(|(_, r)| r.clone()))
            .chain(self.estate.workers.keys().map(|(_, r)| r.clone()))
            .chain(self.estate.repository.iter().map(|r| r.region.clone()));
        for region in named {
            if !regions.contains(&region) {
                regions.push(region);
            }
        }
        regions.sort();
        regions
    }
}

/// Serves the API on `listener` and runs the scheduler, until `shutdown` completes.
pub async fn serve(
    app: Arc<Appliance>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ApplianceError> {
    let address = listener
        .local_addr()
        .map_or_else(|_| "?".to_owned(), |a| a.to_string());
    let scheduler = tokio::spawn(scheduler::run(Arc::clone(&app)));
    tracing::info!(%address, "appliance serving");
    let served = axum::serve(listener, api::router(app))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|error| ApplianceError::Listen { address, error });
    scheduler.abort();
    served
}

/// Locks `mutex`, using the value of a thread that panicked with it (nothing here leaves a
/// value half-changed).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
