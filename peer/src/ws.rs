//! `GET /v1/ws`: binary messages `RLP([requestId, [hash...]])` answered by
//! `RLP([requestId, [blob...]])`, many in flight on one socket.

use crate::app::{App, LogLevel};
use crate::faults::{self, RequestFault, Transport};
use crate::rlpx;
use crate::server::{respond, text, Resp};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::Request;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

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

/// Answers the upgrade request and starts serving the socket once hyper hands it over.
pub fn upgrade(app: Arc<App>, mut req: Request<Incoming>) -> (Resp, String) {
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
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => run(app, TokioIo::new(upgraded)).await,
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

/// What a request task hands back to the socket loop (exactly one per request).
enum Outcome {
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

async fn run<S>(app: Arc<App>, io: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    app.count(|s| &s.ws_sockets, 1);
    let cfg = WebSocketConfig::default()
        .max_message_size(Some(1 << 20))
        .max_frame_size(Some(1 << 20));
    let mut ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(cfg)).await;
    let (tx, mut rx) = mpsc::unbounded_channel::<Outcome>();
    let mut in_flight = 0usize;
    let limit = app.limits.ws_in_flight.max(1);
    loop {
        tokio::select! {
            out = rx.recv() => {
                in_flight -= 1;
                match out.expect("the loop holds a sender") {
                    Outcome::Send(bytes) => {
                        if ws.send(Message::Binary(bytes.into())).await.is_err() {
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
            }
            msg = ws.next(), if in_flight < limit => match msg {
                None | Some(Err(_)) => break,
                Some(Ok(Message::Binary(data))) => match rlpx::decode_ws_request(&data) {
                    Ok((id, hashes)) => {
                        in_flight += 1;
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
                Some(Ok(_)) => {}
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
        RequestFault::None | RequestFault::Error500 | RequestFault::Html(_) => {
            let ans = app.answer(hashes, &mut plan);
            app.count_sent(&ans.blobs);
            let msg = rlpx::encode_ws_answer(id, &ans.blobs);
            app.log(LogLevel::Debug, || {
                format!(
                    "ws request {id}: asked {} found {} sent {} ({} bytes) left out {} corrupted {} added {}",
                    hashes.len(), ans.found, ans.blobs.len(), msg.len(), ans.left_out, ans.corrupted, ans.added
                )
            });
            return Outcome::Send(msg);
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

async fn close<S>(app: &App, ws: &mut WebSocketStream<S>, code: u16, reason: &str)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    app.log(LogLevel::Debug, || {
        format!("websocket closed with {code}: {reason}")
    });
    // A close reason is at most 123 bytes.
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let frame = CloseFrame {
        code: CloseCode::from(code),
        reason: reason[..end].to_string().into(),
    };
    if ws.close(Some(frame)).await.is_err() {
        return;
    }
    // Wait briefly for the peer's close reply, then drop the socket.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}
