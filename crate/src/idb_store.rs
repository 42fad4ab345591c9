//! The IndexedDB [`Store`]: one database per name, trie nodes and code in separate object
//! stores keyed by their binary 32-byte hash (a `Uint8Array`: 32 bytes a key, where a hex
//! string would cost 128), one record per item, plus a `meta` store holding the progress
//! record.
//!
//! Every `write` is one readwrite transaction: all puts and the meta record are issued
//! synchronously, nothing else is awaited while it is open, and the batch counts as written
//! only when the transaction's `complete` event fired. An `abort` (a failed put, a full disk:
//! `QuotaExceededError`) is an error, never a success.
//!
//! Reads (`contains`, `get_many`, `meta`) issue all their requests in one readonly
//! transaction and collect the results once it completes, so a whole trie level costs one
//! transaction and two event handlers, not one future per key.
//!
//! The layout (one record per item) is simple and measured at 16k–26k puts/s; it sits
//! behind [`Store`], so a packed layout can replace it without touching the engine.

use futures::channel::oneshot;
use idb::{DatabaseEvent, Factory, ObjectStoreParams};
use js_sys::{Object, Reflect, Uint8Array};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use triesync_core::store::{Batch, ItemKey, Kind, Store, StoreError, SyncMeta};
use triesync_core::H256;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{
    DomException, Event, IdbDatabase, IdbObjectStore, IdbRequest, IdbTransaction,
    IdbTransactionMode,
};

/// Version of the database schema (the object stores below).
pub const SCHEMA_VERSION: u32 = 1;
/// Object store of trie nodes: key = 32-byte hash, value = the node's RLP bytes.
pub const NODES: &str = "nodes";
/// Object store of contract code: key = 32-byte code hash, value = the code.
pub const CODE: &str = "code";
/// Object store of the progress record (key [`META_KEY`]).
pub const META: &str = "meta";
/// Key of the progress record in [`META`].
pub const META_KEY: &str = "sync";
/// Key of the saved frontier in [`META`]: an array of node blobs.
pub const FRONTIER_KEY: &str = "frontier";

fn backend(context: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("{context}: {e}"))
}

/// Maps a DOMException (a put's, a transaction's) to the store error it means.
fn dom_error(e: Option<DomException>, fallback: &str) -> StoreError {
    match e {
        Some(e) if e.name() == "QuotaExceededError" => StoreError::QuotaExceeded,
        Some(e) => StoreError::Aborted(format!("{}: {}", e.name(), e.message())),
        None => StoreError::Aborted(fallback.to_string()),
    }
}

fn js_error_to_store(context: &str, e: &JsValue) -> StoreError {
    match e.dyn_ref::<DomException>() {
        Some(d) if d.name() == "QuotaExceededError" => StoreError::QuotaExceeded,
        Some(d) => StoreError::Backend(format!("{context}: {}: {}", d.name(), d.message())),
        None => StoreError::Backend(format!("{context}: {e:?}")),
    }
}

fn idb_error(context: &str, e: idb::Error) -> StoreError {
    match e {
        idb::Error::DomException(d) => dom_error(Some(d), context),
        other => backend(context, other),
    }
}

fn store_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Node => NODES,
        Kind::Code => CODE,
    }
}

fn key_js(hash: &H256) -> JsValue {
    Uint8Array::from(&hash.0[..]).into()
}

/// Clears a transaction's handlers when the wait for it ends or is dropped, so a late
/// event never calls a dropped closure.
struct HandlerGuard(IdbTransaction);

impl Drop for HandlerGuard {
    fn drop(&mut self) {
        self.0.set_oncomplete(None);
        self.0.set_onabort(None);
    }
}

/// Waits for `tx` to finish: `Ok` only on `complete`; an `abort` is an error whose kind
/// comes from `tx.error` (`QuotaExceededError` → [`StoreError::QuotaExceeded`]).
///
/// Must be called before control returns to the event loop after the last request was
/// issued (the events fire asynchronously, so attaching here is never too late).
pub async fn transaction_done(tx: IdbTransaction) -> Result<(), StoreError> {
    let (sender, receiver) = oneshot::channel::<bool>();
    let sender = Rc::new(RefCell::new(Some(sender)));
    let send = move |committed: bool| {
        let sender = sender.clone();
        move |_: Event| {
            if let Some(s) = sender.borrow_mut().take() {
                let _ = s.send(committed);
            }
        }
    };
    let on_complete = Closure::<dyn FnMut(Event)>::new(send(true));
    let on_abort = Closure::<dyn FnMut(Event)>::new(send(false));
    tx.set_oncomplete(Some(on_complete.as_ref().unchecked_ref()));
    tx.set_onabort(Some(on_abort.as_ref().unchecked_ref()));
    let _guard = HandlerGuard(tx.clone());
    // The sender lives in the closures, which outlive this await.
    let committed = receiver.await.unwrap_or(false);
    if committed {
        Ok(())
    } else {
        Err(dom_error(tx.error(), "transaction aborted"))
    }
}

/// A connection to one triesync database. Closes itself on drop and when another context
/// wants to delete or upgrade the database (`versionchange`).
#[derive(Debug)]
pub struct IdbStore {
    db: IdbDatabase,
    name: String,
    _on_version_change: Closure<dyn FnMut(Event)>,
    /// Test hook: abort the next write's transaction after issuing its puts.
    abort_next_write: Cell<bool>,
    /// Recently read items. Safe to keep: an item's bytes never change for its key.
    cache: RefCell<ReadCache>,
}

/// A small bounded cache of items read by `get_many`: lookups walk from the root, so the
/// top levels of a trie are read by every one of them. Cleared whole when full.
#[derive(Debug, Default)]
struct ReadCache {
    items: HashMap<ItemKey, Vec<u8>>,
    bytes: usize,
}

/// Bytes the read cache holds at most.
const READ_CACHE_BYTES: usize = 4 * 1024 * 1024;

impl ReadCache {
    fn insert(&mut self, key: ItemKey, data: &[u8]) {
        if data.len() > READ_CACHE_BYTES / 16 {
            return;
        }
        if self.bytes + data.len() > READ_CACHE_BYTES {
            self.items.clear();
            self.bytes = 0;
        }
        if self.items.insert(key, data.to_vec()).is_none() {
            self.bytes += data.len();
        }
    }
}

impl IdbStore {
    /// Opens (creating or upgrading) database `name` in the global scope's `indexedDB`.
    pub async fn open(name: &str) -> Result<IdbStore, StoreError> {
        let factory = Factory::new().map_err(|e| backend("indexedDB is not available", e))?;
        Self::open_in(factory, name).await
    }

    /// Opens database `name` in `factory` (a storage bucket's `indexedDB`, ...).
    pub async fn open_in(factory: Factory, name: &str) -> Result<IdbStore, StoreError> {
        let mut request = factory
            .open(name, Some(SCHEMA_VERSION))
            .map_err(|e| idb_error("open", e))?;
        request.on_upgrade_needed(|event| {
            if let Ok(db) = event.database() {
                Self::create_schema(&db);
            }
        });
        let db: IdbDatabase = request.await.map_err(|e| idb_error("open", e))?.into();
        Ok(Self::from_database(db, name))
    }

    /// Creates the object stores this layout needs that `db` lacks (in an upgrade).
    pub(crate) fn create_schema(db: &idb::Database) {
        let existing = db.store_names();
        for store in [NODES, CODE, META] {
            if !existing.iter().any(|n| n == store) {
                // Failing here aborts the upgrade, which fails the open request.
                let _ = db.create_object_store(store, ObjectStoreParams::new());
            }
        }
    }

    /// Wraps an open connection whose schema is this layout's (see `crate::layout`).
    pub(crate) fn from_database(db: IdbDatabase, name: &str) -> IdbStore {
        let closing = db.clone();
        let on_version_change = Closure::<dyn FnMut(Event)>::new(move |_: Event| closing.close());
        db.set_onversionchange(Some(on_version_change.as_ref().unchecked_ref()));
        IdbStore {
            db,
            name: name.to_string(),
            _on_version_change: on_version_change,
            abort_next_write: Cell::new(false),
            cache: RefCell::new(ReadCache::default()),
        }
    }

    /// Deletes database `name` (open connections of this crate close themselves first).
    pub async fn delete(name: &str) -> Result<(), StoreError> {
        let factory = Factory::new().map_err(|e| backend("indexedDB is not available", e))?;
        let request = factory.delete(name).map_err(|e| idb_error("delete", e))?;
        request.await.map_err(|e| idb_error("delete", e))
    }

    /// The database name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Closes the connection (also done on drop).
    pub fn close(&self) {
        self.db.close();
    }

    /// Makes the next `write` abort its transaction after issuing every put: for tests
    /// that the abort path reports an error and writes nothing.
    #[doc(hidden)]
    pub fn abort_next_write(&self) {
        self.abort_next_write.set(true);
    }

    fn transaction(
        &self,
        stores: &[&str],
        mode: IdbTransactionMode,
    ) -> Result<IdbTransaction, StoreError> {
        let names: js_sys::Array = stores.iter().map(|s| JsValue::from_str(s)).collect();
        self.db
            .transaction_with_str_sequence_and_mode(&names, mode)
            .map_err(|e| js_error_to_store("transaction", &e))
    }

    fn object_store(tx: &IdbTransaction, name: &str) -> Result<IdbObjectStore, StoreError> {
        tx.object_store(name)
            .map_err(|e| js_error_to_store("object store", &e))
    }

    /// Number of records of `kind`.
    pub async fn count(&self, kind: Kind) -> Result<u64, StoreError> {
        let tx = self.transaction(&[store_name(kind)], IdbTransactionMode::Readonly)?;
        let req = Self::object_store(&tx, store_name(kind))?
            .count()
            .map_err(|e| js_error_to_store("count", &e))?;
        transaction_done(tx).await?;
        let n = req.result().map_err(|e| js_error_to_store("count", &e))?;
        Ok(n.as_f64().unwrap_or(0.0) as u64)
    }

    /// One record of the `meta` store (`undefined` when absent).
    async fn read_meta(&self, key: &str) -> Result<JsValue, StoreError> {
        let tx = self.transaction(&[META], IdbTransactionMode::Readonly)?;
        let req = Self::object_store(&tx, META)?
            .get(&JsValue::from_str(key))
            .map_err(|e| js_error_to_store("read meta", &e))?;
        transaction_done(tx).await?;
        req.result().map_err(|e| js_error_to_store("read meta", &e))
    }

    /// Issues one read per key in a single readonly transaction (`key_only`: keys, not
    /// values) and returns the results once it completed.
    async fn read_many(
        &self,
        keys: &[ItemKey],
        key_only: bool,
    ) -> Result<Vec<JsValue>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let tx = self.transaction(&[NODES, CODE], IdbTransactionMode::Readonly)?;
        let nodes = Self::object_store(&tx, NODES)?;
        let code = Self::object_store(&tx, CODE)?;
        let mut requests: Vec<IdbRequest> = Vec::with_capacity(keys.len());
        for key in keys {
            let store = if key.kind == Kind::Node {
                &nodes
            } else {
                &code
            };
            let k = key_js(&key.hash);
            let issued = if key_only {
                store.get_key(&k)
            } else {
                store.get(&k)
            };
            match issued {
                Ok(req) => requests.push(req),
                Err(e) => {
                    let _ = tx.abort();
                    return Err(js_error_to_store("read", &e));
                }
            }
        }
        transaction_done(tx).await?;
        requests
            .iter()
            .map(|r| r.result().map_err(|e| js_error_to_store("read result", &e)))
            .collect()
    }
}

impl IdbStore {
    /// Up to `limit` records of `kind` in key order, starting after `after` (from the first
    /// when `None`): one readonly transaction reading the keys and the values of the same
    /// range. For scans of the whole store (`StateDb.checkStore`).
    pub async fn scan(
        &self,
        kind: Kind,
        after: Option<H256>,
        limit: u32,
    ) -> Result<Vec<(H256, Vec<u8>)>, StoreError> {
        let name = store_name(kind);
        let tx = self.transaction(&[name], IdbTransactionMode::Readonly)?;
        let store = Self::object_store(&tx, name)?;
        let range = match &after {
            Some(h) => web_sys::IdbKeyRange::lower_bound_with_open(&key_js(h), true)
                .map_err(|e| js_error_to_store("key range", &e))?
                .into(),
            None => JsValue::UNDEFINED,
        };
        let keys = store
            .get_all_keys_with_key_and_limit(&range, limit)
            .map_err(|e| js_error_to_store("scan keys", &e))?;
        let values = store
            .get_all_with_key_and_limit(&range, limit)
            .map_err(|e| js_error_to_store("scan values", &e))?;
        transaction_done(tx).await?;
        let keys = js_sys::Array::from(&keys.result().map_err(|e| js_error_to_store("scan", &e))?);
        let values =
            js_sys::Array::from(&values.result().map_err(|e| js_error_to_store("scan", &e))?);
        let mut out = Vec::with_capacity(keys.length() as usize);
        for (k, v) in keys.iter().zip(values.iter()) {
            // Keys come back as ArrayBuffers; a key of another length is not ours.
            let k = Uint8Array::new(&k).to_vec();
            let hash = H256::from_slice(&k).ok_or_else(|| {
                StoreError::Backend(format!("{name}: a key of {} bytes", k.len()))
            })?;
            out.push((hash, Uint8Array::new(&v).to_vec()));
        }
        Ok(out)
    }
}

/// Calls `globalThis.__triesyncTestHooks[name](info)` when a test defined it: tests that
/// must act at a precise moment of a write (kill the browser while a transaction is open)
/// use it. Costs one property read per batch otherwise.
pub(crate) fn test_hook(name: &str, items: usize, bytes: usize) {
    let hooks = Reflect::get(&js_sys::global(), &JsValue::from_str("__triesyncTestHooks"))
        .unwrap_or(JsValue::UNDEFINED);
    if !hooks.is_object() {
        return;
    }
    let Ok(f) = Reflect::get(&hooks, &JsValue::from_str(name)) else {
        return;
    };
    if let Some(f) = f.dyn_ref::<js_sys::Function>() {
        let info = Object::new();
        let _ = Reflect::set(&info, &"items".into(), &JsValue::from_f64(items as f64));
        let _ = Reflect::set(&info, &"bytes".into(), &JsValue::from_f64(bytes as f64));
        let _ = f.call1(&hooks, &info);
    }
}

impl Drop for IdbStore {
    fn drop(&mut self) {
        self.db.set_onversionchange(None);
        self.db.close();
    }
}

/// The progress record as a plain object (as kept in this layout's `meta` store), with
/// the name of the database's layout (`StateDb.meta()` shows it).
pub fn meta_to_js(meta: &SyncMeta, layout: &str) -> JsValue {
    let obj = Object::new();
    let set = |k: &str, v: JsValue| {
        let _ = Reflect::set(&obj, &JsValue::from_str(k), &v);
    };
    set("layout", JsValue::from_str(layout));
    set("root", JsValue::from_str(&meta.root.to_hex()));
    set("complete", JsValue::from_bool(meta.complete));
    set("nodes", JsValue::from_f64(meta.nodes as f64));
    set("nodeBytes", JsValue::from_f64(meta.node_bytes as f64));
    set("codes", JsValue::from_f64(meta.codes as f64));
    set("codeBytes", JsValue::from_f64(meta.code_bytes as f64));
    obj.into()
}

fn meta_from_js(v: &JsValue) -> Result<SyncMeta, StoreError> {
    let get = |k: &str| Reflect::get(v, &JsValue::from_str(k)).unwrap_or(JsValue::UNDEFINED);
    let num = |k: &str| get(k).as_f64().unwrap_or(0.0) as u64;
    let root = get("root")
        .as_string()
        .and_then(|s| H256::from_hex(&s).ok())
        .ok_or_else(|| StoreError::Backend("meta record has no valid root".into()))?;
    Ok(SyncMeta {
        root,
        complete: get("complete").as_bool().unwrap_or(false),
        nodes: num("nodes"),
        node_bytes: num("nodeBytes"),
        codes: num("codes"),
        code_bytes: num("codeBytes"),
    })
}

impl Store for IdbStore {
    async fn contains(&self, keys: &[ItemKey]) -> Result<Vec<bool>, StoreError> {
        let found = self.read_many(keys, true).await?;
        Ok(found.iter().map(|v| !v.is_undefined()).collect())
    }

    async fn get_many(&self, keys: &[ItemKey]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let mut out: Vec<Option<Vec<u8>>> = {
            let cache = self.cache.borrow();
            keys.iter().map(|k| cache.items.get(k).cloned()).collect()
        };
        let missing: Vec<ItemKey> = keys
            .iter()
            .zip(&out)
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| *k)
            .collect();
        if missing.is_empty() {
            return Ok(out);
        }
        let found = self.read_many(&missing, false).await?;
        let mut found = missing.iter().zip(found);
        let mut cache = self.cache.borrow_mut();
        for slot in out.iter_mut().filter(|v| v.is_none()) {
            let (key, v) = found.next().expect("one result per missing key");
            if !v.is_undefined() && !v.is_null() {
                let data = Uint8Array::new(&v).to_vec();
                cache.insert(*key, &data);
                *slot = Some(data);
            }
        }
        Ok(out)
    }

    async fn write(&self, batch: &Batch, meta: &SyncMeta) -> Result<(), StoreError> {
        let tx = self.transaction(&[NODES, CODE, META], IdbTransactionMode::Readwrite)?;
        let issue = || -> Result<(), StoreError> {
            let nodes = Self::object_store(&tx, NODES)?;
            let code = Self::object_store(&tx, CODE)?;
            for (key, data) in &batch.items {
                let store = if key.kind == Kind::Node {
                    &nodes
                } else {
                    &code
                };
                // The request needs no handler: a failed put aborts the transaction,
                // which the wait below reports.
                store
                    .put_with_key(&Uint8Array::from(&data[..]), &key_js(&key.hash))
                    .map_err(|e| js_error_to_store("put", &e))?;
            }
            let meta_store = Self::object_store(&tx, META)?;
            meta_store
                .put_with_key(
                    &meta_to_js(meta, crate::layout::Layout::PerItem.name()),
                    &JsValue::from_str(META_KEY),
                )
                .map_err(|e| js_error_to_store("put meta", &e))?;
            if let Some(frontier) = &batch.frontier {
                let blobs: js_sys::Array = frontier
                    .iter()
                    .map(|b| JsValue::from(Uint8Array::from(&b[..])))
                    .collect();
                meta_store
                    .put_with_key(&blobs, &JsValue::from_str(FRONTIER_KEY))
                    .map_err(|e| js_error_to_store("put frontier", &e))?;
            }
            Ok(())
        };
        if let Err(e) = issue() {
            let _ = tx.abort();
            return Err(e);
        }
        if self.abort_next_write.replace(false) {
            let _ = tx.abort();
        }
        // Every put is issued and the transaction is still open (it commits once control
        // returns to the event loop).
        test_hook("writeIssued", batch.items.len(), batch.bytes);
        transaction_done(tx).await?;
        test_hook("writeDone", batch.items.len(), batch.bytes);
        Ok(())
    }

    async fn meta(&self) -> Result<Option<SyncMeta>, StoreError> {
        let v = self.read_meta(META_KEY).await?;
        if v.is_undefined() || v.is_null() {
            return Ok(None);
        }
        meta_from_js(&v).map(Some)
    }

    async fn frontier(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        let v = self.read_meta(FRONTIER_KEY).await?;
        if !js_sys::Array::is_array(&v) {
            return Ok(Vec::new());
        }
        Ok(js_sys::Array::from(&v)
            .iter()
            .map(|b| Uint8Array::new(&b).to_vec())
            .collect())
    }
}
