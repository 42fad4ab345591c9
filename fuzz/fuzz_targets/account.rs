//! `Account::decode` on arbitrary bytes: never panics; whatever it accepts re-encodes to
//! the same bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    triesync_fuzz::checks::check_account(data);
});
