//! `decode_ws_request` (a WebSocket request): never panics; accepted messages re-encode
//! to the same bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    triesync_fuzz::checks::check_ws_request(data);
});
