//! `decode_request` (a `POST /v1/nodes` body): never panics; accepted bodies re-encode to
//! the same bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    triesync_fuzz::checks::check_request(data);
});
