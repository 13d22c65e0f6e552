//! What `bulwark image backup` does, without the command line: backs up a file (or block
//! device) into a local repository, optionally restores it, and prints the time and the peak
//! resident memory of the process, to measure that memory does not grow with the volume
//! (docs/benchmarks.md).
//!
//! ```text
//! cargo run --release -p bulwark-mover --example backup_rss -- SOURCE REPO [--threads N] [--restore TARGET]
//! cargo run --release -p bulwark-mover --example backup_rss -- --restore-only REPO TARGET [--threads N]
//! ```
//!
//! `--restore-only` restores the repository's latest point in a process of its own, so that the
//! peak is the restore's alone (after a backup in the same process, it is the larger of both).
//! A TARGET of `discard` throws the restored bytes away (a volume larger than the disk).
//!
//! With `synthetic:SIZE` as the SOURCE (SIZE in bytes, or with a `G` or `T` suffix), the volume
//! is generated instead of read: every block the same non-zero bytes, so that every block is in the
//! block map (the densest map a volume can have) while a single block is stored: a measure of the
//! map's memory on a volume larger than any disk at hand.
//!
//! The repository is created if missing, encrypted with a fixed key file (a passphrase would
//! add argon2's 64 MiB to the peak).

#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use bulwark_mover::{
    backup, restore, BlockSource, BlockTarget, FileSource, FileTarget, MoverError, Progress,
};
use bulwark_repo::{Id, RepoError, Repository, Secret};
use bulwark_storage::LocalBackend;

/// The peak resident set of this process so far, in KiB (`VmHWM`).
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// A generated volume: every block the same non-zero bytes.
struct Synthetic(u64);

impl BlockSource for Synthetic {
    fn size(&self) -> u64 {
        self.0
    }
    fn read_at(&self, _offset: u64, buf: &mut [u8]) -> Result<(), MoverError> {
        buf.fill(0x5a);
        Ok(())
    }
    fn describe(&self) -> (String, String) {
        ("file".into(), format!("synthetic:{}", self.0))
    }
}

/// A target that keeps nothing, to measure a restore without the disk to hold it.
struct Discard;

impl BlockTarget for Discard {
    fn write_at(&self, _offset: u64, _data: &[u8]) -> Result<(), MoverError> {
        Ok(())
    }
    fn reads_zeros(&self) -> bool {
        true
    }
    fn finish(&self) -> Result<(), MoverError> {
        Ok(())
    }
}

fn parse_size(text: &str) -> Result<u64, Box<dyn std::error::Error>> {
    let (digits, unit) = match text.strip_suffix('T') {
        Some(d) => (d, 1u64 << 40),
        None => match text.strip_suffix('G') {
            Some(d) => (d, 1 << 30),
            None => (text, 1),
        },
    };
    Ok(digits.parse::<u64>()? * unit)
}

const VOLUME: &str = "vol-bench";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let usage = "usage: backup_rss SOURCE REPO [--threads N] [--restore TARGET]\n       \
                 backup_rss --restore-only REPO TARGET [--threads N]";
    let mut args = std::env::args().skip(1);
    let first = args.next().ok_or(usage)?;
    let repo_dir = PathBuf::from(args.next().ok_or(usage)?);
    let restore_only = first == "--restore-only";
    let mut restore_to = None;
    if restore_only {
        restore_to = Some(PathBuf::from(args.next().ok_or(usage)?));
    }
    let mut threads = bulwark_mover::default_threads();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--threads" => threads = args.next().ok_or(usage)?.parse()?,
            "--restore" if !restore_only => restore_to = Some(PathBuf::from(args.next().ok_or(usage)?)),
            _ => return Err(usage.into()),
        }
    }
    let secret = Secret::KeyFile([0x42; 32]);
    let backend = Arc::new(LocalBackend::new(&repo_dir));
    let repo = match Repository::open(backend.clone(), &secret) {
        Err(RepoError::NotARepository(_)) if !restore_only => Repository::init(backend, &secret)?,
        other => other?,
    };
    let (point, size) = if restore_only {
        let (id, manifest) = repo
            .latest_point(VOLUME)?
            .ok_or("the repository has no restore point to restore")?;
        (id, manifest.size)
    } else {
        backup_source(&repo, &first, threads)?
    };
    if let Some(target) = restore_to {
        restore_into(&repo, &point, size, &target, threads)?;
    }
    Ok(())
}

/// Backs SOURCE up (a path, or `synthetic:SIZE`) and prints what it took.
fn backup_source(
    repo: &Repository,
    source: &str,
    threads: usize,
) -> Result<(Id, u64), Box<dyn std::error::Error>> {
    let src: Box<dyn BlockSource> = match source.strip_prefix("synthetic:") {
        Some(size) => Box::new(Synthetic(parse_size(size)?)),
        None => Box::new(FileSource::open(source.as_ref())?),
    };
    let started = Instant::now();
    let out = backup(repo, src.as_ref(), VOLUME, None, &Progress::default(), threads)?;
    let seconds = started.elapsed().as_secs_f64();
    let stats = &out.manifest.stats;
    println!(
        "backup {source}: {} bytes, {} blocks read, {} new, {} bytes stored, {} map chunks, {seconds:.2} s, peak RSS {:.1} MiB",
        out.manifest.size,
        stats.blocks_read,
        stats.blocks_new,
        stats.bytes_stored,
        out.manifest.map.len(),
        peak_rss_kib() as f64 / 1024.0
    );
    Ok((out.id, out.manifest.size))
}

/// Restores `point` into `target` (a file, or `discard`) and prints what it took.
fn restore_into(
    repo: &Repository,
    point: &Id,
    size: u64,
    target: &std::path::Path,
    threads: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let tgt: Box<dyn BlockTarget> = if target.as_os_str() == "discard" {
        Box::new(Discard)
    } else {
        Box::new(FileTarget::create(target, size)?)
    };
    let done = restore(repo, point, tgt.as_ref(), &Progress::default(), threads)?;
    println!(
        "restore {}: {} blocks written, {} zero, {:.2} s, peak RSS {:.1} MiB",
        target.display(),
        done.blocks_written,
        done.blocks_zero,
        started.elapsed().as_secs_f64(),
        peak_rss_kib() as f64 / 1024.0
    );
    Ok(())
}
