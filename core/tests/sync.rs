//! Sync scenarios in the manner of go-ethereum's `trie/sync_test.go`: the scheduler driven
//! by hand (Missing → read from source → Process → Commit) and the driver against
//! in-memory peers, honest and hostile.

mod common;

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use common::block_on;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::time::Duration;
use triesync_core::driver::{Progress, SyncConfig, SyncError, Syncer};
use triesync_core::nodes::{decode_node, ChildRef, Node};
use triesync_core::peer::Peer;
use triesync_core::scheduler::{ProcessError, Scheduler};
use triesync_core::state::{build_state, Account, BuiltState, GenesisAccount};
use triesync_core::store::{ItemKey, Kind, MemoryStore, Store, SyncMeta};
use triesync_core::synthetic::{build_synthetic, SyntheticSpec};
use triesync_core::testing::{Behaviour, MemoryPeer};
use triesync_core::{keccak256, walk, EMPTY_CODE_HASH, EMPTY_ROOT, H256};

/// Tiny deterministic shuffle (no rand dependency).
fn shuffle<T>(items: &mut [T], seed: &mut u64) {
    for i in (1..items.len()).rev() {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        items.swap(i, (*seed % (i as u64 + 1)) as usize);
    }
}

fn source(state: &BuiltState, key: &ItemKey) -> Vec<u8> {
    match key.kind {
        Kind::Node => state.nodes[&key.hash].clone(),
        Kind::Code => state.codes[&key.hash].clone(),
    }
}

/// Options of a hand-driven scheduler sync.
#[derive(Clone, Copy)]
struct Manual {
    /// Items taken from `missing` at a time.
    count: usize,
    /// Shuffle each delivery with this seed (0 = in order).
    seed: u64,
    /// Deliver every blob twice.
    twice: bool,
    /// Stop after this many commits (simulated crash: the unflushed batch is lost).
    stop_after_commits: Option<usize>,
    /// Commit when the batch reaches this many bytes.
    batch_bytes: usize,
}

impl Default for Manual {
    fn default() -> Self {
        Manual {
            count: 384,
            seed: 0,
            twice: false,
            stop_after_commits: None,
            batch_bytes: 100 * 1024,
        }
    }
}

/// Outcome of a hand-driven sync.
struct ManualRun {
    fetched: Vec<ItemKey>,
    committed: HashSet<ItemKey>,
    peak_live: usize,
    live_samples: Vec<usize>,
    done: bool,
}

fn manual_sync(state: &BuiltState, store: &MemoryStore, opts: Manual) -> ManualRun {
    let mut sched = Scheduler::new(state.root, true);
    let mut run = ManualRun {
        fetched: vec![],
        committed: HashSet::new(),
        peak_live: 0,
        live_samples: vec![],
        done: false,
    };
    let mut seed = opts.seed;
    let mut commits = 0;
    loop {
        loop {
            let keys = sched.pending_checks(4096);
            if keys.is_empty() {
                break;
            }
            let present = block_on(store.contains(&keys)).unwrap();
            for (k, p) in keys.into_iter().zip(present) {
                sched.resolve_check(k, p);
            }
        }
        let flush =
            sched.batch_bytes() >= opts.batch_bytes || (sched.is_done() && sched.batch_bytes() > 0);
        if flush {
            if opts.stop_after_commits == Some(commits) {
                return run;
            }
            let batch = sched.take_batch();
            run.committed.extend(batch.items.iter().map(|(k, _)| *k));
            block_on(store.write(&batch, &SyncMeta::default())).unwrap();
            sched.batch_written();
            commits += 1;
        }
        if sched.is_done() && sched.batch_bytes() == 0 {
            run.done = true;
            return run;
        }
        let mut keys = sched.missing(opts.count);
        assert!(
            !keys.is_empty(),
            "scheduler stalled with {} pending",
            sched.pending()
        );
        run.fetched.extend(&keys);
        if opts.seed != 0 {
            shuffle(&mut keys, &mut seed);
        }
        for key in &keys {
            let blob = source(state, key);
            assert_eq!(sched.process(blob.clone()), Ok(*key));
            if opts.twice {
                assert_eq!(
                    sched.process(blob),
                    Err(ProcessError::AlreadyProcessed(key.hash))
                );
            }
        }
        run.peak_live = run.peak_live.max(sched.live_entries());
        run.live_samples.push(sched.live_entries());
    }
}

/// The store holds exactly the state's nodes and codes.
fn assert_exact(store: &MemoryStore, state: &BuiltState) {
    assert_eq!(store.count(Kind::Node), state.nodes.len(), "node count");
    assert_eq!(store.bytes(Kind::Node), state.node_bytes(), "node bytes");
    assert_eq!(store.count(Kind::Code), state.codes.len(), "code count");
    assert_eq!(store.bytes(Kind::Code), state.code_bytes(), "code bytes");
    let report = block_on(walk::verify(store, state.root)).unwrap();
    assert!(report.complete, "verify: {report:?}");
    assert_eq!(report.nodes as usize, state.nodes.len());
    assert_eq!(report.codes as usize, state.codes.len());
}

/// Every stored item hashes to its key and has every child present: the invariant that
/// makes "present" mean "complete".
fn assert_consistent(store: &MemoryStore) {
    for key in store.keys() {
        let data = store.get_sync(&key).unwrap();
        assert_eq!(
            keccak256(&data),
            key.hash,
            "{key:?} does not hash to its key"
        );
        if key.kind == Kind::Code {
            continue;
        }
        let mut stack = vec![data];
        while let Some(enc) = stack.pop() {
            let node = decode_node(&enc).expect("stored node decodes");
            let mut values = vec![];
            match &node {
                Node::Leaf { value, .. } => values.push(value.to_vec()),
                Node::Branch { value: Some(v), .. } => values.push(v.to_vec()),
                _ => {}
            }
            for (_, c) in node.children() {
                match c {
                    ChildRef::Hash(h) => assert!(
                        store.get_sync(&ItemKey::node(h)).is_some(),
                        "{key:?} stored without child {h:?}"
                    ),
                    ChildRef::Inline(raw) => stack.push(raw.to_vec()),
                    ChildRef::Empty => {}
                }
            }
            for v in values {
                if let Ok(acc) = Account::decode(&v) {
                    if acc.storage_root != EMPTY_ROOT {
                        assert!(
                            store.get_sync(&ItemKey::node(acc.storage_root)).is_some(),
                            "account without storage"
                        );
                    }
                    if acc.code_hash != EMPTY_CODE_HASH {
                        assert!(
                            store.get_sync(&ItemKey::code(acc.code_hash)).is_some(),
                            "account without code"
                        );
                    }
                }
            }
        }
    }
}

fn fixture(stem: &str) -> BuiltState {
    common::load_state(stem).1
}

fn quick_config() -> SyncConfig {
    SyncConfig {
        request_timeout: Duration::from_millis(300),
        batch_bytes: 16 * 1024,
        // Failing peers reach their failure limit before the good peer is done.
        failure_rest: Duration::from_millis(1),
        ..SyncConfig::default()
    }
}

async fn drive(
    root: H256,
    store: &MemoryStore,
    peers: Vec<Rc<dyn Peer>>,
    config: SyncConfig,
) -> (Result<Progress, SyncError>, Vec<Progress>) {
    let clock = common::clock();
    let (syncer, handle) = Syncer::new(root, config);
    for p in peers {
        handle.add_peer(p);
    }
    let mut seen = vec![];
    let result = syncer
        .run(store, &clock, &mut |p| seen.push(p.clone()))
        .await;
    (result, seen)
}

// ---- the scheduler by hand ----

#[test]
fn test_sync_every_fixture_in_order() {
    for (stem, ..) in common::STATES {
        let state = fixture(stem);
        let store = MemoryStore::new();
        let run = manual_sync(&state, &store, Manual::default());
        assert!(run.done);
        assert_exact(&store, &state);
        assert_eq!(
            run.fetched.len(),
            state.nodes.len() + state.codes.len(),
            "{stem}: each item fetched once"
        );
    }
}

#[test]
fn test_sync_random_order() {
    let state = fixture("bt-block504980");
    for seed in [1, 7, 99] {
        let store = MemoryStore::new();
        let run = manual_sync(
            &state,
            &store,
            Manual {
                seed,
                ..Manual::default()
            },
        );
        assert!(run.done);
        assert_exact(&store, &state);
    }
}

#[test]
fn test_sync_small_batches() {
    let state = fixture("mainnet-genesis");
    for count in [1, 3, 17] {
        let store = MemoryStore::new();
        let run = manual_sync(
            &state,
            &store,
            Manual {
                count,
                batch_bytes: 4096,
                seed: 5,
                ..Manual::default()
            },
        );
        assert!(run.done);
        assert_exact(&store, &state);
        assert_consistent(&store);
    }
}

#[test]
fn test_sync_duplicated_deliveries() {
    let state = fixture("bt-walletConfirm");
    let store = MemoryStore::new();
    let run = manual_sync(
        &state,
        &store,
        Manual {
            twice: true,
            ..Manual::default()
        },
    );
    assert!(run.done);
    assert_exact(&store, &state);
}

#[test]
fn test_sync_unrequested_and_mismatching_blobs_are_rejected() {
    let state = fixture("sepolia-genesis");
    let mut sched = Scheduler::new(state.root, false);
    let root_key = sched.pending_checks(10)[0];
    sched.resolve_check(root_key, false);
    assert_eq!(sched.missing(10), vec![root_key]);
    // Unrequested: a real node of the state that nobody asked for yet.
    let other = state.nodes.iter().find(|(h, _)| **h != state.root).unwrap();
    assert_eq!(
        sched.process(other.1.clone()),
        Err(ProcessError::NotRequested(*other.0))
    );
    // A corrupt root: rejected, and the root is still wanted.
    let mut bad = state.nodes[&state.root].clone();
    bad[5] ^= 0xff;
    assert!(matches!(
        sched.process(bad),
        Err(ProcessError::NotRequested(_))
    ));
    assert_eq!(sched.batch_bytes(), 0);
    sched.retry(&[root_key]);
    assert_eq!(
        sched.missing(10),
        vec![root_key],
        "asked again after the bad blob"
    );
    assert_eq!(
        sched.process(state.nodes[&state.root].clone()),
        Ok(root_key)
    );
    assert!(
        sched.missing(100).len() > 1,
        "the good root opened its children"
    );
}

#[test]
fn test_sync_partial_answers() {
    // Deliver only the first half of every request; the rest comes back through retry.
    let state = fixture("bt-block504980");
    let store = MemoryStore::new();
    let mut sched = Scheduler::new(state.root, true);
    let mut rounds = 0;
    while !(sched.is_done() && sched.batch_bytes() == 0) {
        for k in sched.pending_checks(1000) {
            sched.resolve_check(k, false);
        }
        let keys = sched.missing(8);
        let (now, later) = keys.split_at(keys.len().div_ceil(2));
        for k in now {
            sched.process(source(&state, k)).unwrap();
        }
        sched.retry(later);
        let batch = sched.take_batch();
        block_on(store.write(&batch, &SyncMeta::default())).unwrap();
        sched.batch_written();
        rounds += 1;
        assert!(rounds < 10_000);
    }
    assert_exact(&store, &state);
}

#[test]
fn test_sync_interrupt_then_resume_fetches_nothing_committed_twice() {
    let state = fixture("mainnet-genesis");
    let store = MemoryStore::new();
    let first = manual_sync(
        &state,
        &store,
        Manual {
            stop_after_commits: Some(5),
            seed: 3,
            ..Manual::default()
        },
    );
    assert!(!first.done);
    assert_consistent(&store);
    let committed = first.committed.len();
    assert!(committed > 1000, "committed {committed}");
    let second = manual_sync(
        &state,
        &store,
        Manual {
            seed: 4,
            ..Manual::default()
        },
    );
    assert!(second.done);
    assert_exact(&store, &state);
    let refetched: Vec<_> = second
        .fetched
        .iter()
        .filter(|k| first.committed.contains(k))
        .collect();
    assert!(
        refetched.is_empty(),
        "{} committed items fetched again",
        refetched.len()
    );
    // What was fetched but not yet committed at the crash is bounded by the frontier.
    let lost = first.fetched.len() - committed;
    assert!(
        lost <= first.peak_live + 384,
        "lost {lost} > frontier {}",
        first.peak_live
    );
    assert_eq!(second.fetched.len() + committed, state.nodes.len());
}

common::async_test! {
    async fn test_sync_empty_root_needs_nothing() {
        let mut sched = Scheduler::new(EMPTY_ROOT, true);
        assert!(sched.is_done());
        assert!(sched.pending_checks(10).is_empty());
        let store = MemoryStore::new();
        let peer = MemoryPeer::new("p", &BuiltState::default(), Behaviour::Honest);
        let (result, _) = drive(
            EMPTY_ROOT,
            &store,
            vec![Rc::new(peer.clone())],
            quick_config(),
        ).await;
        assert!(result.unwrap().complete);
        assert_eq!(peer.requests.get(), 0);
    }
}

common::async_test! {
    async fn test_sync_root_already_in_store_fetches_nothing() {
        let state = fixture("bt-walletConfirm");
        let store = MemoryStore::new();
        manual_sync(&state, &store, Manual::default());
        let peer = MemoryPeer::new("p", &state, Behaviour::Honest);
        let (result, _) = drive(
            state.root,
            &store,
            vec![Rc::new(peer.clone())],
            quick_config(),
        ).await;
        let report = result.unwrap();
        assert!(report.complete);
        assert_eq!(report.found_in_store, 1);
        assert_eq!(peer.items_asked(), 0);
    }
}

common::async_test! {
    async fn test_sync_shared_storage_and_code_fetched_once() {
        let mut slot_value = [0u8; 32];
        slot_value[31] = 42;
        let contract = |addr: u8| GenesisAccount {
            address: [addr; 20],
            code: [0x60u8, 0x2a, 0x60, 0x00, 0x55].repeat(20),
            storage: (0..40u8).map(|i| ([i; 32], slot_value)).collect(),
            ..GenesisAccount::default()
        };
        let state = build_state(vec![contract(1), contract(2), contract(3)]);
        assert_eq!(state.codes.len(), 1);
        let store = MemoryStore::new();
        let peer = MemoryPeer::new("p", &state, Behaviour::Honest);
        let (result, _) = drive(
            state.root,
            &store,
            vec![Rc::new(peer.clone())],
            quick_config(),
        ).await;
        assert!(result.unwrap().complete);
        assert_exact(&store, &state);
        let asked = peer.asked.borrow();
        assert!(asked.values().all(|&n| n == 1), "an item was asked twice");
        assert_eq!(asked.len(), state.nodes.len() + state.codes.len());
    }
}

// ---- the driver with peers ----

common::async_test! {
    async fn test_driver_syncs_every_fixture_from_one_peer() {
        for (stem, ..) in common::STATES {
            let state = fixture(stem);
            let store = MemoryStore::new();
            let peer = MemoryPeer::new("p", &state, Behaviour::Honest);
            let (result, progress) = drive(
                state.root,
                &store,
                vec![Rc::new(peer)],
                SyncConfig::default(),
            ).await;
            let report = result.unwrap();
            assert!(report.complete, "{stem}");
            assert_eq!(report.nodes as usize, state.nodes.len());
            assert_eq!(report.codes as usize, state.codes.len());
            assert!(!progress.is_empty());
            assert!(progress.last().unwrap().complete);
            assert_exact(&store, &state);
            let meta = block_on(store.meta()).unwrap().unwrap();
            assert!(meta.complete);
            assert_eq!(meta.root, state.root);
        }
    }
}

async fn hostile_next_to_good(behaviour: Behaviour) -> (Progress, MemoryStore, BuiltState) {
    let state = fixture("mainnet-genesis");
    let store = MemoryStore::new();
    let good = MemoryPeer::new("good", &state, Behaviour::Honest);
    let bad = good.sibling("bad", behaviour);
    let (result, _) = drive(
        state.root,
        &store,
        vec![Rc::new(bad), Rc::new(good)],
        quick_config(),
    )
    .await;
    let report = result.unwrap();
    assert_exact(&store, &state);
    (report, store, state)
}

common::async_test! {
    async fn test_driver_timeout_peer_is_dropped_and_good_peer_finishes() {
        let (report, ..) = hostile_next_to_good(Behaviour::Stall).await;
        let bad = &report.peers[0];
        assert!(bad.timeouts >= 1);
        assert!(bad.dropped.is_some(), "{bad:?}");
    }
}

common::async_test! {
    async fn test_driver_dropping_peer() {
        let (report, ..) = hostile_next_to_good(Behaviour::Drop).await;
        assert!(report.peers[0].failures >= 3);
        assert!(report.peers[0].dropped.is_some());
    }
}

common::async_test! {
    async fn test_driver_garbage_peer() {
        let (report, ..) = hostile_next_to_good(Behaviour::Garbage).await;
        assert!(report.peers[0].dropped.is_some());
    }
}

common::async_test! {
    async fn test_driver_corrupt_peer() {
        let (report, ..) = hostile_next_to_good(Behaviour::Corrupt).await;
        assert!(report.peers[0].rejected > 0);
        assert!(report.peers[0].dropped.is_some());
        assert_eq!(report.peers[0].items, 0);
    }
}

common::async_test! {
    async fn test_driver_partial_and_empty_answers() {
        let (report, ..) = hostile_next_to_good(Behaviour::OmitEvery(2)).await;
        assert!(report.peers[0].omitted > 0);
        let (report, ..) = hostile_next_to_good(Behaviour::Empty).await;
        assert!(report.peers[0].omitted > 0);
        assert_eq!(report.peers[0].items, 0);
    }
}

common::async_test! {
    async fn test_driver_unrequested_and_duplicate_blobs() {
        let junk = vec![vec![0xc0], vec![1, 2, 3], vec![0x80; 40]];
        let (report, ..) = hostile_next_to_good(Behaviour::Unrequested(junk)).await;
        assert!(report.rejected > 0);
        assert!(report.peers[0].dropped.is_some());
        let (report, ..) = hostile_next_to_good(Behaviour::Duplicate(3)).await;
        assert!(report.duplicates > 0);
    }
}

common::async_test! {
    async fn test_driver_slow_peer_is_kept_and_used() {
        let clock: Rc<dyn triesync_core::peer::Clock> = Rc::new(common::clock());
        let (report, ..) = hostile_next_to_good(Behaviour::Delay(Duration::from_millis(5), clock)).await;
        assert!(report.peers[0].dropped.is_none());
        assert!(report.peers[0].items > 0);
    }
}

common::async_test! {
    async fn test_driver_only_hostile_peers_fail_typed_and_store_stays_consistent() {
        let state = fixture("mainnet-genesis");
        let honest = MemoryPeer::new("x", &state, Behaviour::Honest);
        for behaviour in [
            Behaviour::Stall,
            Behaviour::Drop,
            Behaviour::Corrupt,
            Behaviour::Garbage,
        ] {
            let store = MemoryStore::new();
            let peers: Vec<Rc<dyn Peer>> = vec![
                Rc::new(honest.sibling("a", behaviour.clone())),
                Rc::new(honest.sibling("b", behaviour)),
            ];
            let (result, _) = drive(state.root, &store, peers, quick_config()).await;
            assert_eq!(result.unwrap_err(), SyncError::NoPeers { dropped: 2 });
            assert_consistent(&store);
        }
        // A peer that omits some items forever: the rest is synced, the gap reported.
        let store = MemoryStore::new();
        let (result, _) = drive(
            state.root,
            &store,
            vec![Rc::new(honest.sibling("o", Behaviour::OmitEvery(50)))],
            quick_config(),
        ).await;
        assert!(
            matches!(result, Err(SyncError::Unavailable { .. })),
            "{result:?}"
        );
        assert_consistent(&store);
        assert!(store.count(Kind::Node) > 0);
    }
}

common::async_test! {
    async fn test_driver_no_peers_is_an_error_not_a_hang() {
        let state = fixture("sepolia-genesis");
        let (result, _) = drive(state.root, &MemoryStore::new(), vec![], quick_config()).await;
        assert_eq!(result.unwrap_err(), SyncError::NoPeers { dropped: 0 });
    }
}

common::async_test! {
    async fn test_driver_peers_join_and_leave_mid_sync() {
        let state = fixture("mainnet-genesis");
        let store = MemoryStore::new();
        let clock = common::clock();
        let first = MemoryPeer::new("first", &state, Behaviour::Honest);
        let second = first.sibling("second", Behaviour::Honest);
        let (syncer, handle) = Syncer::new(state.root, quick_config());
        handle.add_peer(Rc::new(first.clone()));
        let mut commits = 0;
        let h = handle.clone();
        let second_rc: Rc<dyn Peer> = Rc::new(second.clone());
        let result = syncer.run(&store, &clock, &mut |_| {
            commits += 1;
            if commits == 2 {
                h.add_peer(second_rc.clone());
            }
            if commits == 6 {
                h.remove_peer("first");
            }
        }).await;
        let report = result.unwrap();
        assert!(report.complete);
        assert_exact(&store, &state);
        assert!(second.items_asked() > 0, "the peer that joined was used");
        assert_eq!(report.peers[0].dropped.as_deref(), Some("removed"));
    }
}

common::async_test! {
    async fn test_driver_cancel_keeps_complete_items_and_resumes() {
        let state = fixture("mainnet-genesis");
        let store = MemoryStore::new();
        let clock = common::clock();
        let peer = MemoryPeer::new("p", &state, Behaviour::Honest);
        let (syncer, handle) = Syncer::new(state.root, quick_config());
        handle.add_peer(Rc::new(peer.clone()));
        let mut commits = 0;
        let result = syncer.run(&store, &clock, &mut |_| {
            commits += 1;
            if commits == 4 {
                handle.cancel();
            }
        }).await;
        assert_eq!(result.unwrap_err(), SyncError::Cancelled);
        assert_consistent(&store);
        let kept: HashSet<ItemKey> = store.keys().into_iter().collect();
        assert!(kept.len() > 100);
        let resumed = MemoryPeer::new("p2", &state, Behaviour::Honest);
        let (result, _) = drive(
            state.root,
            &store,
            vec![Rc::new(resumed.clone())],
            quick_config(),
        ).await;
        let report = result.unwrap();
        assert!(report.complete);
        // The verified frontier kept at the stop was used, not fetched again: only answers
        // still in flight at the cancel (at most two requests) are fetched twice.
        assert!(report.reused > 0, "{report:?}");
        let twice = peer.items_asked() + resumed.items_asked() - state.nodes.len() as u64;
        assert!(twice <= 2 * 384, "{twice} items fetched twice");
        assert_exact(&store, &state);
        let asked = resumed.asked.borrow();
        assert!(
            asked.keys().all(|k| !kept.contains(k)),
            "a kept item was fetched again"
        );
    }
}

common::async_test! {
    async fn test_driver_new_root_mid_sync_keeps_committed_work() {
        let old = fixture("mainnet-genesis");
        let fixture = common::load_state("mainnet-genesis").0;
        let mut accounts = fixture.accounts().unwrap();
        accounts[0].nonce += 1;
        accounts.push(GenesisAccount {
            address: [0xee; 20],
            nonce: 1,
            ..GenesisAccount::default()
        });
        let new = build_state(accounts);
        let store = MemoryStore::new();
        let clock = common::clock();
        let mut merged = old.nodes.clone();
        merged.extend(new.nodes.iter().map(|(k, v)| (*k, v.clone())));
        let serving = BuiltState {
            root: new.root,
            nodes: merged,
            codes: HashMap::new(),
            accounts: 0,
        };
        let peer = MemoryPeer::new("p", &serving, Behaviour::Honest);
        let (syncer, handle) = Syncer::new(old.root, quick_config());
        handle.add_peer(Rc::new(peer.clone()));
        let mut commits = 0;
        let report = syncer.run(&store, &clock, &mut |_| {
            commits += 1;
            if commits == 3 {
                handle.set_root(new.root);
            }
        }).await
        .unwrap();
        assert_eq!(report.root, new.root);
        assert!(report.complete);
        assert!(report.found_in_store > 0, "work of the old root was reused");
        let v = block_on(walk::verify(&store, new.root)).unwrap();
        assert!(v.complete);
        assert_eq!(v.nodes as usize, new.nodes.len());
        // Nothing was fetched twice across the switch.
        assert!(peer.asked.borrow().values().all(|&n| n == 1));
    }
}

common::async_test! {
    async fn test_driver_store_failure_is_typed_and_writes_nothing() {
        let state = fixture("mainnet-genesis");
        let store = MemoryStore::new();
        store.fail_next_write(triesync_core::store::StoreError::QuotaExceeded);
        let peer = MemoryPeer::new("p", &state, Behaviour::Honest);
        let (result, _) = drive(state.root, &store, vec![Rc::new(peer)], quick_config()).await;
        let err = result.unwrap_err();
        assert_eq!(err.code(), "QUOTA_EXCEEDED");
        assert_eq!(store.count(Kind::Node), 0);
        // Space is back: it resumes.
        let peer = MemoryPeer::new("p", &state, Behaviour::Honest);
        let (result, _) = drive(state.root, &store, vec![Rc::new(peer)], quick_config()).await;
        assert!(result.unwrap().complete);
        assert_exact(&store, &state);
    }
}

// ---- scale ----

/// The scheduler keeps only the frontier: on a 100,000-account state its live entries
/// stay bounded and do not grow as the committed part grows.
#[test]
fn test_scheduler_memory_is_bounded_on_100k_accounts() {
    let state = build_synthetic(&SyntheticSpec::with_accounts(100_000, 11));
    let total = state.nodes.len() + state.codes.len();
    assert!(total > 100_000);
    let store = MemoryStore::new();
    let run = manual_sync(&state, &store, Manual::default());
    assert!(run.done);
    assert_eq!(store.count(Kind::Node), state.nodes.len());
    let n = run.live_samples.len();
    let first_half = run.live_samples[..n / 2].iter().max().copied().unwrap();
    let second_half = run.live_samples[n / 2..].iter().max().copied().unwrap();
    eprintln!(
        "items {total}, peak live {}, first half {first_half}, second half {second_half}",
        run.peak_live
    );
    assert!(
        run.peak_live < total / 5,
        "peak live {} of {total}",
        run.peak_live
    );
    assert!(
        second_half <= first_half + first_half / 2,
        "live entries grew: {first_half} -> {second_half}"
    );
}

/// A memory store with hooks on its writes: each first waits for `gate` if set (a sleep,
/// or a signal from another task, as a real disk's writes take time off the calling task),
/// and is recorded in `writes`: its bytes and whether it marked the sync complete.
struct HookedStore {
    inner: MemoryStore,
    gate: Option<Box<dyn Fn() -> futures::future::LocalBoxFuture<'static, ()>>>,
    writes: std::cell::RefCell<Vec<(usize, bool)>>,
}

impl HookedStore {
    /// A store whose writes only are recorded.
    fn recording() -> Self {
        Self {
            inner: MemoryStore::new(),
            gate: None,
            writes: Default::default(),
        }
    }

    /// A store whose every write first waits for `gate`.
    fn gated(gate: impl Fn() -> futures::future::LocalBoxFuture<'static, ()> + 'static) -> Self {
        Self {
            gate: Some(Box::new(gate)),
            ..Self::recording()
        }
    }
}

impl Store for HookedStore {
    async fn contains(
        &self,
        keys: &[ItemKey],
    ) -> Result<Vec<bool>, triesync_core::store::StoreError> {
        self.inner.contains(keys).await
    }
    async fn get_many(
        &self,
        keys: &[ItemKey],
    ) -> Result<Vec<Option<Vec<u8>>>, triesync_core::store::StoreError> {
        self.inner.get_many(keys).await
    }
    async fn write(
        &self,
        batch: &triesync_core::store::Batch,
        meta: &SyncMeta,
    ) -> Result<(), triesync_core::store::StoreError> {
        if let Some(gate) = &self.gate {
            gate().await;
        }
        self.writes.borrow_mut().push((batch.bytes, meta.complete));
        self.inner.write(batch, meta).await
    }
    async fn meta(&self) -> Result<Option<SyncMeta>, triesync_core::store::StoreError> {
        self.inner.meta().await
    }
    async fn frontier(&self) -> Result<Vec<Vec<u8>>, triesync_core::store::StoreError> {
        self.inner.frontier().await
    }
}

// Native only: it runs the sync on a LocalPool in a spawned thread and fails by timeout
// if the driver spins; under wasm there are no threads and a spinning driver would hang
// the test runner instead of failing it.
#[cfg(not(target_arch = "wasm32"))]
#[test]
fn test_driver_yields_to_the_event_loop_while_a_write_is_pending() {
    // Small batches and an instant peer: fetching outruns the writes, so the driver stops
    // at its back-pressure limit with nothing in flight and must wait for the write alone.
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use futures::task::LocalSpawnExt;
        let state = fixture("mainnet-genesis");
        // Writes land only when another task of this single-threaded executor gets to
        // run, as IndexedDB's do in a browser: a driver that waited without yielding would
        // never see its write land.
        let landing: Rc<std::cell::RefCell<Vec<futures::channel::oneshot::Sender<()>>>> =
            Rc::default();
        let gate_landing = landing.clone();
        let store = HookedStore::gated(move || {
            let (tx, rx) = futures::channel::oneshot::channel();
            gate_landing.borrow_mut().push(tx);
            Box::pin(async move {
                rx.await
                    .expect("the event loop task lives as long as the sync")
            })
        });
        let mut pool = futures::executor::LocalPool::new();
        pool.spawner()
            .spawn_local(async move {
                loop {
                    for tx in landing.borrow_mut().drain(..) {
                        let _ = tx.send(());
                    }
                    // Back to the executor: this task runs again only when others yield.
                    let mut yielded = false;
                    futures::future::poll_fn(|cx| {
                        if std::mem::replace(&mut yielded, true) {
                            std::task::Poll::Ready(())
                        } else {
                            cx.waker().wake_by_ref();
                            std::task::Poll::Pending
                        }
                    })
                    .await;
                }
            })
            .unwrap();
        let clock = common::clock();
        let config = SyncConfig {
            batch_bytes: 4096,
            ..SyncConfig::default()
        };
        let (syncer, handle) = Syncer::new(state.root, config);
        handle.add_peer(Rc::new(MemoryPeer::new("p", &state, Behaviour::Honest)));
        let result = pool.run_until(syncer.run(&store, &clock, &mut |_| {}));
        let synced = result.is_ok() && store.inner.count(Kind::Node) == state.nodes.len();
        let _ = done_tx.send((format!("{result:?}"), synced));
    });
    // A driver spinning without yielding never finishes: fail instead of hanging.
    let (result, synced) = done_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the sync never finished: the driver did not yield while its write was pending");
    assert!(synced, "{result}");
}

/// Time that passes only when everything waits: [`run_virtual`] moves it to the earliest
/// pending sleep whenever the future it runs is idle. Waits measured on it are exact and
/// the same on a loaded machine as on an idle one.
#[derive(Clone, Default)]
struct VirtualClock(Rc<std::cell::RefCell<VirtualTime>>);

#[derive(Default)]
struct VirtualTime {
    now: f64,
    next_id: u64,
    /// Live sleeps: id -> (deadline, waker of their last poll).
    sleeps: std::collections::BTreeMap<u64, (f64, Option<std::task::Waker>)>,
}

/// A sleep on a [`VirtualClock`]; dropped, it no longer holds time back.
struct VirtualSleep {
    clock: VirtualClock,
    id: u64,
    deadline: f64,
}

impl std::future::Future for VirtualSleep {
    type Output = ();
    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        let mut time = self.clock.0.borrow_mut();
        if time.now >= self.deadline {
            return std::task::Poll::Ready(());
        }
        time.sleeps
            .insert(self.id, (self.deadline, Some(cx.waker().clone())));
        std::task::Poll::Pending
    }
}

impl Drop for VirtualSleep {
    fn drop(&mut self) {
        self.clock.0.borrow_mut().sleeps.remove(&self.id);
    }
}

impl triesync_core::peer::Clock for VirtualClock {
    fn now_ms(&self) -> f64 {
        self.0.borrow().now
    }
    fn sleep(&self, d: Duration) -> futures::future::LocalBoxFuture<'static, ()> {
        let mut time = self.0.borrow_mut();
        time.next_id += 1;
        let deadline = time.now + d.as_secs_f64() * 1e3;
        let id = time.next_id;
        time.sleeps.insert(id, (deadline, None));
        Box::pin(VirtualSleep {
            clock: self.clone(),
            id,
            deadline,
        })
    }
}

/// Runs `f` to the end on `clock`: polls it while it makes progress; when it is idle
/// (pending, nothing woken), moves the time to the earliest sleep's end and wakes the
/// sleeps due. Idle with no sleep pending would be a hang: it panics instead.
fn run_virtual<F: std::future::Future>(clock: &VirtualClock, f: F) -> F::Output {
    struct Flag(std::sync::atomic::AtomicBool);
    impl futures::task::ArcWake for Flag {
        fn wake_by_ref(arc_self: &std::sync::Arc<Self>) {
            arc_self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
    let flag = std::sync::Arc::new(Flag(false.into()));
    let waker = futures::task::waker(flag.clone());
    let mut cx = std::task::Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        flag.0.store(false, std::sync::atomic::Ordering::SeqCst);
        if let std::task::Poll::Ready(out) = f.as_mut().poll(&mut cx) {
            return out;
        }
        if flag.0.load(std::sync::atomic::Ordering::SeqCst) {
            continue;
        }
        let mut time = clock.0.borrow_mut();
        let next = time
            .sleeps
            .values()
            .map(|s| s.0)
            .min_by(f64::total_cmp)
            .expect("idle with no sleep pending: the future would never end");
        time.now = time.now.max(next);
        let now = time.now;
        let due: Vec<_> = time
            .sleeps
            .values_mut()
            .filter(|s| s.0 <= now)
            .filter_map(|s| s.1.take())
            .collect();
        drop(time);
        due.into_iter().for_each(std::task::Waker::wake);
    }
}

/// A store whose every write takes `delay` on `clock` (the executor is free meanwhile).
fn slow_store(clock: &VirtualClock, delay: Duration) -> HookedStore {
    let clock = clock.clone();
    HookedStore::gated(move || triesync_core::peer::Clock::sleep(&clock, delay))
}

/// `waitMs` is split into waiting for peers and waiting for the background write: with a
/// slow store and an instant peer all of it is the write's, with a slow peer and a quick
/// store all of it is the peers'; the two add up to the total. On virtual time, so the
/// sums are exact whatever the machine's load.
#[test]
fn test_driver_wait_split_between_peers_and_the_write() {
    let state = fixture("mainnet-genesis");
    let config = SyncConfig {
        batch_bytes: 16 * 1024,
        ..SyncConfig::default()
    };
    let run = |clock: &VirtualClock, store: &HookedStore, peer: MemoryPeer| {
        let (syncer, handle) = Syncer::new(state.root, config.clone());
        handle.add_peer(Rc::new(peer));
        let report = run_virtual(clock, syncer.run(store, clock, &mut |_| {})).unwrap();
        assert!(report.complete);
        assert_eq!(store.inner.count(Kind::Node), state.nodes.len());
        let t = &report.timings;
        assert_eq!(t.wait_ms, t.peer_wait_ms + t.write_wait_ms, "{t:?}");
        eprintln!(
            "batches {}, requests {}: wait {} ms = peers {} + write {}; total {} ms",
            report.batches,
            report.peers[0].requests,
            t.wait_ms,
            t.peer_wait_ms,
            t.write_wait_ms,
            clock.now_ms()
        );
        report
    };
    use triesync_core::peer::Clock as _;

    // Slow store (20 ms a write), instant peer: every wait is for a write.
    let clock = VirtualClock::default();
    let store = slow_store(&clock, Duration::from_millis(20));
    let report = run(
        &clock,
        &store,
        MemoryPeer::new("p", &state, Behaviour::Honest),
    );
    let t = &report.timings;
    // Only the writes take time, and all but the last one or two (awaited on exit, after
    // the loop) are waited for in the loop, in full.
    let batches = report.batches as f64;
    assert!(batches >= 5.0, "{} batches", report.batches);
    assert_eq!(clock.now_ms(), 20.0 * batches, "{t:?}");
    assert!(t.write_wait_ms >= 20.0 * (batches - 2.0), "{t:?}");
    assert_eq!(t.peer_wait_ms, 0.0, "{t:?}");

    // Slow peer (20 ms an answer), quick store (5 ms a write): the writes land while
    // answers are awaited, so every wait is for an answer (a split that charged the write
    // whenever one is in progress would not say 0 here).
    let clock = VirtualClock::default();
    let store = slow_store(&clock, Duration::from_millis(5));
    let peer_clock: Rc<dyn triesync_core::peer::Clock> = Rc::new(clock.clone());
    let peer = MemoryPeer::new(
        "p",
        &state,
        Behaviour::Delay(Duration::from_millis(20), peer_clock),
    );
    let report = run(&clock, &store, peer);
    let t = &report.timings;
    let requests = report.peers[0].requests as f64;
    // Answers come 20 ms after their request, a few requests in flight at a time.
    assert!(t.peer_wait_ms >= 20.0 * requests / 4.0, "{t:?}");
    assert_eq!(t.write_wait_ms, 0.0, "{t:?}");
    // All the time but the last writes' (awaited on exit) is the peers'.
    assert!(t.peer_wait_ms >= clock.now_ms() - 2.0 * 5.0, "{t:?}");
}

/// A peer whose every answer takes three times the target however little it holds (a far
/// peer): its requests grow to the most allowed, as larger requests cost it nothing,
/// instead of shrinking with every slow answer down to one item (which took 12,087
/// requests and half an hour of virtual time). On virtual time: exact on any machine.
#[test]
fn test_driver_far_peer_gets_large_requests() {
    let state = fixture("mainnet-genesis");
    let config = SyncConfig {
        target_rtt: Duration::from_millis(100),
        ..SyncConfig::default()
    };
    let clock = VirtualClock::default();
    let peer_clock: Rc<dyn triesync_core::peer::Clock> = Rc::new(clock.clone());
    let peer = MemoryPeer::new(
        "far",
        &state,
        Behaviour::Delay(Duration::from_millis(300), peer_clock),
    );
    let store = MemoryStore::new();
    let (syncer, handle) = Syncer::new(state.root, config.clone());
    handle.add_peer(Rc::new(peer));
    let mut peak = 0;
    let report = run_virtual(
        &clock,
        syncer.run(&store, &clock, &mut |p| {
            peak = peak.max(p.peers[0].capacity)
        }),
    )
    .unwrap();
    assert!(report.complete);
    assert_exact(&store, &state);
    let far = &report.peers[0];
    use triesync_core::peer::Clock as _;
    let seconds = clock.now_ms() / 1000.0;
    eprintln!("far {far:?}, peak {peak}, {seconds} s");
    assert_eq!(peak as usize, config.max_request_items, "{far:?}");
    // At most 2 × 384 items each 300 ms: 12,356 nodes take 5 s and some, plus the ramp.
    assert!(seconds < 15.0, "{seconds} s, {} requests", far.requests);
}

/// Records the size of every request it is sent, then answers as its inner peer.
struct Sizes {
    inner: MemoryPeer,
    sizes: Rc<std::cell::RefCell<Vec<usize>>>,
}

impl Peer for Sizes {
    fn id(&self) -> &str {
        "sizes"
    }
    fn fetch(
        &self,
        keys: Vec<ItemKey>,
    ) -> futures::future::LocalBoxFuture<
        'static,
        Result<Vec<Vec<u8>>, triesync_core::peer::PeerError>,
    > {
        self.sizes.borrow_mut().push(keys.len());
        self.inner.fetch(keys)
    }
}

/// A peer's requests are small probes until one is answered (its latency is unknown until
/// then), even when the queue holds far more; its later requests are full-sized.
#[test]
fn test_driver_first_request_of_a_peer_is_a_probe() {
    let state = fixture("mainnet-genesis");
    let clock = VirtualClock::default();
    let peer_clock: Rc<dyn triesync_core::peer::Clock> = Rc::new(clock.clone());
    let first = MemoryPeer::new(
        "first",
        &state,
        Behaviour::Delay(Duration::from_millis(10), peer_clock),
    );
    let sizes = Rc::new(std::cell::RefCell::new(Vec::new()));
    let second = Sizes {
        inner: first.sibling("second", Behaviour::Honest),
        sizes: sizes.clone(),
    };
    let store = MemoryStore::new();
    let (syncer, handle) = Syncer::new(state.root, SyncConfig::default());
    handle.add_peer(Rc::new(first));
    handle.add_peer(Rc::new(second));
    let report = run_virtual(&clock, syncer.run(&store, &clock, &mut |_| {})).unwrap();
    assert!(report.complete);
    assert_exact(&store, &state);
    let sizes = sizes.borrow();
    eprintln!("second peer's request sizes: {sizes:?}");
    assert!(sizes[0] <= 16, "{sizes:?}");
    assert!(sizes.iter().any(|&n| n > 16), "{sizes:?}");
}

/// Answers each request with the blobs of its previous request: valid data, always late.
struct Lagging {
    inner: MemoryPeer,
    prev: std::cell::RefCell<Vec<ItemKey>>,
}

impl Peer for Lagging {
    fn id(&self) -> &str {
        "lagging"
    }
    fn fetch(
        &self,
        keys: Vec<ItemKey>,
    ) -> futures::future::LocalBoxFuture<
        'static,
        Result<Vec<Vec<u8>>, triesync_core::peer::PeerError>,
    > {
        let prev = std::mem::replace(&mut *self.prev.borrow_mut(), keys);
        self.inner.fetch(prev)
    }
}

common::async_test! {
    /// A lagging peer delivers items that are in flight to an honest peer; they complete and
    /// are written before the honest peer answers. The honest peer's answer, exactly what it
    /// was asked, is a stale duplicate then: counted as such, never held against it.
    async fn test_driver_honest_answer_overtaken_by_another_peer_is_not_penalised() {
        let state = fixture("mainnet-genesis");
        let store = MemoryStore::new();
        let clock: Rc<dyn triesync_core::peer::Clock> = Rc::new(common::clock());
        let honest = MemoryPeer::new(
            "honest",
            &state,
            Behaviour::Delay(Duration::from_millis(30), clock),
        );
        let lagging = Lagging {
            inner: honest.sibling("lagging-inner", Behaviour::Honest),
            prev: Default::default(),
        };
        let config = SyncConfig {
            batch_bytes: 2 * 1024,
            ..SyncConfig::default()
        };
        let (result, _) = drive(
            state.root,
            &store,
            vec![Rc::new(lagging), Rc::new(honest)],
            config,
        ).await;
        let report = result.unwrap();
        assert!(report.complete);
        assert_exact(&store, &state);
        let honest = &report.peers[1];
        assert_eq!(honest.dropped, None, "{honest:?}");
        assert_eq!(honest.rejected, 0, "{honest:?}");
        // The race happened: the honest peer's blobs came back after their items were written.
        assert!(report.duplicates > 0, "{report:?}");
    }
}

common::async_test! {
    /// Two contracts whose storage tries differ in one slot share most of their nodes. On a
    /// fresh store (no lookups for ordinary nodes) a shared node written with the first trie
    /// must still not be fetched again for the second.
    async fn test_driver_partly_shared_storage_fetched_once_on_a_fresh_store() {
        let mut accounts: Vec<GenesisAccount> = (0..3000u32)
            .map(|i| {
                let mut address = [0u8; 20];
                address[..4].copy_from_slice(&i.to_be_bytes());
                address[19] = 0xaa;
                GenesisAccount {
                    address,
                    nonce: 1,
                    ..GenesisAccount::default()
                }
            })
            .collect();
        // Values of 32 bytes keep the leaves hashed (not inlined), so they can be shared.
        let mut value = [0u8; 32];
        value[0] = 0x11;
        value[31] = 0x22;
        for (addr, extra) in [(1u8, 200u8), (2, 201)] {
            let mut storage: Vec<([u8; 32], [u8; 32])> = (0..60u8).map(|i| ([i; 32], value)).collect();
            storage.push(([extra; 32], value));
            accounts.push(GenesisAccount {
                address: [addr; 20],
                nonce: 1,
                storage,
                ..GenesisAccount::default()
            });
        }
        let state = build_state(accounts);
        let store = MemoryStore::new();
        let peer = MemoryPeer::new("p", &state, Behaviour::Honest);
        let config = SyncConfig {
            batch_bytes: 4 * 1024,
            ..quick_config()
        };
        let (result, _) = drive(state.root, &store, vec![Rc::new(peer.clone())], config).await;
        let report = result.unwrap();
        assert!(report.complete);
        assert_exact(&store, &state);
        assert_eq!(report.nodes as usize, state.nodes.len());
        let asked = peer.asked.borrow();
        let twice = asked.values().filter(|&&n| n > 1).count();
        assert_eq!(twice, 0, "{twice} items asked twice");
        assert_eq!(asked.len(), state.nodes.len() + state.codes.len());
    }
}

common::async_test! {
    /// geth's rule: a peer that times out on a request of two or fewer items is dropped at
    /// once, whatever its failure count (the failure limit is set out of reach here).
    async fn test_driver_peer_timing_out_on_two_items_is_dropped() {
        let state = fixture("mainnet-genesis");
        let store = MemoryStore::new();
        let clock: Rc<dyn triesync_core::peer::Clock> = Rc::new(common::clock());
        let honest = MemoryPeer::new(
            "honest",
            &state,
            Behaviour::Delay(Duration::from_millis(20), clock),
        );
        let stall = honest.sibling("stall", Behaviour::Stall);
        let config = SyncConfig {
            request_timeout: Duration::from_millis(100),
            initial_request_items: 2,
            peer_failure_limit: 100,
            ..SyncConfig::default()
        };
        let (result, _) = drive(
            state.root,
            &store,
            vec![Rc::new(honest), Rc::new(stall.clone())],
            config,
        ).await;
        let report = result.unwrap();
        assert!(report.complete);
        assert_exact(&store, &state);
        let stalled = &report.peers[1];
        assert!(stalled.timeouts >= 1, "{stalled:?}");
        assert_eq!(
            stalled.dropped.as_deref(),
            Some("timed out on a request of two or fewer items"),
            "{stalled:?}"
        );
    }
}

common::async_test! {
    /// Batches are written once they reach `batch_bytes` (geth's IdealBatchSize): every batch
    /// but the last is at least that big and overshoots by no more than one answer's worth;
    /// only the last marks the sync complete.
    async fn test_driver_writes_batches_at_the_byte_threshold() {
        let state = fixture("mainnet-genesis");
        let store = HookedStore::recording();
        let config = SyncConfig::default();
        let batch_bytes = config.batch_bytes;
        let clock = common::clock();
        let (syncer, handle) = Syncer::new(state.root, config.clone());
        handle.add_peer(Rc::new(MemoryPeer::new("p", &state, Behaviour::Honest)));
        let report = syncer.run(&store, &clock, &mut |_| {}).await.unwrap();
        assert!(report.complete);
        assert_exact(&store.inner, &state);
        let writes = store.writes.borrow();
        eprintln!("batch bytes: {:?}", writes);
        let (last, rest) = writes.split_last().unwrap();
        assert!(rest.len() >= 5, "{writes:?}");
        assert!(last.1, "the last write marks the sync complete");
        // One answer (at most max_request_items nodes, each under 600 bytes here) may complete
        // its items and their waiting parents past the threshold.
        let overshoot = config.max_request_items * 600;
        for &(bytes, complete) in rest {
            assert!(!complete, "{writes:?}");
            assert!(bytes >= batch_bytes, "{bytes} < {batch_bytes}: {writes:?}");
            assert!(bytes < batch_bytes + overshoot, "{bytes}: {writes:?}");
        }
        let total: usize = writes.iter().map(|w| w.0).sum();
        assert_eq!(total, state.node_bytes());
    }
}

common::async_test! {
    /// Request sizes follow each peer's measured rate: a peer limited by its bandwidth (a
    /// delay per item) is asked for less than at first, one whose answers take a fixed
    /// time under the target for more.
    async fn test_driver_request_size_adapts_to_each_peer() {
        let state = fixture("mainnet-genesis");
        let store = MemoryStore::new();
        let clock: Rc<dyn triesync_core::peer::Clock> = Rc::new(common::clock());
        let fast = MemoryPeer::new(
            "fast",
            &state,
            Behaviour::Delay(Duration::from_millis(20), clock.clone()),
        );
        let slow = fast.sibling("slow", Behaviour::DelayPerItem(Duration::from_millis(2), clock));
        let config = SyncConfig {
            target_rtt: Duration::from_millis(50),
            ..SyncConfig::default()
        };
        let initial = config.initial_request_items as u32;
        let (result, progress) = drive(
            state.root,
            &store,
            vec![Rc::new(fast), Rc::new(slow)],
            config,
        ).await;
        let report = result.unwrap();
        assert!(report.complete);
        assert_exact(&store, &state);
        let (fast, slow) = (&report.peers[0], &report.peers[1]);
        // Near the end requests hold fewer items than the capacity (the queue runs dry), so
        // the fast peer's size is judged at its peak.
        let fast_peak = progress.iter().map(|p| p.peers[0].capacity).max().unwrap();
        eprintln!("fast {fast:?} (peak {fast_peak})\nslow {slow:?}");
        assert!(slow.items > 0, "{slow:?}");
        assert!(slow.capacity < initial, "{slow:?}");
        assert!(fast_peak > 2 * initial, "{fast:?}, peak {fast_peak}");
        assert!(fast.capacity > initial, "{fast:?}");
    }
}

/// A peer that stalls, counts its closes and how many of its requests were dropped.
struct Watched {
    inner: MemoryPeer,
    closed: Rc<std::cell::Cell<u32>>,
    dropped_requests: Rc<std::cell::Cell<u32>>,
}

struct DropCount(Rc<std::cell::Cell<u32>>);

impl Drop for DropCount {
    fn drop(&mut self) {
        self.0.set(self.0.get() + 1);
    }
}

impl Peer for Watched {
    fn id(&self) -> &str {
        self.inner.id()
    }
    fn fetch(
        &self,
        keys: Vec<ItemKey>,
    ) -> futures::future::LocalBoxFuture<
        'static,
        Result<Vec<Vec<u8>>, triesync_core::peer::PeerError>,
    > {
        let answer = self.inner.fetch(keys);
        let guard = DropCount(self.dropped_requests.clone());
        Box::pin(async move {
            let _guard = guard;
            answer.await
        })
    }
    fn close(&self) {
        self.closed.set(self.closed.get() + 1);
    }
}

fn watched(inner: MemoryPeer) -> Watched {
    Watched {
        inner,
        closed: Rc::default(),
        dropped_requests: Rc::default(),
    }
}

common::async_test! {
    /// Removing a peer abandons its requests in flight at once (the transport's futures are
    /// dropped and the items asked of another peer), instead of waiting for the request
    /// timeout; a removed or dropped peer is closed once.
    async fn test_driver_removed_peer_requests_are_abandoned_and_peer_closed() {
        let state = fixture("mainnet-genesis");
        let store = MemoryStore::new();
        let clock = common::clock();
        let honest = MemoryPeer::new("honest", &state, Behaviour::Honest);
        let stall = Rc::new(watched(honest.sibling("stall", Behaviour::Stall)));
        let failing = Rc::new(watched(honest.sibling("failing", Behaviour::Drop)));
        let timeout = Duration::from_secs(5);
        let config = SyncConfig {
            request_timeout: timeout,
            batch_bytes: 16 * 1024,
            failure_rest: Duration::from_millis(1),
            ..SyncConfig::default()
        };
        let (syncer, handle) = Syncer::new(state.root, config);
        handle.add_peer(Rc::new(honest));
        handle.add_peer(stall.clone());
        handle.add_peer(failing.clone());
        let mut in_flight_at_removal = None;
        let started = common::now_ms();
        let result = syncer.run(&store, &clock, &mut |p| {
            let stalled = &p.peers[1];
            if in_flight_at_removal.is_none() && stalled.in_flight > 0 {
                in_flight_at_removal = Some(stalled.in_flight);
                handle.remove_peer("stall");
            }
        }).await;
        let elapsed = common::now_ms() - started;
        let report = result.unwrap();
        assert!(report.complete);
        assert_exact(&store, &state);
        assert!(
            in_flight_at_removal.is_some(),
            "the stalling peer never got a request"
        );
        assert!(
            elapsed < timeout.as_secs_f64() * 1e3 / 2.0,
            "the sync waited {elapsed:.0} ms for the removed peer's requests"
        );
        assert_eq!(report.peers[1].dropped.as_deref(), Some("removed"));
        assert_eq!(report.peers[1].timeouts, 0, "{:?}", report.peers[1]);
        assert_eq!(report.peers[1].in_flight, 0);
        assert_eq!(stall.closed.get(), 1);
        assert_eq!(
            u64::from(stall.dropped_requests.get()),
            stall.inner.requests.get()
        );
        assert!(report.peers[2].dropped.is_some(), "{:?}", report.peers[2]);
        assert_eq!(failing.closed.get(), 1);
        assert_eq!(report.peers[0].dropped, None);
    }
}

/// A peer that refuses connections until `up_at`, then serves honestly (a restart).
struct Restarting {
    inner: MemoryPeer,
    /// On [`common::now_ms`].
    up_at: f64,
}

impl Peer for Restarting {
    fn id(&self) -> &str {
        self.inner.id()
    }
    fn fetch(
        &self,
        keys: Vec<ItemKey>,
    ) -> futures::future::LocalBoxFuture<
        'static,
        Result<Vec<Vec<u8>>, triesync_core::peer::PeerError>,
    > {
        if common::now_ms() < self.up_at {
            let refused = triesync_core::peer::PeerError::Connection("refused".into());
            return Box::pin(futures::future::ready(Err(refused)));
        }
        self.inner.fetch(keys)
    }
}

common::async_test! {
    /// After a failed request a peer rests, doubling per failure in a row: a peer restarting
    /// for 300 ms outlives its three allowed failures (250 + 500 ms of rest) and serves the
    /// whole sync; a peer that always fails is dropped after its rests, in bounded time,
    /// having been asked only as often as its failure limit.
    async fn test_driver_failing_peer_rests_before_it_is_asked_again() {
        let state = fixture("mainnet-genesis");
        let config = SyncConfig {
            failure_rest: Duration::from_millis(250),
            ..quick_config()
        };
        let store = MemoryStore::new();
        let restarting = Restarting {
            inner: MemoryPeer::new("restarting", &state, Behaviour::Honest),
            up_at: common::now_ms() + 300.0,
        };
        let (result, _) = drive(
            state.root,
            &store,
            vec![Rc::new(restarting)],
            config.clone(),
        ).await;
        let report = result.unwrap();
        assert!(report.complete);
        assert_exact(&store, &state);
        assert_eq!(report.peers[0].failures, 2, "{:?}", report.peers[0]);
        assert_eq!(report.peers[0].dropped, None);

        let failing = MemoryPeer::new("failing", &state, Behaviour::Drop);
        let started = common::now_ms();
        let (result, _) = drive(
            state.root,
            &MemoryStore::new(),
            vec![Rc::new(failing.clone())],
            config,
        ).await;
        let elapsed = common::now_ms() - started;
        assert_eq!(result.unwrap_err(), SyncError::NoPeers { dropped: 1 });
        assert_eq!(failing.requests.get(), 3);
        assert!(elapsed >= 750.0, "{elapsed} ms");
        assert!(elapsed < 3000.0, "{elapsed} ms");
    }
}

/// A clock that moves 1 ms forward each time it is read, and whose sleeps end at once: time
/// passes between any two readings, as it does on a busy machine.
#[derive(Default)]
struct SteppingClock(std::cell::Cell<f64>);

impl triesync_core::peer::Clock for SteppingClock {
    fn now_ms(&self) -> f64 {
        self.0.set(self.0.get() + 1.0);
        self.0.get()
    }
    fn sleep(&self, _: Duration) -> futures::future::LocalBoxFuture<'static, ()> {
        Box::pin(futures::future::ready(()))
    }
}

common::async_test! {
    /// A peer's rest may end between the moment the driver skips it as resting and the
    /// moment it looks for a rest to wait for: that is a rest to wait for (none left), not
    /// "no request could be made". Rests of every length up to 60 ms meet every such gap.
    async fn test_driver_rest_ending_mid_turn_is_not_a_dead_end() {
        let state = fixture("sepolia-genesis");
        for rest_ms in 1..=60 {
            let config = SyncConfig {
                failure_rest: Duration::from_millis(rest_ms),
                ..quick_config()
            };
            let (syncer, handle) = Syncer::new(state.root, config);
            handle.add_peer(Rc::new(MemoryPeer::new("failing", &state, Behaviour::Drop)));
            let result = syncer
                .run(&MemoryStore::new(), &SteppingClock::default(), &mut |_| {})
                .await;
            assert_eq!(
                result.unwrap_err(),
                SyncError::NoPeers { dropped: 1 },
                "rest of {rest_ms} ms"
            );
        }
    }
}
