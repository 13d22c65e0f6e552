//! Restore points: the snapshots (and replicas) and the image-level backups each session made,
//! per instance, until retention expires them.

use bulwark_engine::SnapshotPoint;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::ToSchema;

use super::{from_doc, new_id, now_ms, stored_name, to_doc, Db};
use crate::ApplianceError;

/// What kind of restore point.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PointKind {
    /// Cloud-native snapshots in the instance's account and region.
    Snapshot,
    /// Copies of them in another region or account.
    Replica,
    /// An image-level backup: a restore point in the repository for each volume.
    Backup,
}

impl PointKind {
    fn as_str(self) -> &'static str {
        match self {
            PointKind::Snapshot => "snapshot",
            PointKind::Replica => "replica",
            PointKind::Backup => "backup",
        }
    }
}

/// One volume's part of an image-level backup: its restore point in the repository.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BackupVolume {
    /// The production volume.
    pub volume: String,
    /// Its restore point's id in the repository (`bulwark image list`).
    pub point: String,
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
    /// Snapshot, replica or backup.
    pub kind: PointKind,
    /// The account that owns the snapshots (for a backup, the repository's).
    pub account: String,
    /// Their region (for a backup, the repository bucket's).
    pub region: String,
    /// When it was made (ms since the epoch).
    pub created_at: i64,
    /// The session that made it.
    pub session: String,
    /// The snapshots, one per volume (none for a backup).
    #[schema(value_type = Vec<Object>)]
    pub snapshots: Vec<SnapshotPoint>,
    /// The repository's restore points, one per volume (for a backup only).
    pub backups: Vec<BackupVolume>,
    /// When retention deleted it, if it did.
    pub expired_at: Option<i64>,
}

impl RestorePoint {
    /// A new restore point, made now, with nothing in it yet.
    fn new(
        instance: &str,
        policy: Option<&str>,
        kind: PointKind,
        session: &str,
        account: String,
        region: String,
    ) -> RestorePoint {
        RestorePoint {
            id: new_id("rp"),
            instance: instance.to_owned(),
            policy: policy.map(str::to_owned),
            kind,
            account,
            region,
            created_at: now_ms(),
            session: session.to_owned(),
            snapshots: Vec::new(),
            backups: Vec::new(),
            expired_at: None,
        }
    }
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
    /// Records a snapshot or replica restore point.
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
        let mut point = RestorePoint::new(instance, policy, kind, session, account, region);
        point.snapshots = snapshots.to_vec();
        self.insert_point(&point, to_doc(&point.snapshots)).await?;
        Ok(point)
    }

    /// Records an image-level backup of an instance, in the repository of `account` and
    /// `region`.
    pub async fn add_backup_point(
        &self,
        instance: &str,
        policy: Option<&str>,
        session: &str,
        (account, region): (String, String),
        volumes: Vec<BackupVolume>,
    ) -> Result<RestorePoint, ApplianceError> {
        let mut point = RestorePoint::new(instance, policy, PointKind::Backup, session, account, region);
        point.backups = volumes;
        self.insert_point(&point, to_doc(&point.backups)).await?;
        Ok(point)
    }

    async fn insert_point(&self, point: &RestorePoint, doc: String) -> Result<(), ApplianceError> {
        sqlx::query(
            "INSERT INTO restore_points (id, instance, policy, kind, account, region, created_at, session, doc, expired_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL)",
        )
        .bind(&point.id)
        .bind(&point.instance)
        .bind(&point.policy)
        .bind(point.kind.as_str())
        .bind(&point.account)
        .bind(&point.region)
        .bind(point.created_at)
        .bind(&point.session)
        .bind(doc)
        .execute(&self.pool)
        .await?;
        Ok(())
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
                let kind: PointKind = stored_name(&format!("the kind of restore point {id}"), &kind)?;
                let doc: String = r.try_get("doc")?;
                let what = || format!("restore point {id}");
                let (snapshots, backups) = match kind {
                    PointKind::Backup => (Vec::new(), from_doc(what, &doc)?),
                    _ => (from_doc(what, &doc)?, Vec::new()),
                };
                Ok(RestorePoint {
                    kind,
                    snapshots,
                    backups,
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

    /// Marks a restore point expired (its snapshots are deleted, or its backups forgotten).
    pub async fn expire_point(&self, id: &str) -> Result<(), ApplianceError> {
        sqlx::query("UPDATE restore_points SET expired_at = $1 WHERE id = $2")
            .bind(now_ms())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
