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
//! must not break.

use crate::idb_store::IdbStore;
use serde::Serialize;
use std::collections::BTreeSet;
use triesync_core::nodes::{decode_node, ChildRef, Node};
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
    /// True when nothing is corrupt and nothing dangles.
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

/// Scans every record of `store` (see the module docs).
pub async fn check_store(store: &IdbStore) -> Result<StoreCheck, StoreError> {
    let mut report = StoreCheck::default();
    for kind in [Kind::Code, Kind::Node] {
        let mut after: Option<H256> = None;
        loop {
            let records = store.scan(kind, after, SCAN_CHUNK).await?;
            let Some((last, _)) = records.last() else {
                break;
            };
            after = Some(*last);
            let mut refs = Vec::new();
            for (hash, data) in &records {
                let key = ItemKey { kind, hash: *hash };
                if keccak256(data) != *hash {
                    note(&mut report.corrupt, &mut report.corrupt_count, key);
                    continue;
                }
                match kind {
                    Kind::Code => {
                        report.codes += 1;
                        report.code_bytes += data.len() as u64;
                    }
                    Kind::Node => match references(data, &mut refs) {
                        Ok(accounts) => {
                            report.nodes += 1;
                            report.node_bytes += data.len() as u64;
                            report.accounts += accounts;
                        }
                        Err(()) => note(&mut report.corrupt, &mut report.corrupt_count, key),
                    },
                }
            }
            // Shared subtries and codes are referenced many times: look each up once.
            let refs: Vec<ItemKey> = refs
                .into_iter()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            for chunk in refs.chunks(4096) {
                let present = store.contains(chunk).await?;
                for (key, here) in chunk.iter().zip(present) {
                    if !here {
                        note(&mut report.dangling, &mut report.dangling_count, *key);
                    }
                }
            }
            if records.len() < SCAN_CHUNK as usize {
                break;
            }
        }
    }
    report.sound = report.corrupt_count == 0 && report.dangling_count == 0;
    Ok(report)
}
