//! The core built for wasm32 and run under wasm-bindgen-test (Node or a headless browser):
//! the fixture states synced by the scheduler and the driver, exactly as natively.
#![cfg(target_arch = "wasm32")]

use futures::future::{self, FutureExt, LocalBoxFuture};
use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;
use triesync_core::driver::{SyncConfig, Syncer};
use triesync_core::peer::{Clock, Peer};
use triesync_core::state::{BuiltState, StateFixture};
use triesync_core::store::{Kind, MemoryStore};
use triesync_core::testing::{Behaviour, MemoryPeer};
use triesync_core::walk;
use wasm_bindgen_test::wasm_bindgen_test;

const FIXTURES: [(&str, &str); 4] = [
    (
        "mainnet-genesis",
        include_str!("../../../shared/fixtures/states/mainnet-genesis.json"),
    ),
    (
        "sepolia-genesis",
        include_str!("../../../shared/fixtures/states/sepolia-genesis.json"),
    ),
    (
        "bt-block504980",
        include_str!("../../../shared/fixtures/states/bt-block504980.json"),
    ),
    (
        "bt-walletConfirm",
        include_str!("../../../shared/fixtures/states/bt-walletConfirm.json"),
    ),
];

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

fn build(text: &str) -> BuiltState {
    let fixture = StateFixture::from_json(text).unwrap();
    let built = fixture.build().unwrap();
    assert_eq!(built.root, fixture.root().unwrap());
    built
}

#[wasm_bindgen_test]
async fn every_fixture_syncs_in_wasm() {
    for (name, text) in FIXTURES {
        let state = build(text);
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
    let fixture = StateFixture::from_json(FIXTURES[2].1).unwrap();
    let state = fixture.build().unwrap();
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
