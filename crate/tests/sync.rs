//! Whole syncs through the JavaScript API (`StateSync`, `StateDb`) against real reference
//! peers on 127.0.0.1 (started by scripts/browser-tests.sh) and real IndexedDB in headless
//! Chromium: every transport, all at once, lookups of every account, resume after a stop,
//! hostile peers, cancellation and argument errors.
#![cfg(target_arch = "wasm32")]

mod common;

use common::*;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use triesync::api::{StateDb, StateSync};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

/// Syncs `fx` from `peers` into a fresh database, checks the report and `verify`, and
/// returns the open database (deleted by the caller).
async fn sync_fresh(fx: &Fixture, db_name: &str, peers: Vec<JsValue>) -> (StateDb, JsValue) {
    delete_db(db_name).await;
    let progress_calls = Rc::new(Cell::new(0u32));
    let calls = progress_calls.clone();
    let on_progress = callback(move |_| calls.set(calls.get() + 1));
    let report = run(options(
        &fx.root,
        peers,
        db_name,
        &[("onProgress", on_progress.into())],
    ))
    .await
    .unwrap_or_else(|e| panic!("sync into {db_name} failed: {e:?}"));
    assert_eq!(field(&report, "complete"), JsValue::TRUE);
    assert_eq!(field(&report, "root").as_string().unwrap(), fx.root);
    assert_eq!(num(&report, "nodes") as u64, fx.nodes(), "nodes written");
    assert_eq!(num(&report, "codes") as u64, fx.codes(), "codes written");
    assert_eq!(num(&report, "nodeBytes") as usize, fx.built.node_bytes());
    assert_eq!(num(&report, "codeBytes") as usize, fx.built.code_bytes());
    assert_eq!(
        num(&report, "bytes") as usize,
        fx.built.node_bytes() + fx.built.code_bytes()
    );
    assert!(num(&report, "seconds") > 0.0);
    assert_eq!(
        items_fetched(&report) as u64,
        fx.items(),
        "every item fetched exactly once"
    );
    // Progress is reported after every commit, and only then.
    assert!(progress_calls.get() >= 1, "progress reported after commits");
    assert_eq!(
        f64::from(progress_calls.get()),
        num(&report, "batches"),
        "one progress call per commit"
    );
    let t = field(&report, "timings");
    log(&format!(
        "{db_name}: {} nodes {} codes in {:.2}s, {} batches; ms: commit {:.0} process {:.0} check {:.0} wait {:.0}",
        num(&report, "nodes"),
        num(&report, "codes"),
        num(&report, "seconds"),
        num(&report, "batches"),
        num(&t, "commitMs"),
        num(&t, "processMs"),
        num(&t, "checkMs"),
        num(&t, "waitMs"),
    ));
    let db = StateDb::open(db_name.into(), JsValue::UNDEFINED)
        .await
        .unwrap();
    assert_eq!(db.layout(), "packed", "a new database is packed");
    assert_verified(&db, fx).await;
    let meta = wait(db.meta()).await.unwrap();
    assert_eq!(field(&meta, "layout").as_string().unwrap(), "packed");
    assert_eq!(field(&meta, "complete"), JsValue::TRUE);
    assert_eq!(field(&meta, "root").as_string().unwrap(), fx.root);
    let counts = wait(db.counts()).await.unwrap();
    assert_eq!(num(&counts, "nodes") as u64, fx.nodes());
    assert_eq!(num(&counts, "codes") as u64, fx.codes());
    (db, report)
}

async fn sync_and_drop(fx: &Fixture, db_name: &str, peers: Vec<JsValue>) -> JsValue {
    let (db, report) = sync_fresh(fx, db_name, peers).await;
    db.close();
    delete_db(db_name).await;
    report
}

#[wasm_bindgen_test]
async fn genesis_over_http() {
    let fx = Fixture::load(GENESIS_JSON);
    sync_and_drop(&fx, "ts-genesis-http", vec![genesis_peer().into()]).await;
}

#[wasm_bindgen_test]
async fn genesis_over_ws() {
    let fx = Fixture::load(GENESIS_JSON);
    sync_and_drop(&fx, "ts-genesis-ws", vec![ws(genesis_peer()).into()]).await;
}

#[wasm_bindgen_test]
async fn genesis_over_jsonrpc() {
    let fx = Fixture::load(GENESIS_JSON);
    sync_and_drop(&fx, "ts-genesis-rpc", vec![jsonrpc(genesis_peer())]).await;
}

#[wasm_bindgen_test]
async fn genesis_over_all_three_at_once() {
    let fx = Fixture::load(GENESIS_JSON);
    let p = genesis_peer();
    let peers = vec![p.into(), ws(p).into(), jsonrpc(p)];
    let report = sync_and_drop(&fx, "ts-genesis-all", peers).await;
    let stats = js_sys::Array::from(&field(&report, "peers"));
    assert_eq!(stats.length(), 3);
    let ids: std::collections::BTreeSet<String> = stats
        .iter()
        .map(|s| field(&s, "id").as_string().unwrap())
        .collect();
    assert_eq!(
        ids.len(),
        3,
        "one server over three protocols is three peers: {ids:?}"
    );
    for s in stats.iter() {
        assert!(num(&s, "items") > 0.0, "every transport delivered: {s:?}");
        assert!(field(&s, "dropped").is_null());
    }
}

/// Every account, storage slot and code of mainnet genesis, read back after an HTTP sync.
#[wasm_bindgen_test]
async fn genesis_accounts_readable() {
    let fx = Fixture::load(GENESIS_JSON);
    let (db, _) = sync_fresh(&fx, "ts-genesis-accounts", vec![genesis_peer().into()]).await;
    assert_accounts(&db, &fx).await;
    db.close();
    delete_db("ts-genesis-accounts").await;
}

#[wasm_bindgen_test]
async fn bt_over_http_with_accounts_storage_code() {
    let fx = Fixture::load(BT_JSON);
    let (db, _) = sync_fresh(&fx, "ts-bt-http", vec![bt_peer().into()]).await;
    assert_accounts(&db, &fx).await;
    db.close();
    delete_db("ts-bt-http").await;
}

#[wasm_bindgen_test]
async fn bt_over_ws_with_accounts_storage_code() {
    let fx = Fixture::load(BT_JSON);
    let (db, _) = sync_fresh(&fx, "ts-bt-ws", vec![ws(bt_peer()).into()]).await;
    assert_accounts(&db, &fx).await;
    db.close();
    delete_db("ts-bt-ws").await;
}

#[wasm_bindgen_test]
async fn bt_over_jsonrpc_with_accounts_storage_code() {
    let fx = Fixture::load(BT_JSON);
    let (db, _) = sync_fresh(&fx, "ts-bt-rpc", vec![jsonrpc(bt_peer())]).await;
    assert_accounts(&db, &fx).await;
    db.close();
    delete_db("ts-bt-rpc").await;
}

#[wasm_bindgen_test]
async fn bt_over_all_three_at_once() {
    let fx = Fixture::load(BT_JSON);
    let p = bt_peer();
    let (db, _) = sync_fresh(&fx, "ts-bt-all", vec![p.into(), ws(p).into(), jsonrpc(p)]).await;
    assert_accounts(&db, &fx).await;
    db.close();
    delete_db("ts-bt-all").await;
}

/// A sync stopped from its progress callback after a few batches keeps what it committed;
/// a new `StateSync` on the same database fetches only the rest.
#[wasm_bindgen_test]
async fn reload_fetches_only_what_is_missing() {
    let fx = Fixture::load(GENESIS_JSON);
    let name = "ts-reload";
    delete_db(name).await;
    let opts = options(
        &fx.root,
        vec![genesis_peer().into()],
        name,
        &[("batchBytes", 50_000.into())],
    );
    let (sync, _) = sync_with_hook(opts, |batches, s| {
        if batches == 3 {
            s.cancel();
        }
    });
    let err = wait(sync.run()).await.unwrap_err();
    assert_eq!(code(&err), "CANCELLED");
    let last = field(&err, "progress");
    assert_eq!(field(&last, "complete"), JsValue::FALSE);
    let db = StateDb::open(name.into(), JsValue::UNDEFINED)
        .await
        .unwrap();
    let meta = wait(db.meta()).await.unwrap();
    let committed = (num(&meta, "nodes") + num(&meta, "codes")) as u64;
    assert_eq!(field(&meta, "complete"), JsValue::FALSE);
    assert!(
        committed > 0 && committed < fx.items(),
        "committed {committed} of {}",
        fx.items()
    );
    assert_eq!(
        num(&last, "nodes") as u64 + num(&last, "codes") as u64,
        committed
    );
    let counts = wait(db.counts()).await.unwrap();
    assert_eq!(
        num(&counts, "nodes") as u64,
        committed,
        "the meta record counts what is stored"
    );
    // The partial database is sound: nothing corrupt, only missing.
    let partial = wait(db.verify(fx.root.clone())).await.unwrap();
    assert_eq!(field(&partial, "complete"), JsValue::FALSE);
    assert_eq!(js_sys::Array::from(&field(&partial, "corrupt")).length(), 0);

    let report = run(options(&fx.root, vec![genesis_peer().into()], name, &[]))
        .await
        .unwrap();
    assert_eq!(field(&report, "complete"), JsValue::TRUE);
    let written = (num(&report, "nodes") + num(&report, "codes")) as u64;
    let fetched = items_fetched(&report) as u64;
    let reused = num(&report, "reused") as u64;
    log(&format!(
        "reload: committed {committed}, then wrote {written}, fetched {fetched}, reused {reused}"
    ));
    assert_eq!(
        written,
        fx.items() - committed,
        "second run writes exactly the rest"
    );
    assert_eq!(
        fetched + reused,
        fx.items() - committed,
        "second run fetches only the rest"
    );
    assert_verified(&db, &fx).await;
    db.close();
    delete_db(name).await;
}

/// Hostile peers (corrupt blobs, garbage, omissions, stalls, closes, 500s, HTML) next to
/// one good peer: the sync completes and the data verifies.
#[wasm_bindgen_test]
async fn hostile_peers_next_to_a_good_one() {
    let fx = Fixture::load(GENESIS_JSON);
    let name = "ts-hostile";
    let mut peers: Vec<JsValue> = Vec::new();
    for (i, url) in hostile_peers().into_iter().enumerate() {
        peers.push(url.into());
        peers.push(if i % 2 == 0 {
            ws(url).into()
        } else {
            jsonrpc(url)
        });
    }
    peers.push(genesis_peer().into());
    delete_db(name).await;
    // 5 s: a stall ends then anyway (the stalling server's --stall-max-ms), and the good
    // peer has room on a loaded machine.
    let opts = options(&fx.root, peers, name, &[("requestTimeoutMs", 5000.into())]);
    let report = run(opts)
        .await
        .unwrap_or_else(|e| panic!("hostile sync failed: {e:?}"));
    assert_eq!(field(&report, "complete"), JsValue::TRUE);
    let stats = js_sys::Array::from(&field(&report, "peers"));
    let bad: f64 = stats
        .iter()
        .map(|s| num(&s, "rejected") + num(&s, "failures") + num(&s, "timeouts"))
        .sum();
    log(&format!(
        "hostile: {} rejected, {bad} bad answers in all",
        num(&report, "rejected")
    ));
    assert!(bad > 0.0, "the faults were exercised");
    // The good peer was never caught at a fault. (A timeout of a loaded machine is no
    // fault of the peer's: allowed, and the only reason it may have been dropped.)
    let good = stats
        .iter()
        .find(|s| field(s, "id").as_string().unwrap() == genesis_peer())
        .expect("the good peer's stats");
    assert_eq!(
        num(&good, "rejected"),
        0.0,
        "good peer's data rejected: {good:?}"
    );
    assert_eq!(num(&good, "failures"), 0.0, "good peer failed: {good:?}");
    let dropped = field(&good, "dropped");
    assert!(
        dropped.is_null() || num(&good, "timeouts") > 0.0,
        "good peer dropped: {good:?}"
    );
    assert!(num(&good, "items") > 0.0);
    // The servers whose faults hit single blobs (corrupt, unrequested, omitted; hundreds of
    // blobs each) were caught at them, over whichever protocols reached them. The stalling
    // server's faults are per request, and a stall only counts once it times out, which a
    // fast sync can outrun: per-request faults are checked where every request faults
    // (the transport tests and the useless peers).
    for server in &hostile_peers()[..2] {
        // Its peers' ids: `http://host`, `ws://host`, `jsonrpc+http://host`.
        let host = format!("://{}", server.split_once("://").unwrap().1);
        let seen: Vec<JsValue> = stats
            .iter()
            .filter(|s| field(s, "id").as_string().unwrap().ends_with(&host))
            .collect();
        assert_eq!(seen.len(), 2, "two peers of {server}");
        let caught: f64 = seen
            .iter()
            .map(|s| num(s, "rejected") + num(s, "omitted") + num(s, "failures"))
            .sum();
        let dropped = seen.iter().any(|s| !field(s, "dropped").is_null());
        assert!(
            caught > 0.0 || dropped,
            "hostile server {server} went unpunished: {seen:?}"
        );
    }
    assert_synced_then_delete(name, &fx, false).await;
}

/// Only peers that never deliver a usable blob: a typed error in bounded time, and the
/// partial database holds nothing corrupt.
#[wasm_bindgen_test]
async fn only_useless_peers_fail_typed_and_bounded() {
    let fx = Fixture::load(GENESIS_JSON);
    let name = "ts-useless";
    delete_db(name).await;
    let mut peers: Vec<JsValue> = Vec::new();
    for url in useless_peers() {
        peers.push(url.into());
        peers.push(ws(url).into());
        peers.push(jsonrpc(url));
    }
    let started = triesync::clock::now_ms();
    let opts = options(&fx.root, peers, name, &[("requestTimeoutMs", 1000.into())]);
    let err = run(opts).await.unwrap_err();
    let seconds = (triesync::clock::now_ms() - started) / 1000.0;
    let code = code(&err);
    log(&format!(
        "useless peers: {code} after {seconds:.1}s: {err:?}"
    ));
    assert!(code == "NO_PEERS" || code == "UNAVAILABLE", "code {code}");
    assert!(err.is_instance_of::<js_sys::Error>());
    assert!(seconds < 60.0, "gave up in {seconds}s");
    let db = StateDb::open(name.into(), JsValue::UNDEFINED)
        .await
        .unwrap();
    let report = wait(db.verify(fx.root.clone())).await.unwrap();
    assert_eq!(field(&report, "complete"), JsValue::FALSE);
    assert_eq!(
        js_sys::Array::from(&field(&report, "corrupt")).length(),
        0,
        "nothing corrupt stored"
    );
    assert_eq!(num(&report, "nodes"), 0.0, "nothing stored at all");
    db.close();
    delete_db(name).await;
}

/// Only hostile peers left (the good one is removed at the first commit, so that something
/// is committed whatever the faults' luck), each dropped at its first fault, small batches:
/// a typed error in bounded time, and what was committed, by whichever peer, is sound: every stored item hashes to its key and has its whole subtree,
/// nothing under the root is corrupt, the rest is missing.
#[wasm_bindgen_test]
async fn only_hostile_peers_leave_a_sound_partial_database() {
    let fx = Fixture::load(GENESIS_JSON);
    let name = "ts-only-hostile";
    delete_db(name).await;
    let mut peers: Vec<JsValue> = vec![genesis_peer().into()];
    for url in hostile_peers() {
        peers.push(url.into());
        peers.push(ws(url).into());
        peers.push(jsonrpc(url));
    }
    let started = triesync::clock::now_ms();
    let opts = options(
        &fx.root,
        peers,
        name,
        &[
            ("requestTimeoutMs", 1000.into()),
            ("peerFailureLimit", 1.into()),
            ("batchBytes", 10_000.into()),
        ],
    );
    let (sync, _) = sync_with_hook(opts, |calls, s| {
        if calls == 1 {
            s.remove_peer(genesis_peer().into()).unwrap();
        }
    });
    let err = wait(sync.run()).await.unwrap_err();
    let seconds = (triesync::clock::now_ms() - started) / 1000.0;
    let code = code(&err);
    log(&format!("only hostile peers: {code} after {seconds:.1}s"));
    assert!(
        code == "NO_PEERS" || code == "UNAVAILABLE",
        "code {code}: {err:?}"
    );
    assert!(seconds < 60.0, "gave up in {seconds}s");
    let db = StateDb::open(name.into(), JsValue::UNDEFINED)
        .await
        .unwrap();
    let meta = wait(db.meta()).await.unwrap();
    let committed = num(&meta, "nodes");
    assert!(committed > 0.0, "the good data was committed: {meta:?}");
    assert_eq!(field(&meta, "complete"), JsValue::FALSE);
    // checkStore reads every stored item, whether the root reaches it or not.
    let check = wait(db.check_store()).await.unwrap();
    log(&format!(
        "only hostile peers: committed {committed}: {check:?}"
    ));
    assert_eq!(num(&check, "nodes"), committed, "every committed node read");
    assert_eq!(field(&check, "sound"), JsValue::TRUE, "{check:?}");
    assert_eq!(num(&check, "corruptCount"), 0.0);
    assert_eq!(num(&check, "danglingCount"), 0.0);
    let report = wait(db.verify(fx.root.clone())).await.unwrap();
    assert_eq!(field(&report, "complete"), JsValue::FALSE);
    assert!(num(&report, "missingCount") > 0.0, "{report:?}");
    assert_eq!(js_sys::Array::from(&field(&report, "corrupt")).length(), 0);
    db.close();
    delete_db(name).await;
}

/// `addPeer` and `removePeer` while a sync runs: a good peer added after the first commit
/// takes part, the slow peer removed later stops; the sync completes. Removing the only
/// peer ends a sync with NO_PEERS at once.
#[wasm_bindgen_test]
async fn add_and_remove_peers_while_running() {
    let fx = Fixture::load(GENESIS_JSON);
    let name = "ts-peers-midway";
    delete_db(name).await;
    let opts = options(
        &fx.root,
        vec![slow_peer().into()],
        name,
        &[("batchBytes", 20_000.into())],
    );
    let (sync, calls) = sync_with_hook(opts, |calls, s| match calls {
        1 => s.add_peer(genesis_peer().into()).unwrap(),
        3 => s.remove_peer(slow_peer().into()).unwrap(),
        _ => {}
    });
    let report = wait(sync.run())
        .await
        .unwrap_or_else(|e| panic!("sync failed: {e:?}"));
    assert_eq!(field(&report, "complete"), JsValue::TRUE);
    assert!(
        calls.get() > 3,
        "removed while running: {} commits",
        calls.get()
    );
    let stats = js_sys::Array::from(&field(&report, "peers"));
    let peer = |id: &str| {
        stats
            .iter()
            .find(|s| field(s, "id").as_string().unwrap() == id)
            .unwrap_or_else(|| panic!("no peer {id} in {stats:?}"))
    };
    let (slow, good) = (peer(slow_peer()), peer(genesis_peer()));
    log(&format!("peers midway: slow {slow:?}, good {good:?}"));
    assert!(num(&slow, "items") > 0.0, "the slow peer delivered first");
    assert!(num(&good, "items") > 0.0, "the added peer delivered");
    assert_eq!(field(&slow, "dropped").as_string().unwrap(), "removed");
    assert!(field(&good, "dropped").is_null());
    assert_synced_then_delete(name, &fx, false).await;

    // The only peer removed at the first commit: NO_PEERS, without waiting for anything
    // (its requests are abandoned, not waited out: the timeout is far above the bound).
    let opts = options(
        &fx.root,
        vec![ws(slow_peer()).into()],
        name,
        &[
            ("batchBytes", 20_000.into()),
            ("requestTimeoutMs", 20_000.into()),
        ],
    );
    let removed_at = Rc::new(Cell::new(None::<f64>));
    let r = removed_at.clone();
    let (sync, _) = sync_with_hook(opts, move |calls, s| {
        if calls == 1 {
            r.set(Some(triesync::clock::now_ms()));
            s.remove_peer(ws(slow_peer()).into()).unwrap();
        }
    });
    let err = wait(sync.run()).await.unwrap_err();
    let after = triesync::clock::now_ms() - removed_at.get().expect("a commit happened");
    assert_eq!(code(&err), "NO_PEERS", "{err:?}");
    assert!(after < 5000.0, "NO_PEERS {after} ms after the removal");
    let last = field(&err, "progress");
    assert_eq!(field(&last, "complete"), JsValue::FALSE);
    delete_db(name).await;
}

/// An AbortSignal cancels the sync (rejects with CANCELLED); a new sync resumes and
/// completes.
#[wasm_bindgen_test]
async fn abort_signal_cancels_then_resume() {
    let fx = Fixture::load(GENESIS_JSON);
    let name = "ts-abort";
    delete_db(name).await;
    let controller = web_sys::AbortController::new().unwrap();
    let c = controller.clone();
    let seen = Rc::new(Cell::new(0u32));
    let s = seen.clone();
    let on_progress = callback(move |_| {
        s.set(s.get() + 1);
        if s.get() == 2 {
            c.abort();
        }
    });
    // A slow peer: batches are written in the background while fetching goes on, so on a
    // fast one the whole state may land in two commits.
    let opts = options(
        &fx.root,
        vec![ws(slow_peer()).into()],
        name,
        &[
            ("signal", controller.signal().into()),
            ("onProgress", on_progress.into()),
            ("batchBytes", 60_000.into()),
        ],
    );
    let err = run(opts).await.unwrap_err();
    assert_eq!(code(&err), "CANCELLED");
    let partial = field(&err, "progress");
    assert_eq!(field(&partial, "complete"), JsValue::FALSE);

    // A signal already aborted cancels before anything is fetched.
    let opts = options(
        &fx.root,
        vec![genesis_peer().into()],
        name,
        &[("signal", controller.signal().into())],
    );
    let err = run(opts).await.unwrap_err();
    assert_eq!(code(&err), "CANCELLED");

    let report = run(options(&fx.root, vec![genesis_peer().into()], name, &[]))
        .await
        .unwrap();
    assert_eq!(field(&report, "complete"), JsValue::TRUE);
    assert!(
        ((num(&report, "nodes") + num(&report, "codes")) as u64) < fx.items(),
        "resumed, not restarted"
    );
    assert_synced_then_delete(name, &fx, false).await;
}

/// `addPeer` before `run`, `setRoot` during it, and `removePeer`.
#[wasm_bindgen_test]
async fn add_peer_set_root_remove_peer() {
    let genesis = Fixture::load(GENESIS_JSON);
    let bt = Fixture::load(BT_JSON);
    let name = "ts-setroot";
    delete_db(name).await;
    let bt_root = bt.root.clone();
    let (sync, calls) = sync_with_hook(
        options(
            &genesis.root,
            vec![],
            name,
            &[("batchBytes", 50_000.into())],
        ),
        move |calls, s| {
            if calls == 1 {
                s.set_root(&bt_root).unwrap();
            }
        },
    );
    sync.add_peer(genesis_peer().into()).unwrap();
    sync.add_peer(ws(bt_peer()).into()).unwrap();
    sync.add_peer("http://127.0.0.1:9/".into()).unwrap();
    sync.remove_peer("http://127.0.0.1:9/".into()).unwrap();
    sync.add_peer(jsonrpc(bt_peer())).unwrap();
    sync.remove_peer(jsonrpc(bt_peer())).unwrap();
    let report = wait(sync.run()).await.unwrap();
    assert!(calls.get() >= 1, "switched at the first commit");
    assert_eq!(field(&report, "root").as_string().unwrap(), bt.root);
    assert_eq!(field(&report, "complete"), JsValue::TRUE);
    let stats = js_sys::Array::from(&field(&report, "peers"));
    let removed = stats
        .iter()
        .find(|s| field(s, "id").as_string().unwrap() == "http://127.0.0.1:9/")
        .unwrap();
    assert_eq!(field(&removed, "dropped").as_string().unwrap(), "removed");
    let rpc_id = format!("jsonrpc+{}", bt_peer());
    let rpc = stats
        .iter()
        .find(|s| field(s, "id").as_string().unwrap() == rpc_id)
        .unwrap();
    assert_eq!(field(&rpc, "dropped").as_string().unwrap(), "removed");
    let ws_id = ws(bt_peer());
    let kept = stats
        .iter()
        .find(|s| field(s, "id").as_string().unwrap() == ws_id)
        .unwrap();
    assert!(
        field(&kept, "dropped").is_null(),
        "only the jsonrpc peer of that URL was removed"
    );
    let db = StateDb::open(name.into(), JsValue::UNDEFINED)
        .await
        .unwrap();
    assert_verified(&db, &bt).await;
    assert_accounts(&db, &bt).await;
    let meta = wait(db.meta()).await.unwrap();
    assert_eq!(field(&meta, "root").as_string().unwrap(), bt.root);
    // The genesis sync was left partial; what it committed is sound.
    let partial = wait(db.verify(genesis.root.clone())).await.unwrap();
    assert_eq!(js_sys::Array::from(&field(&partial, "corrupt")).length(), 0);
    db.close();
    delete_db(name).await;
}

/// Bad arguments throw typed errors; a second `run()` is refused; no peers is NO_PEERS;
/// lookups in an unsynced database are MISSING.
#[wasm_bindgen_test]
async fn argument_and_state_errors_are_typed() {
    let root = Fixture::load(BT_JSON).root;
    let bad = |opts: JsValue| StateSync::new(opts).map(|_| ()).unwrap_err();
    assert_eq!(code(&bad(JsValue::from_str("x"))), "INVALID_ARGUMENT");
    assert_eq!(
        code(&bad(options("0x1234", vec![], "db", &[]))),
        "INVALID_ARGUMENT"
    );
    assert_eq!(
        code(&bad(options(&root, vec![], "", &[]))),
        "INVALID_ARGUMENT"
    );
    assert_eq!(
        code(&bad(options(&root, vec!["ftp://x".into()], "db", &[]))),
        "INVALID_ARGUMENT"
    );
    assert_eq!(
        code(&bad(options(
            &root,
            vec![obj(&[
                ("url", "http://x".into()),
                ("protocol", "smoke".into())
            ])],
            "db",
            &[]
        ))),
        "INVALID_ARGUMENT"
    );
    assert_eq!(
        code(&bad(options(
            &root,
            vec![],
            "db",
            &[("batchBytes", "big".into())]
        ))),
        "INVALID_ARGUMENT"
    );
    // Counts, sizes and times that would stall the sync (a batchBytes of 0 commits an
    // empty batch on every turn) or are no number at all.
    for (key, value) in [
        ("batchBytes", 0.0),
        ("batchBytes", 0.5),
        ("batchBytes", -1.0),
        ("batchBytes", f64::NAN),
        ("requestTimeoutMs", 0.0),
        ("maxInFlightPerPeer", 0.0),
        ("maxRequestItems", 0.0),
        ("peerFailureLimit", 0.0),
        ("maxResponseBytes", 0.0),
        ("maxResponseBytes", 100.0),
        ("lockTimeoutMs", -5.0),
        ("lockTimeoutMs", f64::INFINITY),
        ("failureRestMs", -1.0),
        ("failureRestMs", f64::NAN),
    ] {
        let err = StateSync::new(options(&root, vec![], "db", &[(key, value.into())]))
            .err()
            .unwrap_or_else(|| panic!("{key}: {value} accepted"));
        assert_eq!(code(&err), "INVALID_ARGUMENT", "{key}: {value}");
        let message = field(&err, "message").as_string().unwrap();
        assert!(message.contains(key), "{key}: {message}");
    }
    // The smallest sensible values are fine.
    for key in [
        "batchBytes",
        "requestTimeoutMs",
        "maxInFlightPerPeer",
        "maxRequestItems",
        "peerFailureLimit",
    ] {
        StateSync::new(options(&root, vec![], "db", &[(key, 1.into())]))
            .unwrap_or_else(|e| panic!("{key}: 1 refused: {e:?}"));
    }
    StateSync::new(options(
        &root,
        vec![],
        "db",
        &[("maxResponseBytes", 1024.into())],
    ))
    .unwrap();
    // No rest after a failure is a choice, not a mistake.
    StateSync::new(options(&root, vec![], "db", &[("failureRestMs", 0.into())])).unwrap();
    assert_eq!(
        code(&bad(options(
            &root,
            vec![],
            "db",
            &[("onProgress", 5.into())]
        ))),
        "INVALID_ARGUMENT"
    );
    let err = bad(options(&root, vec![], "db", &[("signal", 5.into())]));
    assert_eq!(code(&err), "INVALID_ARGUMENT");
    assert_eq!(field(&err, "name").as_string().unwrap(), "TriesyncError");

    let name = "ts-errors";
    delete_db(name).await;
    let sync = StateSync::new(options(&root, vec![], name, &[])).unwrap();
    assert_eq!(
        code(&sync.add_peer(JsValue::from_f64(3.0)).unwrap_err()),
        "INVALID_ARGUMENT"
    );
    assert_eq!(
        code(&sync.set_root("nope").unwrap_err()),
        "INVALID_ARGUMENT"
    );
    let first = sync.run();
    let second = wait(sync.run()).await.unwrap_err();
    assert_eq!(code(&second), "ALREADY_STARTED");
    assert_eq!(code(&wait(first).await.unwrap_err()), "NO_PEERS");

    let db = StateDb::open(name.into(), JsValue::UNDEFINED)
        .await
        .unwrap();
    let addr = "0x0000000000000000000000000000000000000001".to_string();
    assert_eq!(
        code(
            &wait(db.account(root.clone(), addr.clone()))
                .await
                .unwrap_err()
        ),
        "MISSING"
    );
    assert_eq!(
        code(
            &wait(db.account(root.clone(), "0x12".into()))
                .await
                .unwrap_err()
        ),
        "INVALID_ARGUMENT"
    );
    assert_eq!(
        code(
            &wait(db.storage(root.clone(), addr.clone(), "zz".into()))
                .await
                .unwrap_err()
        ),
        "INVALID_ARGUMENT"
    );
    assert_eq!(
        code(&wait(db.code(root.clone(), addr)).await.unwrap_err()),
        "MISSING"
    );
    let report = wait(db.verify(root.clone())).await.unwrap();
    assert_eq!(num(&report, "missingCount"), 1.0);
    let meta = wait(db.meta()).await.unwrap();
    assert!(
        meta.is_null() || num(&meta, "nodes") == 0.0,
        "nothing committed: {meta:?}"
    );
    db.close();
    delete_db(name).await;
}

/// A progress callback that throws does not stop the sync.
#[wasm_bindgen_test]
async fn throwing_progress_callback_is_contained() {
    let fx = Fixture::load(BT_JSON);
    let name = "ts-throwing-callback";
    delete_db(name).await;
    let thrower: js_sys::Function =
        js_sys::Function::new_no_args("throw new Error('callback bug')");
    let calls = Rc::new(RefCell::new(0));
    let c = calls.clone();
    let sync = StateSync::new(options(
        &fx.root,
        vec![bt_peer().into()],
        name,
        &[("onProgress", thrower.into())],
    ))
    .unwrap();
    sync.on_progress(callback(move |p| {
        assert!(field(&p, "nodes").as_f64().is_some());
        *c.borrow_mut() += 1;
    }));
    let report = wait(sync.run()).await.unwrap();
    assert_eq!(field(&report, "complete"), JsValue::TRUE);
    assert!(*calls.borrow() >= 1, "later callbacks still run");
    assert_eq!(field(&sync.progress(), "complete"), JsValue::TRUE);
    delete_db(name).await;
}

/// Two syncs into one database at once: the second fails with LOCKED and the first
/// completes; once it finished, the database can be synced into again.
#[wasm_bindgen_test]
async fn one_writer_per_database() {
    let fx = Fixture::load(GENESIS_JSON);
    let name = "ts-locked";
    delete_db(name).await;
    let first = StateSync::new(options(&fx.root, vec![genesis_peer().into()], name, &[])).unwrap();
    let second = StateSync::new(options(&fx.root, vec![genesis_peer().into()], name, &[])).unwrap();
    let (a, b) = (first.run(), second.run());
    assert_eq!(code(&wait(b).await.unwrap_err()), "LOCKED");
    let report = wait(a).await.unwrap();
    assert_eq!(field(&report, "complete"), JsValue::TRUE);
    // Another database is not locked by this one, and the lock is released after a run.
    let again = run(options(&fx.root, vec![genesis_peer().into()], name, &[]))
        .await
        .unwrap();
    assert_eq!(field(&again, "complete"), JsValue::TRUE);
    assert_eq!(
        num(&again, "nodes"),
        0.0,
        "already complete: nothing to write"
    );
    delete_db(name).await;
}

/// With `lockTimeoutMs` a second sync waits for the writer and then runs (nothing left to
/// fetch); a short timeout gives LOCKED; reports carry a storage estimate.
#[wasm_bindgen_test]
async fn lock_timeout_waits_for_the_writer() {
    let fx = Fixture::load(GENESIS_JSON);
    let name = "ts-lock-wait";
    delete_db(name).await;
    let peers = || vec![JsValue::from(genesis_peer())];
    let first = StateSync::new(options(&fx.root, peers(), name, &[])).unwrap();
    let short = StateSync::new(options(
        &fx.root,
        peers(),
        name,
        &[("lockTimeoutMs", 50.into())],
    ))
    .unwrap();
    let patient = StateSync::new(options(
        &fx.root,
        peers(),
        name,
        &[("lockTimeoutMs", 120_000.into())],
    ))
    .unwrap();
    let (a, s, p) = (first.run(), short.run(), patient.run());
    let t = triesync::clock::now_ms();
    assert_eq!(code(&wait(s).await.unwrap_err()), "LOCKED");
    let waited = triesync::clock::now_ms() - t;
    assert!(waited >= 40.0, "LOCKED only after the timeout: {waited} ms");
    let ra = wait(a).await.unwrap();
    let rp = wait(p).await.unwrap();
    assert_eq!(field(&ra, "complete"), JsValue::TRUE);
    assert_eq!(field(&rp, "complete"), JsValue::TRUE);
    assert_eq!(
        items_fetched(&rp),
        0.0,
        "the patient sync found everything in place"
    );
    let storage = field(&ra, "storage");
    assert!(
        num(&storage, "usage") > 0.0 && num(&storage, "quota") > 0.0,
        "{storage:?}"
    );
    assert!(
        wait(StateSync::persist())
            .await
            .unwrap()
            .as_bool()
            .is_some(),
        "persist() resolves with a boolean"
    );
    delete_db(name).await;
}

/// A sync into a database that runs out of quota (a storage bucket of 600 kB) stops with
/// QUOTA_EXCEEDED; what it committed before is sound.
#[wasm_bindgen_test]
async fn quota_exceeded_stops_the_sync_typed() {
    use js_sys::Reflect;
    use triesync::db::{Db, Role};
    use triesync::error::Error;
    use triesync::transport::{connect, PeerSpec, TransportOptions};
    use triesync_core::driver::{SyncConfig, SyncError, Syncer};
    use triesync_core::store::StoreError;
    use wasm_bindgen_futures::JsFuture;

    let fx = Fixture::load(GENESIS_JSON);
    let navigator = Reflect::get(&js_sys::global(), &"navigator".into()).unwrap();
    let buckets = Reflect::get(&navigator, &"storageBuckets".into()).unwrap();
    let call = |name: &str, args: &[JsValue]| -> js_sys::Promise {
        let f: js_sys::Function = Reflect::get(&buckets, &name.into())
            .unwrap()
            .unchecked_into();
        let args: js_sys::Array = args.iter().collect();
        f.apply(&buckets, &args).unwrap().unchecked_into()
    };
    let opts = obj(&[("quota", JsValue::from_f64(600_000.0))]);
    let bucket = JsFuture::from(call("open", &["ts-sync-quota".into(), opts]))
        .await
        .unwrap();
    let factory: web_sys::IdbFactory = Reflect::get(&bucket, &"indexedDB".into())
        .unwrap()
        .unchecked_into();
    // The default layout, as `StateSync` opens it.
    let store = Db::open_in(
        &idb::Factory::from(factory),
        "ts-sync-quota",
        None,
        Role::Writer,
    )
    .await
    .unwrap();
    assert_eq!(store.layout(), triesync::Layout::Packed);

    let (syncer, handle) = Syncer::new(fx.built.root, SyncConfig::default());
    let spec = PeerSpec::from_url(genesis_peer(), None).unwrap();
    handle.add_peer(connect(&spec, TransportOptions::default()));
    let mut commits = 0;
    let err = syncer
        .run(&store, &triesync::BrowserClock, &mut |_| commits += 1)
        .await
        .unwrap_err();
    assert_eq!(err, SyncError::Store(StoreError::QuotaExceeded));
    assert_eq!(Error::Sync(err).code(), "QUOTA_EXCEEDED");
    log(&format!("quota: stopped after {commits} commits"));
    let report = triesync_core::walk::verify(&store, fx.built.root)
        .await
        .unwrap();
    assert!(!report.complete);
    assert!(
        report.corrupt.is_empty(),
        "nothing corrupt after the failed write"
    );
    drop(store);
    JsFuture::from(call("delete", &["ts-sync-quota".into()]))
        .await
        .unwrap();
}
