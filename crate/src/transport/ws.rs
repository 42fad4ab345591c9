//! WebSocket: one socket per peer, opened on the first request and again after it closed;
//! binary messages `RLP([requestId, [hash, ...]])` answered by `RLP([requestId, [blob,
//! ...]])`, many requests in flight, matched by id. When the socket closes every request
//! waiting on it fails with [`PeerError::Connection`]; a dropped request is forgotten (its
//! late answer is ignored).
//!
//! Floods: a message over the size cap closes the socket (its request fails as
//! `TooLarge`) and is never copied into wasm memory; answers with ids nobody waits for are
//! tolerated once per request given up on plus [`UNSOLICITED_SLACK`], then the socket is
//! closed and the peer cut off (every later request fails at once, so the driver drops it).

use super::{hashes, malformed, max_items, Answer, PeerSpec, TransportOptions};
use futures::channel::oneshot;
use futures::FutureExt;
use js_sys::{ArrayBuffer, Uint8Array};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::{Rc, Weak};
use triesync_core::peer::{Peer, PeerError};
use triesync_core::store::ItemKey;
use triesync_core::wire;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{BinaryType, CloseEvent, Event, MessageEvent, WebSocket};

type Reply = oneshot::Sender<Result<Vec<Vec<u8>>, PeerError>>;

/// One socket and its event handlers.
struct Socket {
    ws: WebSocket,
    /// Requests waiting for the socket to open.
    opening: Option<Vec<oneshot::Sender<Result<(), PeerError>>>>,
    _handlers: Vec<Closure<dyn FnMut(Event)>>,
}

impl Drop for Socket {
    fn drop(&mut self) {
        self.ws.set_onopen(None);
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
        self.ws.set_onerror(None);
        let _ = self.ws.close();
    }
}

#[derive(Default)]
struct Conn {
    socket: Option<Socket>,
    /// Bumped for every new socket: events of an old one are ignored.
    generation: u64,
    next_id: u64,
    pending: HashMap<u64, Reply>,
    /// Keys asked by each pending request.
    asked: HashMap<u64, usize>,
    max_bytes: usize,
    /// Answers with an id nobody is waiting for that are still tolerated on this socket:
    /// late answers of requests given up on (one each) plus a little slack. Past it the
    /// peer is flooding.
    late_allowance: u64,
    /// Why this peer was cut off for flooding the socket with unsolicited answers: every
    /// later request fails at once instead of reconnecting.
    banned: Option<String>,
    /// Closed by the driver (peer removed or dropped): no reconnecting.
    closed: bool,
}

/// Unsolicited answers a socket tolerates besides the late ones.
pub const UNSOLICITED_SLACK: u64 = 16;

impl Conn {
    /// Removes a pending request, returning where its answer goes.
    fn take(&mut self, id: u64) -> Option<Reply> {
        self.asked.remove(&id);
        self.pending.remove(&id)
    }

    /// Cuts the peer off: the socket is closed, every request on it fails and later ones
    /// fail at once.
    fn ban(&mut self, reason: String) -> Option<Socket> {
        self.banned = Some(reason.clone());
        self.fail_all(PeerError::Malformed(reason))
    }

    /// Ends the current socket: every waiter and pending request gets `err`.
    fn fail_all(&mut self, err: PeerError) -> Option<Socket> {
        let mut socket = self.socket.take();
        if let Some(waiters) = socket.as_mut().and_then(|s| s.opening.take()) {
            for w in waiters {
                let _ = w.send(Err(err.clone()));
            }
        }
        self.asked.clear();
        for (_, reply) in self.pending.drain() {
            let _ = reply.send(Err(err.clone()));
        }
        socket
    }
}

/// Drops a socket outside of its own event handler (the handler is one of its closures).
fn drop_later(socket: Option<Socket>) {
    if let Some(s) = socket {
        wasm_bindgen_futures::spawn_local(async move { drop(s) });
    }
}

/// A peer on one WebSocket.
pub struct WsPeer {
    id: String,
    endpoint: String,
    options: TransportOptions,
    conn: Rc<RefCell<Conn>>,
}

impl std::fmt::Debug for WsPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsPeer")
            .field("id", &self.id)
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

impl WsPeer {
    /// A peer for `spec` (whose endpoint is the `ws(s)://…/v1/ws` URL). Connects lazily.
    pub fn new(spec: &PeerSpec, options: TransportOptions) -> Self {
        let conn = Conn {
            max_bytes: options.max_response_bytes,
            late_allowance: UNSOLICITED_SLACK,
            ..Conn::default()
        };
        WsPeer {
            id: spec.id.clone(),
            endpoint: spec.endpoint.clone(),
            options,
            conn: Rc::new(RefCell::new(conn)),
        }
    }

    /// Requests now waiting for an answer (for tests).
    pub fn pending(&self) -> usize {
        self.conn.borrow().pending.len()
    }

    /// Whether a socket is open or opening (for tests).
    pub fn connected(&self) -> bool {
        self.conn.borrow().socket.is_some()
    }

    /// Why the peer was cut off for flooding, if it was (for tests).
    pub fn banned(&self) -> Option<String> {
        self.conn.borrow().banned.clone()
    }
}

impl Drop for WsPeer {
    fn drop(&mut self) {
        Peer::close(self);
    }
}

/// Opens a socket unless one is open or opening; returns a receiver to wait on while it
/// is still opening.
fn ensure_socket(
    conn: &Rc<RefCell<Conn>>,
    endpoint: &str,
) -> Result<Option<oneshot::Receiver<Result<(), PeerError>>>, PeerError> {
    let mut c = conn.borrow_mut();
    if let Some(socket) = c.socket.as_mut() {
        return Ok(socket.opening.as_mut().map(|waiters| {
            let (tx, rx) = oneshot::channel();
            waiters.push(tx);
            rx
        }));
    }
    let ws = WebSocket::new(endpoint).map_err(|e| PeerError::Connection(format!("{e:?}")))?;
    ws.set_binary_type(BinaryType::Arraybuffer);
    c.generation += 1;
    let generation = c.generation;
    let weak = Rc::downgrade(conn);
    let handler = |f: fn(&mut Conn, Event) -> Option<Socket>| {
        let weak: Weak<RefCell<Conn>> = weak.clone();
        Closure::<dyn FnMut(Event)>::new(move |ev: Event| {
            let Some(conn) = weak.upgrade() else { return };
            let mut c = conn.borrow_mut();
            if c.generation != generation {
                return;
            }
            let dead = f(&mut c, ev);
            drop(c);
            drop_later(dead);
        })
    };
    let on_open = handler(|c, _| {
        if let Some(waiters) = c.socket.as_mut().and_then(|s| s.opening.take()) {
            for w in waiters {
                let _ = w.send(Ok(()));
            }
        }
        None
    });
    let on_message = handler(|c, ev| {
        let data = ev.unchecked_into::<MessageEvent>().data();
        match data.dyn_into::<ArrayBuffer>() {
            Ok(buf) => on_answer(c, &buf),
            Err(_) => c.fail_all(PeerError::Malformed("text message on the socket".into())),
        }
    });
    let on_close = handler(|c, ev| {
        let code = ev
            .dyn_ref::<CloseEvent>()
            .map(CloseEvent::code)
            .unwrap_or(0);
        let was_open = c.socket.as_ref().is_some_and(|s| s.opening.is_none());
        let what = if was_open {
            "socket closed"
        } else {
            "could not connect"
        };
        c.fail_all(PeerError::Connection(format!("{what} (code {code})")))
    });
    // An error event is always followed by a close event, which does the work.
    let on_error = Closure::<dyn FnMut(Event)>::new(|_: Event| {});
    ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
    ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
    ws.set_onerror(Some(on_error.as_ref().unchecked_ref()));
    let (tx, rx) = oneshot::channel();
    c.socket = Some(Socket {
        ws,
        opening: Some(vec![tx]),
        _handlers: vec![on_open, on_message, on_close, on_error],
    });
    Ok(Some(rx))
}

/// The request id at the start of an answer, read from its first bytes only (so a too
/// large answer can be failed without copying it).
fn peek_id(prefix: &[u8]) -> Option<u64> {
    let first = *prefix.first()?;
    let header = match first {
        0xc0..=0xf7 => 1,
        0xf8..=0xff => 1 + (first - 0xf7) as usize,
        _ => return None,
    };
    let b = *prefix.get(header)?;
    match b {
        0x00..=0x7f => Some(b as u64),
        0x80..=0x88 => {
            let n = (b - 0x80) as usize;
            let bytes = prefix.get(header + 1..header + 1 + n)?;
            Some(bytes.iter().fold(0u64, |acc, &x| (acc << 8) | x as u64))
        }
        _ => None,
    }
}

fn on_answer(c: &mut Conn, buf: &ArrayBuffer) -> Option<Socket> {
    let len = buf.byte_length() as usize;
    // Only the first bytes are looked at before the answer is known to be wanted and
    // within the cap: a flood never reaches wasm memory.
    let prefix = Uint8Array::new_with_byte_offset_and_length(buf, 0, len.min(16) as u32).to_vec();
    let id = peek_id(&prefix);
    if len > c.max_bytes {
        // The browser already buffered it; nothing more is read from this socket: its
        // request fails as too large, the others as closed, and the next one reconnects
        // (a peer that keeps doing it fails every request and is dropped by the driver).
        if let Some(reply) = id.and_then(|id| c.take(id)) {
            let _ = reply.send(Err(PeerError::TooLarge(len)));
        }
        return c.fail_all(PeerError::Connection(format!(
            "socket closed after a message of {len} bytes, over the {} byte cap",
            c.max_bytes
        )));
    }
    if let Some(id) = id {
        if !c.pending.contains_key(&id) {
            // The late answer of a request given up on, or a flood.
            if c.late_allowance == 0 {
                return c.ban("unsolicited answers flooded the socket".into());
            }
            c.late_allowance -= 1;
            return None;
        }
    }
    let bytes = Uint8Array::new(buf).to_vec();
    // The answer's own request bounds its size; before the id is known, the largest.
    let limit = id
        .and_then(|id| c.asked.get(&id).copied())
        .unwrap_or(wire::MAX_HASHES);
    match wire::decode_ws_response(&bytes, max_items(limit)).map_err(malformed) {
        Ok((id, blobs)) => {
            if let Some(reply) = c.take(id) {
                let _ = reply.send(Ok(blobs));
            }
            None
        }
        Err(e) => match id.and_then(|id| c.take(id)) {
            Some(reply) => {
                let _ = reply.send(Err(e));
                None
            }
            // Not even an id: nothing on this socket can be trusted to match.
            None => c.fail_all(e),
        },
    }
}

/// Forgets a request when its future is dropped (answered, timed out or cancelled).
struct PendingGuard {
    conn: Weak<RefCell<Conn>>,
    id: u64,
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.upgrade() {
            let mut c = conn.borrow_mut();
            if c.take(self.id).is_some() {
                // Given up on (timed out, cancelled): its answer may still come.
                c.late_allowance += 1;
            }
        }
    }
}

impl Peer for WsPeer {
    fn id(&self) -> &str {
        &self.id
    }

    /// Closes the socket for good: requests on it fail as closed, later ones at once.
    fn close(&self) {
        let socket = {
            let mut c = self.conn.borrow_mut();
            c.closed = true;
            c.fail_all(PeerError::Connection("peer closed".into()))
        };
        // Not inside one of the socket's own handlers: it can go now.
        drop(socket);
    }

    fn fetch(&self, keys: Vec<ItemKey>) -> Answer {
        let conn = self.conn.clone();
        let endpoint = self.endpoint.clone();
        let timeout = self.options.timeout;
        let work = async move {
            if conn.borrow().closed {
                return Err(PeerError::Connection("peer closed".into()));
            }
            if let Some(reason) = conn.borrow().banned.clone() {
                return Err(PeerError::Malformed(format!("cut off: {reason}")));
            }
            if let Some(opened) = ensure_socket(&conn, &endpoint)? {
                opened
                    .await
                    .unwrap_or_else(|_| Err(PeerError::Connection("socket closed".into())))?;
            }
            let (tx, rx) = oneshot::channel();
            let guard = {
                let mut c = conn.borrow_mut();
                c.next_id += 1;
                let id = c.next_id;
                let Some(socket) = c.socket.as_ref() else {
                    return Err(PeerError::Connection("socket closed".into()));
                };
                let msg = wire::encode_ws_request(id, &hashes(&keys));
                if let Err(e) = socket.ws.send_with_u8_array(&msg) {
                    return Err(PeerError::Connection(format!("send: {e:?}")));
                }
                c.pending.insert(id, tx);
                c.asked.insert(id, keys.len());
                PendingGuard {
                    conn: Rc::downgrade(&conn),
                    id,
                }
            };
            let answer = rx
                .await
                .unwrap_or_else(|_| Err(PeerError::Connection("socket closed".into())));
            drop(guard);
            answer
        };
        async move {
            futures::select_biased! {
                r = work.fuse() => r,
                () = crate::clock::sleep(timeout).fuse() => Err(PeerError::Timeout),
            }
        }
        .boxed_local()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use triesync_core::keccak256;

    #[test]
    fn ids_are_read_from_the_first_bytes() {
        let req = wire::encode_ws_request(300, &[keccak256(b"x")]);
        assert_eq!(peek_id(&req), Some(300));
        let ans = wire::encode_ws_response(7, &[vec![1, 2], vec![3]]);
        assert_eq!(peek_id(&ans), Some(7));
        let big = wire::encode_ws_response(u64::MAX, &[vec![0; 70_000]]);
        assert_eq!(peek_id(&big[..16]), Some(u64::MAX));
        assert_eq!(peek_id(&[0x80]), None);
    }
}
