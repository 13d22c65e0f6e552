//! An IAM policy document (JSON), as the embedded cloud evaluates those a role, a key or a
//! queue is given: identity, resource and either.
#![no_main]

use bulwark_cloud::policy::Policy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = Policy::parse(text);
    let _ = Policy::parse_identity(text);
    let _ = Policy::parse_resource(text);
});
