//! File-level recovery: a backup's restore point or a snapshot opened as a volume of files
//! (`bulwark-fs`), without restoring a volume and without a worker.
//!
//! A restore point is read from the repository as the repository role; a snapshot through
//! the EBS direct APIs (`ListSnapshotBlocks`, `GetSnapshotBlock`) as the backup role of the
//! account that owns it, which needs what a backup without workers of that volume needs
//! (`bulwark policy plan backup --workers none` prints it): those two actions on the
//! snapshot and, for an encrypted one, `kms:Decrypt` on its key. Either way only the blocks
//! the filesystem readers ask for are read, through one cache with read-ahead.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use bulwark_fs::{Cached, Device, Entry, ExtractReport, FileKind, FsError, Volume};
use bulwark_model::SnapshotId;
use bulwark_mover::PointDevice;
use bulwark_repo::Repository;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::{Engine, EngineError};

/// Chunks a file read from a snapshot reads ahead: each block is a call of tens of ms, and 64
/// at once (32 MiB) keep a read near the snapshot's quota of 1,000 calls a second.
pub const SNAPSHOT_READ_AHEAD: u64 = 64;

/// What to read files from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileSource {
    /// An image-level restore point of the repository: its id, or a unique prefix of it.
    Backup(String),
    /// A snapshot or replica Bulwark made (it is in the catalog, which says where it is).
    Snapshot(SnapshotId),
}

/// A restore point or snapshot opened for reading files.
pub struct Files {
    volume: Volume,
    device: Arc<Cached<Box<dyn Device>>>,
    /// What it is, in words: `restore point 1a2b3c4d of vol-...`, `snapshot snap-... of ...`.
    pub what: String,
}

impl Files {
    /// Opens `device` (a restore point, a disk image) through a cache.
    pub fn open(device: Box<dyn Device>, what: String) -> Result<Files, FsError> {
        Self::open_reading_ahead(device, what, bulwark_fs::MAX_READ_AHEAD)
    }

    /// Opens `device` through a cache that reads up to `chunks` 512 KiB chunks ahead of a
    /// file read: more for a device whose reads wait on the network.
    pub fn open_reading_ahead(device: Box<dyn Device>, what: String, chunks: u64) -> Result<Files, FsError> {
        let device = Arc::new(Cached::new(device).with_read_ahead(chunks));
        let volume = Volume::open(device.clone())?;
        Ok(Files { volume, device, what })
    }

    /// The volume, for what the listing and extraction below do not cover.
    pub fn volume(&self) -> &Volume {
        &self.volume
    }

    /// Bytes read from the restore point or snapshot so far (cache misses and read-ahead).
    pub fn bytes_read(&self) -> u64 {
        self.device.bytes_read()
    }

    /// What `path` holds: at `/` the partitions, in a directory its entries (by name), a file
    /// or link itself.
    pub fn list(&self, path: &str) -> Result<Vec<FileEntry>, FsError> {
        let whole = path.trim_end_matches('/').is_empty() || path.ends_with('/');
        let metadata = if whole {
            None
        } else {
            Some(self.volume.metadata(path)?)
        };
        if let Some(metadata) = metadata.filter(|m| m.kind != FileKind::Dir) {
            let name = path.rsplit('/').next().unwrap_or(path).to_owned();
            let entry = Entry {
                name: bulwark_fs::Name(name.into_bytes()),
                metadata: Ok(metadata),
                partition: None,
            };
            let parent = &path[..path.rfind('/').unwrap_or(0)];
            return Ok(vec![self.entry(parent, &entry)]);
        }
        let mut entries = self.volume.ls(path)?;
        entries.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
        Ok(entries.iter().map(|e| self.entry(path, e)).collect())
    }

    /// Writes `paths` (and what is under them) into `to`, keeping modes, times, links (and
    /// owners when running as root).
    pub fn extract(&self, paths: &[&str], to: &Path) -> Result<ExtractReport, FsError> {
        bulwark_fs::extract(&self.volume, paths, to)
    }

    /// Writes `paths` (and what is under them) as a tar stream.
    pub fn write_tar<W: Write>(&self, paths: &[&str], writer: W) -> Result<ExtractReport, FsError> {
        bulwark_fs::write_tar(&self.volume, paths, writer)
    }

    fn entry(&self, dir: &str, e: &Entry) -> FileEntry {
        let name = e.name.to_string_lossy();
        if let Some(p) = &e.partition {
            return FileEntry {
                name,
                kind: "partition".into(),
                size: p.size,
                partition: Some(PartitionEntry {
                    number: p.number,
                    filesystem: p.fs_type.map(|t| t.to_string()),
                    content: p.content.clone(),
                    label: p.label.clone(),
                    start: p.start,
                    part_type: p.part_type.clone(),
                    error: p.error.clone(),
                    warnings: p.warnings.clone(),
                }),
                ..FileEntry::default()
            };
        }
        let m = match &e.metadata {
            Ok(m) => m,
            Err(why) => {
                return FileEntry {
                    name,
                    kind: "unreadable".into(),
                    error: Some(why.clone()),
                    ..FileEntry::default()
                }
            }
        };
        let target = (m.kind == FileKind::Symlink)
            .then(|| {
                let full = format!("{}/{}", dir.trim_end_matches('/'), name);
                self.volume
                    .read_link(full)
                    .map(|t| String::from_utf8_lossy(&t).into_owned())
                    .ok()
            })
            .flatten();
        FileEntry {
            name,
            kind: kind_name(m.kind).into(),
            size: m.size,
            mode: Some(format!("{:04o}", m.mode & 0o7777)),
            uid: Some(m.uid),
            gid: Some(m.gid),
            mtime: DateTime::<Utc>::from_timestamp(m.mtime.secs, m.mtime.nanos),
            target,
            ..FileEntry::default()
        }
    }
}

/// One entry of a listing, as `bulwark files ls --json` and the API give it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FileEntry {
    /// The name (a partition's number at `/`), UTF-8 with what is not replaced.
    pub name: String,
    /// `file`, `dir`, `symlink`, `block-device`, `char-device`, `fifo`, `socket`, `other`,
    /// `partition`, or `unreadable` (a damaged inode among good ones: see `error`).
    pub kind: String,
    /// Bytes (of a partition: its size).
    pub size: u64,
    /// Permission bits in octal, with setuid, setgid and sticky.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Owner.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// Group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    /// Last modification.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtime: Option<DateTime<Utc>>,
    /// A symbolic link's target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// At `/`: the partition.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<PartitionEntry>,
    /// Why the entry could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A partition, as `ls /` lists it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PartitionEntry {
    /// Its number: `/N/...` are its paths (0: a filesystem on the whole disk).
    pub number: u32,
    /// The filesystem when one is read: `ext4`, `xfs`, `ntfs`, `vfat`...
    pub filesystem: Option<String>,
    /// What it holds, in words (`unsupported: LVM2 physical volume`, `empty (zeros)`).
    pub content: String,
    /// The filesystem's label.
    pub label: Option<String>,
    /// Its first byte on the disk.
    pub start: u64,
    /// Its type in the partition table.
    pub part_type: String,
    /// Why its filesystem cannot be read, if it cannot.
    pub error: Option<String>,
    /// What is off but readable (a journal not replayed).
    pub warnings: Vec<String>,
}

fn kind_name(kind: FileKind) -> &'static str {
    match kind {
        FileKind::File => "file",
        FileKind::Dir => "dir",
        FileKind::Symlink => "symlink",
        FileKind::BlockDevice => "block-device",
        FileKind::CharDevice => "char-device",
        FileKind::Fifo => "fifo",
        FileKind::Socket => "socket",
        FileKind::Other => "other",
    }
}

/// Opens the restore point `point` (an id or a unique prefix) of `repo` for reading files.
pub fn open_point(repo: Repository, point: &str) -> Result<Files, EngineError> {
    let failed = |message: String, remedy: &str| EngineError::Browse {
        message,
        remedy: remedy.to_owned(),
    };
    let id = repo.find_point(point).map_err(|e| {
        failed(
            format!("restore point {point}: {e}"),
            "list the restore points (`bulwark image list`, or the API's restore-points) and give one of their ids",
        )
    })?;
    let device = PointDevice::open(repo, &id).map_err(|e| {
        failed(
            format!("restore point {id}: {e}"),
            "run `bulwark image verify` on the repository",
        )
    })?;
    let what = format!("restore point {} of {}", id.short(), device.manifest().volume_id);
    Files::open(Box::new(device), what.clone()).map_err(|e| unreadable(&what, &e))
}

/// A volume whose partition table cannot be read.
fn unreadable(what: &str, e: &FsError) -> EngineError {
    EngineError::Browse {
        message: format!("{what}: {e}"),
        remedy:
            "the volume's partition table cannot be read: restore the volume instead (`bulwark run restore`)"
                .into(),
    }
}

impl Engine {
    /// Opens `source` for reading files.
    pub fn open_files(&self, source: &FileSource) -> Result<Files, EngineError> {
        let failed = |what: String, e: &dyn std::fmt::Display, remedy: &str| EngineError::Browse {
            message: format!("{what}: {e}"),
            remedy: remedy.to_owned(),
        };
        let (device, what, ahead): (Box<dyn Device>, String, u64) = match source {
            FileSource::Backup(point) => return open_point(self.repository("browse")?, point),
            FileSource::Snapshot(snapshot) => {
                let point = self
                    .store
                    .points()?
                    .into_iter()
                    .rev()
                    .find(|p| &p.snapshot == snapshot)
                    .ok_or_else(|| EngineError::Browse {
                        message: format!("snapshot {snapshot} is not a restore point Bulwark made"),
                        remedy: "give a snapshot or replica the API's restore-points (or `bulwark run` reports) list".into(),
                    })?;
                let role = self
                    .estate
                    .account(&point.account)
                    .and_then(|a| a.backup_role.clone())
                    .ok_or_else(|| EngineError::Browse {
                        message: format!(
                            "account {} has no backup role to read {snapshot} with",
                            point.account
                        ),
                        remedy: format!("give account {} a backup_role in the estate file", point.account),
                    })?;
                let remedy = format!(
                    "{role} needs ebs:ListSnapshotBlocks and ebs:GetSnapshotBlock on {snapshot}{}, as a backup without workers does (`bulwark policy plan backup --workers none` prints its policy)",
                    point.key.as_ref().map(|k| format!(" and kms:Decrypt on {}", k.arn())).unwrap_or_default()
                );
                let who = self
                    .identities
                    .fresh(&role)
                    .map_err(|e| failed(format!("assuming {role}"), &e, &remedy))?;
                let device = crate::direct::SnapshotDevice::open(
                    self.cloud.clone(),
                    who,
                    point.region.clone(),
                    snapshot.clone(),
                )
                .map_err(|e| failed(format!("listing the blocks of {snapshot}"), &e, &remedy))?;
                let what = format!(
                    "snapshot {snapshot} of {} in {} {}",
                    point.volume, point.account, point.region
                );
                (Box::new(device), what, SNAPSHOT_READ_AHEAD)
            }
        };
        Files::open_reading_ahead(device, what.clone(), ahead).map_err(|e| unreadable(&what, &e))
    }
}
