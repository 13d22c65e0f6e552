//! Restore points: the snapshots (and replicas) each session kept, per instance, until
//! retention expires them.

use bulwark_engine::SnapshotPoint;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::ToSchema;

use super::{from_doc, new_id, now_ms, to_doc, Db};
use crate::ApplianceError;

/// What kind of restore point.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PointKind {
    /// Cloud-native snapshots in the instance's account and region.
    Snapshot,
    /// Copies of them in another region or account.
    Replica,
}

impl PointKind {
    fn as_str(self) -> &'static str {
        match self {
            PointKind::Snapshot => "snapshot",
            PointKind::Replica => "replica",
        }
    }
}

/// One restore point of an instance: a snapshot of each of its volumes, taken together.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct RestorePoint {
    /// Its id.
    pub id: String,
    /// The instance.
    pub instance: String,
    /// The policy that made it, if any.
    pub policy: Option<String>,
    /// Snapshot or replica.
    pub kind: PointKind,
    /// The account that owns the snapshots.
    pub account: String,
    /// Their region.
    pub region: String,
    /// When it was made (ms since the epoch).
    pub created_at: i64,
    /// The session that made it.
    pub session: String,
    /// The snapshots, one per volume.
    #[schema(value_type = Vec<Object>)]
    pub snapshots: Vec<SnapshotPoint>,
    /// When retention deleted it, if it did.
    pub expired_at: Option<i64>,
}

/// Which restore points to read.
#[derive(Clone, Copy, Debug)]
pub struct PointQuery<'a> {
    /// Of this instance only.
    pub instance: Option<&'a str>,
    /// Made by this policy only.
    pub policy: Option<&'a str>,
    /// Expired ones too.
    pub expired: bool,
}

impl Db {
    /// Records a restore point.
    pub async fn add_point(
        &self,
        instance: &str,
        policy: Option<&str>,
        kind: PointKind,
        session: &str,
        snapshots: &[SnapshotPoint],
    ) -> Result<RestorePoint, ApplianceError> {
        let (account, region) = snapshots
            .first()
            .map(|s| (s.account.to_string(), s.region.to_string()))
            .unwrap_or_default();
        let point = RestorePoint {
            id: new_id("rp"),
            instance: instance.to_owned(),
            policy: policy.map(str::to_owned),
            kind,
            account,
            region,
            created_at: now_ms(),
            session: session.to_owned(),
            snapshots: snapshots.to_vec(),
            expired_at: None,
        };
        sqlx::query(
            "INSERT INTO restore_points (id, instance, policy, kind, account, region, created_at, session, doc, expired_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL)",
        )
        .bind(&point.id)
        .bind(&point.instance)
        .bind(&point.policy)
        .bind(kind.as_str())
        .bind(&point.account)
        .bind(&point.region)
        .bind(point.created_at)
        .bind(&point.session)
        .bind(to_doc(&point.snapshots))
        .execute(&self.pool)
        .await?;
        Ok(point)
    }

    /// Restore points, newest first.
    pub async fn points(&self, q: PointQuery<'_>) -> Result<Vec<RestorePoint>, ApplianceError> {
        let rows = sqlx::query(
            "SELECT id, instance, policy, kind, account, region, created_at, session, doc, expired_at FROM restore_points \
             WHERE ($1 IS NULL OR instance = $1) AND ($2 IS NULL OR policy = $2) AND ($3 = 1 OR expired_at IS NULL) \
             ORDER BY created_at DESC, id DESC",
        )
        .bind(q.instance)
        .bind(q.policy)
        .bind(i64::from(q.expired))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let id: String = r.try_get("id")?;
                let kind: String = r.try_get("kind")?;
                let doc: String = r.try_get("doc")?;
                Ok(RestorePoint {
                    kind: match kind.as_str() {
                        "snapshot" => PointKind::Snapshot,
                        "replica" => PointKind::Replica,
                        other => {
                            return Err(ApplianceError::Damaged {
                                what: format!("restore point {id}"),
                                message: format!("unknown kind {other:?}"),
                            })
                        }
                    },
                    snapshots: from_doc(|| format!("restore point {id}"), &doc)?,
                    instance: r.try_get("instance")?,
                    policy: r.try_get("policy")?,
                    account: r.try_get("account")?,
                    region: r.try_get("region")?,
                    created_at: r.try_get("created_at")?,
                    session: r.try_get("session")?,
                    expired_at: r.try_get("expired_at")?,
                    id,
                })
            })
            .collect()
    }

    /// Marks a restore point expired (its snapshots are deleted).
    pub async fn expire_point(&self, id: &str) -> Result<(), ApplianceError> {
        sqlx::query("UPDATE restore_points SET expired_at = $1 WHERE id = $2")
            .bind(now_ms())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
