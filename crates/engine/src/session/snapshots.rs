//! Steps on snapshots: taking them, checking the key of one to share, sharing, copying.

use bulwark_cloud::{CloudError, CopySnapshot, ErrorKind, KeyManager};
use bulwark_model::{Action, KeyRef};
use bulwark_plan::{InstanceRef, NewVolume, Resource, Share, Snapshot, Step};

use super::{Session, StepResult};
use crate::journal::{Entry, Target, Undo};

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
        let tags = self.tags();
        let ec2 = &self.engine.cloud.ec2;
        let made = self.retried(step.action(), || {
            ec2.create_snapshots(&who, region, &instance.id, &tags)
        })?;
        for info in &made {
            if let Some(planned) = snapshots.iter().find(|s| s.volume == info.volume) {
                let target = Target::Snapshot(region.clone(), info.id.clone());
                self.created(&Resource::Snapshot(planned.clone()), target, step.kept)?;
            } else {
                self.journal.record(&Entry::Created {
                    name: format!(
                        "snapshot {} of {}, a volume the estate does not list",
                        info.id, info.volume
                    ),
                    undo: Undo {
                        actor: step.actor.role().cloned(),
                        action: Action::Ec2DeleteSnapshot,
                        target: Target::Snapshot(region.clone(), info.id.clone()),
                    },
                    kept: false,
                })?;
            }
        }
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

    /// A snapshot of a volume the session created.
    pub(super) fn create_snapshot(
        &mut self,
        step: &Step,
        volume: &NewVolume,
        snapshot: &Snapshot,
    ) -> StepResult {
        let (region, id) = self.volume_id(&Resource::Volume(volume.clone()))?;
        let who = self.who(step)?;
        let tags = self.tags();
        let ec2 = &self.engine.cloud.ec2;
        let info = self.retried(step.action(), || ec2.create_snapshot(&who, &region, &id, &tags))?;
        let target = Target::Snapshot(region.clone(), info.id.clone());
        self.created(&Resource::Snapshot(snapshot.clone()), target, step.kept)?;
        self.wait_snapshot(&who, &region, &info.id)
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

    /// Lets another account create volumes from a snapshot. The share is journaled before it is
    /// made: removing a permission that was never added is harmless, and a share whose answer
    /// was lost is removed all the same.
    pub(super) fn share(&mut self, step: &Step, share: &Share) -> StepResult {
        let (region, id) = self.snapshot_id(&share.snapshot)?;
        let who = self.who(step)?;
        let target = Target::Share(region.clone(), id.clone(), share.with.clone());
        self.created(&Resource::SnapshotShare(share.clone()), target, step.kept)?;
        let ec2 = &self.engine.cloud.ec2;
        let with = std::slice::from_ref(&share.with);
        self.retried(step.action(), || {
            ec2.modify_snapshot_sharing(&who, &region, &id, with, &[])
        })
    }

    /// Copies a snapshot into the copy's region, and waits for the copy.
    pub(super) fn copy_snapshot(&mut self, step: &Step, source: &Snapshot, copy: &Snapshot) -> StepResult {
        let (source_region, source_id) = self.snapshot_id(source)?;
        let request = CopySnapshot {
            source_region,
            source: source_id,
            encrypted: copy.key.is_some(),
            kms_key_id: copy.key.as_ref().map(KeyRef::arn),
            tags: self.tags(),
        };
        let who = self.who(step)?;
        let ec2 = &self.engine.cloud.ec2;
        let id = self.retried(step.action(), || ec2.copy_snapshot(&who, &copy.region, &request))?;
        let target = Target::Snapshot(copy.region.clone(), id.clone());
        self.created(&Resource::Snapshot(copy.clone()), target, step.kept)?;
        self.wait_snapshot(&who, &copy.region, &id)
    }
}
