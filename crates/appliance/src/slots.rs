//! How many engine sessions run at once in each account and region: every call an engine
//! session makes lands in one account's regional quotas (EC2's request rate, concurrent
//! snapshot copies, EBS direct API rates), so a policy over hundreds of instances runs its items
//! side by side, but never more than the limit in one account and region. The limit is per
//! appliance; several appliances on one database each keep their own.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use bulwark_model::{AccountId, Region};

use crate::lock;

/// The engine sessions running in each account and region, bounded.
pub(crate) struct Slots {
    limit: usize,
    taken: Mutex<HashMap<(AccountId, Region), usize>>,
    freed: Condvar,
}

/// A slot taken: dropping it frees it.
pub(crate) struct Slot<'s> {
    slots: &'s Slots,
    key: (AccountId, Region),
}

impl Slots {
    /// At most `limit` (at least 1) at once in each account and region.
    pub(crate) fn new(limit: usize) -> Slots {
        Slots {
            limit: limit.max(1),
            taken: Mutex::new(HashMap::new()),
            freed: Condvar::new(),
        }
    }

    /// Waits for a slot in `account`/`region`; `None` if `give_up` says so while it waits
    /// (the session was cancelled).
    pub(crate) fn take(
        &self,
        account: &AccountId,
        region: &Region,
        give_up: impl Fn() -> bool,
    ) -> Option<Slot<'_>> {
        let key = (account.clone(), region.clone());
        let mut taken = lock(&self.taken);
        loop {
            let n = taken.entry(key.clone()).or_default();
            if *n < self.limit {
                *n += 1;
                return Some(Slot { slots: self, key });
            }
            if give_up() {
                return None;
            }
            taken = self
                .freed
                .wait_timeout(taken, Duration::from_millis(200))
                .map(|(guard, _)| guard)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut taken = lock(&self.slots.taken);
        if let Some(n) = taken.get_mut(&self.key) {
            *n = n.saturating_sub(1);
        }
        drop(taken);
        self.slots.freed.notify_all();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn no_more_than_the_limit_run_in_one_account_and_region() {
        let slots = Slots::new(2);
        let (a, b): (AccountId, AccountId) =
            ("222222222222".parse().unwrap(), "333333333333".parse().unwrap());
        let region: Region = "us-east-1".parse().unwrap();
        let (running, most, most_b) = (AtomicUsize::new(0), AtomicUsize::new(0), AtomicUsize::new(0));
        std::thread::scope(|scope| {
            for i in 0..8 {
                let (slots, a, b, region) = (&slots, &a, &b, &region);
                let (running, most, most_b) = (&running, &most, &most_b);
                scope.spawn(move || {
                    let account = if i < 6 { a } else { b };
                    let _slot = slots.take(account, region, || false).unwrap();
                    if i < 6 {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                    } else {
                        most_b.fetch_add(1, Ordering::SeqCst);
                    }
                    std::thread::sleep(Duration::from_millis(30));
                    if i < 6 {
                        running.fetch_sub(1, Ordering::SeqCst);
                    }
                });
            }
        });
        assert_eq!(
            most.load(Ordering::SeqCst),
            2,
            "two at once in 222222222222, never more"
        );
        assert_eq!(
            most_b.load(Ordering::SeqCst),
            2,
            "another account has slots of its own"
        );
    }

    #[test]
    fn a_cancelled_wait_gives_up() {
        let slots = Slots::new(1);
        let account: AccountId = "222222222222".parse().unwrap();
        let region: Region = "us-east-1".parse().unwrap();
        let _held = slots.take(&account, &region, || false).unwrap();
        assert!(slots.take(&account, &region, || true).is_none());
    }
}
