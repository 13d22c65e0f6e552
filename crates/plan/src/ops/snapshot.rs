//! Cloud-native snapshots (seeds: "IAM role permissions on CMKs", creating cloud-native
//! snapshots): the backup role of the instance's account snapshots every volume. Snapshots of
//! encrypted volumes keep the volumes' keys, and the role needs no permission on them.

use bulwark_model::Instance;

use crate::build::{Builder, SnapshotPurpose};
use crate::refusal::Refusal;

pub(crate) fn plan(b: &mut Builder, instance: &Instance) -> Result<String, Refusal> {
    let role = b.backup_role(&instance.account)?;
    b.snapshot_instance(&role, instance, SnapshotPurpose::RestorePoint);
    Ok(format!(
        "cloud-native snapshots of {} in {}/{}",
        instance.id, instance.account, instance.region
    ))
}
