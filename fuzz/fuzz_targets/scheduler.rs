//! The scheduler syncing a fixed small fixture state, bt-walletConfirm (22 nodes, 2 codes,
//! with storage tries and code); byte 0 bit 0 is `check_nodes`, the rest a program of operations:
//! real blobs, arbitrary blobs and damaged real blobs interleaved with `missing`,
//! store lookups, retries, batch writes and crash-resumes. Checks every invariant of
//! `checks::SchedulerRun`: no panic, nothing taken that is not a requested hash, children
//! written before parents, and exactly the state's items stored once all real blobs came.
#![no_main]
use libfuzzer_sys::fuzz_target;
use triesync_fuzz::checks::{Input, SchedulerRun};

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let state = &triesync_fuzz::fixture_states()[0];
    let check_nodes = input.byte() & 1 == 1;
    SchedulerRun::new(state, check_nodes).run(&mut input);
});
