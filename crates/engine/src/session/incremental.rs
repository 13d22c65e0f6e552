//! How each volume of an image-level backup is read, for both data paths: only the blocks
//! changed since the previous backup's base snapshot, or in full and why (said in the session's
//! log). With workers, the appliance lists the changes itself, in the snapshots' account, and
//! hands them to the worker. Once the restore points are written, the previous base snapshots
//! go to the cleanup, and the report says what each volume's backup read.

use bulwark_cloud::{Credentials, ErrorKind};
use bulwark_model::{Action, Region, SnapshotId};
use bulwark_plan::{Resource, Snapshot, SnapshotOrigin, Step};
use bulwark_repo::{Id, Manifest};

use super::{Failure, Session, StepResult};
use crate::direct::{self, DirectError};
use crate::incremental::{self, Read, VolumeBackup};
use crate::journal::Target;
use crate::retry::Gave;
use crate::Event;

/// How one snapshot of the backup is read.
pub(super) struct VolumeRead {
    /// The snapshot's owner (the step's actor).
    pub who: Credentials,
    pub region: Region,
    pub snapshot: SnapshotId,
    /// The production volume: the restore points' name.
    pub volume: String,
    pub read: Read,
    /// The previous base snapshot (incremental reads list their changes since it).
    pub base: Option<SnapshotId>,
    /// With workers, an incremental read's changed blocks, as the appliance listed them.
    pub blocks: Option<Vec<u64>>,
    /// The plan's name of the previous base snapshot, which the new one replaces.
    previous: Resource,
}

impl VolumeRead {
    /// Reads the volume in full after all, because of `why`.
    pub(super) fn read_in_full(&mut self, why: String) {
        self.read = Read::Full { why };
        self.blocks = None;
    }
}

impl Session<'_> {
    /// How `snapshot` (the step's actor owns it) is read; a full read is said in the log.
    pub(super) fn choose_read(&mut self, step: &Step, snapshot: &Snapshot) -> Result<VolumeRead, Failure> {
        let who = self.who(step)?;
        let (region, id) = self.snapshot_id(snapshot)?;
        let volume = snapshot.volume.to_string();
        let engine = self.engine;
        let describe = |ids: &[SnapshotId]| {
            engine
                .retry
                .run(Action::Ec2DescribeSnapshots, None, || {
                    engine.cloud.ec2.describe_snapshots(&who, &region, ids)
                })
                .map_err(Gave::error)
        };
        let size = describe(std::slice::from_ref(&id))?
            .into_iter()
            .find(|i| i.id == id)
            .map(|i| u64::from(i.size_gib) << 30)
            .ok_or_else(|| {
                Failure::Engine(crate::EngineError::Internal(format!(
                    "snapshot {id} of {volume} is not found"
                )))
            })?;
        let repo = self.repository()?;
        let choice = incremental::choose(repo, &volume, &id, size, |base| {
            match describe(std::slice::from_ref(base)) {
                Ok(found) => Ok(found.iter().any(|i| &i.id == base && i.state == "completed")),
                // Gone (deleted by hand, or by a failed cleanup).
                Err(e) if e.kind == ErrorKind::NotFound => Ok(false),
                Err(e) => Err(Failure::Cloud(e)),
            }
        })?;
        let read = VolumeRead {
            who,
            region,
            snapshot: id,
            volume,
            read: choice.read,
            base: choice.base,
            blocks: None,
            previous: Resource::Snapshot(Snapshot {
                origin: SnapshotOrigin::PreviousBase,
                ..snapshot.clone()
            }),
        };
        self.say_how(&read);
        Ok(read)
    }

    /// Says in the log that a volume is read in full, and why.
    pub(super) fn say_how(&self, read: &VolumeRead) {
        if let Read::Full { why } = &read.read {
            let message = format!("{} is read in full: {why}", read.volume);
            tracing::info!(volume = %read.volume, "{message}");
            self.engine.emit(self.id(), &Event::Note { message });
        }
    }

    /// With workers: lists the blocks of `snapshot` changed since the previous backup's base
    /// (ListChangedBlocks, by the snapshot's owner), for the worker's task. Snapshots EBS
    /// cannot compare are read in full.
    pub(super) fn list_changes(&mut self, step: &Step, snapshot: &Snapshot) -> StepResult {
        let mut read = self.choose_read(step, snapshot)?;
        if let (Read::Incremental { .. }, Some(base)) = (&read.read, &read.base) {
            let block_size = u64::from(self.repository()?.config().block_size);
            let listed = direct::changed_blocks(
                &self.engine.cloud,
                &read.who,
                &read.region,
                &read.snapshot,
                base,
                block_size,
            );
            match listed {
                Ok(blocks) => read.blocks = Some(blocks),
                Err(DirectError::Cloud(e)) if e.kind == ErrorKind::Invalid => {
                    read.read_in_full(format!("EBS cannot list its changes since {base}: {}", e.message));
                    self.say_how(&read);
                }
                Err(e) => return Err(super::direct::direct_failure(step, e)),
            }
        }
        self.reads.push(read);
        Ok(())
    }

    /// Once the restore points `written` (volume, id, manifest) of `reads` are: what each volume's
    /// backup read, for the report, and the previous base snapshots journaled for the cleanup
    /// to remove (not before: a failed backup keeps them as the base of the next one).
    pub(super) fn backed_up(
        &mut self,
        reads: &[VolumeRead],
        written: &[(String, Id, Manifest)],
    ) -> StepResult {
        for (volume, point, manifest) in written {
            let Some(read) = reads.iter().find(|r| &r.volume == volume) else {
                continue;
            };
            let changed = match read.read {
                Read::Incremental { .. } => Some(
                    read.blocks
                        .as_ref()
                        .map_or(manifest.stats.blocks_read, |b| b.len() as u64),
                ),
                Read::Full { .. } => None,
            };
            self.backups
                .push(VolumeBackup::of(volume, point, manifest, &read.read, changed));
            if let Some(base) = &read.base {
                let target = Target::Snapshot(read.region.clone(), base.clone());
                self.created(&read.previous, target, false)?;
            }
        }
        Ok(())
    }

    /// The restore points a worker reported, with their manifests, read by the appliance.
    pub(super) fn read_points(
        &mut self,
        points: &[(String, String)],
    ) -> Result<Vec<(String, Id, Manifest)>, Failure> {
        // The session of the repository role opened before the worker ran may have expired.
        if let (Some((_, shared)), Some(r)) = (&self.repository, &self.engine.estate.repository) {
            shared.replace(self.engine.identities.fresh(&r.role)?);
        }
        let repo = self.repository()?;
        points
            .iter()
            .map(|(volume, point)| {
                let id = repo.find_point(point)?;
                Ok((volume.clone(), id, repo.read_point(&id)?))
            })
            .collect::<Result<_, bulwark_repo::RepoError>>()
            .map_err(|e| Failure::Engine(crate::EngineError::from(DirectError::from(e))))
    }
}
