//! Removing what sessions created: at the end of a session (its temporary resources, and its
//! kept ones too if it failed), and after a crash, from the journals of sessions that did not
//! finish.

use std::path::PathBuf;

use bulwark_cloud::{CloudError, ErrorKind};

use crate::journal::{self, Entry, Journal, Target, Undo};
use crate::session::Failure;
use crate::{Engine, EngineError, Event, SessionId};

/// What recovery did for one unfinished session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovery {
    /// The journal.
    pub journal: PathBuf,
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
pub(crate) fn clean(
    engine: &Engine,
    session: &SessionId,
    journal: &mut Journal,
) -> Result<Vec<String>, EngineError> {
    let leftovers = journal::read(journal.path())?;
    let mut left = Vec::new();
    for (name, undo_step, kept) in leftovers.created.iter().rev() {
        if *kept && leftovers.succeeded {
            continue;
        }
        engine.emit(session, &Event::Cleanup { name: name.clone() });
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

/// Cleans up after sessions that did not finish.
pub(crate) fn recover(engine: &Engine) -> Result<Vec<Recovery>, EngineError> {
    let mut out = Vec::new();
    for path in journal::open_journals(engine.journals())? {
        let before = journal::read(&path)?;
        let session = journal::session_of(&path)?;
        let mut journal = Journal::reopen(&path)?;
        let left = clean(engine, &session, &mut journal)?;
        out.push(Recovery {
            journal: path,
            removed: before.created.len() - left.len(),
            left,
        });
    }
    Ok(out)
}
