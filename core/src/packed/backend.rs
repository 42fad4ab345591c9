//! The record backend: the minimal storage a packed store needs, and an in-memory one.
//!
//! Three tables of byte records keyed by u64 (in IndexedDB: three object stores with
//! integer keys, one `put` per record). Reads need no isolation beyond this: pages and
//! descriptors are immutable once written, only ever added or deleted.

use crate::store::StoreError;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

/// A table of the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// Pages of packed items (~64 KiB each), keyed by record id.
    Pages,
    /// Run descriptors, keyed by run id.
    Runs,
    /// Key 0: the progress record; key 1: the saved frontier.
    Meta,
}

impl Table {
    /// A stable name (the IndexedDB object store name).
    pub fn name(self) -> &'static str {
        match self {
            Table::Pages => "pages",
            Table::Runs => "runs",
            Table::Meta => "meta",
        }
    }
}

/// Key of the progress record in [`Table::Meta`].
pub const META_KEY: u64 = 0;
/// Key of the saved frontier in [`Table::Meta`].
pub const FRONTIER_KEY: u64 = 1;

/// A record write: table, key, bytes.
pub type Put = (Table, u64, Vec<u8>);

/// Byte records in a few tables with atomic multi-record commits.
///
/// Async for IndexedDB; the futures need not be `Send`.
#[allow(async_fn_in_trait)]
pub trait RecordBackend {
    /// The records under `keys` of `table`, in the same order (None where absent), read
    /// together (one transaction).
    async fn get(&self, table: Table, keys: &[u64]) -> Result<Vec<Option<Vec<u8>>>, StoreError>;
    /// Every record of `table` in key order (used on open, for the small runs table).
    async fn get_all(&self, table: Table) -> Result<Vec<(u64, Vec<u8>)>, StoreError>;
    /// Every key of `table` (used on open to find pages no run refers to).
    async fn keys(&self, table: Table) -> Result<Vec<u64>, StoreError>;
    /// Applies `deletes` then `puts` atomically: all or nothing.
    async fn commit(&self, puts: Vec<Put>, deletes: Vec<(Table, u64)>) -> Result<(), StoreError>;
}

/// What a [`MemoryBackend`] has done.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackendStats {
    /// Successful commits.
    pub commits: u64,
    /// Records put by them.
    pub puts: u64,
    /// Bytes put by them.
    pub put_bytes: u64,
    /// Records deleted by them.
    pub deletes: u64,
    /// Read calls (`get`, `get_all`, `keys`).
    pub reads: u64,
    /// Records returned by `get`.
    pub records_read: u64,
}

#[derive(Debug, Default)]
struct MemoryInner {
    tables: BTreeMap<(Table, u64), Vec<u8>>,
    stats: BackendStats,
    /// Commit attempts so far, successful or not.
    attempts: u64,
    /// Fail the commit attempt with this number.
    fail_at: Option<(u64, StoreError)>,
}

/// An in-memory backend for native tests and benchmarks. Clones share the same data, so
/// a clone can reopen the "database".
#[derive(Debug, Default, Clone)]
pub struct MemoryBackend {
    inner: Rc<RefCell<MemoryInner>>,
}

impl MemoryBackend {
    /// An empty backend.
    pub fn new() -> Self {
        Self::default()
    }
    /// Counters so far.
    pub fn stats(&self) -> BackendStats {
        self.inner.borrow().stats.clone()
    }
    /// Records in `table`.
    pub fn count(&self, table: Table) -> usize {
        self.inner
            .borrow()
            .tables
            .keys()
            .filter(|(t, _)| *t == table)
            .count()
    }
    /// Total bytes of the records in `table`.
    pub fn bytes(&self, table: Table) -> usize {
        self.inner
            .borrow()
            .tables
            .iter()
            .filter(|((t, _), _)| *t == table)
            .map(|(_, v)| v.len())
            .sum()
    }
    /// Makes the commit `n` commits from now fail with `err` (0 = the next) and change
    /// nothing.
    pub fn fail_commit_in(&self, n: u64, err: StoreError) {
        let mut inner = self.inner.borrow_mut();
        inner.fail_at = Some((inner.attempts + n, err));
    }
    /// Replaces a record's bytes directly (tests that damage the database).
    pub fn put_raw(&self, table: Table, key: u64, bytes: Vec<u8>) {
        self.inner.borrow_mut().tables.insert((table, key), bytes);
    }
}

impl RecordBackend for MemoryBackend {
    async fn get(&self, table: Table, keys: &[u64]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let mut inner = self.inner.borrow_mut();
        let out: Vec<_> = keys
            .iter()
            .map(|k| inner.tables.get(&(table, *k)).cloned())
            .collect();
        inner.stats.reads += 1;
        inner.stats.records_read += out.iter().filter(|v| v.is_some()).count() as u64;
        Ok(out)
    }

    async fn get_all(&self, table: Table) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let mut inner = self.inner.borrow_mut();
        inner.stats.reads += 1;
        Ok(inner
            .tables
            .range((table, 0)..=(table, u64::MAX))
            .map(|((_, k), v)| (*k, v.clone()))
            .collect())
    }

    async fn keys(&self, table: Table) -> Result<Vec<u64>, StoreError> {
        let mut inner = self.inner.borrow_mut();
        inner.stats.reads += 1;
        Ok(inner
            .tables
            .range((table, 0)..=(table, u64::MAX))
            .map(|((_, k), _)| *k)
            .collect())
    }

    async fn commit(&self, puts: Vec<Put>, deletes: Vec<(Table, u64)>) -> Result<(), StoreError> {
        let mut inner = self.inner.borrow_mut();
        let attempt = inner.attempts;
        inner.attempts += 1;
        if inner.fail_at.as_ref().is_some_and(|(at, _)| *at == attempt) {
            return Err(inner.fail_at.take().expect("checked").1);
        }
        for key in &deletes {
            inner.tables.remove(key);
        }
        inner.stats.deletes += deletes.len() as u64;
        inner.stats.commits += 1;
        inner.stats.puts += puts.len() as u64;
        for (table, key, bytes) in puts {
            inner.stats.put_bytes += bytes.len() as u64;
            inner.tables.insert((table, key), bytes);
        }
        Ok(())
    }
}
