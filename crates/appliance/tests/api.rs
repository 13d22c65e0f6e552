//! The appliance end to end over HTTP, on the embedded cloud, on SQLite and on PostgreSQL:
//! discovery, policies by tag, runs, retention, image-level backups and the repository's
//! health check, restores, cancel, and the answers to bad requests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use bulwark_appliance::auth::Role;
use common::Harness;
use serde_json::{json, Value};

const TAGGED: &str = "i-0123456789abcdef0";
const UNTAGGED: &str = "i-0fedcba9876543210";

on_both!(
    discovery_finds_instances_with_tags_volumes_and_keys,
    a_policy_by_tag_keeps_two_restore_points_of_three_runs,
    a_policy_aws_would_refuse_is_refused_at_creation,
    a_cancelled_session_leaves_nothing,
    tokens_roles_and_bad_input_get_clear_answers,
    a_restore_is_validated_then_run_and_metrics_count_it,
    image_level_backups_keep_by_their_rules_and_restore,
    instances_of_one_run_are_processed_side_by_side,
);

fn nightly(h: &Harness, keep: u32) -> String {
    let policy = json!({
        "name": "nightly", "priority": 10,
        "selection": {"tags": {"backup": "nightly"}, "exclude_tags": {"backup": "never"}},
        "schedule": {"cron": "0 2 * * *", "time_zone": "Europe/Berlin"},
        "snapshots": {"keep": keep}
    });
    let created = h.admin("POST", "/api/v1/policies", Some(&policy.to_string()), 201);
    created["id"].as_str().unwrap().to_owned()
}

fn run(h: &Harness, policy: &str) -> serde_json::Value {
    let s = h.admin("POST", &format!("/api/v1/policies/{policy}/run"), None, 202);
    h.wait(s["id"].as_str().unwrap())
}

fn discovery_finds_instances_with_tags_volumes_and_keys(h: &Harness) {
    let session = h.discover();
    assert_eq!(session["status"], "succeeded", "{session}");
    let instances = h.admin("GET", "/api/v1/instances", None, 200);
    let ids: Vec<&str> = instances
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [TAGGED, UNTAGGED]);
    let web = &instances[0];
    assert_eq!(web["tags"]["backup"], "nightly");
    assert_eq!(web["instance_type"], "m6i.large");
    assert!(
        web["subnet"]
            .as_str()
            .unwrap()
            .starts_with("subnet-0222222222222"),
        "{web}"
    );
    assert_eq!(web["security_groups"].as_array().unwrap().len(), 1, "{web}");
    assert_eq!(web["availability_zone"], "us-east-1a");
    assert_eq!(web["volumes"].as_array().unwrap().len(), 3);
    assert_eq!(web["volumes"][0]["size_gib"], 8);
    assert_eq!(
        (
            &web["volumes"][0]["volume_type"],
            &web["volumes"][0]["iops"],
            &web["volumes"][0]["throughput"]
        ),
        (&json!("gp3"), &json!(3000), &json!(125)),
        "{web}"
    );
    assert!(
        web["volumes"][0]["key"].as_str().unwrap().contains(":key/"),
        "{web}"
    );
    assert!(
        web["volumes"][1]["key"]
            .as_str()
            .unwrap()
            .ends_with("alias/aws/ebs"),
        "{web}"
    );
    assert!(web["volumes"][2]["key"].is_null());
    assert!(web["policy"].is_null());
    // Every account in every region the estate names was read; each region's defaults kept.
    let accounts = h.admin("GET", "/api/v1/accounts", None, 200);
    let regions: usize = accounts
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["regions"].as_array().unwrap().len())
        .sum();
    assert_eq!(regions, session["items"].as_array().unwrap().len());
    assert!(accounts
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|a| a["regions"].as_array().unwrap())
        .all(|r| r["problem"].is_null()));
}

fn a_policy_by_tag_keeps_two_restore_points_of_three_runs(h: &Harness) {
    h.discover();
    let policy = nightly(h, 2);
    let before = h.snapshots();
    for _ in 0..3 {
        let s = run(h, &policy);
        assert_eq!(s["status"], "succeeded", "{s}");
        let items = s["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "only the tagged instance: {s}");
        assert_eq!(items[0]["instance"], TAGGED);
        // Retention runs as its own session after each run; wait for it too.
        std::thread::sleep(Duration::from_millis(300));
        let retention = h.admin("GET", "/api/v1/sessions?kind=retention&status=running", None, 200);
        for r in retention.as_array().unwrap() {
            h.wait(r["id"].as_str().unwrap());
        }
    }
    let points = h.admin(
        "GET",
        &format!("/api/v1/restore-points?instance={TAGGED}"),
        None,
        200,
    );
    assert_eq!(points.as_array().unwrap().len(), 2, "{points}");
    // Each snapshot says under which key it is: the volume's.
    let keys: Vec<(&str, &Value)> = points[0]["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["volume"].as_str().unwrap(), &s["key"]))
        .collect();
    assert_eq!(
        keys,
        [
            (
                "vol-0aaaaaaaaaaaaaaaa",
                &json!("arn:aws:kms:us-east-1:222222222222:key/22222222-aaaa-4bbb-8ccc-000000000001")
            ),
            (
                "vol-0bbbbbbbbbbbbbbbb",
                &json!("arn:aws:kms:us-east-1:222222222222:alias/aws/ebs")
            ),
            ("vol-0cccccccccccccccc", &Value::Null),
        ],
        "{points}"
    );
    let expired = h.admin(
        "GET",
        &format!("/api/v1/restore-points?instance={TAGGED}&expired=true"),
        None,
        200,
    );
    assert_eq!(expired.as_array().unwrap().len(), 3);
    // In the cloud: the two kept points' snapshots (3 volumes each), nothing of the untagged.
    let made: Vec<String> = h
        .snapshots()
        .into_iter()
        .filter(|s| !before.contains(s))
        .collect();
    assert_eq!(made.len(), 6, "{made:?}");
    assert!(
        made.iter()
            .all(|s| !s.contains("vol-0ddd") && !s.contains("vol-0eee")),
        "{made:?}"
    );
    let retention = h.admin("GET", "/api/v1/sessions?kind=retention", None, 200);
    assert_eq!(
        retention.as_array().unwrap().len(),
        1,
        "one run expired one point: {retention}"
    );
    let log = h.admin(
        "GET",
        &format!("/api/v1/sessions/{}/log", retention[0]["id"].as_str().unwrap()),
        None,
        200,
    );
    assert!(
        log.as_array()
            .unwrap()
            .iter()
            .any(|l| l["message"].as_str().unwrap().contains("ec2:DeleteSnapshot")),
        "{log}"
    );
    // The instance is protected by the policy, the other is reported unprotected.
    let report = h.admin("GET", "/api/v1/reports/protection", None, 200);
    assert_eq!(report["unprotected"], json!([UNTAGGED]));
    let instances = h.admin("GET", "/api/v1/instances", None, 200);
    assert_eq!(instances[0]["policy"], json!(policy));
    // Sessions list with filters and paging.
    let policies = h.admin(
        "GET",
        &format!("/api/v1/sessions?kind=policy&policy={policy}&limit=2"),
        None,
        200,
    );
    assert_eq!(policies.as_array().unwrap().len(), 2);
    let rest = h.admin(
        "GET",
        &format!("/api/v1/sessions?kind=policy&policy={policy}&limit=2&offset=2"),
        None,
        200,
    );
    assert_eq!(rest.as_array().unwrap().len(), 1);
}

fn a_policy_aws_would_refuse_is_refused_at_creation(h: &Harness) {
    h.discover();
    // The tagged instance has a volume under aws/ebs: its snapshots can never be shared with
    // another account, so a replica there is refused, naming the instance and the remedy.
    let policy = json!({
        "name": "offsite",
        "selection": {"tags": {"backup": "nightly"}},
        "replicas": [{"account": "333333333333", "region": "eu-west-1", "keep": 3}]
    });
    let (status, body) = h.call(
        "POST",
        "/api/v1/policies",
        Some(&h.admin),
        Some(&policy.to_string()),
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid-policy");
    let problem = &body["error"]["problems"][0];
    assert!(problem["at"].as_str().unwrap().contains(TAGGED), "{problem}");
    assert_eq!(problem["code"], "aws-managed-key-not-shareable");
    assert!(!problem["remedy"].as_str().unwrap().is_empty());
    // The same through validate, which saves nothing.
    let problems = h.admin(
        "POST",
        "/api/v1/policies/validate",
        Some(&policy.to_string()),
        200,
    );
    assert_eq!(problems[0]["code"], "aws-managed-key-not-shareable");
    // Backups with workers in the backup account need the snapshots shared there: refused
    // for the aws/ebs volume, at creation, with the remedy.
    let backups = json!({
        "name": "images",
        "selection": {"tags": {"backup": "nightly"}},
        "backups": {"workers": "backup-account", "keep_daily": 7}
    });
    let problems = h.admin(
        "POST",
        "/api/v1/policies/validate",
        Some(&backups.to_string()),
        200,
    );
    assert!(problems[0]["at"].as_str().unwrap().contains(TAGGED), "{problems}");
    assert!(
        problems[0]["at"].as_str().unwrap().contains("backup"),
        "{problems}"
    );
    assert_eq!(problems[0]["code"], "aws-managed-key-not-shareable");
    // Backups that keep nothing are refused on their own.
    let nothing = json!({
        "name": "images",
        "selection": {"tags": {"backup": "nightly"}},
        "backups": {"workers": "production-account"}
    });
    let problems = h.admin(
        "POST",
        "/api/v1/policies/validate",
        Some(&nothing.to_string()),
        200,
    );
    assert_eq!(problems[0]["at"], "backups", "{problems}");
    assert_eq!(h.admin("GET", "/api/v1/policies", None, 200), json!([]));
}

/// Waits for the retention sessions that follow a run.
fn wait_retention(h: &Harness) {
    std::thread::sleep(Duration::from_millis(300));
    let retention = h.admin("GET", "/api/v1/sessions?kind=retention&status=running", None, 200);
    for r in retention.as_array().unwrap() {
        h.wait(r["id"].as_str().unwrap());
    }
}

fn image_level_backups_keep_by_their_rules_and_restore(h: &Harness) {
    h.discover();
    let before = h.resources();
    let policy = json!({
        "name": "images",
        "selection": {"instances": [TAGGED]},
        "backups": {"workers": "production-account", "keep_last": 2}
    });
    let created = h.admin("POST", "/api/v1/policies", Some(&policy.to_string()), 201);
    let id = created["id"].as_str().unwrap();
    for _ in 0..3 {
        let s = run(h, id);
        assert_eq!(s["status"], "succeeded", "{s}");
        assert_eq!(s["items"][0]["operation"], "backup", "{s}");
        wait_retention(h);
    }
    let points = h.admin(
        "GET",
        &format!("/api/v1/restore-points?instance={TAGGED}"),
        None,
        200,
    );
    let points = points.as_array().unwrap();
    assert_eq!(points.len(), 2, "{points:?}");
    assert!(points.iter().all(|p| p["kind"] == "backup"), "{points:?}");
    assert_eq!(points[0]["backups"].as_array().unwrap().len(), 3, "{points:?}");
    let retention = h.admin("GET", "/api/v1/sessions?kind=retention", None, 200);
    assert_eq!(retention.as_array().unwrap().len(), 1, "{retention}");
    let retention = h.admin(
        "GET",
        &format!("/api/v1/sessions/{}", retention[0]["id"].as_str().unwrap()),
        None,
        200,
    );
    assert_eq!(retention["items"][0]["operation"], "forget", "{retention}");
    assert!(
        retention["items"][0]["message"]
            .as_str()
            .unwrap()
            .contains("forgotten"),
        "{retention}"
    );
    // The health check prunes what the forgotten point held alone and verifies the rest:
    // the repository holds the two kept points of each of the three volumes.
    let (status, _) = h.call(
        "POST",
        "/api/v1/repository/check",
        Some(&h.token(Role::Viewer)),
        None,
    );
    assert_eq!(status, 403);
    let check = h.admin("POST", "/api/v1/repository/check?read_data=true", None, 202);
    let check = h.wait(check["id"].as_str().unwrap());
    assert_eq!(check["status"], "succeeded", "{check}");
    assert_eq!(check["kind"], "health-check");
    let repository = h.admin("GET", "/api/v1/repository", None, 200);
    let health = &repository["last_health_check"];
    assert_eq!(health["clean"], true, "{repository}");
    assert_eq!(health["points"], 6, "{repository}");
    assert!(health["stored_bytes"].as_u64().unwrap() > 0, "{repository}");
    assert_eq!(health["session"], check["id"]);
    // Backups through workers leave nothing in the cloud (no worker, share, queue, grant or
    // temporary role) but one base snapshot per volume, the latest backup's, which the next
    // backup lists its changes since.
    let (bases, others): (Vec<String>, Vec<String>) = h
        .resources()
        .into_iter()
        .partition(|r| r.starts_with("snapshot snap-"));
    assert_eq!(others, before);
    assert_eq!(bases.len(), 3, "{bases:?}");
    assert_eq!(
        h.call("POST", "/api/v1/repository/check?fast=1", Some(&h.admin), None)
            .0,
        400
    );
    // The latest backup restores, through a worker in the production account.
    let restore = json!({"instance": TAGGED, "from": "backup", "to_account": "222222222222",
                         "to_region": "us-east-1", "workers": "production-account"})
    .to_string();
    let v = h.admin("POST", "/api/v1/restores/validate", Some(&restore), 200);
    assert_eq!(v["ok"], true, "{v}");
    let s = h.admin("POST", "/api/v1/restores", Some(&restore), 202);
    let done = h.wait(s["id"].as_str().unwrap());
    assert_eq!(done["status"], "succeeded", "{done}");
    assert!(
        done["items"][0]["message"].as_str().unwrap().contains("restored"),
        "{done}"
    );
}

fn a_cancelled_session_leaves_nothing(h: &Harness) {
    h.discover();
    let policy = nightly(h, 5);
    let before = h.resources();
    // Slow calls, so that the session is still running when it is cancelled.
    h.world.sim.set_latency(Duration::from_millis(400)).unwrap();
    let s = h.admin("POST", &format!("/api/v1/policies/{policy}/run"), None, 202);
    let id = s["id"].as_str().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    h.admin("POST", &format!("/api/v1/sessions/{id}/cancel"), None, 202);
    let done = h.wait(id);
    h.world.sim.set_latency(Duration::from_millis(5)).unwrap();
    assert_eq!(done["status"], "canceled", "{done}");
    assert_eq!(done["items"][0]["status"], "canceled", "{done}");
    assert_eq!(h.resources(), before, "the cancelled session left something");
    assert_eq!(h.admin("GET", "/api/v1/restore-points", None, 200), json!([]));
    // Cancelling it again: it is not running.
    let (status, body) = h.call(
        "POST",
        &format!("/api/v1/sessions/{id}/cancel"),
        Some(&h.admin),
        None,
    );
    assert_eq!(status, 409, "{body}");
}

fn tokens_roles_and_bad_input_get_clear_answers(h: &Harness) {
    // Health and the OpenAPI document need no token.
    assert_eq!(h.call("GET", "/api/v1/health", None, None).0, 200);
    let (status, doc) = h.call("GET", "/api/v1/openapi.json", None, None);
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/api/v1/policies",
        "/api/v1/sessions/{id}/cancel",
        "/api/v1/restore-points",
        "/api/v1/reports/protection",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from the OpenAPI document"
        );
    }
    // No token, an unknown one, a malformed header: 401.
    assert_eq!(h.call("GET", "/api/v1/sessions", None, None).0, 401);
    assert_eq!(h.call("GET", "/api/v1/sessions", Some("bwk_nope"), None).0, 401);
    // A viewer reads but changes nothing: 403, saying what it needs.
    let viewer = h.token(Role::Viewer);
    assert_eq!(h.call("GET", "/api/v1/policies", Some(&viewer), None).0, 200);
    let body = json!({"name": "p", "selection": {"tags": {"a": "b"}}, "snapshots": {"keep": 1}}).to_string();
    let (status, answer) = h.call("POST", "/api/v1/policies", Some(&viewer), Some(&body));
    assert_eq!(status, 403);
    assert!(
        answer["error"]["message"].as_str().unwrap().contains("admin"),
        "{answer}"
    );
    let operator = h.token(Role::Operator);
    assert_eq!(
        h.call("POST", "/api/v1/policies", Some(&operator), Some(&body)).0,
        403
    );
    assert_eq!(h.call("POST", "/api/v1/discovery", Some(&viewer), None).0, 403);
    // Bad bodies and queries: 400 naming the field.
    for (bad, field) in [
        (r#"{"name": "p", "selection": {"tags": 3}}"#, "selection.tags"),
        (
            r#"{"name": "p", "selection": {}, "snapshot": {"keep": 1}}"#,
            "snapshot",
        ),
        (
            r#"{"name": "p", "selection": {"accounts": ["12"]}}"#,
            "selection.accounts",
        ),
        (r#"{"name": 1}"#, "field name"),
        ("nope", "body"),
        ("", "body"),
    ] {
        let (status, answer) = h.call("POST", "/api/v1/policies", Some(&h.admin), Some(bad));
        assert_eq!(status, 400, "{bad}: {answer}");
        assert!(
            answer["error"]["message"].as_str().unwrap().contains(field),
            "{bad}: {answer}"
        );
    }
    let (status, answer) = h.call("GET", "/api/v1/sessions?status=sleeping", Some(&h.admin), None);
    assert_eq!(status, 400, "{answer}");
    let (status, _) = h.call("GET", "/api/v1/sessions?limit=-1", Some(&h.admin), None);
    assert_eq!(status, 400);
    // Unknown ids and routes: 404; a name taken: 409.
    assert_eq!(
        h.call("GET", "/api/v1/sessions/ses-0", Some(&h.admin), None).0,
        404
    );
    assert_eq!(
        h.call("POST", "/api/v1/policies/pol-0/run", Some(&h.admin), None)
            .0,
        404
    );
    assert_eq!(h.call("GET", "/api/v1/nothing", Some(&h.admin), None).0, 404);
    let ok = json!({"name": "p", "selection": {"instances": [TAGGED]}, "snapshots": {"keep": 1}}).to_string();
    h.admin("POST", "/api/v1/policies", Some(&ok), 201);
    assert_eq!(
        h.call("POST", "/api/v1/policies", Some(&h.admin), Some(&ok)).0,
        409
    );
    // Tokens: an admin makes one (shown once) and revokes it.
    let made = h.admin(
        "POST",
        "/api/v1/tokens",
        Some(r#"{"role": "viewer", "name": "ci"}"#),
        201,
    );
    let token = made["token"].as_str().unwrap();
    assert_eq!(h.call("GET", "/api/v1/sessions", Some(token), None).0, 200);
    let listed = h.admin("GET", "/api/v1/tokens", None, 200);
    assert!(
        listed.to_string().find(token).is_none(),
        "a token is never listed"
    );
    h.admin(
        "DELETE",
        &format!("/api/v1/tokens/{}", made["id"].as_str().unwrap()),
        None,
        204,
    );
    assert_eq!(h.call("GET", "/api/v1/sessions", Some(token), None).0, 401);
}

fn a_restore_is_validated_then_run_and_metrics_count_it(h: &Harness) {
    h.discover();
    let policy = nightly(h, 2);
    assert_eq!(run(h, &policy)["status"], "succeeded");
    // Into another account in the same region, the aws/ebs volume's snapshot cannot go (no copy
    // re-encrypts it on the way): refused, with the remedy.
    let refused = json!({"instance": TAGGED, "from": "snapshot", "to_account": "333333333333", "to_region": "us-east-1"}).to_string();
    let v = h.admin("POST", "/api/v1/restores/validate", Some(&refused), 200);
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["refusal"]["code"], "aws-managed-key-not-shareable");
    let (status, body) = h.call("POST", "/api/v1/restores", Some(&h.admin), Some(&refused));
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "aws-managed-key-not-shareable");
    assert!(!body["error"]["remedy"].as_str().unwrap().is_empty());
    // In its own account: the plan, then the session.
    let ok = json!({"instance": TAGGED, "from": "snapshot", "to_account": "222222222222", "to_region": "us-east-1"}).to_string();
    let v = h.admin("POST", "/api/v1/restores/validate", Some(&ok), 200);
    assert_eq!(v["ok"], true, "{v}");
    assert!(!v["plan"]["steps"].as_array().unwrap().is_empty(), "{v}");
    let (status, _) = h.call(
        "POST",
        "/api/v1/restores",
        Some(&h.token(Role::Viewer)),
        Some(&ok),
    );
    assert_eq!(status, 403);
    let s = h.admin("POST", "/api/v1/restores", Some(&ok), 202);
    let done = h.wait(s["id"].as_str().unwrap());
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["kind"], "restore");
    assert!(
        done["items"][0]["message"].as_str().unwrap().contains("restored"),
        "{done}"
    );
    let bad =
        json!({"instance": TAGGED, "from": "tape", "to_account": "222222222222", "to_region": "us-east-1"})
            .to_string();
    assert_eq!(
        h.call("POST", "/api/v1/restores", Some(&h.admin), Some(&bad)).0,
        400
    );
    // The metrics count what happened.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let text = agent
        .get(format!("{}/metrics", h.url))
        .header("Authorization", format!("Bearer {}", h.admin))
        .call()
        .unwrap()
        .into_body()
        .read_to_string()
        .unwrap();
    assert!(
        text.contains("bulwark_sessions{kind=\"restore\",status=\"succeeded\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("bulwark_sessions{kind=\"policy\",status=\"succeeded\"} 1"),
        "{text}"
    );
    // One volume, as a volume, in the zone asked for; a zone without volumes is a bad body.
    let one = json!({"instance": TAGGED, "from": "snapshot", "to_account": "222222222222", "to_region": "us-east-1",
                     "volumes": ["vol-0aaaaaaaaaaaaaaaa"], "zone": "us-east-1b"})
    .to_string();
    let s = h.admin("POST", "/api/v1/restores", Some(&one), 202);
    let done = h.wait(s["id"].as_str().unwrap());
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["items"][0]["operation"], "restore-volumes", "{done}");
    let message = done["items"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("restored volume of vol-0aaaaaaaaaaaaaaaa"),
        "{done}"
    );
    assert!(!message.contains("instance"), "no instance is launched: {done}");
    let unknown = json!({"instance": TAGGED, "from": "snapshot", "to_account": "222222222222", "to_region": "us-east-1",
                         "volumes": ["vol-0ffffffffffffffff"]})
    .to_string();
    let (status, body) = h.call("POST", "/api/v1/restores", Some(&h.admin), Some(&unknown));
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("unknown-volume")),
        "{body}"
    );
    let zone_only = json!({"instance": TAGGED, "from": "snapshot", "to_account": "222222222222", "to_region": "us-east-1",
                           "zone": "us-east-1b"})
    .to_string();
    let (status, body) = h.call("POST", "/api/v1/restores", Some(&h.admin), Some(&zone_only));
    assert_eq!(status, 400, "{body}");
    // The whole instance, left stopped in the subnet asked for; a subnet EC2 refuses, or a
    // network for a volume restore, is a bad body.
    let stopped = json!({"instance": TAGGED, "from": "snapshot", "to_account": "222222222222", "to_region": "us-east-1",
                         "subnet": "subnet-0123456789abcdef0", "security_groups": ["sg-0123456789abcdef0"], "stopped": true})
    .to_string();
    let s = h.admin("POST", "/api/v1/restores", Some(&stopped), 202);
    let done = h.wait(s["id"].as_str().unwrap());
    assert_eq!(done["status"], "succeeded", "{done}");
    for bad in [
        json!({"instance": TAGGED, "from": "snapshot", "to_account": "222222222222", "to_region": "us-east-1",
               "subnet": "subnet-1"}),
        json!({"instance": TAGGED, "from": "snapshot", "to_account": "222222222222", "to_region": "us-east-1",
               "volumes": ["vol-0aaaaaaaaaaaaaaaa"], "stopped": true}),
    ] {
        let (status, body) = h.call("POST", "/api/v1/restores", Some(&h.admin), Some(&bad.to_string()));
        assert_eq!(status, 400, "{bad}: {body}");
    }
    assert!(text.contains("bulwark_unprotected_instances 1"), "{text}");
    assert!(
        text.contains("bulwark_policy_seconds_since_success{policy=\"nightly\"}"),
        "{text}"
    );
    assert_eq!(
        agent
            .get(format!("{}/metrics", h.url))
            .call()
            .unwrap()
            .status()
            .as_u16(),
        401
    );
}

fn instances_of_one_run_are_processed_side_by_side(h: &Harness) {
    h.discover();
    let policy = json!({"name": "both", "selection": {"instances": [TAGGED, UNTAGGED]},
                        "snapshots": {"keep": 1}});
    let created = h.admin("POST", "/api/v1/policies", Some(&policy.to_string()), 201);
    let s = run(h, created["id"].as_str().unwrap());
    assert_eq!(s["status"], "succeeded", "{s}");
    let items = s["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert!(items.iter().all(|i| i["status"] == "succeeded"), "{s}");
    // Both ran in one account and region, within its limit of two at once: the log shows the
    // second engine session starting before the first ended.
    let log: Vec<String> = h
        .admin(
            "GET",
            &format!("/api/v1/sessions/{}/log", s["id"].as_str().unwrap()),
            None,
            200,
        )
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["message"].as_str().unwrap().to_owned())
        .collect();
    let started: Vec<usize> = log
        .iter()
        .enumerate()
        .filter(|(_, l)| l.contains(": engine session "))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(started.len(), 2, "{log:#?}");
    // The first line of a last step ("step 7/7: ...") is the end of the first to finish.
    let first_to_end = log
        .iter()
        .position(|l| {
            l.strip_prefix("step ")
                .and_then(|r| r.split_once(':'))
                .and_then(|(n, _)| n.split_once('/'))
                .is_some_and(|(a, b)| a == b)
        })
        .unwrap();
    assert!(
        started[1] < first_to_end,
        "the items ran one after the other: {log:#?}"
    );
}
