//! Sessions: every run (policy, retention, discovery, restore, health check) with its items (one per instance), its
//! log and its progress. A running session is owned by one appliance through a lease it
//! renews; a session whose lease lapsed belongs to an appliance that died.

use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::ToSchema;

use super::{new_id, now_ms, stored_name, Db};
use crate::ApplianceError;

/// How a session or one of its items stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// An item not started yet.
    Pending,
    /// In progress.
    Running,
    /// Done.
    Succeeded,
    /// Done, with something to look at (an item skipped, a log line of level warn).
    Warning,
    /// Failed: the message says which step, the AWS error and what to change.
    Failed,
    /// Cancelled: what it had created was removed.
    Canceled,
    /// An item another policy of higher priority processes.
    Skipped,
}

impl Status {
    /// The status's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Running => "running",
            Status::Succeeded => "succeeded",
            Status::Warning => "warning",
            Status::Failed => "failed",
            Status::Canceled => "canceled",
            Status::Skipped => "skipped",
        }
    }

    fn parse(s: &str) -> Result<Status, ApplianceError> {
        stored_name("session status", s)
    }
}

/// What a session does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// A policy's run: snapshots, replicas.
    Policy,
    /// Deletes the restore points a policy no longer keeps.
    Retention,
    /// Discovers the estate.
    Discovery,
    /// Restores an instance.
    Restore,
    /// Maintains the repository: prunes what no restore point needs, then verifies it.
    HealthCheck,
}

impl Kind {
    /// The kind's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Policy => "policy",
            Kind::Retention => "retention",
            Kind::Discovery => "discovery",
            Kind::Restore => "restore",
            Kind::HealthCheck => "health-check",
        }
    }
}

/// A session, as listed.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct SessionRecord {
    /// Its id.
    pub id: String,
    /// What it does.
    pub kind: Kind,
    /// The policy it runs, if any.
    pub policy: Option<String>,
    /// How it stands.
    pub status: Status,
    /// When it started (ms since the epoch).
    pub started_at: i64,
    /// When it ended, if it has.
    pub ended_at: Option<i64>,
    /// Its outcome in a sentence, once ended.
    pub message: Option<String>,
    /// Bytes moved so far.
    pub bytes_done: i64,
    /// Bytes to move in all, when known.
    pub bytes_total: i64,
    /// The appliance that runs (or ran) it.
    pub owner: String,
}

/// One instance's part of a session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct Item {
    /// Its position in the session (from 0).
    pub position: i64,
    /// The instance.
    pub instance: String,
    /// The operation (`snapshot`, `replicate`, `expire`, `discover`).
    pub operation: String,
    /// How it stands.
    pub status: Status,
    /// What happened.
    pub message: Option<String>,
    /// The error's stable code, when it failed.
    pub code: Option<String>,
    /// What to change, when it failed.
    pub remedy: Option<String>,
}

/// A line of a session's log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct LogLine {
    /// Its number in the session (from 1).
    pub seq: i64,
    /// When (ms since the epoch).
    pub at: i64,
    /// `info`, `warn` or `error`.
    pub level: String,
    /// What happened.
    pub message: String,
}

/// Which sessions to list.
#[derive(Clone, Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SessionFilter {
    /// Only of this kind.
    pub kind: Option<Kind>,
    /// Only in this status.
    pub status: Option<Status>,
    /// Only of this policy (its id).
    pub policy: Option<String>,
    /// At most this many (default 50, at most 500).
    pub limit: Option<u32>,
    /// Skipping this many, newest first.
    pub offset: Option<u32>,
}

const SESSION_COLUMNS: &str =
    "id, kind, policy, status, started_at, ended_at, message, bytes_done, bytes_total, owner";

impl Db {
    /// Starts a session with its items, owned by `owner` until `lease_until`.
    pub async fn create_session(
        &self,
        kind: Kind,
        policy: Option<&str>,
        items: &[(String, String)],
        owner: &str,
        lease_until: i64,
    ) -> Result<SessionRecord, ApplianceError> {
        let record = SessionRecord {
            id: new_id("ses"),
            kind,
            policy: policy.map(str::to_owned),
            status: Status::Running,
            started_at: now_ms(),
            ended_at: None,
            message: None,
            bytes_done: 0,
            bytes_total: 0,
            owner: owner.to_owned(),
        };
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO sessions (id, kind, policy, status, started_at, ended_at, message, bytes_done, bytes_total, owner, lease_until) \
             VALUES ($1, $2, $3, $4, $5, NULL, NULL, 0, 0, $6, $7)",
        )
        .bind(&record.id)
        .bind(kind.as_str())
        .bind(&record.policy)
        .bind(Status::Running.as_str())
        .bind(record.started_at)
        .bind(owner)
        .bind(lease_until)
        .execute(&mut *tx)
        .await?;
        for (position, (instance, operation)) in items.iter().enumerate() {
            sqlx::query(
                "INSERT INTO session_items (session, position, instance, operation, status, message, code, remedy) \
                 VALUES ($1, $2, $3, $4, $5, NULL, NULL, NULL)",
            )
            .bind(&record.id)
            .bind(position as i64)
            .bind(instance)
            .bind(operation)
            .bind(Status::Pending.as_str())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(record)
    }

    /// Sets how an item stands.
    pub async fn set_item(
        &self,
        session: &str,
        position: usize,
        status: Status,
        message: Option<&str>,
        code: Option<&str>,
        remedy: Option<&str>,
    ) -> Result<(), ApplianceError> {
        sqlx::query("UPDATE session_items SET status = $1, message = $2, code = $3, remedy = $4 WHERE session = $5 AND position = $6")
            .bind(status.as_str())
            .bind(message)
            .bind(code)
            .bind(remedy)
            .bind(session)
            .bind(position as i64)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Appends a log line (`seq` counts from 1 per session).
    pub async fn log(
        &self,
        session: &str,
        seq: i64,
        level: &str,
        message: &str,
    ) -> Result<(), ApplianceError> {
        sqlx::query("INSERT INTO session_log (session, seq, at, level, message) VALUES ($1, $2, $3, $4, $5)")
            .bind(session)
            .bind(seq)
            .bind(now_ms())
            .bind(level)
            .bind(message)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records progress and renews the owner's lease.
    pub async fn progress(
        &self,
        session: &str,
        done: i64,
        total: i64,
        lease_until: i64,
    ) -> Result<(), ApplianceError> {
        sqlx::query("UPDATE sessions SET bytes_done = $1, bytes_total = $2, lease_until = $3 WHERE id = $4")
            .bind(done)
            .bind(total)
            .bind(lease_until)
            .bind(session)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Ends a session.
    pub async fn finish_session(
        &self,
        session: &str,
        status: Status,
        message: &str,
    ) -> Result<(), ApplianceError> {
        sqlx::query("UPDATE sessions SET status = $1, message = $2, ended_at = $3 WHERE id = $4")
            .bind(status.as_str())
            .bind(message)
            .bind(now_ms())
            .bind(session)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Sessions, newest first.
    pub async fn sessions(&self, filter: &SessionFilter) -> Result<Vec<SessionRecord>, ApplianceError> {
        // An absent filter binds NULL, which matches every row.
        let sql = format!(
            "SELECT {SESSION_COLUMNS} FROM sessions \
             WHERE ($1 IS NULL OR kind = $1) AND ($2 IS NULL OR status = $2) AND ($3 IS NULL OR policy = $3) \
             ORDER BY started_at DESC, id DESC LIMIT $4 OFFSET $5"
        );
        let rows = sqlx::query(&sql)
            .bind(filter.kind.map(Kind::as_str))
            .bind(filter.status.map(Status::as_str))
            .bind(filter.policy.as_deref())
            .bind(i64::from(filter.limit.unwrap_or(50).clamp(1, 500)))
            .bind(i64::from(filter.offset.unwrap_or(0)))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(session).collect()
    }

    /// One session.
    pub async fn session(&self, id: &str) -> Result<Option<SessionRecord>, ApplianceError> {
        let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id = $1");
        let row = sqlx::query(&sql).bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(session).transpose()
    }

    /// A session's items, in order.
    pub async fn items(&self, session: &str) -> Result<Vec<Item>, ApplianceError> {
        let rows = sqlx::query(
            "SELECT position, instance, operation, status, message, code, remedy FROM session_items WHERE session = $1 ORDER BY position",
        )
        .bind(session)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let status: String = r.try_get("status")?;
                Ok(Item {
                    position: r.try_get("position")?,
                    instance: r.try_get("instance")?,
                    operation: r.try_get("operation")?,
                    status: Status::parse(&status)?,
                    message: r.try_get("message")?,
                    code: r.try_get("code")?,
                    remedy: r.try_get("remedy")?,
                })
            })
            .collect()
    }

    /// A session's log lines after `after` (at most `limit`).
    pub async fn log_lines(
        &self,
        session: &str,
        after: i64,
        limit: u32,
    ) -> Result<Vec<LogLine>, ApplianceError> {
        let rows = sqlx::query("SELECT seq, at, level, message FROM session_log WHERE session = $1 AND seq > $2 ORDER BY seq LIMIT $3")
            .bind(session)
            .bind(after)
            .bind(i64::from(limit.clamp(1, 10_000)))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(LogLine {
                    seq: r.try_get("seq")?,
                    at: r.try_get("at")?,
                    level: r.try_get("level")?,
                    message: r.try_get("message")?,
                })
            })
            .collect()
    }

    /// The number of the last log line of a session (0 if none).
    pub async fn last_log_seq(&self, session: &str) -> Result<i64, ApplianceError> {
        let row = sqlx::query("SELECT MAX(seq) AS seq FROM session_log WHERE session = $1")
            .bind(session)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<Option<i64>, _>("seq")?.unwrap_or(0))
    }

    /// Whether a session of `policy` is running (on any appliance).
    pub async fn policy_running(&self, policy: &str) -> Result<bool, ApplianceError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM sessions WHERE policy = $1 AND status = $2")
            .bind(policy)
            .bind(Status::Running.as_str())
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>("n")? > 0)
    }

    /// Whether any session of `kind` is running, on any appliance.
    pub async fn kind_running(&self, kind: Kind) -> Result<bool, ApplianceError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM sessions WHERE kind = $1 AND status = $2")
            .bind(kind.as_str())
            .bind(Status::Running.as_str())
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>("n")? > 0)
    }

    /// Renews the leases of `sessions` (those this appliance runs now).
    pub async fn renew_leases(&self, sessions: &[String], lease_until: i64) -> Result<(), ApplianceError> {
        for id in sessions {
            sqlx::query("UPDATE sessions SET lease_until = $1 WHERE id = $2 AND status = $3")
                .bind(lease_until)
                .bind(id)
                .bind(Status::Running.as_str())
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// How many sessions there are of each kind and status.
    pub async fn session_counts(&self) -> Result<Vec<(String, String, i64)>, ApplianceError> {
        let rows = sqlx::query(
            "SELECT kind, status, COUNT(*) AS n FROM sessions GROUP BY kind, status ORDER BY kind, status",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("kind")?, r.try_get("status")?, r.try_get("n")?)))
            .collect()
    }

    /// Bytes moved by every session.
    pub async fn bytes_moved(&self) -> Result<i64, ApplianceError> {
        let row = sqlx::query("SELECT CAST(SUM(bytes_done) AS BIGINT) AS n FROM sessions")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<Option<i64>, _>("n")?.unwrap_or(0))
    }

    /// When each policy's last run that succeeded (or ended with warnings) ended.
    pub async fn last_successes(&self) -> Result<Vec<(String, i64)>, ApplianceError> {
        let rows = sqlx::query(
            "SELECT policy, MAX(ended_at) AS at FROM sessions WHERE kind = $1 AND (status = $2 OR status = $3) AND policy IS NOT NULL GROUP BY policy",
        )
        .bind(Kind::Policy.as_str())
        .bind(Status::Succeeded.as_str())
        .bind(Status::Warning.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("policy")?,
                    r.try_get::<Option<i64>, _>("at")?.unwrap_or(0),
                ))
            })
            .collect()
    }

    /// Takes over the running sessions whose owner's lease lapsed before `now`: answers their
    /// ids, now owned by `owner` (each claimed by exactly one appliance).
    pub async fn take_over_lapsed(
        &self,
        now: i64,
        owner: &str,
        lease_until: i64,
    ) -> Result<Vec<String>, ApplianceError> {
        // Never its own: those it renews while it runs them.
        let rows = sqlx::query(
            "SELECT id, lease_until FROM sessions WHERE status = $1 AND lease_until < $2 AND owner <> $3",
        )
        .bind(Status::Running.as_str())
        .bind(now)
        .bind(owner)
        .fetch_all(&self.pool)
        .await?;
        let mut taken = Vec::new();
        for r in rows {
            let id: String = r.try_get("id")?;
            let lapsed: i64 = r.try_get("lease_until")?;
            let done = sqlx::query("UPDATE sessions SET owner = $1, lease_until = $2 WHERE id = $3 AND status = $4 AND lease_until = $5")
                .bind(owner)
                .bind(lease_until)
                .bind(&id)
                .bind(Status::Running.as_str())
                .bind(lapsed)
                .execute(&self.pool)
                .await?;
            if done.rows_affected() == 1 {
                taken.push(id);
            }
        }
        Ok(taken)
    }
}

fn session(r: &sqlx::any::AnyRow) -> Result<SessionRecord, ApplianceError> {
    let kind: String = r.try_get("kind")?;
    let status: String = r.try_get("status")?;
    Ok(SessionRecord {
        id: r.try_get("id")?,
        kind: stored_name("session kind", &kind)?,
        policy: r.try_get("policy")?,
        status: Status::parse(&status)?,
        started_at: r.try_get("started_at")?,
        ended_at: r.try_get("ended_at")?,
        message: r.try_get("message")?,
        bytes_done: r.try_get("bytes_done")?,
        bytes_total: r.try_get("bytes_total")?,
        owner: r.try_get("owner")?,
    })
}
