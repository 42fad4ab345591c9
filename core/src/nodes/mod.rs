//! Merkle-Patricia trie nodes: strict decoding of peer bytes and encoding for the builder.

mod decode;
mod encode;
mod nibbles;

pub use decode::{decode_node, ChildRef, Node, NodeError};
pub use encode::{encode_branch, encode_extension, encode_leaf, NodeRef};
pub use nibbles::{bytes_to_nibbles, hex_prefix_decode, hex_prefix_encode, nibbles_to_bytes};
