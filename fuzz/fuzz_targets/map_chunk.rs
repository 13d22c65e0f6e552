//! A block map chunk (manifest version 2); the first 16 bytes give the range the manifest
//! lists it for.
#![no_main]

use bulwark_repo::decode;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 16 {
        return;
    }
    let (range, chunk) = data.split_at(16);
    let start = u64::from_le_bytes(range[..8].try_into().unwrap_or_default());
    let end = u64::from_le_bytes(range[8..].try_into().unwrap_or_default());
    if let Ok(runs) = decode::map_chunk(chunk, start, end) {
        let mut next = start;
        for run in runs {
            assert!(run.start >= next && !run.ids.is_empty());
            next = run.start + run.ids.len() as u64;
            assert!(next <= end);
        }
    }
});
