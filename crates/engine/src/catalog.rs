//! The restore points Bulwark made as snapshots (cloud-native snapshots and their replicas),
//! so that a restore from a snapshot finds the latest one of a volume in an account and
//! region. Image-level restore points live in the repository itself.

use std::fs;
use std::path::PathBuf;
use std::sync::Mutex;

use bulwark_model::{AccountId, Region, SnapshotId, VolumeId};
use serde::{Deserialize, Serialize};

use crate::EngineError;

/// One snapshot restore point.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotPoint {
    /// The production volume.
    pub volume: VolumeId,
    /// The account that owns the snapshot.
    pub account: AccountId,
    /// Its region.
    pub region: Region,
    /// The snapshot.
    pub snapshot: SnapshotId,
    /// The session that made it.
    pub session: String,
}

/// The catalog file.
pub(crate) struct Catalog {
    path: PathBuf,
    lock: Mutex<()>,
}

impl Catalog {
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            lock: Mutex::new(()),
        }
    }

    fn error(&self, e: impl std::fmt::Display) -> EngineError {
        EngineError::Journal {
            path: self.path.display().to_string(),
            message: e.to_string(),
        }
    }

    pub fn all(&self) -> Result<Vec<SnapshotPoint>, EngineError> {
        match fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| self.error(e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(self.error(e)),
        }
    }

    pub fn add(&self, points: &[SnapshotPoint]) -> Result<(), EngineError> {
        let _guard = crate::lock(&self.lock);
        let mut all = self.all()?;
        all.extend_from_slice(points);
        let tmp = self.path.with_extension("tmp");
        let bytes = serde_json::to_vec_pretty(&all).map_err(|e| self.error(e))?;
        fs::write(&tmp, bytes).map_err(|e| self.error(e))?;
        fs::rename(&tmp, &self.path).map_err(|e| self.error(e))
    }

    pub fn latest_snapshot(
        &self,
        volume: &VolumeId,
        account: &AccountId,
        region: &Region,
    ) -> Result<Option<SnapshotId>, EngineError> {
        Ok(self
            .all()?
            .into_iter()
            .rev()
            .find(|p| &p.volume == volume && &p.account == account && &p.region == region)
            .map(|p| p.snapshot))
    }
}
