//! Progress of a transfer, as counters any thread can read while the work goes on (the CLI
//! draws a bar from them; a worker reports them over its queue), and the transfer's stop
//! switch: whoever holds the progress can cancel the transfer.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::error::MoverError;

/// Counters of one backup or restore.
#[derive(Debug, Default)]
pub struct Progress {
    /// Bytes to process in total.
    pub total: AtomicU64,
    /// Bytes processed so far.
    pub done: AtomicU64,
    cancelled: AtomicBool,
}

impl Progress {
    /// Stops the transfer at its next block: it fails with [`MoverError::Cancelled`], and a
    /// backup writes no restore point.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }

    /// Fails if the transfer was cancelled; the threads ask before each block.
    pub(crate) fn checkpoint(&self) -> Result<(), MoverError> {
        if self.cancelled.load(Ordering::Relaxed) {
            Err(MoverError::Cancelled)
        } else {
            Ok(())
        }
    }

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
