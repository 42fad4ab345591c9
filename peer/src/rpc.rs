//! `POST /`: JSON-RPC `debug_dbGet` as geth serves it, single or batched.
//!
//! The key is a node hash (32 bytes) or `0x63` ('c') followed by a code hash (33 bytes).

use crate::app::App;
use crate::faults::{self, Transport};
use crate::server::{apply_request_fault, read_body, respond, ConnCtx, Resp};
use hyper::body::Incoming;
use hyper::Request;
use serde_json::{json, Value};
use std::borrow::Cow;
use triesync_core::H256;

/// Largest accepted JSON-RPC body.
pub const MAX_RPC_BODY: usize = 1024 * 1024;
/// Most calls in one batch.
pub const MAX_BATCH: usize = 1000;
/// Once the results of a batch pass this many bytes, the remaining calls get error -32003
/// (geth's `BatchResponseMaxSize` default).
pub const MAX_BATCH_RESPONSE: usize = 25_000_000;
/// geth's key prefix for code.
pub const CODE_PREFIX: u8 = 0x63;

fn error(id: Value, code: i64, message: impl Into<String>) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message.into()}})
}

fn result(id: Value, value: &[u8]) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": format!("0x{}", hex::encode(value))})
}

fn json_resp(v: &Value) -> Resp {
    respond(200, "application/json", v.to_string())
}

/// Handles one JSON-RPC post.
pub(crate) async fn handle(
    app: &App,
    ctx: &ConnCtx,
    remote: std::net::SocketAddr,
    req: Request<Incoming>,
) -> (Resp, String) {
    let body = match read_body(app, req, MAX_RPC_BODY).await {
        Ok(b) => b,
        Err(r) => return (r, String::new()),
    };
    let parsed = serde_json::from_slice::<Value>(&body);
    drop(body); // not kept while the answer waits for memory
    let parsed: Value = match parsed {
        Ok(v) => v,
        Err(e) => {
            app.count_bad();
            return (
                json_resp(&error(Value::Null, -32700, format!("parse error: {e}"))),
                "parse error".into(),
            );
        }
    };
    let (calls, batch) = match parsed {
        Value::Array(items) if items.is_empty() => {
            app.count_bad();
            return (
                json_resp(&error(Value::Null, -32600, "empty batch")),
                "empty batch".into(),
            );
        }
        Value::Array(items) if items.len() > MAX_BATCH => {
            app.count_bad();
            let msg = format!(
                "batch too large ({} calls, at most {MAX_BATCH})",
                items.len()
            );
            return (json_resp(&error(Value::Null, -32600, msg.clone())), msg);
        }
        Value::Array(items) => (items, true),
        single => (vec![single], false),
    };
    app.count(|s| &s.rpc_posts, 1);
    app.count(|s| &s.rpc_calls, calls.len() as u64);
    let mut plan = app.plan(Transport::Http);
    let fault = plan.fault;
    let what = format!("{remote} POST / rpc {} calls", calls.len());
    if let Some(r) =
        apply_request_fault(app, ctx, fault, &mut plan.rng, "application/json", &what).await
    {
        return (
            r,
            format!("rpc {} calls fault {}", calls.len(), fault.name()),
        );
    }
    let mut asked_nodes = Vec::new();
    let mut answers = Vec::with_capacity(calls.len());
    for call in calls {
        // `None`: a notification, no answer.
        answers.extend(call_one(app, call, &mut plan.rng, &mut asked_nodes));
    }
    // Reserve the answer's memory before building it: hex doubles every blob, and for a
    // moment the JSON tree and its text both exist. What is not needed is given back once
    // the text is built; the rest is held until it is written.
    let mut estimate = 0usize;
    let mut counted = 0usize;
    for (_, outcome) in &answers {
        estimate += 96;
        if let Ok(blob) = outcome {
            if counted <= MAX_BATCH_RESPONSE {
                counted += blob.len();
                estimate += 2 * blob.len();
            }
        }
    }
    let permit = app.reserve(2 * estimate).await;
    let mut out = Vec::with_capacity(answers.len());
    let (mut found, mut bytes) = (0usize, 0usize);
    for (id, outcome) in answers {
        let v = match outcome {
            Ok(blob) if bytes > MAX_BATCH_RESPONSE => {
                let _ = blob;
                error(id, -32003, "response too large")
            }
            Ok(blob) => {
                found += 1;
                bytes += blob.len();
                app.count_sent(&[&blob]);
                result(id, &blob)
            }
            Err((code, msg)) => error(id, code, msg),
        };
        out.push(v);
    }
    let mut added = 0;
    if batch {
        // Answers nobody asked for: ids that were never sent, carrying real nodes and noise.
        for (i, b) in app.unasked(&asked_nodes, &mut plan).iter().enumerate() {
            out.push(result(json!(format!("unrequested-{i}")), b));
            added += 1;
        }
    }
    if plan.flood {
        if batch {
            faults::repeat_first(&mut out, app.faults.repeat_blob);
        }
        if app.faults.streams() {
            let mut r = respond(200, "application/json", bytes::Bytes::new());
            *r.body_mut() = faults::Body::Flood(faults::rpc_flood(&app.faults, &out));
            return (r, format!("rpc {} calls fault flood", out.len()));
        }
    }
    let note = format!(
        "rpc {} answers, {found} found ({bytes} bytes), {added} added",
        out.len()
    );
    let body = match (batch, out.len()) {
        (_, 0) => String::new(),
        (true, _) => Value::Array(out).to_string(),
        (false, _) => out.pop().expect("one answer").to_string(),
    };
    let body = app.budgeted(body.into_bytes(), permit);
    (respond(200, "application/json", body), note)
}

type CallOutcome<'a> = Result<Cow<'a, [u8]>, (i64, String)>;

/// Answers one call; `None` for a notification (a call without an id).
fn call_one<'a>(
    app: &'a App,
    call: Value,
    rng: &mut faults::Rng,
    asked: &mut Vec<H256>,
) -> Option<(Value, CallOutcome<'a>)> {
    let Value::Object(mut obj) = call else {
        return Some((Value::Null, Err((-32600, "invalid request".into()))));
    };
    let id = obj.remove("id");
    let method = obj
        .get("method")
        .and_then(Value::as_str)
        .map(str::to_string);
    let Some(method) = method else {
        return Some((
            id.unwrap_or(Value::Null),
            Err((-32600, "invalid request".into())),
        ));
    };
    let id = match id {
        None => return None,
        Some(id @ (Value::Null | Value::Number(_) | Value::String(_))) => id,
        Some(_) => return Some((Value::Null, Err((-32600, "invalid request: bad id".into())))),
    };
    if method != "debug_dbGet" {
        let msg = format!("the method {method} does not exist/is not available");
        return Some((id, Err((-32601, msg))));
    }
    let key = match obj.get("params") {
        Some(Value::Array(p)) if p.len() == 1 => match &p[0] {
            Value::String(s) => s.clone(),
            _ => {
                return Some((
                    id,
                    Err((-32602, "invalid argument 0: expected a hex string".into())),
                ))
            }
        },
        _ => return Some((id, Err((-32602, "invalid params: expected [key]".into())))),
    };
    let key = match key.strip_prefix("0x").or_else(|| key.strip_prefix("0X")) {
        Some(h) => match hex::decode(h) {
            Ok(k) => k,
            Err(e) => return Some((id, Err((-32602, format!("invalid argument 0: {e}"))))),
        },
        // geth looks a key without 0x up as its raw bytes.
        None => key.into_bytes(),
    };
    let blob = match key.len() {
        32 => {
            let h = H256::from_slice(&key).expect("32 bytes");
            asked.push(h);
            app.state.built.nodes.get(&h)
        }
        33 if key[0] == CODE_PREFIX => app
            .state
            .built
            .codes
            .get(&H256::from_slice(&key[1..]).expect("32 bytes")),
        _ => None,
    };
    let omit = rng.chance(app.faults.omit);
    let corrupt = rng.chance(app.faults.corrupt);
    let outcome = match blob {
        Some(b) if !omit && corrupt => Ok(Cow::Owned(faults::corrupt(b, rng))),
        Some(b) if !omit => Ok(Cow::Borrowed(b.as_slice())),
        _ => Err((-32000, "not found".to_string())),
    };
    Some((id, outcome))
}
