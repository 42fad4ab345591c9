//! The scheduler syncing a small state generated from the input (short raw keys, so
//! embedded nodes, extensions, branch values, shared storage tries and codes all occur),
//! then the same program of operations and invariants as the `scheduler` target.
#![no_main]
use libfuzzer_sys::fuzz_target;
use triesync_fuzz::checks::{generated_state, Input, SchedulerRun};

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let check_nodes = input.byte() & 1 == 1;
    let state = generated_state(&mut input);
    SchedulerRun::new(&state, check_nodes).run(&mut input);
});
