//! Time in the browser: `performance.now()` of whatever global scope runs us (page or
//! worker), and `setTimeout`-based sleeps.

use futures::future::LocalBoxFuture;
use futures::FutureExt;
use std::time::Duration;
use triesync_core::peer::Clock;
use wasm_bindgen::prelude::*;

#[wasm_bindgen]
extern "C" {
    /// `globalThis.performance`, present in windows and in every kind of worker.
    #[wasm_bindgen(thread_local_v2, js_name = performance)]
    static PERFORMANCE: web_sys::Performance;
}

/// Milliseconds since the time origin of the global scope.
pub fn now_ms() -> f64 {
    PERFORMANCE.with(web_sys::Performance::now)
}

/// Completes after `d` (a `setTimeout`, so it needs the JS event loop).
pub fn sleep(d: Duration) -> LocalBoxFuture<'static, ()> {
    // setTimeout takes a 32-bit delay; longer sleeps are clamped (they are never needed).
    let ms = d.as_millis().min(i32::MAX as u128) as u32;
    gloo_timers::future::TimeoutFuture::new(ms).boxed_local()
}

/// The [`Clock`] the driver runs on in the browser.
#[derive(Debug, Clone, Copy, Default)]
pub struct BrowserClock;

impl Clock for BrowserClock {
    fn now_ms(&self) -> f64 {
        now_ms()
    }

    fn sleep(&self, d: Duration) -> LocalBoxFuture<'static, ()> {
        sleep(d)
    }
}
