//! An estate file (TOML): what a user gives every command.
#![no_main]

use bulwark_model::Estate;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(estate) = Estate::parse("fuzz.toml", text) {
        // What validation promises: every instance is in an account the file defines.
        for instance in &estate.instances {
            assert!(estate.account(&instance.account).is_some());
        }
    }
});
