//! Shared helpers of the peer's integration tests: start the real binary, and speak HTTP,
//! WebSocket and JSON-RPC to it with independent clients (ureq, tungstenite, the `rlp`
//! crate and raw TCP).
#![allow(dead_code, unreachable_pub)]

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};
use triesync_core::{keccak256, H256};

/// `../shared/fixtures` beside the repository, or `$TRIESYNC_FIXTURES`.
pub fn fixtures_dir() -> PathBuf {
    std::env::var_os("TRIESYNC_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures"))
}

/// Every fixture state file, sorted.
pub fn fixture_states() -> Vec<PathBuf> {
    let dir = fixtures_dir().join("states");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    v.sort();
    assert!(
        v.len() >= 4,
        "expected the fixture states in {}",
        dir.display()
    );
    v
}

/// A running `triesync-peer`, killed when dropped.
pub struct Peer {
    child: Child,
    stdin: Option<ChildStdin>,
    _stdout: BufReader<ChildStdout>,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// The root the first line announced.
    pub root: H256,
    /// Where the peer's stderr goes.
    pub log: PathBuf,
}

impl Peer {
    /// Starts the binary with `args` (plus `--port 0 --exit-on-stdin-close`) and waits for
    /// its first line.
    pub fn start(args: &[&str]) -> Peer {
        Peer::start_logging(args, "debug")
    }

    /// [`Peer::start`] with another `--log` level.
    pub fn start_logging(args: &[&str], level: &str) -> Peer {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("peer-{}-{n}.log", std::process::id()));
        let mut child = Command::new(env!("CARGO_BIN_EXE_triesync-peer"))
            .args(args)
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--exit-on-stdin-close",
                "--log",
                level,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn triesync-peer");
        let stdin = child.stdin.take();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let mut peer = Peer {
            child,
            stdin,
            _stdout: stdout,
            base: String::new(),
            addr: String::new(),
            root: H256::default(),
            log,
        };
        // `listening http://127.0.0.1:PORT root 0x...`
        let parts: Vec<&str> = line.split_whitespace().collect();
        assert!(
            parts.len() == 4 && parts[0] == "listening" && parts[2] == "root",
            "bad first line {line:?}; stderr: {}",
            peer.stderr()
        );
        peer.base = parts[1].to_string();
        peer.addr = parts[1].trim_start_matches("http://").to_string();
        peer.root = H256::from_hex(parts[3]).unwrap();
        peer
    }

    /// What the peer logged so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Closes the peer's standard input.
    pub fn close_stdin(&mut self) {
        self.stdin.take();
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// GET `/v1/info` as JSON.
    pub fn info(&self) -> Value {
        let (status, _, body) = get(&format!("{}/v1/info", self.base));
        assert_eq!(status, 200);
        serde_json::from_slice(&body).unwrap()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// A ureq agent that returns error statuses as responses.
pub fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
        .into()
}

fn finish(mut resp: ureq::http::Response<ureq::Body>) -> (u16, String, Vec<u8>) {
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = resp
        .body_mut()
        .with_config()
        .limit(256 << 20)
        .read_to_vec()
        .unwrap();
    (status, ct, body)
}

/// GET: (status, content type, body).
pub fn get(url: &str) -> (u16, String, Vec<u8>) {
    finish(agent(Duration::from_secs(30)).get(url).call().unwrap())
}

/// POST raw bytes with a client; `Err` for transport errors (timeouts, closed connections).
pub fn post_with(
    agent: &ureq::Agent,
    url: &str,
    content_type: &str,
    body: &[u8],
) -> Result<(u16, String, Vec<u8>), ureq::Error> {
    let resp = agent
        .post(url)
        .header("Content-Type", content_type)
        .send(body)?;
    Ok(finish(resp))
}

/// POST raw bytes.
pub fn post(url: &str, content_type: &str, body: &[u8]) -> (u16, String, Vec<u8>) {
    post_with(&agent(Duration::from_secs(30)), url, content_type, body).unwrap()
}

/// RLP list of hashes, encoded by the `rlp` crate.
pub fn hash_list(hashes: &[H256]) -> Vec<u8> {
    let mut s = rlp::RlpStream::new_list(hashes.len());
    for h in hashes {
        s.append(&h.0.as_slice());
    }
    s.out().to_vec()
}

/// Decodes an RLP list of byte strings with the `rlp` crate.
pub fn decode_blobs(body: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let r = rlp::Rlp::new(body);
    let info = r.payload_info().map_err(|e| e.to_string())?;
    if info.total() != body.len() {
        return Err("trailing bytes".into());
    }
    r.as_list::<Vec<u8>>().map_err(|e| e.to_string())
}

/// `POST /v1/nodes` with `hashes`: the blobs, decoded.
pub fn fetch_http(base: &str, hashes: &[H256]) -> Vec<Vec<u8>> {
    let (status, ct, body) = post(
        &format!("{base}/v1/nodes"),
        "application/octet-stream",
        &hash_list(hashes),
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(ct, "application/octet-stream");
    decode_blobs(&body).expect("answer is an RLP list of blobs")
}

/// The hashes of `blobs`.
pub fn hashes_of(blobs: &[Vec<u8>]) -> Vec<H256> {
    blobs.iter().map(|b| keccak256(b)).collect()
}

/// Asserts that `blobs` are exactly the blobs of `asked` (as a set).
pub fn assert_exact(asked: &[H256], blobs: &[Vec<u8>], what: &str) {
    let mut got = hashes_of(blobs);
    got.sort();
    let mut want = asked.to_vec();
    want.sort();
    assert_eq!(
        got, want,
        "{what}: answer does not hold exactly the asked items"
    );
}

/// A WebSocket client on a plain TCP stream.
pub type Ws = tungstenite::WebSocket<TcpStream>;

/// Opens `ws://ADDR/v1/ws` with a read timeout.
pub fn ws_connect(addr: &str, read_timeout: Duration) -> Ws {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(read_timeout)).unwrap();
    let (ws, resp) = tungstenite::client::client(format!("ws://{addr}/v1/ws"), stream).unwrap();
    assert_eq!(resp.status().as_u16(), 101);
    ws
}

/// `RLP([id, [hash...]])` by the `rlp` crate.
pub fn ws_request(id: u64, hashes: &[H256]) -> Vec<u8> {
    let mut s = rlp::RlpStream::new_list(2);
    s.append(&id);
    s.begin_list(hashes.len());
    for h in hashes {
        s.append(&h.0.as_slice());
    }
    s.out().to_vec()
}

/// Decodes `RLP([id, [blob...]])`.
pub fn ws_decode(msg: &[u8]) -> Result<(u64, Vec<Vec<u8>>), String> {
    let r = rlp::Rlp::new(msg);
    if r.payload_info().map_err(|e| e.to_string())?.total() != msg.len()
        || r.item_count().map_err(|e| e.to_string())? != 2
    {
        return Err("not [id, [blob...]]".into());
    }
    let id: u64 = r.val_at(0).map_err(|e| e.to_string())?;
    let blobs: Vec<Vec<u8>> = r
        .at(1)
        .and_then(|l| l.as_list())
        .map_err(|e| e.to_string())?;
    Ok((id, blobs))
}

/// Sends one request and reads the next binary message.
pub fn ws_roundtrip(ws: &mut Ws, id: u64, hashes: &[H256]) -> (u64, Vec<Vec<u8>>) {
    ws.send(tungstenite::Message::Binary(ws_request(id, hashes).into()))
        .unwrap();
    loop {
        match ws.read().unwrap() {
            tungstenite::Message::Binary(b) => return ws_decode(&b).unwrap(),
            tungstenite::Message::Ping(_) | tungstenite::Message::Pong(_) => continue,
            other => panic!("unexpected message {other:?}"),
        }
    }
}

/// The JSON-RPC key of a node.
pub fn node_key(h: &H256) -> String {
    h.to_hex()
}

/// The JSON-RPC key of a code (geth's 'c' prefix).
pub fn code_key(h: &H256) -> String {
    format!("0x63{}", hex::encode(h.0))
}

/// A batch of `debug_dbGet` calls with ids 0.. ; the answers sorted by id.
pub fn rpc_batch(base: &str, keys: &[String]) -> Vec<Value> {
    let calls: Vec<Value> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| json!({"jsonrpc": "2.0", "id": i, "method": "debug_dbGet", "params": [k]}))
        .collect();
    let (status, ct, body) = post(
        &format!("{base}/"),
        "application/json",
        &serde_json::to_vec(&calls).unwrap(),
    );
    assert_eq!(status, 200);
    assert_eq!(ct, "application/json");
    let Value::Array(mut answers) = serde_json::from_slice(&body).unwrap() else {
        panic!("batch answer is not an array")
    };
    answers.sort_by_key(|a| a["id"].as_u64().unwrap_or(u64::MAX));
    answers
}

/// The bytes of a `"0x.."` result.
pub fn hex_result(v: &Value) -> Vec<u8> {
    let s = v["result"]
        .as_str()
        .unwrap_or_else(|| panic!("no result in {v}"));
    hex::decode(s.strip_prefix("0x").unwrap()).unwrap()
}

/// Sends raw bytes on a fresh TCP connection and reads until the server closes or
/// `timeout` passes: (bytes read, closed by the server).
pub fn raw_exchange(addr: &str, request: &[u8], timeout: Duration) -> (Vec<u8>, bool) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    s.write_all(request).unwrap();
    let end = Instant::now() + timeout;
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    while Instant::now() < end {
        match s.read(&mut buf) {
            Ok(0) => return (out, true),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return (out, true), // reset
        }
    }
    (out, false)
}

/// The status code of a raw HTTP response.
pub fn raw_status(resp: &[u8]) -> Option<u16> {
    let s = std::str::from_utf8(resp.get(..12)?).ok()?;
    s.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// A raw HTTP/1.1 POST with `Connection: close`.
pub fn raw_post(path: &str, body: &[u8]) -> Vec<u8> {
    // JSON-RPC (`/`) takes only JSON.
    let ct = if path == "/" {
        "application/json"
    } else {
        "application/octet-stream"
    };
    let mut r = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {ct}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}
