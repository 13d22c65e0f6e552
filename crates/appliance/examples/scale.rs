//! The appliance's nightly control work at scale, on the embedded cloud: an estate of
//! `--instances` instances (two 1 GiB volumes each, no data) spread over `--accounts` accounts
//! and four regions. It measures, through the REST API of an appliance on SQLite:
//!
//! - discovery of every account and region;
//! - policy evaluation and planning of one nightly run (`POST /api/v1/policies/validate` of a
//!   policy by tag: the owners of every instance, and the planner over each selected one);
//! - the retention pass's decision (three snapshot restore points per instance, `keep` 2: which
//!   expire), as `Appliance::expired_points` computes it for a retention session;
//!
//! and, while they run, the latency of `GET /api/v1/sessions?limit=50` from a second client;
//! then the peak memory of the process and the size of the database.
//!
//! ```sh
//! cargo run --release -p bulwark-appliance --example scale -- --instances 10000 --accounts 100
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bulwark_appliance::auth::Role;
use bulwark_appliance::db::points::PointKind;
use bulwark_appliance::{Appliance, Db, Settings};
use bulwark_embedded::{plans, DataSize, Embedded, Grants};
use bulwark_engine::SnapshotPoint;
use bulwark_model::Estate;
use bulwark_plan::Operation;
use serde_json::{json, Value};

const REGIONS: [&str; 4] = ["us-east-1", "us-west-2", "eu-west-1", "ap-southeast-2"];

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |v| v.parse().expect("a number"))
}

/// The estate file: accounts with their roles, instances spread evenly, nine in ten tagged.
fn estate_text(instances: usize, accounts: usize) -> String {
    let mut t = String::from(
        "[appliance]\naccount = \"111111111111\"\nworker_deployment_role = \"arn:aws:iam::111111111111:role/Deploy\"\n",
    );
    for a in 0..accounts {
        let id = 200_000_000_000u64 + a as u64;
        writeln!(
            t,
            "[[account]]\nid = \"{id}\"\nbackup_role = \"arn:aws:iam::{id}:role/Backup\"\nrestore_role = \"arn:aws:iam::{id}:role/Restore\""
        )
        .unwrap();
    }
    for i in 0..instances {
        let account = 200_000_000_000u64 + (i % accounts) as u64;
        let region = REGIONS[(i / accounts) % REGIONS.len()];
        let tags = if i % 10 == 9 {
            "role = \"scratch\""
        } else {
            "backup = \"nightly\""
        };
        writeln!(
            t,
            "[[instance]]\nid = \"i-{i:017x}\"\naccount = \"{account}\"\nregion = \"{region}\"\ntags = {{ {tags} }}\nvolumes = [ {{ id = \"vol-{:017x}\", size_gib = 1 }}, {{ id = \"vol-{:017x}\", size_gib = 1 }} ]",
            2 * i,
            2 * i + 1
        )
        .unwrap();
    }
    t
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

struct Client {
    agent: ureq::Agent,
    url: String,
    token: String,
}

impl Client {
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.url);
        let auth = format!("Bearer {}", self.token);
        let response = match (method, body) {
            ("GET", _) => self.agent.get(&url).header("Authorization", &auth).call(),
            (_, body) => self
                .agent
                .post(&url)
                .header("Authorization", &auth)
                .header("Content-Type", "application/json")
                .send(body.map(Value::to_string).unwrap_or_default()),
        }
        .unwrap();
        let status = response.status().as_u16();
        let text = response.into_body().read_to_string().unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    fn wait(&self, session: &str) -> Value {
        loop {
            let (_, s) = self.call("GET", &format!("/api/v1/sessions/{session}"), None);
            if s["status"] != "running" {
                return s;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn main() {
    let instances = arg("--instances", 10_000);
    let accounts = arg("--accounts", 100);
    let dir = tempfile::tempdir().unwrap();
    println!(
        "estate: {instances} instances, {accounts} accounts, {} regions",
        REGIONS.len()
    );

    let started = Instant::now();
    let estate = Estate::parse("scale.toml", &estate_text(instances, accounts)).unwrap();
    let snapshots: Vec<Operation> = estate
        .instances
        .iter()
        .map(|i| Operation::Snapshot {
            instance: i.id.clone(),
        })
        .collect();
    let grants = Grants::from_plans(&estate, &plans(&estate, &snapshots)).with_appliance(&estate);
    let world = Arc::new(
        Embedded::create(
            &dir.path().join("world"),
            &estate,
            &grants,
            DataSize { bytes_per_volume: 0 },
        )
        .unwrap(),
    );
    println!(
        "setup: embedded cloud made in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let w = Arc::clone(&world);
    let engines: bulwark_appliance::EngineFactory = Arc::new(move |estate| w.engine_for(estate));
    let settings = Settings {
        discovery_every: None,
        health_check_every: None,
        ..Settings::default()
    };
    let db_path = dir.path().join("appliance.db");
    let (app, url, token) = runtime.block_on(async {
        let db = Db::open(&Db::sqlite_url(dir.path())).await.unwrap();
        let (token, _) = db.create_token(Role::Admin, "scale").await.unwrap();
        let app = Appliance::new(db, estate.clone(), engines, settings);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(bulwark_appliance::serve(
            Arc::clone(&app),
            listener,
            std::future::pending(),
        ));
        (app, url, token)
    });
    let agent = || -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(600)))
            .build()
            .into()
    };
    let client = Client {
        agent: agent(),
        url: url.clone(),
        token: token.clone(),
    };

    // A second client lists sessions while the work runs.
    let stop = Arc::new(AtomicBool::new(false));
    let latencies = Arc::new(Mutex::new(Vec::<Duration>::new()));
    let lister = {
        let (stop, latencies) = (Arc::clone(&stop), Arc::clone(&latencies));
        let client = Client {
            agent: agent(),
            url,
            token,
        };
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let at = Instant::now();
                let (status, _) = client.call("GET", "/api/v1/sessions?limit=50", None);
                assert_eq!(status, 200);
                latencies.lock().unwrap().push(at.elapsed());
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };

    let mut total = 0.0;
    let at = Instant::now();
    let (_, s) = client.call("POST", "/api/v1/discovery", None);
    let done = client.wait(s["id"].as_str().unwrap());
    let discovery = at.elapsed().as_secs_f64();
    total += discovery;
    let (_, found) = client.call("GET", "/api/v1/instances", None);
    println!(
        "discovery: {discovery:.1} s, {} of {} account-regions, {} instances ({})",
        done["items"]
            .as_array()
            .map_or(0, |i| i.iter().filter(|i| i["status"] == "succeeded").count()),
        done["items"].as_array().map_or(0, Vec::len),
        found.as_array().map_or(0, Vec::len),
        done["status"]
    );

    let policy = json!({"name": "nightly", "selection": {"tags": {"backup": "nightly"}},
                        "schedule": {"cron": "0 2 * * *"}, "snapshots": {"keep": 2}});
    let at = Instant::now();
    let (status, problems) = client.call("POST", "/api/v1/policies/validate", Some(&policy));
    let planning = at.elapsed().as_secs_f64();
    total += planning;
    println!(
        "policy evaluation and planning of the nightly run: {planning:.2} s (HTTP {status}, {} problems)",
        problems.as_array().map_or(0, Vec::len)
    );
    let (_, created) = client.call("POST", "/api/v1/policies", Some(&policy));
    let policy_id = created["id"].as_str().unwrap().to_owned();

    // Three restore points per selected instance, as three nightly runs would leave them.
    let at = Instant::now();
    runtime.block_on(async {
        let mut next = 0u64;
        for i in estate.instances.iter().filter(|i| i.tags.contains_key("backup")) {
            for _ in 0..3 {
                let point: Vec<SnapshotPoint> = i
                    .volumes
                    .iter()
                    .map(|v| {
                        next += 1;
                        SnapshotPoint {
                            volume: v.id.clone(),
                            account: i.account.clone(),
                            region: i.region.clone(),
                            snapshot: format!("snap-{next:017x}").parse().unwrap(),
                            key: v.key.clone(),
                            session: "scale".into(),
                            instance: None,
                        }
                    })
                    .collect();
                app.db()
                    .add_point(
                        i.id.as_str(),
                        Some(&policy_id),
                        PointKind::Snapshot,
                        "scale",
                        &point,
                    )
                    .await
                    .unwrap();
            }
        }
    });
    println!(
        "setup: restore points recorded in {:.1} s",
        at.elapsed().as_secs_f64()
    );
    let at = Instant::now();
    let record = runtime.block_on(app.db().policy(&policy_id)).unwrap().unwrap();
    let expired = runtime.block_on(app.expired_points(&record)).unwrap();
    let retention = at.elapsed().as_secs_f64();
    total += retention;
    println!(
        "retention pass (which restore points expire): {retention:.2} s, {} expire",
        expired.len()
    );

    stop.store(true, Ordering::SeqCst);
    lister.join().unwrap();
    let mut l = latencies.lock().unwrap().clone();
    l.sort();
    let p = |q: f64| {
        l.get(((l.len() as f64 * q).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or_default()
    };
    println!(
        "session listing while it ran: {} requests, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        l.len(),
        p(0.5).as_secs_f64() * 1e3,
        p(0.99).as_secs_f64() * 1e3,
        l.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
    let db_bytes: u64 = ["", "-wal"]
        .iter()
        .filter_map(|s| std::fs::metadata(format!("{}{s}", db_path.display())).ok())
        .map(|m| m.len())
        .sum();
    println!(
        "nightly control work in all: {total:.1} s; peak memory {:.0} MiB; database {:.1} MiB",
        peak_rss_mib(),
        db_bytes as f64 / (1 << 20) as f64
    );
}
