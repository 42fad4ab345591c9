//! triesync-core: the target-agnostic engine of triesync.
//!
//! It downloads a Merkle-Patricia state trie by hash from untrusted peers, verifies every
//! node with keccak256 and commits only complete subtries, so that a half-filled store is
//! always consistent and a restart fetches only what is missing. No browser APIs live
//! here: the same code runs natively (tests, benchmarks, the reference peer) and in wasm.
#![warn(missing_docs)]

pub mod builder;
pub mod hash;
pub mod nodes;
pub mod state;
pub mod synthetic;

pub use hash::{keccak256, EMPTY_CODE_HASH, EMPTY_ROOT, H256};
pub mod driver;
pub mod packed;
pub mod peer;
pub mod rlp_reader;
pub mod rng;
pub mod scheduler;
pub mod store;
pub mod testing;
pub mod walk;
pub mod wire;
