//! Binary HTTP: `POST {base}/v1/nodes` with `RLP([hash, ...])`, answered by
//! `RLP([blob, ...])`. One `fetch` per request; dropping the future or the transport's own
//! deadline aborts it through an `AbortController`.

use super::{hashes, malformed, max_items, post, Answer, PeerSpec, TransportOptions};
use futures::FutureExt;
use triesync_core::peer::Peer;
use triesync_core::store::ItemKey;
use triesync_core::wire;

/// A peer spoken to with one `fetch` per request.
#[derive(Debug)]
pub struct HttpPeer {
    id: String,
    endpoint: String,
    options: TransportOptions,
}

impl HttpPeer {
    /// A peer for `spec` (whose endpoint is the `/v1/nodes` URL).
    pub fn new(spec: &PeerSpec, options: TransportOptions) -> Self {
        HttpPeer {
            id: spec.id.clone(),
            endpoint: spec.endpoint.clone(),
            options,
        }
    }
}

impl Peer for HttpPeer {
    fn id(&self) -> &str {
        &self.id
    }

    fn fetch(&self, keys: Vec<ItemKey>) -> Answer {
        let body = wire::encode_request(&hashes(&keys));
        let limit = max_items(keys.len());
        let endpoint = self.endpoint.clone();
        let options = self.options;
        // As PROTOCOL.md asks; the CORS preflight this costs is cached (max-age 86400).
        async move {
            let answer = post(&endpoint, &body, Some("application/octet-stream"), options).await?;
            wire::decode_blobs(&answer, limit).map_err(malformed)
        }
        .boxed_local()
    }
}
