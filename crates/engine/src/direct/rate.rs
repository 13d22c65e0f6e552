//! Pacing the block calls of one snapshot under EBS's quota.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The most `GetSnapshotBlock` or `PutSnapshotBlock` requests per second EBS accepts for one
/// snapshot (a fixed quota).
pub const SNAPSHOT_REQUESTS_PER_SECOND: f64 = 1000.0;

/// Attempts of one call before a throttled or unavailable EBS is reported.
pub const ATTEMPTS: u32 = crate::retry::Retry::BLOCKS.attempts;

/// The rate the limiter never goes below, however often EBS throttles.
const MIN_RATE: f64 = 10.0;
/// Additive increase: the rate grows by this many requests per second for each second of
/// calls that succeed.
const RATE_GROWTH_PER_SECOND: f64 = 100.0;
/// The bucket holds this long's worth of requests: short bursts, never a second's worth.
const BURST: Duration = Duration::from_millis(50);

/// Paces the block calls of one snapshot, shared by the threads that transfer it: a token
/// bucket refilled at the allowed rate, capped at [`SNAPSHOT_REQUESTS_PER_SECOND`], and AIMD
/// on that rate: halved at each throttle, grown additively while calls succeed.
#[derive(Debug)]
pub struct RateLimiter {
    ceiling: f64,
    bucket: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    /// Requests per second allowed now.
    rate: f64,
    /// Requests that may start without waiting.
    tokens: f64,
    /// When `tokens` was last refilled.
    refilled: Instant,
}

impl Bucket {
    fn capacity(&self) -> f64 {
        (self.rate * BURST.as_secs_f64()).max(1.0)
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity());
        self.refilled = now;
    }
}

impl RateLimiter {
    /// A limiter allowing at most `ceiling` requests per second (starting there).
    pub fn new(ceiling: f64) -> Self {
        let ceiling = ceiling.max(MIN_RATE);
        let bucket = Bucket {
            rate: ceiling,
            tokens: 0.0,
            refilled: Instant::now(),
        };
        Self {
            ceiling,
            bucket: Mutex::new(bucket),
        }
    }

    /// A limiter for one snapshot's block calls.
    pub fn per_snapshot() -> Self {
        Self::new(SNAPSHOT_REQUESTS_PER_SECOND)
    }

    /// The requests per second allowed now.
    pub fn rate(&self) -> f64 {
        self.lock().rate
    }

    /// Waits until one more request may start.
    pub fn acquire(&self) {
        loop {
            let wait = {
                let mut bucket = self.lock();
                bucket.refill(Instant::now());
                if bucket.tokens >= 1.0 {
                    bucket.tokens -= 1.0;
                    return;
                }
                Duration::from_secs_f64((1.0 - bucket.tokens) / bucket.rate)
            };
            std::thread::sleep(wait);
        }
    }

    /// A request succeeded: grow the rate additively (per second of successes, not per
    /// success, so that it grows linearly whatever the rate).
    pub fn succeeded(&self) {
        let mut bucket = self.lock();
        bucket.rate = (bucket.rate + RATE_GROWTH_PER_SECOND / bucket.rate).min(self.ceiling);
    }

    /// A request was throttled: halve the rate, and spend what the bucket held so that the
    /// other threads slow down at once too.
    pub fn throttled(&self) {
        let mut bucket = self.lock();
        bucket.rate = (bucket.rate / 2.0).max(MIN_RATE);
        bucket.tokens = bucket.tokens.min(0.0);
    }

    fn lock(&self) -> MutexGuard<'_, Bucket> {
        crate::lock(&self.bucket)
    }
}
