//! The IndexedDB store against real IndexedDB in headless Chromium: roundtrips, atomic
//! batches, aborted transactions, the saved frontier, quota, and deletion while open.
#![cfg(target_arch = "wasm32")]

use js_sys::Reflect;
use triesync::idb_store::IdbStore;
use triesync_core::keccak256;
use triesync_core::store::{Batch, ItemKey, Kind, Store, StoreError, SyncMeta};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

fn item(i: u32, len: usize) -> (ItemKey, Vec<u8>) {
    // The index first, so every item is distinct.
    let mut data = i.to_be_bytes().to_vec();
    data.extend((0..len).map(|j| (i as usize * 31 + j) as u8));
    (ItemKey::node(keccak256(&data)), data)
}

fn batch_of(items: &[(ItemKey, Vec<u8>)]) -> Batch {
    let mut b = Batch::default();
    for (k, v) in items {
        b.push(*k, v.clone());
    }
    b
}

fn meta(nodes: u64) -> SyncMeta {
    SyncMeta {
        root: keccak256(b"root"),
        complete: false,
        nodes,
        node_bytes: nodes * 10,
        codes: 1,
        code_bytes: 2,
    }
}

async fn fresh(name: &str) -> IdbStore {
    IdbStore::delete(name).await.unwrap();
    IdbStore::open(name).await.unwrap()
}

/// Nodes and code round-trip by kind; a node key does not find code of the same hash.
#[wasm_bindgen_test]
async fn test_write_roundtrip_by_kind() {
    let name = "ts-idb-roundtrip";
    let store = fresh(name).await;
    assert_eq!(store.meta().await.unwrap(), None);
    assert!(store.frontier().await.unwrap().is_empty());
    let nodes: Vec<_> = (0..500).map(|i| item(i, 40 + (i as usize % 300))).collect();
    let code = vec![0x60u8, 0x00, 0x60, 0x00];
    let code_key = ItemKey::code(keccak256(&code));
    let mut batch = batch_of(&nodes);
    batch.push(code_key, code.clone());
    store.write(&batch, &meta(500)).await.unwrap();

    let keys: Vec<ItemKey> = nodes.iter().map(|(k, _)| *k).collect();
    let got = store.get_many(&keys).await.unwrap();
    for ((_, want), got) in nodes.iter().zip(&got) {
        assert_eq!(got.as_deref(), Some(want.as_slice()));
    }
    assert_eq!(store.get(code_key).await.unwrap(), Some(code.clone()));
    // Namespaces are apart: the code's hash as a node key is absent, and the reverse.
    let probe = [
        ItemKey::node(code_key.hash),
        code_key,
        ItemKey::code(keys[0].hash),
        keys[0],
    ];
    assert_eq!(
        store.contains(&probe).await.unwrap(),
        vec![false, true, false, true]
    );
    assert_eq!(store.count(Kind::Node).await.unwrap(), 500);
    assert_eq!(store.count(Kind::Code).await.unwrap(), 1);
    assert_eq!(store.meta().await.unwrap(), Some(meta(500)));
    assert_eq!(
        store.get_many(&[]).await.unwrap(),
        Vec::<Option<Vec<u8>>>::new()
    );

    // Data survives closing and reopening.
    drop(store);
    let store = IdbStore::open(name).await.unwrap();
    assert_eq!(
        store.get(keys[7]).await.unwrap().as_deref(),
        Some(nodes[7].1.as_slice())
    );
    assert_eq!(store.meta().await.unwrap(), Some(meta(500)));
    drop(store);
    IdbStore::delete(name).await.unwrap();
}

/// An aborted write is an error and leaves neither items nor meta behind.
#[wasm_bindgen_test]
async fn test_aborted_write_writes_nothing() {
    let name = "ts-idb-abort";
    let store = fresh(name).await;
    let first: Vec<_> = (0..10).map(|i| item(i, 64)).collect();
    store.write(&batch_of(&first), &meta(10)).await.unwrap();

    let second: Vec<_> = (100..400).map(|i| item(i, 64)).collect();
    store.abort_next_write();
    let err = store
        .write(&batch_of(&second), &meta(310))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Aborted(_)), "{err:?}");
    let keys: Vec<ItemKey> = second.iter().map(|(k, _)| *k).collect();
    assert!(
        store.contains(&keys).await.unwrap().iter().all(|p| !p),
        "aborted items are absent"
    );
    assert_eq!(
        store.meta().await.unwrap(),
        Some(meta(10)),
        "meta is the last committed one"
    );
    assert_eq!(store.count(Kind::Node).await.unwrap(), 10);

    // The store is still usable afterwards.
    store.write(&batch_of(&second), &meta(310)).await.unwrap();
    assert_eq!(store.count(Kind::Node).await.unwrap(), 310);
    drop(store);
    IdbStore::delete(name).await.unwrap();
}

/// A frontier is replaced only by writes that carry one, in the same transaction.
#[wasm_bindgen_test]
async fn test_frontier_saved_with_batch() {
    let name = "ts-idb-frontier";
    let store = fresh(name).await;
    let mut b = batch_of(&[item(1, 50)]);
    b.frontier = Some(vec![vec![1, 2, 3], vec![4; 100]]);
    store.write(&b, &meta(1)).await.unwrap();
    assert_eq!(
        store.frontier().await.unwrap(),
        vec![vec![1, 2, 3], vec![4; 100]]
    );
    store
        .write(&batch_of(&[item(2, 50)]), &meta(2))
        .await
        .unwrap();
    assert_eq!(
        store.frontier().await.unwrap().len(),
        2,
        "kept when not replaced"
    );
    let mut b = batch_of(&[]);
    b.frontier = Some(Vec::new());
    store.write(&b, &meta(2)).await.unwrap();
    assert!(store.frontier().await.unwrap().is_empty());
    drop(store);
    IdbStore::delete(name).await.unwrap();
}

/// Deleting a database closes an open connection instead of blocking forever.
#[wasm_bindgen_test]
async fn test_delete_while_open_closes_connection() {
    let name = "ts-idb-delete-open";
    let store = fresh(name).await;
    store
        .write(&batch_of(&[item(1, 50)]), &meta(1))
        .await
        .unwrap();
    IdbStore::delete(name).await.unwrap();
    let reopened = IdbStore::open(name).await.unwrap();
    assert_eq!(reopened.meta().await.unwrap(), None);
    drop(reopened);
    drop(store);
    IdbStore::delete(name).await.unwrap();
}

/// A write past the quota of a storage bucket fails with `QuotaExceeded` (the abort event
/// with `QuotaExceededError`), and nothing of it is kept.
#[wasm_bindgen_test]
async fn test_quota_exceeded_is_typed() {
    let navigator = Reflect::get(&js_sys::global(), &"navigator".into()).unwrap();
    let buckets = Reflect::get(&navigator, &"storageBuckets".into()).unwrap();
    assert!(
        !buckets.is_undefined(),
        "this Chromium has navigator.storageBuckets"
    );
    let open: js_sys::Function = Reflect::get(&buckets, &"open".into())
        .unwrap()
        .unchecked_into();
    let opts = js_sys::Object::new();
    Reflect::set(&opts, &"quota".into(), &JsValue::from_f64(1_000_000.0)).unwrap();
    let promise: js_sys::Promise = open
        .call2(&buckets, &"ts-quota".into(), &opts)
        .unwrap()
        .unchecked_into();
    let bucket = JsFuture::from(promise).await.unwrap();
    let factory: web_sys::IdbFactory = Reflect::get(&bucket, &"indexedDB".into())
        .unwrap()
        .unchecked_into();
    let store = IdbStore::open_in(idb::Factory::from(factory), "ts-quota-db")
        .await
        .unwrap();
    let small: Vec<_> = (0..10).map(|i| item(i, 100)).collect();
    store.write(&batch_of(&small), &meta(10)).await.unwrap();
    // 4 MiB of incompressible-ish data in one batch, four times the bucket's quota.
    let big: Vec<_> = (1000..1064u64)
        .map(|i| {
            let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ i;
            let data: Vec<u8> = (0..65536)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            (ItemKey::node(keccak256(&data)), data)
        })
        .collect();
    let err = store.write(&batch_of(&big), &meta(74)).await.unwrap_err();
    assert_eq!(err, StoreError::QuotaExceeded);
    assert_eq!(store.count(Kind::Node).await.unwrap(), 10);
    assert_eq!(store.meta().await.unwrap(), Some(meta(10)));
    drop(store);
    let delete: js_sys::Function = Reflect::get(&buckets, &"delete".into())
        .unwrap()
        .unchecked_into();
    let p: js_sys::Promise = delete
        .call1(&buckets, &"ts-quota".into())
        .unwrap()
        .unchecked_into();
    JsFuture::from(p).await.unwrap();
}

/// Throughput of the one-record-per-item layout (logged; bounded loosely so a regression of
/// an order of magnitude fails).
#[wasm_bindgen_test]
async fn test_write_throughput() {
    let name = "ts-idb-throughput";
    let store = fresh(name).await;
    let items: Vec<_> = (0..12_000).map(|i| item(i, 120)).collect();
    let t = triesync::clock::now_ms();
    for (n, chunk) in items.chunks(850).enumerate() {
        store
            .write(&batch_of(chunk), &meta(n as u64))
            .await
            .unwrap();
    }
    let ms = triesync::clock::now_ms() - t;
    web_sys::console::log_1(
        &format!(
            "12000 puts in 100 KiB batches: {ms:.0} ms ({:.0} puts/s)",
            12_000.0 / ms * 1000.0
        )
        .into(),
    );
    assert!(ms < 20_000.0);
    let t = triesync::clock::now_ms();
    let keys: Vec<ItemKey> = items.iter().map(|(k, _)| *k).collect();
    for chunk in keys.chunks(2048) {
        store.contains(chunk).await.unwrap();
    }
    let ms = triesync::clock::now_ms() - t;
    web_sys::console::log_1(&format!("12000 contains in chunks of 2048: {ms:.0} ms").into());
    drop(store);
    IdbStore::delete(name).await.unwrap();
}
