//! Strict decoding: anything that is not exactly a canonical trie node is a typed error.

use super::hex_prefix_decode;
use crate::hash::H256;
use crate::rlp_reader::{Item, RlpError};

/// Why bytes are not a trie node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeError {
    /// The bytes are not valid RLP.
    #[error("invalid RLP: {0}")]
    Rlp(String),
    /// Bytes follow the node's RLP item.
    #[error("{0} trailing bytes after the node")]
    TrailingBytes(usize),
    /// A node is a list of 2 or 17 items; this one is not a list or has another count.
    #[error("a node is a list of 2 or 17 items, got {0}")]
    BadItemCount(usize),
    /// The top-level item is a string, not a list.
    #[error("a node must be an RLP list")]
    NotAList,
    /// A leaf or extension path is empty (it must hold at least the flag byte).
    #[error("empty hex-prefix path")]
    EmptyPath,
    /// The hex-prefix flag nibble is unknown, or an even path has non-zero padding.
    #[error("bad hex-prefix byte {0:#04x}")]
    BadHexPrefix(u8),
    /// An extension with no nibbles.
    #[error("extension with an empty path")]
    EmptyExtension,
    /// A child reference that is neither empty, a 32-byte hash nor an embedded node.
    #[error("child reference of {0} bytes (want 0, 32 or an embedded node)")]
    BadReference(usize),
    /// An embedded node of 32 bytes or more (it must have been referenced by hash).
    #[error("embedded node of {0} bytes (must be under 32)")]
    OversizedEmbedded(usize),
    /// A field that must be a string is a list.
    #[error("expected an RLP string")]
    ExpectedString,
    /// An extension that points to nothing.
    #[error("extension without a child")]
    EmptyExtensionChild,
}

impl From<RlpError> for NodeError {
    fn from(e: RlpError) -> Self {
        NodeError::Rlp(e.to_string())
    }
}

/// A reference from a branch or extension to a child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildRef<'a> {
    /// No child in this slot.
    Empty,
    /// A child stored under its hash.
    Hash(H256),
    /// A child under 32 bytes encoded in place: its raw RLP.
    Inline(&'a [u8]),
}

/// A decoded trie node borrowing from the encoded bytes.
// A branch's 16 children are kept inline (about 650 bytes): boxing them would cost an
// allocation for every branch decoded, on the hot path of every sync, to save a copy.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node<'a> {
    /// 16 children and an optional value (for keys that end here).
    Branch {
        /// One slot per nibble.
        children: [ChildRef<'a>; 16],
        /// The value stored at this path, if any.
        value: Option<&'a [u8]>,
    },
    /// A shared run of nibbles leading to one child.
    Extension {
        /// The shared nibbles (at least one).
        path: Vec<u8>,
        /// The child they lead to.
        child: ChildRef<'a>,
    },
    /// The end of a key and its value.
    Leaf {
        /// The remaining nibbles of the key.
        path: Vec<u8>,
        /// The stored value.
        value: &'a [u8],
    },
}

impl<'a> Node<'a> {
    /// Every child reference, in nibble order.
    pub fn children(&self) -> impl Iterator<Item = (Option<u8>, ChildRef<'a>)> + '_ {
        let (branch, ext) = match self {
            Node::Branch { children, .. } => (Some(children), None),
            Node::Extension { child, .. } => (None, Some(*child)),
            Node::Leaf { .. } => (None, None),
        };
        let branch = branch
            .into_iter()
            .flat_map(|c| c.iter().enumerate().map(|(i, r)| (Some(i as u8), *r)));
        branch.chain(ext.map(|c| (None, c)))
    }
}

/// Decodes one node, refusing non-canonical RLP and shapes, and trailing bytes.
pub fn decode_node(bytes: &[u8]) -> Result<Node<'_>, NodeError> {
    let (top, rest) = crate::rlp_reader::read(bytes)?;
    if !rest.is_empty() {
        return Err(NodeError::TrailingBytes(rest.len()));
    }
    if !top.is_list {
        return Err(NodeError::NotAList);
    }
    let items = top.items()?;
    match items.len() {
        17 => {
            let mut children = [ChildRef::Empty; 16];
            for (slot, item) in children.iter_mut().zip(&items) {
                *slot = child_ref(item)?;
            }
            let value = string(&items[16])?;
            Ok(Node::Branch {
                children,
                value: (!value.is_empty()).then_some(value),
            })
        }
        2 => {
            let (path, leaf) = hex_prefix_decode(string(&items[0])?)?;
            if leaf {
                Ok(Node::Leaf {
                    path,
                    value: string(&items[1])?,
                })
            } else if path.is_empty() {
                Err(NodeError::EmptyExtension)
            } else {
                match child_ref(&items[1])? {
                    ChildRef::Empty => Err(NodeError::EmptyExtensionChild),
                    child => Ok(Node::Extension { path, child }),
                }
            }
        }
        n => Err(NodeError::BadItemCount(n)),
    }
}

fn string<'a>(item: &Item<'a>) -> Result<&'a [u8], NodeError> {
    item.bytes().map_err(|_| NodeError::ExpectedString)
}

fn child_ref<'a>(item: &Item<'a>) -> Result<ChildRef<'a>, NodeError> {
    if item.is_list {
        if item.raw.len() >= 32 {
            return Err(NodeError::OversizedEmbedded(item.raw.len()));
        }
        // Validate the embedded node now so a walk never meets a bad one later.
        decode_node(item.raw)?;
        return Ok(ChildRef::Inline(item.raw));
    }
    match item.payload.len() {
        0 => Ok(ChildRef::Empty),
        32 => Ok(ChildRef::Hash(
            H256::from_slice(item.payload).expect("32 bytes"),
        )),
        n => Err(NodeError::BadReference(n)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nodes::{encode_branch, encode_extension, encode_leaf, NodeRef};
    // Under wasm the same tests run on wasm-bindgen-test (`wasm-pack test --node core`).
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn rlp_trie_node_roundtrip() {
        let leaf = encode_leaf(&[1, 2, 3], b"value-of-some-length-over-32-bytes!!");
        match decode_node(&leaf).unwrap() {
            Node::Leaf { path, value } => {
                assert_eq!(path, vec![1, 2, 3]);
                assert_eq!(value, b"value-of-some-length-over-32-bytes!!");
            }
            other => panic!("not a leaf: {other:?}"),
        }
        let small = encode_leaf(&[4], b"x");
        let mut refs: Vec<NodeRef> = vec![NodeRef::Empty; 16];
        refs[3] = NodeRef::of(&leaf);
        refs[7] = NodeRef::of(&small);
        let branch = encode_branch(&refs, Some(b"v"));
        let node = decode_node(&branch).unwrap();
        let kids: Vec<_> = node
            .children()
            .filter(|(_, c)| *c != ChildRef::Empty)
            .collect();
        assert_eq!(kids.len(), 2);
        assert_eq!(kids[0], (Some(3), ChildRef::Hash(crate::keccak256(&leaf))));
        assert_eq!(kids[1], (Some(7), ChildRef::Inline(&small[..])));
        let ext = encode_extension(&[5, 6], &NodeRef::of(&branch));
        assert!(matches!(decode_node(&ext).unwrap(), Node::Extension { .. }));
    }

    #[test]
    fn malformed_nodes_are_typed_errors() {
        assert!(matches!(decode_node(&[]), Err(NodeError::Rlp(_))));
        assert_eq!(decode_node(&[0x82, 1, 2]), Err(NodeError::NotAList));
        assert_eq!(
            decode_node(&[0xc3, 0x01, 0x02, 0x03]),
            Err(NodeError::BadItemCount(3))
        );
        // Trailing byte after a valid leaf.
        let mut leaf = encode_leaf(&[1], b"v");
        leaf.push(0);
        assert_eq!(decode_node(&leaf), Err(NodeError::TrailingBytes(1)));
        // Leaf flag 0x4 is unknown.
        assert_eq!(
            decode_node(&[0xc2, 0x40, 0x01]),
            Err(NodeError::BadHexPrefix(0x40))
        );
        // Extension whose child is a 5-byte string.
        let mut s = rlp::RlpStream::new_list(2);
        s.append(&vec![0x00u8, 0x12]).append(&vec![1u8, 2, 3, 4, 5]);
        assert_eq!(decode_node(&s.out()), Err(NodeError::BadReference(5)));
        // Truncated input.
        assert!(decode_node(&[0xf8, 0x50, 0x01]).is_err());
    }

    #[test]
    fn decoder_never_panics_on_prefixes_of_valid_nodes() {
        let mut refs: Vec<NodeRef> = vec![NodeRef::Empty; 16];
        refs[1] = NodeRef::Hash(crate::keccak256(b"a"));
        let branch = encode_branch(&refs, None);
        for n in 0..branch.len() {
            assert!(decode_node(&branch[..n]).is_err());
        }
        for i in 0..branch.len() {
            let mut b = branch.clone();
            b[i] ^= 0xff;
            let _ = decode_node(&b);
        }
    }
}
