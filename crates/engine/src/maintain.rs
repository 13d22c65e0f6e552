//! Repository maintenance, which the appliance schedules beside sessions: forgetting the
//! image-level restore points its policies no longer keep, pruning the data no restore point
//! needs, and verifying the repository. Each runs as the repository role, which needs
//! [`bulwark_plan::maintenance_statements`] beside what the plans need (`bulwark policy
//! maintenance` prints them).

use std::sync::Arc;

use bulwark_cloud::SharedCredentials;
use bulwark_repo::{PrunePlan, RepoError, Repository, Secret, VerifyReport};
use chrono::{DateTime, Utc};

use crate::{Engine, EngineError};

impl Engine {
    /// Removes the image-level restore points `ids` from the repository. Answers, per id,
    /// `Some(date)` for a point Object Lock retains until then (kept); a point already gone
    /// counts as removed.
    pub fn forget_points(&self, ids: &[String]) -> Result<Vec<Option<DateTime<Utc>>>, EngineError> {
        self.maintain("forget", |repo| bulwark_repo::forget_points(repo, ids))
    }

    /// Removes the data no restore point uses any more (under an exclusive lock: it waits for
    /// no backup, it fails while one runs).
    pub fn prune_repository(&self) -> Result<PrunePlan, EngineError> {
        self.maintain("prune", bulwark_repo::prune)
    }

    /// Checks the repository's structure, and with `read_data` reads and authenticates every
    /// block.
    pub fn verify_repository(&self, read_data: bool, threads: usize) -> Result<VerifyReport, EngineError> {
        self.maintain("verify", |repo| bulwark_repo::verify(repo, read_data, threads))
    }

    /// Opens the repository as the repository role and runs `work` on it.
    fn maintain<T>(
        &self,
        what: &'static str,
        work: impl FnOnce(&Repository) -> Result<T, RepoError>,
    ) -> Result<T, EngineError> {
        let repo = self.repository(what)?;
        work(&repo).map_err(|e| self.repository_failed(what, e.to_string()))
    }

    /// The repository, opened as the repository role, for `what` (named in its errors).
    pub(crate) fn repository(&self, what: &'static str) -> Result<Repository, EngineError> {
        let repository = self
            .estate
            .repository
            .as_ref()
            .ok_or_else(|| EngineError::NotReady("the estate defines no [repository]".into()))?;
        let failed = |message: String| self.repository_failed(what, message);
        let credentials = self
            .identities
            .fresh(&repository.role)
            .map_err(|e| failed(format!("the repository role cannot be assumed: {e}")))?;
        let shared = SharedCredentials::new(credentials);
        let store = self
            .cloud
            .s3
            .object_store(
                &shared,
                &repository.region,
                &repository.bucket.to_string(),
                &repository.prefix,
            )
            .map_err(|e| failed(e.to_string()))?;
        let secret = match &self.repository_key {
            Some(key) => Secret::from_key_file(key.as_bytes(), "the repository key")
                .map_err(|e| failed(e.to_string()))?,
            None => Secret::None,
        };
        Repository::open(Arc::from(store), &secret).map_err(|e| failed(e.to_string()))
    }

    fn repository_failed(&self, what: &'static str, message: String) -> EngineError {
        EngineError::Repository {
            what,
            role: self
                .estate
                .repository
                .as_ref()
                .map_or_else(String::new, |r| r.role.to_string()),
            message,
        }
    }
}
