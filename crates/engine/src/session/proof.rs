//! A session proves it can clean up before it creates anything: each role that will remove
//! something simulates its own IAM policies on every removal it will make. AWS's simulator
//! evaluates identity policies (and SCPs where it can see them), not KMS key policies; where a
//! cloud has no simulator at all (moto), the proof is skipped with a warning, as a best effort.

use std::collections::BTreeSet;

use bulwark_model::{Action, RoleArn};
use bulwark_plan::{Actor, Call, Step};

use super::{Failure, Session, StepResult};
use crate::EngineError;

impl Session<'_> {
    pub(super) fn prove_cleanup(&mut self, step: &Step, role: &RoleArn) -> StepResult {
        let partition = self.engine.estate.partition();
        let actor = Actor::Role(role.clone());
        let removals = self
            .plan
            .cleanup
            .iter()
            .chain(&self.plan.rollback)
            .chain(
                self.plan
                    .steps
                    .iter()
                    .filter(|s| matches!(s.call, Call::Remove { .. })),
            )
            .filter(|s| s.actor == actor);
        let checks: BTreeSet<(Action, String)> = removals
            .flat_map(|s| {
                let on = s
                    .resource()
                    .iam_resources(partition)
                    .into_iter()
                    .map(|r| (s.action(), r));
                on.chain(s.also.iter().map(|p| (p.action, p.resource.clone())))
                    .collect::<Vec<_>>()
            })
            .collect();
        let checks: Vec<(Action, String)> = checks.into_iter().collect();
        let who = self.who(step)?;
        let iam = &self.engine.cloud.iam;
        let answer = self
            .engine
            .retry
            .run(step.action(), None, || iam.simulate(&who, role, &checks))
            .map_err(crate::retry::Gave::error);
        match answer {
            Ok(allowed) => {
                let missing: Vec<String> = checks
                    .iter()
                    .zip(allowed)
                    .filter(|(_, allowed)| !allowed)
                    .map(|((action, resource), _)| format!("{action} on {resource}"))
                    .collect();
                if missing.is_empty() {
                    Ok(())
                } else {
                    Err(Failure::Engine(EngineError::CannotCleanUp {
                        role: role.to_string(),
                        missing,
                    }))
                }
            }
            // A cloud without a simulator (moto: the AWS provider reports its error page as
            // NotImplemented): the proof is a best effort, skipped with a warning. A simulator
            // that stays unavailable fails the step, before anything is created.
            Err(e) if no_simulator(&e) => {
                tracing::warn!(
                    session = %self.id(),
                    role = %role,
                    error = %e,
                    "cannot prove that the role may clean up (the cloud has no policy simulator); going on"
                );
                Ok(())
            }
            // Refused (the role may not simulate itself, a permission the plan asks for like
            // any other), or failing: the step fails, before anything is created.
            Err(e) => Err(Failure::Cloud(e)),
        }
    }
}

/// Whether an answer says the cloud has no policy simulator, rather than refusing.
fn no_simulator(error: &bulwark_cloud::CloudError) -> bool {
    matches!(
        error.code.as_str(),
        "NotImplemented" | "InvalidAction" | "UnsupportedOperation"
    ) || error.message.contains("not been implemented")
}
