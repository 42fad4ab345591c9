//! Nibble paths and the hex-prefix (compact) encoding of leaf and extension keys.

use super::NodeError;

/// Splits bytes into 4-bit nibbles, high nibble first.
pub fn bytes_to_nibbles(bytes: &[u8]) -> Vec<u8> {
    bytes.iter().flat_map(|b| [b >> 4, b & 0x0f]).collect()
}

/// Joins an even number of nibbles back into bytes (`None` for an odd count).
pub fn nibbles_to_bytes(nibbles: &[u8]) -> Option<Vec<u8>> {
    nibbles
        .len()
        .is_multiple_of(2)
        .then(|| nibbles.chunks(2).map(|p| (p[0] << 4) | p[1]).collect())
}

/// Encodes a nibble path with its leaf flag (Yellow Paper appendix C).
pub fn hex_prefix_encode(nibbles: &[u8], leaf: bool) -> Vec<u8> {
    let flag = if leaf { 0x20 } else { 0x00 };
    let mut out = Vec::with_capacity(nibbles.len() / 2 + 1);
    let rest = if nibbles.len() % 2 == 1 {
        out.push(flag | 0x10 | nibbles[0]);
        &nibbles[1..]
    } else {
        out.push(flag);
        nibbles
    };
    out.extend(rest.chunks(2).map(|p| (p[0] << 4) | p[1]));
    out
}

/// Decodes a hex-prefix path into `(nibbles, is_leaf)`, rejecting unknown flags and a
/// non-zero padding nibble.
pub fn hex_prefix_decode(encoded: &[u8]) -> Result<(Vec<u8>, bool), NodeError> {
    let (&first, rest) = encoded.split_first().ok_or(NodeError::EmptyPath)?;
    let flag = first >> 4;
    if flag > 3 {
        return Err(NodeError::BadHexPrefix(first));
    }
    let leaf = flag & 2 != 0;
    let odd = flag & 1 != 0;
    let mut nibbles = Vec::with_capacity(rest.len() * 2 + 1);
    if odd {
        nibbles.push(first & 0x0f);
    } else if first & 0x0f != 0 {
        return Err(NodeError::BadHexPrefix(first));
    }
    nibbles.extend(bytes_to_nibbles(rest));
    Ok((nibbles, leaf))
}

#[cfg(test)]
mod tests {
    use super::*;
    // Under wasm the same tests run on wasm-bindgen-test (`wasm-pack test --node core`).
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn hex_prefix_roundtrip_all_flags() {
        for path in [vec![], vec![1], vec![1, 2], vec![0, 15, 3], vec![15; 64]] {
            for leaf in [false, true] {
                let enc = hex_prefix_encode(&path, leaf);
                assert_eq!(hex_prefix_decode(&enc).unwrap(), (path.clone(), leaf));
            }
        }
    }

    #[test]
    fn hex_prefix_rejects_bad_flags() {
        assert_eq!(
            hex_prefix_decode(&[0x40]),
            Err(NodeError::BadHexPrefix(0x40))
        );
        assert_eq!(
            hex_prefix_decode(&[0x05]),
            Err(NodeError::BadHexPrefix(0x05))
        );
        assert_eq!(hex_prefix_decode(&[]), Err(NodeError::EmptyPath));
    }
}
