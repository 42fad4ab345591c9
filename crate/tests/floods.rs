//! Peers that flood (started by scripts/browser-tests.sh, every request flooded): a 100 MB
//! answer, an answer that never ends, the same blob 1000 times, 1000 blobs nobody asked
//! for, 1000 unsolicited WebSocket answers before each answer, a WebSocket message of 100
//! MB. The transports stop reading at their size cap (a stream with a running count, not
//! a whole-body read), nothing refused is copied into wasm memory, the flooding peer is
//! dropped and the sync completes with the good peer alongside.
#![cfg(target_arch = "wasm32")]

mod common;

use common::*;
use std::time::Duration;
use triesync::api::StateDb;
use triesync::transport::{connect, ws::WsPeer, PeerSpec, Protocol, TransportOptions};
use triesync_core::peer::{Peer, PeerError};
use triesync_core::store::ItemKey;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

const MIB: usize = 1024 * 1024;

/// Bytes of wasm linear memory (it grows and never shrinks: the high-water mark).
fn wasm_memory() -> usize {
    wasm_bindgen::memory()
        .unchecked_into::<js_sys::WebAssembly::Memory>()
        .buffer()
        .unchecked_into::<js_sys::ArrayBuffer>()
        .byte_length() as usize
}

/// `performance.memory.usedJSHeapSize` (Chromium only; coarse), for the log.
fn js_heap() -> f64 {
    let perf = js_sys::Reflect::get(&js_sys::global(), &"performance".into()).unwrap();
    js_sys::Reflect::get(&perf, &"memory".into())
        .ok()
        .filter(|m| m.is_object())
        .and_then(|m| js_sys::Reflect::get(&m, &"usedJSHeapSize".into()).ok())
        .and_then(|v| v.as_f64())
        .unwrap_or(0.0)
}

fn spec(url: &str, protocol: Option<Protocol>) -> PeerSpec {
    PeerSpec::from_url(url, protocol).unwrap()
}

fn opts(cap: usize) -> TransportOptions {
    TransportOptions {
        timeout: Duration::from_secs(20),
        max_response_bytes: cap,
    }
}

/// A good sync first, so that the allocator's high-water mark of an ordinary sync is
/// reached before the flood tests measure growth.
async fn warm_up() {
    let fx = Fixture::load(GENESIS_JSON);
    let name = "ts-flood-warmup";
    delete_db(name).await;
    run(options(&fx.root, vec![genesis_peer().into()], name, &[]))
        .await
        .unwrap();
    delete_db(name).await;
}

/// HTTP and JSON-RPC against a 100 MB answer and an endless one: `TooLarge` as soon as
/// the running count passes the cap (an endless body could never be read whole), in
/// bounded time, without wasm memory growing by the body.
#[wasm_bindgen_test]
async fn http_reads_a_stream_and_stops_at_the_cap() {
    let fx = Fixture::load(GENESIS_JSON);
    let key = ItemKey::node(fx.built.root);
    warm_up().await;
    let before = wasm_memory();
    for kind in ["bytes", "endless"] {
        let url = flood_peer(kind);
        for p in [None, Some(Protocol::JsonRpc)] {
            let peer = connect(&spec(url, p), opts(4 * MIB));
            let t = triesync::clock::now_ms();
            let r = peer.fetch(vec![key]).await;
            let ms = triesync::clock::now_ms() - t;
            // JSON-RPC's cap is on the decoded size: about twice the bytes, plus envelopes.
            let cap = if p.is_some() { 8 * MIB + 2048 } else { 4 * MIB };
            match r {
                Err(PeerError::TooLarge(n)) => {
                    log(&format!(
                        "{kind} {p:?}: refused after {n} bytes in {ms:.0} ms"
                    ));
                    assert!(n > cap, "{kind} {p:?}: {n}");
                    assert!(
                        n <= cap + 2 * MIB,
                        "{kind} {p:?}: read {n} bytes, far past the cap"
                    );
                }
                other => panic!("{kind} {p:?}: {:?}", other.map(|b| b.len())),
            }
            assert!(ms < 15_000.0, "{kind} {p:?}: {ms} ms");
        }
    }
    let grown = wasm_memory().saturating_sub(before);
    log(&format!(
        "wasm memory grew by {grown} bytes; JS heap {:.0} MB",
        js_heap() / 1e6
    ));
    assert!(
        grown < 4 * MIB,
        "refused bodies reached wasm memory: grew by {grown}"
    );
}

/// WebSocket: 1000 unsolicited answers close the socket and cut the peer off (later
/// requests fail at once); an endless stream of them too; a 100 MB message closes the
/// socket with `TooLarge` and is never copied into wasm memory.
#[wasm_bindgen_test]
async fn websocket_floods_close_the_socket() {
    let fx = Fixture::load(GENESIS_JSON);
    let key = ItemKey::node(fx.built.root);
    warm_up().await;
    let before = wasm_memory();
    for kind in ["wsflood", "endless"] {
        let peer = WsPeer::new(&spec(&ws(flood_peer(kind)), None), opts(16 * MIB));
        let r = peer.fetch(vec![key]).await;
        assert!(
            matches!(&r, Err(PeerError::Malformed(m)) if m.contains("unsolicited")),
            "{kind}: {:?}",
            r.map(|b| b.len())
        );
        assert!(peer.banned().is_some(), "{kind}: cut off");
        assert!(!peer.connected(), "{kind}: socket closed");
        let t = triesync::clock::now_ms();
        assert!(matches!(
            peer.fetch(vec![key]).await,
            Err(PeerError::Malformed(_))
        ));
        assert!(
            triesync::clock::now_ms() - t < 100.0,
            "fails at once, no reconnect"
        );
        assert!(!peer.connected());
    }
    let peer = WsPeer::new(&spec(&ws(flood_peer("bytes")), None), opts(16 * MIB));
    match peer.fetch(vec![key]).await {
        Err(PeerError::TooLarge(n)) => assert!(n > 99_000_000, "{n}"),
        other => panic!("100 MB message: {:?}", other.map(|b| b.len())),
    }
    assert!(!peer.connected(), "the socket was closed");
    assert_eq!(peer.pending(), 0);
    let grown = wasm_memory().saturating_sub(before);
    log(&format!(
        "ws floods: wasm memory grew by {grown} bytes; JS heap {:.0} MB",
        js_heap() / 1e6
    ));
    assert!(
        grown < 4 * MIB,
        "flood messages reached wasm memory: grew by {grown}"
    );
}

/// The flooding peer over every transport its flood applies to (`--ws-flood` floods only
/// WebSockets).
fn flooding(kind: &str, url: &str) -> Vec<JsValue> {
    if kind == "wsflood" {
        vec![ws(url).into()]
    } else {
        vec![url.into(), ws(url).into(), jsonrpc(url)]
    }
}

/// Whole syncs through the JS API: the good peer next to one flooding peer over every
/// transport. The sync completes and verifies, the flooding peer delivered nothing and
/// failed, and wasm memory stays far below the floods' size.
#[wasm_bindgen_test]
async fn syncs_complete_next_to_flooding_peers() {
    let fx = Fixture::load(GENESIS_JSON);
    warm_up().await;
    let before = wasm_memory();
    for kind in ["bytes", "endless", "repeat", "unasked", "wsflood"] {
        let name = format!("ts-flood-{kind}");
        delete_db(&name).await;
        let url = flood_peer(kind);
        let mut peers = flooding(kind, url);
        peers.push(genesis_peer().into());
        let t = triesync::clock::now_ms();
        let report = run(options(
            &fx.root,
            peers,
            &name,
            &[("requestTimeoutMs", 5000.into())],
        ))
        .await
        .unwrap_or_else(|e| panic!("{kind}: {e:?}"));
        let secs = (triesync::clock::now_ms() - t) / 1000.0;
        assert_eq!(field(&report, "complete"), JsValue::TRUE, "{kind}");
        let stats = js_sys::Array::from(&field(&report, "peers"));
        for s in stats.iter() {
            let id = field(&s, "id").as_string().unwrap();
            if id.starts_with(genesis_peer()) && !id.starts_with("jsonrpc+") {
                continue;
            }
            let dropped = field(&s, "dropped");
            log(&format!(
                "{kind}: {id}: {} requests, {} items, {} failures, {} rejected, dropped: {:?}",
                num(&s, "requests"),
                num(&s, "items"),
                num(&s, "failures"),
                num(&s, "rejected"),
                dropped.as_string()
            ));
            assert_eq!(
                num(&s, "items"),
                0.0,
                "{kind}: {id} delivered through its flood"
            );
            // (A 100 MB WebSocket message can outlast the request timeout on a loaded
            // machine before its size is seen: a timeout is a refusal too.)
            if num(&s, "requests") > 0.0 {
                assert!(
                    num(&s, "failures") + num(&s, "rejected") + num(&s, "timeouts") > 0.0,
                    "{kind}: {id} was not refused"
                );
            }
        }
        let db = StateDb::open(name.clone(), JsValue::UNDEFINED)
            .await
            .unwrap();
        assert_verified(&db, &fx).await;
        db.close();
        delete_db(&name).await;
        log(&format!("{kind}: complete in {secs:.1}s"));
    }
    let grown = wasm_memory().saturating_sub(before);
    log(&format!(
        "flood syncs: wasm memory grew by {grown} bytes; JS heap {:.0} MB",
        js_heap() / 1e6
    ));
    assert!(grown < 16 * MIB, "wasm memory grew by {grown}");
}

/// A flooding peer alone: it is dropped (every request fails),
/// so the sync ends with NO_PEERS in bounded time instead of reading forever.
#[wasm_bindgen_test]
async fn a_flooding_peer_alone_is_dropped() {
    let fx = Fixture::load(GENESIS_JSON);
    for kind in ["bytes", "endless", "repeat", "unasked", "wsflood"] {
        let name = format!("ts-flood-alone-{kind}");
        delete_db(&name).await;
        let url = flood_peer(kind);
        let mut peers = flooding(kind, url);
        if kind == "bytes" {
            // Its 100 MB WebSocket messages are covered above; they only cost time here.
            peers.remove(1);
        }
        let t = triesync::clock::now_ms();
        let err = run(options(
            &fx.root,
            peers,
            &name,
            &[("requestTimeoutMs", 5000.into())],
        ))
        .await
        .unwrap_err();
        let secs = (triesync::clock::now_ms() - t) / 1000.0;
        assert_eq!(code(&err), "NO_PEERS", "{kind}: {err:?}");
        let p = field(&err, "progress");
        if !p.is_undefined() {
            for s in js_sys::Array::from(&field(&p, "peers")).iter() {
                assert!(field(&s, "dropped").is_string(), "{kind}: {s:?}");
            }
        }
        log(&format!("{kind} alone: NO_PEERS after {secs:.1}s"));
        assert!(secs < 60.0, "{kind}: {secs}s");
        delete_db(&name).await;
    }
}
