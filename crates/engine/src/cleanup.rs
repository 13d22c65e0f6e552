//! Removing what sessions created: at the end of a session (its temporary resources, and its
//! kept ones too if it failed), and after a crash, from the journals of sessions that did not
//! finish.

use bulwark_cloud::{CloudError, ErrorKind};

use crate::journal::{self, Entry, Target, Undo};
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

/// Removes one created resource. A resource already gone counts as removed.
pub(crate) fn undo(engine: &Engine, undo: &Undo) -> Result<(), Failure> {
    let who = match &undo.actor {
        None => engine.identities.appliance().clone(),
        Some(role) => engine.identities.role(role)?,
    };
    let c = &engine.cloud;
    let result = engine.retry.run(undo.action, None, || match &undo.target {
        Target::Snapshot(r, id) => c.ec2.delete_snapshot(&who, r, id),
        Target::Share(r, id, with) => {
            c.ec2
                .modify_snapshot_sharing(&who, r, id, &[], std::slice::from_ref(with))
        }
        Target::Volume(r, id) => c.ec2.delete_volume(&who, r, id),
        Target::Attachment(r, volume, _) => c.ec2.detach_volume(&who, r, volume),
        Target::Instance(r, id) => c.ec2.terminate_instance(&who, r, id),
        Target::Role(arn) => c.iam.delete_role(&who, arn),
        Target::RolePolicy(arn, name) => c.iam.delete_role_policy(&who, arn, name),
        Target::Profile(arn) => c.iam.delete_instance_profile(&who, arn),
        Target::Membership(profile, role) => c.iam.remove_role_from_instance_profile(&who, profile, role),
        Target::Queue(r, url) => c.sqs.delete_queue(&who, r, url),
    });
    match result.map_err(crate::retry::Gave::error) {
        Ok(()) => Ok(()),
        Err(e) if gone(&e, &undo.target) => Ok(()),
        Err(e) => Err(Failure::Cloud(e)),
    }
}

/// Whether `error` of a removal means the resource is already gone.
fn gone(error: &CloudError, target: &Target) -> bool {
    match error.kind {
        ErrorKind::NotFound => true,
        // Detaching a volume that is no longer attached (its worker was terminated).
        ErrorKind::NotPermitted => matches!(target, Target::Attachment(..)) && error.code == "IncorrectState",
        _ => false,
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
    let mut left = Vec::new();
    for (name, undo_step, kept) in leftovers.created.iter().rev() {
        if *kept && leftovers.succeeded {
            continue;
        }
        engine.emit(&session, &Event::Cleanup { name: name.clone() });
        match undo(engine, undo_step) {
            Ok(()) => journal.record(&Entry::Removed { name: name.clone() })?,
            Err(Failure::Cloud(e)) => left.push(format!("{name}: {e}")),
            Err(Failure::Engine(e)) => left.push(format!("{name}: {e}")),
        }
    }
    if left.is_empty() {
        journal.record(&Entry::Closed)?;
    }
    Ok(left)
}

/// Cleans up after sessions that did not finish and whose owner is gone; sessions still run by
/// a live process (this one or another) are left to it.
pub(crate) fn recover(engine: &Engine) -> Result<Vec<Recovery>, EngineError> {
    let mut out = Vec::new();
    for session in engine.store.unfinished()? {
        let Some(mut journal) = engine.store.take_over(&session)? else {
            continue;
        };
        let before = journal::replay(&journal.entries()?)
            .map(|l| l.created.len())
            .unwrap_or_default();
        let left = clean(engine, journal.as_mut())?;
        out.push(Recovery {
            session,
            journal: journal.location(),
            removed: before.saturating_sub(left.len()),
            left,
        });
    }
    Ok(out)
}
