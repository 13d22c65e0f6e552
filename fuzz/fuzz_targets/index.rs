//! The JSON of an index file, opened; an accepted one is merged into an index.
#![no_main]

use bulwark_repo::{decode, Id, Index, BLOCK_SIZE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(file) = decode::index(data, BLOCK_SIZE) {
        let mut index = Index::default();
        index.add(Id::of_file(data), &file);
        let _ = index.by_pack();
    }
});
