//! `decode_node` on arbitrary bytes: never panics; whatever it accepts is canonical
//! (re-encodes to the same bytes) with valid embedded children.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    triesync_fuzz::checks::check_node(data);
});
