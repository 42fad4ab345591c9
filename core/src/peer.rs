//! What the driver needs of a peer, and a clock for timeouts; transports implement these
//! (in-memory and faulty peers here for tests, fetch/WebSocket/JSON-RPC in the browser crate).

use crate::store::ItemKey;
use futures::future::LocalBoxFuture;
use std::time::Duration;

/// Why a request to a peer failed as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    /// No answer in time (raised by the driver, or by a transport's own deadline).
    #[error("request timed out")]
    Timeout,
    /// The peer answered with an HTTP error status.
    #[error("HTTP status {0}")]
    Status(u16),
    /// The answer is not a list of blobs in the protocol's framing.
    #[error("malformed answer: {0}")]
    Malformed(String),
    /// The answer exceeded the size limit.
    #[error("answer too large ({0} bytes)")]
    TooLarge(usize),
    /// The connection closed or could not be made.
    #[error("connection: {0}")]
    Connection(String),
}

/// A source of items by hash, with eth `GetNodeData` semantics: the answer holds the blobs
/// the peer has for the asked keys, in any order, possibly fewer; the caller matches them
/// by hashing and trusts nothing else about them.
pub trait Peer {
    /// A stable, human-readable id (usually the URL).
    fn id(&self) -> &str;
    /// Asks for `keys`. Dropping the future must cancel the request.
    fn fetch(&self, keys: Vec<ItemKey>)
        -> LocalBoxFuture<'static, Result<Vec<Vec<u8>>, PeerError>>;
    /// Called once when the driver removes or drops the peer (its requests in flight are
    /// dropped already): release connections, and do not reconnect.
    fn close(&self) {}
}

/// Time for an executor-agnostic driver.
pub trait Clock {
    /// Milliseconds since an arbitrary fixed point.
    fn now_ms(&self) -> f64;
    /// Completes after `d`.
    fn sleep(&self, d: Duration) -> LocalBoxFuture<'static, ()>;
}
