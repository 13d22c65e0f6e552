//! An LRU cache of aligned chunks in front of a slow device (a snapshot read block by block
//! over the network): filesystem metadata is read in small pieces, often the same ones again,
//! and file data sequentially, which the cache detects and reads ahead of: in one larger read
//! at first, then, once a stream reads whole windows, two windows ahead in the background,
//! chunk by chunk, so that the device below is never idle while the reader copies what came.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::device::Device;

/// The chunk size: 512 KiB, the EBS snapshot block size, so one chunk is one block fetched.
pub const CHUNK_SIZE: u64 = 512 * 1024;
/// Default cache size: 64 MiB.
pub const DEFAULT_CAPACITY: u64 = 64 * 1024 * 1024;
/// Most chunks one read-ahead reads at once by default (4 MiB); see [`Cached::with_read_ahead`].
pub const MAX_READ_AHEAD: u64 = 8;
/// How many sequential streams are tracked at once (threads reading different files).
const STREAMS: usize = 8;
/// Read-aheads a stream has coming in the background at once, in steady state: two, so that
/// while one lands (a window lands whole) the next is already being read.
const BEHIND: u64 = 2;
/// The cache holds at least this many read-aheads: the one being read, those coming in the
/// background, and one more.
const WINDOWS: u64 = BEHIND + 2;

/// A [`Device`] that caches another in [`CHUNK_SIZE`] chunks, reads ahead of sequential
/// reads, and counts what it read from the device below. Safe to share between threads: a
/// chunk being read (by another thread, or ahead in the background) is waited for, not read
/// twice.
pub struct Cached<D> {
    shared: Arc<Shared<D>>,
}

struct Shared<D> {
    inner: D,
    capacity: usize,
    /// Most chunks one read-ahead reads.
    max_ahead: u64,
    state: Mutex<State>,
    /// Signalled whenever chunks being read have landed (or failed).
    landed: Condvar,
    bytes_read: AtomicU64,
    reads: AtomicU64,
}

#[derive(Default)]
struct State {
    /// Chunk index -> (data, last-use tick).
    chunks: HashMap<u64, (Arc<[u8]>, u64)>,
    /// Last-use tick -> chunk index: the least recently used first.
    order: BTreeMap<u64, u64>,
    tick: u64,
    /// Sequential streams, the most recently used last.
    streams: Vec<Stream>,
    /// Chunks being read now.
    reading: BTreeSet<u64>,
}

/// A sequential reader.
#[derive(Clone, Copy)]
struct Stream {
    /// The chunk it is expected to miss next.
    next: u64,
    /// Misses in a row: sizes its next read-ahead.
    run: u32,
    /// The first chunk of the window read in the background: reaching it starts the next.
    trigger: Option<u64>,
}

impl<D: Device + 'static> Cached<D> {
    /// A cache of [`DEFAULT_CAPACITY`] bytes over `inner`.
    pub fn new(inner: D) -> Self {
        Self::with_capacity(inner, DEFAULT_CAPACITY)
    }

    /// A cache of `capacity` bytes (at least four read-aheads' worth) over `inner`.
    pub fn with_capacity(inner: D, capacity: u64) -> Self {
        let chunks = (capacity / CHUNK_SIZE).max(WINDOWS * MAX_READ_AHEAD);
        Self {
            shared: Arc::new(Shared {
                inner,
                capacity: usize::try_from(chunks).unwrap_or(usize::MAX),
                max_ahead: MAX_READ_AHEAD,
                state: Mutex::new(State::default()),
                landed: Condvar::new(),
                bytes_read: AtomicU64::new(0),
                reads: AtomicU64::new(0),
            }),
        }
    }

    /// Reads ahead of a sequential stream up to `chunks` chunks at once (at least 1, at most
    /// 64; the cache grows to hold four such reads): for a device whose reads wait on a
    /// network but run side by side (a snapshot read block by block over the EBS direct
    /// APIs), a larger read-ahead keeps more requests in flight.
    pub fn with_read_ahead(mut self, chunks: u64) -> Self {
        let max_ahead = chunks.clamp(1, 64);
        let least = usize::try_from(WINDOWS * max_ahead).unwrap_or(usize::MAX);
        let shared = Arc::get_mut(&mut self.shared).map(|s| {
            s.max_ahead = max_ahead;
            s.capacity = s.capacity.max(least);
        });
        debug_assert!(shared.is_some(), "set before the cache is shared");
        self
    }

    /// Bytes read from the device below so far.
    pub fn bytes_read(&self) -> u64 {
        self.shared.bytes_read.load(Ordering::Relaxed)
    }

    /// Reads made on the device below so far (one per miss or read-ahead, however many
    /// chunks it read).
    pub fn reads(&self) -> u64 {
        self.shared.reads.load(Ordering::Relaxed)
    }

    /// The device below.
    pub fn inner(&self) -> &D {
        &self.shared.inner
    }

    #[cfg(test)]
    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.lock()
    }
}

impl<D: Device + 'static> Shared<D> {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves a consistent map: keep using it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn chunk(self: &Arc<Self>, index: u64) -> io::Result<Arc<[u8]>> {
        let size = self.inner.size();
        let chunks_total = size.div_ceil(CHUNK_SIZE);
        let mut st = self.lock();
        let (count, ahead) = loop {
            st.tick += 1;
            let tick = st.tick;
            if let Some((data, used)) = st.chunks.get_mut(&index) {
                let data = data.clone();
                let old = std::mem::replace(used, tick);
                st.order.remove(&old);
                st.order.insert(tick, index);
                // The reader reached a window that came in the background: start the next.
                if let Some(i) = st.streams.iter().position(|s| s.trigger == Some(index)) {
                    let next = st.streams[i].next;
                    st.streams[i].trigger = Some(index + self.max_ahead);
                    st.streams[i].next = next + self.max_ahead;
                    self.read_behind(&mut st, next, chunks_total);
                }
                return Ok(data);
            }
            if st.reading.contains(&index) {
                // Another thread (or the background) is reading it: wait for it to land.
                st = self.landed.wait(st).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            break self.plan_miss(&mut st, index, chunks_total);
        };
        for i in index..index + count {
            st.reading.insert(i);
        }
        // In steady state, the windows after this one come in the background meanwhile.
        if ahead == self.max_ahead && ahead > 1 {
            if let Some(s) = st.streams.iter_mut().find(|s| s.next == index + ahead) {
                s.trigger = Some(index + ahead);
                s.next = index + (1 + BEHIND) * ahead;
            }
            for w in 1..=BEHIND {
                self.read_behind(&mut st, index + w * ahead, chunks_total);
            }
        }
        drop(st);
        let read = self.read_chunks(index, count);
        let mut st = self.lock();
        let first = self.land(&mut st, index, count, read);
        drop(st);
        self.landed.notify_all();
        first
    }

    /// How many chunks a miss at `index` reads: more as its stream goes on (doubling up to
    /// the most), stopping at the device's end and at a chunk cached or being read. Answers
    /// them and the read-ahead asked.
    fn plan_miss(&self, st: &mut State, index: u64, chunks_total: u64) -> (u64, u64) {
        let ahead = match st.streams.iter().position(|s| s.next == index) {
            Some(i) => {
                let run = st.streams[i].run.saturating_add(1);
                let ahead = (1u64 << run.min(6)).min(self.max_ahead);
                st.streams.remove(i);
                st.streams.push(Stream {
                    next: index + ahead,
                    run,
                    trigger: None,
                });
                ahead
            }
            None => {
                if st.streams.len() >= STREAMS {
                    st.streams.remove(0);
                }
                st.streams.push(Stream {
                    next: index + 1,
                    run: 0,
                    trigger: None,
                });
                1
            }
        };
        let mut count = 1;
        while count < ahead
            && index + count < chunks_total
            && !st.chunks.contains_key(&(index + count))
            && !st.reading.contains(&(index + count))
        {
            count += 1;
        }
        (count, ahead)
    }

    /// Reads the window of [`Shared::max_ahead`] chunks from `start` in the background (the
    /// chunks not cached nor being read, up to the first that is), each chunk on a thread of
    /// its own and cached as soon as it comes: no chunk waits for the slowest of its window, so
    /// a device whose reads wait on a network (a snapshot) always has reads in flight. A
    /// failure is forgotten: the reader, missing the chunk, reads it itself and gets the error.
    fn read_behind(self: &Arc<Self>, st: &mut State, start: u64, chunks_total: u64) {
        let mut count = 0;
        while count < self.max_ahead
            && start + count < chunks_total
            && !st.chunks.contains_key(&(start + count))
            && !st.reading.contains(&(start + count))
        {
            count += 1;
        }
        if count == 0 {
            return;
        }
        for i in start..start + count {
            st.reading.insert(i);
        }
        let shared = self.clone();
        // One thread starts the window's readers, so that the caller, which holds the lock,
        // does not wait for a thread per chunk to be made.
        let spawned = std::thread::Builder::new()
            .name("read-ahead".into())
            .spawn(move || {
                std::thread::scope(|scope| {
                    for index in start..start + count {
                        let shared = &shared;
                        let read_one = move || {
                            let read = shared.read_chunks(index, 1);
                            let mut st = shared.lock();
                            let _ = shared.land(&mut st, index, 1, read);
                            drop(st);
                            shared.landed.notify_all();
                        };
                        if std::thread::Builder::new().spawn_scoped(scope, read_one).is_err() {
                            // No thread to spare: the reader reads it when it gets there.
                            shared.lock().reading.remove(&index);
                            shared.landed.notify_all();
                        }
                    }
                });
            });
        if spawned.is_err() {
            for i in start..start + count {
                st.reading.remove(&i);
            }
        }
    }

    /// Reads `count` chunks from `index` from the device below.
    fn read_chunks(&self, index: u64, count: u64) -> io::Result<Vec<u8>> {
        let size = self.inner.size();
        let start = index * CHUNK_SIZE;
        let end = (start + count * CHUNK_SIZE).min(size);
        let len = usize::try_from(end.saturating_sub(start))
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "chunk too large"))?;
        let mut buf = vec![0u8; len];
        self.inner.read_at(start, &mut buf)?;
        self.bytes_read.fetch_add(len as u64, Ordering::Relaxed);
        self.reads.fetch_add(1, Ordering::Relaxed);
        Ok(buf)
    }

    /// Caches what a read of `count` chunks from `index` brought (they are no longer being
    /// read), evicting the least recently used beyond the capacity; answers the first chunk.
    fn land(
        &self,
        st: &mut State,
        index: u64,
        count: u64,
        read: io::Result<Vec<u8>>,
    ) -> io::Result<Arc<[u8]>> {
        for i in index..index + count {
            st.reading.remove(&i);
        }
        let buf = read?;
        let mut first = None;
        for (i, piece) in buf.chunks(CHUNK_SIZE as usize).enumerate() {
            let data: Arc<[u8]> = Arc::from(piece);
            let idx = index + i as u64;
            st.tick += 1;
            let tick = st.tick;
            if let Some((_, old)) = st.chunks.insert(idx, (data.clone(), tick)) {
                st.order.remove(&old);
            }
            st.order.insert(tick, idx);
            if first.is_none() {
                first = Some(data);
            }
        }
        while st.chunks.len() > self.capacity {
            let Some((_, victim)) = st.order.pop_first() else {
                break;
            };
            st.chunks.remove(&victim);
        }
        first.ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "chunk past the end"))
    }
}

impl<D: Device + 'static> Device for Cached<D> {
    fn size(&self) -> u64 {
        self.shared.inner.size()
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let end = offset
            .checked_add(buf.len() as u64)
            .filter(|&end| end <= self.shared.inner.size())
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end of the device"))?;
        let mut pos = offset;
        let mut done = 0usize;
        while pos < end {
            let index = pos / CHUNK_SIZE;
            let chunk = self.shared.chunk(index)?;
            let within = (pos - index * CHUNK_SIZE) as usize;
            let n = (chunk.len().saturating_sub(within)).min(buf.len() - done);
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "short chunk"));
            }
            buf[done..done + n].copy_from_slice(&chunk[within..within + n]);
            done += n;
            pos += n as u64;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::MemDevice;

    #[test]
    fn reads_match_and_read_ahead_grows() {
        let data: Vec<u8> = (0..(20 * CHUNK_SIZE + 1000)).map(|i| (i % 251) as u8).collect();
        let c = Cached::with_capacity(MemDevice(data.clone()), 64 * CHUNK_SIZE);
        let mut buf = vec![0u8; 100_000];
        let mut pos = 0u64;
        while pos < data.len() as u64 {
            let n = buf.len().min(data.len() - pos as usize);
            c.read_at(pos, &mut buf[..n]).unwrap();
            assert_eq!(&buf[..n], &data[pos as usize..pos as usize + n]);
            pos += n as u64;
        }
        assert_eq!(c.bytes_read(), data.len() as u64);
        // 21 chunks: reads of 1, 2, 4 and 8 chunks, then the rest chunk by chunk in the
        // background.
        assert!(c.reads() <= 4 + 6, "{} reads", c.reads());
        // Everything cached now: no more reads.
        c.read_at(5, &mut buf).unwrap();
        assert_eq!(c.bytes_read(), data.len() as u64);
        assert!(c.read_at(data.len() as u64 - 10, &mut buf).is_err());
    }

    /// A device that takes a while per read, as a network does, and notes each read's size
    /// in chunks.
    struct Slow(MemDevice, Mutex<Vec<u64>>);

    impl Slow {
        fn new(data: Vec<u8>) -> Self {
            Slow(MemDevice(data), Mutex::default())
        }
    }

    impl Device for Slow {
        fn size(&self) -> u64 {
            self.0.size()
        }
        fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
            std::thread::sleep(std::time::Duration::from_millis(3));
            self.1
                .lock()
                .unwrap()
                .push((buf.len() as u64).div_ceil(CHUNK_SIZE));
            self.0.read_at(offset, buf)
        }
    }

    #[test]
    fn a_stream_is_read_ahead_in_the_background_and_no_chunk_is_read_twice() {
        let size = 200 * CHUNK_SIZE + 77;
        let data: Vec<u8> = (0..size).map(|i| (i % 253) as u8).collect();
        let c = Cached::new(Slow::new(data.clone())).with_read_ahead(16);
        let mut buf = vec![0u8; 300_000];
        let mut pos = 0u64;
        while pos < size {
            let n = buf.len().min((size - pos) as usize);
            c.read_at(pos, &mut buf[..n]).unwrap();
            assert_eq!(&buf[..n], &data[pos as usize..pos as usize + n], "at {pos}");
            pos += n as u64;
        }
        // Every chunk once: the reader waited for the windows coming in the background
        // instead of reading them again, and nothing past the end was asked for.
        assert_eq!(c.bytes_read(), size);
        // Reads of 1, 2, 4, 8 and 16 chunks by the reader, then windows of 16 in the
        // background, chunk by chunk (none waits for the slowest of its window).
        let sizes = c.inner().1.lock().unwrap().clone();
        assert_eq!(sizes[..4], [1, 2, 4, 8], "{sizes:?}");
        assert!(sizes[4..].iter().filter(|n| **n > 1).count() <= 1, "{sizes:?}");
    }

    #[test]
    fn threads_reading_the_same_chunks_read_each_once() {
        let size = 64 * CHUNK_SIZE;
        let data: Vec<u8> = (0..size).map(|i| (i % 241) as u8).collect();
        let c = Arc::new(Cached::new(Slow::new(data.clone())).with_read_ahead(8));
        let readers: Vec<_> = (0..4)
            .map(|_| {
                let (c, data) = (c.clone(), data.clone());
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; CHUNK_SIZE as usize];
                    for i in 0..64 {
                        c.read_at(i * CHUNK_SIZE, &mut buf).unwrap();
                        let at = (i * CHUNK_SIZE) as usize;
                        assert_eq!(buf, data[at..at + buf.len()]);
                    }
                })
            })
            .collect();
        for r in readers {
            r.join().unwrap();
        }
        assert_eq!(c.bytes_read(), size, "each chunk read once");
    }

    #[test]
    fn a_failed_read_ahead_is_the_readers_error_then_reads_again() {
        struct Failing(MemDevice, AtomicU64);
        impl Device for Failing {
            fn size(&self) -> u64 {
                self.0.size()
            }
            fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
                // Every read of the chunks from 40 on fails once.
                if offset >= 40 * CHUNK_SIZE && self.1.fetch_add(1, Ordering::Relaxed) < 2 {
                    return Err(io::Error::other("lost"));
                }
                self.0.read_at(offset, buf)
            }
        }
        let data = vec![5u8; (80 * CHUNK_SIZE) as usize];
        let c = Cached::new(Failing(MemDevice(data), AtomicU64::new(0))).with_read_ahead(8);
        let mut buf = vec![0u8; CHUNK_SIZE as usize];
        let mut failed = 0;
        for i in 0..80 {
            if c.read_at(i * CHUNK_SIZE, &mut buf).is_err() {
                failed += 1;
                // Asked again, it reads.
                c.read_at(i * CHUNK_SIZE, &mut buf).unwrap();
            }
            assert!(buf.iter().all(|b| *b == 5));
        }
        assert!(failed <= 2, "{failed}");
    }

    #[test]
    fn evicts_least_recently_used() {
        let data = vec![7u8; (80 * CHUNK_SIZE) as usize];
        // At least four read-aheads are held: 32 chunks.
        let c = Cached::with_capacity(MemDevice(data), 16 * CHUNK_SIZE);
        assert_eq!(c.shared.capacity, 32);
        let mut b = [0u8; 1];
        for i in (0..80).step_by(2) {
            c.read_at(i * CHUNK_SIZE, &mut b).unwrap();
        }
        assert!(c.lock().chunks.len() <= 32);
        let before = c.bytes_read();
        c.read_at(0, &mut b).unwrap();
        assert_eq!(c.bytes_read(), before + CHUNK_SIZE);
    }
}
