//! A message off a session queue, as the appliance and the worker read them (anyone who can
//! write the queue can put one there): the sealed envelope opened with a session's key, then
//! the message inside; and an instance record, which a worker's `done` carries.
#![no_main]

use bulwark_engine::channel::{Channel, SessionKey, Side};
use bulwark_engine::record::InstanceRecord;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // A fixed key: inputs sealed with it (the seeds) reach the message decoder.
    let Some(key) = SessionKey::from_hex(&"42".repeat(32)) else {
        return;
    };
    for side in [Side::Appliance, Side::Worker] {
        if let Ok(channel) = Channel::new(&key, side) {
            let _ = channel.open(text);
        }
    }
    let _ = InstanceRecord::parse(text);
});
