//! A whole pack, as read from the store, of an unencrypted repository (so that the fuzzer gets
//! past the AEAD to the header's length, its zstd frame, its JSON and the checks).
#![no_main]

mod common;

use bulwark_repo::Id;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let repo = common::repo();
    let pack = Id::of_file(data);
    if let Ok(entries) = repo.pack_header(&pack, data) {
        // Every entry the decoder accepts is inside the pack: reading it must not panic.
        for e in &entries {
            let start = e.offset as usize;
            let sealed = &data[start..start + e.length as usize];
            let _ = repo.open_block(e, sealed, &|| "fuzz".into());
        }
    }
});
