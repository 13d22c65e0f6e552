//! Sealed metadata of an unencrypted repository: a zstd frame, which must never decompress to
//! more than its limit nor allocate what a lying frame header declares. The limit is 64 MiB
//! here (1 GiB for real metadata: the same code), so that scripts/fuzz's malloc limit of
//! 256 MiB catches any allocation the data does not justify.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    const LIMIT: usize = 64 << 20;
    if let Ok(plain) = common::repo()
        .keys()
        .open(data, b"bulwark index", LIMIT, &|| "fuzz".into())
    {
        assert!(plain.len() <= LIMIT);
    }
});
