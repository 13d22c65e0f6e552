//! Steps on snapshots: taking them, checking the key of one to share, sharing, copying.

use bulwark_cloud::{CloudError, CopySnapshot, ErrorKind, KeyManager, Tag};
use bulwark_model::{Action, KeyRef, Region, SnapshotId};
use bulwark_plan::{InstanceRef, NewVolume, Resource, Share, Snapshot, Step};

use super::{Session, StepResult};
use crate::journal::{Ec2Kind, Entry, Finder, Target, Undo};
use crate::record::InstanceRecord;
use crate::retry::Gave;

impl Session<'_> {
    /// Snapshots of every volume of an instance. Every snapshot the call made is journaled
    /// before the session waits for it: those of the plan's volumes with the plan's removal,
    /// any other (a volume attached since the estate was described) as temporary, so that none
    /// is left behind.
    pub(super) fn create_snapshots(
        &mut self,
        step: &Step,
        instance: &InstanceRef,
        snapshots: &[Snapshot],
    ) -> StepResult {
        let who = self.who(step)?;
        let region = &instance.region;
        let tags = self.step_tags(step);
        let ec2 = &self.engine.cloud.ec2;
        let finder = tagged_snapshots(region, &tags);
        let Some(first) = snapshots.first() else {
            return Ok(());
        };
        // The restore points (these snapshots, or the backups read from them) record the
        // instance as it is now.
        self.record_instance(&who, instance)?;
        let made = self.creating(
            step,
            finder,
            &Resource::Snapshot(first.clone()),
            || ec2.create_snapshots(&who, region, &instance.id, &tags),
            || Ok(Some(ec2.snapshots_tagged(&who, region, &tags)?).filter(|found| !found.is_empty())),
            |session, made| {
                for info in &made {
                    let target = Target::Snapshot(region.clone(), info.id.clone());
                    if let Some(planned) = snapshots.iter().find(|s| s.volume == info.volume) {
                        session.created(&Resource::Snapshot(planned.clone()), target, step.kept)?;
                    } else {
                        session.journal.record(&Entry::Created {
                            name: format!(
                                "snapshot {} of {}, a volume the estate does not list",
                                info.id, info.volume
                            ),
                            undo: Undo {
                                actor: step.actor.role().cloned(),
                                action: Action::Ec2DeleteSnapshot,
                                target,
                            },
                            kept: false,
                        })?;
                    }
                }
                Ok(made)
            },
        )?;
        if let Some(missing) = snapshots
            .iter()
            .find(|s| !made.iter().any(|i| i.volume == s.volume))
        {
            return Err(CloudError::not_found(
                step.action(),
                "InvalidVolume.NotFound",
                format!(
                    "no snapshot of {} was made: is it still attached to {}?",
                    missing.volume, instance.id
                ),
            )
            .into());
        }
        for info in &made {
            self.wait_snapshot(&who, region, &info.id)?;
        }
        Ok(())
    }

    /// Records the instance as it is now, for its restore points (DescribeInstances and
    /// DescribeVolumes, by the role that takes the snapshots).
    fn record_instance(&mut self, who: &bulwark_cloud::Credentials, instance: &InstanceRef) -> StepResult {
        let ec2 = &self.engine.cloud.ec2;
        let found = self.retried(Action::Ec2DescribeInstances, || {
            ec2.describe_instances(who, &instance.region, std::slice::from_ref(&instance.id))
        })?;
        let Some(info) = found.into_iter().next() else {
            return Ok(());
        };
        let ids: Vec<_> = info.volumes.iter().map(|(v, _)| v.clone()).collect();
        let volumes = if ids.is_empty() {
            Vec::new()
        } else {
            self.retried(Action::Ec2DescribeVolumes, || {
                ec2.describe_volumes(who, &instance.region, &ids)
            })?
        };
        self.record = Some(InstanceRecord::of(&info, &volumes));
        Ok(())
    }

    /// A snapshot of a volume the session created.
    pub(super) fn create_snapshot(
        &mut self,
        step: &Step,
        volume: &NewVolume,
        snapshot: &Snapshot,
    ) -> StepResult {
        let (region, id) = self.volume_id(&Resource::Volume(volume.clone()))?;
        let who = self.who(step)?;
        let tags = self.step_tags(step);
        let ec2 = &self.engine.cloud.ec2;
        let resource = Resource::Snapshot(snapshot.clone());
        let made = self.creating(
            step,
            tagged_snapshots(&region, &tags),
            &resource,
            || ec2.create_snapshot(&who, &region, &id, &tags).map(|s| s.id),
            || {
                Ok(ec2
                    .snapshots_tagged(&who, &region, &tags)?
                    .into_iter()
                    .next()
                    .map(|s| s.id))
            },
            |session, made| {
                let target = Target::Snapshot(region.clone(), made.clone());
                session.created(&resource, target, step.kept)?;
                Ok(made)
            },
        )?;
        self.wait_snapshot(&who, &region, &made)
    }

    /// Confirms that a key is an enabled customer managed key before a snapshot under it is
    /// shared: AWS would share a snapshot the other account can never use.
    pub(super) fn describe_key(&mut self, step: &Step, key: &KeyRef) -> StepResult {
        let who = self.who(step)?;
        let kms = &self.engine.cloud.kms;
        let info = self.retried(step.action(), || kms.describe_key(&who, key.region(), &key.arn()))?;
        if info.manager != KeyManager::Customer || info.state != "Enabled" {
            return Err(CloudError::new(
                step.action(),
                ErrorKind::NotPermitted,
                "KeyNotShareable",
                format!(
                    "key {key} is {} and {:?}-managed: only an enabled customer managed key can protect a shared snapshot",
                    info.state, info.manager
                ),
            )
            .into());
        }
        Ok(())
    }

    /// Deletes a restore point that retention expires, and takes it out of the catalog. One
    /// already gone (deleted by hand, or by a run whose answer was lost) counts as deleted.
    pub(super) fn expire_snapshot(
        &mut self,
        step: &Step,
        snapshot: &Snapshot,
        id: &SnapshotId,
    ) -> StepResult {
        let who = self.who(step)?;
        let ec2 = &self.engine.cloud.ec2;
        match self.engine.retry.run(step.action(), None, || {
            ec2.delete_snapshot(&who, &snapshot.region, id)
        }) {
            Err(Gave::Refused(e)) if e.kind == ErrorKind::NotFound => {}
            Err(gave) => return Err(gave.into()),
            Ok(()) => {}
        }
        self.engine.store.remove_points(std::slice::from_ref(id))?;
        Ok(())
    }

    /// Lets another account create volumes from a snapshot. Removing a permission that was
    /// never added is harmless, so a share whose answer was lost is removed all the same.
    pub(super) fn share(&mut self, step: &Step, share: &Share) -> StepResult {
        let (region, id) = self.snapshot_id(&share.snapshot)?;
        let who = self.who(step)?;
        let target = Target::Share(region.clone(), id.clone(), share.with.clone());
        let resource = Resource::SnapshotShare(share.clone());
        let ec2 = &self.engine.cloud.ec2;
        let with = std::slice::from_ref(&share.with);
        self.creating(
            step,
            Finder::Named(target.clone()),
            &resource,
            || ec2.modify_snapshot_sharing(&who, &region, &id, with, &[]),
            || Ok(None),
            |session, ()| session.created(&resource, target.clone(), step.kept),
        )
    }

    /// Copies a snapshot into the copy's region, and waits for the copy.
    pub(super) fn copy_snapshot(&mut self, step: &Step, source: &Snapshot, copy: &Snapshot) -> StepResult {
        let (source_region, source_id) = self.snapshot_id(source)?;
        let tags = self.step_tags(step);
        let request = CopySnapshot {
            source_region,
            source: source_id,
            encrypted: copy.key.is_some(),
            kms_key_id: copy.key.as_ref().map(KeyRef::arn),
            tags: tags.clone(),
        };
        let who = self.who(step)?;
        let ec2 = &self.engine.cloud.ec2;
        let resource = Resource::Snapshot(copy.clone());
        let region = &copy.region;
        let id = self.creating(
            step,
            tagged_snapshots(region, &tags),
            &resource,
            || ec2.copy_snapshot(&who, region, &request),
            || {
                Ok(ec2
                    .snapshots_tagged(&who, region, &tags)?
                    .into_iter()
                    .next()
                    .map(|s| s.id))
            },
            |session, id| {
                session.created(&resource, Target::Snapshot(region.clone(), id.clone()), step.kept)?;
                Ok(id)
            },
        )?;
        self.wait_snapshot(&who, region, &id)
    }
}

/// Finds the snapshots of the caller that carry `tags`.
fn tagged_snapshots(region: &Region, tags: &[Tag]) -> Finder {
    Finder::Tagged {
        kind: Ec2Kind::Snapshot,
        region: region.clone(),
        tags: tags.to_vec(),
    }
}
