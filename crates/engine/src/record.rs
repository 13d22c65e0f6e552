//! What a restore point records of its instance, so that a restore launches the instance as
//! it was: type, boot, network, tags, and every volume at its device. Taken when the
//! snapshots are (DescribeInstances and DescribeVolumes, with the role that takes them), kept
//! with the snapshot restore points in the catalog.

use bulwark_cloud::{InstanceBoot, InstanceInfo, Tag, VolumeInfo};
use bulwark_model::{AccountId, InstanceId, Performance, Region, VolumeId};
use serde::{Deserialize, Serialize};

/// The format version of [`InstanceRecord`]; a record of a later version is not trusted.
pub const RECORD_VERSION: u32 = 1;

/// An instance's configuration when its restore point was made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRecord {
    /// [`RECORD_VERSION`].
    pub version: u32,
    /// The instance.
    pub instance: InstanceId,
    /// Its account.
    pub account: AccountId,
    /// Its region.
    pub region: Region,
    /// Its type (`m6i.large`).
    pub instance_type: Option<String>,
    /// Its availability zone.
    pub zone: Option<String>,
    /// Its subnet.
    pub subnet: Option<String>,
    /// Its security groups.
    pub security_groups: Vec<String>,
    /// How it boots.
    pub boot: InstanceBoot,
    /// Its instance profile's ARN.
    pub instance_profile: Option<String>,
    /// Its tags.
    pub tags: Vec<Tag>,
    /// Its volumes, in attachment order.
    pub volumes: Vec<RecordedVolume>,
}

/// A volume of a recorded instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedVolume {
    /// The volume.
    pub id: VolumeId,
    /// Its device name.
    pub device: String,
    /// Its size in GiB.
    pub size_gib: u32,
    /// Its type, IOPS and throughput.
    pub performance: Option<Performance>,
    /// Whether it is deleted with the instance.
    pub delete_on_termination: bool,
}

impl InstanceRecord {
    /// The record of `instance` as EC2 describes it, with its `volumes`.
    pub fn of(instance: &InstanceInfo, volumes: &[VolumeInfo]) -> Self {
        let setup = &instance.setup;
        Self {
            version: RECORD_VERSION,
            instance: instance.id.clone(),
            account: instance.owner.clone(),
            region: instance.region.clone(),
            instance_type: setup.instance_type.clone(),
            zone: instance.availability_zone.clone(),
            subnet: setup.subnet.clone(),
            security_groups: setup.security_groups.clone(),
            boot: setup.boot.clone(),
            instance_profile: instance.instance_profile.clone(),
            tags: instance.tags.clone(),
            volumes: instance
                .volumes
                .iter()
                .map(|(id, device)| {
                    let info = volumes.iter().find(|v| &v.id == id);
                    RecordedVolume {
                        id: id.clone(),
                        device: device.clone(),
                        size_gib: info.map_or(0, |v| v.size_gib),
                        performance: info.and_then(|v| v.performance),
                        delete_on_termination: setup.deleted_on_termination.contains(device),
                    }
                })
                .collect(),
        }
    }

    /// The record as a restore point keeps it (JSON).
    pub fn to_json(&self) -> String {
        // A struct of strings, numbers and lists: it always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// A record read back from a restore point or a worker: `None` if it is not a record, or
    /// one of a later version than this Bulwark reads (the restore then says so and uses
    /// defaults).
    pub fn parse(text: &str) -> Option<Self> {
        let record: Self = serde_json::from_str(text).ok()?;
        (record.version <= RECORD_VERSION).then_some(record)
    }

    /// The recorded volume `id`.
    pub fn volume(&self, id: &VolumeId) -> Option<&RecordedVolume> {
        self.volumes.iter().find(|v| &v.id == id)
    }

    /// Its root volume: the one at the root device, else the first.
    pub fn root(&self) -> Option<&RecordedVolume> {
        self.volumes
            .iter()
            .find(|v| Some(&v.device) == self.boot.root_device.as_ref())
            .or(self.volumes.first())
    }

    /// Its tags a restored instance carries: every one but AWS's own (`aws:` keys cannot be
    /// set) and Bulwark's of the sessions that made it.
    pub fn restorable_tags(&self) -> impl Iterator<Item = &Tag> {
        self.tags
            .iter()
            .filter(|t| !t.key.starts_with("aws:") && !t.key.starts_with("bulwark:"))
    }
}
