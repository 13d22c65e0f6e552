//! The JSON of a pack header, opened.
#![no_main]

use bulwark_repo::{decode, BLOCK_SIZE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(entries) = decode::pack_header(data, BLOCK_SIZE, 1 << 26) {
        for e in entries {
            assert!(u64::from(e.offset) + u64::from(e.length) <= 1 << 26);
            assert!(e.raw_length <= BLOCK_SIZE);
        }
    }
});
