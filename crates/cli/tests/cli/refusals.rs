//! Refusals: exit code 3, with a stable code, the reason and the remedy.

use super::support::*;

#[test]
fn backup_of_aws_ebs_volume_with_backup_account_workers_is_refused_as_json() {
    let args = with_estate(
        &["plan", "backup"],
        &["--instance", WEB, "--workers", "backup-account", "--json"],
    );
    let (code, stdout, stderr) = bulwark(&args);
    assert_eq!(code, EXIT_REFUSED, "{stdout}{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
    let doc: Value = serde_json::from_str(&stdout).unwrap();
    let obj = doc.as_object().unwrap();
    assert_eq!(obj.keys().collect::<Vec<_>>(), ["error"], "{doc:#}");
    let error = doc["error"].as_object().unwrap();
    assert_eq!(
        error.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        BTreeSet::from(["code", "message", "remedy"])
    );
    assert_eq!(doc["error"]["code"], "aws-managed-key-not-shareable");
    let message = doc["error"]["message"].as_str().unwrap();
    assert!(message.contains("vol-0bbbbbbbbbbbbbbbb"), "{message}");
    assert!(message.contains("aws/ebs"), "{message}");
    let remedy = doc["error"]["remedy"].as_str().unwrap();
    assert!(remedy.contains("production-account"), "{remedy}");
}

#[test]
fn backup_of_aws_ebs_volume_with_backup_account_workers_is_refused_as_text() {
    let args = with_estate(
        &["plan", "backup"],
        &["--instance", WEB, "--workers", "backup-account"],
    );
    let (code, stdout, stderr) = bulwark(&args);
    assert_eq!(code, EXIT_REFUSED, "{stdout}{stderr}");
    assert!(stdout.is_empty(), "a refusal prints no plan: {stdout}");
    assert!(
        stderr.starts_with("refused [aws-managed-key-not-shareable]\n"),
        "{stderr}"
    );
    assert!(stderr.contains("  why: "), "{stderr}");
    assert!(stderr.contains("  remedy: "), "{stderr}");
    assert!(stderr.contains("production-account"), "{stderr}");
}

#[test]
fn backup_of_aws_ebs_volume_defaults_to_backup_account_workers_and_is_refused() {
    let (code, stdout, _) = bulwark(&with_estate(&["plan", "backup"], &["--instance", WEB, "--json"]));
    assert_eq!(code, EXIT_REFUSED, "{stdout}");
    assert!(stdout.contains("\"aws-managed-key-not-shareable\""), "{stdout}");
}

#[test]
fn backup_of_aws_ebs_volume_with_production_account_workers_is_planned() {
    let args = with_estate(
        &["plan", "backup"],
        &["--instance", WEB, "--workers", "production-account", "--json"],
    );
    let plan = bulwark_json(&args, EXIT_OK);
    // The snapshots are never shared: no step gives another account access to them.
    let steps = plan["steps"].as_array().unwrap();
    assert!(
        steps.iter().all(|s| s["action"] != "ec2:ModifySnapshotAttribute"),
        "{plan:#}"
    );
    // The worker runs with the production account's worker role.
    assert!(
        steps
            .iter()
            .any(|s| s["actor"] == "arn:aws:iam::222222222222:role/Worker"),
        "{plan:#}"
    );
}

#[test]
fn target_key_of_another_region_is_refused() {
    let us_key = "arn:aws:kms:us-east-1:333333333333:key/33333333-aaaa-4bbb-8ccc-000000000002";
    let rest = [
        "--instance",
        DB,
        "--to-account",
        DR,
        "--to-region",
        "eu-west-1",
        "--target-key",
        us_key,
        "--json",
    ];
    let doc = bulwark_json(&with_estate(&["plan", "replicate"], &rest), EXIT_REFUSED);
    assert_eq!(doc["error"]["code"], "key-not-in-target-region", "{doc:#}");
    let message = doc["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(us_key) && message.contains("eu-west-1"),
        "{message}"
    );

    let (code, stdout, stderr) = bulwark(&with_estate(&["plan", "replicate"], &rest[..8]));
    assert_eq!(code, EXIT_REFUSED, "{stdout}{stderr}");
    assert!(
        stderr.starts_with("refused [key-not-in-target-region]"),
        "{stderr}"
    );

    // The key of the target region is accepted.
    let mut ok = rest.to_vec();
    ok[7] = DR_EU_KEY;
    let plan = bulwark_json(&with_estate(&["plan", "replicate"], &ok), EXIT_OK);
    assert_eq!(plan["operation"]["type"], "replicate", "{plan:#}");
}

#[test]
fn missing_roles_and_repository_are_refused_with_a_remedy() {
    let no_worker_role = TempEstate::broken(
        "no_worker_role",
        "worker_role = \"arn:aws:iam::222222222222:role/Worker\"\n",
        "",
    );
    let doc = bulwark_json(
        &[
            "plan",
            "backup",
            "--estate",
            no_worker_role.path(),
            "--instance",
            WEB,
            "--workers",
            "production-account",
            "--json",
        ],
        EXIT_REFUSED,
    );
    assert_eq!(doc["error"]["code"], "worker-role-not-configured", "{doc:#}");
    assert!(doc["error"]["remedy"]
        .as_str()
        .unwrap()
        .contains("bulwark policy worker-role"));

    let no_restore_role = TempEstate::broken(
        "no_restore_role",
        "restore_role = \"arn:aws:iam::333333333333:role/Restore\"\n",
        "",
    );
    let doc = bulwark_json(
        &[
            "plan",
            "restore",
            "--estate",
            no_restore_role.path(),
            "--instance",
            DB,
            "--from",
            "snapshot",
            "--to-account",
            DR,
            "--to-region",
            "us-east-1",
            "--json",
        ],
        EXIT_REFUSED,
    );
    assert_eq!(doc["error"]["code"], "role-not-configured", "{doc:#}");
    assert!(doc["error"]["remedy"].as_str().unwrap().contains("restore_role"));

    let original = std::fs::read_to_string(estate_path()).unwrap();
    let (start, end) = (
        original.find("[repository]").unwrap(),
        original.find("[[account]]").unwrap(),
    );
    let no_repository = TempEstate::write(
        "no_repository",
        &format!("{}{}", &original[..start], &original[end..]),
        0,
    );
    let doc = bulwark_json(
        &[
            "plan",
            "backup",
            "--estate",
            no_repository.path(),
            "--instance",
            DB,
            "--json",
        ],
        EXIT_REFUSED,
    );
    assert_eq!(doc["error"]["code"], "repository-not-configured", "{doc:#}");
    // Snapshots need no repository.
    bulwark_json(
        &[
            "plan",
            "snapshot",
            "--estate",
            no_repository.path(),
            "--instance",
            DB,
            "--json",
        ],
        EXIT_OK,
    );
}
