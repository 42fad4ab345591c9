//! `StateDb.checkStore()` / `check::check_store` against real IndexedDB: a whole state is
//! sound; a record that does not hash to its key is corrupt; a stored node whose child,
//! storage trie or code is absent dangles, wherever it sits (not only under a root).
#![cfg(target_arch = "wasm32")]

mod common;

use common::{field, num, wait};
use triesync::api::StateDb;
use triesync::check::check_store;
use triesync::idb_store::IdbStore;
use triesync_core::keccak256;
use triesync_core::state::{build_state, BuiltState, GenesisAccount};
use triesync_core::store::{Batch, ItemKey, Store, SyncMeta};
use triesync_core::H256;
use wasm_bindgen::JsValue;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

/// 300 accounts, every tenth a contract with 20 slots and one of three codes.
fn state() -> BuiltState {
    let codes: Vec<Vec<u8>> = (0..3u8).map(|i| vec![0x60, i, 0x60, 0x00, 0x55]).collect();
    build_state((0..300u32).map(|i| {
        let mut a = GenesisAccount {
            nonce: u64::from(i),
            ..Default::default()
        };
        a.address[..4].copy_from_slice(&i.to_be_bytes());
        a.balance[31] = 1 + (i % 200) as u8;
        if i % 10 == 0 {
            a.code = codes[(i / 10) as usize % 3].clone();
            a.storage = (0..20u8)
                .map(|s| {
                    let mut k = [0u8; 32];
                    k[31] = s;
                    k[0] = i as u8;
                    let mut v = [0u8; 32];
                    v[31] = s + 1;
                    (k, v)
                })
                .collect();
        }
        a
    }))
}

/// Writes the state's items except `skip`.
async fn store_with(name: &str, st: &BuiltState, skip: &[ItemKey]) -> IdbStore {
    IdbStore::delete(name).await.unwrap();
    let store = IdbStore::open(name).await.unwrap();
    let mut batch = Batch::default();
    for (h, n) in &st.nodes {
        if !skip.contains(&ItemKey::node(*h)) {
            batch.push(ItemKey::node(*h), n.clone());
        }
    }
    for (h, c) in &st.codes {
        if !skip.contains(&ItemKey::code(*h)) {
            batch.push(ItemKey::code(*h), c.clone());
        }
    }
    store.write(&batch, &SyncMeta::default()).await.unwrap();
    store
}

/// A storage trie root of the state (some contract's).
fn a_storage_root(st: &BuiltState) -> H256 {
    let mut roots = Vec::new();
    for n in st.nodes.values() {
        if let Ok(triesync_core::nodes::Node::Leaf { value, .. }) =
            triesync_core::nodes::decode_node(n)
        {
            if let Ok(a) = triesync_core::state::Account::decode(value) {
                if a.storage_root != triesync_core::EMPTY_ROOT {
                    roots.push(a.storage_root);
                }
            }
        }
    }
    roots.sort();
    roots[0]
}

#[wasm_bindgen_test]
async fn a_whole_state_is_sound() {
    let st = state();
    let name = "ts-check-whole";
    let store = store_with(name, &st, &[]).await;
    let r = check_store(&store).await.unwrap();
    assert!(r.sound, "{r:?}");
    assert_eq!(r.nodes as usize, st.nodes.len());
    assert_eq!(r.codes as usize, st.codes.len());
    assert_eq!(r.accounts, 300);
    assert_eq!(r.node_bytes as usize, st.node_bytes());
    drop(store);
    // The same through the JS API.
    let db = StateDb::open(name.into()).await.unwrap();
    let js = wait(db.check_store()).await.unwrap();
    assert_eq!(field(&js, "sound"), JsValue::TRUE);
    assert_eq!(num(&js, "nodes") as usize, st.nodes.len());
    assert_eq!(num(&js, "danglingCount"), 0.0);
    db.close();
    IdbStore::delete(name).await.unwrap();
}

#[wasm_bindgen_test]
async fn missing_children_storage_and_code_dangle() {
    let st = state();
    let storage_root = a_storage_root(&st);
    let code = *st.codes.keys().min().unwrap();
    // A node under the root of the account trie (not the root itself).
    let root_children = {
        let mut v = Vec::new();
        let node = triesync_core::nodes::decode_node(&st.nodes[&st.root]).unwrap();
        for (_, c) in node.children() {
            if let triesync_core::nodes::ChildRef::Hash(h) = c {
                v.push(h);
            }
        }
        v
    };
    let child = root_children[0];
    let skip = [
        ItemKey::node(storage_root),
        ItemKey::code(code),
        ItemKey::node(child),
    ];
    let name = "ts-check-dangling";
    let store = store_with(name, &st, &skip).await;
    let r = check_store(&store).await.unwrap();
    assert!(!r.sound);
    assert_eq!(r.corrupt_count, 0);
    for k in skip {
        assert!(r.dangling.contains(&k), "{k} dangles: {:?}", r.dangling);
    }
    drop(store);
    IdbStore::delete(name).await.unwrap();
}

#[wasm_bindgen_test]
async fn bytes_that_do_not_hash_to_their_key_are_corrupt() {
    let st = state();
    let name = "ts-check-corrupt";
    let store = store_with(name, &st, &[]).await;
    let victim = *st.nodes.keys().filter(|h| **h != st.root).min().unwrap();
    let mut bad = st.nodes[&victim].clone();
    bad[3] ^= 0x40;
    let garbage_key = ItemKey::code(keccak256(b"not this"));
    let batch = Batch {
        items: vec![
            (ItemKey::node(victim), bad),
            (garbage_key, b"something else".to_vec()),
        ],
        bytes: 0,
        frontier: None,
    };
    store.write(&batch, &SyncMeta::default()).await.unwrap();
    let r = check_store(&store).await.unwrap();
    assert!(!r.sound);
    assert_eq!(r.corrupt_count, 2, "{:?}", r.corrupt);
    assert!(r.corrupt.contains(&ItemKey::node(victim)));
    assert!(r.corrupt.contains(&garbage_key));
    drop(store);
    IdbStore::delete(name).await.unwrap();
}
