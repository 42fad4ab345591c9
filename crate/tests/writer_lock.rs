//! The writer lock (Web Locks) when a sync is cancelled while it asks for the lock: the
//! abandoned request may still be granted a moment later, and the next sync in the same
//! context must not be refused with LOCKED because of it.
#![cfg(target_arch = "wasm32")]

mod common;

use common::*;
use futures::future::{select, Either};
use std::time::Duration;
use triesync::lock::acquire;
use wasm_bindgen::JsValue;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

/// An acquire dropped right after it asked (the lock free, so the grant is on its way),
/// then an immediate `ifAvailable` acquire: granted, every time.
#[wasm_bindgen_test]
async fn an_abandoned_request_does_not_lock_out_the_next() {
    for round in 0..30 {
        let name = format!("ts-lock-abandoned-{}", round % 3);
        {
            let asked = Box::pin(acquire(&name, Duration::ZERO));
            // Polled once (the request is made), then dropped.
            match select(asked, futures::future::ready(())).await {
                Either::Left((r, _)) => drop(r),
                Either::Right(((), asked)) => drop(asked),
            }
        }
        let lock = acquire(&name, Duration::ZERO).await;
        assert!(matches!(lock, Ok(Some(_))), "round {round}: {lock:?}");
    }
}

/// The same through the JS API: a sync whose signal is already aborted (CANCELLED), then
/// at once a sync into the same database without `lockTimeoutMs`: it runs.
#[wasm_bindgen_test]
async fn a_cancelled_sync_leaves_the_database_free() {
    let fx = Fixture::load(BT_JSON);
    let name = "ts-lock-cancelled";
    delete_db(name).await;
    for round in 0..10 {
        let controller = web_sys::AbortController::new().unwrap();
        controller.abort();
        let err = run(options(
            &fx.root,
            vec![bt_peer().into()],
            name,
            &[("signal", controller.signal().into())],
        ))
        .await
        .unwrap_err();
        assert_eq!(code(&err), "CANCELLED", "round {round}");
        let report = run(options(&fx.root, vec![bt_peer().into()], name, &[]))
            .await
            .unwrap_or_else(|e| panic!("round {round}: {}", code(&e)));
        assert_eq!(field(&report, "complete"), JsValue::TRUE);
    }
    delete_db(name).await;
}
