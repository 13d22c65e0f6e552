//! Malformed estate files: exit code 2, naming the file, line, field and what is expected.

use super::support::*;

#[test]
fn estate_with_an_eleven_digit_account_id_is_rejected() {
    let estate = TempEstate::broken(
        "eleven_digit_account",
        "id = \"333333333333\"",
        "id = \"33333333333\"",
    );
    assert_estate_rejected(&estate, "account[1].id", "expected 12 digits");
    let (_, _, stderr) = bulwark(&["plan", "snapshot", "--estate", estate.path(), "--instance", DB]);
    assert!(
        stderr.contains("\"33333333333\" is not a valid account id"),
        "{stderr}"
    );
    assert!(stderr.contains(&file_name(&estate.path)), "{stderr}");
}

#[test]
fn estate_with_a_role_of_another_account_is_rejected() {
    let estate = TempEstate::broken(
        "role_of_other_account",
        "backup_role = \"arn:aws:iam::222222222222:role/Backup\"",
        "backup_role = \"arn:aws:iam::333333333333:role/Backup\"",
    );
    assert_estate_rejected(
        &estate,
        "account[0].backup_role",
        "the role belongs to account 333333333333, expected a role of account 222222222222",
    );
}

#[test]
fn estate_with_a_malformed_key_arn_is_rejected() {
    let estate = TempEstate::broken(
        "malformed_key_arn",
        "key = \"arn:aws:kms:us-east-1:222222222222:key/22222222-aaaa-4bbb-8ccc-000000000001\"",
        "key = \"arn:aws:kms:us-east-1:222222222222:key/1b2c\"",
    );
    assert_estate_rejected(
        &estate,
        "instance[0].volumes[0].key",
        "expected a KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/KEY-ID) or aws/ebs",
    );
}

#[test]
fn estate_with_a_key_of_another_region_is_rejected() {
    let estate = TempEstate::broken(
        "key_of_other_region",
        "key = \"arn:aws:kms:us-east-1:222222222222:key/22222222-aaaa-4bbb-8ccc-000000000001\"",
        "key = \"arn:aws:kms:eu-west-1:222222222222:key/22222222-aaaa-4bbb-8ccc-000000000001\"",
    );
    assert_estate_rejected(
        &estate,
        "instance[0].volumes[0].key",
        "expected a key of us-east-1",
    );
}

#[test]
fn estate_with_a_misspelt_region_is_rejected() {
    let estate = TempEstate::broken(
        "misspelt_region",
        "account = \"222222222222\"\nregion = \"us-east-1\"",
        "account = \"222222222222\"\nregion = \"us-est-1\"",
    );
    assert_estate_rejected(
        &estate,
        "instance[0].region",
        "\"us-est-1\" is not a valid region: expected an AWS region code",
    );
}

#[test]
fn estate_with_an_unknown_field_is_rejected() {
    let estate = TempEstate::broken(
        "unknown_field",
        "worker_role = \"arn:aws:iam::333333333333",
        "worker_rol = \"arn:aws:iam::333333333333",
    );
    let (code, stdout, stderr) = bulwark(&["plan", "snapshot", "--estate", estate.path(), "--instance", DB]);
    assert_eq!(code, EXIT_INPUT, "{stdout}{stderr}");
    assert!(
        stderr.contains(&format!("{}:{}: ", estate.path(), estate.line)),
        "{stderr}"
    );
    assert!(stderr.contains("unknown field `worker_rol`"), "{stderr}");
}

#[test]
fn estate_that_is_not_toml_is_rejected() {
    let estate = TempEstate::write("not_toml", "[appliance\naccount = 1\n", 1);
    let (code, stdout, stderr) = bulwark(&["plan", "snapshot", "--estate", estate.path(), "--instance", DB]);
    assert_eq!(code, EXIT_INPUT, "{stdout}{stderr}");
    assert!(
        stderr.starts_with(&format!("error: {}:1: ", estate.path())),
        "{stderr}"
    );
}

#[test]
fn estate_file_that_does_not_exist_is_rejected() {
    let missing = std::env::temp_dir().join(format!("bulwark-cli-test-missing-{}.toml", std::process::id()));
    let missing = missing.to_str().unwrap();
    let (code, stdout, stderr) = bulwark(&["plan", "backup", "--estate", missing, "--instance", DB]);
    assert_eq!(code, EXIT_INPUT, "{stdout}{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.starts_with(&format!("error: cannot read the estate file {missing}: ")),
        "{stderr}"
    );

    let doc = bulwark_json(
        &["plan", "backup", "--estate", missing, "--instance", DB, "--json"],
        EXIT_INPUT,
    );
    assert_eq!(doc["error"]["code"], "invalid-estate");
    assert!(
        doc["error"]["message"].as_str().unwrap().contains(missing),
        "{doc:#}"
    );
}
