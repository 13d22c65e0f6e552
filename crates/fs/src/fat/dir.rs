//! FAT directories: 32-byte entries, long names in VFAT entries before their short entry.

use super::{Inner, MAX_DIR_BYTES};
use crate::bytes::{le16, le32};
use crate::error::{FsError, Result};
use crate::model::{DirEntry, FileKind, FsType, Metadata, Name, NodeId, Timestamp};

const ATTR_READ_ONLY: u8 = 0x01;
const ATTR_VOLUME_ID: u8 = 0x08;
const ATTR_DIRECTORY: u8 = 0x10;
const ATTR_LFN: u8 = 0x0f;

/// A directory's bytes as runs on disk: (byte offset, bytes).
pub(crate) type Runs = Vec<(u64, Vec<u8>)>;

/// A short (8.3) directory entry.
pub(crate) struct Entry {
    raw: [u8; 32],
    pub size: u32,
}

impl Entry {
    fn attr(&self) -> u8 {
        self.raw[11]
    }

    pub fn is_dir(&self) -> bool {
        self.attr() & ATTR_DIRECTORY != 0
    }

    /// The first cluster; the high half exists on FAT32 only.
    pub fn cluster(&self, t: FsType) -> u32 {
        let hi = if t == FsType::Fat32 {
            u32::from(le16(&self.raw, 20)) << 16
        } else {
            0
        };
        hi | u32::from(le16(&self.raw, 26))
    }

    pub fn metadata(&self, node: NodeId) -> Metadata {
        let r = &self.raw;
        let ro = self.attr() & ATTR_READ_ONLY != 0;
        let (kind, mode) = if self.is_dir() {
            (FileKind::Dir, 0o755)
        } else {
            (FileKind::File, 0o644)
        };
        let tenths = u32::from(r[13]).min(199);
        let crtime = fat_time(le16(r, 16), le16(r, 14))
            .map(|t| Timestamp::new(t.secs + i64::from(tenths / 100), (tenths % 100) * 10_000_000));
        Metadata {
            kind,
            size: if self.is_dir() { 0 } else { u64::from(self.size) },
            mode: if ro { mode & !0o222 } else { mode },
            uid: 0,
            gid: 0,
            atime: fat_time(le16(r, 18), 0),
            mtime: fat_time(le16(r, 24), le16(r, 22)).unwrap_or_default(),
            ctime: None,
            crtime,
            nlink: 1,
            ino: node.0,
            rdev: None,
        }
    }
}

/// A FAT date and time as seconds since 1970 as if UTC; `None` for a zero date.
fn fat_time(date: u16, time: u16) -> Option<Timestamp> {
    if date == 0 {
        return None;
    }
    let year = 1980 + i64::from(date >> 9);
    let month = i64::from((date >> 5) & 0xf).clamp(1, 12);
    let day = i64::from(date & 0x1f).max(1);
    let secs = i64::from(time >> 11) * 3600 + i64::from((time >> 5) & 0x3f) * 60 + i64::from(time & 0x1f) * 2;
    Some(Timestamp::new(
        crate::model::days_from_civil(year, month, day) * 86400 + secs,
        0,
    ))
}

/// The live short entry at byte `node` (what a [`NodeId`] of FAT names).
pub(crate) fn entry_at(fs: &Inner, node: NodeId) -> Result<Entry> {
    let mut raw = [0u8; 32];
    fs.read_into(node.0, &mut raw)?;
    if raw[0] == 0 || raw[0] == 0xe5 || raw[11] & 0x3f == ATTR_LFN || raw[11] & ATTR_VOLUME_ID != 0 {
        return Err(FsError::damaged("FAT: no live directory entry here", node.0));
    }
    Ok(Entry {
        size: le32(&raw, 28),
        raw,
    })
}

/// The fixed root directory of FAT12/16, or FAT32's root cluster chain.
pub(crate) fn root_bytes(fs: &Inner) -> Result<Runs> {
    if fs.bpb.fat_type == FsType::Fat32 {
        return cluster_bytes(fs, fs.bpb.root_cluster);
    }
    let mut buf = vec![0u8; fs.bpb.root_len as usize];
    fs.read_into(fs.bpb.root_start, &mut buf)?;
    Ok(vec![(fs.bpb.root_start, buf)])
}

/// A directory's cluster chain, at most 2 MiB (65536 entries).
pub(crate) fn cluster_bytes(fs: &Inner, first: u32) -> Result<Runs> {
    let cs = fs.bpb.cluster_size;
    let max = MAX_DIR_BYTES.div_ceil(cs);
    let chain = fs.chain(first, Some(max + 1))?;
    if chain.len() as u64 > max {
        return Err(FsError::damaged(
            format!("FAT directory at cluster {first} is over 65536 entries (or its chain loops)"),
            fs.cluster_offset(first)?,
        ));
    }
    let mut out = Vec::with_capacity(chain.len());
    for c in chain {
        let at = fs.cluster_offset(c)?;
        let mut buf = vec![0u8; cs as usize];
        fs.read_into(at, &mut buf)?;
        out.push((at, buf));
    }
    Ok(out)
}

/// The volume label entry of the root directory.
pub(crate) fn root_label(fs: &Inner) -> Result<Option<String>> {
    for (_, bytes) in root_bytes(fs)? {
        for e in bytes.chunks_exact(32) {
            if e[0] == 0 {
                return Ok(None);
            }
            if e[0] != 0xe5 && e[11] & 0x3f != ATTR_LFN && e[11] & ATTR_VOLUME_ID != 0 {
                let s: String = e[..11].iter().map(|&c| cp437(c)).collect();
                return Ok(Some(s.trim_end().to_string()).filter(|s| !s.is_empty()));
            }
        }
    }
    Ok(None)
}

struct Lfn {
    checksum: u8,
    /// The sequence number the next entry must have; 0 when complete.
    expect: u8,
    chars: Vec<u16>,
}

fn short_checksum(name: &[u8]) -> u8 {
    name.iter().fold(0u8, |sum, &c| {
        ((sum & 1) << 7).wrapping_add(sum >> 1).wrapping_add(c)
    })
}

/// The entries of a directory, long names where they match their short entry.
pub(crate) fn parse(fs: &Inner, runs: &Runs) -> Result<Vec<DirEntry>> {
    let mut out = Vec::new();
    let mut lfn: Option<Lfn> = None;
    for (base, bytes) in runs {
        for (i, e) in bytes.chunks_exact(32).enumerate() {
            if e[0] == 0 {
                return Ok(out);
            }
            if e[0] == 0xe5 {
                lfn = None;
                continue;
            }
            let attr = e[11];
            if attr & 0x3f == ATTR_LFN {
                let seq = e[0] & 0x1f;
                if e[0] & 0x40 != 0 {
                    lfn = Some(Lfn {
                        checksum: e[13],
                        expect: seq,
                        chars: vec![0xffff; usize::from(seq) * 13],
                    });
                }
                let ok = matches!(&lfn, Some(l) if seq >= 1 && seq == l.expect && e[13] == l.checksum);
                match (&mut lfn, ok) {
                    (Some(l), true) => {
                        let at = usize::from(seq - 1) * 13;
                        let offs = [1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30];
                        for (k, o) in offs.iter().enumerate() {
                            l.chars[at + k] = le16(e, *o);
                        }
                        l.expect -= 1;
                    }
                    _ => lfn = None,
                }
                continue;
            }
            if attr & ATTR_VOLUME_ID != 0 {
                lfn = None;
                continue;
            }
            let long = lfn
                .take()
                .filter(|l| l.expect == 0 && l.checksum == short_checksum(&e[..11]));
            let name = match long {
                Some(l) => {
                    let end = l
                        .chars
                        .iter()
                        .position(|&c| c == 0 || c == 0xffff)
                        .unwrap_or(l.chars.len());
                    String::from_utf16_lossy(&l.chars[..end])
                }
                None => short_name(e),
            };
            if name == "." || name == ".." {
                continue;
            }
            if name.is_empty() {
                return Err(FsError::damaged(
                    "FAT directory entry with an empty name",
                    base + i as u64 * 32,
                ));
            }
            let node = NodeId(base + i as u64 * 32);
            if attr & ATTR_DIRECTORY != 0 && fs.bpb.fat_type != FsType::Fat32 && le16(e, 26) == 0 {
                return Err(FsError::damaged(
                    format!("FAT directory {name:?} has no cluster"),
                    node.0,
                ));
            }
            out.push(DirEntry {
                name: Name(name.into_bytes()),
                node,
                kind: Some(if attr & ATTR_DIRECTORY != 0 {
                    FileKind::Dir
                } else {
                    FileKind::File
                }),
            });
        }
    }
    Ok(out)
}

/// An 8.3 name, lower-cased where the NT flags say (0x08 base, 0x10 extension).
fn short_name(e: &[u8]) -> String {
    let mut base: Vec<u8> = e[..8].to_vec();
    if base[0] == 0x05 {
        base[0] = 0xe5;
    }
    let lower = |s: &[u8], on: bool| -> String {
        let t = s.iter().rposition(|&c| c != b' ').map_or(&s[..0], |p| &s[..=p]);
        t.iter()
            .map(|&c| {
                if on {
                    cp437(c.to_ascii_lowercase())
                } else {
                    cp437(c)
                }
            })
            .collect()
    };
    let b = lower(&base, e[12] & 0x08 != 0);
    let x = lower(&e[8..11], e[12] & 0x10 != 0);
    if x.is_empty() {
        b
    } else {
        format!("{b}.{x}")
    }
}

const CP437_HIGH: &str = "ÇüéâäàåçêëèïîìÄÅÉæÆôöòûùÿÖÜ¢£¥₧ƒáíóúñÑªº¿⌐¬½¼¡«»░▒▓│┤╡╢╖╕╣║╗╝╜╛┐└┴┬├─┼╞╟╚╔╩╦╠═╬╧╨╤╥╙╘╒╓╫╪┘┌█▄▌▐▀αßΓπΣσµτΦΘΩδ∞φε∩≡±≥≤⌠⌡÷≈°∙·√ⁿ²■\u{a0}";

/// A byte of code page 437, the OEM code page of short names (mkfs.fat's and mtools'
/// default).
pub(crate) fn cp437(c: u8) -> char {
    if c < 0x80 {
        char::from(c)
    } else {
        CP437_HIGH
            .chars()
            .nth(usize::from(c - 0x80))
            .unwrap_or('\u{fffd}')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_page_and_checksum() {
        assert_eq!(CP437_HIGH.chars().count(), 128);
        assert_eq!(cp437(0x81), 'ü');
        assert_eq!(cp437(0xff), '\u{a0}');
        let mut e = [b' '; 32];
        e[..8].copy_from_slice(b"README  ");
        e[8..11].copy_from_slice(b"TXT");
        e[12] = 0x18;
        assert_eq!(short_name(&e), "readme.txt");
        assert_eq!(fat_time(0, 0), None);
        // 2020-02-29 13:37:58.
        let d = (40 << 9) | (2 << 5) | 29;
        let t = (13 << 11) | (37 << 5) | 29;
        assert_eq!(fat_time(d, t), Some(Timestamp::new(1_582_983_478, 0)));
    }
}
