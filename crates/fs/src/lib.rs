//! Read-only partition tables and filesystems for file-level recovery: browse a volume
//! backup or an EBS snapshot and fetch single files from it, reading only the blocks needed,
//! without mounting and without root.
//!
//! This crate depends on no other Bulwark crate: it reads from its own [`Device`] trait
//! (size and positioned reads, from many threads), which adapters elsewhere implement for
//! repository restore points and EBS snapshots. It writes to no device and prints nothing.
//!
//! # Design
//!
//! - **Devices.** [`FileDevice`] (an image or block device), [`MemDevice`], [`Window`] (a
//!   partition). [`Cached`] keeps an LRU of 512 KiB chunks (the EBS block size), reads
//!   ahead of sequential reads (1, 2, 4 then 8 chunks at once, per stream, up to 8
//!   streams), and counts the bytes it read below ([`Cached::bytes_read`]): give a
//!   [`Volume`] one for anything slower than a local file.
//! - **Partition tables.** GPT, its header and entry CRCs checked; a damaged primary falls
//!   back to the backup header with a warning ([`PartitionTable::warnings`]). MBR with
//!   primary, extended and logical partitions; a protective MBR means GPT. No table: the
//!   filesystem on the whole disk is partition 0.
//! - **Detection** ([`detect`]) by magic numbers: ext2/3/4, XFS, NTFS, FAT12/16/32 are
//!   read; LVM2 physical volumes, LUKS, swap, btrfs, ZFS, MD RAID, exFAT, BitLocker, ReFS,
//!   ISO 9660, squashfs, HFS+, APFS are named as [`Content::Unsupported`]; all-zero starts
//!   are [`Content::Empty`].
//! - **Filesystems** implement [`Filesystem`]: nodes ([`NodeId`]), directory listings with
//!   raw-byte names ([`Name`]), [`Metadata`] (kind, size, mode with setuid/setgid/sticky,
//!   owner, atime/mtime/ctime/crtime with nanoseconds, links, inode, device number),
//!   symlink targets, and file data ([`FileData`]) read at any offset, holes and unwritten
//!   extents as zeros.
//! - **Paths.** A [`Volume`] is one namespace: `/` lists the partitions, `/1/etc/hosts` is
//!   a path in partition 1, `/0/...` a filesystem on the whole disk. `ls` and `metadata`
//!   do not follow a final symlink (lstat; a trailing `/` follows it), `open_file` does;
//!   symlinks in intermediate components are followed within the same filesystem (an
//!   absolute target starts at that filesystem's root), at most 40 of them (ELOOP). `..`
//!   never leaves a partition. FAT and NTFS lookups fall back to case-insensitive.
//! - **Getting files out.** [`Volume::open_file`] streams ([`FileReader`]: `Read + Seek`
//!   in 1 MiB reads); [`extract()`] writes a local tree (modes, times, owners when root;
//!   sparse files stay sparse; names from disk that are unsafe are skipped and reported);
//!   [`write_tar`] writes a tar stream (GNU long names and link targets).
//! - **Damage** is [`FsError::Damaged`] with what and where, never a panic, a hang or
//!   invented data: every length, offset and index read from disk is checked, allocation
//!   sizes are bounded before allocating, btree and chain walks end on cycles and depth,
//!   and checksums are verified where the filesystem has them. [`walk_all`] visits
//!   everything and is what the corruption tests (and later fuzz targets) run;
//!   [`list_volume`] visits every entry's metadata, for a file index.
//!
//! # What each filesystem reader reads
//!
//! - **XFS** (written here from the on-disk format): v4 and v5 superblocks, any number of
//!   AGs; inode cores v1, v2, v3; bigtime; nrext64; data forks local, extents and btree
//!   (bmbt, long-format blocks, v5 CRC headers); unwritten extents and holes as zeros;
//!   directories short-form, block, leaf, node and btree-mapped, with and without ftype;
//!   symlinks local and remote (v5 headers checked); device numbers. Every v5 metadata
//!   block's CRC, owner and location is checked. Not read: extended attributes (so no
//!   ACLs or file capabilities), realtime-device files (refused), the log: a snapshot of a
//!   mounted filesystem is read as its metadata stands on disk, without replaying the log,
//!   so changes made in the last seconds before it may be missing.
//! - **ext2/3/4** (written here; `ext4-view` lacks ctime, link counts, inode and device
//!   numbers and is not `Send`): 32/64-bit descriptors, meta_bg, flex_bg, extent trees,
//!   indirect block maps, inline data, linear and htree directories, fast and slow
//!   symlinks, nanosecond and post-2038 times, metadata_csum checked (superblock, group
//!   descriptors, inodes, extent blocks, directory blocks). Not read: extended attributes,
//!   encrypted files (refused), the journal (not replayed: [`Filesystem::warnings`] says
//!   when it needed recovery).
//! - **NTFS** (the `ntfs` crate): files and directories, $STANDARD_INFORMATION times
//!   (ctime is the MFT change time), read-only attribute as mode, sparse files. uid/gid 0;
//!   reparse points (symlinks, junctions) are [`FileKind::Other`]; compressed and
//!   EFS-encrypted files are refused; alternate data streams are not read; metafiles are
//!   not listed.
//! - **FAT12/16/32** (written here; `fatfs` needs a writable device and is not `Sync`),
//!   EFI system partitions among them: long names, lower-case flags of short names (short
//!   names decoded as code page 437, Linux's default), read-only as mode. Times are local
//!   time as stored, FAT having no time zone, reported as if UTC. uid/gid 0, no inode
//!   numbers: a node is its directory entry's byte offset.
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

pub use cache::{Cached, CHUNK_SIZE, DEFAULT_CAPACITY, MAX_READ_AHEAD};
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
pub use walk::{list_volume, walk_all, walk_volume, Summary, MAX_ERRORS};
pub use xfs::Xfs;
