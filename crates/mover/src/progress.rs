//! Progress of a transfer, as counters any thread can read while the work goes on (the CLI
//! draws a bar from them; a worker reports them over its queue).

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of one backup or restore.
#[derive(Debug, Default)]
pub struct Progress {
    /// Bytes to process in total.
    pub total: AtomicU64,
    /// Bytes processed so far.
    pub done: AtomicU64,
}

impl Progress {
    /// Adds processed bytes.
    pub(crate) fn add(&self, bytes: u64) {
        self.done.fetch_add(bytes, Ordering::Relaxed);
    }

    /// (done, total) now.
    pub fn snapshot(&self) -> (u64, u64) {
        (
            self.done.load(Ordering::Relaxed),
            self.total.load(Ordering::Relaxed),
        )
    }
}
