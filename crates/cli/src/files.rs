//! `bulwark files ls|get`: browse and fetch files from a backup's restore point or from a
//! snapshot, without restoring a volume and without a worker (`bulwark_engine::files`);
//! `bulwark files find`: which restore points hold a file (`bulwark_engine::find`).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use bulwark_engine::files::{FileEntry, FileSource, Files};
use bulwark_engine::find::{FindQuery, FindReport};
use bulwark_model::{InstanceId, SnapshotId};
use clap::{Args, Subcommand};

use crate::args::{read_estate, CloudArgs};
use crate::image::RepoArgs;
use crate::render::pretty;

#[derive(Subcommand)]
pub enum FilesCommand {
    /// List a path: `/` lists the partitions, `/1/etc` a directory of partition 1 (`/0/...`
    /// a filesystem on the whole disk), a file or link itself.
    Ls {
        #[command(flatten)]
        source: SourceArgs,
        /// The path.
        #[arg(default_value = "/")]
        path: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Fetch files and directories (with what is under them), keeping modes, times and
    /// symbolic links (and owners when run as root).
    Get {
        #[command(flatten)]
        source: SourceArgs,
        /// The paths, like `/1/etc/hosts`.
        #[arg(required = true)]
        paths: Vec<String>,
        /// Write them under this directory (made if missing).
        #[arg(
            long,
            value_name = "DIR",
            required_unless_present = "tar",
            conflicts_with = "tar"
        )]
        to: Option<PathBuf>,
        /// Write them as a tar file instead (`-`: standard output).
        #[arg(long, value_name = "FILE")]
        tar: Option<PathBuf>,
    },
    /// Which restore points hold a file, and in what version: searches the file indexes that
    /// backups with `--file-index` (or a policy's `file_index`) keep, reading no volume.
    Find {
        /// A name (`hosts`, `*.conf`), or a path anywhere (`etc/*.conf`), or a whole path
        /// (`/1/etc/hosts`); `**` crosses directories. Quote it for the shell.
        pattern: String,
        /// Only this instance's restore points.
        #[arg(long, value_name = "ID")]
        instance: Option<String>,
        /// Only this volume's restore points.
        #[arg(long, value_name = "ID")]
        volume: Option<String>,
        /// Match regardless of case (NTFS and FAT volumes).
        #[arg(long, short = 'i')]
        ignore_case: bool,
        /// Most paths to answer.
        #[arg(long, default_value_t = bulwark_engine::find::DEFAULT_LIMIT)]
        limit: usize,
        #[command(flatten)]
        repository: RepositoryArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// The repository to search: `--repo` or the estate's.
#[derive(Args)]
pub struct RepositoryArgs {
    /// The estate file, whose repository is read as its repository role.
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "repo",
        required_unless_present = "repo"
    )]
    estate: Option<PathBuf>,
    /// The repository instead of an estate: a directory, or s3://BUCKET/PREFIX (opened with
    /// --password-file, or --key-file, or neither if unencrypted; --endpoint-url for S3).
    #[arg(long, value_name = "URL")]
    repo: Option<String>,
    /// With --repo: a file whose first line is the repository passphrase.
    #[arg(long, value_name = "FILE", requires = "repo")]
    password_file: Option<PathBuf>,
    #[command(flatten)]
    cloud: CloudArgs,
}

/// What to read: a restore point (`--point`, of `--repo` or of the estate's repository) or
/// a snapshot Bulwark made (`--snapshot`, with `--estate`).
#[derive(Args)]
pub struct SourceArgs {
    /// An image-level restore point: its id or a unique prefix (`bulwark image list`).
    #[arg(
        long,
        value_name = "ID",
        required_unless_present = "snapshot",
        conflicts_with = "snapshot"
    )]
    point: Option<String>,
    /// A snapshot or replica of the estate's restore points, read through the EBS direct APIs.
    #[arg(long, value_name = "SNAP-ID", requires = "estate")]
    snapshot: Option<String>,
    /// The estate file: the repository, accounts and roles to read with.
    #[arg(long, value_name = "FILE", conflicts_with = "repo")]
    estate: Option<PathBuf>,
    /// The repository instead of an estate: a directory, or s3://BUCKET/PREFIX (opened with
    /// --password-file, or --key-file, or neither if unencrypted; --endpoint-url for S3).
    #[arg(long, value_name = "URL", requires = "point")]
    repo: Option<String>,
    /// With --repo: a file whose first line is the repository passphrase.
    #[arg(long, value_name = "FILE", requires = "repo")]
    password_file: Option<PathBuf>,
    #[command(flatten)]
    cloud: CloudArgs,
}

impl SourceArgs {
    fn open(&self) -> anyhow::Result<Files> {
        let missing = "say where to read from: --repo URL --point ID, --estate FILE --point ID, or --estate FILE --snapshot SNAP-ID";
        let engine = match open_repository(
            &self.repo,
            &self.password_file,
            &self.estate,
            &self.cloud,
            missing,
        )? {
            Opened::Repository(repo) => {
                let point = self.point.as_deref().context("--repo needs --point")?;
                return Ok(bulwark_engine::files::open_point(repo, point)?);
            }
            Opened::Estate(engine) => engine,
        };
        let source = match (&self.point, &self.snapshot) {
            (Some(point), _) => FileSource::Backup(point.clone()),
            (None, Some(snapshot)) => FileSource::Snapshot(
                snapshot
                    .parse::<SnapshotId>()
                    .with_context(|| format!("--snapshot {snapshot}"))?,
            ),
            (None, None) => bail!("give --point ID or --snapshot SNAP-ID"),
        };
        Ok(engine.open_files(&source)?)
    }
}

/// A repository as `--repo` names it, or the estate's, behind the engine of `--estate`.
// One value per command, opened and used at once: its size does not matter.
#[allow(clippy::large_enum_variant)]
enum Opened {
    Repository(bulwark_repo::Repository),
    Estate(bulwark_engine::Engine),
}

/// Opens `--repo` (with its passphrase or key file) or the estate of `--estate`; `missing`
/// says what to give when neither is.
fn open_repository(
    repo: &Option<String>,
    password_file: &Option<PathBuf>,
    estate: &Option<PathBuf>,
    cloud: &CloudArgs,
    missing: &str,
) -> anyhow::Result<Opened> {
    if let Some(url) = repo {
        let repo = RepoArgs {
            repo: url.clone(),
            password_file: password_file.clone(),
            key_file: cloud.key_file.clone(),
            endpoint_url: cloud.endpoint_url.clone(),
        };
        return Ok(Opened::Repository(repo.open()?));
    }
    let estate = estate.as_ref().context(missing.to_owned())?;
    let estate = read_estate(estate)?;
    let (engines, _world) = crate::sessions::engines(cloud, &estate)?;
    Ok(Opened::Estate(engines(estate)))
}

pub fn run(cmd: &FilesCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        FilesCommand::Find {
            pattern,
            instance,
            volume,
            ignore_case,
            limit,
            repository,
            json,
        } => {
            let query = FindQuery {
                pattern: pattern.clone(),
                instance: match instance {
                    Some(i) => Some(
                        i.parse::<InstanceId>()
                            .with_context(|| format!("--instance {i}"))?,
                    ),
                    None => None,
                },
                volume: volume.clone(),
                ignore_case: *ignore_case,
                limit: *limit,
            };
            let report = repository.find(&query)?;
            if *json {
                println!("{}", pretty(&report));
            } else {
                print_found(&report);
            }
            Ok(ExitCode::SUCCESS)
        }
        FilesCommand::Ls { source, path, json } => {
            let files = source.open()?;
            let entries = files
                .list(path)
                .with_context(|| format!("{}: {path}", files.what))?;
            if *json {
                println!("{}", pretty(&entries));
            } else {
                for e in &entries {
                    println!("{}", line(e));
                }
            }
            eprintln!(
                "read {} from {}",
                crate::image::bytes(files.bytes_read()),
                files.what
            );
            Ok(ExitCode::SUCCESS)
        }
        FilesCommand::Get {
            source,
            paths,
            to,
            tar,
        } => {
            let files = source.open()?;
            let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
            let report = match (to, tar) {
                (Some(dir), _) => files.extract(&paths, dir)?,
                (None, Some(f)) if f.as_os_str() == "-" => {
                    let mut out = std::io::stdout().lock();
                    let report = files.write_tar(&paths, &mut out)?;
                    out.flush()?;
                    report
                }
                (None, Some(f)) => {
                    let file =
                        std::fs::File::create(f).with_context(|| format!("creating {}", f.display()))?;
                    let mut out = std::io::BufWriter::new(file);
                    let report = files.write_tar(&paths, &mut out)?;
                    out.flush().with_context(|| format!("writing {}", f.display()))?;
                    report
                }
                (None, None) => bail!("give --to DIR or --tar FILE"),
            };
            for (path, why) in &report.skipped {
                eprintln!("skipped {path}: {why}");
            }
            eprintln!(
                "{} files ({}), {} directories, {} links from {}; read {}",
                report.files,
                crate::image::bytes(report.bytes),
                report.dirs,
                report.symlinks,
                files.what,
                crate::image::bytes(files.bytes_read())
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

impl RepositoryArgs {
    fn find(&self, query: &FindQuery) -> anyhow::Result<FindReport> {
        let missing = "give --estate FILE or --repo URL";
        Ok(
            match open_repository(
                &self.repo,
                &self.password_file,
                &self.estate,
                &self.cloud,
                missing,
            )? {
                Opened::Repository(repo) => bulwark_engine::find::find_files(&repo, query)?,
                Opened::Estate(engine) => engine.find_files(query)?,
            },
        )
    }
}

/// A search's answer, a path then its versions, each with the restore points that hold it.
fn print_found(report: &FindReport) {
    for found in &report.found {
        println!("{}", found.path);
        for (n, v) in (1..).zip(&found.versions) {
            let mtime = v
                .mtime
                .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                .unwrap_or_default();
            let points: Vec<String> = v
                .points
                .iter()
                .map(|p| format!("{} ({})", &p.id[..8], p.time.format("%Y-%m-%d %H:%M")))
                .collect();
            println!(
                "  version {n}: {} {} {:>12} bytes, modified {mtime}, in {}: {}",
                v.kind.as_str(),
                v.mode,
                v.size,
                plural(v.points.len(), "restore point"),
                points.join(", ")
            );
        }
    }
    let searched = plural(report.searched.len(), "restore point");
    if report.found.is_empty() {
        println!("nothing matches in {searched}");
    }
    if report.truncated {
        eprintln!(
            "more paths match than --limit {}: narrow the pattern",
            report.found.len()
        );
    }
    if !report.unindexed.is_empty() {
        eprintln!(
            "{} without a file index not searched (backed up without --file-index)",
            plural(report.unindexed.len(), "restore point")
        );
    }
    for problem in &report.problems {
        eprintln!("not indexed: {problem}");
    }
    eprintln!("searched {searched}");
}

fn plural(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

/// One entry as `ls -l` would show it.
fn line(e: &FileEntry) -> String {
    if let Some(p) = &e.partition {
        let mut s = format!(
            "{:>3}  {:<28} {:<16} {:>10}  at {}",
            p.number,
            p.content,
            p.label.as_deref().unwrap_or("-"),
            crate::image::bytes(e.size),
            p.start
        );
        if let Some(err) = &p.error {
            s.push_str(&format!("  ({err})"));
        }
        for w in &p.warnings {
            s.push_str(&format!("\n     warning: {w}"));
        }
        return s;
    }
    if let Some(err) = &e.error {
        return format!("?  {}: {err}", e.name);
    }
    let mtime = e
        .mtime
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default();
    let target = e.target.as_ref().map(|t| format!(" -> {t}")).unwrap_or_default();
    format!(
        "{:<12} {} {:>5} {:>5} {:>12} {mtime} {}{target}",
        e.kind,
        e.mode.as_deref().unwrap_or("----"),
        e.uid.unwrap_or(0),
        e.gid.unwrap_or(0),
        e.size,
        e.name
    )
}
