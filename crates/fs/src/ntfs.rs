//! NTFS through the `ntfs` crate (Colin Finck's: read-only, no unsafe, reads through any
//! `Read + Seek`), mapped to the common metadata. NTFS has no owners or Unix modes: uid and
//! gid are 0, directories 0755 and files 0644, without write bits when read-only. Times come
//! from $STANDARD_INFORMATION (ctime is the MFT record's change time). Reparse points
//! (symlinks, junctions) are [`FileKind::Other`]. Compressed and encrypted files are refused
//! (the crate would return their raw clusters). Metafiles (records 0-15: `$MFT`, `$Bitmap`,
//! ...) are not listed. A [`NodeId`] is the file reference (record number and sequence
//! number), so a stale directory entry is an error, not another file.
//!
//! The crate is not ours to harden: every call into it is wrapped so that a panic on a
//! hostile image becomes [`FsError::Damaged`].

use std::collections::HashSet;
use std::io::{Read, Seek, SeekFrom};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use ntfs::structured_values::{NtfsFileAttributeFlags, NtfsFileNamespace};
use ntfs::{NtfsAttributeFlags, NtfsError, NtfsFile, NtfsReadSeek, NtfsTime};

use crate::device::Device;
use crate::error::{FsError, Result};
use crate::model::{DirEntry, FileData, FileKind, Filesystem, FsType, Metadata, Name, NodeId, Timestamp};

/// Records below this are metafiles.
const FIRST_USER_RECORD: u64 = 16;
/// Most entries one directory may have here (a cycle in a damaged index must end).
const MAX_ENTRIES: usize = 16 << 20;

/// `Read + Seek` over a device, one per operation (the crate wants `&mut`).
struct Reader {
    dev: Arc<dyn Device>,
    pos: u64,
}

impl Read for Reader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.dev.size().saturating_sub(self.pos);
        let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        self.dev.read_at(self.pos, &mut buf[..n])?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for Reader {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        let new = match pos {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.dev.size().checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos =
            new.ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "seek out of range"))?;
        Ok(self.pos)
    }
}

struct Inner {
    dev: Arc<dyn Device>,
    ntfs: ntfs::Ntfs,
}

impl Inner {
    fn reader(&self) -> Reader {
        Reader {
            dev: self.dev.clone(),
            pos: 0,
        }
    }

    /// The file a node names, checking the sequence number when the node has one.
    fn file<'n>(&'n self, r: &mut Reader, node: NodeId) -> Result<NtfsFile<'n>> {
        let record = node.0 & 0xffff_ffff_ffff;
        let seq = (node.0 >> 48) as u16;
        let f = self.ntfs.file(r, record).map_err(err)?;
        if seq != 0 && f.sequence_number() != seq {
            return Err(FsError::damaged(
                format!("NTFS: a directory entry names record {record} sequence {seq}, the record has sequence {}", f.sequence_number()),
                f.position().value().map_or(0, |v| v.get()),
            ));
        }
        Ok(f)
    }
}

fn err(e: NtfsError) -> FsError {
    match e {
        NtfsError::Io(source) => FsError::Io {
            offset: 0,
            len: 0,
            source,
        },
        e => FsError::damaged(format!("NTFS: {e}"), 0),
    }
}

/// Runs `f`, turning a panic inside the `ntfs` crate into damage.
fn guard<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| {
        let msg = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(FsError::damaged(
            format!("NTFS reader failed on this image: {msg}"),
            0,
        ))
    })
}

fn time(t: NtfsTime) -> Timestamp {
    let since_unix = i128::from(t.nt_timestamp()) - 116_444_736_000_000_000;
    let secs = since_unix.div_euclid(10_000_000);
    let nanos = (since_unix.rem_euclid(10_000_000) * 100) as u32;
    Timestamp::new(i64::try_from(secs).unwrap_or(i64::MAX), nanos)
}

/// An NTFS filesystem.
pub struct Ntfs(Arc<Inner>);

impl Ntfs {
    /// Reads the boot sector and the MFT's own record.
    pub fn open(dev: Arc<dyn Device>) -> Result<Self> {
        guard(|| {
            let mut r = Reader {
                dev: dev.clone(),
                pos: 0,
            };
            let ntfs = ntfs::Ntfs::new(&mut r).map_err(err)?;
            Ok(Self(Arc::new(Inner { dev, ntfs })))
        })
    }
}

impl Filesystem for Ntfs {
    fn fs_type(&self) -> FsType {
        FsType::Ntfs
    }

    fn label(&self) -> Option<String> {
        guard(|| {
            let mut r = self.0.reader();
            Ok(match self.0.ntfs.volume_name(&mut r) {
                Some(Ok(n)) => Some(n.name().to_string_lossy()).filter(|s| !s.is_empty()),
                _ => None,
            })
        })
        .ok()
        .flatten()
    }

    fn root(&self) -> NodeId {
        NodeId(5)
    }

    fn read_dir(&self, dir: NodeId) -> Result<Vec<DirEntry>> {
        guard(|| {
            let mut r = self.0.reader();
            let f = self.0.file(&mut r, dir)?;
            if !f.is_directory() {
                return Err(FsError::NotADirectory(format!(
                    "NTFS record {}",
                    dir.0 & 0xffff_ffff_ffff
                )));
            }
            let index = f.directory_index(&mut r).map_err(err)?;
            let mut entries = index.entries();
            let mut out = Vec::new();
            let mut seen = HashSet::new();
            while let Some(e) = entries.next(&mut r) {
                let e = e.map_err(err)?;
                let Some(key) = e.key() else { continue };
                let name = key.map_err(err)?;
                if name.namespace() == NtfsFileNamespace::Dos {
                    continue;
                }
                let reference = e.file_reference();
                let record = reference.file_record_number();
                let text = name.name().to_string_lossy();
                if record < FIRST_USER_RECORD || text == "." {
                    continue;
                }
                if !seen.insert((record, text.clone())) || out.len() >= MAX_ENTRIES {
                    return Err(FsError::damaged(
                        format!("NTFS directory index repeats {text:?} (a cycle)"),
                        0,
                    ));
                }
                let attrs = name.file_attributes();
                let kind = if attrs.contains(NtfsFileAttributeFlags::REPARSE_POINT) {
                    FileKind::Other
                } else if name.is_directory() {
                    FileKind::Dir
                } else {
                    FileKind::File
                };
                out.push(DirEntry {
                    name: Name(text.into_bytes()),
                    node: NodeId(record | (u64::from(reference.sequence_number()) << 48)),
                    kind: Some(kind),
                });
            }
            Ok(out)
        })
    }

    fn metadata(&self, node: NodeId) -> Result<Metadata> {
        guard(|| {
            let mut r = self.0.reader();
            let f = self.0.file(&mut r, node)?;
            let info = f.info().map_err(err)?;
            let attrs = info.file_attributes();
            let dir = f.is_directory();
            let kind = if attrs.contains(NtfsFileAttributeFlags::REPARSE_POINT) {
                FileKind::Other
            } else if dir {
                FileKind::Dir
            } else {
                FileKind::File
            };
            let size = if dir {
                0
            } else {
                match f.data(&mut r, "") {
                    Some(item) => item.map_err(err)?.to_attribute().map_err(err)?.value_length(),
                    None => 0,
                }
            };
            let mode = if dir { 0o755 } else { 0o644 };
            Ok(Metadata {
                kind,
                size,
                mode: if attrs.contains(NtfsFileAttributeFlags::READ_ONLY) {
                    mode & !0o222
                } else {
                    mode
                },
                uid: 0,
                gid: 0,
                atime: Some(time(info.access_time())),
                mtime: time(info.modification_time()),
                ctime: Some(time(info.mft_record_modification_time())),
                crtime: Some(time(info.creation_time())),
                nlink: u32::from(f.hard_link_count()),
                ino: f.file_record_number(),
                rdev: None,
            })
        })
    }

    fn read_link(&self, node: NodeId) -> Result<Vec<u8>> {
        Err(FsError::NotASymlink(format!(
            "NTFS record {} (reparse points are not read)",
            node.0 & 0xffff_ffff_ffff
        )))
    }

    fn open(&self, node: NodeId) -> Result<Box<dyn FileData>> {
        guard(|| {
            let mut r = self.0.reader();
            let f = self.0.file(&mut r, node)?;
            if f.is_directory() {
                return Err(FsError::IsADirectory(format!(
                    "NTFS record {}",
                    node.0 & 0xffff_ffff_ffff
                )));
            }
            let size = match f.data(&mut r, "") {
                Some(item) => {
                    let item = item.map_err(err)?;
                    let a = item.to_attribute().map_err(err)?;
                    if a.flags().intersects(NtfsAttributeFlags::COMPRESSED) {
                        return Err(FsError::unsupported("NTFS compressed file"));
                    }
                    if a.flags().intersects(NtfsAttributeFlags::ENCRYPTED) {
                        return Err(FsError::unsupported("NTFS encrypted (EFS) file"));
                    }
                    a.value_length()
                }
                None => 0,
            };
            Ok(Box::new(NtfsData {
                fs: self.0.clone(),
                node,
                size,
            }) as Box<dyn FileData>)
        })
    }
}

/// An open NTFS file: each read finds the $DATA attribute again (the crate's values borrow
/// the file record); the volume's cache makes that cheap and [`crate::FileReader`] reads in
/// large pieces.
struct NtfsData {
    fs: Arc<Inner>,
    node: NodeId,
    size: u64,
}

impl FileData for NtfsData {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        if offset >= self.size || buf.is_empty() {
            return Ok(0);
        }
        let n = buf
            .len()
            .min(usize::try_from(self.size - offset).unwrap_or(usize::MAX));
        let fs = self.fs.clone();
        let node = self.node;
        guard(|| {
            let mut r = fs.reader();
            let f = fs.file(&mut r, node)?;
            let item = f
                .data(&mut r, "")
                .ok_or_else(|| FsError::damaged("NTFS file lost its $DATA attribute", 0))?
                .map_err(err)?;
            let a = item.to_attribute().map_err(err)?;
            let mut value = a.value(&mut r).map_err(err)?;
            value.seek(&mut r, SeekFrom::Start(offset)).map_err(err)?;
            value.read_exact(&mut r, &mut buf[..n]).map_err(err)?;
            Ok(n)
        })
    }
}
