//! `bulwark worker`: the program of a worker instance, which its user data starts at boot. It
//! finds out which instance it is from the instance metadata service, takes its task from the
//! session queue, moves the data between its attached volumes and the repository, and reports
//! to the appliance (`bulwark_engine::worker::serve`).

use std::process::ExitCode;
use std::sync::Arc;

use bulwark_aws::{AwsCloud, AwsHost, AwsOptions};
use bulwark_engine::worker;
use bulwark_host::InstanceHost;
use clap::Args;

#[derive(Args)]
pub struct WorkerCommand {
    /// The session queue's URL, on which the appliance sends the task.
    #[arg(long, value_name = "URL")]
    pub queue: String,
    /// The session's key (64 hex digits), which seals every message on the queue; the user
    /// data the appliance writes passes it in the environment, never on the command line.
    #[arg(
        long = "session-key",
        value_name = "HEX",
        env = "BULWARK_SESSION_KEY",
        hide_env_values = true
    )]
    pub session_key: String,
    /// An AWS-compatible endpoint for every service (like moto's). The instance metadata
    /// service is found as the AWS SDK finds it (AWS_EC2_METADATA_SERVICE_ENDPOINT).
    #[arg(long, value_name = "URL", env = "BULWARK_AWS_ENDPOINT")]
    pub endpoint_url: Option<String>,
}

/// Runs the worker until its task is done (exit 0) or failed (an error, exit 1). Either way
/// the appliance has been told, if the queue could be reached.
pub fn run(cmd: &WorkerCommand) -> anyhow::Result<ExitCode> {
    let key = bulwark_engine::channel::SessionKey::from_hex(&cmd.session_key).ok_or_else(|| {
        anyhow::anyhow!(
            "{} is not a session key (64 hex digits): start the worker with the user data the appliance wrote",
            worker::SESSION_KEY_VAR
        )
    })?;
    let options = AwsOptions {
        endpoint_url: cmd.endpoint_url.clone(),
        worker_images: Default::default(),
    };
    let cloud = Arc::new(AwsCloud::new(options, crate::io_runtime()?));
    let host = AwsHost::new(cloud)?;
    eprintln!(
        "bulwark worker on {} in {}: waiting for the task on {}",
        host.instance_id(),
        host.region(),
        cmd.queue
    );
    let points = worker::serve(Arc::new(host), &cmd.queue, &key)
        .map_err(|e| anyhow::anyhow!("the task failed: {e}"))?;
    for (volume, point) in points {
        println!("{volume} {point}");
    }
    eprintln!("bulwark worker: the task is done");
    Ok(ExitCode::SUCCESS)
}
