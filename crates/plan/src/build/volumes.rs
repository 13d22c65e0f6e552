//! Creating, attaching and deleting volumes.

use bulwark_model::{Action, KeyRef, Region, RoleArn, Volume};

use super::Builder;
use crate::resource::{Attachment, Machine, NewVolume, Resource, Snapshot, VolumeOrigin};
use crate::rules;
use crate::step::{Actor, Call, KeyUse, Removal, Step};

impl Builder<'_> {
    /// Creates a volume from a snapshot the caller owns or that was shared with it.
    pub fn volume_from_snapshot(
        &mut self,
        role: &RoleArn,
        snapshot: &Snapshot,
        requested: Option<&KeyRef>,
        origin: VolumeOrigin,
        kept: bool,
    ) -> NewVolume {
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
        let created = NewVolume {
            account: caller.clone(),
            region: region.clone(),
            of: volume.clone(),
            origin,
            key: new_key.clone(),
        };
        let resource = Resource::Volume(created.clone());
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
                Call::CreateVolume {
                    from: Some(snapshot.clone()),
                    volume: created.clone(),
                },
                format!("create the {resource}, {key_words}"),
            )
            .kept(kept)
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
            .also(Action::Ec2CreateVolume, resource.iam_resources(p))
            .also(Action::Ec2CreateTags, resource.iam_resources(p))
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
    ) -> NewVolume {
        let caller = role.account();
        let created = NewVolume {
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
        let resource = Resource::Volume(created.clone());
        let p = self.estate.partition();
        let actor = Actor::Role(role.clone());
        let step = self
            .step(
                &actor,
                Some(region),
                Call::CreateVolume {
                    from: None,
                    volume: created.clone(),
                },
                format!(
                    "create an empty {} GiB volume for the data of {}, {key_words}",
                    of.size_gib, of.id
                ),
            )
            .kept(kept)
            .using_key(
                key,
                KeyUse::Ebs,
                format!(
                    "CreateVolume encrypts the volume for {} in {caller}/{region}.",
                    of.id
                ),
            )
            .also(Action::Ec2CreateTags, resource.iam_resources(p))
            .also(Action::Ec2DescribeVolumes, vec!["*".into()]);
        let undo = vec![self.delete_volume(role, &created)];
        self.push(step, undo);
        created
    }

    fn delete_volume(&self, role: &RoleArn, volume: &NewVolume) -> Step {
        self.step(
            &Actor::Role(role.clone()),
            Some(&volume.region),
            Call::Remove {
                removal: Removal::DeleteVolume {
                    volume: volume.clone(),
                },
            },
            "remove the volume: it was only needed during the session, or the session failed",
        )
        // A volume still detaching is waited for: its state, and its instance's.
        .also(Action::Ec2DescribeVolumes, vec!["*".into()])
        .also(Action::Ec2DescribeInstances, vec!["*".into()])
    }

    /// Attaches `volume` to `instance`. Attaching an encrypted volume needs kms:CreateGrant on
    /// its key (without it AWS fails the instance with `Client.InternalError`).
    pub fn attach(
        &mut self,
        role: &RoleArn,
        volume: &NewVolume,
        instance: Machine,
        kept: bool,
    ) -> Attachment {
        self.attach_at(role, volume, instance, None, kept)
    }

    /// Attaches `volume` to `instance` at `device` (the next free one from `/dev/sdf` if
    /// `None`).
    pub fn attach_at(
        &mut self,
        role: &RoleArn,
        volume: &NewVolume,
        instance: Machine,
        device: Option<&str>,
        kept: bool,
    ) -> Attachment {
        let why = match (&instance, device) {
            (Machine::Existing(i), Some(d)) => format!("attach the volume to {} as {d}", i.id),
            _ => "attach the volume".to_owned(),
        };
        let attachment = Attachment {
            volume: volume.clone(),
            instance,
            device: device.map(str::to_owned),
        };
        let actor = Actor::Role(role.clone());
        let region = Some(&volume.region);
        let step = self
            .step(
                &actor,
                region,
                Call::AttachVolume {
                    attachment: attachment.clone(),
                },
                why,
            )
            .kept(kept)
            .using_key(
                volume.key.as_ref(),
                KeyUse::Ebs,
                "AttachVolume has EBS use the volume's key for the instance, through a grant the caller creates.",
            );
        // An instance the session did not make is looked up first: its zone is the volumes'.
        let step = match &attachment.instance {
            Machine::Existing(_) => step.also(Action::Ec2DescribeInstances, vec!["*".into()]),
            _ => step,
        };
        let undo = vec![self
            .step(
                &actor,
                region,
                Call::Remove {
                    removal: Removal::DetachVolume {
                        attachment: attachment.clone(),
                    },
                },
                "detach the volume, and wait until it is detached",
            )
            .also(Action::Ec2DescribeVolumes, vec!["*".into()])];
        self.push(step, undo);
        attachment
    }
}
