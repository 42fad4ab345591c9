//! `StateDb.checkStore()` / `check::check_store` against real IndexedDB: a whole state is
//! sound; a record that does not hash to its key is corrupt; a stored node whose child,
//! storage trie or code is absent dangles, wherever it sits (not only under a root).
//! Each test runs on both layouts; in the packed one a page that is missing or does not
//! parse is damaged.
#![cfg(target_arch = "wasm32")]

mod common;

use common::{field, num, wait};
use triesync::api::StateDb;
use triesync::check::check_store;
use triesync::db::{read_runs, Db, Role};
use triesync::idb_records::IdbRecords;
use triesync::layout::Layout;
use triesync_core::keccak256;
use triesync_core::packed::{PackedConfig, PackedStore, RecordBackend, Table};
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
            address: address(i),
            nonce: u64::from(i),
            ..Default::default()
        };
        a.balance[31] = 1 + (i % 200) as u8;
        if i % 10 == 0 {
            a.code = codes[(i / 10) as usize % 3].clone();
            a.storage = (0..20u8)
                .map(|s| {
                    let mut v = [0u8; 32];
                    v[31] = s + 1;
                    (slot(i, s), v)
                })
                .collect();
        }
        a
    }))
}

/// Both layouts: every test runs on each.
const LAYOUTS: [Layout; 2] = [Layout::Packed, Layout::PerItem];

/// A fresh database of `layout` holding the state's items except `skip`, written in
/// `batches` batches (in the packed layout: that many runs before compaction).
async fn store_with(
    name: &str,
    layout: Layout,
    st: &BuiltState,
    skip: &[ItemKey],
    batches: usize,
) -> Db {
    Db::delete(name).await.unwrap();
    let store = Db::open(name, Some(layout), Role::Writer).await.unwrap();
    assert_eq!(store.layout(), layout);
    let mut items: Vec<(ItemKey, Vec<u8>)> = Vec::new();
    for (h, n) in &st.nodes {
        items.push((ItemKey::node(*h), n.clone()));
    }
    for (h, c) in &st.codes {
        items.push((ItemKey::code(*h), c.clone()));
    }
    items.retain(|(k, _)| !skip.contains(k));
    let per = items.len().div_ceil(batches);
    for chunk in items.chunks(per) {
        let mut batch = Batch::default();
        for (k, v) in chunk {
            batch.push(*k, v.clone());
        }
        store.write(&batch, &SyncMeta::default()).await.unwrap();
    }
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
    for layout in LAYOUTS {
        let name = "ts-check-whole";
        let store = store_with(name, layout, &st, &[], 3).await;
        let r = check_store(&store).await.unwrap();
        assert!(r.sound, "{layout:?}: {r:?}");
        assert_eq!(r.nodes as usize, st.nodes.len());
        assert_eq!(r.codes as usize, st.codes.len());
        assert_eq!(r.accounts, 300);
        assert_eq!(r.node_bytes as usize, st.node_bytes());
        assert_eq!(r.damaged_page_count, 0);
        assert_eq!(
            r.pages > 0,
            layout == Layout::Packed,
            "{layout:?}: pages read"
        );
        assert_eq!(
            store.counts().await.unwrap(),
            (st.nodes.len() as u64, st.codes.len() as u64),
            "{layout:?}: counts"
        );
        drop(store);
        // The same through the JS API, which finds the layout by itself.
        let db = StateDb::open(name.into(), JsValue::UNDEFINED)
            .await
            .unwrap();
        assert_eq!(db.layout(), layout.name());
        let js = wait(db.check_store()).await.unwrap();
        assert_eq!(field(&js, "sound"), JsValue::TRUE);
        assert_eq!(num(&js, "nodes") as usize, st.nodes.len());
        assert_eq!(num(&js, "danglingCount"), 0.0);
        assert_eq!(num(&js, "damagedPageCount"), 0.0);
        db.close();
        Db::delete(name).await.unwrap();
    }
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
    for layout in LAYOUTS {
        let name = "ts-check-dangling";
        let store = store_with(name, layout, &st, &skip, 2).await;
        let r = check_store(&store).await.unwrap();
        assert!(!r.sound, "{layout:?}");
        assert_eq!(r.corrupt_count, 0, "{layout:?}");
        // (A code shared by several accounts may be counted once per scan chunk.)
        assert!(r.dangling_count >= 3, "{layout:?}: {:?}", r.dangling);
        for k in skip {
            assert!(
                r.dangling.contains(&k),
                "{layout:?}: {k} dangles: {:?}",
                r.dangling
            );
        }
        drop(store);
        Db::delete(name).await.unwrap();
    }
}

#[wasm_bindgen_test]
async fn bytes_that_do_not_hash_to_their_key_are_corrupt() {
    let st = state();
    let victim = *st.nodes.keys().filter(|h| **h != st.root).min().unwrap();
    let mut bad = st.nodes[&victim].clone();
    bad[3] ^= 0x40;
    let garbage_key = ItemKey::code(keccak256(b"not this"));
    for layout in LAYOUTS {
        let name = "ts-check-corrupt";
        let store = store_with(name, layout, &st, &[], 1).await;
        // In the packed layout a later run, which lookups prefer over the sound one.
        let batch = Batch {
            items: vec![
                (ItemKey::node(victim), bad.clone()),
                (garbage_key, b"something else".to_vec()),
            ],
            bytes: 0,
            frontier: None,
        };
        store.write(&batch, &SyncMeta::default()).await.unwrap();
        let r = check_store(&store).await.unwrap();
        assert!(!r.sound, "{layout:?}");
        assert_eq!(r.corrupt_count, 2, "{layout:?}: {:?}", r.corrupt);
        assert!(r.corrupt.contains(&ItemKey::node(victim)));
        assert!(r.corrupt.contains(&garbage_key));
        drop(store);
        Db::delete(name).await.unwrap();
    }
}

/// Packed: a page a run refers to that is gone, and one that does not parse, are damaged;
/// the rest is still checked, and what the lost page held dangles.
#[wasm_bindgen_test]
async fn packed_pages_missing_or_unreadable_are_damaged() {
    let st = state();
    let name = "ts-check-pages";
    // Small pages, no compaction: several runs of several pages.
    Db::delete(name).await.unwrap();
    let config = PackedConfig {
        page_bytes: 4096,
        auto_compact: false,
        ..PackedConfig::default()
    };
    let writer = PackedStore::open(IdbRecords::open(name).await.unwrap(), config)
        .await
        .unwrap();
    let mut items: Vec<(ItemKey, Vec<u8>)> = st
        .nodes
        .iter()
        .map(|(h, n)| (ItemKey::node(*h), n.clone()))
        .collect();
    items.extend(st.codes.iter().map(|(h, c)| (ItemKey::code(*h), c.clone())));
    for chunk in items.chunks(items.len().div_ceil(3)) {
        let mut batch = Batch::default();
        for (k, v) in chunk {
            batch.push(*k, v.clone());
        }
        writer.write(&batch, &SyncMeta::default()).await.unwrap();
    }
    drop(writer);
    let store = Db::open(name, None, Role::Reader).await.unwrap();
    let Db::Packed(packed) = &store else {
        panic!("packed")
    };
    let runs = read_runs(packed.records()).await.unwrap();
    let pages: Vec<u64> = runs
        .iter()
        .flat_map(|r| r.pages.iter().map(|p| p.id))
        .collect();
    assert_eq!(runs.len(), 3);
    assert!(pages.len() >= 6, "{} pages", pages.len());
    let before = check_store(&store).await.unwrap();
    assert!(before.sound, "{before:?}");
    assert_eq!(before.pages as usize, pages.len());
    let (lost, garbled) = (pages[0], pages[pages.len() - 1]);
    packed
        .records()
        .commit(
            vec![(Table::Pages, garbled, vec![1, 2, 3, 4, 5])],
            vec![(Table::Pages, lost)],
        )
        .await
        .unwrap();
    let r = check_store(&store).await.unwrap();
    assert!(!r.sound);
    assert_eq!(r.damaged_page_count, 2, "{r:?}");
    assert!(r.damaged_pages.contains(&lost) && r.damaged_pages.contains(&garbled));
    assert_eq!(r.pages as usize, pages.len() - 2);
    assert!(r.nodes > 0 && (r.nodes as usize) < st.nodes.len());
    assert_eq!(r.corrupt_count, 0);
    drop(store);
    let db = StateDb::open(name.into(), JsValue::UNDEFINED)
        .await
        .unwrap();
    let js = wait(db.check_store()).await.unwrap();
    assert_eq!(field(&js, "sound"), JsValue::FALSE);
    assert_eq!(num(&js, "damagedPageCount"), 2.0);
    db.close();
    Db::delete(name).await.unwrap();
}

/// Account `index`'s address in `state()`, and its slot `s` if it is a contract.
fn address(index: u32) -> [u8; 20] {
    let mut a = [0u8; 20];
    a[..4].copy_from_slice(&index.to_be_bytes());
    a
}

fn slot(index: u32, s: u8) -> [u8; 32] {
    let mut k = [0u8; 32];
    k[31] = s;
    k[0] = index as u8;
    k
}

fn hex0x(bytes: &[u8]) -> String {
    format!("0x{}", hex::encode(bytes))
}

/// The hash and bytes of the leaf of the account with `nonce`.
fn account_leaf(st: &BuiltState, nonce: u64) -> (H256, Vec<u8>) {
    st.nodes
        .iter()
        .find(|(_, n)| match triesync_core::nodes::decode_node(n) {
            Ok(triesync_core::nodes::Node::Leaf { value, .. }) => {
                triesync_core::state::Account::decode(value).is_ok_and(|a| a.nonce == nonce)
            }
            _ => false,
        })
        .map(|(h, n)| (*h, n.clone()))
        .expect("the account's leaf")
}

/// `StateDb` lookups re-hash every item they read: bytes that still decode, but do not
/// hash to their key, on the path of an account, a storage slot or a code read reject with
/// CORRUPT (not a wrong answer, nor MISSING for a child reference that was changed).
#[wasm_bindgen_test]
async fn lookups_through_a_damaged_item_are_corrupt() {
    use triesync_core::nodes::{decode_node, ChildRef, Node};
    use triesync_core::state::Account;
    let st = state();
    // Account 5: its leaf with the balance 6 changed to 7 (still a valid leaf).
    let (leaf, mut bad_leaf) = account_leaf(&st, 5);
    let at = bad_leaf
        .windows(3)
        .position(|w| w == [0x05, 0x06, 0xa0])
        .expect("nonce 5, balance 6");
    bad_leaf[at + 1] = 0x07;
    let Ok(Node::Leaf { value, .. }) = decode_node(&bad_leaf) else {
        panic!("still a leaf")
    };
    assert_eq!(Account::decode(value).unwrap().balance[31], 7);
    // Contract 10: its storage root with the child reference on the path of slot 0 changed.
    let (_, contract_leaf) = account_leaf(&st, 10);
    let Ok(Node::Leaf { value, .. }) = decode_node(&contract_leaf) else {
        panic!("a leaf")
    };
    let contract = Account::decode(value).unwrap();
    let storage_root = contract.storage_root;
    let mut bad_storage_root = st.nodes[&storage_root].clone();
    let nibble = keccak256(&slot(10, 0)).0[0] >> 4;
    let Ok(Node::Branch { children, .. }) = decode_node(&bad_storage_root) else {
        panic!("the storage root of 20 slots is a branch")
    };
    let ChildRef::Hash(child) = children[nibble as usize] else {
        panic!("slot 0 is under a hashed child")
    };
    let at = bad_storage_root
        .windows(32)
        .position(|w| w == child.0)
        .unwrap();
    bad_storage_root[at + 5] ^= 0x01;
    assert!(decode_node(&bad_storage_root).is_ok());
    // Contract 10's code, one opcode changed.
    let mut bad_code = st.codes[&contract.code_hash].clone();
    *bad_code.last_mut().unwrap() ^= 0x03;

    let root = st.root.to_hex();
    let (acct5, acct10) = (hex0x(&address(5)), hex0x(&address(10)));
    for layout in LAYOUTS {
        let name = "ts-check-lookups";
        let store = store_with(name, layout, &st, &[], 1).await;
        let batch = Batch {
            items: vec![
                (ItemKey::node(leaf), bad_leaf.clone()),
                (ItemKey::node(storage_root), bad_storage_root.clone()),
                (ItemKey::code(contract.code_hash), bad_code.clone()),
            ],
            bytes: 0,
            frontier: None,
        };
        store.write(&batch, &SyncMeta::default()).await.unwrap();
        drop(store);
        let db = StateDb::open(name.into(), JsValue::UNDEFINED)
            .await
            .unwrap();
        assert_eq!(db.layout(), layout.name());
        let corrupt = |r: Result<JsValue, JsValue>, what: &str| match r {
            Err(e) => assert_eq!(common::code(&e), "CORRUPT", "{layout:?} {what}: {e:?}"),
            Ok(v) => panic!("{layout:?} {what}: read {v:?} from damaged data"),
        };
        corrupt(
            wait(db.account(root.clone(), acct5.clone())).await,
            "account",
        );
        corrupt(
            wait(db.storage(root.clone(), acct10.clone(), hex0x(&slot(10, 0)))).await,
            "storage",
        );
        corrupt(wait(db.code(root.clone(), acct10.clone())).await, "code");
        // Beside the damage, reads are fine.
        let other = wait(db.account(root.clone(), hex0x(&address(6))))
            .await
            .unwrap();
        assert_eq!(num(&other, "nonce"), 6.0, "{layout:?}");
        let ten = wait(db.account(root.clone(), acct10.clone()))
            .await
            .unwrap();
        assert_eq!(num(&ten, "nonce"), 10.0, "{layout:?}");
        db.close();
        Db::delete(name).await.unwrap();
    }
}
