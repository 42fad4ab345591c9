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
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// The response type of every route (a body sent at once, or a streamed flood fault).
pub type Resp = Response<faults::Body>;

/// Per-connection context: lets a handler close its own connection (the `close` fault),
/// and tells the accept loop whether the connection is idle (so that it may be closed to
/// make room when the server is at its connection limit).
#[derive(Debug, Default)]
pub struct ConnCtx {
    kill: Notify,
    /// Set by [`ConnCtx::kill`]: every waiter sees it, even one that starts waiting later
    /// (the HTTP task and the WebSocket task of an upgraded connection both wait).
    dead: AtomicBool,
    /// Requests being handled (HTTP) or answered (WebSocket) on this connection.
    busy: AtomicUsize,
    /// When the connection last did something useful ([`now_ms`]): a request began or
    /// ended, a WebSocket message arrived, or an answer's bytes were written.
    last_active: AtomicU64,
    /// Since when ([`now_ms`] + 1) a write has been waiting for the client to read; 0 when
    /// none is.
    blocked_since: AtomicU64,
    /// Already chosen for eviction.
    evicted: AtomicBool,
    /// A request was answered (or, on a WebSocket, received) on this connection.
    served: AtomicBool,
    /// The connection became a WebSocket (its upgrade request does not count as served).
    websocket: AtomicBool,
    /// A read found nothing to read yet: a connection that was never read from is not
    /// idle (its request may be waiting for a busy server to get to it).
    polled: AtomicBool,
    /// The connection's slot (its share of `--max-connections`); a WebSocket takes it over.
    slot: Mutex<Option<Slot>>,
}

impl ConnCtx {
    /// Drops the connection without answering.
    pub fn kill(&self) {
        self.dead.store(true, Ordering::SeqCst);
        self.kill.notify_waiters();
    }

    /// Completes when the connection is to be closed (the `close` fault, or eviction).
    pub async fn killed(&self) {
        loop {
            let notified = self.kill.notified();
            tokio::pin!(notified);
            // Registered before the flag is read: a kill in between is not lost.
            notified.as_mut().enable();
            if self.dead.load(Ordering::SeqCst) {
                return;
            }
            notified.await;
        }
    }

    /// Marks the connection as doing something useful now.
    pub fn touch(&self) {
        self.last_active.store(now_ms(), Ordering::Relaxed);
    }

    /// Sets how many requests are being answered on the connection.
    pub fn set_busy(&self, n: usize) {
        self.busy.store(n, Ordering::Relaxed);
        if n > 0 {
            self.served.store(true, Ordering::Relaxed);
        }
        self.touch();
    }

    /// Takes the connection's slot (a WebSocket holds it for as long as it is open).
    pub fn take_slot(&self) -> Option<Slot> {
        self.slot.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    fn begin(&self) {
        self.busy.fetch_add(1, Ordering::Relaxed);
        self.touch();
    }

    fn end(&self) {
        self.busy.fetch_sub(1, Ordering::Relaxed);
        if !self.websocket.load(Ordering::Relaxed) {
            self.served.store(true, Ordering::Relaxed);
        }
        self.touch();
    }

    /// Marks the connection as a WebSocket: served once it has had a request.
    pub fn set_websocket(&self) {
        self.websocket.store(true, Ordering::Relaxed);
    }

    /// How good a candidate for eviction the connection is, if it is one: nothing being
    /// answered, no write waiting, and idle long enough. Connections that never had a
    /// request answered (idle floods, slow-loris headers) go first, after
    /// [`EVICT_MIN_IDLE_MS`]; clients that were served only after
    /// [`EVICT_MIN_IDLE_SERVED_MS`]. Higher is better.
    fn eviction_rank(&self, now: u64) -> Option<(bool, u64)> {
        let idle = now.saturating_sub(self.last_active.load(Ordering::Relaxed));
        let free = self.busy.load(Ordering::Relaxed) == 0
            && self.blocked_since.load(Ordering::Relaxed) == 0
            && self.polled.load(Ordering::Relaxed)
            && !self.evicted.load(Ordering::Relaxed);
        let never_served = !self.served.load(Ordering::Relaxed);
        let min = if never_served {
            EVICT_MIN_IDLE_MS
        } else {
            EVICT_MIN_IDLE_SERVED_MS
        };
        (free && idle >= min).then_some((never_served, idle))
    }
}

/// Counts a request as being handled on its connection while alive.
struct BusyGuard(Arc<ConnCtx>);

impl BusyGuard {
    fn new(ctx: Arc<ConnCtx>) -> Self {
        ctx.begin();
        BusyGuard(ctx)
    }
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// Milliseconds since the first call (a monotonic clock for idle times).
pub fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// A connection that never had a request answered is closed to make room for a new one
/// only after it has been idle this long.
pub const EVICT_MIN_IDLE_MS: u64 = 1000;
/// A connection that had requests answered is closed to make room for a new one only after
/// it has been idle this long (and only when no never-served connection can go instead).
pub const EVICT_MIN_IDLE_SERVED_MS: u64 = 5000;

/// The open connections, so that idle ones can be closed when the server is full, and
/// ones whose clients stopped reading when answer memory runs out.
#[derive(Debug, Default)]
pub struct Registry {
    conns: Mutex<HashMap<u64, Weak<ConnCtx>>>,
    next: AtomicU64,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Weak<ConnCtx>>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The live connections (taken out of the lock: dropping the last reference to one
    /// may release its slot, which takes the lock).
    fn snapshot(&self) -> Vec<Arc<ConnCtx>> {
        let conns: Vec<Weak<ConnCtx>> = self.lock().values().cloned().collect();
        conns.iter().filter_map(Weak::upgrade).collect()
    }

    fn register(self: &Arc<Self>, ctx: &Arc<ConnCtx>, permit: OwnedSemaphorePermit) -> Slot {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, Arc::downgrade(ctx));
        Slot {
            _permit: permit,
            registry: self.clone(),
            id,
        }
    }

    /// Closes the waiting connection that has been silent the longest; false when none is.
    fn evict_silent(&self) -> bool {
        let victim = self
            .snapshot()
            .into_iter()
            .filter(|c| c.busy.load(Ordering::Relaxed) == 0 && !c.evicted.load(Ordering::Relaxed))
            .min_by_key(|c| c.last_active.load(Ordering::Relaxed));
        match victim {
            Some(c) if !c.evicted.swap(true, Ordering::Relaxed) => {
                c.kill();
                true
            }
            _ => false,
        }
    }

    /// Closes the connections whose writes have waited for their client to read for at least
    /// `min_ms`; returns how many.
    pub fn cut_stalled(&self, min_ms: u64) -> usize {
        let now = now_ms();
        let mut n = 0;
        for c in self.snapshot() {
            let since = c.blocked_since.load(Ordering::Relaxed);
            if since != 0 && now + 1 >= since + min_ms && !c.evicted.swap(true, Ordering::Relaxed) {
                c.kill();
                n += 1;
            }
        }
        n
    }

    /// Closes the idle connection that is the best candidate (see
    /// [`ConnCtx::eviction_rank`]); false when there is none.
    fn evict_one(&self) -> bool {
        let now = now_ms();
        let victim = self
            .snapshot()
            .into_iter()
            .filter_map(|c| c.eviction_rank(now).map(|rank| (rank, c)))
            .max_by_key(|(rank, _)| *rank)
            .map(|(_, c)| c);
        match victim {
            Some(c) if !c.evicted.swap(true, Ordering::Relaxed) => {
                c.kill();
                true
            }
            _ => false,
        }
    }
}

/// One connection's share of `--max-connections`: released (and the connection forgotten
/// by the registry) when dropped.
#[derive(Debug)]
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    registry: Arc<Registry>,
    id: u64,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.id);
    }
}

/// A socket whose writes fail once they have made no progress for `limit`: a client that
/// stops reading cannot pin its answers, its buffers and its connection slot for longer
/// than that. Also tells the connection's context when writes progress or block.
#[derive(Debug)]
pub struct WriteDeadline<S> {
    io: S,
    ctx: Arc<ConnCtx>,
    limit: Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    stalled: bool,
}

impl<S> WriteDeadline<S> {
    /// Wraps `io`.
    pub fn new(io: S, ctx: Arc<ConnCtx>, limit: Duration) -> Self {
        WriteDeadline {
            io,
            ctx,
            limit,
            timer: None,
            stalled: false,
        }
    }

    /// Passes `r` on; a write that made progress clears the stall, one that is pending
    /// starts (or goes on) waiting and fails once the stall has lasted `limit`. Flushes and
    /// shutdowns that complete say nothing about progress (a plain socket always flushes).
    fn check<T>(
        &mut self,
        cx: &mut Context<'_>,
        r: Poll<io::Result<T>>,
        progress: bool,
    ) -> Poll<io::Result<T>> {
        match r {
            Poll::Ready(r) => {
                if progress && self.stalled {
                    self.stalled = false;
                    self.ctx.blocked_since.store(0, Ordering::Relaxed);
                }
                if progress && r.is_ok() {
                    self.ctx.touch();
                }
                Poll::Ready(r)
            }
            Poll::Pending => {
                let deadline = tokio::time::Instant::now() + self.limit;
                if !self.stalled {
                    self.stalled = true;
                    self.ctx
                        .blocked_since
                        .store(now_ms() + 1, Ordering::Relaxed);
                    match &mut self.timer {
                        Some(t) => t.as_mut().reset(deadline),
                        None => self.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
                    }
                }
                let timer = self.timer.as_mut().expect("set above");
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the client stopped reading",
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteDeadline<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_read(cx, buf);
        if r.is_pending() && !this.ctx.polled.load(Ordering::Relaxed) {
            // The server looked and found no request yet: from now on the connection is
            // idle (before, its request may be waiting for the task to run).
            this.ctx.polled.store(true, Ordering::Relaxed);
            this.ctx.touch();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write(cx, buf);
        this.check(cx, r, true)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.check(cx, r, true)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_flush(cx);
        this.check(cx, r, false)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_shutdown(cx);
        this.check(cx, r, false)
    }
}

/// Accepts connections on `listener` until `shutdown` completes.
///
/// At most `--max-connections` connections (WebSockets included) are served at once, and as
/// many again are accepted and wait: first for their first bytes (at most the header
/// timeout; when too many wait, the one silent the longest is closed), then, in order, for
/// a slot. A waiting connection makes room by closing an idle one (nothing being answered,
/// no write waiting; see [`ConnCtx::eviction_rank`]), as nginx reuses its idle keep-alive
/// connections; when none is idle, it waits for a slot to free up.
pub async fn serve(app: Arc<App>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
    let slots = Arc::new(Semaphore::new(app.limits.max_connections));
    let registry = app.conns.clone();
    let write_timeout = app
        .limits
        .write_timeout
        .unwrap_or(app.limits.header_timeout);
    // Accepted connections waiting for their first bytes and then for a slot: at most as
    // many again as are served. The kernel's accept queue is short (128): a flood that
    // waited there would make it drop new clients' SYNs (they would wait out TCP's
    // retransmission backoff), so connections are accepted at once and wait here.
    let waiting = Arc::new(Semaphore::new(app.limits.max_connections));
    let waiting_reg = Arc::new(Registry::default());
    tokio::pin!(shutdown);
    loop {
        let wait_permit = match waiting.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                // Full: close the one that has sent nothing for the longest, if any.
                if waiting_reg.evict_silent() {
                    app.count(|s| &s.evicted, 1);
                }
                tokio::select! {
                    _ = &mut shutdown => return,
                    p = waiting.clone().acquire_owned() => p.expect("semaphore never closed"),
                }
            }
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
        let (app, slots, registry) = (app.clone(), slots.clone(), registry.clone());
        let waiting_reg = waiting_reg.clone();
        tokio::spawn(async move {
            let ctx = Arc::new(ConnCtx::default());
            ctx.touch();
            let waiting_slot = waiting_reg.register(&ctx, wait_permit);
            // Its first bytes, within the header timeout (a connection that sends nothing
            // never takes a slot); closed sooner when waiting connections run out.
            tokio::select! {
                _ = ctx.killed() => return,
                r = tokio::time::timeout(app.limits.header_timeout, stream.readable()) => {
                    if !matches!(r, Ok(Ok(()))) {
                        return;
                    }
                }
            }
            ctx.begin(); // no longer silent
                         // A slot: a free one, or one made by closing an idle connection (each waiting
                         // connection closes at most one every 200 ms).
            let permit = match slots.clone().try_acquire_owned() {
                Ok(p) => p,
                Err(_) => {
                    let acquire = slots.acquire_owned();
                    tokio::pin!(acquire);
                    loop {
                        let evicted = registry.evict_one();
                        if evicted {
                            app.count(|s| &s.evicted, 1);
                        }
                        let wait = Duration::from_millis(if evicted { 200 } else { 50 });
                        tokio::select! {
                            p = &mut acquire => break p.expect("semaphore never closed"),
                            _ = tokio::time::sleep(wait) => {}
                        }
                    }
                }
            };
            drop(waiting_slot);
            serve_connection(app, registry, permit, stream, remote, write_timeout).await;
        });
    }
}

/// Serves one accepted connection holding `permit` (its slot).
async fn serve_connection(
    app: Arc<App>,
    registry: Arc<Registry>,
    permit: OwnedSemaphorePermit,
    stream: tokio::net::TcpStream,
    remote: SocketAddr,
    write_timeout: Duration,
) {
    let ctx = Arc::new(ConnCtx::default());
    ctx.touch();
    let slot = registry.register(&ctx, permit);
    *ctx.slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(slot);
    let svc = {
        let (app, ctx) = (app.clone(), ctx.clone());
        service_fn(move |req| {
            let (app, ctx) = (app.clone(), ctx.clone());
            async move {
                let _busy = BusyGuard::new(ctx.clone());
                Ok::<_, Infallible>(handle(app, ctx, remote, req).await)
            }
        })
    };
    let io = WriteDeadline::new(stream, ctx.clone(), write_timeout);
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(app.limits.header_timeout)
        .max_buf_size(64 * 1024)
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades();
    tokio::select! {
        r = conn => if let Err(e) = r {
            app.log(LogLevel::Debug, || format!("{remote} connection: {e}"));
        },
        _ = ctx.killed() => {
            app.log(LogLevel::Debug, || format!("{remote} connection closed on purpose"));
        }
    }
    // Unless a WebSocket took it over, the slot is free again.
    drop(ctx.take_slot());
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
    ctx: &Arc<ConnCtx>,
    remote: SocketAddr,
    req: Request<Incoming>,
) -> (Resp, String) {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    match (&method, path.as_str()) {
        (&Method::OPTIONS, _) => (respond(204, "text/plain", Bytes::new()), String::new()),
        (&Method::POST, "/v1/nodes") => nodes(app, ctx, remote, req).await,
        (&Method::GET, "/v1/ws") => crate::ws::upgrade(app.clone(), ctx, req),
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
    // The answer's memory is reserved before it is built, and held until it is written.
    let size = ans.blobs.iter().map(|b| b.len() + 5).sum::<usize>() + 9;
    let permit = app.reserve(size).await;
    let body = app.budgeted(rlpx::encode_blobs(&ans.blobs), permit);
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
    let mut r = respond(200, "application/octet-stream", Bytes::new());
    if plan.truncate {
        *r.body_mut() = faults::Body::truncated(body);
        return (r, format!("{note} fault truncate"));
    }
    *r.body_mut() = faults::Body::from(body);
    (r, note)
}
