//! File-level recovery from a backup, measured: backs up a disk image into a fresh local
//! repository, restores it in full (the speed to compare with), then reads files straight from
//! the restore point ([`PointDevice`] under a cold [`Cached`]): opening the volume, listing a
//! large directory, and streaming one large file; then backs the image up again, without and
//! with a file index, and reads the index back. Prints one table.
//!
//! ```text
//! cargo run --release -p bulwark-mover --example files-bench -- IMAGE LIST_DIR FILE [--repo DIR] [--passphrase[=P]] [--plain]
//! ```
//!
//! The repository (default `/tmp/bulwark-files-bench-repo`, removed first) is encrypted with
//! the passphrase `bench` unless `--plain` is given. The restored copy is a sparse file next
//! to the repository, deleted after the restore. Images: `bench/files/make-images.sh`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout, missing_docs)]

use std::error::Error;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bulwark_fs::{Cached, Volume};
use bulwark_mover::{
    backup, backup_all, default_threads, restore, FileSource, FileTarget, PointDevice, Progress, VolumeSource,
};
use bulwark_repo::{Id, Repository, Secret};
use bulwark_storage::LocalBackend;

const MIB: f64 = 1024.0 * 1024.0;

fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB
}

fn rate(bytes: u64, took: Duration) -> f64 {
    mib(bytes) / took.as_secs_f64().max(1e-9)
}

/// A cold cache over a restore point, and the point (to count what the repository served).
type Opened = (Arc<Cached<Arc<PointDevice>>>, Arc<PointDevice>);

/// A restore point opened afresh, behind a cold cache.
fn cold(repo: &Repository, id: &Id) -> Result<Opened, Box<dyn Error>> {
    let point = Arc::new(PointDevice::open(repo.clone(), id)?);
    Ok((Arc::new(Cached::new(point.clone())), point))
}

struct Row {
    what: String,
    took: Duration,
    cache_read: u64,
    fetched: u64,
    extra: String,
}

fn main() -> Result<(), Box<dyn Error>> {
    let mut positional = Vec::new();
    let mut repo_dir = PathBuf::from("/tmp/bulwark-files-bench-repo");
    let mut secret = Secret::Passphrase("bench".into());
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--repo" => repo_dir = PathBuf::from(args.next().ok_or("--repo needs a directory")?),
            "--passphrase" => secret = Secret::Passphrase("bench".into()),
            "--plain" => secret = Secret::None,
            a if a.starts_with("--passphrase=") => {
                secret = Secret::Passphrase(a["--passphrase=".len()..].to_string());
            }
            a if a.starts_with("--") => return Err(format!("unknown option {a}").into()),
            _ => positional.push(arg),
        }
    }
    let [image, list_dir, file] = <[String; 3]>::try_from(positional)
        .map_err(|_| "usage: files-bench IMAGE LIST_DIR FILE [--repo DIR] [--passphrase[=P]] [--plain]")?;
    let encrypted = !matches!(secret, Secret::None);
    let threads = default_threads();

    // A fresh repository.
    if repo_dir.exists() {
        std::fs::remove_dir_all(&repo_dir)?;
    }
    std::fs::create_dir_all(&repo_dir)?;
    let store = repo_dir.join("repo");
    std::fs::create_dir_all(&store)?;
    let repo = Repository::init(Arc::new(LocalBackend::new(&store)), &secret)?;

    // Backup.
    let source = FileSource::open(std::path::Path::new(&image))?;
    let started = Instant::now();
    let out = backup(
        &repo,
        &source,
        "bench-volume",
        None,
        &Progress::default(),
        threads,
    )?;
    let backup_took = started.elapsed();
    let manifest = &out.manifest;
    let block = u64::from(manifest.block_size);
    let data_bytes = (manifest.stats.blocks_read - manifest.stats.blocks_zero) * block;
    let stored = manifest.stats.bytes_stored;

    // Full restore into a sparse file.
    let target_path = repo_dir.join("restored.img");
    let target = FileTarget::create(&target_path, manifest.size)?;
    let started = Instant::now();
    let restored = restore(&repo, &out.id, &target, &Progress::default(), threads)?;
    let restore_took = started.elapsed();
    drop(target);
    std::fs::remove_file(&target_path)?;
    let restored_bytes = restored.blocks_written * block;
    let restore_rate = rate(restored_bytes, restore_took);

    let mut rows = Vec::new();

    // (a) Open the volume, list the partitions and partition 1's root.
    let (cached, point) = cold(&repo, &out.id)?;
    let started = Instant::now();
    let volume = Volume::open(cached.clone())?;
    let parts = volume.ls("/")?;
    let root = volume.ls("/1/")?;
    rows.push(Row {
        what: "(a) open + ls / + ls /1/".into(),
        took: started.elapsed(),
        cache_read: cached.bytes_read(),
        fetched: point.bytes_fetched(),
        extra: format!("{} partition(s), {} entries in /1/", parts.len(), root.len()),
    });
    drop(volume);

    // (b) List the large directory (a volume opened first, not timed).
    let (cached, point) = cold(&repo, &out.id)?;
    let volume = Volume::open(cached.clone())?;
    let (before_read, before_fetched) = (cached.bytes_read(), point.bytes_fetched());
    let started = Instant::now();
    let entries = volume.ls(list_dir.as_bytes())?;
    let took = started.elapsed();
    let failed = entries.iter().filter(|e| e.metadata.is_err()).count();
    rows.push(Row {
        what: format!("(b) ls {list_dir}"),
        took,
        cache_read: cached.bytes_read() - before_read,
        fetched: point.bytes_fetched() - before_fetched,
        extra: format!(
            "{} entries{}",
            entries.len(),
            if failed > 0 {
                format!(", {failed} without metadata")
            } else {
                String::new()
            }
        ),
    });
    drop(volume);

    // (c) Stream the large file (a volume opened first, not timed).
    let (cached, point) = cold(&repo, &out.id)?;
    let volume = Volume::open(cached.clone())?;
    let (before_read, before_fetched) = (cached.bytes_read(), point.bytes_fetched());
    let started = Instant::now();
    let mut reader = volume.open_file(file.as_bytes())?;
    let copied = std::io::copy(&mut reader, &mut std::io::sink())?;
    let took = started.elapsed();
    let file_rate = rate(copied, took);
    rows.push(Row {
        what: format!("(c) read {file}"),
        took,
        cache_read: cached.bytes_read() - before_read,
        fetched: point.bytes_fetched() - before_fetched,
        extra: format!(
            "{:.1} MiB at {:.1} MiB/s = {:.0}% of full restore",
            mib(copied),
            file_rate,
            100.0 * file_rate / restore_rate
        ),
    });
    drop(volume);

    // (d) The same image backed up again, unchanged (every block deduplicated): without, then
    // with a file index; the difference is what indexing costs.
    let again = |index_files: bool| -> Result<(Duration, bulwark_mover::BackupOutcome), Box<dyn Error>> {
        let volume = VolumeSource {
            source: &source,
            volume_id: "bench-volume",
            changed: None,
            instance: None,
            index_files,
        };
        let started = Instant::now();
        let mut out = backup_all(&repo, &[volume], &Progress::default(), threads)?;
        Ok((started.elapsed(), out.pop().ok_or("no restore point")?))
    };
    let (plain_took, _) = again(false)?;
    let (indexed_took, indexed) = again(true)?;
    let files = indexed.manifest.files.clone().ok_or("no file index")?;
    rows.push(Row {
        what: "(d) backup again + file index".into(),
        took: indexed_took,
        cache_read: 0,
        fetched: 0,
        extra: format!(
            "{:.2} s without the index: the index took {:.2} s; {} entries in {} chunks, {:.2} MiB stored, {} problems",
            plain_took.as_secs_f64(),
            indexed_took.as_secs_f64() - plain_took.as_secs_f64(),
            files.entries,
            files.chunks.len(),
            mib(indexed.manifest.stats.bytes_stored),
            files.problem_count
        ),
    });

    // (e) Read the whole index, as `bulwark files find` does for each restore point.
    let started = Instant::now();
    let index = repo.load_index()?;
    let mut entries = 0u64;
    let mut names = 0u64;
    repo.for_each_file::<bulwark_repo::RepoError>(&index, &files, |chunk| {
        entries += chunk.len() as u64;
        names += chunk.iter().filter(|e| e.path.ends_with(b"/hosts")).count() as u64;
        Ok(())
    })?;
    rows.push(Row {
        what: "(e) read the file index".into(),
        took: started.elapsed(),
        cache_read: 0,
        fetched: 0,
        extra: format!("{entries} entries ({names} named hosts), repository index loaded too"),
    });
    drop(repo);
    std::fs::remove_dir_all(&repo_dir)?;

    println!();
    println!("files-bench: {image}");
    println!(
        "  volume {:.0} MiB, {:.0} MiB of non-zero blocks ({} of {} blocks of {} KiB), stored {:.0} MiB, {}, {} threads",
        mib(manifest.size),
        mib(data_bytes),
        manifest.stats.blocks_read - manifest.stats.blocks_zero,
        manifest.stats.blocks_read,
        block / 1024,
        mib(stored),
        if encrypted { "encrypted (passphrase)" } else { "unencrypted" },
        threads
    );
    println!();
    println!(
        "  {:<34} {:>9} {:>12} {:>12}  notes",
        "step", "time (s)", "read MiB", "fetched MiB"
    );
    println!("  {}", "-".repeat(100));
    println!(
        "  {:<34} {:>9.2} {:>12.1} {:>12}  {:.1} MiB/s of the whole volume, {:.1} MiB/s of its data",
        "backup",
        backup_took.as_secs_f64(),
        mib(manifest.size),
        "-",
        rate(manifest.size, backup_took),
        rate(data_bytes, backup_took)
    );
    println!(
        "  {:<34} {:>9.2} {:>12.1} {:>12}  {:.1} MiB/s ({} blocks written, {} zero)",
        "full restore (sparse file)",
        restore_took.as_secs_f64(),
        mib(restored_bytes),
        "-",
        restore_rate,
        restored.blocks_written,
        restored.blocks_zero
    );
    for r in &rows {
        println!(
            "  {:<34} {:>9.3} {:>12.1} {:>12.1}  {}",
            r.what,
            r.took.as_secs_f64(),
            mib(r.cache_read),
            mib(r.fetched),
            r.extra
        );
    }
    println!();
    println!("  read MiB: bytes read below the cache (Cached::bytes_read); fetched MiB: bytes the");
    println!("  repository served for them (PointDevice::bytes_fetched, compressed and sealed).");
    Ok(())
}
