//! The worker: the program a worker instance runs (`bulwark worker --queue URL`), and the
//! protocol it speaks with the appliance over the session queue. It takes one task, moves the
//! data of its attached volumes between them and the repository through the mover, reports
//! progress, and says how it ended. On AWS it runs on a short-lived EC2 instance; in the
//! embedded cloud it is a thread of the appliance process with the same code.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bulwark_cloud::{Cloud, Credentials, SharedCredentials};
use bulwark_host::{Device, InstanceHost};
use bulwark_model::{Region, VolumeId};
use bulwark_mover::{Base, BlockSource, BlockTarget, MoverError, Progress, Volume};
use bulwark_repo::{Id, Repository, Secret};

use crate::channel::{Channel, SessionKey, Side};
use serde::{Deserialize, Serialize};

/// How long a worker waits for its task before it gives up.
const TASK_WAIT: Duration = Duration::from_secs(120);
/// How often a worker reports progress.
const REPORT_EVERY: Duration = Duration::from_millis(500);

/// The version of the queue protocol. A worker and an appliance of different releases refuse
/// each other's messages by this number instead of misreading them. Version 2: every message
/// sealed with the session's key ([`crate::channel`]).
pub const PROTOCOL: u32 = 2;

/// A message that is not one this release can read.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// Written by another release of Bulwark (version 0: before messages carried one).
    #[error(
        "a worker message of protocol version {found}, where this release speaks version {PROTOCOL}: the \
         worker and the appliance are of different releases\n  what to do: boot workers from an image of the \
         appliance's release (`bulwark worker` of the same version)"
    )]
    Version {
        /// The version the message carries.
        found: u64,
    },
    /// Not a worker message at all.
    #[error("not a Bulwark worker message: {0}")]
    Malformed(String),
    /// A message that does not open with the session's key: not written by the session's
    /// appliance or worker (someone who can write the queue), or altered on the way.
    #[error(
        "a message on the session queue that does not open with the session's key: not written by this \
         session's appliance or worker, or altered; it is ignored"
    )]
    Forged,
}

/// A message on the session queue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WorkerMessage {
    /// Appliance to worker: what to do.
    Task(Task),
    /// Worker to appliance: bytes done of the total.
    Progress {
        /// Bytes processed.
        done: u64,
        /// Bytes to process.
        total: u64,
    },
    /// Worker to appliance: finished; the restore points written or restored, per volume.
    Done {
        /// (production volume id, restore point id).
        points: Vec<(String, String)>,
        /// A restore's: the instance record its restore points kept (`InstanceRecord`'s JSON).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        instance: Option<String>,
    },
    /// Worker to appliance: the task failed.
    Failed {
        /// Why.
        error: String,
    },
    /// Appliance to worker: a new session of the repository role, sent before the one the
    /// worker holds expires (a role session lasts an hour when the appliance assumes it
    /// through another role).
    Credentials {
        /// The repository role's new session credentials.
        credentials: Credentials,
    },
}

/// Whether the worker backs up or restores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// Read the devices into the repository.
    Backup,
    /// Write restore points onto the devices.
    Restore,
}

/// One volume of a task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskVolume {
    /// The device it is attached as (`/dev/sdf`).
    pub device: String,
    /// The production volume whose data it holds (the restore points' name).
    pub volume: String,
    /// For restores, the restore point; `None` for the latest of `volume`.
    pub point: Option<String>,
    /// The attached volume itself (not `volume`, whose data it holds): how the worker finds
    /// its block device where the device name is not what the instance sees (NVMe on Nitro).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_id: Option<VolumeId>,
    /// For backups, the snapshot the attached volume was made from, which the restore point
    /// records as its source: the base the next backup lists its changes since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// For backups, only these blocks changed since restore point `parent`'s data: the worker
    /// reads them alone and builds the new point on it. `None` reads the whole volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<Changes>,
}

/// The blocks of a volume changed since a restore point.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changes {
    /// The restore point the changes apply to (its id, hex).
    pub parent: String,
    /// The changed blocks, in the repository's block size, sorted.
    #[serde(with = "crate::block_list")]
    pub blocks: Vec<u64>,
}

/// The repository and the short-lived credentials to reach it (the repository role's).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepositoryAccess {
    /// Bucket.
    pub bucket: String,
    /// Key prefix.
    pub prefix: String,
    /// The bucket's region.
    pub region: Region,
    /// The repository role's session credentials.
    pub credentials: Credentials,
    /// The repository key-encryption key (hex), if the repository is encrypted.
    pub key: Option<String>,
    /// How often the appliance sends new credentials (seconds); `None`: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewal_seconds: Option<u64>,
}

/// Never the key: logs and panics show where the repository is, not what opens it.
impl std::fmt::Debug for RepositoryAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepositoryAccess")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("region", &self.region)
            .field("credentials", &self.credentials)
            .field("key", &self.key.as_ref().map(|_| ".."))
            .field("renewal_seconds", &self.renewal_seconds)
            .finish()
    }
}

impl RepositoryAccess {
    /// Opens the repository with these credentials, which stay replaceable through `shared`.
    pub fn open(&self, cloud: &Cloud, shared: &SharedCredentials) -> Result<Repository, String> {
        let backend = cloud
            .s3
            .object_store(shared, &self.region, &self.bucket, &self.prefix)
            .map_err(|e| e.to_string())?;
        let secret = match &self.key {
            Some(hex_key) => {
                Secret::from_key_file(hex_key.as_bytes(), "task key").map_err(|e| e.to_string())?
            }
            None => Secret::None,
        };
        Repository::open(Arc::from(backend), &secret).map_err(|e| e.to_string())
    }
}

/// Runs `work` while `report` is told the progress every half second (and once at the end).
pub(crate) fn reporting<R>(
    progress: &Progress,
    report: impl Fn(u64, u64) + Sync,
    work: impl FnOnce() -> R,
) -> R {
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(REPORT_EVERY);
                let (done, total) = progress.snapshot();
                report(done, total);
            }
        });
        let out = work();
        stop.store(true, Ordering::Relaxed);
        let (done, total) = progress.snapshot();
        report(done, total);
        out
    })
}

/// A worker's task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    /// Backup or restore.
    pub kind: TaskKind,
    /// The volumes, in order.
    pub volumes: Vec<TaskVolume>,
    /// The repository.
    pub repository: RepositoryAccess,
    /// A backup's: the instance record to keep with its restore points (`InstanceRecord`'s
    /// JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// A backup's: whether each restore point gets a file index.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub index_files: bool,
}

/// The user data that starts a worker on the session queue: a shell script, which cloud-init
/// runs at the instance's first boot (its output goes to `/var/log/cloud-init-output.log`). It
/// carries the session's key, in the environment of the worker only (not on its command line,
/// which every process of the instance may read).
pub fn user_data(queue: &str, key: &SessionKey) -> String {
    format!(
        "#!/bin/sh\n{SESSION_KEY_VAR}={} exec bulwark worker --queue {}\n",
        key.to_hex().as_str(),
        shell_quote(queue)
    )
}

/// The largest message SQS takes (256 KiB): a task longer than that lists fewer changes.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// The variable of the session's key in the worker's environment.
pub const SESSION_KEY_VAR: &str = "BULWARK_SESSION_KEY";

/// `s` as one word of a POSIX shell: single-quoted, a single quote written as `'\''`.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The queue URL and session key of user data: the script of [`user_data`], or the bare words
/// `[BULWARK_SESSION_KEY=HEX] bulwark worker --queue URL`. Finds `worker --queue URL` after a
/// word naming `bulwark` (a path to it too), on any line that is not a comment, and the key
/// among the assignments before it.
fn parse_user_data(user_data: &str) -> Option<(String, Option<SessionKey>)> {
    user_data
        .lines()
        .map(str::trim)
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let words = shell_words(line)?;
            let at = words.windows(4).position(|w| {
                let program = w[0].rsplit('/').next().unwrap_or_default();
                program == "bulwark" && w[1] == "worker" && w[2] == "--queue" && !w[3].is_empty()
            })?;
            let key = words[..at]
                .iter()
                .find_map(|w| w.strip_prefix(SESSION_KEY_VAR)?.strip_prefix('='))
                .and_then(SessionKey::from_hex);
            Some((words[at + 3].clone(), key))
        })
}

/// Splits a line into words as a POSIX shell does, for the quoting [`shell_quote`] writes and a
/// little more: single quotes, double quotes (with their backslash escapes), backslashes
/// outside quotes. `None` for an unterminated quote.
fn shell_words(line: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => words.extend(word.take()),
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next()? {
                        '\'' => break,
                        c => w.push(c),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => match chars.next()? {
                            c @ ('"' | '\\' | '$' | '`') => w.push(c),
                            c => {
                                w.push('\\');
                                w.push(c);
                            }
                        },
                        c => w.push(c),
                    }
                }
            }
            '\\' => {
                if let Some(c) = chars.next() {
                    word.get_or_insert_with(String::new).push(c);
                }
            }
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    Some(words)
}

/// The worker program as the embedded cloud's machine image runs it: [`serve`] on the queue its
/// user data names. It has no one to tell how it ended but the appliance, which `serve` does.
pub fn boot(host: Arc<dyn InstanceHost>, user_data: String) {
    // Without its key a worker cannot read its task, nor say so: the appliance notices.
    if let Some((queue, Some(key))) = parse_user_data(&user_data) {
        let _ = serve(host, &queue, &key);
    }
}

/// The worker program: takes its task from the session queue, runs it, and reports how it
/// ended to the appliance. Answers the restore points written or restored per volume
/// (production volume id, restore point id), or why it failed, for the caller to show too.
pub fn serve(
    host: Arc<dyn InstanceHost>,
    queue: &str,
    key: &SessionKey,
) -> Result<Vec<(String, String)>, String> {
    // Without credentials it cannot even say that it failed; the appliance notices the
    // silence and the instance's state.
    let credentials = host
        .credentials()
        .map_err(|e| format!("cannot get the instance profile's credentials: {e}"))?;
    let link = Link {
        cloud: host.cloud(),
        host: host.clone(),
        credentials: Mutex::new((credentials, Instant::now())),
        region: host.region().clone(),
        queue: queue.to_owned(),
        channel: Channel::new(key, Side::Worker).map_err(|e| e.to_string())?,
    };
    let task = match link.wait_for_task(&*host) {
        Ok(Some(task)) => task,
        Ok(None) if !host.running() => return Err("the instance stopped before a task arrived".into()),
        Ok(None) => {
            return Err(format!(
                "no task arrived on the session queue {queue} within {} s",
                TASK_WAIT.as_secs()
            ))
        }
        Err(error) => {
            let _ = link.send(&WorkerMessage::Failed { error: error.clone() });
            return Err(error);
        }
    };
    let result = run(&*host, &link, &task);
    if host.running() {
        let message = match &result {
            Ok(done) => WorkerMessage::Done {
                points: done.points.clone(),
                instance: done.instance.clone(),
            },
            Err(error) => WorkerMessage::Failed { error: error.clone() },
        };
        if let Err(e) = link.send(&message) {
            let ended = match &result {
                Ok(_) => "the task is done".to_owned(),
                Err(error) => format!("the task failed ({error})"),
            };
            return Err(format!(
                "{ended} but the worker could not report it on the session queue: {e}"
            ));
        }
    }
    result.map(|done| done.points)
}

/// What a task did: the restore points written or restored per volume (production volume
/// id, restore point id), and a restore's instance record, as its restore points kept it.
struct Transferred {
    points: Vec<(String, String)>,
    instance: Option<String>,
}

/// How long the worker uses its instance profile's credentials before it asks the instance
/// for them again (EC2 rotates them well before they expire).
const HOST_CREDENTIALS_REUSE: Duration = Duration::from_secs(10 * 60);

/// The worker's end of the session queue.
struct Link {
    cloud: Cloud,
    host: Arc<dyn InstanceHost>,
    /// The instance profile's credentials, and when they were taken.
    credentials: Mutex<(Credentials, Instant)>,
    region: Region,
    queue: String,
    /// The session's sealed channel.
    channel: Channel,
}

impl Link {
    /// The instance profile's credentials, taken again from the instance now and then.
    fn credentials(&self) -> Credentials {
        let mut held = crate::lock(&self.credentials);
        if held.1.elapsed() > HOST_CREDENTIALS_REUSE {
            // On failure the held ones are used: they may well still be valid.
            if let Ok(fresh) = self.host.credentials() {
                *held = (fresh, Instant::now());
            }
        }
        held.0.clone()
    }

    fn send(&self, message: &WorkerMessage) -> Result<(), String> {
        let body = self.channel.seal(message).map_err(|e| e.to_string())?;
        self.cloud
            .sqs
            .send_message(&self.credentials(), &self.region, &self.queue, &body)
            .map_err(|e| e.to_string())
    }

    /// Takes new repository credentials from the queue, if the appliance sent them: other
    /// messages taken meanwhile are the worker's own progress reports, which a newer one
    /// replaces anyway.
    fn renewed_credentials(&self) -> Option<Credentials> {
        let who = self.credentials();
        let messages = self
            .cloud
            .sqs
            .receive_messages(&who, &self.region, &self.queue, Duration::ZERO)
            .ok()?;
        let mut renewed = None;
        for m in messages {
            match self.channel.open(&m.body) {
                Ok((Side::Worker, WorkerMessage::Credentials { credentials })) => {
                    let _ = self
                        .cloud
                        .sqs
                        .delete_message(&who, &self.region, &self.queue, &m.receipt);
                    renewed = Some(credentials);
                }
                Ok((Side::Appliance, WorkerMessage::Progress { .. })) => {
                    let _ = self
                        .cloud
                        .sqs
                        .delete_message(&who, &self.region, &self.queue, &m.receipt);
                }
                // Left for the appliance: it comes back after its visibility timeout.
                _ => {}
            }
        }
        renewed
    }

    /// Waits for the task; a queue the worker may not read, or a task it may not remove from
    /// the queue, is a failure to report rather than to wait out.
    fn wait_for_task(&self, host: &dyn InstanceHost) -> Result<Option<Task>, String> {
        let deadline = Instant::now() + TASK_WAIT;
        while Instant::now() < deadline && host.running() {
            let messages = match self.cloud.sqs.receive_messages(
                &self.credentials(),
                &self.region,
                &self.queue,
                Duration::from_millis(500),
            ) {
                Ok(messages) => messages,
                Err(e) if e.kind.retryable() => {
                    std::thread::sleep(Duration::from_millis(200));
                    continue;
                }
                Err(e) => return Err(format!("cannot read the session queue: {e}")),
            };
            for m in messages {
                let deleted =
                    self.cloud
                        .sqs
                        .delete_message(&self.credentials(), &self.region, &self.queue, &m.receipt);
                match self.channel.open(&m.body) {
                    Ok((Side::Worker, WorkerMessage::Task(task))) => {
                        // SQS delivers at least once: a task left on the queue comes back after
                        // its visibility timeout, so a worker that cannot remove it must not run it.
                        deleted.map_err(|e| format!("cannot remove its task from the session queue: {e}"))?;
                        return Ok(Some(task));
                    }
                    // A task from an appliance of another release: said, not misread.
                    Err(e @ ProtocolError::Version { .. }) => return Err(e.to_string()),
                    _ => {}
                }
            }
        }
        Ok(None)
    }
}

/// Runs a task; answers what it did, or why it failed.
fn run(host: &dyn InstanceHost, link: &Link, task: &Task) -> Result<Transferred, String> {
    let shared = SharedCredentials::new(task.repository.credentials.clone());
    let repo = task.repository.open(&link.cloud, &shared)?;
    let renewal = task.repository.renewal_seconds.map(Duration::from_secs);
    let renewed_at = Mutex::new(Instant::now());
    let devices: Vec<(TaskVolume, Arc<dyn Device>)> = task
        .volumes
        .iter()
        .map(|v| {
            host.device(&v.device, v.volume_id.as_ref())
                .map(|d| (v.clone(), d))
        })
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let progress = Progress::default();
    let total: u64 = devices.iter().map(|(_, d)| d.size()).sum();
    progress.total.store(total, Ordering::Relaxed);
    reporting(
        &progress,
        |done, total| {
            let _ = link.send(&WorkerMessage::Progress { done, total });
            // Once the appliance's renewal is due, look for it at every report until it comes.
            let mut at = crate::lock(&renewed_at);
            if renewal.is_some_and(|every| at.elapsed() >= every) {
                if let Some(credentials) = link.renewed_credentials() {
                    shared.replace(credentials);
                    *at = Instant::now();
                }
            }
        },
        || transfer(&repo, task, &devices, &progress),
    )
    .map_err(|e| e.to_string())
}

fn transfer(
    repo: &Repository,
    task: &Task,
    devices: &[(TaskVolume, Arc<dyn Device>)],
    progress: &Progress,
) -> Result<Transferred, MoverError> {
    let threads = bulwark_mover::default_threads();
    let volumes: Vec<(&TaskVolume, DeviceVolume)> = devices
        .iter()
        .map(|(v, device)| {
            let volume = DeviceVolume {
                device: device.clone(),
                name: v.device.clone(),
                snapshot: v.snapshot.clone(),
            };
            (v, volume)
        })
        .collect();
    match task.kind {
        // All volumes of the instance or none: a backup that fails on any volume writes no
        // restore point.
        TaskKind::Backup => {
            let changes: Vec<Option<(Id, &[u64])>> = volumes
                .iter()
                .map(|(v, _)| {
                    v.changes
                        .as_ref()
                        .map(|c| Ok::<_, MoverError>((repo.find_point(&c.parent)?, c.blocks.as_slice())))
                        .transpose()
                })
                .collect::<Result<_, _>>()?;
            let sources: Vec<Volume> = volumes
                .iter()
                .zip(&changes)
                .map(|((v, volume), changes)| Volume {
                    source: volume as &dyn BlockSource,
                    volume_id: v.volume.as_str(),
                    // The parent the appliance checked is the parent used.
                    base: changes.map_or(Base::Full, |(parent, blocks)| Base::Changed { parent, blocks }),
                    instance: task.instance.as_deref(),
                    index_files: task.index_files,
                })
                .collect();
            let outcomes = bulwark_mover::backup_volumes(repo, &sources, progress, threads)?;
            let points = volumes
                .iter()
                .zip(outcomes)
                .map(|((v, _), outcome)| (v.volume.clone(), outcome.id.to_hex()))
                .collect();
            Ok(Transferred {
                points,
                instance: None,
            })
        }
        TaskKind::Restore => {
            let mut points = Vec::new();
            let mut instance = None;
            for (v, volume) in &volumes {
                let (point, manifest) = match &v.point {
                    Some(p) => {
                        let id = repo.find_point(p)?;
                        (id, repo.read_point(&id)?)
                    }
                    None => repo.latest_point(&v.volume)?.ok_or_else(|| {
                        MoverError::ChangedBlocks(format!("volume {} has no restore point", v.volume))
                    })?,
                };
                bulwark_mover::restore(repo, &point, volume, progress, threads)?;
                points.push((v.volume.clone(), point.to_hex()));
                instance = instance.or(manifest.instance);
            }
            Ok(Transferred { points, instance })
        }
    }
}

/// An attached volume as the mover sees it.
struct DeviceVolume {
    device: Arc<dyn Device>,
    name: String,
    /// The snapshot it was made from, if the task named it: what its restore point is a
    /// backup of.
    snapshot: Option<String>,
}

impl BlockSource for DeviceVolume {
    fn size(&self) -> u64 {
        self.device.size()
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), MoverError> {
        self.device
            .read_at(offset, buf)
            .map_err(|source| MoverError::Source {
                path: PathBuf::from(&self.name),
                error: source,
            })
    }

    fn describe(&self) -> (String, String) {
        match &self.snapshot {
            Some(snapshot) => (crate::direct::SOURCE_KIND.into(), snapshot.clone()),
            None => ("device".into(), self.name.clone()),
        }
    }

    fn written_blocks(&self, block_size: u64) -> Option<Vec<u64>> {
        // The device counts in EBS blocks; the repository's blocks are the same size.
        (block_size == bulwark_cloud::EBS_BLOCK_SIZE)
            .then(|| self.device.written_blocks())
            .flatten()
    }
}

impl BlockTarget for DeviceVolume {
    fn write_at(&self, offset: u64, data: &[u8]) -> Result<(), MoverError> {
        self.device
            .write_at(offset, data)
            .map_err(|source| MoverError::Target {
                path: PathBuf::from(&self.name),
                error: source,
            })
    }

    /// A new EBS volume reads zeros where nothing was written.
    fn reads_zeros(&self) -> bool {
        true
    }

    fn finish(&self) -> Result<(), MoverError> {
        self.device.flush().map_err(|source| MoverError::Target {
            path: PathBuf::from(&self.name),
            error: source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_user_data, shell_words, user_data, ProtocolError, WorkerMessage, PROTOCOL};
    use crate::channel::{Channel, SessionKey, Side};

    /// A task (and a credential renewal) printed for a log or a panic shows no secret: not
    /// the repository key, not the role session's secret key or token.
    #[test]
    fn no_debug_output_shows_a_secret() {
        let credentials = bulwark_cloud::Credentials {
            access_key_id: "ASIAEXAMPLEKEYID".into(),
            secret_access_key: "wJalrXUtnFEMI-secret".into(),
            session_token: Some("FwoGZXIvYXdz-token".into()),
        };
        let task = WorkerMessage::Task(super::Task {
            kind: super::TaskKind::Backup,
            volumes: Vec::new(),
            repository: super::RepositoryAccess {
                bucket: "b".into(),
                prefix: "p".into(),
                region: "us-east-1".parse().unwrap(),
                credentials: credentials.clone(),
                key: Some("a1b2c3d4".repeat(8)),
                renewal_seconds: Some(900),
            },
            instance: None,
            index_files: false,
        });
        let secret = bulwark_repo::Secret::Passphrase("correct horse battery".into());
        for printed in [
            format!("{task:?}"),
            format!("{credentials:#?}"),
            format!("{secret:?}"),
        ] {
            for hidden in [
                "wJalrXUtnFEMI-secret",
                "FwoGZXIvYXdz-token",
                "a1b2c3d4a1b2",
                "correct horse",
            ] {
                assert!(!printed.contains(hidden), "{hidden} in {printed}");
            }
        }
        assert!(
            format!("{task:?}").contains("ASIAEXAMPLEKEYID"),
            "the key id is shown"
        );
    }

    #[test]
    fn messages_carry_their_protocol_version_and_another_release_is_refused() {
        let key = SessionKey::generate().unwrap();
        let (appliance, worker) = (
            Channel::new(&key, Side::Appliance).unwrap(),
            Channel::new(&key, Side::Worker).unwrap(),
        );
        let message = WorkerMessage::Progress { done: 3, total: 7 };
        let body = worker.seal(&message).unwrap();
        assert!(body.contains(&format!("\"protocol\":{PROTOCOL}")), "{body}");
        assert_eq!(appliance.open(&body).unwrap(), (Side::Appliance, message));

        // Before versions, version 1 (in the clear), and after this one: refused by number,
        // never misread.
        for (old, found) in [
            (r#"{"type":"progress","done":3,"total":7}"#.to_owned(), 0),
            (
                r#"{"protocol":1,"type":"progress","done":3,"total":7}"#.to_owned(),
                1,
            ),
            (
                body.replace(&format!("\"protocol\":{PROTOCOL}"), "\"protocol\":99"),
                99,
            ),
        ] {
            let refused = appliance.open(&old).unwrap_err();
            assert!(
                matches!(refused, ProtocolError::Version { found: f } if f == found),
                "{old}"
            );
            let text = refused.to_string();
            assert!(
                text.contains(&format!("version {found}")) && text.contains("what to do"),
                "{text}"
            );
        }
        for bad in [
            "",
            "[]",
            "{\"protocol\":2",
            "{\"protocol\":2,\"type\":\"unknown\"}",
        ] {
            assert!(
                matches!(
                    appliance.open(bad),
                    Err(ProtocolError::Malformed(_) | ProtocolError::Forged | ProtocolError::Version { .. })
                ),
                "{bad}"
            );
        }
    }

    const QUEUE: &str = "https://sqs.eu-west-1.amazonaws.com/111111111111/bulwark-0123";

    /// The queue a script names, and whether it carries `key`.
    fn parsed(script: &str, key: &SessionKey) -> Option<(String, bool)> {
        parse_user_data(script).map(|(q, k)| (q, k.is_some_and(|k| k.to_hex() == key.to_hex())))
    }

    #[test]
    fn user_data_is_a_shell_script_that_parses_back_to_its_queue_and_key() {
        let key = SessionKey::generate().unwrap();
        let script = user_data(QUEUE, &key);
        assert_eq!(
            script,
            format!(
                "#!/bin/sh\nBULWARK_SESSION_KEY={} exec bulwark worker --queue '{QUEUE}'\n",
                key.to_hex().as_str()
            )
        );
        assert_eq!(parsed(&script, &key), Some((QUEUE.to_owned(), true)));
        // Whatever the URL holds, the shell gets it as one word, and so does the parser.
        for queue in [
            "http://127.0.0.1:5000/q it's; rm -rf / $(x) `y` \"z\" \\",
            "a'b''c",
            "'",
        ] {
            let script = user_data(queue, &key);
            assert_eq!(parsed(&script, &key), Some((queue.to_owned(), true)), "{script}");
            let line = script.lines().nth(1).unwrap_or_default();
            assert_eq!(shell_words(line).unwrap_or_default().len(), 6, "{line}");
        }
    }

    #[test]
    fn the_bare_form_and_variants_of_the_script_parse() {
        let key = SessionKey::generate().unwrap();
        let bare = format!("bulwark worker --queue {QUEUE}");
        assert_eq!(
            parsed(&bare, &key),
            Some((QUEUE.to_owned(), false)),
            "no key: found, without one"
        );
        let script = format!(
            "#!/bin/bash\n# bulwark worker --queue nope\nset -e\nBULWARK_SESSION_KEY='{}' /usr/local/bin/bulwark worker --queue \"{QUEUE}\" >>/var/log/bulwark.log 2>&1\n",
            key.to_hex().as_str()
        );
        assert_eq!(parsed(&script, &key), Some((QUEUE.to_owned(), true)));
        for wrong in [
            "",
            "bulwark worker --queue",
            "bulwark worker --queue ''",
            "worker --queue x",
            "notbulwark worker --queue x",
            "bulwark worker --queue 'unterminated",
        ] {
            assert!(parse_user_data(wrong).is_none(), "{wrong}");
        }
    }
}
