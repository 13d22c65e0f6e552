//! Snapshot replicas (seeds: "IAM role permissions on CMKs", creating snapshot replicas).
//!
//! - Same account: the backup role snapshots the instance and copies the snapshots to the
//!   target region; it needs the source keys and the target key (without one, the default
//!   EBS key of the target region).
//! - Another account: the backup role of the source account snapshots and shares (refused
//!   for `aws/ebs`); the backup role of the target account copies the shared snapshots, since
//!   a copy belongs to whoever calls CopySnapshot. It needs the source keys and the target
//!   key (without one, the default key of the target region in the target account).

use bulwark_model::{AccountId, Instance, KeyRef, Region};

use crate::build::{Builder, SnapshotPurpose};
use crate::refusal::Refusal;

pub(crate) fn plan(
    b: &mut Builder,
    instance: &Instance,
    to_account: &AccountId,
    to_region: &Region,
    target_key: Option<&KeyRef>,
) -> Result<String, Refusal> {
    let source_role = b.backup_role(&instance.account)?;
    let snapshots = b.snapshot_instance(&source_role, instance, SnapshotPurpose::RestorePoint);
    if to_account == &instance.account {
        for snapshot in &snapshots {
            b.copy_snapshot(
                &source_role,
                snapshot,
                to_region,
                target_key,
                true,
                "the snapshot replica",
            );
        }
    } else {
        let target_role = b.backup_role(to_account)?;
        let remedy = format!(
            "re-encrypt the volume with a customer managed key whose key policy allows account \
             {to_account} (or make such a key the default EBS key of account {} in {} before the \
             next snapshot); a snapshot under aws/ebs can never leave its account",
            instance.account, instance.region
        );
        for snapshot in &snapshots {
            b.share(&source_role, snapshot, to_account, &remedy)?;
        }
        for snapshot in &snapshots {
            b.copy_snapshot(
                &target_role,
                snapshot,
                to_region,
                target_key,
                true,
                &format!("the snapshot replica, owned by {to_account}"),
            );
        }
    }
    Ok(format!(
        "snapshot replica of {} ({}/{}) in {to_account}/{to_region}",
        instance.id, instance.account, instance.region
    ))
}
