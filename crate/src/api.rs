//! The JavaScript API: `StateSync` downloads a state into an IndexedDB database,
//! `StateDb` reads verified accounts, storage and code out of it.
//!
//! Every failure is a JS `Error` with a machine-readable `code` (see [`crate::error`]).

use crate::clock::BrowserClock;
use crate::db::{Db, Role};
use crate::error::{Error, JsResult};
use crate::interop::{
    account_to_js, as_string, get, opt_number, parse_address, parse_h256, parse_peer, parse_peers,
    parse_slot, progress_to_js, to_js, word_to_js,
};
use crate::layout::Layout;
use crate::transport::{connect, PeerSpec, TransportOptions};
use futures::channel::oneshot;
use js_sys::{Function, Object, Promise, Reflect, Uint8Array};
use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use std::time::Duration;
use triesync_core::driver::{Progress, SyncConfig, SyncError, SyncHandle, Syncer};
use triesync_core::store::Store;
use triesync_core::walk;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::future_to_promise;
use web_sys::{AbortSignal, Event};

#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &'static str = r#"
/** A peer: a URL (`http(s)://` → binary HTTP `/v1/nodes`, `ws(s)://` → WebSocket `/v1/ws`)
 *  or `{ url, protocol }` (`'jsonrpc'`: batched `debug_dbGet` POSTed to `url`). */
export type PeerLike = string | { url: string; protocol?: 'http' | 'ws' | 'jsonrpc' };
// A peer's id in reports is its URL, prefixed with `protocol+` when the protocol is not the
// one its scheme implies (e.g. `jsonrpc+http://127.0.0.1:8545`).

/** Options of `new StateSync(...)`. */
export interface StateSyncOptions {
  /** State root to download, 0x-prefixed 32-byte hex. */
  root: string;
  /** Peers to download from (more can be added with `addPeer`). */
  peers?: PeerLike[];
  /** IndexedDB database name; a later sync into the same name resumes. */
  database: string;
  /** Storage layout of the database (see `StorageLayout`). Omitted: an existing database
   *  keeps the layout it was created with, a new one is `'packed'`. Set and different
   *  from an existing database's: `run()` rejects with `LAYOUT_MISMATCH`, nothing is
   *  changed. */
  layout?: StorageLayout;
  /** Commit a batch to IndexedDB once it holds this many bytes (default 102400).
   *  This and the options below it up to `peerFailureLimit` must be at least 1 (else
   *  `INVALID_ARGUMENT`). */
  batchBytes?: number;
  /** A request not answered in this time fails and is retried elsewhere (default 10000). */
  requestTimeoutMs?: number;
  /** Requests in flight to one peer at once (default 2). */
  maxInFlightPerPeer?: number;
  /** Most items in one request (default and protocol maximum 384). */
  maxRequestItems?: number;
  /** A peer is dropped after this many failed requests in a row (default 3). */
  peerFailureLimit?: number;
  /** After a failed request (refused, an error status, a malformed answer; not a timeout)
   *  the peer is not asked again for this long, doubled per failure in a row (default 250).
   *  0 is allowed: asked again at once. */
  failureRestMs?: number;
  /** Answers larger than this many bytes are refused (default 16 MiB, at least 1024). */
  maxResponseBytes?: number;
  /** Another tab or worker syncing into the same database holds its lock: wait up to this
   *  long for it to finish, then fail with `LOCKED` (default 0: fail at once). `cancel()`
   *  and `signal` end the wait. */
  lockTimeoutMs?: number;
  /** Called after every commit (also see `onProgress`). */
  onProgress?: (progress: Progress) => void;
  /** Aborting it cancels the sync, as `cancel()` does. */
  signal?: AbortSignal;
}

/** How a database keeps items: `'packed'` (the default: many items per ~64 KiB record,
 *  an LSM of sorted runs; object stores `pages`, `runs`, `meta`) or `'per-item'` (one
 *  record per trie node or code; object stores `nodes`, `code`, `meta`, the layout of
 *  databases created before 'packed' was the default). */
export type StorageLayout = 'packed' | 'per-item';

/** Options of `StateDb.open(database, options)`. */
export interface StateDbOptions {
  /** The layout the database must have. Omitted: an existing database opens with its
   *  own layout, a new one is created `'packed'`. Set and different from an existing
   *  database's: rejects with `LAYOUT_MISMATCH`, nothing is changed. */
  layout?: StorageLayout;
}

/** One peer's figures. */
export interface PeerStats {
  id: string;
  requests: number;
  items: number;
  bytes: number;
  timeouts: number;
  failures: number;
  rejected: number;
  omitted: number;
  capacity: number;
  inFlight: number;
  /** Why the peer was dropped, or null. */
  dropped: string | null;
}

/** Progress after a commit; the final report of `run()` has the same shape. */
export interface Progress {
  root: string;
  /** True once everything under `root` is in the database. */
  complete: boolean;
  /** Trie nodes written by this run, and their bytes. */
  nodes: number;
  nodeBytes: number;
  /** Codes written by this run, and their bytes. */
  codes: number;
  codeBytes: number;
  /** nodeBytes + codeBytes. */
  bytes: number;
  /** Items found already in the database (not fetched). */
  foundInStore: number;
  pending: number;
  duplicates: number;
  rejected: number;
  unrequested: number;
  batches: number;
  /** Items taken from verified data kept by an earlier stop instead of being fetched. */
  reused: number;
  elapsedMs: number;
  seconds: number;
  /** ms spent: hashing/decoding/scheduling, writing batches (in the background, so it
   *  overlaps the rest), store lookups, and waiting in all = for peers + for the write. */
  timings: {
    processMs: number;
    commitMs: number;
    checkMs: number;
    waitMs: number;
    peerWaitMs: number;
    writeWaitMs: number;
  };
  peers: PeerStats[];
  /** The origin's storage as `navigator.storage.estimate()` last reported it (refreshed
   *  after commits, fresh in the final report), or null where it is not available. */
  storage: StorageEstimate | null;
}

/** `navigator.storage.estimate()`: bytes the origin uses and may use. */
export interface StorageEstimate {
  usage: number;
  quota: number;
}

export type SyncReport = Progress;

/** Codes of the `code` property of every error this library throws or rejects with. */
export type TriesyncErrorCode =
  | 'INVALID_ARGUMENT' | 'ALREADY_STARTED' | 'CANCELLED' | 'NO_PEERS' | 'UNAVAILABLE'
  | 'INVALID_STATE' | 'QUOTA_EXCEEDED' | 'LOCKED' | 'STORE' | 'MISSING' | 'CORRUPT'
  | 'LAYOUT_MISMATCH';

/** An Error with a machine-readable code. A sync error also carries the last progress. */
export interface TriesyncError extends Error {
  code: TriesyncErrorCode;
  progress?: Progress;
}

/** An account as stored in the state trie. */
export interface Account {
  nonce: number;
  /** Balance in wei. */
  balance: bigint;
  /** Balance as minimal 0x hex. */
  balanceHex: string;
  storageRoot: string;
  codeHash: string;
}

/** The result of walking a whole state from its root. */
export interface VerifyReport {
  nodes: number;
  nodeBytes: number;
  codes: number;
  codeBytes: number;
  /** The first 100 items referenced but absent, as "node:0x…" / "code:0x…". */
  missing: string[];
  missingCount: number;
  /** The first 100 items whose bytes do not hash to their key or do not decode. */
  corrupt: string[];
  /** True when everything under the root is present and sound. */
  complete: boolean;
}

/** What `StateDb.checkStore()` found over every stored record. */
export interface StoreCheckReport {
  nodes: number;
  nodeBytes: number;
  codes: number;
  codeBytes: number;
  /** Account leaves found in the stored nodes. */
  accounts: number;
  /** The first 100 items whose bytes do not hash to their key or do not decode. */
  corrupt: string[];
  corruptCount: number;
  /** The first 100 items a stored node references that are not stored, as "node:0x…" /
   *  "code:0x…": a stored node whose subtree is not complete. */
  dangling: string[];
  danglingCount: number;
  /** Page records read (`'packed'` layout; 0 for `'per-item'`). An item kept in two runs
   *  (until a compaction merges them) is read, checked and counted in both. */
  pages: number;
  /** Record ids of pages a run refers to that are missing or unreadable (the first 100). */
  damagedPages: number[];
  damagedPageCount: number;
  /** True when every stored item is sound and has its whole subtree, and no page is
   *  damaged. */
  sound: boolean;
}

/** The progress record of the last commit to a database. */
export interface SyncMeta {
  /** The database's layout. */
  layout: StorageLayout;
  root: string;
  complete: boolean;
  nodes: number;
  nodeBytes: number;
  codes: number;
  codeBytes: number;
}
"#;

#[wasm_bindgen(start, skip_typescript)]
fn start() {
    console_error_panic_hook::set_once();
}

fn report_callback_error(e: &JsValue) {
    web_sys::console::error_2(&JsValue::from_str("triesync: progress callback threw"), e);
}

/// An event listener kept alive while it is registered.
type Listener = Closure<dyn FnMut(Event)>;

/// A sync's shared state: the JS object and the running future both hold it.
struct SyncInner {
    database: String,
    /// The `layout` option (`None`: the database's own, packed for a new one).
    layout: Option<Layout>,
    handle: SyncHandle,
    syncer: RefCell<Option<Syncer>>,
    transport: TransportOptions,
    callbacks: RefCell<Vec<Function>>,
    /// Peers added and not removed.
    added: RefCell<Vec<PeerSpec>>,
    last: RefCell<Option<Progress>>,
    signal: Option<AbortSignal>,
    on_abort: RefCell<Option<Listener>>,
    /// How long `run()` waits for another writer's lock.
    lock_wait: Duration,
    /// Fired by `cancel()` (and the signal) to end a wait for the lock.
    cancel_wait: RefCell<Option<oneshot::Sender<()>>>,
    cancelled_wait: RefCell<Option<oneshot::Receiver<()>>>,
    /// The last storage estimate, and whether one is being taken.
    storage: RefCell<Option<StorageEstimate>>,
    estimating: Cell<bool>,
}

/// `navigator.storage.estimate()`'s figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StorageEstimate {
    /// Bytes the origin uses.
    pub usage: f64,
    /// Bytes it may use.
    pub quota: f64,
}

impl StorageEstimate {
    fn to_js(self) -> JsValue {
        let o = Object::new();
        let _ = Reflect::set(&o, &"usage".into(), &JsValue::from_f64(self.usage));
        let _ = Reflect::set(&o, &"quota".into(), &JsValue::from_f64(self.quota));
        o.into()
    }
}

/// `navigator.storage` of the global scope (page or worker), if there is one.
fn storage_manager() -> Option<JsValue> {
    let navigator = Reflect::get(&js_sys::global(), &"navigator".into()).ok()?;
    let storage = Reflect::get(&navigator, &"storage".into()).ok()?;
    (storage.is_object()).then_some(storage)
}

/// Calls `navigator.storage[method]()` and awaits it; `None` where it does not exist or
/// fails.
async fn call_storage(method: &str) -> Option<JsValue> {
    let storage = storage_manager()?;
    let f: Function = Reflect::get(&storage, &method.into())
        .ok()?
        .dyn_into()
        .ok()?;
    let p: Promise = f.call0(&storage).ok()?.dyn_into().ok()?;
    wasm_bindgen_futures::JsFuture::from(p).await.ok()
}

/// `navigator.storage.estimate()`, or `None` where it is not available.
pub async fn estimate_storage() -> Option<StorageEstimate> {
    let v = call_storage("estimate").await?;
    let n = |k: &str| Reflect::get(&v, &k.into()).ok().and_then(|x| x.as_f64());
    Some(StorageEstimate {
        usage: n("usage")?,
        quota: n("quota")?,
    })
}

impl SyncInner {
    /// Stops the sync (or the wait for its lock).
    fn cancel(&self) {
        self.handle.cancel();
        if let Some(tx) = self.cancel_wait.borrow_mut().take() {
            let _ = tx.send(());
        }
    }

    /// A progress record as JS, with the last storage estimate.
    fn progress_js(&self, p: &Progress) -> JsValue {
        let v = progress_to_js(p);
        let storage = self
            .storage
            .borrow()
            .map(StorageEstimate::to_js)
            .unwrap_or(JsValue::NULL);
        let _ = Reflect::set(&v, &"storage".into(), &storage);
        v
    }

    /// Takes a new storage estimate in the background, unless one is being taken.
    fn refresh_storage(self: &Rc<Self>) {
        if self.estimating.replace(true) {
            return;
        }
        let weak: Weak<SyncInner> = Rc::downgrade(self);
        wasm_bindgen_futures::spawn_local(async move {
            let e = estimate_storage().await;
            if let Some(inner) = weak.upgrade() {
                if e.is_some() {
                    *inner.storage.borrow_mut() = e;
                }
                inner.estimating.set(false);
            }
        });
    }

    fn add_peer(&self, spec: &PeerSpec) {
        self.added.borrow_mut().push(spec.clone());
        self.handle.add_peer(connect(spec, self.transport));
    }

    /// Removes every peer added under this URL (any protocol) or with this id.
    fn remove_peer(&self, url_or_id: &str) {
        let mut added = self.added.borrow_mut();
        added.retain(|spec| {
            let hit = spec.url == url_or_id || spec.id == url_or_id;
            if hit {
                self.handle.remove_peer(&spec.id);
            }
            !hit
        });
    }

    fn progress(self: &Rc<Self>, p: &Progress) {
        *self.last.borrow_mut() = Some(p.clone());
        self.refresh_storage();
        // A callback may add callbacks or cancel: call a copy of the list.
        let callbacks = self.callbacks.borrow().clone();
        if callbacks.is_empty() {
            return;
        }
        let value = self.progress_js(p);
        for f in callbacks {
            if let Err(e) = f.call1(&JsValue::NULL, &value) {
                report_callback_error(&e);
            }
        }
    }

    fn listen_for_abort(self: &Rc<Self>) {
        let Some(signal) = &self.signal else { return };
        if signal.aborted() {
            self.cancel();
            return;
        }
        let inner = Rc::downgrade(self);
        let on_abort = Closure::<dyn FnMut(Event)>::new(move |_: Event| {
            if let Some(inner) = inner.upgrade() {
                inner.cancel();
            }
        });
        let _ = signal.add_event_listener_with_callback("abort", on_abort.as_ref().unchecked_ref());
        *self.on_abort.borrow_mut() = Some(on_abort);
    }

    fn stop_listening(&self) {
        if let (Some(signal), Some(f)) = (&self.signal, self.on_abort.borrow_mut().take()) {
            let _ = signal.remove_event_listener_with_callback("abort", f.as_ref().unchecked_ref());
        }
    }

    async fn run(self: Rc<Self>) -> JsResult<JsValue> {
        let syncer = self
            .syncer
            .borrow_mut()
            .take()
            .ok_or(Error::AlreadyStarted)?;
        self.listen_for_abort();
        let cancelled = self
            .cancelled_wait
            .borrow_mut()
            .take()
            .ok_or(Error::AlreadyStarted)?;
        let result = async {
            // One writer per database, across tabs and workers: wait for it as long as
            // allowed, or until cancelled.
            let acquire = crate::lock::acquire(&self.database, self.lock_wait);
            let _lock = crate::lock::unless(acquire, cancelled)
                .await
                .ok_or(Error::Sync(SyncError::Cancelled))?
                .map_err(|e| Error::Sync(SyncError::Store(e)))?;
            if let Some(e) = estimate_storage().await {
                *self.storage.borrow_mut() = Some(e);
            }
            // Under the lock: the one writer of this database.
            let store = Db::open(&self.database, self.layout, Role::Writer)
                .await
                .map_err(|e| match e {
                    Error::Store(e) => Error::Sync(SyncError::Store(e)),
                    other => other,
                })?;
            let mut on_progress = |p: &Progress| self.progress(p);
            syncer
                .run(&store, &BrowserClock, &mut on_progress)
                .await
                .map_err(Error::Sync)
        }
        .await;
        self.stop_listening();
        // The final report carries a fresh estimate.
        if let Some(e) = estimate_storage().await {
            *self.storage.borrow_mut() = Some(e);
        }
        match result {
            Ok(report) => {
                *self.last.borrow_mut() = Some(report.clone());
                Ok(self.progress_js(&report))
            }
            Err(e) => {
                let err = e.to_js();
                if let Some(p) = self.last.borrow().as_ref() {
                    let _ =
                        Reflect::set(&err, &JsValue::from_str("progress"), &self.progress_js(p));
                }
                Err(err.into())
            }
        }
    }
}

/// Downloads the state under a root into an IndexedDB database.
///
/// ```js
/// const sync = new StateSync({ root, peers: ['http://127.0.0.1:8545'], database: 'mainnet' });
/// sync.onProgress(p => console.log(p.nodes, p.pending));
/// const report = await sync.run();
/// ```
#[wasm_bindgen]
pub struct StateSync {
    inner: Rc<SyncInner>,
}

impl std::fmt::Debug for StateSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateSync")
            .field("database", &self.inner.database)
            .finish()
    }
}

/// The `lockTimeoutMs` option.
fn lock_wait_from(options: &JsValue) -> Result<Duration, Error> {
    Ok(opt_number(options, "lockTimeoutMs")?
        .map(|ms| Duration::from_millis(ms as u64))
        .unwrap_or(Duration::ZERO))
}

/// A count or size option: absent, or at least 1 (0 would mean no progress at all, e.g. a
/// `batchBytes` of 0 commits an empty batch on every turn of the loop).
fn opt_at_least(options: &JsValue, key: &str, min: f64) -> Result<Option<f64>, Error> {
    match opt_number(options, key)? {
        Some(n) if n < min => Err(Error::invalid(format!("{key} must be at least {min}"))),
        n => Ok(n),
    }
}

fn config_from(options: &JsValue) -> Result<(SyncConfig, TransportOptions), Error> {
    let mut config = SyncConfig::default();
    let mut transport = TransportOptions::default();
    if let Some(n) = opt_at_least(options, "batchBytes", 1.0)? {
        config.batch_bytes = n as usize;
    }
    if let Some(ms) = opt_at_least(options, "requestTimeoutMs", 1.0)? {
        config.request_timeout = Duration::from_millis(ms as u64);
    }
    // The transport's own deadline backs the driver's up, a little later.
    transport.timeout = config.request_timeout + Duration::from_millis(500);
    if let Some(n) = opt_at_least(options, "maxInFlightPerPeer", 1.0)? {
        config.max_in_flight_per_peer = n as usize;
    }
    if let Some(n) = opt_at_least(options, "maxRequestItems", 1.0)? {
        // Above the protocol's maximum: the maximum.
        config.max_request_items = (n as usize).min(384);
        config.initial_request_items = config.initial_request_items.min(config.max_request_items);
    }
    if let Some(n) = opt_at_least(options, "peerFailureLimit", 1.0)? {
        config.peer_failure_limit = n as u32;
    }
    // No rest (0) is a valid choice, unlike the counts and sizes above; `as` saturates.
    if let Some(ms) = opt_number(options, "failureRestMs")? {
        config.failure_rest = Duration::from_millis(ms as u64);
    }
    // Smaller than the smallest useful answer (one blob and its framing): refused.
    if let Some(n) = opt_at_least(options, "maxResponseBytes", 1024.0)? {
        transport.max_response_bytes = n as usize;
    }
    Ok((config, transport))
}

#[wasm_bindgen]
impl StateSync {
    /// Validates the options and prepares the sync; nothing is fetched before `run()`.
    #[wasm_bindgen(constructor)]
    pub fn new(
        #[wasm_bindgen(unchecked_param_type = "StateSyncOptions")] options: JsValue,
    ) -> JsResult<StateSync> {
        if !options.is_object() {
            return Err(Error::invalid("options must be an object").into());
        }
        let root = parse_h256(&as_string(&get(&options, "root"), "root")?, "root")?;
        let database = as_string(&get(&options, "database"), "database")?;
        if database.is_empty() {
            return Err(Error::invalid("database must not be empty").into());
        }
        let peers = parse_peers(&get(&options, "peers"))?;
        let (config, transport) = config_from(&options)?;
        let mut callbacks = Vec::new();
        let cb = get(&options, "onProgress");
        if !cb.is_undefined() && !cb.is_null() {
            callbacks.push(
                cb.dyn_into::<Function>()
                    .map_err(|_| Error::invalid("onProgress must be a function"))?,
            );
        }
        let signal = get(&options, "signal");
        let signal = if signal.is_undefined() || signal.is_null() {
            None
        } else {
            Some(
                signal
                    .dyn_into::<AbortSignal>()
                    .map_err(|_| Error::invalid("signal must be an AbortSignal"))?,
            )
        };
        let lock_wait = lock_wait_from(&options)?;
        let layout = Layout::from_options(&options)?;
        let (syncer, handle) = Syncer::new(root, config);
        let (cancel_wait, cancelled_wait) = oneshot::channel();
        let inner = Rc::new(SyncInner {
            layout,
            lock_wait,
            cancel_wait: RefCell::new(Some(cancel_wait)),
            cancelled_wait: RefCell::new(Some(cancelled_wait)),
            storage: RefCell::new(None),
            estimating: Cell::new(false),
            database,
            handle,
            syncer: RefCell::new(Some(syncer)),
            transport,
            callbacks: RefCell::new(callbacks),
            added: RefCell::new(Vec::new()),
            last: RefCell::new(None),
            signal,
            on_abort: RefCell::new(None),
        });
        for spec in &peers {
            inner.add_peer(spec);
        }
        Ok(StateSync { inner })
    }

    /// Runs the sync to completion. Resolves with the final report; rejects with a
    /// `TriesyncError` (`CANCELLED`, `NO_PEERS`, `UNAVAILABLE`, `QUOTA_EXCEEDED`, …)
    /// carrying the last progress. Everything verified before a failure is kept.
    #[wasm_bindgen(unchecked_return_type = "Promise<SyncReport>")]
    pub fn run(&self) -> Promise {
        future_to_promise(self.inner.clone().run())
    }

    /// Adds a progress callback, called after every commit.
    #[wasm_bindgen(js_name = onProgress)]
    pub fn on_progress(
        &self,
        #[wasm_bindgen(unchecked_param_type = "(progress: Progress) => void")] callback: Function,
    ) {
        self.inner.callbacks.borrow_mut().push(callback);
    }

    /// Stops the sync after writing everything verified so far; `run()` then rejects with
    /// code `CANCELLED`.
    pub fn cancel(&self) {
        self.inner.cancel();
    }

    /// Asks the browser to keep this origin's storage under storage pressure
    /// (`navigator.storage.persist()`): resolves with whether it is persistent now. False
    /// where the call does not exist (in a worker, say).
    #[wasm_bindgen(unchecked_return_type = "Promise<boolean>")]
    pub fn persist() -> Promise {
        future_to_promise(async {
            let granted = call_storage("persist").await;
            Ok(JsValue::from_bool(
                granted.and_then(|v| v.as_bool()).unwrap_or(false),
            ))
        })
    }

    /// `navigator.storage.estimate()` as `{ usage, quota }`, or null where it is not
    /// available.
    #[wasm_bindgen(js_name = estimateStorage, unchecked_return_type = "Promise<StorageEstimate | null>")]
    pub fn estimate_storage() -> Promise {
        future_to_promise(async {
            Ok(estimate_storage()
                .await
                .map(StorageEstimate::to_js)
                .unwrap_or(JsValue::NULL))
        })
    }

    /// Adds a peer, before or during the run.
    #[wasm_bindgen(js_name = addPeer)]
    pub fn add_peer(
        &self,
        #[wasm_bindgen(unchecked_param_type = "PeerLike")] peer: JsValue,
    ) -> JsResult<()> {
        let spec = parse_peer(&peer)?;
        self.inner.add_peer(&spec);
        Ok(())
    }

    /// Removes a peer: a URL removes the peers added with it (over any protocol), a
    /// `{ url, protocol }` only that one. Its requests in flight are retried elsewhere.
    #[wasm_bindgen(js_name = removePeer)]
    pub fn remove_peer(
        &self,
        #[wasm_bindgen(unchecked_param_type = "PeerLike")] peer: JsValue,
    ) -> JsResult<()> {
        match peer.as_string() {
            Some(url) => self.inner.remove_peer(url.trim()),
            None => self.inner.remove_peer(&parse_peer(&peer)?.id),
        }
        Ok(())
    }

    /// Moves the sync to a new root; what was already committed is not fetched again.
    #[wasm_bindgen(js_name = setRoot)]
    pub fn set_root(&self, root: &str) -> JsResult<()> {
        self.inner.handle.set_root(parse_h256(root, "root")?);
        Ok(())
    }

    /// The database this sync writes to.
    #[wasm_bindgen(getter)]
    pub fn database(&self) -> String {
        self.inner.database.clone()
    }

    /// The last progress record (or the final report), if any.
    #[wasm_bindgen(getter, unchecked_return_type = "Progress | undefined")]
    pub fn progress(&self) -> JsValue {
        self.inner
            .last
            .borrow()
            .as_ref()
            .map(|p| self.inner.progress_js(p))
            .unwrap_or(JsValue::UNDEFINED)
    }
}

/// Reads verified state out of a database that a `StateSync` filled.
///
/// ```js
/// const db = await StateDb.open('mainnet');
/// const acct = await db.account(root, '0x…');  // { nonce, balance, … } or null
/// ```
///
/// It may be open while a sync writes the same database (in this or another context):
/// every call sees what was committed before it started.
#[wasm_bindgen]
#[derive(Debug)]
pub struct StateDb {
    store: Rc<Db>,
}

fn promise<F>(f: F) -> Promise
where
    F: std::future::Future<Output = Result<JsValue, Error>> + 'static,
{
    future_to_promise(async move { f.await.map_err(JsValue::from) })
}

/// Runs `$body` (an expression awaiting reads of `$db`) on a fresh view of the database:
/// a packed reader first takes in the runs the writer committed since, and a read that
/// found a page merged away meanwhile is run again (see `crate::db`).
macro_rules! fresh {
    ($db:expr, $body:expr) => {{
        let mut tries = 0;
        loop {
            $db.refresh().await?;
            let result = $body;
            tries += 1;
            if result.is_err() && $db.page_vanished() && tries < 3 {
                continue;
            }
            break result;
        }
    }};
}

#[wasm_bindgen]
impl StateDb {
    /// Opens (or creates) the database. `options.layout` (`'packed'` | `'per-item'`): the
    /// layout it must have; omitted, an existing database keeps its own and a new one is
    /// packed. A mismatch rejects with `LAYOUT_MISMATCH` and changes nothing.
    pub async fn open(
        database: String,
        #[wasm_bindgen(unchecked_optional_param_type = "StateDbOptions")] options: JsValue,
    ) -> JsResult<StateDb> {
        let layout = Layout::from_options(&options)?;
        let store = Db::open(&database, layout, Role::Reader).await?;
        Ok(StateDb {
            store: Rc::new(store),
        })
    }

    /// Deletes a database, whatever its layout (its open connections close themselves
    /// first).
    #[wasm_bindgen(js_name = deleteDatabase)]
    pub async fn delete_database(database: String) -> JsResult<()> {
        Db::delete(&database)
            .await
            .map_err(|e| Error::Store(e).into())
    }

    /// The database's layout: `'packed'` or `'per-item'`.
    #[wasm_bindgen(getter, unchecked_return_type = "StorageLayout")]
    pub fn layout(&self) -> String {
        self.store.layout().name().to_string()
    }

    /// The account at `address` in the state of `root`, or null when the trie proves it
    /// absent. Rejects with `MISSING` when the path is not synced.
    #[wasm_bindgen(unchecked_return_type = "Promise<Account | null>")]
    pub fn account(&self, root: String, address: String) -> Promise {
        let store = self.store.clone();
        promise(async move {
            let (root, address) = (parse_h256(&root, "root")?, parse_address(&address)?);
            let acc = fresh!(store, walk::account(&*store, root, &address).await)?;
            Ok(acc.as_ref().map(account_to_js).unwrap_or(JsValue::NULL))
        })
    }

    /// Storage `slot` of `address` as a 32-byte 0x word (zero when never written), or null
    /// when the account does not exist.
    #[wasm_bindgen(unchecked_return_type = "Promise<string | null>")]
    pub fn storage(&self, root: String, address: String, slot: String) -> Promise {
        let store = self.store.clone();
        promise(async move {
            let root = parse_h256(&root, "root")?;
            let (address, slot) = (parse_address(&address)?, parse_slot(&slot)?);
            let word = fresh!(store, walk::storage(&*store, root, &address, &slot).await)?;
            Ok(word.as_ref().map(word_to_js).unwrap_or(JsValue::NULL))
        })
    }

    /// The code of `address` (empty when it has none), or null when the account does not
    /// exist.
    #[wasm_bindgen(unchecked_return_type = "Promise<Uint8Array | null>")]
    pub fn code(&self, root: String, address: String) -> Promise {
        let store = self.store.clone();
        promise(async move {
            let (root, address) = (parse_h256(&root, "root")?, parse_address(&address)?);
            let code = fresh!(store, walk::code(&*store, root, &address).await)?;
            Ok(code
                .map(|c| Uint8Array::from(&c[..]).into())
                .unwrap_or(JsValue::NULL))
        })
    }

    /// Walks everything under `root`, re-hashing each item: what is missing, what is
    /// damaged, and whether the state is complete.
    #[wasm_bindgen(unchecked_return_type = "Promise<VerifyReport>")]
    pub fn verify(&self, root: String) -> Promise {
        let store = self.store.clone();
        promise(async move {
            let root = parse_h256(&root, "root")?;
            Ok(to_js(&fresh!(store, walk::verify(&*store, root).await)?))
        })
    }

    /// Reads every record of the database (whatever root it belongs to; in a packed
    /// database every page of every run): each item must hash to its key, and everything a
    /// stored node references (children, an account's storage root and code) must be
    /// stored too, i.e. every stored node has its whole subtree. Unlike `verify(root)`, it
    /// also covers complete subtries of a partial sync that the root does not reach yet.
    #[wasm_bindgen(js_name = checkStore, unchecked_return_type = "Promise<StoreCheckReport>")]
    pub fn check_store(&self) -> Promise {
        let store = self.store.clone();
        promise(async move {
            Ok(to_js(&fresh!(
                store,
                crate::check::check_store(&store).await
            )?))
        })
    }

    /// The progress record of the last commit, or null for a database never synced into.
    #[wasm_bindgen(unchecked_return_type = "Promise<SyncMeta | null>")]
    pub fn meta(&self) -> Promise {
        let store = self.store.clone();
        promise(async move {
            Ok(match store.meta().await? {
                Some(m) => crate::idb_store::meta_to_js(&m, store.layout().name()),
                None => JsValue::NULL,
            })
        })
    }

    /// Items in the database: `{ nodes, codes }` (across every root synced into it).
    /// Per-item: the records of each object store. Packed: from the run descriptors and
    /// the pages that may hold codes, not from the progress record; an item kept in two
    /// runs counts twice until a compaction merges them (a sync writes each item once).
    #[wasm_bindgen(unchecked_return_type = "Promise<{ nodes: number; codes: number }>")]
    pub fn counts(&self) -> Promise {
        let store = self.store.clone();
        promise(async move {
            let (nodes, codes) = store.counts().await?;
            let o = Object::new();
            let _ = Reflect::set(&o, &"codes".into(), &JsValue::from_f64(codes as f64));
            let _ = Reflect::set(&o, &"nodes".into(), &JsValue::from_f64(nodes as f64));
            Ok(o.into())
        })
    }

    /// Closes the connection (lookups after this reject).
    pub fn close(&self) {
        self.store.close();
    }
}

#[cfg(all(test, target_arch = "wasm32"))]
mod tests {
    use super::*;
    use wasm_bindgen_test::wasm_bindgen_test;

    fn with(key: &str, value: JsValue) -> JsValue {
        let options = Object::new();
        Reflect::set(&options, &JsValue::from_str(key), &value).unwrap();
        options.into()
    }

    #[wasm_bindgen_test]
    fn failure_rest_option() {
        let (config, _) = config_from(&Object::new().into()).unwrap();
        assert_eq!(config.failure_rest, SyncConfig::default().failure_rest);
        for (ms, rest) in [(0.0, 0), (1500.0, 1500)] {
            let (config, _) = config_from(&with("failureRestMs", ms.into())).unwrap();
            assert_eq!(config.failure_rest, Duration::from_millis(rest), "{ms}");
        }
        for bad in [
            JsValue::from(-1.0),
            JsValue::from(f64::NAN),
            JsValue::from(f64::INFINITY),
            JsValue::from_str("250"),
        ] {
            let err = config_from(&with("failureRestMs", bad.clone()))
                .err()
                .unwrap_or_else(|| panic!("{bad:?} accepted"));
            assert_eq!(err.code(), "INVALID_ARGUMENT", "{bad:?}");
            assert!(err.to_string().contains("failureRestMs"), "{err}");
        }
    }
}
