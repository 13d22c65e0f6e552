//! Partition tables: GPT (checked by its CRCs, the backup header when the primary is
//! damaged) and MBR (primary, extended and logical partitions; a protective MBR means GPT).
//! Written by hand: both are a few fixed-layout structures, and the crates that read them
//! want `Read + Seek` and panic-free behaviour we would have to check anyway.

use std::collections::HashSet;
use std::fmt;

use crate::bytes::{le16, le32, le64, Bytes};
use crate::crc::crc32;
use crate::device::{read, read_vec, Device};
use crate::error::{FsError, Result};

/// Which table a disk has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableKind {
    /// GUID partition table.
    Gpt,
    /// MBR (DOS) partition table.
    Mbr,
    /// None: the filesystem, if any, is on the whole disk (partition 0).
    None,
}

/// A partition's type as its table records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartType {
    /// A GPT partition type GUID.
    Gpt(Guid),
    /// An MBR partition type byte.
    Mbr(u8),
    /// The whole disk, no table.
    Whole,
}

impl PartType {
    /// The type's usual name.
    pub fn name(&self) -> String {
        match self {
            PartType::Gpt(g) => gpt_type_name(g).map_or_else(|| g.to_string(), str::to_string),
            PartType::Mbr(t) => format!("{:#04x} {}", t, mbr_type_name(*t)),
            PartType::Whole => "whole disk".to_string(),
        }
    }

    /// Whether this is an EFI system partition.
    pub fn is_efi_system(&self) -> bool {
        match self {
            PartType::Gpt(g) => g.to_string() == "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
            PartType::Mbr(t) => *t == 0xef,
            PartType::Whole => false,
        }
    }
}

/// A GUID as GPT stores it (the first three fields little-endian).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Guid(pub [u8; 16]);

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(
            f,
            "{:08X}-{:04X}-{:04X}-{:02X}{:02X}-{:02X}{:02X}{:02X}{:02X}{:02X}{:02X}",
            le32(b, 0),
            le16(b, 4),
            le16(b, 6),
            b[8],
            b[9],
            b[10],
            b[11],
            b[12],
            b[13],
            b[14],
            b[15]
        )
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

/// One partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionEntry {
    /// Its number as Linux numbers it: GPT entries from 1 by slot, MBR primaries 1-4,
    /// logical partitions from 5; 0 is the whole disk.
    pub number: u32,
    /// First byte on the disk.
    pub start: u64,
    /// Length in bytes.
    pub size: u64,
    /// Its type.
    pub part_type: PartType,
    /// The GPT partition name.
    pub name: Option<String>,
    /// The GPT unique partition GUID.
    pub guid: Option<Guid>,
}

/// A disk's partitions.
#[derive(Debug, Clone)]
pub struct PartitionTable {
    /// Which table.
    pub kind: TableKind,
    /// Logical sector size the table uses.
    pub sector_size: u64,
    /// The partitions, by number.
    pub partitions: Vec<PartitionEntry>,
    /// What was wrong but survivable (a damaged primary GPT header, a partition past the
    /// disk's end).
    pub warnings: Vec<String>,
}

const GPT_SIGNATURE: &[u8; 8] = b"EFI PART";
/// Most bytes of GPT entries read (the usual table is 16 KiB).
const MAX_GPT_ENTRIES_BYTES: u64 = 4 << 20;
/// Most logical partitions followed in an extended partition.
const MAX_LOGICAL: usize = 256;

/// Whether the disk has a GPT signature at LBA 1 (for 512 or 4096-byte sectors) or a
/// protective MBR: then it is GPT, valid or not.
pub(crate) fn looks_gpt(dev: &dyn Device, sector0: &[u8]) -> bool {
    if mbr_entries(sector0).iter().any(|e| e.ty == 0xee) && le16(sector0, 510) == 0xaa55 {
        return true;
    }
    [512u64, 4096].iter().any(|&ss| {
        let mut sig = [0u8; 8];
        read(dev, ss, &mut sig).is_ok() && &sig == GPT_SIGNATURE
    })
}

/// Reads the GPT: the primary header and entries if their CRCs match, else the backup's.
pub(crate) fn read_gpt(dev: &dyn Device) -> Result<PartitionTable> {
    let mut errors = Vec::new();
    for ss in [512u64, 4096] {
        let mut sig = [0u8; 8];
        if read(dev, ss, &mut sig).is_err() || &sig != GPT_SIGNATURE {
            // The primary may be gone while the backup lives: try the backup at the end.
            if let Some(last) = (dev.size() / ss).checked_sub(1) {
                if let Ok(t) = gpt_at(dev, ss, last, false) {
                    let mut t = t;
                    t.warnings.insert(
                        0,
                        format!(
                            "primary GPT header missing (no signature at LBA 1, {ss}-byte sectors); using the backup header at LBA {last}"
                        ),
                    );
                    return Ok(t);
                }
            }
            continue;
        }
        match gpt_at(dev, ss, 1, true) {
            Ok(t) => return Ok(t),
            Err(e) => {
                let primary = e.to_string();
                let mut hdr = [0u8; 512];
                let alternate = match read(dev, ss, &mut hdr) {
                    Ok(()) if le64(&hdr, 32) > 1 => le64(&hdr, 32),
                    _ => (dev.size() / ss).saturating_sub(1),
                };
                let last = (dev.size() / ss).saturating_sub(1);
                let mut tried = vec![alternate];
                if last != alternate {
                    tried.push(last);
                }
                for lba in tried {
                    if let Ok(mut t) = gpt_at(dev, ss, lba, false) {
                        t.warnings.insert(
                            0,
                            format!("primary GPT damaged ({primary}); using the backup header at LBA {lba}"),
                        );
                        return Ok(t);
                    }
                }
                errors.push(primary);
            }
        }
    }
    Err(FsError::damaged(
        format!(
            "GPT: neither the primary nor the backup header is valid ({})",
            if errors.is_empty() {
                "no header found".to_string()
            } else {
                errors.join("; ")
            }
        ),
        512,
    ))
}

fn gpt_at(dev: &dyn Device, ss: u64, lba: u64, primary: bool) -> Result<PartitionTable> {
    let at = lba
        .checked_mul(ss)
        .ok_or_else(|| FsError::damaged("GPT header LBA overflows", 0))?;
    let raw = read_vec(dev, at, ss, 4096, "GPT header")?;
    let b = Bytes::new(
        &raw,
        if primary {
            "primary GPT header"
        } else {
            "backup GPT header"
        },
        at,
    );
    if b.slice(0, 8)? != GPT_SIGNATURE {
        return Err(b.damaged(0, "no EFI PART signature"));
    }
    let hsize = b.le32(12)? as usize;
    if !(92..=raw.len()).contains(&hsize) {
        return Err(b.damaged(12, format!("header size {hsize}")));
    }
    let mut h = raw[..hsize].to_vec();
    let stored = le32(&h, 16);
    h[16..20].fill(0);
    if crc32(&h) != stored {
        return Err(b.damaged(16, "header CRC mismatch"));
    }
    if b.le64(24)? != lba {
        return Err(b.damaged(24, format!("header says it is at LBA {} not {lba}", b.le64(24)?)));
    }
    let entries_lba = b.le64(72)?;
    let count = u64::from(b.le32(80)?);
    let esize = u64::from(b.le32(84)?);
    if esize < 128 || esize % 8 != 0 {
        return Err(b.damaged(84, format!("partition entry size {esize}")));
    }
    let total = count
        .checked_mul(esize)
        .filter(|&t| t <= MAX_GPT_ENTRIES_BYTES)
        .ok_or_else(|| b.damaged(80, format!("{count} partition entries of {esize} bytes")))?;
    let eat = entries_lba
        .checked_mul(ss)
        .ok_or_else(|| b.damaged(72, "partition entries LBA overflows"))?;
    let entries = read_vec(dev, eat, total, MAX_GPT_ENTRIES_BYTES, "GPT partition entries")?;
    if crc32(&entries) != b.le32(88)? {
        return Err(b.damaged(88, "partition entries CRC mismatch"));
    }
    let disk_sectors = dev.size() / ss;
    let mut partitions = Vec::new();
    let mut warnings = Vec::new();
    for (i, e) in entries.chunks(esize as usize).enumerate() {
        let ty: [u8; 16] = e[0..16].try_into().unwrap_or([0; 16]);
        if ty == [0; 16] {
            continue;
        }
        let number = i as u32 + 1;
        let first = le64(e, 32);
        let last = le64(e, 40);
        if last < first || first >= disk_sectors {
            warnings.push(format!(
                "partition {number}: LBAs {first}..={last} are outside the disk; skipped"
            ));
            continue;
        }
        let mut end = last + 1;
        if end > disk_sectors {
            warnings.push(format!(
                "partition {number}: ends past the disk's end; cut to the disk"
            ));
            end = disk_sectors;
        }
        let name: Vec<u16> = (0..36)
            .map(|k| le16(e, 56 + 2 * k))
            .take_while(|&c| c != 0)
            .collect();
        let guid: [u8; 16] = e[16..32].try_into().unwrap_or([0; 16]);
        partitions.push(PartitionEntry {
            number,
            start: first * ss,
            size: (end - first) * ss,
            part_type: PartType::Gpt(Guid(ty)),
            name: Some(String::from_utf16_lossy(&name)),
            guid: Some(Guid(guid)),
        });
    }
    Ok(PartitionTable {
        kind: TableKind::Gpt,
        sector_size: ss,
        partitions,
        warnings,
    })
}

#[derive(Clone, Copy)]
struct MbrEntry {
    boot: u8,
    ty: u8,
    start: u32,
    sectors: u32,
}

fn mbr_entries(sector: &[u8]) -> [MbrEntry; 4] {
    let e = |i: usize| {
        let o = 446 + 16 * i;
        MbrEntry {
            boot: sector.get(o).copied().unwrap_or(0),
            ty: sector.get(o + 4).copied().unwrap_or(0),
            start: le32(sector, o + 8),
            sectors: le32(sector, o + 12),
        }
    };
    [e(0), e(1), e(2), e(3)]
}

fn is_extended(ty: u8) -> bool {
    matches!(ty, 0x05 | 0x0f | 0x85)
}

/// Whether sector 0 holds a plausible MBR table: the signature, boot flags 0 or 0x80, at least
/// one partition, every partition starting inside the disk.
pub(crate) fn looks_mbr(sector0: &[u8], disk_size: u64) -> bool {
    if le16(sector0, 510) != 0xaa55 {
        return false;
    }
    let es = mbr_entries(sector0);
    let used: Vec<_> = es.iter().filter(|e| e.ty != 0).collect();
    !used.is_empty()
        && used
            .iter()
            .all(|e| (e.boot == 0 || e.boot == 0x80) && e.start != 0 && u64::from(e.start) * 512 < disk_size)
}

/// Reads an MBR table: primaries as 1-4, logical partitions of the extended one from 5.
pub(crate) fn read_mbr(dev: &dyn Device, sector0: &[u8]) -> Result<PartitionTable> {
    let disk = dev.size();
    let mut partitions = Vec::new();
    let mut warnings = Vec::new();
    let mut push = |number: u32, start: u64, sectors: u64, ty: u8, warnings: &mut Vec<String>| {
        let start_b = start.saturating_mul(512);
        if start_b >= disk || sectors == 0 {
            warnings.push(format!(
                "partition {number}: sectors {start}+{sectors} are outside the disk; skipped"
            ));
            return;
        }
        let mut size = sectors.saturating_mul(512);
        if start_b.saturating_add(size) > disk {
            warnings.push(format!(
                "partition {number}: ends past the disk's end; cut to the disk"
            ));
            size = disk - start_b;
        }
        partitions.push(PartitionEntry {
            number,
            start: start_b,
            size,
            part_type: PartType::Mbr(ty),
            name: None,
            guid: None,
        });
    };
    let mut extended = None;
    for (i, e) in mbr_entries(sector0).iter().enumerate() {
        if e.ty == 0 {
            continue;
        }
        if is_extended(e.ty) {
            if extended.is_none() {
                extended = Some(u64::from(e.start));
            }
            continue;
        }
        push(
            i as u32 + 1,
            u64::from(e.start),
            u64::from(e.sectors),
            e.ty,
            &mut warnings,
        );
    }
    if let Some(ext) = extended {
        let mut ebr = ext;
        let mut seen = HashSet::new();
        let mut number = 5;
        loop {
            if !seen.insert(ebr) || seen.len() > MAX_LOGICAL {
                warnings.push(format!(
                    "extended partition: the chain of logical partitions loops at sector {ebr}"
                ));
                break;
            }
            let mut s = [0u8; 512];
            if ebr.saturating_mul(512) >= disk
                || read(dev, ebr * 512, &mut s).is_err()
                || le16(&s, 510) != 0xaa55
            {
                warnings.push(format!(
                    "extended partition: no valid boot record at sector {ebr}"
                ));
                break;
            }
            let es = mbr_entries(&s);
            if es[0].ty != 0 && !is_extended(es[0].ty) {
                push(
                    number,
                    ebr + u64::from(es[0].start),
                    u64::from(es[0].sectors),
                    es[0].ty,
                    &mut warnings,
                );
                number += 1;
            }
            if is_extended(es[1].ty) && es[1].start != 0 {
                ebr = ext + u64::from(es[1].start);
            } else {
                break;
            }
        }
    }
    partitions.sort_by_key(|p| p.number);
    Ok(PartitionTable {
        kind: TableKind::Mbr,
        sector_size: 512,
        partitions,
        warnings,
    })
}

fn gpt_type_name(g: &Guid) -> Option<&'static str> {
    Some(match g.to_string().as_str() {
        "C12A7328-F81F-11D2-BA4B-00A0C93EC93B" => "EFI System",
        "21686148-6449-6E6F-744E-656564454649" => "BIOS boot",
        "0FC63DAF-8483-4772-8E79-3D69D8477DE4" => "Linux filesystem",
        "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709" => "Linux root (x86-64)",
        "B921B045-1DF0-41C3-AF44-4C6F280D3FAE" => "Linux root (ARM64)",
        "933AC7E1-2EB4-4F13-B844-0E14E2AEF915" => "Linux home",
        "BC13C2FF-59E6-4262-A352-B275FD6F7172" => "Linux extended boot",
        "E6D6D379-F507-44C2-A23C-238F2A3DF928" => "Linux LVM",
        "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F" => "Linux swap",
        "A19D880F-05FC-4D3B-A006-743F0F84911E" => "Linux RAID",
        "CA7D7CCB-63ED-4C53-861C-1742536059CC" => "Linux LUKS",
        "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7" => "Microsoft basic data",
        "E3C9E316-0B5C-4DB8-817D-F92DF00215AE" => "Microsoft reserved",
        "DE94BBA4-06D1-4D40-A16A-BFD50179D6AC" => "Windows recovery",
        "6A898CC3-1DD2-11B2-99A6-080020736631" => "ZFS",
        _ => return None,
    })
}

fn mbr_type_name(t: u8) -> &'static str {
    match t {
        0x01 => "FAT12",
        0x04 | 0x06 | 0x0e => "FAT16",
        0x07 => "NTFS/exFAT",
        0x0b | 0x0c => "FAT32",
        0x17 | 0x27 => "hidden NTFS",
        0x82 => "Linux swap",
        0x83 => "Linux",
        0x8e => "Linux LVM",
        0xee => "GPT protective",
        0xef => "EFI System",
        0xfd => "Linux RAID",
        _ => "unknown",
    }
}
