//! The JSON form of a plan (docs/plans.md, "JSON"): what `bulwark plan --json` prints, what
//! the appliance stores and shows, and what it reads back to run a plan approved earlier.
//!
//! Each step carries its typed call (`call`) and, for people and scripts, what derives from
//! it: the actor's ARN, the action, the resource and what the call creates, in words. Reading a
//! plan back uses the typed parts and checks that the words still agree with them, so a plan
//! edited by hand into something inconsistent is refused rather than run. Key grants are
//! derived from the steps, written for reading and derived again when a plan is read.

use bulwark_model::{AccountId, Action, Region, RoleArn};
use serde::{Deserialize, Serialize};

use crate::operation::Operation;
use crate::step::{actor_arn, key_grants, Actor, Call, KeyGrant, KeyNeed, Permission, Plan, Step};

/// A plan as JSON.
#[derive(Serialize, Deserialize)]
pub(crate) struct PlanJson {
    operation: Operation,
    summary: String,
    /// The ARN of the appliance's identity.
    appliance: String,
    steps: Vec<StepJson>,
    #[serde(default, skip_deserializing)]
    key_grants: Vec<KeyGrantJson>,
    cleanup: Vec<StepJson>,
    rollback: Vec<StepJson>,
}

/// Who acts, beside the actor's ARN.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum ActsAs {
    Appliance,
    Role,
    Worker,
}

#[derive(Serialize, Deserialize)]
struct StepJson {
    /// The ARN of who calls.
    actor: String,
    acts_as: ActsAs,
    account: AccountId,
    /// The region, or `global`.
    region: String,
    action: Action,
    resource: String,
    why: String,
    creates: Vec<String>,
    kept: bool,
    keys: Vec<KeyNeed>,
    #[serde(default)]
    also: Vec<Permission>,
    call: Call,
}

#[derive(Serialize)]
struct KeyGrantJson {
    role: String,
    key: String,
    actions: Vec<Action>,
    why: String,
    implicit: bool,
}

const GLOBAL: &str = "global";

impl StepJson {
    fn new(step: &Step, appliance: &str) -> StepJson {
        let acts_as = match step.actor {
            Actor::Appliance => ActsAs::Appliance,
            Actor::Role(_) => ActsAs::Role,
            Actor::Worker(_) => ActsAs::Worker,
        };
        StepJson {
            actor: actor_arn(&step.actor, appliance),
            acts_as,
            account: step.account.clone(),
            region: step.region.as_ref().map_or(GLOBAL, Region::as_str).to_owned(),
            action: step.action(),
            resource: step.resource().to_string(),
            why: step.why.clone(),
            creates: step.creates().iter().map(ToString::to_string).collect(),
            kept: step.kept,
            keys: step.keys.clone(),
            also: step.also.clone(),
            call: step.call.clone(),
        }
    }

    fn step(self) -> Result<Step, String> {
        let role = || {
            self.actor
                .parse::<RoleArn>()
                .map_err(|e| format!("step actor {}: {e}", self.actor))
        };
        let actor = match self.acts_as {
            ActsAs::Appliance => Actor::Appliance,
            ActsAs::Role => Actor::Role(role()?),
            ActsAs::Worker => Actor::Worker(role()?),
        };
        if self.action != self.call.action() {
            return Err(format!(
                "a step says {} but its call is {}: the plan was changed after it was made; plan again",
                self.action,
                self.call.action()
            ));
        }
        let region = match self.region.as_str() {
            GLOBAL => None,
            r => Some(r.parse().map_err(|e| format!("step region: {e}"))?),
        };
        Ok(Step {
            actor,
            account: self.account,
            region,
            call: self.call,
            why: self.why,
            kept: self.kept,
            keys: self.keys,
            also: self.also,
        })
    }
}

impl KeyGrantJson {
    fn new(g: &KeyGrant, appliance: &str) -> Self {
        KeyGrantJson {
            role: actor_arn(&g.role, appliance),
            key: g.key.arn(),
            actions: g.actions.clone(),
            why: g.why.join(" "),
            implicit: g.implicit(),
        }
    }
}

impl From<Plan> for PlanJson {
    fn from(plan: Plan) -> PlanJson {
        let a = plan.appliance.as_str();
        let steps = |steps: &[Step]| steps.iter().map(|s| StepJson::new(s, a)).collect();
        PlanJson {
            summary: plan.summary.clone(),
            steps: steps(&plan.steps),
            key_grants: plan.key_grants.iter().map(|g| KeyGrantJson::new(g, a)).collect(),
            cleanup: steps(&plan.cleanup),
            rollback: steps(&plan.rollback),
            appliance: plan.appliance,
            operation: plan.operation,
        }
    }
}

impl TryFrom<PlanJson> for Plan {
    type Error = String;

    fn try_from(json: PlanJson) -> Result<Plan, String> {
        let steps = |steps: Vec<StepJson>| {
            steps
                .into_iter()
                .map(StepJson::step)
                .collect::<Result<Vec<_>, _>>()
        };
        let main = steps(json.steps)?;
        let cleanup = steps(json.cleanup)?;
        let rollback = steps(json.rollback)?;
        let key_grants = key_grants(main.iter().chain(&cleanup).chain(&rollback));
        Ok(Plan {
            appliance: json.appliance,
            operation: json.operation,
            summary: json.summary,
            steps: main,
            key_grants,
            cleanup,
            rollback,
        })
    }
}
