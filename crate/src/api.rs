//! The JavaScript API: `StateSync` downloads a state into an IndexedDB database,
//! `StateDb` reads verified accounts, storage and code out of it.
//!
//! Every failure is a JS `Error` with a machine-readable `code` (see [`crate::error`]).

use crate::clock::BrowserClock;
use crate::error::{Error, JsResult};
use crate::idb_store::IdbStore;
use crate::interop::{
    account_to_js, as_string, get, opt_number, parse_address, parse_h256, parse_peer, parse_peers,
    parse_slot, progress_to_js, to_js, word_to_js,
};
use crate::transport::{connect, PeerSpec, TransportOptions};
use js_sys::{Function, Promise, Reflect, Uint8Array};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;
use triesync_core::driver::{Progress, SyncConfig, SyncError, SyncHandle, Syncer};
use triesync_core::store::{Kind, Store};
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
  /** Commit a batch to IndexedDB once it holds this many bytes (default 102400). */
  batchBytes?: number;
  /** A request not answered in this time fails and is retried elsewhere (default 10000). */
  requestTimeoutMs?: number;
  /** Requests in flight to one peer at once (default 2). */
  maxInFlightPerPeer?: number;
  /** Most items in one request (default and protocol maximum 384). */
  maxRequestItems?: number;
  /** A peer is dropped after this many failed requests in a row (default 3). */
  peerFailureLimit?: number;
  /** Answers larger than this many bytes are refused (default 16 MiB). */
  maxResponseBytes?: number;
  /** Called after every commit (also see `onProgress`). */
  onProgress?: (progress: Progress) => void;
  /** Aborting it cancels the sync, as `cancel()` does. */
  signal?: AbortSignal;
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
  timings: { processMs: number; commitMs: number; checkMs: number; waitMs: number };
  peers: PeerStats[];
}

export type SyncReport = Progress;

/** Codes of the `code` property of every error this library throws or rejects with. */
export type TriesyncErrorCode =
  | 'INVALID_ARGUMENT' | 'ALREADY_STARTED' | 'CANCELLED' | 'NO_PEERS' | 'UNAVAILABLE'
  | 'INVALID_STATE' | 'QUOTA_EXCEEDED' | 'LOCKED' | 'STORE' | 'MISSING' | 'CORRUPT';

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

/** The progress record of the last commit to a database. */
export interface SyncMeta {
  layout: string;
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
    handle: SyncHandle,
    syncer: RefCell<Option<Syncer>>,
    transport: TransportOptions,
    callbacks: RefCell<Vec<Function>>,
    /// Peers added and not removed.
    added: RefCell<Vec<PeerSpec>>,
    last: RefCell<Option<Progress>>,
    signal: Option<AbortSignal>,
    on_abort: RefCell<Option<Listener>>,
}

impl SyncInner {
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

    fn progress(&self, p: &Progress) {
        *self.last.borrow_mut() = Some(p.clone());
        // A callback may add callbacks or cancel: call a copy of the list.
        let callbacks = self.callbacks.borrow().clone();
        if callbacks.is_empty() {
            return;
        }
        let value = progress_to_js(p);
        for f in callbacks {
            if let Err(e) = f.call1(&JsValue::NULL, &value) {
                report_callback_error(&e);
            }
        }
    }

    fn listen_for_abort(self: &Rc<Self>) {
        let Some(signal) = &self.signal else { return };
        if signal.aborted() {
            self.handle.cancel();
            return;
        }
        let handle = self.handle.clone();
        let on_abort = Closure::<dyn FnMut(Event)>::new(move |_: Event| handle.cancel());
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
        let result = async {
            // One writer per database, across tabs and workers.
            let _lock = crate::lock::acquire(&self.database)
                .await
                .map_err(SyncError::Store)?;
            let store = IdbStore::open(&self.database)
                .await
                .map_err(SyncError::Store)?;
            let mut on_progress = |p: &Progress| self.progress(p);
            syncer.run(&store, &BrowserClock, &mut on_progress).await
        }
        .await;
        self.stop_listening();
        match result {
            Ok(report) => {
                *self.last.borrow_mut() = Some(report.clone());
                Ok(progress_to_js(&report))
            }
            Err(e) => {
                let err = Error::Sync(e).to_js();
                if let Some(p) = self.last.borrow().as_ref() {
                    let _ = Reflect::set(&err, &JsValue::from_str("progress"), &progress_to_js(p));
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

fn config_from(options: &JsValue) -> Result<(SyncConfig, TransportOptions), Error> {
    let mut config = SyncConfig::default();
    let mut transport = TransportOptions::default();
    if let Some(n) = opt_number(options, "batchBytes")? {
        config.batch_bytes = n as usize;
    }
    if let Some(ms) = opt_number(options, "requestTimeoutMs")? {
        if ms < 1.0 {
            return Err(Error::invalid("requestTimeoutMs must be at least 1"));
        }
        config.request_timeout = Duration::from_millis(ms as u64);
    }
    // The transport's own deadline backs the driver's up, a little later.
    transport.timeout = config.request_timeout + Duration::from_millis(500);
    if let Some(n) = opt_number(options, "maxInFlightPerPeer")? {
        config.max_in_flight_per_peer = (n as usize).max(1);
    }
    if let Some(n) = opt_number(options, "maxRequestItems")? {
        config.max_request_items = (n as usize).clamp(1, 384);
        config.initial_request_items = config.initial_request_items.min(config.max_request_items);
    }
    if let Some(n) = opt_number(options, "peerFailureLimit")? {
        config.peer_failure_limit = (n as u32).max(1);
    }
    if let Some(n) = opt_number(options, "maxResponseBytes")? {
        transport.max_response_bytes = (n as usize).max(1024);
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
        let (syncer, handle) = Syncer::new(root, config);
        let inner = Rc::new(SyncInner {
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
        self.inner.handle.cancel();
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
            .map(progress_to_js)
            .unwrap_or(JsValue::UNDEFINED)
    }
}

/// Reads verified state out of a database that a `StateSync` filled.
///
/// ```js
/// const db = await StateDb.open('mainnet');
/// const acct = await db.account(root, '0x…');  // { nonce, balance, … } or null
/// ```
#[wasm_bindgen]
#[derive(Debug)]
pub struct StateDb {
    store: Rc<IdbStore>,
}

fn promise<F>(f: F) -> Promise
where
    F: std::future::Future<Output = Result<JsValue, Error>> + 'static,
{
    future_to_promise(async move { f.await.map_err(JsValue::from) })
}

#[wasm_bindgen]
impl StateDb {
    /// Opens (or creates) the database.
    pub async fn open(database: String) -> JsResult<StateDb> {
        let store = IdbStore::open(&database).await.map_err(Error::Store)?;
        Ok(StateDb {
            store: Rc::new(store),
        })
    }

    /// Deletes a database (its open connections close themselves first).
    #[wasm_bindgen(js_name = deleteDatabase)]
    pub async fn delete_database(database: String) -> JsResult<()> {
        IdbStore::delete(&database)
            .await
            .map_err(|e| Error::Store(e).into())
    }

    /// The account at `address` in the state of `root`, or null when the trie proves it
    /// absent. Rejects with `MISSING` when the path is not synced.
    #[wasm_bindgen(unchecked_return_type = "Promise<Account | null>")]
    pub fn account(&self, root: String, address: String) -> Promise {
        let store = self.store.clone();
        promise(async move {
            let (root, address) = (parse_h256(&root, "root")?, parse_address(&address)?);
            let acc = walk::account(&*store, root, &address).await?;
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
            let word = walk::storage(&*store, root, &address, &slot).await?;
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
            let code = walk::code(&*store, root, &address).await?;
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
            Ok(to_js(&walk::verify(&*store, root).await?))
        })
    }

    /// The progress record of the last commit, or null for a database never synced into.
    #[wasm_bindgen(unchecked_return_type = "Promise<SyncMeta | null>")]
    pub fn meta(&self) -> Promise {
        let store = self.store.clone();
        promise(async move {
            Ok(match store.meta().await? {
                Some(m) => crate::idb_store::meta_to_js(&m),
                None => JsValue::NULL,
            })
        })
    }

    /// Records in the database: `{ nodes, codes }` (across every root synced into it).
    #[wasm_bindgen(unchecked_return_type = "Promise<{ nodes: number; codes: number }>")]
    pub fn counts(&self) -> Promise {
        let store = self.store.clone();
        promise(async move {
            let nodes = store.count(Kind::Node).await?;
            let codes = store.count(Kind::Code).await?;
            Ok(to_js(
                &serde_json::json!({ "nodes": nodes, "codes": codes }),
            ))
        })
    }

    /// Closes the connection (lookups after this reject).
    pub fn close(&self) {
        self.store.close();
    }
}
