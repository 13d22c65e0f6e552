//! The worker role documents and the policies derived from plans.

use super::support::*;

const WORKER_ACTIONS: [&str; 33] = [
    "ec2messages:AcknowledgeMessage",
    "ec2messages:DeleteMessage",
    "ec2messages:FailMessage",
    "ec2messages:GetEndpoint",
    "ec2messages:GetMessages",
    "ec2messages:SendReply",
    "iam:GetContextKeysForPrincipalPolicy",
    "iam:GetRole",
    "iam:ListInstanceProfilesForRole",
    "iam:SimulatePrincipalPolicy",
    "sqs:DeleteMessage",
    "sqs:ListQueues",
    "sqs:ReceiveMessage",
    "sqs:SendMessage",
    "ssm:DescribeAssociation",
    "ssm:DescribeDocument",
    "ssm:GetDeployablePatchSnapshotForInstance",
    "ssm:GetDocument",
    "ssm:GetManifest",
    "ssm:GetParameter",
    "ssm:GetParameters",
    "ssm:ListAssociations",
    "ssm:ListInstanceAssociations",
    "ssm:PutComplianceItems",
    "ssm:PutConfigurePackageResult",
    "ssm:PutInventory",
    "ssm:UpdateAssociationStatus",
    "ssm:UpdateInstanceAssociationStatus",
    "ssm:UpdateInstanceInformation",
    "ssmmessages:CreateControlChannel",
    "ssmmessages:CreateDataChannel",
    "ssmmessages:OpenControlChannel",
    "ssmmessages:OpenDataChannel",
];

fn worker_role_permissions() -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{ "Effect": "Allow", "Action": WORKER_ACTIONS.as_slice(), "Resource": "*" }]
    })
}

fn worker_role_trust() -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Action": "sts:AssumeRole",
            "Principal": { "Service": "ec2.amazonaws.com" }
        }]
    })
}

#[test]
fn policy_worker_role_prints_exactly_the_worker_permissions() {
    let (code, stdout, stderr) = bulwark(&["policy", "worker-role"]);
    assert_eq!(code, EXIT_OK, "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
    let doc: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(doc, worker_role_permissions(), "{doc:#}");
    // Compare the order too (Value equality already does for arrays; say it explicitly).
    let actions: Vec<&str> = doc["Statement"][0]["Action"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(actions, WORKER_ACTIONS);
    assert_policy_document(&doc, false, "policy worker-role");
}

#[test]
fn policy_worker_role_trust_prints_exactly_the_ec2_trust_policy() {
    let (code, stdout, stderr) = bulwark(&["policy", "worker-role", "--trust"]);
    assert_eq!(code, EXIT_OK, "{stderr}");
    let doc: Value = serde_json::from_str(&stdout).unwrap();
    let expected: Value = serde_json::from_str(
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"sts:AssumeRole","Principal":{"Service":"ec2.amazonaws.com"}}]}"#,
    )
    .unwrap();
    assert_eq!(doc, expected, "{doc:#}");
    assert_eq!(doc, worker_role_trust());
    assert_policy_document(&doc, true, "policy worker-role --trust");
}

#[test]
fn worker_roles_in_plans_have_the_documented_worker_permissions() {
    // Temporary worker role (backup account) and pre-configured worker role (production).
    for (workers, role) in [
        (
            "backup-account",
            "arn:aws:iam::111111111111:role/bulwark/worker-SESSION-i-0fedcba9876543210",
        ),
        ("production-account", "arn:aws:iam::222222222222:role/Worker"),
    ] {
        let args = with_estate(
            &["policy", "plan", "backup"],
            &["--instance", DB, "--workers", workers, "--json"],
        );
        let policies = bulwark_json(&args, EXIT_OK);
        let entry = role_entry(&policies, role);
        assert_eq!(entry["policy"], worker_role_permissions(), "{workers}: {entry:#}");
        let trust = entry["trust"]["Statement"].as_array().unwrap();
        assert!(
            trust.contains(&worker_role_trust()["Statement"][0]),
            "{workers}: the worker role is trusted by EC2: {entry:#}"
        );
    }
}

#[test]
fn policy_plan_backup_prints_valid_iam_and_key_policies() {
    let args = with_estate(&["policy", "plan", "backup"], &["--instance", DB, "--json"]);
    let policies = bulwark_json(&args, EXIT_OK);
    assert_policies_shape(&policies, "policy plan backup db");
    assert!(
        !policies["keys"].as_array().unwrap().is_empty(),
        "db's CMK needs statements"
    );

    // The backup role's trust policy names the appliance, with no external id (none set).
    let backup = role_entry(&policies, "arn:aws:iam::222222222222:role/Backup");
    assert_eq!(
        backup["trust"],
        json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Action": "sts:AssumeRole",
                "Principal": { "AWS": APPLIANCE_PRINCIPAL }
            }]
        }),
        "{backup:#}"
    );

    // The CreateGrant statements carry the AWS-resource condition.
    let create_grants = policies["keys"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|k| k["statements"].as_array().unwrap())
        .filter(|st| st["Action"] == "kms:CreateGrant")
        .count();
    assert!(create_grants > 0, "{policies:#}");
}

#[test]
fn policy_plan_key_statements_match_the_plan_key_grants() {
    for scenario in demo_scenarios() {
        let plan_cmd = plan_args(&["plan"], &scenario);
        let (code, stdout, _) = bulwark(&plan_cmd);
        if code == EXIT_REFUSED {
            // Refused plans are refused by `policy plan` too, with the same code.
            let refusal: Value = serde_json::from_str(&stdout).unwrap();
            let policy = bulwark_json(&plan_args(&["policy", "plan"], &scenario), EXIT_REFUSED);
            assert_eq!(policy["error"]["code"], refusal["error"]["code"], "{scenario:?}");
            continue;
        }
        assert_eq!(code, EXIT_OK, "{scenario:?}: {stdout}");
        let plan: Value = serde_json::from_str(&stdout).unwrap();
        let policies = bulwark_json(&plan_args(&["policy", "plan"], &scenario), EXIT_OK);
        let what = format!("policy plan {scenario:?}");
        assert_policies_shape(&policies, &what);
        // Exactly the key permissions the plan needs are put in key policies.
        assert_eq!(key_policy_grants(&policies), explicit_grants(&plan), "{what}");
        // Every role that acts in the plan has a policy.
        let roles: BTreeSet<&str> = policies["roles"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["role"].as_str().unwrap())
            .collect();
        for step in plan["steps"]
            .as_array()
            .unwrap()
            .iter()
            .chain(plan["cleanup"].as_array().unwrap())
        {
            let actor = step["actor"].as_str().unwrap();
            assert!(roles.contains(actor), "{what}: no policy for {actor}");
        }
    }
}

#[test]
fn policy_plan_never_edits_the_aws_managed_key() {
    // web has a volume under aws/ebs; these plans use it.
    for args in [
        vec!["backup", "--instance", WEB, "--workers", "production-account"],
        vec![
            "restore",
            "--instance",
            WEB,
            "--from",
            "snapshot",
            "--to-account",
            PROD,
            "--to-region",
            "us-east-1",
        ],
    ] {
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        let plan = bulwark_json(&plan_args(&["plan"], &args), EXIT_OK);
        assert!(
            plan["key_grants"]
                .as_array()
                .unwrap()
                .iter()
                .any(|g| g["key"].as_str().unwrap().ends_with(":alias/aws/ebs")),
            "{args:?}: the plan uses aws/ebs"
        );
        let policies = bulwark_json(&plan_args(&["policy", "plan"], &args), EXIT_OK);
        assert_policies_shape(&policies, &format!("{args:?}"));
        for key in policies["keys"].as_array().unwrap() {
            let arn = key["key"].as_str().unwrap();
            assert!(!arn.contains("alias/aws/ebs"), "{args:?}: {arn}");
        }
    }
}

#[test]
fn roles_of_an_account_with_an_external_id_require_it_in_their_trust_policy() {
    let args = with_estate(
        &["policy", "plan", "replicate"],
        &[
            "--instance",
            DB,
            "--to-account",
            DR,
            "--to-region",
            "eu-west-1",
            "--json",
        ],
    );
    let policies = bulwark_json(&args, EXIT_OK);
    assert_policies_shape(&policies, "policy plan replicate to DR");
    let dr_backup = role_entry(&policies, "arn:aws:iam::333333333333:role/Backup");
    assert_eq!(
        dr_backup["trust"],
        json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Action": "sts:AssumeRole",
                "Principal": { "AWS": APPLIANCE_PRINCIPAL },
                "Condition": { "StringEquals": { "sts:ExternalId": DR_EXTERNAL_ID } }
            }]
        }),
        "{dr_backup:#}"
    );
    // The production account sets no external id: its role's trust has no condition.
    let prod_backup = role_entry(&policies, "arn:aws:iam::222222222222:role/Backup");
    assert!(
        prod_backup["trust"]["Statement"][0].get("Condition").is_none(),
        "{prod_backup:#}"
    );

    // Same for the DR account's restore role.
    let args = with_estate(
        &["policy", "plan", "restore"],
        &[
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
    );
    let policies = bulwark_json(&args, EXIT_OK);
    let dr_restore = role_entry(&policies, "arn:aws:iam::333333333333:role/Restore");
    assert_eq!(
        dr_restore["trust"]["Statement"][0]["Condition"],
        json!({ "StringEquals": { "sts:ExternalId": DR_EXTERNAL_ID } }),
        "{dr_restore:#}"
    );
}

#[test]
fn policy_plan_text_output_shows_each_role_and_key() {
    let (code, stdout, stderr) = bulwark(&with_estate(&["policy", "plan", "backup"], &["--instance", DB]));
    assert_eq!(code, EXIT_OK, "{stderr}");
    assert!(
        stdout.contains("# arn:aws:iam::222222222222:role/Backup: "),
        "{stdout}"
    );
    assert!(stdout.contains("## permissions policy\n"), "{stdout}");
    assert!(stdout.contains("## trust policy\n"), "{stdout}");
    assert!(
        stdout.contains("# arn:aws:kms:us-east-1:222222222222:key/22222222-aaaa-4bbb-8ccc-000000000001: statements to add to its key policy"),
        "{stdout}"
    );

    // A plan that needs no key permission says so.
    let (code, stdout, _) = bulwark(&with_estate(
        &["policy", "plan", "snapshot"],
        &["--instance", WEB],
    ));
    assert_eq!(code, EXIT_OK);
    assert!(
        stdout.contains("# no customer managed key policy needs a change"),
        "{stdout}"
    );
}

/// Regression: the pre-configured worker role's trust let the appliance in without the
/// account's external id.
#[test]
fn worker_role_trust_requires_the_accounts_external_id() {
    let (code, out, err) = bulwark(&[
        "policy",
        "plan",
        "restore",
        "--estate",
        estate_path(),
        "--instance",
        "i-0123456789abcdef0",
        "--from",
        "backup",
        "--to-account",
        "333333333333",
        "--to-region",
        "eu-west-1",
        "--workers",
        "production-account",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    let worker = doc["roles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["role"] == "arn:aws:iam::333333333333:role/Worker")
        .unwrap();
    let statements = worker["trust"]["Statement"].as_array().unwrap();
    let appliance = statements
        .iter()
        .find(|s| s["Principal"]["AWS"].is_string())
        .unwrap();
    assert_eq!(
        appliance["Condition"]["StringEquals"]["sts:ExternalId"],
        DR_EXTERNAL_ID
    );
}

#[test]
fn discovery_permissions_are_read_only_and_on_any_resource() {
    let doc = bulwark_json(&["policy", "discovery"], EXIT_OK);
    let statement = &doc["Statement"][0];
    assert_eq!(statement["Effect"], "Allow");
    assert_eq!(statement["Resource"], json!("*"));
    let actions: Vec<&str> = statement["Action"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "ec2:DescribeInstances",
            "ec2:DescribeVolumes",
            "ec2:GetEbsDefaultKmsKeyId",
            "ec2:GetEbsEncryptionByDefault",
            "kms:DescribeKey"
        ]
    );
}

#[test]
fn maintenance_permissions_are_on_the_repository_only() {
    let doc = bulwark_json(&with_estate(&["policy", "maintenance"], &[]), EXIT_OK);
    assert_eq!(doc["role"], "arn:aws:iam::111111111111:role/BulwarkRepository");
    let statements = doc["policy"]["Statement"].as_array().unwrap();
    assert_eq!(statements.len(), 2, "{doc}");
    assert_eq!(statements[0]["Action"], json!("s3:ListBucket"));
    assert_eq!(
        statements[0]["Resource"],
        json!("arn:aws:s3:::bulwark-backups-111111111111")
    );
    assert_eq!(
        statements[1]["Action"],
        json!(["s3:GetObject", "s3:PutObject", "s3:DeleteObject"])
    );
    assert_eq!(
        statements[1]["Resource"],
        json!("arn:aws:s3:::bulwark-backups-111111111111/ec2/*")
    );
}

#[test]
fn a_cloudformation_template_makes_an_accounts_roles_for_any_account() {
    let doc = bulwark_json(
        &with_estate(&["policy", "cloudformation"], &["--account", PROD]),
        EXIT_OK,
    );
    assert_eq!(doc["AWSTemplateFormatVersion"], "2010-09-09");
    let resources = doc["Resources"].as_object().unwrap();
    for (name, kind) in [
        ("BackupRole", "AWS::IAM::Role"),
        ("RestoreRole", "AWS::IAM::Role"),
        ("WorkerRole", "AWS::IAM::Role"),
        ("WorkerInstanceProfile", "AWS::IAM::InstanceProfile"),
    ] {
        assert_eq!(resources[name]["Type"], kind, "{name}");
    }
    // No account id is written out: a StackSet fills in each account's own.
    assert_eq!(doc["Parameters"]["ApplianceAccountId"]["Default"], "111111111111");
    let text = doc["Resources"].to_string();
    assert!(!text.contains(PROD), "the account id is in the template");
    assert!(
        !text.contains("111111111111"),
        "the appliance account is not a parameter"
    );
    assert!(text.contains("${AWS::AccountId}") && text.contains("${ApplianceAccountId}"));
    // The backup role's policy: its plans' actions and discovery.
    let backup = resources["BackupRole"]["Properties"]["Policies"][0]["PolicyDocument"].to_string();
    for action in [
        "ec2:CreateSnapshots",
        "ec2:DescribeInstances",
        "ec2:GetEbsDefaultKmsKeyId",
    ] {
        assert!(backup.contains(action), "{action} missing: {backup}");
    }
    // The appliance may assume it; EC2 assumes the worker role.
    let trust = resources["BackupRole"]["Properties"]["AssumeRolePolicyDocument"].to_string();
    assert!(trust.contains("ApplianceAccountId"), "{trust}");
    let worker = resources["WorkerRole"]["Properties"]["AssumeRolePolicyDocument"].to_string();
    assert!(worker.contains("ec2.amazonaws.com"), "{worker}");
    // An account the estate does not have is refused.
    let (code, _, err) = bulwark(&with_estate(
        &["policy", "cloudformation"],
        &["--account", "999999999999"],
    ));
    assert_eq!(code, EXIT_REFUSED, "{err}");
}
