//! Each fault option does what it says, over each protocol where it applies, and the same
//! seed gives the same faults.

mod common;

use common::*;
use serde_json::Value;
use std::collections::HashSet;
use std::time::{Duration, Instant};
use triesync_core::state::BuiltState;
use triesync_core::synthetic::build_synthetic;
use triesync_core::{keccak256, H256};
use triesync_peer::cli::parse_synthetic;

const SPEC: &str = "2000,seed=3";

fn state() -> BuiltState {
    build_synthetic(&parse_synthetic(SPEC).unwrap())
}

fn start(faults: &[&str]) -> Peer {
    let mut args = vec!["--synthetic", SPEC];
    args.extend_from_slice(faults);
    Peer::start(&args)
}

/// 100 node hashes and the state's codes.
fn asked(built: &BuiltState) -> Vec<H256> {
    let mut nodes: Vec<H256> = built.nodes.keys().copied().collect();
    nodes.sort();
    let mut v: Vec<H256> = nodes.into_iter().step_by(7).take(100).collect();
    v.extend(built.codes.keys().copied());
    v
}

fn rpc_keys(built: &BuiltState, asked: &[H256]) -> Vec<String> {
    asked
        .iter()
        .map(|h| {
            if built.codes.contains_key(h) {
                code_key(h)
            } else {
                node_key(h)
            }
        })
        .collect()
}

fn nodes_url(p: &Peer) -> String {
    format!("{}/v1/nodes", p.base)
}

fn rpc_body(keys: &[String]) -> Vec<u8> {
    let calls: Vec<Value> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| serde_json::json!({"jsonrpc": "2.0", "id": i, "method": "debug_dbGet", "params": [k]}))
        .collect();
    serde_json::to_vec(&calls).unwrap()
}

#[test]
fn corrupt_all_fails_every_hash() {
    let built = state();
    let asked = asked(&built);
    let p = start(&["--corrupt", "1.0"]);
    let all: HashSet<H256> = built
        .nodes
        .keys()
        .chain(built.codes.keys())
        .copied()
        .collect();
    let blobs = fetch_http(&p.base, &asked);
    assert_eq!(blobs.len(), asked.len(), "corrupt keeps every blob");
    assert!(
        hashes_of(&blobs).iter().all(|h| !all.contains(h)),
        "a blob still hashes to a key"
    );
    let mut ws = ws_connect(&p.addr, Duration::from_secs(10));
    let (_, blobs) = ws_roundtrip(&mut ws, 1, &asked);
    assert_eq!(blobs.len(), asked.len());
    assert!(hashes_of(&blobs).iter().all(|h| !all.contains(h)));
    for (a, h) in rpc_batch(&p.base, &rpc_keys(&built, &asked))
        .iter()
        .zip(&asked)
    {
        let b = hex_result(a);
        assert_ne!(keccak256(&b), *h);
        assert_eq!(
            b.len(),
            built.nodes.get(h).or(built.codes.get(h)).unwrap().len(),
            "one byte flipped"
        );
    }
}

#[test]
fn omit_all_gives_empty_answers() {
    let built = state();
    let asked = asked(&built);
    let p = start(&["--omit", "1.0"]);
    let (status, _, body) = post(
        &nodes_url(&p),
        "application/octet-stream",
        &hash_list(&asked),
    );
    assert_eq!((status, body), (200, vec![0xc0]));
    let mut ws = ws_connect(&p.addr, Duration::from_secs(10));
    assert_eq!(ws_roundtrip(&mut ws, 9, &asked), (9, vec![]));
    for a in rpc_batch(&p.base, &rpc_keys(&built, &asked)) {
        assert_eq!(a["error"]["code"], -32000, "{a}");
    }
}

#[test]
fn omit_half_leaves_some_out() {
    let built = state();
    let asked = asked(&built);
    let p = start(&["--omit", "0.5", "--fault-seed", "11"]);
    let blobs = fetch_http(&p.base, &asked);
    assert!(
        blobs.len() > 10 && blobs.len() < asked.len() - 10,
        "{} of {}",
        blobs.len(),
        asked.len()
    );
    let set: HashSet<H256> = asked.iter().copied().collect();
    assert!(
        hashes_of(&blobs).iter().all(|h| set.contains(h)),
        "what is sent is intact"
    );
}

#[test]
fn delay_delays_every_answer() {
    let built = state();
    let asked = asked(&built);
    let p = start(&["--delay-ms", "400"]);
    let t = Instant::now();
    assert_exact(&asked, &fetch_http(&p.base, &asked), "delayed http");
    assert!(t.elapsed() >= Duration::from_millis(400));
    let mut ws = ws_connect(&p.addr, Duration::from_secs(10));
    let t = Instant::now();
    assert_exact(&asked, &ws_roundtrip(&mut ws, 1, &asked).1, "delayed ws");
    assert!(t.elapsed() >= Duration::from_millis(400));
    let t = Instant::now();
    let _ = rpc_batch(&p.base, &rpc_keys(&built, &asked));
    assert!(t.elapsed() >= Duration::from_millis(400));
}

#[test]
fn stall_never_answers() {
    let built = state();
    let asked = asked(&built);
    let p = start(&["--stall", "1.0"]);
    let a = agent(Duration::from_millis(800));
    let t = Instant::now();
    let r = post_with(
        &a,
        &nodes_url(&p),
        "application/octet-stream",
        &hash_list(&asked),
    );
    assert!(
        matches!(r, Err(ureq::Error::Timeout(_))),
        "expected a client timeout, got {r:?}"
    );
    assert!(t.elapsed() >= Duration::from_millis(700));
    let r = post_with(
        &a,
        &format!("{}/", p.base),
        "application/json",
        &rpc_body(&rpc_keys(&built, &asked)),
    );
    assert!(matches!(r, Err(ureq::Error::Timeout(_))), "rpc: {r:?}");
    // Raw: nothing at all comes back, and the connection stays open.
    let (bytes, closed) = raw_exchange(
        &p.addr,
        &raw_post("/v1/nodes", &hash_list(&asked)),
        Duration::from_millis(800),
    );
    assert!(bytes.is_empty() && !closed);
    // WebSocket: no answer, the socket stays open.
    let mut ws = ws_connect(&p.addr, Duration::from_millis(800));
    ws.send(tungstenite::Message::Binary(ws_request(1, &asked).into()))
        .unwrap();
    match ws.read() {
        Err(tungstenite::Error::Io(e)) => {
            assert!(
                matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
                "{e}"
            )
        }
        other => panic!("expected a read timeout, got {other:?}"),
    }
    // /v1/info is never faulted.
    assert_eq!(p.info()["accounts"], 2000);
}

#[test]
fn close_drops_the_connection_without_answering() {
    let built = state();
    let asked = asked(&built);
    let p = start(&["--close", "1.0"]);
    let (bytes, closed) = raw_exchange(
        &p.addr,
        &raw_post("/v1/nodes", &hash_list(&asked)),
        Duration::from_secs(5),
    );
    assert!(
        closed && bytes.is_empty(),
        "got {} bytes, closed {closed}",
        bytes.len()
    );
    let rpc = raw_post("/", &rpc_body(&rpc_keys(&built, &asked)));
    let (bytes, closed) = raw_exchange(&p.addr, &rpc, Duration::from_secs(5));
    assert!(closed && bytes.is_empty());
    let r = post_with(
        &agent(Duration::from_secs(5)),
        &nodes_url(&p),
        "application/octet-stream",
        &hash_list(&asked),
    );
    assert!(r.is_err(), "{r:?}");
    let mut ws = ws_connect(&p.addr, Duration::from_secs(5));
    ws.send(tungstenite::Message::Binary(ws_request(1, &asked).into()))
        .unwrap();
    // Dropped at once: a read timeout (5 s) is not a drop.
    let t0 = Instant::now();
    match ws.read() {
        Err(tungstenite::Error::Io(e))
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            panic!("the read timed out instead of the socket dropping: {e}")
        }
        Err(tungstenite::Error::Protocol(_))
        | Err(tungstenite::Error::Io(_))
        | Err(tungstenite::Error::ConnectionClosed) => {}
        other => panic!("expected the socket to drop, got {other:?}"),
    }
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
}

#[test]
fn error500_is_http_500_and_leaves_websocket_alone() {
    let built = state();
    let asked = asked(&built);
    let p = start(&["--error500", "1.0"]);
    let (status, _, _) = post(
        &nodes_url(&p),
        "application/octet-stream",
        &hash_list(&asked),
    );
    assert_eq!(status, 500);
    let (status, _, _) = post(
        &format!("{}/", p.base),
        "application/json",
        &rpc_body(&rpc_keys(&built, &asked)),
    );
    assert_eq!(status, 500);
    let mut ws = ws_connect(&p.addr, Duration::from_secs(10));
    assert_exact(
        &asked,
        &ws_roundtrip(&mut ws, 1, &asked).1,
        "ws under error500",
    );
}

#[test]
fn html_error_answers_an_html_page_with_200_or_502() {
    let built = state();
    let asked = asked(&built);
    let p = start(&["--html-error", "1.0", "--fault-seed", "5"]);
    let mut statuses = HashSet::new();
    for i in 0..16 {
        let (status, ct, body) = if i % 2 == 0 {
            post(
                &nodes_url(&p),
                "application/octet-stream",
                &hash_list(&asked),
            )
        } else {
            post(
                &format!("{}/", p.base),
                "application/json",
                &rpc_body(&rpc_keys(&built, &asked)),
            )
        };
        assert!(status == 200 || status == 502, "{status}");
        assert!(ct.starts_with("text/html"), "{ct}");
        assert!(body.starts_with(b"<!DOCTYPE html>"));
        assert!(decode_blobs(&body).is_err());
        statuses.insert(status);
    }
    assert_eq!(statuses.len(), 2, "both 200 and 502 appear");
}

#[test]
fn garbage_is_neither_rlp_nor_json() {
    let built = state();
    let asked = asked(&built);
    let p = start(&["--garbage", "1.0"]);
    for _ in 0..5 {
        let (status, _, body) = post(
            &nodes_url(&p),
            "application/octet-stream",
            &hash_list(&asked),
        );
        assert_eq!(status, 200);
        assert!(!body.is_empty());
        assert!(decode_blobs(&body).is_err(), "garbage decoded as RLP");
    }
    let (status, _, body) = post(
        &format!("{}/", p.base),
        "application/json",
        &rpc_body(&rpc_keys(&built, &asked)),
    );
    assert_eq!(status, 200);
    assert!(serde_json::from_slice::<Value>(&body).is_err());
    let mut ws = ws_connect(&p.addr, Duration::from_secs(10));
    ws.send(tungstenite::Message::Binary(ws_request(1, &asked).into()))
        .unwrap();
    let tungstenite::Message::Binary(msg) = ws.read().unwrap() else {
        panic!("expected binary")
    };
    assert!(ws_decode(&msg).is_err());
}

#[test]
fn unrequested_adds_real_nodes_and_random_bytes() {
    let built = state();
    let asked = asked(&built);
    let p = start(&["--unrequested", "1.0"]);
    let set: HashSet<H256> = asked.iter().copied().collect();
    let check = |blobs: &[Vec<u8>]| {
        let hashes = hashes_of(blobs);
        let asked_back = hashes.iter().filter(|h| set.contains(h)).count();
        assert_eq!(asked_back, asked.len(), "every asked blob is still there");
        let unasked: Vec<&H256> = hashes.iter().filter(|h| !set.contains(h)).collect();
        let real = unasked
            .iter()
            .filter(|h| built.nodes.contains_key(h))
            .count();
        assert!((1..=3).contains(&real), "{real} unasked real nodes");
        assert_eq!(unasked.len() - real, 1, "one blob of random bytes");
    };
    check(&fetch_http(&p.base, &asked));
    let mut ws = ws_connect(&p.addr, Duration::from_secs(10));
    check(&ws_roundtrip(&mut ws, 1, &asked).1);
    // JSON-RPC batches get answers under ids nobody sent.
    let answers = rpc_batch(&p.base, &rpc_keys(&built, &asked));
    assert!(answers.len() >= asked.len() + 2);
    let foreign: Vec<&Value> = answers.iter().filter(|a| !a["id"].is_u64()).collect();
    assert!(
        foreign.len() >= 2
            && foreign
                .iter()
                .all(|a| a["id"].as_str().unwrap().starts_with("unrequested"))
    );
}

#[test]
fn extra_appends_n_unasked_real_nodes() {
    let built = state();
    let asked = asked(&built);
    let p = start(&["--extra", "3"]);
    let set: HashSet<H256> = asked.iter().copied().collect();
    let check = |blobs: &[Vec<u8>]| {
        assert_eq!(blobs.len(), asked.len() + 3);
        let unasked: Vec<H256> = hashes_of(blobs)
            .into_iter()
            .filter(|h| !set.contains(h))
            .collect();
        assert_eq!(unasked.len(), 3);
        assert!(unasked.iter().all(|h| built.nodes.contains_key(h)));
    };
    check(&fetch_http(&p.base, &asked));
    let mut ws = ws_connect(&p.addr, Duration::from_secs(10));
    check(&ws_roundtrip(&mut ws, 1, &asked).1);
    assert_eq!(
        rpc_batch(&p.base, &rpc_keys(&built, &asked)).len(),
        asked.len() + 3
    );
}

/// The bodies of a fixed sequence of requests (sequential, so arrival order is fixed).
fn sequence(p: &Peer, built: &BuiltState) -> Vec<Vec<u8>> {
    let mut keys: Vec<H256> = built.nodes.keys().copied().collect();
    keys.sort();
    let a = agent(Duration::from_millis(1500));
    let answer = |r: Result<(u16, String, Vec<u8>), _>| match r {
        Ok((status, _, body)) => {
            let mut v = status.to_be_bytes().to_vec();
            v.extend(body);
            v
        }
        Err(_) => b"transport error".to_vec(),
    };
    // HTTP, then WebSocket, then JSON-RPC requests, one at a time: each takes the next
    // number of the seeded sequence.
    let mut out: Vec<Vec<u8>> = (0..24)
        .map(|i| {
            let asked = &keys[i * 40..i * 40 + 40];
            answer(post_with(
                &a,
                &nodes_url(p),
                "application/octet-stream",
                &hash_list(asked),
            ))
        })
        .collect();
    let mut ws = ws_connect(&p.addr, Duration::from_secs(5));
    for i in 0..12u64 {
        let asked = &keys[i as usize * 30..i as usize * 30 + 30];
        ws.send(tungstenite::Message::Binary(ws_request(i, asked).into()))
            .unwrap();
        match ws.read().unwrap() {
            tungstenite::Message::Binary(b) => out.push([b"ws ".as_slice(), &b].concat()),
            other => panic!("unexpected {other:?}"),
        }
    }
    for i in 0..12 {
        let asked = &keys[1000 + i * 30..1000 + i * 30 + 30];
        let body = rpc_body(&rpc_keys(built, asked));
        let r = answer(post_with(
            &a,
            &format!("{}/", p.base),
            "application/json",
            &body,
        ));
        out.push([b"rpc ".as_slice(), &r].concat());
    }
    out
}

#[test]
fn same_seed_same_faults() {
    let built = state();
    let faults = [
        "--corrupt",
        "0.2",
        "--omit",
        "0.2",
        "--unrequested",
        "0.3",
        "--garbage",
        "0.1",
        "--error500",
        "0.1",
        "--html-error",
        "0.1",
    ];
    let run = |seed: &str| {
        let mut args = faults.to_vec();
        args.extend(["--fault-seed", seed]);
        sequence(&start(&args), &built)
    };
    let a = run("42");
    let b = run("42");
    let c = run("43");
    assert_eq!(a, b, "same seed, same answers");
    assert_ne!(a, c, "another seed, other answers");
    // Some requests were answered cleanly, some not; and per transport, another seed
    // changes the answers.
    let statuses: HashSet<[u8; 2]> = a[..24].iter().map(|v| [v[0], v[1]]).collect();
    assert!(statuses.len() >= 2, "{statuses:?}");
    for (what, range) in [("http", 0..24), ("ws", 24..36), ("rpc", 36..48)] {
        assert_ne!(
            a[range.clone()],
            c[range],
            "{what}: another seed, other answers"
        );
    }
}

/// `--truncate`: the headers, with the full answer's Content-Length, and half its body,
/// then the connection closes (HTTP `/v1/nodes` and JSON-RPC); WebSocket answers are whole.
#[test]
fn truncate_sends_half_the_body_then_closes() {
    let built = state();
    let asked = asked(&built);
    let p = start(&["--truncate", "1.0"]);
    for req in [
        raw_post("/v1/nodes", &hash_list(&asked)),
        raw_post("/", &rpc_body(&rpc_keys(&built, &asked))),
    ] {
        let (bytes, closed) = raw_exchange(&p.addr, &req, Duration::from_secs(5));
        assert!(closed);
        assert_eq!(raw_status(&bytes), Some(200));
        let split = bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("headers");
        let head = String::from_utf8_lossy(&bytes[..split]).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .expect("a content-length")
            .trim()
            .parse()
            .unwrap();
        let body = &bytes[split + 4..];
        assert!(len > 1000, "{len}");
        assert_eq!(body.len(), len / 2, "{head}");
    }
    let mut ws = ws_connect(&p.addr, Duration::from_secs(5));
    assert_exact(&asked, &ws_roundtrip(&mut ws, 1, &asked).1, "ws");
}
