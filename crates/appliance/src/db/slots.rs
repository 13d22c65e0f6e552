//! The slots of the per account-and-region session limit ([`crate::slots`]), kept in the
//! database so that every appliance on it counts against one limit.

use super::Db;
use crate::ApplianceError;

impl Db {
    /// Takes a free slot of `place` (one of `0..limit`) for `holder` of `appliance` until
    /// `lease_until`: a slot nobody holds, or one whose lease lapsed before `now`. The number of
    /// the slot taken, or `None` if all are held. One statement per slot, so that two appliances
    /// racing for the same slot cannot both win it (SQLite and PostgreSQL alike).
    pub async fn take_slot(
        &self,
        place: &str,
        limit: usize,
        holder: &str,
        appliance: &str,
        lease_until: i64,
        now: i64,
    ) -> Result<Option<i64>, ApplianceError> {
        for n in 0..i64::try_from(limit).unwrap_or(i64::MAX) {
            let taken = sqlx::query(
                "INSERT INTO slots (place, n, holder, appliance, lease_until) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (place, n) DO UPDATE SET holder = excluded.holder, \
                 appliance = excluded.appliance, lease_until = excluded.lease_until \
                 WHERE slots.lease_until < $6",
            )
            .bind(place)
            .bind(n)
            .bind(holder)
            .bind(appliance)
            .bind(lease_until)
            .bind(now)
            .execute(&self.pool)
            .await?
            .rows_affected();
            if taken == 1 {
                return Ok(Some(n));
            }
        }
        Ok(None)
    }

    /// Frees slot `n` of `place` if `holder` still holds it (not if another took it over).
    pub async fn free_slot(&self, place: &str, n: i64, holder: &str) -> Result<(), ApplianceError> {
        sqlx::query("DELETE FROM slots WHERE place = $1 AND n = $2 AND holder = $3")
            .bind(place)
            .bind(n)
            .bind(holder)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Renews the leases of the slots `appliance` holds, until `lease_until`.
    pub async fn renew_slots(&self, appliance: &str, lease_until: i64) -> Result<(), ApplianceError> {
        sqlx::query("UPDATE slots SET lease_until = $1 WHERE appliance = $2")
            .bind(lease_until)
            .bind(appliance)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// How many slots are held, by every appliance.
    pub async fn count_slots(&self) -> Result<i64, ApplianceError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM slots")
            .fetch_one(&self.pool)
            .await?)
    }
}
