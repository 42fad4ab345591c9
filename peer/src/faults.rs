//! Faults on purpose: seeded, so the same seed and the same request sequence give the same
//! faults.
//!
//! Each valid request takes one 64-bit draw from the server's seeded generator (in the order
//! requests arrive) and seeds its own generator with it; every decision about that request
//! is then taken from its own generator in a fixed order, whatever the timing of others.

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Frame, SizeHint};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// The seeded generator of fault plans.
pub use triesync_core::rng::SplitMix64 as Rng;

/// The fault options of the command line; all rates are probabilities in `0..=1`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultConfig {
    /// Seed of the fault sequence.
    pub seed: u64,
    /// Per blob: flip one byte.
    pub corrupt: f64,
    /// Per blob: leave it out.
    pub omit: f64,
    /// Delay before every answer, in milliseconds.
    pub delay_ms: u64,
    /// Per request: never answer.
    pub stall: f64,
    /// Per request: close the connection (or WebSocket) without answering.
    pub close: f64,
    /// Per HTTP request: answer 500.
    pub error500: f64,
    /// Per HTTP request: answer an HTML error page with status 200 or 502.
    pub html_error: f64,
    /// Per request: answer random bytes that are not RLP (not JSON for JSON-RPC).
    pub garbage: f64,
    /// Per request: add blobs nobody asked for (random real nodes and random bytes).
    pub unrequested: f64,
    /// Per HTTP request: send the headers (with the full Content-Length) and part of the
    /// answer's body, then close the connection.
    pub truncate: f64,
    /// Append this many real nodes nobody asked for to every answer.
    pub extra: usize,
    /// Per request: whether the flood options below apply (`None`: always, as 1.0). Only
    /// drawn when a flood option is set, so other configurations keep their sequences.
    pub flood_rate: Option<f64>,
    /// A flooded answer is a body (HTTP, JSON-RPC: streamed, chunked, no Content-Length) or
    /// one message (WebSocket) of this many bytes: the answer's blobs over and over.
    pub flood_bytes: u64,
    /// A flooded answer never ends: HTTP and JSON-RPC stream the answer's blobs forever;
    /// a WebSocket sends unsolicited answers until the socket closes.
    pub endless_body: bool,
    /// A flooded WebSocket request is preceded by this many unsolicited answers (ids
    /// nobody sent, carrying real nodes).
    pub ws_flood: usize,
    /// A flooded answer carries its first blob this many times.
    pub repeat_blob: usize,
}

impl FaultConfig {
    /// True when no fault is configured.
    pub fn is_none(&self) -> bool {
        let c = FaultConfig {
            seed: self.seed,
            ..FaultConfig::default()
        };
        *self == c
    }

    /// A short description for logs.
    pub fn describe(&self) -> String {
        if self.is_none() {
            return "none".into();
        }
        let mut parts = vec![format!("seed={}", self.seed)];
        for (name, v) in [
            ("corrupt", self.corrupt),
            ("omit", self.omit),
            ("stall", self.stall),
            ("close", self.close),
            ("error500", self.error500),
            ("html-error", self.html_error),
            ("garbage", self.garbage),
            ("unrequested", self.unrequested),
            ("truncate", self.truncate),
        ] {
            if v > 0.0 {
                parts.push(format!("{name}={v}"));
            }
        }
        if self.delay_ms > 0 {
            parts.push(format!("delay-ms={}", self.delay_ms));
        }
        if self.extra > 0 {
            parts.push(format!("extra={}", self.extra));
        }
        if self.floods() {
            parts.push(format!("flood-rate={}", self.flood_chance()));
        }
        if self.flood_bytes > 0 {
            parts.push(format!("flood-bytes={}", self.flood_bytes));
        }
        if self.endless_body {
            parts.push("endless-body".into());
        }
        if self.ws_flood > 0 {
            parts.push(format!("ws-flood={}", self.ws_flood));
        }
        if self.repeat_blob > 0 {
            parts.push(format!("repeat-blob={}", self.repeat_blob));
        }
        parts.join(" ")
    }

    /// True when a flood option is set.
    pub fn floods(&self) -> bool {
        self.flood_bytes > 0 || self.endless_body || self.ws_flood > 0 || self.repeat_blob > 1
    }

    /// The probability that a request is flooded.
    pub fn flood_chance(&self) -> f64 {
        self.flood_rate.unwrap_or(1.0)
    }

    /// True when a flooded answer's body is streamed instead of sent at once.
    pub fn streams(&self) -> bool {
        self.flood_bytes > 0 || self.endless_body
    }
}

/// What happens to a whole request, decided when it arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestFault {
    /// Answer normally (per-blob faults may still apply).
    None,
    /// Never answer.
    Stall,
    /// Close the connection without answering.
    Close,
    /// HTTP 500.
    Error500,
    /// An HTML error page with this status (200 or 502).
    Html(u16),
    /// Random non-RLP (non-JSON) bytes.
    Garbage,
}

impl RequestFault {
    /// The name used in logs.
    pub fn name(&self) -> &'static str {
        match self {
            RequestFault::None => "none",
            RequestFault::Stall => "stall",
            RequestFault::Close => "close",
            RequestFault::Error500 => "error500",
            RequestFault::Html(_) => "html-error",
            RequestFault::Garbage => "garbage",
        }
    }
}

/// Which protocol a request came by (some faults only make sense for HTTP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `POST /v1/nodes` or JSON-RPC over HTTP.
    Http,
    /// A WebSocket message.
    Ws,
}

/// The fault decisions for one request.
#[derive(Debug, Clone)]
pub struct Plan {
    /// What happens to the request as a whole.
    pub fault: RequestFault,
    /// Whether to add unrequested blobs.
    pub unrequested: bool,
    /// Whether the flood options apply to this request.
    pub flood: bool,
    /// Whether the answer's body is cut off partway (HTTP only).
    pub truncate: bool,
    /// The request's own generator, for per-blob decisions.
    pub rng: Rng,
}

impl Plan {
    /// Draws the whole-request decisions, always in the same order and number.
    pub fn draw(cfg: &FaultConfig, seed: u64, transport: Transport) -> Plan {
        let mut rng = Rng::new(seed);
        let stall = rng.chance(cfg.stall);
        let close = rng.chance(cfg.close);
        let e500 = rng.chance(cfg.error500);
        let html = rng.chance(cfg.html_error);
        let html_status = if rng.chance(0.5) { 200 } else { 502 };
        let garbage = rng.chance(cfg.garbage);
        let unrequested = rng.chance(cfg.unrequested);
        // Drawn last and only when configured, so every other configuration keeps the
        // sequence it always had.
        let flood = cfg.floods() && rng.chance(cfg.flood_chance());
        let http = transport == Transport::Http;
        // Likewise drawn only when configured.
        let truncate = cfg.truncate > 0.0 && rng.chance(cfg.truncate) && http;
        let fault = if stall {
            RequestFault::Stall
        } else if close {
            RequestFault::Close
        } else if e500 && http {
            RequestFault::Error500
        } else if html && http {
            RequestFault::Html(html_status)
        } else if garbage {
            RequestFault::Garbage
        } else {
            RequestFault::None
        };
        Plan {
            fault,
            unrequested,
            flood,
            truncate,
            rng,
        }
    }
}

/// Random bytes that are not one RLP list of byte strings, and not UTF-8 either (so not
/// JSON): the first byte is always 0xff.
pub fn garbage(rng: &mut Rng) -> Vec<u8> {
    loop {
        let n = 1 + rng.below(512);
        let mut b = rng.bytes(n);
        b[0] = 0xff;
        if !crate::rlpx::is_blob_list(&b) {
            return b;
        }
    }
}

/// The HTML error page of `--html-error`, as a misconfigured proxy would send it.
pub fn html_page(status: u16) -> String {
    let title = if status == 502 {
        "502 Bad Gateway"
    } else {
        "Service Temporarily Unavailable"
    };
    format!(
        "<!DOCTYPE html>\n<html>\n<head><title>{title}</title></head>\n<body>\n\
         <center><h1>{title}</h1></center>\n<hr><center>nginx</center>\n</body>\n</html>\n"
    )
}

/// Flips one byte of `blob` (XOR with a non-zero value), so it no longer hashes to its key.
pub fn corrupt(blob: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut b = blob.to_vec();
    if b.is_empty() {
        b.push(0x80);
        return b;
    }
    let i = rng.below(b.len());
    b[i] ^= 1 + rng.below(255) as u8;
    b
}

/// `--repeat-blob N`: the first blob `n` times in all (the others once, after it).
pub fn repeat_first<T: Clone>(blobs: &mut Vec<T>, n: usize) {
    if n > 1 && !blobs.is_empty() {
        let first = blobs[0].clone();
        blobs.splice(1..1, std::iter::repeat_n(first, n - 1));
    }
}

/// Bytes of an RLP header for a payload of `len` bytes.
fn header_len(len: u64) -> u64 {
    if len < 56 {
        1
    } else {
        1 + (8 - u64::from(len.leading_zeros() / 8))
    }
}

/// The RLP list header of a flood body of `total` bytes in all (`None`: endless, the
/// header claims the largest length there is).
pub fn flood_list_header(total: Option<u64>) -> Vec<u8> {
    let mut out = Vec::new();
    match total {
        None => {
            out.push(0xff);
            out.extend_from_slice(&[0xff; 8]);
        }
        Some(n) => {
            // The payload length p whose header makes the whole exactly n bytes, when one
            // exists (else the nearest below).
            let p = (1..=9u64)
                .filter(|h| *h <= n)
                .map(|h| n - h)
                .find(|p| header_len(*p) + p == n)
                .unwrap_or(n.saturating_sub(header_len(n)));
            crate::rlpx::write_header(&mut out, p as usize, 0xc0);
        }
    }
    out
}

/// Chunks of a streamed flood body.
pub const FLOOD_CHUNK: usize = 64 * 1024;

/// A streamed flood: `head`, then `pattern` over and over, `remaining` bytes in all
/// (`None`: forever). Built once per answer; each chunk is a zero-copy slice.
#[derive(Debug)]
pub struct Flood {
    head: Option<Bytes>,
    pattern: Bytes,
    /// The period of `pattern`.
    unit: usize,
    pos: usize,
    remaining: Option<u64>,
}

impl Flood {
    /// A flood of `head` then `unit` repeated, `total` bytes in all (`None`: endless).
    /// An empty `unit` is replaced by zero bytes.
    pub fn new(head: Vec<u8>, unit: &[u8], total: Option<u64>) -> Flood {
        let unit: &[u8] = if unit.is_empty() { &[0u8; 64] } else { unit };
        // Two chunks at least, whole units only: any position can wrap to one within the
        // first unit, so that every chunk is a full one.
        let len = (2 * FLOOD_CHUNK).max(unit.len() + FLOOD_CHUNK);
        let mut pattern = Vec::with_capacity(len + unit.len());
        while pattern.len() < len {
            pattern.extend_from_slice(unit);
        }
        let remaining = total.map(|t| t.saturating_sub(head.len() as u64));
        let head = if head.is_empty() {
            None
        } else {
            Some(Bytes::from(head))
        };
        Flood {
            head,
            pattern: Bytes::from(pattern),
            unit: unit.len(),
            pos: 0,
            remaining,
        }
    }

    /// The next chunk, `None` at the end.
    pub fn next_chunk(&mut self) -> Option<Bytes> {
        if let Some(h) = self.head.take() {
            return Some(h);
        }
        let mut n = FLOOD_CHUNK;
        if let Some(r) = self.remaining {
            if r == 0 {
                return None;
            }
            n = n.min(r as usize);
            self.remaining = Some(r - n as u64);
        }
        let chunk = self.pattern.slice(self.pos..self.pos + n);
        self.pos += n;
        if self.pos + FLOOD_CHUNK > self.pattern.len() {
            self.pos %= self.unit;
        }
        Some(chunk)
    }

    /// The whole flood in one buffer (a WebSocket message); only for finite floods.
    pub fn collect(mut self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.remaining.unwrap_or(0) as usize + 16);
        while let Some(c) = self.next_chunk() {
            out.extend_from_slice(&c);
        }
        out
    }
}

/// The body of every HTTP answer: all at once, or a streamed flood.
#[derive(Debug)]
pub enum Body {
    /// An ordinary body.
    Full(Full<Bytes>),
    /// A flood (chunked, no Content-Length).
    Flood(Flood),
    /// `--truncate`: this part of an answer, under a Content-Length of `total`, then a
    /// short pause (so that hyper writes the part out) and an error, on which hyper closes
    /// the connection.
    Truncated {
        /// The part sent (taken on the first poll).
        part: Option<Bytes>,
        /// The full answer's length.
        total: u64,
        /// The pause before the error, from when the part was handed over.
        pause: Option<Pin<Box<tokio::time::Sleep>>>,
    },
}

impl Body {
    /// The first half of `answer` (at least one byte short of it), then a closed
    /// connection.
    pub fn truncated(answer: Bytes) -> Body {
        let total = answer.len() as u64;
        Body::Truncated {
            part: Some(answer.slice(..answer.len() / 2)),
            total,
            pause: None,
        }
    }
}

impl From<Bytes> for Body {
    fn from(b: Bytes) -> Self {
        Body::Full(Full::new(b))
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        match self.get_mut() {
            Body::Full(f) => Pin::new(f)
                .poll_frame(cx)
                .map(|f| f.map(|f| f.map_err(|e: Infallible| match e {}))),
            Body::Flood(f) => Poll::Ready(f.next_chunk().map(|c| Ok(Frame::data(c)))),
            Body::Truncated { part, pause, .. } => match part.take() {
                Some(p) if !p.is_empty() => Poll::Ready(Some(Ok(Frame::data(p)))),
                _ => pause
                    .get_or_insert_with(|| {
                        Box::pin(tokio::time::sleep(std::time::Duration::from_millis(50)))
                    })
                    .as_mut()
                    .poll(cx)
                    .map(|()| Some(Err(std::io::Error::other("answer truncated on purpose")))),
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Full(f) => f.is_end_stream(),
            Body::Flood(_) | Body::Truncated { .. } => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(f) => f.size_hint(),
            // Unknown: the answer goes out chunked and the client has to count.
            Body::Flood(_) => SizeHint::default(),
            Body::Truncated { total, .. } => SizeHint::with_exact(*total),
        }
    }
}

/// A `/v1/nodes` flood: an RLP list header claiming the whole body, then the answer's
/// blobs (RLP strings) over and over; the last one may be cut short.
pub fn nodes_flood<B: AsRef<[u8]>>(cfg: &FaultConfig, blobs: &[B]) -> Flood {
    let total = (!cfg.endless_body).then_some(cfg.flood_bytes);
    let mut unit = Vec::new();
    for b in blobs {
        crate::rlpx::write_string(&mut unit, b.as_ref());
    }
    Flood::new(flood_list_header(total), &unit, total)
}

/// A JSON-RPC flood: `[` then the answer's result objects over and over (never closed).
pub fn rpc_flood(cfg: &FaultConfig, results: &[String]) -> Flood {
    let total = (!cfg.endless_body).then_some(cfg.flood_bytes);
    let mut unit = Vec::new();
    for r in results {
        unit.extend_from_slice(r.as_bytes());
        unit.push(b',');
    }
    if unit.is_empty() {
        unit.extend_from_slice(br#"{"jsonrpc":"2.0","id":0,"result":"0x00"},"#);
    }
    Flood::new(b"[".to_vec(), &unit, total)
}

/// A WebSocket flood message of about `cfg.flood_bytes` bytes answering request `id`:
/// `RLP([id, [blob, blob, ...]])` with the answer's blobs over and over, the headers
/// claiming the whole, the last blob cut short.
pub fn ws_flood_message<B: AsRef<[u8]>>(cfg: &FaultConfig, id: u64, blobs: &[B]) -> Vec<u8> {
    let n = cfg.flood_bytes.max(64);
    let be = id.to_be_bytes();
    let mut id_enc = Vec::new();
    crate::rlpx::write_string(
        &mut id_enc,
        &be[be.iter().take_while(|&&b| b == 0).count()..],
    );
    let inner_total = n.saturating_sub(10 + id_enc.len() as u64);
    let mut unit = Vec::new();
    for b in blobs {
        crate::rlpx::write_string(&mut unit, b.as_ref());
    }
    let inner = Flood::new(
        flood_list_header(Some(inner_total)),
        &unit,
        Some(inner_total),
    )
    .collect();
    let mut out = Vec::with_capacity(inner.len() + 20);
    crate::rlpx::write_header(&mut out, id_enc.len() + inner.len(), 0xc0);
    out.extend_from_slice(&id_enc);
    out.extend_from_slice(&inner);
    out
}

/// An unsolicited WebSocket answer (`--ws-flood`, `--endless-body`): an id nobody sent (the
/// top bit set) and 1 to 3 real nodes.
pub fn ws_unsolicited(rng: &mut Rng, nodes: &[&[u8]]) -> Vec<u8> {
    let id = rng.next_u64() | (1 << 63);
    let picked: Vec<&[u8]> = if nodes.is_empty() {
        vec![&[0x80][..]]
    } else {
        (0..1 + rng.below(3))
            .map(|_| nodes[rng.below(nodes.len())])
            .collect()
    };
    crate::rlpx::encode_ws_answer(id, &picked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chance_edges() {
        let mut r = Rng::new(1);
        for _ in 0..1000 {
            assert!(r.chance(1.0));
            assert!(!r.chance(0.0));
        }
    }

    #[test]
    fn garbage_is_not_rlp_or_utf8() {
        let mut r = Rng::new(5);
        for _ in 0..200 {
            let g = garbage(&mut r);
            assert!(!crate::rlpx::is_blob_list(&g));
            assert!(std::str::from_utf8(&g).is_err());
        }
    }

    #[test]
    fn same_seed_same_plan() {
        let cfg = FaultConfig {
            stall: 0.3,
            close: 0.3,
            garbage: 0.3,
            ..Default::default()
        };
        for s in 0..50 {
            let a = Plan::draw(&cfg, s, Transport::Http);
            let b = Plan::draw(&cfg, s, Transport::Http);
            assert_eq!(a.fault, b.fault);
        }
    }

    /// `--truncate` is drawn after every whole-request decision: turning it on changes no
    /// stall, close, error or unrequested decision of the same seed.
    #[test]
    fn truncate_does_not_shift_request_faults() {
        let cfg = FaultConfig {
            stall: 0.2,
            close: 0.2,
            error500: 0.2,
            garbage: 0.2,
            unrequested: 0.5,
            ..Default::default()
        };
        let truncating = FaultConfig {
            truncate: 0.5,
            ..cfg.clone()
        };
        let mut truncated = 0;
        for s in 0..200 {
            let a = Plan::draw(&cfg, s, Transport::Http);
            let b = Plan::draw(&truncating, s, Transport::Http);
            assert_eq!(
                (a.fault, a.unrequested),
                (b.fault, b.unrequested),
                "seed {s}"
            );
            assert!(!a.truncate);
            truncated += usize::from(b.truncate);
        }
        assert!(
            (50..150).contains(&truncated),
            "{truncated} of 200 truncated"
        );
    }

    #[test]
    fn flood_options_do_not_change_other_sequences() {
        let cfg = FaultConfig {
            corrupt: 0.5,
            seed: 3,
            ..Default::default()
        };
        let mut flooding = cfg.clone();
        flooding.flood_bytes = 0;
        for s in 0..20 {
            let mut a = Plan::draw(&cfg, s, Transport::Http);
            let mut b = Plan::draw(&flooding, s, Transport::Http);
            assert!(!a.flood && !b.flood);
            assert_eq!(a.rng.next_u64(), b.rng.next_u64());
        }
        let on = FaultConfig {
            ws_flood: 5,
            ..Default::default()
        };
        assert!(
            Plan::draw(&on, 1, Transport::Ws).flood,
            "flood rate defaults to always"
        );
        let half = FaultConfig {
            repeat_blob: 10,
            flood_rate: Some(0.5),
            ..Default::default()
        };
        let n = (0..1000)
            .filter(|s| Plan::draw(&half, *s, Transport::Http).flood)
            .count();
        assert!((400..600).contains(&n), "{n}");
    }

    #[test]
    fn repeat_first_blob() {
        let mut v = vec![1, 2, 3];
        repeat_first(&mut v, 4);
        assert_eq!(v, vec![1, 1, 1, 1, 2, 3]);
        let mut e: Vec<u8> = Vec::new();
        repeat_first(&mut e, 4);
        assert!(e.is_empty());
    }

    #[test]
    fn floods_have_the_size_asked_and_announce_it() {
        let blobs = [vec![0xaa; 100], vec![0xbb; 40]];
        for total in [1u64, 55, 56, 57, 58, 300, 65_536, 1_000_000, 3_000_001] {
            let cfg = FaultConfig {
                flood_bytes: total,
                ..Default::default()
            };
            let body = nodes_flood(&cfg, &blobs).collect();
            assert_eq!(body.len() as u64, total);
            if total >= 300 {
                // The list header claims exactly the rest of the body.
                let rlp = rlp::Rlp::new(&body);
                let info = rlp.payload_info().unwrap();
                assert_eq!((info.header_len + info.value_len) as u64, total);
            }
        }
        let cfg = FaultConfig {
            flood_bytes: 200_000,
            ..Default::default()
        };
        let msg = ws_flood_message(&cfg, 7, &blobs);
        assert!((199_900..=200_000).contains(&msg.len()), "{}", msg.len());
        let rlp = rlp::Rlp::new(&msg);
        assert_eq!(
            rlp.payload_info().unwrap().header_len + rlp.payload_info().unwrap().value_len,
            msg.len()
        );
        assert_eq!(rlp.at(0).unwrap().as_val::<u64>().unwrap(), 7);
        let rpc = rpc_flood(&cfg, &[r#"{"id":1}"#.to_string()]).collect();
        assert_eq!(rpc.len(), 200_000);
        assert!(rpc.starts_with(br#"[{"id":1},{"id":1},"#));
    }

    #[test]
    fn big_units_wrap_too() {
        let cfg = FaultConfig {
            endless_body: true,
            ..Default::default()
        };
        let mut f = nodes_flood(&cfg, &[vec![7u8; 150_000]]);
        for _ in 0..100 {
            assert!(!f.next_chunk().unwrap().is_empty());
        }
    }

    #[test]
    fn endless_floods_go_on() {
        let cfg = FaultConfig {
            endless_body: true,
            ..Default::default()
        };
        let mut f = nodes_flood(&cfg, &[vec![1u8; 10]]);
        let head = f.next_chunk().unwrap();
        assert_eq!(&head[..], &[0xff; 9][..]);
        let mut n = 0usize;
        for _ in 0..200 {
            n += f.next_chunk().unwrap().len();
        }
        assert_eq!(n, 200 * FLOOD_CHUNK);
    }

    #[test]
    fn unsolicited_answers_use_ids_nobody_sent() {
        let mut r = Rng::new(9);
        let node = [0xc0u8; 40];
        for _ in 0..50 {
            let m = ws_unsolicited(&mut r, &[&node[..]]);
            let rlp = rlp::Rlp::new(&m);
            assert!(rlp.at(0).unwrap().as_val::<u64>().unwrap() >= 1 << 63);
            let n = rlp.at(1).unwrap().item_count().unwrap();
            assert!((1..=3).contains(&n));
        }
    }
}
