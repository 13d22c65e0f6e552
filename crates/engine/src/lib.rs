//! Bulwark's engine: runs sessions. A session asks the planner for a plan, then runs it
//! against a [`Cloud`] step by step: it assumes each role when the plan says, creates
//! snapshots, volumes, temporary roles and workers, hands each worker its task over the
//! session queue, follows its progress, and removes everything the session created, whatever
//! happens. Every creation is journaled, with the plan's own step that removes it, before the
//! session goes on; after a crash, [`Engine::recover`] removes what a dead session left.
//!
//! The worker program ([`worker::serve`]) lives here too: the same code runs on an EC2 worker
//! instance (`bulwark worker`) and, in the embedded cloud, as a thread ([`worker::boot`]).
//!
//! It depends on the cloud trait, not on any cloud: no AWS SDK and no embedded cloud here.
#![deny(missing_docs)]

mod catalog;
pub mod check;
pub mod direct;
mod error;
pub mod journal;
mod session;
pub mod worker;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bulwark_cloud::{Cloud, CloudError, Credentials, ErrorKind, InstanceInfo, RunInstance};
use bulwark_model::{Action, Estate, Region, RoleArn, VolumeId};
use bulwark_plan::{Operation, Resource, SnapshotOrigin};

pub use catalog::SnapshotPoint;
pub use error::{EngineError, StepFailure};
use journal::{Entry, Journal, Target, Undo};
use session::{Failure, Session};

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
    /// A worker's progress.
    Transfer {
        /// Bytes done.
        done: u64,
        /// Bytes in total.
        total: u64,
    },
    /// A resource is being removed.
    Cleanup {
        /// What.
        name: String,
    },
}

/// Receives a session's events as they happen.
pub type Listener = Arc<dyn Fn(&Event) + Send + Sync>;

/// What a finished session made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionReport {
    /// The session id.
    pub session: String,
    /// The plan's summary.
    pub summary: String,
    /// What it created and kept: (what, AWS ids).
    pub kept: Vec<(String, Target)>,
    /// Image-level restore points written or restored: (volume, point id).
    pub points: Vec<(String, String)>,
    /// How many steps ran.
    pub steps: usize,
}

/// Credentials of the roles the appliance assumes, cached per role.
pub(crate) struct Identities {
    cloud: Cloud,
    estate: Estate,
    appliance: Credentials,
    cache: Mutex<BTreeMap<RoleArn, (Credentials, std::time::Instant)>>,
}

/// How long assumed credentials are used before they are assumed again: AssumeRole's
/// sessions last one hour by default (and at most the role's maximum session duration), so a
/// long session renews them well before they expire.
const ROLE_SESSION_REUSE: Duration = Duration::from_secs(45 * 60);

impl Identities {
    /// Credentials of a session of `role`, assumed with the account's external id, renewed
    /// when they near their expiry.
    pub fn role(&self, role: &RoleArn) -> Result<Credentials, CloudError> {
        let mut cache = crate::lock(&self.cache);
        if let Some((c, at)) = cache.get(role) {
            if at.elapsed() < ROLE_SESSION_REUSE {
                return Ok(c.clone());
            }
        }
        let external = self
            .estate
            .account(role.account())
            .and_then(|a| a.external_id.as_deref());
        let creds = self
            .cloud
            .sts
            .assume_role(&self.appliance, role, "bulwark", external)?;
        cache.insert(role.clone(), (creds.clone(), std::time::Instant::now()));
        Ok(creds)
    }

    /// A new session of `role`, whatever is cached: for credentials handed to a worker or a
    /// long transfer, which must last as long as a session can.
    pub fn fresh(&self, role: &RoleArn) -> Result<Credentials, CloudError> {
        crate::lock(&self.cache).remove(role);
        self.role(role)
    }
}

/// Runs sessions against one cloud for one estate.
pub struct Engine {
    pub(crate) cloud: Cloud,
    pub(crate) estate: Estate,
    pub(crate) appliance: Credentials,
    pub(crate) identities: Identities,
    pub(crate) catalog: catalog::Catalog,
    journals: PathBuf,
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
    /// The first pause between retries; doubled each time.
    backoff: Duration,
    /// How long a new resource may take to be ready.
    ready_timeout: Duration,
}

/// Retries of a throttled or failing call before the step fails.
const RETRIES: u32 = 6;

impl Engine {
    /// An engine acting as `appliance` on `cloud`, keeping journals and its catalog in
    /// `state_dir`. `repository_key` (64 hex digits) unlocks the repository.
    pub fn new(
        cloud: Cloud,
        estate: Estate,
        appliance: Credentials,
        state_dir: &Path,
        repository_key: Option<String>,
    ) -> Engine {
        Engine {
            identities: Identities {
                cloud: cloud.clone(),
                estate: estate.clone(),
                appliance: appliance.clone(),
                cache: Mutex::new(BTreeMap::new()),
            },
            catalog: catalog::Catalog::new(state_dir.join("catalog.json")),
            cloud,
            estate,
            appliance,
            journals: state_dir.join("sessions"),
            repository_key,
            events: None,
            worker_silence: Duration::from_secs(5),
            worker_timeout: Duration::from_secs(6 * 3600),
            credential_renewal: ROLE_SESSION_REUSE,
            backoff: Duration::from_millis(100),
            ready_timeout: Duration::from_secs(3600),
        }
    }

    /// Reports events to `f` while sessions run.
    pub fn on_event(mut self, f: Listener) -> Self {
        self.events = Some(f);
        self
    }

    /// Shortens waits (retry pauses, worker silence) for tests.
    pub fn with_timing(mut self, backoff: Duration, worker_silence: Duration) -> Self {
        self.backoff = backoff;
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

    pub(crate) fn emit(&self, event: &Event) {
        if let Some(f) = &self.events {
            f(event);
        }
    }

    /// The snapshot restore points made so far.
    pub fn snapshot_points(&self) -> Result<Vec<SnapshotPoint>, EngineError> {
        self.catalog.all()
    }

    /// The size of a production volume, from the estate.
    pub(crate) fn volume_size(&self, volume: &VolumeId) -> Result<u32, Failure> {
        self.estate
            .instances
            .iter()
            .flat_map(|i| &i.volumes)
            .find(|v| &v.id == volume)
            .map(|v| v.size_gib)
            .ok_or_else(|| {
                Failure::Engine(EngineError::Internal(format!(
                    "volume {volume} is not in the estate"
                )))
            })
    }

    /// Runs `call`, retrying what AWS says may succeed later, with exponential backoff.
    pub(crate) fn retry(
        &self,
        action: Action,
        call: &mut dyn FnMut() -> Result<(), CloudError>,
    ) -> Result<(), Failure> {
        let mut pause = self.backoff;
        for attempt in 0.. {
            match call() {
                Err(e) if e.kind.retryable() && attempt < RETRIES => {
                    std::thread::sleep(pause);
                    pause *= 2;
                }
                Err(e) => return Err(Failure::Cloud(e)),
                Ok(()) => return Ok(()),
            }
        }
        Err(Failure::Cloud(CloudError::new(
            action,
            ErrorKind::Throttled,
            "Retries",
            "gave up",
        )))
    }

    /// RunInstances, retried while a fresh instance profile is not yet visible to EC2 (IAM is
    /// eventually consistent) and while throttled.
    pub(crate) fn launch(
        &self,
        action: Action,
        who: &Credentials,
        region: &Region,
        run: &RunInstance,
    ) -> Result<InstanceInfo, Failure> {
        let mut pause = self.backoff;
        for attempt in 0.. {
            match self.cloud.ec2.run_instance(who, region, run) {
                Ok(info) => return Ok(info),
                Err(e)
                    if attempt < RETRIES
                        && (e.kind.retryable()
                            || (e.code == "InvalidParameterValue"
                                && e.message.contains("Instance Profile"))) =>
                {
                    std::thread::sleep(pause);
                    pause *= 2;
                }
                Err(e) => return Err(Failure::Cloud(e)),
            }
        }
        Err(Failure::Cloud(CloudError::new(
            action,
            ErrorKind::Throttled,
            "Retries",
            "gave up",
        )))
    }

    /// Waits until `check` answers a final state: `Ok(true)` ready, `Ok(false)` not yet.
    fn wait(&self, what: Action, check: &mut dyn FnMut() -> Result<bool, CloudError>) -> Result<(), Failure> {
        let deadline = std::time::Instant::now() + self.ready_timeout;
        let mut pause = self.backoff;
        loop {
            let mut ready = false;
            self.retry(what, &mut || {
                ready = check()?;
                Ok(())
            })?;
            if ready {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                return Err(Failure::Cloud(CloudError::new(
                    what,
                    ErrorKind::Unavailable,
                    "Timeout",
                    format!("not ready after {:?}", self.ready_timeout),
                )));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_secs(15));
        }
    }

    /// Waits for a snapshot to complete (snapshots are made in the background on AWS).
    pub(crate) fn wait_snapshot(
        &self,
        who: &Credentials,
        region: &Region,
        id: &bulwark_model::SnapshotId,
    ) -> Result<(), Failure> {
        self.wait(Action::Ec2DescribeSnapshots, &mut || {
            let s = self
                .cloud
                .ec2
                .describe_snapshots(who, region, std::slice::from_ref(id))?;
            match s.first().map(|s| s.state.as_str()) {
                Some("completed") => Ok(true),
                Some("error") => Err(CloudError::new(
                    Action::Ec2DescribeSnapshots,
                    ErrorKind::NotPermitted,
                    "SnapshotError",
                    format!("snapshot {id} failed (state error): is its KMS key enabled and usable?"),
                )),
                _ => Ok(false),
            }
        })
    }

    /// Waits for a new volume to be available.
    pub(crate) fn wait_volume(
        &self,
        who: &Credentials,
        region: &Region,
        id: &VolumeId,
    ) -> Result<(), Failure> {
        self.wait(Action::Ec2DescribeVolumes, &mut || {
            let v = self
                .cloud
                .ec2
                .describe_volumes(who, region, std::slice::from_ref(id))?;
            match v.first().map(|v| v.state.as_str()) {
                Some("available" | "in-use") => Ok(true),
                Some("error") => Err(CloudError::new(
                    Action::Ec2DescribeVolumes,
                    ErrorKind::NotPermitted,
                    "VolumeError",
                    format!("volume {id} failed (state error): is its KMS key enabled and usable?"),
                )),
                _ => Ok(false),
            }
        })
    }

    /// Waits for a new instance to run; one that stops at launch failed (on AWS, a missing
    /// kms:CreateGrant on an encrypted volume's key).
    pub(crate) fn wait_instance(
        &self,
        who: &Credentials,
        region: &Region,
        id: &bulwark_model::InstanceId,
    ) -> Result<(), Failure> {
        self.wait(Action::Ec2DescribeInstances, &mut || {
            let i = self
                .cloud
                .ec2
                .describe_instances(who, region, std::slice::from_ref(id))?;
            match i.first().map(|i| (i.state.as_str(), i.state_reason.clone())) {
                Some(("running", _)) => Ok(true),
                Some(("pending", _)) | None => Ok(false),
                Some((state, reason)) => Err(CloudError::new(
                    Action::Ec2DescribeInstances,
                    ErrorKind::NotPermitted,
                    "InstanceFailed",
                    format!("instance {id} is {state}: {}", reason.unwrap_or_default()),
                )),
            }
        })
    }

    /// Removes one created resource. A resource already gone counts as removed.
    pub(crate) fn undo(&self, undo: &Undo) -> Result<(), Failure> {
        let who = match &undo.actor {
            None => self.appliance.clone(),
            Some(role) => self.identities.role(role)?,
        };
        let c = &self.cloud;
        let result = self.retry(undo.action, &mut || match &undo.target {
            Target::Snapshot(r, id) => c.ec2.delete_snapshot(&who, r, id),
            Target::Share(r, id, with) => {
                c.ec2
                    .modify_snapshot_sharing(&who, r, id, &[], std::slice::from_ref(with))
            }
            Target::Volume(r, id) => c.ec2.delete_volume(&who, r, id),
            Target::Attachment(r, volume, _) => c.ec2.detach_volume(&who, r, volume),
            Target::Instance(r, id) => c.ec2.terminate_instance(&who, r, id),
            Target::Role(arn) => c.iam.delete_role(&who, arn),
            Target::RolePolicy(arn, name) => c.iam.delete_role_policy(&who, arn, name),
            Target::Profile(arn) => c.iam.delete_instance_profile(&who, arn),
            Target::Membership(profile, role) => c.iam.remove_role_from_instance_profile(&who, profile, role),
            Target::Queue(r, url) => c.sqs.delete_queue(&who, r, url),
        });
        match result {
            Err(Failure::Cloud(e)) if e.kind == ErrorKind::NotFound => Ok(()),
            // Detaching a volume that is no longer attached (its worker was terminated).
            Err(Failure::Cloud(e))
                if e.code == "IncorrectState" && matches!(undo.target, Target::Attachment(..)) =>
            {
                Ok(())
            }
            other => other,
        }
    }

    /// Runs `operation` as a session.
    pub fn run(&self, operation: &Operation) -> Result<SessionReport, EngineError> {
        let plan = bulwark_plan::plan(&self.estate, operation)?;
        let id = session_id();
        let mut journal = Journal::create(&self.journals, &id)?;
        journal.record(&Entry::Started {
            session: id.clone(),
            summary: plan.summary.clone(),
        })?;
        let mut session = Session::new(self, &plan, id.clone(), journal);
        let total = plan.steps.len();
        let mut failure = None;
        for (i, step) in plan.steps.iter().enumerate() {
            self.emit(&Event::Step {
                number: i + 1,
                of: total,
                action: step.action,
                resource: step.resource.to_string(),
            });
            if let Err(f) = session.run_step(step) {
                failure = Some(match f {
                    Failure::Engine(e) => e,
                    Failure::Cloud(error) => {
                        let actor = step
                            .actor
                            .role()
                            .map_or_else(|| plan.appliance.clone(), ToString::to_string);
                        EngineError::Step(Box::new(StepFailure {
                            step: i + 1,
                            action: step.action,
                            resource: step.resource.to_string(),
                            remedy: error::remedy(&error, &actor),
                            actor,
                            error,
                        }))
                    }
                });
                break;
            }
        }
        if failure.is_none() {
            session.journal.record(&Entry::Succeeded)?;
        }
        let mut journal = session.journal;
        let left = self.clean(&mut journal)?;
        if !left.is_empty() {
            return Err(EngineError::CleanupIncomplete {
                failure: failure.map_or_else(|| "the session succeeded".to_owned(), |f| f.to_string()),
                left,
                journal: journal.path().display().to_string(),
            });
        }
        if let Some(failure) = failure {
            return Err(failure);
        }
        let points: Vec<SnapshotPoint> = session
            .kept
            .iter()
            .filter_map(|(name, target)| {
                let (resource, _) = session_resource(&plan, name)?;
                match (resource, target) {
                    // Restore points only: not the snapshots that serve a restore, nor the
                    // base snapshots of direct backups (their restore points are backups).
                    (Resource::Snapshot(s), Target::Snapshot(region, snapshot))
                        if matches!(s.origin, SnapshotOrigin::Volume | SnapshotOrigin::Copy) =>
                    {
                        Some(SnapshotPoint {
                            volume: s.volume.clone(),
                            account: s.owner.clone(),
                            region: region.clone(),
                            snapshot: snapshot.clone(),
                            session: id.clone(),
                        })
                    }
                    _ => None,
                }
            })
            .collect();
        self.catalog.add(&points)?;
        Ok(SessionReport {
            session: id,
            summary: plan.summary.clone(),
            kept: session.kept,
            points: session.points,
            steps: total,
        })
    }

    /// Removes what a journal says is left: temporary resources, and kept ones too if the
    /// session did not succeed. Answers what could not be removed.
    fn clean(&self, journal: &mut Journal) -> Result<Vec<String>, EngineError> {
        let leftovers = journal::read(journal.path())?;
        let mut left = Vec::new();
        for (name, undo, kept) in leftovers.created.iter().rev() {
            if *kept && leftovers.succeeded {
                continue;
            }
            self.emit(&Event::Cleanup { name: name.clone() });
            match self.undo(undo) {
                Ok(()) => journal.record(&Entry::Removed { name: name.clone() })?,
                Err(Failure::Cloud(e)) => left.push(format!("{name}: {e}")),
                Err(Failure::Engine(e)) => left.push(format!("{name}: {e}")),
            }
        }
        if left.is_empty() {
            journal.record(&Entry::Closed)?;
        }
        Ok(left)
    }

    /// Cleans up after sessions that did not finish (the appliance was killed, or cleanup
    /// failed): answers, per journal, what was removed and what is still left.
    pub fn recover(&self) -> Result<Vec<Recovery>, EngineError> {
        let mut out = Vec::new();
        for path in journal::open_journals(&self.journals)? {
            let before = journal::read(&path)?;
            let mut journal = Journal::reopen(&path)?;
            let left = self.clean(&mut journal)?;
            out.push(Recovery {
                journal: path,
                removed: before.created.len() - left.len(),
                left,
            });
        }
        Ok(out)
    }
}

/// What recovery did for one unfinished session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovery {
    /// The journal.
    pub journal: PathBuf,
    /// Resources removed.
    pub removed: usize,
    /// Resources still left, with why.
    pub left: Vec<String>,
}

/// Finds the plan resource named `name`.
fn session_resource<'p>(plan: &'p bulwark_plan::Plan, name: &str) -> Option<(&'p Resource, bool)> {
    plan.steps
        .iter()
        .flat_map(|s| s.creates.iter().map(move |c| (c, s.kept)))
        .find(|(c, _)| c.to_string() == name)
}

/// A session id: the time, then digits that differ between sessions started in the same
/// second (nanoseconds, process id, a counter); sortable, and valid in queue names.
fn session_id() -> String {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let now = chrono::Utc::now();
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mix = now.timestamp_subsec_nanos() ^ std::process::id().rotate_left(12) ^ n.rotate_left(24);
    format!("{}-{:08x}", now.format("%Y%m%dT%H%M%SZ"), mix)
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
