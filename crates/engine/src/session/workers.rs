//! Steps of a session with a worker: its temporary identity in the backup account, the session
//! queue, launching the worker (and the restored instance), sending its task and following it
//! to the end.

use std::time::{Duration, Instant};

use bulwark_cloud::{CloudError, Credentials, ErrorKind, InstanceInfo, RunInstance, Tag};
use bulwark_model::{Action, InstanceId, Region, RoleArn};
use bulwark_plan::{
    Actor, Call, DataPath, QueueRef, Resource, Step, VolumeOrigin, WorkerIdentity, WorkerRef, NAME_PREFIX,
};

use super::{Failure, Session, StepResult};
use crate::channel::{Channel, SessionKey, Side};
use crate::incremental::Read;
use crate::journal::{Ec2Kind, Finder, Target};
use crate::worker::{self, Changes, RepositoryAccess, Task, TaskKind, TaskVolume, WorkerMessage};
use crate::{EngineError, Event};

/// The name of the inline policy of temporary worker roles.
const WORKER_POLICY: &str = "bulwark-worker";

impl Session<'_> {
    /// The name of this session's temporary worker role and instance profile for `serves`:
    /// one per session, so that a concurrent session or a leftover never blocks another.
    fn worker_name(&self, serves: &InstanceId) -> String {
        format!("worker-{}-{serves}", self.id())
    }

    /// The temporary worker role, named for this session: what a lost answer made is the role
    /// of that name, so a repeated call that finds the name taken found it.
    pub(super) fn create_worker_role(&mut self, step: &Step, identity: &WorkerIdentity) -> StepResult {
        let trust = bulwark_plan::worker_role_trust().to_string();
        let who = self.who(step)?;
        let name = self.worker_name(&identity.serves);
        let tags = self.tags();
        let engine = self.engine;
        let iam = &engine.cloud.iam;
        let path = format!("/{NAME_PREFIX}/");
        let arn = RoleArn::new(
            engine.estate.partition(),
            &identity.account,
            &format!("{NAME_PREFIX}/{name}"),
        );
        let resource = Resource::TemporaryRole(identity.clone());
        self.creating(
            step,
            Finder::Named(Target::Role(arn.clone())),
            &resource,
            || iam.create_role(&who, &path, &name, &trust, &tags),
            || Ok(Some(arn.clone())),
            |session, arn| session.created(&resource, Target::Role(arn), step.kept),
        )
    }

    pub(super) fn put_worker_policy(&mut self, step: &Step, identity: &WorkerIdentity) -> StepResult {
        let role = self.temporary_role(identity)?;
        let document = bulwark_plan::worker_role_permissions().to_string();
        let who = self.who(step)?;
        let engine = self.engine;
        let iam = &engine.cloud.iam;
        let target = Target::RolePolicy(role.clone(), WORKER_POLICY.into());
        let resource = Resource::TemporaryRolePolicy(identity.clone());
        // Putting a policy again replaces it with the same.
        self.creating(
            step,
            Finder::Named(target.clone()),
            &resource,
            || iam.put_role_policy(&who, &role, WORKER_POLICY, &document),
            || Ok(None),
            |session, ()| session.created(&resource, target.clone(), step.kept),
        )
    }

    pub(super) fn create_worker_profile(&mut self, step: &Step, identity: &WorkerIdentity) -> StepResult {
        let who = self.who(step)?;
        let name = self.worker_name(&identity.serves);
        let engine = self.engine;
        let iam = &engine.cloud.iam;
        let path = format!("/{NAME_PREFIX}/");
        let arn = format!(
            "arn:{}:iam::{}:instance-profile/{NAME_PREFIX}/{name}",
            engine.estate.partition().as_str(),
            identity.account
        );
        let resource = Resource::InstanceProfile(identity.clone());
        self.creating(
            step,
            Finder::Named(Target::Profile(arn.clone())),
            &resource,
            || iam.create_instance_profile(&who, &path, &name),
            || Ok(Some(arn.clone())),
            |session, arn| session.created(&resource, Target::Profile(arn), step.kept),
        )
    }

    pub(super) fn add_worker_to_profile(&mut self, step: &Step, identity: &WorkerIdentity) -> StepResult {
        let role = self.temporary_role(identity)?;
        let profile = self.temporary_profile(identity)?;
        let who = self.who(step)?;
        let engine = self.engine;
        let iam = &engine.cloud.iam;
        let target = Target::Membership(profile.clone(), role.clone());
        let resource = Resource::ProfileMembership(identity.clone());
        // The profile is this session's: a role in it after a lost answer is the one added.
        self.creating(
            step,
            Finder::Named(target.clone()),
            &resource,
            || iam.add_role_to_instance_profile(&who, &profile, &role),
            || Ok(Some(())),
            |session, ()| session.created(&resource, target.clone(), step.kept),
        )
    }

    /// The session queue. CreateQueue of an existing name answers its URL, so a repeated call
    /// finds what a lost one made.
    pub(super) fn create_queue(&mut self, step: &Step, queue: &QueueRef) -> StepResult {
        let who = self.who(step)?;
        let name = format!("{NAME_PREFIX}-{}", self.id());
        let engine = self.engine;
        let sqs = &engine.cloud.sqs;
        // Messages are kept as long as a worker may take, and no longer: a task (sealed as it
        // is) does not outlive its session on the queue.
        let retention = engine.worker_timeout + Duration::from_secs(600);
        let resource = Resource::Queue(queue.clone());
        let finder = Finder::Queue {
            region: queue.region.clone(),
            name: name.clone(),
        };
        self.creating(
            step,
            finder,
            &resource,
            || sqs.create_queue(&who, &queue.region, &name, retention),
            || sqs.queue_url(&who, &queue.region, &name),
            |session, url| session.created(&resource, Target::Queue(queue.region.clone(), url), step.kept),
        )
    }

    /// Lets the worker's role, and it only, use the session queue.
    pub(super) fn set_queue_policy(&mut self, step: &Step, queue: &QueueRef) -> StepResult {
        let url = self.queue_url(queue)?;
        let Some(worker) = self.worker_role()? else {
            return Ok(());
        };
        let name = url.rsplit('/').next().unwrap_or_default();
        let arn = format!("arn:aws:sqs:{}:{}:{name}", queue.region, queue.account);
        let policy = bulwark_model::iam::PolicyDocument::new(vec![bulwark_model::iam::Statement::allow(
            [
                Action::SqsSendMessage,
                Action::SqsReceiveMessage,
                Action::SqsDeleteMessage,
            ]
            .map(Action::as_str),
            [arn],
        )
        .with_sid("BulwarkWorker")
        .for_principal(bulwark_model::iam::Principals::aws(worker.as_str()))])
        .to_string();
        let who = self.who(step)?;
        let sqs = &self.engine.cloud.sqs;
        self.retried(step.action(), || {
            sqs.set_queue_policy(&who, &queue.region, &url, &policy)
        })
    }

    /// The role the session's worker runs as: the temporary role this session made, or the
    /// production account's worker role the plan names.
    fn worker_role(&self) -> Result<Option<RoleArn>, Failure> {
        let temporary = self.plan.steps.iter().find_map(|s| match &s.call {
            Call::CreateWorkerRole { identity } => Some(identity.clone()),
            _ => None,
        });
        if let Some(identity) = temporary {
            return self.temporary_role(&identity).map(Some);
        }
        Ok(self.plan.all_steps().find_map(|s| match &s.actor {
            Actor::Worker(role) => Some(role.clone()),
            _ => None,
        }))
    }

    pub(super) fn launch_worker(&mut self, step: &Step, worker: &WorkerRef) -> StepResult {
        let queue = QueueRef {
            account: self.engine.estate.appliance.account.clone(),
            region: worker.region.clone(),
        };
        let url = self.queue_url(&queue)?;
        let identity = WorkerIdentity {
            account: worker.account.clone(),
            serves: worker.serves.clone(),
        };
        let profile = match self.ids.get(&Resource::InstanceProfile(identity)) {
            Some(Target::Profile(arn)) => arn.clone(),
            _ => {
                // A production account's worker role reaches the instance through the
                // instance profile of the same name (as the IAM console makes it).
                let role = step
                    .also
                    .iter()
                    .find(|p| p.action == Action::IamPassRole)
                    .map(|p| p.resource.clone())
                    .unwrap_or_default();
                let name = role.rsplit('/').next().unwrap_or_default();
                format!("arn:aws:iam::{}:instance-profile/{name}", worker.account)
            }
        };
        let estate = &self.engine.estate;
        let served = estate.instance(&worker.serves).ok_or_else(|| {
            Failure::Engine(EngineError::Internal(format!(
                "{} is not in the estate",
                worker.serves
            )))
        })?;
        let settings = estate
            .worker_settings(&worker.account, &worker.region)
            .cloned()
            .unwrap_or_default();
        let mut tags = self.step_tags(step);
        tags.extend(settings.tags.iter().map(|(k, v)| Tag::new(k, v.clone())));
        let run = RunInstance {
            instance_profile: Some(profile),
            instance_type: bulwark_plan::worker_instance_type(
                estate,
                &worker.account,
                &worker.region,
                served,
            ),
            user_data: worker::user_data(&url, self.session_key()?),
            tags,
            subnet: settings.subnet.clone(),
            security_groups: settings.security_groups.clone(),
            // In the zone a volume restore asks for, so that the volumes it writes are there.
            availability_zone: self.zone.clone(),
            client_token: Some(self.client_token(step)),
            imds_v2_only: true,
            image: None,
            key_name: None,
        };
        let info = self.launch(step, &worker.region, &run, &Resource::Worker(worker.clone()))?;
        self.zone = info.availability_zone.clone();
        Ok(())
    }

    /// RunInstances of `launched`, retried (by the engine's policy) while throttled and while a
    /// fresh instance profile is not yet visible to EC2; its client token makes a repeated
    /// launch answer the instance the first one started. Waits until it runs.
    pub(super) fn launch(
        &mut self,
        step: &Step,
        region: &Region,
        run: &RunInstance,
        launched: &Resource,
    ) -> Result<InstanceInfo, Failure> {
        let who = self.who(step)?;
        let engine = self.engine;
        let ec2 = &engine.cloud.ec2;
        let finder = Finder::Tagged {
            kind: Ec2Kind::Instance,
            region: region.clone(),
            tags: run.tags.clone(),
        };
        let info = self.creating(
            step,
            finder,
            launched,
            || ec2.run_instance(&who, region, run),
            || Ok(None),
            |session, info: InstanceInfo| {
                let target = Target::Instance(region.clone(), info.id.clone());
                session.created(launched, target, step.kept)?;
                Ok(info)
            },
        )?;
        self.wait_instance(&who, region, &info.id)?;
        Ok(info)
    }

    /// Waits for a new instance to run; one that stops at launch failed (on AWS, a missing
    /// kms:CreateGrant on an encrypted volume's key).
    fn wait_instance(&self, who: &Credentials, region: &Region, id: &InstanceId) -> StepResult {
        let ec2 = &self.engine.cloud.ec2;
        self.wait(Action::Ec2DescribeInstances, || {
            let i = ec2.describe_instances(who, region, std::slice::from_ref(id))?;
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

    /// The key of the session queue's channel.
    fn session_key(&self) -> Result<&SessionKey, Failure> {
        self.session_key.as_ref().ok_or_else(|| {
            Failure::Engine(EngineError::Internal(
                "the operating system gave no random numbers for the session's key".into(),
            ))
        })
    }

    /// The appliance's end of the session queue's channel.
    fn channel(&self) -> Result<Channel, Failure> {
        Channel::new(self.session_key()?, Side::Appliance)
            .map_err(|e| Failure::Engine(EngineError::Internal(e.to_string())))
    }

    pub(super) fn send_task(&mut self, step: &Step, queue: &QueueRef) -> StepResult {
        let url = self.queue_url(queue)?;
        let mut task = self.task()?;
        let channel = self.channel()?;
        let body = loop {
            let body = channel
                .seal(&WorkerMessage::Task(task.clone()))
                .map_err(|e| EngineError::Internal(e.to_string()))?;
            if body.len() <= worker::MAX_MESSAGE_BYTES || !self.shorten_task(&mut task) {
                break body;
            }
        };
        let who = self.who(step)?;
        let sqs = &self.engine.cloud.sqs;
        self.retried(step.action(), || {
            sqs.send_message(&who, &queue.region, &url, &body)
        })
    }

    /// Makes a task too long for one message shorter: the volume with the longest list of
    /// changes is read in full instead. `false` if no volume has a list left.
    fn shorten_task(&mut self, task: &mut Task) -> bool {
        let Some(longest) = task
            .volumes
            .iter_mut()
            .filter(|v| v.changes.is_some())
            .max_by_key(|v| v.changes.as_ref().map_or(0, |c| c.blocks.len()))
        else {
            return false;
        };
        let blocks = longest.changes.take().map_or(0, |c| c.blocks.len());
        if let Some(read) = self.reads.iter_mut().find(|r| r.volume == longest.volume) {
            read.read_in_full(format!(
                "its {blocks} changed blocks are too many to list in one message to the worker"
            ));
        }
        if let Some(read) = self.reads.iter().find(|r| r.volume == longest.volume) {
            self.say_how(read);
        }
        true
    }

    fn temporary_role(&self, identity: &WorkerIdentity) -> Result<RoleArn, Failure> {
        match self.target(&Resource::TemporaryRole(identity.clone()))? {
            Target::Role(arn) => Ok(arn.clone()),
            t => Err(Failure::Engine(EngineError::Internal(format!(
                "{t:?} is not a role"
            )))),
        }
    }

    fn temporary_profile(&self, identity: &WorkerIdentity) -> Result<String, Failure> {
        match self.target(&Resource::InstanceProfile(identity.clone()))? {
            Target::Profile(arn) => Ok(arn.clone()),
            t => Err(Failure::Engine(EngineError::Internal(format!(
                "{t:?} is not an instance profile"
            )))),
        }
    }

    fn queue_url(&self, queue: &QueueRef) -> Result<String, Failure> {
        match self.target(&Resource::Queue(queue.clone()))? {
            Target::Queue(_, url) => Ok(url.clone()),
            t => Err(Failure::Engine(EngineError::Internal(format!(
                "{t:?} is not a queue"
            )))),
        }
    }

    /// The worker's task: its attached volumes, and the repository with the repository
    /// role's credentials.
    fn task(&self) -> Result<Task, Failure> {
        let kind = if self.plan.steps.iter().any(|s| {
            matches!(
                s.call,
                Call::WriteBackup {
                    by: DataPath::Worker,
                    ..
                }
            )
        }) {
            TaskKind::Backup
        } else {
            TaskKind::Restore
        };
        let mut volumes = Vec::new();
        for (volume, device) in &self.attached_as {
            let Resource::Volume(v) = volume else { continue };
            let for_worker = match kind {
                TaskKind::Backup => v.origin == VolumeOrigin::ForWorker,
                TaskKind::Restore => matches!(v.origin, VolumeOrigin::Empty | VolumeOrigin::Restored),
            };
            if let (true, Some(Target::Volume(_, id))) = (for_worker, self.ids.get(volume)) {
                let read = self.reads.iter().find(|r| r.volume == v.of.to_string());
                volumes.push(TaskVolume {
                    device: device.clone(),
                    volume: v.of.to_string(),
                    point: None,
                    // The volume itself, for the worker to find its NVMe device by.
                    volume_id: Some(id.clone()),
                    snapshot: read.map(|r| r.snapshot.to_string()),
                    changes: read.and_then(|r| match (&r.read, &r.blocks) {
                        (Read::Incremental { parent }, Some(blocks)) => Some(Changes {
                            parent: parent.to_hex(),
                            blocks: blocks.clone(),
                        }),
                        _ => None,
                    }),
                });
            }
        }
        volumes.sort_by(|a, b| a.device.cmp(&b.device));
        Ok(Task {
            kind,
            volumes,
            repository: self.repository_access()?,
            // A backup keeps the instance as its snapshots found it.
            instance: match kind {
                TaskKind::Backup => self.record.as_ref().map(crate::record::InstanceRecord::to_json),
                TaskKind::Restore => None,
            },
            index_files: kind == TaskKind::Backup && self.indexes_files(),
        })
    }

    /// The repository and the repository role's credentials, for a worker or the appliance.
    pub(super) fn repository_access(&self) -> Result<RepositoryAccess, Failure> {
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

    /// Follows the worker until it reports the end, fails, dies, or the session is cancelled.
    /// A queue that answers with a transient error is asked again.
    pub(super) fn follow_worker(&mut self, step: &Step, queue: &QueueRef) -> StepResult {
        let who = self.who(step)?;
        let region = &queue.region;
        let url = self.queue_url(queue)?;
        let (worker_region, worker) = self
            .ids
            .iter()
            .find_map(|(r, t)| match (r, t) {
                (Resource::Worker(_), Target::Instance(region, id)) => Some((region.clone(), id.clone())),
                _ => None,
            })
            .ok_or_else(|| Failure::Engine(EngineError::Internal("the session has no worker".into())))?;
        let deployer = self
            .plan
            .steps
            .iter()
            .find(|s| matches!(s.call, Call::LaunchWorker { .. }))
            .map(|s| s.actor.clone())
            .unwrap_or(Actor::Appliance);
        let deployer = match &deployer {
            Actor::Role(role) => self.engine.identities.role(role)?,
            _ => self.engine.identities.appliance().clone(),
        };
        let sqs = &self.engine.cloud.sqs;
        let started = Instant::now();
        let mut last_heard = Instant::now();
        let renewer = self.renewer()?;
        let channel = self.channel()?;
        let worker_failed = |message: String, remedy: &str| {
            Failure::Engine(EngineError::Worker {
                instance: worker.to_string(),
                message,
                remedy: remedy.to_owned(),
            })
        };
        loop {
            if self.control.is_cancelled() {
                return Err(Failure::Engine(EngineError::Cancelled {
                    step: self.step_number(step),
                }));
            }
            if let Some(credentials) = renewer.due()? {
                let body = channel
                    .seal(&WorkerMessage::Credentials { credentials })
                    .map_err(|e| EngineError::Internal(e.to_string()))?;
                self.retried(Action::SqsSendMessage, || {
                    sqs.send_message(&who, region, &url, &body)
                })?;
            }
            let messages = self.retried(Action::SqsReceiveMessage, || {
                sqs.receive_messages(&who, region, &url, Duration::from_millis(500))
            })?;
            for m in messages {
                self.retried(Action::SqsDeleteMessage, || {
                    sqs.delete_message(&who, region, &url, &m.receipt)
                })?;
                match channel.open(&m.body) {
                    // Our own task or credentials, not yet taken by the worker: put them back.
                    Ok((Side::Worker, _)) => {
                        self.retried(Action::SqsSendMessage, || sqs.send_message(&who, region, &url, &m.body))?;
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    Ok((_, WorkerMessage::Progress { done, total })) => {
                        last_heard = Instant::now();
                        self.engine.emit(self.id(), &Event::Transfer { done, total });
                    }
                    Ok((_, WorkerMessage::Done { points, instance })) => {
                        self.adopt_record(instance.as_deref());
                        if !self.reads.is_empty() {
                            let written = self.read_points(&points)?;
                            let reads = std::mem::take(&mut self.reads);
                            self.backed_up(&reads, &written)?;
                        }
                        self.points = points;
                        return Ok(());
                    }
                    Ok((_, WorkerMessage::Failed { error })) => {
                        return Err(worker_failed(
                            error,
                            "the worker's error says what failed; a failed backup writes no restore point (the blocks it stored are removed by the next prune)",
                        ))
                    }
                    // A worker of another release: it cannot do this session's task.
                    Err(e @ crate::worker::ProtocolError::Version { .. }) => {
                        return Err(worker_failed(
                            e.to_string(),
                            "boot workers from an image of the appliance's release",
                        ))
                    }
                    // Not the worker's: someone who can write the queue. Dropped, and said.
                    Err(e @ crate::worker::ProtocolError::Forged) => {
                        tracing::warn!(session = %self.id(), queue = %url, "{e}");
                    }
                    // Not ours (the queue is the session's own, so this is noise): dropped.
                    Err(crate::worker::ProtocolError::Malformed(_))
                    | Ok((_, WorkerMessage::Task(_) | WorkerMessage::Credentials { .. })) => {}
                }
            }
            if last_heard.elapsed() > self.engine.worker_silence {
                let ec2 = &self.engine.cloud.ec2;
                let state = self
                    .retried(Action::Ec2DescribeInstances, || {
                        ec2.describe_instances(&deployer, &worker_region, std::slice::from_ref(&worker))
                    })?
                    .pop()
                    .map(|i| (i.state, i.state_reason));
                match state {
                    Some((s, _)) if s == "running" || s == "pending" => last_heard = Instant::now(),
                    other => {
                        let (s, reason) = other.unwrap_or_else(|| ("gone".into(), None));
                        let why = reason.map(|r| format!(" ({r})")).unwrap_or_default();
                        return Err(worker_failed(
                            format!("the worker instance is {s}{why}"),
                            "run the session again; if workers keep dying, check the worker instance type and the region's capacity",
                        ));
                    }
                }
            }
            if started.elapsed() > self.engine.worker_timeout {
                return Err(worker_failed(
                    format!("no result after {:?}", self.engine.worker_timeout),
                    "check the worker's console output; raise the worker timeout for very large volumes",
                ));
            }
        }
    }

    /// The 1-based number of a main step of the plan.
    pub(super) fn step_number(&self, step: &Step) -> usize {
        self.plan
            .steps
            .iter()
            .position(|s| std::ptr::eq(s, step))
            .map_or(0, |i| i + 1)
    }
}
