//! Sessions: a policy's run (one item per selected instance), discovery (one item per account
//! and region), a restore; retention and the repository's health check are in their own
//! modules, on the same [`Run`]. Each runs on a
//! blocking thread, since the engine is synchronous, and records its items, log and progress
//! in the database as it goes. A policy's items run side by side (`Settings::parallel`), each
//! in a slot of its account and region (`crate::slots`). A session can be cancelled: the engine
//! sessions of its current items stop at their next step and remove what they made, and the
//! items after them are not started.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use bulwark_engine::{Engine, EngineError, Event, SessionControl, SessionReport};
use bulwark_model::{Estate, Instance};
use bulwark_plan::Operation;

use crate::db::points::{BackupVolume, PointKind};
use crate::db::policies::PolicyRecord;
use crate::db::sessions::{Kind, SessionRecord, Status};
use crate::policy::{owners, Policy};
use crate::{lock, Appliance, ApplianceError, Running};

/// What one session's thread needs.
pub(crate) struct Run {
    pub(crate) app: Arc<Appliance>,
    pub(crate) session: String,
    running: Running,
    seq: AtomicI64,
}

impl Run {
    /// Runs a database call from the session's thread.
    pub(crate) fn db<T>(&self, f: impl std::future::Future<Output = Result<T, ApplianceError>>) -> Option<T> {
        match self.app.runtime.block_on(f) {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::error!(session = %self.session, error = %e, "cannot record the session's progress");
                None
            }
        }
    }

    pub(crate) fn log(&self, level: &str, message: &str) {
        let seq = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
        self.db(self.app.db.log(&self.session, seq, level, message));
    }

    pub(crate) fn item(&self, position: usize, status: Status, message: &str, error: Option<&EngineError>) {
        let (code, remedy) = error.map(|e| (e.code(), e.remedy())).unzip();
        self.db(self.app.db.set_item(
            &self.session,
            position,
            status,
            Some(message),
            code.as_deref(),
            remedy.as_deref(),
        ));
    }

    pub(crate) fn cancelled(&self) -> bool {
        self.running.cancelled.load(Ordering::SeqCst)
    }

    /// The engine for `estate`, reporting its events into this session's log and progress.
    pub(crate) fn engine(self: &Arc<Self>, estate: Estate) -> Engine {
        let run = Arc::clone(self);
        self.app
            .engine(estate)
            .on_event(Arc::new(move |_, event| match event {
                Event::Step {
                    number,
                    of,
                    action,
                    resource,
                } => run.log("info", &format!("step {number}/{of}: {action} on {resource}")),
                Event::Transfer { done, total } => {
                    let (done, total) = (*done as i64, *total as i64);
                    run.db(run
                        .app
                        .db
                        .progress(&run.session, done, total, run.app.lease_until()));
                }
                Event::Note { message } => run.log("info", message),
                Event::Cleanup { name } => run.log("info", &format!("removing {name}")),
            }))
    }

    /// Runs `operation` as an engine session that this session's cancel reaches.
    pub(crate) fn engine_session(
        &self,
        engine: &Engine,
        operation: &Operation,
    ) -> Result<SessionReport, EngineError> {
        let plan = engine.plan(operation)?;
        let control = SessionControl::new();
        lock(&self.running.current).push(control.clone());
        if self.cancelled() {
            control.cancel();
        }
        self.log(
            "info",
            &format!("{}: engine session {}", plan.summary, control.id()),
        );
        let result = engine.run_with(&plan, &control);
        lock(&self.running.current).retain(|c| c.id() != control.id());
        result
    }

    /// Runs `work` for each of `n` items, `Settings::parallel` at once; answers their outcomes
    /// in item order.
    pub(crate) fn each(&self, n: usize, work: impl Fn(usize) -> Status + Sync) -> Vec<Status> {
        let next = std::sync::atomic::AtomicUsize::new(0);
        let outcomes = Mutex::new(vec![Status::Pending; n]);
        std::thread::scope(|scope| {
            for _ in 0..self.app.settings.parallel.clamp(1, n.max(1)) {
                scope.spawn(|| loop {
                    let position = next.fetch_add(1, Ordering::SeqCst);
                    if position >= n {
                        break;
                    }
                    let status = work(position);
                    lock(&outcomes)[position] = status;
                });
            }
        });
        outcomes
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Ends the session with the outcome of its items.
    pub(crate) fn finish(&self, outcomes: &[Status], what: &str) -> Status {
        let count = |s: Status| outcomes.iter().filter(|o| **o == s).count();
        let (failed, canceled, skipped, done) = (
            count(Status::Failed),
            count(Status::Canceled),
            count(Status::Skipped),
            count(Status::Succeeded),
        );
        let status = if self.cancelled() {
            Status::Canceled
        } else if failed > 0 && done == 0 {
            Status::Failed
        } else if failed > 0 || skipped > 0 {
            Status::Warning
        } else {
            Status::Succeeded
        };
        let message =
            format!("{what}: {done} succeeded, {failed} failed, {skipped} skipped, {canceled} canceled");
        self.log(
            if status == Status::Succeeded {
                "info"
            } else {
                "warn"
            },
            &message,
        );
        self.db(self.app.db.finish_session(&self.session, status, &message));
        lock(&self.app.running).remove(&self.session);
        self.app.session_ended(&self.session);
        status
    }
}

impl Appliance {
    /// Starts a session of `kind` with `items`, owned by this appliance, and runs `body` for
    /// it on a blocking thread.
    pub(crate) async fn start(
        self: &Arc<Self>,
        kind: Kind,
        policy: Option<&str>,
        items: &[(String, String)],
        body: impl FnOnce(Arc<Run>) + Send + 'static,
    ) -> Result<SessionRecord, ApplianceError> {
        let record = self
            .db
            .create_session(kind, policy, items, &self.settings.name, self.lease_until())
            .await?;
        let running = Running::default();
        lock(&self.running).insert(record.id.clone(), running.clone());
        let run = Arc::new(Run {
            app: Arc::clone(self),
            session: record.id.clone(),
            running,
            seq: AtomicI64::new(0),
        });
        tracing::info!(session = %record.id, kind = kind.as_str(), "session started");
        tokio::task::spawn_blocking(move || body(run));
        Ok(record)
    }

    /// Starts a run of `policy`: one item per instance it selects; an instance that a policy
    /// of higher priority selects too is skipped, saying which.
    pub async fn run_policy(
        self: &Arc<Self>,
        record: &PolicyRecord,
    ) -> Result<SessionRecord, ApplianceError> {
        let (estate, _) = self.discovered_estate().await?;
        let enabled: Vec<(String, Policy)> = self
            .db
            .policies()
            .await?
            .into_iter()
            .filter(|p| p.policy.enabled || p.id == record.id)
            .map(|p| (p.id, p.policy))
            .collect();
        let owners = owners(&estate, &enabled);
        let policy = record.policy.clone();
        let selected: Vec<(Instance, Option<String>)> = estate
            .instances
            .iter()
            .filter(|i| policy.selection.selects(i))
            .map(|i| {
                let other = owners
                    .get(&i.id)
                    .filter(|(id, _)| *id != record.id)
                    .map(|(_, p)| format!("processed by policy {} (priority {})", p.name, p.priority));
                (i.clone(), other)
            })
            .collect();
        let items: Vec<(String, String)> = selected
            .iter()
            .map(|(i, _)| {
                let ops = policy.operations(&i.id).unwrap_or_default();
                let names: Vec<&str> = ops.iter().map(Operation::name).collect();
                (i.id.to_string(), names.join(", "))
            })
            .collect();
        let policy_id = record.id.clone();
        let app = Arc::clone(self);
        self.start(Kind::Policy, Some(&record.id), &items, move |run| {
            let engine = run.engine(estate);
            // Items run side by side, each waiting for a slot in its account and region.
            let outcomes = run.each(selected.len(), |position| {
                let (instance, other) = &selected[position];
                if let Some(other) = other {
                    run.item(position, Status::Skipped, other, None);
                    return Status::Skipped;
                }
                match run
                    .app
                    .slots
                    .take(&instance.account, &instance.region, || run.cancelled())
                {
                    Some(_slot) if !run.cancelled() => {
                        protect(&run, &engine, &policy_id, &policy, position, instance)
                    }
                    _ => {
                        run.item(
                            position,
                            Status::Canceled,
                            "the session was cancelled before this instance",
                            None,
                        );
                        Status::Canceled
                    }
                }
            });
            let status = run.finish(&outcomes, &format!("policy {}", policy.name));
            if !matches!(status, Status::Canceled) {
                // Retention follows each run, as a session of its own.
                let handle = app.runtime.clone();
                handle.spawn(async move {
                    if let Err(e) = app.run_retention(&policy_id).await {
                        tracing::error!(policy = %policy_id, error = %e, "retention could not start");
                    }
                });
            }
        })
        .await
    }

    /// Starts a discovery of every account of the estate in every region.
    pub async fn run_discovery(self: &Arc<Self>) -> Result<SessionRecord, ApplianceError> {
        let regions = self.regions();
        let targets: Vec<_> = self
            .estate
            .accounts
            .keys()
            .flat_map(|a| regions.iter().map(move |r| (a.clone(), r.clone())))
            .collect();
        let items: Vec<(String, String)> = targets
            .iter()
            .map(|(a, r)| (format!("{a}/{r}"), "discover".to_owned()))
            .collect();
        let base = self.estate.clone();
        self.start(Kind::Discovery, None, &items, move |run| {
            let engine = run.engine(base);
            // Accounts and regions are read side by side: each is a handful of read-only calls.
            let outcomes = run.each(targets.len(), |position| {
                let (account, region) = &targets[position];
                match engine.discover(account, region) {
                    Ok(found) => {
                        let n = found.instances.len();
                        run.db(run.app.db.save_discovery(account, region, &found));
                        run.item(position, Status::Succeeded, &format!("{n} instance(s)"), None);
                        Status::Succeeded
                    }
                    Err(finding) => {
                        run.db(run.app.db.save_unreachable(account, region, &finding));
                        let message = format!("{}: {}", finding.subject, finding.problem);
                        run.log(
                            "warn",
                            &format!("{account}/{region}: {message}; what to do: {}", finding.fix),
                        );
                        run.db(run.app.db.set_item(
                            &run.session,
                            position,
                            Status::Failed,
                            Some(&message),
                            Some("unreachable"),
                            Some(&finding.fix),
                        ));
                        Status::Failed
                    }
                }
            });
            run.finish(&outcomes, "discovery");
        })
        .await
    }

    /// Starts a restore (already planned, so known to be acceptable) as a session of one item.
    pub async fn run_restore(
        self: &Arc<Self>,
        operation: Operation,
    ) -> Result<SessionRecord, ApplianceError> {
        let (estate, _) = self.discovered_estate().await?;
        let items = vec![(operation.instance().to_string(), operation.name().to_owned())];
        self.start(Kind::Restore, None, &items, move |run| {
            let engine = run.engine(estate);
            run.item(0, Status::Running, "running", None);
            let status = match run.engine_session(&engine, &operation) {
                Ok(report) => {
                    let made: Vec<String> = report
                        .kept
                        .iter()
                        .map(|(what, target)| match target.resource_id() {
                            Some(id) => format!("{what} ({id})"),
                            None => what.clone(),
                        })
                        .collect();
                    run.item(
                        0,
                        Status::Succeeded,
                        &format!("restored: {}", made.join(", ")),
                        None,
                    );
                    Status::Succeeded
                }
                Err(EngineError::Cancelled { .. }) => {
                    run.item(
                        0,
                        Status::Canceled,
                        "cancelled; what the session had created was removed",
                        None,
                    );
                    Status::Canceled
                }
                Err(e) => {
                    run.log("error", &format!("the restore failed: {e}"));
                    run.item(0, Status::Failed, &format!("the restore failed: {e}"), Some(&e));
                    Status::Failed
                }
            };
            run.finish(&[status], "restore");
        })
        .await
    }

    /// Cancels a session this appliance runs; `false` if it runs none by that id.
    pub fn cancel(&self, id: &str) -> bool {
        let Some(running) = lock(&self.running).get(id).cloned() else {
            return false;
        };
        running.cancelled.store(true, Ordering::SeqCst);
        for control in lock(&running.current).iter() {
            control.cancel();
        }
        true
    }
}

/// One instance of a policy run: its snapshots, replicas and backup, each an engine session.
/// The snapshots a session kept become restore points: those in the instance's account and
/// region of kind snapshot, the others (copies) of kind replica; a backup's restore points in
/// the repository become one of kind backup.
fn protect(
    run: &Arc<Run>,
    engine: &Engine,
    policy_id: &str,
    policy: &Policy,
    position: usize,
    instance: &Instance,
) -> Status {
    run.item(position, Status::Running, "running", None);
    let ops = match policy.operations(&instance.id) {
        Ok(ops) => ops,
        Err(p) => {
            run.db(run.app.db.set_item(
                &run.session,
                position,
                Status::Failed,
                Some(&p.message),
                None,
                Some(&p.remedy),
            ));
            return Status::Failed;
        }
    };
    let mut made = Vec::new();
    for op in &ops {
        match run.engine_session(engine, op) {
            Ok(report) => made.extend(record_points(run, engine, policy_id, instance, report)),
            Err(EngineError::Cancelled { .. }) => {
                run.item(
                    position,
                    Status::Canceled,
                    "cancelled; what the session had created was removed",
                    None,
                );
                return Status::Canceled;
            }
            Err(e) => {
                run.log("error", &format!("{}: {} failed: {e}", instance.id, op.name()));
                run.item(
                    position,
                    Status::Failed,
                    &format!("{} failed: {e}", op.name()),
                    Some(&e),
                );
                return Status::Failed;
            }
        }
    }
    run.item(
        position,
        Status::Succeeded,
        &format!("restore point(s) {}", made.join(", ")),
        None,
    );
    Status::Succeeded
}

/// Records the restore points an engine session made for `instance`; answers their ids.
fn record_points(
    run: &Arc<Run>,
    engine: &Engine,
    policy_id: &str,
    instance: &Instance,
    report: SessionReport,
) -> Vec<String> {
    let mut made = Vec::new();
    let mut by_place: BTreeMap<(String, String), Vec<bulwark_engine::SnapshotPoint>> = BTreeMap::new();
    for s in report.snapshots {
        by_place
            .entry((s.account.to_string(), s.region.to_string()))
            .or_default()
            .push(s);
    }
    for ((account, region), snapshots) in by_place {
        let home = account == instance.account.as_str() && region == instance.region.as_str();
        let kind = if home {
            PointKind::Snapshot
        } else {
            PointKind::Replica
        };
        let add = run.app.db.add_point(
            instance.id.as_str(),
            Some(policy_id),
            kind,
            &run.session,
            &snapshots,
        );
        made.extend(run.db(add).map(|p| p.id));
    }
    let repository = engine.estate().repository.as_ref();
    if let Some(repository) = repository.filter(|_| !report.points.is_empty()) {
        let volumes = report
            .points
            .into_iter()
            .map(|(volume, point)| BackupVolume { volume, point })
            .collect();
        let add = run.app.db.add_backup_point(
            instance.id.as_str(),
            Some(policy_id),
            &run.session,
            (
                repository.role.account().to_string(),
                repository.region.to_string(),
            ),
            volumes,
        );
        made.extend(run.db(add).map(|p| p.id));
    }
    made
}
