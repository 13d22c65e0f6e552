//! Bounds-checked field access on blocks read from disk: every read of a field past the end
//! of its block is a [`FsError::Damaged`], never a panic.

use crate::error::{FsError, Result};

/// A block read from disk, with what it is and where it was (for error messages).
#[derive(Clone, Copy)]
pub(crate) struct Bytes<'a> {
    pub data: &'a [u8],
    pub what: &'static str,
    pub at: u64,
}

impl<'a> Bytes<'a> {
    pub fn new(data: &'a [u8], what: &'static str, at: u64) -> Self {
        Self { data, what, at }
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    fn short(&self, off: usize, len: usize) -> FsError {
        FsError::damaged(
            format!(
                "{}: field of {len} bytes at offset {off} is past its end ({} bytes)",
                self.what,
                self.data.len()
            ),
            self.at.saturating_add(off as u64),
        )
    }

    /// The `len` bytes at `off`.
    pub fn slice(&self, off: usize, len: usize) -> Result<&'a [u8]> {
        off.checked_add(len)
            .and_then(|end| self.data.get(off..end))
            .ok_or_else(|| self.short(off, len))
    }

    /// A sub-block of `len` bytes at `off`, for fields relative to it.
    pub fn sub(&self, off: usize, len: usize) -> Result<Bytes<'a>> {
        Ok(Bytes {
            data: self.slice(off, len)?,
            what: self.what,
            at: self.at.saturating_add(off as u64),
        })
    }

    fn array<const N: usize>(&self, off: usize) -> Result<[u8; N]> {
        let s = self.slice(off, N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    pub fn u8(&self, off: usize) -> Result<u8> {
        self.data.get(off).copied().ok_or_else(|| self.short(off, 1))
    }
    pub fn le16(&self, off: usize) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array(off)?))
    }
    pub fn le32(&self, off: usize) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(off)?))
    }
    pub fn le64(&self, off: usize) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(off)?))
    }
    pub fn be16(&self, off: usize) -> Result<u16> {
        Ok(u16::from_be_bytes(self.array(off)?))
    }
    pub fn be32(&self, off: usize) -> Result<u32> {
        Ok(u32::from_be_bytes(self.array(off)?))
    }
    pub fn be64(&self, off: usize) -> Result<u64> {
        Ok(u64::from_be_bytes(self.array(off)?))
    }

    /// A damaged-structure error about this block, at `off` within it.
    pub fn damaged(&self, off: usize, why: impl std::fmt::Display) -> FsError {
        FsError::damaged(
            format!("{}: {why}", self.what),
            self.at.saturating_add(off as u64),
        )
    }
}

/// Little-endian and big-endian reads on plain slices, for code that already checked lengths
/// (returns 0 past the end instead of panicking; callers must have checked).
pub(crate) fn le16(b: &[u8], off: usize) -> u16 {
    let mut a = [0u8; 2];
    if let Some(s) = b.get(off..off.saturating_add(2)) {
        a.copy_from_slice(s);
    }
    u16::from_le_bytes(a)
}

/// See [`le16`].
pub(crate) fn le32(b: &[u8], off: usize) -> u32 {
    let mut a = [0u8; 4];
    if let Some(s) = b.get(off..off.saturating_add(4)) {
        a.copy_from_slice(s);
    }
    u32::from_le_bytes(a)
}

/// See [`le16`].
pub(crate) fn le64(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    if let Some(s) = b.get(off..off.saturating_add(8)) {
        a.copy_from_slice(s);
    }
    u64::from_le_bytes(a)
}

/// See [`le16`].
pub(crate) fn be32(b: &[u8], off: usize) -> u32 {
    let mut a = [0u8; 4];
    if let Some(s) = b.get(off..off.saturating_add(4)) {
        a.copy_from_slice(s);
    }
    u32::from_be_bytes(a)
}

/// See [`le16`].
pub(crate) fn be64(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    if let Some(s) = b.get(off..off.saturating_add(8)) {
        a.copy_from_slice(s);
    }
    u64::from_be_bytes(a)
}

/// A buffer of `len` zero bytes, refusing absurd lengths read from disk: no structure this
/// crate reads in one piece is larger than `max`.
pub(crate) fn alloc(len: u64, max: u64, what: &str, at: u64) -> Result<Vec<u8>> {
    if len > max {
        return Err(FsError::damaged(
            format!("{what}: length {len} is over the limit of {max}"),
            at,
        ));
    }
    let len = usize::try_from(len).map_err(|_| FsError::damaged(format!("{what}: length {len}"), at))?;
    Ok(vec![0u8; len])
}
