//! Every failure the JavaScript API can report, and its one mapping to a JS `Error` whose
//! `code` property is a stable, machine-readable string.

use js_sys::Reflect;
use triesync_core::driver::SyncError;
use triesync_core::peer::PeerError;
use triesync_core::store::StoreError;
use triesync_core::walk::WalkError;
use wasm_bindgen::JsValue;

/// An error of the JavaScript API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// An argument the caller passed is not valid (bad hex, unknown protocol, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// `run()` was called on a sync that already ran or is running.
    #[error("this sync has already been started; create a new StateSync to run again")]
    AlreadyStarted,
    /// The sync stopped without completing.
    #[error(transparent)]
    Sync(#[from] SyncError),
    /// A lookup could not be answered from the local store.
    #[error(transparent)]
    Walk(#[from] WalkError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A `layout` option names another layout than the existing database has (nothing
    /// was changed: a database is never converted or wiped implicitly).
    #[error(
        "database {database:?} has the {existing} layout, not {wanted}: open it without \
         `layout` to keep its layout, or delete it to start over with {wanted}"
    )]
    LayoutMismatch {
        /// The database name.
        database: String,
        /// Its layout.
        existing: &'static str,
        /// The layout asked for.
        wanted: &'static str,
    },
    /// A peer request failed (only surfaced by direct transport use).
    #[error(transparent)]
    Peer(#[from] PeerError),
}

impl Error {
    /// Shorthand for [`Error::InvalidArgument`].
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidArgument(msg.into())
    }

    /// The stable code put on the JS `Error` as `.code`.
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidArgument(_) => "INVALID_ARGUMENT",
            Error::AlreadyStarted => "ALREADY_STARTED",
            Error::Sync(e) => e.code(),
            Error::Walk(e) => e.code(),
            Error::Store(e) => store_code(e),
            Error::LayoutMismatch { .. } => "LAYOUT_MISMATCH",
            Error::Peer(e) => match e {
                PeerError::Timeout => "PEER_TIMEOUT",
                PeerError::Status(_) => "PEER_STATUS",
                PeerError::Malformed(_) => "PEER_MALFORMED",
                PeerError::TooLarge(_) => "PEER_TOO_LARGE",
                PeerError::Connection(_) => "PEER_CONNECTION",
            },
        }
    }

    /// A JS `Error` with `message`, `code` and `name = "TriesyncError"`.
    pub fn to_js(&self) -> js_sys::Error {
        js_error(self.code(), &self.to_string())
    }
}

/// The code of a store failure: the same as when it ends a sync.
pub fn store_code(e: &StoreError) -> &'static str {
    SyncError::Store(e.clone()).code()
}

/// A JS `Error` carrying `code`.
pub fn js_error(code: &str, message: &str) -> js_sys::Error {
    let err = js_sys::Error::new(message);
    err.set_name("TriesyncError");
    // Setting a property on a fresh Error object cannot fail.
    let _ = Reflect::set(&err, &JsValue::from_str("code"), &JsValue::from_str(code));
    err
}

impl From<Error> for JsValue {
    fn from(e: Error) -> JsValue {
        e.to_js().into()
    }
}

/// Result of the JS-facing functions.
pub type JsResult<T> = Result<T, JsValue>;
