//! Retention: which restore points `bulwark image forget --keep-last N --keep-daily N
//! --keep-weekly N --keep-monthly N --keep-yearly N` (and an appliance policy's `backups`) keeps, as a pure function of the points, the policy and the
//! clock. It reads and deletes nothing; the caller acts on the decisions.
//!
//! The semantics are restic's `forget` (and rustic's), stated precisely:
//!
//! - The points are grouped by volume (`volume_id`); each group is decided on its own.
//! - A point dated after `now` (clock skew) is always kept, with [`Reason::Future`], and takes no
//!   part in the rules below: it neither counts towards `keep_last` nor fills a daily, weekly or
//!   monthly bucket. A point dated exactly `now` is not in the future.
//! - The other points of a group are sorted newest first; points of the same instant are ordered
//!   by id, the smaller id first (as if it were newer), so the result never depends on the input
//!   order.
//! - `keep_last N` keeps the first N points of that order.
//! - `keep_daily N` walks the same order and keeps a point when its calendar day (in UTC) differs
//!   from the day of the last point this rule kept, until it has kept N points: it keeps the
//!   newest point of each of the N most recent days that have points (days without points do not
//!   count). `keep_weekly` does the same with ISO 8601 weeks (the ISO week-numbering year and
//!   week, so 2027-01-01 is in week 53 of 2026 and 2025-12-29 in week 1 of 2026), and
//!   `keep_monthly` with calendar months (year and month, in UTC), `keep_yearly` with calendar
//!   years (in UTC).
//! - A rule whose N is 0 keeps nothing. A point is kept when at least one rule keeps it, and its
//!   decision lists every rule that does, in the order last, daily, weekly, monthly, yearly.
//! - Every other point is forgotten.
//!
//! Two refusals: a policy whose every N is 0 ([`RetentionError::EmptyPolicy`]), since forgetting
//! everything must never be what a forgotten flag does; and two points with the same id
//! ([`RetentionError::DuplicateId`]), since a decision is addressed by id.
//!
//! Unlike restic 0.16 and later, a rule with counts left over once it has seen every point does
//! not also keep the oldest point: N buckets mean the N most recent buckets, nothing more.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use chrono::{DateTime, Datelike, NaiveDate, Utc};

/// A retention policy: how many restore points of each volume to keep, by rule.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Retention {
    /// Keep the N newest points (`--keep-last`).
    pub keep_last: u32,
    /// Keep the newest point of each of the N most recent days with points (`--keep-daily`).
    pub keep_daily: u32,
    /// Keep the newest point of each of the N most recent ISO weeks with points
    /// (`--keep-weekly`).
    pub keep_weekly: u32,
    /// Keep the newest point of each of the N most recent months with points
    /// (`--keep-monthly`).
    pub keep_monthly: u32,
    /// Keep the newest point of each of the N most recent years with points (`--keep-yearly`).
    pub keep_yearly: u32,
}

impl Retention {
    /// Whether the policy keeps nothing at all (every N is 0); [`apply`] refuses such a policy.
    pub fn is_empty(&self) -> bool {
        self.keep_last == 0
            && self.keep_daily == 0
            && self.keep_weekly == 0
            && self.keep_monthly == 0
            && self.keep_yearly == 0
    }
}

/// One restore point as retention sees it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PointInfo {
    /// The restore point's id, unique among the points given to [`apply`].
    pub id: String,
    /// The volume it is a copy of: points of different volumes are decided independently.
    pub volume_id: String,
    /// When it was taken.
    pub time: DateTime<Utc>,
}

/// Why a restore point is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// One of the `keep_last` newest points of its volume.
    Last,
    /// The newest point of this day (UTC), one of the `keep_daily` most recent days.
    Daily(NaiveDate),
    /// The newest point of this ISO week, one of the `keep_weekly` most recent weeks.
    Weekly {
        /// The ISO week-numbering year (2027-01-01 is in week 53 of 2026).
        year: i32,
        /// The ISO week, 1 to 53.
        week: u32,
    },
    /// The newest point of this month (UTC), one of the `keep_monthly` most recent months.
    Monthly {
        /// The year.
        year: i32,
        /// The month, 1 to 12.
        month: u32,
    },
    /// The newest point of this year (UTC), one of the `keep_yearly` most recent years.
    Yearly(i32),
    /// Dated after the current time (clock skew): always kept.
    Future,
    /// Forgotten by the policy, but retained by Object Lock until then: kept, and deletable
    /// from then on (`forget` adds it; [`apply`] never does).
    Retained(DateTime<Utc>),
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Last => f.write_str("last"),
            Reason::Daily(day) => write!(f, "daily {day}"),
            Reason::Weekly { year, week } => write!(f, "weekly {year:04}-W{week:02}"),
            Reason::Monthly { year, month } => write!(f, "monthly {year:04}-{month:02}"),
            Reason::Yearly(year) => write!(f, "yearly {year:04}"),
            Reason::Future => f.write_str("dated after now (clock skew)"),
            Reason::Retained(until) => write!(
                f,
                "retained by Object Lock until {}, deletable then",
                until.to_rfc3339()
            ),
        }
    }
}

/// What retention decided for one restore point.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Decision {
    /// The restore point's id.
    pub id: String,
    /// Whether it is kept; `false` means it may be forgotten.
    pub keep: bool,
    /// Why it is kept, in the order last, daily, weekly, monthly, yearly (or just [`Reason::Future`]);
    /// empty when it is not.
    pub reasons: Vec<Reason>,
}

/// Why retention refused to decide.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RetentionError {
    /// Every N of the policy is 0, which would forget every point.
    #[error(
        "the retention policy keeps nothing: give at least one --keep-* option \
         (--keep-last, --keep-daily, --keep-weekly, --keep-monthly, --keep-yearly) with a value of 1 or more"
    )]
    EmptyPolicy,
    /// Two restore points have the same id.
    #[error("restore point {0} is listed twice")]
    DuplicateId(String),
}

/// Decides which of `points` the `policy` keeps at time `now` (see the module documentation for
/// the rules). Returns one decision per point, in the order of `points`.
pub fn apply(
    points: &[PointInfo],
    policy: &Retention,
    now: DateTime<Utc>,
) -> Result<Vec<Decision>, RetentionError> {
    if policy.is_empty() {
        return Err(RetentionError::EmptyPolicy);
    }
    let mut ids = HashSet::with_capacity(points.len());
    if let Some(twice) = points.iter().find(|p| !ids.insert(p.id.as_str())) {
        return Err(RetentionError::DuplicateId(twice.id.clone()));
    }

    let mut reasons: Vec<Vec<Reason>> = vec![Vec::new(); points.len()];
    let mut groups: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, point) in points.iter().enumerate() {
        if point.time > now {
            reasons[i].push(Reason::Future);
        } else {
            groups.entry(point.volume_id.as_str()).or_default().push(i);
        }
    }

    for group in groups.values_mut() {
        group.sort_by(|&a, &b| {
            (points[b].time.cmp(&points[a].time)).then_with(|| points[a].id.cmp(&points[b].id))
        });
        let mut calendar = [
            Bucketing::new(policy.keep_daily, daily),
            Bucketing::new(policy.keep_weekly, weekly),
            Bucketing::new(policy.keep_monthly, monthly),
            Bucketing::new(policy.keep_yearly, yearly),
        ];
        for (rank, &i) in group.iter().enumerate() {
            if rank < policy.keep_last as usize {
                reasons[i].push(Reason::Last);
            }
            for rule in &mut calendar {
                if let Some(reason) = rule.offer(points[i].time) {
                    reasons[i].push(reason);
                }
            }
        }
    }

    Ok(points
        .iter()
        .zip(reasons)
        .map(|(point, reasons)| Decision {
            id: point.id.clone(),
            keep: !reasons.is_empty(),
            reasons,
        })
        .collect())
}

/// The bucket of a time, for a calendar rule: its day, ISO week or month.
type BucketOf = fn(DateTime<Utc>) -> Reason;

/// A calendar rule walking one volume's points, newest first.
struct Bucketing {
    /// How many more buckets it may keep.
    remaining: u32,
    /// The bucket of the last point it kept.
    last: Option<Reason>,
    /// The bucket of a time.
    bucket: BucketOf,
}

impl Bucketing {
    fn new(count: u32, bucket: BucketOf) -> Self {
        Bucketing {
            remaining: count,
            last: None,
            bucket,
        }
    }

    /// The next point (older than every point offered before): its reason if the rule keeps it.
    fn offer(&mut self, time: DateTime<Utc>) -> Option<Reason> {
        if self.remaining == 0 {
            return None;
        }
        let bucket = (self.bucket)(time);
        if self.last == Some(bucket) {
            return None;
        }
        self.remaining -= 1;
        self.last = Some(bucket);
        Some(bucket)
    }
}

fn daily(time: DateTime<Utc>) -> Reason {
    Reason::Daily(time.date_naive())
}

fn weekly(time: DateTime<Utc>) -> Reason {
    let week = time.iso_week();
    Reason::Weekly {
        year: week.year(),
        week: week.week(),
    }
}

fn monthly(time: DateTime<Utc>) -> Reason {
    Reason::Monthly {
        year: time.year(),
        month: time.month(),
    }
}

fn yearly(time: DateTime<Utc>) -> Reason {
    Reason::Yearly(time.year())
}

#[cfg(test)]
#[path = "retention_tests.rs"]
mod tests;
