//! The per account-and-region session limit in the database, on SQLite and PostgreSQL: several
//! appliances on one database share one limit, a cancelled wait gives up, a renewed slot is
//! kept, and the slot of an appliance that died is taken again once its lease lapses.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bulwark_appliance::slots::Slots;
use bulwark_model::{AccountId, Region};
use common::{bare_database, Backend};

#[test]
fn sqlite() {
    slots(Backend::Sqlite);
}

#[test]
fn postgres() {
    slots(Backend::Postgres);
}

fn slots(backend: Backend) {
    let Some((db, runtime, _dir)) = bare_database(backend) else {
        return;
    };
    let slots = |appliance: &str, limit, lease_ms| {
        Slots::new(db.clone(), runtime.handle().clone(), appliance, limit, lease_ms)
    };
    let a: AccountId = "222222222222".parse().unwrap();
    let b: AccountId = "333333333333".parse().unwrap();
    let region: Region = "us-east-1".parse().unwrap();
    let held = || -> i64 { runtime.block_on(db.count_slots()).unwrap() };

    // Two appliances, a limit of 2: never more than 2 at once in one account and region.
    let (one, two) = (slots("one", 2, 60_000), slots("two", 2, 60_000));
    let (running, most, most_b) = (AtomicUsize::new(0), AtomicUsize::new(0), AtomicUsize::new(0));
    std::thread::scope(|scope| {
        for i in 0..8 {
            let appliance = if i % 2 == 0 { &one } else { &two };
            let (a, b, region) = (&a, &b, &region);
            let (running, most, most_b) = (&running, &most, &most_b);
            scope.spawn(move || {
                let account = if i < 6 { a } else { b };
                let _slot = appliance.take(account, region, || false).unwrap();
                if i < 6 {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                } else {
                    most_b.fetch_add(1, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(100));
                if i < 6 {
                    running.fetch_sub(1, Ordering::SeqCst);
                }
            });
        }
    });
    assert_eq!(
        most.load(Ordering::SeqCst),
        2,
        "two at once in 222222222222 over both appliances"
    );
    assert_eq!(
        most_b.load(Ordering::SeqCst),
        2,
        "another account has slots of its own"
    );
    assert_eq!(held(), 0, "every slot is freed when its session ends");

    // A cancelled wait gives up.
    let single = slots("single", 1, 60_000);
    let taken = single.take(&a, &region, || false).unwrap();
    assert!(single.take(&a, &region, || true).is_none());
    drop(taken);

    // A renewed slot is kept past its first lease.
    let (short, other) = (slots("short", 1, 300), slots("other", 1, 60_000));
    let kept = short.take(&a, &region, || false).unwrap();
    for _ in 0..4 {
        std::thread::sleep(Duration::from_millis(150));
        let until = bulwark_appliance::db::now_ms() + 300;
        runtime.block_on(db.renew_slots("short", until)).unwrap();
    }
    assert!(
        other.take(&a, &region, || true).is_none(),
        "renewed: not taken over"
    );

    // The appliance dies: its slot is neither freed nor renewed, and is taken once it lapses.
    std::mem::forget(kept);
    let asked = AtomicUsize::new(0);
    let after = other.take(&a, &region, || asked.fetch_add(1, Ordering::SeqCst) > 50);
    assert!(after.is_some(), "taken over after the lease lapsed");
    assert!(asked.load(Ordering::SeqCst) >= 1, "not before it lapsed");
    drop(after);
    assert_eq!(held(), 0);
}
