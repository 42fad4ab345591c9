//! One writer per database: a sync holds the exclusive Web Lock `triesync:<database>` while
//! it runs, across tabs and workers of the origin. A second sync into the same database
//! fails at once with [`StoreError::Locked`] instead of interleaving its batches.
//!
//! Where `navigator.locks` does not exist (very old browsers), nothing is locked.

use futures::channel::oneshot;
use futures::future::{select, Either};
use js_sys::{Function, Object, Promise, Reflect};
use std::cell::RefCell;
use std::rc::Rc;
use triesync_core::store::StoreError;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

/// A held lock; dropping it releases the lock.
#[derive(Debug)]
pub struct WriterLock {
    release: Option<Function>,
}

impl Drop for WriterLock {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            let _ = release.call0(&JsValue::UNDEFINED);
        }
    }
}

/// The lock name of a database.
pub fn lock_name(database: &str) -> String {
    format!("triesync:{database}")
}

fn get(obj: &JsValue, key: &str) -> JsValue {
    Reflect::get(obj, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
}

/// Takes the writer lock of `database` if nobody holds it; `Ok(None)` when the platform has
/// no Web Locks.
pub async fn acquire(database: &str) -> Result<Option<WriterLock>, StoreError> {
    let locks = get(&get(&js_sys::global(), "navigator"), "locks");
    if locks.is_undefined() || locks.is_null() {
        return Ok(None);
    }
    let request: Function = get(&locks, "request")
        .dyn_into()
        .map_err(|_| StoreError::Backend("navigator.locks.request is not a function".into()))?;
    let (tx, rx) = oneshot::channel::<Option<Function>>();
    let tx = Rc::new(RefCell::new(Some(tx)));
    let on_grant = Closure::once_into_js(move |lock: JsValue| -> JsValue {
        let Some(tx) = tx.borrow_mut().take() else {
            return JsValue::UNDEFINED;
        };
        if lock.is_null() {
            let _ = tx.send(None);
            return JsValue::UNDEFINED;
        }
        // The lock is held until this promise settles: its resolve function is the release.
        let mut release = None;
        let held = Promise::new(&mut |resolve, _reject| release = Some(resolve));
        let _ = tx.send(release);
        held.into()
    });
    let options = Object::new();
    let _ = Reflect::set(&options, &JsValue::from_str("ifAvailable"), &JsValue::TRUE);
    let outer: Promise = request
        .call3(
            &locks,
            &JsValue::from_str(&lock_name(database)),
            &options,
            &on_grant,
        )
        .map_err(|e| StoreError::Backend(format!("navigator.locks.request: {e:?}")))?
        .unchecked_into();
    // The outer promise settles when the lock is released, or rejects if the request fails.
    match select(rx, JsFuture::from(outer)).await {
        Either::Left((Ok(Some(release)), _)) => Ok(Some(WriterLock {
            release: Some(release),
        })),
        Either::Left((Ok(None), _)) => Err(StoreError::Locked),
        Either::Left((Err(_), _)) => Err(StoreError::Backend("lock request dropped".into())),
        Either::Right((Err(e), _)) => Err(StoreError::Backend(format!(
            "navigator.locks.request: {e:?}"
        ))),
        Either::Right((Ok(_), _)) => Err(StoreError::Backend("lock request ended early".into())),
    }
}
