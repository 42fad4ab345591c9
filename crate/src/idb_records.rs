//! [`IdbRecords`]: core's [`RecordBackend`] on IndexedDB, the storage under a
//! [`PackedStore`](triesync_core::packed::PackedStore) in the browser.
//!
//! One database per name with three object stores, `pages`, `runs` and `meta`
//! ([`Table::name`]), integer keys (record ids, well below 2^53) and `Uint8Array` values.
//! A packed store writes a batch as a few ~64 KiB records instead of one record per item,
//! which is what IndexedDB is fast at (its cost is per request, not per byte).
//!
//! * `get`: one readonly transaction, every request issued at once, the results collected
//!   once it completed.
//! * `get_all` / `keys`: `getAll()` / `getAllKeys()` in one readonly transaction.
//! * `commit`: one readwrite transaction over the three stores, deletes then puts, all
//!   issued synchronously; the commit counts only when the transaction's `complete` event
//!   fired. An abort is an error (`QuotaExceededError` → [`StoreError::QuotaExceeded`],
//!   anything else → [`StoreError::Aborted`]) and nothing of the commit is kept.
//!
//! Nothing else is awaited while a transaction is open, and nothing here touches `window`
//! (the global scope's `indexedDB` is used), so it runs on a page and in a worker.

use crate::idb_store::{test_hook, transaction_done};
use idb::{DatabaseEvent, Factory, ObjectStoreParams};
use js_sys::{Array, Uint8Array};
use std::cell::{Cell, RefCell};
use triesync_core::packed::backend::Put;
use triesync_core::packed::{BackendStats, RecordBackend, Table};
use triesync_core::store::StoreError;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{
    DomException, Event, IdbDatabase, IdbObjectStore, IdbRequest, IdbTransaction,
    IdbTransactionMode,
};

/// Version of the packed database schema (the three object stores).
pub const RECORDS_SCHEMA_VERSION: u32 = 1;

/// Every table, in the order of a commit's transaction scope.
const TABLES: [Table; 3] = [Table::Pages, Table::Runs, Table::Meta];

fn backend(context: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("{context}: {e}"))
}

/// A synchronous failure of an IndexedDB call (a request not issued, a transaction not
/// created) as a store error.
fn js_error(context: &str, e: &JsValue) -> StoreError {
    match e.dyn_ref::<DomException>() {
        Some(d) if d.name() == "QuotaExceededError" => StoreError::QuotaExceeded,
        Some(d) => StoreError::Backend(format!("{context}: {}: {}", d.name(), d.message())),
        None => StoreError::Backend(format!("{context}: {e:?}")),
    }
}

fn idb_error(context: &str, e: idb::Error) -> StoreError {
    match e {
        idb::Error::DomException(d) if d.name() == "QuotaExceededError" => {
            StoreError::QuotaExceeded
        }
        idb::Error::DomException(d) => {
            StoreError::Backend(format!("{context}: {}: {}", d.name(), d.message()))
        }
        other => backend(context, other),
    }
}

fn key_js(key: u64) -> JsValue {
    JsValue::from_f64(key as f64)
}

fn key_from_js(table: Table, v: &JsValue) -> Result<u64, StoreError> {
    match v.as_f64() {
        Some(k) if k >= 0.0 && k.fract() == 0.0 && k <= 9_007_199_254_740_992.0 => Ok(k as u64),
        _ => Err(StoreError::Backend(format!(
            "{}: a key that is not a record id: {v:?}",
            table.name()
        ))),
    }
}

/// A record's value (`Uint8Array` as stored; an `ArrayBuffer` is accepted too).
fn bytes_from_js(table: Table, v: &JsValue) -> Result<Vec<u8>, StoreError> {
    if v.is_instance_of::<Uint8Array>() || v.is_instance_of::<js_sys::ArrayBuffer>() {
        Ok(Uint8Array::new(v).to_vec())
    } else {
        Err(StoreError::Backend(format!(
            "{}: a record that is not bytes",
            table.name()
        )))
    }
}

/// A connection to one packed database. Closes itself on drop and when another context
/// wants to delete or upgrade the database (`versionchange`).
#[derive(Debug)]
pub struct IdbRecords {
    db: IdbDatabase,
    name: String,
    _on_version_change: Closure<dyn FnMut(Event)>,
    /// Test hook: let this many commits through, then abort the next one after issuing
    /// its requests.
    abort_commit: Cell<Option<u32>>,
    stats: RefCell<BackendStats>,
    /// The batch (items, bytes) whose commit is next: the write test hooks' argument.
    write_hook: Cell<Option<(usize, usize)>>,
}

impl IdbRecords {
    /// Opens (creating if needed) packed database `name` in the global scope's `indexedDB`.
    pub async fn open(name: &str) -> Result<IdbRecords, StoreError> {
        let factory = Factory::new().map_err(|e| backend("indexedDB is not available", e))?;
        Self::open_in(factory, name).await
    }

    /// Opens packed database `name` in `factory` (a storage bucket's `indexedDB`, ...).
    ///
    /// Fails with [`StoreError::Backend`] when the database exists with another layout
    /// (e.g. the one-record-per-item [`IdbStore`](crate::idb_store::IdbStore)'s: no
    /// `pages`/`runs` stores), rather than mixing the two.
    pub async fn open_in(factory: Factory, name: &str) -> Result<IdbRecords, StoreError> {
        let mut request = factory
            .open(name, Some(RECORDS_SCHEMA_VERSION))
            .map_err(|e| idb_error("open", e))?;
        request.on_upgrade_needed(|event| {
            if let Ok(db) = event.database() {
                Self::create_schema(&db);
            }
        });
        let db = request.await.map_err(|e| idb_error("open", e))?;
        let names = db.store_names();
        let missing: Vec<&str> = TABLES
            .iter()
            .map(|t| t.name())
            .filter(|t| !names.iter().any(|n| n == t))
            .collect();
        let db: IdbDatabase = db.into();
        if !missing.is_empty() {
            db.close();
            return Err(StoreError::Backend(format!(
                "database {name:?} is not a packed store (no {} object store): another layout?",
                missing.join(", ")
            )));
        }
        Ok(Self::from_database(db, name))
    }

    /// Creates the object stores this layout needs that `db` lacks (in an upgrade).
    pub(crate) fn create_schema(db: &idb::Database) {
        let existing = db.store_names();
        for table in TABLES {
            if !existing.iter().any(|n| n == table.name()) {
                // Failing here aborts the upgrade, which fails the open request.
                let _ = db.create_object_store(table.name(), ObjectStoreParams::new());
            }
        }
    }

    /// Wraps an open connection whose schema is this layout's (see `crate::layout`).
    pub(crate) fn from_database(db: IdbDatabase, name: &str) -> IdbRecords {
        let closing = db.clone();
        let on_version_change = Closure::<dyn FnMut(Event)>::new(move |_: Event| closing.close());
        db.set_onversionchange(Some(on_version_change.as_ref().unchecked_ref()));
        IdbRecords {
            db,
            name: name.to_string(),
            _on_version_change: on_version_change,
            abort_commit: Cell::new(None),
            stats: RefCell::new(BackendStats::default()),
            write_hook: Cell::new(None),
        }
    }

    /// Makes the next commit call the write test hooks (`writeIssued` once its requests
    /// are issued, `writeDone` once it committed) with a batch's `items` and `bytes`:
    /// the packed store writes a batch as one commit, so the hooks mean what they mean
    /// for the per-item layout. `None` clears it.
    pub(crate) fn hook_next_commit(&self, batch: Option<(usize, usize)>) {
        self.write_hook.set(batch);
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

    /// What this connection has done (commits, records and bytes put, reads).
    pub fn stats(&self) -> BackendStats {
        self.stats.borrow().clone()
    }

    /// Lets `after` commits through, then aborts the next one's transaction after issuing
    /// every request: for tests that an aborted commit is an error and keeps nothing.
    #[doc(hidden)]
    pub fn abort_commit_after(&self, after: u32) {
        self.abort_commit.set(Some(after));
    }

    fn transaction(
        &self,
        tables: &[Table],
        mode: IdbTransactionMode,
    ) -> Result<IdbTransaction, StoreError> {
        let names: Array = tables.iter().map(|t| JsValue::from_str(t.name())).collect();
        self.db
            .transaction_with_str_sequence_and_mode(&names, mode)
            .map_err(|e| js_error("transaction", &e))
    }

    fn object_store(tx: &IdbTransaction, table: Table) -> Result<IdbObjectStore, StoreError> {
        tx.object_store(table.name())
            .map_err(|e| js_error("object store", &e))
    }

    /// Issues `issue`'s requests in one readonly transaction over `table` and returns them
    /// once it completed (aborting it if a request could not be issued).
    async fn read<T>(
        &self,
        table: Table,
        issue: impl FnOnce(&IdbObjectStore) -> Result<T, JsValue>,
    ) -> Result<T, StoreError> {
        let tx = self.transaction(&[table], IdbTransactionMode::Readonly)?;
        let issued = Self::object_store(&tx, table)
            .and_then(|store| issue(&store).map_err(|e| js_error("read", &e)));
        let requests = match issued {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.abort();
                return Err(e);
            }
        };
        transaction_done(tx).await?;
        self.stats.borrow_mut().reads += 1;
        Ok(requests)
    }
}

fn result(req: &IdbRequest) -> Result<JsValue, StoreError> {
    req.result().map_err(|e| js_error("read result", &e))
}

impl Drop for IdbRecords {
    fn drop(&mut self) {
        self.db.set_onversionchange(None);
        self.db.close();
    }
}

impl RecordBackend for IdbRecords {
    async fn get(&self, table: Table, keys: &[u64]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let requests = self
            .read(table, |store| {
                keys.iter()
                    .map(|k| store.get(&key_js(*k)))
                    .collect::<Result<Vec<_>, _>>()
            })
            .await?;
        let mut out = Vec::with_capacity(keys.len());
        for req in &requests {
            let v = result(req)?;
            out.push(if v.is_undefined() || v.is_null() {
                None
            } else {
                Some(bytes_from_js(table, &v)?)
            });
        }
        self.stats.borrow_mut().records_read += out.iter().filter(|v| v.is_some()).count() as u64;
        Ok(out)
    }

    async fn get_all(&self, table: Table) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        // Keys and values of the same store in the same transaction: same order, same set.
        let (keys, values) = self
            .read(table, |store| Ok((store.get_all_keys()?, store.get_all()?)))
            .await?;
        let keys = Array::from(&result(&keys)?);
        let values = Array::from(&result(&values)?);
        if keys.length() != values.length() {
            return Err(StoreError::Backend(format!(
                "{}: getAll and getAllKeys disagree",
                table.name()
            )));
        }
        keys.iter()
            .zip(values.iter())
            .map(|(k, v)| Ok((key_from_js(table, &k)?, bytes_from_js(table, &v)?)))
            .collect()
    }

    async fn keys(&self, table: Table) -> Result<Vec<u64>, StoreError> {
        let keys = self.read(table, IdbObjectStore::get_all_keys).await?;
        Array::from(&result(&keys)?)
            .iter()
            .map(|k| key_from_js(table, &k))
            .collect()
    }

    async fn commit(&self, puts: Vec<Put>, deletes: Vec<(Table, u64)>) -> Result<(), StoreError> {
        let hook = self.write_hook.take();
        if puts.is_empty() && deletes.is_empty() {
            return Ok(());
        }
        let tx = self.transaction(&TABLES, IdbTransactionMode::Readwrite)?;
        let mut put_bytes = 0u64;
        let issue = |put_bytes: &mut u64| -> Result<(), StoreError> {
            let stores = [
                Self::object_store(&tx, Table::Pages)?,
                Self::object_store(&tx, Table::Runs)?,
                Self::object_store(&tx, Table::Meta)?,
            ];
            let store =
                |t: Table| &stores[TABLES.iter().position(|x| *x == t).expect("every table")];
            // Requests of one transaction run in order: deletes first, then puts (a put
            // of a key also deleted here wins). They need no handlers: a failed request
            // aborts the transaction, which the wait below reports.
            for (table, key) in &deletes {
                store(*table)
                    .delete(&key_js(*key))
                    .map_err(|e| js_error("delete", &e))?;
            }
            for (table, key, bytes) in &puts {
                *put_bytes += bytes.len() as u64;
                store(*table)
                    .put_with_key(&Uint8Array::from(&bytes[..]), &key_js(*key))
                    .map_err(|e| js_error("put", &e))?;
            }
            Ok(())
        };
        if let Err(e) = issue(&mut put_bytes) {
            let _ = tx.abort();
            return Err(e);
        }
        match self.abort_commit.get() {
            Some(0) => {
                self.abort_commit.set(None);
                let _ = tx.abort();
            }
            Some(n) => self.abort_commit.set(Some(n - 1)),
            None => {}
        }
        // Everything is issued and the transaction is still open: it commits once control
        // returns to the event loop.
        if let Some((items, bytes)) = hook {
            test_hook("writeIssued", items, bytes);
        }
        transaction_done(tx).await?;
        if let Some((items, bytes)) = hook {
            test_hook("writeDone", items, bytes);
        }
        let mut stats = self.stats.borrow_mut();
        stats.commits += 1;
        stats.puts += puts.len() as u64;
        stats.put_bytes += put_bytes;
        stats.deletes += deletes.len() as u64;
        Ok(())
    }
}
