//! `POST /`: JSON-RPC `debug_dbGet` as geth serves it, single or batched.
//!
//! The key is a node hash (32 bytes) or `0x63` ('c') followed by a code hash (33 bytes).

use crate::app::App;
use crate::faults::{self, Transport};
use crate::server::{apply_request_fault, read_body, respond, text, ConnCtx, Resp};
use hyper::body::Incoming;
use hyper::header;
use hyper::Request;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::BTreeMap;
use triesync_core::H256;

/// Largest accepted JSON-RPC body.
pub const MAX_RPC_BODY: usize = 1024 * 1024;
/// Most calls in one batch (geth's `BatchRequestLimit` default).
pub const MAX_BATCH: usize = 1000;
/// Once the results of a batch pass this many bytes, the remaining calls get error -32003
/// (geth's `BatchResponseMaxSize` default). Counted as geth counts it: the length of each
/// result's JSON text, `"0x…"`, so 2 bytes per blob byte plus 4.
pub const MAX_BATCH_RESPONSE: usize = 25_000_000;
/// geth's key prefix for code.
pub const CODE_PREFIX: u8 = 0x63;
/// The error message of a key the peer does not have: what geth's default database,
/// Pebble, says (a LevelDB-backed geth says `leveldb: not found`).
pub const NOT_FOUND: &str = "pebble: not found";
/// The media types geth accepts on a JSON-RPC post (parameters such as `charset` aside).
pub const ACCEPTED_CONTENT_TYPES: [&str; 3] = [
    "application/json",
    "application/json-rpc",
    "application/jsonrequest",
];

/// A JSON string as Go's encoding/json writes it (`<`, `>` and `&` escaped), so that
/// messages match geth's byte for byte.
fn go_string(s: &str) -> String {
    let q = serde_json::to_string(s).expect("a string serializes");
    if !q.contains(['<', '>', '&', '\u{2028}', '\u{2029}']) {
        return q;
    }
    q.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

/// `{"jsonrpc":"2.0","id":…,` with the id as the client sent it (omitted when `None`, as
/// geth does for a message that had none).
fn head(id: Option<&str>) -> String {
    match id {
        Some(id) => format!(r#"{{"jsonrpc":"2.0","id":{id},"#),
        None => r#"{"jsonrpc":"2.0","#.to_string(),
    }
}

fn error(id: Option<&str>, code: i64, message: &str) -> String {
    format!(
        r#"{}"error":{{"code":{code},"message":{}}}}}"#,
        head(id),
        go_string(message)
    )
}

fn result(id: Option<&str>, value: &[u8]) -> String {
    let mut s = head(id);
    s.reserve(2 * value.len() + 16);
    s.push_str(r#""result":"0x"#);
    s.push_str(&hex::encode(value));
    s.push_str("\"}");
    s
}

fn json_resp(body: String) -> Resp {
    respond(200, "application/json", body)
}

/// Whether a Content-Type is one geth takes for JSON-RPC (its media type, case aside).
fn accepted_content_type(req: &Request<Incoming>) -> bool {
    let Some(ct) = req.headers().get(header::CONTENT_TYPE) else {
        return false;
    };
    let Ok(ct) = ct.to_str() else { return false };
    let media = ct.split(';').next().unwrap_or("").trim();
    ACCEPTED_CONTENT_TYPES
        .iter()
        .any(|t| t.eq_ignore_ascii_case(media))
}

/// One message of a post, read as geth reads it into its `jsonrpcMessage`: fields of the
/// wrong type count as absent, anything but an object is an empty message.
#[derive(Debug, Default)]
struct Msg<'a> {
    version_ok: bool,
    id: Option<&'a RawValue>,
    method: String,
    params: Option<&'a RawValue>,
    result_or_error: bool,
}

impl<'a> Msg<'a> {
    fn parse(raw: &'a RawValue) -> Self {
        let Ok(fields) = serde_json::from_str::<BTreeMap<String, &RawValue>>(raw.get()) else {
            return Msg::default();
        };
        let string = |k: &str| {
            fields
                .get(k)
                .and_then(|v| serde_json::from_str::<String>(v.get()).ok())
        };
        Msg {
            version_ok: string("jsonrpc").as_deref() == Some("2.0"),
            id: fields.get("id").copied(),
            method: string("method").unwrap_or_default(),
            params: fields.get("params").copied(),
            result_or_error: fields.contains_key("result") || fields.contains_key("error"),
        }
    }

    /// geth's `hasValidID`: present and not an object or array (`null` is valid).
    fn valid_id(&self) -> bool {
        self.id.is_some_and(|id| !id.get().starts_with(['{', '[']))
    }

    fn is_call(&self) -> bool {
        self.version_ok && self.valid_id() && !self.method.is_empty()
    }
}

/// What a message of a post asks, decided while its body is still at hand; kept without
/// the body (and without any JSON tree) while the answer waits.
#[derive(Debug)]
enum Entry {
    /// No answer: a notification, or a message that is itself a response.
    Silent,
    /// An error answer, no lookup.
    Error {
        /// The id as sent, for a `response too large` answer (geth's `errorResponse`).
        raw_id: Option<String>,
        /// The id this error is answered with.
        id: Option<String>,
        code: i64,
        message: String,
    },
    /// `debug_dbGet` with its key decoded, or the error geth's `ParseHexOrString` gives.
    Get {
        id: String,
        key: Result<Vec<u8>, &'static str>,
    },
}

impl Entry {
    fn read(msg: &Msg) -> Entry {
        let raw_id = msg.id.map(|id| id.get().to_string());
        if msg.version_ok && msg.id.is_none() && !msg.method.is_empty() {
            return Entry::Silent; // a notification
        }
        let invalid = |id: Option<String>| Entry::Error {
            raw_id: raw_id.clone(),
            id,
            code: -32600,
            message: "invalid request".into(),
        };
        if !msg.is_call() {
            if msg.version_ok && msg.valid_id() && msg.params.is_none() && msg.result_or_error {
                return Entry::Silent; // a response: geth handles it apart, never answers
            }
            return if msg.valid_id() {
                invalid(raw_id.clone())
            } else {
                invalid(Some("null".into()))
            };
        }
        let id = raw_id.clone().expect("a call has an id");
        let fail = |code: i64, message: String| Entry::Error {
            raw_id: raw_id.clone(),
            id: Some(id.clone()),
            code,
            message,
        };
        if msg.method != "debug_dbGet" {
            let m = format!("the method {} does not exist/is not available", msg.method);
            return fail(-32601, m);
        }
        match dbget_arg(msg.params) {
            Ok(key) => Entry::Get {
                id,
                key: parse_hex_or_string(&key),
            },
            Err(m) => fail(-32602, m),
        }
    }
}

/// The one string argument of `debug_dbGet`, or geth's `invalid params` message
/// (`parsePositionalArguments`).
fn dbget_arg(params: Option<&RawValue>) -> Result<String, String> {
    let missing = || Err("missing value for required argument 0".to_string());
    let Some(params) = params.filter(|p| p.get() != "null") else {
        return missing();
    };
    let Ok(args) = serde_json::from_str::<Vec<&RawValue>>(params.get()) else {
        return Err("non-array args".into());
    };
    let Some(first) = args.first() else {
        return missing();
    };
    let key = match first.get().as_bytes()[0] {
        // JSON null leaves Go's string empty.
        b'n' => String::new(),
        b'"' => serde_json::from_str::<String>(first.get()).map_err(|e| e.to_string())?,
        c => {
            let kind = match c {
                b't' | b'f' => "bool",
                b'[' => "array",
                b'{' => "object",
                _ => "number",
            };
            return Err(format!(
                "invalid argument 0: json: cannot unmarshal {kind} into Go value of type string"
            ));
        }
    };
    if args.len() > 1 {
        return Err("too many arguments, want at most 1".into());
    }
    Ok(key)
}

/// geth's `common.ParseHexOrString`: `0x`-prefixed hex, or else the string's own bytes.
/// Its errors are plain ones (code -32000), with hexutil's messages.
fn parse_hex_or_string(s: &str) -> Result<Vec<u8>, &'static str> {
    if s.is_empty() {
        return Err("empty hex string");
    }
    let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) else {
        return Ok(s.as_bytes().to_vec());
    };
    // Go's hex decoder reports a bad character before an odd length.
    if !h.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("invalid hex string");
    }
    if h.len() % 2 == 1 {
        return Err("hex string of odd length");
    }
    Ok(hex::decode(h).expect("checked hex"))
}

/// Reads a post's body into its entries (`Err`: the whole answer, already decided).
/// Nothing here awaits: the parse's transient memory (the body's messages as borrowed raw
/// values) is gone before the answer waits for anything.
#[allow(clippy::result_large_err)] // the Err is the whole answer, built once
fn read_post(app: &App, body: &[u8]) -> Result<(Vec<Entry>, bool), (Resp, String)> {
    // Like geth, the first JSON value of the body; an empty body gets no answer.
    let first = serde_json::Deserializer::from_slice(body)
        .into_iter::<&RawValue>()
        .next();
    let raw = match first {
        None => return Err((json_resp(String::new()), "empty body".into())),
        Some(Ok(raw)) => raw,
        Some(Err(e)) => {
            app.count_bad();
            let r = json_resp(error(Some("null"), -32700, "parse error"));
            return Err((r, format!("parse error: {e}")));
        }
    };
    if !raw.get().starts_with('[') {
        return Ok((vec![Entry::read(&Msg::parse(raw))], false));
    }
    let items: Vec<&RawValue> = serde_json::from_str(raw.get()).expect("a checked JSON array");
    if items.is_empty() {
        app.count_bad();
        let r = json_resp(error(Some("null"), -32600, "empty batch"));
        return Err((r, "empty batch".into()));
    }
    if items.len() > MAX_BATCH {
        app.count_bad();
        // geth's respondWithBatchTooLarge: an array of one error carrying the id of the
        // batch's first call.
        let id = items
            .iter()
            .map(|raw| Msg::parse(raw))
            .find(Msg::is_call)
            .and_then(|m| m.id.map(|id| id.get().to_string()));
        let e = error(
            Some(id.as_deref().unwrap_or("null")),
            -32600,
            "batch too large",
        );
        let note = format!(
            "batch too large ({} calls, at most {MAX_BATCH})",
            items.len()
        );
        return Err((json_resp(format!("[{e}]")), note));
    }
    let entries = items
        .iter()
        .map(|raw| Entry::read(&Msg::parse(raw)))
        .collect();
    Ok((entries, true))
}

/// Handles one JSON-RPC post.
pub(crate) async fn handle(
    app: &App,
    ctx: &ConnCtx,
    remote: std::net::SocketAddr,
    req: Request<Incoming>,
) -> (Resp, String) {
    if !accepted_content_type(&req) {
        // geth's validateRequest, word for word.
        let msg = "invalid content type, only application/json is supported";
        return (text(415, msg), msg.into());
    }
    let body = match read_body(app, req, MAX_RPC_BODY).await {
        Ok(b) => b,
        Err(r) => return (r, String::new()),
    };
    // The body and what is read from it count against the answer memory until the answer
    // is built (they live through the fault delays and stalls below).
    let held = app.reserve(body.len()).await;
    let read = read_post(app, &body);
    drop(body);
    let (entries, batch) = match read {
        Ok(x) => x,
        Err(answer) => return answer,
    };
    let calls = entries
        .iter()
        .filter(|e| matches!(e, Entry::Get { .. }))
        .count();
    app.count(|s| &s.rpc_posts, 1);
    app.count(|s| &s.rpc_calls, entries.len() as u64);
    let mut plan = app.plan(Transport::Http);
    let fault = plan.fault;
    let what = format!("{remote} POST / rpc {} messages", entries.len());
    if let Some(r) =
        apply_request_fault(app, ctx, fault, &mut plan.rng, "application/json", &what).await
    {
        return (
            r,
            format!("rpc {} messages fault {}", entries.len(), fault.name()),
        );
    }
    let mut asked_nodes = Vec::new();
    let mut answers: Vec<(Option<String>, CallOutcome)> = Vec::with_capacity(entries.len());
    // geth's batch response limit: once the results' JSON passes it, every later message
    // that would be answered gets `response too large`.
    let mut counted = 0usize;
    for entry in entries {
        // A single message is checked while nothing is counted yet: it is never too large.
        let too_large = counted > MAX_BATCH_RESPONSE;
        let too_large_answer = || Err((-32003, "response too large".into()));
        match entry {
            Entry::Silent => {}
            Entry::Get { id, .. } if too_large => answers.push((Some(id), too_large_answer())),
            Entry::Error { raw_id, .. } if too_large => answers.push((raw_id, too_large_answer())),
            Entry::Error {
                id, code, message, ..
            } => answers.push((id, Err((code, message)))),
            Entry::Get { id, key } => {
                let outcome = lookup(app, key, &mut plan.rng, &mut asked_nodes);
                if let Ok(blob) = &outcome {
                    counted += 2 * blob.len() + 4;
                }
                answers.push((Some(id), outcome));
            }
        }
    }
    // Reserve the answer's memory before building it: hex doubles every blob. What is not
    // needed is given back once the text is built; the rest is held until it is written.
    let estimate: usize = answers
        .iter()
        .map(|(id, outcome)| {
            let id = id.as_ref().map_or(0, String::len);
            96 + id + outcome.as_ref().map_or(0, |b| 2 * b.len())
        })
        .sum();
    // The body's share is given back first: waiting for more while holding it could leave
    // two posts each waiting for the other's memory.
    drop(held);
    // Twice: the answers and the batch text joined from them are alive at once.
    let permit = app.reserve(2 * estimate).await;
    let mut out = Vec::with_capacity(answers.len());
    let (mut found, mut bytes) = (0usize, 0usize);
    for (id, outcome) in answers {
        out.push(match outcome {
            Ok(blob) => {
                found += 1;
                bytes += blob.len();
                app.count_sent(&[&blob]);
                result(id.as_deref(), &blob)
            }
            Err((code, msg)) => error(id.as_deref(), code, &msg),
        });
    }
    let mut added = 0;
    if batch {
        // Answers nobody asked for: ids that were never sent, carrying real nodes and noise.
        for (i, b) in app.unasked(&asked_nodes, &mut plan).iter().enumerate() {
            out.push(result(Some(&format!("\"unrequested-{i}\"")), b));
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
            return (r, format!("rpc {} answers fault flood", out.len()));
        }
    }
    let note = format!(
        "rpc {} answers to {calls} gets, {found} found ({bytes} bytes), {added} added",
        out.len()
    );
    let body = match (batch, out.len()) {
        (_, 0) => String::new(),
        (true, _) => {
            // One copy: the answers straight into the batch text.
            let mut text =
                String::with_capacity(out.iter().map(|a| a.len() + 1).sum::<usize>() + 1);
            text.push('[');
            for (i, answer) in out.iter().enumerate() {
                if i > 0 {
                    text.push(',');
                }
                text.push_str(answer);
            }
            text.push(']');
            text
        }
        (false, _) => out.pop().expect("one answer"),
    };
    let body = app.budgeted(body.into_bytes(), permit);
    let mut r = respond(200, "application/json", bytes::Bytes::new());
    if plan.truncate && !body.is_empty() {
        *r.body_mut() = faults::Body::truncated(body);
        return (r, format!("{note} fault truncate"));
    }
    *r.body_mut() = faults::Body::from(body);
    (r, note)
}

type CallOutcome<'a> = Result<Cow<'a, [u8]>, (i64, String)>;

/// Looks a `debug_dbGet` key up, with the omit and corrupt faults.
fn lookup<'a>(
    app: &'a App,
    key: Result<Vec<u8>, &'static str>,
    rng: &mut faults::Rng,
    asked: &mut Vec<H256>,
) -> CallOutcome<'a> {
    let key = key.map_err(|e| (-32000, e.to_string()))?;
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
    match blob {
        Some(b) if !omit && corrupt => Ok(Cow::Owned(faults::corrupt(b, rng))),
        Some(b) if !omit => Ok(Cow::Borrowed(b.as_slice())),
        _ => Err((-32000, NOT_FOUND.to_string())),
    }
}
