use bulwark_model::{AccountId, ImageId, InstanceId, Region, SnapshotId, VolumeId};

use crate::{
    CopySnapshot, CreateVolume, Credentials, ImageInfo, InstanceInfo, RegisterImage, Result, RunInstance,
    SnapshotInfo, Tag, VolumeInfo,
};

/// EC2: instances, EBS volumes and snapshots, and the region's EBS encryption defaults.
pub trait Ec2: Send + Sync {
    /// `ec2:DescribeInstances` of the given instances.
    fn describe_instances(
        &self,
        who: &Credentials,
        region: &Region,
        ids: &[InstanceId],
    ) -> Result<Vec<InstanceInfo>>;
    /// `ec2:DescribeVolumes` of the given volumes.
    fn describe_volumes(
        &self,
        who: &Credentials,
        region: &Region,
        ids: &[VolumeId],
    ) -> Result<Vec<VolumeInfo>>;
    /// `ec2:DescribeSnapshots` of the given snapshots (owned or shared with the caller).
    fn describe_snapshots(
        &self,
        who: &Credentials,
        region: &Region,
        ids: &[SnapshotId],
    ) -> Result<Vec<SnapshotInfo>>;
    /// `ec2:DescribeSnapshots` of the caller's snapshots that carry every one of `tags`: how a
    /// snapshot is found whose creation's answer was lost.
    fn snapshots_tagged(&self, who: &Credentials, region: &Region, tags: &[Tag])
        -> Result<Vec<SnapshotInfo>>;
    /// `ec2:DescribeVolumes` of the volumes that carry every one of `tags`.
    fn volumes_tagged(&self, who: &Credentials, region: &Region, tags: &[Tag]) -> Result<Vec<VolumeInfo>>;
    /// `ec2:DescribeInstances` of the instances that carry every one of `tags`, terminated ones
    /// included.
    fn instances_tagged(&self, who: &Credentials, region: &Region, tags: &[Tag])
        -> Result<Vec<InstanceInfo>>;
    /// `ec2:CreateSnapshots`: crash-consistent snapshots of every volume of an instance, in
    /// the order of its volumes. Encrypted with each volume's key; takes no key.
    fn create_snapshots(
        &self,
        who: &Credentials,
        region: &Region,
        instance: &InstanceId,
        tags: &[Tag],
    ) -> Result<Vec<SnapshotInfo>>;
    /// `ec2:CreateSnapshot` of one volume.
    fn create_snapshot(
        &self,
        who: &Credentials,
        region: &Region,
        volume: &VolumeId,
        tags: &[Tag],
    ) -> Result<SnapshotInfo>;
    /// `ec2:CopySnapshot`, called in the destination `region`.
    fn copy_snapshot(&self, who: &Credentials, region: &Region, copy: &CopySnapshot) -> Result<SnapshotId>;
    /// `ec2:ModifySnapshotAttribute` on `createVolumePermission`: adds and removes accounts.
    fn modify_snapshot_sharing(
        &self,
        who: &Credentials,
        region: &Region,
        snapshot: &SnapshotId,
        add: &[AccountId],
        remove: &[AccountId],
    ) -> Result<()>;
    /// `ec2:DeleteSnapshot`.
    fn delete_snapshot(&self, who: &Credentials, region: &Region, snapshot: &SnapshotId) -> Result<()>;
    /// `ec2:CreateVolume`.
    fn create_volume(&self, who: &Credentials, region: &Region, volume: &CreateVolume) -> Result<VolumeInfo>;
    /// `ec2:DeleteVolume`.
    fn delete_volume(&self, who: &Credentials, region: &Region, volume: &VolumeId) -> Result<()>;
    /// `ec2:AttachVolume` as `device`.
    fn attach_volume(
        &self,
        who: &Credentials,
        region: &Region,
        volume: &VolumeId,
        instance: &InstanceId,
        device: &str,
    ) -> Result<()>;
    /// `ec2:DetachVolume`.
    fn detach_volume(&self, who: &Credentials, region: &Region, volume: &VolumeId) -> Result<()>;
    /// `ec2:RunInstances` of one instance (with `iam:PassRole` on its profile's role).
    fn run_instance(&self, who: &Credentials, region: &Region, run: &RunInstance) -> Result<InstanceInfo>;
    /// `ec2:TerminateInstances` of one instance.
    fn terminate_instance(&self, who: &Credentials, region: &Region, instance: &InstanceId) -> Result<()>;
    /// `ec2:StopInstances` of one instance.
    fn stop_instance(&self, who: &Credentials, region: &Region, instance: &InstanceId) -> Result<()>;
    /// `ec2:ModifyInstanceAttribute` of `blockDeviceMapping`: whether the volume at `device`
    /// is deleted when the instance terminates.
    fn set_delete_on_termination(
        &self,
        who: &Credentials,
        region: &Region,
        instance: &InstanceId,
        device: &str,
        delete: bool,
    ) -> Result<()>;
    /// `ec2:RegisterImage` of EBS snapshots the caller may use.
    fn register_image(&self, who: &Credentials, region: &Region, image: &RegisterImage) -> Result<ImageId>;
    /// `ec2:DescribeImages` of the given images.
    fn describe_images(&self, who: &Credentials, region: &Region, ids: &[ImageId]) -> Result<Vec<ImageInfo>>;
    /// `ec2:DescribeImages` of the caller's images that carry every one of `tags`: how an image
    /// is found whose registration's answer was lost.
    fn images_tagged(&self, who: &Credentials, region: &Region, tags: &[Tag]) -> Result<Vec<ImageInfo>>;
    /// `ec2:DeregisterImage`; its snapshots stay.
    fn deregister_image(&self, who: &Credentials, region: &Region, image: &ImageId) -> Result<()>;
    /// `ec2:GetEbsDefaultKmsKeyId`: the key ARN new encrypted volumes get by default.
    fn ebs_default_key(&self, who: &Credentials, region: &Region) -> Result<String>;
    /// `ec2:GetEbsEncryptionByDefault`.
    fn ebs_encryption_by_default(&self, who: &Credentials, region: &Region) -> Result<bool>;
}
