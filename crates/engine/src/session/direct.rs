//! Steps of sessions without workers: the appliance reads snapshots into the repository, or
//! writes restore points into new snapshots, through the EBS direct APIs, with a session of the
//! repository role it renews as the transfer goes.

use std::sync::Mutex;
use std::time::Instant;

use bulwark_cloud::{Credentials, SharedCredentials, Tag};
use bulwark_model::{KeyRef, RoleArn};
use bulwark_plan::{Resource, Snapshot, Step};
use bulwark_repo::Repository;

use super::{Failure, Session, StepResult};
use crate::direct::{self, DirectError};
use crate::incremental::Read;
use crate::journal::{Ec2Kind, Finder, Target};
use crate::{worker, Engine, EngineError, Event};

/// What the session's direct-data-path steps met, for [`Failure`].
pub(super) fn direct_failure(step: &Step, error: DirectError) -> Failure {
    match error {
        // The step's own call: reported as the step's failure, with AWS's answer.
        DirectError::Cloud(e) if e.action == step.action() => Failure::Cloud(e),
        other => Failure::Engine(EngineError::Direct(other)),
    }
}

impl<'e> Session<'e> {
    /// Notes a snapshot to read: only its changes since the previous backup's base snapshot,
    /// or in full.
    pub(super) fn plan_direct_read(&mut self, step: &Step, snapshot: &Snapshot) -> StepResult {
        let read = self.choose_read(step, snapshot)?;
        self.reads.push(read);
        Ok(())
    }

    /// Reads the noted snapshots into the repository: one restore point per volume, all or
    /// none. Then the previous base snapshots are journaled for the cleanup to remove (not
    /// before: a failed backup keeps them as the base of the next one).
    pub(super) fn read_direct(&mut self, step: &Step) -> StepResult {
        let Some(first) = self.reads.first() else {
            return Ok(());
        };
        let (who, region) = (first.who.clone(), first.region.clone());
        let record = self.record.as_ref().map(crate::record::InstanceRecord::to_json);
        let index_files = self.indexes_files();
        let reads = std::mem::take(&mut self.reads);
        let volumes: Vec<direct::SnapshotVolume> = reads
            .iter()
            .map(|r| direct::SnapshotVolume {
                snapshot: &r.snapshot,
                parent: match r.read {
                    Read::Incremental { .. } => r.base.as_ref(),
                    Read::Full { .. } => None,
                },
                volume_id: &r.volume,
                instance: record.as_deref(),
                index_files,
            })
            .collect();
        let engine = self.engine;
        let outcomes = self
            .with_repository(|repo, progress| {
                direct::backup_snapshots(&engine.cloud, &who, &region, &volumes, repo, progress)
            })?
            .map_err(|e| direct_failure(step, e))?;
        let written: Vec<_> = reads
            .iter()
            .zip(outcomes)
            .map(|(read, outcome)| (read.volume.clone(), outcome.id, outcome.manifest))
            .collect();
        self.points.extend(
            written
                .iter()
                .map(|(volume, id, _)| (volume.clone(), id.to_hex())),
        );
        drop(volumes);
        self.backed_up(&reads, &written)
    }

    /// Writes the latest restore point of a volume into a new snapshot (journaled as soon as
    /// it is started) and waits until it is completed.
    pub(super) fn write_direct(&mut self, step: &Step, written: &Snapshot) -> StepResult {
        let who = self.who(step)?;
        let volume = written.volume.to_string();
        let region = written.region.clone();
        let engine = self.engine;
        // StartSnapshot takes a key by its ARN only: aws/ebs (which the planner allows only
        // as the region's default key) is asked for as the default key.
        let key_arn = match &written.key {
            Some(KeyRef::Customer(arn)) => Some(arn.to_string()),
            _ => None,
        };
        let repo = self.repository()?;
        let (point, manifest) = repo
            .latest_point(&volume)
            .map_err(|e| EngineError::from(DirectError::from(e)))?
            .ok_or_else(|| {
                Failure::Engine(EngineError::NotReady(format!(
                    "volume {volume} has no restore point in the repository: run `bulwark run backup` for the instance first"
                )))
            })?;
        self.adopt_record(manifest.instance.as_deref());
        let repo = self.repository()?;
        let size_gib = direct::snapshot_size_gib(repo, &point).map_err(|e| direct_failure(step, e))?;
        let mut tags = self.step_tags(step);
        let finder = Finder::Tagged {
            kind: Ec2Kind::Snapshot,
            region: region.clone(),
            tags: tags.clone(),
        };
        tags.push(Tag::new("bulwark:restore-point", point.to_hex()));
        let start = bulwark_cloud::StartSnapshot {
            client_token: Some(self.client_token(step)),
            ..direct::new_snapshot(size_gib, written.key.is_some(), key_arn.as_deref(), &tags)
        };
        let resource = Resource::Snapshot(written.clone());
        // The client token makes a repeated start answer the snapshot the first one started.
        let id = self.creating(
            step,
            finder,
            &resource,
            || engine.cloud.ebs.start_snapshot(&who, &region, &start),
            || Ok(None),
            |session, id| {
                session.created(&resource, Target::Snapshot(region.clone(), id.clone()), step.kept)?;
                Ok(id)
            },
        )?;
        self.with_repository(|repo, progress| {
            direct::write_snapshot(&engine.cloud, &who, &region, &id, repo, &point, progress)
        })?
        .map_err(|e| direct_failure(step, e))?;
        self.points.push((volume, point.to_hex()));
        Ok(())
    }

    /// The repository, opened with the repository role's credentials (for the data path
    /// without workers).
    pub(super) fn repository(&mut self) -> Result<&Repository, Failure> {
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
    /// the repository role's session renewed as it goes, stopped if the session is cancelled.
    fn with_repository<R>(
        &mut self,
        work: impl FnOnce(&Repository, &bulwark_mover::Progress) -> R,
    ) -> Result<R, Failure> {
        let engine = self.engine;
        let control = self.control;
        let renewer = self.renewer()?;
        let (repo, shared) = self.open_repository()?;
        let progress = bulwark_mover::Progress::default();
        let out = worker::reporting(
            &progress,
            |done, total| {
                engine.emit(control.id(), &Event::Transfer { done, total });
                renewer.renew(shared);
                if control.is_cancelled() {
                    progress.cancel();
                }
            },
            || work(repo, &progress),
        );
        Ok(out)
    }

    /// A renewer of the repository role's session for a transfer.
    pub(super) fn renewer(&self) -> Result<Renewer<'e>, Failure> {
        let repository = self.engine.estate.repository.as_ref().ok_or_else(|| {
            Failure::Engine(EngineError::Internal("the estate defines no [repository]".into()))
        })?;
        Ok(Renewer {
            engine: self.engine,
            role: repository.role.clone(),
            at: Mutex::new(Instant::now()),
        })
    }
}

/// Renews the repository role's session during a transfer that may outlast it.
pub(super) struct Renewer<'e> {
    engine: &'e Engine,
    role: RoleArn,
    /// When the last session was taken.
    at: Mutex<Instant>,
}

impl Renewer<'_> {
    /// A new session of the repository role if the renewal is due.
    pub(super) fn due(&self) -> Result<Option<Credentials>, bulwark_cloud::CloudError> {
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
