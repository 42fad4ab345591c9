//! `StateDb.checkStore()`: the store's invariant checked over every record, whatever root
//! it belongs to. `verify(root)` walks down from one root and so says nothing about items
//! it cannot reach (a partial sync's complete subtries below a missing node); this scan
//! reads every stored item and checks that
//!
//! 1. its bytes hash to its key (and a node decodes as a trie node), and
//! 2. everything it references is stored too: a branch's or extension's children, and for
//!    an account leaf its storage root and its code.
//!
//! Together, by induction over the trie, that is "every stored node has its whole subtree":
//! the invariant a sync keeps by writing a node only after its subtree, and that a crash
//!
//! Per-item databases are read record by record (in key order, [`SCAN_CHUNK`] at a time);
//! packed ones run by run, every page of every run ([`SCAN_PAGES`] at a time), so an item
//! kept in two runs (until they merge) is checked in both. A page a run refers to that is
//! missing or does not parse is reported as damaged.
//! must not break.

use crate::db::{read_pages, read_runs, Db, PackedDb, SCAN_PAGES};
use crate::idb_records::IdbRecords;
use crate::idb_store::IdbStore;
use serde::Serialize;
use triesync_core::nodes::{decode_node, ChildRef, Node};
use triesync_core::packed::codec::{item_key, raw_key, RawKey};
use triesync_core::packed::run::RunDesc;
use triesync_core::state::Account;
use triesync_core::store::{ItemKey, Kind, Store, StoreError};
use triesync_core::{keccak256, EMPTY_CODE_HASH, EMPTY_ROOT, H256};

/// Records read per transaction.
const SCAN_CHUNK: u32 = 1000;
/// Items listed per kind of problem.
const REPORT_LIMIT: usize = 100;

/// What `checkStore` found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StoreCheck {
    /// Trie nodes read, and their bytes.
    pub nodes: u64,
    /// Bytes of those nodes.
    pub node_bytes: u64,
    /// Codes read.
    pub codes: u64,
    /// Bytes of those codes.
    pub code_bytes: u64,
    /// Account leaves found (in nodes).
    pub accounts: u64,
    /// Items whose bytes do not hash to their key or do not decode (the first 100).
    pub corrupt: Vec<ItemKey>,
    /// How many are corrupt.
    pub corrupt_count: u64,
    /// Items referenced by a stored node but not stored (the first 100): a subtree that
    /// is not complete under a node that is present.
    pub dangling: Vec<ItemKey>,
    /// How many references dangle.
    pub dangling_count: u64,
    /// Page records read (packed layout; 0 for per-item).
    pub pages: u64,
    /// Record ids of pages a run refers to that are missing or do not parse (the first
    /// 100; packed layout).
    pub damaged_pages: Vec<u64>,
    /// How many pages are damaged.
    pub damaged_page_count: u64,
    /// True when nothing is corrupt, nothing dangles and no page is damaged.
    pub sound: bool,
}

/// The references of a decoded node (and of its inline children), with account leaves'
/// storage roots and codes. Returns the number of account leaves seen.
fn references(encoded: &[u8], out: &mut Vec<ItemKey>) -> Result<u64, ()> {
    let node = decode_node(encoded).map_err(|_| ())?;
    let mut accounts = 0;
    let value = match &node {
        Node::Leaf { value, .. } => Some(*value),
        Node::Branch { value, .. } => *value,
        Node::Extension { .. } => None,
    };
    // A storage trie's values are RLP strings; only an account-trie leaf holds a list of
    // four that decodes as an account.
    if let Some(Ok(acc)) = value.map(Account::decode) {
        accounts += 1;
        if acc.storage_root != EMPTY_ROOT {
            out.push(ItemKey::node(acc.storage_root));
        }
        if acc.code_hash != EMPTY_CODE_HASH {
            out.push(ItemKey::code(acc.code_hash));
        }
    }
    for (_, child) in node.children() {
        match child {
            ChildRef::Empty => {}
            ChildRef::Hash(h) => out.push(ItemKey::node(h)),
            ChildRef::Inline(raw) => accounts += references(raw, out)?,
        }
    }
    Ok(accounts)
}

fn note(list: &mut Vec<ItemKey>, count: &mut u64, key: ItemKey) {
    *count += 1;
    if list.len() < REPORT_LIMIT {
        list.push(key);
    }
}

/// The checks of one item at a time; references are collected and looked up per chunk.
#[derive(Default)]
struct Checker {
    report: StoreCheck,
    refs: Vec<ItemKey>,
}

impl Checker {
    fn item(&mut self, key: ItemKey, data: &[u8]) {
        let report = &mut self.report;
        if keccak256(data) != key.hash {
            note(&mut report.corrupt, &mut report.corrupt_count, key);
            return;
        }
        match key.kind {
            Kind::Code => {
                report.codes += 1;
                report.code_bytes += data.len() as u64;
            }
            Kind::Node => match references(data, &mut self.refs) {
                Ok(accounts) => {
                    report.nodes += 1;
                    report.node_bytes += data.len() as u64;
                    report.accounts += accounts;
                }
                Err(()) => note(&mut report.corrupt, &mut report.corrupt_count, key),
            },
        }
    }

    /// Looks up the references collected since the last call. `Ok(false)`: the runs
    /// changed meanwhile (packed), the scan must start over.
    async fn flush(&mut self, lookup: Lookup<'_>) -> Result<bool, StoreError> {
        // Shared subtries and codes are referenced many times: look each up once.
        // Sorted and deduplicated in place (as a BTreeSet would, without its code).
        let mut refs: Vec<ItemKey> = std::mem::take(&mut self.refs);
        refs.sort_unstable();
        refs.dedup();
        for chunk in refs.chunks(4096) {
            let present = match lookup {
                Lookup::Store(store) => store.contains(chunk).await?,
                Lookup::Runs(records, runs) => match present_in_runs(records, runs, chunk).await? {
                    Some(present) => present,
                    None => return Ok(false),
                },
            };
            for (key, here) in chunk.iter().zip(present) {
                if !here {
                    note(
                        &mut self.report.dangling,
                        &mut self.report.dangling_count,
                        *key,
                    );
                }
            }
        }
        Ok(true)
    }

    fn finish(mut self) -> StoreCheck {
        let r = &mut self.report;
        r.sound = r.corrupt_count == 0 && r.dangling_count == 0 && r.damaged_page_count == 0;
        self.report
    }
}

/// Scans every record of `db` (see the module docs).
pub async fn check_store(db: &Db) -> Result<StoreCheck, StoreError> {
    match db {
        Db::PerItem(store) => check_per_item(store).await,
        Db::Packed(packed) => {
            // A compaction in another connection may replace runs while they are read:
            // start over with the new runs.
            for _ in 0..3 {
                if let Some(report) = check_packed(packed).await? {
                    return Ok(report);
                }
            }
            Err(StoreError::Backend(
                "checkStore: the runs kept changing while read".into(),
            ))
        }
    }
}

/// Every record of a per-item database, in key order.
async fn check_per_item(store: &IdbStore) -> Result<StoreCheck, StoreError> {
    let mut checker = Checker::default();
    for kind in [Kind::Code, Kind::Node] {
        let mut after: Option<H256> = None;
        loop {
            let records = store.scan(kind, after, SCAN_CHUNK).await?;
            let Some((last, _)) = records.last() else {
                break;
            };
            after = Some(*last);
            for (hash, data) in &records {
                checker.item(ItemKey { kind, hash: *hash }, data);
            }
            checker.flush(Lookup::Store(store)).await?;
            if records.len() < SCAN_CHUNK as usize {
                break;
            }
        }
    }
    Ok(checker.finish())
}

/// Every page of every run of a packed database; `None` when a run was replaced
/// meanwhile.
async fn check_packed(packed: &PackedDb) -> Result<Option<StoreCheck>, StoreError> {
    let records = packed.records();
    let mut checker = Checker::default();
    let runs = read_runs(records).await?;
    for run in &runs {
        let ids: Vec<u64> = run.pages.iter().map(|p| p.id).collect();
        for chunk in ids.chunks(SCAN_PAGES) {
            for (id, page) in chunk.iter().zip(read_pages(records, chunk).await?) {
                let page = match page {
                    Some(Ok(page)) => page,
                    Some(Err(_)) => {
                        damaged(&mut checker.report, *id);
                        continue;
                    }
                    None => {
                        // Gone: merged away by a compaction since the runs were read, or
                        // lost.
                        let now = db_run_ids(records).await?;
                        if !now.contains(&run.id) {
                            return Ok(None);
                        }
                        damaged(&mut checker.report, *id);
                        continue;
                    }
                };
                checker.report.pages += 1;
                for i in 0..page.len() {
                    let Some(key) = item_key(page.key(i)) else {
                        damaged(&mut checker.report, *id);
                        break;
                    };
                    checker.item(key, page.data(i));
                }
            }
            if !checker.flush(Lookup::Runs(records, &runs)).await? {
                return Ok(None);
            }
        }
    }
    Ok(Some(checker.finish()))
}

/// Where references are looked up.
#[derive(Clone, Copy)]
enum Lookup<'a> {
    /// A per-item store.
    Store(&'a IdbStore),
    /// The runs a packed scan read at its start (not the reader's store: a damaged page
    /// must not fail the lookups, and the scan and its lookups see the same runs).
    Runs(&'a IdbRecords, &'a [RunDesc]),
}

/// Which of `keys` a run holds (newest run first, as a lookup): Bloom filter, page index,
/// page. A damaged page holds nothing. `None` when a page was gone and the runs changed
/// meanwhile (a compaction in another connection).
async fn present_in_runs(
    records: &IdbRecords,
    runs: &[RunDesc],
    keys: &[ItemKey],
) -> Result<Option<Vec<bool>>, StoreError> {
    let raw: Vec<RawKey> = keys.iter().map(raw_key).collect();
    let mut found = vec![false; keys.len()];
    let mut gone = false;
    for run in runs.iter().rev() {
        let mut wants: Vec<(u64, usize)> = (0..keys.len())
            .filter(|&i| !found[i])
            .filter_map(|i| run.page_for(&raw[i]).map(|page| (page, i)))
            .collect();
        wants.sort_unstable();
        let mut ids: Vec<u64> = wants.iter().map(|w| w.0).collect();
        ids.dedup();
        let mut w = 0;
        for chunk in ids.chunks(SCAN_PAGES) {
            for (id, page) in chunk.iter().zip(read_pages(records, chunk).await?) {
                gone |= page.is_none();
                while w < wants.len() && wants[w].0 == *id {
                    let i = wants[w].1;
                    if let Some(Ok(page)) = &page {
                        found[i] |= page.find(&raw[i]).is_some();
                    }
                    w += 1;
                }
            }
        }
    }
    if gone {
        let ids: Vec<u64> = runs.iter().map(|r| r.id).collect();
        // Compared as sorted (id, 0) pairs: the sort instantiation the page lookups use
        // (wasm size).
        let sorted = |ids: Vec<u64>| {
            let mut v: Vec<(u64, usize)> = ids.into_iter().map(|id| (id, 0)).collect();
            v.sort_unstable();
            v
        };
        if sorted(db_run_ids(records).await?) != sorted(ids) {
            return Ok(None);
        }
    }
    Ok(Some(found))
}

async fn db_run_ids(records: &IdbRecords) -> Result<Vec<u64>, StoreError> {
    use triesync_core::packed::{RecordBackend, Table};
    records.keys(Table::Runs).await
}

fn damaged(report: &mut StoreCheck, page: u64) {
    report.damaged_page_count += 1;
    if report.damaged_pages.len() < REPORT_LIMIT {
        report.damaged_pages.push(page);
    }
}
