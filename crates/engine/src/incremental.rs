//! What an image-level backup of a volume reads: only the blocks changed since the base
//! snapshot its latest restore point was read from, or the whole volume, and why. One choice
//! for both data paths (the EBS direct APIs and workers), since both record the snapshot a
//! restore point holds the data of as its source.

use bulwark_model::SnapshotId;
use bulwark_repo::{Id, RepoError, Repository};
use serde::{Deserialize, Serialize};

use crate::direct::SOURCE_KIND;

/// How a backup reads a volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Read {
    /// Only the blocks changed since the previous backup's base snapshot, building on restore
    /// point `parent`, which holds its data (the volume's latest).
    Incremental {
        /// The restore point the changes apply to.
        parent: Id,
    },
    /// Every block, because of `why`.
    Full {
        /// Why, in a sentence: what the session log says.
        why: String,
    },
}

/// How a backup reads a volume, and the previous backup's base snapshot, if it is still
/// there: what an incremental read lists its changes since, and what the new base replaces
/// once the new restore point is written (also after a full read, so that none is left).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Choice {
    /// How.
    pub read: Read,
    /// The previous base snapshot.
    pub base: Option<SnapshotId>,
}

/// How the backup of `volume_id` from `snapshot`, of a volume of `size` bytes, reads it.
/// `base_exists` says whether the base snapshot of the latest restore point is still there,
/// completed. Only its error fails the choice: whatever is wrong in the repository makes a
/// full read, which needs nothing of it.
pub fn choose<E>(
    repo: &Repository,
    volume_id: &str,
    snapshot: &SnapshotId,
    size: u64,
    base_exists: impl FnOnce(&SnapshotId) -> Result<bool, E>,
) -> Result<Choice, E> {
    let full = |why: String| {
        Ok(Choice {
            read: Read::Full { why },
            base: None,
        })
    };
    let (parent, manifest) = match repo.latest_point(volume_id) {
        Ok(Some(latest)) => latest,
        Ok(None) => return full("it has no restore point yet".into()),
        Err(e) => return full(format!("its latest restore point is unknown: {e}")),
    };
    let base = match manifest.source.name.parse::<SnapshotId>() {
        Ok(base) if manifest.source.kind == SOURCE_KIND => base,
        _ => {
            return full(format!(
                "its latest restore point {} was read from {} {}, not from a snapshot Bulwark keeps",
                parent.short(),
                manifest.source.kind,
                manifest.source.name
            ))
        }
    };
    if &base == snapshot {
        return full(format!(
            "its latest restore point {} was read from {snapshot} itself",
            parent.short()
        ));
    }
    if !base_exists(&base)? {
        return full(format!(
            "the base snapshot {base} of its latest restore point {} is gone",
            parent.short()
        ));
    }
    let full_replacing = |why: String| {
        Ok(Choice {
            read: Read::Full { why },
            base: Some(base.clone()),
        })
    };
    if manifest.size != size {
        return full_replacing(format!(
            "the volume was resized since its latest restore point {} ({} GiB then, {} GiB now)",
            parent.short(),
            manifest.size.div_ceil(1 << 30),
            size.div_ceil(1 << 30)
        ));
    }
    // The new point reuses the parent's block map: it must be whole.
    if let Err(e) = readable_map(repo, &manifest) {
        return full_replacing(format!(
            "its latest restore point {} cannot be read ({e}); run `bulwark image verify`",
            parent.short()
        ));
    }
    Ok(Choice {
        read: Read::Incremental { parent },
        base: Some(base),
    })
}

/// Reads every chunk of a restore point's block map.
fn readable_map(repo: &Repository, manifest: &bulwark_repo::Manifest) -> Result<(), RepoError> {
    let index = repo.load_index()?;
    repo.for_each_block(manifest, &index, 1 << 16, |_| Ok::<(), RepoError>(()))
}

/// What a backup of one volume read, for the session's report (`bulwark run --json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeBackup {
    /// The production volume.
    pub volume: String,
    /// The restore point written.
    pub point: String,
    /// `full` or `incremental`.
    pub read: String,
    /// Why it was read in full.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
    /// Blocks read from the volume.
    pub blocks_read: u64,
    /// Blocks changed since the base snapshot (incremental reads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocks_changed: Option<u64>,
    /// Bytes the backup added to the repository, compressed and encrypted.
    pub bytes_stored: u64,
}

impl VolumeBackup {
    /// The report of restore point `point` of `volume`, from its manifest and how it was read
    /// (`changed`: the number of blocks listed as changed, for an incremental read).
    pub fn of(
        volume: &str,
        point: &Id,
        manifest: &bulwark_repo::Manifest,
        read: &Read,
        changed: Option<u64>,
    ) -> VolumeBackup {
        let (read, why) = match read {
            Read::Incremental { .. } => ("incremental", None),
            Read::Full { why } => ("full", Some(why.clone())),
        };
        VolumeBackup {
            volume: volume.to_owned(),
            point: point.to_hex(),
            read: read.to_owned(),
            why,
            blocks_read: manifest.stats.blocks_read,
            blocks_changed: changed,
            bytes_stored: manifest.stats.bytes_stored,
        }
    }
}
