//! Retention: the restore points a policy no longer keeps are deleted by the role that made
//! them, the backup role of the account that owns each snapshot (the instance's, or a
//! replica's target account). Deleting a snapshot needs no permission on its key.

use bulwark_model::InstanceId;

use crate::build::Builder;
use crate::operation::ExpiredSnapshot;
use crate::refusal::{Refusal, RefusalCode};
use crate::resource::{Snapshot, SnapshotOrigin};
use crate::step::{Actor, Call};

pub(crate) fn plan(
    b: &mut Builder,
    instance: &InstanceId,
    snapshots: &[ExpiredSnapshot],
) -> Result<String, Refusal> {
    if snapshots.is_empty() {
        return Err(Refusal::new(
            RefusalCode::NothingToExpire,
            format!("no restore point of {instance} is given to expire"),
            "name at least one snapshot",
        ));
    }
    for expired in snapshots {
        let role = b.backup_role(&expired.account)?;
        let snapshot = Snapshot {
            owner: expired.account.clone(),
            region: expired.region.clone(),
            volume: expired.volume.clone(),
            origin: SnapshotOrigin::Volume,
            key: None,
        };
        let step = b.step(
            &Actor::Role(role),
            Some(&expired.region),
            Call::ExpireSnapshot {
                snapshot,
                id: expired.id.clone(),
            },
            format!(
                "the restore point {} of {} is past its policy's retention; one that is gone already counts as deleted",
                expired.id, expired.volume
            ),
        );
        b.push(step, Vec::new());
    }
    Ok(format!(
        "retention of {instance}: {} expired snapshot(s)",
        snapshots.len()
    ))
}
