//! Malformed and oversized requests get the documented answer, slow clients are cut off,
//! and the peer keeps serving afterwards.

mod common;

use common::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::time::{Duration, Instant};
use triesync_core::{keccak256, H256};

fn hashes(n: usize) -> Vec<H256> {
    (0..n as u32).map(|i| keccak256(&i.to_be_bytes())).collect()
}

#[test]
fn nodes_rejects_malformed_bodies_with_400_and_a_reason() {
    let p = Peer::start(&["--synthetic", "100"]);
    let url = format!("{}/v1/nodes", p.base);
    let good = hash_list(&hashes(3));
    let mut trailing = good.clone();
    trailing.push(0x00);
    let mut short_item = vec![0xe0, 0x9f];
    short_item.extend_from_slice(&[1u8; 31]);
    let mut long_item = vec![0xe2, 0xa1];
    long_item.extend_from_slice(&[1u8; 33]);
    let mut nested = rlp::RlpStream::new_list(1);
    nested.begin_list(1).append(&[1u8; 32].as_slice());
    let mut string_not_list = vec![0xa0];
    string_not_list.extend_from_slice(&[1u8; 32]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty body", vec![]),
        ("not RLP", b"hello world".to_vec()),
        ("truncated", good[..good.len() - 5].to_vec()),
        ("trailing bytes", trailing),
        ("empty list", vec![0xc0]),
        ("31-byte item", short_item),
        ("33-byte item", long_item),
        ("nested list", nested.out().to_vec()),
        ("string, not a list", string_not_list),
    ];
    for (what, body) in cases {
        let (status, ct, reason) = post(&url, "application/octet-stream", &body);
        assert_eq!(status, 400, "{what}");
        assert!(ct.starts_with("text/plain"), "{what}: {ct}");
        assert!(reason.len() > 3, "{what}: a reason is given");
    }
    assert_exact(&[p.root], &fetch_http(&p.base, &[p.root]), "still serving");
}

#[test]
fn nodes_refuses_too_many_hashes_and_oversized_bodies_with_413() {
    let p = Peer::start(&["--synthetic", "100", "--body-timeout-ms", "5000"]);
    let url = format!("{}/v1/nodes", p.base);
    let (status, _, _) = post(&url, "application/octet-stream", &hash_list(&hashes(384)));
    assert_eq!(status, 200);
    let (status, _, _) = post(&url, "application/octet-stream", &hash_list(&hashes(385)));
    assert_eq!(status, 413);
    let (status, _, _) = post(&url, "application/octet-stream", &vec![0u8; 200_000]);
    assert_eq!(status, 413);

    // A huge Content-Length is refused at once, before any of the body is sent.
    let t = Instant::now();
    let req = b"POST /v1/nodes HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n";
    let (resp, _) = raw_exchange(&p.addr, req, Duration::from_secs(3));
    assert_eq!(
        raw_status(&resp),
        Some(413),
        "{}",
        String::from_utf8_lossy(&resp)
    );
    assert!(t.elapsed() < Duration::from_secs(2));

    // A chunked body over the limit: read and dropped, never kept, then 413.
    let mut req =
        b"POST /v1/nodes HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..20 {
        req.extend_from_slice(b"1000\r\n");
        req.extend_from_slice(&[0xaa; 0x1000]);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let (resp, _) = raw_exchange(&p.addr, &req, Duration::from_secs(3));
    assert_eq!(
        raw_status(&resp),
        Some(413),
        "{}",
        String::from_utf8_lossy(&resp)
    );
    assert_eq!(p.info()["accounts"], 100);
}

#[test]
fn unknown_routes_and_methods() {
    let p = Peer::start(&["--synthetic", "100"]);
    assert_eq!(get(&format!("{}/nope", p.base)).0, 404);
    assert_eq!(get(&format!("{}/v1/nodes", p.base)).0, 405);
    assert_eq!(
        post(&format!("{}/v1/info", p.base), "text/plain", b"x").0,
        405
    );
    // /v1/ws without an upgrade.
    assert_eq!(get(&format!("{}/v1/ws", p.base)).0, 426);
    let (status, _, body) = get(&format!("{}/", p.base));
    assert_eq!(status, 200);
    assert!(String::from_utf8(body).unwrap().contains("/v1/nodes"));
}

fn rpc_raw(p: &Peer, body: &[u8]) -> (u16, Value) {
    let (status, _, body) = post(&format!("{}/", p.base), "application/json", body);
    let v = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).unwrap()
    };
    (status, v)
}

/// The answer to a JSON-RPC post as text, for byte-for-byte checks.
fn rpc_text(p: &Peer, body: &[u8]) -> String {
    let (status, _, body) = post(&format!("{}/", p.base), "application/json", body);
    assert_eq!(status, 200);
    String::from_utf8(body).unwrap()
}

/// The errors geth gives for the same requests (rpc/handler.go, json.go, errors.go,
/// internal/ethapi DbGet, common.ParseHexOrString), byte for byte where it matters.
#[test]
fn json_rpc_errors() {
    let p = Peer::start(&["--synthetic", "100,contracts=2"]);
    let call = |params: Value| json!({"jsonrpc": "2.0", "id": 7, "method": "debug_dbGet", "params": params});
    let code = |v: &Value| v["error"]["code"].as_i64();
    let err = |v: &Value| (v["error"]["code"].as_i64(), v["error"]["message"].clone());

    // Not JSON: geth's fixed "parse error"; an empty body gets no answer at all.
    assert_eq!(
        rpc_text(&p, b"{not json"),
        r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error"}}"#
    );
    assert_eq!(rpc_text(&p, b"  \n"), "");

    let (_, v) = rpc_raw(
        &p,
        json!({"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(
        rpc_text(
            &p,
            br#"{"jsonrpc":"2.0","id":1,"method":"eth_<x>","params":[]}"#
        ),
        r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"the method eth_\u003cx\u003e does not exist/is not available"}}"#
    );
    assert_eq!((code(&v), &v["id"]), (Some(-32601), &json!(1)));

    // Params that are not one string: geth's invalid params (-32602) messages.
    for (params, message) in [
        (json!([]), "missing value for required argument 0"),
        (Value::Null, "missing value for required argument 0"),
        (
            json!([1]),
            "invalid argument 0: json: cannot unmarshal number into Go value of type string",
        ),
        (
            json!([{}]),
            "invalid argument 0: json: cannot unmarshal object into Go value of type string",
        ),
        (json!(["0x1", "0x2"]), "too many arguments, want at most 1"),
        (json!("0x00"), "non-array args"),
    ] {
        let (_, v) = rpc_raw(&p, call(params.clone()).to_string().as_bytes());
        assert_eq!(err(&v), (Some(-32602), json!(message)), "params {params}");
        assert_eq!(v["id"], 7);
    }
    // A call without params at all.
    let (_, v) = rpc_raw(&p, br#"{"jsonrpc":"2.0","id":7,"method":"debug_dbGet"}"#);
    assert_eq!(err(&v).0, Some(-32602));

    // Keys ParseHexOrString refuses: plain errors (-32000) with hexutil's messages; a bad
    // character is reported before an odd length.
    for (key, message) in [
        ("", "empty hex string"),
        ("0xzz", "invalid hex string"),
        ("0x123", "hex string of odd length"),
        ("0x12z", "invalid hex string"),
    ] {
        let (_, v) = rpc_raw(&p, call(json!([key])).to_string().as_bytes());
        assert_eq!(err(&v), (Some(-32000), json!(message)), "key {key:?}");
    }
    // JSON null as the key is Go's empty string.
    let (_, v) = rpc_raw(&p, call(json!([null])).to_string().as_bytes());
    assert_eq!(err(&v), (Some(-32000), json!("empty hex string")));

    // Not found, as geth on Pebble says it: unknown 32-byte key, other lengths, "0x", raw
    // (non-0x) keys, and a node's hash without 0x (looked up as its 64 ASCII bytes).
    let root_hex = p.root.to_hex();
    for key in [
        H256([9; 32]).to_hex(),
        "0x1234".into(),
        "0x".into(),
        "abc".into(),
        root_hex[2..].to_string(),
    ] {
        let (_, v) = rpc_raw(&p, call(json!([key])).to_string().as_bytes());
        assert_eq!(
            v["error"],
            json!({"code": -32000, "message": "pebble: not found"}),
            "{key}"
        );
    }

    // Found: the root as a single call, with the id echoed; upper-case 0X and hex too.
    let (_, v) = rpc_raw(&p, call(json!([p.root.to_hex()])).to_string().as_bytes());
    assert_eq!(keccak256(&hex_result(&v)), p.root);
    assert_eq!(v["id"], 7);
    assert_eq!(v["jsonrpc"], "2.0");
    let upper = format!("0X{}", root_hex[2..].to_uppercase());
    let (_, v) = rpc_raw(&p, call(json!([upper])).to_string().as_bytes());
    assert_eq!(keccak256(&hex_result(&v)), p.root);

    // Ids come back byte for byte: big integers, floats, exponents, escapes, true.
    for id in [
        "123456789012345678901234567890",
        "1.50",
        "-0",
        "1e400",
        r#""\u00e9\"x""#,
        "true",
        "null",
    ] {
        let body =
            format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"debug_dbGet","params":["0x"]}}"#);
        assert_eq!(
            rpc_text(&p, body.as_bytes()),
            format!(
                r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":-32000,"message":"pebble: not found"}}}}"#
            )
        );
    }
    // An object or array id is not an id: "invalid request", answered with id null.
    for id in ["{}", "[1]"] {
        let body =
            format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"debug_dbGet","params":["0x"]}}"#);
        assert_eq!(
            rpc_text(&p, body.as_bytes()),
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"invalid request"}}"#
        );
    }
    // No "jsonrpc":"2.0": invalid request, with the id when it has one.
    assert_eq!(
        rpc_text(&p, br#"{"id":5,"method":"debug_dbGet","params":["0x"]}"#),
        r#"{"jsonrpc":"2.0","id":5,"error":{"code":-32600,"message":"invalid request"}}"#
    );

    // Batches: empty (one object), invalid members, notifications, responses.
    let (_, v) = rpc_raw(&p, b"[]");
    assert_eq!(err(&v), (Some(-32600), json!("empty batch")));
    assert_eq!(v["id"], Value::Null);
    let mixed = json!([
        call(json!([p.root.to_hex()])),
        42,
        {"jsonrpc": "2.0", "id": "s", "method": "nope"},
        {"jsonrpc": "2.0", "method": "debug_dbGet", "params": [p.root.to_hex()]},
        {"jsonrpc": "2.0", "id": 9, "result": "0x00"},
    ]);
    let (_, v) = rpc_raw(&p, mixed.to_string().as_bytes());
    let arr = v.as_array().unwrap();
    assert_eq!(
        arr.len(),
        3,
        "notifications and responses get no answer: {v}"
    );
    assert_eq!(keccak256(&hex_result(&arr[0])), p.root);
    assert_eq!(
        (err(&arr[1]), &arr[1]["id"]),
        ((Some(-32600), json!("invalid request")), &Value::Null)
    );
    assert_eq!((code(&arr[2]), &arr[2]["id"]), (Some(-32601), &json!("s")));

    // Over 1000 calls: an array holding one error with the id of the first call (the
    // members before it are not calls).
    let mut big: Vec<Value> = vec![json!(1), json!({"jsonrpc": "2.0", "method": "x"})];
    big.extend((0..1000).map(|i| {
        json!({"jsonrpc": "2.0", "id": format!("c{i}"), "method": "debug_dbGet", "params": ["0x"]})
    }));
    assert_eq!(
        rpc_text(&p, serde_json::to_vec(&big).unwrap().as_slice()),
        r#"[{"jsonrpc":"2.0","id":"c0","error":{"code":-32600,"message":"batch too large"}}]"#
    );

    // Body size limit.
    let req = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5000000\r\n\r\n[";
    let (resp, _) = raw_exchange(&p.addr, req, Duration::from_secs(3));
    assert_eq!(raw_status(&resp), Some(413));
}

/// geth answers a post that is not JSON by its Content-Type with 415 (parameters and case
/// aside, it takes application/json, application/json-rpc and application/jsonrequest);
/// a preflight is not affected.
#[test]
fn json_rpc_content_types() {
    let p = Peer::start(&["--synthetic", "50"]);
    let body =
        json!({"jsonrpc": "2.0", "id": 1, "method": "debug_dbGet", "params": [p.root.to_hex()]})
            .to_string();
    let url = format!("{}/", p.base);
    for ct in [
        "application/json",
        "Application/JSON; charset=utf-8",
        "application/json-rpc",
        "application/jsonrequest",
    ] {
        let (status, _, answer) = post(&url, ct, body.as_bytes());
        assert_eq!(status, 200, "{ct}");
        let v: Value = serde_json::from_slice(&answer).unwrap();
        assert_eq!(keccak256(&hex_result(&v)), p.root, "{ct}");
    }
    for ct in [
        "text/plain",
        "application/octet-stream",
        "application/jsonx",
        "",
    ] {
        let (status, _, answer) = post(&url, ct, body.as_bytes());
        assert_eq!(status, 415, "{ct:?}");
        assert_eq!(
            String::from_utf8(answer).unwrap(),
            "invalid content type, only application/json is supported\n"
        );
    }
    // No Content-Type at all.
    let req = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let (resp, _) = raw_exchange(&p.addr, req.as_bytes(), Duration::from_secs(3));
    assert_eq!(raw_status(&resp), Some(415));
    let pre = b"OPTIONS / HTTP/1.1\r\nHost: x\r\nOrigin: https://w.example\r\nAccess-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type\r\nConnection: close\r\n\r\n";
    let (resp, _) = raw_exchange(&p.addr, pre, Duration::from_secs(3));
    assert_eq!(raw_status(&resp), Some(204));
}

/// geth's batch response limit counts each result's JSON text (`"0x…"`: 2 bytes a byte,
/// plus 4): 1000 answers of a 13,000-byte code are 13 MB raw but 26 MB as JSON, so the
/// calls after the 962nd (962 × 26,004 > 25,000,000) get -32003.
#[test]
fn json_rpc_batch_response_limit_counts_json_text() {
    let spec = "10,contracts=1,code=13000,slots=1";
    let built = triesync_core::synthetic::build_synthetic(
        &triesync_peer::cli::parse_synthetic(spec).unwrap(),
    );
    let p = Peer::start(&["--synthetic", spec]);
    let code = *built.codes.keys().next().unwrap();
    let mut keys = vec![code_key(&code); 1000];
    keys[999] = "0xzz".into(); // past the limit even an error becomes "response too large"
    let answers = rpc_batch(&p.base, &keys);
    assert_eq!(answers.len(), 1000);
    for (i, a) in answers.iter().enumerate() {
        if i < 962 {
            assert_eq!(keccak256(&hex_result(a)), code, "answer {i}");
        } else {
            assert_eq!(
                a["error"],
                json!({"code": -32003, "message": "response too large"}),
                "answer {i}"
            );
        }
    }
}

/// A JSON-RPC body counts against --answer-memory from when it is read until its answer
/// is built, so posts that wait (here --delay-ms) hold their share: with 1 MiB of answer
/// memory, two posts of 700 kB run one after the other (about 2 s), not side by side (1 s).
#[test]
fn json_rpc_bodies_count_against_the_answer_memory() {
    let mut p = Peer::start(&[
        "--synthetic",
        "50",
        "--answer-memory",
        "1m",
        "--delay-ms",
        "1000",
    ]);
    let root = p.root.to_hex();
    let calls: Vec<Value> = (0..1000)
        .map(|i| {
            let id = format!("{i:0>650}");
            json!({"jsonrpc": "2.0", "id": id, "method": "debug_dbGet", "params": [root]})
        })
        .collect();
    let body = serde_json::to_vec(&calls).unwrap();
    assert!((700_000..800_000).contains(&body.len()), "{}", body.len());
    let url = format!("{}/", p.base);
    let t0 = Instant::now();
    let posts: Vec<_> = (0..2)
        .map(|_| {
            let (url, body) = (url.clone(), body.clone());
            std::thread::spawn(move || {
                let (status, _, answer) = post(&url, "application/json", &body);
                let v: Value = serde_json::from_slice(&answer).unwrap();
                (status, v.as_array().map(Vec::len), t0.elapsed())
            })
        })
        .collect();
    let mut times = Vec::new();
    for t in posts {
        let (status, n, took) = t.join().unwrap();
        assert_eq!((status, n), (200, Some(1000)));
        times.push(took);
    }
    times.sort();
    assert!(times[0] >= Duration::from_millis(1000), "{times:?}");
    assert!(times[1] >= Duration::from_millis(1900), "{times:?}");
    p.close_stdin();
    assert!(p.wait_exit(Duration::from_secs(10)).is_some());
    let log = p.stderr();
    assert!(!log.contains(" 0 answers waited for memory"), "{log}");
}

#[test]
fn websocket_malformed_messages_close_with_a_code() {
    let p = Peer::start(&["--synthetic", "100"]);
    let expect_close = |msg: tungstenite::Message, want: u16| {
        let mut ws = ws_connect(&p.addr, Duration::from_secs(5));
        // A good request first: the socket works.
        assert_exact(&[p.root], &ws_roundtrip(&mut ws, 1, &[p.root]).1, "before");
        ws.send(msg).unwrap();
        loop {
            match ws.read() {
                Ok(tungstenite::Message::Close(Some(frame))) => {
                    assert_eq!(u16::from(frame.code), want, "reason {}", frame.reason);
                    assert!(!frame.reason.is_empty());
                    break;
                }
                Ok(tungstenite::Message::Close(None)) => panic!("close without a code"),
                Ok(_) => continue,
                Err(e) => panic!("expected a close frame {want}, got {e}"),
            }
        }
    };
    expect_close(tungstenite::Message::Text("hello".into()), 1003);
    expect_close(tungstenite::Message::Binary(vec![0xc3, 0x01].into()), 1008);
    expect_close(
        tungstenite::Message::Binary(ws_request(1, &[]).into()),
        1008,
    );
    expect_close(
        tungstenite::Message::Binary(hash_list(&hashes(2)).into()),
        1008,
    );
    let mut bad_len = rlp::RlpStream::new_list(2);
    bad_len
        .append(&1u64)
        .begin_list(1)
        .append(&[1u8; 20].as_slice());
    expect_close(
        tungstenite::Message::Binary(bad_len.out().to_vec().into()),
        1008,
    );
    expect_close(
        tungstenite::Message::Binary(ws_request(1, &hashes(385)).into()),
        1009,
    );
    // Past the size cap, refused from the frame header (tungstenite's limits), whatever
    // the size: the close frame still arrives, not a reset.
    expect_close(tungstenite::Message::Binary(vec![0u8; 20_000].into()), 1009);
    expect_close(
        tungstenite::Message::Binary(vec![0u8; 1_500_000].into()),
        1009,
    );
    assert_eq!(p.info()["accounts"], 100);
}

#[test]
fn slow_headers_and_bodies_are_cut_off() {
    let p = Peer::start(&[
        "--synthetic",
        "100",
        "--header-timeout-ms",
        "500",
        "--body-timeout-ms",
        "500",
    ]);
    // Headers never finished: the connection is closed.
    let t = Instant::now();
    let (_, closed) = raw_exchange(
        &p.addr,
        b"POST /v1/nodes HTTP/1.1\r\nHost: x\r\n",
        Duration::from_secs(4),
    );
    assert!(closed, "slow headers not cut off");
    assert!(t.elapsed() < Duration::from_secs(3));
    // A body that never arrives: 408 and close.
    let t = Instant::now();
    let req = b"POST /v1/nodes HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789";
    let (resp, closed) = raw_exchange(&p.addr, req, Duration::from_secs(4));
    assert_eq!(
        raw_status(&resp),
        Some(408),
        "{}",
        String::from_utf8_lossy(&resp)
    );
    assert!(closed);
    assert!(t.elapsed() < Duration::from_secs(3));
    // Junk instead of HTTP: closed (hyper may answer 400 first).
    let (resp, closed) = raw_exchange(
        &p.addr,
        b"\x16\x03\x01 not http at all\r\n\r\n",
        Duration::from_secs(4),
    );
    assert!(closed);
    assert!(resp.is_empty() || raw_status(&resp) == Some(400));
    assert_eq!(p.info()["accounts"], 100);
}

#[test]
fn stalled_connections_are_released_when_clients_give_up() {
    // Two connection slots: if abandoned stalled requests held them, /v1/info would hang.
    let p = Peer::start(&[
        "--synthetic",
        "100",
        "--stall",
        "1.0",
        "--max-connections",
        "2",
    ]);
    let a = || agent(Duration::from_millis(300));
    for _ in 0..5 {
        let r = post_with(
            &a(),
            &format!("{}/v1/nodes", p.base),
            "application/octet-stream",
            &hash_list(&[p.root]),
        );
        assert!(r.is_err());
    }
    let (status, _, _) = post_with(
        &agent(Duration::from_secs(5)),
        &format!("{}/v1/info", p.base),
        "x",
        b"",
    )
    .unwrap_or((0, String::new(), vec![]));
    assert_eq!(status, 405, "a slot was free again");
    assert_eq!(p.info()["accounts"], 100);
}

#[test]
fn bad_command_lines_fail_with_a_message() {
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_triesync-peer"))
            .args(args)
            .output()
            .unwrap()
    };
    for args in [
        vec![],
        vec!["--synthetic", "100", "--corrupt", "1.5"],
        vec!["--synthetic", "abc"],
        vec!["--state", "/nonexistent.json", "--port", "0"],
        vec!["--synthetic", "10", "--bogus"],
    ] {
        let out = run(&args);
        assert!(!out.status.success(), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}: nothing on stdout");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("triesync-peer:"),
            "{args:?}"
        );
    }
    let out = run(&["--help"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("--synthetic"));
}

#[test]
fn clients_that_stop_reading_are_cut_after_the_write_timeout() {
    // A 64 MB answer (the flood fault) to a client that reads nothing: once the socket
    // buffers are full the server's write makes no progress, and `--write-timeout-ms`
    // closes the connection long before the 20 s header timeout would.
    let p = Peer::start(&[
        "--synthetic",
        "100",
        "--flood-bytes",
        "64m",
        "--write-timeout-ms",
        "500",
        "--header-timeout-ms",
        "20000",
    ]);
    let body = hash_list(&[p.root]);
    let mut req = format!(
        "POST /v1/nodes HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(&body);
    let mut s = std::net::TcpStream::connect(&p.addr).unwrap();
    s.write_all(&req).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut total = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    let closed = loop {
        match s.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => total += n,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
            Err(_) => break false, // nothing for 5 s and not closed
        }
    };
    assert!(closed, "still open after {total} bytes");
    assert!(
        total < 64_000_000,
        "the whole answer arrived: {total} bytes"
    );
}

#[test]
fn an_answer_bigger_than_the_answer_memory_is_still_served() {
    // `--answer-memory 16k`: a ~50 KB answer takes the whole budget instead of waiting
    // forever for more than there is; answers after it are served too.
    let p = Peer::start(&["--synthetic", "1000", "--answer-memory", "16k"]);
    let mut level = vec![p.root];
    for _ in 0..2 {
        let blobs = fetch_http(&p.base, &level);
        assert_exact(&level, &blobs, "answer under a small budget");
        level = blobs
            .iter()
            .flat_map(|b| child_hashes(b))
            .take(384)
            .collect();
        assert!(!level.is_empty());
    }
}

/// The hashes a trie node refers to.
fn child_hashes(blob: &[u8]) -> Vec<H256> {
    use triesync_core::nodes::{decode_node, ChildRef};
    decode_node(blob)
        .unwrap()
        .children()
        .filter_map(|(_, c)| match c {
            ChildRef::Hash(h) => Some(h),
            _ => None,
        })
        .collect()
}
