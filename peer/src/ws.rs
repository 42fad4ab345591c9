//! `GET /v1/ws`: binary messages `RLP([requestId, [hash...]])` answered by
//! `RLP([requestId, [blob...]])`, many in flight on one socket.

use crate::app::{App, LogLevel};
use crate::faults::{self, RequestFault, Transport};
use crate::rlpx;
use crate::server::{respond, text, ConnCtx, Resp, Slot};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::Request;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;
use triesync_core::H256;

/// Close code for a text message (only binary messages are requests).
pub const CLOSE_UNSUPPORTED: u16 = 1003;
/// Close code for a malformed request (bad RLP, bad shape, wrong hash length, empty list).
pub const CLOSE_POLICY: u16 = 1008;
/// Close code for a request that is too large (more than 384 hashes or too many bytes).
pub const CLOSE_TOO_BIG: u16 = 1009;

fn header_has_token(req: &Request<Incoming>, name: header::HeaderName, token: &str) -> bool {
    req.headers().get_all(name).iter().any(|v| {
        v.to_str()
            .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
            .unwrap_or(false)
    })
}

/// Close code for an idle socket closed to make room at the connection limit.
pub const CLOSE_GOING_AWAY: u16 = 1001;

/// Answers larger than this go out as several frames of at most this size, so that no
/// socket's write buffer grows past it.
pub const FRAGMENT: usize = 64 * 1024;

/// Answers the upgrade request and starts serving the socket once hyper hands it over. The
/// socket keeps its connection's slot (it counts against `--max-connections`).
pub fn upgrade(app: Arc<App>, ctx: &Arc<ConnCtx>, mut req: Request<Incoming>) -> (Resp, String) {
    let ok = header_has_token(&req, header::CONNECTION, "upgrade")
        && header_has_token(&req, header::UPGRADE, "websocket");
    let version = req
        .headers()
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(|v| v.as_bytes().to_vec());
    let key = req
        .headers()
        .get(header::SEC_WEBSOCKET_KEY)
        .map(|v| v.as_bytes().to_vec());
    let (true, Some(b"13"), Some(key)) = (ok, version.as_deref(), key) else {
        let mut r = text(426, "expected a WebSocket upgrade (version 13)");
        r.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        r.headers_mut()
            .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        return (r, String::new());
    };
    let accept = derive_accept_key(&key);
    let on_upgrade = hyper::upgrade::on(&mut req);
    ctx.set_websocket();
    let (ctx, slot) = (ctx.clone(), ctx.take_slot());
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => run(app, ctx, slot, TokioIo::new(upgraded)).await,
            Err(e) => app.log(LogLevel::Debug, || format!("websocket upgrade failed: {e}")),
        }
    });
    let mut r = respond(101, "application/octet-stream", Bytes::new());
    r.headers_mut().remove(header::CONTENT_TYPE);
    let h = r.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(
        header::SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&accept).expect("base64 is ASCII"),
    );
    (r, "websocket".into())
}

/// The answer to a request, encoded: `RLP([id, [blob...]])`, holding its share of the
/// answer memory until it is written.
async fn build_answer(app: &App, id: u64, hashes: &[H256], plan: &mut faults::Plan) -> Bytes {
    let ans = app.answer(hashes, plan);
    app.count_sent(&ans.blobs);
    let size = ans.blobs.iter().map(|b| b.len() + 5).sum::<usize>() + 18;
    let permit = app.reserve(size).await;
    let msg = app.budgeted(rlpx::encode_ws_answer(id, &ans.blobs), permit);
    app.log(LogLevel::Debug, || {
        format!(
            "ws request {id}: asked {} found {} sent {} ({} bytes) left out {} corrupted {} added {}",
            hashes.len(), ans.found, ans.blobs.len(), msg.len(), ans.left_out, ans.corrupted, ans.added
        )
    });
    msg
}

/// What a request task hands back to the socket loop (exactly one per request).
enum Outcome {
    /// A normal answer, built by the loop when it is its turn to be sent: a socket whose
    /// client does not read holds at most one built answer, not one per request in flight.
    Answer(u64, Vec<H256>, faults::Plan),
    Send(Vec<u8>),
    /// Several messages in a row (a flood fault: unsolicited answers, then the answer).
    Many(Vec<Vec<u8>>),
    /// Unsolicited answers until the socket fails (the endless flood fault).
    Endless(faults::Rng),
    Nothing,
    Abort,
}

/// Some real nodes of the state, picked with `rng` (for unsolicited answers).
fn sample_nodes<'a>(app: &'a App, rng: &mut faults::Rng, n: usize) -> Vec<&'a [u8]> {
    let keys = &app.state.node_keys;
    if keys.is_empty() {
        return Vec::new();
    }
    (0..n)
        .map(|_| app.state.built.nodes[&keys[rng.below(keys.len())]].as_slice())
        .collect()
}

/// Sends one binary message, split into frames of at most [`FRAGMENT`] bytes.
async fn send_fragmented<S>(ws: &mut WebSocketStream<S>, msg: Bytes) -> Result<(), ()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    if msg.len() <= FRAGMENT {
        return ws.send(Message::Binary(msg)).await.map_err(drop);
    }
    let mut start = 0;
    while start < msg.len() {
        let end = (start + FRAGMENT).min(msg.len());
        let opcode = if start == 0 {
            OpCode::Data(Data::Binary)
        } else {
            OpCode::Data(Data::Continue)
        };
        let frame = Frame::message(msg.slice(start..end), opcode, end == msg.len());
        ws.feed(Message::Frame(frame)).await.map_err(drop)?;
        start = end;
    }
    ws.flush().await.map_err(drop)
}

async fn run<S>(app: Arc<App>, ctx: Arc<ConnCtx>, slot: Option<Slot>, io: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    app.count(|s| &s.ws_sockets, 1);
    let mut slot = slot;
    // Requests are at most 12,704 bytes: a small read buffer, and a message or frame over
    // that is refused from its header (close 1009) instead of being read; answers go out
    // in frames of at most FRAGMENT bytes, written at once (no write buffering past one
    // frame).
    let cfg = WebSocketConfig::default()
        .read_buffer_size(16 * 1024)
        .write_buffer_size(0)
        .max_message_size(Some(rlpx::MAX_WS_MESSAGE))
        .max_frame_size(Some(rlpx::MAX_WS_MESSAGE));
    let mut ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(cfg)).await;
    let (tx, mut rx) = mpsc::unbounded_channel::<Outcome>();
    let mut in_flight = 0usize;
    let limit = app.limits.ws_in_flight.max(1);
    loop {
        tokio::select! {
            _ = ctx.killed() => {
                // Idle at the connection limit: make room (nothing is in flight).
                drop(slot.take());
                close(&app, &mut ws, CLOSE_GOING_AWAY, "idle socket closed: the peer is at its connection limit").await;
                return;
            }
            out = rx.recv() => {
                in_flight -= 1;
                let out = out.expect("the loop holds a sender");
                match out {
                    Outcome::Answer(id, hashes, mut plan) => {
                        let msg = build_answer(&app, id, &hashes, &mut plan).await;
                        // A kill here: the client stopped reading and memory is short.
                        let sent = tokio::select! {
                            r = send_fragmented(&mut ws, msg) => r,
                            _ = ctx.killed() => Err(()),
                        };
                        if sent.is_err() {
                            break;
                        }
                    }
                    Outcome::Send(bytes) => {
                        let sent = tokio::select! {
                            r = send_fragmented(&mut ws, bytes.into()) => r,
                            _ = ctx.killed() => Err(()),
                        };
                        if sent.is_err() {
                            break;
                        }
                    }
                    Outcome::Many(messages) => {
                        let mut failed = false;
                        for m in messages {
                            if ws.feed(Message::Binary(m.into())).await.is_err() {
                                failed = true;
                                break;
                            }
                        }
                        if failed || ws.flush().await.is_err() {
                            break;
                        }
                    }
                    Outcome::Endless(mut rng) => {
                        app.log(LogLevel::Debug, || "websocket: endless flood".into());
                        let nodes = sample_nodes(&app, &mut rng, 64);
                        loop {
                            let m = faults::ws_unsolicited(&mut rng, &nodes);
                            if ws.send(Message::Binary(m.into())).await.is_err() {
                                return;
                            }
                        }
                    }
                    Outcome::Nothing => {}
                    Outcome::Abort => {
                        app.log(LogLevel::Debug, || "websocket dropped on purpose".into());
                        return; // drops the socket: no close frame, no answer
                    }
                }
                ctx.set_busy(in_flight);
            }
            msg = ws.next(), if in_flight < limit => match msg {
                Some(Err(WsError::Capacity(e))) => {
                    app.count_bad();
                    close_too_big(&app, &mut ws, &e.to_string()).await;
                    return;
                }
                None | Some(Err(_)) => break,
                Some(Ok(Message::Binary(data))) => match rlpx::decode_ws_request(&data) {
                    Ok((id, hashes)) => {
                        in_flight += 1;
                        ctx.set_busy(in_flight);
                        app.count(|s| &s.ws_requests, 1);
                        let plan = app.plan(Transport::Ws);
                        let (app, tx) = (app.clone(), tx.clone());
                        tokio::spawn(async move {
                            let out = answer(&app, id, &hashes, plan).await;
                            let _ = tx.send(out);
                        });
                    }
                    Err(e) => {
                        app.count_bad();
                        let code = if e.status == 413 { CLOSE_TOO_BIG } else { CLOSE_POLICY };
                        close(&app, &mut ws, code, &e.reason).await;
                        return;
                    }
                },
                Some(Ok(Message::Text(_))) => {
                    app.count_bad();
                    close(&app, &mut ws, CLOSE_UNSUPPORTED, "binary messages only").await;
                    return;
                }
                // Pings are answered by tungstenite; a close is echoed and ends the stream.
                Some(Ok(_)) => ctx.touch(),
            },
        }
    }
}

async fn answer(
    app: &App,
    id: u64,
    hashes: &[triesync_core::H256],
    mut plan: faults::Plan,
) -> Outcome {
    if app.faults.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(app.faults.delay_ms)).await;
    }
    let fault = plan.fault;
    let out = match fault {
        RequestFault::Stall => Outcome::Nothing,
        RequestFault::Close => Outcome::Abort,
        RequestFault::Garbage => Outcome::Send(faults::garbage(&mut plan.rng)),
        // HTTP-only faults never reach here (the plan is drawn for Transport::Ws).
        RequestFault::None | RequestFault::Error500 | RequestFault::Html(_) if plan.flood => {
            let ans = app.answer(hashes, &mut plan);
            app.count_sent(&ans.blobs);
            if app.faults.endless_body {
                return Outcome::Endless(plan.rng);
            }
            let nodes = sample_nodes(app, &mut plan.rng, 64);
            let mut out: Vec<Vec<u8>> = (0..app.faults.ws_flood)
                .map(|_| faults::ws_unsolicited(&mut plan.rng, &nodes))
                .collect();
            out.push(if app.faults.flood_bytes > 0 {
                faults::ws_flood_message(&app.faults, id, &ans.blobs)
            } else {
                rlpx::encode_ws_answer(id, &ans.blobs)
            });
            app.log(LogLevel::Debug, || {
                format!("ws request {id}: flood of {} messages", out.len())
            });
            return Outcome::Many(out);
        }
        // Built by the socket loop right before it is sent (see `Outcome::Answer`).
        RequestFault::None | RequestFault::Error500 | RequestFault::Html(_) => {
            return Outcome::Answer(id, hashes.to_vec(), plan);
        }
    };
    app.log(LogLevel::Debug, || {
        format!(
            "ws request {id}: asked {} fault {}",
            hashes.len(),
            fault.name()
        )
    });
    out
}

/// Logs and sends a close frame, its reason cut to the 123 bytes a frame holds; false if
/// the socket is already gone.
async fn send_close<S>(app: &App, ws: &mut WebSocketStream<S>, code: u16, reason: &str) -> bool
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    app.log(LogLevel::Debug, || {
        format!("websocket closed with {code}: {reason}")
    });
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let frame = CloseFrame {
        code: CloseCode::from(code),
        reason: reason[..end].to_string().into(),
    };
    ws.close(Some(frame)).await.is_ok()
}

/// Closes a socket: the close frame, then up to 2 s for the client's own.
async fn close<S>(app: &App, ws: &mut WebSocketStream<S>, code: u16, reason: &str)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    if !send_close(app, ws, code, reason).await {
        return;
    }
    // Wait briefly for the peer's close reply, then drop the socket.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}

/// Closes with 1009 a socket whose client sent a message over the size cap, refused from
/// its header: the client may still be sending the rest, which cannot be read as frames.
/// It is read and thrown away until the client pauses (or 2 s pass), since closing with
/// unread bytes would reset the connection and could lose the close frame on its way.
async fn close_too_big<S>(app: &App, ws: &mut WebSocketStream<S>, reason: &str)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    if !send_close(app, ws, CLOSE_TOO_BIG, reason).await {
        return;
    }
    let mut sink = vec![0u8; 16 * 1024];
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(250), ws.get_mut().read(&mut sink)).await
        {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}
