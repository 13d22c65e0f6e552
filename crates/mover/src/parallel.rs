//! Running a transfer on several threads: a shared queue of work items taken in order, and a
//! stop flag so that one thread's failure stops the others at their next item.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::error::MoverError;

/// Items `0..len`, handed out in order to whichever thread asks.
pub(crate) struct Queue {
    next: AtomicUsize,
    len: usize,
}

impl Queue {
    pub(crate) fn new(len: usize) -> Self {
        Self {
            next: AtomicUsize::new(0),
            len,
        }
    }

    /// The next item, or `None` when all are taken or the transfer is stopping.
    pub(crate) fn take(&self, stop: &AtomicBool) -> Option<usize> {
        if stop.load(Ordering::Relaxed) {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        (i < self.len).then_some(i)
    }
}

/// Runs `work` on `threads` threads and collects their results; the first error wins, and
/// makes the others stop early. A panic in a thread is re-raised, not turned into an error.
pub(crate) fn run<T: Send>(
    threads: usize,
    work: impl Fn(&AtomicBool) -> Result<T, MoverError> + Sync,
) -> Result<Vec<T>, MoverError> {
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads.max(1))
            .map(|_| {
                s.spawn(|| {
                    let result = work(&stop);
                    if result.is_err() {
                        stop.store(true, Ordering::Relaxed);
                    }
                    result
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}
