//! The run: one immutable sorted set of items, written in one atomic commit (a batch, or
//! the output of a compaction), stored as pages plus one small descriptor record.
//!
//! The descriptor is what stays in memory: per page its record id and first key (the
//! sparse page index, ~41 bytes per ~64 KiB page), and a Bloom filter over every key of
//! the run. Descriptor layout (little-endian):
//! ```text
//! version u8 = 1 | id u64 | seq u64 | items u64 | bytes u64 | pages u32
//! | pages × (page id u64 ‖ first key 33 bytes) | bloom (see bloom.rs)
//! ```

use super::bloom::Bloom;
use super::codec::{malformed, put_u32, put_u64, RawKey, Reader};
use super::page::PageBuilder;
use crate::store::StoreError;
use std::cell::Cell;

const VERSION: u8 = 1;

/// A page record ready to put: (record id, bytes).
pub type PageRecord = (u64, Vec<u8>);

/// One page of a run: its record id and first key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRef {
    /// Record id in the pages table.
    pub id: u64,
    /// The smallest key in the page.
    pub first: RawKey,
}

/// A run's descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDesc {
    /// Record id in the runs table.
    pub id: u64,
    /// Age: a higher seq is newer and wins on a key present in several runs. A batch's
    /// run takes a fresh seq; a compaction's output takes the highest seq of its inputs
    /// (which are consecutive in age), so the order of all runs is kept.
    pub seq: u64,
    /// Items in the run.
    pub items: u64,
    /// Encoded bytes of its pages.
    pub bytes: u64,
    /// Its pages in key order.
    pub pages: Vec<PageRef>,
    /// Over every key of the run.
    pub bloom: Bloom,
}

impl RunDesc {
    /// The page that would hold `key`, or None when the run certainly lacks it.
    pub fn page_for(&self, key: &RawKey) -> Option<u64> {
        if !self.bloom.may_contain(key) {
            return None;
        }
        let i = self.pages.partition_point(|p| p.first <= *key);
        (i > 0).then(|| self.pages[i - 1].id)
    }

    /// Bytes this descriptor holds in memory (heap and inline).
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.pages.capacity() * std::mem::size_of::<PageRef>()
            + self.bloom.heap_bytes()
    }

    /// The descriptor record.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(37 + self.pages.len() * 41 + 8 + self.bloom.heap_bytes());
        out.push(VERSION);
        for v in [self.id, self.seq, self.items, self.bytes] {
            put_u64(&mut out, v);
        }
        put_u32(&mut out, self.pages.len() as u32);
        for p in &self.pages {
            put_u64(&mut out, p.id);
            out.extend_from_slice(&p.first);
        }
        self.bloom.encode(&mut out);
        out
    }

    /// Inverse of [`RunDesc::encode`].
    pub fn decode(buf: &[u8]) -> Result<RunDesc, StoreError> {
        let mut r = Reader::new(buf, "run descriptor");
        if r.u8()? != VERSION {
            return Err(malformed("run descriptor (version)"));
        }
        let (id, seq, items, bytes) = (r.u64()?, r.u64()?, r.u64()?, r.u64()?);
        let n = r.u32()? as usize;
        let mut pages = Vec::with_capacity(n.min(buf.len() / 41));
        for _ in 0..n {
            pages.push(PageRef {
                id: r.u64()?,
                first: r.key()?,
            });
        }
        if pages.is_empty() || pages.windows(2).any(|w| w[0].first >= w[1].first) {
            return Err(malformed("run descriptor (page index)"));
        }
        let bloom = Bloom::decode(&mut r)?;
        r.finish()?;
        Ok(RunDesc {
            id,
            seq,
            items,
            bytes,
            pages,
            bloom,
        })
    }
}

/// `runs` in age order (by seq; runs of equal seq keep their order), as a stable sort by
/// seq. It sorts (seq, index) pairs, the one sort instantiation that the page lookups use
/// too, instead of a stable sort per element type and call site (wasm size).
pub fn by_seq<T>(runs: Vec<T>, seq: fn(&T) -> u64) -> Vec<T> {
    let mut order: Vec<(u64, usize)> = runs.iter().map(seq).zip(0..).collect();
    order.sort_unstable();
    let mut slots: Vec<Option<T>> = runs.into_iter().map(Some).collect();
    order
        .into_iter()
        .filter_map(|(_, i)| slots[i].take())
        .collect()
}

/// Builds a run from items given in strictly increasing key order, cutting pages at
/// `page_bytes`. Finished pages can be taken out as they fill (compaction streams them
/// to the backend); the rest come with the descriptor from [`RunWriter::finish`].
#[derive(Debug)]
pub struct RunWriter<'a> {
    page_bytes: usize,
    ids: &'a Cell<u64>,
    page: PageBuilder,
    pages: Vec<PageRef>,
    done: Vec<PageRecord>,
    bloom: Bloom,
    items: u64,
    bytes: u64,
    last: Option<RawKey>,
}

impl<'a> RunWriter<'a> {
    /// A writer for at most `capacity` items (sizes the Bloom filter); record ids are
    /// taken from `ids`, shared by every writer of the store.
    pub fn new(
        capacity: usize,
        bits_per_key: usize,
        page_bytes: usize,
        ids: &'a Cell<u64>,
    ) -> Self {
        RunWriter {
            page_bytes,
            ids,
            page: PageBuilder::default(),
            pages: Vec::new(),
            done: Vec::new(),
            bloom: Bloom::with_capacity(capacity, bits_per_key),
            items: 0,
            bytes: 0,
            last: None,
        }
    }

    fn next_id(&self) -> u64 {
        let id = self.ids.get();
        self.ids.set(id + 1);
        id
    }

    fn cut(&mut self) {
        let (first, bytes) = self.page.finish();
        let id = self.next_id();
        self.bytes += bytes.len() as u64;
        self.pages.push(PageRef { id, first });
        self.done.push((id, bytes));
    }

    /// Appends one item (keys strictly increasing).
    pub fn push(&mut self, key: &RawKey, data: &[u8]) {
        assert!(
            self.last.is_none_or(|l| l < *key),
            "run keys must strictly increase"
        );
        self.last = Some(*key);
        if !self.page.is_empty() && self.page.size_with(data.len()) > self.page_bytes {
            self.cut();
        }
        self.page.push(key, data);
        self.bloom.insert(key);
        self.items += 1;
    }

    /// Items pushed so far.
    pub fn items(&self) -> u64 {
        self.items
    }

    /// Finished pages not taken yet.
    pub fn pending_pages(&self) -> usize {
        self.done.len()
    }

    /// Pages finished since the last call: (record id, bytes).
    pub fn take_pages(&mut self) -> Vec<PageRecord> {
        std::mem::take(&mut self.done)
    }

    /// The descriptor (with a fresh id and the given `seq`) and the pages not taken yet.
    /// None when no item was pushed.
    pub fn finish(mut self, seq: Option<u64>) -> Option<(RunDesc, Vec<PageRecord>)> {
        if !self.page.is_empty() {
            self.cut();
        }
        if self.pages.is_empty() {
            return None;
        }
        let id = self.next_id();
        let desc = RunDesc {
            id,
            seq: seq.unwrap_or(id),
            items: self.items,
            bytes: self.bytes,
            pages: self.pages,
            bloom: self.bloom,
        };
        Some((desc, self.done))
    }
}

#[cfg(test)]
mod tests {
    use super::by_seq;
    // Under wasm the same tests run on wasm-bindgen-test (`wasm-pack test --node core`).
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn by_seq_is_a_stable_sort_by_seq() {
        let runs = vec![(5, 'a'), (1, 'b'), (5, 'c'), (0, 'd'), (1, 'e'), (5, 'f')];
        let mut stable = runs.clone();
        stable.sort_by_key(|r| r.0);
        assert_eq!(by_seq(runs, |r| r.0), stable);
        assert_eq!(by_seq(Vec::<(u64, char)>::new(), |r| r.0), vec![]);
    }
}
