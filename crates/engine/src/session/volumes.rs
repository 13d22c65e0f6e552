//! Steps on volumes: creating them (from a snapshot, or empty for a restore) and attaching them.

use bulwark_cloud::{CloudError, CreateVolume, Credentials, ErrorKind};
use bulwark_model::{Action, KeyRef, Region, VolumeId};
use bulwark_plan::{Attachment, NewVolume, Resource, Snapshot, Step, VolumeOrigin};

use super::{Failure, Session, StepResult};
use crate::journal::{Ec2Kind, Finder, Target};
use crate::EngineError;

impl Session<'_> {
    /// Creates a volume in the worker's zone (or the region's first), waits until it is
    /// available, and checks that AWS chose the key the plan predicted.
    pub(super) fn create_volume(
        &mut self,
        step: &Step,
        from: Option<&Snapshot>,
        volume: &NewVolume,
    ) -> StepResult {
        let snapshot = match from {
            Some(s) => Some(self.snapshot_id(s)?.1),
            None => None,
        };
        let size_gib = match (&snapshot, volume.origin) {
            (None, VolumeOrigin::Empty | VolumeOrigin::Restored) => Some(self.volume_size(&volume.of)?),
            _ => None,
        };
        let tags = self.step_tags(step);
        let (volume_type, iops, throughput) = self.performance(volume.origin);
        if self.zone.is_none() {
            self.zone = self.attachment_zone(step, &volume.region)?;
        }
        let request = CreateVolume {
            snapshot,
            size_gib,
            encrypted: volume.key.is_some(),
            kms_key_id: volume.key.as_ref().map(KeyRef::arn),
            tags: tags.clone(),
            availability_zone: self.zone.clone(),
            client_token: Some(self.client_token(step)),
            volume_type: Some(volume_type),
            iops,
            throughput,
        };
        let who = self.who(step)?;
        let region = &volume.region;
        let engine = self.engine;
        let ec2 = &engine.cloud.ec2;
        let resource = Resource::Volume(volume.clone());
        let finder = Finder::Tagged {
            kind: Ec2Kind::Volume,
            region: region.clone(),
            tags: tags.clone(),
        };
        // The client token makes a repeated call answer the volume the first one made.
        let info = self.creating(
            step,
            finder,
            &resource,
            || ec2.create_volume(&who, region, &request),
            || Ok(None),
            |session, info| {
                let target = Target::Volume(region.clone(), info.id.clone());
                session.created(&resource, target, step.kept)?;
                Ok(info)
            },
        )?;
        self.wait_volume(&who, region, &info.id)?;
        // The planner predicted the key; a different one means the planner and the cloud
        // disagree about a rule, which must stop the session.
        if let Some(KeyRef::Customer(expected)) = &volume.key {
            let got = info.encryption.map(|e| e.key_arn);
            if got.as_deref() != Some(expected.as_str()) {
                return Err(CloudError::invalid(
                    step.action(),
                    "UnexpectedKey",
                    format!(
                        "{} is encrypted with {got:?}, the plan expected {expected}",
                        info.id
                    ),
                )
                .into());
            }
        }
        Ok(())
    }

    /// Attaches a volume at the instance's next free device name and waits until it is
    /// attached. Detaching a volume that never got attached is harmless, so an attachment
    /// whose answer was lost is undone all the same.
    pub(super) fn attach(&mut self, step: &Step, attachment: &Attachment) -> StepResult {
        let (region, volume_id) = self.volume_id(&Resource::Volume(attachment.volume.clone()))?;
        let instance = Resource::from(attachment.instance.clone());
        let instance_id = match (&attachment.instance, self.target(&instance)) {
            // An instance the session did not make: a volume restore attaches to it.
            (bulwark_plan::Machine::Existing(i), _) => i.id.clone(),
            (_, Ok(Target::Instance(_, id))) => id.clone(),
            (_, Ok(other)) => {
                return Err(Failure::Engine(EngineError::Internal(format!(
                    "{instance} is {other:?}, not an instance"
                ))))
            }
            (_, Err(e)) => return Err(e),
        };
        let device = match &attachment.device {
            Some(device) => device.clone(),
            None => {
                let letter = self.devices.entry(instance_id.clone()).or_insert(b'f');
                let device = format!("/dev/sd{}", *letter as char);
                *letter += 1;
                device
            }
        };
        let target = Target::Attachment(region.clone(), volume_id.clone(), instance_id.clone());
        let resource = Resource::Attachment(attachment.clone());
        self.attached_as
            .insert(Resource::Volume(attachment.volume.clone()), device.clone());
        let who = self.who(step)?;
        let engine = self.engine;
        let ec2 = &engine.cloud.ec2;
        // Attached already (the first call's answer was lost) is attached.
        let attached = || {
            let v = ec2.describe_volumes(&who, &region, std::slice::from_ref(&volume_id))?;
            Ok(v.first()
                .and_then(|v| v.attachment.as_ref())
                .is_some_and(|(i, _)| i == &instance_id)
                .then_some(()))
        };
        self.creating(
            step,
            Finder::Named(target.clone()),
            &resource,
            || ec2.attach_volume(&who, &region, &volume_id, &instance_id, &device),
            attached,
            |session, ()| session.created(&resource, target.clone(), step.kept),
        )?;
        self.wait(Action::Ec2DescribeVolumes, || {
            let v = ec2.describe_volumes(&who, &region, std::slice::from_ref(&volume_id))?;
            Ok(v.first().and_then(|v| v.attachment_state.as_deref()) == Some("attached"))
        })
    }

    /// The type, IOPS and throughput of a new volume: what a volume restore asks for its
    /// restored volumes; otherwise gp3 rather than the API's gp2 (cheaper, with 3,000 IOPS and
    /// 125 MiB/s whatever the size), with its defaults.
    fn performance(&self, origin: VolumeOrigin) -> (bulwark_model::VolumeType, Option<u32>, Option<u32>) {
        match &self.plan.operation {
            bulwark_plan::Operation::RestoreVolumes {
                volume_type,
                iops,
                throughput,
                ..
            } if origin == VolumeOrigin::Restored => (
                volume_type.unwrap_or(bulwark_model::VolumeType::Gp3),
                *iops,
                *throughput,
            ),
            _ => (bulwark_model::VolumeType::Gp3, None, None),
        }
    }

    /// For a volume restore that attaches its volumes to an instance, that instance's zone
    /// (the volumes must be made there); `None` for other sessions.
    fn attachment_zone(&self, step: &Step, region: &Region) -> Result<Option<String>, Failure> {
        let bulwark_plan::Operation::RestoreVolumes {
            attach_to: Some(instance),
            ..
        } = &self.plan.operation
        else {
            return Ok(None);
        };
        let who = self.who(step)?;
        let found = self.retried(Action::Ec2DescribeInstances, || {
            self.engine
                .cloud
                .ec2
                .describe_instances(&who, region, std::slice::from_ref(instance))
        })?;
        match found.into_iter().next() {
            Some(info) => Ok(info.availability_zone),
            None => Err(CloudError::not_found(
                Action::Ec2DescribeInstances,
                "InvalidInstanceID.NotFound",
                instance.as_str(),
            )
            .into()),
        }
    }

    /// Waits for a new volume to be available.
    pub(super) fn wait_volume(&self, who: &Credentials, region: &Region, id: &VolumeId) -> StepResult {
        let ec2 = &self.engine.cloud.ec2;
        self.wait(Action::Ec2DescribeVolumes, || {
            let v = ec2.describe_volumes(who, region, std::slice::from_ref(id))?;
            match v.first().map(|v| v.state.as_str()) {
                Some("available" | "in-use") => Ok(true),
                Some("error") => Err(CloudError::new(
                    Action::Ec2DescribeVolumes,
                    ErrorKind::NotPermitted,
                    "VolumeError",
                    format!("volume {id} failed (state error): is its KMS key enabled and usable?"),
                )),
                _ => Ok(false),
            }
        })
    }

    /// The size of a production volume, from the estate.
    fn volume_size(&self, volume: &VolumeId) -> Result<u32, Failure> {
        self.engine
            .estate
            .instances
            .iter()
            .flat_map(|i| &i.volumes)
            .find(|v| &v.id == volume)
            .map(|v| v.size_gib)
            .ok_or_else(|| {
                Failure::Engine(EngineError::Internal(format!(
                    "volume {volume} is not in the estate"
                )))
            })
    }
}
