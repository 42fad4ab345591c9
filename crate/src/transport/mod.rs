//! Peers over the network, all implementing core's [`Peer`]: binary HTTP ([`http`]),
//! WebSocket ([`ws`]) and JSON-RPC `debug_dbGet` ([`jsonrpc`]). Nothing is trusted: the
//! driver hashes every blob; the transports only frame, bound and cancel.

pub mod http;
pub mod jsonrpc;
pub mod ws;

use crate::error::Error;
use futures::FutureExt;
use js_sys::{Reflect, Uint8Array};
use std::rc::Rc;
use std::time::Duration;
use triesync_core::peer::{Peer, PeerError};
use triesync_core::store::ItemKey;
use triesync_core::wire::WireError;
use triesync_core::H256;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

/// Default cap on one answer's size: far above what a protocol-following peer sends for
/// 384 items (~2 MiB), far below what would hurt a tab.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// How to talk to a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `POST {base}/v1/nodes`, RLP in and out.
    Http,
    /// `{base}/v1/ws`, RLP `[id, [...]]` messages, many requests in flight.
    Ws,
    /// `POST {url}` of batched JSON-RPC `debug_dbGet` calls.
    JsonRpc,
}

impl Protocol {
    /// Parses `'http'`, `'ws'` or `'jsonrpc'`.
    pub fn from_name(name: &str) -> Option<Protocol> {
        match name.to_ascii_lowercase().as_str() {
            "http" | "https" => Some(Protocol::Http),
            "ws" | "wss" | "websocket" => Some(Protocol::Ws),
            "jsonrpc" | "json-rpc" | "rpc" => Some(Protocol::JsonRpc),
            _ => None,
        }
    }

    /// The name the JS API uses.
    pub fn name(&self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Ws => "ws",
            Protocol::JsonRpc => "jsonrpc",
        }
    }
}

/// A peer to connect to: its id, the URL as given, and where each request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSpec {
    /// The peer's id in reports: the URL as given, prefixed with `protocol+` when the
    /// protocol is not the one the scheme implies (`jsonrpc+http://…`), so one server
    /// reached over two protocols is two peers.
    pub id: String,
    /// The URL as the caller gave it.
    pub url: String,
    /// The protocol spoken.
    pub protocol: Protocol,
    /// The endpoint requests go to (`…/v1/nodes`, `ws…/v1/ws`, or the RPC URL).
    pub endpoint: String,
}

fn split_scheme(url: &str) -> Option<(String, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    Some((scheme.to_ascii_lowercase(), rest))
}

impl PeerSpec {
    /// Resolves a URL, with the protocol given or taken from the scheme (`http(s)://` →
    /// binary HTTP, `ws(s)://` → WebSocket).
    pub fn from_url(url: &str, protocol: Option<Protocol>) -> Result<PeerSpec, Error> {
        let url = url.trim();
        let (scheme, rest) = split_scheme(url)
            .ok_or_else(|| Error::invalid(format!("peer URL {url:?} has no scheme")))?;
        let secure = match scheme.as_str() {
            "http" | "ws" => false,
            "https" | "wss" => true,
            _ => {
                return Err(Error::invalid(format!(
                    "peer URL {url:?}: scheme must be http(s) or ws(s)"
                )))
            }
        };
        if rest.is_empty() || rest.starts_with('/') {
            return Err(Error::invalid(format!("peer URL {url:?} has no host")));
        }
        let is_ws = scheme.starts_with("ws");
        let implied = if is_ws { Protocol::Ws } else { Protocol::Http };
        let protocol = protocol.unwrap_or(implied);
        let base = rest.trim_end_matches('/');
        let with_suffix = |suffix: &str| {
            if base.ends_with(suffix) {
                base.to_string()
            } else {
                format!("{base}{suffix}")
            }
        };
        let endpoint = match protocol {
            Protocol::Http => {
                let scheme = if secure { "https" } else { "http" };
                format!("{scheme}://{}", with_suffix("/v1/nodes"))
            }
            Protocol::Ws => {
                let scheme = if secure { "wss" } else { "ws" };
                format!("{scheme}://{}", with_suffix("/v1/ws"))
            }
            Protocol::JsonRpc => {
                if is_ws {
                    return Err(Error::invalid(format!(
                        "peer URL {url:?}: JSON-RPC is spoken over http(s) only"
                    )));
                }
                url.to_string()
            }
        };
        let id = if protocol == implied {
            url.to_string()
        } else {
            format!("{}+{url}", protocol.name())
        };
        Ok(PeerSpec {
            id,
            url: url.to_string(),
            protocol,
            endpoint,
        })
    }
}

/// Limits a transport applies on its own, besides the driver's timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransportOptions {
    /// A request not answered in this time fails with [`PeerError::Timeout`] (and is
    /// aborted).
    pub timeout: Duration,
    /// An answer larger than this fails with [`PeerError::TooLarge`].
    pub max_response_bytes: usize,
}

impl Default for TransportOptions {
    fn default() -> Self {
        TransportOptions {
            timeout: Duration::from_secs(10),
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }
}

/// A peer for `spec`.
pub fn connect(spec: &PeerSpec, options: TransportOptions) -> Rc<dyn Peer> {
    match spec.protocol {
        Protocol::Http => Rc::new(http::HttpPeer::new(spec, options)),
        Protocol::Ws => Rc::new(ws::WsPeer::new(spec, options)),
        Protocol::JsonRpc => Rc::new(jsonrpc::JsonRpcPeer::new(spec, options)),
    }
}

/// The hashes of `keys`: nodes and code share one namespace on the binary wire (as eth's
/// `GetNodeData`); the hash alone names an item.
pub fn hashes(keys: &[ItemKey]) -> Vec<H256> {
    keys.iter().map(|k| k.hash).collect()
}

/// Most blobs accepted in an answer to `asked` keys: a peer may add a few it was not asked
/// for (the driver counts those); a flood is malformed.
pub fn max_items(asked: usize) -> usize {
    asked + 64
}

/// A framing error of a peer's answer.
pub fn malformed(e: WireError) -> PeerError {
    PeerError::Malformed(e.to_string())
}

#[wasm_bindgen]
extern "C" {
    /// The global `fetch` (windows and workers alike).
    #[wasm_bindgen(js_name = fetch)]
    fn global_fetch(input: &str, init: &web_sys::RequestInit) -> js_sys::Promise;
}

/// Aborts a fetch when the future that owns it is dropped (cancelled or timed out).
struct AbortOnDrop(web_sys::AbortController);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        // A no-op once the response body was read.
        self.0.abort();
    }
}

fn connection(context: &str, e: &JsValue) -> PeerError {
    let msg = e
        .dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| e.as_string())
        .unwrap_or_else(|| format!("{e:?}"));
    PeerError::Connection(format!("{context}: {msg}"))
}

/// POSTs `body` to `url`, racing `timeout`, and returns the response body, at most
/// `max_bytes` of it. Dropping the future aborts the request.
pub(crate) async fn post(
    url: &str,
    body: &[u8],
    content_type: Option<&str>,
    options: TransportOptions,
) -> Result<Vec<u8>, PeerError> {
    let controller =
        web_sys::AbortController::new().map_err(|e| connection("AbortController", &e))?;
    let _abort = AbortOnDrop(controller.clone());
    let init = web_sys::RequestInit::new();
    init.set_method("POST");
    init.set_body(&Uint8Array::from(body).into());
    init.set_signal(Some(&controller.signal()));
    if let Some(ct) = content_type {
        let headers = web_sys::Headers::new().map_err(|e| connection("Headers", &e))?;
        headers
            .set("Content-Type", ct)
            .map_err(|e| connection("Headers", &e))?;
        init.set_headers(&headers.into());
    }
    let work = async {
        let resp = JsFuture::from(global_fetch(url, &init))
            .await
            .map_err(|e| connection("fetch", &e))?;
        let resp: web_sys::Response = resp
            .dyn_into()
            .map_err(|e| connection("fetch result", &e))?;
        if !resp.ok() {
            return Err(PeerError::Status(resp.status()));
        }
        read_body(&resp, options.max_response_bytes).await
    };
    futures::select_biased! {
        r = work.fuse() => r,
        () = crate::clock::sleep(options.timeout).fuse() => Err(PeerError::Timeout),
    }
}

/// Reads a response body as a stream, chunk by chunk, with a running count: as soon as it
/// passes `max_bytes` the stream is cancelled (and the fetch aborted by the caller), so a
/// peer that sends 100 MB, or a body that never ends, costs at most `max_bytes` read.
///
/// The chunks stay JavaScript `Uint8Array`s (garbage-collected) until the body is complete;
/// only an accepted body is copied into wasm memory, in one allocation of its exact size.
/// wasm memory never shrinks, so refused floods must never reach it.
async fn read_body(resp: &web_sys::Response, max_bytes: usize) -> Result<Vec<u8>, PeerError> {
    if let Ok(Some(len)) = resp.headers().get("Content-Length") {
        if let Ok(len) = len.trim().parse::<usize>() {
            if len > max_bytes {
                return Err(PeerError::TooLarge(len));
            }
        }
    }
    let Some(stream) = resp.body() else {
        return Ok(Vec::new());
    };
    let reader: web_sys::ReadableStreamDefaultReader = stream.get_reader().unchecked_into();
    let chunks = js_sys::Array::new();
    let mut total = 0usize;
    loop {
        let chunk = JsFuture::from(reader.read())
            .await
            .map_err(|e| connection("read body", &e))?;
        let done = Reflect::get(&chunk, &JsValue::from_str("done"))
            .map_err(|e| connection("read body", &e))?;
        if done.as_bool().unwrap_or(true) {
            break;
        }
        let value = Reflect::get(&chunk, &JsValue::from_str("value"))
            .map_err(|e| connection("read body", &e))?;
        let bytes: Uint8Array = value.unchecked_into();
        total += bytes.length() as usize;
        if total > max_bytes {
            let _ = reader.cancel();
            return Err(PeerError::TooLarge(total));
        }
        chunks.push(&bytes);
    }
    let mut out = vec![0u8; total];
    let mut at = 0;
    for chunk in chunks.iter() {
        let bytes: Uint8Array = chunk.unchecked_into();
        let len = bytes.length() as usize;
        bytes.copy_to(&mut out[at..at + len]);
        at += len;
    }
    Ok(out)
}

/// A boxed future of a peer answer.
pub(crate) type Answer = futures::future::LocalBoxFuture<'static, Result<Vec<Vec<u8>>, PeerError>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_resolve_to_endpoints() {
        let p = PeerSpec::from_url("http://127.0.0.1:8080/", None).unwrap();
        assert_eq!(
            (p.protocol, p.endpoint.as_str()),
            (Protocol::Http, "http://127.0.0.1:8080/v1/nodes")
        );
        let p = PeerSpec::from_url("wss://node.example/base", None).unwrap();
        assert_eq!(
            (p.protocol, p.endpoint.as_str()),
            (Protocol::Ws, "wss://node.example/base/v1/ws")
        );
        let p = PeerSpec::from_url("https://h", Some(Protocol::Ws)).unwrap();
        assert_eq!(p.endpoint, "wss://h/v1/ws");
        let p = PeerSpec::from_url("http://h:1/", Some(Protocol::JsonRpc)).unwrap();
        assert_eq!(p.endpoint, "http://h:1/");
        assert_eq!(p.id, "jsonrpc+http://h:1/");
        assert_eq!(
            PeerSpec::from_url("ws://h", Some(Protocol::Ws)).unwrap().id,
            "ws://h"
        );
        assert!(PeerSpec::from_url("ftp://h", None).is_err());
        assert!(PeerSpec::from_url("ws://h", Some(Protocol::JsonRpc)).is_err());
        assert!(PeerSpec::from_url("http://", None).is_err());
    }
}
