//! The packed store (`triesync_core::packed`) over the in-memory record backend: the
//! `Store` contract against `MemoryStore`, full syncs, reopening, compaction, aborted
//! commits and the record count of a 100k-account sync.

mod common;

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use common::block_on;
use std::collections::BTreeMap;
use std::rc::Rc;
use triesync_core::driver::{Progress, SyncConfig, Syncer};
use triesync_core::packed::bloom::Bloom;
use triesync_core::packed::codec::raw_key;
use triesync_core::packed::{MemoryBackend, PackedConfig, PackedStore, Table};
use triesync_core::peer::Peer;
use triesync_core::state::BuiltState;
use triesync_core::store::{Batch, ItemKey, MemoryStore, Store, StoreError, SyncMeta};
use triesync_core::synthetic::{build_synthetic, SyntheticSpec};
use triesync_core::testing::{Behaviour, MemoryPeer};
use triesync_core::{keccak256, walk, H256};

/// xorshift64 (no rand dependency).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Small pages and tiers, so that small data spans many pages, runs and merges.
fn tiny() -> PackedConfig {
    PackedConfig {
        page_bytes: 600,
        tier_base_bytes: 1000,
        fan_in: 3,
        cache_pages: 2,
        compaction_flush_pages: 2,
        ..PackedConfig::default()
    }
}

fn open(backend: &MemoryBackend, config: PackedConfig) -> PackedStore<MemoryBackend> {
    block_on(PackedStore::open(backend.clone(), config)).expect("open")
}

/// A random item: a random key (node or code) and 1..300 random bytes.
fn random_item(rng: &mut Rng) -> (ItemKey, Vec<u8>) {
    let len = 1 + rng.below(300) as usize;
    let data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
    let hash = keccak256(&data);
    let key = if rng.below(5) == 0 {
        ItemKey::code(hash)
    } else {
        ItemKey::node(hash)
    };
    (key, data)
}

fn meta_n(n: u64) -> SyncMeta {
    SyncMeta {
        root: H256([n as u8; 32]),
        complete: n.is_multiple_of(2),
        nodes: n,
        node_bytes: 2 * n,
        codes: 3 * n,
        code_bytes: 4 * n,
    }
}

/// Both stores answer `keys` identically (contains, get_many, get, meta, frontier).
fn assert_same(packed: &PackedStore<MemoryBackend>, model: &MemoryStore, keys: &[ItemKey]) {
    assert_eq!(
        block_on(packed.contains(keys)).unwrap(),
        block_on(model.contains(keys)).unwrap()
    );
    assert_eq!(
        block_on(packed.get_many(keys)).unwrap(),
        block_on(model.get_many(keys)).unwrap()
    );
    if let Some(k) = keys.first() {
        assert_eq!(block_on(packed.get(*k)).unwrap(), model.get_sync(k));
    }
    assert_eq!(
        block_on(packed.meta()).unwrap(),
        block_on(model.meta()).unwrap()
    );
    assert_eq!(
        block_on(packed.frontier()).unwrap(),
        block_on(model.frontier()).unwrap()
    );
}

// ---- the Store contract ----

/// Random writes (new keys, rewrites of old keys with other bytes, duplicates within a
/// batch, meta-only writes, frontiers): after every write the packed store answers as
/// `MemoryStore` does, and so does a reopened one.
#[test]
fn test_contract_matches_memory_store() {
    for (seed, config) in [
        (1, tiny()),
        (
            2,
            PackedConfig {
                auto_compact: false,
                ..tiny()
            },
        ),
        (3, PackedConfig::default()),
    ] {
        let mut rng = Rng(0x9e37_79b9 + seed);
        let backend = MemoryBackend::new();
        let packed = open(&backend, config.clone());
        let model = MemoryStore::new();
        let mut known: Vec<ItemKey> = Vec::new();
        assert_same(&packed, &model, &[]);
        for step in 0..60u64 {
            let mut batch = Batch::default();
            for _ in 0..rng.below(40) {
                let (key, data) = if !known.is_empty() && rng.below(6) == 0 {
                    // Another value under an existing key (a damaged store's overwrite).
                    let key = known[rng.below(known.len() as u64) as usize];
                    (key, vec![rng.next() as u8; 1 + rng.below(50) as usize])
                } else {
                    random_item(&mut rng)
                };
                known.push(key);
                batch.push(key, data.clone());
                if rng.below(10) == 0 {
                    batch.push(key, data); // duplicated within the batch
                }
            }
            if rng.below(4) == 0 {
                batch.frontier = Some((0..rng.below(4)).map(|i| vec![i as u8; 3]).collect());
            }
            let meta = meta_n(step);
            block_on(packed.write(&batch, &meta)).unwrap();
            block_on(model.write(&batch, &meta)).unwrap();
            let mut probe = known.clone();
            probe.extend((0..20).map(|_| random_item(&mut rng).0)); // absent keys
            assert_same(&packed, &model, &probe);
        }
        let reopened = open(&backend, config);
        assert_same(&reopened, &model, &known);
        assert_eq!(reopened.run_count(), packed.run_count());
    }
}

// ---- full syncs ----

async fn sync_into(
    store: &PackedStore<MemoryBackend>,
    state: &BuiltState,
    config: SyncConfig,
) -> Progress {
    let clock = common::clock();
    let (syncer, handle) = Syncer::new(state.root, config);
    handle.add_peer(Rc::new(MemoryPeer::new("p", state, Behaviour::Honest)) as Rc<dyn Peer>);
    syncer
        .run(store, &clock, &mut |_| {})
        .await
        .expect("sync completes")
}

fn assert_verified(store: &PackedStore<MemoryBackend>, state: &BuiltState, stem: &str) {
    let report = block_on(walk::verify(store, state.root)).unwrap();
    assert!(report.complete, "{stem}: {report:?}");
    assert_eq!(report.nodes as usize, state.nodes.len(), "{stem}: nodes");
    assert_eq!(report.codes as usize, state.codes.len(), "{stem}: codes");
    assert_eq!(
        report.node_bytes as usize,
        state.nodes.values().map(Vec::len).sum::<usize>(),
        "{stem}: node bytes"
    );
    assert_eq!(
        report.code_bytes as usize,
        state.codes.values().map(Vec::len).sum::<usize>(),
        "{stem}: code bytes"
    );
}

common::async_test! {
    /// Every fixture synced by the driver into a packed store (small batches, so several runs
    /// and merges), verified complete with exact counts; then reopened from the backend and
    /// verified again; then resynced: nothing fetched.
    async fn test_sync_every_fixture_then_reopen() {
        for (stem, _, nodes, node_bytes, codes, code_bytes) in common::STATES {
            let state = common::load_state(stem).1;
            for config in [PackedConfig::default(), tiny()] {
                let backend = MemoryBackend::new();
                let store = open(&backend, config.clone());
                let sync = SyncConfig {
                    batch_bytes: 16 * 1024,
                    ..SyncConfig::default()
                };
                let progress = sync_into(&store, &state, sync.clone()).await;
                assert!(progress.complete);
                assert_eq!(
                    (progress.nodes as usize, progress.node_bytes as usize),
                    (nodes, node_bytes),
                    "{stem}"
                );
                assert_eq!(
                    (progress.codes as usize, progress.code_bytes as usize),
                    (codes, code_bytes),
                    "{stem}"
                );
                assert_verified(&store, &state, stem);
                let meta = block_on(store.meta()).unwrap().unwrap();
                assert!(meta.complete && meta.root == state.root);

                let reopened = open(&backend, config);
                assert_eq!(reopened.run_count(), store.run_count());
                assert_verified(&reopened, &state, stem);
                assert_eq!(block_on(reopened.meta()).unwrap(), Some(meta));
                let again = sync_into(&reopened, &state, sync).await;
                assert_eq!(
                    again.nodes + again.codes,
                    0,
                    "{stem}: a complete store fetches nothing"
                );
            }
        }
    }
}

// ---- compaction ----

/// Property: over random batches (keys shared between batches, several fan-ins and page
/// sizes), after any number of merges every item is present once with its bytes, no page
/// is unreferenced, and a full merge leaves exactly the distinct items in one run.
#[test]
fn test_compaction_preserves_every_item() {
    for seed in 1..=12u64 {
        let mut rng = Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d));
        let config = PackedConfig {
            page_bytes: 200 + rng.below(3000) as usize,
            fan_in: 2 + rng.below(4) as usize,
            tier_base_bytes: 500 + rng.below(5000),
            compaction_flush_pages: 1 + rng.below(4) as usize,
            ..PackedConfig::default()
        };
        let backend = MemoryBackend::new();
        let store = open(&backend, config.clone());
        let mut items: BTreeMap<ItemKey, Vec<u8>> = BTreeMap::new();
        let mut pool: Vec<(ItemKey, Vec<u8>)> = Vec::new();
        for _ in 0..(20 + rng.below(60)) {
            let mut batch = Batch::default();
            for _ in 0..rng.below(50) {
                let item = if !pool.is_empty() && rng.below(4) == 0 {
                    pool[rng.below(pool.len() as u64) as usize].clone() // same item again
                } else {
                    random_item(&mut rng)
                };
                pool.push(item.clone());
                items.insert(item.0, item.1.clone());
                batch.push(item.0, item.1);
            }
            block_on(store.write(&batch, &SyncMeta::default())).unwrap();
        }
        assert!(store.stats().compactions > 0, "seed {seed}: merges ran");
        let check = |store: &PackedStore<MemoryBackend>| {
            let keys: Vec<ItemKey> = items.keys().copied().collect();
            let got = block_on(store.get_many(&keys)).unwrap();
            for (k, v) in keys.iter().zip(got) {
                assert_eq!(v.as_ref(), items.get(k), "seed {seed}: {k}");
            }
            let referenced = store.page_count();
            assert_eq!(
                backend.count(Table::Pages),
                referenced,
                "seed {seed}: no orphan pages"
            );
            assert_eq!(backend.count(Table::Runs), store.run_count());
        };
        check(&store);
        block_on(store.compact_full()).unwrap();
        check(&store);
        assert!(store.run_count() <= 1);
        assert_eq!(
            store.item_entries() as usize,
            items.len(),
            "seed {seed}: each item once"
        );
        check(&open(&backend, config));
    }
}

/// The run count stays logarithmic under the default policy.
#[test]
fn test_run_count_is_logarithmic() {
    let config = PackedConfig {
        page_bytes: 4096,
        tier_base_bytes: 8 * 1024,
        ..PackedConfig::default()
    };
    let store = open(&MemoryBackend::new(), config);
    let mut rng = Rng(77);
    let mut most = 0;
    for _ in 0..400 {
        let mut batch = Batch::default();
        for _ in 0..50 {
            let (k, v) = random_item(&mut rng);
            batch.push(k, v);
        }
        block_on(store.write(&batch, &SyncMeta::default())).unwrap();
        most = most.max(store.run_count());
    }
    // ~3 MB in 8 KiB..32 KiB tier-0 runs: log4(3 MB / 8 KiB) ≈ 4.3 tiers, ≤ 3 runs each.
    eprintln!("400 writes: {} runs now, at most {most}", store.run_count());
    assert!(most <= 3 * 6, "runs {most}");
}

// ---- failures ----

/// What a store answers: the items, the progress record, the frontier.
type Snapshot = (Vec<Option<Vec<u8>>>, Option<SyncMeta>, Vec<Vec<u8>>);

fn snapshot(store: &PackedStore<MemoryBackend>, keys: &[ItemKey]) -> Snapshot {
    (
        block_on(store.get_many(keys)).unwrap(),
        block_on(store.meta()).unwrap(),
        block_on(store.frontier()).unwrap(),
    )
}

/// A batch whose commit fails leaves the store (live and reopened) exactly as before,
/// and the next write works.
#[test]
fn test_aborted_write_leaves_previous_state() {
    let backend = MemoryBackend::new();
    let store = open(&backend, tiny());
    let mut rng = Rng(5);
    let mut keys = Vec::new();
    for n in 0..10 {
        let mut batch = Batch {
            frontier: Some(vec![vec![n]]),
            ..Batch::default()
        };
        for _ in 0..20 {
            let (k, v) = random_item(&mut rng);
            keys.push(k);
            batch.push(k, v);
        }
        block_on(store.write(&batch, &meta_n(n as u64))).unwrap();
    }
    let mut failed = Batch {
        frontier: Some(vec![vec![0xff; 9]]),
        ..Batch::default()
    };
    let mut new_keys = Vec::new();
    for _ in 0..30 {
        let (k, v) = random_item(&mut rng);
        new_keys.push(k);
        failed.push(k, v);
    }
    let probe: Vec<ItemKey> = keys.iter().chain(&new_keys).copied().collect();
    let before = snapshot(&store, &probe);
    let records = (backend.count(Table::Pages), backend.count(Table::Runs));
    for err in [
        StoreError::QuotaExceeded,
        StoreError::Aborted("injected".into()),
    ] {
        backend.fail_commit_in(0, err.clone());
        assert_eq!(block_on(store.write(&failed, &meta_n(99))), Err(err));
        assert_eq!(snapshot(&store, &probe), before);
        assert_eq!(snapshot(&open(&backend, tiny()), &probe), before);
        assert_eq!(
            (backend.count(Table::Pages), backend.count(Table::Runs)),
            records
        );
    }
    block_on(store.write(&failed, &meta_n(99))).unwrap();
    assert!(block_on(store.contains(&probe))
        .unwrap()
        .into_iter()
        .all(|p| p));
}

/// A compaction that fails midway (after streaming pages, or at its final commit) loses
/// nothing: every item is still there, live and after reopening, and no page is left
/// unreferenced.
#[test]
fn test_failed_compaction_loses_nothing() {
    for fail_in in 0..6 {
        let config = PackedConfig {
            auto_compact: false,
            ..tiny()
        };
        let backend = MemoryBackend::new();
        let store = open(&backend, config.clone());
        let mut rng = Rng(11 + fail_in);
        let mut items = Vec::new();
        for _ in 0..12 {
            let mut batch = Batch::default();
            for _ in 0..15 {
                let item = random_item(&mut rng);
                items.push(item.clone());
                batch.push(item.0, item.1);
            }
            block_on(store.write(&batch, &SyncMeta::default())).unwrap();
        }
        let keys: Vec<ItemKey> = items.iter().map(|i| i.0).collect();
        let want: Vec<Option<Vec<u8>>> = items.iter().map(|i| Some(i.1.clone())).collect();
        let runs = store.run_count();
        backend.fail_commit_in(fail_in, StoreError::Aborted("injected".into()));
        let result = block_on(store.compact_full());
        assert_eq!(
            block_on(store.get_many(&keys)).unwrap(),
            want,
            "fail_in {fail_in}"
        );
        if result.is_err() {
            assert_eq!(store.run_count(), runs);
            assert_eq!(store.stats().compaction_errors, 1);
        }
        assert_eq!(
            backend.count(Table::Pages),
            store.page_count(),
            "fail_in {fail_in}: orphans cleaned"
        );
        let reopened = open(&backend, config);
        assert_eq!(block_on(reopened.get_many(&keys)).unwrap(), want);
    }
}

/// Orphan pages (a compaction interrupted by a crash) are deleted on open.
#[test]
fn test_open_removes_orphan_pages() {
    let backend = MemoryBackend::new();
    let store = open(&backend, tiny());
    let (k, v) = random_item(&mut Rng(3));
    block_on(store.write(
        &Batch {
            items: vec![(k, v.clone())],
            bytes: v.len(),
            frontier: None,
        },
        &SyncMeta::default(),
    ))
    .unwrap();
    backend.put_raw(Table::Pages, 1_000_000, vec![1, 2, 3]);
    let reopened = open(&backend, tiny());
    assert_eq!(reopened.stats().orphans_removed, 1);
    assert_eq!(backend.count(Table::Pages), reopened.page_count());
    assert_eq!(block_on(reopened.get(k)).unwrap(), Some(v));
    // New ids never collide with the orphan's.
    let (k2, v2) = random_item(&mut Rng(4));
    block_on(reopened.write(
        &Batch {
            items: vec![(k2, v2.clone())],
            bytes: v2.len(),
            frontier: None,
        },
        &SyncMeta::default(),
    ))
    .unwrap();
    assert_eq!(block_on(reopened.get(k2)).unwrap(), Some(v2));
}

/// A backend that, at the first commit of a compaction's streamed pages (pages without a
/// descriptor), opens a second connection's store on the same data: what a `StateDb`
/// opened in another tab does while a sync compacts.
#[derive(Clone)]
struct OpensMidCompaction {
    inner: MemoryBackend,
    reader: bool,
    opened: Rc<std::cell::Cell<bool>>,
}

impl triesync_core::packed::RecordBackend for OpensMidCompaction {
    async fn get(&self, t: Table, keys: &[u64]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        self.inner.get(t, keys).await
    }
    async fn get_all(&self, t: Table) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        self.inner.get_all(t).await
    }
    async fn keys(&self, t: Table) -> Result<Vec<u64>, StoreError> {
        self.inner.keys(t).await
    }
    async fn commit(
        &self,
        puts: Vec<triesync_core::packed::backend::Put>,
        deletes: Vec<(Table, u64)>,
    ) -> Result<(), StoreError> {
        let streamed = !puts.is_empty() && puts.iter().all(|p| p.0 == Table::Pages);
        self.inner.commit(puts, deletes).await?;
        if streamed && !self.opened.replace(true) {
            let other = if self.reader {
                PackedStore::open_reader(self.inner.clone(), tiny()).await?
            } else {
                PackedStore::open(self.inner.clone(), tiny()).await?
            };
            assert_eq!(other.is_reader(), self.reader);
        }
        Ok(())
    }
}

/// A reader opened while another connection's compaction is streaming pages leaves them
/// alone, so the compaction's run keeps every page; a writer's open (the one writer's, on
/// startup) deletes them, which is why a second connection must open as a reader.
#[test]
fn test_reader_open_leaves_a_running_compaction_alone() {
    for reader in [true, false] {
        let backend = OpensMidCompaction {
            inner: MemoryBackend::new(),
            reader,
            opened: Rc::new(std::cell::Cell::new(false)),
        };
        let config = PackedConfig {
            auto_compact: false,
            compaction_flush_pages: 1,
            ..tiny()
        };
        let store = block_on(PackedStore::open(backend.clone(), config)).unwrap();
        let mut rng = Rng(11);
        let mut items = Vec::new();
        for b in 0..4 {
            let mut batch = Batch::default();
            for _ in 0..20 {
                let (k, v) = random_item(&mut rng);
                batch.push(k, v.clone());
                items.push((k, v));
            }
            block_on(store.write(&batch, &meta_n(b))).unwrap();
        }
        assert!(store.needs_compaction());
        block_on(store.compact_all()).unwrap();
        assert!(backend.opened.get(), "pages were streamed");
        let keys: Vec<ItemKey> = items.iter().map(|(k, _)| *k).collect();
        let got = block_on(store.get_many(&keys));
        if reader {
            let want: Vec<_> = items.iter().map(|(_, v)| Some(v.clone())).collect();
            assert_eq!(got.unwrap(), want);
            let reopened = open(&backend.inner, tiny());
            assert_eq!(reopened.stats().orphans_removed, 0);
            assert_eq!(block_on(reopened.get_many(&keys)).unwrap(), want);
        } else {
            // The writer's open took the streamed pages: the merged run lost some.
            assert!(got.is_err(), "a second writer's open broke the compaction");
        }
    }
    // A reader refuses to write.
    let r = block_on(PackedStore::open_reader(MemoryBackend::new(), tiny())).unwrap();
    assert!(block_on(r.write(&Batch::default(), &SyncMeta::default())).is_err());
}

// ---- the Bloom filter ----

#[test]
fn test_bloom_has_no_false_negatives_and_few_false_positives() {
    let mut rng = Rng(9);
    let keys: Vec<_> = (0..20_000)
        .map(|_| raw_key(&random_item(&mut rng).0))
        .collect();
    let mut bloom = Bloom::with_capacity(10_000, 12);
    for k in &keys[..10_000] {
        bloom.insert(k);
    }
    assert!(keys[..10_000].iter().all(|k| bloom.may_contain(k)));
    let fp = keys[10_000..]
        .iter()
        .filter(|k| bloom.may_contain(k))
        .count();
    eprintln!(
        "bloom 12 bits/key: {fp} false positives in 10000 ({:.2} %)",
        fp as f64 / 100.0
    );
    assert!(fp < 80, "{fp}");
}

// ---- scale ----

common::async_test! {
    /// A 100k-account synthetic sync into the packed store with the driver's default batches:
    /// records written are ~bytes / page size, not ~items; descriptor memory stays a few bits
    /// per key; the result verifies complete, also after reopening.
    async fn test_sync_100k_accounts_records_and_memory() {
        let state = build_synthetic(&SyntheticSpec::with_accounts(100_000, 1));
        let items = (state.nodes.len() + state.codes.len()) as u64;
        let bytes: u64 = state
            .nodes
            .values()
            .chain(state.codes.values())
            .map(|v| v.len() as u64)
            .sum();
        let backend = MemoryBackend::new();
        let store = open(&backend, PackedConfig::default());
        let started = common::now_ms();
        let progress = sync_into(&store, &state, SyncConfig::default()).await;
        let elapsed = (common::now_ms() - started) / 1e3;
        assert_eq!(progress.nodes + progress.codes, items);
        assert_verified(&store, &state, "synthetic 100k");

        let b = backend.stats();
        let s = store.stats();
        let memory = store.descriptor_memory_bytes();
        let stored = store.item_entries();
        let bits_per_key = memory as f64 * 8.0 / stored as f64;
        eprintln!(
            "synthetic 100k: {items} items, {bytes} bytes, {} batches in {:.2} s\n\
             records put: {} total in {} commits ({} by batch writes, {} by {} compactions), \
             {:.4} records/item, {:.1} KiB/record; pages now {} ({} bytes), runs now {}\n\
             descriptor memory {memory} bytes for {stored} stored items = {:.2} bytes ({bits_per_key:.1} bits) per item; \
             lookups: {} page reads, {} Bloom false-positive reads",
            s.writes,
            elapsed,
            b.puts,
            b.commits,
            s.write_records,
            s.compaction_records,
            s.compactions,
            b.puts as f64 / items as f64,
            b.put_bytes as f64 / b.puts as f64 / 1024.0,
            backend.count(Table::Pages),
            backend.bytes(Table::Pages),
            store.run_count(),
            memory as f64 / stored as f64,
            s.page_reads,
            s.false_positive_reads,
        );
        // One record per item would be `items` puts; packed it is ~(1 + tiers) × bytes / page.
        assert!(b.puts < items / 20, "records {} for {items} items", b.puts);
        assert!(
            s.write_records <= s.writes * 6,
            "a ~100 KiB batch is a few records"
        );
        assert!(bits_per_key < 20.0, "{bits_per_key} bits per key");
        assert!(store.run_count() <= 16, "runs {}", store.run_count());
        // Reopen: descriptors reloaded, lookups work.
        let reopened = open(&backend, PackedConfig::default());
        assert_verified(&reopened, &state, "synthetic 100k reopened");
        let full = block_on(reopened.compact_full()).unwrap();
        assert!(full || reopened.run_count() == 1);
        assert_eq!(
            reopened.item_entries(),
            items,
            "after a full merge each item is stored once"
        );
        assert_verified(&reopened, &state, "synthetic 100k fully merged");
    }
}
