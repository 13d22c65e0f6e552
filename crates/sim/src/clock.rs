//! Time in the embedded cloud: what AWS does in the background takes time here too. A new
//! volume is `creating`, then `available`; an attachment `attaching`, then `attached`; a
//! detachment `detaching` (the volume still in use) before the volume is `available`; a new
//! instance `pending`, then `running`; a terminated one `shutting-down` (its volumes still
//! attached), then `terminated`; a snapshot or a copy `pending`, then `completed`. Each takes
//! the world's latency (a few milliseconds by default, longer in tests that show the engine
//! waits where AWS makes it wait).
//!
//! The states are read from wall-clock times saved with each resource, so every process
//! sharing the world sees the same; [`settle`] applies what has come due (an ended detachment
//! or termination), which any call may do since the outcome depends on the times only.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::state::{Instance, Snapshot, Volume, World};

/// Milliseconds since the epoch.
pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// When something started now is done.
pub(crate) fn done_at(world: &World) -> u64 {
    now().saturating_add(world.latency_ms)
}

/// A volume's state as EC2 answers it.
pub(crate) fn volume_state(v: &Volume, now: u64) -> &'static str {
    if now < v.ready_at {
        "creating"
    } else if v.attachment.is_some() {
        "in-use"
    } else {
        "available"
    }
}

/// The state of a volume's attachment, if it has one.
pub(crate) fn attachment_state(v: &Volume, now: u64) -> Option<&'static str> {
    v.attachment.as_ref()?;
    Some(if v.detach_at.is_some() {
        "detaching"
    } else if now < v.attach_at {
        "attaching"
    } else {
        "attached"
    })
}

/// A snapshot's state: `pending` until its copy or creation is done.
pub(crate) fn snapshot_state(s: &Snapshot, now: u64) -> String {
    if s.state == "completed" && now < s.ready_at {
        "pending".to_owned()
    } else {
        s.state.clone()
    }
}

/// An instance's state: `pending` until it runs, `shutting-down` until it is terminated.
pub(crate) fn instance_state(i: &Instance, now: u64) -> String {
    match i.state.as_str() {
        "running" if now < i.ready_at => "pending".to_owned(),
        _ => i.state.clone(),
    }
}

/// Applies what has come due: detachments that ended (the volume leaves its instance), and
/// terminations that ended (the instance is `terminated`, its volumes are free).
pub(crate) fn settle(world: &mut World, now: u64) {
    let mut retired = Vec::new();
    for account in world.accounts.values_mut() {
        for region in account.regions.values_mut() {
            let mut freed = Vec::new();
            let mut deleted = Vec::new();
            for (id, i) in &mut region.instances {
                if i.state == "shutting-down" && i.terminate_at.is_some_and(|t| now >= t) {
                    i.state = "terminated".into();
                    i.terminate_at = None;
                    for (v, device) in i.volumes.drain(..) {
                        if i.deleted_on_termination.contains(&device) {
                            deleted.push(v.clone());
                        }
                        freed.push((v, id.clone()));
                    }
                }
            }
            for (id, v) in &mut region.volumes {
                let detached = v.detach_at.is_some_and(|t| now >= t);
                let freed_here = freed.iter().any(|(f, _)| f == id);
                if detached || freed_here {
                    if let Some((instance, _)) = v.attachment.take() {
                        if let Some(i) = region.instances.get_mut(&instance) {
                            i.volumes.retain(|(attached, _)| attached != id);
                        }
                    }
                    v.detach_at = None;
                    retired.push(id.clone());
                }
            }
            // DeleteOnTermination: the volumes an image made at launch, by default.
            for v in &deleted {
                region.volumes.remove(v);
            }
        }
    }
    for volume in retired {
        crate::rules::retire_grants(world, &volume);
    }
}
