//! The engine's state store in the database: each engine session's journal, owned through a
//! lease, and the catalog of snapshot restore points. With it, an appliance that takes over the
//! sessions of one that died recovers them from the database alone, whatever machine it runs on.
//!
//! A journal's lease is a row's `owner` and `lease_until`: every entry recorded renews it, and so
//! does the scheduler's tick for the sessions its appliance runs ([`Db::renew_journals`]), so a
//! step that takes hours keeps it. An entry is recorded only while its writer still holds the
//! lease (the insert and the renewal are one transaction), so a process that stalled past its
//! lease and was taken over cannot write into a journal another is recovering. Dropping a
//! journal releases its lease.
//!
//! The engine is synchronous and calls these from its blocking threads; each call blocks on the
//! appliance's runtime.

use std::sync::Arc;

use bulwark_engine::journal::Entry;
use bulwark_engine::{EngineError, JournalHandle, SessionId, SnapshotPoint, StateStore};
use bulwark_model::{KeyRef, SnapshotId};
use sqlx::Row;

use super::{now_ms, Db};
use crate::ApplianceError;

/// Journals and the catalog in the appliance's database, written as `owner`.
pub struct DbStore {
    db: Db,
    runtime: tokio::runtime::Handle,
    owner: String,
    lease_ms: i64,
}

impl DbStore {
    /// The store of `db` for the appliance `owner`, whose leases last `lease_ms`.
    pub fn new(db: Db, runtime: tokio::runtime::Handle, owner: &str, lease_ms: i64) -> Arc<DbStore> {
        Arc::new(DbStore {
            db,
            runtime,
            owner: owner.to_owned(),
            lease_ms,
        })
    }

    fn run<T>(
        &self,
        what: impl FnOnce() -> String,
        f: impl std::future::Future<Output = Result<T, ApplianceError>>,
    ) -> Result<T, EngineError> {
        self.runtime.block_on(f).map_err(|e| EngineError::Journal {
            path: what(),
            message: e.to_string(),
        })
    }

    fn handle(self: &Arc<Self>, session: &SessionId, next: i64) -> Box<dyn JournalHandle> {
        Box::new(DbJournal {
            store: Arc::clone(self),
            session: session.clone(),
            next,
        })
    }
}

fn location(session: &SessionId) -> String {
    format!("the journal of engine session {session} in the appliance database")
}

const CATALOG: &str = "the catalog of snapshot restore points in the appliance database";

impl Db {
    /// Renews the leases of the open journals `owner` holds, until `lease_until`.
    pub async fn renew_journals(&self, owner: &str, lease_until: i64) -> Result<(), ApplianceError> {
        sqlx::query("UPDATE journals SET lease_until = $1 WHERE owner = $2 AND closed = 0")
            .bind(lease_until)
            .bind(owner)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn entries_of(&self, session: &str) -> Result<Vec<(i64, String)>, ApplianceError> {
        let rows = sqlx::query("SELECT seq, doc FROM journal_entries WHERE session = $1 ORDER BY seq")
            .bind(session)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("seq")?, r.try_get("doc")?)))
            .collect()
    }
}

/// A wrapper that makes an `Arc<DbStore>` the engine's store (the handles it gives out keep
/// the store alive).
pub struct Journals(pub Arc<DbStore>);

impl StateStore for Journals {
    fn begin(&self, session: &SessionId) -> Result<Box<dyn JournalHandle>, EngineError> {
        let store = &self.0;
        store.run(|| location(session), async {
            sqlx::query("INSERT INTO journals (session, owner, lease_until, closed) VALUES ($1, $2, $3, 0)")
                .bind(session.to_string())
                .bind(&store.owner)
                .bind(now_ms() + store.lease_ms)
                .execute(&store.db.pool)
                .await?;
            Ok(())
        })?;
        Ok(store.handle(session, 1))
    }

    fn unfinished(&self) -> Result<Vec<SessionId>, EngineError> {
        let store = &self.0;
        let ids: Vec<String> = store.run(|| "the journals in the appliance database".into(), async {
            let rows = sqlx::query("SELECT session FROM journals WHERE closed = 0 ORDER BY session")
                .fetch_all(&store.db.pool)
                .await?;
            rows.iter()
                .map(|r| Ok(r.try_get::<String, _>("session")?))
                .collect()
        })?;
        ids.iter()
            .map(|id| {
                id.parse().map_err(|_| EngineError::Journal {
                    path: "the journals in the appliance database".into(),
                    message: format!("{id:?} is not a session id; delete its row from the journals table"),
                })
            })
            .collect()
    }

    fn take_over(&self, session: &SessionId) -> Result<Option<Box<dyn JournalHandle>>, EngineError> {
        let store = &self.0;
        let now = now_ms();
        let (taken, next) = store.run(|| location(session), async {
            let taken = sqlx::query(
                "UPDATE journals SET owner = $1, lease_until = $2 \
                     WHERE session = $3 AND closed = 0 AND lease_until < $4",
            )
            .bind(&store.owner)
            .bind(now + store.lease_ms)
            .bind(session.to_string())
            .bind(now)
            .execute(&store.db.pool)
            .await?
            .rows_affected()
                == 1;
            if !taken {
                return Ok((false, 0));
            }
            let last = store
                .db
                .entries_of(&session.to_string())
                .await?
                .last()
                .map_or(0, |e| e.0);
            Ok((true, last + 1))
        })?;
        Ok(taken.then(|| store.handle(session, next)))
    }

    fn add_points(&self, points: &[SnapshotPoint]) -> Result<(), EngineError> {
        let store = &self.0;
        store.run(|| CATALOG.into(), async {
            let mut tx = store.db.pool.begin().await?;
            let at = now_ms();
            for (position, p) in points.iter().enumerate() {
                sqlx::query(
                    "INSERT INTO catalog (snapshot, volume, account, region, session, added_at, position, key_arn, \
                         instance_record) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(p.snapshot.to_string())
                .bind(p.volume.to_string())
                .bind(p.account.to_string())
                .bind(p.region.to_string())
                .bind(&p.session)
                .bind(at)
                .bind(position as i64)
                .bind(p.key.as_ref().map(KeyRef::arn))
                .bind(p.instance.as_ref().and_then(|r| serde_json::to_string(r).ok()))
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    fn remove_points(&self, snapshots: &[SnapshotId]) -> Result<(), EngineError> {
        let store = &self.0;
        store.run(|| CATALOG.into(), async {
            for s in snapshots {
                sqlx::query("DELETE FROM catalog WHERE snapshot = $1")
                    .bind(s.to_string())
                    .execute(&store.db.pool)
                    .await?;
            }
            Ok(())
        })
    }

    fn points(&self) -> Result<Vec<SnapshotPoint>, EngineError> {
        let store = &self.0;
        let rows: Vec<([String; 5], Option<String>, Option<String>)> =
            store.run(|| CATALOG.into(), async {
                let rows = sqlx::query(
                "SELECT snapshot, volume, account, region, session, key_arn, instance_record FROM catalog \
                 ORDER BY added_at, position",
            )
            .fetch_all(&store.db.pool)
            .await?;
                rows.iter()
                    .map(|r| {
                        Ok((
                            [
                                r.try_get("snapshot")?,
                                r.try_get("volume")?,
                                r.try_get("account")?,
                                r.try_get("region")?,
                                r.try_get("session")?,
                            ],
                            r.try_get("key_arn")?,
                            r.try_get("instance_record")?,
                        ))
                    })
                    .collect()
            })?;
        rows.into_iter()
            .map(|([snapshot, volume, account, region, session], key, instance)| {
                let damaged = |e: String| EngineError::Journal {
                    path: CATALOG.into(),
                    message: format!("the row of snapshot {snapshot:?} is damaged: {e}"),
                };
                Ok(SnapshotPoint {
                    snapshot: snapshot.parse().map_err(|e| damaged(format!("{e}")))?,
                    volume: volume.parse().map_err(|e| damaged(format!("{e}")))?,
                    account: account.parse().map_err(|e| damaged(format!("{e}")))?,
                    region: region.parse().map_err(|e| damaged(format!("{e}")))?,
                    key: key
                        .map(|k| k.parse().map_err(|e| damaged(format!("{e}"))))
                        .transpose()?,
                    session,
                    instance: instance
                        .map(|r| {
                            serde_json::from_str(&r).map_err(|e| damaged(format!("its instance record: {e}")))
                        })
                        .transpose()?,
                })
            })
            .collect()
    }
}

/// One journal, held with its lease.
struct DbJournal {
    store: Arc<DbStore>,
    session: SessionId,
    /// The next entry's number.
    next: i64,
}

impl JournalHandle for DbJournal {
    fn session(&self) -> &SessionId {
        &self.session
    }

    fn record(&mut self, entry: &Entry) -> Result<(), EngineError> {
        let store = &self.store;
        let seq = self.next;
        let doc = serde_json::to_string(entry).map_err(|e| EngineError::Journal {
            path: location(&self.session),
            message: e.to_string(),
        })?;
        let closed = matches!(entry, Entry::Closed);
        let session = self.session.to_string();
        let held = store.run(|| location(&self.session), async {
            let mut tx = store.db.pool.begin().await?;
            let held = sqlx::query(
                "UPDATE journals SET lease_until = $1, closed = $2 WHERE session = $3 AND owner = $4",
            )
            .bind(now_ms() + store.lease_ms)
            .bind(i64::from(closed))
            .bind(&session)
            .bind(&store.owner)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if held {
                sqlx::query("INSERT INTO journal_entries (session, seq, doc) VALUES ($1, $2, $3)")
                    .bind(&session)
                    .bind(seq)
                    .bind(&doc)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(held)
        })?;
        if !held {
            return Err(EngineError::Journal {
                path: location(&self.session),
                message: "another appliance took this journal over (this one stalled past its lease); \
                          it recovers the session"
                    .into(),
            });
        }
        self.next = seq + 1;
        Ok(())
    }

    fn entries(&self) -> Result<Vec<Entry>, EngineError> {
        let session = self.session.to_string();
        let rows = self
            .store
            .run(|| location(&self.session), self.store.db.entries_of(&session))?;
        rows.into_iter()
            .map(|(seq, doc)| {
                serde_json::from_str(&doc).map_err(|e| EngineError::Journal {
                    path: location(&self.session),
                    message: format!(
                        "entry {seq} is damaged ({e}); what it recorded may be left in the cloud: look for \
                         resources tagged bulwark:session={} and remove them, then delete the journal's rows",
                        self.session
                    ),
                })
            })
            .collect()
    }

    fn location(&self) -> String {
        location(&self.session)
    }
}

impl Drop for DbJournal {
    /// Releases the lease, so that a journal left open (its session could not clean up) is
    /// recovered at the next look rather than a lease later.
    fn drop(&mut self) {
        let store = &self.store;
        let session = self.session.to_string();
        let released = store.run(|| location(&self.session), async {
            sqlx::query("UPDATE journals SET lease_until = 0 WHERE session = $1 AND owner = $2")
                .bind(&session)
                .bind(&store.owner)
                .execute(&store.db.pool)
                .await?;
            Ok(())
        });
        if let Err(e) = released {
            tracing::warn!(error = %e, "a journal's lease could not be released; it lapses by itself");
        }
    }
}
