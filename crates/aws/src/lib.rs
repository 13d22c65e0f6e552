//! The AWS implementation of Bulwark's cloud trait ([`bulwark_cloud::Cloud`]), on the official
//! AWS SDK for Rust: EC2, the EBS direct APIs, KMS, IAM, STS, SQS, and S3 (through
//! `bulwark-s3`). It also works against AWS-compatible endpoints (moto in the tests) with an
//! endpoint URL.
//!
//! Every call is signed with the credentials the engine passes (the appliance's own, from the
//! SDK's standard chain through [`AwsCloud::appliance_credentials`], or a role session's), and
//! goes to the region the plan names. Clients are built per (credentials, region) and cached.
//! Every call has explicit timeouts and is one attempt: the SDK's retries are off, because the
//! engine's retry policy (`bulwark_engine::retry`) is the one budget of a call, and its EBS
//! rate limiter must see each throttling answer as it comes. AWS error codes become the
//! same [`bulwark_cloud::ErrorKind`]s the embedded cloud answers with
//! ([`bulwark_cloud::ErrorKind::of`]).
//!
//! [`AwsHost`] is the other side: the EC2 instance `bulwark worker` runs on, as the engine's
//! worker program sees it (identity from the instance metadata service, attached EBS volumes
//! as block devices).
//!
//! Like `bulwark-s3`, it blocks on the host's runtime (its handle given to [`AwsCloud::new`]),
//! so the engine's threads call it directly; it must not be called from inside an async task. It must not depend on the
//! planner, the engine or the embedded cloud: it speaks AWS, nothing else.
#![deny(missing_docs)]

mod api;
mod errors;
pub mod host;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_credential_types::provider::ProvideCredentials;
use bulwark_cloud::{CloudError, Credentials, ErrorKind};
use bulwark_model::{Action, Region};

pub use host::{open_device, AwsHost, BlockDevice, HostError};

/// Connect timeout (TCP and TLS): a blackholed route (a missing VPC endpoint) fails in seconds
/// instead of hanging.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Timeout of one attempt of a control-plane call (EC2, IAM, KMS, STS, SQS answer in
/// milliseconds to seconds; a long poll of SQS waits at most 20 s).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);
/// Timeout of a whole call, retries included.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(120);
/// The region of global services (IAM, STS's global endpoint) when none applies.
const GLOBAL_REGION: &str = "us-east-1";

/// Why the AWS cloud could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    /// The standard credential chain found no credentials.
    #[error(
        "no AWS credentials: configure them (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile \
         with AWS_PROFILE, or an instance profile on EC2): {0}"
    )]
    NoCredentials(String),
}

/// Where and how to reach AWS.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AwsOptions {
    /// An AWS-compatible endpoint (like `http://127.0.0.1:5000` for moto) for every service.
    pub endpoint_url: Option<String>,
    /// The machine image workers boot, per region (they run `bulwark worker`).
    pub worker_images: HashMap<Region, String>,
}

/// AWS, through the SDK.
pub struct AwsCloud {
    /// The host's I/O runtime (`bulwark_s3::io_runtime`), on which each blocking call waits.
    runtime: tokio::runtime::Handle,
    sdk: SdkConfig,
    options: AwsOptions,
    clients: Mutex<HashMap<(String, String), api::Clients>>,
}

impl std::fmt::Debug for AwsCloud {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsCloud")
            .field("endpoint", &self.options.endpoint_url)
            .finish_non_exhaustive()
    }
}

impl AwsCloud {
    /// Sets up the SDK: timeouts, no retries (the engine's), the endpoint. Nothing is sent yet.
    /// Calls run on `runtime`, the host's (`bulwark_s3::io_runtime`), and must not be made from
    /// inside an async task (an async host makes them from `spawn_blocking`).
    pub fn new(options: AwsOptions, runtime: tokio::runtime::Handle) -> AwsCloud {
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .operation_attempt_timeout(ATTEMPT_TIMEOUT)
            .operation_timeout(OPERATION_TIMEOUT)
            .build();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .http_client(bulwark_s3::http_client())
            .timeout_config(timeouts)
            .retry_config(RetryConfig::disabled());
        if let Some(endpoint) = &options.endpoint_url {
            loader = loader.endpoint_url(endpoint);
        }
        let sdk = runtime.block_on(loader.load());
        AwsCloud {
            runtime,
            sdk,
            options,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// The appliance's own credentials, from the SDK's standard chain (environment, profile,
    /// web identity, container, instance metadata).
    pub fn appliance_credentials(&self) -> Result<Credentials, AwsError> {
        let provider = self
            .sdk
            .credentials_provider()
            .ok_or_else(|| AwsError::NoCredentials("no credential provider".into()))?;
        let c = self
            .runtime
            .block_on(provider.provide_credentials())
            .map_err(|e| AwsError::NoCredentials(e.to_string()))?;
        Ok(Credentials {
            access_key_id: c.access_key_id().to_owned(),
            secret_access_key: c.secret_access_key().to_owned(),
            session_token: c.session_token().map(str::to_owned),
        })
    }

    /// The clients for `who` in `region` (a global service uses [`GLOBAL_REGION`]).
    fn clients(&self, who: &Credentials, region: Option<&Region>) -> api::Clients {
        let region = region.map_or(GLOBAL_REGION, Region::as_str).to_owned();
        let key = (who.access_key_id.clone(), region.clone());
        let mut cache = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .entry(key)
            .or_insert_with(|| api::Clients::new(&self.sdk, who, &region))
            .clone()
    }

    /// Runs a call on the runtime; the SDK's operation timeout bounds it.
    fn run<T>(
        &self,
        future: impl std::future::Future<Output = Result<T, CloudError>>,
    ) -> Result<T, CloudError> {
        self.runtime.block_on(future)
    }

    /// Runs a call as a task of the runtime's own threads, the caller waking once at its end:
    /// for the block calls of the EBS direct APIs, made by many threads at once, whose
    /// responses would otherwise wake each caller at every chunk of a 512 KiB body.
    fn run_spawned<T: Send + 'static>(
        &self,
        action: Action,
        future: impl std::future::Future<Output = Result<T, CloudError>> + Send + 'static,
    ) -> Result<T, CloudError> {
        let task = self.runtime.spawn(future);
        self.runtime.block_on(task).unwrap_or_else(|e| {
            Err(CloudError::new(
                action,
                ErrorKind::Unavailable,
                "TaskFailed",
                format!("the call did not finish: {e}"),
            ))
        })
    }

    /// The worker image of a region.
    fn worker_image(&self, action: Action, region: &Region) -> Result<String, CloudError> {
        self.options.worker_images.get(region).cloned().ok_or_else(|| {
            CloudError::new(
                action,
                ErrorKind::Invalid,
                "NoWorkerImage",
                format!("no worker image is configured for {region}: give the AMI that runs `bulwark worker` there"),
            )
        })
    }
}
