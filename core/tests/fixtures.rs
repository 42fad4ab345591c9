#![cfg(not(target_arch = "wasm32"))]
//! The builder against every published root in `../shared/fixtures`.

mod common;

use serde_json::Value;
use triesync_core::{builder::build_trie, builder::NodeMap, keccak256, H256};

#[test]
fn every_fixture_state_reproduces_root_and_node_set() {
    for (stem, accounts, nodes, bytes, codes, code_bytes) in common::STATES {
        let (_, built) = common::load_state(stem);
        assert_eq!(built.accounts, accounts, "{stem} accounts");
        assert_eq!(built.nodes.len(), nodes, "{stem} nodes");
        assert_eq!(built.node_bytes(), bytes, "{stem} node bytes");
        assert_eq!(built.codes.len(), codes, "{stem} codes");
        assert_eq!(built.code_bytes(), code_bytes, "{stem} code bytes");
        for (h, n) in &built.nodes {
            assert_eq!(keccak256(n), *h);
        }
    }
}

/// A TrieTests key or value: `0x` hex is decoded, anything else is taken as UTF-8 bytes.
fn test_bytes(v: &Value) -> Vec<u8> {
    match v {
        Value::Null => vec![],
        Value::String(s) if s.starts_with("0x") => hex::decode(&s[2..]).expect("hex"),
        Value::String(s) => s.as_bytes().to_vec(),
        other => panic!("unexpected {other}"),
    }
}

fn run_trietests(file: &str, secure: bool) -> usize {
    let path = common::fixtures_dir().join("trietests").join(file);
    let tests: serde_json::Map<String, Value> =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    for (name, case) in &tests {
        let pairs: Vec<(Value, Value)> = match &case["in"] {
            Value::Array(items) => items.iter().map(|p| (p[0].clone(), p[1].clone())).collect(),
            Value::Object(map) => map
                .iter()
                .map(|(k, v)| (Value::String(k.clone()), v.clone()))
                .collect(),
            other => panic!("{name}: bad input {other}"),
        };
        let pairs = pairs
            .into_iter()
            .map(|(k, v)| {
                let k = test_bytes(&k);
                let k = if secure { keccak256(&k).0.to_vec() } else { k };
                (k, test_bytes(&v))
            })
            .collect();
        let mut nodes = NodeMap::new();
        let root = build_trie(pairs, &mut nodes);
        let want = H256::from_hex(case["root"].as_str().unwrap()).unwrap();
        assert_eq!(root, want, "{file}/{name}");
    }
    tests.len()
}

#[test]
fn every_trietests_case_reproduces_its_root() {
    let mut cases = 0;
    cases += run_trietests("trietest.json", false);
    cases += run_trietests("trieanyorder.json", false);
    cases += run_trietests("trietest_secureTrie.json", true);
    cases += run_trietests("trieanyorder_secureTrie.json", true);
    cases += run_trietests("hex_encoded_securetrie_test.json", true);
    assert!(cases >= 20, "only {cases} cases read");
}
