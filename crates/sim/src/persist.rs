//! The world on disk, shared by every process that opens the data directory: each access takes
//! the directory's lock (an exclusive `flock` on `lock`, held for the one call), reloads
//! `state.json` if another process replaced it since, and a change is saved before the lock is
//! released. So separate `bulwark` commands, and an appliance beside them, work on one world at
//! once, taking turns call by call.
//!
//! A batch ([`Shared::batch`]) is the other exception: a process that builds a world (thousands
//! of instances for `bulwark embedded init`) holds the lock for the whole batch and saves once
//! at its end, instead of once per call.
//!
//! Block writes of attached devices and of the EBS direct APIs are the exception: thousands of
//! them make one transfer, and saving the whole world after each would cost more than the
//! transfer. They are kept apart ([`Unsaved`]), visible to this process's reads, and merged into
//! the world by the next access that changes it (a detach, a snapshot, CompleteSnapshot), which
//! saves it. No other process can see those blocks before then: they belong to a volume
//! attached to one of this process's instances, or to a pending snapshot this process writes.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::ops::{Deref, DerefMut};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use bulwark_model::{AccountId, Region, SnapshotId, VolumeId};

use crate::state::World;
use crate::store::BlockHash;
use crate::SimError;

/// The version of `state.json` this embedded cloud writes and reads.
pub(crate) const STATE_VERSION: u32 = 1;

/// Blocks written to a volume: index to new content (`None`: zeros).
pub(crate) type VolumeWrites = BTreeMap<u64, Option<BlockHash>>;

/// Blocks put into a pending snapshot: index to content, and the checksum it was put with.
pub(crate) type SnapshotWrites = BTreeMap<u64, (Option<BlockHash>, String)>;

/// Block writes not yet in the world.
#[derive(Debug, Default)]
pub(crate) struct Unsaved {
    /// Per volume (owner, region, id).
    pub volumes: BTreeMap<(AccountId, Region, VolumeId), VolumeWrites>,
    /// Per pending snapshot (owner, region, id).
    pub snapshots: BTreeMap<(AccountId, Region, SnapshotId), SnapshotWrites>,
}

impl Unsaved {
    /// Moves every write into `world`.
    fn merge_into(&mut self, world: &mut World) {
        for ((account, region, id), blocks) in std::mem::take(&mut self.volumes) {
            let volume = world
                .accounts
                .get_mut(&account)
                .and_then(|a| a.regions.get_mut(&region))
                .and_then(|r| r.volumes.get_mut(&id));
            if let Some(v) = volume {
                for (index, hash) in blocks {
                    match hash {
                        Some(h) => v.blocks.insert(index, h),
                        None => v.blocks.remove(&index),
                    };
                }
            }
        }
        for ((account, region, id), blocks) in std::mem::take(&mut self.snapshots) {
            let snapshot = world
                .accounts
                .get_mut(&account)
                .and_then(|a| a.regions.get_mut(&region))
                .and_then(|r| r.snapshots.get_mut(&id));
            if let Some(s) = snapshot {
                for (index, (hash, checksum)) in blocks {
                    match hash {
                        Some(h) => s.blocks.insert(index, h),
                        None => s.blocks.remove(&index),
                    };
                    s.written.insert(index, checksum);
                }
            }
        }
    }
}

/// The world as this process last loaded or saved it.
pub(crate) struct Loaded {
    world: World,
    /// Which `state.json` it is (its inode and modification time: every save makes a new file).
    seen: Option<(u64, i64, i64)>,
}

impl Loaded {
    /// Reloads `state.json` if another process replaced it.
    fn refresh(&mut self, shared: &Shared) -> Result<(), SimError> {
        let path = shared.state_path();
        let seen = match fs::metadata(&path) {
            Ok(m) => Some((m.ino(), m.mtime(), m.mtime_nsec())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => return Err(SimError::Io { path, error: source }),
        };
        if seen.is_some() && seen == self.seen {
            return Ok(());
        }
        let world = match fs::read(&path) {
            Ok(bytes) => read_world(&path, &bytes)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => World::default(),
            Err(source) => return Err(SimError::Io { path, error: source }),
        };
        self.world = world;
        self.seen = seen;
        Ok(())
    }

    /// Writes the world to `state.json` atomically.
    fn save(&mut self, shared: &Shared) -> Result<(), SimError> {
        let path = shared.state_path();
        let io = |source| SimError::Io {
            path: path.clone(),
            error: source,
        };
        self.world.version = STATE_VERSION;
        let bytes = serde_json::to_vec(&self.world).map_err(|e| SimError::Corrupt {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let tmp = path.with_extension(format!("json.{}.tmp", std::process::id()));
        let mut file = File::create(&tmp).map_err(io)?;
        file.write_all(&bytes).map_err(io)?;
        file.sync_data().map_err(io)?;
        fs::rename(&tmp, &path).map_err(io)?;
        let m = fs::metadata(&path).map_err(io)?;
        self.seen = Some((m.ino(), m.mtime(), m.mtime_nsec()));
        Ok(())
    }
}

/// The data directory's world, shared by processes.
pub(crate) struct Shared {
    dir: PathBuf,
    loaded: Mutex<Loaded>,
    lock: File,
    pub unsaved: Mutex<Unsaved>,
    /// In a batch: the lock is held throughout, and changes are saved at its end.
    batch: AtomicBool,
    /// A change was made in the batch.
    batch_dirty: AtomicBool,
}

impl Shared {
    /// Opens the world in `dir` (a new one if there is none).
    pub fn open(dir: &Path) -> Result<Shared, SimError> {
        let io = |source| SimError::Io {
            path: dir.to_path_buf(),
            error: source,
        };
        fs::create_dir_all(dir).map_err(io)?;
        let lock = File::create(dir.join("lock")).map_err(io)?;
        let shared = Shared {
            dir: dir.to_path_buf(),
            loaded: Mutex::new(Loaded {
                world: World::default(),
                seen: None,
            }),
            lock,
            unsaved: Mutex::new(Unsaved::default()),
            batch: AtomicBool::new(false),
            batch_dirty: AtomicBool::new(false),
        };
        // Read it once now, so that a damaged state file is reported at open.
        drop(shared.read()?);
        Ok(shared)
    }

    fn state_path(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    /// The world for a call that only reads it: up to date with the other processes' changes.
    pub fn read(&self) -> Result<WorldGuard<'_>, SimError> {
        self.guard(false)
    }

    /// The world for a call that changes it: up to date, this process's block writes merged
    /// in; saved when the guard is dropped (or earlier with [`WorldGuard::save`]).
    pub fn write(&self) -> Result<WorldGuard<'_>, SimError> {
        self.guard(true)
    }

    /// Runs `f` as one batch: the directory's lock is held until it ends (other processes
    /// wait), and the world is saved once, at the end.
    pub fn batch<T, E: From<SimError>>(&self, f: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
        self.take_lock()?;
        if let Err(e) = crate::lock(&self.loaded).refresh(self) {
            let _ = self.lock.unlock();
            return Err(e.into());
        }
        self.batch.store(true, Ordering::SeqCst);
        let out = f();
        self.batch.store(false, Ordering::SeqCst);
        let saved = if self.batch_dirty.swap(false, Ordering::SeqCst) {
            crate::lock(&self.loaded).save(self)
        } else {
            Ok(())
        };
        let _ = self.lock.unlock();
        let out = out?;
        saved?;
        Ok(out)
    }

    fn take_lock(&self) -> Result<(), SimError> {
        self.lock.lock().map_err(|source| SimError::Io {
            path: self.dir.join("lock"),
            error: source,
        })
    }

    fn guard(&self, write: bool) -> Result<WorldGuard<'_>, SimError> {
        let loaded = crate::lock(&self.loaded);
        let batch = self.batch.load(Ordering::SeqCst);
        if !batch {
            self.take_lock()?;
        }
        let mut guard = WorldGuard {
            shared: self,
            loaded,
            dirty: false,
            batch,
        };
        if !batch {
            guard.refresh()?;
        }
        if write {
            crate::lock(&self.unsaved).merge_into(&mut guard.loaded.world);
            guard.dirty = true;
        }
        Ok(guard)
    }
}

/// The world, locked for one call.
pub(crate) struct WorldGuard<'a> {
    shared: &'a Shared,
    loaded: MutexGuard<'a, Loaded>,
    dirty: bool,
    /// Taken inside a batch: the batch holds the lock and saves.
    batch: bool,
}

impl WorldGuard<'_> {
    /// Reloads `state.json` if another process replaced it.
    fn refresh(&mut self) -> Result<(), SimError> {
        self.loaded.refresh(self.shared)
    }

    /// Writes the world to `state.json` atomically, now (in a batch: at its end).
    pub fn save(&mut self) -> Result<(), SimError> {
        self.dirty = false;
        if self.batch {
            self.shared.batch_dirty.store(true, Ordering::SeqCst);
            return Ok(());
        }
        self.loaded.save(self.shared)
    }

    /// Whether the guard will save the world when it is dropped.
    pub fn set_dirty(&mut self, dirty: bool) {
        self.dirty = dirty;
    }
}

/// Reads `state.json`, refusing a version this embedded cloud does not know.
fn read_world(path: &Path, bytes: &[u8]) -> Result<World, SimError> {
    let corrupt = |message: String| SimError::Corrupt {
        path: path.to_path_buf(),
        message,
    };
    let world: World = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
    if world.version > STATE_VERSION {
        return Err(corrupt(format!(
            "it was written by embedded cloud state version {}, and this bulwark knows up to {STATE_VERSION}: use the newer bulwark",
            world.version
        )));
    }
    Ok(world)
}

impl Deref for WorldGuard<'_> {
    type Target = World;

    fn deref(&self) -> &World {
        &self.loaded.world
    }
}

impl DerefMut for WorldGuard<'_> {
    fn deref_mut(&mut self) -> &mut World {
        &mut self.loaded.world
    }
}

impl Drop for WorldGuard<'_> {
    fn drop(&mut self) {
        if self.dirty {
            // A change that cannot be saved is lost to the other processes, and the next
            // call that can save saves it: the world in memory stays whole.
            let _ = self.save();
        }
        if !self.batch {
            let _ = self.shared.lock.unlock();
        }
    }
}
