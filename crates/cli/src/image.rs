//! `bulwark repo ...` and `bulwark image ...`: the repository and image-level backups of
//! local block sources (files and block devices).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bulwark_mover::{FileSource, FileTarget, Progress, VolumeSource};
use bulwark_repo::{InitOptions, Manifest, ObjectLock, ObjectState, Repository, Retention, Secret};
use bulwark_storage::{Backend, LocalBackend};
use clap::{Args, Subcommand};
use serde_json::json;

use crate::args::read_secret_file;
use crate::render::pretty;

/// Where the repository is and how to open it; every repository command takes these.
#[derive(Args)]
pub struct RepoArgs {
    /// The repository: a directory, or s3://BUCKET/PREFIX.
    #[arg(long, value_name = "URL", env = "BULWARK_REPOSITORY")]
    pub repo: String,
    /// A file whose first line is the repository passphrase.
    #[arg(
        long,
        value_name = "FILE",
        env = "BULWARK_PASSWORD_FILE",
        conflicts_with = "key_file"
    )]
    pub password_file: Option<PathBuf>,
    /// A file holding a 256-bit key (64 hex digits) that wraps the repository key; stands in
    /// for a KMS key.
    #[arg(long, value_name = "FILE", env = "BULWARK_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// An S3-compatible endpoint instead of AWS's, for s3:// repositories.
    #[arg(long, value_name = "URL", env = "BULWARK_S3_ENDPOINT")]
    pub endpoint_url: Option<String>,
}

#[derive(Subcommand)]
pub enum RepoCommand {
    /// Create a repository.
    Init {
        #[command(flatten)]
        repo: RepoArgs,
        /// Create it without encryption (data readable by whoever can read the storage).
        #[arg(long, conflicts_with_all = ["password_file", "key_file"])]
        no_encryption: bool,
        /// Make every backup immutable with Object Lock in this mode (governance: only users
        /// allowed to bypass it can shorten a retention; compliance: no one can). The store must
        /// retain: an S3 bucket made with Object Lock, or a directory (emulated).
        #[arg(
            long,
            value_name = "MODE",
            value_parser = ["governance", "compliance"],
            requires = "lock_days"
        )]
        object_lock: Option<String>,
        /// Days a restore point stays retained after its backup started (with --object-lock).
        #[arg(long, value_name = "N", requires = "object_lock")]
        lock_days: Option<u32>,
    },
}

#[derive(Subcommand)]
pub enum ImageCommand {
    /// Back up a file or block device as a restore point of a volume.
    Backup {
        #[command(flatten)]
        repo: RepoArgs,
        /// The file or block device to read.
        #[arg(long, value_name = "PATH")]
        source: PathBuf,
        /// The volume the restore point belongs to (an EBS volume id, or any name).
        #[arg(long, value_name = "ID")]
        volume_id: String,
        /// Read only these blocks (indexes, one per line) and build on the volume's latest
        /// restore point.
        #[arg(long, value_name = "FILE")]
        changed_blocks: Option<PathBuf>,
        /// Index the files of the restore point (paths, sizes and times), for `bulwark files
        /// find`.
        #[arg(long)]
        file_index: bool,
        #[command(flatten)]
        run: RunArgs,
    },
    /// List restore points.
    List {
        #[command(flatten)]
        repo: RepoArgs,
        /// Only this volume's.
        #[arg(long, value_name = "ID")]
        volume_id: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Restore a restore point into a file or block device.
    Restore {
        #[command(flatten)]
        repo: RepoArgs,
        /// The restore point (its id, or a unique prefix of it).
        #[arg(long, value_name = "ID")]
        point: String,
        /// The file (created sparse) or block device to write.
        #[arg(long, value_name = "PATH")]
        target: PathBuf,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Check the repository; with --read-data, read and authenticate every block.
    Verify {
        #[command(flatten)]
        repo: RepoArgs,
        /// Read every pack and authenticate every block.
        #[arg(long)]
        read_data: bool,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Remove restore points by a retention policy (their blocks go at the next prune).
    Forget {
        #[command(flatten)]
        repo: RepoArgs,
        /// Keep the N newest points of each volume.
        #[arg(long, value_name = "N", default_value_t = 0)]
        keep_last: u32,
        /// Keep the newest point of each of the last N days that have one.
        #[arg(long, value_name = "N", default_value_t = 0)]
        keep_daily: u32,
        /// Keep the newest point of each of the last N weeks that have one.
        #[arg(long, value_name = "N", default_value_t = 0)]
        keep_weekly: u32,
        /// Keep the newest point of each of the last N months that have one.
        #[arg(long, value_name = "N", default_value_t = 0)]
        keep_monthly: u32,
        /// Keep the newest point of each of the last N years that have one.
        #[arg(long, value_name = "N", default_value_t = 0)]
        keep_yearly: u32,
        /// Show what would be removed, remove nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete the blocks no restore point needs.
    Prune {
        #[command(flatten)]
        repo: RepoArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Options of long-running commands.
#[derive(Args)]
pub struct RunArgs {
    /// Print a JSON result instead of text.
    #[arg(long)]
    pub json: bool,
    /// Threads (default: cores + 2).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
}

impl RunArgs {
    fn threads(&self) -> usize {
        self.threads.unwrap_or_else(bulwark_mover::default_threads).max(1)
    }
}

impl RepoArgs {
    fn backend(&self) -> anyhow::Result<Arc<dyn Backend>> {
        if self.repo.starts_with("s3://") {
            let options = bulwark_s3::S3Options {
                endpoint_url: self.endpoint_url.clone(),
                region: None,
                credentials: None,
            };
            return Ok(Arc::new(bulwark_s3::S3Backend::open(
                &self.repo,
                &options,
                crate::io_runtime()?,
            )?));
        }
        if self.repo.contains("://") {
            bail!("--repo {}: expected a directory or s3://BUCKET/PREFIX", self.repo);
        }
        Ok(Arc::new(LocalBackend::new(&self.repo)))
    }

    fn secret(&self) -> anyhow::Result<Secret> {
        if let Some(path) = &self.password_file {
            let bytes = read_secret_file(path, "password file")?;
            let text = std::str::from_utf8(&bytes)
                .with_context(|| format!("the password file {} is not UTF-8 text", path.display()))?;
            let line = text.lines().next().unwrap_or("");
            if line.is_empty() {
                bail!("the password file {} is empty", path.display());
            }
            return Ok(Secret::Passphrase(line.to_owned()));
        }
        if let Some(path) = &self.key_file {
            let bytes = read_secret_file(path, "key file")?;
            return Ok(Secret::from_key_file(&bytes, &path.display().to_string())?);
        }
        Ok(Secret::None)
    }

    pub(crate) fn open(&self) -> anyhow::Result<Repository> {
        Ok(Repository::open(self.backend()?, &self.secret()?)?)
    }
}

pub fn run_repo(cmd: &RepoCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        RepoCommand::Init {
            repo,
            no_encryption,
            object_lock,
            lock_days,
        } => {
            let secret = repo.secret()?;
            if matches!(secret, Secret::None) && !no_encryption {
                bail!("give --password-file or --key-file for an encrypted repository, or --no-encryption");
            }
            let options = InitOptions {
                object_lock: object_lock
                    .as_ref()
                    .zip(*lock_days)
                    .map(|(mode, days)| ObjectLock {
                        mode: mode.clone(),
                        days,
                    }),
            };
            let r = Repository::init_with(repo.backend()?, &secret, &options)?;
            let how = if *no_encryption {
                "unencrypted"
            } else {
                "encrypted (AES-256-GCM)"
            };
            let immutable = match &r.config().object_lock {
                Some(lock) => format!(
                    "; Object Lock ({}): each restore point and what it uses retained {} days from its backup",
                    lock.mode, lock.days
                ),
                None => String::new(),
            };
            println!(
                "created repository {} at {}, {how}{immutable}",
                r.config().id,
                repo.repo
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub fn run_image(cmd: &ImageCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ImageCommand::Backup {
            repo,
            source,
            volume_id,
            changed_blocks,
            file_index,
            run,
        } => backup(
            repo,
            source,
            volume_id,
            changed_blocks.as_deref(),
            *file_index,
            run,
        ),
        ImageCommand::List {
            repo,
            volume_id,
            json,
        } => list(repo, volume_id.as_deref(), *json),
        ImageCommand::Restore {
            repo,
            point,
            target,
            run,
        } => restore(repo, point, target, run),
        ImageCommand::Verify { repo, read_data, run } => verify(repo, *read_data, run),
        ImageCommand::Forget {
            repo,
            keep_last,
            keep_daily,
            keep_weekly,
            keep_monthly,
            keep_yearly,
            dry_run,
            json,
        } => {
            let policy = Retention {
                keep_last: *keep_last,
                keep_daily: *keep_daily,
                keep_weekly: *keep_weekly,
                keep_monthly: *keep_monthly,
                keep_yearly: *keep_yearly,
            };
            forget(repo, &policy, *dry_run, *json)
        }
        ImageCommand::Prune { repo, json } => prune(repo, *json),
    }
}

fn backup(
    repo: &RepoArgs,
    source: &Path,
    volume_id: &str,
    changed: Option<&Path>,
    index_files: bool,
    run: &RunArgs,
) -> anyhow::Result<ExitCode> {
    let changed = match changed {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            Some(bulwark_mover::parse_changed_blocks(&text).with_context(|| path.display().to_string())?)
        }
        None => None,
    };
    let r = repo.open()?;
    let src = FileSource::open(source)?;
    let progress = Progress::default();
    let start = Instant::now();
    let volume = VolumeSource {
        source: &src,
        volume_id,
        changed: changed.as_deref(),
        instance: None,
        index_files,
    };
    let out = with_progress(&progress, "backup", || {
        bulwark_mover::backup_all(&r, &[volume], &progress, run.threads())
    })?
    .pop()
    .context("the backup wrote no restore point")?;
    let seconds = start.elapsed().as_secs_f64();
    let s = &out.manifest.stats;
    warn(&out.warnings);
    if run.json {
        println!(
            "{}",
            pretty(&json!({
                "point": out.id, "manifest": point_json(&out.id, &out.manifest), "seconds": seconds,
                "warnings": out.warnings,
            }))
        );
    } else {
        println!(
            "restore point {} of {volume_id}: {} blocks read ({} zero), {} new, {} stored, in {seconds:.1} s ({}/s)",
            out.id.short(),
            s.blocks_read,
            s.blocks_zero,
            s.blocks_new,
            bytes(s.bytes_stored),
            bytes((s.blocks_read as f64 * f64::from(out.manifest.block_size) / seconds.max(1e-9)) as u64),
        );
        if let Some(files) = &out.manifest.files {
            println!("file index: {} entries", files.entries);
            for problem in &files.problems {
                eprintln!("not indexed: {problem}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn point_json(id: &bulwark_repo::Id, m: &Manifest) -> serde_json::Value {
    json!({
        "id": id,
        "volume_id": m.volume_id,
        "time": m.time,
        "size": m.size,
        "source": m.source,
        "parent": m.parent,
        "stats": m.stats,
        "file_index": m.files.as_ref().map(|f| json!({
            "entries": f.entries, "problems": f.problems, "problem_count": f.problem_count,
        })),
    })
}

fn list(repo: &RepoArgs, volume_id: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    let r = repo.open()?;
    let points: Vec<_> = r
        .points()?
        .into_iter()
        .filter(|(_, m)| volume_id.is_none_or(|v| m.volume_id == v))
        .collect();
    warn(&r.take_warnings());
    if json {
        let list: Vec<_> = points.iter().map(|(id, m)| point_json(id, m)).collect();
        println!("{}", pretty(&list));
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<10}  {:<25}  {:<22}  {:>10}  {:>10}  source",
        "id", "time", "volume", "size", "added"
    );
    for (id, m) in &points {
        println!(
            "{:<10}  {:<25}  {:<22}  {:>10}  {:>10}  {} {}",
            id.short(),
            m.time.format("%Y-%m-%d %H:%M:%S UTC"),
            m.volume_id,
            bytes(m.size),
            bytes(m.stats.bytes_stored),
            m.source.kind,
            m.source.name
        );
    }
    println!("{} restore points", points.len());
    Ok(ExitCode::SUCCESS)
}

fn restore(repo: &RepoArgs, point: &str, target: &Path, run: &RunArgs) -> anyhow::Result<ExitCode> {
    let r = repo.open()?;
    let id = r.find_point(point)?;
    let manifest = r.read_point(&id)?;
    let tgt = FileTarget::create(target, manifest.size)?;
    let progress = Progress::default();
    let start = Instant::now();
    let out = with_progress(&progress, "restore", || {
        bulwark_mover::restore(&r, &id, &tgt, &progress, run.threads())
    })?;
    let seconds = start.elapsed().as_secs_f64();
    warn(&out.warnings);
    if run.json {
        println!(
            "{}",
            pretty(&json!({
                "point": id, "target": target, "size": manifest.size, "blocks_written": out.blocks_written,
                "blocks_zero": out.blocks_zero, "reads": out.reads, "seconds": seconds,
                "warnings": out.warnings,
            }))
        );
    } else {
        println!(
            "restored {} ({} of {}) into {}: {} blocks written, {} zero, in {seconds:.1} s",
            id.short(),
            bytes(manifest.size),
            manifest.volume_id,
            target.display(),
            out.blocks_written,
            out.blocks_zero
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn verify(repo: &RepoArgs, read_data: bool, run: &RunArgs) -> anyhow::Result<ExitCode> {
    let r = repo.open()?;
    let report = bulwark_repo::verify(&r, read_data, run.threads())?;
    warn(&report.warnings);
    let states = StateCounts::of(report.objects.values());
    if run.json {
        let objects: serde_json::Map<String, serde_json::Value> = report
            .objects
            .iter()
            .map(|(path, state)| (path.clone(), state_json(state)))
            .collect();
        println!(
            "{}",
            pretty(&json!({
                "clean": report.is_clean(), "problems": report.problems, "damaged_points": report.damaged_points,
                "points": report.points, "packs": report.packs, "stored_bytes": report.stored_bytes, "blocks_read": report.blocks_read,
                "unreferenced_packs": report.unreferenced_packs, "warnings": report.warnings,
                "objects": objects,
            }))
        );
    } else {
        for p in &report.problems {
            println!("problem: {p}");
        }
        for (id, why) in &report.damaged_points {
            println!("restore point {} cannot be fully restored: {why}", id.short());
        }
        let data = if read_data {
            format!(", {} blocks read and authenticated", report.blocks_read)
        } else {
            String::new()
        };
        println!(
            "{}: {} restore points, {} packs{data}{}",
            if report.is_clean() {
                "no problems"
            } else {
                "PROBLEMS FOUND"
            },
            report.points,
            report.packs,
            if report.unreferenced_packs > 0 {
                format!(
                    "; {} packs left by interrupted backups (prune removes them)",
                    report.unreferenced_packs
                )
            } else {
                String::new()
            }
        );
        println!("{}", states.describe());
    }
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn forget(repo: &RepoArgs, policy: &Retention, dry_run: bool, json: bool) -> anyhow::Result<ExitCode> {
    if policy.is_empty() {
        bail!("give at least one --keep-* option: forget never removes every restore point");
    }
    let r = repo.open()?;
    let decisions = bulwark_repo::forget(&r, policy, chrono::Utc::now(), dry_run)?;
    let warnings = r.take_warnings();
    warn(&warnings);
    if json {
        let list: Vec<_> = decisions
            .iter()
            .map(|(d, p)| {
                let reasons: Vec<String> = d.reasons.iter().map(ToString::to_string).collect();
                json!({ "id": d.id, "volume_id": p.volume_id, "time": p.time, "keep": d.keep, "reasons": reasons })
            })
            .collect();
        println!(
            "{}",
            pretty(&json!({ "dry_run": dry_run, "points": list, "warnings": warnings }))
        );
        return Ok(ExitCode::SUCCESS);
    }
    for (d, p) in &decisions {
        let what = if d.keep {
            "keep  "
        } else if dry_run {
            "would remove"
        } else {
            "remove"
        };
        let reasons: Vec<String> = d.reasons.iter().map(ToString::to_string).collect();
        println!(
            "{what} {} {} {} {}",
            &d.id[..8],
            p.volume_id,
            p.time.format("%Y-%m-%d %H:%M:%S"),
            reasons.join(", ")
        );
    }
    let removed = decisions.iter().filter(|(d, _)| !d.keep).count();
    println!(
        "{} kept, {removed} {}",
        decisions.len() - removed,
        if dry_run {
            "would be removed"
        } else {
            "removed; run prune to free their space"
        }
    );
    Ok(ExitCode::SUCCESS)
}

fn prune(repo: &RepoArgs, json: bool) -> anyhow::Result<ExitCode> {
    let r = repo.open()?;
    let plan = bulwark_repo::prune(&r)?;
    warn(&plan.warnings);
    if json {
        let retained: Vec<_> = plan
            .retained
            .iter()
            .map(|(file, until)| json!({ "file": file, "deletable_after": until }))
            .collect();
        println!(
            "{}",
            pretty(&json!({
                "deleted_packs": plan.delete.len(), "repacked_packs": plan.repack.len(),
                "unreferenced_packs": plan.unreferenced.len(), "bytes_freed": plan.bytes_freed,
                "used_blocks": plan.used_blocks, "retained": retained, "warnings": plan.warnings,
            }))
        );
    } else {
        println!(
            "{} packs deleted, {} rewritten, {} leftovers removed: {} freed; {} blocks in use",
            plan.delete.len(),
            plan.repack.len(),
            plan.unreferenced.len(),
            bytes(plan.bytes_freed),
            plan.used_blocks
        );
        let dates = plan.retained.iter().map(|(_, until)| until);
        if let (Some(first), Some(last)) = (dates.clone().min(), dates.max()) {
            let when = |t: &chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%d %H:%M:%S UTC").to_string();
            let span = if first == last {
                format!("deletable after {}", when(first))
            } else {
                format!(
                    "deletable from {} (the first) to {} (the last)",
                    when(first),
                    when(last)
                )
            };
            let n = plan.retained.len();
            println!(
                "{n} {} kept: retained by Object Lock, {span}; `--json` lists each",
                if n == 1 { "file" } else { "files" }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints what the repository skipped, on stderr: the result on stdout stays parseable.
fn warn(warnings: &[String]) {
    for w in warnings {
        eprintln!("warning: {w}");
    }
}

/// How many objects verify found in each state.
#[derive(Default)]
struct StateCounts {
    intact: usize,
    retained: usize,
    first_deletable: Option<chrono::DateTime<chrono::Utc>>,
    missing: usize,
    damaged: usize,
}

impl StateCounts {
    fn of<'a>(states: impl Iterator<Item = &'a ObjectState>) -> Self {
        let mut c = Self::default();
        for state in states {
            match state {
                ObjectState::Missing => c.missing += 1,
                ObjectState::Damaged(_) => c.damaged += 1,
                ObjectState::Intact { retained_until } => {
                    c.intact += 1;
                    if let Some(until) = retained_until {
                        c.retained += 1;
                        c.first_deletable = Some(c.first_deletable.map_or(*until, |f| f.min(*until)));
                    }
                }
            }
        }
        c
    }

    fn describe(&self) -> String {
        let locked = match self.first_deletable {
            Some(first) => format!(
                " ({} locked and intact: retained by Object Lock, the first until {})",
                self.retained,
                first.format("%Y-%m-%d %H:%M:%S UTC")
            ),
            None => String::new(),
        };
        format!(
            "objects: {} intact{locked}, {} missing, {} damaged",
            self.intact, self.missing, self.damaged
        )
    }
}

/// One object's state for `verify --json`.
fn state_json(state: &ObjectState) -> serde_json::Value {
    match state {
        ObjectState::Missing => json!({ "state": "missing" }),
        ObjectState::Damaged(why) => json!({ "state": "damaged", "why": why }),
        ObjectState::Intact { retained_until } => {
            json!({ "state": "intact", "retained_until": retained_until })
        }
    }
}

/// Runs `work` with a progress bar on stderr if stderr is a terminal (nothing on a pipe).
fn with_progress<T>(progress: &Progress, what: &str, work: impl FnOnce() -> T + Send) -> T
where
    T: Send,
{
    if !std::io::stderr().is_terminal() {
        return work();
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message(what.to_owned());
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let (d, t) = progress.snapshot();
                bar.set_length(t);
                bar.set_position(d);
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let result = work();
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        bar.finish_and_clear();
        result
    })
}

/// Bytes for people: 1.5 GiB.
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}
