//! The JSON and text forms of plans.

use super::support::*;

#[test]
fn plan_backup_json_has_steps_key_grants_and_cleanup() {
    let plan = bulwark_json(
        &with_estate(&["plan", "backup"], &["--instance", DB, "--json"]),
        EXIT_OK,
    );
    assert_eq!(plan["operation"]["type"], "backup");
    assert!(
        plan["summary"].as_str().unwrap().contains(DB),
        "{}",
        plan["summary"]
    );
    let keys = assert_plan_shape(&plan, "backup db");
    assert!(
        !plan["key_grants"].as_array().unwrap().is_empty(),
        "db's volumes are under a CMK"
    );
    assert!(
        !plan["cleanup"].as_array().unwrap().is_empty(),
        "a backup cleans up"
    );
    // All of db's volumes are under a CMK of 222222222222: no AWS managed key anywhere.
    assert!(keys.iter().all(|k| !k.contains("aws/ebs")), "{keys:?}");
    assert!(
        keys.contains("arn:aws:kms:us-east-1:222222222222:key/22222222-aaaa-4bbb-8ccc-000000000001"),
        "{keys:?}"
    );
    // The first step: the appliance assumes the production account's backup role.
    let first = &plan["steps"][0];
    assert_eq!(first["actor"], APPLIANCE_PRINCIPAL);
    assert_eq!(first["action"], "sts:AssumeRole");
    assert!(first["resource"]
        .as_str()
        .unwrap()
        .contains("arn:aws:iam::222222222222:role/Backup"));
    // Every step's account is one of the estate's.
    let accounts: BTreeSet<&str> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["account"].as_str().unwrap())
        .collect();
    assert_eq!(accounts, BTreeSet::from(["111111111111", PROD]));
}

#[test]
fn plan_writes_the_aws_managed_key_as_its_alias_arn() {
    // web has a volume under aws/ebs; with workers in its own account the backup is allowed.
    let args = with_estate(
        &["plan", "backup"],
        &["--instance", WEB, "--workers", "production-account", "--json"],
    );
    let plan = bulwark_json(&args, EXIT_OK);
    let keys = assert_plan_shape(&plan, "backup web in production");
    let aws_ebs = "arn:aws:kms:us-east-1:222222222222:alias/aws/ebs";
    assert!(keys.contains(aws_ebs), "{keys:?}");
    assert!(
        keys.iter()
            .filter(|k| k.contains("aws/ebs"))
            .all(|k| k == aws_ebs),
        "{keys:?}"
    );
    let grant = plan["key_grants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["key"] == aws_ebs)
        .expect("a grant on aws/ebs");
    assert_eq!(
        grant["implicit"], true,
        "aws/ebs needs no key policy change: {grant:#}"
    );
}

#[test]
fn every_demo_scenario_plan_has_the_documented_shape() {
    for scenario in demo_scenarios() {
        let args = plan_args(&["plan"], &scenario);
        let (code, stdout, stderr) = bulwark(&args);
        let doc: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{args:?}: {e}\n{stdout}"));
        assert!(
            stderr.is_empty(),
            "{args:?}: --json writes nothing to stderr: {stderr}"
        );
        match code {
            EXIT_OK => {
                assert_plan_shape(&doc, &format!("{scenario:?}"));
            }
            EXIT_REFUSED => {
                let e = &doc["error"];
                for field in ["code", "message", "remedy"] {
                    assert!(!str_field(e, field, &format!("{scenario:?}")).is_empty());
                }
            }
            other => panic!("{args:?}: exit {other}\n{stdout}{stderr}"),
        }
    }
}

#[test]
fn plan_text_output_lists_steps_keys_and_cleanup() {
    let (code, stdout, stderr) = bulwark(&with_estate(&["plan", "backup"], &["--instance", DB]));
    assert_eq!(code, EXIT_OK, "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
    assert!(
        stdout.starts_with(&format!("Plan: image-level backup of {DB}")),
        "{stdout}"
    );
    for heading in ["\nSteps\n", "\nKMS key permissions\n", "\nCleanup: "] {
        assert!(stdout.contains(heading), "missing {heading:?}:\n{stdout}");
    }
    assert!(
        stdout.contains("   1. sts:AssumeRole  on the role arn:aws:iam::222222222222:role/Backup"),
        "{stdout}"
    );
    assert!(
        stdout.contains("kms:CreateGrant (for AWS resources only)"),
        "{stdout}"
    );
}

#[test]
fn plan_restore_of_one_volume_launches_nothing_and_checks_its_zone() {
    let args = with_estate(
        &["plan", "restore"],
        &[
            "--instance",
            WEB,
            "--from",
            "snapshot",
            "--to-account",
            DR,
            "--to-region",
            "eu-west-1",
            "--volume",
            "vol-0aaaaaaaaaaaaaaaa",
            "--zone",
            "eu-west-1c",
            "--json",
        ],
    );
    let plan = bulwark_json(&args, EXIT_OK);
    assert_eq!(plan["operation"]["type"], "restore-volumes");
    assert_eq!(plan["operation"]["zone"], "eu-west-1c");
    let actions: Vec<&str> = array(&plan, "steps", "plan")
        .iter()
        .filter_map(|s| s["action"].as_str())
        .collect();
    assert!(actions.contains(&"ec2:CreateVolume"), "{actions:?}");
    assert!(
        !actions.contains(&"ec2:RunInstances"),
        "a volume restore launches no instance: {actions:?}"
    );
    // Attached to an instance of the target: its AttachVolume at the device asked for.
    let args = with_estate(
        &["plan", "restore"],
        &[
            "--instance",
            WEB,
            "--from",
            "snapshot",
            "--to-account",
            PROD,
            "--to-region",
            "us-east-1",
            "--volume",
            "vol-0aaaaaaaaaaaaaaaa",
            "--attach-to",
            DB,
            "--device",
            "/dev/sdk",
            "--json",
        ],
    );
    let plan = bulwark_json(&args, EXIT_OK);
    let attach = array(&plan, "steps", "plan")
        .iter()
        .find(|s| s["action"] == "ec2:AttachVolume")
        .unwrap_or_else(|| panic!("no AttachVolume: {plan}"));
    assert!(
        attach["why"]
            .as_str()
            .unwrap()
            .contains(&format!("to {DB} as /dev/sdk")),
        "{attach}"
    );
    // A zone of another region is refused; a zone without --volume is wrong input.
    let args = with_estate(
        &["plan", "restore"],
        &[
            "--instance",
            WEB,
            "--from",
            "snapshot",
            "--to-account",
            DR,
            "--to-region",
            "eu-west-1",
            "--volume",
            "vol-0aaaaaaaaaaaaaaaa",
            "--zone",
            "us-east-1a",
            "--json",
        ],
    );
    let refusal = bulwark_json(&args, EXIT_REFUSED);
    assert_eq!(refusal["error"]["code"], "zone-not-in-target-region", "{refusal}");
    let (code, _, stderr) = bulwark(&with_estate(
        &["plan", "restore"],
        &[
            "--instance",
            WEB,
            "--from",
            "snapshot",
            "--to-account",
            DR,
            "--to-region",
            "eu-west-1",
            "--zone",
            "eu-west-1a",
        ],
    ));
    assert_eq!(code, EXIT_INPUT, "{stderr}");
}

#[test]
fn plan_restore_of_an_instance_launches_it_from_an_image_in_the_network_asked_for() {
    fn restore<'a>(extra: &[&'a str]) -> Vec<&'a str> {
        let mut flags = vec![
            "--instance",
            DB,
            "--from",
            "snapshot",
            "--to-account",
            DR,
            "--to-region",
            "eu-west-1",
            "--json",
        ];
        flags.extend_from_slice(extra);
        with_estate(&["plan", "restore"], &flags)
    }
    let plan = bulwark_json(
        &restore(&[
            "--subnet",
            "subnet-0123456789abcdef0",
            "--security-group",
            "sg-0123456789abcdef0",
            "--stopped",
        ]),
        EXIT_OK,
    );
    assert_eq!(plan["operation"]["launch"]["subnet"], "subnet-0123456789abcdef0");
    let steps = array(&plan, "steps", "plan");
    let actions: Vec<&str> = steps.iter().filter_map(|s| s["action"].as_str()).collect();
    for action in [
        "ec2:CreateSnapshot",
        "ec2:RegisterImage",
        "ec2:RunInstances",
        "ec2:DeregisterImage",
        "ec2:ModifyInstanceAttribute",
        "ec2:StopInstances",
    ] {
        assert!(actions.contains(&action), "{action}: {actions:?}");
    }
    let run = steps
        .iter()
        .find(|s| s["action"] == "ec2:RunInstances")
        .unwrap_or_else(|| panic!("no RunInstances: {plan}"));
    assert!(
        run["why"]
            .as_str()
            .unwrap()
            .contains("in subnet subnet-0123456789abcdef0 with sg-0123456789abcdef0"),
        "{run}"
    );
    // Without a subnet, into another account: the target's default VPC, and the plan says so.
    let plan = bulwark_json(&restore(&[]), EXIT_OK);
    let run = array(&plan, "steps", "plan")
        .iter()
        .find(|s| s["action"] == "ec2:RunInstances")
        .cloned()
        .unwrap_or_default();
    assert!(run["why"].as_str().unwrap_or("").contains("default VPC"), "{run}");
    // A subnet EC2 would refuse is refused; groups without a subnet, or --stopped with
    // --volume, are wrong input.
    let refusal = bulwark_json(&restore(&["--subnet", "subnet-x"]), EXIT_REFUSED);
    assert_eq!(refusal["error"]["code"], "bad-network", "{refusal}");
    for wrong in [
        &["--security-group", "sg-0123456789abcdef0"][..],
        &["--stopped", "--volume", "vol-0dddddddddddddddd"],
    ] {
        let (code, _, stderr) = bulwark(&restore(wrong));
        assert_eq!(code, EXIT_INPUT, "{wrong:?}: {stderr}");
    }
}
