//! Canonical node encoding, used by the trie builder (and so by the peer and the tests).

use super::hex_prefix_encode;
use crate::hash::{keccak256, H256};
use rlp::RlpStream;

/// How a parent refers to a child: by hash when its encoding is 32 bytes or more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeRef {
    /// No child.
    Empty,
    /// The child's keccak256.
    Hash(H256),
    /// The child's own encoding, under 32 bytes.
    Inline(Vec<u8>),
}

impl NodeRef {
    /// The reference a parent stores for a child with this encoding.
    pub fn of(encoded: &[u8]) -> NodeRef {
        if encoded.len() < 32 {
            NodeRef::Inline(encoded.to_vec())
        } else {
            NodeRef::Hash(keccak256(encoded))
        }
    }

    fn append_to(&self, s: &mut RlpStream) {
        match self {
            NodeRef::Empty => {
                s.append_empty_data();
            }
            NodeRef::Hash(h) => {
                s.append(&h.0.as_slice());
            }
            NodeRef::Inline(raw) => {
                s.append_raw(raw, 1);
            }
        }
    }
}

/// `[hp(path, leaf), value]`.
pub fn encode_leaf(path: &[u8], value: &[u8]) -> Vec<u8> {
    let mut s = RlpStream::new_list(2);
    s.append(&hex_prefix_encode(path, true)).append(&value);
    s.out().to_vec()
}

/// `[hp(path, ext), child]`.
pub fn encode_extension(path: &[u8], child: &NodeRef) -> Vec<u8> {
    let mut s = RlpStream::new_list(2);
    s.append(&hex_prefix_encode(path, false));
    child.append_to(&mut s);
    s.out().to_vec()
}

/// `[child0, …, child15, value]`; `children` must hold 16 references.
pub fn encode_branch(children: &[NodeRef], value: Option<&[u8]>) -> Vec<u8> {
    assert_eq!(children.len(), 16, "a branch has 16 children");
    let mut s = RlpStream::new_list(17);
    for c in children {
        c.append_to(&mut s);
    }
    s.append(&value.unwrap_or(&[]));
    s.out().to_vec()
}
