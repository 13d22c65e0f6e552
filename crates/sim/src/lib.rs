//! The embedded cloud: AWS accounts and regions in one process, implementing
//! the cloud traits of `bulwark-cloud`. Volumes and snapshots hold real bytes (snapshots share unchanged
//! blocks with their parents); IAM roles carry trust and identity policies that are evaluated
//! on every call, KMS keys carry key policies and grants, and the EBS, KMS and IAM rules of
//! `reference/aws-rules.md` are enforced with AWS's error codes. Instances boot the program the
//! engine installs ([`Sim::set_boot`]), so workers run as threads that read and write the
//! simulated volumes as block devices.
//!
//! The world persists in a data directory (`state.json` and a block store), so separate
//! commands see the same accounts and resources; processes sharing it take turns call by call. Faults can
//! be injected ([`Fault`]): a named call failing on its Nth use, throttling, a worker dying.
//!
//! What it must not depend on: the planner and the engine. It knows AWS, not Bulwark; its
//! rules are written from AWS's documentation, independently of the planner's, so that each
//! checks the other.
#![deny(missing_docs)]

mod admin;
mod api;
mod auth;
mod clock;
mod devices;
mod objects;
mod persist;
mod rules;
mod state;
mod store;

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use bulwark_cloud::{CloudError, Credentials, ErrorKind};
use bulwark_host::Boot;
use bulwark_model::{Action, InstanceId};
use serde::{Deserialize, Serialize};

pub use admin::{Inventory, Launch, SimVolume, LAUNCHED_FROM, ROOT_DEVICE};
use state::{Identity, World};
use store::BlockStore;

/// A failure to open or save the embedded cloud's data directory.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// I/O on the data directory failed.
    #[error("embedded cloud data directory {path}: {error}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        error: std::io::Error,
    },
    /// The state file is damaged.
    #[error(
        "embedded cloud state {path} is unreadable ({message}); remove the directory to start a new world"
    )]
    Corrupt {
        /// The path.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A setup call was refused.
    #[error(transparent)]
    Cloud(#[from] CloudError),
}

impl SimError {
    /// The error a call answers when the data directory fails it: the service is unavailable.
    pub(crate) fn unavailable(action: Action, error: SimError) -> CloudError {
        CloudError::new(action, ErrorKind::Unavailable, "InternalError", error.to_string())
    }
}

/// A fault to inject.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Fault {
    /// A call of `action` (an IAM action name, `ec2:CreateVolume`) fails with `code`, after
    /// `skip` calls of it succeed.
    Fail {
        /// The API.
        action: Action,
        /// Calls to let through first.
        skip: u64,
        /// AWS's error code to answer.
        code: String,
        /// Its kind.
        kind: ErrorKind,
    },
    /// The next `times` calls of `action` are throttled.
    Throttle {
        /// The API.
        action: Action,
        /// How many calls.
        times: u32,
    },
    /// The next call of `action` takes effect, and its answer is lost: the caller gets a
    /// timeout, as when a connection drops after AWS made the change.
    LoseResponse {
        /// The API.
        action: Action,
    },
    /// The next instance launched dies after `after_bytes` of device I/O.
    WorkerDies {
        /// Bytes read or written before it dies.
        after_bytes: u64,
    },
    /// The next instance launched reads and writes its devices at this pace: a transfer that
    /// takes a while, to outlast short credentials.
    SlowWorker {
        /// Bytes of device I/O per second.
        bytes_per_second: u64,
    },
}

/// The embedded cloud. Cheap to clone; clones share the world.
#[derive(Clone)]
pub struct Sim {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "embedded cloud at {}", self.inner.dir.display())
    }
}

pub(crate) struct Inner {
    dir: PathBuf,
    shared: persist::Shared,
    store: BlockStore,
    boot: Mutex<Option<Boot>>,
    /// Running instances' process-local state.
    machines: Mutex<BTreeMap<InstanceId, Arc<devices::Machine>>>,
    /// Queue messages (not persisted: a queue lives as long as its session's process).
    /// The messages of each queue, by URL.
    queues: Mutex<BTreeMap<String, VecDeque<QueuedMessage>>>,
    queue_signal: Condvar,
    /// For tests: every message body sent, as someone who can read the queues sees them, and
    /// bodies to put on a queue before the next message sent to it, as someone who can write
    /// them would.
    wiretap: Mutex<Wiretap>,
}

/// A message on a queue: its id, its body, and when the queue's retention drops it.
type QueuedMessage = (u64, String, Instant);

/// What [`Sim::sent_messages`] and [`Sim::plant_message`] keep.
#[derive(Default)]
pub(crate) struct Wiretap {
    /// Whether messages and queues are recorded ([`Sim::tap_queues`]): not by default, so that
    /// an appliance running for months on the embedded cloud does not keep every message.
    pub on: bool,
    pub sent: Vec<(String, String)>,
    pub planted: Vec<String>,
    /// Each queue created: its URL, whether it is encrypted, its retention in seconds.
    pub created: Vec<(String, bool, u64)>,
}

impl Sim {
    /// Opens (or creates) the world in `dir`. Several processes may open the same directory:
    /// they take turns call by call (`persist`).
    pub fn open(dir: &Path) -> Result<Sim, SimError> {
        let shared = persist::Shared::open(dir)?;
        let store = BlockStore::new(&dir.join("blocks")).map_err(|source| SimError::Io {
            path: dir.to_path_buf(),
            error: source,
        })?;
        Ok(Sim {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                shared,
                store,
                boot: Mutex::new(None),
                machines: Mutex::new(BTreeMap::new()),
                queues: Mutex::new(BTreeMap::new()),
                queue_signal: Condvar::new(),
                wiretap: Mutex::default(),
            }),
        })
    }

    /// Runs `f` (calls on this embedded cloud) as one batch: other processes wait for its
    /// end, and the world is saved once, then, instead of after each call. For building a
    /// large world.
    pub fn batch<T, E: From<SimError>>(&self, f: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
        self.inner.shared.batch(f)
    }

    /// The embedded cloud as the cloud traits: every service answered by this world.
    pub fn cloud(&self) -> bulwark_cloud::Cloud {
        bulwark_cloud::Cloud::of(Arc::new(self.clone()))
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Installs what instances run at boot (the engine's worker).
    pub fn set_boot(&self, boot: Boot) {
        *lock(&self.inner.boot) = Some(boot);
    }

    /// Queues a fault.
    pub fn inject(&self, fault: Fault) -> Result<(), SimError> {
        let mut world = self.inner.world()?;
        world.faults.push(fault);
        world.save()
    }

    /// The faults that have not fired yet.
    pub fn pending_faults(&self) -> Result<Vec<Fault>, SimError> {
        Ok(self.inner.read()?.faults.clone())
    }

    /// Makes what AWS does in the background (creating volumes, attaching, snapshots,
    /// launches, terminations) take `latency` from now on.
    pub fn set_latency(&self, latency: std::time::Duration) -> Result<(), SimError> {
        let mut world = self.inner.world()?;
        world.latency_ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
        world.save()
    }

    /// Removes every pending fault.
    pub fn clear_faults(&self) -> Result<(), SimError> {
        let mut world = self.inner.world()?;
        world.faults.clear();
        world.save()
    }

    /// Waits for every instance program (worker thread) to return.
    pub fn wait_idle(&self) {
        loop {
            let machines: Vec<_> = lock(&self.inner.machines).values().cloned().collect();
            if machines.iter().all(|m| m.finished()) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

impl Inner {
    /// The world, to change it: saved when the guard is dropped.
    pub(crate) fn world(&self) -> Result<persist::WorldGuard<'_>, SimError> {
        self.shared.write()
    }

    /// The world, to read it.
    pub(crate) fn read(&self) -> Result<persist::WorldGuard<'_>, SimError> {
        self.shared.read()
    }

    /// Resolves credentials to their identity.
    pub(crate) fn identity(world: &World, action: Action, who: &Credentials) -> Result<Identity, CloudError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        match world.sessions.get(&who.access_key_id) {
            Some(s) if s.expires.is_some_and(|e| e <= now) => Err(CloudError::new(
                action,
                ErrorKind::AccessDenied,
                "ExpiredToken",
                "The security token included in the request is expired",
            )),
            Some(s) if s.secret == who.secret_access_key => Ok(s.identity.clone()),
            _ => Err(CloudError::new(
                action,
                ErrorKind::AccessDenied,
                "InvalidClientTokenId",
                "The security token included in the request is invalid.",
            )),
        }
    }

    /// Fires the first pending fault for `action`, if any.
    pub(crate) fn fault(world: &mut World, action: Action) -> Result<(), CloudError> {
        // A throttle of zero calls is spent: it throttles nothing (and must not count down).
        world
            .faults
            .retain(|f| !matches!(f, Fault::Throttle { times: 0, .. }));
        let mut fired = None;
        for (i, fault) in world.faults.iter_mut().enumerate() {
            match fault {
                Fault::Fail {
                    action: a,
                    skip,
                    code,
                    kind,
                } if *a == action => {
                    if *skip == 0 {
                        fired = Some((
                            i,
                            CloudError::new(action, *kind, code, "injected fault (embedded cloud)"),
                        ));
                    } else {
                        *skip -= 1;
                    }
                    break;
                }
                Fault::Throttle { action: a, times } if *a == action => {
                    *times -= 1;
                    let error = CloudError::new(
                        action,
                        ErrorKind::Throttled,
                        throttle_code(action),
                        "Rate exceeded",
                    );
                    if *times == 0 {
                        fired = Some((i, error));
                    } else {
                        return Err(error);
                    }
                    break;
                }
                _ => {}
            }
        }
        match fired {
            Some((i, error)) => {
                world.faults.remove(i);
                Err(error)
            }
            None => Ok(()),
        }
    }
}

/// What each service answers when it throttles.
fn throttle_code(action: Action) -> &'static str {
    match action.service() {
        "ec2" => "RequestLimitExceeded",
        "ebs" => "RequestThrottledException",
        "kms" => "ThrottlingException",
        "sqs" => "RequestThrottled",
        _ => "Throttling",
    }
}

/// Locks a mutex; a panicked holder poisons nothing we cannot go on with (the world is
/// saved only after a call succeeds).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
