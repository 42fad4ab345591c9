//! The peer serves every node and code of every fixture state over HTTP, WebSocket and
//! JSON-RPC; `/v1/info` matches the built state; CORS; the answer size cap; 200 concurrent
//! clients; clean exits.

mod common;

use common::*;
use std::collections::HashMap;
use std::sync::{Arc, Barrier};
use std::time::Duration;
use triesync_core::state::{BuiltState, StateFixture};
use triesync_core::synthetic::build_synthetic;
use triesync_core::{keccak256, H256};
use triesync_peer::cli::parse_synthetic;

fn build_fixture(path: &std::path::Path) -> BuiltState {
    let fixture = StateFixture::from_json(&std::fs::read_to_string(path).unwrap()).unwrap();
    let built = fixture.build().unwrap();
    assert_eq!(built.root, fixture.root().unwrap());
    built
}

fn sorted_keys(m: &HashMap<H256, Vec<u8>>) -> Vec<H256> {
    let mut v: Vec<H256> = m.keys().copied().collect();
    v.sort();
    v
}

fn check_info(peer: &Peer, built: &BuiltState) {
    let info = peer.info();
    assert_eq!(info["root"], built.root.to_hex());
    assert_eq!(info["nodes"], built.nodes.len());
    assert_eq!(info["nodeBytes"], built.node_bytes());
    assert_eq!(info["codes"], built.codes.len());
    assert_eq!(info["codeBytes"], built.code_bytes());
    assert_eq!(info["accounts"], built.accounts);
    assert!(info["name"].is_string());
    assert_eq!(peer.root, built.root, "first line announces the root");
}

/// Every node and code over HTTP (384 per request), WebSocket (several in flight) and batched
/// JSON-RPC (1000 per batch), each hashing to its key.
fn check_serves_everything(peer: &Peer, built: &BuiltState, what: &str) {
    let nodes = sorted_keys(&built.nodes);
    let codes = sorted_keys(&built.codes);
    let all: Vec<H256> = nodes.iter().chain(&codes).copied().collect();

    // HTTP: nodes and codes share the endpoint.
    for chunk in all.chunks(384) {
        assert_exact(
            chunk,
            &fetch_http(&peer.base, chunk),
            &format!("{what} http"),
        );
    }

    // WebSocket: send up to 8 requests before reading, match answers by id.
    let mut ws = ws_connect(&peer.addr, Duration::from_secs(20));
    let chunks: Vec<&[H256]> = all.chunks(384).collect();
    for group in chunks.chunks(8).enumerate() {
        let (g, group) = group;
        for (i, c) in group.iter().enumerate() {
            let id = (g * 8 + i) as u64 + 1_000_000;
            ws.send(tungstenite::Message::Binary(ws_request(id, c).into()))
                .unwrap();
        }
        let mut seen = 0;
        while seen < group.len() {
            let tungstenite::Message::Binary(msg) = ws.read().unwrap() else {
                continue;
            };
            let (id, blobs) = ws_decode(&msg).unwrap();
            let idx = (id - 1_000_000) as usize;
            assert_eq!(idx / 8, g, "answer to a request of another group");
            assert_exact(chunks[idx], &blobs, &format!("{what} ws"));
            seen += 1;
        }
    }
    let _ = ws.close(None);

    // JSON-RPC: node keys are the hash, code keys are 0x63 ++ hash.
    let keys: Vec<(String, H256)> = nodes
        .iter()
        .map(|h| (node_key(h), *h))
        .chain(codes.iter().map(|h| (code_key(h), *h)))
        .collect();
    for chunk in keys.chunks(1000) {
        let ks: Vec<String> = chunk.iter().map(|(k, _)| k.clone()).collect();
        let answers = rpc_batch(&peer.base, &ks);
        assert_eq!(answers.len(), chunk.len());
        for (i, a) in answers.iter().enumerate() {
            assert_eq!(a["id"], i);
            assert_eq!(a["jsonrpc"], "2.0");
            assert_eq!(
                keccak256(&hex_result(a)),
                chunk[i].1,
                "{what} rpc {}",
                chunk[i].0
            );
        }
    }
}

#[test]
fn every_fixture_state_is_served_over_every_protocol() {
    for path in fixture_states() {
        let what = path.file_name().unwrap().to_string_lossy().to_string();
        let built = build_fixture(&path);
        let peer = Peer::start(&["--state", path.to_str().unwrap()]);
        check_info(&peer, &built);
        check_serves_everything(&peer, &built, &what);
    }
}

#[test]
fn the_shipped_mainnet_genesis_is_the_shared_one() {
    let shipped =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/mainnet-genesis.json");
    let shared = fixtures_dir().join("states/mainnet-genesis.json");
    assert_eq!(
        std::fs::read(&shipped).unwrap(),
        std::fs::read(shared).unwrap()
    );
}

#[test]
fn synthetic_state_matches_the_core_generator() {
    let spec_text = "2000,contracts=40,slots=8,code=300,codes=7,seed=7";
    let built = build_synthetic(&parse_synthetic(spec_text).unwrap());
    assert_eq!(built.codes.len(), 7);
    let peer = Peer::start(&["--synthetic", spec_text]);
    check_info(&peer, &built);
    assert_eq!(peer.info()["accounts"], 2000);
    check_serves_everything(&peer, &built, "synthetic");
    // Code is not a node: a plain 32-byte key finds nodes only, as geth keeps code apart.
    let code = *built.codes.keys().next().unwrap();
    let answers = rpc_batch(&peer.base, &[node_key(&code), code_key(&built.root)]);
    for a in answers {
        assert_eq!(a["error"]["code"], -32000, "{a}");
        assert_eq!(a["error"]["message"], "pebble: not found");
    }
}

#[test]
fn unknown_hashes_give_an_empty_or_partial_answer() {
    let built = build_synthetic(&parse_synthetic("500").unwrap());
    let peer = Peer::start(&["--synthetic", "500"]);
    let unknown: Vec<H256> = (0..10u32).map(|i| keccak256(&i.to_le_bytes())).collect();
    assert!(fetch_http(&peer.base, &unknown).is_empty());
    let (status, _, body) = post(
        &format!("{}/v1/nodes", peer.base),
        "application/octet-stream",
        &hash_list(&unknown),
    );
    assert_eq!((status, body), (200, vec![0xc0]));
    let mut mixed = unknown.clone();
    mixed.push(built.root);
    assert_exact(&[built.root], &fetch_http(&peer.base, &mixed), "mixed");
    let mut ws = ws_connect(&peer.addr, Duration::from_secs(10));
    assert_eq!(ws_roundtrip(&mut ws, 0, &unknown), (0, vec![]));
    let (id, blobs) = ws_roundtrip(&mut ws, u64::MAX, &mixed);
    assert_eq!(id, u64::MAX);
    assert_exact(&[built.root], &blobs, "ws mixed");
}

#[test]
fn answers_stop_past_two_mib_but_always_hold_one() {
    // 30 distinct codes of 100 kB: 3 MB asked, the answer stops once past 2 MiB.
    let spec = "100,contracts=30,codes=30,code=100000,slots=1";
    let built = build_synthetic(&parse_synthetic(spec).unwrap());
    let peer = Peer::start(&["--synthetic", spec]);
    let codes = sorted_keys(&built.codes);
    assert_eq!(codes.len(), 30);
    let check = |blobs: &[Vec<u8>]| {
        let total: usize = blobs.iter().map(Vec::len).sum();
        assert!(
            (2 * 1024 * 1024..2 * 1024 * 1024 + 100_000).contains(&total),
            "total {total}"
        );
        assert_eq!(blobs.len(), 21);
        for h in hashes_of(blobs) {
            assert!(codes.contains(&h));
        }
    };
    check(&fetch_http(&peer.base, &codes));
    let mut ws = ws_connect(&peer.addr, Duration::from_secs(10));
    check(&ws_roundtrip(&mut ws, 5, &codes).1);

    // One code larger than the cap is still sent.
    let spec = "10,contracts=1,code=3000000,slots=1";
    let built = build_synthetic(&parse_synthetic(spec).unwrap());
    let peer = Peer::start(&["--synthetic", spec]);
    let code = *built.codes.keys().next().unwrap();
    let blobs = fetch_http(&peer.base, &[code, built.root]);
    assert_eq!(blobs.len(), 1);
    assert_eq!(blobs[0].len(), 3_000_000);
    assert_eq!(keccak256(&blobs[0]), code);
}

#[test]
fn cors_on_every_route_and_preflight() {
    let peer = Peer::start(&["--synthetic", "50"]);
    let a = agent(Duration::from_secs(10));
    // Every answer carries all four headers, errors included.
    let check = |h: &ureq::http::HeaderMap, what: &str| {
        let get = |name: &str| {
            h.get(name)
                .unwrap_or_else(|| panic!("{what}: no {name}"))
                .to_str()
                .unwrap()
                .to_string()
        };
        assert_eq!(get("access-control-allow-origin"), "*", "{what}");
        assert_eq!(get("access-control-max-age"), "86400", "{what}");
        let methods = get("access-control-allow-methods");
        assert!(
            methods.contains("POST") && methods.contains("GET") && methods.contains("OPTIONS"),
            "{what}: {methods}"
        );
        let headers = get("access-control-allow-headers").to_ascii_lowercase();
        assert!(headers.contains("content-type"), "{what}: {headers}");
    };
    let big = vec![0u8; 20_000];
    for (method, path, ct, body, status) in [
        ("OPTIONS", "/v1/nodes", "", &b""[..], 204),
        ("OPTIONS", "/", "", b"", 204),
        ("GET", "/v1/info", "", b"", 200),
        ("POST", "/v1/nodes", "application/octet-stream", b"x", 400),
        ("POST", "/v1/nodes", "application/octet-stream", &big, 413),
        ("POST", "/", "application/json", b"{}", 200),
        ("POST", "/", "text/plain", b"{}", 415),
        ("GET", "/nope", "", b"", 404),
    ] {
        let url = format!("{}{path}", peer.base);
        let resp = match method {
            "OPTIONS" => a
                .options(&url)
                .header("Origin", "https://wallet.example")
                .header("Access-Control-Request-Method", "POST")
                .header("Access-Control-Request-Headers", "content-type")
                .call()
                .unwrap(),
            "GET" => a.get(&url).call().unwrap(),
            _ => a.post(&url).content_type(ct).send(body).unwrap(),
        };
        assert_eq!(resp.status().as_u16(), status, "{method} {path}");
        check(resp.headers(), &format!("{method} {path} {status}"));
    }
    // A 413 refused from its Content-Length alone, before any of the body is read.
    let req = b"POST /v1/nodes HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 50000000\r\n\r\n";
    let (resp, _) = raw_exchange(&peer.addr, req, Duration::from_secs(3));
    let text = String::from_utf8_lossy(&resp).to_ascii_lowercase();
    assert_eq!(raw_status(&resp), Some(413), "{text}");
    for h in [
        "access-control-allow-origin: *",
        "access-control-max-age: 86400",
        "access-control-allow-methods:",
        "access-control-allow-headers:",
    ] {
        assert!(text.contains(h), "{h} in {text}");
    }
}

#[test]
fn two_hundred_concurrent_clients() {
    let spec = "2000";
    let built = Arc::new(build_synthetic(&parse_synthetic(spec).unwrap()));
    let peer = Peer::start(&["--synthetic", spec]);
    let keys = Arc::new(sorted_keys(&built.nodes));
    let n_http = 200;
    let n_ws = 50;
    let n_rpc = 50;
    let barrier = Arc::new(Barrier::new(n_http + n_ws + n_rpc));
    let mut threads = Vec::new();
    for t in 0..n_http + n_ws + n_rpc {
        let (barrier, keys, base, addr) = (
            barrier.clone(),
            keys.clone(),
            peer.base.clone(),
            peer.addr.clone(),
        );
        threads.push(std::thread::spawn(move || {
            let start = (t * 37) % (keys.len() - 384);
            let asked = &keys[start..start + 384];
            if t < n_http {
                let a = agent(Duration::from_secs(60));
                barrier.wait();
                for round in 0..3 {
                    let (status, _, body) = post_with(
                        &a,
                        &format!("{base}/v1/nodes"),
                        "application/octet-stream",
                        &hash_list(asked),
                    )
                    .unwrap();
                    assert_eq!(status, 200, "client {t} round {round}");
                    assert_exact(asked, &decode_blobs(&body).unwrap(), "concurrent http");
                }
            } else if t < n_http + n_ws {
                let mut ws = ws_connect(&addr, Duration::from_secs(60));
                barrier.wait();
                for id in 0..3 {
                    let (got, blobs) = ws_roundtrip(&mut ws, id, asked);
                    assert_eq!(got, id);
                    assert_exact(asked, &blobs, "concurrent ws");
                }
            } else {
                barrier.wait();
                let ks: Vec<String> = asked.iter().map(node_key).collect();
                let answers = rpc_batch(&base, &ks);
                for (a, h) in answers.iter().zip(asked) {
                    assert_eq!(keccak256(&hex_result(a)), *h);
                }
            }
        }));
    }
    for t in threads {
        t.join().expect("client thread");
    }
    let log = peer.stderr();
    assert!(!log.contains("panick"), "{log}");
}

#[test]
fn many_requests_in_flight_on_one_socket() {
    let spec = "2000";
    let built = build_synthetic(&parse_synthetic(spec).unwrap());
    let keys = sorted_keys(&built.nodes);
    // A delay makes the requests overlap; at most 4 are answered at once per socket.
    let peer = Peer::start(&[
        "--synthetic",
        spec,
        "--delay-ms",
        "300",
        "--ws-in-flight",
        "4",
    ]);
    let mut ws = ws_connect(&peer.addr, Duration::from_secs(30));
    let start = std::time::Instant::now();
    let n = 20u64;
    for id in 0..n {
        let i = id as usize * 50;
        ws.send(tungstenite::Message::Binary(
            ws_request(id, &keys[i..i + 50]).into(),
        ))
        .unwrap();
    }
    let mut seen = vec![false; n as usize];
    for _ in 0..n {
        let tungstenite::Message::Binary(msg) = ws.read().unwrap() else {
            panic!()
        };
        let (id, blobs) = ws_decode(&msg).unwrap();
        let i = id as usize * 50;
        assert_exact(&keys[i..i + 50], &blobs, "in flight");
        assert!(!seen[id as usize]);
        seen[id as usize] = true;
    }
    let took = start.elapsed();
    // 20 requests, 4 at a time, 300 ms each: about 1.5 s; one at a time would be 6 s.
    assert!(
        took >= Duration::from_millis(1450),
        "in-flight limit not applied: {took:?}"
    );
    assert!(
        took < Duration::from_millis(4500),
        "requests were not concurrent: {took:?}"
    );
}

#[test]
fn exits_when_stdin_closes() {
    let mut peer = Peer::start(&["--synthetic", "50"]);
    assert_eq!(peer.info()["accounts"], 50);
    peer.close_stdin();
    let status = peer
        .wait_exit(Duration::from_secs(10))
        .expect("exit after stdin closed");
    assert!(status.success());
    assert!(
        peer.stderr().contains("shutting down (stdin closed)"),
        "{}",
        peer.stderr()
    );
}

#[test]
fn exits_cleanly_on_sigterm_and_sigint() {
    for (sig, name) in [("-TERM", "SIGTERM"), ("-INT", "SIGINT")] {
        let mut peer = Peer::start(&["--synthetic", "50"]);
        let _ = fetch_http(&peer.base, &[peer.root]);
        // The shell's own `kill`, so no procps package is needed.
        let ok = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("kill {sig} {}", peer.pid()))
            .status()
            .unwrap();
        assert!(ok.success());
        let status = peer
            .wait_exit(Duration::from_secs(10))
            .expect("exit after signal");
        assert!(status.success(), "{status:?}");
        let log = peer.stderr();
        assert!(log.contains(&format!("shutting down ({name})")), "{log}");
        assert!(
            log.contains("summary:") && log.contains("http 1 requests"),
            "{log}"
        );
    }
}

#[test]
fn logs_one_line_per_request_at_debug() {
    // 3 HTTP node requests, 2 info requests, 1 WebSocket upgrade with 4 requests, 2 RPC
    // posts; returns the peer's log once it has exited (its shutdown summary included).
    let traffic = |level: &str| {
        let mut peer = Peer::start_logging(&["--synthetic", "50"], level);
        for _ in 0..3 {
            assert_eq!(fetch_http(&peer.base, &[peer.root]).len(), 1);
        }
        for _ in 0..2 {
            let _ = peer.info();
        }
        let mut ws = ws_connect(&peer.addr, Duration::from_secs(5));
        for id in 0..4 {
            assert_eq!(ws_roundtrip(&mut ws, id, &[peer.root]).1.len(), 1);
        }
        drop(ws);
        for _ in 0..2 {
            assert_eq!(rpc_batch(&peer.base, &[node_key(&peer.root)]).len(), 1);
        }
        std::thread::sleep(Duration::from_millis(200));
        peer.close_stdin();
        assert!(peer.wait_exit(Duration::from_secs(10)).is_some());
        peer.stderr()
    };
    let count = |log: &str, pat: &str| log.lines().filter(|l| l.contains(pat)).count();

    let log = traffic("debug");
    for (pat, n) in [
        ("POST /v1/nodes -> 200 asked 1 found 1", 3),
        ("GET /v1/info -> 200", 2),
        ("GET /v1/ws -> 101", 1),
        ("ws request ", 4),
        ("POST / -> 200 rpc ", 2),
        ("summary: ", 1),
    ] {
        assert_eq!(count(&log, pat), n, "{pat:?} in:\n{log}");
    }

    let log = traffic("info");
    for pat in [
        "/v1/nodes",
        "/v1/info",
        "/v1/ws",
        "ws request",
        "POST /",
        "DEBUG",
    ] {
        assert_eq!(count(&log, pat), 0, "{pat:?} at info:\n{log}");
    }
    assert_eq!(count(&log, "summary: "), 1, "{log}");
}
