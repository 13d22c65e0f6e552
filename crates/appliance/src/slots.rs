//! How many engine sessions run at once in each account and region: every call an engine
//! session makes lands in one account's regional quotas (EC2's request rate, concurrent
//! snapshot copies, EBS direct API rates), so a policy over hundreds of instances runs its items
//! side by side, but never more than the limit in one account and region.
//!
//! The slots are rows in the database (`Db::take_slot`), so that several appliances on one
//! database share one limit. A slot is held through a lease the scheduler's tick renews
//! (`Db::renew_slots`); the slots of an appliance that died are taken again once their leases
//! lapse. The engine is synchronous: these calls block on the appliance's runtime, from the
//! session's threads.

use std::time::Duration;

use bulwark_model::{AccountId, Region};

use crate::db::{self, Db};

/// How long a session waits before it asks again for a slot that was full.
const RETRY: Duration = Duration::from_millis(200);

/// The slots of every account and region, as one appliance takes them.
pub struct Slots {
    db: Db,
    runtime: tokio::runtime::Handle,
    appliance: String,
    limit: usize,
    lease_ms: i64,
}

/// A slot taken: dropping it frees it.
pub struct Slot<'s> {
    slots: &'s Slots,
    place: String,
    n: i64,
    holder: String,
}

impl Slots {
    /// At most `limit` (at least 1) at once in each account and region, over every appliance on
    /// `db`; the slots `appliance` takes are leased for `lease_ms`.
    pub fn new(
        db: Db,
        runtime: tokio::runtime::Handle,
        appliance: &str,
        limit: usize,
        lease_ms: i64,
    ) -> Slots {
        Slots {
            db,
            runtime,
            appliance: appliance.to_owned(),
            limit: limit.max(1),
            lease_ms,
        }
    }

    /// Waits for a slot in `account`/`region`; `None` if `give_up` says so while it waits
    /// (the session was cancelled). A database that fails is warned of and asked again: the
    /// limit is kept, never skipped.
    pub fn take(&self, account: &AccountId, region: &Region, give_up: impl Fn() -> bool) -> Option<Slot<'_>> {
        let place = format!("{account}/{region}");
        let holder = db::new_id("slot");
        loop {
            let now = db::now_ms();
            let lease_until = now.saturating_add(self.lease_ms);
            let taken = self.runtime.block_on(self.db.take_slot(
                &place,
                self.limit,
                &holder,
                &self.appliance,
                lease_until,
                now,
            ));
            match taken {
                Ok(Some(n)) => {
                    return Some(Slot {
                        slots: self,
                        place,
                        n,
                        holder,
                    })
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(%place, error = %e, "could not take a session slot; asking again");
                }
            }
            if give_up() {
                return None;
            }
            std::thread::sleep(RETRY);
        }
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let freed = self
            .slots
            .runtime
            .block_on(self.slots.db.free_slot(&self.place, self.n, &self.holder));
        if let Err(e) = freed {
            // Not freed: it is taken again when its lease lapses.
            tracing::warn!(place = %self.place, error = %e, "could not free a session slot; it frees itself when its lease lapses");
        }
    }
}
