//! The JSON of a restore point manifest (version 1 or 2), opened; an accepted one's blocks are
//! walked as a restore would.
#![no_main]

use bulwark_repo::{decode, Config, BLOCK_SIZE, PACK_SIZE, VERSION};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let config = Config {
        version: VERSION,
        id: "00".repeat(16),
        encryption: "none".into(),
        compression: "zstd".into(),
        block_size: BLOCK_SIZE,
        pack_size: PACK_SIZE,
        object_lock: None,
    };
    if let Ok(m) = decode::manifest(data, &config) {
        let blocks = m.block_count();
        for (i, _) in m.block_ids() {
            assert!(i < blocks);
            // Where a restore writes block i: inside the volume.
            let at = i * u64::from(m.block_size);
            assert!(at < m.size);
        }
        for c in &m.map {
            assert!(c.start < c.end && c.end <= blocks);
        }
    }
});
