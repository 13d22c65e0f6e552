//! The engine's journals and catalog in the appliance's database, on SQLite and PostgreSQL: a
//! journal is owned through a lease that only lapses, a lapsed one is taken over with its
//! entries, the old owner can then write nothing more, and a closed one is never recovered.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use bulwark_appliance::db::journals::{DbStore, Journals};
use bulwark_engine::journal::Entry;
use bulwark_engine::{SessionId, SnapshotPoint, StateStore};
use common::{bare_database, Backend};

#[test]
fn sqlite() {
    journals(Backend::Sqlite);
}

#[test]
fn postgres() {
    journals(Backend::Postgres);
}

fn started(session: &SessionId) -> Entry {
    Entry::Started {
        version: 1,
        session: session.to_string(),
        summary: "test".into(),
    }
}

fn journals(backend: Backend) {
    // No appliance: its scheduler would recover the lapsed journals before the stores played here.
    let Some((db, runtime, _dir)) = bare_database(backend) else {
        return;
    };
    let store = |owner: &str, lease_ms| {
        Journals(DbStore::new(
            db.clone(),
            runtime.handle().clone(),
            owner,
            lease_ms,
        ))
    };
    let a = store("a", 300);
    let b = store("b", 300);

    let session = SessionId::new();
    let mut held = a.begin(&session).unwrap();
    held.record(&started(&session)).unwrap();
    assert_eq!(b.unfinished().unwrap(), vec![session.clone()]);
    assert!(
        b.take_over(&session).unwrap().is_none(),
        "a live lease is never taken"
    );

    // The owner stalls past its lease: the other takes the journal over with its entries...
    std::thread::sleep(Duration::from_millis(400));
    let mut taken = b.take_over(&session).unwrap().expect("a lapsed lease is taken");
    assert_eq!(taken.entries().unwrap(), vec![started(&session)]);
    // ... and the old owner can write nothing more into it.
    let refused = held.record(&Entry::Closed).unwrap_err();
    assert!(
        refused.to_string().contains("took this journal over"),
        "{refused}"
    );
    assert!(taken.location().contains(&session.to_string()));

    // Closed, it is never recovered again.
    taken.record(&Entry::Closed).unwrap();
    drop(taken);
    drop(held);
    assert!(a.unfinished().unwrap().is_empty());
    assert!(a.take_over(&session).unwrap().is_none());

    // A journal dropped open (its session could not clean up) is released at once.
    let open = SessionId::new();
    drop(a.begin(&open).unwrap());
    assert!(b.take_over(&open).unwrap().is_some());

    // The catalog keeps restore points in the order they were added.
    // Under a customer managed key, under aws/ebs (its alias ARN), or none.
    let key = |snapshot: &str| match snapshot.as_bytes().last() {
        Some(b'a') => Some("arn:aws:kms:us-east-1:222222222222:key/0a1b2c3d-0000-4000-8000-00000000000a"),
        Some(b'b') => Some("arn:aws:kms:us-east-1:222222222222:alias/aws/ebs"),
        _ => None,
    };
    let point = |snapshot: &str| SnapshotPoint {
        volume: "vol-0aaaaaaaaaaaaaaaa".parse().unwrap(),
        account: "222222222222".parse().unwrap(),
        region: "us-east-1".parse().unwrap(),
        snapshot: snapshot.parse().unwrap(),
        key: key(snapshot).map(|k| k.parse().unwrap()),
        session: session.to_string(),
        instance: None,
    };
    let (s1, s2, s3) = (
        "snap-0000000000000000a",
        "snap-0000000000000000b",
        "snap-0000000000000000c",
    );
    a.add_points(&[point(s2), point(s1), point(s3)]).unwrap();
    assert_eq!(b.points().unwrap(), vec![point(s2), point(s1), point(s3)]);
    a.remove_points(&[s2.parse().unwrap()]).unwrap();
    assert_eq!(b.points().unwrap(), vec![point(s1), point(s3)]);
}
