//! Retention: after each run of a policy, the restore points it no longer keeps are removed in
//! a session of their own: expired snapshots and replicas are deleted (an engine session each),
//! expired backups are forgotten in the repository (their data goes at the next health
//! check's prune). The last good restore point of an instance is never removed, whatever the
//! counts say.

use std::collections::BTreeMap;
use std::sync::Arc;

use bulwark_engine::Engine;
use bulwark_model::InstanceId;
use bulwark_plan::{ExpiredSnapshot, Operation};
use chrono::{DateTime, Utc};

use crate::db::points::{PointKind, PointQuery, RestorePoint};
use crate::db::policies::PolicyRecord;
use crate::db::sessions::{Kind, SessionRecord, Status};
use crate::policy::Policy;
use crate::runner::Run;
use crate::{Appliance, ApplianceError};

impl Appliance {
    /// Starts a retention session for a policy if any of its restore points has expired.
    pub async fn run_retention(
        self: &Arc<Self>,
        policy_id: &str,
    ) -> Result<Option<SessionRecord>, ApplianceError> {
        let Some(record) = self.db.policy(policy_id).await? else {
            return Ok(None);
        };
        let expired = self.expired_points(&record).await?;
        if expired.is_empty() {
            return Ok(None);
        }
        let (estate, _) = self.discovered_estate().await?;
        let items: Vec<(String, String)> = expired
            .iter()
            .map(|p| {
                let what = match p.kind {
                    PointKind::Backup => "forget",
                    _ => "expire",
                };
                (p.instance.clone(), what.to_owned())
            })
            .collect();
        let name = record.policy.name.clone();
        self.start(Kind::Retention, Some(policy_id), &items, move |run| {
            let engine = run.engine(estate);
            let mut outcomes = Vec::new();
            for (position, point) in expired.iter().enumerate() {
                outcomes.push(expire(&run, &engine, position, point));
            }
            run.finish(&outcomes, &format!("retention of policy {name}"));
        })
        .await
        .map(Some)
    }
}

impl Appliance {
    /// The restore points of `policy` that its retention no longer keeps, now.
    pub async fn expired_points(&self, policy: &PolicyRecord) -> Result<Vec<RestorePoint>, ApplianceError> {
        let points = self
            .db
            .points(PointQuery {
                instance: None,
                policy: Some(&policy.id),
                expired: false,
            })
            .await?;
        Ok(expired(&policy.policy, &points, Utc::now()))
    }
}

/// Removes one expired restore point: deletes its snapshots, or forgets its backups.
fn expire(run: &Arc<Run>, engine: &Engine, position: usize, point: &RestorePoint) -> Status {
    if run.cancelled() {
        run.item(
            position,
            Status::Canceled,
            "the session was cancelled before this restore point",
            None,
        );
        return Status::Canceled;
    }
    if point.kind == PointKind::Backup {
        return forget(run, engine, position, point);
    }
    let Ok(instance) = point.instance.parse::<InstanceId>() else {
        run.item(
            position,
            Status::Failed,
            &format!("{:?} is not an instance id", point.instance),
            None,
        );
        return Status::Failed;
    };
    let operation = Operation::Expire {
        instance,
        snapshots: point
            .snapshots
            .iter()
            .map(|s| ExpiredSnapshot {
                id: s.snapshot.clone(),
                volume: s.volume.clone(),
                account: s.account.clone(),
                region: s.region.clone(),
            })
            .collect(),
    };
    match run.engine_session(engine, &operation) {
        Ok(_) => {
            run.db(run.app.db.expire_point(&point.id));
            run.item(
                position,
                Status::Succeeded,
                &format!("restore point {} deleted", point.id),
                None,
            );
            Status::Succeeded
        }
        Err(e) => failed(run, position, point, &e),
    }
}

/// Forgets an expired backup's restore points in the repository. One that Object Lock still
/// retains keeps the whole restore point until a later retention session.
fn forget(run: &Arc<Run>, engine: &Engine, position: usize, point: &RestorePoint) -> Status {
    let ids: Vec<String> = point.backups.iter().map(|b| b.point.clone()).collect();
    match engine.forget_points(&ids) {
        Ok(retained) => match retained.iter().flatten().max() {
            None => {
                run.db(run.app.db.expire_point(&point.id));
                run.item(
                    position,
                    Status::Succeeded,
                    &format!(
                        "restore point {} forgotten; the next health check frees its space",
                        point.id
                    ),
                    None,
                );
                Status::Succeeded
            }
            Some(until) => {
                let message = format!(
                    "restore point {} is retained by Object Lock until {}: kept until then, retention forgets it after",
                    point.id,
                    until.to_rfc3339()
                );
                run.log("warn", &message);
                run.item(position, Status::Skipped, &message, None);
                Status::Skipped
            }
        },
        Err(e) => failed(run, position, point, &e),
    }
}

/// Fails the item of `point` with the engine's error.
fn failed(run: &Run, position: usize, point: &RestorePoint, e: &bulwark_engine::EngineError) -> Status {
    run.item(
        position,
        Status::Failed,
        &format!("restore point {}: {e}", point.id),
        Some(e),
    );
    Status::Failed
}

/// The restore points of a policy past its retention at `now`: per instance and kind (and, for
/// replicas, per target), the newest `keep` stay; backups by the rules of the policy's
/// `backups` (those of `bulwark image forget`). The newest point of each group always stays,
/// whatever the counts say: it is the last good one. Points of a kind or target the policy no
/// longer names are kept (nothing says how many to keep).
pub fn expired(policy: &Policy, points: &[RestorePoint], now: DateTime<Utc>) -> Vec<RestorePoint> {
    let live = points.iter().filter(|p| p.expired_at.is_none());
    let (backups, snapshots): (Vec<&RestorePoint>, Vec<&RestorePoint>) =
        live.partition(|p| p.kind == PointKind::Backup);
    let mut out = expired_backups(policy, &backups, now);
    let mut groups: BTreeMap<(String, PointKind, String, String), Vec<&RestorePoint>> = BTreeMap::new();
    for p in snapshots {
        groups
            .entry((p.instance.clone(), p.kind, p.account.clone(), p.region.clone()))
            .or_default()
            .push(p);
    }
    for ((_, kind, account, region), mut group) in groups {
        let keep = match kind {
            PointKind::Snapshot => policy.snapshots_kept(),
            _ => policy
                .replicas
                .iter()
                .find(|r| r.account.as_str() == account && r.region.as_str() == region)
                .map(|r| r.keep),
        };
        let Some(keep) = keep else { continue };
        group.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| b.id.cmp(&a.id)));
        out.extend(group.into_iter().skip(keep.max(1) as usize).cloned());
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

/// The backups the policy's rules forget: each instance's restore points are one group, as
/// a volume's are for `bulwark image forget`.
fn expired_backups(policy: &Policy, points: &[&RestorePoint], now: DateTime<Utc>) -> Vec<RestorePoint> {
    let Some(backups) = &policy.backups else {
        return Vec::new();
    };
    let rules = backups.retention();
    let infos: Vec<bulwark_repo::PointInfo> = points
        .iter()
        .map(|p| bulwark_repo::PointInfo {
            id: p.id.clone(),
            volume_id: p.instance.clone(),
            time: DateTime::from_timestamp_millis(p.created_at).unwrap_or_default(),
        })
        .collect();
    // An empty rule set (an old policy; validation refuses new ones) forgets nothing.
    let Ok(decisions) = bulwark_repo::apply_retention(&infos, &rules, now) else {
        return Vec::new();
    };
    // The bounds of the policy come before its rules: a point younger than the minimum stays,
    // one older than the maximum goes.
    let age = |p: &RestorePoint| now.timestamp_millis().saturating_sub(p.created_at);
    let days = |n: u32| i64::from(n) * 86_400_000;
    points
        .iter()
        .zip(decisions)
        .filter(|(p, d)| {
            let too_old = backups.max_retention_days.is_some_and(|n| age(p) > days(n));
            let too_young = backups.min_retention_days.is_some_and(|n| age(p) < days(n));
            too_old || (!d.keep && !too_young)
        })
        .map(|(p, _)| (*p).clone())
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::policy::{Backups, Keep, Replica, Selection};

    const DAY: i64 = 86_400_000;

    fn point(id: &str, kind: PointKind, region: &str, at: i64) -> RestorePoint {
        RestorePoint {
            id: id.into(),
            instance: "i-00000000000000001".into(),
            policy: Some("p".into()),
            kind,
            account: "222222222222".into(),
            region: region.into(),
            created_at: at,
            session: "s".into(),
            snapshots: Vec::new(),
            backups: Vec::new(),
            expired_at: None,
        }
    }

    fn policy(snapshots: Option<u32>, replica_keep: Option<u32>) -> Policy {
        Policy {
            name: "p".into(),
            priority: 0,
            enabled: true,
            selection: Selection::default(),
            schedule: None,
            snapshots: snapshots.map(|keep| Keep { keep }),
            replicas: replica_keep
                .map(|keep| Replica {
                    account: "222222222222".parse().unwrap(),
                    region: "eu-west-1".parse().unwrap(),
                    key: None,
                    keep,
                })
                .into_iter()
                .collect(),
            backups: None,
            webhook: None,
        }
    }

    fn ids(points: Vec<RestorePoint>) -> Vec<String> {
        points.into_iter().map(|p| p.id).collect()
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp_millis(400 * DAY).unwrap()
    }

    #[test]
    fn the_newest_are_kept_per_kind_and_target() {
        let points = vec![
            point("s1", PointKind::Snapshot, "us-east-1", 1),
            point("s2", PointKind::Snapshot, "us-east-1", 2),
            point("s3", PointKind::Snapshot, "us-east-1", 3),
            point("r1", PointKind::Replica, "eu-west-1", 1),
            point("r2", PointKind::Replica, "eu-west-1", 2),
        ];
        assert_eq!(
            ids(expired(&policy(Some(2), Some(1)), &points, now())),
            ["r1", "s1"]
        );
        // Without snapshots of its own, the snapshots are kept as long as the replicas.
        assert_eq!(ids(expired(&policy(None, Some(2)), &points, now())), ["s1"]);
    }

    #[test]
    fn the_last_good_point_is_never_expired() {
        let points = vec![point("s1", PointKind::Snapshot, "us-east-1", 1)];
        // Whatever the counts say (0 never passes validation, but a stored policy may be old).
        assert!(expired(&policy(Some(0), None), &points, now()).is_empty());
        // Replicas to a target the policy no longer names stay.
        let replica = vec![
            point("r1", PointKind::Replica, "ap-south-1", 1),
            point("r2", PointKind::Replica, "ap-south-1", 2),
        ];
        assert!(expired(&policy(Some(1), Some(1)), &replica, now()).is_empty());
    }

    #[test]
    fn backups_follow_the_calendar_rules_per_instance() {
        let mut p = policy(Some(1), None);
        p.backups = Some(Backups {
            workers: bulwark_plan::Placement::NoWorker,
            keep_last: 1,
            keep_daily: 2,
            keep_weekly: 0,
            keep_monthly: 0,
            keep_yearly: 0,
            file_index: false,
            min_retention_days: None,
            max_retention_days: None,
        });
        // Two a day on days 10, 11 and 12: the newest of days 12 and 11 stay.
        let mut points = Vec::new();
        for (i, at) in [
            10 * DAY,
            10 * DAY + 1,
            11 * DAY,
            11 * DAY + 1,
            12 * DAY,
            12 * DAY + 1,
        ]
        .into_iter()
        .enumerate()
        {
            points.push(point(&format!("b{i}"), PointKind::Backup, "us-east-1", at));
        }
        let mut other = point("o1", PointKind::Backup, "us-east-1", DAY);
        other.instance = "i-00000000000000002".into();
        points.push(other);
        assert_eq!(
            ids(expired(&p, &points, now())),
            ["b0", "b1", "b2", "b4"],
            "each instance keeps its own newest"
        );
        // Backups are not counted with the snapshots, nor the snapshots with them.
        points.push(point("s1", PointKind::Snapshot, "us-east-1", DAY));
        assert!(!ids(expired(&p, &points, now())).contains(&"s1".to_owned()));
        // A policy that no longer makes backups keeps those it made.
        p.backups = None;
        assert!(ids(expired(&p, &points, now())).is_empty());
    }

    /// Vault-Lock-style bounds: the minimum keeps what the rules would forget, the maximum
    /// forgets what they would keep, the newest point too.
    #[test]
    fn minimum_and_maximum_retention_come_before_the_rules() {
        let mut p = policy(None, None);
        let mut backups = Backups {
            workers: bulwark_plan::Placement::NoWorker,
            keep_last: 1,
            keep_daily: 0,
            keep_weekly: 0,
            keep_monthly: 0,
            keep_yearly: 0,
            file_index: false,
            min_retention_days: Some(7),
            max_retention_days: None,
        };
        p.backups = Some(backups.clone());
        // One a day over the last ten days (now is day 400).
        let points: Vec<RestorePoint> = (0..10)
            .map(|d| point(&format!("d{d}"), PointKind::Backup, "us-east-1", (390 + d) * DAY))
            .collect();
        // keep_last 1 alone forgets nine; the minimum of 7 days keeps those of days 394 to 399
        // (day 393's is exactly 7 days old).
        assert_eq!(ids(expired(&p, &points, now())), ["d0", "d1", "d2", "d3"]);
        backups.keep_last = 100;
        backups.min_retention_days = None;
        backups.max_retention_days = Some(3);
        p.backups = Some(backups.clone());
        // keep_last 100 keeps all; the maximum of 3 days forgets what is older.
        assert_eq!(
            ids(expired(&p, &points, now())),
            ["d0", "d1", "d2", "d3", "d4", "d5", "d6"]
        );
        // The newest too, once it is older than the maximum.
        let old = vec![point("old", PointKind::Backup, "us-east-1", 300 * DAY)];
        assert_eq!(ids(expired(&p, &old, now())), ["old"]);
        // Bounds that contradict each other are refused.
        let estate = bulwark_model::Estate::parse(
            "test.toml",
            "[appliance]\naccount = \"111111111111\"\nworker_deployment_role = \"arn:aws:iam::111111111111:role/Deploy\"\n",
        )
        .unwrap();
        backups.min_retention_days = Some(10);
        p.backups = Some(backups.clone());
        let problems = p.validate(&estate);
        assert!(
            problems.iter().any(|x| x.at == "backups.min_retention_days"),
            "{problems:?}"
        );
        backups.max_retention_days = Some(0);
        backups.min_retention_days = None;
        p.backups = Some(backups);
        let problems = p.validate(&estate);
        assert!(
            problems.iter().any(|x| x.at == "backups.max_retention_days"),
            "{problems:?}"
        );
    }
}
