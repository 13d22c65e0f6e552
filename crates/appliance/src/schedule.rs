//! When a policy runs: a cron expression, or daily times (on some weekdays or days of the
//! month), in a time zone. Cron expressions are evaluated by `croner`, time zones by
//! `chrono-tz`, so that 02:00 in Europe/Berlin stays 02:00 across daylight saving.

use std::str::FromStr;

use chrono::{TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::policy::Problem;

/// A policy's schedule: `cron`, or `daily` (with optional `weekdays` and `days_of_month`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// A cron expression (`0 2 * * *`: minute, hour, day of month, month, day of week).
    #[serde(default)]
    pub cron: Option<String>,
    /// A time of day, `HH:MM`.
    #[serde(default)]
    pub daily: Option<String>,
    /// With `daily`: only on these days (`mon` ... `sun`).
    #[serde(default)]
    pub weekdays: Vec<String>,
    /// With `daily`: only on these days of the month (1 to 31).
    #[serde(default)]
    pub days_of_month: Vec<u8>,
    /// An IANA time zone (`Europe/Berlin`); UTC by default.
    #[serde(default)]
    pub time_zone: Option<String>,
}

const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

impl Schedule {
    fn problem(at: &str, message: String, remedy: &str) -> Problem {
        Problem {
            at: format!("schedule.{at}"),
            code: None,
            message,
            remedy: remedy.to_owned(),
        }
    }

    /// The schedule as a cron expression.
    fn pattern(&self) -> Result<String, Problem> {
        match (&self.cron, &self.daily) {
            (Some(cron), None) => {
                if !self.weekdays.is_empty() || !self.days_of_month.is_empty() {
                    return Err(Self::problem(
                        "weekdays",
                        "weekdays and days_of_month go with daily, not cron".into(),
                        "write them into the cron expression",
                    ));
                }
                Ok(cron.clone())
            }
            (None, Some(daily)) => {
                let time = chrono::NaiveTime::parse_from_str(daily, "%H:%M").map_err(|_| {
                    Self::problem(
                        "daily",
                        format!("{daily:?} is not a time of day"),
                        "write HH:MM, like 02:30",
                    )
                })?;
                let mut days = Vec::new();
                for d in &self.weekdays {
                    let n = WEEKDAYS
                        .iter()
                        .position(|w| w.eq_ignore_ascii_case(d))
                        .ok_or_else(|| {
                            Self::problem(
                                "weekdays",
                                format!("{d:?} is not a weekday"),
                                "write mon, tue, wed, thu, fri, sat or sun",
                            )
                        })?;
                    days.push(n.to_string());
                }
                let mut dom = Vec::new();
                for d in &self.days_of_month {
                    if !(1..=31).contains(d) {
                        return Err(Self::problem(
                            "days_of_month",
                            format!("{d} is not a day of the month"),
                            "give days from 1 to 31",
                        ));
                    }
                    dom.push(d.to_string());
                }
                let list = |v: Vec<String>| if v.is_empty() { "*".to_owned() } else { v.join(",") };
                use chrono::Timelike;
                Ok(format!(
                    "{} {} {} * {}",
                    time.minute(),
                    time.hour(),
                    list(dom),
                    list(days)
                ))
            }
            _ => Err(Self::problem(
                "cron",
                "give either cron or daily".into(),
                "like {\"cron\": \"0 2 * * *\"} or {\"daily\": \"02:00\"}",
            )),
        }
    }

    fn zone(&self) -> Result<Tz, Problem> {
        match &self.time_zone {
            None => Ok(Tz::UTC),
            Some(z) => Tz::from_str(z).map_err(|_| {
                Self::problem(
                    "time_zone",
                    format!("{z:?} is not a time zone"),
                    "give an IANA time zone, like Europe/Berlin or UTC",
                )
            }),
        }
    }

    fn cron(&self) -> Result<Cron, Problem> {
        let pattern = self.pattern()?;
        Cron::from_str(&pattern).map_err(|e| {
            Self::problem(
                "cron",
                format!("{pattern:?} is not a cron expression: {e}"),
                "write five fields: minute hour day-of-month month day-of-week",
            )
        })
    }

    /// Whether the schedule can be evaluated.
    pub fn check(&self) -> Result<(), Problem> {
        self.zone()?;
        self.cron()?;
        Ok(())
    }

    /// The first run strictly after `after_ms` (ms since the epoch), if there is one.
    pub fn next_after(&self, after_ms: i64) -> Result<Option<i64>, Problem> {
        let zone = self.zone()?;
        let cron = self.cron()?;
        let Some(after) = Utc.timestamp_millis_opt(after_ms).single() else {
            return Ok(None);
        };
        Ok(cron
            .find_next_occurrence(&after.with_timezone(&zone), false)
            .ok()
            .map(|t| t.timestamp_millis()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn at(text: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(text)
            .unwrap()
            .timestamp_millis()
    }

    #[test]
    fn cron_runs_in_its_time_zone() {
        let s = Schedule {
            cron: Some("0 2 * * *".into()),
            time_zone: Some("Europe/Berlin".into()),
            ..Schedule::default()
        };
        // 02:00 in Berlin is 01:00 UTC in winter.
        assert_eq!(
            s.next_after(at("2026-12-02T00:00:00Z")).unwrap(),
            Some(at("2026-12-02T01:00:00Z"))
        );
        assert_eq!(
            s.next_after(at("2026-12-02T01:00:00Z")).unwrap(),
            Some(at("2026-12-03T01:00:00Z"))
        );
    }

    #[test]
    fn daily_with_weekdays_and_mistakes_named() {
        let s = Schedule {
            daily: Some("23:30".into()),
            weekdays: vec!["sat".into()],
            ..Schedule::default()
        };
        // 2026-12-02 is a Wednesday; the next Saturday is the 5th.
        assert_eq!(
            s.next_after(at("2026-12-02T00:00:00Z")).unwrap(),
            Some(at("2026-12-05T23:30:00Z"))
        );
        let bad = Schedule {
            daily: Some("25:00".into()),
            ..Schedule::default()
        };
        assert_eq!(bad.check().unwrap_err().at, "schedule.daily");
        let bad = Schedule {
            cron: Some("every night".into()),
            ..Schedule::default()
        };
        assert_eq!(bad.check().unwrap_err().at, "schedule.cron");
        let bad = Schedule {
            cron: Some("0 2 * * *".into()),
            time_zone: Some("Mars/Olympus".into()),
            ..Schedule::default()
        };
        assert_eq!(bad.check().unwrap_err().at, "schedule.time_zone");
    }
}
