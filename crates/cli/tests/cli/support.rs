//! Helpers: run the binary, write temporary estates, check JSON shapes.

pub use std::collections::{BTreeMap, BTreeSet};
pub use std::path::{Path, PathBuf};
pub use std::process::Command;

pub use serde_json::{json, Value};

/// The path of the repository's example estate; found at run time, since a test binary another
/// clone built into a shared cache keeps that clone's `env!("CARGO_MANIFEST_DIR")`.
pub fn estate_path() -> &'static str {
    static PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let dir = std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo");
        format!("{dir}/../../examples/estate.toml")
    })
}

/// Ids of the example estate.
pub const WEB: &str = "i-0123456789abcdef0";
pub const DB: &str = "i-0fedcba9876543210";
pub const PROD: &str = "222222222222";
pub const DR: &str = "333333333333";
pub const APPLIANCE_PRINCIPAL: &str = "arn:aws:iam::111111111111:root";
pub const DR_EU_KEY: &str = "arn:aws:kms:eu-west-1:333333333333:key/33333333-aaaa-4bbb-8ccc-000000000002";
pub const DR_EXTERNAL_ID: &str = "bulwark-dr-7f3a";

pub const EXIT_OK: i32 = 0;
pub const EXIT_INPUT: i32 = 2;
pub const EXIT_REFUSED: i32 = 3;

/// A data directory removed when dropped.
pub struct DataDir(pub std::path::PathBuf);

impl DataDir {
    pub fn new(test: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("bulwark-cli-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        DataDir(dir)
    }
    pub fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `bulwark args...`; returns the exit code, stdout and stderr.
pub fn bulwark(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_bulwark"))
        .args(args)
        .output()
        .expect("run the bulwark binary");
    let code = out.status.code().expect("bulwark exited by a signal");
    (
        code,
        String::from_utf8(out.stdout).expect("stdout is UTF-8"),
        String::from_utf8(out.stderr).expect("stderr is UTF-8"),
    )
}

/// Runs `bulwark args...`, asserts the exit code, and parses stdout as JSON.
pub fn bulwark_json(args: &[&str], expected_code: i32) -> Value {
    let (code, stdout, stderr) = bulwark(args);
    assert_eq!(
        code, expected_code,
        "bulwark {args:?}: exit code\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("bulwark {args:?}: stdout is not JSON ({e}):\n{stdout}"))
}

/// `base` (like `["plan", "backup"]`) with `--estate` the example estate, then `rest`.
pub fn with_estate<'a>(base: &[&'a str], rest: &[&'a str]) -> Vec<&'a str> {
    let mut v = base.to_vec();
    v.extend(["--estate", estate_path()]);
    v.extend(rest);
    v
}

/// A copy of the example estate with one change, in the temporary directory; removed when
/// dropped, also when the test fails.
pub struct TempEstate {
    pub path: PathBuf,
    /// The 1-based line of the first changed character.
    pub line: usize,
}

impl TempEstate {
    /// Replaces the first occurrence of `from` with `to` in the example estate.
    pub fn broken(test: &str, from: &str, to: &str) -> Self {
        let original = std::fs::read_to_string(estate_path()).expect("read the example estate");
        assert!(
            original.contains(from),
            "the example estate no longer contains {from:?}"
        );
        let text = original.replacen(from, to, 1);
        let first_diff = original
            .bytes()
            .zip(text.bytes())
            .position(|(a, b)| a != b)
            .expect("the change changes the text");
        let line = original[..first_diff].matches('\n').count() + 1;
        Self::write(test, &text, line)
    }

    pub fn write(test: &str, text: &str, line: usize) -> Self {
        let path = std::env::temp_dir().join(format!("bulwark-cli-test-{test}-{}.toml", std::process::id()));
        std::fs::write(&path, text).expect("write the temporary estate");
        Self { path, line }
    }

    pub fn path(&self) -> &str {
        self.path.to_str().expect("temporary path is UTF-8")
    }
}

impl Drop for TempEstate {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Asserts that a malformed estate makes `plan backup` exit 2 with a message that locates the
/// problem (`FILE:LINE: FIELD: `) and says what is expected.
pub fn assert_estate_rejected(estate: &TempEstate, field: &str, expected: &str) {
    let (code, stdout, stderr) = bulwark(&["plan", "backup", "--estate", estate.path(), "--instance", DB]);
    assert_eq!(code, EXIT_INPUT, "stderr:\n{stderr}");
    assert!(stdout.is_empty(), "nothing on stdout, got:\n{stdout}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    let located = format!("{}:{}: {field}: ", estate.path(), estate.line);
    assert!(
        stderr.contains(&located),
        "stderr should contain {located:?}:\n{stderr}"
    );
    let line = stderr
        .lines()
        .find(|l| l.contains(&located))
        .expect("the located line");
    assert!(
        line.contains(expected),
        "the message should say {expected:?}:\n{line}"
    );

    // The same, as JSON on stdout.
    let doc = bulwark_json(
        &[
            "plan",
            "backup",
            "--estate",
            estate.path(),
            "--instance",
            DB,
            "--json",
        ],
        EXIT_INPUT,
    );
    assert_eq!(doc["error"]["code"], "invalid-estate", "{doc:#}");
    let message = doc["error"]["message"].as_str().expect("message");
    assert!(message.contains(&located), "{message}");
}

pub fn str_field<'a>(v: &'a Value, field: &str, what: &str) -> &'a str {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: {field:?} is not a string: {v:#}"))
}

pub fn array<'a>(v: &'a Value, field: &str, what: &str) -> &'a Vec<Value> {
    v[field]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: {field:?} is not an array: {v:#}"))
}

pub fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// `us-east-1`, `eu-west-1`, `us-gov-west-1`...: lowercase words and a final number.
pub fn is_region(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() >= 3
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts
            .last()
            .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// An IAM action, `service:Action`, the action possibly ending in a wildcard (`kms:ReEncrypt*`).
pub fn is_action(s: &str) -> bool {
    let Some((service, action)) = s.split_once(':') else {
        return false;
    };
    !service.is_empty()
        && service
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !action.is_empty()
        && action.starts_with(|c: char| c.is_ascii_uppercase())
        && action.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'*')
}

/// `arn:aws:iam::ACCOUNT:role/NAME` (with an optional path).
pub fn is_role_arn(s: &str) -> bool {
    s.strip_prefix("arn:aws:iam::")
        .and_then(|rest| rest.split_once(":role/"))
        .is_some_and(|(account, name)| is_account_id(account) && !name.is_empty())
}

/// The account and region of an `arn:aws:kms:REGION:ACCOUNT:...` ARN.
pub fn kms_arn_place(s: &str) -> Option<(&str, &str, &str)> {
    let rest = s.strip_prefix("arn:aws:kms:")?;
    let mut parts = rest.splitn(3, ':');
    let (region, account, resource) = (parts.next()?, parts.next()?, parts.next()?);
    (is_region(region) && is_account_id(account)).then_some((region, account, resource))
}

/// Asserts that `key` is how the binary writes a KMS key: a key ARN, or the AWS managed key
/// as its alias ARN `arn:aws:kms:REGION:ACCOUNT:alias/aws/ebs` (never bare `aws/ebs`).
pub fn assert_key_written_as_arn(key: &str, what: &str) {
    let (_, _, resource) = kms_arn_place(key).unwrap_or_else(|| panic!("{what}: {key:?} is not a KMS ARN"));
    if key.contains("aws/ebs") {
        assert_eq!(resource, "alias/aws/ebs", "{what}: {key}");
    } else {
        assert!(resource.starts_with("key/"), "{what}: {key}");
    }
}

/// Asserts the shape of a plan as `plan ... --json` prints it; returns the keys it mentions.
pub fn assert_plan_shape(plan: &Value, what: &str) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for list in ["steps", "cleanup"] {
        let steps = array(plan, list, what);
        if list == "steps" {
            assert!(!steps.is_empty(), "{what}: a plan has steps");
        }
        let rollback = plan["rollback"].as_array().cloned().unwrap_or_default();
        for step in steps.iter().chain(rollback.iter()) {
            let w = format!("{what}: {list} step {step}");
            for field in ["actor", "account", "region", "action", "resource", "why"] {
                let value = str_field(step, field, &w);
                assert!(!value.is_empty(), "{w}: empty {field}");
            }
            let actor = str_field(step, "actor", &w);
            assert!(
                actor == APPLIANCE_PRINCIPAL || is_role_arn(actor),
                "{w}: actor {actor}"
            );
            assert!(is_account_id(str_field(step, "account", &w)), "{w}");
            let region = str_field(step, "region", &w);
            assert!(region == "global" || is_region(region), "{w}: region {region}");
            assert!(is_action(str_field(step, "action", &w)), "{w}");
            for need in step["keys"].as_array().into_iter().flatten() {
                let key = need["key"].as_str().expect("a step's keys name their key");
                assert!(
                    need["usage"].is_string() && need["why"].is_string(),
                    "{w}: key {need}"
                );
                assert_key_written_as_arn(key, &w);
                keys.insert(key.to_owned());
            }
        }
    }
    for grant in array(plan, "key_grants", what) {
        let w = format!("{what}: key grant {grant}");
        let role = str_field(grant, "role", &w);
        assert!(role == APPLIANCE_PRINCIPAL || is_role_arn(role), "{w}");
        let key = str_field(grant, "key", &w);
        assert_key_written_as_arn(key, &w);
        keys.insert(key.to_owned());
        let actions = array(grant, "actions", &w);
        assert!(!actions.is_empty(), "{w}: no actions");
        for a in actions {
            let a = a.as_str().unwrap_or_else(|| panic!("{w}: action {a}"));
            assert!(a.starts_with("kms:") && is_action(a), "{w}: action {a}");
        }
        assert!(!str_field(grant, "why", &w).is_empty(), "{w}: empty why");
    }
    keys
}

/// Strings of a `Action` or `Resource` value: a string, or a non-empty array of strings.
pub fn string_or_strings<'a>(v: &'a Value, what: &str) -> Vec<&'a str> {
    match v {
        Value::String(s) => vec![s.as_str()],
        Value::Array(items) => {
            assert!(!items.is_empty(), "{what}: empty array");
            items
                .iter()
                .map(|i| {
                    i.as_str()
                        .unwrap_or_else(|| panic!("{what}: {i} is not a string"))
                })
                .collect()
        }
        other => panic!("{what}: {other} is neither a string nor an array"),
    }
}

/// Asserts that `doc` is an IAM policy document: a permissions policy (every statement has a
/// Resource, no Principal) or, with `trust`, a trust policy (a Principal, no Resource).
pub fn assert_policy_document(doc: &Value, trust: bool, what: &str) {
    assert!(doc.is_object(), "{what}: not an object: {doc}");
    assert_eq!(doc["Version"], "2012-10-17", "{what}: {doc:#}");
    let statements = array(doc, "Statement", what);
    assert!(!statements.is_empty(), "{what}: no statement");
    for st in statements {
        let w = format!("{what}: statement {st}");
        assert_eq!(st["Effect"], "Allow", "{w}");
        for action in string_or_strings(&st["Action"], &w) {
            assert!(is_action(action), "{w}: action {action:?}");
        }
        if let Some(sid) = st.get("Sid") {
            let sid = sid.as_str().expect("Sid is a string");
            assert!(
                !sid.is_empty() && sid.bytes().all(|b| b.is_ascii_alphanumeric()),
                "{w}: Sid {sid:?}"
            );
        }
        if let Some(cond) = st.get("Condition") {
            assert!(cond.is_object(), "{w}: Condition");
        }
        if trust {
            assert!(
                st.get("Resource").is_none(),
                "{w}: a trust policy has no Resource"
            );
            let principal = st["Principal"]
                .as_object()
                .unwrap_or_else(|| panic!("{w}: no Principal"));
            assert!(!principal.is_empty(), "{w}: empty Principal");
            for (kind, value) in principal {
                assert!(kind == "AWS" || kind == "Service", "{w}: Principal {kind}");
                assert!(value.is_string(), "{w}: Principal {kind}");
            }
            assert_eq!(st["Action"], "sts:AssumeRole", "{w}");
        } else {
            assert!(
                st.get("Principal").is_none(),
                "{w}: an IAM policy has no Principal"
            );
            for r in string_or_strings(&st["Resource"], &w) {
                assert!(r == "*" || r.starts_with("arn:"), "{w}: resource {r:?}");
            }
        }
    }
}

/// Asserts the shape of `policy plan ... --json` output.
pub fn assert_policies_shape(policies: &Value, what: &str) {
    let roles = array(policies, "roles", what);
    assert!(!roles.is_empty(), "{what}: no roles");
    for role in roles {
        let arn = str_field(role, "role", what);
        let w = format!("{what}: role {arn}");
        assert!(!str_field(role, "purpose", &w).is_empty(), "{w}: purpose");
        assert_policy_document(&role["policy"], false, &format!("{w}: policy"));
        if arn == APPLIANCE_PRINCIPAL {
            // The appliance's own identity is no role: nothing assumes it.
            assert!(role["trust"].is_null(), "{w}: trust {}", role["trust"]);
        } else {
            assert!(is_role_arn(arn), "{w}: not a role ARN");
            assert_policy_document(&role["trust"], true, &format!("{w}: trust"));
        }
    }
    let keys = array(policies, "keys", what);
    for key in keys {
        let arn = str_field(key, "key", what);
        let w = format!("{what}: key {arn}");
        assert!(
            !arn.contains("aws/ebs"),
            "{w}: the policy of the AWS managed key cannot be edited"
        );
        let (_, _, resource) = kms_arn_place(arn).unwrap_or_else(|| panic!("{w}: not a KMS ARN"));
        assert!(resource.starts_with("key/"), "{w}");
        let statements = array(key, "statements", &w);
        assert!(!statements.is_empty(), "{w}: no statements");
        let mut sids = BTreeSet::new();
        for st in statements {
            let ws = format!("{w}: statement {st}");
            let sid = str_field(st, "Sid", &ws);
            assert!(
                !sid.is_empty() && sid.bytes().all(|b| b.is_ascii_alphanumeric()),
                "{ws}: Sid"
            );
            assert!(
                sids.insert(sid.to_owned()),
                "{ws}: Sid {sid} used twice in one key policy"
            );
            assert_eq!(st["Effect"], "Allow", "{ws}");
            let principal = str_field(&st["Principal"], "AWS", &ws);
            assert!(is_role_arn(principal), "{ws}: Principal.AWS {principal}");
            assert_eq!(
                st["Resource"], "*",
                "{ws}: in a key policy, Resource is the key itself"
            );
            let actions = string_or_strings(&st["Action"], &ws);
            for a in &actions {
                assert!(a.starts_with("kms:") && is_action(a), "{ws}: action {a}");
            }
            if actions.contains(&"kms:CreateGrant") {
                assert_eq!(
                    actions,
                    ["kms:CreateGrant"],
                    "{ws}: CreateGrant alone, as it has a condition"
                );
                assert_eq!(
                    st["Condition"],
                    json!({ "Bool": { "kms:GrantIsForAWSResource": "true" } }),
                    "{ws}"
                );
            } else {
                assert!(st.get("Condition").is_none(), "{ws}");
            }
        }
    }
}

/// `(role, key) -> actions` of the non-implicit key grants of a plan.
pub fn explicit_grants(plan: &Value) -> BTreeMap<(String, String), BTreeSet<String>> {
    let mut out: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for g in plan["key_grants"].as_array().unwrap() {
        if g["implicit"] == true {
            continue;
        }
        let entry = out
            .entry((
                g["role"].as_str().unwrap().to_owned(),
                g["key"].as_str().unwrap().to_owned(),
            ))
            .or_default();
        for a in g["actions"].as_array().unwrap() {
            entry.insert(a.as_str().unwrap().to_owned());
        }
    }
    out
}

/// `(principal, key) -> actions` that the key policy statements of `policy plan` allow.
pub fn key_policy_grants(policies: &Value) -> BTreeMap<(String, String), BTreeSet<String>> {
    let mut out: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for key in policies["keys"].as_array().unwrap() {
        let arn = key["key"].as_str().unwrap();
        for st in key["statements"].as_array().unwrap() {
            let principal = st["Principal"]["AWS"].as_str().unwrap();
            let entry = out.entry((principal.to_owned(), arn.to_owned())).or_default();
            for a in string_or_strings(&st["Action"], "key statement") {
                entry.insert(a.to_owned());
            }
        }
    }
    out
}

/// The role entry of `arn` in `policy plan` output.
pub fn role_entry<'a>(policies: &'a Value, arn: &str) -> &'a Value {
    policies["roles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["role"] == arn)
        .unwrap_or_else(|| panic!("no role {arn} in {policies:#}"))
}

/// The demo's scenarios, as `bulwark plan` arguments (without `--estate`), in the demo's order.
pub fn demo_scenarios() -> Vec<Vec<String>> {
    [
        format!("snapshot --instance {WEB}"),
        format!("backup --instance {WEB} --workers backup-account"),
        format!("backup --instance {WEB} --workers production-account"),
        format!("backup --instance {DB}"),
        format!("replicate --instance {DB} --to-account {PROD} --to-region eu-west-1"),
        format!("replicate --instance {DB} --to-account {DR} --to-region eu-west-1 --target-key {DR_EU_KEY}"),
        format!("replicate --instance {WEB} --to-account {DR} --to-region us-east-1"),
        format!("restore --instance {DB} --from snapshot --to-account {PROD} --to-region us-east-1"),
        format!("restore --instance {DB} --from snapshot --to-account {PROD} --to-region eu-west-1"),
        format!("restore --instance {DB} --from snapshot --to-account {DR} --to-region us-east-1"),
        format!("restore --instance {WEB} --from snapshot --to-account {DR} --to-region eu-west-1 --target-key {DR_EU_KEY}"),
        format!("restore --instance {WEB} --from snapshot --to-account {DR} --to-region us-east-1"),
        format!("restore --instance {WEB} --from backup --to-account {DR} --to-region eu-west-1 --target-key {DR_EU_KEY} --workers backup-account"),
        format!("restore --instance {WEB} --from backup --to-account {DR} --to-region eu-west-1 --target-key {DR_EU_KEY} --workers production-account"),
        format!("restore --instance {WEB} --from backup --to-account {PROD} --to-region us-west-2"),
    ]
    .iter()
    .map(|s| s.split_whitespace().map(str::to_owned).collect())
    .collect()
}

/// `plan OPERATION ARGS --estate examples/estate.toml --json`.
pub fn plan_args<'a>(prefix: &[&'a str], scenario: &'a [String]) -> Vec<&'a str> {
    let mut v = prefix.to_vec();
    v.push(&scenario[0]);
    v.extend(["--estate", estate_path(), "--json"]);
    v.extend(scenario[1..].iter().map(String::as_str));
    v
}

pub fn file_name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}
