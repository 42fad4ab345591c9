//! `decode_rpc_batch` (a JSON-RPC `debug_dbGet` batch answer): the first byte is the
//! number of calls asked, the rest the body (as UTF-8, lossily). Never panics; never more
//! values than calls; the values survive a canonical re-encoding.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some((&asked, body)) = data.split_first() {
        let body = String::from_utf8_lossy(body);
        triesync_fuzz::checks::check_rpc_batch(&body, usize::from(asked));
    }
});
