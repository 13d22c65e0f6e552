//! Named settings: the imported estate file, so that a restart needs no `--estate`; the last
//! health check of the repository; and when each periodic job (discovery, health check) is due
//! next, claimed so that with several appliances on one database it runs once.

use sqlx::Row;

use super::Db;
use crate::ApplianceError;

/// The setting that holds the estate file's text.
pub const ESTATE: &str = "estate";

/// The setting that holds the last health check's outcome (JSON).
pub const REPOSITORY_HEALTH: &str = "repository-health";

impl Db {
    /// A setting's value.
    pub async fn setting(&self, name: &str) -> Result<Option<String>, ApplianceError> {
        let row = sqlx::query("SELECT value FROM settings WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get("value")).transpose()?)
    }

    /// Sets a setting.
    pub async fn set_setting(&self, name: &str, value: &str) -> Result<(), ApplianceError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM settings WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO settings (name, value) VALUES ($1, $2)")
            .bind(name)
            .bind(value)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Claims the periodic job `job` if it is due at `now` (ms): its next run is set `every_ms`
    /// later. `true` for the one appliance that claimed it; `false` if it is not due or another
    /// claimed it first (the update is conditional on the value read). A job never claimed
    /// before is first due at `first` (ms).
    pub async fn claim_periodic(
        &self,
        job: &str,
        now: i64,
        every_ms: i64,
        first: i64,
    ) -> Result<bool, ApplianceError> {
        let name = format!("next:{job}");
        sqlx::query("INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
            .bind(&name)
            .bind(first.to_string())
            .execute(&self.pool)
            .await?;
        let Some(due) = self.setting(&name).await? else {
            return Ok(false);
        };
        if due.parse::<i64>().unwrap_or(0) > now {
            return Ok(false);
        }
        let claimed = sqlx::query("UPDATE settings SET value = $1 WHERE name = $2 AND value = $3")
            .bind(now.saturating_add(every_ms).to_string())
            .bind(&name)
            .bind(&due)
            .execute(&self.pool)
            .await?;
        Ok(claimed.rows_affected() == 1)
    }
}
