//! Native run of the core bench: `triesync-bench-core [ACCOUNTS] [RUNS]`, prints JSON.

fn main() {
    let mut args = std::env::args().skip(1);
    let accounts = args.next().map_or(100_000, |a| a.parse().expect("ACCOUNTS: a number"));
    let runs = args.next().map_or(3, |a| a.parse().expect("RUNS: a number"));
    let result = futures::executor::block_on(triesync_bench_core::bench(accounts, runs));
    println!("{}", serde_json::to_string(&result).expect("serialise"));
}
