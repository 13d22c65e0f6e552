use super::*;
use proptest::prelude::*;
use std::collections::HashMap;

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("test times are RFC 3339")
        .with_timezone(&Utc)
}

const fn keep(last: u32, daily: u32, weekly: u32, monthly: u32) -> Retention {
    Retention {
        keep_last: last,
        keep_daily: daily,
        keep_weekly: weekly,
        keep_monthly: monthly,
        keep_yearly: 0,
    }
}

/// Later than every point of the table unless a case says otherwise.
const LATER: &str = "2030-01-01T00:00:00Z";

/// One table case: every point with the reasons it must be kept for, joined by ", "
/// ("" = forgotten).
struct Case {
    name: &'static str,
    policy: Retention,
    now: &'static str,
    points: &'static [(&'static str, &'static str, &'static str, &'static str)],
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "keep_last keeps the N newest",
            policy: keep(3, 0, 0, 0),
            now: LATER,
            points: &[
                ("a", "v", "2026-03-10T08:00:00Z", ""),
                ("b", "v", "2026-03-11T08:00:00Z", ""),
                ("c", "v", "2026-03-12T08:00:00Z", "last"),
                ("d", "v", "2026-03-13T08:00:00Z", "last"),
                ("e", "v", "2026-03-14T08:00:00Z", "last"),
            ],
        },
        Case {
            name: "keep_last ignores days: several points of one day",
            policy: keep(2, 0, 0, 0),
            now: LATER,
            points: &[
                ("a", "v", "2026-03-14T01:00:00Z", ""),
                ("b", "v", "2026-03-14T02:00:00Z", "last"),
                ("c", "v", "2026-03-14T03:00:00Z", "last"),
            ],
        },
        Case {
            name: "keep_last larger than the number of points keeps all",
            policy: keep(10, 0, 0, 0),
            now: LATER,
            points: &[
                ("a", "v", "2026-03-10T08:00:00Z", "last"),
                ("b", "v", "2026-03-11T08:00:00Z", "last"),
                ("c", "v", "2026-03-12T08:00:00Z", "last"),
            ],
        },
        Case {
            name: "input order is kept in the output (newest first in the input)",
            policy: keep(1, 0, 0, 0),
            now: LATER,
            points: &[
                ("z", "v", "2026-03-14T08:00:00Z", "last"),
                ("y", "v", "2026-03-13T08:00:00Z", ""),
                ("x", "v", "2026-03-12T08:00:00Z", ""),
            ],
        },
        Case {
            name: "keep_daily keeps the newest point of each day",
            policy: keep(0, 2, 0, 0),
            now: LATER,
            points: &[
                ("a", "v", "2026-03-12T20:00:00Z", ""),
                ("b", "v", "2026-03-13T06:00:00Z", ""),
                ("c", "v", "2026-03-13T18:00:00Z", "daily 2026-03-13"),
                ("d", "v", "2026-03-14T06:00:00Z", ""),
                ("e", "v", "2026-03-14T12:00:00Z", ""),
                ("f", "v", "2026-03-14T18:00:00Z", "daily 2026-03-14"),
            ],
        },
        Case {
            name: "keep_daily counts days with points, not calendar days",
            policy: keep(0, 2, 0, 0),
            now: LATER,
            points: &[
                ("a", "v", "2026-03-01T08:00:00Z", ""),
                ("b", "v", "2026-03-05T08:00:00Z", "daily 2026-03-05"),
                ("c", "v", "2026-03-09T08:00:00Z", "daily 2026-03-09"),
            ],
        },
        Case {
            name: "keep_daily larger than the number of days keeps one per day",
            policy: keep(0, 30, 0, 0),
            now: LATER,
            points: &[
                ("a", "v", "2026-03-13T01:00:00Z", ""),
                ("b", "v", "2026-03-13T02:00:00Z", "daily 2026-03-13"),
                ("c", "v", "2026-03-14T01:00:00Z", "daily 2026-03-14"),
            ],
        },
        Case {
            name: "day boundary at midnight UTC",
            policy: keep(0, 2, 0, 0),
            now: LATER,
            points: &[
                ("a", "v", "2026-03-13T23:59:58Z", ""),
                ("b", "v", "2026-03-13T23:59:59Z", "daily 2026-03-13"),
                ("c", "v", "2026-03-14T00:00:00Z", "daily 2026-03-14"),
            ],
        },
        Case {
            name: "days are UTC days, whatever offset the time was written with",
            policy: keep(0, 2, 0, 0),
            now: LATER,
            points: &[
                // 2026-03-15T04:30Z and 2026-03-15T02:00Z: the same UTC day.
                ("a", "v", "2026-03-14T23:30:00-05:00", "daily 2026-03-15"),
                ("b", "v", "2026-03-15T03:00:00+01:00", ""),
                // 2026-03-14T22:30Z.
                ("c", "v", "2026-03-15T00:30:00+02:00", "daily 2026-03-14"),
            ],
        },
        Case {
            name: "keep_weekly: Sunday and the next Monday are different ISO weeks",
            policy: keep(0, 0, 5, 0),
            now: LATER,
            points: &[
                ("a", "v", "2026-03-09T08:00:00Z", ""),
                ("b", "v", "2026-03-15T23:59:59Z", "weekly 2026-W11"),
                ("c", "v", "2026-03-16T00:00:00Z", "weekly 2026-W12"),
            ],
        },
        Case {
            name: "keep_weekly counts weeks with points, skipping empty weeks",
            policy: keep(0, 0, 2, 0),
            now: LATER,
            points: &[
                ("a", "v", "2026-02-02T08:00:00Z", ""),
                ("b", "v", "2026-02-16T08:00:00Z", "weekly 2026-W08"),
                ("c", "v", "2026-03-18T08:00:00Z", ""),
                ("d", "v", "2026-03-19T08:00:00Z", "weekly 2026-W12"),
            ],
        },
        Case {
            name: "2026-12-31 and 2027-01-01 are both in ISO week 53 of 2026",
            policy: keep(0, 2, 2, 2),
            now: LATER,
            points: &[
                (
                    "a",
                    "v",
                    "2026-12-31T12:00:00Z",
                    "daily 2026-12-31, monthly 2026-12",
                ),
                (
                    "b",
                    "v",
                    "2027-01-01T12:00:00Z",
                    "daily 2027-01-01, weekly 2026-W53, monthly 2027-01",
                ),
            ],
        },
        Case {
            name: "week 1 of 2026 starts on Monday 2025-12-29",
            policy: keep(0, 0, 3, 0),
            now: LATER,
            points: &[
                ("a", "v", "2025-12-28T12:00:00Z", "weekly 2025-W52"),
                ("b", "v", "2025-12-29T12:00:00Z", ""),
                ("c", "v", "2026-01-02T12:00:00Z", "weekly 2026-W01"),
            ],
        },
        Case {
            name: "2021-01-03 is in week 53 of 2020, with 2020-12-31",
            policy: keep(0, 0, 3, 0),
            now: LATER,
            points: &[
                ("a", "v", "2020-12-31T12:00:00Z", ""),
                ("b", "v", "2021-01-03T12:00:00Z", "weekly 2020-W53"),
                ("c", "v", "2021-01-04T00:00:00Z", "weekly 2021-W01"),
            ],
        },
        Case {
            name: "keep_monthly keeps the newest point of each month, whatever its length",
            policy: keep(0, 0, 0, 3),
            now: LATER,
            points: &[
                ("a", "v", "2026-01-31T23:59:59Z", ""),
                ("b", "v", "2026-02-01T00:00:00Z", ""),
                ("c", "v", "2026-02-28T23:59:59Z", "monthly 2026-02"),
                ("d", "v", "2026-03-01T00:00:00Z", ""),
                ("e", "v", "2026-03-31T23:59:59Z", "monthly 2026-03"),
                ("f", "v", "2026-04-30T23:59:59Z", "monthly 2026-04"),
            ],
        },
        Case {
            name: "keep_monthly in a leap year: 29 February and 1 March",
            policy: keep(0, 0, 0, 2),
            now: LATER,
            points: &[
                ("a", "v", "2024-02-28T12:00:00Z", ""),
                ("b", "v", "2024-02-29T23:59:59Z", "monthly 2024-02"),
                ("c", "v", "2024-03-01T00:00:00Z", "monthly 2024-03"),
            ],
        },
        Case {
            name: "keep_monthly across a year boundary, larger than the number of months",
            policy: keep(0, 0, 0, 12),
            now: LATER,
            points: &[
                ("a", "v", "2025-11-30T12:00:00Z", "monthly 2025-11"),
                ("b", "v", "2025-12-31T12:00:00Z", "monthly 2025-12"),
                ("c", "v", "2026-01-01T12:00:00Z", "monthly 2026-01"),
            ],
        },
        Case {
            name: "keep_yearly keeps the newest point of each year, 31 December against 1 January",
            policy: Retention {
                keep_yearly: 2,
                ..keep(0, 0, 0, 0)
            },
            now: LATER,
            points: &[
                ("a", "v", "2025-06-01T12:00:00Z", ""),
                ("b", "v", "2025-12-31T23:59:59Z", ""),
                ("c", "v", "2026-01-01T00:00:00Z", ""),
                ("d", "v", "2026-12-31T23:59:59Z", "yearly 2026"),
                ("e", "v", "2027-01-01T00:00:00Z", "yearly 2027"),
            ],
        },
        Case {
            name: "a point kept by several rules lists every reason",
            policy: keep(1, 1, 1, 1),
            now: LATER,
            points: &[
                ("a", "v", "2026-03-13T08:00:00Z", ""),
                (
                    "b",
                    "v",
                    "2026-03-14T08:00:00Z",
                    "last, daily 2026-03-14, weekly 2026-W11, monthly 2026-03",
                ),
            ],
        },
        Case {
            name: "combination: last, daily, weekly and monthly over two months",
            policy: keep(2, 3, 2, 2),
            now: LATER,
            points: &[
                ("a", "v", "2026-02-10T08:00:00Z", ""),
                ("b", "v", "2026-02-20T08:00:00Z", "monthly 2026-02"),
                ("c", "v", "2026-03-02T08:00:00Z", ""),
                ("d", "v", "2026-03-05T08:00:00Z", "weekly 2026-W10"),
                ("e", "v", "2026-03-10T08:00:00Z", "daily 2026-03-10"),
                ("f", "v", "2026-03-11T08:00:00Z", ""),
                ("g", "v", "2026-03-11T20:00:00Z", "last, daily 2026-03-11"),
                (
                    "h",
                    "v",
                    "2026-03-12T08:00:00Z",
                    "last, daily 2026-03-12, weekly 2026-W11, monthly 2026-03",
                ),
            ],
        },
        Case {
            name: "combination: N = 0 for last and weekly",
            policy: keep(0, 1, 0, 2),
            now: LATER,
            points: &[
                ("a", "v", "2026-02-27T08:00:00Z", "monthly 2026-02"),
                ("b", "v", "2026-03-13T08:00:00Z", ""),
                (
                    "c",
                    "v",
                    "2026-03-14T08:00:00Z",
                    "daily 2026-03-14, monthly 2026-03",
                ),
            ],
        },
        Case {
            name: "keep_last 1 with a daily rule: the older days still count",
            policy: keep(1, 2, 0, 0),
            now: LATER,
            points: &[
                ("a", "v", "2026-03-12T08:00:00Z", ""),
                ("b", "v", "2026-03-13T08:00:00Z", "daily 2026-03-13"),
                ("c", "v", "2026-03-14T07:00:00Z", ""),
                ("d", "v", "2026-03-14T08:00:00Z", "last, daily 2026-03-14"),
            ],
        },
        Case {
            name: "volumes are decided independently",
            policy: keep(1, 0, 0, 0),
            now: LATER,
            points: &[
                ("a1", "vol-a", "2026-03-10T08:00:00Z", ""),
                ("b1", "vol-b", "2026-03-11T08:00:00Z", ""),
                ("a2", "vol-a", "2026-03-12T08:00:00Z", "last"),
                ("b2", "vol-b", "2026-03-13T08:00:00Z", "last"),
                ("c1", "vol-c", "2020-01-01T00:00:00Z", "last"),
            ],
        },
        Case {
            name: "volumes have their own daily buckets on the same day",
            policy: keep(0, 1, 0, 0),
            now: LATER,
            points: &[
                ("a1", "vol-a", "2026-03-14T08:00:00Z", ""),
                ("b1", "vol-b", "2026-03-14T09:00:00Z", ""),
                ("a2", "vol-a", "2026-03-14T10:00:00Z", "daily 2026-03-14"),
                ("b2", "vol-b", "2026-03-14T11:00:00Z", "daily 2026-03-14"),
            ],
        },
        Case {
            name: "ties on the same second: the smaller id counts as newer for keep_last",
            policy: keep(1, 0, 0, 0),
            now: LATER,
            points: &[
                ("p-2", "v", "2026-03-14T08:00:00Z", ""),
                ("p-1", "v", "2026-03-14T08:00:00Z", "last"),
                ("p-3", "v", "2026-03-14T08:00:00Z", ""),
            ],
        },
        Case {
            name: "ties on the same second: the smaller id takes the daily bucket",
            policy: keep(0, 2, 0, 0),
            now: LATER,
            points: &[
                ("b", "v", "2026-03-14T08:00:00Z", ""),
                ("a", "v", "2026-03-14T08:00:00Z", "daily 2026-03-14"),
                ("d", "v", "2026-03-13T08:00:00Z", ""),
                ("c", "v", "2026-03-13T08:00:00Z", "daily 2026-03-13"),
            ],
        },
        Case {
            name: "a point in the future is kept and does not count towards keep_last",
            policy: keep(1, 0, 0, 0),
            now: "2026-03-14T12:00:00Z",
            points: &[
                ("a", "v", "2026-03-13T08:00:00Z", ""),
                ("b", "v", "2026-03-14T08:00:00Z", "last"),
                ("c", "v", "2026-03-14T12:00:01Z", "dated after now (clock skew)"),
                ("d", "v", "2027-01-01T00:00:00Z", "dated after now (clock skew)"),
            ],
        },
        Case {
            name: "a point in the future does not take today's daily bucket",
            policy: keep(0, 1, 0, 1),
            now: "2026-03-14T12:00:00Z",
            points: &[
                (
                    "a",
                    "v",
                    "2026-03-14T08:00:00Z",
                    "daily 2026-03-14, monthly 2026-03",
                ),
                ("b", "v", "2026-03-14T18:00:00Z", "dated after now (clock skew)"),
            ],
        },
        Case {
            name: "a point dated exactly now is not in the future",
            policy: keep(1, 0, 0, 0),
            now: "2026-03-14T12:00:00Z",
            points: &[
                ("a", "v", "2026-03-14T08:00:00Z", ""),
                ("b", "v", "2026-03-14T12:00:00Z", "last"),
            ],
        },
        Case {
            name: "every point in the future: all kept",
            policy: keep(1, 1, 1, 1),
            now: "2020-01-01T00:00:00Z",
            points: &[
                ("a", "v", "2026-03-13T08:00:00Z", "dated after now (clock skew)"),
                ("b", "w", "2026-03-14T08:00:00Z", "dated after now (clock skew)"),
            ],
        },
        Case {
            name: "no points: no decisions",
            policy: keep(1, 0, 0, 0),
            now: LATER,
            points: &[],
        },
        Case {
            name: "a single point is kept by every rule with N >= 1",
            policy: keep(0, 7, 4, 12),
            now: LATER,
            points: &[(
                "a",
                "v",
                "2026-03-14T08:00:00Z",
                "daily 2026-03-14, weekly 2026-W11, monthly 2026-03",
            )],
        },
        Case {
            name: "the daily walk stops after N days even if older days have points",
            policy: keep(0, 1, 0, 0),
            now: LATER,
            points: &[
                ("a", "v", "2026-01-01T08:00:00Z", ""),
                ("b", "v", "2026-02-01T08:00:00Z", ""),
                ("c", "v", "2026-03-01T08:00:00Z", "daily 2026-03-01"),
            ],
        },
    ]
}

fn points_of(case: &Case) -> Vec<PointInfo> {
    case.points
        .iter()
        .map(|&(id, volume, time, _)| PointInfo {
            id: id.to_owned(),
            volume_id: volume.to_owned(),
            time: at(time),
        })
        .collect()
}

fn shown(reasons: &[Reason]) -> String {
    reasons
        .iter()
        .map(Reason::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[test]
fn table() {
    let cases = cases();
    assert!(cases.len() >= 25, "{} cases", cases.len());
    for case in &cases {
        let points = points_of(case);
        let decisions =
            apply(&points, &case.policy, at(case.now)).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        assert_eq!(decisions.len(), points.len(), "{}", case.name);
        for (&(id, _, _, expected), decision) in case.points.iter().zip(&decisions) {
            assert_eq!(decision.id, id, "{}", case.name);
            assert_eq!(shown(&decision.reasons), expected, "{}: point {id}", case.name);
            assert_eq!(decision.keep, !expected.is_empty(), "{}: {id}", case.name);
        }
    }
}

#[test]
fn table_cases_have_unique_names() {
    let cases = cases();
    let names: HashSet<_> = cases.iter().map(|c| c.name).collect();
    assert_eq!(names.len(), cases.len());
}

#[test]
fn every_table_case_gives_the_same_decisions_in_any_input_order() {
    for case in &cases() {
        let points = points_of(case);
        let now = at(case.now);
        let expected: HashMap<String, Decision> = apply(&points, &case.policy, now)
            .unwrap()
            .into_iter()
            .map(|d| (d.id.clone(), d))
            .collect();
        let n = points.len();
        // Every rotation, reversed or not: enough to move every point to the front and back.
        for reverse in [false, true] {
            for shift in 0..n.max(1) {
                let mut shuffled = points.clone();
                if reverse {
                    shuffled.reverse();
                }
                shuffled.rotate_left(shift.min(n));
                let decisions = apply(&shuffled, &case.policy, now).unwrap();
                for (point, decision) in shuffled.iter().zip(&decisions) {
                    assert_eq!(decision.id, point.id, "{}", case.name);
                    assert_eq!(Some(decision), expected.get(&point.id), "{}", case.name);
                }
            }
        }
    }
}

#[test]
fn an_empty_policy_is_refused() {
    let points = [PointInfo {
        id: "a".to_owned(),
        volume_id: "v".to_owned(),
        time: at("2026-03-14T08:00:00Z"),
    }];
    assert!(Retention::default().is_empty());
    assert!(keep(0, 0, 0, 0).is_empty());
    assert_eq!(
        apply(&points, &Retention::default(), at(LATER)),
        Err(RetentionError::EmptyPolicy)
    );
    // Also with no points at all: the flag is missing whatever the repository holds.
    assert_eq!(
        apply(&[], &Retention::default(), at(LATER)),
        Err(RetentionError::EmptyPolicy)
    );
    let message = RetentionError::EmptyPolicy.to_string();
    assert!(message.contains("give at least one --keep-* option"), "{message}");
}

#[test]
fn any_single_rule_makes_a_policy_non_empty() {
    for policy in [
        keep(1, 0, 0, 0),
        keep(0, 1, 0, 0),
        keep(0, 0, 1, 0),
        keep(0, 0, 0, 1),
    ] {
        assert!(!policy.is_empty(), "{policy:?}");
    }
}

#[test]
fn a_duplicate_id_is_refused() {
    let point = |volume: &str, time: &str| PointInfo {
        id: "same".to_owned(),
        volume_id: volume.to_owned(),
        time: at(time),
    };
    let points = [
        point("vol-a", "2026-03-13T08:00:00Z"),
        point("vol-b", "2026-03-14T08:00:00Z"),
    ];
    let err = apply(&points, &keep(1, 0, 0, 0), at(LATER)).unwrap_err();
    assert_eq!(err, RetentionError::DuplicateId("same".to_owned()));
    assert_eq!(err.to_string(), "restore point same is listed twice");
}

#[test]
fn reasons_display() {
    let day = NaiveDate::from_ymd_opt(2026, 3, 4).unwrap();
    assert_eq!(Reason::Last.to_string(), "last");
    assert_eq!(Reason::Daily(day).to_string(), "daily 2026-03-04");
    assert_eq!(
        Reason::Weekly { year: 2026, week: 1 }.to_string(),
        "weekly 2026-W01"
    );
    assert_eq!(
        Reason::Monthly { year: 2026, month: 3 }.to_string(),
        "monthly 2026-03"
    );
    assert_eq!(Reason::Future.to_string(), "dated after now (clock skew)");
}

/// Random points: up to 40, on up to 3 volumes, within about 3 years, with many collisions
/// on the same day and the same second; ids unique.
fn arb_points() -> impl Strategy<Value = Vec<PointInfo>> {
    let base = at("2025-01-01T00:00:00Z").timestamp();
    let time = prop_oneof![
        // Anywhere in about 3 years.
        0i64..(3 * 366 * 86_400),
        // A handful of instants, for ties.
        (0i64..6).prop_map(|k| k * 43_200),
    ];
    prop::collection::vec((0usize..3, time), 0..40).prop_map(move |raw| {
        raw.into_iter()
            .enumerate()
            .map(|(i, (volume, offset))| PointInfo {
                id: format!("p{i:02}"),
                volume_id: format!("vol-{volume}"),
                time: DateTime::from_timestamp(base + offset, 0).unwrap_or_default(),
            })
            .collect()
    })
}

fn arb_policy() -> impl Strategy<Value = Retention> {
    (0u32..6, 0u32..6, 0u32..6, 0u32..6, 0u32..3)
        .prop_map(|(l, d, w, m, y)| Retention {
            keep_yearly: y,
            ..keep(l, d, w, m)
        })
        .prop_filter("a non-empty policy", |p| !p.is_empty())
}

fn arb_now() -> impl Strategy<Value = DateTime<Utc>> {
    let base = at("2025-01-01T00:00:00Z").timestamp();
    (0i64..(4 * 366 * 86_400)).prop_map(move |s| DateTime::from_timestamp(base + s, 0).unwrap_or_default())
}

/// A sortable key of a time's bucket, independent of [`Reason`].
type OrderOf = fn(DateTime<Utc>) -> (i32, u32, u32);

/// An independent statement of a calendar rule: the newest point (smallest id on ties) of
/// each of the `n` most recent buckets of the volume's points not in the future.
fn oracle(
    points: &[PointInfo],
    volume: &str,
    now: DateTime<Utc>,
    n: u32,
    bucket: BucketOf,
    key: OrderOf,
) -> HashSet<(String, Reason)> {
    let mut newest: BTreeMap<(i32, u32, u32), &PointInfo> = BTreeMap::new();
    for p in points.iter().filter(|p| p.volume_id == volume && p.time <= now) {
        let entry = newest.entry(key(p.time)).or_insert(p);
        if (p.time, std::cmp::Reverse(&p.id)) > (entry.time, std::cmp::Reverse(&entry.id)) {
            *entry = p;
        }
    }
    newest
        .values()
        .rev()
        .take(n as usize)
        .map(|p| (p.id.clone(), bucket(p.time)))
        .collect()
}

proptest! {
    #[test]
    fn invariants(points in arb_points(), policy in arb_policy(), now in arb_now()) {
        let decisions = apply(&points, &policy, now).unwrap();

        // One decision per point, in input order: every id exactly once.
        prop_assert_eq!(decisions.len(), points.len());
        for (point, decision) in points.iter().zip(&decisions) {
            prop_assert_eq!(&decision.id, &point.id);
            prop_assert_eq!(decision.keep, !decision.reasons.is_empty());
            let future = decision.reasons.contains(&Reason::Future);
            prop_assert_eq!(future, point.time > now);
            if future {
                prop_assert_eq!(decision.reasons.len(), 1);
            }
        }

        let volumes: HashSet<&str> = points.iter().map(|p| p.volume_id.as_str()).collect();
        for volume in volumes {
            let group: Vec<(&PointInfo, &Decision)> = points
                .iter()
                .zip(&decisions)
                .filter(|(p, _)| p.volume_id == volume)
                .collect();
            let present = group.iter().filter(|(p, _)| p.time <= now).count();

            // keep_last N keeps at least min(N, group size) points, exactly min(N, present)
            // of them for that reason.
            let kept = group.iter().filter(|(_, d)| d.keep).count();
            prop_assert!(kept >= group.len().min(policy.keep_last as usize));
            let last = group.iter().filter(|(_, d)| d.reasons.contains(&Reason::Last)).count();
            prop_assert_eq!(last, present.min(policy.keep_last as usize));

            // The newest point of the volume is always kept.
            let newest = group
                .iter()
                .max_by(|a, b| a.0.time.cmp(&b.0.time).then_with(|| b.0.id.cmp(&a.0.id)));
            if let Some((point, decision)) = newest {
                prop_assert!(decision.keep, "newest point {} of {volume} forgotten", point.id);
            }

            // The calendar rules match their independent statement.
            let rules: [(u32, BucketOf, OrderOf); 4] = [
                (policy.keep_daily, daily, |t| (t.year(), t.month(), t.day())),
                (policy.keep_weekly, weekly, |t| {
                    let w = t.iso_week();
                    (w.year(), w.week(), 0)
                }),
                (policy.keep_monthly, monthly, |t| (t.year(), t.month(), 0)),
                (policy.keep_yearly, yearly, |t| (t.year(), 0, 0)),
            ];
            for (n, bucket, key) in rules {
                let expected = oracle(&points, volume, now, n, bucket, key);
                let kind = std::mem::discriminant(&bucket(now));
                let actual: HashSet<(String, Reason)> = group
                    .iter()
                    .flat_map(|(p, d)| {
                        d.reasons
                            .iter()
                            .filter(|r| std::mem::discriminant(*r) == kind)
                            .map(|r| (p.id.clone(), *r))
                    })
                    .collect();
                prop_assert_eq!(actual, expected);
            }
        }
    }

    #[test]
    fn shuffled_input_gives_the_same_decisions(
        (points, shuffled) in arb_points().prop_flat_map(|p| (Just(p.clone()), Just(p).prop_shuffle())),
        policy in arb_policy(),
        now in arb_now(),
    ) {
        let by_id = |points: &[PointInfo]| -> Result<HashMap<String, Decision>, TestCaseError> {
            let decisions = apply(points, &policy, now)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            Ok(decisions.into_iter().map(|d| (d.id.clone(), d)).collect())
        };
        prop_assert_eq!(by_id(&points)?, by_id(&shuffled)?);
    }

    #[test]
    fn an_empty_policy_is_always_refused(points in arb_points(), now in arb_now()) {
        prop_assert_eq!(
            apply(&points, &Retention::default(), now),
            Err(RetentionError::EmptyPolicy)
        );
    }
}
