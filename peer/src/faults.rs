//! Faults on purpose: seeded, so the same seed and the same request sequence give the same
//! faults.
//!
//! Each valid request takes one 64-bit draw from the server's seeded generator (in the order
//! requests arrive) and seeds its own generator with it; every decision about that request
//! is then taken from its own generator in a fixed order, whatever the timing of others.

/// splitmix64.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `rate` (always for 1.0, never for 0.0).
    pub fn chance(&mut self, rate: f64) -> bool {
        self.next_f64() < rate
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// `n` random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            out.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        out.truncate(n);
        out
    }
}

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
    /// Append this many real nodes nobody asked for to every answer.
    pub extra: usize,
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
        parts.join(" ")
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
        let http = transport == Transport::Http;
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
}
