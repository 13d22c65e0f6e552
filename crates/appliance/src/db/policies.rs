//! Policies, and the scheduler's next run of each.

use serde::Serialize;
use sqlx::Row;
use utoipa::ToSchema;

use super::{from_doc, new_id, now_ms, to_doc, Db};
use crate::policy::Policy;
use crate::ApplianceError;

/// A stored policy.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct PolicyRecord {
    /// Its id.
    pub id: String,
    /// The policy.
    #[serde(flatten)]
    pub policy: Policy,
    /// When it runs next (ms since the epoch); `null` without a schedule.
    pub next_run: Option<i64>,
}

impl Db {
    /// Stores a new policy; `None` if the name is taken.
    pub async fn create_policy(
        &self,
        policy: &Policy,
        next_run: Option<i64>,
    ) -> Result<Option<PolicyRecord>, ApplianceError> {
        let id = new_id("pol");
        let now = now_ms();
        let done = sqlx::query(
            "INSERT INTO policies (id, name, priority, doc, next_run, created_at, updated_at) \
             SELECT $1, $2, $3, $4, $5, $6, $7 WHERE NOT EXISTS (SELECT 1 FROM policies WHERE name = $8)",
        )
        .bind(&id)
        .bind(&policy.name)
        .bind(policy.priority)
        .bind(to_doc(policy))
        .bind(next_run)
        .bind(now)
        .bind(now)
        .bind(&policy.name)
        .execute(&self.pool)
        .await?;
        Ok((done.rows_affected() == 1).then(|| PolicyRecord {
            id,
            policy: policy.clone(),
            next_run,
        }))
    }

    /// Replaces a policy; `false` if there is none with that id.
    pub async fn update_policy(
        &self,
        id: &str,
        policy: &Policy,
        next_run: Option<i64>,
    ) -> Result<bool, ApplianceError> {
        let done = sqlx::query("UPDATE policies SET name = $1, priority = $2, doc = $3, next_run = $4, updated_at = $5 WHERE id = $6")
            .bind(&policy.name)
            .bind(policy.priority)
            .bind(to_doc(policy))
            .bind(next_run)
            .bind(now_ms())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Removes a policy (its restore points stay); `false` if there is none with that id.
    pub async fn delete_policy(&self, id: &str) -> Result<bool, ApplianceError> {
        let done = sqlx::query("DELETE FROM policies WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// One policy.
    pub async fn policy(&self, id: &str) -> Result<Option<PolicyRecord>, ApplianceError> {
        let row = sqlx::query("SELECT id, doc, next_run FROM policies WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| record(&r)).transpose()
    }

    /// Every policy, highest priority first.
    pub async fn policies(&self) -> Result<Vec<PolicyRecord>, ApplianceError> {
        let rows = sqlx::query("SELECT id, doc, next_run FROM policies ORDER BY priority DESC, name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(record).collect()
    }

    /// The policies due at `now`.
    pub async fn due_policies(&self, now: i64) -> Result<Vec<PolicyRecord>, ApplianceError> {
        let rows = sqlx::query("SELECT id, doc, next_run FROM policies WHERE next_run IS NOT NULL AND next_run <= $1 ORDER BY next_run")
            .bind(now)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(record).collect()
    }

    /// Claims the due run `due` of a policy by moving its next run to `next`: true for exactly
    /// one caller, whichever appliance it is (a conditional update is atomic in both SQLite
    /// and PostgreSQL). A run missed during downtime is claimed once, whatever the slots
    /// missed, because `next` is computed from now.
    pub async fn claim(&self, id: &str, due: i64, next: Option<i64>) -> Result<bool, ApplianceError> {
        let done = sqlx::query("UPDATE policies SET next_run = $1 WHERE id = $2 AND next_run = $3")
            .bind(next)
            .bind(id)
            .bind(due)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }
}

fn record(r: &sqlx::any::AnyRow) -> Result<PolicyRecord, ApplianceError> {
    let id: String = r.try_get("id")?;
    let doc: String = r.try_get("doc")?;
    Ok(PolicyRecord {
        policy: from_doc(|| format!("policy {id}"), &doc)?,
        next_run: r.try_get("next_run")?,
        id,
    })
}
