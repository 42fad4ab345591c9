//! The sync driver (go-ethereum's `downloader/statesync.go`): runs a [`Scheduler`] against
//! a set of peers and a store. Async and executor-agnostic: it needs only a [`Clock`], so
//! the browser runs it on wasm-bindgen-futures and tests on any executor.

use crate::hash::{keccak256, H256};
use crate::peer::{Clock, Peer, PeerError};
use crate::scheduler::{ProcessError, Scheduler};
use crate::store::{ItemKey, Kind, Store, StoreError, SyncMeta};
use futures::channel::mpsc;
use futures::future::{self, AbortHandle, Abortable, Either, LocalBoxFuture};
use futures::stream::{FuturesUnordered, StreamExt};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::time::Duration;

/// Tunables of a sync.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// Write the batch once its bytes reach this (geth's `IdealBatchSize`).
    pub batch_bytes: usize,
    /// A request not answered in this time fails.
    pub request_timeout: Duration,
    /// Most items asked of a peer at once (the protocol's limit).
    pub max_request_items: usize,
    /// Items in a peer's first request, before its rate is known.
    pub initial_request_items: usize,
    /// Most code items in one request: keeps a protocol-following answer under 2 MiB
    /// (code is at most 24 KiB), so an omitted code really means the peer lacks it.
    pub max_codes_per_request: usize,
    /// Requests in flight to one peer at once.
    pub max_in_flight_per_peer: usize,
    /// A peer is dropped after this many failed requests in a row, or this many answers
    /// carrying data that hashed to nothing asked.
    pub peer_failure_limit: u32,
    /// The answer time a peer's request size is tuned to.
    pub target_rtt: Duration,
    /// Items looked up in the store at once.
    pub check_chunk: usize,
    /// After a failed request (connection, status, malformed; not a timeout) the peer is
    /// not asked again for this long, doubled per failure in a row (up to 32 times): a
    /// briefly restarting peer is not used up by the failure limit in milliseconds.
    pub failure_rest: Duration,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            batch_bytes: 100 * 1024,
            request_timeout: Duration::from_secs(10),
            max_request_items: 384,
            initial_request_items: 64,
            max_codes_per_request: 64,
            max_in_flight_per_peer: 2,
            peer_failure_limit: 3,
            target_rtt: Duration::from_millis(500),
            check_chunk: 2048,
            failure_rest: Duration::from_millis(250),
        }
    }
}

/// Why a sync stopped without completing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyncError {
    /// Cancelled by the caller; everything complete so far was written.
    #[error("sync cancelled")]
    Cancelled,
    /// No usable peer is left.
    #[error("no usable peer left ({dropped} dropped)")]
    NoPeers {
        /// How many peers were dropped for misbehaving or failing.
        dropped: usize,
    },
    /// Every usable peer was asked for an item and none had it.
    #[error("item {hash} is not available from any peer")]
    Unavailable {
        /// The item's hash.
        hash: H256,
    },
    /// The root's trie contains an invalid node or account (the root itself is wrong, or
    /// it is not a state root).
    #[error("invalid state: {0}")]
    InvalidState(String),
    /// The store failed; nothing of the failed batch was written.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl SyncError {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            SyncError::Cancelled => "CANCELLED",
            SyncError::NoPeers { .. } => "NO_PEERS",
            SyncError::Unavailable { .. } => "UNAVAILABLE",
            SyncError::InvalidState(_) => "INVALID_STATE",
            SyncError::Store(StoreError::QuotaExceeded) => "QUOTA_EXCEEDED",
            SyncError::Store(StoreError::Locked) => "LOCKED",
            SyncError::Store(_) => "STORE",
        }
    }
}

/// One peer's figures.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerStats {
    /// The peer's id.
    pub id: String,
    /// Requests sent.
    pub requests: u64,
    /// Items delivered that were taken.
    pub items: u64,
    /// Bytes of those items.
    pub bytes: u64,
    /// Requests that timed out.
    pub timeouts: u64,
    /// Requests that failed otherwise (status, connection, malformed answer).
    pub failures: u64,
    /// Blobs that hashed to nothing asked (corrupt or unrequested).
    pub rejected: u64,
    /// Items it was asked for and did not deliver.
    pub omitted: u64,
    /// Items asked per request now.
    pub capacity: u32,
    /// Requests in flight now.
    pub in_flight: u32,
    /// Why it was dropped, if it was.
    pub dropped: Option<String>,
}

/// Where the time went, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Timings {
    /// Hashing, decoding and scheduling delivered blobs.
    pub process_ms: f64,
    /// Writing batches.
    pub commit_ms: f64,
    /// Looking items up in the store.
    pub check_ms: f64,
    /// Waiting in the main loop, in all: `peer_wait_ms + write_wait_ms`.
    pub wait_ms: f64,
    /// Waiting for peers' answers (requests in flight, fetching not held back).
    pub peer_wait_ms: f64,
    /// Waiting for the background write: held back by back-pressure, or nothing in flight
    /// and only the write pending. (Writes awaited outside the main loop, such as the last
    /// one on exit, are in `commit_ms` only.)
    pub write_wait_ms: f64,
}

/// Progress after a commit, and the final report.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    /// The root being synced.
    pub root: H256,
    /// True once the whole trie under `root` is in the store.
    pub complete: bool,
    /// Trie nodes written by this run.
    pub nodes: u64,
    /// Bytes of those nodes.
    pub node_bytes: u64,
    /// Codes written by this run.
    pub codes: u64,
    /// Bytes of those codes.
    pub code_bytes: u64,
    /// Items found already in the store (not fetched).
    pub found_in_store: u64,
    /// Items in the scheduler's frontier.
    pub pending: u64,
    /// Blobs delivered twice.
    pub duplicates: u64,
    /// Blobs that hashed to nothing asked.
    pub rejected: u64,
    /// Valid blobs that a peer sent without being asked in that request.
    pub unrequested: u64,
    /// Batches written by this run.
    pub batches: u64,
    /// Items taken from verified data kept across a stop or a root change instead of
    /// being fetched again.
    pub reused: u64,
    /// Milliseconds since the run started.
    pub elapsed_ms: f64,
    /// Where the time went.
    pub timings: Timings,
    /// Per peer.
    pub peers: Vec<PeerStats>,
}

enum Command {
    AddPeer(Rc<dyn Peer>),
    RemovePeer(String),
    SetRoot(H256),
    Cancel,
}

/// Controls a running sync from outside: peers, root, cancellation. Cheap to clone.
#[derive(Clone)]
pub struct SyncHandle {
    tx: mpsc::UnboundedSender<Command>,
}

impl std::fmt::Debug for SyncHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SyncHandle")
    }
}

impl SyncHandle {
    /// Adds a peer (before or during the run).
    pub fn add_peer(&self, peer: Rc<dyn Peer>) {
        let _ = self.tx.unbounded_send(Command::AddPeer(peer));
    }
    /// Removes a peer by id: its requests in flight are abandoned at once (their futures
    /// dropped, so the transport cancels them) and their items retried elsewhere, and the
    /// peer is closed.
    pub fn remove_peer(&self, id: &str) {
        let _ = self.tx.unbounded_send(Command::RemovePeer(id.to_string()));
    }
    /// Switches to a new root; what was committed stays and is not fetched again.
    pub fn set_root(&self, root: H256) {
        let _ = self.tx.unbounded_send(Command::SetRoot(root));
    }
    /// Stops the sync after writing every complete item it holds.
    pub fn cancel(&self) {
        let _ = self.tx.unbounded_send(Command::Cancel);
    }
}

/// A peer as the driver tracks it.
struct PeerSlot {
    peer: Rc<dyn Peer>,
    stats: PeerStats,
    /// Items per request, tuned to the peer's measured rate.
    capacity: f64,
    /// Failed requests in a row.
    failures_in_row: u32,
    /// Answers that carried data nobody asked for.
    bad_answers: u32,
    /// Its requests in flight, by request id: aborted when it is removed or dropped.
    pending: HashMap<u64, AbortHandle>,
    /// Not asked until this time (ms) after a failure.
    rest_until: f64,
    /// Its answer time for almost nothing (ms): the fastest answer to a request of at most
    /// [`PROBE_ITEMS`] items; infinite until one came.
    latency: f64,
}

/// A request this small measures a peer's latency rather than its rate; a peer's first
/// requests are this small until one is answered.
const PROBE_ITEMS: usize = 16;

impl PeerSlot {
    fn usable(&self) -> bool {
        self.stats.dropped.is_none()
    }
}

/// The outcome of one request.
struct Answer {
    peer: usize,
    request: u64,
    generation: u64,
    keys: Vec<ItemKey>,
    sent: f64,
    /// `None` if abandoned because its peer was removed or dropped.
    result: Option<Result<Vec<Vec<u8>>, PeerError>>,
}

/// One sync run. Create with [`Syncer::new`], add peers through the handle, then `run`.
pub struct Syncer {
    root: H256,
    config: SyncConfig,
    rx: mpsc::UnboundedReceiver<Command>,
}

impl std::fmt::Debug for Syncer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Syncer").field("root", &self.root).finish()
    }
}

impl Syncer {
    /// A sync of `root` and its controlling handle.
    pub fn new(root: H256, config: SyncConfig) -> (Syncer, SyncHandle) {
        let (tx, rx) = mpsc::unbounded();
        (Syncer { root, config, rx }, SyncHandle { tx })
    }

    /// Runs to completion, cancellation or failure, calling `on_progress` after every
    /// commit. On every exit path the items complete so far are written first (unless the
    /// store itself failed), so nothing verified is lost.
    pub async fn run<S: Store, C: Clock>(
        self,
        store: &S,
        clock: &C,
        on_progress: &mut dyn FnMut(&Progress),
    ) -> Result<Progress, SyncError> {
        let meta = store.meta().await?;
        // Nodes a graceful stop kept: verified once, re-hashed here, used if still wanted.
        let verified = store
            .frontier()
            .await?
            .into_iter()
            .map(|b| (keccak256(&b), b))
            .collect();
        let mut run = Run {
            config: self.config,
            clock,
            store,
            started: clock.now_ms(),
            // On a store that never held anything, account-trie nodes need no lookup.
            sched: Scheduler::new(self.root, meta.is_some()),
            meta: meta.unwrap_or_default(),
            peers: Vec::new(),
            in_flight: FuturesUnordered::new(),
            omitted_by: HashMap::new(),
            verified,
            progress: Progress {
                root: self.root,
                ..Progress::default()
            },
            cancelled: false,
            generation: 0,
            next_request: 0,
            writing: None,
        };
        run.meta.root = self.root;
        run.meta.complete = false;
        let mut rx = self.rx;
        let result = run.main_loop(&mut rx, on_progress).await;
        run.finish(result, on_progress).await
    }
}

struct Run<'a, S, C> {
    config: SyncConfig,
    clock: &'a C,
    store: &'a S,
    started: f64,
    sched: Scheduler,
    meta: SyncMeta,
    peers: Vec<PeerSlot>,
    in_flight: FuturesUnordered<LocalBoxFuture<'static, Answer>>,
    /// Items a peer answered without: not asked of that peer again.
    omitted_by: HashMap<ItemKey, HashSet<usize>>,
    /// Verified blobs not wanted yet (from a saved frontier, an old root's frontier or late
    /// answers to an old root's requests), used instead of fetching when they are.
    verified: HashMap<H256, Vec<u8>>,
    progress: Progress,
    cancelled: bool,
    /// Bumped on a root change: answers to older requests are ignored.
    generation: u64,
    /// Id of the next request sent.
    next_request: u64,
    /// The batch being written while fetching and verifying go on (one at a time).
    writing: Option<Writing<'a>>,
}

/// A batch write in progress and what it will mean once it lands.
struct Writing<'a> {
    future: LocalBoxFuture<'a, Result<(), StoreError>>,
    meta: SyncMeta,
    counts: [u64; 4],
    started: f64,
}

/// What ended a wait of the main loop.
enum Event {
    Answer(Option<Answer>),
    Command(Option<Command>),
    Written(Result<(), StoreError>),
    /// A peer's rest after a failure ended.
    Rested,
}

impl<'a, S: Store + 'a, C: Clock> Run<'a, S, C> {
    async fn main_loop(
        &mut self,
        rx: &mut mpsc::UnboundedReceiver<Command>,
        on_progress: &mut dyn FnMut(&Progress),
    ) -> Result<(), SyncError> {
        loop {
            while let Ok(cmd) = rx.try_recv() {
                self.apply(cmd, on_progress).await?;
            }
            if self.cancelled {
                return Err(SyncError::Cancelled);
            }
            // A store lookup would queue behind the write in progress (IndexedDB runs a read
            // transaction only after an overlapping write): look up between writes.
            if self.writing.is_none() {
                self.resolve_checks().await?;
            }
            if self.writing.is_none() && self.sched.batch_bytes() >= self.config.batch_bytes {
                // Written in the background: the network and hashing do not wait for disk.
                self.start_write(None);
            }
            if self.sched.is_done() {
                return Ok(());
            }
            // Back-pressure: while a write is slow, stop fetching once the next batch is
            // a few batches big, so memory stays bounded by the disk's pace.
            let backlog =
                self.writing.is_some() && self.sched.batch_bytes() >= 4 * self.config.batch_bytes;
            // One instant for assigning and for the rest check below: a rest that ends in
            // between must be waited for (at once), not taken for "no request possible".
            let now = self.clock.now_ms();
            let stuck = if backlog { None } else { self.assign(now) };
            if self.in_flight.is_empty()
                && self.writing.is_none()
                && self.sched.has_pending_checks()
            {
                // Data at hand (kept from an earlier run) advanced the sync: go round again.
                continue;
            }
            if self.in_flight.is_empty() && self.writing.is_none() {
                if !self.peers.iter().any(PeerSlot::usable) {
                    let dropped = self.peers.len();
                    return Err(SyncError::NoPeers { dropped });
                }
                if let Some(hash) = stuck {
                    return Err(SyncError::Unavailable { hash });
                }
                if self.sched.fetchable() == 0 {
                    // Only reachable if a blob we hold refers to nothing we can ask for.
                    return Err(SyncError::InvalidState(
                        "scheduler has nothing to fetch".into(),
                    ));
                }
            }
            let rest_end = self.rest_end(now);
            if self.in_flight.is_empty() && self.writing.is_none() && rest_end.is_none() {
                // Nothing could wake the loop but a command: say so rather than hang.
                return Err(SyncError::InvalidState("no request could be made".into()));
            }
            // Only the write can let the driver go on when it is held back by back-pressure
            // or has nothing in flight: that wait is the store's, any other the peers'.
            let for_write = self.writing.is_some() && (backlog || self.in_flight.is_empty());
            let waited = self.clock.now_ms();
            let event = self.next_event(rx, rest_end).await;
            let dt = self.clock.now_ms() - waited;
            let timings = &mut self.progress.timings;
            timings.wait_ms += dt;
            if for_write {
                timings.write_wait_ms += dt;
            } else {
                timings.peer_wait_ms += dt;
            }
            match event {
                Event::Answer(Some(answer)) => self.handle_answer(answer)?,
                Event::Command(Some(cmd)) => self.apply(cmd, on_progress).await?,
                Event::Written(result) => {
                    let writing = self.writing.take().expect("a write was in progress");
                    self.write_done(writing, result, on_progress)?;
                }
                Event::Answer(None) | Event::Command(None) | Event::Rested => {}
            }
        }
    }

    /// When the first usable peer resting at `now` after a failure may be asked again, if
    /// any is.
    fn rest_end(&self, now: f64) -> Option<f64> {
        self.peers
            .iter()
            .filter(|s| s.usable() && s.rest_until > now)
            .map(|s| s.rest_until)
            .min_by(f64::total_cmp)
    }

    /// Waits for an answer, a command, the running write or the end of a peer's rest
    /// (`rest_end`), whichever comes first.
    async fn next_event(
        &mut self,
        rx: &mut mpsc::UnboundedReceiver<Command>,
        rest_end: Option<f64>,
    ) -> Event {
        let written = async {
            match self.writing.as_mut() {
                Some(w) => (&mut w.future).await,
                None => future::pending().await,
            }
        };
        // An empty FuturesUnordered is ready at once (with None): waiting on it would spin
        // without ever yielding, and in a browser the write it waits for could never land.
        let answer = async {
            match self.in_flight.is_empty() {
                true => future::pending().await,
                false => self.in_flight.next().await,
            }
        };
        let rested = match rest_end {
            Some(end) => {
                let ms = (end - self.clock.now_ms()).max(0.0);
                Either::Left(self.clock.sleep(Duration::from_secs_f64(ms / 1000.0)))
            }
            None => Either::Right(future::pending()),
        };
        // Biased: a landed write and commands first, so a stream of ready answers can
        // neither starve the commit nor delay a cancel.
        match future::select(
            future::select(Box::pin(written), rx.next()),
            future::select(Box::pin(answer), rested),
        )
        .await
        {
            Either::Left((Either::Left((r, _)), _)) => Event::Written(r),
            Either::Left((Either::Right((c, _)), _)) => Event::Command(c),
            Either::Right((Either::Left((a, _)), _)) => Event::Answer(a),
            Either::Right((Either::Right(((), _)), _)) => Event::Rested,
        }
    }

    async fn apply(
        &mut self,
        cmd: Command,
        on_progress: &mut dyn FnMut(&Progress),
    ) -> Result<(), SyncError> {
        match cmd {
            Command::AddPeer(peer) => {
                let stats = PeerStats {
                    id: peer.id().to_string(),
                    ..PeerStats::default()
                };
                let capacity = self.config.initial_request_items as f64;
                self.peers.push(PeerSlot {
                    peer,
                    stats,
                    capacity,
                    failures_in_row: 0,
                    bad_answers: 0,
                    pending: HashMap::new(),
                    rest_until: 0.0,
                    latency: f64::INFINITY,
                });
            }
            Command::RemovePeer(id) => {
                for idx in 0..self.peers.len() {
                    if self.peers[idx].stats.id == id {
                        self.drop_peer(idx, "removed".into());
                    }
                }
            }
            Command::SetRoot(root) => {
                if root != self.sched.root() {
                    // Keep every complete subtrie of the old root, then start over: the
                    // store lookups skip whatever the two roots share.
                    self.commit(on_progress).await?;
                    // Answers to the old root's requests still arrive and are kept if
                    // verified; so is the old frontier.
                    self.generation += 1;
                    let old = std::mem::replace(&mut self.sched, Scheduler::new(root, true));
                    self.verified
                        .extend(old.waiting().into_iter().map(|b| (keccak256(&b), b)));
                    self.omitted_by.clear();
                    self.meta.root = root;
                    self.progress.root = root;
                }
            }
            Command::Cancel => self.cancelled = true,
        }
        Ok(())
    }

    fn abandon_in_flight(&mut self) {
        self.in_flight = FuturesUnordered::new();
        for slot in &mut self.peers {
            slot.stats.in_flight = 0;
        }
    }

    /// Stops using a peer: its requests in flight are aborted (they come back at once as
    /// abandoned and their items are retried elsewhere) and it is closed, once.
    fn drop_peer(&mut self, idx: usize, reason: String) {
        let slot = &mut self.peers[idx];
        if !slot.usable() {
            return;
        }
        slot.stats.dropped = Some(reason);
        for (_, handle) in slot.pending.drain() {
            handle.abort();
        }
        slot.peer.close();
    }

    async fn resolve_checks(&mut self) -> Result<(), SyncError> {
        loop {
            let keys = self.sched.pending_checks(self.config.check_chunk);
            if keys.is_empty() {
                return Ok(());
            }
            let t = self.clock.now_ms();
            let present = self.store.contains(&keys).await?;
            self.progress.timings.check_ms += self.clock.now_ms() - t;
            for (key, present) in keys.into_iter().zip(present) {
                self.sched.resolve_check(key, present);
            }
        }
    }

    /// Gives every idle usable peer a request. Returns an item that every usable peer has
    /// already failed to deliver, if the queue holds one.
    fn assign(&mut self, now: f64) -> Option<H256> {
        let mut stuck = None;
        let usable: Vec<usize> = (0..self.peers.len())
            .filter(|&i| self.peers[i].usable())
            .collect();
        for &idx in &usable {
            if self.peers[idx].rest_until > now {
                continue;
            }
            while (self.peers[idx].stats.in_flight as usize) < self.config.max_in_flight_per_peer {
                let slot = &self.peers[idx];
                let mut want = slot.capacity.round().max(1.0) as usize;
                if slot.latency.is_infinite() {
                    want = want.min(PROBE_ITEMS);
                }
                let popped = self.sched.missing(want);
                if popped.is_empty() {
                    break;
                }
                let popped = self.take_from_verified(popped);
                if popped.is_empty() {
                    continue;
                }
                let mut keys = Vec::with_capacity(popped.len());
                let mut skipped = Vec::new();
                let mut codes = 0;
                for key in popped {
                    let omitted = self.omitted_by.get(&key);
                    if omitted.is_some_and(|set| set.contains(&idx)) {
                        if omitted.is_some_and(|set| usable.iter().all(|p| set.contains(p))) {
                            stuck = Some(key.hash);
                        }
                        skipped.push(key);
                    } else if key.kind == Kind::Code && codes >= self.config.max_codes_per_request {
                        skipped.push(key);
                    } else {
                        codes += usize::from(key.kind == Kind::Code);
                        keys.push(key);
                    }
                }
                self.sched.retry(&skipped);
                if keys.is_empty() {
                    break;
                }
                self.send(idx, keys);
            }
        }
        stuck
    }

    /// Processes the popped keys whose data is already at hand; returns the rest.
    fn take_from_verified(&mut self, popped: Vec<ItemKey>) -> Vec<ItemKey> {
        if self.verified.is_empty() {
            return popped;
        }
        let mut rest = Vec::with_capacity(popped.len());
        for key in popped {
            let reused = match self.verified.remove(&key.hash) {
                Some(blob) => self.sched.process_hashed(key.hash, blob).is_ok(),
                None => false,
            };
            if reused {
                self.progress.reused += 1;
            } else {
                rest.push(key);
            }
        }
        rest
    }

    fn send(&mut self, idx: usize, keys: Vec<ItemKey>) {
        let request = self.next_request;
        self.next_request += 1;
        let (abort, registration) = AbortHandle::new_pair();
        let slot = &mut self.peers[idx];
        slot.stats.requests += 1;
        slot.stats.in_flight += 1;
        slot.pending.insert(request, abort);
        let fetch = slot.peer.fetch(keys.clone());
        let timeout = self.clock.sleep(self.config.request_timeout);
        let generation = self.generation;
        let sent = self.clock.now_ms();
        let answer = async move {
            // Dropping the losing fetch cancels it (the Peer contract).
            match future::select(fetch, timeout).await {
                Either::Left((r, _)) => r,
                Either::Right(_) => Err(PeerError::Timeout),
            }
        };
        self.in_flight.push(Box::pin(async move {
            // Aborted (peer removed or dropped): the fetch is dropped here, cancelling it.
            let result = Abortable::new(answer, registration).await.ok();
            Answer {
                peer: idx,
                request,
                generation,
                keys,
                sent,
                result,
            }
        }));
    }

    fn handle_answer(&mut self, answer: Answer) -> Result<(), SyncError> {
        let Answer {
            peer: idx,
            request,
            generation,
            keys,
            sent,
            result,
        } = answer;
        let elapsed = (self.clock.now_ms() - sent).max(1.0);
        self.peers[idx].stats.in_flight -= 1;
        self.peers[idx].pending.remove(&request);
        let Some(result) = result else {
            // Abandoned with its peer: the items go back to the queue for another peer.
            if generation == self.generation {
                self.sched.retry(&keys);
            }
            return Ok(());
        };
        if generation != self.generation {
            self.keep_late_answer(&keys, result);
            return Ok(());
        }
        let blobs = match result {
            Ok(blobs) => blobs,
            Err(err) => {
                self.sched.retry(&keys);
                self.request_failed(idx, &keys, err);
                return Ok(());
            }
        };
        let t = self.clock.now_ms();
        let asked: HashSet<ItemKey> = keys.iter().copied().collect();
        // Hashes answered (taken now or already complete): not omitted by this peer.
        let mut answered = HashSet::new();
        let (mut items, mut bytes, mut rejected) = (0u64, 0u64, 0u64);
        for blob in blobs {
            let len = blob.len() as u64;
            let hash = keccak256(&blob);
            match self.sched.process_hashed(hash, blob) {
                Ok(key) => {
                    items += 1;
                    bytes += len;
                    if !asked.contains(&key) {
                        self.progress.unrequested += 1;
                    }
                    answered.insert(hash);
                    self.omitted_by.remove(&key);
                }
                Err(ProcessError::AlreadyProcessed(_)) => {
                    self.progress.duplicates += 1;
                    answered.insert(hash);
                }
                // Asked of this peer, but another peer delivered it first and it is written
                // already: a stale duplicate of an honest answer, not bad data.
                Err(ProcessError::NotRequested(_))
                    if asked.contains(&ItemKey::node(hash))
                        || asked.contains(&ItemKey::code(hash)) =>
                {
                    self.progress.duplicates += 1;
                    answered.insert(hash);
                }
                Err(ProcessError::NotRequested(_)) => rejected += 1,
                Err(e) => return Err(SyncError::InvalidState(e.to_string())),
            }
        }
        self.progress.timings.process_ms += self.clock.now_ms() - t;
        let omitted: Vec<ItemKey> = keys
            .iter()
            .filter(|k| !answered.contains(&k.hash))
            .copied()
            .collect();
        self.sched.retry(&omitted);
        // An answer with bad data is the peer's fault, not proof that it lacks the rest:
        // it is penalised below and may be asked again until dropped.
        if rejected == 0 {
            for key in &omitted {
                self.omitted_by.entry(*key).or_default().insert(idx);
            }
        }
        self.progress.rejected += rejected;
        let limit = self.config.peer_failure_limit;
        let max_items = self.config.max_request_items as f64;
        let target = self.config.target_rtt.as_secs_f64() * 1000.0;
        let timeout = self.config.request_timeout.as_secs_f64() * 1000.0;
        let slot = &mut self.peers[idx];
        if keys.len() <= PROBE_ITEMS {
            slot.latency = slot.latency.min(elapsed);
        }
        slot.stats.items += items;
        slot.stats.bytes += bytes;
        slot.stats.rejected += rejected;
        slot.stats.omitted += omitted.len() as u64;
        slot.failures_in_row = 0;
        // Tune the request size to what the peer delivers in the target time (geth's
        // msgrate idea), moving a quarter of the way each answer so one slow answer does
        // not swing it. A peer whose latency alone nears the target gets twice its latency
        // (at most a quarter of the timeout): else each answer, slow for its latency and
        // not its size, would shrink the next request, down to one item.
        let horizon = target.max((2.0 * slot.latency).min(timeout / 4.0));
        let rate = items as f64 / elapsed;
        let ideal = (rate * horizon).clamp(1.0, max_items);
        slot.capacity = (slot.capacity * 0.75 + ideal * 0.25).clamp(1.0, max_items);
        slot.stats.capacity = slot.capacity.round() as u32;
        if rejected > 0 {
            slot.bad_answers += 1;
            if slot.bad_answers >= limit {
                let reason = format!(
                    "sent {} blobs that match nothing asked",
                    slot.stats.rejected
                );
                self.drop_peer(idx, reason);
            }
        }
        Ok(())
    }

    /// An answer to a request of an older root: take what the current root wants, keep
    /// the rest of what hashes to something asked, blame nobody.
    fn keep_late_answer(&mut self, keys: &[ItemKey], result: Result<Vec<Vec<u8>>, PeerError>) {
        let asked: HashSet<H256> = keys.iter().map(|k| k.hash).collect();
        for blob in result.unwrap_or_default() {
            let hash = keccak256(&blob);
            if self.sched.wants(&ItemKey::node(hash)) || self.sched.wants(&ItemKey::code(hash)) {
                let _ = self.sched.process_hashed(hash, blob);
            } else if asked.contains(&hash) {
                self.verified.insert(hash, blob);
            }
        }
    }

    fn request_failed(&mut self, idx: usize, keys: &[ItemKey], err: PeerError) {
        let limit = self.config.peer_failure_limit;
        let slot = &mut self.peers[idx];
        slot.failures_in_row += 1;
        let mut drop = None;
        if err == PeerError::Timeout {
            slot.stats.timeouts += 1;
            slot.capacity = (slot.capacity / 4.0).max(1.0);
            // As geth: a peer that cannot answer two items in time is of no use.
            if keys.len() <= 2 {
                drop = Some("timed out on a request of two or fewer items".to_string());
            }
        } else {
            slot.stats.failures += 1;
            let doublings = (slot.failures_in_row - 1).min(5);
            let rest = self.config.failure_rest.as_secs_f64() * 1000.0 * f64::from(1 << doublings);
            slot.rest_until = self.clock.now_ms() + rest;
        }
        if slot.failures_in_row >= limit && drop.is_none() {
            drop = Some(format!(
                "{} failed requests in a row, last: {err}",
                slot.failures_in_row
            ));
        }
        slot.stats.capacity = slot.capacity.round() as u32;
        if let Some(reason) = drop {
            self.drop_peer(idx, reason);
        }
    }

    /// Writes everything complete now (after any write in progress), with the progress
    /// record, in one atomic write.
    async fn commit(&mut self, on_progress: &mut dyn FnMut(&Progress)) -> Result<(), SyncError> {
        self.commit_with_frontier(None, on_progress).await
    }

    /// As `commit`, also replacing the saved frontier when `frontier` is set.
    async fn commit_with_frontier(
        &mut self,
        frontier: Option<Vec<Vec<u8>>>,
        on_progress: &mut dyn FnMut(&Progress),
    ) -> Result<(), SyncError> {
        self.wait_for_write(on_progress).await?;
        // A sync that just became complete is recorded as such even with nothing to write.
        let newly_complete = self.sched.is_done() && !self.meta.complete;
        if self.sched.batch_bytes() == 0 && frontier.is_none() && !newly_complete {
            return Ok(());
        }
        self.start_write(frontier);
        self.wait_for_write(on_progress).await
    }

    async fn wait_for_write(
        &mut self,
        on_progress: &mut dyn FnMut(&Progress),
    ) -> Result<(), SyncError> {
        if let Some(mut writing) = self.writing.take() {
            let result = (&mut writing.future).await;
            self.write_done(writing, result, on_progress)?;
        }
        Ok(())
    }

    /// Starts writing the batch and the progress record it implies; only one at a time,
    /// because a batch may hold parents of the previous batch's nodes.
    fn start_write(&mut self, frontier: Option<Vec<Vec<u8>>>) {
        debug_assert!(self.writing.is_none());
        let mut batch = self.sched.take_batch();
        batch.frontier = frontier;
        let mut meta = self.meta.clone();
        let mut counts = [0u64; 4];
        for (key, data) in &batch.items {
            let at = if key.kind == Kind::Node { 0 } else { 2 };
            counts[at] += 1;
            counts[at + 1] += data.len() as u64;
        }
        meta.nodes += counts[0];
        meta.node_bytes += counts[1];
        meta.codes += counts[2];
        meta.code_bytes += counts[3];
        meta.complete = self.sched.is_done();
        let store = self.store;
        let record = meta.clone();
        let future = Box::pin(async move { store.write(&batch, &record).await });
        self.writing = Some(Writing {
            future,
            meta,
            counts,
            started: self.clock.now_ms(),
        });
    }

    /// A write landed: its items are in the store now, report them.
    fn write_done(
        &mut self,
        writing: Writing<'a>,
        result: Result<(), StoreError>,
        on_progress: &mut dyn FnMut(&Progress),
    ) -> Result<(), SyncError> {
        result?;
        self.progress.timings.commit_ms += self.clock.now_ms() - writing.started;
        self.sched.batch_written();
        let [nodes, node_bytes, codes, code_bytes] = writing.counts;
        self.progress.complete = writing.meta.complete;
        self.meta = writing.meta;
        self.progress.nodes += nodes;
        self.progress.node_bytes += node_bytes;
        self.progress.codes += codes;
        self.progress.code_bytes += code_bytes;
        self.progress.batches += 1;
        on_progress(&self.snapshot());
        Ok(())
    }

    fn snapshot(&mut self) -> Progress {
        let stats = self.sched.stats();
        let mut p = self.progress.clone();
        p.pending = self.sched.pending() as u64;
        p.found_in_store = stats.found_in_store;
        p.elapsed_ms = self.clock.now_ms() - self.started;
        p.peers = self.peers.iter().map(|s| s.stats.clone()).collect();
        p
    }

    /// Writes what is complete on every exit path, then reports.
    async fn finish(
        &mut self,
        result: Result<(), SyncError>,
        on_progress: &mut dyn FnMut(&Progress),
    ) -> Result<Progress, SyncError> {
        self.abandon_in_flight();
        match result {
            Err(SyncError::Store(e)) => {
                self.writing = None;
                Err(SyncError::Store(e))
            }
            other => {
                // Keep the verified frontier for the next run (or clear it when done).
                let mut frontier = self.sched.waiting();
                frontier.extend(self.verified.drain().map(|(_, b)| b));
                if self.sched.is_done() {
                    frontier.clear();
                }
                self.commit_with_frontier(Some(frontier), on_progress)
                    .await?;
                other.map(|()| self.snapshot())
            }
        }
    }
}
