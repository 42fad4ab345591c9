//! Reads of verified local data: account, storage and code lookups by walking from a root,
//! and a whole-trie verification. Every node read is re-hashed against the key it was
//! read under, so a damaged store is reported, never trusted.

use crate::hash::{keccak256, EMPTY_CODE_HASH, EMPTY_ROOT, H256};
use crate::nodes::{bytes_to_nibbles, decode_node, ChildRef, Node, NodeError};
use crate::scheduler::{collect_children, Trie};
use crate::state::{Account, AccountError};
use crate::store::{ItemKey, Kind, Store, StoreError};
use std::collections::HashSet;

/// Why a lookup could not be answered from the store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WalkError {
    /// An item on the path is not in the store (not synced yet).
    #[error("{0} is missing from the store")]
    Missing(ItemKey),
    /// An item's bytes do not hash to its key: the store is damaged.
    #[error("{0} does not hash to its key")]
    Corrupt(ItemKey),
    /// A node on the path does not decode.
    #[error("bad node: {0}")]
    BadNode(#[from] NodeError),
    /// The account leaf does not decode.
    #[error("bad account: {0}")]
    BadAccount(#[from] AccountError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl WalkError {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            WalkError::Missing(_) => "MISSING",
            WalkError::Corrupt(_) => "CORRUPT",
            WalkError::BadNode(_) | WalkError::BadAccount(_) => "CORRUPT",
            WalkError::Store(StoreError::QuotaExceeded) => "QUOTA_EXCEEDED",
            WalkError::Store(_) => "STORE",
        }
    }
}

async fn get_verified<S: Store>(store: &S, key: ItemKey) -> Result<Vec<u8>, WalkError> {
    let data = store.get(key).await?.ok_or(WalkError::Missing(key))?;
    if keccak256(&data) != key.hash {
        return Err(WalkError::Corrupt(key));
    }
    Ok(data)
}

/// The value stored under `key` (raw bytes, already hashed for secure tries) in the trie
/// of `root`, or `None` when the trie proves it absent.
pub async fn lookup<S: Store>(
    store: &S,
    root: H256,
    key: &[u8],
) -> Result<Option<Vec<u8>>, WalkError> {
    if root == EMPTY_ROOT {
        return Ok(None);
    }
    let nibbles = bytes_to_nibbles(key);
    let mut encoded = get_verified(store, ItemKey::node(root)).await?;
    let mut pos = 0;
    loop {
        let next = match decode_node(&encoded)? {
            Node::Leaf { path, value } => {
                return Ok((nibbles[pos..] == path[..]).then(|| value.to_vec()));
            }
            Node::Extension { path, child } => {
                if !nibbles[pos..].starts_with(&path) {
                    return Ok(None);
                }
                pos += path.len();
                child
            }
            Node::Branch { children, value } => {
                if pos == nibbles.len() {
                    return Ok(value.map(<[u8]>::to_vec));
                }
                pos += 1;
                children[nibbles[pos - 1] as usize]
            }
        };
        encoded = match next {
            ChildRef::Empty => return Ok(None),
            ChildRef::Inline(raw) => raw.to_vec(),
            ChildRef::Hash(h) => get_verified(store, ItemKey::node(h)).await?,
        };
    }
}

/// The account at `address` in the state of `root`.
pub async fn account<S: Store>(
    store: &S,
    root: H256,
    address: &[u8; 20],
) -> Result<Option<Account>, WalkError> {
    match lookup(store, root, &keccak256(address).0).await? {
        Some(v) => Ok(Some(Account::decode(&v)?)),
        None => Ok(None),
    }
}

/// The value of storage `slot` of `address` as a 32-byte word; `None` when the account
/// does not exist. A slot never written reads as zero.
pub async fn storage<S: Store>(
    store: &S,
    root: H256,
    address: &[u8; 20],
    slot: &[u8; 32],
) -> Result<Option<[u8; 32]>, WalkError> {
    let Some(acc) = account(store, root, address).await? else {
        return Ok(None);
    };
    let mut word = [0u8; 32];
    if let Some(v) = lookup(store, acc.storage_root, &keccak256(slot).0).await? {
        let item = crate::rlp_reader::Item::parse(&v).map_err(NodeError::from)?;
        let bytes = item.bytes().map_err(NodeError::from)?;
        if bytes.len() > 32 {
            return Err(WalkError::BadNode(NodeError::Rlp(
                "storage value is not a word".into(),
            )));
        }
        word[32 - bytes.len()..].copy_from_slice(bytes);
    }
    Ok(Some(word))
}

/// The code of `address`: `None` when the account does not exist, empty when it has none.
pub async fn code<S: Store>(
    store: &S,
    root: H256,
    address: &[u8; 20],
) -> Result<Option<Vec<u8>>, WalkError> {
    let Some(acc) = account(store, root, address).await? else {
        return Ok(None);
    };
    if acc.code_hash == EMPTY_CODE_HASH {
        return Ok(Some(Vec::new()));
    }
    get_verified(store, ItemKey::code(acc.code_hash))
        .await
        .map(Some)
}

/// The result of walking a whole state.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyReport {
    /// Distinct trie nodes found and re-hashed.
    pub nodes: u64,
    /// Their bytes.
    pub node_bytes: u64,
    /// Distinct codes found and re-hashed.
    pub codes: u64,
    /// Their bytes.
    pub code_bytes: u64,
    /// Items referenced but not in the store (the first 100).
    pub missing: Vec<ItemKey>,
    /// How many are missing in all.
    pub missing_count: u64,
    /// Items whose bytes do not hash to their key or do not decode (the first 100).
    pub corrupt: Vec<ItemKey>,
    /// True when everything under the root is present and sound.
    pub complete: bool,
}

impl serde::Serialize for ItemKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let kind = match self.kind {
            Kind::Node => "node",
            Kind::Code => "code",
        };
        s.serialize_str(&format!("{kind}:{}", self.hash.to_hex()))
    }
}

const REPORT_LIMIT: usize = 100;
const READ_CHUNK: usize = 2048;

/// Walks every node and code under `root`, re-hashing each, and reports what is missing
/// or damaged. Reads a level at a time so a backend can batch its reads.
pub async fn verify<S: Store>(store: &S, root: H256) -> Result<VerifyReport, StoreError> {
    let mut report = VerifyReport::default();
    let mut seen: HashSet<ItemKey> = HashSet::new();
    let mut level: Vec<(ItemKey, Trie)> = Vec::new();
    if root != EMPTY_ROOT {
        level.push((ItemKey::node(root), Trie::Account));
        seen.insert(ItemKey::node(root));
    }
    while !level.is_empty() {
        let mut next = Vec::new();
        for chunk in level.chunks(READ_CHUNK) {
            let keys: Vec<ItemKey> = chunk.iter().map(|(k, _)| *k).collect();
            let values = store.get_many(&keys).await?;
            for ((key, trie), value) in chunk.iter().zip(values) {
                let Some(data) = value else {
                    report.missing_count += 1;
                    if report.missing.len() < REPORT_LIMIT {
                        report.missing.push(*key);
                    }
                    continue;
                };
                let mut children = Vec::new();
                let sound = keccak256(&data) == key.hash
                    && (key.kind == Kind::Code
                        || collect_children(&data, *trie, 0, &[], &mut children).is_ok());
                if !sound {
                    if report.corrupt.len() < REPORT_LIMIT {
                        report.corrupt.push(*key);
                    }
                    continue;
                }
                match key.kind {
                    Kind::Node => {
                        report.nodes += 1;
                        report.node_bytes += data.len() as u64;
                    }
                    Kind::Code => {
                        report.codes += 1;
                        report.code_bytes += data.len() as u64;
                    }
                }
                for child in children {
                    if seen.insert(child.key) {
                        next.push((child.key, child.trie));
                    }
                }
            }
        }
        level = next;
    }
    report.complete = report.missing_count == 0 && report.corrupt.is_empty();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{build_state, GenesisAccount};
    use crate::store::{Batch, MemoryStore, SyncMeta};
    use futures::executor::block_on;
    // Under wasm the same tests run on wasm-bindgen-test (`wasm-pack test --node core`).
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn store_of(state: &crate::state::BuiltState) -> MemoryStore {
        let store = MemoryStore::new();
        let mut batch = Batch::default();
        for (h, n) in &state.nodes {
            batch.push(ItemKey::node(*h), n.clone());
        }
        for (h, c) in &state.codes {
            batch.push(ItemKey::code(*h), c.clone());
        }
        block_on(store.write(&batch, &SyncMeta::default())).unwrap();
        store
    }

    #[test]
    fn lookups_and_verify_on_a_small_state() {
        let mut a = GenesisAccount {
            address: [1; 20],
            nonce: 3,
            code: vec![0x60, 0x00],
            ..Default::default()
        };
        a.balance[31] = 9;
        a.storage = vec![([0; 32], {
            let mut v = [0; 32];
            v[31] = 5;
            v
        })];
        let b = GenesisAccount {
            address: [2; 20],
            ..Default::default()
        };
        let state = build_state(vec![a.clone(), b]);
        let store = store_of(&state);
        let acc = block_on(account(&store, state.root, &a.address))
            .unwrap()
            .unwrap();
        assert_eq!(acc.nonce, 3);
        assert_eq!(acc.balance[31], 9);
        assert_eq!(
            block_on(storage(&store, state.root, &a.address, &[0; 32]))
                .unwrap()
                .unwrap()[31],
            5
        );
        assert_eq!(
            block_on(storage(&store, state.root, &a.address, &[1; 32]))
                .unwrap()
                .unwrap(),
            [0; 32]
        );
        assert_eq!(
            block_on(code(&store, state.root, &a.address))
                .unwrap()
                .unwrap(),
            vec![0x60, 0x00]
        );
        assert_eq!(
            block_on(account(&store, state.root, &[3; 20])).unwrap(),
            None
        );
        let report = block_on(verify(&store, state.root)).unwrap();
        assert!(report.complete);
        assert_eq!(report.nodes as usize, state.nodes.len());
        assert_eq!(report.codes, 1);
    }

    #[test]
    fn verify_reports_missing_and_corrupt() {
        let accounts = (0..50u8).map(|i| GenesisAccount {
            address: [i; 20],
            nonce: 1,
            ..Default::default()
        });
        let state = build_state(accounts);
        let store = store_of(&state);
        let victim = *state.nodes.keys().find(|h| **h != state.root).unwrap();
        store.remove(&ItemKey::node(victim));
        let report = block_on(verify(&store, state.root)).unwrap();
        assert!(!report.complete);
        assert_eq!(report.missing, vec![ItemKey::node(victim)]);
        // Damage: store other bytes under a key. The victim comes back first: `other`
        // may lie beneath it (the map's order varies), where the walk would not reach it.
        let other = *state
            .nodes
            .keys()
            .find(|h| **h != state.root && **h != victim)
            .unwrap();
        let batch = Batch {
            items: vec![
                (ItemKey::node(victim), state.nodes[&victim].clone()),
                (ItemKey::node(other), vec![0xc0]),
            ],
            bytes: 1 + state.nodes[&victim].len(),
            ..Default::default()
        };
        block_on(store.write(&batch, &SyncMeta::default())).unwrap();
        let report = block_on(verify(&store, state.root)).unwrap();
        assert_eq!(report.corrupt, vec![ItemKey::node(other)]);
    }
}
