//! Creating, attaching and deleting volumes.

use bulwark_model::{Action, KeyRef, Region, RoleArn, Volume};

use super::Builder;
use crate::resource::{Resource, Snapshot, VolumeOrigin};
use crate::rules;
use crate::step::{Actor, KeyUse, Step};

impl Builder<'_> {
    /// Creates a volume from a snapshot the caller owns or that was shared with it.
    pub fn volume_from_snapshot(
        &mut self,
        role: &RoleArn,
        snapshot: &Snapshot,
        requested: Option<&KeyRef>,
        origin: VolumeOrigin,
        kept: bool,
    ) -> Resource {
        let Snapshot {
            owner,
            region,
            volume,
            key,
            ..
        } = snapshot;
        let caller = role.account();
        let new_key =
            rules::volume_from_snapshot_key(self.estate, key.as_ref(), owner, caller, region, requested);
        let created = Resource::Volume {
            account: caller.clone(),
            region: region.clone(),
            of: volume.clone(),
            origin,
            key: new_key.clone(),
        };
        let key_words = match (&new_key, requested, owner == caller) {
            (None, _, _) => "unencrypted, like its snapshot".to_owned(),
            (Some(k), Some(_), _) => format!("encrypted with the requested key {k}"),
            (Some(k), None, true) if key.is_some() => {
                format!("keeping the snapshot's key {k}, as the caller owns the snapshot")
            }
            (Some(k), None, true) => {
                format!("encrypted with the default EBS key {k}, as encryption by default is on")
            }
            (Some(k), None, false) => format!(
                "encrypted, as AWS requires for a volume of an encrypted or shared snapshot, with the \
                 default EBS key of {caller} in {region}, {k}"
            ),
        };
        let p = self.estate.partition();
        let actor = Actor::Role(role.clone());
        let step = self
            .step(
                &actor,
                Some(region),
                Action::Ec2CreateVolume,
                Resource::Snapshot(snapshot.clone()),
                format!("create the {created}, {key_words}"),
            )
            .creating(vec![created.clone()], kept)
            .using_key(
                key.as_ref(),
                KeyUse::Ebs,
                format!(
                    "CreateVolume decrypts the snapshot of {volume} (its key, owned by {}).",
                    key.as_ref().map_or(caller, KeyRef::account)
                ),
            )
            .using_key(
                new_key.as_ref(),
                KeyUse::Ebs,
                format!("CreateVolume encrypts the new volume of {volume} in {caller}/{region}."),
            )
            .also(Action::Ec2CreateVolume, created.iam_resources(p))
            .also(Action::Ec2CreateTags, created.iam_resources(p))
            .also(Action::Ec2DescribeVolumes, vec!["*".into()]);
        let undo = vec![self.delete_volume(role, &created)];
        self.push(step, undo);
        created
    }

    /// Creates an empty volume of the size of `of` for a worker to restore into.
    pub fn empty_volume(
        &mut self,
        role: &RoleArn,
        region: &Region,
        of: &Volume,
        key: Option<&KeyRef>,
        kept: bool,
        key_words: &str,
    ) -> Resource {
        let caller = role.account();
        let created = Resource::Volume {
            account: caller.clone(),
            region: region.clone(),
            of: of.id.clone(),
            origin: if kept {
                VolumeOrigin::Restored
            } else {
                VolumeOrigin::Empty
            },
            key: key.cloned(),
        };
        let p = self.estate.partition();
        let actor = Actor::Role(role.clone());
        let step = self
            .step(
                &actor,
                Some(region),
                Action::Ec2CreateVolume,
                created.clone(),
                format!(
                    "create an empty {} GiB volume for the data of {}, {key_words}",
                    of.size_gib, of.id
                ),
            )
            .creating(vec![created.clone()], kept)
            .using_key(
                key,
                KeyUse::Ebs,
                format!(
                    "CreateVolume encrypts the volume for {} in {caller}/{region}.",
                    of.id
                ),
            )
            .also(Action::Ec2CreateTags, created.iam_resources(p))
            .also(Action::Ec2DescribeVolumes, vec!["*".into()]);
        let undo = vec![self.delete_volume(role, &created)];
        self.push(step, undo);
        created
    }

    fn delete_volume(&self, role: &RoleArn, volume: &Resource) -> Step {
        self.step(
            &Actor::Role(role.clone()),
            volume.region(),
            Action::Ec2DeleteVolume,
            volume.clone(),
            "remove the volume: it was only needed during the session, or the session failed",
        )
    }

    /// Attaches `volume` to `instance`. Attaching an encrypted volume needs kms:CreateGrant on
    /// its key (without it AWS fails the instance with `Client.InternalError`).
    pub fn attach(&mut self, role: &RoleArn, volume: &Resource, instance: &Resource, kept: bool) -> Resource {
        let attachment = Resource::Attachment {
            volume: Box::new(volume.clone()),
            instance: Box::new(instance.clone()),
        };
        let actor = Actor::Role(role.clone());
        let step = self
            .step(&actor, volume.region(), Action::Ec2AttachVolume, attachment.clone(), "attach the volume")
            .creating(vec![attachment.clone()], kept)
            .using_key(volume.key(), KeyUse::Ebs, "AttachVolume has EBS use the volume's key for the instance, through a grant the caller creates.");
        let undo = vec![self.step(
            &actor,
            volume.region(),
            Action::Ec2DetachVolume,
            attachment.clone(),
            "detach the volume",
        )];
        self.push(step, undo);
        attachment
    }
}
