//! Webhooks over real HTTP: a session that ends in `warning` calls the appliance's webhook and
//! its policy's, each retried with back-off until it answers 2xx or gives up, every failure in
//! the session's log, every call signed; a session that succeeds calls none. On SQLite and on
//! PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::{Backend, Harness};
use serde_json::{json, Value};

const TAGGED: &str = "i-0123456789abcdef0";

#[test]
fn sqlite() {
    webhooks(Backend::Sqlite);
}

#[test]
fn postgres() {
    webhooks(Backend::Postgres);
}

/// The secret the appliance signs its calls with.
const SECRET: &[u8] = b"a webhook secret of 32 bytes or more";

/// Whether a call carries a fresh timestamp and its HMAC-SHA256 under [`SECRET`], checked as a
/// receiver would, apart from the appliance's code.
fn signed(headers: &axum::http::HeaderMap, body: &str) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(timestamp), Some(signature)) = (header("x-bulwark-timestamp"), header("x-bulwark-signature"))
    else {
        return false;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let fresh = timestamp.parse::<u64>().is_ok_and(|t| now.abs_diff(t) < 300);
    let tag = signature
        .strip_prefix("sha256=")
        .and_then(|h| hex::decode(h).ok());
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET);
    fresh
        && tag.is_some_and(|tag| {
            ring::hmac::verify(&key, format!("{timestamp}.{body}").as_bytes(), &tag).is_ok()
        })
}

/// A webhook receiver on a loopback port that refuses (401) a call not signed with [`SECRET`],
/// answers 500 to its first `fail_first` signed calls, then 200; it keeps every signed body.
fn receiver(runtime: &tokio::runtime::Runtime, fail_first: usize) -> (String, Arc<Mutex<Vec<Value>>>) {
    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let r = Arc::clone(&received);
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let r = Arc::clone(&r);
            async move {
                if !signed(&headers, &body) {
                    return StatusCode::UNAUTHORIZED;
                }
                let mut all = r.lock().unwrap();
                all.push(serde_json::from_str(&body).unwrap_or(Value::Null));
                if all.len() <= fail_first {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::OK
                }
            }
        }),
    );
    runtime.spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

/// A URL nothing listens on.
fn closed_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}/hook", listener.local_addr().unwrap())
}

fn log_of(h: &Harness, session: &str) -> Vec<String> {
    h.admin("GET", &format!("/api/v1/sessions/{session}/log"), None, 200)
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["message"].as_str().unwrap().to_owned())
        .collect()
}

fn webhooks(backend: Backend) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (global, received) = receiver(&runtime, 2);
    let settings_url = global.clone();
    let Some(h) = Harness::start_with(backend, move |s| {
        s.webhook = Some(settings_url);
        s.webhook_backoff = Duration::from_millis(20);
        s.webhook_key = Some(bulwark_appliance::webhook::WebhookKey::new(SECRET).unwrap());
    }) else {
        return;
    };
    h.discover();
    let dead = closed_port();
    for (name, priority, webhook) in [("high", 5, None), ("low", 1, Some(dead.clone()))] {
        let policy = json!({"name": name, "priority": priority, "selection": {"instances": [TAGGED]},
                            "snapshots": {"keep": 2}, "webhook": webhook});
        h.admin("POST", "/api/v1/policies", Some(&policy.to_string()), 201);
    }
    let bad = json!({"name": "bad", "selection": {"instances": [TAGGED]}, "snapshots": {"keep": 1},
                     "webhook": "ftp://example.com/x"});
    let (status, body) = h.call("POST", "/api/v1/policies", Some(&h.admin), Some(&bad.to_string()));
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["problems"][0]["at"], "webhook", "{body}");

    // The low priority policy's item is skipped (the high one processes the instance): warning.
    let policies = h.admin("GET", "/api/v1/policies", None, 200);
    let id_of = |name: &str| {
        policies
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .map(|p| p["id"].as_str().unwrap().to_owned())
            .unwrap_or_else(|| panic!("{policies}"))
    };
    let s = h.admin(
        "POST",
        &format!("/api/v1/policies/{}/run", id_of("low")),
        None,
        202,
    );
    let session = s["id"].as_str().unwrap().to_owned();
    assert_eq!(h.wait(&session)["status"], "warning");

    // Both webhooks are tried: the appliance's answers 200 at its third attempt; the policy's
    // never answers and is given up after five.
    let deadline = Instant::now() + Duration::from_secs(30);
    let log = loop {
        let log = log_of(&h, &session);
        let done = log
            .iter()
            .any(|l| l.contains(&format!("webhook {dead} failed 5 times, given up")));
        if done {
            break log;
        }
        assert!(Instant::now() < deadline, "{log:#?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let lines = |needle: &str| log.iter().filter(|l| l.contains(needle)).count();
    assert_eq!(lines(&format!("webhook {global} attempt")), 2, "{log:#?}");
    assert_eq!(lines("failed: HTTP 500; trying again in"), 2, "{log:#?}");
    assert_eq!(
        lines(&format!("webhook {global} called: HTTP 200")),
        1,
        "{log:#?}"
    );
    assert_eq!(lines(&format!("webhook {dead} attempt")), 4, "{log:#?}");
    let bodies = received.lock().unwrap().clone();
    assert_eq!(bodies.len(), 3, "{bodies:?}");
    assert_eq!(bodies[2]["event"], "session.ended");
    assert_eq!(bodies[2]["session"]["id"], session.as_str());
    assert_eq!(bodies[2]["session"]["status"], "warning");
    assert_eq!(bodies[2]["failures"], json!([]));

    // A session that succeeds calls no webhook.
    let s = h.admin(
        "POST",
        &format!("/api/v1/policies/{}/run", id_of("high")),
        None,
        202,
    );
    let ok = s["id"].as_str().unwrap().to_owned();
    assert_eq!(h.wait(&ok)["status"], "succeeded");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(received.lock().unwrap().len(), 3);
    assert!(!log_of(&h, &ok).iter().any(|l| l.contains("webhook")));
}
