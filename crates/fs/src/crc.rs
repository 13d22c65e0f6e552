//! CRC-32 (IEEE, for GPT) and CRC-32C (Castagnoli, for XFS v5 and ext4 metadata_csum),
//! table-driven: a few lines do not justify two dependencies.

const fn table(poly: u32) -> [u32; 256] {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ poly } else { c >> 1 };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
}

static IEEE: [u32; 256] = table(0xEDB8_8320);
static CASTAGNOLI: [u32; 256] = table(0x82F6_3B78);

fn update(t: &[u32; 256], mut crc: u32, data: &[u8]) -> u32 {
    for &b in data {
        crc = t[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    crc
}

/// The CRC-32 of zlib and GPT.
pub(crate) fn crc32(data: &[u8]) -> u32 {
    !update(&IEEE, !0, data)
}

/// The raw CRC-32C register update without the final inversion, as Linux's `crc32c()`:
/// ext4 chains these from a seed.
pub(crate) fn crc32c_raw(crc: u32, data: &[u8]) -> u32 {
    update(&CASTAGNOLI, crc, data)
}

/// The standard CRC-32C of `data` with the 4 bytes at `field` counted as zeros: how XFS
/// checksums a block whose checksum is stored inside it.
pub(crate) fn crc32c_skipping(data: &[u8], field: usize) -> u32 {
    let end = field.saturating_add(4).min(data.len());
    let head = data.get(..field.min(data.len())).unwrap_or(&[]);
    let tail = data.get(end..).unwrap_or(&[]);
    let crc = update(&CASTAGNOLI, !0, head);
    let crc = update(&CASTAGNOLI, crc, &[0u8; 4]);
    !update(&CASTAGNOLI, crc, tail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_values() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(!crc32c_raw(!0, b"123456789"), 0xE306_9283);
        let mut d = *b"1234\x00\x00\x00\x0056789";
        assert_eq!(crc32c_skipping(&d, 4), !crc32c_raw(!0, &d));
        d[5] = 7;
        assert_eq!(
            crc32c_skipping(&d, 4),
            !crc32c_raw(!0, b"1234\x00\x00\x00\x0056789")
        );
    }
}
