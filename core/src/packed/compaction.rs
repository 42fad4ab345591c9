//! Compaction: merging runs so that their number stays logarithmic in the data.
//!
//! Policy (size-tiered, a base-`fan_in` counter): a run's tier is
//! `floor(log_fan_in(bytes / tier_base))` (0 below `tier_base × fan_in`). Scanning from
//! the newest run, the first group of at least `fan_in` consecutive runs of one tier is
//! merged into one run of the next tier. Runs are consecutive in age, so the merged run
//! takes the place (the `seq`) of its newest input and "newest wins" still holds. With
//! `n` bytes stored there are at most about `(fan_in − 1) × log_fan_in(n / tier_base)`
//! runs, and every byte is rewritten about once per tier it climbs.
//!
//! The merge streams: it holds one page per input run and at most `flush_pages` output
//! pages, committing full output pages as it goes. Those pages are invisible (no
//! descriptor refers to them) until the final commit, which puts the new descriptor
//! and deletes the inputs' descriptors and pages in one atomic step. A crash before it
//! leaves only unreferenced pages, which `PackedStore::open` deletes.

use super::backend::{RecordBackend, Table};
use super::codec::{malformed, RawKey};
use super::page::Page;
use super::run::{PageRecord, RunDesc, RunWriter};
use super::PackedConfig;
use crate::store::StoreError;
use std::cell::Cell;
use std::ops::Range;
use std::rc::Rc;

/// The tier of a run of `bytes`.
pub fn tier(bytes: u64, base: u64, fan_in: usize) -> u32 {
    let fan = fan_in.max(2) as u64;
    let mut cap = base.max(1).saturating_mul(fan);
    let mut t = 0;
    while bytes >= cap && cap != u64::MAX {
        t += 1;
        cap = cap.saturating_mul(fan);
    }
    t
}

/// The runs to merge next (a range of `runs`, which are in age order, oldest first), if
/// the policy asks for a merge.
pub fn pick(runs: &[Rc<RunDesc>], config: &PackedConfig) -> Option<Range<usize>> {
    let fan_in = config.fan_in.max(2);
    let tiers: Vec<u32> = runs
        .iter()
        .map(|r| tier(r.bytes, config.tier_base_bytes, fan_in))
        .collect();
    let mut end = tiers.len();
    while end > 0 {
        let mut start = end - 1;
        while start > 0 && tiers[start - 1] == tiers[end - 1] {
            start -= 1;
        }
        if end - start >= fan_in {
            return Some(start..end);
        }
        end = start;
    }
    None
}

/// Reads one input run page by page.
struct Cursor<'r> {
    run: &'r RunDesc,
    next_page: usize,
    page: Option<Page>,
    pos: usize,
}

impl<'r> Cursor<'r> {
    /// The current key, None when the run is exhausted.
    fn key(&self) -> Option<&RawKey> {
        self.page.as_ref().map(|p| p.key(self.pos))
    }
    /// Steps to the next entry, loading the next page when the current one is done.
    async fn advance<B: RecordBackend>(&mut self, backend: &B) -> Result<(), StoreError> {
        self.pos += 1;
        if self.page.as_ref().is_some_and(|p| self.pos < p.len()) {
            return Ok(());
        }
        self.page = None;
        self.pos = 0;
        if let Some(p) = self.run.pages.get(self.next_page) {
            self.next_page += 1;
            let bytes = backend.get(Table::Pages, &[p.id]).await?.pop().flatten();
            let page = Page::parse(bytes.ok_or_else(|| malformed("run (page missing)"))?)?;
            if page.key(0) != &p.first {
                return Err(malformed("run (page index)"));
            }
            self.page = Some(page);
        }
        Ok(())
    }
}

/// Merges `inputs` (consecutive runs, oldest first) into one run; on equal keys the
/// newest input's bytes win. Full pages are committed as they fill (their ids appended
/// to `streamed`, so the caller can delete them if the merge fails); returns the new
/// descriptor (`seq` of the newest input) and the pages still to put with it.
pub(super) async fn merge<B: RecordBackend>(
    backend: &B,
    inputs: &[Rc<RunDesc>],
    config: &PackedConfig,
    ids: &Cell<u64>,
    streamed: &mut Vec<u64>,
) -> Result<(RunDesc, Vec<PageRecord>), StoreError> {
    let capacity: u64 = inputs.iter().map(|r| r.items).sum();
    let seq = inputs.iter().map(|r| r.seq).max().expect("inputs");
    let mut writer = RunWriter::new(
        capacity as usize,
        config.bloom_bits_per_key,
        config.page_bytes,
        ids,
    );
    let mut cursors: Vec<Cursor<'_>> = inputs
        .iter()
        .map(|run| Cursor {
            run,
            next_page: 0,
            page: None,
            pos: 0,
        })
        .collect();
    for c in &mut cursors {
        // No page loaded yet: `advance` loads the first one.
        c.pos = usize::MAX - 1;
        c.advance(backend).await?;
    }
    loop {
        // The smallest current key; on a tie the later (newer) input wins.
        let mut best: Option<(RawKey, usize)> = None;
        for (i, c) in cursors.iter().enumerate() {
            if let Some(k) = c.key() {
                if best.is_none_or(|(b, _)| *k <= b) {
                    best = Some((*k, i));
                }
            }
        }
        let Some((key, winner)) = best else { break };
        {
            let c = &cursors[winner];
            writer.push(&key, c.page.as_ref().expect("current page").data(c.pos));
        }
        for c in &mut cursors {
            if c.key() == Some(&key) {
                c.advance(backend).await?;
            }
        }
        if writer.pending_pages() >= config.compaction_flush_pages.max(1) {
            let pages = writer.take_pages();
            streamed.extend(pages.iter().map(|(id, _)| *id));
            backend
                .commit(
                    pages
                        .into_iter()
                        .map(|(id, b)| (Table::Pages, id, b))
                        .collect(),
                    Vec::new(),
                )
                .await?;
        }
    }
    writer
        .finish(Some(seq))
        .ok_or_else(|| malformed("run (empty)"))
}
