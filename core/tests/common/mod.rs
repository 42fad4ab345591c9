//! Shared helpers of the integration tests, the same natively and under wasm
//! (`wasm-pack test --node core`): the fixture files, a clock, blocking on an in-memory
//! future, and the `async_test!` attribute for tests that await a sync.
//!
//! A test file uses them as follows, and its test bodies do not care about the target:
//! - `#[cfg(target_arch = "wasm32")] use wasm_bindgen_test::wasm_bindgen_test as test;`
//!   at the top: a plain `#[test] fn` is then a wasm-bindgen test under wasm.
//! - files through [`fixture_text`] / [`fixture_bytes`] / [`load_state`] /
//!   [`fuzz_regressions`], never `std::fs` (there is no file system under wasm on Node);
//! - a clock from [`clock`], never `ThreadClock::new()` (no threads under wasm);
//! - [`block_on`] for store calls that finish at once; a test that awaits something that
//!   really waits (a sync, with its timeouts and backoffs) is written as
//!   `common::async_test! { async fn name() { ... } }`.
#![allow(dead_code, unreachable_pub, unused_macros, unused_imports)]

use std::future::Future;
use triesync_core::state::{BuiltState, StateFixture};

/// The four fixture states: (file stem, expected accounts, nodes, node bytes, codes, code bytes).
pub const STATES: [(&str, usize, usize, usize, usize, usize); 4] = [
    ("mainnet-genesis", 8893, 12356, 1483023, 0, 0),
    ("sepolia-genesis", 15, 19, 2410, 0, 0),
    ("bt-block504980", 15, 161, 13399, 8, 24270),
    ("bt-walletConfirm", 4, 22, 1732, 2, 4086),
];

/// Declares the files the tests read, by path under the fixtures dir and under
/// `fuzz/regressions`. Natively they are read at run time; under wasm they are compiled
/// in. `fixtures.rs` checks natively that these lists name every file on disk, so a new
/// file cannot be left out of the wasm run unnoticed.
macro_rules! files {
    (fixtures: [$($fixture:literal),* $(,)?], regressions: [$($reg:literal),* $(,)?] $(,)?) => {
        /// Every file under the fixtures dir that the tests read (README aside).
        pub const FIXTURE_FILES: &[&str] = &[$($fixture),*];
        /// Every file under `fuzz/regressions` (`<target>/<name>`).
        pub const REGRESSION_FILES: &[&str] = &[$($reg),*];

        #[cfg(target_arch = "wasm32")]
        fn embedded_fixture(rel: &str) -> Option<&'static [u8]> {
            match rel {
                $($fixture => Some(include_bytes!(
                    concat!("../../../../shared/fixtures/", $fixture)
                )),)*
                _ => None,
            }
        }

        #[cfg(target_arch = "wasm32")]
        fn embedded_regression(rel: &str) -> Option<&'static [u8]> {
            match rel {
                $($reg => Some(include_bytes!(concat!("../../../fuzz/regressions/", $reg))),)*
                _ => None,
            }
        }
    };
}

files! {
    fixtures: [
        "states/mainnet-genesis.json",
        "states/sepolia-genesis.json",
        "states/bt-block504980.json",
        "states/bt-walletConfirm.json",
        "trietests/trietest.json",
        "trietests/trieanyorder.json",
        "trietests/trietest_secureTrie.json",
        "trietests/trieanyorder_secureTrie.json",
        "trietests/hex_encoded_securetrie_test.json",
    ],
    regressions: [
        "account/noncanonical-rlp-junk-in-list",
        "node/noncanonical-rlp-junk-in-list",
        "wire_blobs/noncanonical-rlp-junk-in-list",
        "wire_request/noncanonical-rlp-junk-in-list",
        "wire_ws_request/noncanonical-rlp-junk-in-list",
        "wire_ws_response/noncanonical-rlp-junk-in-list",
    ],
}

/// `../shared/fixtures` beside the repository, or `$TRIESYNC_FIXTURES`.
#[cfg(not(target_arch = "wasm32"))]
pub fn fixtures_dir() -> std::path::PathBuf {
    std::env::var_os("TRIESYNC_FIXTURES")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures")
        })
}

/// `fuzz/regressions` of the repository.
#[cfg(not(target_arch = "wasm32"))]
pub fn regressions_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions")
}

/// A file under the fixtures dir, e.g. `states/sepolia-genesis.json`: read from
/// [`fixtures_dir`] natively; under wasm, compiled in from `../shared/fixtures` (the build
/// cannot see `$TRIESYNC_FIXTURES` at run time).
pub fn fixture_bytes(rel: &str) -> Vec<u8> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        let path = fixtures_dir().join(rel);
        std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
    }
    #[cfg(target_arch = "wasm32")]
    {
        embedded_fixture(rel)
            .unwrap_or_else(|| panic!("fixture {rel} is not in common::FIXTURE_FILES"))
            .to_vec()
    }
}

/// [`fixture_bytes`] as UTF-8.
pub fn fixture_text(rel: &str) -> String {
    String::from_utf8(fixture_bytes(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Every input kept in `fuzz/regressions/<target>/`, as (target, bytes).
pub fn fuzz_regressions() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    #[cfg(not(target_arch = "wasm32"))]
    for target in std::fs::read_dir(regressions_dir()).expect("fuzz/regressions") {
        let target = target.unwrap().path();
        let name = target.file_name().unwrap().to_string_lossy().into_owned();
        for file in std::fs::read_dir(&target).unwrap() {
            out.push((name.clone(), std::fs::read(file.unwrap().path()).unwrap()));
        }
    }
    #[cfg(target_arch = "wasm32")]
    for rel in REGRESSION_FILES {
        let target = rel.split('/').next().expect("target/name");
        out.push((
            target.to_owned(),
            embedded_regression(rel).unwrap().to_vec(),
        ));
    }
    out
}

/// Loads and builds one fixture state, checking its root against the published one.
pub fn load_state(stem: &str) -> (StateFixture, BuiltState) {
    let text = fixture_text(&format!("states/{stem}.json"));
    let fixture = StateFixture::from_json(&text).expect("fixture parses");
    let built = fixture.build().expect("fixture builds");
    assert_eq!(
        built.root,
        fixture.root().unwrap(),
        "{stem}: built root != published root"
    );
    (fixture, built)
}

/// The clock type of [`clock`], for helpers that take one.
#[cfg(not(target_arch = "wasm32"))]
pub type TestClock = triesync_core::testing::ThreadClock;
#[cfg(target_arch = "wasm32")]
pub type TestClock = JsClock;

/// Natively: a thread-backed clock (it works under `block_on`).
#[cfg(not(target_arch = "wasm32"))]
pub fn clock() -> TestClock {
    triesync_core::testing::ThreadClock::new()
}

/// Under wasm: a clock on JS timers; its sleeps only end while the test is awaited by the
/// JS event loop, hence `async_test!` for the tests that use it.
#[cfg(target_arch = "wasm32")]
pub fn clock() -> TestClock {
    JsClock {
        start: js_sys::Date::now(),
    }
}

/// `Date.now()` and `setTimeout`, as the crate's browser clock.
#[cfg(target_arch = "wasm32")]
#[derive(Debug, Clone)]
pub struct JsClock {
    start: f64,
}

#[cfg(target_arch = "wasm32")]
impl triesync_core::peer::Clock for JsClock {
    fn now_ms(&self) -> f64 {
        js_sys::Date::now() - self.start
    }
    fn sleep(&self, d: std::time::Duration) -> futures::future::LocalBoxFuture<'static, ()> {
        use futures::FutureExt;
        // setTimeout takes an i32 of ms; anything longer than ~24 days never ends in a test.
        match u32::try_from(d.as_millis()) {
            Ok(ms) if ms <= i32::MAX as u32 => {
                gloo_timers::future::TimeoutFuture::new(ms).boxed_local()
            }
            _ => futures::future::pending().boxed_local(),
        }
    }
}

/// Milliseconds from an arbitrary start (`std::time::Instant` panics under wasm).
pub fn now_ms() -> f64 {
    #[cfg(not(target_arch = "wasm32"))]
    {
        use std::sync::OnceLock;
        static START: OnceLock<std::time::Instant> = OnceLock::new();
        START
            .get_or_init(std::time::Instant::now)
            .elapsed()
            .as_secs_f64()
            * 1e3
    }
    #[cfg(target_arch = "wasm32")]
    {
        js_sys::Date::now()
    }
}

/// Runs a future that finishes without waiting on anything outside it (the in-memory
/// stores). Under wasm a test cannot block the only thread, so a future still pending
/// after its first poll panics, saying so; natively too, so that a native run shows it
/// (and so that it can be called inside an `async_test!`, where an executor is running).
pub fn block_on<F: Future>(f: F) -> F::Output {
    futures::FutureExt::now_or_never(f)
        .expect("block_on only runs futures that end at once: await it in an async_test!")
}

/// An async test: awaited by wasm-bindgen-test under wasm (the JS event loop runs the
/// timers), run by `futures::executor::block_on` natively.
macro_rules! async_test {
    ($(#[$attr:meta])* async fn $name:ident() $body:block) => {
        #[cfg(target_arch = "wasm32")]
        $(#[$attr])*
        #[wasm_bindgen_test::wasm_bindgen_test]
        async fn $name() $body

        #[cfg(not(target_arch = "wasm32"))]
        $(#[$attr])*
        #[::core::prelude::v1::test]
        fn $name() {
            async fn body() $body
            futures::executor::block_on(body())
        }
    };
}
pub(crate) use async_test;
