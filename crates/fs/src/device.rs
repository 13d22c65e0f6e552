//! The block device every reader reads from: a disk image, a block device, a window onto a
//! partition; adapters elsewhere make repository restore points (`bulwark_mover::PointDevice`)
//! and EBS snapshots (`bulwark_engine::direct::SnapshotDevice`) one.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use crate::error::{FsError, Result};

/// Something to read bytes from at any offset, from many threads at once. Reads never cross
/// `size()`: the readers check before they read.
pub trait Device: Send + Sync {
    /// The size in bytes.
    fn size(&self) -> u64;
    /// Fills `buf` with the bytes at `offset`; all of them or an error.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
}

impl<D: Device + ?Sized> Device for Arc<D> {
    fn size(&self) -> u64 {
        (**self).size()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        (**self).read_at(offset, buf)
    }
}

impl<D: Device + ?Sized> Device for Box<D> {
    fn size(&self) -> u64 {
        (**self).size()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        (**self).read_at(offset, buf)
    }
}

impl<D: Device + ?Sized> Device for &D {
    fn size(&self) -> u64 {
        (**self).size()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        (**self).read_at(offset, buf)
    }
}

/// A disk image or a block device, read with positioned reads (no shared file position, so
/// threads need no lock).
#[derive(Debug)]
pub struct FileDevice {
    file: File,
    size: u64,
}

impl FileDevice {
    /// Opens `path` read-only.
    pub fn open(path: &Path) -> io::Result<Self> {
        Self::new(File::open(path)?)
    }

    /// Wraps an open file; its size is where a seek to its end lands (right for block
    /// devices, whose metadata length is 0).
    pub fn new(mut file: File) -> io::Result<Self> {
        use std::io::{Seek, SeekFrom};
        let size = file.seek(SeekFrom::End(0))?;
        Ok(Self { file, size })
    }
}

impl Device for FileDevice {
    fn size(&self) -> u64 {
        self.size
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }
}

/// Bytes in memory as a device: for tests and fuzzing.
#[derive(Debug, Clone)]
pub struct MemDevice(pub Vec<u8>);

impl Device for MemDevice {
    fn size(&self) -> u64 {
        self.0.len() as u64
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let src = usize::try_from(offset)
            .ok()
            .and_then(|start| Some(start..start.checked_add(buf.len())?))
            .and_then(|r| self.0.get(r))
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end of the device"))?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

/// `len` bytes of another device from `start`: a partition.
#[derive(Clone)]
pub struct Window {
    inner: Arc<dyn Device>,
    start: u64,
    len: u64,
}

impl Window {
    /// The window `start..start + len` of `inner`, cut to the device's end.
    pub fn new(inner: Arc<dyn Device>, start: u64, len: u64) -> Self {
        let len = len.min(inner.size().saturating_sub(start));
        Self { inner, start, len }
    }

    /// Where the window starts on the device below.
    pub fn start(&self) -> u64 {
        self.start
    }
}

impl Device for Window {
    fn size(&self) -> u64 {
        self.len
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let end = offset.checked_add(buf.len() as u64);
        if end.is_none_or(|end| end > self.len) {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "read past the end of the partition",
            ));
        }
        let at = self
            .start
            .checked_add(offset)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "offset overflows"))?;
        self.inner.read_at(at, buf)
    }
}

/// Reads `buf.len()` bytes at `offset`, as an [`FsError::Io`] on failure; a read past the
/// device's end is an I/O error too (an extent pointing past the end is damage the caller
/// names when it can).
pub(crate) fn read(dev: &dyn Device, offset: u64, buf: &mut [u8]) -> Result<()> {
    let len = buf.len();
    let past_end = offset.checked_add(len as u64).is_none_or(|end| end > dev.size());
    if past_end {
        return Err(FsError::Io {
            offset,
            len,
            source: io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end of the device"),
        });
    }
    dev.read_at(offset, buf)
        .map_err(|source| FsError::Io { offset, len, source })
}

/// Reads `len` bytes at `offset` into a new buffer, refusing lengths over `max`.
pub(crate) fn read_vec(dev: &dyn Device, offset: u64, len: u64, max: u64, what: &str) -> Result<Vec<u8>> {
    let mut buf = crate::bytes::alloc(len, max, what, offset)?;
    read(dev, offset, &mut buf)?;
    Ok(buf)
}
