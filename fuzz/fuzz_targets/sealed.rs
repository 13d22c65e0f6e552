//! Sealed metadata of an unencrypted repository: a zstd frame, which must never decompress to
//! more than its limit nor allocate what a lying frame header declares. The limit is 64 MiB
//! here (1 GiB for real metadata: the same code), so that scripts/fuzz's malloc limit of
//! 256 MiB catches any allocation the data does not justify.
#![no_main]

use std::sync::{Arc, OnceLock};

use bulwark_repo::{Repository, Secret};
use bulwark_storage::MemoryBackend;
use libfuzzer_sys::fuzz_target;

fn repo() -> &'static Repository {
    static REPO: OnceLock<Repository> = OnceLock::new();
    REPO.get_or_init(|| {
        Repository::init(Arc::new(MemoryBackend::default()), &Secret::None).expect("a repository in memory")
    })
}

fuzz_target!(|data: &[u8]| {
    const LIMIT: usize = 64 << 20;
    if let Ok(plain) = repo()
        .keys()
        .open(data, b"bulwark index", LIMIT, &|| "fuzz".into())
    {
        assert!(plain.len() <= LIMIT);
    }
});
