//! One session: the plan's steps run in order, each by its actor, each creation journaled
//! with the plan's own removal step for it; then the cleanup, whatever happened.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bulwark_cloud::{
    CloudError, CopySnapshot, CreateVolume, Credentials, ErrorKind, KeyManager, RunInstance,
    SharedCredentials, Tag,
};
use bulwark_model::{Action, InstanceId, Region, RoleArn, SnapshotId, VolumeId};
use bulwark_plan::{Actor, Plan, Resource, Snapshot, SnapshotOrigin, Step, VolumeOrigin, NAME_PREFIX};
use bulwark_repo::Repository;

use crate::journal::{Entry, Journal, Target, Undo};
use crate::worker::{self, RepositoryAccess, Task, TaskKind, TaskVolume, WorkerMessage};
use crate::{Engine, EngineError, Event};

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

type StepResult = Result<(), Failure>;

pub(crate) struct Session<'e> {
    pub engine: &'e Engine,
    pub plan: &'e Plan,
    pub id: String,
    pub journal: Journal,
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
    /// Without workers: the snapshots to read into the repository, all at once.
    direct_reads: Vec<DirectRead>,
}

/// What the session's direct-data-path steps met, for [`Failure`].
fn direct_failure(step: &Step, error: crate::direct::DirectError) -> Failure {
    match error {
        // The step's own call: reported as the step's failure, with AWS's answer.
        crate::direct::DirectError::Cloud(e) if e.action == step.action => Failure::Cloud(e),
        other => Failure::Engine(EngineError::Direct(other)),
    }
}

/// A snapshot to read through the EBS direct APIs.
struct DirectRead {
    who: Credentials,
    region: Region,
    snapshot: SnapshotId,
    /// The snapshot the volume's latest restore point was read from, if it still exists.
    parent: Option<SnapshotId>,
    volume: String,
    /// The previous base snapshot (the parent), which the new one replaces.
    replaces: Option<(Resource, Target)>,
}

impl<'e> Session<'e> {
    pub fn new(engine: &'e Engine, plan: &'e Plan, id: String, journal: Journal) -> Self {
        Self {
            engine,
            plan,
            id,
            journal,
            ids: BTreeMap::new(),
            devices: BTreeMap::new(),
            attached_as: BTreeMap::new(),
            points: Vec::new(),
            kept: Vec::new(),
            zone: None,
            repository: None,
            direct_reads: Vec::new(),
        }
    }

    fn tags(&self) -> Vec<Tag> {
        vec![Tag::new("bulwark:session", self.id.clone())]
    }

    fn creds(&self, actor: &Actor) -> Result<Credentials, Failure> {
        match actor {
            Actor::Appliance => Ok(self.engine.appliance.clone()),
            Actor::Role(role) => Ok(self.engine.identities.role(role)?),
            Actor::Worker(role) => Err(Failure::Engine(EngineError::Internal(format!(
                "the appliance cannot act as the worker role {role}"
            )))),
        }
    }

    /// Records a created resource with the plan's step that removes it.
    fn created(&mut self, resource: &Resource, target: Target, kept: bool) -> Result<(), Failure> {
        let undo = self.removal(resource, &target)?;
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

    /// The plan's removal step of `resource`: in the cleanup, the rollback, or released into
    /// the main steps.
    fn removal(&self, resource: &Resource, target: &Target) -> Result<Undo, Failure> {
        let step = self
            .plan
            .cleanup
            .iter()
            .chain(&self.plan.rollback)
            .chain(&self.plan.steps)
            .find(|s| &s.resource == resource && is_removal(s.action))
            .ok_or_else(|| {
                Failure::Engine(EngineError::Journal {
                    path: self.journal.path().display().to_string(),
                    message: format!(
                        "the plan creates {resource} but has no step that removes it (a planner bug)"
                    ),
                })
            })?;
        Ok(Undo {
            actor: step.actor.role().cloned(),
            action: step.action,
            target: target.clone(),
        })
    }

    fn removed(&mut self, resource: &Resource) -> Result<(), Failure> {
        self.journal.record(&Entry::Removed {
            name: resource.to_string(),
        })?;
        self.ids.remove(resource);
        Ok(())
    }

    fn target(&self, resource: &Resource) -> Result<&Target, Failure> {
        self.ids.get(resource).ok_or_else(|| {
            Failure::Engine(EngineError::Internal(format!(
                "{resource} does not exist (yet) in this session"
            )))
        })
    }

    fn snapshot_id(&self, snapshot: &Snapshot) -> Result<(Region, SnapshotId), Failure> {
        match self.ids.get(&Resource::Snapshot(snapshot.clone())) {
            Some(Target::Snapshot(r, id)) => Ok((r.clone(), id.clone())),
            _ => {
                // Not made by this session: the restore point being restored.
                let found = self.engine.catalog.latest_snapshot(
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
        }
    }

    fn volume_id(&self, volume: &Resource) -> Result<(Region, VolumeId), Failure> {
        match self.target(volume)? {
            Target::Volume(r, id) => Ok((r.clone(), id.clone())),
            other => Err(Failure::Engine(EngineError::Internal(format!(
                "{volume} is {other:?}, not a volume"
            )))),
        }
    }

    fn instance_id(&self, instance: &Resource) -> Result<(Region, InstanceId), Failure> {
        match instance {
            Resource::Instance { region, id, .. } => Ok((region.clone(), id.clone())),
            other => match self.target(other)? {
                Target::Instance(r, id) => Ok((r.clone(), id.clone())),
                t => Err(Failure::Engine(EngineError::Internal(format!(
                    "{other} is {t:?}, not an instance"
                )))),
            },
        }
    }

    /// Runs one main step.
    pub fn run_step(&mut self, step: &Step) -> StepResult {
        // The worker's own calls, and the repository role's (made by the worker with the
        // credentials it was given), are the worker's to make.
        let with_worker = self
            .plan
            .steps
            .iter()
            .any(|s| matches!(s.resource, Resource::Worker { .. }));
        if matches!(step.actor, Actor::Worker(_)) || (with_worker && step.action.service() == "s3") {
            return Ok(());
        }
        let creds = match (&step.action, &step.resource) {
            (&Action::StsAssumeRole, _) => None,
            _ => Some(self.creds(&step.actor)?),
        };
        let who = || {
            creds.clone().ok_or(Failure::Cloud(CloudError::invalid(
                step.action,
                "Internal",
                "no caller",
            )))
        };
        let region = step.region.clone();
        let at = || {
            region.clone().ok_or(Failure::Cloud(CloudError::invalid(
                step.action,
                "Internal",
                "a regional step without a region",
            )))
        };
        let retry = |f: &mut dyn FnMut() -> Result<(), CloudError>| self.engine.retry(step.action, f);
        match (step.action, &step.resource) {
            (Action::StsAssumeRole, Resource::Role(role)) => {
                self.engine.identities.role(role)?;
            }
            (Action::Ec2CreateSnapshots, Resource::Instance { region, id, .. }) => {
                let who = who()?;
                let mut made = Vec::new();
                retry(&mut || {
                    made = self
                        .engine
                        .cloud
                        .ec2
                        .create_snapshots(&who, region, id, &self.tags())?;
                    Ok(())
                })?;
                for created in &step.creates {
                    if let Resource::Snapshot(s) = created {
                        let info = made.iter().find(|i| i.volume == s.volume).ok_or_else(|| {
                            Failure::Cloud(CloudError::not_found(
                                step.action,
                                "InvalidVolume.NotFound",
                                format!(
                                    "no snapshot of {} was made: is it still attached to {id}?",
                                    s.volume
                                ),
                            ))
                        })?;
                        self.created(
                            created,
                            Target::Snapshot(region.clone(), info.id.clone()),
                            step.kept,
                        )?;
                    }
                }
                // Journaled first, so that a snapshot that fails while completing is removed.
                for info in &made {
                    self.engine.wait_snapshot(&who, region, &info.id)?;
                }
            }
            (Action::Ec2CreateSnapshot, volume @ Resource::Volume { .. }) => {
                let (region, id) = self.volume_id(volume)?;
                let who = who()?;
                let mut made = None;
                retry(&mut || {
                    made = Some(
                        self.engine
                            .cloud
                            .ec2
                            .create_snapshot(&who, &region, &id, &self.tags())?,
                    );
                    Ok(())
                })?;
                if let (Some(info), Some(created)) = (made, step.creates.first()) {
                    self.created(
                        created,
                        Target::Snapshot(region.clone(), info.id.clone()),
                        step.kept,
                    )?;
                    self.engine.wait_snapshot(&who, &region, &info.id)?;
                }
            }
            (Action::KmsDescribeKey, Resource::Key(key)) => {
                let who = who()?;
                let mut info = None;
                retry(&mut || {
                    info = Some(
                        self.engine
                            .cloud
                            .kms
                            .describe_key(&who, key.region(), &key.arn())?,
                    );
                    Ok(())
                })?;
                if let Some(info) = info {
                    if info.manager != KeyManager::Customer || info.state != "Enabled" {
                        return Err(Failure::Cloud(CloudError::new(
                            step.action,
                            ErrorKind::NotPermitted,
                            "KeyNotShareable",
                            format!("key {key} is {} and {:?}-managed: only an enabled customer managed key can protect a shared snapshot", info.state, info.manager),
                        )));
                    }
                }
            }
            (Action::Ec2ModifySnapshotAttribute, Resource::Snapshot(s)) => {
                let (region, id) = self.snapshot_id(s)?;
                let who = who()?;
                for created in &step.creates {
                    if let Resource::SnapshotShare { with, .. } = created {
                        retry(&mut || {
                            self.engine.cloud.ec2.modify_snapshot_sharing(
                                &who,
                                &region,
                                &id,
                                std::slice::from_ref(with),
                                &[],
                            )
                        })?;
                        self.created(
                            created,
                            Target::Share(region.clone(), id.clone(), with.clone()),
                            step.kept,
                        )?;
                    }
                }
            }
            (Action::Ec2CopySnapshot, Resource::Snapshot(source)) => {
                let (source_region, source_id) = self.snapshot_id(source)?;
                let Some(created @ Resource::Snapshot(copy)) = step.creates.first() else {
                    return Ok(());
                };
                let request = CopySnapshot {
                    source_region,
                    source: source_id,
                    encrypted: copy.key.is_some(),
                    kms_key_id: copy.key.as_ref().map(|k| k.arn()),
                    tags: self.tags(),
                };
                let who = who()?;
                let mut id = None;
                retry(&mut || {
                    id = Some(
                        self.engine
                            .cloud
                            .ec2
                            .copy_snapshot(&who, &copy.region, &request)?,
                    );
                    Ok(())
                })?;
                if let Some(id) = id {
                    self.created(
                        created,
                        Target::Snapshot(copy.region.clone(), id.clone()),
                        step.kept,
                    )?;
                    self.engine.wait_snapshot(&who, &copy.region, &id)?;
                }
            }
            (Action::Ec2CreateVolume, source) => {
                let Some(
                    created @ Resource::Volume {
                        region,
                        of,
                        key,
                        origin,
                        ..
                    },
                ) = step.creates.first()
                else {
                    return Ok(());
                };
                let snapshot = match source {
                    Resource::Snapshot(s) => Some(self.snapshot_id(s)?.1),
                    _ => None,
                };
                let size_gib = match (&snapshot, origin) {
                    (None, VolumeOrigin::Empty | VolumeOrigin::Restored) => {
                        Some(self.engine.volume_size(of)?)
                    }
                    _ => None,
                };
                let request = CreateVolume {
                    snapshot,
                    size_gib,
                    encrypted: key.is_some(),
                    kms_key_id: key.as_ref().map(|k| k.arn()),
                    tags: self.tags(),
                    availability_zone: self.zone.clone(),
                };
                let who = who()?;
                let mut info = None;
                retry(&mut || {
                    info = Some(self.engine.cloud.ec2.create_volume(&who, region, &request)?);
                    Ok(())
                })?;
                let Some(info) = info else { return Ok(()) };
                self.created(
                    created,
                    Target::Volume(region.clone(), info.id.clone()),
                    step.kept,
                )?;
                self.engine.wait_volume(&who, region, &info.id)?;
                // The planner predicted the key; a different one means the planner and the
                // cloud disagree about a rule, which must stop the session.
                if let Some(bulwark_model::KeyRef::Customer(expected)) = key {
                    let got = info.encryption.map(|e| e.key_arn);
                    if got.as_deref() != Some(expected.as_str()) {
                        return Err(Failure::Cloud(CloudError::invalid(
                            step.action,
                            "UnexpectedKey",
                            format!(
                                "{} is encrypted with {got:?}, the plan expected {expected}",
                                info.id
                            ),
                        )));
                    }
                }
            }
            (Action::Ec2AttachVolume, attachment @ Resource::Attachment { volume, instance }) => {
                let (region, volume_id) = self.volume_id(volume)?;
                let (_, instance_id) = self.instance_id(instance)?;
                let letter = self.devices.entry(instance_id.clone()).or_insert(b'f');
                let device = format!("/dev/sd{}", *letter as char);
                *letter += 1;
                let who = who()?;
                retry(&mut || {
                    self.engine
                        .cloud
                        .ec2
                        .attach_volume(&who, &region, &volume_id, &instance_id, &device)
                })?;
                self.attached_as.insert((**volume).clone(), device);
                self.created(
                    attachment,
                    Target::Attachment(region, volume_id, instance_id),
                    step.kept,
                )?;
            }
            (Action::IamCreateRole, role @ Resource::TemporaryRole { account, serves }) => {
                let trust = bulwark_plan::worker_role_trust().to_string();
                let who = who()?;
                let mut arn = None;
                retry(&mut || {
                    arn = Some(self.engine.cloud.iam.create_role(
                        &who,
                        &format!("/{NAME_PREFIX}/"),
                        &worker_name(serves),
                        &trust,
                        &self.tags(),
                    )?);
                    Ok(())
                })?;
                let _ = account;
                if let Some(arn) = arn {
                    self.created(role, Target::Role(arn), step.kept)?;
                }
            }
            (Action::IamPutRolePolicy, policy @ Resource::TemporaryRolePolicy { account, serves }) => {
                let role = self.temporary_role(account, serves)?;
                let document = bulwark_plan::worker_role_permissions().to_string();
                let who = who()?;
                retry(&mut || {
                    self.engine
                        .cloud
                        .iam
                        .put_role_policy(&who, &role, WORKER_POLICY, &document)
                })?;
                self.created(policy, Target::RolePolicy(role, WORKER_POLICY.into()), step.kept)?;
            }
            (Action::IamCreateInstanceProfile, profile @ Resource::InstanceProfile { serves, .. }) => {
                let who = who()?;
                let mut arn = None;
                retry(&mut || {
                    arn = Some(self.engine.cloud.iam.create_instance_profile(
                        &who,
                        &format!("/{NAME_PREFIX}/"),
                        &worker_name(serves),
                    )?);
                    Ok(())
                })?;
                if let Some(arn) = arn {
                    self.created(profile, Target::Profile(arn), step.kept)?;
                }
            }
            (
                Action::IamAddRoleToInstanceProfile,
                member @ Resource::ProfileMembership { account, serves },
            ) => {
                let role = self.temporary_role(account, serves)?;
                let profile = self.temporary_profile(account, serves)?;
                let who = who()?;
                retry(&mut || {
                    self.engine
                        .cloud
                        .iam
                        .add_role_to_instance_profile(&who, &profile, &role)
                })?;
                self.created(member, Target::Membership(profile, role), step.kept)?;
            }
            (Action::SqsCreateQueue, queue @ Resource::Queue { region, .. }) => {
                let who = who()?;
                let name = format!("{NAME_PREFIX}-{}", self.id);
                let mut url = None;
                retry(&mut || {
                    url = Some(self.engine.cloud.sqs.create_queue(&who, region, &name)?);
                    Ok(())
                })?;
                if let Some(url) = url {
                    self.created(queue, Target::Queue(region.clone(), url), step.kept)?;
                }
            }
            (Action::SqsSetQueueAttributes, queue @ Resource::Queue { account, region }) => {
                let url = self.queue_url(queue)?;
                let worker = self.plan.all_steps().find_map(|s| match &s.actor {
                    Actor::Worker(role) => Some(role.clone()),
                    _ => None,
                });
                let Some(worker) = worker else { return Ok(()) };
                let name = url.rsplit('/').next().unwrap_or_default();
                let policy = serde_json::json!({
                    "Version": "2012-10-17",
                    "Statement": [{
                        "Sid": "BulwarkWorker",
                        "Effect": "Allow",
                        "Principal": {"AWS": worker.as_str()},
                        "Action": [Action::SqsSendMessage, Action::SqsReceiveMessage, Action::SqsDeleteMessage],
                        "Resource": format!("arn:aws:sqs:{region}:{account}:{name}")
                    }]
                })
                .to_string();
                let who = who()?;
                retry(&mut || {
                    self.engine
                        .cloud
                        .sqs
                        .set_queue_policy(&who, region, &url, &policy)
                })?;
            }
            (
                Action::Ec2RunInstances,
                instance @ Resource::Worker {
                    account,
                    region,
                    serves,
                },
            ) => {
                let url = self.queue_url(&Resource::Queue {
                    account: self.engine.estate.appliance.account.clone(),
                    region: region.clone(),
                })?;
                let profile = match self.ids.get(&Resource::InstanceProfile {
                    account: account.clone(),
                    serves: serves.clone(),
                }) {
                    Some(Target::Profile(arn)) => arn.clone(),
                    _ => {
                        // A production account's worker role reaches the instance through
                        // the instance profile of the same name (as the IAM console makes it).
                        let role = step
                            .also
                            .iter()
                            .find(|p| p.action == Action::IamPassRole)
                            .map(|p| p.resource.clone())
                            .unwrap_or_default();
                        let name = role.rsplit('/').next().unwrap_or_default();
                        format!("arn:aws:iam::{account}:instance-profile/{name}")
                    }
                };
                let estate = &self.engine.estate;
                let served = estate.instance(serves).ok_or_else(|| {
                    Failure::Engine(EngineError::Internal(format!("{serves} is not in the estate")))
                })?;
                let settings = estate
                    .worker_settings(account, region)
                    .cloned()
                    .unwrap_or_default();
                let mut tags = self.tags();
                tags.extend(settings.tags.iter().map(|(k, v)| Tag::new(k, v.clone())));
                let run = RunInstance {
                    instance_profile: Some(profile),
                    instance_type: bulwark_plan::worker_instance_type(estate, account, region, served),
                    user_data: worker::user_data(&url),
                    tags,
                    subnet: settings.subnet.clone(),
                    security_groups: settings.security_groups.clone(),
                    availability_zone: None,
                };
                let who = who()?;
                let info = self.engine.launch(step.action, &who, region, &run)?;
                self.zone = info.availability_zone.clone();
                self.created(
                    instance,
                    Target::Instance(region.clone(), info.id.clone()),
                    step.kept,
                )?;
                self.engine.wait_instance(&who, region, &info.id)?;
            }
            (Action::Ec2RunInstances, instance @ Resource::RestoredInstance { region, from, .. }) => {
                let mut tags = self.tags();
                tags.push(Tag::new("bulwark:restored-from", from.to_string()));
                let run = RunInstance {
                    instance_profile: None,
                    instance_type: "c6i.large".into(),
                    user_data: String::new(),
                    tags,
                    subnet: None,
                    security_groups: Vec::new(),
                    // Where its volumes are.
                    availability_zone: self.zone.clone(),
                };
                let who = who()?;
                let info = self.engine.launch(step.action, &who, region, &run)?;
                self.created(
                    instance,
                    Target::Instance(region.clone(), info.id.clone()),
                    step.kept,
                )?;
                self.engine.wait_instance(&who, region, &info.id)?;
            }
            (Action::SqsSendMessage, queue @ Resource::Queue { .. }) => {
                let url = self.queue_url(queue)?;
                let task = self.task()?;
                let body = serde_json::to_string(&WorkerMessage::Task(task))
                    .map_err(|e| EngineError::Internal(e.to_string()))?;
                let who = who()?;
                let region = at()?;
                retry(&mut || self.engine.cloud.sqs.send_message(&who, &region, &url, &body))?;
            }
            (Action::SqsReceiveMessage, queue @ Resource::Queue { .. }) => {
                let url = self.queue_url(queue)?;
                self.follow_worker(&who()?, &at()?, &url)?;
            }
            // Without workers: reads are gathered, then made all at once as the repository
            // takes them (every volume's restore point, or none).
            (Action::EbsGetSnapshotBlock, Resource::Snapshot(snapshot)) => {
                self.plan_direct_read(snapshot, who()?)?;
            }
            (Action::S3PutObject, Resource::Repository { .. }) => self.read_direct(step)?,
            // The writes open the repository when they need it.
            (Action::S3GetObject, Resource::Repository { .. }) => {}
            (Action::EbsStartSnapshot, Resource::Snapshot(written)) => {
                self.write_direct(step, written, who()?)?;
            }
            // Removals that the plan makes part of the operation itself.
            (action, resource) if is_removal(action) => {
                if let Some(target) = self.ids.get(resource).cloned() {
                    let undo = Undo {
                        actor: step.actor.role().cloned(),
                        action,
                        target,
                    };
                    self.engine.undo(&undo)?;
                    self.removed(resource)?;
                }
            }
            (action, resource) => {
                return Err(Failure::Engine(EngineError::Internal(format!(
                    "the engine does not know how to run {action} on {resource} (an engine bug)"
                ))))
            }
        }
        Ok(())
    }

    /// The repository, opened with the repository role's credentials (for the data path
    /// without workers).
    fn repository(&mut self) -> Result<&Repository, Failure> {
        Ok(&self.open_repository()?.0)
    }

    /// The repository and the credentials it is read and written with.
    fn open_repository(&mut self) -> Result<&(Repository, SharedCredentials), Failure> {
        if self.repository.is_none() {
            let access = self.repository_access()?;
            let shared = SharedCredentials::new(access.credentials.clone());
            let repo = access.open(&self.engine.cloud, &shared).map_err(|e| {
                Failure::Engine(EngineError::NotReady(format!(
                    "the repository s3://{}/{} cannot be opened: {e}",
                    access.bucket, access.prefix
                )))
            })?;
            self.repository = Some((repo, shared));
        }
        self.repository
            .as_ref()
            .ok_or_else(|| Failure::Engine(EngineError::Internal("no repository".into())))
    }

    /// Runs a transfer without workers on the repository: its progress reported as events,
    /// the repository role's session renewed as it goes.
    fn with_repository<R>(
        &mut self,
        work: impl FnOnce(&Repository, &bulwark_mover::Progress) -> R,
    ) -> Result<R, Failure> {
        let engine = self.engine;
        let renewer = self.renewer()?;
        let (repo, shared) = self.open_repository()?;
        let progress = bulwark_mover::Progress::default();
        Ok(worker::reporting(
            &progress,
            |done, total| {
                engine.emit(&Event::Transfer { done, total });
                renewer.renew(shared);
            },
            || work(repo, &progress),
        ))
    }

    /// A renewer of the repository role's session for a transfer.
    fn renewer(&self) -> Result<Renewer<'e>, Failure> {
        let repository = self.engine.estate.repository.as_ref().ok_or_else(|| {
            Failure::Engine(EngineError::Internal("the estate defines no [repository]".into()))
        })?;
        Ok(Renewer {
            engine: self.engine,
            role: repository.role.clone(),
            at: Mutex::new(Instant::now()),
        })
    }

    /// Notes a snapshot to read, with the snapshot its volume's latest restore point was
    /// read from as parent if it still exists; that one is then the previous base snapshot
    /// the plan removes once the new restore points are written.
    fn plan_direct_read(&mut self, snapshot: &Snapshot, who: Credentials) -> StepResult {
        let (region, id) = self.snapshot_id(snapshot)?;
        let volume = snapshot.volume.to_string();
        let latest =
            crate::direct::latest_source_snapshot(self.repository()?, &volume).map_err(EngineError::from)?;
        let mut parent = None;
        if let Some(previous) = latest.filter(|p| *p != id) {
            let found =
                self.engine
                    .cloud
                    .ec2
                    .describe_snapshots(&who, &region, std::slice::from_ref(&previous));
            match found {
                Ok(infos) if infos.iter().any(|i| i.id == previous && i.state == "completed") => {
                    parent = Some(previous);
                }
                // Gone (deleted by hand, or by a failed cleanup): read every block.
                Ok(_) => {}
                Err(e) if e.kind == ErrorKind::NotFound => {}
                Err(e) => return Err(Failure::Cloud(e)),
            }
        }
        let replaces = parent.clone().map(|previous| {
            let base = Resource::Snapshot(Snapshot {
                origin: SnapshotOrigin::PreviousDirectBase,
                ..snapshot.clone()
            });
            (base, Target::Snapshot(region.clone(), previous))
        });
        self.direct_reads.push(DirectRead {
            who,
            region,
            snapshot: id,
            parent,
            volume,
            replaces,
        });
        Ok(())
    }

    /// Reads the noted snapshots into the repository: one restore point per volume, all or
    /// none. Then the previous base snapshots are journaled for the cleanup to remove (not
    /// before: a failed backup keeps them as the base of the next one).
    fn read_direct(&mut self, step: &Step) -> StepResult {
        let reads = std::mem::take(&mut self.direct_reads);
        let Some(first) = reads.first() else {
            return Ok(());
        };
        let (who, region) = (first.who.clone(), first.region.clone());
        let volumes: Vec<crate::direct::SnapshotVolume> = reads
            .iter()
            .map(|r| crate::direct::SnapshotVolume {
                snapshot: &r.snapshot,
                parent: r.parent.as_ref(),
                volume_id: &r.volume,
            })
            .collect();
        let engine = self.engine;
        let outcomes = self
            .with_repository(|repo, progress| {
                crate::direct::backup_snapshots(&engine.cloud, &who, &region, &volumes, repo, progress)
            })?
            .map_err(|e| direct_failure(step, e))?;
        for (read, outcome) in reads.iter().zip(outcomes) {
            self.points.push((read.volume.clone(), outcome.id.to_hex()));
            if let Some((base, target)) = &read.replaces {
                self.created(base, target.clone(), false)?;
            }
        }
        Ok(())
    }

    /// Writes the latest restore point of a volume into a new snapshot (journaled as soon as
    /// it is started) and waits until it is completed.
    fn write_direct(&mut self, step: &Step, written: &Snapshot, who: Credentials) -> StepResult {
        let volume = written.volume.to_string();
        let region = written.region.clone();
        let engine = self.engine;
        // StartSnapshot takes a key by its ARN only: aws/ebs (which the planner allows only
        // as the region's default key) is asked for as the default key.
        let key_arn = match &written.key {
            Some(bulwark_model::KeyRef::Customer(arn)) => Some(arn.to_string()),
            _ => None,
        };
        let repo = self.repository()?;
        let point = repo
            .latest_point(&volume)
            .map_err(|e| EngineError::from(crate::direct::DirectError::from(e)))?
            .map(|(id, _)| id)
            .ok_or_else(|| {
                Failure::Engine(EngineError::NotReady(format!(
                    "volume {volume} has no restore point in the repository: run `bulwark run backup` for the instance first"
                )))
            })?;
        let size_gib = crate::direct::snapshot_size_gib(repo, &point).map_err(|e| direct_failure(step, e))?;
        let mut tags = self.tags();
        tags.push(Tag::new("bulwark:restore-point", point.to_hex()));
        let id = crate::direct::start_snapshot(
            &engine.cloud,
            &who,
            &region,
            size_gib,
            written.key.is_some(),
            key_arn.as_deref(),
            &tags,
        )
        .map_err(|e| direct_failure(step, e))?;
        let resource = Resource::Snapshot(written.clone());
        self.created(&resource, Target::Snapshot(region.clone(), id.clone()), step.kept)?;
        self.with_repository(|repo, progress| {
            crate::direct::write_snapshot(&engine.cloud, &who, &region, &id, repo, &point, progress)
        })?
        .map_err(|e| direct_failure(step, e))?;
        self.points.push((volume, point.to_hex()));
        Ok(())
    }

    /// The repository and the repository role's credentials, for a worker or the appliance.
    fn repository_access(&self) -> Result<RepositoryAccess, Failure> {
        let repository = self.engine.estate.repository.as_ref().ok_or_else(|| {
            Failure::Engine(EngineError::Internal("the estate defines no [repository]".into()))
        })?;
        Ok(RepositoryAccess {
            bucket: repository.bucket.to_string(),
            prefix: repository.prefix.clone(),
            region: repository.region.clone(),
            // A new session: it must last until the first renewal.
            credentials: self.engine.identities.fresh(&repository.role)?,
            key: self.engine.repository_key.clone(),
            renewal_seconds: Some(self.engine.credential_renewal.as_secs().max(1)),
        })
    }

    fn temporary_role(
        &self,
        account: &bulwark_model::AccountId,
        serves: &InstanceId,
    ) -> Result<RoleArn, Failure> {
        match self.target(&Resource::TemporaryRole {
            account: account.clone(),
            serves: serves.clone(),
        })? {
            Target::Role(arn) => Ok(arn.clone()),
            t => Err(Failure::Engine(EngineError::Internal(format!(
                "{t:?} is not a role"
            )))),
        }
    }

    fn temporary_profile(
        &self,
        account: &bulwark_model::AccountId,
        serves: &InstanceId,
    ) -> Result<String, Failure> {
        match self.target(&Resource::InstanceProfile {
            account: account.clone(),
            serves: serves.clone(),
        })? {
            Target::Profile(arn) => Ok(arn.clone()),
            t => Err(Failure::Engine(EngineError::Internal(format!(
                "{t:?} is not an instance profile"
            )))),
        }
    }

    fn queue_url(&self, queue: &Resource) -> Result<String, Failure> {
        match self.target(queue)? {
            Target::Queue(_, url) => Ok(url.clone()),
            t => Err(Failure::Engine(EngineError::Internal(format!(
                "{t:?} is not a queue"
            )))),
        }
    }

    /// The worker's task: its attached volumes, and the repository with the repository
    /// role's credentials.
    fn task(&self) -> Result<Task, Failure> {
        let kind = if self.plan.steps.iter().any(|s| s.action == Action::S3PutObject) {
            TaskKind::Backup
        } else {
            TaskKind::Restore
        };
        let mut volumes = Vec::new();
        for (volume, device) in &self.attached_as {
            if let Resource::Volume { of, origin, .. } = volume {
                let for_worker = match kind {
                    TaskKind::Backup => *origin == VolumeOrigin::ForWorker,
                    TaskKind::Restore => matches!(origin, VolumeOrigin::Empty | VolumeOrigin::Restored),
                };
                if let (true, Some(target)) = (for_worker, self.ids.get(volume)) {
                    volumes.push(TaskVolume {
                        device: device.clone(),
                        volume: of.to_string(),
                        point: None,
                        // The volume itself, for the worker to find its NVMe device by.
                        volume_id: match target {
                            Target::Volume(_, id) => Some(id.clone()),
                            _ => None,
                        },
                    });
                }
            }
        }
        volumes.sort_by(|a, b| a.device.cmp(&b.device));
        Ok(Task {
            kind,
            volumes,
            repository: self.repository_access()?,
        })
    }

    /// Follows the worker until it reports the end, fails, or dies.
    fn follow_worker(&mut self, who: &Credentials, region: &Region, url: &str) -> StepResult {
        let worker = self
            .ids
            .iter()
            .find_map(|(r, t)| match (r, t) {
                (Resource::Worker { .. }, Target::Instance(region, id)) => Some((region.clone(), id.clone())),
                _ => None,
            })
            .ok_or_else(|| Failure::Engine(EngineError::Internal("the session has no worker".into())))?;
        let deployer = self
            .plan
            .steps
            .iter()
            .find(|s| s.action == Action::Ec2RunInstances && matches!(s.resource, Resource::Worker { .. }))
            .map(|s| s.actor.clone())
            .unwrap_or(Actor::Appliance);
        let deployer = self.creds(&deployer)?;
        let started = Instant::now();
        let mut last_heard = Instant::now();
        let renewer = self.renewer()?;
        loop {
            if let Some(credentials) = renewer.due()? {
                let body = serde_json::to_string(&WorkerMessage::Credentials { credentials })
                    .map_err(|e| EngineError::Internal(e.to_string()))?;
                self.engine.cloud.sqs.send_message(who, region, url, &body)?;
            }
            let messages =
                self.engine
                    .cloud
                    .sqs
                    .receive_messages(who, region, url, Duration::from_millis(500))?;
            for m in messages {
                self.engine
                    .cloud
                    .sqs
                    .delete_message(who, region, url, &m.receipt)?;
                match serde_json::from_str::<WorkerMessage>(&m.body) {
                    // Our own task or credentials, not yet taken by the worker: put them back.
                    Ok(WorkerMessage::Task(_) | WorkerMessage::Credentials { .. }) => {
                        self.engine.cloud.sqs.send_message(who, region, url, &m.body)?;
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    Ok(WorkerMessage::Progress { done, total }) => {
                        last_heard = Instant::now();
                        self.engine.emit(&Event::Transfer { done, total });
                    }
                    Ok(WorkerMessage::Done { points }) => {
                        self.points = points;
                        return Ok(());
                    }
                    Ok(WorkerMessage::Failed { error }) => {
                        return Err(Failure::Engine(EngineError::Worker {
                            instance: worker.1.to_string(),
                            message: error,
                            remedy: "the worker's error says what failed; a failed backup writes no restore point (the blocks it stored are removed by the next prune)".into(),
                        }))
                    }
                    Err(_) => {}
                }
            }
            if last_heard.elapsed() > self.engine.worker_silence {
                let state = self
                    .engine
                    .cloud
                    .ec2
                    .describe_instances(&deployer, &worker.0, std::slice::from_ref(&worker.1))?
                    .pop()
                    .map(|i| (i.state, i.state_reason));
                match state {
                    Some((s, _)) if s == "running" || s == "pending" => last_heard = Instant::now(),
                    other => {
                        let (s, reason) = other.unwrap_or_else(|| ("gone".into(), None));
                        return Err(Failure::Engine(EngineError::Worker {
                            instance: worker.1.to_string(),
                            message: format!("the worker instance is {s}{}", reason.map(|r| format!(" ({r})")).unwrap_or_default()),
                            remedy: "run the session again; if workers keep dying, check the worker instance type and the region's capacity".into(),
                        }));
                    }
                }
            }
            if started.elapsed() > self.engine.worker_timeout {
                return Err(Failure::Engine(EngineError::Worker {
                    instance: worker.1.to_string(),
                    message: format!("no result after {:?}", self.engine.worker_timeout),
                    remedy:
                        "check the worker's console output; raise the worker timeout for very large volumes"
                            .into(),
                }));
            }
        }
    }
}

/// The name of the inline policy of temporary worker roles.
const WORKER_POLICY: &str = "bulwark-worker";

/// The name of a temporary worker role and its instance profile.
fn worker_name(serves: &InstanceId) -> String {
    format!("worker-{serves}")
}

/// Whether an action removes what another created.
pub(crate) fn is_removal(action: Action) -> bool {
    matches!(
        action,
        Action::Ec2DeleteSnapshot
            | Action::Ec2DeleteVolume
            | Action::Ec2DetachVolume
            | Action::Ec2TerminateInstances
            | Action::Ec2ModifySnapshotAttribute
            | Action::IamDeleteRole
            | Action::IamDeleteRolePolicy
            | Action::IamDeleteInstanceProfile
            | Action::IamRemoveRoleFromInstanceProfile
            | Action::SqsDeleteQueue
    )
}

/// Renews the repository role's session during a transfer that may outlast it.
struct Renewer<'e> {
    engine: &'e Engine,
    role: RoleArn,
    /// When the last session was taken.
    at: Mutex<Instant>,
}

impl Renewer<'_> {
    /// A new session of the repository role if the renewal is due.
    fn due(&self) -> Result<Option<Credentials>, CloudError> {
        let mut at = crate::lock(&self.at);
        if at.elapsed() < self.engine.credential_renewal {
            return Ok(None);
        }
        let credentials = self.engine.identities.fresh(&self.role)?;
        *at = Instant::now();
        Ok(Some(credentials))
    }

    /// Puts a new session into `shared` if the renewal is due. A failed renewal is tried again
    /// at the next report; the transfer fails only if the old session expires meanwhile.
    fn renew(&self, shared: &SharedCredentials) {
        if let Ok(Some(credentials)) = self.due() {
            shared.replace(credentials);
        }
    }
}
