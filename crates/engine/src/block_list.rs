//! A list of block indexes as a short string, for the session queue: a worker's task carries
//! the blocks changed since the previous backup, and an SQS message holds 256 KiB at most.
//!
//! The list, sorted and without duplicates, is cut into runs of consecutive indexes; each run
//! is two LEB128 numbers, the gap since the end of the previous run and its length; the bytes
//! are in base64. Changes cluster (a file rewritten, a log appended), so a run costs a few
//! bytes whatever its length, and a scattered block three or four.

use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serializer};

/// The most blocks a list holds: a 64 TiB volume (EBS's largest) in 512 KiB blocks.
pub const MAX_BLOCKS: u64 = 1 << 27;

/// `blocks` (sorted, without duplicates) as a string; see the module's doc.
pub fn encode(blocks: &[u64]) -> String {
    let mut bytes = Vec::new();
    let mut next = 0u64;
    let mut i = 0;
    while let Some(&start) = blocks.get(i) {
        let mut len = 1u64;
        while blocks.get(i + len as usize) == Some(&start.saturating_add(len)) {
            len += 1;
        }
        put(&mut bytes, start.saturating_sub(next));
        put(&mut bytes, len);
        next = start.saturating_add(len);
        i += len as usize;
    }
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes)
}

/// The list `text` encodes, checked: runs that do not overlap, never more than
/// [`MAX_BLOCKS`] blocks, no index past `u64`.
pub fn decode(text: &str) -> Result<Vec<u64>, String> {
    let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(text)
        .map_err(|e| format!("a block list is not base64: {e}"))?;
    let mut blocks = Vec::new();
    let mut at = 0usize;
    let mut next = 0u64;
    while at < bytes.len() {
        let gap = take(&bytes, &mut at)?;
        let len = take(&bytes, &mut at)?;
        let start = next
            .checked_add(gap)
            .ok_or("a block list's index is past the largest")?;
        let end = start
            .checked_add(len)
            .ok_or("a block list's run is past the largest index")?;
        if len == 0 || (blocks.len() as u64).saturating_add(len) > MAX_BLOCKS {
            return Err(format!(
                "a block list has an empty run or more than {MAX_BLOCKS} blocks"
            ));
        }
        blocks.extend(start..end);
        next = end;
    }
    Ok(blocks)
}

/// Serializes a block list with [`encode`] (`#[serde(with = "crate::block_list")]`).
pub fn serialize<S: Serializer>(blocks: &[u64], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&encode(blocks))
}

/// Deserializes a block list with [`decode`].
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u64>, D::Error> {
    let text = String::deserialize(deserializer)?;
    decode(&text).map_err(serde::de::Error::custom)
}

fn put(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn take(bytes: &[u8], at: &mut usize) -> Result<u64, String> {
    let mut n = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*at).ok_or("a block list ends inside a number")?;
        *at += 1;
        let bits = u64::from(byte & 0x7f);
        if shift == 63 && bits > 1 {
            return Err("a block list's number is past 64 bits".into());
        }
        n |= bits << shift;
        if byte & 0x80 == 0 {
            return Ok(n);
        }
    }
    Err("a block list's number is past 64 bits".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_round_trip_and_runs_are_short() {
        for blocks in [
            vec![],
            vec![0],
            vec![0, 1, 2, 3, 9, 10, 1 << 40, (1 << 40) + 1],
            (1000..5000).collect::<Vec<u64>>(),
            vec![u64::MAX - 1],
        ] {
            assert_eq!(decode(&encode(&blocks)).expect("decodes"), blocks);
        }
        // A million consecutive blocks in a few bytes; scattered ones in about three each.
        assert!(encode(&(0..1_000_000).collect::<Vec<u64>>()).len() < 8);
        let scattered: Vec<u64> = (0..10_000).map(|i| i * 100).collect();
        assert!(encode(&scattered).len() < 10_000 * 4);
    }

    #[test]
    fn hostile_lists_are_refused() {
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes);
        // A run longer than any volume, an empty run, a number that never ends, one past 64
        // bits, an index past u64, and text that is not base64.
        let huge = {
            let mut v = vec![0];
            put(&mut v, MAX_BLOCKS + 1);
            v
        };
        for bad in [
            b64(&huge),
            b64(&[5, 0]),
            b64(&[0x80, 0x80]),
            b64(&[0xff; 10]),
            b64(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 2]),
            "not base64!".to_owned(),
        ] {
            assert!(decode(&bad).is_err(), "{bad}");
        }
    }
}
