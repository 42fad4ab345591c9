//! What every connection shares: the served state, the fault generator, limits, counters
//! and the logger.

use crate::faults::{self, FaultConfig, Plan, Rng, Transport};
use crate::rlpx::MAX_ANSWER_BYTES;
use crate::server::Registry;
use bytes::Bytes;
use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use triesync_core::state::BuiltState;
use triesync_core::H256;

/// Log verbosity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Only errors.
    Error,
    /// Errors and warnings.
    Warn,
    /// Startup, periodic and shutdown summaries.
    Info,
    /// One line per request.
    Debug,
}

impl std::str::FromStr for LogLevel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "error" => Ok(LogLevel::Error),
            "warn" => Ok(LogLevel::Warn),
            "info" => Ok(LogLevel::Info),
            "debug" | "trace" => Ok(LogLevel::Debug),
            _ => Err(format!(
                "unknown log level {s:?} (error, warn, info, debug)"
            )),
        }
    }
}

/// Server limits.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Time allowed to receive a request's headers (also the idle keep-alive timeout).
    pub header_timeout: Duration,
    /// Time allowed to receive a request's body.
    pub body_timeout: Duration,
    /// Most open connections; further ones wait in the accept backlog.
    pub max_connections: usize,
    /// Most requests being answered at once on one WebSocket; further messages are not
    /// read until one is answered.
    pub ws_in_flight: usize,
    /// How long a stalled request holds its connection before it is closed.
    pub stall_max: Duration,
    /// A connection whose answer makes no write progress for this long (its client stopped
    /// reading) is closed; `None`: the header timeout.
    pub write_timeout: Option<Duration>,
    /// Bytes of answers built and not yet written, over all connections, at most; a request
    /// whose answer does not fit waits until earlier answers are written (or their clients
    /// are cut off by the write timeout).
    pub answer_memory: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            max_connections: 1024,
            ws_in_flight: 16,
            stall_max: Duration::from_secs(600),
            write_timeout: None,
            answer_memory: 256 << 20,
        }
    }
}

fn limits_memory(limits: &Limits) -> usize {
    limits.answer_memory.max(64 * 1024)
}

/// Request and traffic counters, for the summary lines.
#[derive(Debug, Default)]
pub struct Stats {
    /// `POST /v1/nodes` requests.
    pub http_requests: AtomicU64,
    /// WebSocket connections.
    pub ws_sockets: AtomicU64,
    /// WebSocket request messages.
    pub ws_requests: AtomicU64,
    /// JSON-RPC HTTP posts.
    pub rpc_posts: AtomicU64,
    /// JSON-RPC calls (batch members counted one by one).
    pub rpc_calls: AtomicU64,
    /// Requests refused as malformed or too large.
    pub bad_requests: AtomicU64,
    /// Blobs sent.
    pub blobs: AtomicU64,
    /// Bytes of blobs sent.
    pub blob_bytes: AtomicU64,
    /// Whole-request faults injected (stall, close, 500, HTML, garbage).
    pub faults: AtomicU64,
    /// Idle connections closed to make room at the connection limit.
    pub evicted: AtomicU64,
    /// Answers that waited for memory (`Limits::answer_memory`).
    pub answer_waits: AtomicU64,
    /// Connections closed because their clients stopped reading while answers waited for
    /// memory.
    pub stalled_cut: AtomicU64,
}

fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// The state as served: both maps, a sorted key list for random picks and the info JSON.
#[derive(Debug)]
pub struct ServedState {
    /// The built state.
    pub built: BuiltState,
    /// A name for `/v1/info`.
    pub name: String,
    /// Every node hash, sorted (random real nodes for `--unrequested` and `--extra`).
    pub node_keys: Vec<H256>,
    /// The body of `GET /v1/info`.
    pub info_json: String,
}

impl ServedState {
    /// Wraps a built state.
    pub fn new(built: BuiltState, name: String) -> Self {
        let mut node_keys: Vec<H256> = built.nodes.keys().copied().collect();
        node_keys.sort_unstable();
        let info = serde_json::json!({
            "root": built.root.to_hex(),
            "nodes": built.nodes.len(),
            "nodeBytes": built.node_bytes(),
            "codes": built.codes.len(),
            "codeBytes": built.code_bytes(),
            "accounts": built.accounts,
            "name": name,
        });
        ServedState {
            info_json: info.to_string(),
            built,
            name,
            node_keys,
        }
    }

    /// The blob stored under `hash`: a trie node first, else a code.
    pub fn lookup(&self, hash: &H256) -> Option<&[u8]> {
        self.built
            .nodes
            .get(hash)
            .or_else(|| self.built.codes.get(hash))
            .map(Vec::as_slice)
    }
}

/// Everything a connection needs.
#[derive(Debug)]
pub struct App {
    /// The state served.
    pub state: ServedState,
    /// The faults to inject.
    pub faults: FaultConfig,
    fault_rng: Mutex<Rng>,
    /// The limits.
    pub limits: Limits,
    /// Counters.
    pub stats: Stats,
    /// Log verbosity.
    pub log_level: LogLevel,
    started: Instant,
    answer_budget: Arc<Semaphore>,
    /// The open connections.
    pub conns: Arc<Registry>,
}

/// While an answer waits for memory, connections whose writes have waited this long for
/// their clients to read are closed (they hold memory and do not read).
pub const CUT_STALLED_MS: u64 = 1000;

/// An answer's bytes together with their share of the answer memory, released when the
/// last reference to the bytes is dropped (once they are written, or the connection is).
#[derive(Debug)]
struct Budgeted {
    data: Vec<u8>,
    _permit: OwnedSemaphorePermit,
}

impl AsRef<[u8]> for Budgeted {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

/// An answer to a list of hashes, before framing.
#[derive(Debug)]
pub struct Answer<'a> {
    /// The blobs, requested ones first, then unrequested and extra ones.
    pub blobs: Vec<Cow<'a, [u8]>>,
    /// How many asked hashes the state holds.
    pub found: usize,
    /// How many found blobs were left out (omit fault or size cap).
    pub left_out: usize,
    /// How many blobs were corrupted.
    pub corrupted: usize,
    /// How many unasked blobs were added.
    pub added: usize,
}

impl App {
    /// A new app.
    pub fn new(
        state: ServedState,
        faults: FaultConfig,
        limits: Limits,
        log_level: LogLevel,
    ) -> Self {
        App {
            fault_rng: Mutex::new(Rng::new(faults.seed)),
            state,
            faults,
            stats: Stats::default(),
            log_level,
            started: Instant::now(),
            answer_budget: Arc::new(Semaphore::new(limits_memory(&limits))),
            conns: Arc::new(Registry::default()),
            limits,
        }
    }

    /// Reserves `bytes` of the answer memory (`Limits::answer_memory`), waiting until
    /// earlier answers are written if it is used up. An answer larger than the whole budget
    /// takes all of it.
    pub async fn reserve(&self, bytes: usize) -> OwnedSemaphorePermit {
        let n = bytes
            .clamp(1, limits_memory(&self.limits))
            .min(u32::MAX as usize) as u32;
        let sem = self.answer_budget.clone();
        if let Ok(p) = sem.clone().try_acquire_many_owned(n) {
            return p;
        }
        add(&self.stats.answer_waits, 1);
        // Wait in line (the semaphore is fair); meanwhile cut clients that stopped reading.
        let acquire = sem.acquire_many_owned(n);
        tokio::pin!(acquire);
        loop {
            let cut = self.conns.cut_stalled(CUT_STALLED_MS);
            add(&self.stats.stalled_cut, cut as u64);
            tokio::select! {
                p = &mut acquire => return p.expect("never closed"),
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
        }
    }

    /// `data` as bytes that hold `permit` until they are dropped.
    pub fn budgeted(&self, data: Vec<u8>, mut permit: OwnedSemaphorePermit) -> Bytes {
        // Give back what was reserved beyond the final size.
        let keep = data.len().max(1);
        if permit.num_permits() > keep {
            drop(permit.split(permit.num_permits() - keep));
        }
        Bytes::from_owner(Budgeted {
            data,
            _permit: permit,
        })
    }

    /// Writes a log line to stderr when `level` is enabled.
    pub fn log(&self, level: LogLevel, msg: impl FnOnce() -> String) {
        if level <= self.log_level {
            let tag = match level {
                LogLevel::Error => "ERROR",
                LogLevel::Warn => "WARN",
                LogLevel::Info => "INFO",
                LogLevel::Debug => "DEBUG",
            };
            eprintln!(
                "{:>9.3}s {tag} {}",
                self.started.elapsed().as_secs_f64(),
                msg()
            );
        }
    }

    /// The fault decisions for the next request (one draw from the seeded sequence).
    pub fn plan(&self, transport: Transport) -> Plan {
        let seed = self
            .fault_rng
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .next_u64();
        let plan = Plan::draw(&self.faults, seed, transport);
        if plan.fault != faults::RequestFault::None {
            add(&self.stats.faults, 1);
        }
        plan
    }

    /// Counts a refused request.
    pub fn count_bad(&self) {
        add(&self.stats.bad_requests, 1);
    }

    /// Counts one request of a kind.
    pub fn count(&self, which: fn(&Stats) -> &AtomicU64, n: u64) {
        add(which(&self.stats), n);
    }

    /// Counts blobs sent.
    pub fn count_sent<B: AsRef<[u8]>>(&self, blobs: &[B]) {
        add(&self.stats.blobs, blobs.len() as u64);
        add(
            &self.stats.blob_bytes,
            blobs.iter().map(|b| b.as_ref().len() as u64).sum(),
        );
    }

    /// Answers `hashes` with the per-blob faults of `plan`: corrupt, omit, the 2 MiB cap,
    /// unrequested and extra blobs.
    pub fn answer<'a>(&'a self, hashes: &[H256], plan: &mut Plan) -> Answer<'a> {
        let f = &self.faults;
        let rng = &mut plan.rng;
        let mut ans = Answer {
            blobs: Vec::new(),
            found: 0,
            left_out: 0,
            corrupted: 0,
            added: 0,
        };
        let mut bytes = 0usize;
        for h in hashes {
            let Some(blob) = self.state.lookup(h) else {
                continue;
            };
            ans.found += 1;
            let omit = rng.chance(f.omit);
            let corrupt = rng.chance(f.corrupt);
            if omit || bytes >= MAX_ANSWER_BYTES {
                ans.left_out += 1;
                continue;
            }
            bytes += blob.len();
            if corrupt {
                ans.corrupted += 1;
                ans.blobs.push(Cow::Owned(faults::corrupt(blob, rng)));
            } else {
                ans.blobs.push(Cow::Borrowed(blob));
            }
        }
        if plan.flood {
            faults::repeat_first(&mut ans.blobs, f.repeat_blob);
        }
        let added = self.unasked(hashes, plan);
        ans.added = added.len();
        ans.blobs.extend(added);
        ans
    }

    /// The blobs nobody asked for that `plan` adds: with `--unrequested`, 1 to 3 random
    /// real nodes and one blob of random bytes; with `--extra N`, N random real nodes. Nodes
    /// in `asked` are never picked.
    pub fn unasked<'a>(&'a self, asked: &[H256], plan: &mut Plan) -> Vec<Cow<'a, [u8]>> {
        let rng = &mut plan.rng;
        let keys = &self.state.node_keys;
        let asked: HashSet<&H256> = asked.iter().collect();
        let mut out = Vec::new();
        let random_nodes = |n: usize, rng: &mut Rng, out: &mut Vec<Cow<'a, [u8]>>| {
            let mut added = 0;
            // Bounded tries: a state with fewer unasked nodes than `n` gives fewer.
            for _ in 0..n * 8 {
                if added == n || keys.is_empty() {
                    break;
                }
                let k = &keys[rng.below(keys.len())];
                if !asked.contains(k) {
                    out.push(Cow::Borrowed(self.state.built.nodes[k].as_slice()));
                    added += 1;
                }
            }
        };
        if plan.unrequested {
            let n = 1 + rng.below(3);
            random_nodes(n, rng, &mut out);
            let len = 1 + rng.below(600);
            out.push(Cow::Owned(rng.bytes(len)));
        }
        if self.faults.extra > 0 {
            random_nodes(self.faults.extra, rng, &mut out);
        }
        out
    }

    /// The summary line of the counters.
    pub fn summary(&self) -> String {
        let s = &self.stats;
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "summary: up {:.1}s; http {} requests; ws {} sockets {} requests; rpc {} posts {} calls; \
             {} bad requests; sent {} blobs {} bytes; {} request faults injected; \
             {} idle connections closed at the limit; {} answers waited for memory; \
             {} connections of clients that stopped reading closed",
            self.started.elapsed().as_secs_f64(),
            g(&s.http_requests),
            g(&s.ws_sockets),
            g(&s.ws_requests),
            g(&s.rpc_posts),
            g(&s.rpc_calls),
            g(&s.bad_requests),
            g(&s.blobs),
            g(&s.blob_bytes),
            g(&s.faults),
            g(&s.evicted),
            g(&s.answer_waits),
            g(&s.stalled_cut),
        )
    }

    /// A number that changes whenever any request was served (for periodic summaries).
    pub fn activity(&self) -> u64 {
        let s = &self.stats;
        [
            &s.http_requests,
            &s.ws_requests,
            &s.rpc_posts,
            &s.bad_requests,
            &s.ws_sockets,
        ]
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .sum()
    }
}
