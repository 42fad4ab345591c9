//! The triesync core alone, timed: a [`Syncer`] run of a synthetic state against an honest
//! [`MemoryPeer`] into a [`MemoryStore`]. No network, no IndexedDB: what is left is the
//! scheduler, keccak256 verification, node decoding and the driver's bookkeeping, so the
//! same run natively and in wasm compares the two compilations of the engine.

use futures::future::{self, FutureExt, LocalBoxFuture};
use std::rc::Rc;
use std::time::Duration;
use triesync_core::driver::{SyncConfig, Syncer};
use triesync_core::peer::{Clock, Peer};
use triesync_core::state::BuiltState;
use triesync_core::store::{Kind, MemoryStore};
use triesync_core::synthetic::{build_synthetic, SyntheticSpec};
use triesync_core::testing::{Behaviour, MemoryPeer};

/// A monotonic millisecond clock whose sleeps never end: the honest in-memory peer answers
/// at once, so the driver's request timeouts never need to fire.
struct BenchClock;

#[cfg(not(target_arch = "wasm32"))]
fn now_ms() -> f64 {
    use std::sync::OnceLock;
    use std::time::Instant;
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_secs_f64() * 1000.0
}

#[cfg(target_arch = "wasm32")]
fn now_ms() -> f64 {
    wasm::performance_now()
}

impl Clock for BenchClock {
    fn now_ms(&self) -> f64 {
        now_ms()
    }
    fn sleep(&self, _: Duration) -> LocalBoxFuture<'static, ()> {
        future::pending().boxed_local()
    }
}

/// One timed sync.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunResult {
    /// Trie nodes + codes written.
    pub items: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Wall time of `Syncer::run`.
    pub ms: f64,
    /// Items per second.
    pub items_per_sec: f64,
    /// The driver's own split (hash/decode/schedule, store writes, store lookups, waits).
    pub process_ms: f64,
    pub commit_ms: f64,
    pub check_ms: f64,
    pub wait_ms: f64,
}

/// The whole bench: the state once, then `runs` syncs.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BenchResult {
    pub accounts: usize,
    pub root: String,
    pub nodes: usize,
    pub codes: usize,
    /// Time to build the synthetic state (not part of the figure).
    pub build_ms: f64,
    pub runs: Vec<RunResult>,
}

/// Syncs `state` once into a fresh in-memory store and checks it arrived whole.
pub async fn sync_once(state: &BuiltState, peer: &MemoryPeer) -> RunResult {
    let store = MemoryStore::new();
    let (syncer, handle) = Syncer::new(state.root, SyncConfig::default());
    handle.add_peer(Rc::new(peer.sibling("memory", Behaviour::Honest)) as Rc<dyn Peer>);
    let t0 = now_ms();
    let report = syncer.run(&store, &BenchClock, &mut |_| {}).await.expect("in-memory sync failed");
    let ms = now_ms() - t0;
    assert!(report.complete, "sync did not complete");
    assert_eq!(store.count(Kind::Node), state.nodes.len(), "node count");
    assert_eq!(store.count(Kind::Code), state.codes.len(), "code count");
    let items = report.nodes + report.codes;
    RunResult {
        items,
        bytes: report.node_bytes + report.code_bytes,
        ms,
        items_per_sec: items as f64 / (ms / 1000.0),
        process_ms: report.timings.process_ms,
        commit_ms: report.timings.commit_ms,
        check_ms: report.timings.check_ms,
        wait_ms: report.timings.wait_ms,
    }
}

/// Builds the peer's `--synthetic ACCOUNTS` state (seed 1) and syncs it `runs` times.
pub async fn bench(accounts: usize, runs: usize) -> BenchResult {
    let t0 = now_ms();
    let state = build_synthetic(&SyntheticSpec::with_accounts(accounts, 1));
    let build_ms = now_ms() - t0;
    let peer = MemoryPeer::new("memory", &state, Behaviour::Honest);
    let mut out = Vec::with_capacity(runs);
    for _ in 0..runs {
        out.push(sync_once(&state, &peer).await);
    }
    BenchResult {
        accounts,
        root: state.root.to_hex(),
        nodes: state.nodes.len(),
        codes: state.codes.len(),
        build_ms,
        runs: out,
    }
}

#[cfg(target_arch = "wasm32")]
mod wasm {
    use wasm_bindgen::prelude::*;

    #[wasm_bindgen]
    extern "C" {
        /// `performance.now()`: windows, workers and Node alike.
        #[wasm_bindgen(js_namespace = performance, js_name = now)]
        pub(crate) fn performance_now() -> f64;
    }

    /// The bench as JSON (see [`crate::BenchResult`]).
    #[wasm_bindgen(js_name = runCoreBench)]
    pub async fn run_core_bench(accounts: u32, runs: u32) -> String {
        let result = crate::bench(accounts as usize, runs as usize).await;
        serde_json::to_string(&result).expect("serialise")
    }
}
