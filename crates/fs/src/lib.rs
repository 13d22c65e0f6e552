//! Read-only partition tables and filesystems, for file-level recovery (docs below).
#![deny(missing_docs)]

mod bytes;
mod cache;
mod crc;
mod detect;
mod device;
mod error;
mod ext4;
mod extract;
mod fat;
mod model;
mod ntfs;
mod part;
mod volume;
mod walk;
mod xfs;

pub use cache::{Cached, CHUNK_SIZE, DEFAULT_CAPACITY};
pub use detect::{detect, Content};
pub use device::{Device, FileDevice, MemDevice, Window};
pub use error::{FsError, Result};
pub use ext4::Ext4;
pub use extract::{extract, write_tar, ExtractReport};
pub use fat::Fat;
pub use model::{DirEntry, FileData, FileKind, Filesystem, FsType, Metadata, Name, NodeId, Timestamp};
pub use ntfs::Ntfs;
pub use part::{Guid, PartType, PartitionEntry, PartitionTable, TableKind};
pub use volume::{Entry, FileReader, Partition, PartitionInfo, Volume, MAX_SYMLINK_HOPS};
pub use walk::{walk_all, walk_volume, Summary, MAX_ERRORS};
pub use xfs::Xfs;
