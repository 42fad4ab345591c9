//! Byte-level helpers shared by the record formats: the 33-byte raw key, little-endian
//! integers, a bounds-checked reader, and the encodings of the progress record and the
//! saved frontier.

use crate::hash::H256;
use crate::store::{ItemKey, Kind, StoreError, SyncMeta};

/// An item key as stored: one kind byte (0 = node, 1 = code) then the 32-byte hash.
/// Byte order equals `ItemKey`'s `(kind, hash)` order, so runs sort on raw bytes.
pub type RawKey = [u8; 33];

/// Length of a [`RawKey`].
pub const KEY_LEN: usize = 33;

/// The raw form of `key`.
pub fn raw_key(key: &ItemKey) -> RawKey {
    let mut out = [0u8; KEY_LEN];
    out[0] = match key.kind {
        Kind::Node => 0,
        Kind::Code => 1,
    };
    out[1..].copy_from_slice(key.hash.as_bytes());
    out
}

/// The `ItemKey` of a raw key (None on an unknown kind byte).
pub fn item_key(raw: &RawKey) -> Option<ItemKey> {
    let kind = match raw[0] {
        0 => Kind::Node,
        1 => Kind::Code,
        _ => return None,
    };
    Some(ItemKey {
        kind,
        hash: H256::from_slice(&raw[1..]).expect("32 bytes"),
    })
}

/// The error every decoder returns on malformed stored bytes.
pub fn malformed(what: &str) -> StoreError {
    StoreError::Backend(format!("packed store: malformed {what}"))
}

/// Appends a little-endian u32.
pub fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Appends a little-endian u64.
pub fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Reads a little-endian u32 at `pos` of `buf`, if in bounds.
pub fn u32_at(buf: &[u8], pos: usize) -> Option<u32> {
    buf.get(pos..pos.checked_add(4)?)
        .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
}

/// A bounds-checked sequential reader; every read fails with [`malformed`]`(what)`.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    /// Reads `buf` from the start; `what` names the record in errors.
    pub fn new(buf: &'a [u8], what: &'static str) -> Self {
        Reader { buf, pos: 0, what }
    }
    /// The next `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| malformed(self.what))?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }
    /// The next byte.
    pub fn u8(&mut self) -> Result<u8, StoreError> {
        Ok(self.bytes(1)?[0])
    }
    /// The next little-endian u32.
    pub fn u32(&mut self) -> Result<u32, StoreError> {
        Ok(u32::from_le_bytes(
            self.bytes(4)?.try_into().expect("4 bytes"),
        ))
    }
    /// The next little-endian u64.
    pub fn u64(&mut self) -> Result<u64, StoreError> {
        Ok(u64::from_le_bytes(
            self.bytes(8)?.try_into().expect("8 bytes"),
        ))
    }
    /// The next raw key.
    pub fn key(&mut self) -> Result<RawKey, StoreError> {
        Ok(self.bytes(KEY_LEN)?.try_into().expect("33 bytes"))
    }
    /// Fails unless every byte was read.
    pub fn finish(self) -> Result<(), StoreError> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(malformed(self.what))
        }
    }
}

/// The progress record: root, complete flag, four counters (73 bytes).
pub fn encode_meta(meta: &SyncMeta) -> Vec<u8> {
    let mut out = Vec::with_capacity(73);
    out.extend_from_slice(meta.root.as_bytes());
    out.push(u8::from(meta.complete));
    for v in [meta.nodes, meta.node_bytes, meta.codes, meta.code_bytes] {
        put_u64(&mut out, v);
    }
    out
}

/// Inverse of [`encode_meta`].
pub fn decode_meta(buf: &[u8]) -> Result<SyncMeta, StoreError> {
    let mut r = Reader::new(buf, "progress record");
    let root = H256::from_slice(r.bytes(32)?).expect("32 bytes");
    let complete = match r.u8()? {
        0 => false,
        1 => true,
        _ => return Err(malformed("progress record")),
    };
    let meta = SyncMeta {
        root,
        complete,
        nodes: r.u64()?,
        node_bytes: r.u64()?,
        codes: r.u64()?,
        code_bytes: r.u64()?,
    };
    r.finish()?;
    Ok(meta)
}

/// The saved frontier: a count, then each blob's length and bytes.
pub fn encode_frontier(frontier: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + frontier.iter().map(|b| 4 + b.len()).sum::<usize>());
    put_u32(&mut out, frontier.len() as u32);
    for blob in frontier {
        put_u32(&mut out, blob.len() as u32);
        out.extend_from_slice(blob);
    }
    out
}

/// Inverse of [`encode_frontier`].
pub fn decode_frontier(buf: &[u8]) -> Result<Vec<Vec<u8>>, StoreError> {
    let mut r = Reader::new(buf, "frontier record");
    let n = r.u32()? as usize;
    let mut out = Vec::with_capacity(n.min(buf.len() / 4));
    for _ in 0..n {
        let len = r.u32()? as usize;
        out.push(r.bytes(len)?.to_vec());
    }
    r.finish()?;
    Ok(out)
}
