//! Bulwark's backup repository: volume data kept as content-addressed 512 KiB blocks (the EBS
//! block size), zero blocks never stored, each block stored once however many volumes and
//! restore points hold it, compressed with zstd and sealed with AES-256-GCM, packed into
//! large objects listed by index files; restore points are manifests, one per volume backup,
//! each restorable on its own. `docs/repository-format.md` specifies the format.
//!
//! Safety rests on three rules: files are immutable and named by the hash of their bytes;
//! a backup writes packs, then its index, then its manifest, so a backup killed at any moment
//! leaves every earlier restore point intact; prune takes an exclusive lock, which backups'
//! shared locks exclude, so it never deletes a block a running backup relies on.
//!
//! This crate knows storage and format only: it reads no volumes (that is `bulwark-mover`),
//! prints nothing, and depends on no cloud SDK (the S3 backend is the crate `bulwark-s3`).
#![deny(missing_docs)]

mod crypto;
pub mod decode;
mod error;
pub mod file_index;
mod format;
mod id;
mod immutable;
mod lock;
pub mod map;
mod prune;
mod repository;
mod retention;
mod verify;
mod writer;

pub use crypto::{random, Kdf, KeyFile, Secret};
pub use error::RepoError;
pub use file_index::{EntryKind, FileEntry, FileIndex, FileIndexBuilder};
pub use format::{
    BlockEntry, Config, IndexFile, IndexPack, LockFile, Manifest, ObjectLock, PackHeader, Run, Source, Stats,
    BLOCK_SIZE, MANIFEST_VERSION, PACK_SIZE, VERSION,
};
pub use id::{BadId, Id};
pub use lock::{decode_lock, Lock, LockKind, LockTiming, STALE_AFTER};
pub use map::{FinishedMap, MapBuilder, MapChunk};
pub use prune::{forget, forget_points, prune, prune_plan, PrunePlan};
pub use repository::{Index, InitOptions, Location, Repository};
pub use retention::{apply as apply_retention, Decision, PointInfo, Reason, Retention, RetentionError};
pub use verify::{verify, ObjectState, VerifyReport};
pub use writer::{is_zero, Packer, Writer};
