//! The file index of a restore point: the path, kind, mode, owner, size and modification time
//! of every entry of every filesystem of the volume, so that "which restore points hold this
//! file, and in what version" is answered without reading any volume.
//!
//! The index is in chunks of at most 512 KiB, each stored like a block (sealed into a pack,
//! named by its keyed hash, listed by an index file), which the manifest lists in order. A
//! chunk ends where the hash of an entry's path says so (once it holds at least
//! [`MIN_CHUNK`] bytes), so that an entry added or changed in one directory changes one chunk
//! or two and the next backup's index reuses the others as they are.
//!
//! A chunk is `"bwf1"` then entries, each `kind (u8) || mode (u32 LE) || uid (u32 LE) ||
//! gid (u32 LE) || size (u64 LE) || mtime seconds (i64 LE) || mtime nanoseconds (u32 LE) ||
//! path length (u16 LE) || path`, the path as raw bytes, `/1/etc/hosts` (partition number
//! first, as `bulwark files` names it).

use serde::{Deserialize, Serialize};

use crate::error::RepoError;
use crate::id::Id;
use crate::map::MAP_CHUNK_MAX;
use crate::repository::{Index, Repository};

/// The first bytes of a file index chunk.
pub const FILES_MAGIC: &[u8; 4] = b"bwf1";
/// The file index version this program writes and reads.
pub const FILE_INDEX_VERSION: u32 = 1;
/// A chunk may end once it holds this many bytes.
pub const MIN_CHUNK: usize = 64 * 1024;
/// Largest chunk: a block, so that it packs like one.
pub const MAX_CHUNK: usize = MAP_CHUNK_MAX;
/// Longest path an entry holds; a longer one is left out (and counted as a problem).
pub const MAX_PATH: usize = u16::MAX as usize;
/// Most chunks an index lists (64 GiB of entries: far more than any filesystem's).
pub const MAX_CHUNKS: usize = 1 << 17;
/// Most problems an index keeps in words, and the longest of them.
pub const MAX_PROBLEMS: usize = 100;
const MAX_PROBLEM_LEN: usize = 1024;
/// Bytes an entry takes before its path.
const ENTRY_HEADER: usize = 1 + 4 + 4 + 4 + 8 + 8 + 4 + 2;
/// An entry's path hash ends a chunk when its low bits are zero: about every 1,024 entries
/// past [`MIN_CHUNK`] (some 150 KiB chunks for typical paths).
const CUT_MASK: u32 = (1 << 10) - 1;

/// The manifest's record of its file index.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileIndex {
    /// The index's version ([`FILE_INDEX_VERSION`]).
    pub version: u32,
    /// Entries in all chunks.
    pub entries: u64,
    /// The chunks, in order (ids of blobs stored like blocks).
    pub chunks: Vec<Id>,
    /// What could not be indexed (an unsupported partition, a damaged directory), the first
    /// [`MAX_PROBLEMS`] of them: what is under them is missing from the index.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
    /// How many problems in all.
    #[serde(default)]
    pub problem_count: u64,
}

/// What an entry is, as the index records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// Anything else (a device, a FIFO, a socket, a reparse point).
    Other,
}

impl EntryKind {
    /// Its name: `file`, `dir`, `symlink` or `other`.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::File => "file",
            EntryKind::Dir => "dir",
            EntryKind::Symlink => "symlink",
            EntryKind::Other => "other",
        }
    }

    fn code(self) -> u8 {
        match self {
            EntryKind::File => b'f',
            EntryKind::Dir => b'd',
            EntryKind::Symlink => b'l',
            EntryKind::Other => b'o',
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            b'f' => EntryKind::File,
            b'd' => EntryKind::Dir,
            b'l' => EntryKind::Symlink,
            b'o' => EntryKind::Other,
            _ => return None,
        })
    }
}

/// One entry of a file index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileEntry {
    /// Its path, raw bytes: `/1/etc/hosts`.
    pub path: Vec<u8>,
    /// What it is.
    pub kind: EntryKind,
    /// Permission bits with setuid, setgid and sticky.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Bytes.
    pub size: u64,
    /// Last modification: seconds since 1970 (UTC).
    pub mtime_secs: i64,
    /// And nanoseconds.
    pub mtime_nanos: u32,
}

/// Builds the chunks of a file index from entries in walk order.
#[derive(Debug, Default)]
pub struct FileIndexBuilder {
    chunk: Vec<u8>,
    entries: u64,
    problems: Vec<String>,
    problem_count: u64,
}

impl FileIndexBuilder {
    /// Adds `entry`; answers a chunk when one is complete, to be stored.
    pub fn push(&mut self, entry: &FileEntry) -> Option<Vec<u8>> {
        if entry.path.len() > MAX_PATH {
            self.problem(format!(
                "{}...: a path of {} bytes, too long to index",
                String::from_utf8_lossy(&entry.path[..64]),
                entry.path.len()
            ));
            return None;
        }
        let len = ENTRY_HEADER + entry.path.len();
        // A chunk that the entry would overflow ends before it.
        let full = (self.chunk.len() + len > MAX_CHUNK).then(|| self.take());
        if self.chunk.is_empty() {
            self.chunk.extend_from_slice(FILES_MAGIC);
        }
        let c = &mut self.chunk;
        c.push(entry.kind.code());
        c.extend_from_slice(&entry.mode.to_le_bytes());
        c.extend_from_slice(&entry.uid.to_le_bytes());
        c.extend_from_slice(&entry.gid.to_le_bytes());
        c.extend_from_slice(&entry.size.to_le_bytes());
        c.extend_from_slice(&entry.mtime_secs.to_le_bytes());
        c.extend_from_slice(&entry.mtime_nanos.to_le_bytes());
        c.extend_from_slice(&(entry.path.len() as u16).to_le_bytes());
        c.extend_from_slice(&entry.path);
        self.entries += 1;
        if full.is_some() {
            return full;
        }
        let hash = blake3::hash(&entry.path);
        let low = u32::from_le_bytes([hash.as_bytes()[0], hash.as_bytes()[1], hash.as_bytes()[2], 0]);
        (self.chunk.len() >= MIN_CHUNK && low & CUT_MASK == 0).then(|| self.take())
    }

    /// Records what could not be indexed.
    pub fn problem(&mut self, what: String) {
        self.problem_count += 1;
        if self.problems.len() < MAX_PROBLEMS {
            let mut what = what;
            if what.len() > MAX_PROBLEM_LEN {
                let mut cut = MAX_PROBLEM_LEN;
                while !what.is_char_boundary(cut) {
                    cut -= 1;
                }
                what.truncate(cut);
            }
            self.problems.push(what);
        }
    }

    /// The last chunk (if any entry is left), and the index to record with the chunks' ids,
    /// in order, once stored.
    pub fn finish(mut self) -> (Option<Vec<u8>>, FileIndex) {
        let last = (!self.chunk.is_empty()).then(|| self.take());
        let index = FileIndex {
            version: FILE_INDEX_VERSION,
            entries: self.entries,
            chunks: Vec::new(),
            problems: self.problems,
            problem_count: self.problem_count,
        };
        (last, index)
    }

    fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.chunk)
    }
}

/// Decodes a chunk: every entry, whole and of a known kind.
pub fn decode_chunk(bytes: &[u8]) -> Result<Vec<FileEntry>, String> {
    if bytes.len() > MAX_CHUNK {
        return Err(format!("{} bytes, more than a chunk's {MAX_CHUNK}", bytes.len()));
    }
    let mut rest = bytes
        .strip_prefix(FILES_MAGIC.as_slice())
        .ok_or("not a file index chunk (no bwf1 magic)")?;
    let mut entries = Vec::new();
    while !rest.is_empty() {
        let (header, tail) = rest
            .split_at_checked(ENTRY_HEADER)
            .ok_or("an entry's header is cut short")?;
        let kind = EntryKind::from_code(header[0])
            .ok_or_else(|| format!("an entry of unknown kind {:#04x}", header[0]))?;
        let u32_at =
            |at: usize| u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]]);
        let u64_at = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&header[at..at + 8]);
            b
        };
        let path_len = usize::from(u16::from_le_bytes([header[33], header[34]]));
        let (path, tail) = tail
            .split_at_checked(path_len)
            .ok_or_else(|| format!("a path of {path_len} bytes is longer than the chunk"))?;
        if !path.starts_with(b"/") {
            return Err(format!(
                "a path that does not start with /: {:?}",
                String::from_utf8_lossy(path)
            ));
        }
        let mtime_nanos = u32_at(29);
        if mtime_nanos >= 1_000_000_000 {
            return Err(format!("{mtime_nanos} nanoseconds, a second or more"));
        }
        entries.push(FileEntry {
            path: path.to_vec(),
            kind,
            mode: u32_at(1),
            uid: u32_at(5),
            gid: u32_at(9),
            size: u64::from_le_bytes(u64_at(13)),
            mtime_secs: i64::from_le_bytes(u64_at(21)),
            mtime_nanos,
        });
        rest = tail;
    }
    Ok(entries)
}

/// Checks a manifest's file index against the format's limits.
pub fn check(index: &FileIndex) -> Result<(), String> {
    if index.version != FILE_INDEX_VERSION {
        return Err(format!(
            "file index version {} is unknown: this bulwark reads version {FILE_INDEX_VERSION}",
            index.version
        ));
    }
    if index.chunks.len() > MAX_CHUNKS {
        return Err(format!(
            "a file index of {} chunks, more than the format's {MAX_CHUNKS}",
            index.chunks.len()
        ));
    }
    if index.problems.len() > MAX_PROBLEMS || index.problems.iter().any(|p| p.len() > MAX_PROBLEM_LEN) {
        return Err(format!(
            "a file index with more than {MAX_PROBLEMS} problems, or one longer than {MAX_PROBLEM_LEN} bytes"
        ));
    }
    Ok(())
}

impl Repository {
    /// Calls `f` with the entries of a file index, a chunk at a time, in order.
    pub fn for_each_file<E: From<RepoError>>(
        &self,
        index: &Index,
        files: &FileIndex,
        mut f: impl FnMut(&[FileEntry]) -> Result<(), E>,
    ) -> Result<(), E> {
        for id in &files.chunks {
            let bytes = self.read_blob(index, id)?;
            let entries = decode_chunk(&bytes)
                .map_err(|e| RepoError::Corrupt(format!("file index chunk {}: {e}", id.short())))?;
            f(&entries)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, size: u64) -> FileEntry {
        FileEntry {
            path: path.as_bytes().to_vec(),
            kind: EntryKind::File,
            mode: 0o644,
            uid: 1000,
            gid: 100,
            size,
            mtime_secs: -5,
            mtime_nanos: 999_999_999,
        }
    }

    /// Every chunk of `entries`, built and decoded back.
    fn build(entries: &[FileEntry]) -> (Vec<Vec<u8>>, FileIndex) {
        let mut b = FileIndexBuilder::default();
        let mut chunks: Vec<Vec<u8>> = entries.iter().filter_map(|e| b.push(e)).collect();
        let (last, index) = b.finish();
        chunks.extend(last);
        (chunks, index)
    }

    #[test]
    fn entries_come_back_as_they_went_in_across_chunks() {
        let entries: Vec<FileEntry> = (0..20_000)
            .map(|i| entry(&format!("/1/usr/share/doc/package-{i}/changelog.gz"), i))
            .collect();
        let (chunks, index) = build(&entries);
        assert_eq!(index.entries, 20_000);
        assert!(chunks.len() > 2, "{} chunks", chunks.len());
        assert!(chunks.iter().all(|c| c.len() <= MAX_CHUNK));
        let back: Vec<FileEntry> = chunks.iter().flat_map(|c| decode_chunk(c).unwrap()).collect();
        assert_eq!(back, entries);
    }

    #[test]
    fn a_change_in_one_place_changes_few_chunks() {
        let mut entries: Vec<FileEntry> = (0..40_000)
            .map(|i| entry(&format!("/1/home/u/f{i}"), i))
            .collect();
        let (before, _) = build(&entries);
        entries.insert(20_000, entry("/1/home/u/new", 1));
        entries[30_000].size += 1;
        let (after, _) = build(&entries);
        let kept = after.iter().filter(|c| before.contains(c)).count();
        assert!(
            kept + 3 >= before.len(),
            "{kept} of {} chunks kept across two changes",
            before.len()
        );
    }

    #[test]
    fn a_path_too_long_is_left_out_and_said() {
        let mut b = FileIndexBuilder::default();
        assert!(b
            .push(&entry(&format!("/1/{}", "a".repeat(MAX_PATH)), 1))
            .is_none());
        b.push(&entry("/1/ok", 1));
        let (last, index) = b.finish();
        assert_eq!(index.entries, 1);
        assert_eq!(index.problem_count, 1);
        assert!(index.problems[0].contains("too long"), "{:?}", index.problems);
        assert_eq!(decode_chunk(&last.unwrap()).unwrap().len(), 1);
    }

    /// The example of docs/repository-format.md, byte for byte.
    #[test]
    fn a_chunk_is_laid_out_as_the_format_document_says() {
        let mut b = FileIndexBuilder::default();
        b.push(&FileEntry {
            mtime_secs: 1_700_000_000,
            mtime_nanos: 0,
            size: 20,
            ..entry("/1/etc/hosts", 0)
        });
        let (chunk, _) = b.finish();
        let documented = "6277663166a4010000e803000064000000140000000000000000f15365000000\
                          00000000000c002f312f6574632f686f737473";
        assert_eq!(hex::encode(chunk.unwrap()), documented);
    }

    #[test]
    fn damaged_chunks_are_refused() {
        let (chunks, _) = build(&[entry("/1/etc/hosts", 3)]);
        let good = &chunks[0];
        assert!(decode_chunk(b"bwm2").is_err());
        assert!(decode_chunk(&good[..good.len() - 1])
            .unwrap_err()
            .contains("longer than the chunk"));
        assert!(decode_chunk(&good[..10]).unwrap_err().contains("cut short"));
        let mut bad = good.clone();
        bad[4] = b'?';
        assert!(decode_chunk(&bad).unwrap_err().contains("unknown kind"));
        let mut bad = good.clone();
        bad[4 + ENTRY_HEADER] = b'x';
        assert!(decode_chunk(&bad).unwrap_err().contains("start with /"));
        assert!(decode_chunk(&vec![0; MAX_CHUNK + 1]).is_err());
        let mut index = FileIndex {
            version: 2,
            ..FileIndex::default()
        };
        assert!(check(&index).unwrap_err().contains("version 2"));
        index.version = 1;
        index.problems = vec!["x".repeat(MAX_PROBLEM_LEN + 1)];
        assert!(check(&index).is_err());
    }
}
