//! `bulwark serve` (the appliance: REST API, scheduler and sessions in one process) and
//! `bulwark token` (the API's tokens).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use bulwark_appliance::auth::Role;
use bulwark_appliance::db::settings::ESTATE;
use bulwark_appliance::{Appliance, Db, Settings};
use bulwark_model::{Estate, Region};
use clap::{Args, Subcommand};

use crate::args::CloudArgs;

/// `bulwark serve`.
#[derive(Args)]
pub struct ServeCommand {
    /// Where the API listens.
    #[arg(long, value_name = "ADDRESS", default_value = "127.0.0.1:8480")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Import the accounts, roles, keys and repository of this estate file (kept in the
    /// database: later starts need it no more). Instances are discovered.
    #[arg(long, value_name = "FILE")]
    pub estate: Option<PathBuf>,
    /// Discover this region in every account too (repeat; the regions the estate names are
    /// always discovered).
    #[arg(long = "region", value_name = "REGION")]
    pub regions: Vec<Region>,
    /// How often the scheduler looks for due runs, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub tick_seconds: u64,
    /// How often the estate is discovered, in minutes (0: only on demand).
    #[arg(long, value_name = "MINUTES", default_value_t = 60)]
    pub discovery_minutes: u64,
    /// How often the repository's health check (prune what retention forgot, then verify)
    /// runs, in hours (0: only on demand). The first runs this long after the database is made.
    #[arg(long, value_name = "HOURS", default_value_t = 24)]
    pub health_check_hours: u64,
    /// How many instances of a policy's run are processed at once.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub parallel: u16,
    /// How many engine sessions run at once in one account and region (AWS's quotas are per
    /// account and region).
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub per_region: u16,
    /// Called (POST, JSON) when a session ends in warning or failed; retried with back-off,
    /// its failures in the session's log. Policies may name their own besides.
    #[arg(long, value_name = "URL", value_parser = webhook_url)]
    pub webhook: Option<String>,
    /// A file holding the secret (32 bytes or more, readable by its owner only) every webhook
    /// call is signed with: `X-Bulwark-Signature: sha256=HMAC(TIMESTAMP.BODY)` beside
    /// `X-Bulwark-Timestamp`.
    #[arg(long, value_name = "FILE", value_parser = webhook_key)]
    pub webhook_secret_file: Option<bulwark_appliance::webhook::WebhookKey>,
    /// How long a session's lease lasts, in seconds: the sessions of an appliance that died are
    /// recovered this long after its last renewal.
    #[arg(long, value_name = "SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(2..=3600))]
    pub lease_seconds: u64,
    #[command(flatten)]
    pub cloud: CloudArgs,
}

/// The appliance's database.
#[derive(Args)]
pub struct DatabaseArgs {
    /// The database: `postgres://USER[:PASSWORD]@HOST[:PORT]/DB`, or by default SQLite in the
    /// data directory (`appliance.db`).
    #[arg(long, value_name = "URL", env = "BULWARK_DATABASE")]
    pub database: Option<String>,
}

impl DatabaseArgs {
    async fn open(&self, data_dir: &Path) -> anyhow::Result<Db> {
        let url = match &self.database {
            Some(url) => url.clone(),
            None => {
                std::fs::create_dir_all(data_dir)
                    .with_context(|| format!("creating {}", data_dir.display()))?;
                Db::sqlite_url(data_dir)
            }
        };
        Ok(Db::open(&url).await?)
    }
}

/// `bulwark token`.
#[derive(Subcommand)]
pub enum TokenCommand {
    /// Make an API token and print it (once: only its hash is kept).
    Create {
        /// What it may do: admin (everything), operator (runs and restores), viewer (reads).
        #[arg(long)]
        role: Role,
        /// A name, to tell tokens apart.
        #[arg(long, default_value = "")]
        name: String,
        #[command(flatten)]
        database: DatabaseArgs,
        /// The data directory (its SQLite database, unless --database is given).
        #[arg(
            long,
            value_name = "DIR",
            env = "BULWARK_DATA_DIR",
            default_value = "bulwark-data"
        )]
        data_dir: PathBuf,
    },
}

/// Runs `bulwark token`.
pub fn token(cmd: &TokenCommand) -> anyhow::Result<ExitCode> {
    let TokenCommand::Create {
        role,
        name,
        database,
        data_dir,
    } = cmd;
    let role = *role;
    let runtime = crate::io_runtime()?;
    let (token, info) = runtime.block_on(async {
        let db = database.open(data_dir).await?;
        anyhow::Ok(db.create_token(role, name).await?)
    })?;
    println!("{token}");
    eprintln!(
        "token {} ({}) made: keep it, it is not shown again",
        info.id,
        info.role.as_str()
    );
    Ok(ExitCode::SUCCESS)
}

/// Runs the appliance until interrupted (Ctrl-C or SIGTERM).
pub fn serve(cmd: &ServeCommand) -> anyhow::Result<ExitCode> {
    let runtime = crate::io_runtime()?;
    runtime.block_on(async {
        let db = cmd.database.open(&cmd.cloud.data_dir).await?;
        let estate = match &cmd.estate {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading the estate file {}", path.display()))?;
                Estate::parse(&path.display().to_string(), &text)?;
                db.set_setting(ESTATE, &text).await?;
                text
            }
            None => match db.setting(ESTATE).await? {
                Some(text) => text,
                None => bail!("the appliance has no estate yet: start it once with --estate FILE"),
            },
        };
        let estate = Estate::parse("the estate stored in the database", &estate)?;
        let (engines, _world) = crate::sessions::engines(&cmd.cloud, &estate)?;
        let settings = Settings {
            regions: cmd.regions.clone(),
            tick: Duration::from_secs(cmd.tick_seconds),
            discovery_every: (cmd.discovery_minutes > 0)
                .then(|| Duration::from_secs(cmd.discovery_minutes * 60)),
            health_check_every: (cmd.health_check_hours > 0)
                .then(|| Duration::from_secs(cmd.health_check_hours.saturating_mul(3600))),
            lease: Duration::from_secs(cmd.lease_seconds),
            webhook: cmd.webhook.clone(),
            webhook_key: cmd.webhook_secret_file.clone(),
            parallel: usize::from(cmd.parallel),
            per_region: usize::from(cmd.per_region),
            ..Settings::default()
        };
        let app = Appliance::new(db, estate, engines, settings);
        let listener = tokio::net::TcpListener::bind(cmd.listen)
            .await
            .with_context(|| format!("listening on {}", cmd.listen))?;
        eprintln!(
            "bulwark appliance on http://{} (API under /api/v1, described at /api/v1/openapi.json)",
            listener.local_addr().unwrap_or(cmd.listen)
        );
        bulwark_appliance::serve(app, listener, stopped()).await?;
        eprintln!("bulwark appliance stopped");
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

/// Completes on Ctrl-C or SIGTERM.
async fn stopped() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}

/// `--webhook-secret-file`: the key of the secret in the file (its trailing newline left out),
/// refused if others than its owner may read it.
fn webhook_key(path: &str) -> Result<bulwark_appliance::webhook::WebhookKey, String> {
    let secret = crate::args::read_secret_file(std::path::Path::new(path), "webhook secret file")
        .map_err(|e| e.to_string())?;
    let secret = secret.strip_suffix(b"\n").unwrap_or(&secret);
    bulwark_appliance::webhook::WebhookKey::new(secret).map_err(|e| format!("{path}: {e}"))
}

/// `--webhook`: an http:// or https:// URL.
fn webhook_url(url: &str) -> Result<String, String> {
    bulwark_appliance::webhook::check_url(url).map(|()| url.to_owned())
}
