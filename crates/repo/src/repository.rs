//! Opening a repository and reading it: config, keys, index, restore points, blocks.
//!
//! What the store lists is not trusted either: a name in a folder that is not an id (a `.tmp`
//! leftover of another tool, a file someone dropped there) is skipped with a warning, which
//! [`Repository::take_warnings`] hands to whoever shows them, never fatal to every operation.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::crypto::{self, KeyFile, Keys, Secret};
use crate::decode;
use crate::error::RepoError;
use crate::format::{
    aad, BlockEntry, Config, IndexFile, Manifest, ObjectLock, BLOCK_SIZE, PACK_SIZE, VERSION,
};
use crate::id::Id;
use crate::lock::{Lock, LockKind, LockTiming};
use bulwark_storage::{Backend, BackendError, FileKind, Retention};

/// Largest metadata file Bulwark will decompress (an index or manifest); far above what a
/// 64 TiB volume needs, and a guard against a decompression bomb in a damaged file.
pub(crate) const MAX_METADATA: usize = 1 << 30;

/// Largest sealed config.
const MAX_CONFIG: usize = 4096;

/// An open repository.
#[derive(Debug, Clone)]
pub struct Repository {
    backend: Arc<dyn Backend>,
    config: Config,
    keys: Keys,
    lock_timing: LockTiming,
    /// What was skipped, for the caller to show; shared by clones.
    warnings: Arc<Mutex<Vec<String>>>,
}

/// How a repository is created.
#[derive(Debug, Clone, Default)]
pub struct InitOptions {
    /// Retain every pack, index file and restore point (the store must support retention:
    /// an S3 bucket with Object Lock enabled, or the local backend's emulation).
    pub object_lock: Option<ObjectLock>,
}

/// Where a block is: which pack, and where in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    /// Index of the pack in [`Index::packs`].
    pub pack: u32,
    /// The block's entry in that pack.
    pub entry: BlockEntry,
}

/// Every block of the repository and where it is, merged from all index files.
#[derive(Debug, Default, Clone)]
pub struct Index {
    /// Pack ids, referred to by [`Location::pack`].
    pub packs: Vec<Id>,
    /// For each pack of `packs`, the index file (in `files`) that listed it.
    pub pack_files: Vec<u32>,
    /// Where each block is (the first location found, if a block is in several packs).
    pub blocks: HashMap<Id, Location>,
    /// The index files this was read from.
    pub files: Vec<Id>,
}

impl Index {
    /// Adds the packs of index file `id`.
    pub fn add(&mut self, id: Id, file: &IndexFile) {
        let f = u32::try_from(self.files.len()).unwrap_or(u32::MAX);
        self.files.push(id);
        for pack in &file.packs {
            let p = u32::try_from(self.packs.len()).unwrap_or(u32::MAX);
            self.packs.push(pack.id);
            self.pack_files.push(f);
            for entry in &pack.blocks {
                self.blocks.entry(entry.id).or_insert(Location {
                    pack: p,
                    entry: *entry,
                });
            }
        }
    }

    /// Whether the repository holds the block.
    pub fn contains(&self, id: &Id) -> bool {
        self.blocks.contains_key(id)
    }

    /// The live blocks of each pack (a block stored twice is live in the pack the index
    /// resolves it to), by pack number.
    pub fn by_pack(&self) -> HashMap<u32, Vec<BlockEntry>> {
        let mut by_pack: HashMap<u32, Vec<BlockEntry>> = HashMap::new();
        for loc in self.blocks.values() {
            by_pack.entry(loc.pack).or_default().push(loc.entry);
        }
        by_pack
    }
}

/// What to do with an index file that cannot be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Damaged {
    /// Skip it with a warning: a backup stores its blocks again, a restore that needs them says
    /// which blocks are missing.
    Skip,
    /// Fail: prune, which would take its packs for unreferenced ones.
    Fail,
}

impl Repository {
    /// Creates a repository on an empty `backend`. `Secret::None` makes it unencrypted.
    pub fn init(backend: Arc<dyn Backend>, secret: &Secret) -> Result<Self, RepoError> {
        Self::init_with(backend, secret, &InitOptions::default())
    }

    /// Creates a repository with `options` on an empty `backend`.
    pub fn init_with(
        backend: Arc<dyn Backend>,
        secret: &Secret,
        options: &InitOptions,
    ) -> Result<Self, RepoError> {
        if !backend.list(FileKind::Config)?.is_empty() || !backend.list(FileKind::Key)?.is_empty() {
            return Err(RepoError::AlreadyInitialized(backend.location()));
        }
        if let Some(lock) = &options.object_lock {
            lock.check().map_err(RepoError::Corrupt)?;
            if !backend.capabilities().retention {
                return Err(RepoError::NoObjectLock(backend.location()));
            }
        }
        let mut id = [0u8; 16];
        crypto::random(&mut id)?;
        let encrypted = !matches!(secret, Secret::None);
        let config = Config {
            version: VERSION,
            id: hex::encode(id),
            encryption: if encrypted { "aes-256-gcm" } else { "none" }.into(),
            compression: "zstd".into(),
            block_size: BLOCK_SIZE,
            pack_size: PACK_SIZE,
            object_lock: options.object_lock.clone(),
        };
        let json = serde_json::to_vec_pretty(&config).map_err(|e| RepoError::Corrupt(e.to_string()))?;
        // With Object Lock, the config and the key are retained from the start (each backup
        // extends them): whoever deletes the key destroys every backup.
        let retention =
            Self::new(backend.clone(), config.clone(), Keys::None).point_retention(chrono::Utc::now())?;
        let mut key_name = None;
        let keys = if encrypted {
            let mut master = zeroize::Zeroizing::new([0u8; 64]);
            crypto::random(&mut *master)?;
            let keys = Keys::from_master(&master)?;
            let key_file = serde_json::to_vec_pretty(&crypto::wrap(&master, secret)?)
                .map_err(|e| RepoError::Corrupt(e.to_string()))?;
            // The key first: a config without a key is an unusable repository, a key without
            // a config is none, and `init` can be run again.
            let name = Id::of_file(&key_file).to_hex();
            match retention {
                None => backend.put(FileKind::Key, &name, &key_file)?,
                Some(r) => backend.put_retained(FileKind::Key, &name, &key_file, r)?,
            }
            key_name = Some(name);
            keys
        } else {
            Keys::None
        };
        let stored = match &keys {
            Keys::None => json,
            keys => keys.seal(&json, aad::CONFIG)?,
        };
        let put = match retention {
            None => backend.put(FileKind::Config, "config", &stored),
            Some(r) => backend.put_retained(FileKind::Config, "config", &stored, r),
        };
        match put {
            Ok(()) => {}
            Err(BackendError::AlreadyExists(_)) => {
                // Another init won the race: ours never was a repository.
                if let Some(name) = key_name {
                    let _ = backend.delete(FileKind::Key, &name);
                }
                return Err(RepoError::AlreadyInitialized(backend.location()));
            }
            Err(e) => return Err(e.into()),
        }
        Ok(Self::new(backend, config, keys))
    }

    fn new(backend: Arc<dyn Backend>, config: Config, keys: Keys) -> Self {
        Self {
            backend,
            config,
            keys,
            lock_timing: LockTiming::default(),
            warnings: Arc::default(),
        }
    }

    /// Opens the repository on `backend` with `secret`.
    pub fn open(backend: Arc<dyn Backend>, secret: &Secret) -> Result<Self, RepoError> {
        let raw = match backend.get(FileKind::Config, "config") {
            Ok(raw) => raw,
            Err(BackendError::NotFound(_)) => return Err(RepoError::NotARepository(backend.location())),
            Err(e) => return Err(e.into()),
        };
        // An unencrypted repository's config is plain JSON. When a secret is given, the user
        // expects an encrypted repository: refuse a plain config rather than write data in
        // the clear to a repository whose config someone replaced.
        if let Ok(config) = serde_json::from_slice::<Config>(&raw) {
            if config.encryption != "none" {
                return Err(RepoError::Corrupt(format!(
                    "the config at {} is readable without a key but claims encryption {:?}: it was replaced",
                    backend.location(),
                    config.encryption
                )));
            }
            if !matches!(secret, Secret::None) {
                return Err(RepoError::Corrupt(format!(
                    "the repository at {} is not encrypted, but a passphrase or key file was given; \
                     if it should be encrypted, its config was replaced: do not write to it",
                    backend.location()
                )));
            }
            check_config(&backend, &config)?;
            return Ok(Self::new(backend, config, Keys::None));
        }
        if matches!(secret, Secret::None) {
            return Err(RepoError::NoSecret);
        }
        let (keys, config) = Self::unlock(&backend, &raw, secret)?;
        check_config(&backend, &config)?;
        Ok(Self::new(backend, config, keys))
    }

    /// Finds the key that opens the sealed config `raw` with `secret`, trying every key file:
    /// one bad key file (damaged, foreign, misnamed, with absurd parameters) never hides a good
    /// one, and is reported only if no key opens.
    fn unlock(backend: &Arc<dyn Backend>, raw: &[u8], secret: &Secret) -> Result<(Keys, Config), RepoError> {
        let mut bad: Vec<String> = Vec::new();
        let mut tried = 0;
        let mut names = backend.list(FileKind::Key)?;
        names.sort();
        for (name, size) in names {
            let path = FileKind::Key.path(&name);
            let file = match read_key_file(backend.as_ref(), &name, size) {
                Ok(file) => file,
                Err(reason) => {
                    bad.push(format!("{path}: {reason}"));
                    continue;
                }
            };
            tried += 1;
            let master = match crypto::unwrap(&file, secret) {
                Ok(Some(master)) => master,
                Ok(None) => continue,
                Err(e) => {
                    bad.push(format!("{path}: {e}"));
                    continue;
                }
            };
            let keys = Keys::from_master(&master)?;
            // A key that unwraps but does not open the config is not this repository's (a key
            // left by an `init` that lost a race, or planted).
            let Ok(json) = keys.open(raw, aad::CONFIG, MAX_CONFIG, &|| "config".into()) else {
                bad.push(format!(
                    "{path}: opens with this secret, but its key does not open the config"
                ));
                continue;
            };
            let config = decode::config(&json).map_err(|e| RepoError::Corrupt(format!("config: {e}")))?;
            return Ok((keys, config));
        }
        if bad.is_empty() {
            Err(RepoError::WrongSecret(tried))
        } else {
            Err(RepoError::NoKeyOpens { tried, bad })
        }
    }

    /// The same repository, with locks of another timing (for tests).
    pub fn with_lock_timing(mut self, timing: LockTiming) -> Self {
        self.lock_timing = timing;
        self
    }

    /// Takes a lock on the repository, with its timing; what the locker saw that is not a
    /// lock becomes a warning.
    pub fn lock(&self, kind: LockKind) -> Result<Lock, RepoError> {
        let lock = Lock::acquire_with(self.backend.clone(), kind, self.lock_timing)?;
        for w in lock.warnings() {
            self.warn(w.clone());
        }
        Ok(lock)
    }

    /// Records a warning (once, however often it is seen).
    pub(crate) fn warn(&self, warning: String) {
        let mut warnings = self
            .warnings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !warnings.contains(&warning) {
            warnings.push(warning);
        }
    }

    /// The warnings recorded since the last call: files skipped because they are not the
    /// repository's (stray names) or cannot be read where skipping them is safe.
    pub fn take_warnings(&self) -> Vec<String> {
        std::mem::take(
            &mut *self
                .warnings
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// The storage.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The keys.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The files of `kind` whose names are ids, with their sizes; other names are skipped
    /// with a warning.
    pub(crate) fn list_ids(&self, kind: FileKind) -> Result<Vec<(Id, u64)>, RepoError> {
        let mut ids = Vec::new();
        for (name, size) in self.backend.list(kind)? {
            match name.parse::<Id>() {
                // Only the canonical spelling: `ABCD...` would name another object on S3.
                Ok(id) if id.to_hex() == name => ids.push((id, size)),
                _ => self.warn(format!(
                    "{}: not a file of the repository (its name is not an id); skipped",
                    kind.path(&name)
                )),
            }
        }
        Ok(ids)
    }

    /// Stores a file named by its content (a pack, index file or restore point): one that
    /// exists already has the same bytes. With `retention`, the file is retained until then
    /// (an existing one is extended to it if retained shorter).
    pub(crate) fn store_file(
        &self,
        kind: FileKind,
        name: &str,
        bytes: &[u8],
        retention: Option<Retention>,
    ) -> Result<(), RepoError> {
        let put = match retention {
            None => self.backend.put(kind, name, bytes),
            Some(r) => self.backend.put_retained(kind, name, bytes, r),
        };
        match (put, retention) {
            (Ok(()), _) | (Err(BackendError::AlreadyExists(_)), None) => Ok(()),
            (Err(BackendError::AlreadyExists(_)), Some(r)) => self.retain_until(kind, name, r),
            (Err(e), _) => Err(e.into()),
        }
    }

    /// Makes sure a file is retained at least as `wanted` says: extended if it is retained
    /// shorter (or not at all), left alone otherwise. Never shortens anything.
    pub(crate) fn retain_until(
        &self,
        kind: FileKind,
        name: &str,
        wanted: Retention,
    ) -> Result<(), RepoError> {
        let current = self.backend.retention(kind, name)?;
        let target = match current {
            Some(c) if wanted.until <= c.until && wanted.mode <= c.mode => return Ok(()),
            Some(c) => Retention {
                mode: wanted.mode.max(c.mode),
                until: wanted.until.max(c.until),
            },
            None => wanted,
        };
        match self.backend.set_retention(kind, name, target) {
            // Extended meanwhile by another backup, further.
            Ok(()) | Err(BackendError::ShorterRetention { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Seals metadata and stores it under the hash of the stored bytes; returns that id.
    pub(crate) fn put_sealed(
        &self,
        kind: FileKind,
        aad: &[u8],
        json: &[u8],
        retention: Option<Retention>,
    ) -> Result<Id, RepoError> {
        let sealed = self.keys.seal(json, aad)?;
        let id = Id::of_file(&sealed);
        self.store_file(kind, &id.to_hex(), &sealed, retention)?;
        Ok(id)
    }

    /// Reads sealed metadata, checking it against its name, then opening it.
    pub(crate) fn get_sealed(&self, kind: FileKind, aad: &[u8], id: &Id) -> Result<Vec<u8>, RepoError> {
        let path = kind.path(&id.to_hex());
        let sealed = self.backend.get(kind, &id.to_hex())?;
        if Id::of_file(&sealed) != *id {
            return Err(RepoError::Corrupt(format!(
                "{path} is damaged: its content does not match its name"
            )));
        }
        self.keys.open(&sealed, aad, MAX_METADATA, &|| path.clone())
    }

    /// Reads every index file into one index. One that cannot be read is skipped with a
    /// warning: a backup then stores those blocks again, a restore that needs them says so.
    pub fn load_index(&self) -> Result<Index, RepoError> {
        self.load_index_or(Damaged::Skip)
    }

    pub(crate) fn load_index_or(&self, damaged: Damaged) -> Result<Index, RepoError> {
        let mut index = Index::default();
        let mut files = self.list_ids(FileKind::Index)?;
        files.sort();
        for (id, _) in files {
            match self.read_index_file(&id) {
                Ok(file) => index.add(id, &file),
                Err(e) if damaged == Damaged::Skip => {
                    self.warn(format!("index/{id}: skipped: {e}"));
                }
                Err(e) => {
                    return Err(RepoError::Corrupt(format!(
                        "index/{id} cannot be read ({e}): stopped, since what it lists is unknown; \
                         run `bulwark image verify`"
                    )))
                }
            }
        }
        Ok(index)
    }

    /// Reads one index file.
    pub fn read_index_file(&self, id: &Id) -> Result<IndexFile, RepoError> {
        let json = self.get_sealed(FileKind::Index, aad::INDEX, id)?;
        decode::index(&json, self.config.block_size)
            .map_err(|e| RepoError::Corrupt(format!("index/{id}: {e}")))
    }

    /// Stores an index file; returns its id.
    pub fn write_index_file(&self, file: &IndexFile) -> Result<Id, RepoError> {
        self.write_index_file_retained(file, None)
    }

    /// Stores an index file, retained; returns its id.
    pub fn write_index_file_retained(
        &self,
        file: &IndexFile,
        retention: Option<Retention>,
    ) -> Result<Id, RepoError> {
        let json = serde_json::to_vec(file).map_err(|e| RepoError::Corrupt(e.to_string()))?;
        self.put_sealed(FileKind::Index, aad::INDEX, &json, retention)
    }

    /// Ids of every restore point (names that are not ids are skipped with a warning).
    pub fn point_ids(&self) -> Result<Vec<Id>, RepoError> {
        let mut ids: Vec<Id> = self
            .list_ids(FileKind::Point)?
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Every restore point that can be read, oldest first; one that cannot is skipped with a
    /// warning (`verify` names it).
    pub fn points(&self) -> Result<Vec<(Id, Manifest)>, RepoError> {
        let mut points = Vec::new();
        for id in self.point_ids()? {
            match self.read_point(&id) {
                Ok(m) => points.push((id, m)),
                Err(e) => self.warn(format!("points/{id}: skipped: {e}")),
            }
        }
        points.sort_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)));
        Ok(points)
    }

    /// Reads one restore point.
    pub fn read_point(&self, id: &Id) -> Result<Manifest, RepoError> {
        let json = self.get_sealed(FileKind::Point, aad::POINT, id)?;
        decode::manifest(&json, &self.config).map_err(|e| RepoError::Corrupt(format!("points/{id}: {e}")))
    }

    /// Finds a restore point by id or unique id prefix.
    pub fn find_point(&self, prefix: &str) -> Result<Id, RepoError> {
        let matches: Vec<Id> = self
            .point_ids()?
            .into_iter()
            .filter(|id| id.to_hex().starts_with(prefix))
            .collect();
        match matches.as_slice() {
            [id] => Ok(*id),
            [] => Err(RepoError::PointNotFound(prefix.to_owned())),
            _ => Err(RepoError::AmbiguousPoint(prefix.to_owned())),
        }
    }

    /// The newest restore point of a volume, if any. Fails if a restore point cannot be read:
    /// it might be the newest, and a changed-block list applied to an older one would make a
    /// wrong restore point.
    pub fn latest_point(&self, volume_id: &str) -> Result<Option<(Id, Manifest)>, RepoError> {
        let mut latest: Option<(Id, Manifest)> = None;
        for id in self.point_ids()? {
            let m = self.read_point(&id).map_err(|e| {
                RepoError::Corrupt(format!(
                    "the newest restore point of {volume_id} is unknown: points/{id} cannot be read ({e}); \
                     run `bulwark image verify`"
                ))
            })?;
            let newer = latest
                .as_ref()
                .is_none_or(|(lid, l)| (m.time, id) > (l.time, *lid));
            if m.volume_id == volume_id && newer {
                latest = Some((id, m));
            }
        }
        Ok(latest)
    }

    /// Stores a restore point; this is the commit of a backup. Returns its id.
    pub fn write_point(&self, manifest: &Manifest) -> Result<Id, RepoError> {
        self.write_point_retained(manifest, None)
    }

    /// Stores a restore point, retained; returns its id.
    pub fn write_point_retained(
        &self,
        manifest: &Manifest,
        retention: Option<Retention>,
    ) -> Result<Id, RepoError> {
        let json = serde_json::to_vec(manifest).map_err(|e| RepoError::Corrupt(e.to_string()))?;
        self.put_sealed(FileKind::Point, aad::POINT, &json, retention)
    }

    /// Removes a restore point (its blocks stay until `prune`).
    pub fn delete_point(&self, id: &Id) -> Result<(), RepoError> {
        Ok(self.backend.delete(FileKind::Point, &id.to_hex())?)
    }

    /// Opens one sealed block read from a pack, checking that it is the block `entry` names.
    pub fn open_block(
        &self,
        entry: &BlockEntry,
        sealed: &[u8],
        what: &dyn Fn() -> String,
    ) -> Result<Vec<u8>, RepoError> {
        if entry.raw_length > self.config.block_size {
            return Err(RepoError::Corrupt(format!(
                "{}: claims {} bytes, more than a block",
                what(),
                entry.raw_length
            )));
        }
        let block = self
            .keys
            .open(sealed, &entry.id.0, entry.raw_length as usize, what)?;
        if block.len() != entry.raw_length as usize || self.keys.block_id(&block) != entry.id {
            return Err(RepoError::Unauthentic(what()));
        }
        Ok(block)
    }

    /// Reads the header of a whole pack.
    pub fn pack_header(&self, pack: &Id, bytes: &[u8]) -> Result<Vec<BlockEntry>, RepoError> {
        let what = || format!("data/{pack}");
        let corrupt = |e: &str| RepoError::Corrupt(format!("{}: {e}", what()));
        let n = bytes.len();
        let tail: [u8; 4] = n
            .checked_sub(4)
            .and_then(|start| bytes.get(start..))
            .and_then(|t| t.try_into().ok())
            .ok_or_else(|| corrupt("too short to be a pack"))?;
        let header_len = u32::from_le_bytes(tail) as usize;
        let start = n
            .checked_sub(4)
            .and_then(|end| end.checked_sub(header_len))
            .ok_or_else(|| corrupt("its header length is past its start"))?;
        let json = self
            .keys
            .open(&bytes[start..n - 4], aad::PACK_HEADER, MAX_METADATA, &|| {
                format!("{} header", what())
            })?;
        decode::pack_header(&json, self.config.block_size, start as u64)
            .map_err(|e| corrupt(&format!("header: {e}")))
    }
}

/// Reads and decodes a key file, checking that its name is its content's id.
fn read_key_file(backend: &dyn Backend, name: &str, size: u64) -> Result<KeyFile, String> {
    if size > decode::MAX_KEY_FILE as u64 {
        return Err(format!(
            "{size} bytes, more than a key file's {}",
            decode::MAX_KEY_FILE
        ));
    }
    let bytes = backend.get(FileKind::Key, name).map_err(|e| e.to_string())?;
    if Id::of_file(&bytes).to_hex() != name {
        return Err("its name is not the hash of its content (damaged, or not a key file)".into());
    }
    decode::key_file(&bytes)
}

fn check_config(backend: &Arc<dyn Backend>, config: &Config) -> Result<(), RepoError> {
    if config.version != VERSION {
        return Err(RepoError::UnsupportedVersion {
            location: backend.location(),
            found: config.version,
            supported: VERSION,
        });
    }
    decode::check_config(config)
        .map_err(|e| RepoError::Corrupt(format!("the config at {}: {e}", backend.location())))
}
