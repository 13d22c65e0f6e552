//! Opening a repository and reading it: config, keys, index, restore points, blocks.

use std::collections::HashMap;
use std::sync::Arc;

use crate::crypto::{self, KeyFile, Keys, Secret};
use crate::error::RepoError;
use crate::format::{aad, BlockEntry, Config, IndexFile, Manifest, BLOCK_SIZE, PACK_SIZE, VERSION};
use crate::id::Id;
use bulwark_storage::{Backend, BackendError, FileKind};

/// Largest metadata file Bulwark will decompress (an index or manifest); far above what a
/// 64 TiB volume needs, and a guard against a decompression bomb in a damaged file.
const MAX_METADATA: usize = 1 << 30;

/// An open repository.
#[derive(Debug, Clone)]
pub struct Repository {
    backend: Arc<dyn Backend>,
    config: Config,
    keys: Keys,
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
    /// Where each block is (the first location found, if a block is in several packs).
    pub blocks: HashMap<Id, Location>,
    /// The index files this was read from.
    pub files: Vec<Id>,
}

impl Index {
    /// Adds the packs of one index file.
    pub fn add(&mut self, file: &IndexFile) {
        for pack in &file.packs {
            let p = u32::try_from(self.packs.len()).unwrap_or(u32::MAX);
            self.packs.push(pack.id);
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

impl Repository {
    /// Creates a repository on an empty `backend`. `Secret::None` makes it unencrypted.
    pub fn init(backend: Arc<dyn Backend>, secret: &Secret) -> Result<Self, RepoError> {
        if !backend.list(FileKind::Config)?.is_empty() || !backend.list(FileKind::Key)?.is_empty() {
            return Err(RepoError::AlreadyInitialized(backend.location()));
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
        };
        let json = serde_json::to_vec_pretty(&config).map_err(|e| RepoError::Corrupt(e.to_string()))?;
        let keys = if encrypted {
            let mut master = [0u8; 64];
            crypto::random(&mut master)?;
            let keys = Keys::from_master(&master)?;
            let key_file = serde_json::to_vec_pretty(&crypto::wrap(&master, secret)?)
                .map_err(|e| RepoError::Corrupt(e.to_string()))?;
            // The key first: a config without a key is an unusable repository, a key without
            // a config is none, and `init` can be run again.
            backend.put(FileKind::Key, &Id::of_file(&key_file).to_hex(), &key_file)?;
            backend.put(FileKind::Config, "config", &keys.seal(&json, aad::CONFIG)?)?;
            keys
        } else {
            backend.put(FileKind::Config, "config", &json)?;
            Keys::None
        };
        Ok(Self {
            backend,
            config,
            keys,
        })
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
            check_version(&backend, &config)?;
            return Ok(Self {
                backend,
                config,
                keys: Keys::None,
            });
        }
        if matches!(secret, Secret::None) {
            return Err(RepoError::NoSecret);
        }
        let key_names = backend.list(FileKind::Key)?;
        let mut keys = None;
        for (name, _) in &key_names {
            let file: KeyFile = serde_json::from_slice(&backend.get(FileKind::Key, name)?)
                .map_err(|e| RepoError::Corrupt(format!("keys/{name}: {e}")))?;
            if let Some(master) = crypto::unwrap(&file, secret)? {
                keys = Some(Keys::from_master(&master)?);
                break;
            }
        }
        let keys = keys.ok_or(RepoError::WrongSecret(key_names.len()))?;
        let json = keys.open(&raw, aad::CONFIG, 4096, &|| "config".into())?;
        let config: Config =
            serde_json::from_slice(&json).map_err(|e| RepoError::Corrupt(format!("config: {e}")))?;
        check_version(&backend, &config)?;
        Ok(Self {
            backend,
            config,
            keys,
        })
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

    /// Seals metadata and stores it under the hash of the stored bytes; returns that id.
    pub(crate) fn put_sealed(&self, kind: FileKind, aad: &[u8], json: &[u8]) -> Result<Id, RepoError> {
        let sealed = self.keys.seal(json, aad)?;
        let id = Id::of_file(&sealed);
        match self.backend.put(kind, &id.to_hex(), &sealed) {
            // Same bytes, same name: someone stored it already.
            Ok(()) | Err(BackendError::AlreadyExists(_)) => Ok(id),
            Err(e) => Err(e.into()),
        }
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

    /// Reads every index file into one index.
    pub fn load_index(&self) -> Result<Index, RepoError> {
        let mut index = Index::default();
        for (name, _) in self.backend.list(FileKind::Index)? {
            let id: Id = name
                .parse()
                .map_err(|e| RepoError::Corrupt(format!("index/{name}: {e}")))?;
            index.add(&self.read_index_file(&id)?);
            index.files.push(id);
        }
        Ok(index)
    }

    /// Reads one index file.
    pub fn read_index_file(&self, id: &Id) -> Result<IndexFile, RepoError> {
        let json = self.get_sealed(FileKind::Index, aad::INDEX, id)?;
        serde_json::from_slice(&json).map_err(|e| RepoError::Corrupt(format!("index/{id}: {e}")))
    }

    /// Stores an index file; returns its id.
    pub fn write_index_file(&self, file: &IndexFile) -> Result<Id, RepoError> {
        let json = serde_json::to_vec(file).map_err(|e| RepoError::Corrupt(e.to_string()))?;
        self.put_sealed(FileKind::Index, aad::INDEX, &json)
    }

    /// Ids of every restore point.
    pub fn point_ids(&self) -> Result<Vec<Id>, RepoError> {
        self.backend
            .list(FileKind::Point)?
            .into_iter()
            .map(|(name, _)| {
                name.parse()
                    .map_err(|e| RepoError::Corrupt(format!("points/{name}: {e}")))
            })
            .collect()
    }

    /// Every restore point, oldest first.
    pub fn points(&self) -> Result<Vec<(Id, Manifest)>, RepoError> {
        let mut points = self
            .point_ids()?
            .into_iter()
            .map(|id| Ok((id, self.read_point(&id)?)))
            .collect::<Result<Vec<_>, RepoError>>()?;
        points.sort_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)));
        Ok(points)
    }

    /// Reads one restore point.
    pub fn read_point(&self, id: &Id) -> Result<Manifest, RepoError> {
        let json = self.get_sealed(FileKind::Point, aad::POINT, id)?;
        serde_json::from_slice(&json).map_err(|e| RepoError::Corrupt(format!("points/{id}: {e}")))
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

    /// The newest restore point of a volume, if any.
    pub fn latest_point(&self, volume_id: &str) -> Result<Option<(Id, Manifest)>, RepoError> {
        Ok(self
            .points()?
            .into_iter()
            .rev()
            .find(|(_, m)| m.volume_id == volume_id))
    }

    /// Stores a restore point; this is the commit of a backup. Returns its id.
    pub fn write_point(&self, manifest: &Manifest) -> Result<Id, RepoError> {
        let json = serde_json::to_vec(manifest).map_err(|e| RepoError::Corrupt(e.to_string()))?;
        self.put_sealed(FileKind::Point, aad::POINT, &json)
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
        let n = bytes.len();
        if n < 4 {
            return Err(RepoError::Corrupt(format!("{}: too short to be a pack", what())));
        }
        let header_len =
            u32::from_le_bytes([bytes[n - 4], bytes[n - 3], bytes[n - 2], bytes[n - 1]]) as usize;
        let start = n
            .checked_sub(4 + header_len)
            .ok_or_else(|| RepoError::Corrupt(format!("{}: bad header length", what())))?;
        let json = self
            .keys
            .open(&bytes[start..n - 4], aad::PACK_HEADER, MAX_METADATA, &|| {
                format!("{} header", what())
            })?;
        let header: crate::format::PackHeader = serde_json::from_slice(&json)
            .map_err(|e| RepoError::Corrupt(format!("{} header: {e}", what())))?;
        Ok(header.blocks)
    }
}

fn check_version(backend: &Arc<dyn Backend>, config: &Config) -> Result<(), RepoError> {
    if config.version != VERSION {
        return Err(RepoError::UnsupportedVersion {
            location: backend.location(),
            found: config.version,
            supported: VERSION,
        });
    }
    Ok(())
}
