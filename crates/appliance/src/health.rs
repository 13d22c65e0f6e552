//! The repository's health check, a session on a schedule (daily by default) and on demand:
//! it prunes what no restore point needs any more (what retention forgot), then verifies the
//! repository. Its outcome is kept for the API (`GET /api/v1/repository`) and the console.
//!
//! Prune locks the repository exclusively, so a backup cannot start while it runs; the
//! scheduler starts a health check only when no policy run or restore is going, and leaves
//! due policy runs for its next tick while one is.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::db::now_ms;
use crate::db::sessions::{Kind, SessionRecord, Status};
use crate::db::settings::REPOSITORY_HEALTH;
use crate::{Appliance, ApplianceError};

/// The outcome of the last health check.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// The session that checked.
    pub session: String,
    /// When it ended (ms since the epoch).
    pub checked_at: i64,
    /// Whether verify found no problem.
    pub clean: bool,
    /// Restore points in the repository.
    pub points: usize,
    /// Packs in the repository.
    pub packs: usize,
    /// Bytes the repository's packs take, after the prune.
    pub stored_bytes: u64,
    /// Bytes the prune freed.
    pub bytes_freed: u64,
    /// What verify found wrong, each naming an object.
    pub problems: Vec<String>,
    /// Restore points that cannot be fully restored, with why.
    pub damaged_points: Vec<String>,
    /// What went wrong with the prune, if it failed (the verify still ran).
    pub prune_error: Option<String>,
}

impl Appliance {
    /// Starts a health check of the repository: prune, then verify (reading every block with
    /// `read_data`).
    pub async fn run_health_check(
        self: &Arc<Self>,
        read_data: bool,
    ) -> Result<SessionRecord, ApplianceError> {
        let items = vec![
            ("repository".to_owned(), "prune".to_owned()),
            ("repository".to_owned(), "verify".to_owned()),
        ];
        let estate = self.estate.clone();
        self.start(Kind::HealthCheck, None, &items, move |run| {
            let engine = run.engine(estate);
            let mut health = Health {
                session: run.session.clone(),
                ..Health::default()
            };
            run.item(0, Status::Running, "pruning", None);
            let pruned = match engine.prune_repository() {
                Ok(plan) => {
                    health.bytes_freed = plan.bytes_freed;
                    let message = format!(
                        "{} packs deleted, {} rewritten, {} left by interrupted backups removed: {} bytes freed",
                        plan.delete.len(),
                        plan.repack.len(),
                        plan.unreferenced.len(),
                        plan.bytes_freed
                    );
                    for w in &plan.warnings {
                        run.log("warn", w);
                    }
                    run.item(0, Status::Succeeded, &message, None);
                    Status::Succeeded
                }
                Err(e) => {
                    health.prune_error = Some(e.to_string());
                    run.item(0, Status::Failed, &e.to_string(), Some(&e));
                    Status::Failed
                }
            };
            run.item(1, Status::Running, "verifying", None);
            let verified = match engine.verify_repository(read_data, 2) {
                Ok(report) => {
                    health.clean = report.is_clean();
                    health.points = report.points;
                    health.packs = report.packs;
                    health.problems = report.problems.clone();
                    health.damaged_points = report
                        .damaged_points
                        .iter()
                        .map(|(id, why)| format!("{}: {why}", id.to_hex()))
                        .collect();
                    health.stored_bytes = report.stored_bytes;
                    for p in &health.problems {
                        run.log("error", p);
                    }
                    let message = format!(
                        "{}: {} restore points, {} packs",
                        if health.clean { "no problems" } else { "PROBLEMS FOUND" },
                        report.points,
                        report.packs
                    );
                    if health.clean {
                        run.item(1, Status::Succeeded, &message, None);
                        Status::Succeeded
                    } else {
                        run.db(run.app.db.set_item(
                            &run.session,
                            1,
                            Status::Failed,
                            Some(&message),
                            Some("repository-damaged"),
                            Some("see the session log for each damaged object; `bulwark image verify --read-data` tells more, docs/repository-format.md what to do"),
                        ));
                        Status::Failed
                    }
                }
                Err(e) => {
                    run.item(1, Status::Failed, &e.to_string(), Some(&e));
                    Status::Failed
                }
            };
            health.checked_at = now_ms();
            run.db(run.app.db.set_setting(REPOSITORY_HEALTH, &crate::db::to_doc(&health)));
            run.finish(&[pruned, verified], "health check of the repository");
        })
        .await
    }

    /// The outcome of the last health check, if one ran.
    pub async fn health(&self) -> Result<Option<Health>, ApplianceError> {
        match self.db.setting(REPOSITORY_HEALTH).await? {
            Some(doc) => Ok(Some(crate::db::from_doc(
                || "the last health check".into(),
                &doc,
            )?)),
            None => Ok(None),
        }
    }
}
