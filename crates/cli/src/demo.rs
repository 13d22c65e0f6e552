//! `bulwark demo`: every scenario of the seed documents, planned on the example estate.
//!
//! Nothing touches AWS: this is the planner alone. (The embedded cloud, which runs the plans
//! with real bytes, will make the demo run them too.)

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

pub fn run(full: bool) -> ExitCode {
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
    ExitCode::SUCCESS
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
