//! A chunk of a restore point's file index.
#![no_main]

use bulwark_repo::decode;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(entries) = decode::file_index_chunk(data) {
        // Every entry came from the input: their paths cannot add up to more than it holds.
        let total: usize = entries.iter().map(|e| e.path.len()).sum();
        assert!(total <= data.len());
        assert!(entries.iter().all(|e| e.path.starts_with(b"/") && e.mtime_nanos < 1_000_000_000));
    }
});
