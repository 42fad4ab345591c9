//! Shared code of the fuzz targets: the invariants (`checks`, also used by
//! `core/tests/properties.rs`) and the fixture states the scheduler target syncs.

pub mod checks;

use checks::RealState;
use std::sync::OnceLock;
use triesync_core::state::StateFixture;

/// The small fixture states, compiled in (from `shared/fixtures/states` beside the
/// repository) so that a fuzz run reads no files.
const FIXTURES: [(&str, &str); 2] = [
    ("bt-walletConfirm", include_str!("../../../shared/fixtures/states/bt-walletConfirm.json")),
    ("bt-block504980", include_str!("../../../shared/fixtures/states/bt-block504980.json")),
];

/// Builds one fixture state, checking its published root.
pub fn build_fixture(json: &str) -> triesync_core::state::BuiltState {
    let fixture = StateFixture::from_json(json).expect("fixture parses");
    let built = fixture.build().expect("fixture builds");
    assert_eq!(built.root, fixture.root().expect("root"), "built root != published root");
    built
}

/// The fixture states as [`RealState`]s, built once per process.
pub fn fixture_states() -> &'static [RealState] {
    static STATES: OnceLock<Vec<RealState>> = OnceLock::new();
    STATES.get_or_init(|| {
        FIXTURES
            .iter()
            .map(|(_, json)| {
                let built = build_fixture(json);
                RealState::new(built.root, &built.nodes, &built.codes)
            })
            .collect()
    })
}

/// Names of [`fixture_states`], in the same order.
pub fn fixture_names() -> impl Iterator<Item = &'static str> {
    FIXTURES.iter().map(|(name, _)| *name)
}
