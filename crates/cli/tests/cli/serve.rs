//! `bulwark serve` as a process: killed with SIGKILL mid-session, then started again, the
//! session is failed and nothing it made is left; two appliances on one PostgreSQL, one
//! killed, the other takes its session over.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use super::support::*;

/// A `bulwark serve` process.
struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into()
}

impl Server {
    fn start(dir: &Path, database: Option<&str>) -> Server {
        let port = free_port();
        let mut args = vec![
            "serve".to_owned(),
            "--data-dir".into(),
            dir.display().to_string(),
            "--estate".into(),
            estate_path().into(),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--tick-seconds".into(),
            "1".into(),
            "--lease-seconds".into(),
            "4".into(),
            "--discovery-minutes".into(),
            "0".into(),
        ];
        if let Some(url) = database {
            args.extend(["--database".into(), url.to_owned()]);
        }
        let child = Command::new(env!("CARGO_BIN_EXE_bulwark"))
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let server = Server {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while agent()
            .get(format!("{}/api/v1/health", server.url))
            .call()
            .is_err()
        {
            assert!(Instant::now() < deadline, "bulwark serve did not answer");
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    fn call(&self, method: &str, path: &str, token: &str, body: &str) -> Value {
        let url = format!("{}{path}", self.url);
        let auth = format!("Bearer {token}");
        let response = if method == "GET" {
            agent().get(&url).header("Authorization", &auth).call()
        } else {
            agent().post(&url).header("Authorization", &auth).send(body)
        }
        .unwrap();
        let text = response.into_body().read_to_string().unwrap();
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    fn kill(mut self) {
        // SIGKILL: no cleanup, no graceful anything.
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

/// An embedded estate in `dir`, discovered by a first appliance, with a token and a policy
/// whose runs are slow (the embedded cloud answers late), so that they can be killed midway.
fn world(dir: &Path, database: Option<&str>) -> (String, String) {
    let d = dir.display().to_string();
    let (code, _, err) = bulwark(&[
        "embedded",
        "init",
        "--estate",
        estate_path(),
        "--data-dir",
        &d,
        "--data-mib",
        "1",
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = bulwark(&["token", "create", "--role", "root", "--data-dir", &d]);
    assert_eq!(code, 2, "a role that does not exist is a usage error");
    assert!(err.contains("expected admin, operator or viewer"), "{err}");
    // A webhook secret others may read is refused before anything starts, with the fix.
    let secret = dir.join("webhook.secret");
    std::fs::write(&secret, "0123456789abcdef0123456789abcdef\n").unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let secret = secret.display().to_string();
    let (code, _, err) = bulwark(&["serve", "--data-dir", &d, "--webhook-secret-file", &secret]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(&format!("chmod 600 {secret}")), "{err}");
    let mut args = vec!["token", "create", "--role", "admin", "--data-dir", &d];
    if let Some(url) = database {
        args.extend(["--database", url]);
    }
    let (code, token, err) = bulwark(&args);
    assert_eq!(code, 0, "{err}");
    let token = token.trim().to_owned();
    let server = Server::start(dir, database);
    let s = server.call("POST", "/api/v1/discovery", &token, "");
    wait(&server, &token, s["id"].as_str().unwrap());
    let policy =
        json!({"name": "nightly", "selection": {"tags": {"backup": "nightly"}}, "snapshots": {"keep": 3}});
    let created = server.call("POST", "/api/v1/policies", &token, &policy.to_string());
    let id = created["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{created}"))
        .to_owned();
    server.kill();
    bulwark_sim::Sim::open(&dir.join("cloud"))
        .unwrap()
        .set_latency(Duration::from_secs(3))
        .unwrap();
    (token, id)
}

fn wait(server: &Server, token: &str, session: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = server.call("GET", &format!("/api/v1/sessions/{session}"), token, "");
        if s["status"] != "running" {
            return s;
        }
        assert!(Instant::now() < deadline, "session {session} still running: {s}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn resources(dir: &Path) -> BTreeSet<String> {
    bulwark_sim::Sim::open(&dir.join("cloud"))
        .unwrap()
        .inventory()
        .resources
}

/// Starts a run, kills `victim` mid-session, and checks that `survivor` (started by
/// `start_survivor` once the victim is dead) fails the session and removes what it made.
fn killed_mid_session(
    dir: &Path,
    database: Option<&str>,
    victim: Server,
    start_survivor: impl FnOnce() -> Server,
    token: &str,
    policy: &str,
) {
    let before = resources(dir);
    let s = victim.call("POST", &format!("/api/v1/policies/{policy}/run"), token, "");
    let id = s["id"].as_str().unwrap_or_else(|| panic!("{s}")).to_owned();
    // Mid-session: the snapshots are made and pending.
    let deadline = Instant::now() + Duration::from_secs(20);
    while resources(dir) == before {
        assert!(Instant::now() < deadline, "the session made nothing");
        std::thread::sleep(Duration::from_millis(100));
    }
    victim.kill();
    let survivor = start_survivor();
    let done = wait(&survivor, token, &id);
    assert_eq!(done["status"], "failed", "{done}");
    assert!(done["message"].as_str().unwrap().contains("stopped"), "{done}");
    assert_eq!(done["items"][0]["status"], "failed", "{done}");
    let _ = database;
    // Its engine session was recovered from its journal: nothing it made is left.
    let deadline = Instant::now() + Duration::from_secs(30);
    while resources(dir) != before {
        assert!(
            Instant::now() < deadline,
            "left behind: {:?}",
            resources(dir).difference(&before).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let points = survivor.call("GET", "/api/v1/restore-points", token, "");
    assert_eq!(points, json!([]));
    // The journal it was recovered from is in the database, not in the data directory: an
    // appliance on another machine could have recovered it just the same.
    let files = std::fs::read_dir(dir.join("appliance").join("sessions"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(files, 0, "engine journals were written into the data directory");
}

#[test]
fn an_appliance_killed_mid_session_fails_it_on_restart_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (token, policy) = world(dir.path(), None);
    let victim = Server::start(dir.path(), None);
    killed_mid_session(
        dir.path(),
        None,
        victim,
        || Server::start(dir.path(), None),
        &token,
        &policy,
    );
}

#[test]
fn of_two_appliances_on_postgres_the_survivor_takes_over() {
    let Ok(admin) = std::env::var("BULWARK_TEST_POSTGRES") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "BULWARK_TEST_POSTGRES is unset: run scripts/test"
        );
        eprintln!("PostgreSQL test skipped: BULWARK_TEST_POSTGRES is unset (run scripts/test)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let name = format!("bulwark_cli_{}", std::process::id());
    let (code, _, err) = {
        let out = Command::new("psql")
            .args([admin.as_str(), "-c", &format!("CREATE DATABASE {name}")])
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            (),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert_eq!(code, 0, "{err}");
    let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
    let (token, policy) = world(dir.path(), Some(&url));
    let victim = Server::start(dir.path(), Some(&url));
    let survivor = Server::start(dir.path(), Some(&url));
    killed_mid_session(dir.path(), Some(&url), victim, move || survivor, &token, &policy);
}
