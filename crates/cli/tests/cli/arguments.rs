//! Command-line references the estate does not define, and malformed flags: exit code 2.

use super::support::*;

#[test]
fn instance_not_in_the_estate_is_an_input_error() {
    let (code, stdout, stderr) = bulwark(&with_estate(
        &["plan", "backup"],
        &["--instance", "i-00000000000000000"],
    ));
    assert_eq!(code, EXIT_INPUT, "{stdout}{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains(estate_path()), "names the file: {stderr}");
    assert!(
        stderr.contains("instance i-00000000000000000 is not defined in this file"),
        "{stderr}"
    );
    assert!(
        stderr.contains(WEB) && stderr.contains(DB),
        "lists the known instances: {stderr}"
    );

    let doc = bulwark_json(
        &with_estate(
            &["plan", "backup"],
            &["--instance", "i-00000000000000000", "--json"],
        ),
        EXIT_INPUT,
    );
    assert_eq!(doc["error"]["code"], "undefined-reference", "{doc:#}");
}

#[test]
fn target_account_not_in_the_estate_is_an_input_error() {
    for (op, extra) in [("replicate", vec![]), ("restore", vec!["--from", "snapshot"])] {
        let mut rest = vec![
            "--instance",
            DB,
            "--to-account",
            "444444444444",
            "--to-region",
            "eu-west-1",
        ];
        rest.extend(extra);
        let (code, stdout, stderr) = bulwark(&with_estate(&["plan", op], &rest));
        assert_eq!(code, EXIT_INPUT, "{op}: {stdout}{stderr}");
        assert!(stderr.contains(estate_path()), "{op}: {stderr}");
        assert!(
            stderr.contains("account 444444444444 is not defined in this file"),
            "{op}: {stderr}"
        );
        assert!(
            stderr.contains("add an [[account]] with id = \"444444444444\""),
            "{op}: {stderr}"
        );

        rest.push("--json");
        let doc = bulwark_json(&with_estate(&["plan", op], &rest), EXIT_INPUT);
        assert_eq!(doc["error"]["code"], "undefined-reference", "{op}: {doc:#}");
    }
}

#[test]
fn malformed_instance_id_is_a_usage_error() {
    let (code, stdout, stderr) = bulwark(&with_estate(&["plan", "backup"], &["--instance", "foo"]));
    assert_eq!(code, EXIT_INPUT, "{stdout}{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("'foo'"), "{stderr}");
    assert!(stderr.contains("--instance"), "{stderr}");
    assert!(stderr.contains("is not a valid instance id"), "{stderr}");
}

#[test]
fn malformed_target_account_and_region_are_usage_errors() {
    for (flag, value, kind) in [
        ("--to-account", "3333", "account id"),
        ("--to-region", "us-est-1", "region"),
    ] {
        let mut rest = vec!["--instance", DB, "--to-account", DR, "--to-region", "eu-west-1"];
        let i = rest.iter().position(|a| *a == flag).unwrap();
        rest[i + 1] = value;
        let (code, stdout, stderr) = bulwark(&with_estate(&["plan", "replicate"], &rest));
        assert_eq!(code, EXIT_INPUT, "{flag}: {stdout}{stderr}");
        assert!(
            stderr.contains(&format!("\"{value}\" is not a valid {kind}")),
            "{flag}: {stderr}"
        );
    }
}

#[test]
fn workers_with_a_restore_from_snapshots_is_an_input_error() {
    let rest = [
        "--instance",
        DB,
        "--from",
        "snapshot",
        "--to-account",
        PROD,
        "--to-region",
        "us-east-1",
        "--workers",
        "production-account",
    ];
    let (code, stdout, stderr) = bulwark(&with_estate(&["plan", "restore"], &rest));
    assert_eq!(code, EXIT_INPUT, "{stdout}{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("--workers"), "{stderr}");
    assert!(
        stderr.contains("a restore from snapshots uses no workers"),
        "{stderr}"
    );

    let mut json_args = rest.to_vec();
    json_args.push("--json");
    let doc = bulwark_json(&with_estate(&["plan", "restore"], &json_args), EXIT_INPUT);
    assert_eq!(doc["error"]["code"], "invalid-argument", "{doc:#}");

    // Without --workers the same restore is planned.
    let without_workers = [&rest[..8], &["--json"]].concat();
    let doc = bulwark_json(&with_estate(&["plan", "restore"], &without_workers), EXIT_OK);
    assert_eq!(doc["operation"]["type"], "restore", "{doc:#}");
}

#[test]
fn malformed_target_key_is_an_input_error() {
    for key in ["not-a-key", "arn:aws:kms:eu-west-1:222222222222:alias/aws/ebs"] {
        let rest = [
            "--instance",
            DB,
            "--to-account",
            DR,
            "--to-region",
            "eu-west-1",
            "--target-key",
            key,
        ];
        let (code, stdout, stderr) = bulwark(&with_estate(&["plan", "replicate"], &rest));
        assert_eq!(code, EXIT_INPUT, "{key}: {stdout}{stderr}");
        assert!(
            stderr.starts_with(&format!("error: --target-key: \"{key}\" is not a valid KMS key")),
            "{key}: {stderr}"
        );
    }
}
