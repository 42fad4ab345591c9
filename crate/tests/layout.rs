//! Storage layouts through the JS API, against real peers and IndexedDB: a new database is
//! packed; a per-item one (a wallet's database from before) keeps its layout when opened
//! without the option and answers lookups; an explicit layout that differs is
//! LAYOUT_MISMATCH and changes nothing; detection leaves no empty database behind; a
//! `StateDb` opened before a sync sees what it committed (the packed reader reopens its
//! runs); an interrupted packed sync resumes fetching only what is missing.
#![cfg(target_arch = "wasm32")]

mod common;

use common::*;
use std::cell::Cell;
use std::rc::Rc;
use triesync::api::{StateDb, StateSync};
use triesync::db::{Db, Role};
use triesync::idb_records::IdbRecords;
use triesync::idb_store::IdbStore;
use triesync::layout::Layout;
use wasm_bindgen::JsValue;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

fn layout_opt(layout: &str) -> JsValue {
    obj(&[("layout", layout.into())])
}

async fn open_code(name: &str, options: JsValue) -> String {
    code(&StateDb::open(name.into(), options).await.unwrap_err())
}

/// A database synced with `layout: 'per-item'` is per-item records; reopened without the
/// option (StateDb and StateSync) it stays per-item, answers every lookup and resumes.
#[wasm_bindgen_test]
async fn per_item_database_keeps_its_layout() {
    let fx = Fixture::load(BT_JSON);
    let name = "ts-layout-per-item";
    delete_db(name).await;
    let report = run(options(
        &fx.root,
        vec![bt_peer().into()],
        name,
        &[("layout", "per-item".into())],
    ))
    .await
    .unwrap();
    assert_eq!(field(&report, "complete"), JsValue::TRUE);

    // Its object stores are the per-item ones: a packed open refuses it.
    let err = IdbRecords::open(name).await.unwrap_err();
    assert!(format!("{err}").contains("not a packed store"), "{err}");

    let db = StateDb::open(name.into(), JsValue::UNDEFINED)
        .await
        .unwrap();
    assert_eq!(db.layout(), "per-item");
    let meta = wait(db.meta()).await.unwrap();
    assert_eq!(field(&meta, "layout").as_string().unwrap(), "per-item");
    assert_verified(&db, &fx).await;
    assert_accounts(&db, &fx).await;
    let counts = wait(db.counts()).await.unwrap();
    assert_eq!(num(&counts, "nodes") as u64, fx.nodes());
    assert_eq!(num(&counts, "codes") as u64, fx.codes());
    let check = wait(db.check_store()).await.unwrap();
    assert_eq!(field(&check, "sound"), JsValue::TRUE);
    assert_eq!(num(&check, "pages"), 0.0, "no pages in a per-item database");
    db.close();

    // A sync without the option finds everything in place, in the per-item stores.
    let again = run(options(&fx.root, vec![bt_peer().into()], name, &[]))
        .await
        .unwrap();
    assert_eq!(field(&again, "complete"), JsValue::TRUE);
    assert_eq!(items_fetched(&again), 0.0);
    let db = StateDb::open(name.into(), layout_opt("per-item"))
        .await
        .unwrap();
    assert_eq!(db.layout(), "per-item");
    db.close();
    delete_db(name).await;
}

/// An explicit layout that differs from the database's: LAYOUT_MISMATCH from
/// `StateDb.open` and from `run()`, both ways; the database is untouched. An unknown
/// layout is INVALID_ARGUMENT.
#[wasm_bindgen_test]
async fn explicit_layout_mismatch_is_typed_and_changes_nothing() {
    let fx = Fixture::load(BT_JSON);
    for (have, other) in [("per-item", "packed"), ("packed", "per-item")] {
        let name = format!("ts-layout-mismatch-{have}");
        let name = name.as_str();
        delete_db(name).await;
        let report = run(options(
            &fx.root,
            vec![bt_peer().into()],
            name,
            &[("layout", have.into())],
        ))
        .await
        .unwrap();
        assert_eq!(field(&report, "complete"), JsValue::TRUE);

        assert_eq!(open_code(name, layout_opt(other)).await, "LAYOUT_MISMATCH");
        let err = StateDb::open(name.into(), layout_opt(other))
            .await
            .unwrap_err();
        let message = field(&err, "message").as_string().unwrap();
        assert!(
            message.contains(have) && message.contains(other),
            "{message}"
        );
        assert_eq!(field(&err, "name").as_string().unwrap(), "TriesyncError");

        let err = run(options(
            &fx.root,
            vec![bt_peer().into()],
            name,
            &[("layout", other.into())],
        ))
        .await
        .unwrap_err();
        assert_eq!(code(&err), "LAYOUT_MISMATCH");

        // Nothing changed: same layout, still complete and readable.
        let db = StateDb::open(name.into(), JsValue::UNDEFINED)
            .await
            .unwrap();
        assert_eq!(db.layout(), have);
        let meta = wait(db.meta()).await.unwrap();
        assert_eq!(field(&meta, "layout").as_string().unwrap(), have);
        assert_eq!(field(&meta, "complete"), JsValue::TRUE);
        assert_verified(&db, &fx).await;
        db.close();
        delete_db(name).await;
    }
    assert_eq!(
        open_code("ts-layout-bad", layout_opt("columnar")).await,
        "INVALID_ARGUMENT"
    );
    let bad = StateSync::new(options(
        &fx.root,
        vec![],
        "ts-layout-bad",
        &[("layout", 5.into())],
    ))
    .unwrap_err();
    assert_eq!(code(&bad), "INVALID_ARGUMENT");
}

/// Opening a database that does not exist creates it with the layout's schema at
/// version 1 (no empty database is left for a versioned open to trip on); one that exists
/// with no object stores (made by someone else's `indexedDB.open(name)`) gets the schema
/// one version up.
#[wasm_bindgen_test]
async fn detection_leaves_no_empty_database() {
    let name = "ts-layout-new";
    delete_db(name).await;
    let db = StateDb::open(name.into(), JsValue::UNDEFINED)
        .await
        .unwrap();
    assert_eq!(db.layout(), "packed", "a new database is packed");
    assert!(wait(db.meta()).await.unwrap().is_null());
    db.close();
    // The versioned opens of each layout find their schema at version 1.
    let records = IdbRecords::open(name).await.unwrap();
    drop(records);
    delete_db(name).await;
    let db = StateDb::open(name.into(), layout_opt("per-item"))
        .await
        .unwrap();
    assert_eq!(db.layout(), "per-item");
    db.close();
    drop(IdbStore::open(name).await.unwrap());
    delete_db(name).await;

    // An empty database at version 1, as a bare `indexedDB.open(name)` leaves it.
    let factory = idb::Factory::new().unwrap();
    let empty = factory.open(name, None).unwrap().await.unwrap();
    assert!(empty.store_names().is_empty());
    assert_eq!(empty.version().unwrap(), 1);
    empty.close();
    let db = Db::open(name, None, Role::Reader).await.unwrap();
    assert_eq!(db.layout(), Layout::Packed);
    db.close();
    let reopened = factory.open(name, None).unwrap().await.unwrap();
    assert_eq!(reopened.version().unwrap(), 2);
    let mut stores = reopened.store_names();
    stores.sort();
    assert_eq!(stores, vec!["meta", "pages", "runs"]);
    reopened.close();
    delete_db(name).await;

    // Object stores of neither layout: a STORE error, not a guess.
    let mut req = factory.open(name, Some(1)).unwrap();
    req.on_upgrade_needed(|e| {
        use idb::DatabaseEvent;
        let db = e.database().unwrap();
        db.create_object_store("other", idb::ObjectStoreParams::new())
            .unwrap();
    });
    req.await.unwrap().close();
    assert_eq!(open_code(name, JsValue::UNDEFINED).await, "STORE");
    delete_db(name).await;
}

/// A `StateDb` opened before a sync (as the demo's worker does) sees everything the sync
/// committed, compactions included; one opened mid-sync answers from what is there.
#[wasm_bindgen_test]
async fn reader_opened_before_the_sync_sees_its_commits() {
    let fx = Fixture::load(GENESIS_JSON);
    let name = "ts-layout-reader";
    delete_db(name).await;
    let db = Rc::new(
        StateDb::open(name.into(), JsValue::UNDEFINED)
            .await
            .unwrap(),
    );
    assert_eq!(db.layout(), "packed");
    let missing = wait(db.verify(fx.root.clone())).await.unwrap();
    assert_eq!(num(&missing, "missingCount"), 1.0);

    // Lookups from the progress callback, while batches and compactions land.
    let reads = Rc::new(Cell::new(0u32));
    let failures = Rc::new(std::cell::RefCell::new(Vec::new()));
    let (d, r, f) = (db.clone(), reads.clone(), failures.clone());
    let on_progress = callback(move |_| {
        let (d, r, f) = (d.clone(), r.clone(), f.clone());
        wasm_bindgen_futures::spawn_local(async move {
            match wait(d.counts()).await {
                Ok(_) => r.set(r.get() + 1),
                Err(e) => f.borrow_mut().push(format!("{e:?}")),
            }
        });
    });
    let report = run(options(
        &fx.root,
        vec![genesis_peer().into()],
        name,
        &[
            ("batchBytes", 30_000.into()),
            ("onProgress", on_progress.into()),
        ],
    ))
    .await
    .unwrap();
    assert_eq!(field(&report, "complete"), JsValue::TRUE);
    assert!(
        num(&report, "batches") > 8.0,
        "many batches, so compactions"
    );
    assert!(failures.borrow().is_empty(), "{:?}", failures.borrow());
    assert_verified(&db, &fx).await;
    let counts = wait(db.counts()).await.unwrap();
    assert_eq!(num(&counts, "nodes") as u64, fx.nodes());
    let meta = wait(db.meta()).await.unwrap();
    assert_eq!(field(&meta, "complete"), JsValue::TRUE);
    assert_eq!(field(&meta, "layout").as_string().unwrap(), "packed");
    log(&format!("reader: {} reads during the sync", reads.get()));
    db.close();
    delete_db(name).await;
}

/// A packed sync stopped after a few commits resumes: the second run fetches and writes
/// exactly what the first did not commit, and the store is sound throughout.
#[wasm_bindgen_test]
async fn interrupted_packed_sync_fetches_only_what_is_missing() {
    let fx = Fixture::load(GENESIS_JSON);
    let name = "ts-layout-resume";
    delete_db(name).await;
    let sync = Rc::new(
        StateSync::new(options(
            &fx.root,
            vec![genesis_peer().into()],
            name,
            &[("batchBytes", 50_000.into()), ("layout", "packed".into())],
        ))
        .unwrap(),
    );
    let seen = Rc::new(Cell::new(0u32));
    let (s, n) = (sync.clone(), seen.clone());
    sync.on_progress(callback(move |_| {
        n.set(n.get() + 1);
        if n.get() == 3 {
            s.cancel();
        }
    }));
    assert_eq!(code(&wait(sync.run()).await.unwrap_err()), "CANCELLED");

    let db = StateDb::open(name.into(), layout_opt("packed"))
        .await
        .unwrap();
    let meta = wait(db.meta()).await.unwrap();
    assert_eq!(field(&meta, "complete"), JsValue::FALSE);
    let committed = (num(&meta, "nodes") + num(&meta, "codes")) as u64;
    assert!(committed > 0 && committed < fx.items(), "{committed}");
    let counts = wait(db.counts()).await.unwrap();
    assert_eq!(
        num(&counts, "nodes"),
        num(&meta, "nodes"),
        "runs vs progress"
    );
    assert_eq!(num(&counts, "codes"), num(&meta, "codes"));
    let check = wait(db.check_store()).await.unwrap();
    assert_eq!(field(&check, "sound"), JsValue::TRUE, "{check:?}");
    assert_eq!(
        (num(&check, "nodes") + num(&check, "codes")) as u64,
        committed
    );

    let report = run(options(&fx.root, vec![genesis_peer().into()], name, &[]))
        .await
        .unwrap();
    assert_eq!(field(&report, "complete"), JsValue::TRUE);
    let written = (num(&report, "nodes") + num(&report, "codes")) as u64;
    let fetched = items_fetched(&report) as u64 + num(&report, "reused") as u64;
    assert_eq!(written, fx.items() - committed, "writes exactly the rest");
    assert_eq!(fetched, fx.items() - committed, "fetches only the rest");
    assert_verified(&db, &fx).await;
    let check = wait(db.check_store()).await.unwrap();
    assert_eq!(field(&check, "sound"), JsValue::TRUE);
    db.close();
    delete_db(name).await;
}
