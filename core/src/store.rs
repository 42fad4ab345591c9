//! Where verified items go: the store interface and an in-memory store.
//!
//! Invariant every store inherits from the scheduler: an item is written only after it
//! hashed to its key and its whole subtree is present, so "present" means "complete".

use crate::hash::H256;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// Which namespace an item lives in. Code is kept apart from trie nodes (as geth keys code
/// under a prefix): a contract whose bytes happen to be a valid node must never make that
/// node's subtree look present.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A trie node of the account trie or of a storage trie.
    Node,
    /// Contract bytecode.
    Code,
}

/// An item's address: its namespace and keccak256.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ItemKey {
    /// Node or code.
    pub kind: Kind,
    /// keccak256 of the item's bytes.
    pub hash: H256,
}

impl ItemKey {
    /// A trie node key.
    pub fn node(hash: H256) -> Self {
        ItemKey {
            kind: Kind::Node,
            hash,
        }
    }
    /// A code key.
    pub fn code(hash: H256) -> Self {
        ItemKey {
            kind: Kind::Code,
            hash,
        }
    }
}

impl std::fmt::Display for ItemKey {
    /// `node 0x…` or `code 0x…`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            Kind::Node => "node",
            Kind::Code => "code",
        };
        write!(f, "{kind} {}", self.hash)
    }
}

/// Verified, complete items to write together, children before parents.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    /// The items in write order.
    pub items: Vec<(ItemKey, Vec<u8>)>,
    /// Sum of the items' byte lengths.
    pub bytes: usize,
    /// When set, replaces the saved frontier: nodes verified but still waiting for
    /// children, kept on a graceful stop so that a resume does not fetch them again.
    /// They are not "present" (their subtrees are not complete); they only seed the next
    /// run, which re-hashes them before use.
    pub frontier: Option<Vec<Vec<u8>>>,
}

impl Batch {
    /// Appends one item.
    pub fn push(&mut self, key: ItemKey, data: Vec<u8>) {
        self.bytes += data.len();
        self.items.push((key, data));
    }
    /// True when there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// What a reload needs to resume, written in the same transaction as the batch it counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncMeta {
    /// The root being synced.
    pub root: H256,
    /// True once the whole trie under `root` is present.
    pub complete: bool,
    /// Trie nodes written so far for this database (all roots).
    pub nodes: u64,
    /// Bytes of those nodes.
    pub node_bytes: u64,
    /// Codes written so far.
    pub codes: u64,
    /// Bytes of those codes.
    pub code_bytes: u64,
}

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The origin's storage quota is exhausted; nothing of the batch was written.
    #[error("storage quota exceeded")]
    QuotaExceeded,
    /// The transaction aborted; nothing of the batch was written.
    #[error("transaction aborted: {0}")]
    Aborted(String),
    /// Another writer holds the database.
    #[error("database is locked by another writer")]
    Locked,
    /// Any other backend failure.
    #[error("store: {0}")]
    Backend(String),
}

/// A content-addressed store with atomic batched writes.
///
/// Methods are async so that IndexedDB can implement them; the futures need not be `Send`.
#[allow(async_fn_in_trait)]
pub trait Store {
    /// For each key, whether it is present (in the same order).
    async fn contains(&self, keys: &[ItemKey]) -> Result<Vec<bool>, StoreError>;
    /// The bytes stored under each key (in the same order), read together so a backend can
    /// serve a whole trie level from one transaction.
    async fn get_many(&self, keys: &[ItemKey]) -> Result<Vec<Option<Vec<u8>>>, StoreError>;
    /// The bytes stored under `key`.
    async fn get(&self, key: ItemKey) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.get_many(&[key]).await?.pop().flatten())
    }
    /// Writes every item of `batch` and `meta` atomically: all or nothing.
    async fn write(&self, batch: &Batch, meta: &SyncMeta) -> Result<(), StoreError>;
    /// The progress record of the last successful write, if any.
    async fn meta(&self) -> Result<Option<SyncMeta>, StoreError>;
    /// The frontier saved by the last write that set one (empty if none).
    async fn frontier(&self) -> Result<Vec<Vec<u8>>, StoreError>;
}

#[derive(Debug, Default)]
struct MemoryInner {
    items: HashMap<ItemKey, Vec<u8>>,
    meta: Option<SyncMeta>,
    frontier: Vec<Vec<u8>>,
    writes: usize,
    fail_next_write: Option<StoreError>,
}

/// An in-memory store for native tests and benchmarks. Clones share the same data.
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    inner: Rc<RefCell<MemoryInner>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
    /// Number of items of `kind`.
    pub fn count(&self, kind: Kind) -> usize {
        self.inner
            .borrow()
            .items
            .keys()
            .filter(|k| k.kind == kind)
            .count()
    }
    /// Total bytes of items of `kind`.
    pub fn bytes(&self, kind: Kind) -> usize {
        self.inner
            .borrow()
            .items
            .iter()
            .filter(|(k, _)| k.kind == kind)
            .map(|(_, v)| v.len())
            .sum()
    }
    /// Synchronous lookup, for tests and walks.
    pub fn get_sync(&self, key: &ItemKey) -> Option<Vec<u8>> {
        self.inner.borrow().items.get(key).cloned()
    }
    /// Removes one item (tests that damage a store on purpose).
    pub fn remove(&self, key: &ItemKey) -> Option<Vec<u8>> {
        self.inner.borrow_mut().items.remove(key)
    }
    /// Every key present.
    pub fn keys(&self) -> Vec<ItemKey> {
        self.inner.borrow().items.keys().copied().collect()
    }
    /// Number of successful batch writes.
    pub fn writes(&self) -> usize {
        self.inner.borrow().writes
    }
    /// Makes the next write fail with `err` and write nothing (quota and abort tests).
    pub fn fail_next_write(&self, err: StoreError) {
        self.inner.borrow_mut().fail_next_write = Some(err);
    }
}

impl Store for MemoryStore {
    async fn contains(&self, keys: &[ItemKey]) -> Result<Vec<bool>, StoreError> {
        let inner = self.inner.borrow();
        Ok(keys.iter().map(|k| inner.items.contains_key(k)).collect())
    }

    async fn get_many(&self, keys: &[ItemKey]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        Ok(keys.iter().map(|k| self.get_sync(k)).collect())
    }

    async fn write(&self, batch: &Batch, meta: &SyncMeta) -> Result<(), StoreError> {
        let mut inner = self.inner.borrow_mut();
        if let Some(err) = inner.fail_next_write.take() {
            return Err(err);
        }
        for (k, v) in &batch.items {
            inner.items.insert(*k, v.clone());
        }
        if let Some(frontier) = &batch.frontier {
            inner.frontier = frontier.clone();
        }
        inner.meta = Some(meta.clone());
        inner.writes += 1;
        Ok(())
    }

    async fn meta(&self) -> Result<Option<SyncMeta>, StoreError> {
        Ok(self.inner.borrow().meta.clone())
    }

    async fn frontier(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        Ok(self.inner.borrow().frontier.clone())
    }
}
