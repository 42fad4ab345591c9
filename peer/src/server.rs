//! The HTTP server: routing, CORS, body limits and timeouts, `POST /v1/nodes` and
//! `GET /v1/info`; the WebSocket and JSON-RPC routes live in `ws` and `rpc`.

use crate::app::{App, LogLevel};
use crate::faults::{self, RequestFault, Transport};
use crate::rlpx;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};

/// The response type of every route (a body sent at once, or a streamed flood fault).
pub type Resp = Response<faults::Body>;

/// Per-connection context: lets a handler close its own connection (the `close` fault).
#[derive(Debug, Default)]
pub struct ConnCtx {
    kill: Notify,
}

impl ConnCtx {
    /// Drops the connection without answering.
    pub fn kill(&self) {
        self.kill.notify_one();
    }
}

/// Accepts connections on `listener` until `shutdown` completes.
pub async fn serve(app: Arc<App>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
    let slots = Arc::new(Semaphore::new(app.limits.max_connections));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => return,
            p = slots.clone().acquire_owned() => p.expect("semaphore never closed"),
        };
        let (stream, remote) = tokio::select! {
            _ = &mut shutdown => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of descriptors and the like: back off instead of spinning.
                    app.log(LogLevel::Warn, || format!("accept: {e}"));
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        tokio::spawn(async move {
            let ctx = Arc::new(ConnCtx::default());
            let svc = {
                let (app, ctx) = (app.clone(), ctx.clone());
                service_fn(move |req| {
                    let (app, ctx) = (app.clone(), ctx.clone());
                    async move { Ok::<_, Infallible>(handle(app, ctx, remote, req).await) }
                })
            };
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(app.limits.header_timeout)
                .max_buf_size(64 * 1024)
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades();
            tokio::select! {
                r = conn => if let Err(e) = r {
                    app.log(LogLevel::Debug, || format!("{remote} connection: {e}"));
                },
                _ = ctx.kill.notified() => {
                    app.log(LogLevel::Debug, || format!("{remote} connection closed on purpose"));
                }
            }
            drop(permit);
        });
    }
}

/// Adds the CORS headers that every answer carries.
fn cors(mut resp: Resp) -> Resp {
    let h = resp.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST, GET, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Content-Type"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    resp
}

/// A response with a status, a content type and a body.
pub fn respond(status: u16, content_type: &'static str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(faults::Body::from(body.into()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// A plain-text response (errors and help).
pub fn text(status: u16, body: impl Into<String>) -> Resp {
    let mut s: String = body.into();
    s.push('\n');
    respond(status, "text/plain; charset=utf-8", s)
}

/// How many bytes past the limit are still read (and thrown away) before answering 413, so
/// that a client which is still sending can read the answer instead of a reset.
pub const DRAIN_ALLOWANCE: usize = 1024 * 1024;

/// Reads a body of at most `limit` bytes within the body timeout.
///
/// An oversized body gets 413 and a closed connection, and is never held in memory: one
/// whose Content-Length is over `limit + DRAIN_ALLOWANCE` is refused before any of it is
/// read; a smaller one (or a chunked one) is read and dropped up to that much first.
pub async fn read_body(app: &App, req: Request<Incoming>, limit: usize) -> Result<Bytes, Resp> {
    let closing = |mut r: Resp| {
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        r
    };
    let too_large = |n: &dyn std::fmt::Display| {
        closing(text(
            413,
            format!("body of {n} bytes, at most {limit} allowed"),
        ))
    };
    let drain_max = limit + DRAIN_ALLOWANCE;
    if let Some(len) = req.headers().get(header::CONTENT_LENGTH) {
        match len.to_str().ok().and_then(|s| s.parse::<u64>().ok()) {
            Some(n) if n > drain_max as u64 => return Err(too_large(&n)),
            Some(_) => {}
            None => return Err(closing(text(400, "bad Content-Length"))),
        }
    }
    let mut body = req.into_body();
    let mut buf = Vec::new();
    let mut total = 0usize;
    let read = async {
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| e.to_string())?;
            if let Ok(data) = frame.into_data() {
                total += data.len();
                if total <= limit {
                    buf.extend_from_slice(&data);
                } else if total > drain_max {
                    break;
                }
            }
        }
        Ok::<(), String>(())
    };
    match tokio::time::timeout(app.limits.body_timeout, read).await {
        Err(_) => Err(closing(text(408, "timed out reading the body"))),
        Ok(Err(e)) => Err(closing(text(400, format!("could not read the body: {e}")))),
        Ok(Ok(())) if total > limit => {
            let n: &dyn std::fmt::Display = if total > drain_max {
                &"more than that many"
            } else {
                &total
            };
            Err(too_large(n))
        }
        Ok(Ok(())) => Ok(Bytes::from(buf)),
    }
}

/// What a whole-request fault turns into, or `None` to answer normally. Applies the delay
/// first; a stall or close never returns.
pub async fn apply_request_fault(
    app: &App,
    ctx: &ConnCtx,
    fault: RequestFault,
    rng: &mut faults::Rng,
    content_type: &'static str,
    what: &str,
) -> Option<Resp> {
    if matches!(fault, RequestFault::Stall | RequestFault::Close) {
        // These never reach the per-request log line: say it now.
        app.log(LogLevel::Debug, || {
            format!("{what}: fault {}", fault.name())
        });
    }
    if app.faults.delay_ms > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(app.faults.delay_ms)).await;
    }
    match fault {
        RequestFault::None => None,
        RequestFault::Stall => {
            tokio::time::sleep(app.limits.stall_max).await;
            ctx.kill();
            std::future::pending().await
        }
        RequestFault::Close => {
            ctx.kill();
            std::future::pending().await
        }
        RequestFault::Error500 => Some(text(500, "internal server error (injected fault)")),
        RequestFault::Html(status) => Some(respond(
            status,
            "text/html; charset=utf-8",
            faults::html_page(status),
        )),
        RequestFault::Garbage => Some(respond(200, content_type, faults::garbage(rng))),
    }
}

async fn handle(
    app: Arc<App>,
    ctx: Arc<ConnCtx>,
    remote: SocketAddr,
    req: Request<Incoming>,
) -> Resp {
    let start = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let (resp, note) = route(&app, &ctx, remote, req).await;
    if resp.status().is_client_error() && resp.status() != StatusCode::NOT_FOUND {
        app.count_bad();
    }
    app.log(LogLevel::Debug, || {
        format!(
            "{remote} {method} {path} -> {} {note} ({:.1} ms)",
            resp.status().as_u16(),
            start.elapsed().as_secs_f64() * 1000.0
        )
    });
    cors(resp)
}

async fn route(
    app: &Arc<App>,
    ctx: &ConnCtx,
    remote: SocketAddr,
    req: Request<Incoming>,
) -> (Resp, String) {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    match (&method, path.as_str()) {
        (&Method::OPTIONS, _) => (respond(204, "text/plain", Bytes::new()), String::new()),
        (&Method::POST, "/v1/nodes") => nodes(app, ctx, remote, req).await,
        (&Method::GET, "/v1/ws") => crate::ws::upgrade(app.clone(), req),
        (&Method::GET, "/v1/info") => (
            respond(200, "application/json", app.state.info_json.clone()),
            String::new(),
        ),
        (&Method::POST, "/") => crate::rpc::handle(app, ctx, remote, req).await,
        (&Method::GET, "/") => (text(200, HELP), String::new()),
        (_, "/v1/nodes" | "/") => (
            allow(text(405, "method not allowed"), "POST, OPTIONS"),
            String::new(),
        ),
        (_, "/v1/ws" | "/v1/info") => (
            allow(text(405, "method not allowed"), "GET, OPTIONS"),
            String::new(),
        ),
        _ => (text(404, "not found"), String::new()),
    }
}

fn allow(mut r: Resp, methods: &'static str) -> Resp {
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(methods));
    r
}

const HELP: &str = "triesync reference peer.\n\
POST /v1/nodes  body RLP([hash...]) -> RLP([blob...])\n\
GET  /v1/ws     WebSocket: RLP([id, [hash...]]) -> RLP([id, [blob...]])\n\
GET  /v1/info   JSON summary of the served state (never trust its root)\n\
POST /          JSON-RPC debug_dbGet\n\
See PROTOCOL.md.";

async fn nodes(
    app: &App,
    ctx: &ConnCtx,
    remote: SocketAddr,
    req: Request<Incoming>,
) -> (Resp, String) {
    let body = match read_body(app, req, rlpx::MAX_NODES_BODY).await {
        Ok(b) => b,
        Err(r) => return (r, String::new()),
    };
    let hashes = match rlpx::decode_nodes_request(&body) {
        Ok(h) => h,
        Err(e) => return (text(e.status, e.reason.clone()), e.reason),
    };
    app.count(|s| &s.http_requests, 1);
    let mut plan = app.plan(Transport::Http);
    let fault = plan.fault;
    let what = format!("{remote} POST /v1/nodes asked {}", hashes.len());
    if let Some(r) = apply_request_fault(
        app,
        ctx,
        fault,
        &mut plan.rng,
        "application/octet-stream",
        &what,
    )
    .await
    {
        return (r, format!("asked {} fault {}", hashes.len(), fault.name()));
    }
    let ans = app.answer(&hashes, &mut plan);
    app.count_sent(&ans.blobs);
    if plan.flood && app.faults.streams() {
        let mut r = respond(200, "application/octet-stream", Bytes::new());
        *r.body_mut() = faults::Body::Flood(faults::nodes_flood(&app.faults, &ans.blobs));
        return (r, format!("asked {} fault flood", hashes.len()));
    }
    let body = rlpx::encode_blobs(&ans.blobs);
    let note = format!(
        "asked {} found {} sent {} ({} bytes) left out {} corrupted {} added {}",
        hashes.len(),
        ans.found,
        ans.blobs.len(),
        body.len(),
        ans.left_out,
        ans.corrupted,
        ans.added
    );
    (respond(200, "application/octet-stream", body), note)
}
