//! The evaluator's tests: one or more per rule of the documents the module cites, then property
//! tests. Long because the rules are many; each test stands alone.

use super::*;
use proptest::prelude::*;

const HOME: &str = "111111111111";
const OTHER: &str = "222222222222";
const KEY: &str = "arn:aws:kms:eu-west-1:111111111111:key/1234abcd-12ab-34cd-56ef-1234567890ab";

fn account(id: &str) -> AccountId {
    id.parse().unwrap()
}

fn role(account_id: &str, name: &str) -> Principal {
    Principal::Role {
        arn: format!("arn:aws:iam::{account_id}:role/bulwark/{name}"),
        account: account(account_id),
    }
}

fn policy(json: &str) -> Policy {
    Policy::parse(json).unwrap()
}

fn context(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Decides `action` on `resource` by `principal` with `context`.
fn decide(
    principal: &Principal,
    action: &str,
    resource: &str,
    context: &BTreeMap<String, String>,
    identity: &[&Policy],
    resource_policy: Option<ResourcePolicy>,
) -> Decision {
    let request = Request {
        principal,
        action: action.parse().unwrap(),
        resource,
        context,
    };
    authorize(&request, identity, resource_policy)
}

fn identity_decision(document: &Policy, action: &str, resource: &str) -> Decision {
    let principal = role(HOME, "Appliance");
    let context = BTreeMap::new();
    document.evaluate_identity(&Request {
        principal: &principal,
        action: action.parse().unwrap(),
        resource,
        context: &context,
    })
}

fn key_policy<'a>(document: &'a Policy, owner: &'a AccountId) -> Option<ResourcePolicy<'a>> {
    Some(ResourcePolicy {
        document,
        owner,
        kind: ResourcePolicyKind::KeyPolicy,
    })
}

fn trust_policy<'a>(document: &'a Policy, owner: &'a AccountId) -> Option<ResourcePolicy<'a>> {
    Some(ResourcePolicy {
        document,
        owner,
        kind: ResourcePolicyKind::TrustPolicy,
    })
}

fn malformed_message(json: &str) -> String {
    match Policy::parse(json) {
        Err(PolicyError::Malformed(message)) => message,
        Ok(_) => panic!("accepted {json}"),
    }
}

// ---- matching ---------------------------------------------------------------------------

#[test]
fn action_wildcards_are_case_insensitive() {
    assert!(action_matches("*", "ec2:CreateVolume"));
    assert!(action_matches("ec2:*", "ec2:CreateVolume"));
    assert!(action_matches("ec2:Create*", "ec2:createvolume"));
    assert!(action_matches("EC2:CREATEVOLUME", "ec2:CreateVolume"));
    assert!(action_matches("ec2:?reateVolume", "ec2:CreateVolume"));
    assert!(action_matches("ec2:*Volume*", "ec2:DescribeVolumes"));
    assert!(!action_matches("ec2:Create*", "ec2:DeleteVolume"));
    assert!(!action_matches("s3:*", "ec2:CreateVolume"));
    assert!(!action_matches("ec2:CreateVolume", "ec2:CreateVolumes"));
    assert!(!action_matches("ec2:?", "ec2:"));
}

#[test]
fn resource_wildcards_are_case_sensitive_and_span_separators() {
    let volume = "arn:aws:ec2:eu-west-1:111111111111:volume/vol-0123";
    assert!(resource_matches("*", volume));
    assert!(resource_matches("arn:aws:ec2:*:111111111111:volume/*", volume));
    assert!(resource_matches("arn:aws:ec2:*", volume));
    assert!(resource_matches(
        "arn:aws:ec2:eu-west-?:111111111111:volume/vol-0123",
        volume
    ));
    assert!(!resource_matches("arn:aws:ec2:*:111111111111:VOLUME/*", volume));
    assert!(!resource_matches("arn:aws:ec2:*:222222222222:volume/*", volume));
    assert!(!resource_matches("arn:aws:ec2:*:111111111111:snapshot/*", volume));
    // An action without resource-level permissions is requested on "*": only "*" covers it.
    assert!(resource_matches("*", "*"));
    assert!(!resource_matches("arn:aws:ec2:*", "*"));
}

#[test]
fn wildcard_backtracks() {
    assert!(wildcard_match("a*b*c", "aXbYbZc"));
    assert!(wildcard_match("*ab", "aab"));
    assert!(wildcard_match("**", ""));
    assert!(!wildcard_match("a*b", "aXbY"));
    assert!(!wildcard_match("?", ""));
}

#[test]
fn not_action_allows_everything_else() {
    let document =
        policy(r#"{"Statement": {"Effect": "Allow", "NotAction": ["iam:*", "sts:*"], "Resource": "*"}}"#);
    assert_eq!(
        identity_decision(&document, "ec2:CreateVolume", "*"),
        Decision::Allow
    );
    assert_eq!(
        identity_decision(&document, "iam:CreateRole", "*"),
        Decision::ImplicitDeny
    );
    assert_eq!(
        identity_decision(&document, "STS:AssumeRole", "*"),
        Decision::ImplicitDeny
    );
}

#[test]
fn not_resource_allows_everything_else() {
    let document = policy(
        r#"{"Statement": {"Effect": "Allow", "Action": "s3:*",
            "NotResource": "arn:aws:s3:::audit/*"}}"#,
    );
    assert_eq!(
        identity_decision(&document, "s3:GetObject", "arn:aws:s3:::repo/data/1"),
        Decision::Allow
    );
    assert_eq!(
        identity_decision(&document, "s3:GetObject", "arn:aws:s3:::audit/log"),
        Decision::ImplicitDeny
    );
}

#[test]
fn identity_policy_without_match_denies_implicitly() {
    let document = policy(
        r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ec2:Describe*",
            "Resource": "*"}]}"#,
    );
    assert_eq!(
        identity_decision(&document, "ec2:DescribeVolumes", "*"),
        Decision::Allow
    );
    assert_eq!(
        identity_decision(&document, "ec2:DeleteVolume", "*"),
        Decision::ImplicitDeny
    );
    assert!(!Decision::ImplicitDeny.is_allowed() && !Decision::ExplicitDeny.is_allowed());
}

// ---- explicit deny ----------------------------------------------------------------------

#[test]
fn explicit_deny_overrides_allow_in_the_same_policy_and_across_policies() {
    let allow = policy(r#"{"Statement": {"Effect": "Allow", "Action": "ec2:*", "Resource": "*"}}"#);
    let deny = policy(
        r#"{"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"},
            {"Sid": "NoDelete", "Effect": "Deny", "Action": "ec2:Delete*", "Resource": "*"}]}"#,
    );
    assert_eq!(
        identity_decision(&deny, "ec2:DeleteSnapshot", "*"),
        Decision::ExplicitDeny
    );
    let principal = role(HOME, "Appliance");
    let ctx = BTreeMap::new();
    let decision = decide(
        &principal,
        "ec2:DeleteSnapshot",
        "*",
        &ctx,
        &[&allow, &deny],
        None,
    );
    assert_eq!(decision, Decision::ExplicitDeny);
    let decision = decide(
        &principal,
        "ec2:CreateSnapshot",
        "*",
        &ctx,
        &[&allow, &deny],
        None,
    );
    assert_eq!(decision, Decision::Allow);
}

#[test]
fn resource_policy_deny_overrides_identity_allow_and_identity_deny_overrides_resource_allow() {
    let owner = account(HOME);
    let queue = "arn:aws:sqs:eu-west-1:111111111111:bulwark-jobs";
    let principal = role(HOME, "Appliance");
    let ctx = BTreeMap::new();
    let allow_all = policy(r#"{"Statement": {"Effect": "Allow", "Action": "sqs:*", "Resource": "*"}}"#);
    let deny_queue = policy(
        r#"{"Statement": {"Effect": "Deny", "Principal": "*", "Action": "sqs:SendMessage",
            "Resource": "*"}}"#,
    );
    let ordinary = |document| {
        Some(ResourcePolicy {
            document,
            owner: &owner,
            kind: ResourcePolicyKind::Ordinary,
        })
    };
    let decision = decide(
        &principal,
        "sqs:SendMessage",
        queue,
        &ctx,
        &[&allow_all],
        ordinary(&deny_queue),
    );
    assert_eq!(decision, Decision::ExplicitDeny);

    let allow_queue = policy(&format!(
        r#"{{"Statement": {{"Effect": "Allow",
            "Principal": {{"AWS": "arn:aws:iam::{HOME}:role/bulwark/Appliance"}},
            "Action": "sqs:*", "Resource": "{queue}"}}}}"#
    ));
    let deny_identity = policy(r#"{"Statement": {"Effect": "Deny", "Action": "sqs:*", "Resource": "*"}}"#);
    let decision = decide(
        &principal,
        "sqs:SendMessage",
        queue,
        &ctx,
        &[&deny_identity],
        ordinary(&allow_queue),
    );
    assert_eq!(decision, Decision::ExplicitDeny);
}

#[test]
fn deny_naming_an_account_denies_its_roles() {
    let owner = account(HOME);
    let document = policy(&format!(
        r#"{{"Statement": [{{"Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*"}},
            {{"Effect": "Deny", "Principal": {{"AWS": "{OTHER}"}}, "Action": "kms:Decrypt",
                "Resource": "*"}}]}}"#
    ));
    let ctx = BTreeMap::new();
    let principal = role(OTHER, "Reader");
    let request = Request {
        principal: &principal,
        action: Action::KmsDecrypt,
        resource: KEY,
        context: &ctx,
    };
    assert!(document.evaluate_resource(&request).denies);
    let allow = policy(r#"{"Statement": {"Effect": "Allow", "Action": "kms:*", "Resource": "*"}}"#);
    let decision = decide(
        &principal,
        "kms:Decrypt",
        KEY,
        &ctx,
        &[&allow],
        key_policy(&document, &owner),
    );
    assert_eq!(decision, Decision::ExplicitDeny);
}

#[test]
fn not_principal_deny_exempts_only_a_role_listed_with_its_account() {
    let owner = account(HOME);
    let appliance = format!("arn:aws:iam::{HOME}:role/bulwark/Appliance");
    let statement = |principals: &str| {
        policy(&format!(
            r#"{{"Statement": [{{"Effect": "Allow", "Principal": {{"AWS": "{HOME}"}},
                "Action": "kms:*", "Resource": "*"}},
                {{"Effect": "Deny", "NotPrincipal": {{"AWS": {principals}}}, "Action": "kms:*",
                    "Resource": "*"}}]}}"#
        ))
    };
    let both = statement(&format!(r#"["{appliance}", "arn:aws:iam::{HOME}:root"]"#));
    let role_only = statement(&format!(r#""{appliance}""#));
    let allow = policy(r#"{"Statement": {"Effect": "Allow", "Action": "kms:*", "Resource": "*"}}"#);
    let ctx = BTreeMap::new();
    let appliance_role = role(HOME, "Appliance");
    let other_role = role(HOME, "Other");
    let run = |who: &Principal, document| {
        decide(
            who,
            "kms:Decrypt",
            KEY,
            &ctx,
            &[&allow],
            key_policy(document, &owner),
        )
    };
    assert_eq!(run(&appliance_role, &both), Decision::Allow);
    assert_eq!(run(&other_role, &both), Decision::ExplicitDeny);
    assert_eq!(run(&appliance_role, &role_only), Decision::ExplicitDeny);
}

// ---- conditions -------------------------------------------------------------------------

fn external_id_trust() -> Policy {
    Policy::parse_resource(&format!(
        r#"{{"Version": "2012-10-17", "Statement": [{{"Effect": "Allow",
            "Principal": {{"AWS": "arn:aws:iam::{OTHER}:role/bulwark/Appliance"}},
            "Action": "sts:AssumeRole",
            "Condition": {{"StringEquals": {{"sts:ExternalId": "bulwark-7f3a"}}}}}}]}}"#
    ))
    .unwrap()
}

#[test]
fn trust_policy_external_id_must_be_present_and_right() {
    let owner = account(HOME);
    let trust = external_id_trust();
    let principal = role(OTHER, "Appliance");
    let target = format!("arn:aws:iam::{HOME}:role/BulwarkBackup");
    let may_assume =
        policy(r#"{"Statement": {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}}"#);
    let run = |ctx: &BTreeMap<String, String>| {
        decide(
            &principal,
            "sts:AssumeRole",
            &target,
            ctx,
            &[&may_assume],
            trust_policy(&trust, &owner),
        )
    };
    assert_eq!(run(&context(&[])), Decision::ImplicitDeny);
    assert_eq!(
        run(&context(&[("sts:ExternalId", "wrong")])),
        Decision::ImplicitDeny
    );
    assert_eq!(
        run(&context(&[("sts:ExternalId", "BULWARK-7F3A")])),
        Decision::ImplicitDeny
    );
    assert_eq!(
        run(&context(&[("sts:ExternalId", "bulwark-7f3a")])),
        Decision::Allow
    );
    // Condition keys are case-insensitive.
    assert_eq!(
        run(&context(&[("STS:externalid", "bulwark-7f3a")])),
        Decision::Allow
    );
}

#[test]
fn grant_for_aws_resource_bool_condition() {
    let owner = account(HOME);
    let document = policy(&format!(
        r#"{{"Statement": {{"Effect": "Allow",
            "Principal": {{"AWS": "arn:aws:iam::{HOME}:role/bulwark/Appliance"}},
            "Action": ["kms:CreateGrant", "kms:ListGrants"], "Resource": "*",
            "Condition": {{"Bool": {{"kms:GrantIsForAWSResource": true}}}}}}}}"#
    ));
    let principal = role(HOME, "Appliance");
    let run = |ctx: &BTreeMap<String, String>| {
        decide(
            &principal,
            "kms:CreateGrant",
            KEY,
            ctx,
            &[],
            key_policy(&document, &owner),
        )
    };
    assert_eq!(
        run(&context(&[("kms:GrantIsForAWSResource", "true")])),
        Decision::Allow
    );
    assert_eq!(
        run(&context(&[("kms:grantisforawsresource", "TRUE")])),
        Decision::Allow
    );
    assert_eq!(
        run(&context(&[("kms:GrantIsForAWSResource", "false")])),
        Decision::ImplicitDeny
    );
    assert_eq!(run(&context(&[])), Decision::ImplicitDeny);
}

fn condition_holds(condition: &str, ctx: &[(&str, &str)]) -> bool {
    let document = policy(&format!(
        r#"{{"Statement": {{"Effect": "Allow", "Action": "*", "Resource": "*",
            "Condition": {condition}}}}}"#
    ));
    let principal = role(HOME, "Appliance");
    let ctx = context(ctx);
    let request = Request {
        principal: &principal,
        action: Action::Ec2CreateVolume,
        resource: "*",
        context: &ctx,
    };
    document.evaluate_identity(&request).is_allowed()
}

#[test]
fn if_exists_holds_when_the_key_is_absent() {
    let condition = r#"{"StringEqualsIfExists": {"aws:RequestedRegion": "eu-west-1"}}"#;
    assert!(condition_holds(condition, &[]));
    assert!(condition_holds(
        condition,
        &[("aws:RequestedRegion", "eu-west-1")]
    ));
    assert!(!condition_holds(
        condition,
        &[("aws:RequestedRegion", "us-east-1")]
    ));
    let plain = r#"{"StringEquals": {"aws:RequestedRegion": "eu-west-1"}}"#;
    assert!(!condition_holds(plain, &[]));
}

#[test]
fn null_checks_presence() {
    let absent = r#"{"Null": {"aws:SourceArn": "true"}}"#;
    let present = r#"{"Null": {"aws:SourceArn": false}}"#;
    let arn = [("aws:SourceArn", "arn:aws:ec2:eu-west-1:111111111111:instance/i-1")];
    assert!(condition_holds(absent, &[]));
    assert!(!condition_holds(absent, &arn));
    assert!(!condition_holds(present, &[]));
    assert!(condition_holds(present, &arn));
}

#[test]
fn negated_operators_hold_when_the_key_is_absent_and_require_no_value_to_match() {
    let not_equals = r#"{"StringNotEquals": {"aws:PrincipalAccount": ["111111111111", "222222222222"]}}"#;
    assert!(condition_holds(not_equals, &[]));
    assert!(condition_holds(
        not_equals,
        &[("aws:PrincipalAccount", "333333333333")]
    ));
    assert!(!condition_holds(
        not_equals,
        &[("aws:PrincipalAccount", "222222222222")]
    ));
    let not_like = r#"{"ArnNotLike": {"aws:SourceArn": "arn:aws:sqs:*:*:bulwark-*"}}"#;
    assert!(condition_holds(not_like, &[]));
    assert!(!condition_holds(
        not_like,
        &[("aws:SourceArn", "arn:aws:sqs:eu-west-1:111111111111:bulwark-jobs")]
    ));
    assert!(condition_holds(
        not_like,
        &[("aws:SourceArn", "arn:aws:sqs:eu-west-1:111111111111:other")]
    ));
}

#[test]
fn several_values_or_and_several_keys_and_operators_and() {
    let condition = r#"{"StringEquals": {"ec2:Region": ["eu-west-1", "eu-west-2"],
        "ec2:Encrypted": "true"},
        "StringLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/bulwark/*"}}"#;
    let role_arn = (
        "aws:PrincipalArn",
        "arn:aws:iam::111111111111:role/bulwark/Appliance",
    );
    assert!(condition_holds(
        condition,
        &[("ec2:Region", "eu-west-2"), ("ec2:Encrypted", "true"), role_arn]
    ));
    assert!(!condition_holds(
        condition,
        &[("ec2:Region", "us-east-1"), ("ec2:Encrypted", "true"), role_arn]
    ));
    assert!(!condition_holds(
        condition,
        &[("ec2:Region", "eu-west-1"), role_arn]
    ));
    assert!(!condition_holds(
        condition,
        &[("ec2:Region", "eu-west-1"), ("ec2:Encrypted", "true")]
    ));
}

#[test]
fn string_arn_and_numeric_operators() {
    assert!(condition_holds(
        r#"{"StringEqualsIgnoreCase": {"k": "ABC"}}"#,
        &[("k", "abc")]
    ));
    assert!(!condition_holds(
        r#"{"StringNotEqualsIgnoreCase": {"k": "ABC"}}"#,
        &[("k", "abc")]
    ));
    assert!(!condition_holds(
        r#"{"StringEquals": {"k": "ABC"}}"#,
        &[("k", "abc")]
    ));
    assert!(condition_holds(
        r#"{"StringLike": {"k": "vol-*"}}"#,
        &[("k", "vol-1")]
    ));
    // ArnLike matches field by field: a `*` in the region field does not cross into others.
    let arn_like = r#"{"ArnLike": {"aws:SourceArn": "arn:aws:ec2:*:111111111111:instance/*"}}"#;
    assert!(condition_holds(
        arn_like,
        &[("aws:SourceArn", "arn:aws:ec2:eu-west-1:111111111111:instance/i-1")]
    ));
    assert!(!condition_holds(
        arn_like,
        &[("aws:SourceArn", "arn:aws:ec2:eu-west-1:222222222222:instance/i-1")]
    ));
    let across = r#"{"ArnEquals": {"aws:SourceArn": "arn:aws:ec2:*:instance/*"}}"#;
    assert!(!condition_holds(
        across,
        &[("aws:SourceArn", "arn:aws:ec2:eu-west-1:111111111111:instance/i-1")]
    ));
    let size = r#"{"NumericLessThanEquals": {"ec2:VolumeSize": 100}}"#;
    assert!(condition_holds(size, &[("ec2:VolumeSize", "100")]));
    assert!(condition_holds(size, &[("ec2:VolumeSize", "8")]));
    assert!(!condition_holds(size, &[("ec2:VolumeSize", "101")]));
    assert!(!condition_holds(size, &[("ec2:VolumeSize", "big")]));
    assert!(condition_holds(
        r#"{"NumericGreaterThan": {"n": "2"}}"#,
        &[("n", "3")]
    ));
    assert!(!condition_holds(
        r#"{"NumericNotEquals": {"n": [1, 2]}}"#,
        &[("n", "2.0")]
    ));
}

#[test]
fn set_qualifiers_on_single_values() {
    let any = r#"{"ForAnyValue:StringEquals": {"aws:TagKeys": ["owner", "team"]}}"#;
    let all = r#"{"ForAllValues:StringEquals": {"aws:TagKeys": ["owner", "team"]}}"#;
    assert!(condition_holds(any, &[("aws:TagKeys", "team")]));
    assert!(!condition_holds(any, &[("aws:TagKeys", "cost")]));
    assert!(!condition_holds(any, &[]));
    assert!(condition_holds(all, &[("aws:TagKeys", "owner")]));
    assert!(!condition_holds(all, &[("aws:TagKeys", "cost")]));
    assert!(condition_holds(all, &[]));
}

// ---- key policies -----------------------------------------------------------------------

fn key_policy_naming(principal: &str) -> Policy {
    Policy::parse_resource(&format!(
        r#"{{"Statement": {{"Sid": "Use", "Effect": "Allow", "Principal": {{"AWS": {principal}}},
            "Action": ["kms:Decrypt", "kms:GenerateDataKey*", "kms:DescribeKey"], "Resource": "*"}}}}"#
    ))
    .unwrap()
}

#[test]
fn cross_account_key_use_needs_both_key_policy_and_iam() {
    let owner = account(HOME);
    let caller = role(OTHER, "Appliance");
    let ctx = BTreeMap::new();
    let iam = policy(&format!(
        r#"{{"Statement": {{"Effect": "Allow", "Action": "kms:Decrypt", "Resource": "{KEY}"}}}}"#
    ));
    let grants_account = key_policy_naming(&format!(r#""arn:aws:iam::{OTHER}:root""#));
    let grants_role = key_policy_naming(&format!(r#""arn:aws:iam::{OTHER}:role/bulwark/Appliance""#));
    let grants_nobody = key_policy_naming(&format!(r#""{HOME}""#));
    let run = |identity: &[&Policy], key| {
        decide(
            &caller,
            "kms:Decrypt",
            KEY,
            &ctx,
            identity,
            key_policy(key, &owner),
        )
    };
    assert_eq!(run(&[&iam], &grants_account), Decision::Allow);
    assert_eq!(run(&[&iam], &grants_role), Decision::Allow);
    // The key policy alone is not enough, even naming the role.
    assert_eq!(run(&[], &grants_account), Decision::ImplicitDeny);
    assert_eq!(run(&[], &grants_role), Decision::ImplicitDeny);
    // IAM alone is not enough.
    assert_eq!(run(&[&iam], &grants_nobody), Decision::ImplicitDeny);
    // IAM for another action does not help.
    assert_eq!(
        decide(
            &caller,
            "kms:Encrypt",
            KEY,
            &ctx,
            &[&iam],
            key_policy(&grants_account, &owner)
        ),
        Decision::ImplicitDeny
    );
}

#[test]
fn same_account_key_policy_naming_root_delegates_to_iam() {
    let owner = account(HOME);
    let caller = role(HOME, "Appliance");
    let ctx = BTreeMap::new();
    let iam = policy(r#"{"Statement": {"Effect": "Allow", "Action": "kms:*", "Resource": "*"}}"#);
    let default_policy = key_policy_naming(&format!(r#""arn:aws:iam::{HOME}:root""#));
    let run = |identity: &[&Policy], key| {
        decide(
            &caller,
            "kms:Decrypt",
            KEY,
            &ctx,
            identity,
            key_policy(key, &owner),
        )
    };
    assert_eq!(run(&[&iam], &default_policy), Decision::Allow);
    assert_eq!(run(&[], &default_policy), Decision::ImplicitDeny);
    // Naming the role itself needs no IAM policy.
    let names_role = key_policy_naming(&format!(r#"["arn:aws:iam::{HOME}:role/bulwark/Appliance"]"#));
    assert_eq!(run(&[], &names_role), Decision::Allow);
    // A key policy that names neither: IAM cannot grant use of the key.
    let names_other = key_policy_naming(&format!(r#""arn:aws:iam::{HOME}:role/Other""#));
    assert_eq!(run(&[&iam], &names_other), Decision::ImplicitDeny);
}

#[test]
fn root_user_is_named_by_its_account_and_has_full_access_at_home() {
    let owner = account(HOME);
    let root = Principal::Account(account(HOME));
    let ctx = BTreeMap::new();
    let default_policy = key_policy_naming(&format!(r#""{HOME}""#));
    let decision = decide(
        &root,
        "kms:Decrypt",
        KEY,
        &ctx,
        &[],
        key_policy(&default_policy, &owner),
    );
    assert_eq!(decision, Decision::Allow);
    assert_eq!(
        decide(&root, "ec2:CreateVolume", "*", &ctx, &[], None),
        Decision::Allow
    );
    let names_role = key_policy_naming(&format!(r#""arn:aws:iam::{HOME}:role/Admin""#));
    let decision = decide(
        &root,
        "kms:Decrypt",
        KEY,
        &ctx,
        &[],
        key_policy(&names_role, &owner),
    );
    assert_eq!(decision, Decision::ImplicitDeny);
    // The root user of another account needs the key policy to name its account.
    let stranger = Principal::Account(account(OTHER));
    let decision = decide(
        &stranger,
        "kms:Decrypt",
        KEY,
        &ctx,
        &[],
        key_policy(&default_policy, &owner),
    );
    assert_eq!(decision, Decision::ImplicitDeny);
}

// ---- trust policies ---------------------------------------------------------------------

#[test]
fn trust_policy_naming_a_role_directly() {
    let owner = account(HOME);
    let trust = Policy::parse_resource(&format!(
        r#"{{"Statement": {{"Effect": "Allow",
            "Principal": {{"AWS": ["arn:aws:iam::{HOME}:role/bulwark/Appliance"]}},
            "Action": "sts:AssumeRole"}}}}"#
    ))
    .unwrap();
    let ctx = BTreeMap::new();
    let target = format!("arn:aws:iam::{HOME}:role/Worker");
    let run = |who: &Principal| {
        decide(
            who,
            "sts:AssumeRole",
            &target,
            &ctx,
            &[],
            trust_policy(&trust, &owner),
        )
    };
    assert_eq!(run(&role(HOME, "Appliance")), Decision::Allow);
    assert_eq!(run(&role(HOME, "Other")), Decision::ImplicitDeny);
    assert_eq!(
        run(&Principal::Service("ec2.amazonaws.com".into())),
        Decision::ImplicitDeny
    );
    // A trust policy does not cover other actions.
    let decision = decide(
        &role(HOME, "Appliance"),
        "sts:TagSession",
        &target,
        &ctx,
        &[],
        trust_policy(&trust, &owner),
    );
    assert_eq!(decision, Decision::ImplicitDeny);
}

#[test]
fn trust_policy_for_a_service() {
    let owner = account(HOME);
    let trust = Policy::parse_resource(
        r#"{"Statement": {"Effect": "Allow", "Principal": {"Service": ["ec2.amazonaws.com",
            "ssm.amazonaws.com"]},
            "Action": "sts:AssumeRole"}}"#,
    )
    .unwrap();
    let ctx = BTreeMap::new();
    let target = format!("arn:aws:iam::{HOME}:role/Worker");
    let allow_everything = policy(r#"{"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*"}}"#);
    let run = |who: &Principal| {
        decide(
            who,
            "sts:AssumeRole",
            &target,
            &ctx,
            &[&allow_everything],
            trust_policy(&trust, &owner),
        )
    };
    assert_eq!(
        run(&Principal::Service("ec2.amazonaws.com".into())),
        Decision::Allow
    );
    assert_eq!(
        run(&Principal::Service("ssm.amazonaws.com".into())),
        Decision::Allow
    );
    assert_eq!(
        run(&Principal::Service("lambda.amazonaws.com".into())),
        Decision::ImplicitDeny
    );
    // Roles of the account are not services.
    assert_eq!(run(&role(HOME, "Appliance")), Decision::ImplicitDeny);
    // A service has no identity policies: without a resource policy nothing allows it.
    let ec2 = Principal::Service("ec2.amazonaws.com".into());
    assert_eq!(
        decide(&ec2, "ec2:CreateVolume", "*", &ctx, &[&allow_everything], None),
        Decision::ImplicitDeny
    );
}

#[test]
fn anyone_principal_forms() {
    let owner = account(HOME);
    let ctx = BTreeMap::new();
    let queue = "arn:aws:sqs:eu-west-1:111111111111:jobs";
    for principal in [r#""*""#, r#"{"AWS": "*"}"#, r#"{"AWS": ["*"]}"#] {
        let document = Policy::parse_resource(&format!(
            r#"{{"Statement": {{"Effect": "Allow", "Principal": {principal},
                "Action": "sqs:SendMessage", "Resource": "{queue}"}}}}"#
        ))
        .unwrap();
        let ordinary = Some(ResourcePolicy {
            document: &document,
            owner: &owner,
            kind: ResourcePolicyKind::Ordinary,
        });
        let decision = decide(&role(HOME, "Any"), "sqs:SendMessage", queue, &ctx, &[], ordinary);
        assert_eq!(decision, Decision::Allow, "{principal}");
        // Across accounts the caller's IAM must allow too.
        let decision = decide(&role(OTHER, "Any"), "sqs:SendMessage", queue, &ctx, &[], ordinary);
        assert_eq!(decision, Decision::ImplicitDeny, "{principal}");
    }
}

#[test]
fn same_account_ordinary_resource_policy_adds_to_iam() {
    let owner = account(HOME);
    let ctx = BTreeMap::new();
    let queue = "arn:aws:sqs:eu-west-1:111111111111:jobs";
    let caller = role(HOME, "Appliance");
    let iam = policy(r#"{"Statement": {"Effect": "Allow", "Action": "sqs:*", "Resource": "*"}}"#);
    let names_account = Policy::parse_resource(&format!(
        r#"{{"Statement": {{"Effect": "Allow", "Principal": {{"AWS": "{HOME}"}}, "Action": "sqs:*",
            "Resource": "{queue}"}}}}"#
    ))
    .unwrap();
    let ordinary = Some(ResourcePolicy {
        document: &names_account,
        owner: &owner,
        kind: ResourcePolicyKind::Ordinary,
    });
    assert_eq!(
        decide(&caller, "sqs:SendMessage", queue, &ctx, &[&iam], ordinary),
        Decision::Allow
    );
    assert_eq!(
        decide(&caller, "sqs:SendMessage", queue, &ctx, &[], ordinary),
        Decision::ImplicitDeny
    );
    assert_eq!(
        decide(&caller, "sqs:SendMessage", queue, &ctx, &[&iam], None),
        Decision::Allow
    );
    assert_eq!(
        decide(&caller, "sqs:SendMessage", queue, &ctx, &[], None),
        Decision::ImplicitDeny
    );
}

#[test]
fn principal_from_a_role_arn() {
    let arn: RoleArn = format!("arn:aws:iam::{HOME}:role/bulwark/Appliance")
        .parse()
        .unwrap();
    assert_eq!(Principal::role(&arn), role(HOME, "Appliance"));
    assert_eq!(Principal::role(&arn).account(), Some(&account(HOME)));
    assert_eq!(Principal::Service("ec2.amazonaws.com".into()).account(), None);
}

// ---- malformed documents ----------------------------------------------------------------

#[test]
fn malformed_documents_are_rejected_with_what_and_where() {
    let cases = [
        (r#"{"Statement": "#, "invalid JSON"),
        (r#"[]"#, "must be a JSON object"),
        (r#"{"Version": "2012-10-17"}"#, "missing field `Statement`"),
        (r#"{"Version": "2020-01-01", "Statement": []}"#, "Version must be"),
        (
            r#"{"Statement": [{"Sid": "A", "Effect": "Permit", "Action": "*", "Resource": "*"}]}"#,
            r#"statement 0 (Sid "A"): Effect: unknown variant `Permit`, expected `Allow` or `Deny`"#,
        ),
        (
            r#"{"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}, {"Action": "*",
                "Resource": "*"}]}"#,
            "statement 1: missing field `Effect`",
        ),
        (
            r#"{"Statement": {"Effect": "Allow", "Resource": "*"}}"#,
            "statement 0: missing Action or NotAction",
        ),
        (
            r#"{"Statement": {"Effect": "Allow", "Action": "*", "NotAction": "iam:*", "Resource": "*"}}"#,
            "has both Action and NotAction",
        ),
        (
            r#"{"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*", "NotResource": "*"}}"#,
            "has both Resource and NotResource",
        ),
        (
            r#"{"Statement": {"Effect": "Allow", "Action": [], "Resource": "*"}}"#,
            "statement 0: Action: expected a string or a non-empty array of strings",
        ),
        (
            r#"{"Statement": {"Effect": "Allow", "Action": "CreateVolume", "Resource": "*"}}"#,
            "must be prefixed by a service",
        ),
        (
            r#"{"Statement": {"Effect": "Allow", "Action": "*", "Resource": "vol-1"}}"#,
            "must be \"*\" or an ARN",
        ),
        (
            r#"{"Statement": {"Effect": "Allow", "Action": "*", "Resouce": "*"}}"#,
            "statement 0: Resouce: unknown field `Resouce`",
        ),
        (
            r#"{"Statement": {"Sid": "T", "Effect": "Allow", "Action": "*", "Resource": "*",
            "Condition": {"StringEqual": {"k": "v"}}}}"#,
            r#"statement 0 (Sid "T"): unknown or unsupported condition operator "StringEqual""#,
        ),
        (
            r#"{"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*",
                "Condition": {"DateLessThan": {"k": "v"}}}}"#,
            "unsupported condition operator \"DateLessThan\"",
        ),
        (
            r#"{"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*",
                "Condition": {"NullIfExists": {"k": "true"}}}}"#,
            "condition operator \"NullIfExists\"",
        ),
        (
            r#"{"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*",
                "Condition": {"Bool": {"k": "yes"}}}}"#,
            r#"Bool "k": invalid value "yes""#,
        ),
        (
            r#"{"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*",
                "Condition": {"NumericEquals": {"k": "x"}}}}"#,
            "invalid value",
        ),
        (
            r#"{"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*",
                "Condition": {"StringEquals": {"k": {}}}}}"#,
            "needs a string, number, boolean",
        ),
        (
            r#"{"Statement": {"Effect": "Allow", "Principal": {"AWS": "bob"}, "Action": "*"}}"#,
            r#"invalid principal "bob""#,
        ),
        (
            r#"{"Statement": {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::*:root"},
                "Action": "*"}}"#,
            "wildcards cannot match part of a principal",
        ),
        (
            r#"{"Statement": {"Effect": "Allow", "Principal": {"Users": "x"}, "Action": "*"}}"#,
            r#"unknown principal type "Users""#,
        ),
        (
            r#"{"Statement": {"Effect": "Allow", "Principal": "me", "Action": "*"}}"#,
            "Principal must be",
        ),
        (
            r#"{"Statement": {"Effect": "Allow", "Principal": "*", "NotPrincipal": "*", "Action": "*"}}"#,
            "has both Principal and NotPrincipal",
        ),
        (
            r#"{"Statement": [{"Sid": "X", "Effect": "Allow", "Action": "*"}, {"Sid": "X",
                "Effect": "Deny", "Action": "*"}]}"#,
            r#"duplicate Sid "X""#,
        ),
    ];
    let wrong: Vec<String> = cases
        .iter()
        .map(|(json, expected)| (json, expected, malformed_message(json)))
        .filter(|(_, expected, message)| !message.contains(*expected))
        .map(|(json, expected, message)| format!("{json}: {message:?} does not say {expected:?}"))
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    let error = Policy::parse("{").unwrap_err();
    assert!(error
        .to_string()
        .starts_with("malformed policy document: invalid JSON"));
}

#[test]
fn identity_and_resource_policies_have_their_own_requirements() {
    let no_resource = r#"{"Statement": {"Sid": "S", "Effect": "Allow", "Action": "ec2:*"}}"#;
    assert!(Policy::parse(no_resource).is_ok());
    let Err(PolicyError::Malformed(message)) = Policy::parse_identity(no_resource) else {
        panic!("identity policy without Resource accepted");
    };
    assert!(
        message.contains(r#"statement 0 (Sid "S"): missing Resource"#),
        "{message}"
    );
    let with_principal =
        r#"{"Statement": {"Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*"}}"#;
    assert!(Policy::parse_identity(with_principal).is_err());
    assert!(Policy::parse_resource(with_principal).is_ok());
    let Err(PolicyError::Malformed(message)) =
        Policy::parse_resource(r#"{"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*"}}"#)
    else {
        panic!("resource policy without Principal accepted");
    };
    assert!(
        message.contains("statement 0: missing Principal or NotPrincipal"),
        "{message}"
    );
}

#[test]
fn accepted_principal_forms() {
    let json = r#"{"Statement": {"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {
        "AWS": ["123456789012", "arn:aws:iam::123456789012:root", "arn:aws-cn:iam::123456789012:role/a/b",
                "arn:aws:sts::123456789012:assumed-role/b/session"],
        "Service": "ec2.amazonaws.com", "Federated": "cognito-identity.amazonaws.com"}}}"#;
    assert!(Policy::parse_resource(json).is_ok());
}

// ---- properties -------------------------------------------------------------------------

proptest! {
    #[test]
    fn star_matches_every_action(action in "[a-z0-9-]{1,12}:[A-Za-z0-9*?]{0,30}") {
        prop_assert!(action_matches("*", &action));
    }

    #[test]
    fn an_action_matches_itself_in_any_case(
        action in "[a-z0-9-]{1,12}:[A-Za-z0-9]{1,30}",
        upper in any::<bool>(),
    ) {
        let pattern = if upper { action.to_uppercase() } else { action.to_lowercase() };
        prop_assert!(action_matches(&pattern, &action));
        let service = action.split(':').next().unwrap_or_default();
        let service_wide = format!("{service}:*");
        prop_assert!(action_matches(&service_wide, &action));
    }

    #[test]
    fn a_resource_matches_itself_and_its_prefix_star(
        resource in "arn:aws:[a-z0-9]{1,5}:[a-z0-9-]{0,12}:[0-9]{12}:[a-zA-Z0-9/_:-]{1,30}",
        cut in 0usize..60,
    ) {
        prop_assert!(resource_matches(&resource, &resource));
        let prefix: String = resource.chars().take(cut).collect();
        let pattern = format!("{prefix}*");
        prop_assert!(resource_matches(&pattern, &resource));
    }

    #[test]
    fn a_deny_anywhere_wins(allows in 0usize..4, deny_at in 0usize..4) {
        let allow = policy(r#"{"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*"}}"#);
        let deny = policy(r#"{"Statement": {"Effect": "Deny", "Action": "ec2:*", "Resource": "*"}}"#);
        let mut documents = vec![&allow; allows];
        documents.insert(deny_at.min(allows), &deny);
        let principal = role(HOME, "Appliance");
        let ctx = BTreeMap::new();
        let decision = decide(&principal, "ec2:RunInstances", "*", &ctx, &documents, None);
        prop_assert_eq!(decision, Decision::ExplicitDeny);
    }
}
