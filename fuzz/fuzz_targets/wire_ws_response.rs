//! `decode_ws_response` (a WebSocket answer): the first byte is the item bound, the rest
//! the message. Never panics; the bound is honoured; accepted messages re-encode exactly.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some((&max, body)) = data.split_first() {
        triesync_fuzz::checks::check_ws_response(body, usize::from(max));
    }
});
