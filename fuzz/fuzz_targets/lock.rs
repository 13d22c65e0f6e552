//! A lock file.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(lock) = bulwark_repo::decode_lock(data) {
        assert!(lock.kind == "shared" || lock.kind == "exclusive");
    }
});
