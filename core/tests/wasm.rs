//! The core built for wasm32 and run under wasm-bindgen-test (Node or a headless browser):
//! the fixture states synced by the scheduler and the driver, exactly as natively.
#![cfg(target_arch = "wasm32")]

mod common;

use futures::future::{self, FutureExt, LocalBoxFuture};
use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;
use triesync_core::driver::{SyncConfig, Syncer};
use triesync_core::peer::{Clock, Peer};
use triesync_core::store::{Kind, MemoryStore};
use triesync_core::testing::{Behaviour, MemoryPeer};
use triesync_core::walk;
use wasm_bindgen_test::wasm_bindgen_test;

/// Time that never passes: timeouts never fire, which these honest-peer runs never need.
#[derive(Default)]
struct FrozenClock(Cell<f64>);

impl Clock for FrozenClock {
    fn now_ms(&self) -> f64 {
        self.0.set(self.0.get() + 1.0);
        self.0.get()
    }
    fn sleep(&self, _: Duration) -> LocalBoxFuture<'static, ()> {
        future::pending().boxed_local()
    }
}

#[wasm_bindgen_test]
async fn every_fixture_syncs_in_wasm() {
    for (name, ..) in common::STATES {
        let state = common::load_state(name).1;
        let store = MemoryStore::new();
        let honest = MemoryPeer::new("good", &state, Behaviour::Honest);
        let corrupt = honest.sibling("corrupt", Behaviour::Corrupt);
        let (syncer, handle) = Syncer::new(state.root, SyncConfig::default());
        handle.add_peer(Rc::new(corrupt) as Rc<dyn Peer>);
        handle.add_peer(Rc::new(honest));
        let mut commits = 0;
        let report = syncer
            .run(&store, &FrozenClock::default(), &mut |_| commits += 1)
            .await
            .unwrap();
        assert!(report.complete, "{name}");
        assert!(commits >= 1);
        assert_eq!(store.count(Kind::Node), state.nodes.len(), "{name}");
        assert_eq!(store.bytes(Kind::Node), state.node_bytes(), "{name}");
        assert_eq!(store.count(Kind::Code), state.codes.len(), "{name}");
        let v = walk::verify(&store, state.root).await.unwrap();
        assert!(v.complete, "{name}");
        assert_eq!(v.nodes as usize, state.nodes.len());
    }
}

#[wasm_bindgen_test]
async fn accounts_read_back_from_the_synced_store() {
    let (fixture, state) = common::load_state("bt-block504980");
    let store = MemoryStore::new();
    let (syncer, handle) = Syncer::new(state.root, SyncConfig::default());
    handle.add_peer(Rc::new(MemoryPeer::new("good", &state, Behaviour::Honest)));
    syncer
        .run(&store, &FrozenClock::default(), &mut |_| {})
        .await
        .unwrap();
    for acc in fixture.accounts().unwrap() {
        let got = walk::account(&store, state.root, &acc.address)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.nonce, acc.nonce);
        assert_eq!(got.balance, acc.balance);
        let code = walk::code(&store, state.root, &acc.address)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(code, acc.code);
        for (slot, value) in &acc.storage {
            let got = walk::storage(&store, state.root, &acc.address, slot)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(&got, value);
        }
    }
}

/// The other tests' wasm clock (`common::clock`, on `setTimeout`) really waits and wakes:
/// a peer that answers after 30 ms on it finishes the sync, and a peer that never answers
/// has its requests timed out by it. Timers that never fired would hang this test, timers
/// that fired at once would fail the elapsed-time check.
#[wasm_bindgen_test]
async fn test_clock_sleeps_and_times_out_under_wasm() {
    let state = common::load_state("sepolia-genesis").1;
    let clock = common::clock();
    let delay = Duration::from_millis(30);
    let slow = MemoryPeer::new(
        "slow",
        &state,
        Behaviour::Delay(delay, Rc::new(clock.clone())),
    );
    let stall = slow.sibling("stall", Behaviour::Stall);
    let config = SyncConfig {
        request_timeout: Duration::from_millis(100),
        ..SyncConfig::default()
    };
    let (syncer, handle) = Syncer::new(state.root, config);
    handle.add_peer(Rc::new(stall) as Rc<dyn Peer>);
    handle.add_peer(Rc::new(slow));
    let store = MemoryStore::new();
    let started = common::now_ms();
    let report = syncer.run(&store, &clock, &mut |_| {}).await.unwrap();
    let elapsed = common::now_ms() - started;
    assert!(report.complete);
    assert!(
        elapsed >= 30.0,
        "synced in {elapsed} ms through a 30 ms peer"
    );
    let stats = |id: &str| report.peers.iter().find(|p| p.id == id).unwrap().clone();
    assert!(stats("stall").timeouts >= 1, "{:?}", stats("stall"));
    assert!(stats("slow").items > 0, "{:?}", stats("slow"));
}
