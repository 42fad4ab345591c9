//! The same syncs inside a dedicated Web Worker (no `window`): fetch, WebSocket,
//! IndexedDB, `performance` and timers all come from the worker's global scope.
#![cfg(target_arch = "wasm32")]

mod common;

use common::*;
use wasm_bindgen::JsValue;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_dedicated_worker);

#[wasm_bindgen_test]
async fn runs_in_a_dedicated_worker() {
    let global = js_sys::global();
    assert!(
        js_sys::Reflect::get(&global, &"window".into())
            .unwrap()
            .is_undefined(),
        "no window here"
    );
    assert!(
        !js_sys::Reflect::get(&global, &"importScripts".into())
            .unwrap()
            .is_undefined(),
        "a worker scope"
    );
}

#[wasm_bindgen_test]
async fn bt_over_http_and_ws_in_worker() {
    let fx = Fixture::load(BT_JSON);
    let name = "ts-worker-bt";
    delete_db(name).await;
    let p = bt_peer();
    let report = run(options(&fx.root, vec![p.into(), ws(p).into()], name, &[]))
        .await
        .unwrap();
    assert_eq!(field(&report, "complete"), JsValue::TRUE);
    assert_eq!(num(&report, "nodes") as u64, fx.nodes());
    assert_synced_then_delete(name, &fx, true).await;
}

#[wasm_bindgen_test]
async fn genesis_over_jsonrpc_and_ws_in_worker_with_resume() {
    let fx = Fixture::load(GENESIS_JSON);
    let name = "ts-worker-genesis";
    delete_db(name).await;
    let p = genesis_peer();
    let controller = web_sys::AbortController::new().unwrap();
    let c = controller.clone();
    let on_progress = callback(move |_| c.abort());
    let first = options(
        &fx.root,
        vec![jsonrpc(p), ws(p).into()],
        name,
        &[
            ("signal", controller.signal().into()),
            ("onProgress", on_progress.into()),
        ],
    );
    assert_eq!(code(&run(first).await.unwrap_err()), "CANCELLED");
    let report = run(options(&fx.root, vec![jsonrpc(p), ws(p).into()], name, &[]))
        .await
        .unwrap();
    assert_eq!(field(&report, "complete"), JsValue::TRUE);
    assert_synced_then_delete(name, &fx, false).await;
}
