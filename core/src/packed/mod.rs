//! A packed store: items kept many to a record, behind the [`Store`](crate::store::Store)
//! trait, over any [`RecordBackend`] (in memory here; IndexedDB in the browser crate).
//!
//! Why: IndexedDB's cost is per request, not per byte; one record per trie node made the
//! commit 72–81 % of sync time, while the same bytes in ~64–100 KiB records write 20–50×
//! faster (BENCHMARKS.md).
//!
//! # Design: an LSM of immutable sorted runs
//!
//! * **Write** ([`PackedStore`]'s `Store::write`): the batch's items, sorted by
//!   `(kind, hash)`, become one *run*: pages of at most [`PackedConfig::page_bytes`]
//!   ([`page`]) and a small descriptor ([`run`]: each page's id and first key, and a
//!   [`bloom`] filter over the run's keys). Pages, descriptor, progress record and
//!   frontier go in ONE atomic [`RecordBackend::commit`]: all or nothing, so the
//!   subtree invariant of the scheduler's batches carries over unchanged. A ~100 KiB
//!   batch costs ~4 records (2 pages, descriptor, progress) instead of ~850.
//! * **Lookup** (`contains`, `get_many`): per key, runs newest first: Bloom filter, then a
//!   binary search of the page index, then one page read (batched over the keys of a call,
//!   at most 32 pages held at once, a small LRU of parsed pages). Item bytes are returned
//!   as written; walks re-hash them.
//! * **Compaction** ([`compaction`]): size-tiered, keeps the run count logarithmic;
//!   streaming (one page per input held), atomic at its end (new descriptor put, inputs'
//!   descriptors and pages deleted in one commit). By default it runs inside `write` after
//!   the batch is durable ([`PackedConfig::auto_compact`]); with that off the embedder
//!   schedules [`PackedStore::compact`] itself.
//! * **Open** ([`PackedStore::open`]): reads the descriptors (the runs table) and the
//!   progress record, deletes pages no run refers to.
//!
//! # Memory
//!
//! Only the descriptors stay in memory: `bloom_bits_per_key` bits per item (12 by default:
//! 1.5 bytes) plus ~49 bytes per page of ~64 KiB (~0.3 bytes per item at ~150 items a
//! page), about 1.7 bytes (13.5 bits) per stored item as measured on the 100k-account
//! synthetic sync by
//! [`PackedStore::descriptor_memory_bytes`] (1M items: ~1.8 MiB). The page cache adds at
//! most [`PackedConfig::cache_pages`] pages; a lookup holds at most 32 pages; a
//! compaction holds one page per input and [`PackedConfig::compaction_flush_pages`]
//! output pages.

pub mod backend;
pub mod bloom;
pub mod codec;
pub mod compaction;
pub mod page;
pub mod run;
mod store;

pub use backend::{BackendStats, MemoryBackend, RecordBackend, Table};
pub use store::{PackedStats, PackedStore};

/// Tunables of a [`PackedStore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackedConfig {
    /// Most bytes of a page record (an item bigger than this gets a page of its own).
    /// Just under 64 KiB by default, the benchmark's fast packed layout.
    pub page_bytes: usize,
    /// Bloom filter bits per key: a lookup of an absent key reads a page with probability
    /// about `runs × 0.62^bits` (12 bits: ~0.3 % a run).
    pub bloom_bits_per_key: usize,
    /// Runs of one tier merged together.
    pub fan_in: usize,
    /// Size of the smallest tier's runs (tier `t` holds runs of
    /// `tier_base_bytes × fan_in^t` bytes up to `× fan_in^(t+1)`).
    pub tier_base_bytes: u64,
    /// Parsed pages kept in the LRU cache.
    pub cache_pages: usize,
    /// Compact inside `write` (after the batch's commit) whenever the policy asks.
    pub auto_compact: bool,
    /// A compaction commits its output pages this many at a time.
    pub compaction_flush_pages: usize,
}

impl Default for PackedConfig {
    fn default() -> Self {
        PackedConfig {
            page_bytes: 63 * 1024,
            bloom_bits_per_key: 12,
            fan_in: 4,
            tier_base_bytes: 128 * 1024,
            cache_pages: 16,
            auto_compact: true,
            compaction_flush_pages: 16,
        }
    }
}
