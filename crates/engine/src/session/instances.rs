//! The restored instance, launched as the original was: the image of its restored volumes,
//! the launch from it with the recorded type, network and tags, the volumes' recorded
//! delete-on-termination, and the stop if asked.

use bulwark_cloud::{CloudError, ErrorKind, ImageDevice, RegisterImage, RunInstance, Tag};
use bulwark_model::{Action, InstanceId, VolumeId};
use bulwark_plan::{Operation, Resource, RestoreSource, RestoredRef, Snapshot, Step};

use super::{Failure, Session, StepResult};
use crate::journal::{Ec2Kind, Finder, Target};
use crate::record::{InstanceRecord, RECORD_VERSION};

/// The type a restored instance gets when its restore point recorded none.
const DEFAULT_TYPE: &str = "c6i.large";
/// The root device a restored instance gets when its restore point recorded none.
const DEFAULT_ROOT: &str = "/dev/xvda";

impl Session<'_> {
    /// Registers the image of the restored volumes' snapshots, each at its recorded device
    /// with its recorded type (the root first), and waits until it is available. Every volume
    /// is deleted on termination until the restore has succeeded
    /// ([`Session::keep_volumes_as_they_were`]).
    pub(super) fn register_image(
        &mut self,
        step: &Step,
        image: &RestoredRef,
        snapshots: &[Snapshot],
    ) -> StepResult {
        let record = self.restore_record(&image.from)?;
        let mut devices = Vec::new();
        for (i, s) in snapshots.iter().enumerate() {
            let (_, id) = self.snapshot_id(s)?;
            let recorded = record.volume(&s.volume);
            devices.push(ImageDevice {
                device: recorded.map_or_else(|| fallback_device(i), |v| v.device.clone()),
                snapshot: id,
                size_gib: recorded.map(|v| v.size_gib).filter(|g| *g > 0),
                performance: recorded.and_then(|v| v.performance),
                delete_on_termination: true,
            });
        }
        // The recorded root if it is among the volumes, else the first.
        let root_device = record
            .root()
            .filter(|r| snapshots.iter().any(|s| s.volume == r.id))
            .map_or_else(
                || {
                    devices
                        .first()
                        .map_or_else(|| fallback_device(0), |d| d.device.clone())
                },
                |r| r.device.clone(),
            );
        self.image_devices = devices
            .iter()
            .zip(snapshots)
            .map(|(d, s)| (d.device.clone(), s.volume.clone()))
            .collect();
        let tags = self.step_tags(step);
        let request = RegisterImage {
            name: image_name(self.id().as_str(), &image.from),
            architecture: record
                .boot
                .architecture
                .clone()
                .unwrap_or_else(|| "x86_64".into()),
            boot_mode: record.boot.boot_mode.clone(),
            root_device,
            ena_support: record.boot.ena_support,
            devices,
            tags: tags.clone(),
        };
        let who = self.who(step)?;
        let region = image.region.clone();
        let ec2 = &self.engine.cloud.ec2;
        let resource = Resource::Image(image.clone());
        let finder = Finder::Tagged {
            kind: Ec2Kind::Image,
            region: region.clone(),
            tags: tags.clone(),
        };
        let id = self.creating(
            step,
            finder,
            &resource,
            || ec2.register_image(&who, &region, &request),
            || {
                Ok(ec2
                    .images_tagged(&who, &region, &tags)?
                    .into_iter()
                    .next()
                    .map(|i| i.id))
            },
            |session, id| {
                session.created(&resource, Target::Image(region.clone(), id.clone()), step.kept)?;
                Ok(id)
            },
        )?;
        self.wait(Action::Ec2DescribeImages, || {
            let found = ec2.describe_images(&who, &region, std::slice::from_ref(&id))?;
            match found.first().map(|i| i.state.as_str()) {
                Some("available") => Ok(true),
                Some("pending") | None => Ok(false),
                Some(state) => Err(CloudError::new(
                    Action::Ec2DescribeImages,
                    ErrorKind::NotPermitted,
                    "ImageFailed",
                    format!("image {id} is {state}"),
                )),
            }
        })
    }

    /// Launches the restored instance from its image with the recorded type, tags and key
    /// pair, in the network the plan says, and waits until it runs.
    pub(super) fn launch_restored(&mut self, step: &Step, instance: &RestoredRef) -> StepResult {
        let record = self.restore_record(&instance.from)?;
        let image = match self.target(&Resource::Image(instance.clone()))? {
            Target::Image(_, id) => id.clone(),
            other => {
                return Err(Failure::Engine(crate::EngineError::Internal(format!(
                    "the image of {} is {other:?}",
                    instance.from
                ))))
            }
        };
        let launch = match &self.plan.operation {
            Operation::Restore { launch, .. } => launch.clone(),
            _ => bulwark_plan::Launch::default(),
        };
        let same_place = instance.account == record.account && instance.region == record.region;
        let (subnet, security_groups) = match (&launch.subnet, same_place) {
            (Some(subnet), _) => (Some(subnet.clone()), launch.security_groups.clone()),
            (None, true) => (record.subnet.clone(), record.security_groups.clone()),
            (None, false) => (None, Vec::new()),
        };
        if let Some(profile) = &record.instance_profile {
            tracing::warn!(
                instance = %instance.from,
                profile = %profile,
                "the original's instance profile is not attached to the restored instance: attach it \
                 (ec2:AssociateIamInstanceProfile, which needs iam:PassRole on its role)"
            );
        }
        let mut tags: Vec<Tag> = record.restorable_tags().cloned().collect();
        tags.extend(self.step_tags(step));
        tags.push(Tag::new("bulwark:restored-from", instance.from.to_string()));
        tags.push(Tag::new(
            "bulwark:restore-point",
            self.restore_point_name(&record),
        ));
        let run = RunInstance {
            instance_profile: None,
            instance_type: record
                .instance_type
                .clone()
                .unwrap_or_else(|| DEFAULT_TYPE.into()),
            user_data: String::new(),
            tags,
            availability_zone: subnet.is_none().then(|| self.zone.clone()).flatten(),
            subnet,
            security_groups,
            client_token: Some(self.client_token(step)),
            // As AWS launches instances by default; the original's metadata options are not
            // recorded.
            imds_v2_only: false,
            image: Some(image),
            // Key pairs belong to an account and region.
            key_name: record.boot.key_name.clone().filter(|_| same_place),
        };
        let launched = self.launch(
            step,
            &instance.region,
            &run,
            &Resource::RestoredInstance(instance.clone()),
        )?;
        // Its volumes, made from the image, are what the restore made of each production
        // volume: the report lists them as kept. Until the last step, each is deleted with the
        // instance, so a failure leaves none of them behind.
        let who = self.who(step)?;
        let ec2 = &self.engine.cloud.ec2;
        let described = self.retried(Action::Ec2DescribeInstances, || {
            ec2.describe_instances(&who, &instance.region, std::slice::from_ref(&launched.id))
        })?;
        for (volume, device) in described.first().map(|i| i.volumes.clone()).unwrap_or_default() {
            if let Some(of) = self.image_devices.get(&device) {
                let name = Resource::Volume(bulwark_plan::NewVolume {
                    account: instance.account.clone(),
                    region: instance.region.clone(),
                    of: of.clone(),
                    origin: bulwark_plan::VolumeOrigin::Restored,
                    key: None,
                });
                self.kept
                    .push((name.to_string(), Target::Volume(instance.region.clone(), volume)));
            }
        }
        Ok(())
    }

    /// Gives each volume of the restored instance the delete-on-termination its original had.
    pub(super) fn keep_volumes_as_they_were(&mut self, step: &Step, instance: &RestoredRef) -> StepResult {
        let record = self.restore_record(&instance.from)?;
        let id = self.restored_instance_id(instance)?;
        let who = self.who(step)?;
        let ec2 = &self.engine.cloud.ec2;
        let info = self.retried(Action::Ec2DescribeInstances, || {
            ec2.describe_instances(&who, &instance.region, std::slice::from_ref(&id))
        })?;
        let attached: Vec<String> = info
            .first()
            .map(|i| i.volumes.iter().map(|(_, d)| d.clone()).collect())
            .unwrap_or_default();
        // Without a record, as AWS launches: the root deleted with the instance, the rest kept.
        let root = record
            .root()
            .map(|r| r.device.clone())
            .or(record.boot.root_device.clone());
        for device in &attached {
            let delete = record
                .volumes
                .iter()
                .find(|v| &v.device == device)
                .map_or(Some(device) == root.as_ref(), |v| v.delete_on_termination);
            self.retried(step.action(), || {
                ec2.set_delete_on_termination(&who, &instance.region, &id, device, delete)
            })?;
        }
        Ok(())
    }

    /// Stops the restored instance, and waits until it is stopped.
    pub(super) fn stop_restored(&mut self, step: &Step, instance: &RestoredRef) -> StepResult {
        let id = self.restored_instance_id(instance)?;
        let who = self.who(step)?;
        let ec2 = &self.engine.cloud.ec2;
        self.retried(step.action(), || ec2.stop_instance(&who, &instance.region, &id))?;
        self.wait(Action::Ec2DescribeInstances, || {
            let found = ec2.describe_instances(&who, &instance.region, std::slice::from_ref(&id))?;
            Ok(found.first().is_some_and(|i| i.state == "stopped"))
        })
    }

    fn restored_instance_id(&self, instance: &RestoredRef) -> Result<InstanceId, Failure> {
        match self.target(&Resource::RestoredInstance(instance.clone()))? {
            Target::Instance(_, id) => Ok(id.clone()),
            other => Err(Failure::Engine(crate::EngineError::Internal(format!(
                "the restored instance of {} is {other:?}",
                instance.from
            )))),
        }
    }

    /// Takes the instance record a restore point kept (read by the appliance or reported by
    /// the worker that restored it): the restore launches the instance as it says.
    pub(super) fn adopt_record(&mut self, text: Option<&str>) {
        match text.map(|t| (t, InstanceRecord::parse(t))) {
            Some((_, Some(record))) => self.record = Some(record),
            Some((text, None)) => tracing::warn!(
                bytes = text.len(),
                "the restore point's instance record cannot be read (damaged, or of a later Bulwark): it is not used"
            ),
            None => {}
        }
    }

    /// The record the restore launches `from` as: the one its restore point kept, else that
    /// of its latest snapshot restore point that holds one, else defaults (logged: points made
    /// before instances were recorded).
    fn restore_record(&mut self, from: &InstanceId) -> Result<InstanceRecord, Failure> {
        if let Some(record) = self.record.as_ref().filter(|r| &r.instance == from) {
            return Ok(record.clone());
        }
        let points = self.engine.store.points()?;
        let found = points
            .into_iter()
            .rev()
            .filter_map(|p| p.instance)
            .find(|r| &r.instance == from && r.version <= RECORD_VERSION);
        let record = match found {
            Some(record) => record,
            None => {
                let served = self.engine.estate.instance(from).ok_or_else(|| {
                    Failure::Engine(crate::EngineError::Internal(format!(
                        "{from} is not in the estate"
                    )))
                })?;
                tracing::warn!(
                    instance = %from,
                    "no restore point records this instance's configuration (it was made before Bulwark \
                     recorded them, or only backups were made of it): restoring it as {DEFAULT_TYPE}, \
                     x86_64, root at {DEFAULT_ROOT}"
                );
                InstanceRecord {
                    version: RECORD_VERSION,
                    instance: from.clone(),
                    account: served.account.clone(),
                    region: served.region.clone(),
                    instance_type: None,
                    zone: None,
                    subnet: None,
                    security_groups: Vec::new(),
                    boot: bulwark_cloud::InstanceBoot {
                        root_device: Some(DEFAULT_ROOT.into()),
                        ena_support: true,
                        ..Default::default()
                    },
                    instance_profile: None,
                    tags: Vec::new(),
                    volumes: Vec::new(),
                }
            }
        };
        self.record = Some(record.clone());
        Ok(record)
    }

    /// What the restored instance's `bulwark:restore-point` tag says: the snapshot of its
    /// root restore point, or that it came from the latest backup.
    fn restore_point_name(&self, record: &InstanceRecord) -> String {
        let from = match &self.plan.operation {
            Operation::Restore { from, .. } => *from,
            _ => RestoreSource::Snapshot,
        };
        let root: Option<&VolumeId> = record.root().map(|r| &r.id);
        match (from, root) {
            (RestoreSource::Snapshot, Some(volume)) => crate::store::latest_snapshot(
                self.engine.store.as_ref(),
                volume,
                &record.account,
                &record.region,
            )
            .ok()
            .flatten()
            .map_or_else(|| "latest snapshot".to_owned(), |s| s.to_string()),
            (RestoreSource::Snapshot, None) => "latest snapshot".to_owned(),
            (RestoreSource::Backup, _) => match self.points.first() {
                Some((_, point)) => point.clone(),
                None => "latest backup".to_owned(),
            },
        }
    }
}

/// A device for a volume the record does not know: the root's default, then from `/dev/sdf`.
fn fallback_device(index: usize) -> String {
    match index {
        0 => DEFAULT_ROOT.to_owned(),
        i => format!(
            "/dev/sd{}",
            char::from(b'e' + u8::try_from(i.min(10)).unwrap_or(10))
        ),
    }
}

/// The temporary image's name: unique to the session, in the characters AMI names take.
fn image_name(session: &str, from: &InstanceId) -> String {
    let clean: String = session
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("bulwark-restore-{from}-{clean}")
}
