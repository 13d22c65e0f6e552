//! Which filesystem a partition holds, by magic numbers. What this crate cannot read is named
//! (an LVM physical volume, LUKS, swap, btrfs, ZFS, ...) so it is reported, never misread.

use crate::bytes::{be32, le16, le32, le64};
use crate::device::{read, Device};
use crate::error::Result;
use crate::model::FsType;

/// What a partition (or whole disk) holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// A filesystem this crate reads.
    Filesystem(FsType),
    /// Something recognised that this crate does not read.
    Unsupported {
        /// What was found, e.g. `LVM2 physical volume`.
        found: String,
    },
    /// The first 256 KiB are zeros: never formatted, or wiped.
    Empty,
    /// Nothing recognised.
    Unknown,
}

/// How much of the start is examined: btrfs's superblock is at 64 KiB, ZFS's uberblocks at
/// 128-256 KiB.
const PROBE: u64 = 256 * 1024;

/// Looks at the start of `dev` and says what it holds.
pub fn detect(dev: &dyn Device) -> Result<Content> {
    let len = dev.size().min(PROBE);
    let mut b = vec![0u8; len as usize];
    read(dev, 0, &mut b)?;
    Ok(detect_bytes(&b))
}

fn at(b: &[u8], off: usize, magic: &[u8]) -> bool {
    b.get(off..off + magic.len()) == Some(magic)
}

fn unsupported(found: &str) -> Content {
    Content::Unsupported {
        found: found.to_string(),
    }
}

/// The detection on the first bytes of a device (up to 256 KiB).
pub(crate) fn detect_bytes(b: &[u8]) -> Content {
    if at(b, 0, b"XFSB") {
        return Content::Filesystem(FsType::Xfs);
    }
    if at(b, 0, b"LUKS\xba\xbe") {
        return unsupported("LUKS encrypted volume");
    }
    for sector in 0..4 {
        let o = sector * 512;
        if at(b, o, b"LABELONE") && at(b, o + 24, b"LVM2 001") {
            return unsupported("LVM2 physical volume");
        }
    }
    if le16(b, 1024 + 56) == 0xEF53 && b.len() >= 2048 {
        return ext_kind(&b[1024..2048]);
    }
    if at(b, 0x10040, b"_BHRfS_M") {
        return unsupported("btrfs");
    }
    if at(b, 3, b"NTFS    ") {
        return Content::Filesystem(FsType::Ntfs);
    }
    if at(b, 3, b"EXFAT   ") {
        return unsupported("exFAT");
    }
    if at(b, 3, b"-FVE-FS-") {
        return unsupported("BitLocker encrypted volume");
    }
    if at(b, 3, b"ReFS\0\0\0\0") {
        return unsupported("ReFS");
    }
    if let Some(t) = crate::fat::probe(b) {
        return Content::Filesystem(t);
    }
    for page in [4096usize, 8192, 16384, 65536] {
        if at(b, page - 10, b"SWAPSPACE2") || at(b, page - 10, b"SWAP-SPACE") {
            return unsupported("Linux swap");
        }
        if at(b, page - 10, b"S1SUSPEND") || at(b, page - 10, b"S2SUSPEND") {
            return unsupported("Linux swap (hibernation image)");
        }
    }
    if le32(b, 0) == 0xa92b_4efc || le32(b, 4096) == 0xa92b_4efc {
        return unsupported("Linux MD RAID member");
    }
    for i in 0..128usize {
        let o = 128 * 1024 + i * 1024;
        let m = le64(b, o);
        if m == 0x00ba_b10c || m == 0x0cb1_ba00_0000_0000 {
            return unsupported("ZFS pool member");
        }
    }
    if at(b, 0x8001, b"CD001") {
        return unsupported("ISO 9660");
    }
    if at(b, 0, b"hsqs") {
        return unsupported("squashfs");
    }
    if at(b, 1024, b"H+") || at(b, 1024, b"HX") {
        return unsupported("HFS+");
    }
    if at(b, 32, b"NXSB") {
        return unsupported("APFS");
    }
    if be32(b, 0) == 0x0000_0000 && b.iter().all(|&x| x == 0) {
        return Content::Empty;
    }
    Content::Unknown
}

/// ext2, ext3 or ext4 by the feature bits of the superblock `sb` (1024 bytes).
pub(crate) fn ext_kind(sb: &[u8]) -> Content {
    let compat = le32(sb, 92);
    let incompat = le32(sb, 96);
    let ro_compat = le32(sb, 100);
    if incompat & 0x8 != 0 {
        return unsupported("ext3/4 external journal device");
    }
    // Beyond filetype, recovery and meta_bg, every incompat bit is ext4's; so are huge_file,
    // gdt_csum, dir_nlink, extra_isize, metadata_csum and their kin among ro_compat bits.
    if incompat & !(0x2 | 0x4 | 0x10) != 0 || ro_compat & !(0x1 | 0x2 | 0x4) != 0 {
        return Content::Filesystem(FsType::Ext4);
    }
    if compat & 0x4 != 0 {
        return Content::Filesystem(FsType::Ext3);
    }
    Content::Filesystem(FsType::Ext2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_what_it_does_not_read() {
        let mut b = vec![0u8; PROBE as usize];
        assert_eq!(detect_bytes(&b), Content::Empty);
        b[512..520].copy_from_slice(b"LABELONE");
        b[536..544].copy_from_slice(b"LVM2 001");
        assert_eq!(detect_bytes(&b), unsupported("LVM2 physical volume"));
        let mut b = vec![0u8; PROBE as usize];
        b[..6].copy_from_slice(b"LUKS\xba\xbe");
        assert_eq!(detect_bytes(&b), unsupported("LUKS encrypted volume"));
        let mut b = vec![0u8; PROBE as usize];
        b[4086..4096].copy_from_slice(b"SWAPSPACE2");
        assert_eq!(detect_bytes(&b), unsupported("Linux swap"));
        let mut b = vec![0u8; PROBE as usize];
        b[0x10040..0x10048].copy_from_slice(b"_BHRfS_M");
        assert_eq!(detect_bytes(&b), unsupported("btrfs"));
        let mut b = vec![0u8; PROBE as usize];
        b[128 * 1024 + 3072..128 * 1024 + 3080].copy_from_slice(&0x00ba_b10cu64.to_le_bytes());
        assert_eq!(detect_bytes(&b), unsupported("ZFS pool member"));
        let mut b = vec![0u8; PROBE as usize];
        b[100] = 1;
        assert_eq!(detect_bytes(&b), Content::Unknown);
    }
}
