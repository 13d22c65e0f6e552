//! What `bulwark image backup` does, without the command line: backs up a file (or block
//! device) into a local repository, optionally restores it, and prints the time and the peak
//! resident memory of the process, to measure that memory does not grow with the volume
//! (docs/benchmarks.md).
//!
//! ```text
//! cargo run --release -p bulwark-mover --example backup_rss -- SOURCE REPO [--threads N] [--restore TARGET]
//! ```
//!
//! The repository is created if missing, encrypted with a fixed key file (a passphrase would
//! add argon2's 64 MiB to the peak).

#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use bulwark_mover::{backup, restore, FileSource, FileTarget, Progress};
use bulwark_repo::{RepoError, Repository, Secret};
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

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: backup_rss SOURCE REPO [--threads N] [--restore TARGET]";
    let source = PathBuf::from(args.next().ok_or(usage)?);
    let repo_dir = PathBuf::from(args.next().ok_or(usage)?);
    let mut threads = bulwark_mover::default_threads();
    let mut restore_to = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--threads" => threads = args.next().ok_or(usage)?.parse()?,
            "--restore" => restore_to = Some(PathBuf::from(args.next().ok_or(usage)?)),
            _ => return Err(usage.into()),
        }
    }
    let secret = Secret::KeyFile([0x42; 32]);
    let backend = Arc::new(LocalBackend::new(&repo_dir));
    let repo = match Repository::open(backend.clone(), &secret) {
        Err(RepoError::NotARepository(_)) => Repository::init(backend, &secret)?,
        other => other?,
    };
    let src = FileSource::open(&source)?;
    let progress = Progress::default();
    let started = Instant::now();
    let out = backup(&repo, &src, "vol-bench", None, &progress, threads)?;
    let seconds = started.elapsed().as_secs_f64();
    let stats = &out.manifest.stats;
    println!(
        "backup {}: {} bytes, {} blocks read, {} new, {} bytes stored, {} map chunks, {seconds:.2} s, peak RSS {:.1} MiB",
        source.display(),
        out.manifest.size,
        stats.blocks_read,
        stats.blocks_new,
        stats.bytes_stored,
        out.manifest.map.len(),
        peak_rss_kib() as f64 / 1024.0
    );
    if let Some(target) = restore_to {
        let started = Instant::now();
        let tgt = FileTarget::create(&target, out.manifest.size)?;
        let done = restore(&repo, &out.id, &tgt, &Progress::default(), threads)?;
        println!(
            "restore {}: {} blocks written, {} zero, {:.2} s, peak RSS {:.1} MiB",
            target.display(),
            done.blocks_written,
            done.blocks_zero,
            started.elapsed().as_secs_f64(),
            peak_rss_kib() as f64 / 1024.0
        );
    }
    Ok(())
}
