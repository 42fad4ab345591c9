//! `decode_blobs` (an HTTP answer): the first byte is the item bound, the rest the body.
//! Never panics; the bound is honoured; accepted bodies re-encode to the same bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some((&max, body)) = data.split_first() {
        triesync_fuzz::checks::check_blobs(body, usize::from(max));
    }
});
