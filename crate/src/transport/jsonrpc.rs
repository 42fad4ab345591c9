//! JSON-RPC: one batched `POST` of `debug_dbGet` calls, as geth serves them (a node by its
//! 32-byte hash, code by `0x63` followed by its hash). A call answered with an error is an
//! item the peer does not have; every `result` is handed to the driver, which hashes it.

use super::{malformed, post, Answer, PeerSpec, TransportOptions};
use futures::FutureExt;
use triesync_core::peer::{Peer, PeerError};
use triesync_core::store::{ItemKey, Kind};
use triesync_core::wire;
use triesync_core::H256;

/// A JSON-RPC endpoint with `debug_dbGet`.
#[derive(Debug)]
pub struct JsonRpcPeer {
    id: String,
    endpoint: String,
    options: TransportOptions,
}

impl JsonRpcPeer {
    /// A peer for `spec` (whose endpoint is the RPC URL).
    pub fn new(spec: &PeerSpec, options: TransportOptions) -> Self {
        JsonRpcPeer {
            id: spec.id.clone(),
            endpoint: spec.endpoint.clone(),
            options,
        }
    }
}

/// The blobs of a batch answer to `asked` calls (an empty body answers nothing).
pub fn decode_batch(body: &[u8], asked: usize) -> Result<Vec<Vec<u8>>, PeerError> {
    let text =
        std::str::from_utf8(body).map_err(|e| PeerError::Malformed(format!("UTF-8: {e}")))?;
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    wire::decode_rpc_batch(text, asked).map_err(malformed)
}

impl Peer for JsonRpcPeer {
    fn id(&self) -> &str {
        &self.id
    }

    fn fetch(&self, keys: Vec<ItemKey>) -> Answer {
        let calls: Vec<(H256, bool)> = keys
            .iter()
            .map(|k| (k.hash, k.kind == Kind::Code))
            .collect();
        let body = wire::encode_rpc_batch(&calls).into_bytes();
        let asked = keys.len();
        let endpoint = self.endpoint.clone();
        // Hex doubles the bytes and each call's JSON envelope adds ~60: the cap applies to
        // the decoded size.
        let mut options = self.options;
        options.max_response_bytes = options
            .max_response_bytes
            .saturating_mul(2)
            .saturating_add(128 * keys.len() + 1024);
        async move {
            let answer = post(&endpoint, &body, Some("application/json"), options).await?;
            decode_batch(&answer, asked)
        }
        .boxed_local()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_skip_errors_and_reject_garbage() {
        let body = br#"[{"jsonrpc":"2.0","id":0,"result":"0xc0"},{"jsonrpc":"2.0","id":1,"error":{"code":-32000,"message":"not found"}}]"#;
        assert_eq!(decode_batch(body, 2).unwrap(), vec![vec![0xc0]]);
        assert!(decode_batch(
            br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"x"}}"#,
            1
        )
        .is_err());
        assert!(decode_batch(b"not json", 1).is_err());
        assert_eq!(decode_batch(b" ", 1).unwrap(), Vec::<Vec<u8>>::new());
    }
}
