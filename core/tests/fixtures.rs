//! The builder against every published root in `../shared/fixtures`.

mod common;

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

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
    let text = common::fixture_text(&format!("trietests/{file}"));
    let tests: serde_json::Map<String, Value> = serde_json::from_str(&text).unwrap();
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

/// Sorted relative paths of the files under `dir`, `depth` levels down.
#[cfg(not(target_arch = "wasm32"))]
fn files_on_disk(dir: &std::path::Path, depth: usize) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() && depth > 0 {
            out.extend(
                files_on_disk(&path, depth - 1)
                    .into_iter()
                    .map(|f| format!("{name}/{f}")),
            );
        } else if path.is_file() && depth == 0 && name != "README.md" {
            out.push(name);
        }
    }
    out.sort();
    out
}

/// The wasm run reads compiled-in copies of the files (no file system on Node): their
/// lists in `common` must name every fixture and regression file on disk.
#[cfg(not(target_arch = "wasm32"))]
#[test]
fn wasm_file_lists_name_every_file_on_disk() {
    let sorted = |files: &[&str]| {
        let mut v: Vec<String> = files.iter().map(|f| f.to_string()).collect();
        v.sort();
        v
    };
    assert_eq!(
        sorted(common::FIXTURE_FILES),
        files_on_disk(&common::fixtures_dir(), 1),
        "common::FIXTURE_FILES != the files of the fixtures dir"
    );
    assert_eq!(
        sorted(common::REGRESSION_FILES),
        files_on_disk(&common::regressions_dir(), 1),
        "common::REGRESSION_FILES != the files of fuzz/regressions"
    );
}
