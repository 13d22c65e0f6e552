//! A whole pack, as read from the store, of an unencrypted repository (so that the fuzzer gets
//! past the AEAD to the header's length, its zstd frame, its JSON and the checks).
#![no_main]

use std::sync::{Arc, OnceLock};

use bulwark_repo::{Id, Repository, Secret};
use bulwark_storage::MemoryBackend;
use libfuzzer_sys::fuzz_target;

fn repo() -> &'static Repository {
    static REPO: OnceLock<Repository> = OnceLock::new();
    REPO.get_or_init(|| {
        Repository::init(Arc::new(MemoryBackend::default()), &Secret::None).expect("a repository in memory")
    })
}

fuzz_target!(|data: &[u8]| {
    let repo = repo();
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
