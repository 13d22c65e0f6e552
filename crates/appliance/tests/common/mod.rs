//! An appliance on the embedded cloud, served over HTTP on a loopback port, and a client for
//! it. Each test runs on SQLite and on PostgreSQL: `BULWARK_TEST_POSTGRES` (set by
//! scripts/test, which starts a throwaway server) is the admin URL; each test makes a database
//! of its own there.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bulwark_appliance::auth::Role;
use bulwark_appliance::{Appliance, Db, Settings};
use bulwark_embedded::{all_operations, plans, DataSize, Embedded, Grants};
use bulwark_model::Estate;
use serde_json::Value;

pub const POSTGRES_VAR: &str = "BULWARK_TEST_POSTGRES";

/// Which database a test runs on.
#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The running appliance and what the test needs of it.
pub struct Harness {
    pub world: Arc<Embedded>,
    pub url: String,
    pub admin: String,
    pub runtime: tokio::runtime::Runtime,
    pub app: Arc<Appliance>,
    _dir: tempfile::TempDir,
}

fn dir_and_runtime() -> (tempfile::TempDir, tokio::runtime::Runtime) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    (tempfile::tempdir().unwrap(), runtime)
}

/// A database of `backend` with no appliance on it (so no scheduler acts on it), its runtime
/// and the directory that holds it; `None` as for [`Harness::start`].
pub fn bare_database(backend: Backend) -> Option<(Db, tokio::runtime::Runtime, tempfile::TempDir)> {
    let (dir, runtime) = dir_and_runtime();
    let url = database(backend, dir.path(), &runtime)?;
    let db = runtime.block_on(Db::open(&url)).unwrap();
    Some((db, runtime, dir))
}

/// A database URL for `backend`, or `None` (the test is skipped) for PostgreSQL outside CI
/// when scripts/test did not start it.
fn database(backend: Backend, dir: &std::path::Path, runtime: &tokio::runtime::Runtime) -> Option<String> {
    match backend {
        Backend::Sqlite => Some(Db::sqlite_url(dir)),
        Backend::Postgres => {
            let admin = match std::env::var(POSTGRES_VAR) {
                Ok(u) if !u.is_empty() => u,
                _ if std::env::var_os("CI").is_some() => {
                    panic!("PostgreSQL was not started: {POSTGRES_VAR} is unset; run the tests through scripts/test")
                }
                _ => {
                    let _ = writeln!(
                        std::io::stderr(),
                        "PostgreSQL tests skipped: {POSTGRES_VAR} is unset (run scripts/test)"
                    );
                    return None;
                }
            };
            let name = format!(
                "bulwark_{}",
                dir.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .to_lowercase()
                    .replace(|c: char| !c.is_ascii_alphanumeric(), "_")
            );
            runtime.block_on(async {
                sqlx::any::install_default_drivers();
                let pool = sqlx::AnyPool::connect(&admin).await.expect("PostgreSQL answers");
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&pool)
                    .await
                    .unwrap();
            });
            let base = admin.rsplit_once('/').unwrap().0;
            Some(format!("{base}/{name}"))
        }
    }
}

/// The example estate, made real in an embedded cloud with `data` bytes per volume.
pub fn estate() -> Estate {
    Estate::parse(
        "examples/estate.toml",
        include_str!("../../../../examples/estate.toml"),
    )
    .unwrap()
}

impl Harness {
    /// An appliance on `backend`, with discovery on demand only and a fast scheduler.
    pub fn start(backend: Backend) -> Option<Harness> {
        Harness::start_with(backend, |_| {})
    }

    /// The same, with settings changed by `tweak`.
    pub fn start_with(backend: Backend, tweak: impl FnOnce(&mut Settings)) -> Option<Harness> {
        let (dir, runtime) = dir_and_runtime();
        let url = database(backend, dir.path(), &runtime)?;
        let estate = estate();
        let grants =
            Grants::from_plans(&estate, &plans(&estate, &all_operations(&estate))).with_appliance(&estate);
        let world = Arc::new(
            Embedded::create(
                &dir.path().join("world"),
                &estate,
                &grants,
                DataSize {
                    bytes_per_volume: 1 << 20,
                },
            )
            .unwrap(),
        );
        let w = Arc::clone(&world);
        let engines: bulwark_appliance::EngineFactory = Arc::new(move |estate| {
            w.engine_for(estate)
                .with_timing(Duration::from_millis(5), Duration::from_millis(200))
        });
        let mut settings = Settings {
            tick: Duration::from_millis(200),
            discovery_every: None,
            lease: Duration::from_secs(5),
            ..Settings::default()
        };
        tweak(&mut settings);
        let (app, address, admin) = runtime.block_on(async {
            let db = Db::open(&url).await.unwrap();
            let (admin, _) = db.create_token(Role::Admin, "test").await.unwrap();
            let app = Appliance::new(db, estate, engines, settings);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let address = listener.local_addr().unwrap();
            tokio::spawn(bulwark_appliance::serve(
                Arc::clone(&app),
                listener,
                std::future::pending(),
            ));
            (app, address, admin)
        });
        Some(Harness {
            world,
            url: format!("http://{address}"),
            admin,
            runtime,
            app,
            _dir: dir,
        })
    }

    /// A token of `role`.
    pub fn token(&self, role: Role) -> String {
        self.runtime
            .block_on(self.app.db().create_token(role, "test"))
            .unwrap()
            .0
    }

    /// A request: answers the status and the JSON body (`Null` if none).
    pub fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> (u16, Value) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        let url = format!("{}{path}", self.url);
        let auth = token.map(|t| format!("Bearer {t}"));
        let response = match (method, body) {
            ("GET", _) => {
                let mut r = agent.get(&url);
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.call()
            }
            ("DELETE", _) => {
                let mut r = agent.delete(&url);
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.call()
            }
            (m, body) => {
                let mut r = match m {
                    "POST" => agent.post(&url),
                    "PUT" => agent.put(&url),
                    other => panic!("method {other}"),
                };
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.header("Content-Type", "application/json")
                    .send(body.unwrap_or(""))
            }
        }
        .unwrap();
        let status = response.status().as_u16();
        let text = response.into_body().read_to_string().unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// A GET whose answer is not JSON: its status, content type and bytes.
    pub fn get_bytes(&self, path: &str, token: &str) -> (u16, String, Vec<u8>) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let response = agent
            .get(&format!("{}{path}", self.url))
            .header("Authorization", &format!("Bearer {token}"))
            .call()
            .unwrap();
        let status = response.status().as_u16();
        let kind = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let bytes = response
            .into_body()
            .with_config()
            .limit(1 << 30)
            .read_to_vec()
            .unwrap();
        (status, kind, bytes)
    }

    /// As the admin, expecting `status`.
    pub fn admin(&self, method: &str, path: &str, body: Option<&str>, status: u16) -> Value {
        let (got, value) = self.call(method, path, Some(&self.admin), body);
        assert_eq!(got, status, "{method} {path}: {value}");
        value
    }

    /// Waits for a session to end; answers it with its items.
    pub fn wait(&self, session: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let s = self.admin("GET", &format!("/api/v1/sessions/{session}"), None, 200);
            if s["status"] != "running" {
                return s;
            }
            assert!(Instant::now() < deadline, "session {session} still running: {s}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Discovers the estate, waiting for the session.
    pub fn discover(&self) -> Value {
        let s = self.admin("POST", "/api/v1/discovery", None, 202);
        self.wait(s["id"].as_str().unwrap())
    }

    /// The embedded cloud's snapshots, as (id, volume) lines.
    pub fn snapshots(&self) -> Vec<String> {
        self.world
            .sim
            .inventory()
            .resources
            .iter()
            .filter(|r| r.starts_with("snapshot "))
            .cloned()
            .collect()
    }

    /// Every resource the embedded cloud holds.
    pub fn resources(&self) -> Vec<String> {
        self.world.sim.inventory().resources.iter().cloned().collect()
    }
}

/// Runs a scenario on SQLite and on PostgreSQL.
#[macro_export]
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[test] fn $name() { if let Some(h) = $crate::common::Harness::start($crate::common::Backend::Sqlite) { super::$name(&h) } })*
        }
        mod postgres {
            $(#[test] fn $name() { if let Some(h) = $crate::common::Harness::start($crate::common::Backend::Postgres) { super::$name(&h) } })*
        }
    };
}
