//! The transports on their own against real reference peers: framing, many requests in
//! flight on one socket, reconnects after a close, timeouts, cancellation by drop, and the
//! answer size cap.
#![cfg(target_arch = "wasm32")]

mod common;

use common::*;
use futures::future::{join_all, select, Either};
use futures::FutureExt;
use js_sys::Reflect;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;
use triesync::transport::{connect, ws::WsPeer, PeerSpec, Protocol, TransportOptions};
use triesync_core::peer::{Peer, PeerError};
use triesync_core::store::ItemKey;
use triesync_core::{keccak256, H256};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

fn spec(url: &str, protocol: Option<Protocol>) -> PeerSpec {
    PeerSpec::from_url(url, protocol).unwrap()
}

fn options(timeout_ms: u64) -> TransportOptions {
    TransportOptions {
        timeout: Duration::from_millis(timeout_ms),
        ..TransportOptions::default()
    }
}

/// The root and the codes of bt-block504980: asked of every transport, each answer must
/// hash to what was asked.
#[wasm_bindgen_test]
async fn every_transport_serves_nodes_and_code() {
    let fx = Fixture::load(BT_JSON);
    let mut keys = vec![ItemKey::node(fx.built.root)];
    keys.extend(fx.built.codes.keys().map(|h| ItemKey::code(*h)));
    let url = bt_peer();
    for (u, p) in [
        (url.to_string(), None),
        (ws(url), None),
        (url.to_string(), Some(Protocol::JsonRpc)),
    ] {
        let peer = connect(&spec(&u, p), options(5000));
        let s = spec(&u, p);
        assert_eq!(peer.id(), s.id);
        assert_eq!(s.id.starts_with("jsonrpc+"), p == Some(Protocol::JsonRpc));
        let blobs = peer
            .fetch(keys.clone())
            .await
            .unwrap_or_else(|e| panic!("{u} {p:?}: {e}"));
        let mut got: Vec<H256> = blobs.iter().map(|b| keccak256(b)).collect();
        let mut want: Vec<H256> = keys.iter().map(|k| k.hash).collect();
        got.sort();
        want.sort();
        assert_eq!(got, want, "{u} {p:?}");
        // Unknown hashes are left out, not errors.
        let unknown = peer
            .fetch(vec![ItemKey::node(keccak256(b"nothing"))])
            .await
            .unwrap();
        assert!(unknown.is_empty());
    }
}

/// Many requests in flight on one WebSocket, each answer matched to its request by id. The
/// peer never answers some of them and answers the rest in any order, so later requests
/// are answered while earlier ones are still waiting: matching by order would hand an
/// answer to the wrong request (whose hash it does not have).
#[wasm_bindgen_test]
async fn websocket_matches_many_requests_in_flight() {
    let fx = Fixture::load(BT_JSON);
    let peer = WsPeer::new(&spec(&ws(unordered_peer()), None), options(2000));
    let hashes: Vec<H256> = fx.built.nodes.keys().copied().take(40).collect();
    let finished = Rc::new(RefCell::new(Vec::new()));
    let fetches = hashes.iter().enumerate().map(|(i, h)| {
        let finished = finished.clone();
        peer.fetch(vec![ItemKey::node(*h)]).map(move |a| {
            finished.borrow_mut().push(i);
            a
        })
    });
    let answers = join_all(fetches).await;
    let (mut answered, mut stalled) = (Vec::new(), Vec::new());
    for (i, (h, a)) in hashes.iter().zip(answers).enumerate() {
        match a {
            Ok(blobs) => {
                assert_eq!(blobs.len(), 1);
                assert_eq!(
                    keccak256(&blobs[0]),
                    *h,
                    "answer {i} matched to its own request"
                );
                answered.push(i);
            }
            Err(PeerError::Timeout) => stalled.push(i),
            Err(e) => panic!("request {i}: {e}"),
        }
    }
    let order = finished.borrow().clone();
    log(&format!(
        "ws out of order: stalled {stalled:?}; finished in order {order:?}"
    ));
    assert!(answered.len() >= 10, "answered {answered:?}");
    // Some request was answered after an earlier one went unanswered: out of order.
    let first_stalled = *stalled.first().expect("some requests stalled");
    assert!(
        answered.iter().any(|&i| i > first_stalled),
        "answers after the stalled request {first_stalled}: {answered:?}"
    );
    assert_ne!(order, (0..40).collect::<Vec<_>>(), "finished out of order");
    assert_eq!(peer.pending(), 0);
    assert!(peer.connected());
}

/// A peer that closes the socket on some requests: those fail with `Connection`, the next
/// request opens a new socket and succeeds.
#[wasm_bindgen_test]
async fn websocket_reconnects_after_close() {
    let fx = Fixture::load(GENESIS_JSON);
    // The "stalling" hostile peer closes on 20% and stalls on 20% of requests.
    let url = hostile_peers()[2];
    let peer = WsPeer::new(&spec(&ws(url), None), options(1500));
    let root = ItemKey::node(fx.built.root);
    let (mut ok, mut closed, mut timeouts) = (0, 0, 0);
    for _ in 0..40 {
        match peer.fetch(vec![root]).await {
            Ok(b) if b.len() == 1 => ok += 1,
            Ok(_) => panic!("root omitted"),
            Err(PeerError::Connection(_)) => closed += 1,
            Err(PeerError::Timeout) => timeouts += 1,
            Err(e) => panic!("{e}"),
        }
        if ok > 3 && closed > 1 {
            break;
        }
    }
    log(&format!(
        "ws reconnect: {ok} ok, {closed} closed, {timeouts} timeouts"
    ));
    assert!(closed >= 1, "the peer closed at least once");
    assert!(ok > 3, "and requests succeeded after it did");
    assert_eq!(peer.pending(), 0);
}

/// `close()` (the driver calls it on a removed or dropped peer) ends the socket for good:
/// nothing stays pending and a later request fails at once instead of reconnecting.
#[wasm_bindgen_test]
async fn websocket_close_is_for_good() {
    let fx = Fixture::load(BT_JSON);
    let peer = WsPeer::new(&spec(&ws(bt_peer()), None), options(5000));
    let root = ItemKey::node(fx.built.root);
    assert_eq!(peer.fetch(vec![root]).await.unwrap().len(), 1);
    assert!(peer.connected());
    peer.close();
    assert!(!peer.connected());
    assert_eq!(peer.pending(), 0);
    assert!(matches!(
        peer.fetch(vec![root]).await,
        Err(PeerError::Connection(_))
    ));
    assert!(!peer.connected(), "no reconnect after close");
}

/// A peer that never answers: every transport fails with `Timeout` at its deadline, and a
/// request dropped early is forgotten.
#[wasm_bindgen_test]
async fn silent_peer_times_out_and_drop_cancels() {
    let url = useless_peers()[2];
    let key = ItemKey::node(keccak256(b"x"));
    for (u, p) in [
        (url.to_string(), None),
        (ws(url), None),
        (url.to_string(), Some(Protocol::JsonRpc)),
    ] {
        let peer = connect(&spec(&u, p), options(400));
        let t = triesync::clock::now_ms();
        assert_eq!(
            peer.fetch(vec![key]).await,
            Err(PeerError::Timeout),
            "{u} {p:?}"
        );
        let waited = triesync::clock::now_ms() - t;
        assert!(
            (350.0..3000.0).contains(&waited),
            "{u}: timed out after {waited} ms"
        );
    }
    let peer = WsPeer::new(&spec(&ws(url), None), options(10_000));
    let fetch = peer.fetch(vec![key]);
    let early = triesync::clock::sleep(Duration::from_millis(200));
    match select(fetch, early).await {
        Either::Left(_) => panic!("a silent peer answered"),
        Either::Right((_, fetch)) => {
            assert_eq!(peer.pending(), 1);
            drop(fetch);
        }
    }
    assert_eq!(peer.pending(), 0, "a dropped request is forgotten");
}

/// Captures the `signal` of every `fetch` the transports start (by wrapping the global
/// `fetch`) until dropped.
struct FetchSignals {
    original: JsValue,
    signals: js_sys::Array,
}

impl FetchSignals {
    fn capture() -> Self {
        let global = js_sys::global();
        let original = Reflect::get(&global, &"fetch".into()).unwrap();
        let signals = js_sys::Array::new();
        let wrap = js_sys::Function::new_with_args(
            "original, signals",
            "return function (input, init) {
                signals.push(init && init.signal);
                return original.call(this, input, init);
            };",
        );
        let wrapped = wrap.call2(&JsValue::NULL, &original, &signals).unwrap();
        Reflect::set(&global, &"fetch".into(), &wrapped).unwrap();
        FetchSignals { original, signals }
    }

    /// The signals of the fetches started since the last call (`None`: a fetch without one).
    fn take(&self) -> Vec<Option<web_sys::AbortSignal>> {
        let out = self
            .signals
            .iter()
            .map(|s| s.dyn_into::<web_sys::AbortSignal>().ok())
            .collect();
        self.signals.set_length(0);
        out
    }

    /// The one signal of the one fetch started since the last call.
    fn one(&self) -> web_sys::AbortSignal {
        let mut all = self.take();
        assert_eq!(all.len(), 1, "one fetch started");
        all.pop().unwrap().expect("the fetch has a signal")
    }
}

impl Drop for FetchSignals {
    fn drop(&mut self) {
        let _ = Reflect::set(&js_sys::global(), &"fetch".into(), &self.original);
    }
}

/// A fetch that timed out, or whose request was dropped, is aborted (its connection
/// closed), not left running in the background: over HTTP and JSON-RPC alike.
#[wasm_bindgen_test]
async fn http_timeout_and_drop_abort_the_fetch() {
    let url = useless_peers()[2];
    let key = ItemKey::node(keccak256(b"x"));
    let signals = FetchSignals::capture();
    for p in [None, Some(Protocol::JsonRpc)] {
        let peer = connect(&spec(url, p), options(300));
        assert_eq!(peer.fetch(vec![key]).await, Err(PeerError::Timeout));
        assert!(signals.one().aborted(), "{p:?}: aborted at the timeout");

        let peer = connect(&spec(url, p), options(10_000));
        let fetch = peer.fetch(vec![key]);
        let early = triesync::clock::sleep(Duration::from_millis(200));
        let Either::Right((_, fetch)) = select(fetch, early).await else {
            panic!("a silent peer answered");
        };
        let signal = signals.one();
        assert!(!signal.aborted(), "{p:?}: running until dropped");
        drop(fetch);
        assert!(signal.aborted(), "{p:?}: aborted when dropped");
    }
}

/// Answers over the size cap fail with `TooLarge` on every transport.
#[wasm_bindgen_test]
async fn oversized_answers_are_refused() {
    let fx = Fixture::load(BT_JSON);
    let keys: Vec<ItemKey> = fx.built.codes.keys().map(|h| ItemKey::code(*h)).collect();
    let url = bt_peer();
    let small = TransportOptions {
        timeout: Duration::from_secs(5),
        max_response_bytes: 2048,
    };
    for (u, p) in [
        (url.to_string(), None),
        (ws(url), None),
        (url.to_string(), Some(Protocol::JsonRpc)),
    ] {
        let peer = connect(&spec(&u, p), small);
        match peer.fetch(keys.clone()).await {
            Err(PeerError::TooLarge(n)) => assert!(n > 2048),
            other => panic!("{u} {p:?}: {:?}", other.map(|b| b.len())),
        }
        // The transport is still usable for small answers.
        let root = peer
            .fetch(vec![ItemKey::node(fx.built.root)])
            .map(|r| r.unwrap())
            .await;
        assert_eq!(root.len(), 1);
    }
}

/// Garbage and HTML error pages are `Malformed` / `Status`, never data.
#[wasm_bindgen_test]
async fn garbage_is_malformed() {
    let fx = Fixture::load(GENESIS_JSON);
    let url = useless_peers()[1];
    for (u, p) in [
        (url.to_string(), None),
        (ws(url), None),
        (url.to_string(), Some(Protocol::JsonRpc)),
    ] {
        let peer = connect(&spec(&u, p), options(3000));
        match peer.fetch(vec![ItemKey::node(fx.built.root)]).await {
            Err(PeerError::Malformed(_)) => {}
            other => panic!("{u} {p:?}: {:?}", other.map(|b| b.len())),
        }
    }
}
