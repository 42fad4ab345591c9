//! [`PackedStore`]: the [`Store`] trait over a [`RecordBackend`], items packed in pages.

use super::backend::{Put, RecordBackend, Table, FRONTIER_KEY, META_KEY};
use super::codec::{
    decode_frontier, decode_meta, encode_frontier, encode_meta, malformed, raw_key, RawKey,
};
use super::compaction;
use super::page::Page;
use super::run::{by_seq, RunDesc, RunWriter};
use super::PackedConfig;
use crate::store::{Batch, ItemKey, Store, StoreError, SyncMeta};
use std::cell::{Cell, RefCell};
use std::collections::{HashSet, VecDeque};
use std::rc::Rc;

/// Most distinct pages one lookup round holds at once (bounds a `get_many`'s memory to
/// about this many pages, whatever the number of keys).
const READ_PAGES: usize = 32;

/// What a packed store has done since it was opened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackedStats {
    /// Successful batch writes.
    pub writes: u64,
    /// Records put by them (pages, descriptors, progress, frontier).
    pub write_records: u64,
    /// Items written by them.
    pub write_items: u64,
    /// Completed compactions.
    pub compactions: u64,
    /// Records put by them (pages and descriptors; streamed pages included).
    pub compaction_records: u64,
    /// Compactions that failed (the store was left as before them).
    pub compaction_errors: u64,
    /// Pages read from the backend by lookups (cache misses).
    pub page_reads: u64,
    /// Lookups that read a page because of a Bloom false positive and did not find the key
    /// there.
    pub false_positive_reads: u64,
    /// Unreferenced pages deleted on open (left by an interrupted compaction).
    pub orphans_removed: u64,
}

struct State {
    /// Every run, oldest first (by `seq`).
    runs: Vec<Rc<RunDesc>>,
    /// Bumped whenever `runs` changes; a lookup that finds a page gone retries if it did.
    generation: u64,
    meta: Option<SyncMeta>,
}

impl State {
    /// Adds a run where its `seq` puts it (after runs of the same `seq`): `runs` stays
    /// sorted without sorting it again.
    fn insert_run(&mut self, desc: RunDesc) {
        let at = self.runs.partition_point(|r| r.seq <= desc.seq);
        self.runs.insert(at, Rc::new(desc));
    }
}

/// A small LRU of parsed pages (the top of the trie is read again and again by walks).
struct PageCache {
    capacity: usize,
    pages: VecDeque<(u64, Rc<Page>)>,
}

impl PageCache {
    fn get(&mut self, id: u64) -> Option<Rc<Page>> {
        let at = self.pages.iter().position(|(i, _)| *i == id)?;
        let entry = self.pages.remove(at).expect("present");
        let page = entry.1.clone();
        self.pages.push_front(entry);
        Some(page)
    }
    fn insert(&mut self, id: u64, page: Rc<Page>) {
        if self.capacity == 0 {
            return;
        }
        self.pages.push_front((id, page));
        self.pages.truncate(self.capacity);
    }
    fn forget(&mut self, ids: &HashSet<u64>) {
        self.pages.retain(|(i, _)| !ids.contains(i));
    }
}

/// A [`Store`] keeping items packed in large records: an LSM of immutable sorted runs.
///
/// Each `write` is one atomic backend commit: the batch as one new run (pages of at most
/// `page_bytes`, plus its descriptor), the progress record and the frontier. Lookups check
/// the runs newest first through their in-memory Bloom filters and page indexes, then read
/// one page. Compaction (see [`compaction`]) keeps the number of runs logarithmic. Clone
/// the backend and [`PackedStore::open`] it again to reopen.
pub struct PackedStore<B> {
    backend: B,
    config: PackedConfig,
    state: RefCell<State>,
    /// The next record id, shared by pages and runs (ids are never reused).
    ids: Cell<u64>,
    compacting: Cell<bool>,
    cache: RefCell<PageCache>,
    stats: RefCell<PackedStats>,
    /// Opened by [`PackedStore::open_reader`]: writes and compactions are refused.
    reader: bool,
}

impl<B> std::fmt::Debug for PackedStore<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedStore")
            .field("runs", &self.state.borrow().runs.len())
            .finish()
    }
}

impl<B: RecordBackend> PackedStore<B> {
    /// Opens the store kept in `backend`: loads every run descriptor and the progress
    /// record, and deletes pages no run refers to (left by an interrupted compaction).
    ///
    /// Only for the one writer of the backend: a compaction running in another connection
    /// streams pages that no run refers to until its last commit, and deleting them would
    /// leave its new run without pages. Other connections use [`PackedStore::open_reader`].
    pub async fn open(backend: B, config: PackedConfig) -> Result<Self, StoreError> {
        Self::open_with(backend, config, true).await
    }

    /// Opens the store for reading beside a writer in another connection: as
    /// [`PackedStore::open`], but unreferenced pages are left alone (they may be a running
    /// compaction's). Its view is the runs at open; reopen to see later writes.
    pub async fn open_reader(backend: B, config: PackedConfig) -> Result<Self, StoreError> {
        Self::open_with(backend, config, false).await
    }

    async fn open_with(backend: B, config: PackedConfig, writer: bool) -> Result<Self, StoreError> {
        let mut runs = Vec::new();
        let mut referenced = HashSet::new();
        let mut max_id = 0;
        for (key, bytes) in backend.get_all(Table::Runs).await? {
            let desc = RunDesc::decode(&bytes)?;
            if desc.id != key {
                return Err(malformed("run descriptor (id)"));
            }
            max_id = max_id.max(key);
            referenced.extend(desc.pages.iter().map(|p| p.id));
            runs.push(Rc::new(desc));
        }
        let runs = by_seq(runs, |r| r.seq);
        let meta = match backend.get(Table::Meta, &[META_KEY]).await?.pop().flatten() {
            Some(bytes) => Some(decode_meta(&bytes)?),
            None => None,
        };
        // A reader never writes, so it needs neither the orphans nor fresh ids.
        let pages = if writer {
            backend.keys(Table::Pages).await?
        } else {
            Vec::new()
        };
        max_id = pages.iter().copied().fold(max_id, u64::max);
        let orphans: Vec<(Table, u64)> = pages
            .into_iter()
            .filter(|id| !referenced.contains(id))
            .map(|id| (Table::Pages, id))
            .collect();
        let orphans_removed = orphans.len() as u64;
        if !orphans.is_empty() {
            backend.commit(Vec::new(), orphans).await?;
        }
        let cache = PageCache {
            capacity: config.cache_pages,
            pages: VecDeque::new(),
        };
        Ok(PackedStore {
            backend,
            config,
            state: RefCell::new(State {
                runs,
                generation: 0,
                meta,
            }),
            ids: Cell::new(max_id + 1),
            compacting: Cell::new(false),
            cache: RefCell::new(cache),
            stats: RefCell::new(PackedStats {
                orphans_removed,
                ..PackedStats::default()
            }),
            reader: !writer,
        })
    }

    /// True when opened by [`PackedStore::open_reader`].
    pub fn is_reader(&self) -> bool {
        self.reader
    }

    /// Fails in a reader: its record ids are not known to be fresh.
    fn check_writer(&self) -> Result<(), StoreError> {
        if self.reader {
            return Err(StoreError::Backend(
                "packed store opened as a reader: it does not write".into(),
            ));
        }
        Ok(())
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }
    /// The configuration.
    pub fn config(&self) -> &PackedConfig {
        &self.config
    }
    /// Counters since open.
    pub fn stats(&self) -> PackedStats {
        self.stats.borrow().clone()
    }
    /// Runs now.
    pub fn run_count(&self) -> usize {
        self.state.borrow().runs.len()
    }
    /// Items in all runs (an item in several runs counts once per run until they merge).
    pub fn item_entries(&self) -> u64 {
        self.state.borrow().runs.iter().map(|r| r.items).sum()
    }
    /// Pages in all runs.
    pub fn page_count(&self) -> usize {
        self.state.borrow().runs.iter().map(|r| r.pages.len()).sum()
    }
    /// Bytes of memory held by the run descriptors (Bloom filters and page indexes): the
    /// store's only per-item memory. The page cache adds at most `cache_pages` pages.
    pub fn descriptor_memory_bytes(&self) -> usize {
        self.state
            .borrow()
            .runs
            .iter()
            .map(|r| r.memory_bytes())
            .sum()
    }
    /// True when the compaction policy asks for a merge.
    pub fn needs_compaction(&self) -> bool {
        compaction::pick(&self.state.borrow().runs, &self.config).is_some()
    }

    /// One compaction step if the policy asks for one; true when runs were merged.
    /// Returns false at once when another compaction is running.
    pub async fn compact(&self) -> Result<bool, StoreError> {
        let inputs = {
            let state = self.state.borrow();
            match compaction::pick(&state.runs, &self.config) {
                Some(range) => state.runs[range].to_vec(),
                None => return Ok(false),
            }
        };
        self.merge_runs(inputs).await
    }

    /// Compaction steps until the policy is satisfied; returns how many merges ran.
    pub async fn compact_all(&self) -> Result<usize, StoreError> {
        let mut merges = 0;
        while self.compact().await? {
            merges += 1;
        }
        Ok(merges)
    }

    /// Merges every run into one (e.g. once a sync is complete): the fewest lookups.
    pub async fn compact_full(&self) -> Result<bool, StoreError> {
        let inputs = self.state.borrow().runs.clone();
        if inputs.len() < 2 {
            return Ok(false);
        }
        self.merge_runs(inputs).await
    }

    /// Merges `inputs` (consecutive in age) into one run, atomically.
    async fn merge_runs(&self, inputs: Vec<Rc<RunDesc>>) -> Result<bool, StoreError> {
        self.check_writer()?;
        if self.compacting.replace(true) {
            return Ok(false);
        }
        let mut streamed = Vec::new();
        let result = async {
            let (desc, rest) = compaction::merge(
                &self.backend,
                &inputs,
                &self.config,
                &self.ids,
                &mut streamed,
            )
            .await?;
            let mut puts: Vec<Put> = rest
                .into_iter()
                .map(|(id, b)| (Table::Pages, id, b))
                .collect();
            puts.push((Table::Runs, desc.id, desc.encode()));
            let records = (streamed.len() + puts.len()) as u64;
            let mut deletes = Vec::new();
            for run in &inputs {
                deletes.push((Table::Runs, run.id));
                deletes.extend(run.pages.iter().map(|p| (Table::Pages, p.id)));
            }
            self.backend.commit(puts, deletes).await?;
            Ok::<_, StoreError>((desc, records))
        }
        .await;
        self.compacting.set(false);
        match result {
            Ok((desc, records)) => {
                let gone: HashSet<u64> = inputs.iter().map(|r| r.id).collect();
                let old_pages: HashSet<u64> = inputs
                    .iter()
                    .flat_map(|r| r.pages.iter().map(|p| p.id))
                    .collect();
                {
                    let mut state = self.state.borrow_mut();
                    state.runs.retain(|r| !gone.contains(&r.id));
                    state.insert_run(desc);
                    state.generation += 1;
                }
                self.cache.borrow_mut().forget(&old_pages);
                let mut stats = self.stats.borrow_mut();
                stats.compactions += 1;
                stats.compaction_records += records;
                Ok(true)
            }
            Err(err) => {
                self.stats.borrow_mut().compaction_errors += 1;
                // Best effort: the streamed pages are unreferenced; open() removes them
                // if this fails too.
                if !streamed.is_empty() {
                    let deletes = streamed.into_iter().map(|id| (Table::Pages, id)).collect();
                    let _ = self.backend.commit(Vec::new(), deletes).await;
                }
                Err(err)
            }
        }
    }

    /// The pages `ids`, from the cache or one backend read; None if one is gone.
    async fn load_pages(&self, ids: &[u64]) -> Result<Option<Vec<Rc<Page>>>, StoreError> {
        let mut out: Vec<Option<Rc<Page>>> = {
            let mut cache = self.cache.borrow_mut();
            ids.iter().map(|id| cache.get(*id)).collect()
        };
        let missing: Vec<u64> = ids
            .iter()
            .zip(&out)
            .filter(|(_, p)| p.is_none())
            .map(|(id, _)| *id)
            .collect();
        if !missing.is_empty() {
            let read = self.backend.get(Table::Pages, &missing).await?;
            self.stats.borrow_mut().page_reads += missing.len() as u64;
            let mut read = missing.iter().zip(read);
            for slot in out.iter_mut().filter(|p| p.is_none()) {
                let (id, bytes) = read.next().expect("one answer per key");
                let Some(bytes) = bytes else { return Ok(None) };
                let page = Rc::new(Page::parse(bytes)?);
                self.cache.borrow_mut().insert(*id, page.clone());
                *slot = Some(page);
            }
        }
        Ok(Some(out.into_iter().map(|p| p.expect("filled")).collect()))
    }

    /// Looks every key up (newest run first), mapping found bytes through `extract`.
    async fn lookup<T>(
        &self,
        keys: &[ItemKey],
        extract: impl Fn(&[u8]) -> T,
    ) -> Result<Vec<Option<T>>, StoreError> {
        let raw: Vec<RawKey> = keys.iter().map(raw_key).collect();
        'restart: loop {
            let (runs, generation) = {
                let state = self.state.borrow();
                (state.runs.clone(), state.generation)
            };
            let mut out: Vec<Option<T>> = keys.iter().map(|_| None).collect();
            // Per key: runs not tried yet are `runs[..cursor]`.
            let mut cursor = vec![runs.len(); keys.len()];
            let mut pending: Vec<usize> = (0..keys.len()).collect();
            while !pending.is_empty() {
                // Each pending key's next candidate page: (page id, key index).
                let mut wants = Vec::with_capacity(pending.len());
                for &i in &pending {
                    while cursor[i] > 0 {
                        cursor[i] -= 1;
                        if let Some(page) = runs[cursor[i]].page_for(&raw[i]) {
                            wants.push((page, i));
                            break;
                        }
                    }
                }
                pending.clear();
                wants.sort_unstable();
                let mut ids: Vec<u64> = wants.iter().map(|w| w.0).collect();
                ids.dedup();
                let mut w = 0;
                for chunk in ids.chunks(READ_PAGES) {
                    let Some(pages) = self.load_pages(chunk).await? else {
                        if self.state.borrow().generation != generation {
                            // A compaction replaced the runs meanwhile: look again.
                            continue 'restart;
                        }
                        return Err(malformed("store (a run's page is missing)"));
                    };
                    for (id, page) in chunk.iter().zip(&pages) {
                        while w < wants.len() && wants[w].0 == *id {
                            let i = wants[w].1;
                            match page.find(&raw[i]) {
                                Some(data) => out[i] = Some(extract(data)),
                                None => {
                                    self.stats.borrow_mut().false_positive_reads += 1;
                                    pending.push(i);
                                }
                            }
                            w += 1;
                        }
                    }
                }
            }
            return Ok(out);
        }
    }
}

impl<B: RecordBackend> Store for PackedStore<B> {
    async fn contains(&self, keys: &[ItemKey]) -> Result<Vec<bool>, StoreError> {
        Ok(self
            .lookup(keys, |_| ())
            .await?
            .into_iter()
            .map(|v| v.is_some())
            .collect())
    }

    async fn get_many(&self, keys: &[ItemKey]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        self.lookup(keys, <[u8]>::to_vec).await
    }

    async fn write(&self, batch: &Batch, meta: &SyncMeta) -> Result<(), StoreError> {
        self.check_writer()?;
        // Sort by key; of equal keys the later item of the batch wins (as a map insert).
        let mut items: Vec<(RawKey, &[u8])> = batch
            .items
            .iter()
            .map(|(k, v)| (raw_key(k), v.as_slice()))
            .collect();
        items.sort_by_key(|item| item.0);
        let mut sorted: Vec<(RawKey, &[u8])> = Vec::with_capacity(items.len());
        for item in items {
            match sorted.last_mut() {
                Some(last) if last.0 == item.0 => *last = item,
                _ => sorted.push(item),
            }
        }
        let mut puts: Vec<Put> = Vec::new();
        let mut run = None;
        if !sorted.is_empty() {
            let mut writer = RunWriter::new(
                sorted.len(),
                self.config.bloom_bits_per_key,
                self.config.page_bytes,
                &self.ids,
            );
            for (key, data) in &sorted {
                writer.push(key, data);
            }
            let (desc, pages) = writer.finish(None).expect("items pushed");
            puts.extend(pages.into_iter().map(|(id, b)| (Table::Pages, id, b)));
            puts.push((Table::Runs, desc.id, desc.encode()));
            run = Some(desc);
        }
        puts.push((Table::Meta, META_KEY, encode_meta(meta)));
        if let Some(frontier) = &batch.frontier {
            puts.push((Table::Meta, FRONTIER_KEY, encode_frontier(frontier)));
        }
        let records = puts.len() as u64;
        self.backend.commit(puts, Vec::new()).await?;
        {
            let mut state = self.state.borrow_mut();
            if let Some(desc) = run {
                state.insert_run(desc);
            }
            state.meta = Some(meta.clone());
            state.generation += 1;
        }
        {
            let mut stats = self.stats.borrow_mut();
            stats.writes += 1;
            stats.write_records += records;
            stats.write_items += sorted.len() as u64;
        }
        if self.config.auto_compact {
            // The batch is durable already: a failed compaction leaves the store as it was
            // (counted in stats) and is tried again after the next write.
            while let Ok(true) = self.compact().await {}
        }
        Ok(())
    }

    async fn meta(&self) -> Result<Option<SyncMeta>, StoreError> {
        Ok(self.state.borrow().meta.clone())
    }

    async fn frontier(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        match self
            .backend
            .get(Table::Meta, &[FRONTIER_KEY])
            .await?
            .pop()
            .flatten()
        {
            Some(bytes) => decode_frontier(&bytes),
            None => Ok(Vec::new()),
        }
    }
}
