//! The inventory: the instances discovery found, and each account and region's last
//! discovery (its EBS defaults, or why it could not be read).

use bulwark_engine::check::Finding;
use bulwark_engine::discover::{Discovered, Discovery};
use bulwark_model::{AccountId, KeyRef, Region};
use serde::Serialize;
use sqlx::Row;
use utoipa::ToSchema;

use super::{from_doc, now_ms, to_doc, Db};
use crate::ApplianceError;

/// The last discovery of one account and region.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct RegionStatus {
    /// The account.
    #[schema(value_type = String)]
    pub account: AccountId,
    /// The region.
    #[schema(value_type = String)]
    pub region: Region,
    /// When (ms since the epoch).
    pub discovered_at: i64,
    /// The default EBS key, when it is a customer managed key.
    #[schema(value_type = Option<String>)]
    pub default_key: Option<KeyRef>,
    /// Whether EBS encryption by default is on.
    pub encryption_by_default: bool,
    /// Why the account could not be discovered there, if it could not.
    pub problem: Option<String>,
    /// What to do about it.
    pub fix: Option<String>,
}

/// Replaces the row of an account and region.
async fn put_region(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    account: &AccountId,
    region: &Region,
    default_key: Option<String>,
    encryption_by_default: bool,
    problem: Option<&Finding>,
) -> Result<(), ApplianceError> {
    sqlx::query("DELETE FROM regions WHERE account = $1 AND region = $2")
        .bind(account.as_str())
        .bind(region.as_str())
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "INSERT INTO regions (account, region, discovered_at, default_key, encryption_by_default, problem, fix) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(account.as_str())
    .bind(region.as_str())
    .bind(now_ms())
    .bind(default_key)
    .bind(i64::from(encryption_by_default))
    .bind(problem.map(|f| f.problem.clone()))
    .bind(problem.map(|f| f.fix.clone()))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl Db {
    /// Replaces what is known of `account` in `region` by what discovery found.
    pub async fn save_discovery(
        &self,
        account: &AccountId,
        region: &Region,
        found: &Discovery,
    ) -> Result<(), ApplianceError> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM instances WHERE account = $1 AND region = $2")
            .bind(account.as_str())
            .bind(region.as_str())
            .execute(&mut *tx)
            .await?;
        for d in &found.instances {
            sqlx::query(
                "INSERT INTO instances (id, account, region, doc, discovered_at) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(d.instance.id.as_str())
            .bind(account.as_str())
            .bind(region.as_str())
            .bind(to_doc(d))
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        let key = found.default_key.as_ref().map(KeyRef::arn);
        put_region(&mut tx, account, region, key, found.encryption_by_default, None).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records that `account` could not be discovered in `region`; what was found before is kept.
    pub async fn save_unreachable(
        &self,
        account: &AccountId,
        region: &Region,
        finding: &Finding,
    ) -> Result<(), ApplianceError> {
        let mut tx = self.pool.begin().await?;
        let kept = sqlx::query(
            "SELECT default_key, encryption_by_default FROM regions WHERE account = $1 AND region = $2",
        )
        .bind(account.as_str())
        .bind(region.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let (key, by_default): (Option<String>, i64) = match kept {
            Some(r) => (r.try_get("default_key")?, r.try_get("encryption_by_default")?),
            None => (None, 0),
        };
        put_region(&mut tx, account, region, key, by_default != 0, Some(finding)).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every discovered instance, by id.
    pub async fn instances(&self) -> Result<Vec<Discovered>, ApplianceError> {
        let rows = sqlx::query("SELECT id, doc FROM instances ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let id: String = r.try_get("id")?;
                let doc: String = r.try_get("doc")?;
                from_doc(|| format!("instance {id}"), &doc)
            })
            .collect()
    }

    /// The last discovery of every account and region.
    pub async fn regions(&self) -> Result<Vec<RegionStatus>, ApplianceError> {
        let rows = sqlx::query(
            "SELECT account, region, discovered_at, default_key, encryption_by_default, problem, fix \
             FROM regions ORDER BY account, region",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::new();
        for r in rows {
            let account: String = r.try_get("account")?;
            let region: String = r.try_get("region")?;
            let damaged = |e: bulwark_model::InvalidId| ApplianceError::Damaged {
                what: format!("discovery of {account}/{region}"),
                message: e.to_string(),
            };
            let account: AccountId = account.parse().map_err(damaged)?;
            let region: Region = region.parse().map_err(damaged)?;
            let key: Option<String> = r.try_get("default_key")?;
            let default_key = key
                .map(|k| KeyRef::parse_in(&k, &account, &region))
                .transpose()
                .map_err(damaged)?;
            out.push(RegionStatus {
                discovered_at: r.try_get("discovered_at")?,
                default_key,
                encryption_by_default: r.try_get::<i64, _>("encryption_by_default")? != 0,
                problem: r.try_get("problem")?,
                fix: r.try_get("fix")?,
                account,
                region,
            });
        }
        Ok(out)
    }
}
