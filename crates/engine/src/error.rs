//! What can go wrong in a session, each with what to do about it.

use bulwark_cloud::{CloudError, ErrorKind};
use bulwark_model::Action;
use bulwark_plan::Refusal;

/// A failed session or engine operation.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The planner refused the operation: nothing ran.
    #[error("refused: {0}")]
    Refused(Refusal),
    /// A step of the plan failed; everything the session created was removed.
    #[error("{0}")]
    Step(Box<StepFailure>),
    /// The worker failed or died.
    #[error("the worker {instance} failed: {message}\n  what to do: {remedy}")]
    Worker {
        /// The worker instance.
        instance: String,
        /// What happened.
        message: String,
        /// What to change.
        remedy: String,
    },
    /// Moving data through the EBS direct APIs (without workers) failed; the message says
    /// which call and what to do.
    #[error("the transfer through the EBS direct APIs failed: {0}")]
    Direct(crate::direct::DirectError),
    /// The session journal could not be written or read.
    #[error("session journal {path}: {message}")]
    Journal {
        /// The journal file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// What the operation needs is not there yet (a restore from snapshots before any
    /// snapshot was made); the session stopped and removed what it had created.
    #[error("{0}")]
    NotReady(String),
    /// A role could not remove what the session would create: refused before anything was
    /// created.
    #[error(
        "{role} may not remove what the session would create: it lacks {}; nothing was created\n  what to do: give it these permissions (`bulwark policy plan ...` prints its policy), or run `bulwark check`",
        missing.join(", ")
    )]
    CannotCleanUp {
        /// The role.
        role: String,
        /// The permissions it lacks: `action on resource`.
        missing: Vec<String>,
    },
    /// The session was cancelled before step `step` (or during it); what it had created was
    /// removed.
    #[error("the session was cancelled at step {step}; what it had created was removed")]
    Cancelled {
        /// The step it stopped at (1-based).
        step: usize,
    },
    /// Repository maintenance (forget, prune, verify) failed; nothing was half removed: the
    /// repository stays valid whatever the point of failure.
    #[error("repository {what} as {role} failed: {message}")]
    Repository {
        /// `forget`, `prune` or `verify`.
        what: &'static str,
        /// The repository role.
        role: String,
        /// What went wrong.
        message: String,
    },
    /// A restore point or snapshot could not be opened or read for its files.
    #[error("{message}\n  what to do: {remedy}")]
    Browse {
        /// What failed.
        message: String,
        /// What to do.
        remedy: String,
    },
    /// The engine met a state it cannot be in: a bug of Bulwark.
    #[error("internal error (a Bulwark bug; please report it with the session journal): {0}")]
    Internal(String),
    /// Cleanup could not remove everything; the journal keeps the rest for the next start.
    #[error("{failure}\nCleanup left {} resource(s), kept in journal {journal} for the next start to remove:\n  {}", left.len(), left.join("\n  "))]
    CleanupIncomplete {
        /// Why the session failed, or "the session succeeded" if it did.
        failure: String,
        /// What is left.
        left: Vec<String>,
        /// The journal that lists them.
        journal: String,
    },
}

// The messages above include their cause, so no variant names it as its `source` as well: a
// `{:#}` chain would print it twice.
impl From<Refusal> for EngineError {
    fn from(r: Refusal) -> Self {
        EngineError::Refused(r)
    }
}

impl From<crate::direct::DirectError> for EngineError {
    fn from(e: crate::direct::DirectError) -> Self {
        EngineError::Direct(e)
    }
}

impl EngineError {
    /// A stable code for programs (the API, the console, scripts): kebab-case, never reworded.
    /// A refusal answers its own code; a failed step the kind of AWS's answer.
    pub fn code(&self) -> String {
        match self {
            EngineError::Refused(r) => r.code.to_string(),
            EngineError::Step(f) => format!("step-failed-{}", f.error.kind.code()),
            EngineError::Worker { .. } => "worker-failed".into(),
            EngineError::Direct(_) => "transfer-failed".into(),
            EngineError::Journal { .. } => "journal-unusable".into(),
            EngineError::NotReady(_) => "not-ready".into(),
            EngineError::CannotCleanUp { .. } => "cannot-clean-up".into(),
            EngineError::Cancelled { .. } => "cancelled".into(),
            EngineError::Repository { what, .. } => format!("repository-{what}-failed"),
            EngineError::Browse { .. } => "browse-failed".into(),
            EngineError::Internal(_) => "internal".into(),
            EngineError::CleanupIncomplete { .. } => "cleanup-incomplete".into(),
        }
    }

    /// What to do about it, in a sentence (also in the message, after "what to do:", where
    /// the message has one).
    pub fn remedy(&self) -> String {
        match self {
            EngineError::Refused(r) => r.remedy.clone(),
            EngineError::Step(f) => f.remedy.clone(),
            EngineError::Worker { remedy, .. } => remedy.clone(),
            EngineError::Direct(e) => e.remedy(),
            EngineError::Journal { path, .. } => format!(
                "check that {path} is on a writable, healthy disk; a damaged journal line names what to remove by hand"
            ),
            EngineError::NotReady(_) => "make what the operation needs first (the message says what), then run it again".into(),
            EngineError::CannotCleanUp { .. } => {
                "give the role these permissions (`bulwark policy plan ...` prints its policy), or run `bulwark check`".into()
            }
            EngineError::Cancelled { .. } => "nothing to do: run the session again when you want it".into(),
            EngineError::Repository { .. } => "allow the repository role the maintenance permissions (`bulwark policy maintenance` prints them); if the message names a damaged object, run `bulwark image verify` and see docs/repository-format.md".into(),
            EngineError::Browse { remedy, .. } => remedy.clone(),
            EngineError::Internal(_) => "report it with the session journal; the next start cleans up what is left".into(),
            EngineError::CleanupIncomplete { .. } => {
                "the next start (`bulwark recover`, or the appliance) removes what is left; fix the permission named if it fails again".into()
            }
        }
    }
}

/// A failed step: which, by whom, AWS's answer, and what to change.
#[derive(Debug, thiserror::Error)]
#[error("step {step} ({action} on {resource}, by {actor}) failed: {error}\n  what to do: {remedy}")]
pub struct StepFailure {
    /// 1-based step number in the plan.
    pub step: usize,
    /// The API.
    pub action: Action,
    /// What it acted on.
    pub resource: String,
    /// Who called.
    pub actor: String,
    /// AWS's answer.
    pub error: CloudError,
    /// What to change.
    pub remedy: String,
}

/// What to change when a step fails with `error`.
pub(crate) fn remedy(error: &CloudError, actor: &str) -> String {
    match error.kind {
        ErrorKind::AccessDenied => format!(
            "give {actor} the permission (`bulwark policy plan ...` prints the exact IAM policy, trust policy and \
             key-policy statements), or run `bulwark check --estate FILE` to find every missing piece"
        ),
        ErrorKind::Throttled | ErrorKind::Unavailable | ErrorKind::Propagating => {
            "AWS kept refusing after retries; run the session again later".to_owned()
        }
        ErrorKind::NotFound => "the resource is gone or not visible to this account; update the estate file".to_owned(),
        ErrorKind::NotPermitted if error.code == "OperationNotPermitted" => {
            "AWS does not allow this on this resource; `bulwark plan` explains the rule and the alternative".to_owned()
        }
        _ => "see AWS's message above; fix the estate or the resource and run the session again".to_owned(),
    }
}
