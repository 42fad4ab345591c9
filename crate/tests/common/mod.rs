//! Helpers of the browser tests: fixture states, the peers `scripts/browser-tests.sh`
//! started (their URLs are compiled in from the environment), and small JS glue.
#![allow(dead_code, unreachable_pub)]

use js_sys::{Function, Object, Promise, Reflect};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::rc::Rc;
use triesync::api::{StateDb, StateSync};
use triesync_core::state::{hex_word, BuiltState, StateFixture};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

/// The fixture states (from `../shared/fixtures` beside the repository).
pub const GENESIS_JSON: &str =
    include_str!("../../../../shared/fixtures/states/mainnet-genesis.json");
pub const BT_JSON: &str = include_str!("../../../../shared/fixtures/states/bt-block504980.json");

/// A fixture, built, with its published root checked.
pub struct Fixture {
    pub fixture: StateFixture,
    pub built: BuiltState,
    pub root: String,
}

impl Fixture {
    pub fn load(text: &str) -> Fixture {
        let fixture = StateFixture::from_json(text).expect("fixture parses");
        let built = fixture.build().expect("fixture builds");
        assert_eq!(
            built.root,
            fixture.root().unwrap(),
            "built root != published root"
        );
        let root = built.root.to_hex();
        Fixture {
            fixture,
            built,
            root,
        }
    }

    pub fn nodes(&self) -> u64 {
        self.built.nodes.len() as u64
    }

    pub fn codes(&self) -> u64 {
        self.built.codes.len() as u64
    }

    pub fn items(&self) -> u64 {
        self.nodes() + self.codes()
    }
}

fn env(name: &str, value: Option<&'static str>) -> &'static str {
    value
        .unwrap_or_else(|| panic!("{name} was not set at build time: run scripts/browser-tests.sh"))
}

/// Good peer serving mainnet genesis (`http://127.0.0.1:PORT`).
pub fn genesis_peer() -> &'static str {
    env(
        "TRIESYNC_PEER_GENESIS",
        option_env!("TRIESYNC_PEER_GENESIS"),
    )
}

/// Good peer serving mainnet genesis, every answer 100 ms late.
pub fn slow_peer() -> &'static str {
    env("TRIESYNC_PEER_SLOW", option_env!("TRIESYNC_PEER_SLOW"))
}

/// Peer serving bt-block504980 that never answers 30% of requests (for answers out of
/// order on one WebSocket).
pub fn unordered_peer() -> &'static str {
    env(
        "TRIESYNC_PEER_UNORDERED",
        option_env!("TRIESYNC_PEER_UNORDERED"),
    )
}

/// Good peer serving bt-block504980.
pub fn bt_peer() -> &'static str {
    env("TRIESYNC_PEER_BT", option_env!("TRIESYNC_PEER_BT"))
}

/// Peers serving mainnet genesis with faults, each still delivering some good data, in
/// this order: corrupt (corrupt, unrequested and extra blobs), flaky (omitted blobs, 500s,
/// HTML errors, garbage), stalling (stalls, closes, delays).
pub fn hostile_peers() -> Vec<&'static str> {
    env(
        "TRIESYNC_PEER_HOSTILE",
        option_env!("TRIESYNC_PEER_HOSTILE"),
    )
    .split(',')
    .collect()
}

/// Peers serving mainnet genesis that never deliver a usable blob.
pub fn useless_peers() -> Vec<&'static str> {
    env(
        "TRIESYNC_PEER_USELESS",
        option_env!("TRIESYNC_PEER_USELESS"),
    )
    .split(',')
    .collect()
}

/// A flooding peer serving mainnet genesis, by kind: `bytes` (100 MB answers), `endless`
/// (answers that never end), `repeat` (one blob 1000 times), `unasked` (1000 blobs nobody
/// asked for), `wsflood` (1000 unsolicited WebSocket answers before each answer).
pub fn flood_peer(kind: &str) -> &'static str {
    env("TRIESYNC_PEER_FLOODS", option_env!("TRIESYNC_PEER_FLOODS"))
        .split(',')
        .find_map(|kv| kv.strip_prefix(kind)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no flood peer {kind}"))
}

/// The WebSocket URL of a peer's HTTP URL.
pub fn ws(url: &str) -> String {
    url.replacen("http://", "ws://", 1)
}

/// `{ url, protocol: 'jsonrpc' }`.
pub fn jsonrpc(url: &str) -> JsValue {
    obj(&[("url", url.into()), ("protocol", "jsonrpc".into())])
}

/// A plain object from pairs.
pub fn obj(pairs: &[(&str, JsValue)]) -> JsValue {
    let o = Object::new();
    for (k, v) in pairs {
        Reflect::set(&o, &JsValue::from_str(k), v).unwrap();
    }
    o.into()
}

/// A JS array of values.
pub fn arr(items: Vec<JsValue>) -> JsValue {
    items.into_iter().collect::<js_sys::Array>().into()
}

/// `obj[key]`.
pub fn field(v: &JsValue, key: &str) -> JsValue {
    Reflect::get(v, &JsValue::from_str(key)).unwrap()
}

/// `obj[key]` as a number.
pub fn num(v: &JsValue, key: &str) -> f64 {
    field(v, key)
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number in {v:?}"))
}

/// The `code` of a rejection.
pub fn code(err: &JsValue) -> String {
    field(err, "code")
        .as_string()
        .unwrap_or_else(|| panic!("no code on {err:?}"))
}

/// Awaits a promise.
pub async fn wait(p: Promise) -> Result<JsValue, JsValue> {
    JsFuture::from(p).await
}

/// Deletes a database (before and after each test).
pub async fn delete_db(name: &str) {
    StateDb::delete_database(name.to_string())
        .await
        .expect("delete database");
}

/// Options for `new StateSync`.
pub fn options(
    root: &str,
    peers: Vec<JsValue>,
    database: &str,
    extra: &[(&str, JsValue)],
) -> JsValue {
    let mut pairs = vec![
        ("root", JsValue::from_str(root)),
        ("peers", arr(peers)),
        ("database", database.into()),
    ];
    pairs.extend(extra.iter().cloned());
    obj(&pairs)
}

/// Runs a sync to its end.
pub async fn run(options: JsValue) -> Result<JsValue, JsValue> {
    let sync = StateSync::new(options)?;
    wait(sync.run()).await
}

/// Items delivered by all peers of a report.
pub fn items_fetched(report: &JsValue) -> f64 {
    js_sys::Array::from(&field(report, "peers"))
        .iter()
        .map(|p| num(&p, "items"))
        .sum()
}

/// A progress callback as a JS function, kept alive for the test's duration.
pub fn callback(f: impl FnMut(JsValue) + 'static) -> Function {
    Closure::<dyn FnMut(JsValue)>::new(f)
        .into_js_value()
        .unchecked_into()
}

/// A `StateSync` of `options` whose progress callback counts its calls and hands `hook` the
/// count (1 at the first commit) and the sync, to act on it at the Nth commit. Returns the
/// sync and the count.
pub fn sync_with_hook(
    options: JsValue,
    mut hook: impl FnMut(u32, &StateSync) + 'static,
) -> (Rc<StateSync>, Rc<Cell<u32>>) {
    let sync = Rc::new(StateSync::new(options).unwrap());
    let calls = Rc::new(Cell::new(0u32));
    let (s, c) = (sync.clone(), calls.clone());
    sync.on_progress(callback(move |_| {
        c.set(c.get() + 1);
        hook(c.get(), &s);
    }));
    (sync, calls)
}

/// Opens database `name`, checks that it holds exactly `fx` ([`assert_verified`]; with
/// `read_accounts` also [`assert_accounts`]), then closes and deletes it.
pub async fn assert_synced_then_delete(name: &str, fx: &Fixture, read_accounts: bool) {
    let db = StateDb::open(name.into(), JsValue::UNDEFINED)
        .await
        .unwrap();
    assert_verified(&db, fx).await;
    if read_accounts {
        assert_accounts(&db, fx).await;
    }
    db.close();
    delete_db(name).await;
}

/// Checks a verify report: complete with exactly the fixture's items.
pub async fn assert_verified(db: &StateDb, fx: &Fixture) {
    let report = wait(db.verify(fx.root.clone())).await.unwrap();
    assert_eq!(
        field(&report, "complete"),
        JsValue::TRUE,
        "verify: {report:?}"
    );
    assert_eq!(num(&report, "nodes") as u64, fx.nodes());
    assert_eq!(num(&report, "codes") as u64, fx.codes());
    assert_eq!(num(&report, "nodeBytes") as usize, fx.built.node_bytes());
    assert_eq!(num(&report, "codeBytes") as usize, fx.built.code_bytes());
    assert_eq!(num(&report, "missingCount"), 0.0);
}

/// A hex integer as minimal `0x` hex (`0x0` for zero).
pub fn quantity(s: Option<&str>) -> String {
    let w = s.map(|s| hex_word(s, "test").unwrap()).unwrap_or([0; 32]);
    triesync::interop::word_quantity(&w)
}

/// Every account, slot and code of the fixture, read through `StateDb`.
pub async fn assert_accounts(db: &StateDb, fx: &Fixture) {
    let root = &fx.root;
    let mut empty_code_reads = 0;
    for (addr, acc) in &fx.fixture.alloc {
        let got = wait(db.account(root.clone(), addr.clone())).await.unwrap();
        assert!(!got.is_null(), "account {addr} missing");
        assert_eq!(
            field(&got, "balanceHex").as_string().unwrap(),
            quantity(acc.balance.as_deref()),
            "balance of {addr}"
        );
        assert_eq!(
            num(&got, "nonce") as u64,
            u64::from_str_radix(quantity(acc.nonce.as_deref()).trim_start_matches("0x"), 16)
                .unwrap(),
            "nonce of {addr}"
        );
        let big = field(&got, "balance");
        assert!(big.is_bigint(), "balance is a bigint");
        let storage: &BTreeMap<String, String> = &acc.storage;
        for (slot, value) in storage {
            let word = wait(db.storage(root.clone(), addr.clone(), slot.clone()))
                .await
                .unwrap();
            let want = format!("0x{}", hex::encode(hex_word(value, "value").unwrap()));
            assert_eq!(word.as_string().unwrap(), want, "slot {slot} of {addr}");
        }
        let want = acc
            .code
            .as_deref()
            .map(|c| hex::decode(c.trim_start_matches("0x")).unwrap())
            .unwrap_or_default();
        let code_hash = field(&got, "codeHash").as_string().unwrap();
        assert_eq!(
            code_hash,
            triesync_core::keccak256(&want).to_hex(),
            "code hash of {addr}"
        );
        // Accounts without code all share the empty code hash: reading a few is enough.
        if !want.is_empty() || empty_code_reads < 20 {
            empty_code_reads += usize::from(want.is_empty());
            let code = wait(db.code(root.clone(), addr.clone())).await.unwrap();
            assert_eq!(
                js_sys::Uint8Array::new(&code).to_vec(),
                want,
                "code of {addr}"
            );
        }
    }
    // An address that is not in the state reads as null, not as an error.
    let absent = wait(db.account(
        root.clone(),
        "0x00000000000000000000000000000000deadbeef".into(),
    ))
    .await
    .unwrap();
    assert!(absent.is_null());
}

/// Logs to the browser console (shown by the test runner on failure).
pub fn log(msg: &str) {
    web_sys::console::log_1(&JsValue::from_str(msg));
}
