//! One retry policy for every cloud call the engine makes. What may be retried is decided by
//! the error's kind ([`ErrorKind::retryable`]), never by its message; how often and how long to
//! wait is the policy's budget. The AWS provider makes one attempt per call (its SDK's own
//! retries are off), so the budgets here are the only ones: [`Retry::CONTROL`] for the calls
//! of a plan's steps, [`Retry::BLOCKS`] for the EBS direct APIs' block calls, which also feed a
//! [`RateLimiter`].

use std::time::{Duration, Instant};

use bulwark_cloud::{CloudError, ErrorKind};
use bulwark_model::Action;

use crate::direct::RateLimiter;

/// How a call is retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retry {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// The pause after the first failed attempt; doubled at each attempt, with jitter.
    pub first_pause: Duration,
    /// The longest pause.
    pub max_pause: Duration,
}

/// A call that failed for good.
#[derive(Debug)]
pub enum Gave {
    /// AWS refused it: retrying cannot help, and (for a creating call) nothing was made.
    Refused(CloudError),
    /// AWS kept throttling it, or was unavailable, at every attempt; a creating call may have
    /// made something.
    Up {
        /// The API.
        action: Action,
        /// Attempts made.
        attempts: u32,
        /// The last answer.
        last: CloudError,
    },
}

impl Gave {
    /// The last error AWS answered.
    pub fn error(self) -> CloudError {
        match self {
            Gave::Refused(e) | Gave::Up { last: e, .. } => e,
        }
    }
}

impl Retry {
    /// The calls of a plan's steps: 7 attempts from 100 ms, doubling (about 6 s in all), which
    /// outlasts EC2's request throttling and IAM's propagation of a fresh instance profile.
    pub const CONTROL: Retry = Retry {
        attempts: 7,
        first_pause: Duration::from_millis(100),
        max_pause: Duration::from_secs(15),
    };

    /// Block calls of the EBS direct APIs: 10 attempts from 25 ms, at most 5 s apart, jittered
    /// so that the threads of a throttled transfer do not come back together.
    pub const BLOCKS: Retry = Retry {
        attempts: 10,
        first_pause: Duration::from_millis(25),
        max_pause: Duration::from_secs(5),
    };

    /// The same budget with another first pause (tests shorten it).
    pub fn starting_at(self, first_pause: Duration) -> Retry {
        Retry { first_pause, ..self }
    }

    /// Runs `call` until it succeeds, retrying what its error's kind allows. With a
    /// `limiter`, each attempt waits its turn and tells the limiter how it went.
    pub fn run<T>(
        &self,
        action: Action,
        limiter: Option<&RateLimiter>,
        mut call: impl FnMut() -> Result<T, CloudError>,
    ) -> Result<T, Gave> {
        let mut pause = self.first_pause;
        let mut attempt = 1;
        loop {
            if let Some(l) = limiter {
                l.acquire();
            }
            let error = match call() {
                Ok(value) => {
                    if let Some(l) = limiter {
                        l.succeeded();
                    }
                    return Ok(value);
                }
                Err(e) if e.kind.retryable() => e,
                Err(e) => return Err(Gave::Refused(e)),
            };
            if error.kind == ErrorKind::Throttled {
                if let Some(l) = limiter {
                    l.throttled();
                }
            }
            if attempt >= self.attempts {
                tracing::warn!(%action, attempts = attempt, code = %error.code, "gave up retrying");
                return Err(Gave::Up {
                    action,
                    attempts: attempt,
                    last: error,
                });
            }
            tracing::debug!(%action, attempt, kind = error.kind.code(), code = %error.code, "retrying");
            std::thread::sleep(jittered(pause));
            pause = (pause * 2).min(self.max_pause);
            attempt += 1;
        }
    }
}

impl Retry {
    /// Runs a call that creates something. Its answer may be lost after AWS made the change (a
    /// timeout, a dropped connection: the `Unavailable` kind): then, before calling again, the
    /// caller's `find` looks for what the call made, and that is taken instead of making a
    /// second. A conflict after such a loss (the name exists now) is looked for too. Calls
    /// with a client token need no `find`: AWS answers a repeated token with the first result.
    pub fn run_creating<T>(
        &self,
        action: Action,
        mut call: impl FnMut() -> Result<T, CloudError>,
        mut find: impl FnMut() -> Result<Option<T>, CloudError>,
    ) -> Result<T, Gave> {
        let mut pause = self.first_pause;
        let mut attempt = 1;
        let mut maybe_made = false;
        loop {
            let error = match call() {
                Ok(value) => return Ok(value),
                Err(e) => e,
            };
            maybe_made |= error.kind == ErrorKind::Unavailable;
            tracing::debug!(%action, attempt, kind = error.kind.code(), code = %error.code, maybe_made, "a creating call failed");
            let look = maybe_made && matches!(error.kind, ErrorKind::Unavailable | ErrorKind::Conflict);
            if look {
                // Let the change show before looking for it.
                std::thread::sleep(jittered(pause));
                if let Some(made) = find().map_err(Gave::Refused)? {
                    return Ok(made);
                }
            }
            // After a lost answer, whether something was made is unknown: `Up`, never `Refused`.
            if !error.kind.retryable() && !maybe_made {
                return Err(Gave::Refused(error));
            }
            if !error.kind.retryable() || attempt >= self.attempts {
                return Err(Gave::Up {
                    action,
                    attempts: attempt,
                    last: error,
                });
            }
            if !look {
                std::thread::sleep(jittered(pause));
            }
            pause = (pause * 2).min(self.max_pause);
            attempt += 1;
        }
    }
}

/// Waits until `check` answers a final state: `Ok(true)` ready, `Ok(false)` not yet, each
/// check retried as `retry` says; gives up after `timeout`.
pub fn wait_until(
    retry: &Retry,
    action: Action,
    timeout: Duration,
    mut check: impl FnMut() -> Result<bool, CloudError>,
) -> Result<(), Gave> {
    let deadline = Instant::now() + timeout;
    let mut pause = retry.first_pause;
    loop {
        if retry.run(action, None, &mut check)? {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Gave::Refused(CloudError::new(
                action,
                ErrorKind::Unavailable,
                "Timeout",
                format!("not ready after {timeout:?}"),
            )));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_secs(15));
    }
}

/// Between half of `pause` and all of it, at random.
fn jittered(pause: Duration) -> Duration {
    let mut bytes = [0u8; 4];
    let fraction = match ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes) {
        Ok(()) => f64::from(u32::from_le_bytes(bytes)) / f64::from(u32::MAX),
        Err(_) => 1.0,
    };
    pause.mul_f64(0.5 + fraction / 2.0)
}
