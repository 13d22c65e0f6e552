//! `bulwark demo`: the example estate made real in an embedded cloud (a backup account, two
//! production accounts, two regions; volumes under a customer managed key, under `aws/ebs`
//! and unencrypted, holding a few GiB of generated data), then every documented scenario run
//! as a session: snapshots, image-level backups with workers in the backup account (the
//! `aws/ebs` instance is refused before anything runs) and in the production account, a
//! cross-account cross-region replica, restores from a snapshot and from a backup into another
//! account, and a second backup of db after a write, whose worker reads only the changed
//! blocks. As each session ends, every snapshot, replica and restored volume it kept is
//! compared with its source, byte for byte; at the end the cloud is checked for anything a
//! session left behind.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use bulwark_embedded::Embedded;
use bulwark_engine::journal::Target;
use bulwark_engine::{EngineError, SessionReport};
use bulwark_model::{AccountId, Estate, Region, VolumeId};
use bulwark_plan::{Operation, Placement, RestoreSource};

/// The example estate, also in the repository as `examples/estate.toml`.
const ESTATE: &str = include_str!("../../../examples/estate.toml");

const WEB: &str = "i-0123456789abcdef0";
const DB: &str = "i-0fedcba9876543210";
const PROD: &str = "222222222222";
const DR: &str = "333333333333";
const US: &str = "us-east-1";
const EU: &str = "eu-west-1";

/// How a scenario should end.
#[derive(PartialEq)]
enum Expect {
    Success,
    Refused,
}

/// Bytes a program on db writes into its data volume before a scenario: 1 MiB at 3 MiB.
const CHANGE: (u64, usize) = (3 << 20, 1 << 20);

/// One session of the demo.
struct Scenario {
    title: String,
    op: Operation,
    expect: Expect,
    /// Whether db's data volume changes first ([`CHANGE`]).
    change_db: bool,
}

pub fn run(data_dir: Option<&Path>, data_mib: u32) -> anyhow::Result<ExitCode> {
    let estate = Estate::parse("examples/estate.toml", ESTATE).context("the built-in example estate")?;
    let temp;
    let dir = match data_dir {
        Some(d) => d.to_path_buf(),
        None => {
            temp = TempDir::new()?;
            temp.0.clone()
        }
    };
    println!(
        "Bulwark demo: examples/estate.toml in an embedded cloud ({})",
        dir.display()
    );
    println!("  backup account 111111111111; production accounts {PROD} (web {WEB}, db {DB}) and {DR} (disaster recovery)");
    println!(
        "  web: volumes under a customer managed key, aws/ebs and none; db: all under a customer managed key"
    );
    let volumes: usize = estate.instances.iter().map(|i| i.volumes.len()).sum();
    let t = Instant::now();
    let world = crate::sessions::create(&dir, &estate, data_mib)?;
    println!(
        "  built in {:.1} s: {volumes} volumes with {data_mib} MiB of data each, roles with least-privilege policies, keys, repository\n",
        t.elapsed().as_secs_f64()
    );

    let before = world.sim.inventory();
    let engine = world.engine().on_event(crate::sessions::listener(true));
    println!(
        " #  {:<84} {:<8} {:>7} {:>5}",
        "session", "result", "time", "steps"
    );
    let mut reports = Vec::new();
    let (mut failures, mut identical) = (0, 0);
    for (n, scenario) in scenarios()?.into_iter().enumerate() {
        let Scenario {
            title,
            op,
            expect,
            change_db,
        } = scenario;
        if change_db {
            change_db_data(&world)?;
        }
        let t = Instant::now();
        let outcome = engine.run_operation(&op);
        let secs = format!("{:.1} s", t.elapsed().as_secs_f64());
        match (outcome, expect) {
            (Ok(report), Expect::Success) => {
                println!(
                    "{:>2}  {title:<84} {:<8} {secs:>7} {:>5}",
                    n + 1,
                    "ok",
                    report.steps
                );
                print_reads(&report);
                // Compared now: a later scenario changes db's data.
                let (same, differ) = check_bytes(&world, &title, &report);
                identical += same;
                failures += differ;
                reports.push((title, report));
            }
            (Err(EngineError::Refused(r)), Expect::Refused) => {
                println!("{:>2}  {title:<84} {:<8} {:>7} {:>5}", n + 1, "refused", "-", "-");
                println!("      [{}] {}", r.code, r.message);
                println!("      remedy: {}", r.remedy);
            }
            (Ok(_), Expect::Refused) => {
                failures += 1;
                println!("{:>2}  {title:<84} UNEXPECTED SUCCESS", n + 1);
            }
            (Err(e), _) => {
                failures += 1;
                println!("{:>2}  {title:<84} FAILED  {secs:>7}\n      {e}", n + 1);
            }
        }
    }

    println!("\nChecks");
    println!(
        "  {identical} snapshots, replicas and restored volumes compared with their sources as each session ended: {identical} identical"
    );
    failures += check_leftovers(&world, &before, &reports);
    if failures == 0 {
        println!("\nAll sessions ended as expected; every copy is byte-identical to its source; nothing was left behind.");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("\n{failures} check(s) failed.");
        Ok(ExitCode::FAILURE)
    }
}

fn scenarios() -> anyhow::Result<Vec<Scenario>> {
    let id = |s: &str| s.parse().context("a built-in id");
    let account = |s: &str| -> anyhow::Result<AccountId> { s.parse().context("a built-in account") };
    let region = |s: &str| -> anyhow::Result<Region> { s.parse().context("a built-in region") };
    let restore = |instance: &str, from, to: &str, at: &str, workers| -> anyhow::Result<Operation> {
        Ok(Operation::Restore {
            instance: id(instance)?,
            from,
            to_account: account(to)?,
            to_region: region(at)?,
            target_key: None,
            workers,
            launch: Default::default(),
        })
    };
    let backup = |instance: &str, workers| -> anyhow::Result<Operation> {
        Ok(Operation::Backup {
            instance: id(instance)?,
            workers: Some(workers),
            file_index: false,
        })
    };
    Ok(vec![
        Scenario::new(
            "snapshots of web".into(),
            Operation::Snapshot { instance: id(WEB)? },
            Expect::Success,
        ),
        Scenario::new(
            "snapshots of db".into(),
            Operation::Snapshot { instance: id(DB)? },
            Expect::Success,
        ),
        Scenario::new(
            "image backup of db, workers in the backup account".into(),
            backup(DB, Placement::BackupAccount)?,
            Expect::Success,
        ),
        Scenario::new(
            "image backup of web, workers in the backup account (one volume under aws/ebs)".into(),
            backup(WEB, Placement::BackupAccount)?,
            Expect::Refused,
        ),
        Scenario::new(
            "image backup of web, workers in the production account".into(),
            backup(WEB, Placement::ProductionAccount)?,
            Expect::Success,
        ),
        Scenario::new(
            format!("snapshot replica of db into {DR}/{EU}"),
            Operation::Replicate {
                instance: id(DB)?,
                to_account: account(DR)?,
                to_region: region(EU)?,
                target_key: None,
            },
            Expect::Success,
        ),
        Scenario::new(
            format!("restore of db from snapshots into {DR}/{EU}"),
            restore(DB, RestoreSource::Snapshot, DR, EU, None)?,
            Expect::Success,
        ),
        Scenario::new(
            format!("restore of db from backup into {DR}/{EU}, workers in the backup account"),
            restore(DB, RestoreSource::Backup, DR, EU, Some(Placement::BackupAccount))?,
            Expect::Success,
        ),
        Scenario::new(
            format!("restore of web from backup into {PROD}/{US}, workers in its own account"),
            restore(
                WEB,
                RestoreSource::Backup,
                PROD,
                US,
                Some(Placement::ProductionAccount),
            )?,
            Expect::Success,
        ),
        Scenario::new(
            "image backup of web without workers (EBS direct APIs, in its own account)".into(),
            backup(WEB, Placement::NoWorker)?,
            Expect::Success,
        ),
        Scenario::new(
            format!("restore of web from backup into {DR}/{EU} without workers (aws/ebs data included)"),
            restore(WEB, RestoreSource::Backup, DR, EU, Some(Placement::NoWorker))?,
            Expect::Success,
        ),
        Scenario {
            change_db: true,
            ..Scenario::new(
                "image backup of db again, after 1 MiB of writes: its worker reads only the changes".into(),
                backup(DB, Placement::BackupAccount)?,
                Expect::Success,
            )
        },
        Scenario::new(
            format!("restore of db from that backup into {DR}/{EU}, workers in the backup account"),
            restore(DB, RestoreSource::Backup, DR, EU, Some(Placement::BackupAccount))?,
            Expect::Success,
        ),
    ])
}

impl Scenario {
    fn new(title: String, op: Operation, expect: Expect) -> Scenario {
        Scenario {
            title,
            op,
            expect,
            change_db: false,
        }
    }
}

/// Writes [`CHANGE`] into db's data volume, as a program on db would.
fn change_db_data(world: &Embedded) -> anyhow::Result<()> {
    let db: bulwark_model::InstanceId = DB.parse().context("a built-in id")?;
    let instance = world
        .estate
        .instance(&db)
        .context("db is in the example estate")?;
    let volume = instance.volumes.last().context("db has volumes")?;
    let (offset, len) = CHANGE;
    let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8 ^ 0x5a).collect();
    world
        .sim
        .write_volume(&instance.account, &instance.region, &volume.id, offset, &data)
        .context("writing into db's data volume")
}

/// What each volume's backup read, under the session's row.
fn print_reads(report: &SessionReport) {
    for b in &report.backups {
        let read = match (&b.why, b.blocks_changed) {
            (None, Some(changed)) => format!("{changed} changed blocks read"),
            _ => format!("read in full, {} blocks", b.blocks_read),
        };
        println!("      {}: {read}", b.volume);
    }
}

/// The production volume a kept resource holds, from its plan name ("restored volume of
/// vol-…", "snapshot copy of vol-…").
fn source_of(name: &str) -> Option<VolumeId> {
    name.split_whitespace()
        .find(|w| w.starts_with("vol-"))?
        .parse()
        .ok()
}

/// Compares every snapshot, replica and restored volume a session kept with its source
/// volume as it is now; answers how many are identical and how many differ.
fn check_bytes(world: &Embedded, title: &str, report: &SessionReport) -> (usize, usize) {
    let (mut same, mut differ) = (0, 0);
    for (name, target) in &report.kept {
        let Some(volume) = source_of(name) else { continue };
        let Some(instance) = world
            .estate
            .instances
            .iter()
            .find(|i| i.volumes.iter().any(|v| v.id == volume))
        else {
            continue;
        };
        let Some((_, source)) = world
            .sim
            .volume_digest(&instance.account, &instance.region, &volume)
        else {
            continue;
        };
        let copy = match target {
            Target::Snapshot(region, id) => world.sim.snapshot_digest(region, id).map(|(_, d, _)| d),
            Target::Volume(region, id) => {
                let owner = report_account(name);
                owner
                    .and_then(|a| world.sim.volume_digest(&a, region, id))
                    .map(|(_, d)| d)
            }
            _ => continue,
        };
        if copy.as_deref() == Some(source.as_str()) {
            same += 1;
        } else {
            differ += 1;
            println!("  DIFFERS: {name} ({title}) is not identical to {volume}");
        }
    }
    (same, differ)
}

/// The account in a plan name's "(ACCOUNT, REGION)".
fn report_account(name: &str) -> Option<AccountId> {
    name.rsplit_once('(')?.1.split(',').next()?.trim().parse().ok()
}

/// Everything the cloud holds now and did not before must be a kept result.
fn check_leftovers(
    world: &Embedded,
    before: &bulwark_sim::Inventory,
    reports: &[(String, SessionReport)],
) -> usize {
    let kept: BTreeSet<String> = reports
        .iter()
        .flat_map(|(_, r)| &r.kept)
        .filter_map(|(_, t)| t.resource_id())
        .collect();
    let after = world.sim.inventory();
    let added = after.added_since(before);
    let left: Vec<&String> = added
        .iter()
        .filter(|line| !kept.iter().any(|k| line.contains(k.as_str())))
        .collect();
    println!(
        "  {} resources before the sessions, {} after: {} are kept results (snapshots, replicas, restored volumes and instances), {} left behind",
        before.resources.len(),
        after.resources.len(),
        added.len() - left.len(),
        left.len()
    );
    for l in &left {
        println!("  LEFT BEHIND: {l}");
    }
    left.len()
}

/// A temporary directory removed when dropped.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new() -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("bulwark-demo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
