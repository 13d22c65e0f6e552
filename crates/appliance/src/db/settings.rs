//! Named settings: the imported estate file, so that a restart needs no `--estate`.

use sqlx::Row;

use super::Db;
use crate::ApplianceError;

/// The setting that holds the estate file's text.
pub const ESTATE: &str = "estate";

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
}
