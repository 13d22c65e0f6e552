//! The repository's files, as Rust types. `docs/repository-format.md` is their specification;
//! this module follows it field by field.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::file_index::FileIndex;
use crate::id::Id;
use crate::map::MapChunk;
use bulwark_storage::LockMode;

/// The format version this program writes and reads: of the repository's layout and config.
pub const VERSION: u32 = 1;

/// The manifest version this program writes: 2, whose block map is in chunks
/// ([`crate::map`]). Version 1 manifests (the runs inline) are read too.
pub const MANIFEST_VERSION: u32 = 2;

/// The block size: 512 KiB, the EBS snapshot block size, so that a changed-block list from
/// EBS maps one to one onto repository blocks.
pub const BLOCK_SIZE: u32 = 512 * 1024;

/// Target size of a pack: large enough that S3 sees few requests (a 4 GiB volume is a few
/// hundred PUTs), small enough that a few packs in flight per thread stay well inside the
/// data path's memory budget.
pub const PACK_SIZE: u32 = 16 * 1024 * 1024;

/// Associated data that binds each sealed thing to its role, so that one cannot be passed off
/// as another (an index as a restore point, a block as another block).
pub mod aad {
    /// The sealed config of an encrypted repository.
    pub const CONFIG: &[u8] = b"bulwark config";
    /// A pack header.
    pub const PACK_HEADER: &[u8] = b"bulwark pack header";
    /// An index file.
    pub const INDEX: &[u8] = b"bulwark index";
    /// A restore point manifest.
    pub const POINT: &[u8] = b"bulwark point";
}

/// `config`: what the repository is. Plain JSON for an unencrypted repository; sealed with the
/// data key for an encrypted one (so that no one can downgrade it to unencrypted).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// Format version ([`VERSION`]).
    pub version: u32,
    /// Random id of the repository (hex).
    pub id: String,
    /// `aes-256-gcm` or `none`.
    pub encryption: String,
    /// Always `zstd`.
    pub compression: String,
    /// Block size in bytes ([`BLOCK_SIZE`]).
    pub block_size: u32,
    /// Pack target size in bytes ([`PACK_SIZE`]).
    pub pack_size: u32,
    /// Object Lock: every pack, index file and restore point is retained (added after the first
    /// release; a config without it has no Object Lock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_lock: Option<ObjectLock>,
}

/// The Object Lock of a repository (S3 Object Lock, or the local backend's emulation).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectLock {
    /// `governance` or `compliance`.
    pub mode: String,
    /// Days a restore point is retained after its backup started; what it uses is retained at
    /// least as long.
    pub days: u32,
}

impl ObjectLock {
    /// Longest retention: 100 years, S3's own limit.
    pub const MAX_DAYS: u32 = 36_500;

    /// The lock mode.
    pub fn mode(&self) -> Result<LockMode, String> {
        LockMode::parse(&self.mode).ok_or_else(|| {
            format!(
                "object lock mode {:?} is unknown (governance or compliance)",
                self.mode
            )
        })
    }

    /// Checks the mode and the number of days.
    pub fn check(&self) -> Result<(), String> {
        self.mode()?;
        if !(1..=Self::MAX_DAYS).contains(&self.days) {
            return Err(format!(
                "object lock of {} days (1 to {} expected)",
                self.days,
                Self::MAX_DAYS
            ));
        }
        Ok(())
    }
}

/// Where a block is inside a pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockEntry {
    /// The block id.
    pub id: Id,
    /// Byte offset of the sealed block in the pack.
    pub offset: u32,
    /// Length of the sealed block.
    pub length: u32,
    /// Length of the block before compression (at most [`BLOCK_SIZE`]).
    pub raw_length: u32,
}

/// The header at the end of a pack (also one entry of an index file).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackHeader {
    /// The blocks of the pack, in order.
    pub blocks: Vec<BlockEntry>,
}

/// One pack as an index file lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexPack {
    /// The pack id (its file name).
    pub id: Id,
    /// Its blocks.
    pub blocks: Vec<BlockEntry>,
}

/// `index/<id>`: packs and their blocks, written by one backup (or merged by prune).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexFile {
    /// The packs.
    pub packs: Vec<IndexPack>,
}

/// Where the data of a restore point came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// `file`, `device` or `snapshot`.
    pub kind: String,
    /// The path or the snapshot id.
    pub name: String,
}

/// A run of consecutive non-zero blocks of a volume.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    /// Index of the first block.
    pub start: u64,
    /// Ids of the blocks `start`, `start + 1`, ...
    pub ids: Vec<Id>,
}

/// What a backup stored, for the people reading `image list`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Blocks read from the source.
    pub blocks_read: u64,
    /// Of those, blocks that were all zeros (never stored).
    pub blocks_zero: u64,
    /// Blocks new to the repository, stored by this backup.
    pub blocks_new: u64,
    /// Bytes this backup added to the repository (sealed).
    pub bytes_stored: u64,
}

/// `points/<id>`: one restore point of one volume, restorable on its own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version ([`VERSION`]).
    pub version: u32,
    /// The volume id the point belongs to (like `vol-0123...`, or any name for files).
    pub volume_id: String,
    /// Volume size in bytes.
    pub size: u64,
    /// Block size in bytes.
    pub block_size: u32,
    /// When the data was read (start of the backup).
    pub time: DateTime<Utc>,
    /// Where it was read from.
    pub source: Source,
    /// The restore point this one was built from with a changed-block list, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Id>,
    /// Version 1: the non-zero blocks, as runs in increasing order; every other block is
    /// zeros. Empty in version 2, whose runs are in `map`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocks: Vec<Run>,
    /// Version 2: the chunks of the block map, in increasing order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub map: Vec<MapChunk>,
    /// What the backup did.
    pub stats: Stats,
    /// The instance the volume belonged to when it was read, as the appliance recorded it
    /// (its type, boot, network, tags and volumes): a versioned JSON document the repository
    /// keeps, encrypted with the manifest, and does not interpret. At most
    /// [`MAX_INSTANCE_RECORD`] bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// The index of the volume's files, when the backup made one ([`crate::file_index`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<FileIndex>,
}

/// The largest instance record a manifest holds, in bytes.
pub const MAX_INSTANCE_RECORD: usize = 64 * 1024;

impl Manifest {
    /// Number of blocks of the volume.
    pub fn block_count(&self) -> u64 {
        self.size.div_ceil(u64::from(self.block_size))
    }

    /// The non-zero blocks of a version 1 manifest (its inline runs) as (index, id), in
    /// increasing index order. Version 2 keeps its runs in chunks, which
    /// [`crate::Repository::for_each_block`] reads.
    pub fn block_ids(&self) -> impl Iterator<Item = (u64, Id)> + '_ {
        self.blocks.iter().flat_map(|run| {
            run.ids
                .iter()
                .enumerate()
                .map(move |(i, id)| (run.start + i as u64, *id))
        })
    }

    /// The blobs a restore point uses besides its blocks: its block map chunks and its file
    /// index chunks.
    pub fn metadata_blobs(&self) -> impl Iterator<Item = &Id> + '_ {
        let files = self.files.iter().flat_map(|f| &f.chunks);
        self.map.iter().map(|c| &c.id).chain(files)
    }

    /// Builds the runs from (index, id) pairs sorted by index.
    pub fn runs_from_sorted(blocks: impl IntoIterator<Item = (u64, Id)>) -> Vec<Run> {
        let mut runs: Vec<Run> = Vec::new();
        for (index, id) in blocks {
            match runs.last_mut() {
                Some(run) if run.start + run.ids.len() as u64 == index => run.ids.push(id),
                _ => runs.push(Run {
                    start: index,
                    ids: vec![id],
                }),
            }
        }
        runs
    }
}

/// `locks/<id>`: a process using the repository. Plain JSON.
///
/// The liveness fields were added after the first release: a lock without them is judged by its
/// age only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockFile {
    /// `shared` (backups, restores, verify) or `exclusive` (prune).
    pub kind: String,
    /// Host name of the process (for people: liveness is judged by `boot_id` and
    /// `pid_namespace`, since containers share host names and pids).
    pub host: String,
    /// Process id, in its pid namespace.
    pub pid: u32,
    /// When the lock was taken (or last refreshed).
    pub time: DateTime<Utc>,
    /// The Linux boot id of the holder's machine (`/proc/sys/kernel/random/boot_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    /// The holder's pid namespace (`readlink /proc/self/ns/pid`, like `pid:[4026531836]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_namespace: Option<String>,
    /// The holder's start time in clock ticks after boot (field 22 of `/proc/PID/stat`), so
    /// that another process that got the same pid is not taken for the holder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<u64>,
}

#[cfg(test)]
impl Manifest {
    /// A manifest of volume `v` of `size` bytes, for tests: version 1 lists `blocks`, version 2
    /// its `map`.
    pub(crate) fn for_test(version: u32, size: u64, blocks: Vec<Run>, map: Vec<MapChunk>) -> Self {
        Self {
            version,
            volume_id: "v".into(),
            size,
            block_size: BLOCK_SIZE,
            time: Utc::now(),
            source: Source {
                kind: "file".into(),
                name: "f".into(),
            },
            parent: None,
            blocks,
            map,
            stats: Stats::default(),
            instance: None,
            files: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_split_at_zero_blocks() {
        let id = |n: u8| Id([n; 32]);
        let runs = Manifest::runs_from_sorted([(0, id(1)), (1, id(2)), (5, id(3)), (6, id(1))]);
        assert_eq!(
            runs,
            vec![
                Run {
                    start: 0,
                    ids: vec![id(1), id(2)]
                },
                Run {
                    start: 5,
                    ids: vec![id(3), id(1)]
                }
            ]
        );
        let m = Manifest::for_test(VERSION, 7 * u64::from(BLOCK_SIZE) - 1, runs, Vec::new());
        assert_eq!(m.block_count(), 7);
        assert_eq!(
            m.block_ids().map(|(i, _)| i).collect::<Vec<_>>(),
            vec![0, 1, 5, 6]
        );
    }
}
