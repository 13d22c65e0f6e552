//! `bulwark run`, `bulwark recover` and `bulwark embedded`: sessions on the embedded cloud.

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{bail, Context};
use bulwark_cloud::Cloud;
use bulwark_embedded::{all_operations, plans, DataSize, Embedded, Grants};
use bulwark_engine::{Engine, EngineError, Event, FileStore, Listener, SessionReport};
use bulwark_model::Estate;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::args::{read_estate, CloudArgs, CloudKind, EmbeddedCommand, RunCommand};
use crate::render;

/// Builds the embedded estate of `estate` in `dir`, granting every role what the estate's
/// plans need.
pub fn create(dir: &Path, estate: &Estate, data_mib: u32) -> anyhow::Result<Embedded> {
    if dir.join("cloud").join("state.json").exists() {
        bail!(
            "{} already holds an embedded cloud; remove it, or give another --data-dir",
            dir.display()
        );
    }
    // The appliance discovers through the backup roles: they get its read-only permissions too.
    let grants = Grants::from_plans(estate, &plans(estate, &all_operations(estate))).with_appliance(estate);
    let data = DataSize {
        bytes_per_volume: u64::from(data_mib) << 20,
    };
    Embedded::create(dir, estate, &grants, data).context("building the embedded estate")
}

fn open(dir: &Path, estate: &Estate) -> anyhow::Result<Embedded> {
    if !dir.join("cloud").join("state.json").exists() {
        bail!(
            "{} holds no embedded cloud: create one with `bulwark embedded init --estate FILE --data-dir {}`",
            dir.display(),
            dir.display()
        );
    }
    Embedded::open(dir, estate).context("opening the embedded cloud")
}

pub fn embedded(cmd: &EmbeddedCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        EmbeddedCommand::Init {
            estate,
            data,
            data_mib,
        } => {
            let estate = read_estate(estate)?;
            let mib = data_mib.or(estate.embedded.data_mib).unwrap_or(64);
            let world = create(&data.data_dir, &estate, mib)?;
            println!(
                "Embedded cloud in {}: {} accounts, {} instances, repository {}",
                data.data_dir.display(),
                estate.accounts.len() + 1,
                estate.instances.len(),
                estate.repository.as_ref().map_or_else(
                    || "none".to_owned(),
                    |r| format!("s3://{}/{}", r.bucket, r.prefix)
                ),
            );
            println!(
                "{} resources; run sessions with `bulwark run ...`",
                world.sim.inventory().resources.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        EmbeddedCommand::Status { data } => {
            let dir = data.data_dir.join("cloud");
            if !dir.join("state.json").exists() {
                bail!("{} holds no embedded cloud", data.data_dir.display());
            }
            let sim = bulwark_sim::Sim::open(&dir)?;
            print!("{}", sim.inventory());
            Ok(ExitCode::SUCCESS)
        }
        EmbeddedCommand::Write {
            data,
            volume,
            offset,
            file,
        } => {
            let dir = data.data_dir.join("cloud");
            if !dir.join("state.json").exists() {
                bail!("{} holds no embedded cloud", data.data_dir.display());
            }
            let sim = bulwark_sim::Sim::open(&dir)?;
            let (account, region) = sim
                .find_volume(volume)
                .with_context(|| format!("the embedded cloud has no volume {volume}"))?;
            // In pieces, so that a large image never sits in memory whole; saved once.
            const PIECE: usize = 64 << 20;
            let mut input =
                std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
            let mut buf = Vec::with_capacity(PIECE);
            let mut at = *offset;
            sim.batch(|| -> anyhow::Result<()> {
                loop {
                    buf.clear();
                    let n = std::io::Read::read_to_end(
                        &mut std::io::Read::take(&mut input, PIECE as u64),
                        &mut buf,
                    )
                    .with_context(|| format!("reading {}", file.display()))?;
                    if n == 0 {
                        return Ok(());
                    }
                    sim.write_volume(&account, &region, volume, at, &buf)?;
                    at += n as u64;
                }
            })?;
            println!(
                "wrote {} bytes into {volume} ({account}, {region}) at byte {offset}",
                at - offset
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The appliance on the chosen cloud: its engine, and the embedded world when it is that one.
struct Appliance {
    engine: Engine,
    embedded: Option<Arc<Embedded>>,
}

fn appliance(cloud: &CloudArgs, estate: &Estate) -> anyhow::Result<Appliance> {
    let (engines, embedded) = engines(cloud, estate)?;
    Ok(Appliance {
        engine: engines(estate.clone()),
        embedded,
    })
}

/// How the chosen cloud makes engines (for `estate`'s appliance, journals in the data
/// directory), and the embedded world when it is that one.
pub(crate) fn engines(
    cloud: &CloudArgs,
    estate: &Estate,
) -> anyhow::Result<(bulwark_appliance::EngineFactory, Option<Arc<Embedded>>)> {
    match cloud.cloud {
        CloudKind::Embedded => {
            let world = Arc::new(open(&cloud.data_dir, estate)?);
            let w = Arc::clone(&world);
            Ok((Arc::new(move |estate| w.engine_for(estate)), Some(world)))
        }
        CloudKind::Aws => {
            let mut worker_images = std::collections::HashMap::new();
            for spec in &cloud.worker_image {
                let (region, ami) = spec.split_once('=').with_context(|| {
                    format!("--worker-image {spec:?}: expected REGION=AMI, like us-east-1=ami-0abc")
                })?;
                let region: bulwark_model::Region = region
                    .parse()
                    .with_context(|| format!("--worker-image {spec:?}"))?;
                worker_images.insert(region, ami.to_owned());
            }
            let options = bulwark_aws::AwsOptions {
                endpoint_url: cloud.endpoint_url.clone(),
                worker_images,
            };
            let aws = bulwark_aws::AwsCloud::new(options, crate::io_runtime()?);
            let who = aws.appliance_credentials()?;
            let key = match &cloud.key_file {
                Some(path) => {
                    let bytes = crate::args::read_secret_file(path, "key file")?;
                    let text = std::str::from_utf8(&bytes)
                        .with_context(|| format!("the key file {} is not 64 hex digits", path.display()))?;
                    Some(text.trim().to_owned())
                }
                None => None,
            };
            let cloud_of = Cloud::of(Arc::new(aws));
            let store: Arc<dyn bulwark_engine::StateStore> =
                Arc::new(FileStore::new(&cloud.data_dir.join("appliance")));
            Ok((
                Arc::new(move |estate| {
                    Engine::new(
                        cloud_of.clone(),
                        estate,
                        who.clone(),
                        Arc::clone(&store),
                        key.clone(),
                    )
                }),
                None,
            ))
        }
    }
}

pub fn check(estate: &Path, cloud: &CloudArgs, json: bool) -> anyhow::Result<ExitCode> {
    let estate = read_estate(estate)?;
    let appliance = appliance(cloud, &estate)?;
    let plans = plans(&estate, &all_operations(&estate));
    // In the embedded cloud every account's administrator may read key policies; on AWS the
    // check probes each role with kms:DescribeKey instead.
    let reader = |account: &bulwark_model::AccountId| {
        appliance
            .embedded
            .as_ref()
            .and_then(|w| w.sim.root_credentials(account).ok())
    };
    let report = appliance.engine.check(&plans, &reader);
    if json {
        println!("{}", render::pretty(&report));
    } else {
        for p in &report.passed {
            println!("ok       {p}");
        }
        for f in &report.findings {
            println!("MISSING  {}: {}", f.subject, f.problem);
            for line in f.fix.lines() {
                println!("         fix: {line}");
            }
        }
        println!(
            "{} checks passed, {} problem(s){}",
            report.passed.len(),
            report.findings.len(),
            if report.findings.is_empty() {
                ""
            } else {
                ": sessions that need them will fail until fixed"
            }
        );
    }
    Ok(if report.findings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub fn recover(estate: &Path, cloud: &CloudArgs) -> anyhow::Result<ExitCode> {
    let estate = read_estate(estate)?;
    let appliance = appliance(cloud, &estate)?;
    if !report_recovery(&appliance.engine)? {
        println!("No unfinished session.");
    }
    Ok(ExitCode::SUCCESS)
}

/// Cleans up after unfinished sessions; says what it did. Answers whether there were any.
fn report_recovery(engine: &Engine) -> anyhow::Result<bool> {
    let recovered = engine.recover()?;
    for r in &recovered {
        eprintln!(
            "Recovered unfinished session {}: removed {} resource(s){}",
            r.journal,
            r.removed,
            if r.left.is_empty() {
                String::new()
            } else {
                format!("; still left: {}", r.left.join("; "))
            }
        );
    }
    Ok(!recovered.is_empty())
}

/// Shows a session's steps and transfers: a progress bar on a terminal, lines otherwise.
pub fn listener(quiet: bool) -> Listener {
    let terminal = std::io::stderr().is_terminal();
    let bar: Arc<Mutex<Option<ProgressBar>>> = Arc::new(Mutex::new(None));
    Arc::new(move |_session, event: &Event| {
        let mut bar = bar.lock().unwrap_or_else(|e| e.into_inner());
        match event {
            Event::Step {
                number,
                of,
                action,
                resource,
                ..
            } => {
                if let Some(b) = bar.take() {
                    b.finish_and_clear();
                }
                if !quiet {
                    eprintln!("  [{number:>2}/{of}] {action} {resource}");
                }
            }
            Event::Transfer { done, total } if terminal => {
                let b = bar.get_or_insert_with(|| {
                    let b = ProgressBar::new(*total);
                    b.set_style(
                        ProgressStyle::with_template(
                            "        {bar:40} {bytes}/{total_bytes} {bytes_per_sec}",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                    );
                    b
                });
                b.set_length(*total);
                b.set_position(*done);
            }
            Event::Transfer { .. } => {}
            Event::Note { message } => {
                if !quiet {
                    eprintln!("        {message}");
                }
            }
            Event::Cleanup { name } => {
                if !quiet {
                    eprintln!("  cleanup: {name}");
                }
            }
        }
    })
}

pub fn run(cmd: &RunCommand) -> ExitCode {
    let json = cmd.operation.json();
    let resolved = match cmd.operation.resolve() {
        Ok(r) => r,
        Err(e) => return crate::input_error(&e, json),
    };
    let started = Instant::now();
    let result = (|| -> anyhow::Result<Result<SessionReport, EngineError>> {
        let appliance = appliance(&cmd.cloud, &resolved.estate)?;
        let engine = appliance.engine.on_event(listener(json));
        report_recovery(&engine)?;
        Ok(engine.run_operation(&resolved.operation))
    })();
    match result {
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
        Ok(Err(EngineError::Refused(refusal))) => crate::refused(&refusal, json),
        Ok(Err(e)) => {
            if json {
                println!(
                    "{}",
                    render::pretty(
                        &json!({ "error": { "code": e.code(), "message": e.to_string(), "remedy": e.remedy() } })
                    )
                );
            } else if matches!(e, EngineError::CleanupIncomplete { .. }) {
                eprintln!("error: the session failed.\n{e}");
            } else {
                eprintln!("error: the session failed; everything it created was removed.\n{e}");
            }
            ExitCode::FAILURE
        }
        Ok(Ok(report)) => {
            if json {
                println!("{}", render::pretty(&report_json(&report)));
            } else {
                print!("{}", render_report(&report, started));
            }
            ExitCode::SUCCESS
        }
    }
}

fn report_json(report: &SessionReport) -> serde_json::Value {
    json!({
        "session": report.session,
        "summary": report.summary,
        "steps": report.steps,
        "kept": report.kept.iter().map(|(name, target)| json!({"what": name, "id": target.resource_id()})).collect::<Vec<_>>(),
        "restore_points": report.points.iter().map(|(v, p)| {
            let mut point = json!({"volume": v, "point": p});
            // A backup's: what it read, and why in full.
            if let Some(b) = report.backups.iter().find(|b| &b.volume == v && &b.point == p) {
                point["read"] = json!(b.read);
                point["why"] = json!(b.why);
                point["blocks_read"] = json!(b.blocks_read);
                point["blocks_changed"] = json!(b.blocks_changed);
                point["bytes_stored"] = json!(b.bytes_stored);
            }
            point
        }).collect::<Vec<_>>(),
    })
}

fn render_report(report: &SessionReport, started: Instant) -> String {
    let mut out = format!(
        "Session {} succeeded in {:.1} s: {}\n",
        report.session,
        started.elapsed().as_secs_f64(),
        report.summary
    );
    for (name, target) in &report.kept {
        out.push_str(&format!("  kept: {name}: {target:?}\n"));
    }
    for (volume, point) in &report.points {
        out.push_str(&format!("  restore point of {volume}: {point}"));
        if let Some(b) = report
            .backups
            .iter()
            .find(|b| &b.volume == volume && &b.point == point)
        {
            let read = match (&b.why, b.blocks_changed) {
                (Some(why), _) => format!("read in full, {} blocks: {why}", b.blocks_read),
                (None, Some(changed)) => format!("{changed} changed blocks read"),
                (None, None) => format!("{} blocks read", b.blocks_read),
            };
            out.push_str(&format!(
                " ({read}; {} stored)",
                indicatif::HumanBytes(b.bytes_stored)
            ));
        }
        out.push('\n');
    }
    out
}
