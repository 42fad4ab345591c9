//! The page: one backend record holding many items sorted by raw key.
//!
//! Layout (little-endian):
//! ```text
//! n: u32 | offsets: (n + 1) × u32 | entries
//! entry i = entries[offsets[i] .. offsets[i+1]] = raw key (33 bytes) ‖ item bytes
//! ```
//! The offset table makes a lookup a binary search over the page without parsing it.
//! A page holds at most `page_bytes` unless a single item is bigger (then it is alone).

use super::codec::{malformed, put_u32, u32_at, RawKey, KEY_LEN};
use crate::store::StoreError;

/// Accumulates sorted entries into one page.
#[derive(Debug, Default)]
pub struct PageBuilder {
    offsets: Vec<u32>,
    entries: Vec<u8>,
    first: Option<RawKey>,
}

impl PageBuilder {
    /// Number of entries so far.
    pub fn len(&self) -> usize {
        self.offsets.len()
    }
    /// True when no entry was added.
    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }
    /// The encoded size with one more entry of `data_len` item bytes.
    pub fn size_with(&self, data_len: usize) -> usize {
        4 + 4 * (self.offsets.len() + 2) + self.entries.len() + KEY_LEN + data_len
    }
    /// Appends an entry; keys must come in strictly increasing order.
    pub fn push(&mut self, key: &RawKey, data: &[u8]) {
        self.first.get_or_insert(*key);
        self.offsets.push(self.entries.len() as u32);
        self.entries.extend_from_slice(key);
        self.entries.extend_from_slice(data);
    }
    /// The encoded page and its first key; leaves the builder empty.
    pub fn finish(&mut self) -> (RawKey, Vec<u8>) {
        let first = self.first.take().expect("finish on an empty page");
        let mut out = Vec::with_capacity(4 + 4 * (self.offsets.len() + 1) + self.entries.len());
        put_u32(&mut out, self.offsets.len() as u32);
        for off in self.offsets.drain(..) {
            put_u32(&mut out, off);
        }
        put_u32(&mut out, self.entries.len() as u32);
        out.append(&mut self.entries);
        (first, out)
    }
}

/// A page read back, checked once so that lookups can index it without failing.
#[derive(Debug)]
pub struct Page {
    bytes: Vec<u8>,
    n: usize,
}

impl Page {
    /// Checks the offset table (monotone, every entry at least a key, ends at the end)
    /// and that keys are strictly increasing.
    pub fn parse(bytes: Vec<u8>) -> Result<Page, StoreError> {
        let bad = || malformed("page");
        let n = u32_at(&bytes, 0).ok_or_else(bad)? as usize;
        let base = 4usize
            .checked_add(
                n.checked_add(1)
                    .and_then(|m| m.checked_mul(4))
                    .ok_or_else(bad)?,
            )
            .ok_or_else(bad)?;
        if base > bytes.len() || n == 0 {
            return Err(bad());
        }
        let page = Page { n, bytes };
        let mut prev_end = 0;
        for i in 0..n {
            let (start, end) = page.range(i);
            if start != prev_end || end < start + KEY_LEN || base + end > page.bytes.len() {
                return Err(bad());
            }
            if i > 0 && page.key(i - 1) >= page.key(i) {
                return Err(bad());
            }
            prev_end = end;
        }
        if base + prev_end != page.bytes.len() {
            return Err(bad());
        }
        Ok(page)
    }
    /// Entries in the page.
    pub fn len(&self) -> usize {
        self.n
    }
    /// True for a page without entries (never produced).
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }
    /// Encoded size.
    pub fn size(&self) -> usize {
        self.bytes.len()
    }
    fn base(&self) -> usize {
        4 + 4 * (self.n + 1)
    }
    /// Entry `i`'s byte range within the entries area.
    fn range(&self, i: usize) -> (usize, usize) {
        let at =
            |j: usize| u32_at(&self.bytes, 4 + 4 * j).expect("offset table in bounds") as usize;
        (at(i), at(i + 1))
    }
    /// Entry `i`'s key.
    pub fn key(&self, i: usize) -> &RawKey {
        let start = self.base() + self.range(i).0;
        self.bytes[start..start + KEY_LEN]
            .try_into()
            .expect("33 bytes")
    }
    /// Entry `i`'s item bytes.
    pub fn data(&self, i: usize) -> &[u8] {
        let (start, end) = self.range(i);
        &self.bytes[self.base() + start + KEY_LEN..self.base() + end]
    }
    /// The item bytes stored under `key`, by binary search.
    pub fn find(&self, key: &RawKey) -> Option<&[u8]> {
        let (mut lo, mut hi) = (0, self.n);
        while lo < hi {
            let mid = (lo + hi) / 2;
            match self.key(mid).cmp(key) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(self.data(mid)),
            }
        }
        None
    }
}
