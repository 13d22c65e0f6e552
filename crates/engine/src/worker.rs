//! The worker: the program a worker instance runs (`bulwark worker --queue URL`), and the
//! protocol it speaks with the appliance over the session queue. It takes one task, moves the
//! data of its attached volumes between them and the repository through the mover, reports
//! progress, and says how it ended. On AWS it runs on a short-lived EC2 instance; in the
//! embedded cloud it is a thread of the appliance process with the same code.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bulwark_cloud::{Cloud, Credentials, Device, InstanceHost};
use bulwark_model::Region;
use bulwark_mover::{BlockSource, BlockTarget, MoverError, Progress};
use bulwark_repo::{Repository, Secret};
use serde::{Deserialize, Serialize};

/// How long a worker waits for its task before it gives up.
const TASK_WAIT: Duration = Duration::from_secs(120);
/// How often a worker reports progress.
const REPORT_EVERY: Duration = Duration::from_millis(500);

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
    },
    /// Worker to appliance: the task failed.
    Failed {
        /// Why.
        error: String,
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
}

/// The repository and the short-lived credentials to reach it (the repository role's).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
}

/// The user data that starts a worker on the session queue.
pub fn user_data(queue: &str) -> String {
    format!("bulwark worker --queue {queue}")
}

fn parse_user_data(user_data: &str) -> Option<String> {
    let mut words = user_data.split_whitespace();
    (words.next()? == "bulwark" && words.next()? == "worker" && words.next()? == "--queue")
        .then(|| words.next().map(str::to_owned))
        .flatten()
}

/// The worker program: what a worker instance runs at boot.
pub fn boot(host: Arc<dyn InstanceHost>, user_data: String) {
    let Some(queue) = parse_user_data(&user_data) else {
        return;
    };
    // Without credentials it cannot even say that it failed; the appliance notices the
    // silence and the instance's state.
    let Ok(credentials) = host.credentials() else {
        return;
    };
    let link = Link {
        cloud: host.cloud(),
        credentials,
        region: host.region().clone(),
        queue,
    };
    let task = match link.wait_for_task(&*host) {
        Ok(Some(task)) => task,
        Ok(None) => return,
        Err(error) => {
            let _ = link.send(&WorkerMessage::Failed { error });
            return;
        }
    };
    let result = run(&*host, &link, &task);
    if host.running() {
        let message = match result {
            Ok(points) => WorkerMessage::Done { points },
            Err(error) => WorkerMessage::Failed { error },
        };
        let _ = link.send(&message);
    }
}

/// The worker's end of the session queue.
struct Link {
    cloud: Arc<dyn Cloud>,
    credentials: Credentials,
    region: Region,
    queue: String,
}

impl Link {
    fn send(&self, message: &WorkerMessage) -> Result<(), String> {
        let body = serde_json::to_string(message).map_err(|e| e.to_string())?;
        self.cloud
            .send_message(&self.credentials, &self.region, &self.queue, &body)
            .map_err(|e| e.to_string())
    }

    /// Waits for the task; a queue the worker may not read, or a task it may not remove from
    /// the queue, is a failure to report rather than to wait out.
    fn wait_for_task(&self, host: &dyn InstanceHost) -> Result<Option<Task>, String> {
        let deadline = Instant::now() + TASK_WAIT;
        while Instant::now() < deadline && host.running() {
            let messages = match self.cloud.receive_messages(
                &self.credentials,
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
                        .delete_message(&self.credentials, &self.region, &self.queue, &m.receipt);
                if let Ok(WorkerMessage::Task(task)) = serde_json::from_str(&m.body) {
                    // SQS delivers at least once: a task left on the queue comes back after its
                    // visibility timeout, so a worker that cannot remove it must not run it.
                    deleted.map_err(|e| format!("cannot remove its task from the session queue: {e}"))?;
                    return Ok(Some(task));
                }
            }
        }
        Ok(None)
    }
}

/// Runs a task; answers the restore points per volume, or why it failed.
fn run(host: &dyn InstanceHost, link: &Link, task: &Task) -> Result<Vec<(String, String)>, String> {
    let access = &task.repository;
    let backend = link
        .cloud
        .object_store(
            &access.credentials,
            &access.region,
            &access.bucket,
            &access.prefix,
        )
        .map_err(|e| e.to_string())?;
    let secret = match &access.key {
        Some(hex_key) => Secret::from_key_file(hex_key.as_bytes(), "task key").map_err(|e| e.to_string())?,
        None => Secret::None,
    };
    let repo = Repository::open(Arc::from(backend), &secret).map_err(|e| e.to_string())?;
    let devices: Vec<(TaskVolume, Arc<dyn Device>)> = task
        .volumes
        .iter()
        .map(|v| host.device(&v.device).map(|d| (v.clone(), d)))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let progress = Arc::new(Progress::default());
    let total: u64 = devices.iter().map(|(_, d)| d.size()).sum();
    progress.total.store(total, Ordering::Relaxed);
    let stop = Arc::new(AtomicBool::new(false));
    let reporter = {
        let (progress, stop) = (progress.clone(), stop.clone());
        let link = Link {
            cloud: link.cloud.clone(),
            credentials: link.credentials.clone(),
            region: link.region.clone(),
            queue: link.queue.clone(),
        };
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(REPORT_EVERY);
                let (done, total) = progress.snapshot();
                let _ = link.send(&WorkerMessage::Progress { done, total });
            }
        })
    };
    let result = transfer(&repo, task.kind, &devices, &progress);
    stop.store(true, Ordering::Relaxed);
    let _ = reporter.join();
    result.map_err(|e| e.to_string())
}

fn transfer(
    repo: &Repository,
    kind: TaskKind,
    devices: &[(TaskVolume, Arc<dyn Device>)],
    progress: &Progress,
) -> Result<Vec<(String, String)>, MoverError> {
    let threads = bulwark_mover::default_threads();
    let volumes: Vec<(&TaskVolume, DeviceVolume)> = devices
        .iter()
        .map(|(v, device)| {
            let volume = DeviceVolume {
                device: device.clone(),
                name: v.device.clone(),
            };
            (v, volume)
        })
        .collect();
    match kind {
        // All volumes of the instance or none: a backup that fails on any volume writes no
        // restore point.
        TaskKind::Backup => {
            let sources: Vec<(&dyn BlockSource, &str)> = volumes
                .iter()
                .map(|(v, volume)| (volume as &dyn BlockSource, v.volume.as_str()))
                .collect();
            let outcomes = bulwark_mover::backup_all(repo, &sources, progress, threads)?;
            Ok(volumes
                .iter()
                .zip(outcomes)
                .map(|((v, _), outcome)| (v.volume.clone(), outcome.id.to_hex()))
                .collect())
        }
        TaskKind::Restore => {
            let mut points = Vec::new();
            for (v, volume) in &volumes {
                let point = match &v.point {
                    Some(p) => repo.find_point(p)?,
                    None => repo.latest_point(&v.volume)?.map(|(id, _)| id).ok_or_else(|| {
                        MoverError::ChangedBlocks(format!("volume {} has no restore point", v.volume))
                    })?,
                };
                bulwark_mover::restore(repo, &point, volume, progress, threads)?;
                points.push((v.volume.clone(), point.to_hex()));
            }
            Ok(points)
        }
    }
}

/// An attached volume as the mover sees it.
struct DeviceVolume {
    device: Arc<dyn Device>,
    name: String,
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
                source,
            })
    }

    fn describe(&self) -> (String, String) {
        ("device".into(), self.name.clone())
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
                source,
            })
    }

    /// A new EBS volume reads zeros where nothing was written.
    fn reads_zeros(&self) -> bool {
        true
    }

    fn finish(&self) -> Result<(), MoverError> {
        self.device.flush().map_err(|source| MoverError::Target {
            path: PathBuf::from(&self.name),
            source,
        })
    }
}
