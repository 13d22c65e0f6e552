//! A key file. An accepted one's argon2 parameters are within the bounds (the KDF itself is
//! not run: its cost is what the bounds limit).
#![no_main]

use bulwark_repo::decode;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(file) = decode::key_file(data) {
        if let Some(kdf) = file.kdf {
            assert!(kdf.memory_kib <= decode::ARGON2_MAX_MEMORY_KIB);
            assert!(kdf.passes <= decode::ARGON2_MAX_PASSES);
            assert!(kdf.lanes <= decode::ARGON2_MAX_LANES);
        }
    }
});
