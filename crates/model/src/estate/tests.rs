use super::*;

const GOOD: &str = r#"
[appliance]
account = "111111111111"
worker_deployment_role = "arn:aws:iam::111111111111:role/WorkerDeployment"

[[account]]
id = "222222222222"
backup_role = "arn:aws:iam::222222222222:role/Backup"
restore_role = "arn:aws:iam::222222222222:role/Restore"
worker_role = "arn:aws:iam::222222222222:role/Worker"

[default_keys]
"222222222222/eu-west-1" = "arn:aws:kms:eu-west-1:222222222222:key/0c1d2e3f-1111-2222-3333-444455556666"

[[instance]]
id = "i-0123456789abcdef0"
account = "222222222222"
region = "us-east-1"
volumes = [
  { id = "vol-0aaaaaaaaaaaaaaaa", size_gib = 8, key = "arn:aws:kms:us-east-1:222222222222:key/1b2c3d4e-1111-2222-3333-444455556666" },
  { id = "vol-0bbbbbbbbbbbbbbbb", size_gib = 100, key = "aws/ebs" },
  { id = "vol-0cccccccccccccccc", size_gib = 20 },
]
"#;

#[test]
fn worker_settings_parse_and_every_malformed_one_is_reported() {
    let good = format!(
        "{GOOD}\n[workers.\"222222222222/us-east-1\"]\nsubnet = \"subnet-0123456789abcdef0\"\n\
         security_groups = [\"sg-01234567\"]\ninstance_type = \"c7i.4xlarge\"\ntags = {{ Team = \"storage\" }}\n"
    );
    let estate = Estate::parse("estate.toml", &good).unwrap();
    let a: AccountId = "222222222222".parse().unwrap();
    let settings = estate.worker_settings(&a, &"us-east-1".parse().unwrap()).unwrap();
    assert_eq!(settings.subnet.as_deref(), Some("subnet-0123456789abcdef0"));
    assert_eq!(settings.security_groups, ["sg-01234567"]);
    assert_eq!(settings.instance_type.as_deref(), Some("c7i.4xlarge"));
    assert_eq!(settings.tags.get("Team").map(String::as_str), Some("storage"));
    assert!(estate
        .worker_settings(&a, &"eu-west-1".parse().unwrap())
        .is_none());

    let bad = format!(
        "{GOOD}\n[workers.\"999999999999/us-east-1\"]\n\n[workers.\"222222222222/us-east-1\"]\n\
         subnet = \"vpc-0123456789abcdef0\"\nsecurity_groups = [\"sg-xyz\"]\ninstance_type = \"large\"\n\
         tags = {{ \"bulwark:session\" = \"x\" }}\n"
    );
    let err = Estate::parse("estate.toml", &bad).unwrap_err();
    let fields: Vec<&str> = err.problems.iter().map(|p| p.field.as_str()).collect();
    for expected in [
        "workers.\"999999999999/us-east-1\"",
        "workers.\"222222222222/us-east-1\".subnet",
        "workers.\"222222222222/us-east-1\".security_groups",
        "workers.\"222222222222/us-east-1\".instance_type",
        "workers.\"222222222222/us-east-1\".tags.\"bulwark:session\"",
    ] {
        assert!(fields.contains(&expected), "{expected} not in {fields:?}");
    }
}

#[test]
fn the_documented_form_parses() {
    let estate = Estate::parse("estate.toml", GOOD).unwrap();
    let instance = &estate.instances[0];
    assert_eq!(instance.volumes.len(), 3);
    assert!(matches!(instance.volumes[0].key, Some(KeyRef::Customer(_))));
    assert!(instance.volumes[1]
        .key
        .as_ref()
        .is_some_and(KeyRef::is_aws_managed));
    assert_eq!(instance.volumes[2].key, None);
    let a: AccountId = "222222222222".parse().unwrap();
    assert!(!estate
        .default_key(&a, &"eu-west-1".parse().unwrap())
        .is_aws_managed());
    assert!(estate
        .default_key(&a, &"us-east-1".parse().unwrap())
        .is_aws_managed());
    assert_eq!(estate.appliance.principal_arn(), "arn:aws:iam::111111111111:root");
}

/// Replaces `from` in the good estate and returns the one problem reported.
fn problem_after(from: &str, to: &str) -> Problem {
    assert!(GOOD.contains(from), "{from}");
    let err = Estate::parse("estate.toml", &GOOD.replacen(from, to, 1)).unwrap_err();
    assert_eq!(err.problems.len(), 1, "{err}");
    err.problems[0].clone()
}

#[test]
fn every_malformed_value_is_located_and_explained() {
    let cases = [
        (
            "account = \"111111111111\"",
            "account = \"11111111111\"",
            "appliance.account",
            "12 digits",
        ),
        (
            "role/Backup\"",
            "user/Backup\"",
            "account[0].backup_role",
            "IAM role ARN",
        ),
        (
            "222222222222:role/Restore",
            "333333333333:role/Restore",
            "account[0].restore_role",
            "expected a role of account 222222222222",
        ),
        (
            "region = \"us-east-1\"",
            "region = \"us-east-9\"",
            "instance[0].region",
            "AWS region code",
        ),
        (
            "id = \"i-0123456789abcdef0\"",
            "id = \"i-xyz\"",
            "instance[0].id",
            "instance id",
        ),
        (
            "vol-0cccccccccccccccc",
            "vol-0CCCCCCCCCCCCCCCC",
            "instance[0].volumes[2].id",
            "volume id",
        ),
        (
            "size_gib = 8",
            "size_gib = 0",
            "instance[0].volumes[0].size_gib",
            "1 to 65536",
        ),
        (
            "key/1b2c3d4e-1111-2222-3333-444455556666",
            "key/1b2c....",
            "instance[0].volumes[0].key",
            "KMS key ARN",
        ),
        (
            "kms:us-east-1:222222222222:key/1b2c",
            "kms:eu-west-1:222222222222:key/1b2c",
            "instance[0].volumes[0].key",
            "regional",
        ),
        (
            "account = \"222222222222\"\nregion",
            "account = \"444444444444\"\nregion",
            "instance[0].account",
            "not defined in this file",
        ),
        (
            "\"222222222222/eu-west-1\"",
            "\"555555555555/eu-west-1\"",
            "default_keys.\"555555555555/eu-west-1\"",
            "not defined",
        ),
        (
            "worker_role =",
            "worker_rol =",
            "(file)",
            "unknown field `worker_rol`",
        ),
    ];
    for (from, to, field, message) in cases {
        let p = problem_after(from, to);
        assert_eq!(p.field, field, "{from} -> {to}: {p:?}");
        assert!(p.message.contains(message), "{from} -> {to}: {p:?}");
        assert!(p.line.is_some(), "{p:?}");
    }
}

#[test]
fn errors_name_the_file_and_line() {
    let err = Estate::parse("prod.toml", &GOOD.replace("size_gib = 20", "size_gib = -1")).unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("prod.toml:22: instance[0].volumes[2].size_gib:"),
        "{text}"
    );
}

#[test]
fn problems_are_reported_in_file_order() {
    let bad = GOOD
        .replace("\"222222222222/eu-west-1\"", "\"555555555555/eu-west-1\"")
        .replace("size_gib = 20", "size_gib = 0");
    let with_repository = format!("{bad}\n[repository]\nbucket = \"Bad\"\nregion = \"us-east-1\"\nrole = \"arn:aws:iam::111111111111:role/R\"\n");
    let err = Estate::parse("estate.toml", &with_repository).unwrap_err();
    let lines: Vec<usize> = err.problems.iter().filter_map(|p| p.line).collect();
    assert_eq!(lines.len(), 3, "{err}");
    assert!(lines.windows(2).all(|w| w[0] <= w[1]), "{lines:?}");
}

#[test]
fn all_problems_are_reported_at_once() {
    let bad = GOOD
        .replace("size_gib = 8", "size_gib = 0")
        .replace("region = \"us-east-1\"", "region = \"mars-1\"");
    let err = Estate::parse("estate.toml", &bad).unwrap_err();
    assert!(err.problems.len() >= 2, "{err}");
}
