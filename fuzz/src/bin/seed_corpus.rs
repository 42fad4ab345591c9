//! Writes the seed corpora of every fuzz target from the fixture states.
//!
//! `cargo run --release --bin seed_corpus [FIXTURES_DIR] [OUT_DIR]`, from `fuzz/`;
//! FIXTURES_DIR defaults to `$TRIESYNC_FIXTURES` or `../../shared/fixtures`, OUT_DIR to
//! `corpus`. Deterministic: the same fixtures give the same files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use triesync_core::nodes::{decode_node, ChildRef, Node};
use triesync_core::state::{Account, BuiltState};
use triesync_core::wire;
use triesync_core::H256;
use triesync_fuzz::checks::rpc_answer;

/// Nodes of the large mainnet state kept in the node corpus (the small states give all).
const MAINNET_SAMPLE: usize = 400;

fn main() {
    let mut args = std::env::args().skip(1);
    let fixtures = args.next().map(PathBuf::from).unwrap_or_else(|| {
        std::env::var_os("TRIESYNC_FIXTURES")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures"))
    });
    let out = args.next().map(PathBuf::from).unwrap_or_else(|| PathBuf::from("corpus"));
    let mut corpus = Corpus::default();

    let mut states: Vec<(String, BuiltState)> = Vec::new();
    let mut names: Vec<PathBuf> = std::fs::read_dir(fixtures.join("states"))
        .expect("fixtures/states")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    names.sort();
    for path in names {
        let json = std::fs::read_to_string(&path).expect("read fixture");
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        states.push((stem, triesync_fuzz::build_fixture(&json)));
    }

    for (stem, state) in &states {
        let mut nodes: Vec<(&H256, &Vec<u8>)> = state.nodes.iter().collect();
        nodes.sort();
        let keep = if stem == "mainnet-genesis" { MAINNET_SAMPLE } else { nodes.len() };
        // Spread the sample over the whole key space.
        let step = (nodes.len() / keep.max(1)).max(1);
        let picked: Vec<&Vec<u8>> = nodes.iter().step_by(step).take(keep).map(|(_, n)| *n).collect();
        for node in &picked {
            corpus.add("node", node);
            collect_inline_and_values(node, &mut corpus);
        }
        let hashes: Vec<H256> = nodes.iter().map(|(h, _)| **h).collect();
        let blobs: Vec<Vec<u8>> = picked.iter().map(|n| (*n).clone()).collect();
        let codes: Vec<Vec<u8>> = {
            let mut c: Vec<_> = state.codes.iter().collect();
            c.sort();
            c.into_iter().map(|(_, b)| b.clone()).collect()
        };
        for size in [1usize, 2, 7, 32, wire::MAX_HASHES] {
            let hs = &hashes[..size.min(hashes.len())];
            corpus.add("wire_request", &wire::encode_request(hs));
            corpus.add("wire_ws_request", &wire::encode_ws_request(size as u64 * 977, hs));
            for group in [&blobs, &codes] {
                let bs = &group[..size.min(group.len())];
                if bs.is_empty() || size > 32 {
                    continue;
                }
                let max = u8::try_from(bs.len()).unwrap_or(u8::MAX);
                corpus.add("wire_blobs", &prefixed(max, &wire::encode_blobs(bs)));
                corpus.add("wire_ws_response", &prefixed(max, &wire::encode_ws_response(size as u64, bs)));
                if size > 7 {
                    continue;
                }
                // JSON answers: short values keep the seeds small (the parser, not the
                // hex length, is what is fuzzed).
                let short: Vec<Vec<u8>> = bs.iter().map(|b| b[..b.len().min(40)].to_vec()).collect();
                corpus.add("wire_rpc_batch", &prefixed(max, rpc_answer(&short).as_bytes()));
                // A batch where the last call failed (absent key).
                let mut with_error = rpc_answer(&short);
                with_error.pop();
                with_error.push_str(r#",{"jsonrpc":"2.0","id":99,"error":{"code":-32000,"message":"leveldb: not found"}}]"#);
                corpus.add("wire_rpc_batch", &prefixed(max.saturating_add(1), with_error.as_bytes()));
            }
        }
    }
    corpus.add("wire_blobs", &prefixed(4, &wire::encode_blobs(&[])));
    corpus.add("wire_rpc_batch", br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"batch too large"}}"#);

    // Scheduler programs over the compiled-in bt-walletConfirm: the plain sync (no
    // operation), and pseudo-random operation sequences.
    for check in [0u8, 1] {
        corpus.add("scheduler", &[check]);
        let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ u64::from(check);
        for len in [8usize, 32, 128, 512] {
            for _ in 0..2 {
                let mut program = vec![check];
                program.extend((0..len).map(|_| next(&mut seed) as u8));
                corpus.add("scheduler", &program);
            }
        }
    }
    // Generated states: a few hand-made shapes and pseudo-random inputs.
    corpus.add("scheduler_generated", &[1, 0, 0, 1]);
    corpus.add("scheduler_generated", &[0, 2, 3, 0, b'a', 1, b'x', 1, b'a', b'b', 2, b'y', b'z', 1, 4, 1, 2, 3, 4, 3, 0, b'k', 1, 5, 1, 1, 1, b'q', 0, 0, 1, 1]);
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for len in [16usize, 64, 256, 1024] {
        for _ in 0..4 {
            let program: Vec<u8> = (0..len).map(|_| next(&mut seed) as u8).collect();
            corpus.add("scheduler_generated", &program);
        }
    }

    let counts = corpus.write(&out);
    for (target, (files, bytes)) in counts {
        println!("{target}: {files} files, {bytes} bytes");
    }
}

/// Every account leaf value and embedded node inside `node`, for the account and node
/// corpora.
fn collect_inline_and_values(node: &[u8], corpus: &mut Corpus) {
    let Ok(decoded) = decode_node(node) else { return };
    let value = match &decoded {
        Node::Leaf { value, .. } => Some(*value),
        Node::Branch { value, .. } => *value,
        Node::Extension { .. } => None,
    };
    if let Some(v) = value {
        if Account::decode(v).is_ok() {
            corpus.add("account", v);
        }
    }
    for (_, c) in decoded.children() {
        if let ChildRef::Inline(raw) = c {
            corpus.add("node", raw);
            collect_inline_and_values(raw, corpus);
        }
    }
}

fn prefixed(first: u8, rest: &[u8]) -> Vec<u8> {
    let mut v = vec![first];
    v.extend_from_slice(rest);
    v
}

/// splitmix64.
fn next(seed: &mut u64) -> u64 {
    *seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *seed;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Files per target, named by content (a short hash) so that re-running is idempotent.
#[derive(Default)]
struct Corpus {
    files: BTreeMap<&'static str, BTreeMap<String, Vec<u8>>>,
}

impl Corpus {
    fn add(&mut self, target: &'static str, data: &[u8]) {
        let name = hex_name(data);
        self.files.entry(target).or_default().insert(name, data.to_vec());
    }

    fn write(&self, out: &Path) -> BTreeMap<&'static str, (usize, usize)> {
        let mut counts = BTreeMap::new();
        for (target, files) in &self.files {
            let dir = out.join(target);
            std::fs::create_dir_all(&dir).expect("create corpus dir");
            for (name, data) in files {
                std::fs::write(dir.join(name), data).expect("write corpus file");
            }
            counts.insert(*target, (files.len(), files.values().map(Vec::len).sum()));
        }
        counts
    }
}

fn hex_name(data: &[u8]) -> String {
    let h = triesync_core::keccak256(data);
    format!("seed-{}", &h.to_hex()[2..18])
}
