//! Shared helpers of the integration tests: where the fixtures live and how to load them.
#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;
use triesync_core::state::{BuiltState, StateFixture};

/// `../shared/fixtures` beside the repository, or `$TRIESYNC_FIXTURES`.
pub fn fixtures_dir() -> PathBuf {
    std::env::var_os("TRIESYNC_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures"))
}

/// The four fixture states: (file stem, expected accounts, nodes, node bytes, codes, code bytes).
pub const STATES: [(&str, usize, usize, usize, usize, usize); 4] = [
    ("mainnet-genesis", 8893, 12356, 1483023, 0, 0),
    ("sepolia-genesis", 15, 19, 2410, 0, 0),
    ("bt-block504980", 15, 161, 13399, 8, 24270),
    ("bt-walletConfirm", 4, 22, 1732, 2, 4086),
];

/// Loads and builds one fixture state, checking its root against the published one.
pub fn load_state(stem: &str) -> (StateFixture, BuiltState) {
    let path = fixtures_dir().join("states").join(format!("{stem}.json"));
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let fixture = StateFixture::from_json(&text).expect("fixture parses");
    let built = fixture.build().expect("fixture builds");
    assert_eq!(
        built.root,
        fixture.root().unwrap(),
        "{stem}: built root != published root"
    );
    (fixture, built)
}
