//! The JSON of a config.
#![no_main]

use bulwark_repo::decode;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(config) = decode::config(data) {
        assert!(decode::PACK_SIZE_RANGE.contains(&config.pack_size));
    }
});
