//! Human-readable output of plans, refusals and policies.

use std::fmt::Write;

use bulwark_plan::{Actor, KeyGrant, Plan, Policies, Refusal, Step, CREATE_GRANT};

/// Text wrapped to this width: the width of a terminal that most people have.
const WIDTH: usize = 100;

/// A plan, as text.
pub fn plan(plan: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Plan: {}\n", plan.summary);
    let _ = writeln!(out, "Steps");
    steps(&mut out, plan, &plan.steps);
    let _ = writeln!(out, "\nKMS key permissions");
    if plan.key_grants.is_empty() {
        let _ = writeln!(out, "  none: no step uses a KMS key on anyone's behalf");
    }
    for grant in &plan.key_grants {
        key_grant(&mut out, plan, grant);
    }
    let _ = writeln!(
        out,
        "\nCleanup: runs whatever happens, also after a failure or a crash"
    );
    if plan.cleanup.is_empty() {
        let _ = writeln!(out, "  nothing to remove: the plan creates nothing temporary");
    }
    steps(&mut out, plan, &plan.cleanup);
    if !plan.rollback.is_empty() {
        let _ = writeln!(
            out,
            "\nRollback: runs first, only if the session fails, so that nothing half-made stays"
        );
        steps(&mut out, plan, &plan.rollback);
    }
    out
}

fn actor(plan: &Plan, a: &Actor) -> String {
    match a {
        Actor::Appliance => format!("appliance ({})", plan.appliance),
        Actor::Role(role) => role.to_string(),
        Actor::Worker(role) => format!("worker, as {role}"),
    }
}

fn steps(out: &mut String, plan: &Plan, steps: &[Step]) {
    for (i, step) in steps.iter().enumerate() {
        let region = step.region.as_ref().map_or("global", |r| r.as_str());
        let _ = writeln!(out, "{:>4}. {}  on the {}", i + 1, step.action(), step.resource());
        let _ = writeln!(
            out,
            "      by {} in {}/{}",
            actor(plan, &step.actor),
            step.account,
            region
        );
        wrap(out, "      why: ", &step.why);
    }
}

fn key_grant(out: &mut String, plan: &Plan, grant: &KeyGrant) {
    let _ = writeln!(out, "  {} on {}", actor(plan, &grant.role), grant.key);
    if grant.implicit() {
        wrap(
            out,
            "      ",
            "nothing to add: the AWS managed key aws/ebs lets principals of its own account use it through EBS",
        );
    } else {
        let actions: Vec<String> = grant
            .actions
            .iter()
            .map(|a| {
                if *a == CREATE_GRANT {
                    format!("{a} (for AWS resources only)")
                } else {
                    a.to_string()
                }
            })
            .collect();
        wrap(out, "      needs: ", &actions.join(", "));
    }
    wrap(out, "      why: ", &grant.why.join(" "));
}

/// A refusal, as text.
pub fn refusal(refusal: &Refusal) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "refused [{}]", refusal.code);
    wrap(&mut out, "  why: ", &refusal.message);
    wrap(&mut out, "  remedy: ", &refusal.remedy);
    out
}

/// Policies, as text: each document as pretty JSON under a heading.
pub fn policies(policies: &Policies) -> String {
    let mut out = String::new();
    for role in &policies.roles {
        let _ = writeln!(out, "# {}: {}", role.role, role.purpose);
        let _ = writeln!(out, "## permissions policy\n{}", pretty(&role.policy));
        if let Some(trust) = &role.trust {
            let _ = writeln!(out, "## trust policy\n{}", pretty(trust));
        }
        out.push('\n');
    }
    for key in &policies.keys {
        let _ = writeln!(out, "# {}: statements to add to its key policy", key.key);
        let _ = writeln!(out, "{}\n", pretty(&key.statements));
    }
    if policies.keys.is_empty() {
        let _ = writeln!(out, "# no customer managed key policy needs a change");
    }
    out
}

/// Pretty JSON; serializing a `Value` cannot fail.
pub fn pretty(value: &impl serde::Serialize) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

/// Writes `text` after `prefix`, wrapped to [`WIDTH`], continuation lines indented.
fn wrap(out: &mut String, prefix: &str, text: &str) {
    let indent = " ".repeat(prefix.len());
    let mut line = prefix.to_owned();
    let mut empty = true;
    for word in text.split_whitespace() {
        if !empty && line.len() + 1 + word.len() > WIDTH {
            let _ = writeln!(out, "{line}");
            line = indent.clone();
            empty = true;
        }
        if !empty {
            line.push(' ');
        }
        line.push_str(word);
        empty = false;
    }
    let _ = writeln!(out, "{line}");
}
