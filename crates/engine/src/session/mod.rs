//! One session: the plan's steps run in order, each by its actor, each creation journaled
//! with the plan's own removal step for it; then the cleanup, whatever happened.
//!
//! [`Session::run_step`] is the one dispatch of a step's [`Call`]; each kind of step is run by
//! a method of its own, in the module of its concern: `snapshots`, `volumes`, `workers`,
//! `instances` (the restored instance), `direct` (the data path without workers),
//! `incremental` (how each volume of a backup is read: its changes, or in full and why).

mod direct;
mod incremental;
mod instances;
mod proof;
mod snapshots;
mod volumes;
mod workers;

use std::collections::BTreeMap;

use bulwark_cloud::{CloudError, Credentials, ErrorKind, SharedCredentials, Tag};
use bulwark_model::{Action, InstanceId, Region, RoleArn, SnapshotId, VolumeId};
use bulwark_plan::{Actor, Call, DataPath, Plan, Removal, Resource, Snapshot, SnapshotOrigin, Step};
use bulwark_repo::Repository;

use crate::events::SessionControl;
use crate::journal::{Entry, Finder, Target, Undo};
use crate::record::InstanceRecord;
use crate::store::JournalHandle;
use crate::{
    cleanup, error, Engine, EngineError, Event, SessionId, SessionReport, SnapshotPoint, StepFailure,
};

/// What a step's failure is made of before it gets its step number.
pub(crate) enum Failure {
    Cloud(CloudError),
    Engine(EngineError),
}

impl From<CloudError> for Failure {
    fn from(e: CloudError) -> Self {
        Failure::Cloud(e)
    }
}

impl From<EngineError> for Failure {
    fn from(e: EngineError) -> Self {
        Failure::Engine(e)
    }
}

impl From<crate::retry::Gave> for Failure {
    fn from(g: crate::retry::Gave) -> Self {
        Failure::Cloud(g.error())
    }
}

pub(crate) type StepResult = Result<(), Failure>;

/// Runs `plan` as the session `control` names.
pub(crate) fn run(
    engine: &Engine,
    plan: &Plan,
    control: &SessionControl,
) -> Result<SessionReport, EngineError> {
    let id = control.id().clone();
    let mut journal = engine.store.begin(&id)?;
    journal.record(&Entry::Started {
        version: crate::journal::VERSION,
        session: id.to_string(),
        summary: plan.summary.clone(),
    })?;
    let mut session = Session::new(engine, plan, control, journal);
    let total = plan.steps.len();
    // Every log event of the session carries its id; of a step, also what it does and where.
    let _session = tracing::info_span!("session", session = %id).entered();
    tracing::info!(summary = %plan.summary, steps = total, "session started");
    let mut failure = None;
    for (i, step) in plan.steps.iter().enumerate() {
        if control.is_cancelled() {
            failure = Some(EngineError::Cancelled { step: i + 1 });
            break;
        }
        engine.emit(
            &id,
            &Event::Step {
                number: i + 1,
                of: total,
                action: step.action(),
                resource: step.resource().to_string(),
            },
        );
        let resource = step.resource();
        let _step = tracing::info_span!(
            "step",
            step = i + 1,
            action = %step.action(),
            account = %step.actor.role().map_or_else(|| "appliance".to_owned(), |r| r.account().to_string()),
            region = %resource.region().map_or("global", |r| r.as_str()),
        )
        .entered();
        tracing::info!(resource = %resource, "step started");
        if let Err(f) = session.run_step(step) {
            let error = step_failure(plan, i + 1, step, f);
            tracing::warn!(code = %error.code(), error = %error, "step failed");
            failure = Some(error);
            break;
        }
    }
    // A cancel that came during the last step still undoes the session: what the host asked
    // to stop is not kept.
    if failure.is_none() && control.is_cancelled() {
        failure = Some(EngineError::Cancelled { step: total });
    }
    if failure.is_none() {
        session.journal.record(&Entry::Succeeded)?;
    }
    let mut journal = session.journal;
    let left = cleanup::clean(engine, journal.as_mut())?;
    match (&failure, left.is_empty()) {
        (None, true) => tracing::info!("session succeeded"),
        (Some(_), true) => tracing::info!("session failed; everything it created was removed"),
        (_, false) => tracing::error!(left = ?left, journal = %journal.location(), "cleanup incomplete"),
    }
    if !left.is_empty() {
        return Err(EngineError::CleanupIncomplete {
            failure: failure.map_or_else(|| "the session succeeded".to_owned(), |f| f.to_string()),
            left,
            journal: journal.location(),
        });
    }
    if let Some(failure) = failure {
        return Err(failure);
    }
    let snapshots = snapshot_points(plan, &id, &session.kept, session.record.as_ref());
    engine.store.add_points(&snapshots)?;
    Ok(SessionReport {
        session: id,
        summary: plan.summary.clone(),
        kept: session.kept,
        points: session.points,
        backups: session.backups,
        snapshots,
        steps: total,
    })
}

/// The error of step `number`, with who called and what to change.
fn step_failure(plan: &Plan, number: usize, step: &Step, failure: Failure) -> EngineError {
    match failure {
        Failure::Engine(e) => e,
        Failure::Cloud(error) => {
            let actor = step
                .actor
                .role()
                .map_or_else(|| plan.appliance.clone(), ToString::to_string);
            EngineError::Step(Box::new(StepFailure {
                step: number,
                action: step.action(),
                resource: step.resource().to_string(),
                remedy: error::remedy(&error, &actor),
                actor,
                error,
            }))
        }
    }
}

/// The snapshot restore points among what a session kept: not the snapshots that serve a
/// restore, nor the base snapshots of direct backups (their restore points are backups).
fn snapshot_points(
    plan: &Plan,
    session: &SessionId,
    kept: &[(String, Target)],
    record: Option<&InstanceRecord>,
) -> Vec<SnapshotPoint> {
    let by_name: BTreeMap<String, Resource> = plan
        .steps
        .iter()
        .flat_map(|s| s.creates())
        .map(|r| (r.to_string(), r))
        .collect();
    kept.iter()
        .filter_map(|(name, target)| match (by_name.get(name)?, target) {
            (Resource::Snapshot(s), Target::Snapshot(region, snapshot))
                if matches!(s.origin, SnapshotOrigin::Volume | SnapshotOrigin::Copy) =>
            {
                Some(SnapshotPoint {
                    volume: s.volume.clone(),
                    account: s.owner.clone(),
                    region: region.clone(),
                    snapshot: snapshot.clone(),
                    key: s.key.clone(),
                    session: session.to_string(),
                    instance: record.cloned(),
                })
            }
            _ => None,
        })
        .collect()
}

pub(crate) struct Session<'e> {
    pub engine: &'e Engine,
    pub plan: &'e Plan,
    pub control: &'e SessionControl,
    pub journal: Box<dyn JournalHandle>,
    /// What the plan's resources are, by AWS id.
    ids: BTreeMap<Resource, Target>,
    /// Next device letter per instance.
    devices: BTreeMap<InstanceId, u8>,
    /// Device names of attached volumes.
    attached_as: BTreeMap<Resource, String>,
    /// The restore points the worker reported.
    pub points: Vec<(String, String)>,
    /// Kept resources made, for the report.
    pub kept: Vec<(String, Target)>,
    /// The worker's availability zone, once it runs: the volumes it attaches, and the
    /// restored instance that takes them over, must be in it too.
    zone: Option<String>,
    /// Without workers: the repository, opened by the appliance with a session of the
    /// repository role that the transfers renew.
    repository: Option<(Repository, SharedCredentials)>,
    /// How each snapshot of a backup is read, noted before the transfer: all at once without
    /// workers, in the worker's task with them.
    reads: Vec<incremental::VolumeRead>,
    /// What each volume's backup read, for the report.
    backups: Vec<crate::incremental::VolumeBackup>,
    /// The instance's record: as a session that snapshots it found it, for its restore
    /// points; as a restore launches it.
    record: Option<InstanceRecord>,
    /// The devices of the restored instance's image, and the production volume each holds.
    image_devices: BTreeMap<String, VolumeId>,
    /// The key of the session queue's sealed channel, drawn when the session starts and
    /// never written down: its worker gets it in its user data.
    session_key: Option<crate::channel::SessionKey>,
}

impl<'e> Session<'e> {
    fn new(
        engine: &'e Engine,
        plan: &'e Plan,
        control: &'e SessionControl,
        journal: Box<dyn JournalHandle>,
    ) -> Self {
        Self {
            engine,
            plan,
            control,
            journal,
            ids: BTreeMap::new(),
            devices: BTreeMap::new(),
            attached_as: BTreeMap::new(),
            points: Vec::new(),
            kept: Vec::new(),
            // A volume restore may ask for a zone (where the instance that will use the
            // volumes runs); otherwise the worker's, once it runs, or the region's first.
            zone: match &plan.operation {
                bulwark_plan::Operation::RestoreVolumes { zone, .. } => zone.clone(),
                _ => None,
            },
            repository: None,
            reads: Vec::new(),
            backups: Vec::new(),
            record: None,
            image_devices: BTreeMap::new(),
            session_key: crate::channel::SessionKey::generate().ok(),
        }
    }

    /// Whether the operation asks for file indexes with its restore points.
    fn indexes_files(&self) -> bool {
        matches!(
            self.plan.operation,
            bulwark_plan::Operation::Backup { file_index: true, .. }
        )
    }

    /// The session's id.
    fn id(&self) -> &SessionId {
        self.control.id()
    }

    /// Runs one main step.
    fn run_step(&mut self, step: &Step) -> StepResult {
        match &step.call {
            Call::AssumeRole { role } => {
                self.engine.identities.role(role)?;
            }
            Call::ProveCleanup { role } => self.prove_cleanup(step, role)?,
            Call::CreateSnapshots { instance, snapshots } => {
                self.create_snapshots(step, instance, snapshots)?
            }
            Call::CreateSnapshot { volume, snapshot } => self.create_snapshot(step, volume, snapshot)?,
            Call::DescribeKey { key } => self.describe_key(step, key)?,
            Call::ShareSnapshot { share } => self.share(step, share)?,
            Call::CopySnapshot { source, copy } => self.copy_snapshot(step, source, copy)?,
            Call::CreateVolume { from, volume } => self.create_volume(step, from.as_ref(), volume)?,
            Call::AttachVolume { attachment } => self.attach(step, attachment)?,
            Call::CreateWorkerRole { identity } => self.create_worker_role(step, identity)?,
            Call::PutWorkerRolePolicy { identity } => self.put_worker_policy(step, identity)?,
            Call::CreateWorkerProfile { identity } => self.create_worker_profile(step, identity)?,
            Call::AddWorkerRoleToProfile { identity } => self.add_worker_to_profile(step, identity)?,
            Call::CreateQueue { queue } => self.create_queue(step, queue)?,
            Call::SetQueuePolicy { queue } => self.set_queue_policy(step, queue)?,
            Call::LaunchWorker { worker } => self.launch_worker(step, worker)?,
            Call::LaunchRestoredInstance { instance } => self.launch_restored(step, instance)?,
            Call::RegisterImage { image, snapshots } => self.register_image(step, image, snapshots)?,
            Call::KeepVolumesAsTheyWere { instance } => self.keep_volumes_as_they_were(step, instance)?,
            Call::StopRestoredInstance { instance } => self.stop_restored(step, instance)?,
            Call::SendTask { queue } => self.send_task(step, queue)?,
            Call::FollowWorker { queue } => self.follow_worker(step, queue)?,
            // The worker's own calls and its use of the repository, with the credentials it
            // was given: the plan lists them for their permissions, the worker makes them.
            Call::WorkerTakesTask { .. }
            | Call::WorkerReports { .. }
            | Call::WriteBackup {
                by: DataPath::Worker, ..
            }
            | Call::ReadBackup {
                by: DataPath::Worker, ..
            } => {}
            // Without workers: reads are gathered, then made all at once as the repository
            // takes them (every volume's restore point, or none).
            Call::ReadSnapshotBlocks { snapshot } => self.plan_direct_read(step, snapshot)?,
            Call::ListChangedBlocks { snapshot } => self.list_changes(step, snapshot)?,
            Call::WriteBackup {
                by: DataPath::Appliance,
                ..
            } => self.read_direct(step)?,
            // The writes open the repository when they need it.
            Call::ReadBackup {
                by: DataPath::Appliance,
                ..
            } => {}
            Call::WriteSnapshot { snapshot } => self.write_direct(step, snapshot)?,
            Call::ExpireSnapshot { snapshot, id } => self.expire_snapshot(step, snapshot, id)?,
            Call::Remove { removal } => self.remove_now(step, removal)?,
        }
        Ok(())
    }

    /// A removal the plan makes part of the operation itself (a restored volume detached from
    /// the worker before it joins the restored instance).
    fn remove_now(&mut self, step: &Step, removal: &Removal) -> StepResult {
        let resource = removal.removes();
        if let Some(target) = self.ids.get(&resource).cloned() {
            let undo = Undo {
                actor: step.actor.role().cloned(),
                action: step.action(),
                target,
            };
            cleanup::undo(self.engine, &undo)?;
            self.removed(&resource)?;
        }
        Ok(())
    }

    /// The tags of everything the session creates.
    fn tags(&self) -> Vec<Tag> {
        vec![Tag::new("bulwark:session", self.id().to_string())]
    }

    /// The tags of what `step` creates: the session's, and the step's, by which it is found if
    /// the call's answer is lost.
    fn step_tags(&self, step: &Step) -> Vec<Tag> {
        let mut tags = self.tags();
        tags.push(Tag::new("bulwark:step", self.step_number(step).to_string()));
        tags
    }

    /// A client token for `step`'s call: the same for every attempt, unique to the session.
    fn client_token(&self, step: &Step) -> String {
        format!("{}-{}", self.id(), self.step_number(step))
    }

    /// Makes `step`'s creating call. It is journaled as an intent before it is made, with the
    /// plan's removal of `removes` and the `finder` that finds what it made if its answer never
    /// comes; `made` journals what it made, and then the intent is settled. A call AWS refused
    /// settles it at once (nothing was made); one whose outcome is unknown leaves it for the
    /// cleanup to find.
    fn creating<T, R>(
        &mut self,
        step: &Step,
        finder: Finder,
        removes: &Resource,
        call: impl FnMut() -> Result<T, CloudError>,
        find: impl FnMut() -> Result<Option<T>, CloudError>,
        made: impl FnOnce(&mut Self, T) -> Result<R, Failure>,
    ) -> Result<R, Failure> {
        let name = format!(
            "step {}: {} {}",
            self.step_number(step),
            step.action(),
            step.resource()
        );
        let (actor, action) = self.removal(removes)?;
        self.journal.record(&Entry::Intent {
            name: name.clone(),
            actor,
            action,
            finder,
            kept: step.kept,
        })?;
        match self.engine.retry.run_creating(step.action(), call, find) {
            Ok(value) => {
                let out = made(self, value)?;
                self.journal.record(&Entry::Settled { name })?;
                Ok(out)
            }
            Err(crate::retry::Gave::Refused(e)) => {
                self.journal.record(&Entry::Settled { name })?;
                Err(Failure::Cloud(e))
            }
            Err(unknown) => Err(unknown.into()),
        }
    }

    /// The credentials of the step's actor.
    fn who(&self, step: &Step) -> Result<Credentials, Failure> {
        match &step.actor {
            Actor::Appliance => Ok(self.engine.identities.appliance().clone()),
            Actor::Role(role) => Ok(self.engine.identities.role(role)?),
            Actor::Worker(role) => Err(Failure::Engine(EngineError::Internal(format!(
                "the appliance cannot act as the worker role {role}"
            )))),
        }
    }

    /// Runs `call`, retried as the engine's policy says.
    fn retried<T>(&self, action: Action, call: impl FnMut() -> Result<T, CloudError>) -> Result<T, Failure> {
        Ok(self.engine.retry.run(action, None, call)?)
    }

    /// Records a created resource with the plan's step that removes it.
    fn created(&mut self, resource: &Resource, target: Target, kept: bool) -> Result<(), Failure> {
        let (actor, action) = self.removal(resource)?;
        let undo = Undo {
            actor,
            action,
            target: target.clone(),
        };
        self.journal.record(&Entry::Created {
            name: resource.to_string(),
            undo,
            kept,
        })?;
        if kept {
            self.kept.push((resource.to_string(), target.clone()));
        }
        self.ids.insert(resource.clone(), target);
        Ok(())
    }

    /// Who removes `resource`, with which call: the plan's removal step of it, in the cleanup,
    /// the rollback, or released into the main steps.
    fn removal(&self, resource: &Resource) -> Result<(Option<RoleArn>, Action), Failure> {
        let step = self
            .plan
            .cleanup
            .iter()
            .chain(&self.plan.rollback)
            .chain(&self.plan.steps)
            .find(|s| matches!(&s.call, Call::Remove { removal } if &removal.removes() == resource))
            .ok_or_else(|| {
                Failure::Engine(EngineError::Internal(format!(
                    "the plan creates {resource} but has no step that removes it (a planner bug)"
                )))
            })?;
        Ok((step.actor.role().cloned(), step.action()))
    }

    fn removed(&mut self, resource: &Resource) -> Result<(), Failure> {
        self.journal.record(&Entry::Removed {
            name: resource.to_string(),
        })?;
        // A kept resource the session removed itself (a restored volume, once the instance
        // launched from its image has its own) is not kept.
        if let Some(target) = self.ids.remove(resource) {
            self.kept.retain(|(_, kept)| kept != &target);
        }
        Ok(())
    }

    fn target(&self, resource: &Resource) -> Result<&Target, Failure> {
        self.ids.get(resource).ok_or_else(|| {
            Failure::Engine(EngineError::Internal(format!(
                "{resource} does not exist (yet) in this session"
            )))
        })
    }

    /// The snapshot a plan's snapshot stands for: made by this session, or, not made by it,
    /// the restore point being restored.
    fn snapshot_id(&self, snapshot: &Snapshot) -> Result<(Region, SnapshotId), Failure> {
        if let Some(Target::Snapshot(r, id)) = self.ids.get(&Resource::Snapshot(snapshot.clone())) {
            return Ok((r.clone(), id.clone()));
        }
        let found = crate::store::latest_snapshot(
            self.engine.store.as_ref(),
            &snapshot.volume,
            &snapshot.owner,
            &snapshot.region,
        )?;
        found.map(|id| (snapshot.region.clone(), id)).ok_or_else(|| {
            Failure::Engine(EngineError::NotReady(format!(
                "no snapshot of {} in {}/{} is known: run `bulwark run snapshot` for the instance first",
                snapshot.volume, snapshot.owner, snapshot.region
            )))
        })
    }

    fn volume_id(&self, volume: &Resource) -> Result<(Region, VolumeId), Failure> {
        match self.target(volume)? {
            Target::Volume(r, id) => Ok((r.clone(), id.clone())),
            other => Err(Failure::Engine(EngineError::Internal(format!(
                "{volume} is {other:?}, not a volume"
            )))),
        }
    }

    /// Waits for a snapshot to complete (snapshots are made in the background on AWS).
    fn wait_snapshot(&self, who: &Credentials, region: &Region, id: &SnapshotId) -> StepResult {
        let ec2 = &self.engine.cloud.ec2;
        self.wait(Action::Ec2DescribeSnapshots, || {
            let s = ec2.describe_snapshots(who, region, std::slice::from_ref(id))?;
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

    /// Waits until `check` says ready, within the engine's timeout for new resources.
    fn wait(&self, action: Action, check: impl FnMut() -> Result<bool, CloudError>) -> StepResult {
        Ok(crate::retry::wait_until(
            &self.engine.retry,
            action,
            self.engine.ready_timeout,
            check,
        )?)
    }
}
