//! JS ↔ Rust conversion in one place: hex arguments in, plain JS objects out.

use crate::error::Error;
use crate::transport::{PeerSpec, Protocol};
use js_sys::{Object, Reflect};
use serde::Serialize;
use triesync_core::driver::Progress;
use triesync_core::state::{hex_word, strip_zeros, Account};
use triesync_core::H256;
use wasm_bindgen::{JsCast, JsValue};

/// Parses a `0x`-prefixed (or bare) 32-byte hash.
pub fn parse_h256(s: &str, what: &str) -> Result<H256, Error> {
    H256::from_hex(s.trim())
        .map_err(|_| Error::invalid(format!("{what} must be 32 bytes of hex, got {s:?}")))
}

/// Parses a 20-byte address in hex (any letter case; checksums are not checked).
pub fn parse_address(s: &str) -> Result<[u8; 20], Error> {
    let digits = s.trim().strip_prefix("0x").unwrap_or(s.trim());
    let mut out = [0u8; 20];
    hex::decode_to_slice(digits, &mut out)
        .map_err(|_| Error::invalid(format!("address must be 20 bytes of hex, got {s:?}")))?;
    Ok(out)
}

/// Parses a storage slot: a hex integer of at most 32 bytes, padded or not (`0x0`, `0x01`,
/// or a full 64-digit word).
pub fn parse_slot(s: &str) -> Result<[u8; 32], Error> {
    let t = s.trim();
    if !t.starts_with("0x") || t.len() < 3 {
        return Err(Error::invalid(format!(
            "slot must be 0x-prefixed hex, got {s:?}"
        )));
    }
    hex_word(t, "slot")
        .map_err(|_| Error::invalid(format!("slot must be at most 32 bytes of hex, got {s:?}")))
}

/// A string argument, or an `INVALID_ARGUMENT` error naming it.
pub fn as_string(v: &JsValue, what: &str) -> Result<String, Error> {
    v.as_string()
        .ok_or_else(|| Error::invalid(format!("{what} must be a string")))
}

/// `obj[key]`, `undefined` when `obj` is not an object.
pub fn get(obj: &JsValue, key: &str) -> JsValue {
    if !obj.is_object() {
        return JsValue::UNDEFINED;
    }
    Reflect::get(obj, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
}

/// An optional non-negative number option.
pub fn opt_number(obj: &JsValue, key: &str) -> Result<Option<f64>, Error> {
    let v = get(obj, key);
    if v.is_undefined() || v.is_null() {
        return Ok(None);
    }
    match v.as_f64() {
        Some(n) if n.is_finite() && n >= 0.0 => Ok(Some(n)),
        _ => Err(Error::invalid(format!(
            "option {key} must be a non-negative number"
        ))),
    }
}

/// A peer given as a URL string or as `{ url, protocol }`.
pub fn parse_peer(v: &JsValue) -> Result<PeerSpec, Error> {
    if let Some(url) = v.as_string() {
        return PeerSpec::from_url(&url, None);
    }
    if v.is_object() {
        let url = as_string(&get(v, "url"), "peer.url")?;
        let proto = get(v, "protocol");
        let protocol = if proto.is_undefined() || proto.is_null() {
            None
        } else {
            let name = as_string(&proto, "peer.protocol")?;
            Some(Protocol::from_name(&name).ok_or_else(|| {
                Error::invalid(format!(
                    "peer.protocol must be 'http', 'ws' or 'jsonrpc', got {name:?}"
                ))
            })?)
        };
        return PeerSpec::from_url(&url, protocol);
    }
    Err(Error::invalid(
        "a peer is a URL string or { url, protocol }",
    ))
}

/// A list of peers (any iterable JS array).
pub fn parse_peers(v: &JsValue) -> Result<Vec<PeerSpec>, Error> {
    if v.is_undefined() || v.is_null() {
        return Ok(Vec::new());
    }
    if !js_sys::Array::is_array(v) {
        return Err(Error::invalid("peers must be an array"));
    }
    js_sys::Array::from(v)
        .iter()
        .map(|p| parse_peer(&p))
        .collect()
}

/// Any serializable value as a plain JS value (maps as objects, 64-bit integers as
/// numbers: counts here stay far below 2^53).
pub fn to_js<T: Serialize + ?Sized>(value: &T) -> JsValue {
    let ser = serde_wasm_bindgen::Serializer::json_compatible();
    // Only the types of this crate and of core are passed here; they always serialize.
    value.serialize(&ser).unwrap_or(JsValue::NULL)
}

fn set(obj: &Object, key: &str, value: &JsValue) {
    // Setting a property on a fresh plain object cannot fail.
    let _ = Reflect::set(obj, &JsValue::from_str(key), value);
}

/// A progress record or final report, with `seconds` and `bytes` added for convenience.
pub fn progress_to_js(p: &Progress) -> JsValue {
    let v = to_js(p);
    if let Some(obj) = v.dyn_ref::<Object>() {
        set(obj, "seconds", &JsValue::from_f64(p.elapsed_ms / 1000.0));
        set(
            obj,
            "bytes",
            &JsValue::from_f64((p.node_bytes + p.code_bytes) as f64),
        );
    }
    v
}

/// `0x` hex of any bytes.
pub fn hex0x(bytes: &[u8]) -> String {
    format!("0x{}", hex::encode(bytes))
}

/// An account as `{ nonce, balance: bigint, balanceHex, storageRoot, codeHash }`.
pub fn account_to_js(a: &Account) -> JsValue {
    let obj = Object::new();
    set(&obj, "nonce", &JsValue::from_f64(a.nonce as f64));
    let hex = a.balance_hex();
    // BigInt("0x…") cannot fail on well-formed hex.
    let big = js_sys::BigInt::new(&JsValue::from_str(&hex))
        .map(JsValue::from)
        .unwrap_or(JsValue::NULL);
    set(&obj, "balance", &big);
    set(&obj, "balanceHex", &JsValue::from_str(&hex));
    set(
        &obj,
        "storageRoot",
        &JsValue::from_str(&a.storage_root.to_hex()),
    );
    set(&obj, "codeHash", &JsValue::from_str(&a.code_hash.to_hex()));
    obj.into()
}

/// A storage word as a full 32-byte `0x` hex string.
pub fn word_to_js(w: &[u8; 32]) -> JsValue {
    JsValue::from_str(&hex0x(w))
}

/// The minimal hex of a 32-byte word (`0x0` for zero), as fixtures and JSON-RPC write it.
pub fn word_quantity(w: &[u8; 32]) -> String {
    let s = hex::encode(strip_zeros(w));
    let s = s.trim_start_matches('0');
    format!("0x{}", if s.is_empty() { "0" } else { s })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hex_arguments() {
        assert!(parse_h256("0x12", "root").is_err());
        let a = parse_address("0x00000000000000000000000000000000000000Ff").unwrap();
        assert_eq!(a[19], 0xff);
        assert!(parse_address("0x1234").is_err());
        assert_eq!(parse_slot("0x01").unwrap()[31], 1);
        assert_eq!(parse_slot("0x0").unwrap(), [0; 32]);
        assert!(parse_slot("12").is_err());
        let mut w = [0u8; 32];
        assert_eq!(word_quantity(&w), "0x0");
        w[30] = 1;
        assert_eq!(word_quantity(&w), "0x100");
    }
}
