//! Taking, sharing, copying and deleting snapshots.

use bulwark_model::{AccountId, Action, Instance, KeyRef, Region, RoleArn};

use super::Builder;
use crate::refusal::{Refusal, RefusalCode};
use crate::resource::{InstanceRef, NewVolume, Resource, Share, Snapshot, SnapshotOrigin};
use crate::rules;
use crate::step::{Actor, Call, KeyUse, Removal, Step};

/// What the snapshots of an instance are for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SnapshotPurpose {
    /// Cloud-native restore points, kept.
    RestorePoint,
    /// The source of an image-level backup (read through the EBS direct APIs, or by a worker
    /// from volumes made of it), kept as the base of the next backup's changes.
    Base,
}

impl Builder<'_> {
    /// Crash-consistent snapshots of every volume (ec2:CreateSnapshots). A snapshot of an
    /// encrypted volume is encrypted with the volume's key and the call takes no key, so the
    /// caller needs no KMS permission (seeds: "IAM role permissions on CMKs").
    pub fn snapshot_instance(
        &mut self,
        role: &RoleArn,
        instance: &Instance,
        purpose: SnapshotPurpose,
    ) -> Vec<Snapshot> {
        let (origin, kept, purpose) = match purpose {
            SnapshotPurpose::RestorePoint => (SnapshotOrigin::Volume, true, "the cloud-native restore point"),
            SnapshotPurpose::Base => (
                SnapshotOrigin::Base,
                true,
                "the source of the backup, kept until the next backup, which reads only the blocks \
                 changed since it",
            ),
        };
        let actor = Actor::Role(role.clone());
        let region = &instance.region;
        let snapshots: Vec<Snapshot> = instance
            .volumes
            .iter()
            .map(|v| Snapshot {
                owner: instance.account.clone(),
                region: region.clone(),
                volume: v.id.clone(),
                origin,
                key: v.key.clone(),
            })
            .collect();
        let p = self.estate.partition();
        let any_snapshot = Resource::Snapshot(snapshots[0].clone()).iam_resources(p);
        let instance_ref = InstanceRef {
            account: instance.account.clone(),
            region: region.clone(),
            id: instance.id.clone(),
        };
        let volumes: Vec<String> = instance
            .volumes
            .iter()
            .map(|v| {
                format!(
                    "arn:{}:ec2:{region}:{}:volume/{}",
                    p.as_str(),
                    instance.account,
                    v.id
                )
            })
            .collect();
        let step = self
            .step(
                &actor,
                Some(region),
                Call::CreateSnapshots {
                    instance: instance_ref,
                    snapshots: snapshots.clone(),
                },
                format!(
                    "snapshots of all {} volumes at one point in time, {purpose}; each is encrypted \
                     with its volume's key and the call takes no key, so no KMS permission is needed",
                    instance.volumes.len()
                ),
            )
            .kept(kept)
            .also(Action::Ec2CreateSnapshots, volumes)
            .also(Action::Ec2CreateSnapshots, any_snapshot.clone())
            .also(Action::Ec2CreateTags, any_snapshot)
            .also(Action::Ec2DescribeSnapshots, vec!["*".into()]);
        // The restore points (the snapshots, or the backups read from them) record the
        // instance as it is, to restore it as it was.
        let step = step
            .also(Action::Ec2DescribeInstances, vec!["*".into()])
            .also(Action::Ec2DescribeVolumes, vec!["*".into()]);
        let undo = snapshots.iter().map(|s| self.delete_snapshot(role, s)).collect();
        self.push(step, undo);
        snapshots
    }

    fn delete_snapshot(&self, role: &RoleArn, snapshot: &Snapshot) -> Step {
        self.step(
            &Actor::Role(role.clone()),
            Some(&snapshot.region),
            Call::Remove {
                removal: Removal::DeleteSnapshot {
                    snapshot: snapshot.clone(),
                },
            },
            "remove the snapshot: it was only needed during the session, or the session failed",
        )
    }

    /// A snapshot of a volume the plan created, so that it can be shared (ec2:CreateSnapshot;
    /// no key needed, as for CreateSnapshots).
    pub fn snapshot_volume(&mut self, role: &RoleArn, volume: &NewVolume) -> Snapshot {
        let why = format!(
            "snapshot the {} so that it can be shared; it keeps the volume's key and the call takes no key",
            Resource::Volume(volume.clone())
        );
        self.snapshot_made(role, volume, SnapshotOrigin::Restored, why)
    }

    /// A snapshot of a restored volume, for the image that boots the restored instance.
    pub fn snapshot_for_image(&mut self, role: &RoleArn, volume: &NewVolume) -> Snapshot {
        let why = format!(
            "snapshot the {} for the image the restored instance boots from; it keeps the volume's \
             key and the call takes no key",
            Resource::Volume(volume.clone())
        );
        self.snapshot_made(role, volume, SnapshotOrigin::Image, why)
    }

    fn snapshot_made(
        &mut self,
        role: &RoleArn,
        volume: &NewVolume,
        origin: SnapshotOrigin,
        why: String,
    ) -> Snapshot {
        let snapshot = Snapshot {
            owner: role.account().clone(),
            region: volume.region.clone(),
            volume: volume.of.clone(),
            origin,
            key: volume.key.clone(),
        };
        let arns = Resource::Snapshot(snapshot.clone()).iam_resources(self.estate.partition());
        let step = self
            .step(
                &Actor::Role(role.clone()),
                Some(&snapshot.region),
                Call::CreateSnapshot {
                    volume: volume.clone(),
                    snapshot: snapshot.clone(),
                },
                why,
            )
            .also(Action::Ec2CreateSnapshot, arns.clone())
            .also(Action::Ec2CreateTags, arns)
            .also(Action::Ec2DescribeSnapshots, vec!["*".into()]);
        let undo = vec![self.delete_snapshot(role, &snapshot)];
        self.push(step, undo);
        snapshot
    }

    /// Shares `snapshot` with `with` (ModifySnapshotAttribute, createVolumePermission add),
    /// removed again at cleanup. Refuses a snapshot under `aws/ebs`, as AWS would. Before
    /// sharing, Bulwark reads the key (kms:DescribeKey) to confirm it is customer managed:
    /// this is the sharing role's permission on the source key that the seeds require.
    pub fn share(
        &mut self,
        role: &RoleArn,
        snapshot: &Snapshot,
        with: &AccountId,
        remedy: &str,
    ) -> Result<(), Refusal> {
        let key = snapshot.key.as_ref();
        if !rules::shareable(key) {
            let Snapshot {
                volume,
                owner,
                region,
                ..
            } = snapshot;
            return Err(Refusal::new(
                RefusalCode::AwsManagedKeyNotShareable,
                format!(
                    "the snapshot of {volume} would be encrypted with the AWS managed key aws/ebs of \
                     account {owner} in {region}, and must be shared with account {with}: AWS refuses \
                     to share snapshots encrypted with aws/ebs (OperationNotPermitted)"
                ),
                remedy,
            ));
        }
        let actor = Actor::Role(role.clone());
        if let Some(key) = key.filter(|k| self.described.insert((role.clone(), (*k).clone()))) {
            let describe = self
                .step(
                    &actor,
                    Some(key.region()),
                    Call::DescribeKey { key: key.clone() },
                    "confirm the snapshot's key is customer managed and enabled before sharing it",
                )
                .using_key(
                    Some(key),
                    KeyUse::Describe,
                    format!("the sharing role checks the key before it shares the snapshot with {with}"),
                );
            self.push(describe, Vec::new());
        }
        let share = Share {
            snapshot: snapshot.clone(),
            with: with.clone(),
        };
        let region = Some(&snapshot.region);
        let why = match key {
            Some(_) => format!(
                "let account {with} create volumes from the snapshot; it can use them only if the \
                 key policy of the snapshot's key allows its role, and that role's IAM policy does too"
            ),
            None => format!("let account {with} create volumes from the unencrypted snapshot"),
        };
        let step = self.step(&actor, region, Call::ShareSnapshot { share: share.clone() }, why);
        let undo = self.step(
            &actor,
            region,
            Call::Remove {
                removal: Removal::Unshare { share },
            },
            format!("remove account {with}'s permission to create volumes from the snapshot"),
        );
        self.push(step, vec![undo]);
        Ok(())
    }

    /// Copies `source` into `destination` in the caller's account (CopySnapshot, called in
    /// the destination region). The caller uses the source key and the copy's key.
    pub fn copy_snapshot(
        &mut self,
        role: &RoleArn,
        source: &Snapshot,
        destination: &Region,
        requested: Option<&KeyRef>,
        kept: bool,
        purpose: &str,
    ) -> Snapshot {
        let Snapshot {
            owner,
            region,
            volume,
            key,
            ..
        } = source;
        let caller = role.account();
        let copy_key = rules::copy_key(
            self.estate,
            key.as_ref(),
            owner,
            region,
            caller,
            destination,
            requested,
        );
        let copy = Snapshot {
            owner: caller.clone(),
            region: destination.clone(),
            volume: volume.clone(),
            origin: SnapshotOrigin::Copy,
            key: copy_key.clone(),
        };
        let copy_arns = Resource::Snapshot(copy.clone()).iam_resources(self.estate.partition());
        let key_words = match (&copy_key, requested) {
            (None, _) => "unencrypted".to_owned(),
            (Some(k), Some(_)) => format!("encrypted with the requested key {k}"),
            (Some(k), None) if copy_key.as_ref() == key.as_ref() => format!("keeping its key {k}"),
            (Some(k), None) => format!("encrypted with the default EBS key of {caller} in {destination}, {k}, since no key was given"),
        };
        let actor = Actor::Role(role.clone());
        let step = self
            .step(
                &actor,
                Some(destination),
                Call::CopySnapshot {
                    source: source.clone(),
                    copy: copy.clone(),
                },
                format!("{purpose}: copy to {destination}, {key_words}"),
            )
            .kept(kept)
            .using_key(
                key.as_ref(),
                KeyUse::Ebs,
                format!("CopySnapshot decrypts the snapshot of {volume} in {region}."),
            )
            .using_key(
                copy_key.as_ref(),
                KeyUse::Ebs,
                format!("CopySnapshot encrypts the copy of {volume} in {destination}."),
            )
            .also(Action::Ec2CopySnapshot, copy_arns.clone())
            .also(Action::Ec2CreateTags, copy_arns)
            .also(Action::Ec2DescribeSnapshots, vec!["*".into()]);
        let undo = vec![self.delete_snapshot(role, &copy)];
        self.push(step, undo);
        copy
    }
}
