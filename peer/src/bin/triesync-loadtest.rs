//! `triesync-loadtest`: a load and abuse test of the reference peer (LOADTEST.md).
//!
//! It starts the real server (by default this binary re-executed as `serve`, which runs
//! the same `triesync_peer::run` as `triesync-peer`; `--server PATH` runs another binary)
//! on 127.0.0.1 with a synthetic state, then lets `--clients` well-behaved clients each walk
//! the whole state from its root over HTTP, WebSocket or JSON-RPC: requests of up to 384
//! hashes, every blob hashed and matched to what was asked, trie nodes decoded to find the
//! next hashes (account leaves give storage roots and codes). With `--abuse`, abusive
//! clients run at the same time (slow-loris, oversized and garbage bodies, WebSocket
//! floods, clients that never read their answers, idle connection floods over the limit).
//!
//! It reports throughput, latency percentiles, the server's peak memory (VmHWM) and CPU
//! time, error answers of the good clients (must be 0) and what each abuser saw; with
//! `--json` the same as one JSON object on stdout. Exit status 0 when every good client
//! finished its walk with no error, the server stayed up and every abuser outcome was one
//! the protocol allows; 1 otherwise; 2 for bad arguments.
#![allow(unreachable_pub)]

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;
use triesync_core::nodes::{decode_node, ChildRef, Node};
use triesync_core::state::Account;
use triesync_core::{keccak256, wire, EMPTY_CODE_HASH, EMPTY_ROOT, H256};

const USAGE: &str = "\
triesync-loadtest: load and abuse test of the reference peer (see LOADTEST.md)

USAGE:
  triesync-loadtest [OPTIONS]
  triesync-loadtest serve PEER-ARGS...     (runs the peer itself; used internally; also
                                           takes --write-timeout-ms N and
                                           --answer-memory-mb N, limits the peer has
                                           no flag for yet: pass them with --server-arg)

OPTIONS:
  --clients N            well-behaved clients, each walking the whole state (default 200)
  --accounts SPEC        synthetic state, as triesync-peer --synthetic (default 100k)
  --mix H:W:R            shares of HTTP, WebSocket and JSON-RPC clients (default 2:2:1)
  --ws-depth N           requests in flight per WebSocket client (default 4)
  --batch N              hashes per request, at most 384 (default 384)
  --abuse                add the default abusive clients (see below)
  --slowloris N          slow-loris connections (headers a byte at a time)   [abuse: 20]
  --oversized N          clients sending oversized bodies                   [abuse: 4]
  --garbage N            clients sending garbage bodies and messages         [abuse: 4]
  --ws-flood N           WebSocket clients flooding requests past the limit  [abuse: 4]
  --no-read N            clients that send requests and never read answers  [abuse: 30]
  --conn-flood N         idle TCP connections held open (refilled when cut)  [abuse: limit+64]
  --ws-idle N            idle WebSocket sockets held open                    [abuse: 200]
  --max-connections N    the server's --max-connections (default 1024)
  --header-timeout-ms N  the server's --header-timeout-ms (default: the server's, 10000)
  --body-timeout-ms N    the server's --body-timeout-ms (default: the server's, 10000)
  --server PATH          run this peer binary instead of this one as `serve`
  --server-arg ARG       one more argument for the server (repeatable)
  --abuse-lead-ms N      abusers start this long before the good clients (default 1000)
  --request-timeout-s N  a good client's request fails after this (default 120)
  --timeout-s N          the whole run is abandoned after this (default 900)
  --json                 print the report as one JSON object on stdout
  --json-out PATH        also write that JSON object to PATH
";

// ---------------------------------------------------------------------------------------
// Arguments

#[derive(Debug, Clone)]
struct Args {
    clients: usize,
    accounts: String,
    mix: [usize; 3],
    ws_depth: usize,
    batch: usize,
    slowloris: usize,
    oversized: usize,
    garbage: usize,
    ws_flood: usize,
    no_read: usize,
    conn_flood: Option<usize>,
    ws_idle: usize,
    abuse: bool,
    max_connections: usize,
    header_timeout_ms: Option<u64>,
    body_timeout_ms: Option<u64>,
    server: Option<String>,
    server_args: Vec<String>,
    abuse_lead: Duration,
    request_timeout: Duration,
    timeout: Duration,
    json: bool,
    json_out: Option<String>,
}

fn parse_args(args: Vec<String>) -> Result<Args, String> {
    let mut a = Args {
        clients: 200,
        accounts: "100k".into(),
        mix: [2, 2, 1],
        ws_depth: 4,
        batch: 384,
        slowloris: 0,
        oversized: 0,
        garbage: 0,
        ws_flood: 0,
        no_read: 0,
        conn_flood: None,
        ws_idle: 0,
        abuse: false,
        max_connections: 1024,
        header_timeout_ms: None,
        body_timeout_ms: None,
        server: None,
        server_args: Vec::new(),
        abuse_lead: Duration::from_millis(1000),
        request_timeout: Duration::from_secs(120),
        timeout: Duration::from_secs(900),
        json: false,
        json_out: None,
    };
    let mut explicit: HashSet<&'static str> = HashSet::new();
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = triesync_peer::cli::split_flag(&arg);
        let mut value = || -> Result<String, String> {
            match &inline {
                Some(v) => Ok(v.clone()),
                None => it.next().ok_or_else(|| format!("{flag} needs a value")),
            }
        };
        fn num<T: std::str::FromStr>(flag: &str, v: String) -> Result<T, String> {
            v.trim()
                .parse()
                .map_err(|_| format!("{flag}: not a number: {v:?}"))
        }
        match flag.as_str() {
            "-h" | "--help" => return Err(String::new()),
            "--clients" => a.clients = num(&flag, value()?)?,
            "--accounts" => a.accounts = value()?,
            "--mix" => {
                let v = value()?;
                let parts: Vec<usize> = v
                    .split(':')
                    .map(|p| p.trim().parse::<usize>())
                    .collect::<Result<_, _>>()
                    .map_err(|_| format!("--mix: expected H:W:R, got {v:?}"))?;
                if parts.len() != 3 || parts.iter().sum::<usize>() == 0 {
                    return Err(format!("--mix: expected H:W:R, got {v:?}"));
                }
                a.mix = [parts[0], parts[1], parts[2]];
            }
            "--ws-depth" => a.ws_depth = num::<usize>(&flag, value()?)?.max(1),
            "--batch" => a.batch = num::<usize>(&flag, value()?)?.clamp(1, 384),
            "--abuse" => a.abuse = true,
            "--slowloris" => {
                a.slowloris = num(&flag, value()?)?;
                explicit.insert("slowloris");
            }
            "--oversized" => {
                a.oversized = num(&flag, value()?)?;
                explicit.insert("oversized");
            }
            "--garbage" => {
                a.garbage = num(&flag, value()?)?;
                explicit.insert("garbage");
            }
            "--ws-flood" => {
                a.ws_flood = num(&flag, value()?)?;
                explicit.insert("ws-flood");
            }
            "--no-read" => {
                a.no_read = num(&flag, value()?)?;
                explicit.insert("no-read");
            }
            "--conn-flood" => a.conn_flood = Some(num(&flag, value()?)?),
            "--ws-idle" => {
                a.ws_idle = num(&flag, value()?)?;
                explicit.insert("ws-idle");
            }
            "--max-connections" => a.max_connections = num::<usize>(&flag, value()?)?.max(1),
            "--header-timeout-ms" => a.header_timeout_ms = Some(num(&flag, value()?)?),
            "--body-timeout-ms" => a.body_timeout_ms = Some(num(&flag, value()?)?),
            "--server" => a.server = Some(value()?),
            "--server-arg" => a.server_args.push(value()?),
            "--abuse-lead-ms" => a.abuse_lead = Duration::from_millis(num(&flag, value()?)?),
            "--request-timeout-s" => a.request_timeout = Duration::from_secs(num(&flag, value()?)?),
            "--timeout-s" => a.timeout = Duration::from_secs(num(&flag, value()?)?),
            "--json" => a.json = true,
            "--json-out" => a.json_out = Some(value()?),
            _ => return Err(format!("unknown argument {arg:?} (see --help)")),
        }
    }
    if a.abuse {
        let defaults: [(&str, &mut usize, usize); 6] = [
            ("slowloris", &mut a.slowloris, 20),
            ("oversized", &mut a.oversized, 4),
            ("garbage", &mut a.garbage, 4),
            ("ws-flood", &mut a.ws_flood, 4),
            ("no-read", &mut a.no_read, 30),
            ("ws-idle", &mut a.ws_idle, 200),
        ];
        for (name, slot, d) in defaults {
            if !explicit.contains(name) {
                *slot = d;
            }
        }
        if a.conn_flood.is_none() {
            a.conn_flood = Some(a.max_connections + 64);
        }
    }
    Ok(a)
}

// ---------------------------------------------------------------------------------------
// The server process

struct Server {
    child: Child,
    stdin: Option<ChildStdin>,
    pid: u32,
    addr: String,
    root: H256,
    stderr: Arc<Mutex<StderrLog>>,
    stderr_thread: Option<std::thread::JoinHandle<()>>,
    rss_peak_kb: Arc<AtomicU64>,
    sampler_stop: Arc<AtomicBool>,
    baseline_rss_kb: u64,
}

#[derive(Default)]
struct StderrLog {
    lines: usize,
    warnings: usize,
    tail: Vec<String>,
    /// The last `summary:` line (the shutdown one once the server has exited).
    summary: Option<String>,
}

fn proc_status_kb(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find(|l| l.starts_with(field)).and_then(|l| {
        l.split_whitespace()
            .nth(1)
            .and_then(|v| v.parse::<u64>().ok())
    })
}

/// User + system CPU seconds of a process.
fn proc_cpu_seconds(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime), counted from 1 with pid and comm as 1 and 2.
    let ut: f64 = f.get(11)?.parse().ok()?;
    let st: f64 = f.get(12)?.parse().ok()?;
    Some((ut + st) / 100.0) // USER_HZ is 100 on Linux
}

fn start_server(a: &Args) -> Result<Server, String> {
    let mut cmd = match &a.server {
        Some(path) => Command::new(path),
        None => {
            let me = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
            let mut c = Command::new(me);
            c.arg("serve");
            c
        }
    };
    cmd.args(["--synthetic", &a.accounts])
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--exit-on-stdin-close",
        ])
        .args(["--log", "info"])
        .args(["--max-connections", &a.max_connections.to_string()]);
    if let Some(ms) = a.header_timeout_ms {
        cmd.args(["--header-timeout-ms", &ms.to_string()]);
    }
    if let Some(ms) = a.body_timeout_ms {
        cmd.args(["--body-timeout-ms", &ms.to_string()]);
    }
    cmd.args(&a.server_args);
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting the server: {e}"))?;
    let pid = child.id();
    let stdin = child.stdin.take();
    let stderr = Arc::new(Mutex::new(StderrLog::default()));
    let stderr_thread = {
        let err = child.stderr.take().expect("piped");
        let log = stderr.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                let mut l = log.lock().unwrap();
                l.lines += 1;
                if let Some(i) = line.find("summary: ") {
                    l.summary = Some(line[i + 9..].to_string());
                }
                if line.contains(" WARN ") || line.contains(" ERROR ") {
                    l.warnings += 1;
                }
                if l.tail.len() >= 40 {
                    l.tail.remove(0);
                }
                l.tail.push(line);
            }
        })
    };
    let mut out = std::io::BufReader::new(child.stdout.take().expect("piped"));
    let mut line = String::new();
    out.read_line(&mut line)
        .map_err(|e| format!("reading the server's first line: {e}"))?;
    // Keep stdout open (and drained) so the server never gets SIGPIPE.
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut out, &mut sink);
    });
    let parts: Vec<&str> = line.split_whitespace().collect();
    if parts.len() != 4 || parts[0] != "listening" || parts[2] != "root" {
        let _ = child.kill();
        let _ = child.wait();
        std::thread::sleep(Duration::from_millis(100));
        let tail = stderr.lock().unwrap().tail.join("\n");
        return Err(format!(
            "bad first line {line:?} from the server; stderr:\n{tail}"
        ));
    }
    let addr = parts[1].trim_start_matches("http://").to_string();
    let root = H256::from_hex(parts[3]).map_err(|e| format!("root: {e}"))?;
    let rss_peak_kb = Arc::new(AtomicU64::new(0));
    let sampler_stop = Arc::new(AtomicBool::new(false));
    {
        let (peak, stop) = (rss_peak_kb.clone(), sampler_stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match proc_status_kb(pid, "VmRSS:") {
                    Some(kb) => {
                        peak.fetch_max(kb, Ordering::Relaxed);
                    }
                    None => break,
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
    }
    let baseline_rss_kb = proc_status_kb(pid, "VmRSS:").unwrap_or(0);
    Ok(Server {
        child,
        stdin,
        pid,
        addr,
        root,
        stderr,
        stderr_thread: Some(stderr_thread),
        rss_peak_kb,
        sampler_stop,
        baseline_rss_kb,
    })
}

impl Server {
    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Closes the server's stdin (it exits) and waits a little; kills it if it does not.
    fn stop(&mut self) -> Option<i32> {
        self.sampler_stop.store(true, Ordering::Relaxed);
        self.stdin.take();
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }

    /// Waits for the server's stderr to end (after it exited).
    fn join_log(&mut self) {
        if let Some(t) = self.stderr_thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------
// The walk of a state from its root

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Account,
    Storage,
    Code,
}

/// One client's walk: a depth-first stack of hashes still to fetch.
#[derive(Debug)]
struct Walk {
    stack: Vec<(H256, Kind)>,
    codes_seen: HashSet<H256>,
    nodes: u64,
    codes: u64,
    bytes: u64,
}

impl Walk {
    fn new(root: H256) -> Walk {
        Walk {
            stack: vec![(root, Kind::Account)],
            codes_seen: HashSet::new(),
            nodes: 0,
            codes: 0,
            bytes: 0,
        }
    }

    fn take(&mut self, n: usize) -> Vec<(H256, Kind)> {
        let k = self.stack.len().saturating_sub(n);
        self.stack.split_off(k)
    }

    fn give_back(&mut self, batch: Vec<(H256, Kind)>) {
        self.stack.extend(batch);
    }

    /// Takes an answer to `asked`: every blob must hash to an asked item; items not
    /// answered go back on the stack. Returns how many were not answered.
    fn accept<B: AsRef<[u8]>>(
        &mut self,
        asked: Vec<(H256, Kind)>,
        blobs: &[B],
    ) -> Result<usize, String> {
        let mut want: HashMap<H256, (Kind, u32)> = HashMap::with_capacity(asked.len());
        for (h, k) in &asked {
            want.entry(*h).or_insert((*k, 0)).1 += 1;
        }
        let mut result = Ok(());
        for b in blobs {
            let b = b.as_ref();
            let h = keccak256(b);
            match want.get_mut(&h) {
                Some((k, n)) if *n > 0 => {
                    *n -= 1;
                    let k = *k;
                    if let Err(e) = self.visit(b, k) {
                        result = Err(format!("blob {h}: {e}"));
                        break;
                    }
                }
                _ => {
                    result = Err(format!("a blob hashing to {h} was not asked for"));
                    break;
                }
            }
        }
        let mut missing = 0;
        for (h, (k, n)) in want {
            for _ in 0..n {
                self.stack.push((h, k));
                missing += 1;
            }
        }
        result.map(|()| missing)
    }

    fn visit(&mut self, blob: &[u8], kind: Kind) -> Result<(), String> {
        self.bytes += blob.len() as u64;
        match kind {
            Kind::Code => {
                self.codes += 1;
                Ok(())
            }
            trie => {
                self.nodes += 1;
                self.children(blob, trie)
            }
        }
    }

    fn children(&mut self, encoded: &[u8], trie: Kind) -> Result<(), String> {
        match decode_node(encoded).map_err(|e| e.to_string())? {
            Node::Branch { children, value } => {
                for c in children {
                    self.child(c, trie)?;
                }
                if let Some(v) = value {
                    self.leaf(v, trie)?;
                }
            }
            Node::Extension { child, .. } => self.child(child, trie)?,
            Node::Leaf { value, .. } => self.leaf(value, trie)?,
        }
        Ok(())
    }

    fn child(&mut self, c: ChildRef<'_>, trie: Kind) -> Result<(), String> {
        match c {
            ChildRef::Empty => Ok(()),
            ChildRef::Hash(h) => {
                self.stack.push((h, trie));
                Ok(())
            }
            ChildRef::Inline(raw) => self.children(raw, trie),
        }
    }

    fn leaf(&mut self, value: &[u8], trie: Kind) -> Result<(), String> {
        if trie != Kind::Account {
            return Ok(());
        }
        let a = Account::decode(value).map_err(|e| e.to_string())?;
        if a.storage_root != EMPTY_ROOT {
            self.stack.push((a.storage_root, Kind::Storage));
        }
        if a.code_hash != EMPTY_CODE_HASH && self.codes_seen.insert(a.code_hash) {
            self.stack.push((a.code_hash, Kind::Code));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// A minimal HTTP/1.1 client (keep-alive, Content-Length bodies)

struct HttpResp {
    status: u16,
    body: Vec<u8>,
    close: bool,
}

fn http_request(path: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut v = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    v.extend_from_slice(body);
    v
}

async fn read_response<R: AsyncBufRead + Unpin>(
    r: &mut R,
    max_body: usize,
) -> Result<HttpResp, String> {
    let mut line = String::new();
    let n = r
        .read_line(&mut line)
        .await
        .map_err(|e| format!("reading the status line: {e}"))?;
    if n == 0 {
        return Err("connection closed before an answer".into());
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {line:?}"))?;
    let (mut len, mut close, mut chunked) = (None, false, false);
    loop {
        line.clear();
        r.read_line(&mut line)
            .await
            .map_err(|e| format!("reading headers: {e}"))?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_ascii_lowercase());
            match k.as_str() {
                "content-length" => len = v.parse::<usize>().ok(),
                "connection" => close |= v.contains("close"),
                "transfer-encoding" => chunked |= v.contains("chunked"),
                _ => {}
            }
        }
    }
    let body = if let Some(n) = len {
        if n > max_body {
            return Err(format!("answer of {n} bytes, over {max_body}"));
        }
        let mut b = vec![0u8; n];
        r.read_exact(&mut b)
            .await
            .map_err(|e| format!("reading the body: {e}"))?;
        b
    } else if chunked {
        return Err("chunked answers are not expected".into());
    } else {
        Vec::new()
    };
    Ok(HttpResp {
        status,
        body,
        close,
    })
}

async fn connect(addr: &str, within: Duration) -> Result<TcpStream, String> {
    match timeout(within, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
        Ok(Err(e)) => Err(format!("connect: {e}")),
        Err(_) => Err("connect: timed out".into()),
    }
}

// ---------------------------------------------------------------------------------------
// Well-behaved clients

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Http,
    Ws,
    Rpc,
}

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Transport::Http => "http",
            Transport::Ws => "ws",
            Transport::Rpc => "rpc",
        }
    }
}

#[derive(Debug, Default)]
struct ClientResult {
    requests: u64,
    nodes: u64,
    codes: u64,
    blob_bytes: u64,
    wire_bytes: u64,
    errors: u64,
    short: u64,
    /// Requests sent again on a new connection because a reused keep-alive connection was
    /// closed before any answer (what HTTP clients do; not an error answer).
    keepalive_retries: u64,
    finished: bool,
    lat_us: Vec<u32>,
    error_samples: Vec<String>,
    started: Option<Instant>,
    ended: Option<Instant>,
}

impl ClientResult {
    fn error(&mut self, e: String) {
        self.errors += 1;
        if self.error_samples.len() < 3 {
            self.error_samples.push(e);
        }
    }
}

#[derive(Clone)]
struct Ctx {
    addr: String,
    root: H256,
    batch: usize,
    ws_depth: usize,
    request_timeout: Duration,
    deadline: Instant,
    /// Set when the good clients are all done: abusers wind down.
    stop: Arc<AtomicBool>,
    stop_notify: Arc<Notify>,
}

impl Ctx {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    async fn sleep_or_stop(&self, d: Duration) {
        if self.stopped() {
            return;
        }
        let notified = self.stop_notify.notified();
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = notified => {}
        }
    }

    /// Completes when `stop` is set.
    async fn until_stop(&self) {
        while !self.stopped() {
            self.sleep_or_stop(Duration::from_millis(200)).await;
        }
    }
}

fn rpc_body(batch: &[(H256, Kind)]) -> Vec<u8> {
    let keys: Vec<(H256, bool)> = batch.iter().map(|(h, k)| (*h, *k == Kind::Code)).collect();
    wire::encode_rpc_batch(&keys).into_bytes()
}

async fn good_http(ctx: Ctx, rpc: bool) -> ClientResult {
    let mut res = ClientResult {
        started: Some(Instant::now()),
        ..Default::default()
    };
    let mut walk = Walk::new(ctx.root);
    let mut conn: Option<BufReader<TcpStream>> = None;
    let (mut answered_on_conn, mut retry_streak) = (0u64, 0u32);
    while !walk.stack.is_empty() {
        if Instant::now() > ctx.deadline {
            res.error("run deadline passed".into());
            break;
        }
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match connect(&ctx.addr, ctx.request_timeout).await {
                Ok(s) => {
                    answered_on_conn = 0;
                    conn.insert(BufReader::with_capacity(64 * 1024, s))
                }
                Err(e) => {
                    res.error(e);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let batch = walk.take(ctx.batch);
        let req = if rpc {
            http_request("/", "application/json", &rpc_body(&batch))
        } else {
            let hashes: Vec<H256> = batch.iter().map(|(h, _)| *h).collect();
            http_request(
                "/v1/nodes",
                "application/octet-stream",
                &wire::encode_request(&hashes),
            )
        };
        let t0 = Instant::now();
        let exchange = async {
            c.get_mut()
                .write_all(&req)
                .await
                .map_err(|e| format!("sending: {e}"))?;
            read_response(c, 64 << 20).await
        };
        let answer = match timeout(ctx.request_timeout, exchange).await {
            Err(_) => Err("request timed out".to_string()),
            Ok(Err(e)) => Err(e),
            Ok(Ok(r)) if r.status != 200 => Err(format!(
                "status {}: {}",
                r.status,
                String::from_utf8_lossy(&r.body[..r.body.len().min(200)])
            )),
            Ok(Ok(r)) => Ok(r),
        };
        let r = match answer {
            Ok(r) => r,
            Err(e) => {
                // A reused keep-alive connection the server closed (idle timeout) before it
                // read the request: send it again on a new one, as HTTP clients do.
                let stale = answered_on_conn > 0
                    && (e.starts_with("connection closed before an answer")
                        || e.starts_with("sending:")
                        || e.starts_with("reading the status line:"));
                if stale && retry_streak < 3 {
                    retry_streak += 1;
                    res.keepalive_retries += 1;
                } else {
                    res.error(e);
                }
                walk.give_back(batch);
                conn = None;
                continue;
            }
        };
        answered_on_conn += 1;
        retry_streak = 0;
        res.lat_us
            .push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
        res.requests += 1;
        res.wire_bytes += r.body.len() as u64;
        if r.close {
            conn = None;
        }
        let blobs = if rpc {
            std::str::from_utf8(&r.body)
                .map_err(|e| e.to_string())
                .and_then(|s| wire::decode_rpc_batch(s, batch.len()).map_err(|e| e.to_string()))
        } else {
            wire::decode_blobs(&r.body, batch.len() + 16).map_err(|e| e.to_string())
        };
        match blobs {
            Ok(blobs) => match walk.accept(batch, &blobs) {
                Ok(0) => {}
                Ok(n) => {
                    res.short += 1;
                    res.error(format!("short answer: {n} items missing"));
                }
                Err(e) => res.error(e),
            },
            Err(e) => {
                res.error(format!("undecodable answer: {e}"));
                walk.give_back(batch);
            }
        }
    }
    res.nodes = walk.nodes;
    res.codes = walk.codes;
    res.blob_bytes = walk.bytes;
    res.finished = walk.stack.is_empty();
    res.ended = Some(Instant::now());
    res
}

type WsStream = tokio_tungstenite::WebSocketStream<TcpStream>;

async fn ws_connect(addr: &str, within: Duration) -> Result<WsStream, String> {
    let tcp = connect(addr, within).await?;
    match timeout(
        within,
        tokio_tungstenite::client_async(format!("ws://{addr}/v1/ws"), tcp),
    )
    .await
    {
        Ok(Ok((ws, _))) => Ok(ws),
        Ok(Err(e)) => Err(format!("websocket handshake: {e}")),
        Err(_) => Err("websocket handshake timed out".into()),
    }
}

async fn good_ws(ctx: Ctx) -> ClientResult {
    let mut res = ClientResult {
        started: Some(Instant::now()),
        ..Default::default()
    };
    let mut walk = Walk::new(ctx.root);
    let mut ws: Option<WsStream> = None;
    let mut in_flight: HashMap<u64, (Vec<(H256, Kind)>, Instant)> = HashMap::new();
    let mut next_id = 0u64;
    loop {
        if Instant::now() > ctx.deadline {
            res.error("run deadline passed".into());
            break;
        }
        let sock = match ws.as_mut() {
            Some(s) => s,
            None => match ws_connect(&ctx.addr, ctx.request_timeout).await {
                Ok(s) => ws.insert(s),
                Err(e) => {
                    res.error(e);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let mut failed = None;
        while in_flight.len() < ctx.ws_depth && !walk.stack.is_empty() {
            let batch = walk.take(ctx.batch);
            let hashes: Vec<H256> = batch.iter().map(|(h, _)| *h).collect();
            let id = next_id;
            next_id += 1;
            let msg = Message::Binary(wire::encode_ws_request(id, &hashes).into());
            in_flight.insert(id, (batch, Instant::now()));
            match timeout(ctx.request_timeout, sock.send(msg)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    failed = Some(format!("sending: {e}"));
                    break;
                }
                Err(_) => {
                    failed = Some("sending timed out".into());
                    break;
                }
            }
        }
        if failed.is_none() {
            if in_flight.is_empty() {
                break; // the walk is done
            }
            match timeout(ctx.request_timeout, sock.next()).await {
                Err(_) => failed = Some("no answer in time".into()),
                Ok(None) => failed = Some("socket closed".into()),
                Ok(Some(Err(e))) => failed = Some(format!("socket error: {e}")),
                Ok(Some(Ok(Message::Binary(data)))) => {
                    match wire::decode_ws_response(&data, ctx.batch + 16) {
                        Err(e) => failed = Some(format!("undecodable answer: {e}")),
                        Ok((id, blobs)) => match in_flight.remove(&id) {
                            None => failed = Some(format!("answer to unknown id {id}")),
                            Some((batch, t0)) => {
                                res.lat_us
                                    .push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
                                res.requests += 1;
                                res.wire_bytes += data.len() as u64;
                                match walk.accept(batch, &blobs) {
                                    Ok(0) => {}
                                    Ok(n) => {
                                        res.short += 1;
                                        res.error(format!("short answer: {n} items missing"));
                                    }
                                    Err(e) => res.error(e),
                                }
                            }
                        },
                    }
                }
                Ok(Some(Ok(Message::Close(f)))) => {
                    failed = Some(format!("closed by the server: {f:?}"))
                }
                Ok(Some(Ok(Message::Text(_)))) => failed = Some("a text message".into()),
                Ok(Some(Ok(_))) => {} // ping, pong
            }
        }
        if let Some(e) = failed {
            res.error(e);
            for (_, (batch, _)) in in_flight.drain() {
                walk.give_back(batch);
            }
            ws = None;
        }
    }
    if let Some(mut s) = ws {
        let _ = timeout(Duration::from_secs(2), s.close(None)).await;
    }
    res.nodes = walk.nodes;
    res.codes = walk.codes;
    res.blob_bytes = walk.bytes;
    res.finished = walk.stack.is_empty() && in_flight.is_empty();
    res.ended = Some(Instant::now());
    res
}

// ---------------------------------------------------------------------------------------
// Abusive clients

/// What one kind of abuser saw: outcomes the protocol allows, and others.
#[derive(Debug, Default)]
struct AbuseStats {
    attempts: AtomicU64,
    expected: AtomicU64,
    unexpected: AtomicU64,
    connect_failures: AtomicU64,
    /// The longest a connection was held before the server cut it (ms).
    max_held_ms: AtomicU64,
    /// Connections the server closed.
    cut: AtomicU64,
    /// Bytes the abuser got the server to accept before it stopped reading.
    bytes_sent: AtomicU64,
    /// Requests sent and answers received (WebSocket floods).
    requests: AtomicU64,
    answers: AtomicU64,
    samples: Mutex<Vec<String>>,
}

impl AbuseStats {
    /// Connects with `open` until it succeeds (an attempt) or the run stops (`None`); each
    /// failure is counted and followed by a pause of `backoff`.
    async fn reconnect<T, F>(&self, ctx: &Ctx, backoff: Duration, open: impl Fn() -> F) -> Option<T>
    where
        F: std::future::Future<Output = Result<T, String>>,
    {
        while !ctx.stopped() {
            match open().await {
                Ok(conn) => {
                    self.attempts.fetch_add(1, Ordering::Relaxed);
                    return Some(conn);
                }
                Err(_) => self.connect_failed(ctx, backoff).await,
            }
        }
        None
    }
    /// Counts a failed connection and pauses `backoff` (less if the run stops).
    async fn connect_failed(&self, ctx: &Ctx, backoff: Duration) {
        self.connect_failures.fetch_add(1, Ordering::Relaxed);
        ctx.sleep_or_stop(backoff).await;
    }
    fn ok(&self) {
        self.expected.fetch_add(1, Ordering::Relaxed);
    }
    fn bad(&self, what: String) {
        self.unexpected.fetch_add(1, Ordering::Relaxed);
        let mut s = self.samples.lock().unwrap();
        if s.len() < 5 {
            s.push(what);
        }
    }
    fn held(&self, d: Duration) {
        self.max_held_ms
            .fetch_max(d.as_millis() as u64, Ordering::Relaxed);
    }
    fn to_json(&self, kind: &str, n: usize) -> Value {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        json!({
            "kind": kind,
            "clients": n,
            "attempts": g(&self.attempts),
            "expected": g(&self.expected),
            "unexpected": g(&self.unexpected),
            "connectFailures": g(&self.connect_failures),
            "cutByServer": g(&self.cut),
            "maxHeldMs": g(&self.max_held_ms),
            "bytesSent": g(&self.bytes_sent),
            "requests": g(&self.requests),
            "answers": g(&self.answers),
            "samples": *self.samples.lock().unwrap(),
        })
    }
}

/// splitmix64 for garbage bytes.
use triesync_core::rng::SplitMix64 as Rng;

/// Waits until the server closes `s` (read returns 0 or fails) or `stop`; true when the
/// server closed it. Bytes the server sends are read and dropped.
async fn wait_closed(ctx: &Ctx, s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        if ctx.stopped() {
            return false;
        }
        tokio::select! {
            r = s.read(&mut buf) => match r {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            },
            _ = ctx.sleep_or_stop(Duration::from_secs(3600)) => return false,
        }
    }
}

/// Headers sent one byte at a time, never finished: the server must cut the connection
/// (its header timeout).
async fn slowloris(ctx: Ctx, st: Arc<AbuseStats>, interval: Duration) {
    let head = b"POST /v1/nodes HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\nX-Slow: ";
    let open = || connect(&ctx.addr, Duration::from_secs(60));
    while let Some(mut s) = st.reconnect(&ctx, Duration::from_millis(200), open).await {
        let t0 = Instant::now();
        let mut i = 0usize;
        let mut buf = [0u8; 1024];
        let closed = loop {
            let byte = if i < head.len() { head[i] } else { b'a' };
            i += 1;
            if s.write_all(&[byte]).await.is_err() {
                break true;
            }
            tokio::select! {
                r = s.read(&mut buf) => match r {
                    Ok(0) | Err(_) => break true,
                    Ok(_) => {} // a 408/400 answer: the close follows
                },
                _ = ctx.sleep_or_stop(interval) => {
                    if ctx.stopped() { break false; }
                }
            }
        };
        if closed {
            st.cut.fetch_add(1, Ordering::Relaxed);
            st.held(t0.elapsed());
            st.ok();
        }
    }
}

/// Reads an answer's status line and headers, and up to `max` bytes of its body.
async fn status_of(s: &mut BufReader<TcpStream>, within: Duration) -> Result<u16, String> {
    match timeout(within, read_response(s, 1 << 20)).await {
        Ok(Ok(r)) => Ok(r.status),
        Ok(Err(e)) => Err(e),
        Err(_) => Err("no answer in time".into()),
    }
}

/// Oversized bodies of several shapes: each must get 413 (or 408 when the part the server
/// reads does not arrive within the body timeout; for the body that never ends, also a
/// closed connection), and the server must not hold them.
async fn oversized(ctx: Ctx, st: Arc<AbuseStats>, seed: u64, body_timeout: Duration) {
    let mut rng = Rng::new(seed);
    let mut variant = seed as usize;
    while !ctx.stopped() {
        variant += 1;
        let s = match connect(&ctx.addr, Duration::from_secs(60)).await {
            Ok(s) => s,
            Err(_) => {
                st.connect_failed(&ctx, Duration::from_millis(200)).await;
                continue;
            }
        };
        st.attempts.fetch_add(1, Ordering::Relaxed);
        let mut s = BufReader::new(s);
        let wait = Duration::from_secs(60) + body_timeout;
        let outcome: Result<u16, String> = match variant % 5 {
            // A huge Content-Length: refused before the body is read.
            0 => {
                let req = b"POST /v1/nodes HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000000000\r\n\r\n";
                match s.get_mut().write_all(req).await {
                    Ok(()) => status_of(&mut s, wait).await,
                    Err(e) => Err(e.to_string()),
                }
            }
            // A body somewhat over the limit: read, dropped, 413.
            1 => {
                let body = rng.bytes(200_000);
                let req = http_request("/v1/nodes", "application/octet-stream", &body);
                match s.get_mut().write_all(&req).await {
                    Ok(()) => status_of(&mut s, wait).await,
                    Err(e) => Err(e.to_string()),
                }
            }
            // A chunked body that never ends: the server stops after its drain allowance.
            2 => {
                let head = b"POST /v1/nodes HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n";
                let (rd, mut wr) = s.into_inner().into_split();
                let writer = tokio::spawn(async move {
                    let mut chunk = b"4000\r\n".to_vec();
                    chunk.extend_from_slice(&[0xab; 0x4000]);
                    chunk.extend_from_slice(b"\r\n");
                    if wr.write_all(head).await.is_err() {
                        return;
                    }
                    for _ in 0..(16 << 20) / 0x4000 {
                        if wr.write_all(&chunk).await.is_err() {
                            return;
                        }
                    }
                });
                let mut rd = BufReader::new(rd);
                let r = match timeout(wait, read_response(&mut rd, 1 << 20)).await {
                    Ok(Ok(r)) => Ok(r.status),
                    // The server may close while we are still sending: allowed.
                    Ok(Err(_)) => Ok(413),
                    Err(_) => Err("no answer in time".into()),
                };
                writer.abort();
                r
            }
            // A JSON-RPC body over 1 MiB.
            3 => {
                let mut body = b"[".to_vec();
                body.extend(std::iter::repeat_n(b' ', 1_500_000));
                body.push(b']');
                let req = http_request("/", "application/json", &body);
                match s.get_mut().write_all(&req).await {
                    Ok(()) => status_of(&mut s, wait).await,
                    // Refused before it was all sent; read what the server said.
                    Err(_) => Ok(413),
                }
            }
            // 385 hashes: one too many.
            _ => {
                let hashes: Vec<H256> = (0..385).map(|_| ctx.root).collect();
                let req = http_request(
                    "/v1/nodes",
                    "application/octet-stream",
                    &wire::encode_request(&hashes),
                );
                match s.get_mut().write_all(&req).await {
                    Ok(()) => status_of(&mut s, wait).await,
                    Err(e) => Err(e.to_string()),
                }
            }
        };
        match outcome {
            Ok(413) => st.ok(),
            // A body that is read (variants 1 to 3) and does not all arrive within the body
            // timeout gets 408 (PROTOCOL.md §3): what a slow sender on a busy machine sees.
            Ok(408) if (1..=3).contains(&(variant % 5)) => st.ok(),
            Ok(other) => st.bad(format!("variant {}: status {other}", variant % 5)),
            Err(e) => st.bad(format!("variant {}: {e}", variant % 5)),
        }
    }
}

/// Garbage: random bodies to `/v1/nodes` (400) and `/` (JSON-RPC -32700), random binary
/// and text WebSocket messages (close 1008 / 1003), and bytes that are not HTTP.
async fn garbage(ctx: Ctx, st: Arc<AbuseStats>, seed: u64) {
    let mut rng = Rng::new(seed);
    let mut variant = seed as usize;
    while !ctx.stopped() {
        variant += 1;
        st.attempts.fetch_add(1, Ordering::Relaxed);
        let v = variant % 5;
        let len = 1 + (rng.next_u64() % 4000) as usize;
        let body = rng.bytes(len);
        let outcome: Result<(), String> = match v {
            0 | 1 => {
                let (path, ct) = if v == 0 {
                    ("/v1/nodes", "application/octet-stream")
                } else {
                    ("/", "application/json")
                };
                match connect(&ctx.addr, Duration::from_secs(60)).await {
                    Err(e) => Err(e),
                    Ok(s) => {
                        let mut s = BufReader::new(s);
                        let sent = s.get_mut().write_all(&http_request(path, ct, &body)).await;
                        match sent {
                            Err(e) => Err(e.to_string()),
                            Ok(()) => {
                                match timeout(
                                    Duration::from_secs(60),
                                    read_response(&mut s, 1 << 20),
                                )
                                .await
                                {
                                    Ok(Ok(r)) if v == 0 && r.status == 400 => Ok(()),
                                    Ok(Ok(r))
                                        if v == 1
                                            && r.status == 200
                                            && String::from_utf8_lossy(&r.body)
                                                .contains("-32700") =>
                                    {
                                        Ok(())
                                    }
                                    Ok(Ok(r)) => Err(format!(
                                        "{path}: status {} {}",
                                        r.status,
                                        String::from_utf8_lossy(&r.body[..r.body.len().min(100)])
                                    )),
                                    Ok(Err(e)) => Err(format!("{path}: {e}")),
                                    Err(_) => Err(format!("{path}: no answer in time")),
                                }
                            }
                        }
                    }
                }
            }
            2 | 3 => match ws_connect(&ctx.addr, Duration::from_secs(60)).await {
                Err(e) => Err(e),
                Ok(mut ws) => {
                    let (msg, want) = if v == 2 {
                        (Message::Binary(body.into()), 1008u16)
                    } else {
                        (Message::Text("hello".into()), 1003u16)
                    };
                    let r = async {
                        ws.send(msg).await.map_err(|e| e.to_string())?;
                        loop {
                            match ws.next().await {
                                Some(Ok(Message::Close(Some(f)))) => {
                                    let code: u16 = f.code.into();
                                    return if code == want {
                                        Ok(())
                                    } else {
                                        Err(format!("close code {code}, want {want}"))
                                    };
                                }
                                Some(Ok(Message::Close(None))) => {
                                    return Err("close without a code".into())
                                }
                                Some(Ok(_)) => continue,
                                Some(Err(e)) => return Err(format!("socket error: {e}")),
                                None => return Err("dropped without a close frame".into()),
                            }
                        }
                    };
                    match timeout(Duration::from_secs(60), r).await {
                        Ok(r) => r,
                        Err(_) => Err("no close in time".into()),
                    }
                }
            },
            _ => match connect(&ctx.addr, Duration::from_secs(60)).await {
                Err(e) => Err(e),
                Ok(mut s) => {
                    let mut junk = b"\x16\x03\x01\x02\x00".to_vec();
                    junk.extend_from_slice(&body);
                    junk.extend_from_slice(b"\r\n\r\n");
                    let _ = s.write_all(&junk).await;
                    match timeout(Duration::from_secs(60), wait_closed(&ctx, &mut s)).await {
                        Ok(true) => Ok(()),
                        Ok(false) => Ok(()), // stopped meanwhile
                        Err(_) => Err("junk connection not closed".into()),
                    }
                }
            },
        };
        match outcome {
            Ok(()) => st.ok(),
            Err(e) => st.bad(format!("variant {v}: {e}")),
        }
    }
}

/// A WebSocket client that sends requests as fast as it can (far past the in-flight
/// limit) and reads the answers: each request must be answered, none twice.
async fn ws_flood(ctx: Ctx, st: Arc<AbuseStats>) {
    let open = || ws_connect(&ctx.addr, Duration::from_secs(60));
    while let Some(ws) = st.reconnect(&ctx, Duration::from_millis(200), open).await {
        let (mut tx, mut rx) = ws.split();
        let sent = Arc::new(AtomicU64::new(0));
        let writer = {
            let (ctx, sent, root) = (ctx.clone(), sent.clone(), ctx.root);
            tokio::spawn(async move {
                let hashes = vec![root; 384];
                let mut id = 0u64;
                while !ctx.stopped() {
                    let msg = Message::Binary(wire::encode_ws_request(id, &hashes).into());
                    if tx.send(msg).await.is_err() {
                        break;
                    }
                    id += 1;
                    sent.store(id, Ordering::Relaxed);
                }
                let _ = timeout(Duration::from_secs(2), tx.close()).await;
            })
        };
        let mut seen = 0u64;
        let mut bad = None;
        loop {
            tokio::select! {
                m = rx.next() => match m {
                    Some(Ok(Message::Binary(data))) => match wire::decode_ws_response(&data, 400) {
                        Ok((id, blobs)) if id == seen && !blobs.is_empty() => {
                            // One socket's answers come back in order here: every request
                            // asks the same thing and takes the same time... mostly.
                            seen += 1;
                        }
                        Ok((_, blobs)) if !blobs.is_empty() => seen += 1,
                        Ok(_) => { bad = Some("empty answer".to_string()); break; }
                        Err(e) => { bad = Some(format!("undecodable answer: {e}")); break; }
                    },
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => {
                        if !ctx.stopped() {
                            bad = Some("socket ended during the flood".into());
                        }
                        break;
                    }
                },
                _ = ctx.sleep_or_stop(Duration::from_secs(3600)) => break,
            }
        }
        writer.abort();
        st.requests
            .fetch_add(sent.load(Ordering::Relaxed), Ordering::Relaxed);
        match bad {
            None => st.ok(),
            Some(e) => st.bad(e),
        }
        st.answers.fetch_add(seen, Ordering::Relaxed);
    }
}

/// Sends requests whose answers are large, pipelined, and never reads: the server must
/// stop reading (backpressure) and must not pin memory for them; it may cut the
/// connection. Cycles through HTTP, WebSocket and JSON-RPC.
async fn no_read(ctx: Ctx, st: Arc<AbuseStats>, which: usize) {
    let root = ctx.root;
    while !ctx.stopped() {
        st.attempts.fetch_add(1, Ordering::Relaxed);
        let t0 = Instant::now();
        let mode = which % 3;
        let result: Result<(), String> = async {
            if mode == 1 {
                let mut ws = ws_connect(&ctx.addr, Duration::from_secs(60)).await?;
                let hashes = vec![root; 384];
                let mut id = 0u64;
                loop {
                    let msg = Message::Binary(wire::encode_ws_request(id, &hashes).into());
                    match timeout(Duration::from_secs(1), ws.send(msg)).await {
                        Ok(Ok(())) => {
                            id += 1;
                            st.bytes_sent.fetch_add(384 * 33, Ordering::Relaxed);
                        }
                        Ok(Err(_)) => {
                            st.cut.fetch_add(1, Ordering::Relaxed);
                            st.held(t0.elapsed());
                            return Ok(());
                        }
                        Err(_) => break, // the server stopped reading
                    }
                    if ctx.stopped() {
                        return Ok(());
                    }
                }
                // Hold without reading; every second, see whether the server cut us.
                while !ctx.stopped() {
                    ctx.sleep_or_stop(Duration::from_secs(1)).await;
                    let ping = Message::Ping(Vec::new().into());
                    if let Ok(Err(_)) = timeout(Duration::from_millis(100), ws.send(ping)).await {
                        st.cut.fetch_add(1, Ordering::Relaxed);
                        st.held(t0.elapsed());
                        return Ok(());
                    }
                }
                Ok(())
            } else {
                let mut s = connect(&ctx.addr, Duration::from_secs(60)).await?;
                let req = if mode == 0 {
                    http_request(
                        "/v1/nodes",
                        "application/octet-stream",
                        &wire::encode_request(&vec![root; 384]),
                    )
                } else {
                    let keys: Vec<(H256, bool)> = vec![(root, false); 1000];
                    http_request(
                        "/",
                        "application/json",
                        wire::encode_rpc_batch(&keys).as_bytes(),
                    )
                };
                loop {
                    match timeout(Duration::from_secs(1), s.write_all(&req)).await {
                        Ok(Ok(())) => {
                            st.bytes_sent.fetch_add(req.len() as u64, Ordering::Relaxed);
                        }
                        Ok(Err(_)) => {
                            st.cut.fetch_add(1, Ordering::Relaxed);
                            st.held(t0.elapsed());
                            return Ok(());
                        }
                        Err(_) => break,
                    }
                    if ctx.stopped() {
                        return Ok(());
                    }
                }
                // The write is stuck: hold it; a write error means the server cut us.
                while !ctx.stopped() {
                    ctx.sleep_or_stop(Duration::from_secs(1)).await;
                    if let Ok(Err(_)) = timeout(Duration::from_millis(100), s.write_all(b"x")).await
                    {
                        st.cut.fetch_add(1, Ordering::Relaxed);
                        st.held(t0.elapsed());
                        return Ok(());
                    }
                }
                Ok(())
            }
        }
        .await;
        match result {
            Ok(()) => st.ok(),
            Err(_) => st.connect_failed(&ctx, Duration::from_millis(200)).await,
        }
    }
}

/// An idle TCP connection that never sends anything, reopened whenever the server cuts it.
async fn conn_flood(ctx: Ctx, st: Arc<AbuseStats>) {
    let open = || connect(&ctx.addr, Duration::from_secs(60));
    while let Some(mut s) = st.reconnect(&ctx, Duration::from_millis(500), open).await {
        let t0 = Instant::now();
        if wait_closed(&ctx, &mut s).await {
            st.cut.fetch_add(1, Ordering::Relaxed);
            st.held(t0.elapsed());
        }
        st.ok();
    }
}

/// An idle WebSocket, reopened whenever the server closes it.
async fn ws_idle(ctx: Ctx, st: Arc<AbuseStats>) {
    let open = || ws_connect(&ctx.addr, Duration::from_secs(60));
    while let Some(mut ws) = st.reconnect(&ctx, Duration::from_millis(500), open).await {
        let t0 = Instant::now();
        tokio::select! {
            _ = async { while let Some(Ok(_)) = ws.next().await {} } => {
                st.cut.fetch_add(1, Ordering::Relaxed);
                st.held(t0.elapsed());
            }
            _ = ctx.until_stop() => {}
        }
        st.ok();
    }
}

// ---------------------------------------------------------------------------------------
// The run

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1000.0
}

fn lat_json(mut lat: Vec<u32>) -> Value {
    lat.sort_unstable();
    json!({
        "count": lat.len(),
        "p50Ms": percentile(&lat, 0.50),
        "p90Ms": percentile(&lat, 0.90),
        "p99Ms": percentile(&lat, 0.99),
        "maxMs": percentile(&lat, 1.0),
    })
}

async fn get_info(addr: &str) -> Result<Value, String> {
    let s = connect(addr, Duration::from_secs(30)).await?;
    let mut s = BufReader::new(s);
    s.get_mut()
        .write_all(b"GET /v1/info HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let r = timeout(Duration::from_secs(30), read_response(&mut s, 1 << 20))
        .await
        .map_err(|_| "no answer to /v1/info in time".to_string())??;
    if r.status != 200 {
        return Err(format!("/v1/info: status {}", r.status));
    }
    serde_json::from_slice(&r.body).map_err(|e| e.to_string())
}

/// Machine-wide TCP counters: accept-queue overflows and SYN retransmissions.
fn tcp_counters() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/net/netstat").unwrap_or_default();
    let mut lines = s.lines().filter(|l| l.starts_with("TcpExt:"));
    let (Some(h), Some(v)) = (lines.next(), lines.next()) else {
        return (0, 0);
    };
    let pairs: HashMap<&str, u64> = h
        .split_whitespace()
        .zip(v.split_whitespace())
        .filter_map(|(k, v)| v.parse().ok().map(|v| (k, v)))
        .collect();
    (
        pairs.get("ListenOverflows").copied().unwrap_or(0),
        pairs.get("TCPSynRetrans").copied().unwrap_or(0),
    )
}

/// The 1-minute load average of the machine.
fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0.0)
}

fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default();
    let mem_kb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| {
                    l.split_whitespace()
                        .nth(1)
                        .and_then(|v| v.parse::<u64>().ok())
                })
        })
        .unwrap_or(0);
    json!({
        "cpu": model,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "memGiB": (mem_kb as f64 / 1048576.0 * 10.0).round() / 10.0,
    })
}

fn run(a: Args) -> Result<(Value, bool), String> {
    let t_start = Instant::now();
    let load_start = loadavg();
    let tcp_start = tcp_counters();
    let mut server = start_server(&a)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio: {e}"))?;
    let stop = Arc::new(AtomicBool::new(false));
    let ctx = Ctx {
        addr: server.addr.clone(),
        root: server.root,
        batch: a.batch,
        ws_depth: a.ws_depth,
        request_timeout: a.request_timeout,
        deadline: t_start + a.timeout,
        stop: stop.clone(),
        stop_notify: Arc::new(Notify::new()),
    };
    let info = rt.block_on(get_info(&ctx.addr))?;
    let body_timeout = Duration::from_millis(a.body_timeout_ms.unwrap_or(10_000));
    let header_timeout = Duration::from_millis(a.header_timeout_ms.unwrap_or(10_000));

    let (results, abuse, wall, good_started, server_cpu_during) = rt.block_on(async {
        // Abusers first.
        let mut abuse: Vec<(&'static str, usize, Arc<AbuseStats>)> = Vec::new();
        let mut abuser_tasks = Vec::new();
        let mut add = |name: &'static str, n: usize| {
            let st = Arc::new(AbuseStats::default());
            abuse.push((name, n, st.clone()));
            st
        };
        let st = add("slowloris", a.slowloris);
        for _ in 0..a.slowloris {
            abuser_tasks.push(tokio::spawn(slowloris(
                ctx.clone(),
                st.clone(),
                Duration::from_millis(200),
            )));
        }
        let st = add("oversized", a.oversized);
        for i in 0..a.oversized {
            abuser_tasks.push(tokio::spawn(oversized(
                ctx.clone(),
                st.clone(),
                i as u64,
                body_timeout,
            )));
        }
        let st = add("garbage", a.garbage);
        for i in 0..a.garbage {
            abuser_tasks.push(tokio::spawn(garbage(
                ctx.clone(),
                st.clone(),
                1000 + i as u64,
            )));
        }
        let st = add("ws-flood", a.ws_flood);
        for _ in 0..a.ws_flood {
            abuser_tasks.push(tokio::spawn(ws_flood(ctx.clone(), st.clone())));
        }
        let st = add("no-read", a.no_read);
        for i in 0..a.no_read {
            abuser_tasks.push(tokio::spawn(no_read(ctx.clone(), st.clone(), i)));
        }
        let st = add("ws-idle", a.ws_idle);
        for _ in 0..a.ws_idle {
            abuser_tasks.push(tokio::spawn(ws_idle(ctx.clone(), st.clone())));
        }
        let n_flood = a.conn_flood.unwrap_or(0);
        let st = add("conn-flood", n_flood);
        for _ in 0..n_flood {
            abuser_tasks.push(tokio::spawn(conn_flood(ctx.clone(), st.clone())));
        }
        if !abuser_tasks.is_empty() {
            tokio::time::sleep(a.abuse_lead).await;
        }

        // Then the good clients.
        let cpu0 = proc_cpu_seconds(server.pid).unwrap_or(0.0);
        let total: usize = a.mix.iter().sum();
        let mut good = Vec::new();
        let started = Instant::now();
        for i in 0..a.clients {
            // Interleave the transports in the proportions of the mix.
            let slot = i % total;
            let t = if slot < a.mix[0] {
                Transport::Http
            } else if slot < a.mix[0] + a.mix[1] {
                Transport::Ws
            } else {
                Transport::Rpc
            };
            let c = ctx.clone();
            let task = match t {
                Transport::Http => tokio::spawn(good_http(c, false)),
                Transport::Rpc => tokio::spawn(good_http(c, true)),
                Transport::Ws => tokio::spawn(good_ws(c)),
            };
            good.push((t, task));
        }
        let mut results = Vec::new();
        for (t, task) in good {
            let r = task.await.unwrap_or_else(|e| {
                let mut r = ClientResult::default();
                r.error(format!("client task failed: {e}"));
                r
            });
            results.push((t, r));
        }
        let wall = started.elapsed();
        let cpu1 = proc_cpu_seconds(server.pid).unwrap_or(cpu0);
        stop.store(true, Ordering::Relaxed);
        ctx.stop_notify.notify_waiters();
        // Abusers get a few seconds to wind down, then are dropped.
        let wind_down = Instant::now() + Duration::from_secs(5);
        for t in abuser_tasks {
            let left = wind_down.saturating_duration_since(Instant::now());
            let abort = t.abort_handle();
            if timeout(left, t).await.is_err() {
                abort.abort();
            }
        }
        (results, abuse, wall, started, cpu1 - cpu0)
    });
    let _ = good_started;

    // The server must still answer, and still be running.
    let info_after = rt.block_on(async {
        let mut last = Err(String::new());
        for _ in 0..30 {
            last = get_info(&ctx.addr).await;
            if last.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        last
    });
    let alive = server.alive();
    let hwm_kb = proc_status_kb(server.pid, "VmHWM:").unwrap_or(0);
    let rss_kb = proc_status_kb(server.pid, "VmRSS:").unwrap_or(0);
    let cpu_total = proc_cpu_seconds(server.pid).unwrap_or(0.0);
    let exit = server.stop();
    server.join_log();
    drop(rt);
    let tool_cpu = proc_cpu_seconds(std::process::id()).unwrap_or(0.0);
    let load_end = loadavg();
    let tcp_end = tcp_counters();

    // Aggregate.
    let secs = wall.as_secs_f64().max(1e-9);
    let mut all_lat = Vec::new();
    let mut per: HashMap<&str, (usize, Vec<u32>, Vec<f64>)> = HashMap::new();
    let (mut req, mut nodes, mut codes, mut bytes, mut wire_bytes) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let (mut errors, mut short, mut unfinished) = (0u64, 0u64, 0usize);
    let mut keepalive_retries = 0u64;
    let mut samples = Vec::new();
    let mut walk_sizes: HashSet<(u64, u64)> = HashSet::new();
    let mut client_secs: Vec<f64> = Vec::new();
    for (t, r) in &results {
        req += r.requests;
        nodes += r.nodes;
        codes += r.codes;
        bytes += r.blob_bytes;
        wire_bytes += r.wire_bytes;
        errors += r.errors;
        short += r.short;
        keepalive_retries += r.keepalive_retries;
        if !r.finished {
            unfinished += 1;
        } else {
            walk_sizes.insert((r.nodes, r.codes));
        }
        if let (Some(s), Some(e)) = (r.started, r.ended) {
            client_secs.push((e - s).as_secs_f64());
        }
        for e in &r.error_samples {
            if samples.len() < 10 {
                samples.push(format!("{}: {e}", t.name()));
            }
        }
        all_lat.extend_from_slice(&r.lat_us);
        let p = per.entry(t.name()).or_default();
        p.0 += 1;
        p.1.extend_from_slice(&r.lat_us);
        if let (Some(s), Some(e)) = (r.started, r.ended) {
            p.2.push((e - s).as_secs_f64());
        }
    }
    client_secs.sort_by(|x, y| x.partial_cmp(y).unwrap());
    let per_json: serde_json::Map<String, Value> = ["http", "ws", "rpc"]
        .iter()
        .filter_map(|k| {
            per.remove(k).map(|(n, lat, mut walk)| {
                let mut v = lat_json(lat);
                v["clients"] = json!(n);
                walk.sort_by(|x, y| x.partial_cmp(y).unwrap());
                v["walkSecondsMedian"] = json!(walk.get(walk.len() / 2).copied().unwrap_or(0.0));
                v["walkSecondsMax"] = json!(walk.last().copied().unwrap_or(0.0));
                (k.to_string(), v)
            })
        })
        .collect();
    let expected_nodes = info["nodes"].as_u64().unwrap_or(0);
    let expected_codes = info["codes"].as_u64().unwrap_or(0);
    let walks_complete = walk_sizes.len() <= 1
        && walk_sizes
            .iter()
            .all(|(n, c)| *n >= expected_nodes && *c == expected_codes);
    let abuse_json: Vec<Value> = abuse
        .iter()
        .filter(|(_, n, _)| *n > 0)
        .map(|(k, n, st)| st.to_json(k, *n))
        .collect();
    let abuse_unexpected: u64 = abuse
        .iter()
        .map(|(_, _, st)| st.unexpected.load(Ordering::Relaxed))
        .sum();
    let log = server.stderr.lock().unwrap();
    let pass = errors == 0
        && unfinished == 0
        && walks_complete
        && alive
        && info_after.is_ok()
        && abuse_unexpected == 0;
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let report = json!({
        "pass": pass,
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "state": {
            "spec": a.accounts,
            "root": server.root.to_hex(),
            "nodes": expected_nodes,
            "nodeBytes": info["nodeBytes"],
            "codes": expected_codes,
            "codeBytes": info["codeBytes"],
        },
        "good": {
            "clients": a.clients,
            "mix": {"http": a.mix[0], "ws": a.mix[1], "rpc": a.mix[2]},
            "wsDepth": a.ws_depth,
            "batch": a.batch,
            "unfinished": unfinished,
            "errors": errors,
            "shortAnswers": short,
            "keepAliveRetries": keepalive_retries,
            "errorSamples": samples,
            "walkNodes": walk_sizes.iter().map(|(n, _)| *n).max().unwrap_or(0),
            "walkCodes": walk_sizes.iter().map(|(_, c)| *c).max().unwrap_or(0),
            "walksComplete": walks_complete,
            "seconds": secs,
            "clientSecondsMin": client_secs.first().copied().unwrap_or(0.0),
            "clientSecondsMedian": client_secs.get(client_secs.len() / 2).copied().unwrap_or(0.0),
            "clientSecondsMax": client_secs.last().copied().unwrap_or(0.0),
            "requests": req,
            "items": nodes + codes,
            "blobMiB": mib(bytes),
            "wireMiB": mib(wire_bytes),
            "requestsPerSec": req as f64 / secs,
            "itemsPerSec": (nodes + codes) as f64 / secs,
            "blobMiBPerSec": mib(bytes) / secs,
            "wireMiBPerSec": mib(wire_bytes) / secs,
            "latency": lat_json(all_lat),
            "latencyByTransport": per_json,
        },
        "server": {
            "alive": alive,
            "answersAfter": info_after.is_ok(),
            "answersAfterError": info_after.err(),
            "exitStatus": exit,
            "baselineRssMiB": server.baseline_rss_kb as f64 / 1024.0,
            "peakRssSampledMiB": server.rss_peak_kb.load(Ordering::Relaxed) as f64 / 1024.0,
            "vmHwmMiB": hwm_kb as f64 / 1024.0,
            "rssAtEndMiB": rss_kb as f64 / 1024.0,
            "cpuSecondsDuringLoad": server_cpu_during,
            "cpuSecondsTotal": cpu_total,
            "summary": log.summary,
            "stderrLines": log.lines,
            "warnings": log.warnings,
            "stderrTail": log.tail.iter().rev().take(8).rev().cloned().collect::<Vec<_>>(),
        },
        "abuse": abuse_json,
        "limits": {
            "maxConnections": a.max_connections,
            "headerTimeoutMs": header_timeout.as_millis() as u64,
            "bodyTimeoutMs": body_timeout.as_millis() as u64,
        },
        "totalSeconds": t_start.elapsed().as_secs_f64(),
        "machine": machine(),
        "loadAverage": {"start": load_start, "end": load_end},
        "toolCpuSeconds": tool_cpu,
        "tcp": {
            "listenOverflows": tcp_end.0.saturating_sub(tcp_start.0),
            "synRetransmits": tcp_end.1.saturating_sub(tcp_start.1),
        },
        "startedUnix": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
            .saturating_sub(t_start.elapsed().as_secs()),
    });
    Ok((report, pass))
}

fn print_human(r: &Value) {
    let g = &r["good"];
    let s = &r["server"];
    let st = &r["state"];
    let l = &g["latency"];
    let f = |v: &Value| v.as_f64().unwrap_or(0.0);
    println!(
        "state: {} ({} nodes, {} codes, {:.1} MiB), root {}",
        st["spec"].as_str().unwrap_or(""),
        st["nodes"],
        st["codes"],
        f(&st["nodeBytes"]) / 1048576.0,
        st["root"].as_str().unwrap_or("")
    );
    println!(
        "good clients: {} (http {} ws {} rpc {}; ws depth {}, {} hashes per request)",
        g["clients"], g["mix"]["http"], g["mix"]["ws"], g["mix"]["rpc"], g["wsDepth"], g["batch"]
    );
    println!(
        "  finished: {} of {}; walk = {} nodes + {} codes each; complete: {}",
        g["clients"].as_u64().unwrap_or(0) - g["unfinished"].as_u64().unwrap_or(0),
        g["clients"],
        g["walkNodes"],
        g["walkCodes"],
        g["walksComplete"]
    );
    println!(
        "  {:.1} s: {} requests, {} items, {:.0} MiB of blobs ({:.0} MiB on the wire)",
        f(&g["seconds"]),
        g["requests"],
        g["items"],
        f(&g["blobMiB"]),
        f(&g["wireMiB"])
    );
    println!(
        "  throughput: {:.0} requests/s, {:.0} items/s, {:.1} MiB/s of blobs ({:.1} MiB/s on the wire)",
        f(&g["requestsPerSec"]),
        f(&g["itemsPerSec"]),
        f(&g["blobMiBPerSec"]),
        f(&g["wireMiBPerSec"])
    );
    println!(
        "  latency: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        f(&l["p50Ms"]),
        f(&l["p90Ms"]),
        f(&l["p99Ms"]),
        f(&l["maxMs"])
    );
    if let Some(m) = g["latencyByTransport"].as_object() {
        for (k, v) in m {
            println!(
                "    {k:<4} ({} clients, {} requests): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; walks: median {:.1} s, max {:.1} s",
                v["clients"],
                v["count"],
                f(&v["p50Ms"]),
                f(&v["p99Ms"]),
                f(&v["maxMs"]),
                f(&v["walkSecondsMedian"]),
                f(&v["walkSecondsMax"])
            );
        }
    }
    println!(
        "  client walk time: min {:.1} s, median {:.1} s, max {:.1} s",
        f(&g["clientSecondsMin"]),
        f(&g["clientSecondsMedian"]),
        f(&g["clientSecondsMax"])
    );
    println!(
        "  error answers: {} (short answers {}); requests sent again after a keep-alive close: {}",
        g["errors"], g["shortAnswers"], g["keepAliveRetries"]
    );
    if let Some(e) = g["errorSamples"].as_array() {
        for x in e {
            println!("    {}", x.as_str().unwrap_or(""));
        }
    }
    println!(
        "server: alive {}, answers after {}, memory: {:.0} MiB at start, peak (VmHWM) {:.0} MiB, {:.0} MiB at end; CPU {:.1} s during the load",
        s["alive"],
        s["answersAfter"],
        f(&s["baselineRssMiB"]),
        f(&s["vmHwmMiB"]),
        f(&s["rssAtEndMiB"]),
        f(&s["cpuSecondsDuringLoad"])
    );
    if let Some(sum) = s["summary"].as_str() {
        println!("  server's summary: {sum}");
    }
    if s["warnings"].as_u64().unwrap_or(0) > 0 {
        println!("  {} warnings logged; last lines:", s["warnings"]);
        for x in s["stderrTail"].as_array().into_iter().flatten() {
            println!("    {}", x.as_str().unwrap_or(""));
        }
    }
    if let Some(ab) = r["abuse"].as_array() {
        if !ab.is_empty() {
            println!("abusers:");
        }
        for x in ab {
            println!(
                "  {:<10} x{:<5} attempts {:<6} expected {:<6} unexpected {:<4} cut by server {:<6} max held {:.1} s, connect failures {}",
                x["kind"].as_str().unwrap_or(""),
                x["clients"],
                x["attempts"],
                x["expected"],
                x["unexpected"],
                x["cutByServer"],
                f(&x["maxHeldMs"]) / 1000.0,
                x["connectFailures"]
            );
            if x["requests"].as_u64().unwrap_or(0) > 0 {
                println!(
                    "      {} requests sent, {} answers received",
                    x["requests"], x["answers"]
                );
            }
            for smp in x["samples"].as_array().into_iter().flatten() {
                println!("      {}", smp.as_str().unwrap_or(""));
            }
        }
    }
    println!(
        "machine: {} x{} cores, {} GiB; load average {:.1} at the start, {:.1} at the end; this tool used {:.1} s of CPU",
        r["machine"]["cpu"].as_str().unwrap_or("?"),
        r["machine"]["cores"],
        r["machine"]["memGiB"],
        f(&r["loadAverage"]["start"]),
        f(&r["loadAverage"]["end"]),
        f(&r["toolCpuSeconds"])
    );
    println!(
        "tcp (machine-wide, during the run): {} accept-queue overflows, {} SYN retransmissions",
        r["tcp"]["listenOverflows"], r["tcp"]["synRetransmits"]
    );
    println!(
        "{} ({:.1} s in all)",
        if r["pass"].as_bool() == Some(true) {
            "PASS"
        } else {
            "FAIL"
        },
        f(&r["totalSeconds"])
    );
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("serve") {
        args.remove(0);
        // Limits that `triesync-peer` has no flag for (yet): taken out before its parser.
        let mut answer_memory = None;
        let mut write_timeout = None;
        let mut rest = Vec::new();
        let mut it = args.into_iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--answer-memory-mb" => {
                    answer_memory = it.next().and_then(|v| v.parse::<usize>().ok())
                }
                "--write-timeout-ms" => {
                    write_timeout = it.next().and_then(|v| v.parse::<u64>().ok())
                }
                _ => rest.push(a),
            }
        }
        match triesync_peer::cli::parse(rest) {
            Ok(triesync_peer::cli::Command::Run(mut opts)) => {
                if let Some(mb) = answer_memory {
                    opts.limits.answer_memory = mb << 20;
                }
                if let Some(ms) = write_timeout {
                    opts.limits.write_timeout = Some(Duration::from_millis(ms));
                }
                if let Err(e) = triesync_peer::run(*opts) {
                    eprintln!("triesync-loadtest serve: {e}");
                    std::process::exit(1);
                }
            }
            Ok(triesync_peer::cli::Command::Help) => print!("{}", triesync_peer::cli::USAGE),
            Err(e) => {
                eprintln!("triesync-loadtest serve: {e}");
                std::process::exit(2);
            }
        }
        return;
    }
    let a = match parse_args(args) {
        Ok(a) => a,
        Err(e) if e.is_empty() => {
            print!("{USAGE}");
            return;
        }
        Err(e) => {
            eprintln!("triesync-loadtest: {e}");
            std::process::exit(2);
        }
    };
    let (json, json_out) = (a.json, a.json_out.clone());
    match run(a) {
        Ok((report, pass)) => {
            if let Some(path) = json_out {
                if let Err(e) = std::fs::write(&path, format!("{report}\n")) {
                    eprintln!("triesync-loadtest: writing {path}: {e}");
                }
            }
            if json {
                println!("{report}");
            } else {
                print_human(&report);
            }
            let _ = std::io::stdout().flush();
            std::process::exit(if pass { 0 } else { 1 });
        }
        Err(e) => {
            eprintln!("triesync-loadtest: {e}");
            std::process::exit(1);
        }
    }
}
