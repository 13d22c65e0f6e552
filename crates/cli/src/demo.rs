//! `bulwark demo`: every scenario of the seed documents, planned on the example estate; then an
//! image-level backup cycle on a generated volume, in a temporary repository: full backup,
//! incremental from a changed-block list, restore, and a bit-for-bit comparison.
//!
//! Nothing touches AWS. (The embedded cloud, which runs the plans with real bytes and workers,
//! will make the demo run the sessions too.)

use std::process::ExitCode;

use bulwark_model::{Estate, KeyRef};
use bulwark_plan::{Operation, Placement, RestoreSource};

use crate::render;

/// The example estate, also in the repository as `examples/estate.toml`.
const ESTATE: &str = include_str!("../../../examples/estate.toml");

/// Ids of the example estate.
const WEB: &str = "i-0123456789abcdef0";
const DB: &str = "i-0fedcba9876543210";
const PROD: &str = "222222222222";
const DR: &str = "333333333333";
const DR_EU_KEY: &str = "arn:aws:kms:eu-west-1:333333333333:key/33333333-aaaa-4bbb-8ccc-000000000002";

pub fn run(full: bool, volume_mib: usize) -> ExitCode {
    let estate = match Estate::parse("examples/estate.toml", ESTATE) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: the built-in example estate is invalid: {e}");
            return ExitCode::FAILURE;
        }
    };
    let scenarios = match scenarios() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: a built-in demo scenario is invalid: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("Bulwark demo: every documented scenario, planned on examples/estate.toml");
    println!("(web {WEB}: volumes under a CMK, aws/ebs and none; db {DB}: all under a CMK)\n");
    let (mut planned, mut refused) = (0, 0);
    for (i, (title, op)) in scenarios.iter().enumerate() {
        println!("{:>2}. {title}", i + 1);
        match bulwark_plan::plan(&estate, op) {
            Ok(plan) => {
                planned += 1;
                let roles: std::collections::BTreeSet<String> = plan
                    .key_grants
                    .iter()
                    .filter(|g| !g.implicit())
                    .map(|g| {
                        format!(
                            "{} on {}",
                            g.role.role().map_or("appliance", |r| r.name()),
                            short_key(&g.key)
                        )
                    })
                    .collect();
                let keys = if roles.is_empty() {
                    "none".to_owned()
                } else {
                    roles.into_iter().collect::<Vec<_>>().join("; ")
                };
                println!(
                    "    planned: {} steps, {} cleanup steps",
                    plan.steps.len(),
                    plan.cleanup.len()
                );
                println!("    key permissions to grant: {keys}");
                if full {
                    println!("\n{}", render::plan(&plan));
                }
            }
            Err(refusal) => {
                refused += 1;
                for line in render::refusal(&refusal).lines() {
                    println!("    {line}");
                }
            }
        }
        println!();
    }
    println!("{planned} planned, {refused} refused before anything ran. `bulwark plan ... --estate examples/estate.toml` shows any of them in full.");
    println!();
    match image_cycle(volume_mib) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: the image backup demo failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Backs up, changes, backs up incrementally, restores and compares a generated volume.
fn image_cycle(mib: usize) -> anyhow::Result<()> {
    use bulwark_mover::{backup, restore, FileSource, FileTarget, Progress};
    use bulwark_repo::{LocalBackend, Repository, Secret};
    use std::time::Instant;

    let dir = std::env::temp_dir().join(format!("bulwark-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let _cleanup = RemoveOnDrop(dir.clone());
    println!(
        "Image-level backup of a generated {mib} MiB volume (zeros, logs, random data, repeated blocks)"
    );
    let mut volume = demo_volume(mib);
    let source = dir.join("vol.img");
    std::fs::write(&source, &volume)?;
    let repo = Repository::init(
        std::sync::Arc::new(LocalBackend::new(dir.join("repo"))),
        &Secret::Passphrase("demo".into()),
    )?;
    let threads = bulwark_mover::default_threads();

    let t = Instant::now();
    let full = backup(
        &repo,
        &FileSource::open(&source)?,
        "vol-demo",
        None,
        &Progress::default(),
        threads,
    )?;
    let secs = t.elapsed().as_secs_f64();
    let s = &full.manifest.stats;
    println!(
        "  full backup      {:>6.2} s  {:>7.0} MiB/s  {} blocks: {} zero (not stored), {} new; {:.1} MiB stored",
        secs,
        mib as f64 / secs,
        s.blocks_read,
        s.blocks_zero,
        s.blocks_new,
        s.bytes_stored as f64 / 1048576.0
    );

    // Change 1% of the blocks, as a day of writes might, and back up only those.
    let block = bulwark_repo::BLOCK_SIZE as usize;
    let changed: Vec<u64> = (0..volume.len() / block).step_by(100).map(|i| i as u64).collect();
    for (n, i) in changed.iter().enumerate() {
        let at = *i as usize * block;
        volume[at..at + 64].copy_from_slice(&[n as u8 + 1; 64]);
    }
    std::fs::write(&source, &volume)?;
    let t = Instant::now();
    let inc = backup(
        &repo,
        &FileSource::open(&source)?,
        "vol-demo",
        Some(&changed),
        &Progress::default(),
        threads,
    )?;
    println!(
        "  incremental      {:>6.2} s  {} changed blocks read, {} new; the restore point stands on its own",
        t.elapsed().as_secs_f64(),
        inc.manifest.stats.blocks_read,
        inc.manifest.stats.blocks_new
    );

    let t = Instant::now();
    let out = dir.join("restored.img");
    restore(
        &repo,
        &inc.id,
        &FileTarget::create(&out, volume.len() as u64)?,
        &Progress::default(),
        threads,
    )?;
    let secs = t.elapsed().as_secs_f64();
    let identical = std::fs::read(&out)? == volume;
    println!(
        "  restore          {:>6.2} s  {:>7.0} MiB/s  every block authenticated",
        secs,
        mib as f64 / secs
    );
    let report = bulwark_repo::verify(&repo, true, threads)?;
    println!(
        "  restored volume is {} to the source; verify --read-data: {}",
        if identical { "identical" } else { "DIFFERENT" },
        if report.is_clean() {
            "no problems"
        } else {
            "PROBLEMS"
        }
    );
    if !identical || !report.is_clean() {
        anyhow::bail!("the restored volume differs or the repository is damaged: {report:?}");
    }
    Ok(())
}

/// A deterministic volume: 35% zeros, 35% log-like text, 20% random, 10% repeats.
fn demo_volume(mib: usize) -> Vec<u8> {
    let block = bulwark_repo::BLOCK_SIZE as usize;
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut out = Vec::with_capacity(mib << 20);
    for i in 0..mib * 2 {
        match i % 20 {
            0..=6 => out.resize(out.len() + block, 0),
            7..=13 => {
                let line = format!(
                    "2026-11-21T10:{:02}:{:02} web-{} GET /api/orders/{} 200 {} ms\n",
                    i % 60,
                    (i * 7) % 60,
                    i % 9,
                    i * 31,
                    i % 97
                );
                out.extend(line.as_bytes().iter().cycle().take(block));
            }
            14..=17 => out.extend((0..block).map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })),
            _ => {
                let from = (i / 2) * block;
                let copy = out[from..from + block].to_vec();
                out.extend(copy);
            }
        }
    }
    out
}

/// Removes a directory when dropped, also when the demo fails.
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn short_key(key: &KeyRef) -> String {
    match key {
        KeyRef::Customer(arn) => format!("CMK {}/{}", arn.account(), arn.region()),
        KeyRef::AwsManaged { account, region } => format!("aws/ebs {account}/{region}"),
    }
}

type Scenario = (&'static str, Operation);

fn scenarios() -> Result<Vec<Scenario>, bulwark_model::InvalidId> {
    // A target account, region and optional key, parsed as the command line would.
    let target =
        |to_account: &str, to_region: &str, key: Option<&str>| -> Result<_, bulwark_model::InvalidId> {
            let (account, region) = (to_account.parse()?, to_region.parse()?);
            let key = key.map(|k| KeyRef::parse_in(k, &account, &region)).transpose()?;
            Ok((account, region, key))
        };
    let restore = |instance: &str, from, to_account: &str, to_region: &str, key: Option<&str>, workers| {
        let (to_account, to_region, target_key) = target(to_account, to_region, key)?;
        Ok::<_, bulwark_model::InvalidId>(Operation::Restore {
            instance: instance.parse()?,
            from,
            to_account,
            to_region,
            target_key,
            workers,
        })
    };
    let replicate = |instance: &str, to_account: &str, to_region: &str, key: Option<&str>| {
        let (to_account, to_region, target_key) = target(to_account, to_region, key)?;
        Ok::<_, bulwark_model::InvalidId>(Operation::Replicate {
            instance: instance.parse()?,
            to_account,
            to_region,
            target_key,
        })
    };
    use Placement::{BackupAccount, ProductionAccount};
    use RestoreSource::{Backup, Snapshot};
    Ok(vec![
        (
            "Cloud-native snapshots of web (no key permission needed)",
            Operation::Snapshot {
                instance: WEB.parse()?,
            },
        ),
        (
            "Image-level backup of web, workers in the backup account",
            Operation::Backup {
                instance: WEB.parse()?,
                workers: Some(BackupAccount),
            },
        ),
        (
            "Image-level backup of web, workers in the production account",
            Operation::Backup {
                instance: WEB.parse()?,
                workers: Some(ProductionAccount),
            },
        ),
        (
            "Image-level backup of db, workers in the backup account",
            Operation::Backup {
                instance: DB.parse()?,
                workers: None,
            },
        ),
        (
            "Snapshot replica of db to eu-west-1, same account, default key",
            replicate(DB, PROD, "eu-west-1", None)?,
        ),
        (
            "Snapshot replica of db to the DR account in eu-west-1, with a target key",
            replicate(DB, DR, "eu-west-1", Some(DR_EU_KEY))?,
        ),
        (
            "Snapshot replica of web to the DR account",
            replicate(WEB, DR, "us-east-1", None)?,
        ),
        (
            "Restore db from snapshots, same account and region",
            restore(DB, Snapshot, PROD, "us-east-1", None, None)?,
        ),
        (
            "Restore db from snapshots into another region",
            restore(DB, Snapshot, PROD, "eu-west-1", None, None)?,
        ),
        (
            "Restore db from snapshots into the DR account, same region",
            restore(DB, Snapshot, DR, "us-east-1", None, None)?,
        ),
        (
            "Restore web from snapshots into the DR account and eu-west-1",
            restore(WEB, Snapshot, DR, "eu-west-1", Some(DR_EU_KEY), None)?,
        ),
        (
            "Restore web from snapshots into the DR account, same region",
            restore(WEB, Snapshot, DR, "us-east-1", None, None)?,
        ),
        (
            "Restore web from its backup into the DR account, worker in the backup account",
            restore(WEB, Backup, DR, "eu-west-1", Some(DR_EU_KEY), Some(BackupAccount))?,
        ),
        (
            "Restore web from its backup into the DR account, worker in the DR account",
            restore(
                WEB,
                Backup,
                DR,
                "eu-west-1",
                Some(DR_EU_KEY),
                Some(ProductionAccount),
            )?,
        ),
        (
            "Restore web from its backup into us-west-2, worker in the backup account",
            restore(WEB, Backup, PROD, "us-west-2", None, None)?,
        ),
    ])
}
