//! triesync for the browser: downloads an Ethereum state trie by hash from untrusted peers
//! (binary HTTP, WebSocket or JSON-RPC `debug_dbGet`), verifies every node with keccak256
//! and commits only complete subtries to IndexedDB, so a reload resumes where it stopped.
//!
//! The engine is `triesync-core`; this crate adds what only a browser has, one concern per
//! module: the storage behind the API ([`db`]: either [`layout`], packed
//! ([`idb_records`] under core's packed store, the default) or one record per item
//! ([`idb_store`])), the [`transport`]s, the [`clock`], the JavaScript
//! API ([`api`]), JS↔Rust conversion ([`interop`]), one writer per database ([`lock`]) and
//! errors as JS `Error`s with a machine-readable `code` ([`error`]), and the scan of a
//! whole store ([`check`]).
//!
//! Nothing here touches `window`: the global scope is used generically, so the same module
//! runs on a page and in a Web Worker.
#![warn(missing_docs)]

pub mod api;
pub mod check;
pub mod clock;
pub mod db;
pub mod error;
pub mod idb_records;
pub mod idb_store;
pub mod interop;
pub mod layout;
pub mod lock;
pub mod transport;

pub use api::{StateDb, StateSync};
pub use clock::BrowserClock;
pub use db::Db;
pub use error::Error;
pub use idb_store::IdbStore;
pub use layout::Layout;
