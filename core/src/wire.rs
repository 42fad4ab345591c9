//! The peer protocol's messages (PROTOCOL.md), encoded and strictly decoded in one place
//! so that the reference peer, the browser transports and the fuzzers share one codec.

use crate::hash::H256;
use crate::rlp_reader::{Item, RlpError};
use rlp::RlpStream;

/// Most hashes one request may carry.
pub const MAX_HASHES: usize = 384;
/// A protocol-following answer holds at most about this many bytes of blobs.
pub const MAX_ANSWER_BYTES: usize = 2 * 1024 * 1024;
/// geth's database key prefix for code (`'c'`), used by `debug_dbGet`.
pub const CODE_PREFIX: u8 = 0x63;

/// Why a message is not what the protocol says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Not RLP, or RLP with trailing bytes.
    #[error("invalid RLP: {0}")]
    Rlp(String),
    /// RLP of the wrong shape.
    #[error("unexpected message shape: {0}")]
    Shape(&'static str),
    /// An item that must be a 32-byte hash is not.
    #[error("hash item {index} has {len} bytes")]
    HashLength {
        /// Position in the list.
        index: usize,
        /// Its length.
        len: usize,
    },
    /// More items than allowed.
    #[error("{count} items, at most {max} allowed")]
    TooMany {
        /// Items found.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// An empty request.
    #[error("empty request")]
    Empty,
    /// A JSON-RPC body that is not what was asked for.
    #[error("JSON-RPC: {0}")]
    Json(String),
}

impl From<RlpError> for WireError {
    fn from(e: RlpError) -> Self {
        WireError::Rlp(e.to_string())
    }
}

/// Parses `bytes` as exactly one RLP list (no trailing bytes) and reads its items.
fn whole_list(bytes: &[u8]) -> Result<Vec<Item<'_>>, WireError> {
    let top = Item::parse(bytes)?;
    if !top.is_list {
        return Err(WireError::Shape("expected a list"));
    }
    Ok(top.items()?)
}

fn hashes_of(list: &[Item<'_>]) -> Result<Vec<H256>, WireError> {
    if list.is_empty() {
        return Err(WireError::Empty);
    }
    if list.len() > MAX_HASHES {
        return Err(WireError::TooMany {
            count: list.len(),
            max: MAX_HASHES,
        });
    }
    list.iter()
        .enumerate()
        .map(|(i, item)| {
            let data = item
                .bytes()
                .map_err(|_| WireError::Shape("hash must be a string"))?;
            H256::from_slice(data).ok_or(WireError::HashLength {
                index: i,
                len: data.len(),
            })
        })
        .collect()
}

fn blobs_of(list: &[Item<'_>], max_items: usize) -> Result<Vec<Vec<u8>>, WireError> {
    if list.len() > max_items {
        return Err(WireError::TooMany {
            count: list.len(),
            max: max_items,
        });
    }
    list.iter()
        .map(|item| {
            let data = item
                .bytes()
                .map_err(|_| WireError::Shape("blob must be a string"))?;
            Ok(data.to_vec())
        })
        .collect()
}

fn append_hashes(s: &mut RlpStream, hashes: &[H256]) {
    s.begin_list(hashes.len());
    for h in hashes {
        s.append(&h.0.as_slice());
    }
}

fn append_blobs(s: &mut RlpStream, blobs: &[Vec<u8>]) {
    s.begin_list(blobs.len());
    for b in blobs {
        s.append(&b.as_slice());
    }
}

/// `POST /v1/nodes` body: the RLP list of hashes.
pub fn encode_request(hashes: &[H256]) -> Vec<u8> {
    let mut s = RlpStream::new();
    append_hashes(&mut s, hashes);
    s.out().to_vec()
}

/// Reads a `POST /v1/nodes` body: 1 to 384 hashes.
pub fn decode_request(bytes: &[u8]) -> Result<Vec<H256>, WireError> {
    hashes_of(&whole_list(bytes)?)
}

/// An answer: the RLP list of blobs.
pub fn encode_blobs(blobs: &[Vec<u8>]) -> Vec<u8> {
    let mut s = RlpStream::new();
    append_blobs(&mut s, blobs);
    s.out().to_vec()
}

/// Reads an answer of at most `max_items` blobs (a peer may not send more than asked and
/// a few extra: the caller sets the bound).
pub fn decode_blobs(bytes: &[u8], max_items: usize) -> Result<Vec<Vec<u8>>, WireError> {
    blobs_of(&whole_list(bytes)?, max_items)
}

/// A WebSocket request: `RLP[requestId, [hash...]]`.
pub fn encode_ws_request(id: u64, hashes: &[H256]) -> Vec<u8> {
    let mut s = RlpStream::new_list(2);
    s.append(&id);
    append_hashes(&mut s, hashes);
    s.out().to_vec()
}

fn ws_envelope(bytes: &[u8]) -> Result<(u64, Vec<Item<'_>>), WireError> {
    let top = whole_list(bytes)?;
    let [id, list] = top.as_slice() else {
        return Err(WireError::Shape("expected [requestId, list]"));
    };
    let id = id.u64()?;
    if !list.is_list {
        return Err(WireError::Shape("expected a list after the request id"));
    }
    Ok((id, list.items()?))
}

/// Reads a WebSocket request.
pub fn decode_ws_request(bytes: &[u8]) -> Result<(u64, Vec<H256>), WireError> {
    let (id, list) = ws_envelope(bytes)?;
    Ok((id, hashes_of(&list)?))
}

/// A WebSocket answer: `RLP[requestId, [blob...]]`.
pub fn encode_ws_response(id: u64, blobs: &[Vec<u8>]) -> Vec<u8> {
    let mut s = RlpStream::new_list(2);
    s.append(&id);
    append_blobs(&mut s, blobs);
    s.out().to_vec()
}

/// Reads a WebSocket answer of at most `max_items` blobs.
pub fn decode_ws_response(
    bytes: &[u8],
    max_items: usize,
) -> Result<(u64, Vec<Vec<u8>>), WireError> {
    let (id, list) = ws_envelope(bytes)?;
    Ok((id, blobs_of(&list, max_items)?))
}

/// The `debug_dbGet` key of an item: the hash, or geth's `c` prefix + hash for code.
pub fn rpc_key(hash: &H256, code: bool) -> String {
    if code {
        format!("0x{:02x}{}", CODE_PREFIX, hex::encode(hash.0))
    } else {
        hash.to_hex()
    }
}

/// A batched `debug_dbGet` request with ids `0..keys.len()`.
/// Written directly (keys and hex need no escaping), as serde_json writes the same calls
/// (keys in order), without its value serializer in the wasm.
pub fn encode_rpc_batch(keys: &[(H256, bool)]) -> String {
    let mut out = String::with_capacity(2 + keys.len() * 150);
    out.push('[');
    for (i, (h, code)) in keys.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"id\":");
        out.push_str(&i.to_string());
        out.push_str(",\"jsonrpc\":\"2.0\",\"method\":\"debug_dbGet\",\"params\":[\"");
        out.push_str(&rpc_key(h, *code));
        out.push_str("\"]}");
    }
    out.push(']');
    out
}

/// Reads the answer to [`encode_rpc_batch`] of `asked` calls: the values of the calls that
/// succeeded (absent keys are JSON-RPC errors or null results and are skipped), in any
/// order.
pub fn decode_rpc_batch(body: &str, asked: usize) -> Result<Vec<Vec<u8>>, WireError> {
    let value: serde_json::Value =
        serde_json::from_str(body).map_err(|e| WireError::Json(e.to_string()))?;
    let answers = match value {
        serde_json::Value::Array(a) => a,
        // A single error object answers a whole batch the server refused.
        serde_json::Value::Object(o) => {
            return Err(WireError::Json(
                o.get("error")
                    .map_or("not a batch".into(), |e| e.to_string()),
            ))
        }
        _ => return Err(WireError::Json("not a batch".into())),
    };
    if answers.len() > asked {
        return Err(WireError::TooMany {
            count: answers.len(),
            max: asked,
        });
    }
    let mut out = Vec::with_capacity(answers.len());
    for a in answers {
        // No result (an error) or a null one (how some servers say "absent"): not had.
        let Some(result) = a.get("result").filter(|r| !r.is_null()) else {
            continue;
        };
        let text = result
            .as_str()
            .ok_or_else(|| WireError::Json("result is not a string".into()))?;
        let digits = text
            .strip_prefix("0x")
            .ok_or_else(|| WireError::Json("result is not 0x-hex".into()))?;
        out.push(hex::decode(digits).map_err(|e| WireError::Json(e.to_string()))?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keccak256;
    // Under wasm the same tests run on wasm-bindgen-test (`wasm-pack test --node core`).
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn request_and_answer_roundtrip() {
        let hashes: Vec<H256> = (0..5u8).map(|i| keccak256(&[i])).collect();
        assert_eq!(decode_request(&encode_request(&hashes)).unwrap(), hashes);
        let blobs = vec![vec![1, 2, 3], vec![], vec![0xc0; 100]];
        assert_eq!(decode_blobs(&encode_blobs(&blobs), 10).unwrap(), blobs);
        assert_eq!(
            decode_ws_request(&encode_ws_request(7, &hashes)).unwrap(),
            (7, hashes)
        );
        assert_eq!(
            decode_ws_response(&encode_ws_response(9, &blobs), 3).unwrap(),
            (9, blobs)
        );
    }

    #[test]
    fn bad_messages_are_typed_errors() {
        assert_eq!(decode_request(&encode_request(&[])), Err(WireError::Empty));
        let many: Vec<H256> = (0..385u16).map(|i| keccak256(&i.to_be_bytes())).collect();
        assert_eq!(
            decode_request(&encode_request(&many)),
            Err(WireError::TooMany {
                count: 385,
                max: 384
            })
        );
        let mut s = RlpStream::new_list(1);
        s.append(&vec![1u8; 31]);
        assert_eq!(
            decode_request(&s.out()),
            Err(WireError::HashLength { index: 0, len: 31 })
        );
        let mut body = encode_blobs(&[vec![1]]);
        body.push(0);
        assert!(matches!(decode_blobs(&body, 10), Err(WireError::Rlp(_))));
        assert!(matches!(
            decode_blobs(&[0x82, 1, 2], 10),
            Err(WireError::Shape(_))
        ));
        assert!(matches!(
            decode_blobs(&encode_blobs(&[vec![1], vec![2]]), 1),
            Err(WireError::TooMany { .. })
        ));
        assert!(decode_ws_response(&encode_blobs(&[vec![1]]), 10).is_err());
        assert!(decode_blobs(b"<html>502</html>", 10).is_err());
    }

    #[test]
    fn rpc_batch_is_what_serde_json_writes() {
        let keys: Vec<(H256, bool)> = (0..12u8).map(|i| (keccak256(&[i]), i % 3 == 0)).collect();
        for n in [0, 1, 2, 12] {
            let calls: Vec<serde_json::Value> = keys[..n]
                .iter()
                .enumerate()
                .map(|(i, (h, code))| {
                    serde_json::json!({"jsonrpc": "2.0", "id": i, "method": "debug_dbGet", "params": [rpc_key(h, *code)]})
                })
                .collect();
            assert_eq!(
                encode_rpc_batch(&keys[..n]),
                serde_json::Value::Array(calls).to_string()
            );
        }
    }

    #[test]
    fn rpc_batch_roundtrip_skips_errors() {
        let h = keccak256(b"x");
        let body = encode_rpc_batch(&[(h, false), (h, true)]);
        assert!(body.contains(&format!("0x63{}", hex::encode(h.0))));
        let answer = r#"[{"jsonrpc":"2.0","id":1,"error":{"code":-32000,"message":"not found"}},{"jsonrpc":"2.0","id":0,"result":"0xc0"}]"#;
        assert_eq!(decode_rpc_batch(answer, 2).unwrap(), vec![vec![0xc0]]);
        let null =
            r#"[{"jsonrpc":"2.0","id":1,"result":null},{"jsonrpc":"2.0","id":0,"result":"0xc0"}]"#;
        assert_eq!(decode_rpc_batch(null, 2).unwrap(), vec![vec![0xc0]]);
        assert!(decode_rpc_batch(r#"[{"result":7}]"#, 2).is_err());
        assert!(decode_rpc_batch("<html>", 2).is_err());
        assert!(decode_rpc_batch(r#"[{"result":"zz"}]"#, 2).is_err());
        assert!(decode_rpc_batch(
            r#"[{"result":"0x00"},{"result":"0x00"},{"result":"0x00"}]"#,
            2
        )
        .is_err());
    }
}
