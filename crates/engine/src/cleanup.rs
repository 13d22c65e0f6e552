//! Removing what sessions created: at the end of a session (its temporary resources, and its
//! kept ones too if it failed), and after a crash, from the journals of sessions that did not
//! finish. What a call whose answer never came may have made is found first (by the tags the
//! session gave it, or by its name) and removed like the rest.

use bulwark_cloud::{CloudError, Credentials, ErrorKind};
use bulwark_model::{Action, RoleArn};

use crate::journal::{self, Ec2Kind, Entry, Finder, Left, Target, Undo};
use crate::session::Failure;
use crate::store::JournalHandle;
use crate::{Engine, EngineError, Event, SessionId};

/// What recovery did for one unfinished session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovery {
    /// The session.
    pub session: SessionId,
    /// Where its journal is.
    pub journal: String,
    /// Resources removed.
    pub removed: usize,
    /// Resources still left, with why.
    pub left: Vec<String>,
}

fn credentials(engine: &Engine, actor: Option<&RoleArn>) -> Result<Credentials, Failure> {
    match actor {
        None => Ok(engine.identities.appliance().clone()),
        Some(role) => Ok(engine.identities.role(role)?),
    }
}

/// Removes one created resource, and waits where AWS makes the next removal wait (a detached
/// volume is in use until the detachment ends). A resource already gone counts as removed.
pub(crate) fn undo(engine: &Engine, undo: &Undo) -> Result<(), Failure> {
    let who = credentials(engine, undo.actor.as_ref())?;
    let c = &engine.cloud;
    let result = engine.retry.run(undo.action, None, || match &undo.target {
        Target::Snapshot(r, id) => c.ec2.delete_snapshot(&who, r, id),
        Target::Share(r, id, with) => {
            c.ec2
                .modify_snapshot_sharing(&who, r, id, &[], std::slice::from_ref(with))
        }
        Target::Volume(r, id) => match c.ec2.delete_volume(&who, r, id) {
            // Still detaching (or its instance still shutting down): wait, then delete.
            Err(e) if e.code == "VolumeInUse" && detaching(engine, &who, r, id)? => {
                wait_detached(engine, &who, r, id)?;
                c.ec2.delete_volume(&who, r, id)
            }
            other => other,
        },
        Target::Attachment(r, volume, _) => c.ec2.detach_volume(&who, r, volume),
        Target::Instance(r, id) => c.ec2.terminate_instance(&who, r, id),
        Target::Role(arn) => c.iam.delete_role(&who, arn),
        Target::RolePolicy(arn, name) => c.iam.delete_role_policy(&who, arn, name),
        Target::Profile(arn) => c.iam.delete_instance_profile(&who, arn),
        Target::Membership(profile, role) => c.iam.remove_role_from_instance_profile(&who, profile, role),
        Target::Queue(r, url) => c.sqs.delete_queue(&who, r, url),
        Target::Image(r, id) => c.ec2.deregister_image(&who, r, id),
    });
    match result.map_err(crate::retry::Gave::error) {
        Ok(()) => {}
        Err(e) if gone(&e, &undo.target) => {}
        Err(e) => return Err(Failure::Cloud(e)),
    }
    match &undo.target {
        Target::Attachment(r, volume, _) => wait_detached(engine, &who, r, volume)?,
        Target::Instance(r, id) => wait_terminated(engine, &who, r, id)?,
        _ => {}
    }
    Ok(())
}

/// Waits until an instance is terminated (or gone): until then it runs, and costs.
fn wait_terminated(
    engine: &Engine,
    who: &Credentials,
    region: &bulwark_model::Region,
    instance: &bulwark_model::InstanceId,
) -> Result<(), CloudError> {
    crate::retry::wait_until(
        &engine.retry,
        Action::Ec2DescribeInstances,
        engine.ready_timeout,
        || match engine
            .cloud
            .ec2
            .describe_instances(who, region, std::slice::from_ref(instance))
        {
            Ok(i) => Ok(i.first().is_none_or(|i| i.state == "terminated")),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(true),
            Err(e) => Err(e),
        },
    )
    .map_err(crate::retry::Gave::error)
}

/// Whether a volume in use is on its way to being free: detaching, or attached to an instance
/// that is shutting down or terminated.
fn detaching(
    engine: &Engine,
    who: &Credentials,
    region: &bulwark_model::Region,
    volume: &bulwark_model::VolumeId,
) -> Result<bool, CloudError> {
    let ec2 = &engine.cloud.ec2;
    let Some(v) = ec2
        .describe_volumes(who, region, std::slice::from_ref(volume))?
        .pop()
    else {
        return Ok(false);
    };
    if v.attachment_state.as_deref() == Some("detaching") {
        return Ok(true);
    }
    let Some((instance, _)) = v.attachment else {
        return Ok(true);
    };
    let state = ec2.describe_instances(who, region, std::slice::from_ref(&instance));
    Ok(state.is_ok_and(|i| {
        i.first()
            .is_none_or(|i| i.state == "shutting-down" || i.state == "terminated")
    }))
}

/// Waits until a volume is attached to nothing (or gone).
fn wait_detached(
    engine: &Engine,
    who: &Credentials,
    region: &bulwark_model::Region,
    volume: &bulwark_model::VolumeId,
) -> Result<(), CloudError> {
    crate::retry::wait_until(
        &engine.retry,
        Action::Ec2DescribeVolumes,
        engine.ready_timeout,
        || match engine
            .cloud
            .ec2
            .describe_volumes(who, region, std::slice::from_ref(volume))
        {
            Ok(v) => Ok(v.first().is_none_or(|v| v.attachment.is_none())),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(true),
            Err(e) => Err(e),
        },
    )
    .map_err(crate::retry::Gave::error)
}

/// Whether `error` of a removal means the resource is already gone.
fn gone(error: &CloudError, target: &Target) -> bool {
    match error.kind {
        ErrorKind::NotFound => true,
        // Detaching a volume that is no longer attached (its worker was terminated), or is
        // detaching already (an earlier call's answer was lost).
        ErrorKind::NotPermitted => matches!(target, Target::Attachment(..)) && error.code == "IncorrectState",
        _ => false,
    }
}

/// What a call whose answer never came made, found as `finder` says.
fn find(engine: &Engine, who: &Credentials, finder: &Finder) -> Result<Vec<Target>, Failure> {
    let ec2 = &engine.cloud.ec2;
    let retried = |f: &mut dyn FnMut() -> Result<Vec<Target>, CloudError>| {
        engine
            .retry
            .run(Action::Ec2DescribeSnapshots, None, f)
            .map_err(Failure::from)
    };
    match finder {
        Finder::Named(target) => Ok(vec![target.clone()]),
        Finder::Queue { region, name } => {
            let url = engine.retry.run(Action::SqsGetQueueUrl, None, || {
                engine.cloud.sqs.queue_url(who, region, name)
            })?;
            Ok(url
                .map(|u| Target::Queue(region.clone(), u))
                .into_iter()
                .collect())
        }
        Finder::Tagged { kind, region, tags } => retried(&mut || {
            Ok(match kind {
                Ec2Kind::Snapshot => ec2
                    .snapshots_tagged(who, region, tags)?
                    .into_iter()
                    .map(|s| Target::Snapshot(region.clone(), s.id))
                    .collect(),
                Ec2Kind::Volume => ec2
                    .volumes_tagged(who, region, tags)?
                    .into_iter()
                    .map(|v| Target::Volume(region.clone(), v.id))
                    .collect(),
                Ec2Kind::Instance => ec2
                    .instances_tagged(who, region, tags)?
                    .into_iter()
                    .filter(|i| i.state != "terminated")
                    .map(|i| Target::Instance(region.clone(), i.id))
                    .collect(),
                Ec2Kind::Image => ec2
                    .images_tagged(who, region, tags)?
                    .into_iter()
                    .map(|i| Target::Image(region.clone(), i.id))
                    .collect(),
            })
        }),
    }
}

/// Removes one thing a journal says is left.
fn remove(engine: &Engine, left: &Left) -> Result<(), Failure> {
    match left {
        Left::Made { undo: u, .. } => undo(engine, u),
        Left::Unknown(unsettled) => {
            let who = credentials(engine, unsettled.actor.as_ref())?;
            for target in find(engine, &who, &unsettled.finder)? {
                undo(
                    engine,
                    &Undo {
                        actor: unsettled.actor.clone(),
                        action: unsettled.action,
                        target,
                    },
                )?;
            }
            Ok(())
        }
    }
}

/// Removes what a journal says is left: temporary resources, and kept ones too if the
/// session did not succeed. Answers what could not be removed.
pub(crate) fn clean(engine: &Engine, journal: &mut dyn JournalHandle) -> Result<Vec<String>, EngineError> {
    let session = journal.session().clone();
    let leftovers = journal::replay(&journal.entries()?).map_err(|e| EngineError::Journal {
        path: journal.location(),
        message: e.to_string(),
    })?;
    let mut failed = Vec::new();
    for left in leftovers.left.iter().rev() {
        if left.kept() && leftovers.succeeded {
            continue;
        }
        let name = left.name().to_owned();
        engine.emit(&session, &Event::Cleanup { name: name.clone() });
        let outcome = match remove(engine, left) {
            Ok(()) => Ok(()),
            Err(Failure::Cloud(e)) => Err(e.to_string()),
            Err(Failure::Engine(e)) => Err(e.to_string()),
        };
        match outcome {
            Ok(()) => {
                tracing::info!(session = %session, resource = %name, "removed");
                journal.record(&Entry::Removed { name })?;
            }
            Err(e) => {
                tracing::warn!(session = %session, resource = %name, error = %e, "could not remove; kept in the journal");
                failed.push(format!("{name}: {e}"));
            }
        }
    }
    if failed.is_empty() {
        journal.record(&Entry::Closed)?;
    }
    Ok(failed)
}

/// Cleans up after sessions that did not finish and whose owner is gone; sessions still run by
/// a live process (this one or another) are left to it.
pub(crate) fn recover(engine: &Engine) -> Result<Vec<Recovery>, EngineError> {
    let mut out = Vec::new();
    for session in engine.store.unfinished()? {
        let Some(mut journal) = engine.store.take_over(&session)? else {
            continue;
        };
        tracing::info!(session = %session, journal = %journal.location(), "recovering an unfinished session");
        // What the cleanup will remove: not what a session that succeeded keeps.
        let before = journal::replay(&journal.entries()?).map_or(0, |l| {
            l.left.iter().filter(|left| !(left.kept() && l.succeeded)).count()
        });
        let failed = clean(engine, journal.as_mut())?;
        out.push(Recovery {
            session,
            journal: journal.location(),
            removed: before.saturating_sub(failed.len()),
            left: failed,
        });
    }
    Ok(out)
}
