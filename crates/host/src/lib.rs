//! What a program running on an instance has: its identity (the instance profile's role
//! credentials), its attached EBS volumes as block devices, and the cloud to call. The worker
//! (in `bulwark-engine`) runs against [`InstanceHost`]; the embedded cloud's instances
//! (`bulwark-sim`) and real EC2 instances (`bulwark-aws`) provide it.
//!
//! It is apart from the cloud traits because it is not an API of AWS: it is the machine a
//! program finds itself on. It depends on the cloud traits only.
#![deny(missing_docs)]

use std::sync::Arc;

use bulwark_cloud::{Cloud, Credentials, Result};
use bulwark_model::{InstanceId, Region, VolumeId};

/// An EBS volume as a program on the instance sees it: a block device.
pub trait Device: Send + Sync {
    /// Its size in bytes.
    fn size(&self) -> u64;
    /// Reads `buf.len()` bytes at `offset`.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()>;
    /// Writes `data` at `offset`.
    fn write_at(&self, offset: u64, data: &[u8]) -> std::io::Result<()>;
    /// Makes written data durable.
    fn flush(&self) -> std::io::Result<()>;
    /// The indexes of the 512 KiB blocks that were ever written, where the device can tell
    /// (the embedded cloud's volumes); every other block reads as zeros. `None` if unknown.
    fn written_blocks(&self) -> Option<Vec<u64>> {
        None
    }
}

/// What a program running on an instance has: its identity (the instance profile's role
/// credentials, from the instance metadata service on AWS), its attached devices, and the cloud
/// to call.
pub trait InstanceHost: Send + Sync {
    /// The instance.
    fn instance_id(&self) -> &InstanceId;
    /// Its region.
    fn region(&self) -> &Region;
    /// The credentials of the instance profile's role.
    fn credentials(&self) -> Result<Credentials>;
    /// The volume attached as `name` (`/dev/sdf`). `volume`, the attached volume's id where the
    /// caller knows it, finds the device where the instance does not name it as it was attached
    /// (NVMe devices on Nitro instances).
    fn device(&self, name: &str, volume: Option<&VolumeId>) -> std::io::Result<Arc<dyn Device>>;
    /// The cloud, for calls with [`InstanceHost::credentials`].
    fn cloud(&self) -> Cloud;
    /// False once the instance is terminated or has died: the program must stop.
    fn running(&self) -> bool;
}

/// What an instance runs at boot: called on a thread of its own with the instance's host and
/// its user data. The engine installs the worker here; it is the embedded cloud's machine image.
pub type Boot = Arc<dyn Fn(Arc<dyn InstanceHost>, String) + Send + Sync>;
