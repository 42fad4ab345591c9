//! One writer per database: a sync holds the exclusive Web Lock `triesync:<database>` while
//! it runs, across tabs and workers of the origin. A second sync into the same database
//! fails with [`StoreError::Locked`] instead of interleaving its batches: at once by
//! default, or after waiting up to a timeout for the holder to finish (`lockTimeoutMs`).
//!
//! Where `navigator.locks` does not exist (very old browsers), nothing is locked.

use futures::channel::oneshot;
use futures::future::{select, Either};
use futures::FutureExt;
use js_sys::{Function, Object, Promise, Reflect};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;
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

/// Withdraws a lock request that is still queued when the wait for it ends (timed out,
/// cancelled, dropped). A no-op once the lock was granted.
struct AbortOnDrop(Option<web_sys::AbortController>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(c) = &self.0 {
            c.abort();
        }
    }
}

thread_local! {
    /// Per lock name, requests whose wait was dropped before they settled (a sync cancelled
    /// while asking for the lock). The lock manager may grant such a request after all; it
    /// is then released at once, but until that grant has reached this context the lock is
    /// held, and an immediate next sync would be refused as if another tab wrote.
    static UNSETTLED: RefCell<HashMap<String, Vec<oneshot::Receiver<()>>>> =
        RefCell::new(HashMap::new());
}

/// Longest wait for this context's own abandoned requests to settle (they settle within a
/// round trip to the lock manager).
const UNSETTLED_WAIT: Duration = Duration::from_secs(2);

/// Waits until every abandoned request of this context for `name` has settled.
async fn settle_abandoned(name: &str) {
    let pending = UNSETTLED.with(|u| u.borrow_mut().remove(name).unwrap_or_default());
    if pending.is_empty() {
        return;
    }
    let all = futures::future::join_all(pending);
    let _ = select(Box::pin(all), crate::clock::sleep(UNSETTLED_WAIT)).await;
}

/// Records the request as abandoned if its wait is dropped before it settled.
struct SettleWatch {
    name: String,
    settled: Option<oneshot::Receiver<()>>,
}

impl Drop for SettleWatch {
    fn drop(&mut self) {
        if let Some(mut rx) = self.settled.take() {
            if matches!(rx.try_recv(), Ok(None)) {
                let name = std::mem::take(&mut self.name);
                UNSETTLED.with(|u| u.borrow_mut().entry(name).or_default().push(rx));
            }
        }
    }
}

/// Takes the writer lock of `database`: at once if nobody holds it (`wait` zero), or
/// waiting up to `wait` for the holder to let go; [`StoreError::Locked`] otherwise.
/// `Ok(None)` when the platform has no Web Locks. Dropping the future withdraws the
/// request (and the next `acquire` of this context waits for that to have settled).
pub async fn acquire(database: &str, wait: Duration) -> Result<Option<WriterLock>, StoreError> {
    let locks = get(&get(&js_sys::global(), "navigator"), "locks");
    if locks.is_undefined() || locks.is_null() {
        return Ok(None);
    }
    let name = lock_name(database);
    settle_abandoned(&name).await;
    // Fires once the request has settled (see `on_settled`).
    let (settled_tx, settled_rx) = oneshot::channel::<()>();
    let mut watch = SettleWatch {
        name: name.clone(),
        settled: Some(settled_rx),
    };
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
        match tx.send(release) {
            Ok(()) => held.into(),
            // Nobody waits any more (the wait was dropped just now): let go at once.
            Err(_) => JsValue::UNDEFINED,
        }
    });
    let options = Object::new();
    let waits = !wait.is_zero();
    let controller = if waits {
        let c = web_sys::AbortController::new()
            .map_err(|e| StoreError::Backend(format!("AbortController: {e:?}")))?;
        let _ = Reflect::set(&options, &JsValue::from_str("signal"), &c.signal());
        Some(c)
    } else {
        let _ = Reflect::set(&options, &JsValue::from_str("ifAvailable"), &JsValue::TRUE);
        None
    };
    let guard = AbortOnDrop(controller.clone());
    let outer: Promise = request
        .call3(&locks, &JsValue::from_str(&name), &options, &on_grant)
        .map_err(|e| StoreError::Backend(format!("navigator.locks.request: {e:?}")))?
        .unchecked_into();
    // The request's promise settles once its lock has been let go (or it was refused or
    // withdrawn): only then may the next request of this context find the lock free.
    let on_settled: JsValue = Closure::once_into_js(move |_v: JsValue| drop(settled_tx));
    if let Ok(then) = get(&outer, "then").dyn_into::<Function>() {
        let _ = then.call2(&outer, &on_settled, &on_settled);
    }
    // The outer promise settles when the lock is released, or rejects if the request fails
    // (an AbortError when the wait timed out).
    let mut outer = JsFuture::from(outer);
    let mut rx = rx;
    if waits {
        let timer = crate::clock::sleep(wait);
        match select(select(&mut rx, &mut outer), timer).await {
            Either::Left((Either::Left((granted, _)), _)) => {
                watch.settled = None;
                return finish(granted, guard);
            }
            Either::Left((Either::Right((settled, _)), _)) => {
                watch.settled = None;
                return outer_settled(settled);
            }
            Either::Right(((), _)) => {
                // Withdraw the request; it may have been granted in the meantime.
                if let Some(c) = &controller {
                    c.abort();
                }
            }
        }
    }
    let result = match select(rx, outer).await {
        Either::Left((granted, _)) => finish(granted, guard),
        Either::Right((settled, _)) => outer_settled(settled),
    };
    watch.settled = None;
    result
}

fn finish(
    granted: Result<Option<Function>, oneshot::Canceled>,
    guard: AbortOnDrop,
) -> Result<Option<WriterLock>, StoreError> {
    let mut guard = guard;
    // Granted or refused, the request is no longer queued.
    guard.0 = None;
    match granted {
        Ok(Some(release)) => Ok(Some(WriterLock {
            release: Some(release),
        })),
        Ok(None) => Err(StoreError::Locked),
        Err(_) => Err(StoreError::Backend("lock request dropped".into())),
    }
}

fn outer_settled(settled: Result<JsValue, JsValue>) -> Result<Option<WriterLock>, StoreError> {
    match settled {
        Err(e) if get(&e, "name").as_string().as_deref() == Some("AbortError") => {
            Err(StoreError::Locked)
        }
        Err(e) => Err(StoreError::Backend(format!(
            "navigator.locks.request: {e:?}"
        ))),
        Ok(_) => Err(StoreError::Backend("lock request ended early".into())),
    }
}

/// Runs `f` unless `cancelled` fires first (then `None`): used to give up a lock wait.
pub async fn unless<F: std::future::Future>(
    f: F,
    cancelled: oneshot::Receiver<()>,
) -> Option<F::Output> {
    futures::select_biased! {
        v = f.fuse() => Some(v),
        _ = cancelled.fuse() => None,
    }
}
