//! The packed store (`PackedStore<IdbRecords>`) against real IndexedDB in headless
//! Chromium: the `Store` contract (items by kind, meta, frontier, reopen, compaction),
//! aborted commits and compactions, quota, a database of the other layout, and a sync of
//! mainnet genesis from the reference peer into both layouts side by side (timings logged;
//! run with `-- --nocapture` to see them).
#![cfg(target_arch = "wasm32")]

mod common;

use common::*;
use js_sys::Reflect;
use std::time::Duration;
use triesync::clock::{now_ms, BrowserClock};
use triesync::idb_records::IdbRecords;
use triesync::idb_store::IdbStore;
use triesync::transport::{connect, PeerSpec, TransportOptions};
use triesync_core::driver::{Progress, SyncConfig, Syncer};
use triesync_core::keccak256;
use triesync_core::packed::{PackedConfig, PackedStore};
use triesync_core::store::{Batch, ItemKey, Store, StoreError, SyncMeta};
use triesync_core::walk;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

type Packed = PackedStore<IdbRecords>;

fn item(i: u32, len: usize) -> (ItemKey, Vec<u8>) {
    // The index first, so every item is distinct.
    let mut data = i.to_be_bytes().to_vec();
    data.extend((0..len).map(|j| (i as usize * 31 + j) as u8));
    (ItemKey::node(keccak256(&data)), data)
}

fn code_item(i: u32) -> (ItemKey, Vec<u8>) {
    let mut data = vec![0x60, 0x00, 0x60, 0x00];
    data.extend(i.to_be_bytes());
    (ItemKey::code(keccak256(&data)), data)
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

/// Small pages and tiers, so that a few hundred items make many pages, runs and merges.
fn small() -> PackedConfig {
    PackedConfig {
        page_bytes: 2048,
        tier_base_bytes: 4096,
        cache_pages: 2,
        compaction_flush_pages: 2,
        ..PackedConfig::default()
    }
}

async fn open(name: &str, config: PackedConfig) -> Packed {
    let records = IdbRecords::open(name).await.unwrap();
    PackedStore::open(records, config).await.unwrap()
}

async fn fresh(name: &str, config: PackedConfig) -> Packed {
    IdbRecords::delete(name).await.unwrap();
    open(name, config).await
}

/// Every item present with its bytes (through `get_many` and `contains`).
async fn assert_present(store: &Packed, items: &[(ItemKey, Vec<u8>)]) {
    let keys: Vec<ItemKey> = items.iter().map(|(k, _)| *k).collect();
    let got = store.get_many(&keys).await.unwrap();
    for ((key, want), got) in items.iter().zip(&got) {
        assert_eq!(got.as_deref(), Some(want.as_slice()), "{key}");
    }
    assert!(store.contains(&keys).await.unwrap().iter().all(|p| *p));
}

async fn assert_absent(store: &Packed, items: &[(ItemKey, Vec<u8>)]) {
    let keys: Vec<ItemKey> = items.iter().map(|(k, _)| *k).collect();
    assert!(store.contains(&keys).await.unwrap().iter().all(|p| !p));
    assert!(store
        .get_many(&keys)
        .await
        .unwrap()
        .iter()
        .all(Option::is_none));
}

fn log(s: &str) {
    web_sys::console::log_1(&s.into());
}

/// The Store contract: items by kind, meta, frontier, absent keys, an item bigger than a
/// page, compaction during writes, and all of it again after a reopen and a full merge.
#[wasm_bindgen_test]
async fn contract_roundtrip_compaction_reopen() {
    let name = "ts-packed-contract";
    let store = fresh(name, small()).await;
    assert_eq!(store.meta().await.unwrap(), None);
    assert!(store.frontier().await.unwrap().is_empty());
    assert_eq!(
        store.get_many(&[]).await.unwrap(),
        Vec::<Option<Vec<u8>>>::new()
    );
    assert_eq!(store.contains(&[]).await.unwrap(), Vec::<bool>::new());

    let mut all = Vec::new();
    let frontier = vec![vec![1u8, 2, 3], vec![4; 100]];
    for b in 0..12u32 {
        let mut items: Vec<_> = (b * 60..b * 60 + 60)
            .map(|i| item(i, 40 + (i as usize * 7) % 360))
            .collect();
        items.push(code_item(b));
        if b == 5 {
            items.push(item(100_000, 5000)); // bigger than a page
        }
        let mut batch = batch_of(&items);
        if b == 3 {
            batch.frontier = Some(frontier.clone());
        }
        store.write(&batch, &meta(u64::from(b))).await.unwrap();
        assert_eq!(store.meta().await.unwrap(), Some(meta(u64::from(b))));
        all.extend(items);
    }
    let stats = store.stats();
    assert!(stats.compactions > 0, "merges ran: {stats:?}");
    assert!(store.run_count() < 12, "{} runs", store.run_count());
    assert_present(&store, &all).await;
    assert_eq!(
        store.frontier().await.unwrap(),
        frontier,
        "kept when not replaced"
    );

    // Namespaces are apart; absent keys are absent.
    let (code_key, _) = code_item(0);
    let node_key = all[0].0;
    let probe = [
        ItemKey::node(code_key.hash),
        code_key,
        ItemKey::code(node_key.hash),
        node_key,
    ];
    assert_eq!(
        store.contains(&probe).await.unwrap(),
        vec![false, true, false, true]
    );
    let absent: Vec<_> = (200_000..200_050).map(|i| item(i, 50)).collect();
    assert_absent(&store, &absent).await;
    assert_eq!(store.get(ItemKey::node(code_key.hash)).await.unwrap(), None);

    // Reopen: same runs, same items, meta and frontier; nothing orphaned.
    let runs = store.run_count();
    drop(store);
    let store = open(name, small()).await;
    assert_eq!(store.run_count(), runs);
    assert_eq!(store.stats().orphans_removed, 0);
    assert_eq!(store.meta().await.unwrap(), Some(meta(11)));
    assert_eq!(store.frontier().await.unwrap(), frontier);
    assert_present(&store, &all).await;
    assert_absent(&store, &absent).await;

    // An empty frontier replaces it; a full merge leaves one run with everything.
    let mut b = batch_of(&[]);
    b.frontier = Some(Vec::new());
    store.write(&b, &meta(12)).await.unwrap();
    assert!(store.frontier().await.unwrap().is_empty());
    store.compact_full().await.unwrap();
    assert_eq!(store.run_count(), 1);
    assert_present(&store, &all).await;
    drop(store);
    let store = open(name, small()).await;
    assert_eq!(store.run_count(), 1);
    assert_eq!(store.stats().orphans_removed, 0);
    assert_eq!(store.meta().await.unwrap(), Some(meta(12)));
    assert!(store.frontier().await.unwrap().is_empty());
    assert_present(&store, &all).await;
    drop(store);
    IdbRecords::delete(name).await.unwrap();
}

/// An aborted commit (of a batch, of a compaction's streamed pages, of a compaction's end)
/// is an error and leaves the store as it was, in memory and after a reopen.
#[wasm_bindgen_test]
async fn aborted_commit_leaves_store_intact() {
    let name = "ts-packed-abort";
    let config = PackedConfig {
        auto_compact: false,
        compaction_flush_pages: 1,
        ..small()
    };
    let store = fresh(name, config.clone()).await;
    let mut kept = Vec::new();
    for b in 0..3u32 {
        let items: Vec<_> = (b * 40..b * 40 + 40).map(|i| item(i, 64)).collect();
        let mut batch = batch_of(&items);
        if b == 0 {
            batch.frontier = Some(vec![vec![9; 10]]);
        }
        store.write(&batch, &meta(u64::from(b))).await.unwrap();
        kept.extend(items);
    }
    assert_eq!(store.run_count(), 3);

    // A batch's commit aborted.
    let lost: Vec<_> = (1000..1300).map(|i| item(i, 64)).collect();
    let mut batch = batch_of(&lost);
    batch.frontier = Some(Vec::new());
    store.backend().abort_commit_after(0);
    let err = store.write(&batch, &meta(99)).await.unwrap_err();
    assert!(matches!(err, StoreError::Aborted(_)), "{err:?}");
    assert_eq!(store.run_count(), 3);
    assert_eq!(store.meta().await.unwrap(), Some(meta(2)));
    assert_eq!(store.frontier().await.unwrap(), vec![vec![9; 10]]);
    assert_present(&store, &kept).await;
    assert_absent(&store, &lost).await;

    // A fourth run: the policy asks for a merge. One aborted at its first commit, one
    // after streaming a page (both remove what they streamed).
    let items: Vec<_> = (120..160).map(|i| item(i, 64)).collect();
    store.write(&batch_of(&items), &meta(3)).await.unwrap();
    kept.extend(items);
    assert!(store.needs_compaction());
    let commits = store.backend().stats().commits;
    store.backend().abort_commit_after(0);
    assert!(matches!(store.compact().await, Err(StoreError::Aborted(_))));
    assert_eq!(store.run_count(), 4);
    store.backend().abort_commit_after(1);
    assert!(matches!(store.compact().await, Err(StoreError::Aborted(_))));
    assert_eq!(store.run_count(), 4);
    assert_eq!(store.stats().compaction_errors, 2);
    assert!(
        store.backend().stats().commits > commits + 1,
        "pages were streamed, then removed"
    );
    assert_present(&store, &kept).await;

    // Reopen: the same store, no leftover pages.
    drop(store);
    let store = open(name, config.clone()).await;
    assert_eq!(store.run_count(), 4);
    assert_eq!(
        store.stats().orphans_removed,
        0,
        "the failed merges cleaned up after themselves"
    );
    assert_eq!(store.meta().await.unwrap(), Some(meta(3)));
    assert_eq!(store.frontier().await.unwrap(), vec![vec![9; 10]]);
    assert_present(&store, &kept).await;
    assert_absent(&store, &lost).await;

    // Still usable: the lost batch written again, the merge done.
    store.write(&batch, &meta(99)).await.unwrap();
    assert!(store.compact_all().await.unwrap() > 0);
    assert_present(&store, &kept).await;
    assert_present(&store, &lost).await;
    assert!(store.frontier().await.unwrap().is_empty());
    drop(store);
    IdbRecords::delete(name).await.unwrap();
}

/// A write past the quota of a storage bucket fails with `QuotaExceeded`; nothing of it is
/// kept.
#[wasm_bindgen_test]
async fn quota_exceeded_is_typed() {
    let navigator = Reflect::get(&js_sys::global(), &"navigator".into()).unwrap();
    let buckets = Reflect::get(&navigator, &"storageBuckets".into()).unwrap();
    assert!(
        !buckets.is_undefined(),
        "this Chromium has navigator.storageBuckets"
    );
    let call = |method: &str, args: &[JsValue]| -> js_sys::Promise {
        let f: js_sys::Function = Reflect::get(&buckets, &method.into())
            .unwrap()
            .unchecked_into();
        f.apply(&buckets, &args.iter().collect())
            .unwrap()
            .unchecked_into()
    };
    let opts = js_sys::Object::new();
    Reflect::set(&opts, &"quota".into(), &JsValue::from_f64(1_000_000.0)).unwrap();
    let bucket = JsFuture::from(call("open", &["ts-packed-quota".into(), opts.into()]))
        .await
        .unwrap();
    let factory: web_sys::IdbFactory = Reflect::get(&bucket, &"indexedDB".into())
        .unwrap()
        .unchecked_into();
    let records = IdbRecords::open_in(idb::Factory::from(factory), "ts-packed-quota-db")
        .await
        .unwrap();
    let store = PackedStore::open(records, PackedConfig::default())
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
    assert_eq!(store.run_count(), 1);
    assert_eq!(store.meta().await.unwrap(), Some(meta(10)));
    assert_present(&store, &small).await;
    assert_absent(&store, &big).await;
    drop(store);
    JsFuture::from(call("delete", &["ts-packed-quota".into()]))
        .await
        .unwrap();
}

/// A database of the one-record-per-item layout is refused, not mixed with pages.
#[wasm_bindgen_test]
async fn refuses_a_per_item_database() {
    let name = "ts-packed-other-layout";
    IdbStore::delete(name).await.unwrap();
    drop(IdbStore::open(name).await.unwrap());
    let err = IdbRecords::open(name).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Backend(m) if m.contains("not a packed store")),
        "{err:?}"
    );
    IdbStore::delete(name).await.unwrap();
}

/// Syncs `fx` from the genesis peer over HTTP into `store`, then verifies it; returns the
/// report, the wall time of the sync and of the verify.
async fn sync_into<S: Store>(store: &S, fx: &Fixture) -> (Progress, f64, f64) {
    let (syncer, handle) = Syncer::new(fx.built.root, SyncConfig::default());
    let spec = PeerSpec::from_url(genesis_peer(), None).unwrap();
    let transport = TransportOptions {
        timeout: SyncConfig::default().request_timeout + Duration::from_millis(500),
        ..TransportOptions::default()
    };
    handle.add_peer(connect(&spec, transport));
    let t = now_ms();
    let report = syncer
        .run(store, &BrowserClock, &mut |_| {})
        .await
        .expect("sync");
    let sync_ms = now_ms() - t;
    assert!(report.complete);
    assert_eq!(report.nodes, fx.nodes());
    assert_eq!(report.codes, fx.codes());
    let t = now_ms();
    let v = walk::verify(store, fx.built.root).await.unwrap();
    let verify_ms = now_ms() - t;
    assert!(v.complete, "{v:?}");
    assert_eq!(v.missing_count, 0);
    assert!(v.corrupt.is_empty());
    assert_eq!(v.nodes, fx.nodes());
    assert_eq!(v.codes, fx.codes());
    assert_eq!(v.node_bytes as usize, fx.built.node_bytes());
    assert_eq!(v.code_bytes as usize, fx.built.code_bytes());
    let meta = store.meta().await.unwrap().unwrap();
    assert!(meta.complete);
    assert_eq!(meta.nodes, fx.nodes());
    drop(handle);
    (report, sync_ms, verify_ms)
}

fn line(layout: &str, r: &Progress, wall: f64, verify: f64) -> String {
    format!(
        "{layout:>11}: {} nodes {} codes, {} batches: sync {wall:.0} ms (commitMs {:.0} = {:.0} %, processMs {:.0}, waitMs {:.0}), verify {verify:.0} ms",
        r.nodes,
        r.codes,
        r.batches,
        r.timings.commit_ms,
        100.0 * r.timings.commit_ms / wall,
        r.timings.process_ms,
        r.timings.wait_ms,
    )
}

/// One sync into a fresh packed database (verified, reopened and verified again): its
/// line of the side-by-side.
async fn packed_round(fx: &Fixture, round: u32) -> (f64, f64) {
    let name = "ts-packed-genesis";
    let packed = fresh(name, PackedConfig::default()).await;
    let (report, ms, verify) = sync_into(&packed, fx).await;
    let b = packed.backend().stats();
    log(&line(&format!("packed #{round}"), &report, ms, verify));
    log(&format!(
        "             {} commits, {} records put ({:.1} MiB), {} runs / {} pages left, {} compactions, {} B of descriptors",
        b.commits,
        b.puts,
        b.put_bytes as f64 / 1048576.0,
        packed.run_count(),
        packed.page_count(),
        packed.stats().compactions,
        packed.descriptor_memory_bytes(),
    ));
    // Reopened, still complete.
    drop(packed);
    let packed = open(name, PackedConfig::default()).await;
    assert!(walk::verify(&packed, fx.built.root).await.unwrap().complete);
    drop(packed);
    IdbRecords::delete(name).await.unwrap();
    (ms, report.timings.commit_ms)
}

/// One sync into a fresh one-record-per-item database (`IdbStore`).
async fn per_item_round(fx: &Fixture, round: u32) -> (f64, f64) {
    let name = "ts-packed-genesis-per-item";
    IdbStore::delete(name).await.unwrap();
    let store = IdbStore::open(name).await.unwrap();
    let (report, ms, verify) = sync_into(&store, fx).await;
    log(&line(&format!("per-item #{round}"), &report, ms, verify));
    drop(store);
    IdbStore::delete(name).await.unwrap();
    (ms, report.timings.commit_ms)
}

/// Mainnet genesis from the reference peer into both layouts, verified complete with the
/// fixture's exact counts; the timings side by side (two rounds, in opposite orders).
/// (It hung intermittently until 5aed1fb: the driver spun without yielding while a write
/// was pending, so the write never landed.)
#[wasm_bindgen_test]
async fn genesis_sync_packed_vs_per_item() {
    let fx = Fixture::load(GENESIS_JSON);
    let p1 = packed_round(&fx, 1).await;
    let i1 = per_item_round(&fx, 1).await;
    let i2 = per_item_round(&fx, 2).await;
    let p2 = packed_round(&fx, 2).await;
    let (p_ms, p_commit) = ((p1.0 + p2.0) / 2.0, (p1.1 + p2.1) / 2.0);
    let (i_ms, i_commit) = ((i1.0 + i2.0) / 2.0, (i1.1 + i2.1) / 2.0);
    log(&format!(
        "mean of 2: packed sync {p_ms:.0} ms, commitMs {p_commit:.0}; per-item sync {i_ms:.0} ms, commitMs {i_commit:.0}; packed / per-item: sync {:.2}x, commitMs {:.2}x",
        p_ms / i_ms,
        p_commit / i_commit.max(1.0)
    ));
}
