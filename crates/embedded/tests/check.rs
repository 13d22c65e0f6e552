//! `Engine::check` on the embedded cloud: a well-configured estate passes; each broken piece
//! (a trust policy, an instance profile, a worker permission, a key-policy statement) is
//! named with its fix.

use bulwark_embedded::{all_operations, plans, DataSize, Embedded, Grants};
use bulwark_model::{AccountId, Estate};

fn setup() -> (Embedded, tempfile::TempDir, Vec<bulwark_plan::Plan>) {
    let estate = Estate::parse("estate.toml", include_str!("../../../examples/estate.toml")).expect("parses");
    let plans = plans(&estate, &all_operations(&estate));
    let grants = Grants::from_plans(&estate, &plans);
    let dir = tempfile::tempdir().expect("temp dir");
    let world =
        Embedded::create(dir.path(), &estate, &grants, DataSize { bytes_per_volume: 0 }).expect("world");
    (world, dir, plans)
}

fn check(world: &Embedded, plans: &[bulwark_plan::Plan]) -> bulwark_engine::check::CheckReport {
    let reader = |a: &AccountId| world.sim.root_credentials(a).ok();
    world.engine().check(plans, &reader)
}

fn account(s: &str) -> AccountId {
    s.parse().expect("account")
}

#[test]
fn a_well_configured_estate_passes() {
    let (world, _dir, plans) = setup();
    let report = check(&world, &plans);
    assert!(report.findings.is_empty(), "{:#?}", report.findings);
    assert!(
        report
            .passed
            .iter()
            .any(|p| p.contains("Worker is trusted by ec2.amazonaws.com")),
        "{:#?}",
        report.passed
    );
    assert!(report
        .passed
        .iter()
        .any(|p| p.contains("is in the instance profile Worker")));
    assert!(report
        .passed
        .iter()
        .any(|p| p.contains("the key policy of arn:aws:kms:us-east-1:222222222222")));
}

#[test]
fn each_broken_piece_is_named_with_its_fix() {
    let (world, _dir, plans) = setup();
    let sim = &world.sim;
    // 1. The DR account's backup role trusts the appliance only with another external id.
    let dr = account("333333333333");
    let trust = serde_json::json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": "sts:AssumeRole",
        "Principal": {"AWS": "arn:aws:iam::111111111111:root"},
        "Condition": {"StringEquals": {"sts:ExternalId": "wrong"}}
    }]});
    let policies = sim.role_policies(&dr, "Backup");
    let policies: Vec<(&str, String)> = policies.iter().map(|(n, d)| (n.as_str(), d.clone())).collect();
    sim.put_role(&dr, "/", "Backup", &trust.to_string(), &policies)
        .expect("put role");
    // 2. The production worker role's profile now holds another role.
    let prod = account("222222222222");
    sim.put_instance_profile(&prod, "Worker", "Backup")
        .expect("profile");
    // 3. The production worker role lost its SQS permissions and EC2's trust.
    let appliance_only = serde_json::json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": "sts:AssumeRole",
        "Principal": {"AWS": "arn:aws:iam::111111111111:root"}
    }]});
    let mut worker = bulwark_plan::worker_role_permissions();
    let actions = worker.statements[0].action.as_mut().expect("actions");
    actions.retain(|a| !a.starts_with("sqs:"));
    sim.put_role(
        &prod,
        "/",
        "Worker",
        &appliance_only.to_string(),
        &[("bulwark", worker.to_string())],
    )
    .expect("put role");
    // 4. The production CMK's policy keeps only the account's own statement.
    let key = "arn:aws:kms:us-east-1:222222222222:key/22222222-aaaa-4bbb-8ccc-000000000001";
    let root_only = serde_json::json!({"Version": "2012-10-17", "Statement": [{
        "Sid": "Enable IAM User Permissions", "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::222222222222:root"}, "Action": "kms:*", "Resource": "*"
    }]});
    sim.update_key(key, Some(&root_only.to_string()), None)
        .expect("key policy");

    let report = check(&world, &plans);
    let find = |subject: &str, problem: &str| {
        report
            .findings
            .iter()
            .find(|f| f.subject.contains(subject) && f.problem.contains(problem))
            .unwrap_or_else(|| panic!("no finding on {subject} about {problem}: {:#?}", report.findings))
    };
    let f = find("arn:aws:iam::333333333333:role/Backup", "cannot assume");
    assert!(
        f.fix.contains("bulwark-dr-7f3a"),
        "the fix names the right external id: {}",
        f.fix
    );
    let f = find(
        "arn:aws:iam::222222222222:role/Worker",
        "no instance profile named Worker",
    );
    assert!(f.fix.contains("add-role-to-instance-profile"), "{}", f.fix);
    let f = find(
        "arn:aws:iam::222222222222:role/Worker",
        "does not let ec2.amazonaws.com",
    );
    assert!(f.fix.contains("worker-role --trust"), "{}", f.fix);
    find("arn:aws:iam::222222222222:role/Worker", "sqs:ReceiveMessage");
    let f = find(
        &format!("key {key} for arn:aws:iam::111111111111:role/WorkerDeployment"),
        "does not allow",
    );
    assert!(f.problem.contains("kms:CreateGrant"), "{}", f.problem);
    assert!(
        f.fix.contains("BulwarkGrant111111111111WorkerDeployment"),
        "the fix is the statement to add: {}",
        f.fix
    );
}
