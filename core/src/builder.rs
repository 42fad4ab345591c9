//! Builds a trie from key/value pairs: the root and every node stored by hash.
//!
//! Used by the tests, the reference peer and the benchmarks as the source of truth that a
//! sync must reproduce exactly.

use crate::hash::{keccak256, EMPTY_ROOT, H256};
use crate::nodes::{bytes_to_nibbles, encode_branch, encode_extension, encode_leaf, NodeRef};
use std::collections::HashMap;

/// Nodes stored by hash, as a database holds them.
pub type NodeMap = HashMap<H256, Vec<u8>>;

/// Builds the trie of `pairs` (later duplicates of a key win), inserts every node of 32
/// bytes or more and the root into `nodes`, and returns the root hash.
pub fn build_trie(pairs: Vec<(Vec<u8>, Vec<u8>)>, nodes: &mut NodeMap) -> H256 {
    let mut items: Vec<(Vec<u8>, Vec<u8>)> = pairs
        .into_iter()
        .map(|(k, v)| (bytes_to_nibbles(&k), v))
        .collect();
    // Stable sort keeps insertion order among equal keys, so the last one wins below.
    items.sort_by(|a, b| a.0.cmp(&b.0));
    let mut unique: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(items.len());
    for item in items {
        match unique.last_mut() {
            Some(last) if last.0 == item.0 => *last = item,
            _ => unique.push(item),
        }
    }
    unique.retain(|(_, v)| !v.is_empty());
    if unique.is_empty() {
        return EMPTY_ROOT;
    }
    let encoded = encode_subtrie(&unique, 0, nodes);
    let root = keccak256(&encoded);
    nodes.insert(root, encoded);
    root
}

/// Encodes the subtrie of `items` (sorted, unique nibble keys) below `depth` nibbles.
fn encode_subtrie(items: &[(Vec<u8>, Vec<u8>)], depth: usize, nodes: &mut NodeMap) -> Vec<u8> {
    if let [(key, value)] = items {
        return encode_leaf(&key[depth..], value);
    }
    let first = &items[0].0;
    let last = &items[items.len() - 1].0;
    // Sorted keys: the common prefix of all is the common prefix of the first and last.
    let common = first[depth..]
        .iter()
        .zip(&last[depth..])
        .take_while(|(a, b)| a == b)
        .count();
    if common > 0 {
        let child = encode_subtrie(items, depth + common, nodes);
        return encode_extension(&first[depth..depth + common], &store_ref(child, nodes));
    }
    let mut rest = items;
    let mut value = None;
    if rest[0].0.len() == depth {
        value = Some(rest[0].1.as_slice());
        rest = &rest[1..];
    }
    let mut children: Vec<NodeRef> = vec![NodeRef::Empty; 16];
    while !rest.is_empty() {
        let nibble = rest[0].0[depth];
        let n = rest.iter().take_while(|(k, _)| k[depth] == nibble).count();
        let child = encode_subtrie(&rest[..n], depth + 1, nodes);
        children[nibble as usize] = store_ref(child, nodes);
        rest = &rest[n..];
    }
    encode_branch(&children, value)
}

fn store_ref(encoded: Vec<u8>, nodes: &mut NodeMap) -> NodeRef {
    let r = NodeRef::of(&encoded);
    if let NodeRef::Hash(h) = r {
        nodes.insert(h, encoded);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    // Under wasm the same tests run on wasm-bindgen-test (`wasm-pack test --node core`).
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn empty_and_single_pair() {
        let mut nodes = NodeMap::new();
        assert_eq!(build_trie(vec![], &mut nodes), EMPTY_ROOT);
        assert!(nodes.is_empty());
        let root = build_trie(vec![(b"A".to_vec(), vec![b'a'; 50])], &mut nodes);
        assert_eq!(
            root,
            H256::from_hex("0xd23786fb4a010da3ce639d66d5e904a11dbc02746d1ce25029e53290cabf28ab")
                .unwrap()
        );
        assert_eq!(nodes.len(), 1);
    }

    #[test]
    fn last_duplicate_wins_and_empty_value_deletes() {
        let mut a = NodeMap::new();
        let mut b = NodeMap::new();
        let r1 = build_trie(
            vec![
                (b"do".to_vec(), b"x".to_vec()),
                (b"do".to_vec(), b"verb".to_vec()),
            ],
            &mut a,
        );
        let r2 = build_trie(vec![(b"do".to_vec(), b"verb".to_vec())], &mut b);
        assert_eq!(r1, r2);
        let r3 = build_trie(
            vec![
                (b"do".to_vec(), b"verb".to_vec()),
                (b"dog".to_vec(), b"x".to_vec()),
                (b"dog".to_vec(), vec![]),
            ],
            &mut a,
        );
        assert_eq!(r3, r2);
    }
}
