//! The wire framing: requests are decoded by the shared codec `triesync_core::wire` (so the
//! peer accepts exactly what clients send), answers are encoded here without copying the
//! blobs.

use triesync_core::wire::{self, WireError};
use triesync_core::H256;

/// Most hashes one request may ask for.
pub const MAX_HASHES: usize = wire::MAX_HASHES;
/// Largest accepted body of `POST /v1/nodes`: a full list of 384 hashes plus some slack.
pub const MAX_NODES_BODY: usize = MAX_HASHES * 33 + 16;
/// Largest accepted WebSocket request message (the id and an outer list header on top).
pub const MAX_WS_MESSAGE: usize = MAX_HASHES * 33 + 32;
/// An answer stops taking requested blobs once it holds this many bytes.
pub const MAX_ANSWER_BYTES: usize = wire::MAX_ANSWER_BYTES;

/// Why a request is refused, with the HTTP status that says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRequest {
    /// 400 for a malformed request, 413 for one that is too large.
    pub status: u16,
    /// A short reason for people.
    pub reason: String,
}

impl From<WireError> for BadRequest {
    fn from(e: WireError) -> Self {
        let status = if matches!(e, WireError::TooMany { .. }) {
            413
        } else {
            400
        };
        BadRequest {
            status,
            reason: e.to_string(),
        }
    }
}

fn too_large(what: &str, len: usize, max: usize) -> BadRequest {
    BadRequest {
        status: 413,
        reason: format!("{what} of {len} bytes, at most {max} allowed"),
    }
}

/// Decodes a `POST /v1/nodes` body: `RLP([hash, ...])` with 1..=384 hashes.
pub fn decode_nodes_request(body: &[u8]) -> Result<Vec<H256>, BadRequest> {
    if body.len() > MAX_NODES_BODY {
        return Err(too_large("body", body.len(), MAX_NODES_BODY));
    }
    Ok(wire::decode_request(body)?)
}

/// Decodes a WebSocket request message: `RLP([requestId, [hash, ...]])`.
pub fn decode_ws_request(msg: &[u8]) -> Result<(u64, Vec<H256>), BadRequest> {
    if msg.len() > MAX_WS_MESSAGE {
        return Err(too_large("message", msg.len(), MAX_WS_MESSAGE));
    }
    Ok(wire::decode_ws_request(msg)?)
}

/// Appends an RLP header for a payload of `len` bytes (`offset` 0x80 strings, 0xc0 lists).
pub fn write_header(out: &mut Vec<u8>, len: usize, offset: u8) {
    if len < 56 {
        out.push(offset + len as u8);
    } else {
        let be = len.to_be_bytes();
        let skip = be.iter().take_while(|&&b| b == 0).count();
        out.push(offset + 55 + (be.len() - skip) as u8);
        out.extend_from_slice(&be[skip..]);
    }
}

/// Length of the RLP encoding of a byte string.
pub fn string_len(b: &[u8]) -> usize {
    match b.len() {
        1 if b[0] < 0x80 => 1,
        n if n < 56 => 1 + n,
        n => 1 + (usize::BITS as usize / 8 - (n.leading_zeros() as usize / 8)) + n,
    }
}

/// Appends the RLP encoding of a byte string.
pub fn write_string(out: &mut Vec<u8>, b: &[u8]) {
    if b.len() == 1 && b[0] < 0x80 {
        out.push(b[0]);
    } else {
        write_header(out, b.len(), 0x80);
        out.extend_from_slice(b);
    }
}

/// The RLP list of byte strings: the body of a `/v1/nodes` answer.
pub fn encode_blobs<B: AsRef<[u8]>>(blobs: &[B]) -> Vec<u8> {
    let payload: usize = blobs.iter().map(|b| string_len(b.as_ref())).sum();
    let mut out = Vec::with_capacity(payload + 9);
    write_header(&mut out, payload, 0xc0);
    for b in blobs {
        write_string(&mut out, b.as_ref());
    }
    out
}

/// `RLP([requestId, [blob, ...]])`: a WebSocket answer.
pub fn encode_ws_answer<B: AsRef<[u8]>>(id: u64, blobs: &[B]) -> Vec<u8> {
    let list = encode_blobs(blobs);
    let be = id.to_be_bytes();
    let id_bytes = &be[be.iter().take_while(|&&b| b == 0).count()..];
    let mut out = Vec::with_capacity(list.len() + 20);
    write_header(&mut out, string_len(id_bytes) + list.len(), 0xc0);
    write_string(&mut out, id_bytes);
    out.extend_from_slice(&list);
    out
}

/// `RLP([requestId, [hash, ...]])`: a WebSocket request (for clients and tests).
pub fn encode_ws_request(id: u64, hashes: &[H256]) -> Vec<u8> {
    let hs: Vec<&[u8]> = hashes.iter().map(|h| h.0.as_slice()).collect();
    encode_ws_answer(id, &hs)
}

/// `RLP([hash, ...])`: a `/v1/nodes` request body (for clients and tests).
pub fn encode_hash_list(hashes: &[H256]) -> Vec<u8> {
    let hs: Vec<&[u8]> = hashes.iter().map(|h| h.0.as_slice()).collect();
    encode_blobs(&hs)
}

/// True when `buf` is exactly one RLP list of byte strings (what a client would accept).
pub fn is_blob_list(buf: &[u8]) -> bool {
    wire::decode_blobs(buf, usize::MAX).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_with_the_shared_codec() {
        let hashes: Vec<H256> = (0..384u32)
            .map(|i| triesync_core::keccak256(&i.to_be_bytes()))
            .collect();
        let body = encode_hash_list(&hashes);
        assert_eq!(body, wire::encode_request(&hashes));
        assert!(body.len() <= MAX_NODES_BODY);
        assert_eq!(decode_nodes_request(&body).unwrap(), hashes);
        let (id, back) = decode_ws_request(&encode_ws_request(77_000, &hashes)).unwrap();
        assert_eq!((id, back), (77_000, hashes.clone()));
        let blobs: Vec<Vec<u8>> = vec![
            vec![],
            vec![0x05],
            vec![0x80],
            vec![7; 55],
            vec![8; 56],
            vec![9; 70_000],
        ];
        assert_eq!(encode_blobs(&blobs), wire::encode_blobs(&blobs));
        for id in [0u64, 1, 127, 128, 255, 256, u64::MAX] {
            assert_eq!(
                encode_ws_answer(id, &blobs),
                wire::encode_ws_response(id, &blobs)
            );
        }
    }

    #[test]
    fn string_len_matches_encoding() {
        for n in [0usize, 1, 2, 55, 56, 255, 256, 70_000] {
            for fill in [0u8, 0x7f, 0x80] {
                let b = vec![fill; n];
                let mut out = Vec::new();
                write_string(&mut out, &b);
                assert_eq!(out.len(), string_len(&b), "n={n} fill={fill}");
            }
        }
    }

    #[test]
    fn rejects_bad_input() {
        let h = [7u8; 32];
        let mut ok = vec![0xe1, 0xa0];
        ok.extend_from_slice(&h);
        assert!(decode_nodes_request(&ok).is_ok());
        let mut trailing = ok.clone();
        trailing.push(0);
        assert_eq!(decode_nodes_request(&trailing).unwrap_err().status, 400);
        assert_eq!(decode_nodes_request(&[0xc0]).unwrap_err().status, 400);
        assert_eq!(decode_nodes_request(&[]).unwrap_err().status, 400);
        assert_eq!(decode_nodes_request(&ok[..10]).unwrap_err().status, 400);
        let mut short = vec![0xe0, 0x9f];
        short.extend_from_slice(&h[..31]);
        assert_eq!(decode_nodes_request(&short).unwrap_err().status, 400);
        // Non-canonical long form of a short list.
        let mut long = vec![0xf8, 0x21, 0xa0];
        long.extend_from_slice(&h);
        assert_eq!(decode_nodes_request(&long).unwrap_err().status, 400);
        // Leading zero request id.
        let mut bad_id = vec![0xe5, 0x82, 0x00, 0x01, 0xe1, 0xa0];
        bad_id.extend_from_slice(&h);
        assert_eq!(decode_ws_request(&bad_id).unwrap_err().status, 400);
        bad_id[2] = 0x01;
        assert_eq!(decode_ws_request(&bad_id).unwrap(), (0x0101, vec![H256(h)]));
        assert_eq!(
            decode_nodes_request(&vec![0; MAX_NODES_BODY + 1])
                .unwrap_err()
                .status,
            413
        );
    }
}
