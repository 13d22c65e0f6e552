//! An LRU cache of aligned chunks in front of a slow device (a snapshot read block by block
//! over the network): filesystem metadata is read in small pieces, often the same ones again,
//! and file data sequentially, which the cache detects and reads ahead of in one larger read.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::device::Device;

/// The chunk size: 512 KiB, the EBS snapshot block size, so one chunk is one block fetched.
pub const CHUNK_SIZE: u64 = 512 * 1024;
/// Default cache size: 64 MiB.
pub const DEFAULT_CAPACITY: u64 = 64 * 1024 * 1024;
/// Most chunks one read-ahead reads at once by default (4 MiB); see [`Cached::with_read_ahead`].
pub const MAX_READ_AHEAD: u64 = 8;
/// How many sequential streams are tracked at once (threads reading different files).
const STREAMS: usize = 8;

/// A [`Device`] that caches another in [`CHUNK_SIZE`] chunks, reads ahead of sequential
/// reads, and counts what it read from the device below. Safe to share between threads; two
/// threads missing the same chunk at once may both read it (counted twice), which costs a
/// read but never a wrong answer.
pub struct Cached<D> {
    inner: D,
    capacity: usize,
    /// Most chunks one read-ahead reads.
    max_ahead: u64,
    state: Mutex<State>,
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
    /// Sequential streams: the chunk each expects to miss next, and how many misses in a row
    /// it has seen (which sizes its next read-ahead).
    streams: Vec<(u64, u32)>,
}

impl<D: Device> Cached<D> {
    /// A cache of [`DEFAULT_CAPACITY`] bytes over `inner`.
    pub fn new(inner: D) -> Self {
        Self::with_capacity(inner, DEFAULT_CAPACITY)
    }

    /// A cache of `capacity` bytes (at least two read-aheads' worth) over `inner`.
    pub fn with_capacity(inner: D, capacity: u64) -> Self {
        let chunks = (capacity / CHUNK_SIZE).max(2 * MAX_READ_AHEAD);
        Self {
            inner,
            capacity: usize::try_from(chunks).unwrap_or(usize::MAX),
            max_ahead: MAX_READ_AHEAD,
            state: Mutex::new(State::default()),
            bytes_read: AtomicU64::new(0),
            reads: AtomicU64::new(0),
        }
    }

    /// Reads ahead of a sequential stream up to `chunks` chunks at once (at least 1, at most
    /// 64; the cache grows to hold two such reads): for a device whose reads wait on a network
    /// but run side by side (a snapshot read block by block over the EBS direct APIs), a
    /// larger read-ahead keeps more requests in flight.
    pub fn with_read_ahead(mut self, chunks: u64) -> Self {
        self.max_ahead = chunks.clamp(1, 64);
        let least = usize::try_from(2 * self.max_ahead).unwrap_or(usize::MAX);
        self.capacity = self.capacity.max(least);
        self
    }

    /// Bytes read from the device below so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read.load(Ordering::Relaxed)
    }

    /// Reads made on the device below so far (one per miss, however many chunks it read).
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// The device below.
    pub fn inner(&self) -> &D {
        &self.inner
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves a consistent map: keep using it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn chunk(&self, index: u64) -> io::Result<Arc<[u8]>> {
        let size = self.inner.size();
        let chunks_total = size.div_ceil(CHUNK_SIZE);
        let count = {
            let mut st = self.lock();
            st.tick += 1;
            let tick = st.tick;
            if let Some((data, used)) = st.chunks.get_mut(&index) {
                let data = data.clone();
                let old = std::mem::replace(used, tick);
                st.order.remove(&old);
                st.order.insert(tick, index);
                return Ok(data);
            }
            // A miss: does it continue a stream? Then read ahead, doubling each time.
            let ahead = match st.streams.iter().position(|&(next, _)| next == index) {
                Some(i) => {
                    let run = st.streams[i].1.saturating_add(1);
                    let ahead = (1u64 << run.min(6)).min(self.max_ahead);
                    st.streams.remove(i);
                    st.streams.push((index + ahead, run));
                    ahead
                }
                None => {
                    if st.streams.len() >= STREAMS {
                        st.streams.remove(0);
                    }
                    st.streams.push((index + 1, 0));
                    1
                }
            };
            // Stop at the device's end and at the first chunk already cached.
            let mut count = 1;
            while count < ahead && index + count < chunks_total && !st.chunks.contains_key(&(index + count)) {
                count += 1;
            }
            count
        };
        let start = index * CHUNK_SIZE;
        let end = (start + count * CHUNK_SIZE).min(size);
        let len = usize::try_from(end.saturating_sub(start))
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "chunk too large"))?;
        let mut buf = vec![0u8; len];
        self.inner.read_at(start, &mut buf)?;
        self.bytes_read.fetch_add(len as u64, Ordering::Relaxed);
        self.reads.fetch_add(1, Ordering::Relaxed);

        let mut st = self.lock();
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

impl<D: Device> Device for Cached<D> {
    fn size(&self) -> u64 {
        self.inner.size()
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let end = offset
            .checked_add(buf.len() as u64)
            .filter(|&end| end <= self.inner.size())
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end of the device"))?;
        let mut pos = offset;
        let mut done = 0usize;
        while pos < end {
            let index = pos / CHUNK_SIZE;
            let chunk = self.chunk(index)?;
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
        // 21 chunks in reads of 1, 2, 4, 8, 6 chunks.
        assert!(c.reads() <= 6, "{} reads", c.reads());
        // Everything cached now: no more reads.
        c.read_at(5, &mut buf).unwrap();
        assert_eq!(c.bytes_read(), data.len() as u64);
        assert!(c.read_at(data.len() as u64 - 10, &mut buf).is_err());
    }

    #[test]
    fn evicts_least_recently_used() {
        let data = vec![7u8; (40 * CHUNK_SIZE) as usize];
        let c = Cached::with_capacity(MemDevice(data), 16 * CHUNK_SIZE);
        let mut b = [0u8; 1];
        for i in (0..40).step_by(2) {
            c.read_at(i * CHUNK_SIZE, &mut b).unwrap();
        }
        assert!(c.lock().chunks.len() <= 16);
        let before = c.bytes_read();
        c.read_at(0, &mut b).unwrap();
        assert_eq!(c.bytes_read(), before + CHUNK_SIZE);
    }
}
