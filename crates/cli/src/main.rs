//! `bulwark`: the one binary of Bulwark. It reads arguments and files, calls the library
//! crates, and prints; the crates below it never print. It may depend on every Bulwark crate;
//! nothing depends on it, and it holds no logic a library crate could own.
//!
//! Exit codes: 0 done; 2 wrong input (a flag, the estate file, an undefined reference);
//! 3 refused (AWS would reject the operation; the output says why and what to change);
//! 1 anything else (a session that failed: everything it created was removed).

mod args;
mod demo;
mod files;
mod image;
mod render;
mod serve;
mod sessions;
mod worker;

use std::process::ExitCode;

use bulwark_plan::Refusal;
use clap::Parser;
use serde_json::json;

use args::{Cli, Command, InputError, PlanCommand, PolicyCommand};

pub(crate) const EXIT_INPUT: u8 = 2;
const EXIT_REFUSED: u8 = 3;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = logging(cli.log_format, &cli.log_level) {
        eprintln!("error: --log-level {}: {e}\n  what to do: give error, warn, info, debug or trace, or a filter like warn,bulwark_engine=debug", cli.log_level);
        return ExitCode::from(EXIT_INPUT);
    }
    match cli.command {
        Command::Plan(cmd) => run_plan(&cmd, false),
        Command::Policy(PolicyCommand::Plan(cmd)) => run_plan(&cmd, true),
        Command::Policy(PolicyCommand::WorkerRole { trust }) => {
            let doc = if trust {
                bulwark_plan::worker_role_trust()
            } else {
                bulwark_plan::worker_role_permissions()
            };
            println!("{}", render::pretty(&doc));
            ExitCode::SUCCESS
        }
        Command::Policy(PolicyCommand::Discovery) => {
            let doc = bulwark_model::iam::PolicyDocument::new(vec![bulwark_plan::discovery_statement()]);
            println!("{}", render::pretty(&doc));
            ExitCode::SUCCESS
        }
        Command::Policy(PolicyCommand::Maintenance { estate }) => report(maintenance(&estate)),
        Command::Policy(PolicyCommand::Cloudformation { estate, account }) => {
            report(cloudformation(&estate, &account))
        }
        Command::Demo { data_dir, data_mib } => report(demo::run(data_dir.as_deref(), data_mib)),
        Command::Run(cmd) => sessions::run(&cmd),
        Command::Check { estate, cloud, json } => report(sessions::check(&estate, &cloud, json)),
        Command::Recover { estate, cloud } => report(sessions::recover(&estate, &cloud)),
        Command::Embedded(cmd) => report(sessions::embedded(&cmd)),
        Command::Repo(cmd) => report(image::run_repo(&cmd)),
        Command::Image(cmd) => report(image::run_image(&cmd)),
        Command::Files(cmd) => report(files::run(&cmd)),
        Command::Worker(cmd) => report(worker::run(&cmd)),
        Command::Serve(cmd) => report(serve::serve(&cmd)),
        Command::Token(cmd) => report(serve::token(&cmd)),
    }
}

/// The process's one runtime for the AWS SDK's I/O, built on first use (the embedded cloud
/// needs none); S3 repositories and the AWS cloud block on it.
pub(crate) fn io_runtime() -> anyhow::Result<tokio::runtime::Handle> {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    if let Some(runtime) = RUNTIME.get() {
        return Ok(runtime.handle().clone());
    }
    let runtime =
        bulwark_s3::io_runtime().map_err(|e| anyhow::anyhow!("cannot start the I/O runtime: {e}"))?;
    Ok(RUNTIME.get_or_init(|| runtime).handle().clone())
}

/// Sends the libraries' `tracing` events to standard error, as text or JSON lines.
fn logging(format: args::LogFormat, level: &str) -> Result<(), tracing_subscriber::filter::ParseError> {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_new(level)?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second subscriber (never here: one per process) would be refused; nothing to do then.
    let _ = match format {
        args::LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).try_init(),
        args::LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .try_init(),
    };
    Ok(())
}

/// Prints the CloudFormation template of an account's roles; a refusal (an unknown account)
/// exits 3 like the planner's.
fn maintenance(estate: &std::path::Path) -> anyhow::Result<ExitCode> {
    let estate = args::read_estate(estate)?;
    let (role, statements) = bulwark_plan::maintenance_statements(&estate)
        .ok_or_else(|| anyhow::anyhow!("the estate has no [repository]: there is nothing to maintain"))?;
    println!(
        "{}",
        render::pretty(&serde_json::json!({
            "role": role.to_string(),
            "policy": bulwark_model::iam::PolicyDocument::new(statements),
        }))
    );
    Ok(ExitCode::SUCCESS)
}

fn cloudformation(estate: &std::path::Path, account: &str) -> anyhow::Result<ExitCode> {
    let estate = args::read_estate(estate)?;
    let account: bulwark_model::AccountId = account
        .parse()
        .map_err(|e| anyhow::anyhow!("--account {account:?}: {e}"))?;
    let operations = bulwark_embedded::all_operations(&estate);
    let grants = bulwark_plan::Grants::from_plans(&estate, &bulwark_embedded::plans(&estate, &operations))
        .with_appliance(&estate);
    match bulwark_plan::cloudformation(&estate, &account, &grants) {
        Ok(template) => {
            println!("{}", render::pretty(&template));
            Ok(ExitCode::SUCCESS)
        }
        Err(refusal) => Ok(refused(&refusal, false)),
    }
}

/// Prints a failed command's error, with its causes, and exits 1.
fn report(result: anyhow::Result<ExitCode>) -> ExitCode {
    result.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        ExitCode::FAILURE
    })
}

/// Plans (and with `policies`, derives the policies of) the operation in `cmd`.
fn run_plan(cmd: &PlanCommand, policies: bool) -> ExitCode {
    let json = cmd.operation.json();
    let resolved = match cmd.operation.resolve() {
        Ok(r) => r,
        Err(e) => return input_error(&e, json),
    };
    match bulwark_plan::plan(&resolved.estate, &resolved.operation) {
        Ok(plan) if policies => {
            let policies = bulwark_plan::policies(&resolved.estate, &plan);
            if json {
                println!("{}", render::pretty(&policies));
            } else {
                print!("{}", render::policies(&policies));
            }
            ExitCode::SUCCESS
        }
        Ok(plan) => {
            if json {
                println!("{}", render::pretty(&plan));
            } else {
                print!("{}", render::plan(&plan));
            }
            ExitCode::SUCCESS
        }
        Err(refusal) => refused(&refusal, json),
    }
}

pub(crate) fn refused(refusal: &Refusal, json: bool) -> ExitCode {
    if json {
        println!("{}", render::pretty(&json!({ "error": refusal })));
    } else {
        eprint!("{}", render::refusal(refusal));
    }
    ExitCode::from(EXIT_REFUSED)
}

pub(crate) fn input_error(error: &InputError, json: bool) -> ExitCode {
    if json {
        let code = match error {
            InputError::Read { .. } | InputError::Estate(_) => "invalid-estate",
            InputError::Undefined { .. } => "undefined-reference",
            InputError::TargetKey(_) | InputError::WorkersWithoutWorkers => "invalid-argument",
        };
        let doc = json!({ "error": { "code": code, "message": error.to_string(), "remedy": "correct the input named in the message" } });
        println!("{}", render::pretty(&doc));
    } else {
        eprintln!("error: {error}");
    }
    ExitCode::from(EXIT_INPUT)
}
