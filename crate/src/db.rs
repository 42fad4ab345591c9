//! [`Db`]: the store behind the JS API, in either [`Layout`]: core's `Store` by
//! delegation, plus what `StateSync` and `StateDb` need beyond it (close, counts per kind,
//! the layout, a fresh view for readers).
//!
//! A packed database is written by one connection at a time (the sync holding the Web
//! Lock) and may be read by others (`StateDb`s in any tab or worker). A reader's
//! [`PackedStore`] knows the runs as they were when it was opened, and the writer's
//! compactions delete pages of runs they merged. So a reader reopens its runs whenever
//! the runs table changed ([`Db::refresh`], before every `StateDb` call), and a call that
//! found a page gone (a compaction landed between the refresh and the read) is retried
//! after another refresh ([`Db::page_vanished`]). A reader is opened with
//! [`PackedStore::open_reader`]: the writer's open deletes unreferenced pages, which in
//! a second connection would be a running compaction's pages.

use crate::error::Error;
use crate::idb_records::IdbRecords;
use crate::idb_store::IdbStore;
use crate::layout::{self, Layout};
use idb::Factory;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use triesync_core::packed::backend::{Put, META_KEY};
use triesync_core::packed::codec::decode_meta;
use triesync_core::packed::page::Page;
use triesync_core::packed::run::by_seq;
use triesync_core::packed::run::RunDesc;
use triesync_core::packed::{PackedConfig, PackedStore, RecordBackend, Table};
use triesync_core::store::{Batch, ItemKey, Kind, Store, StoreError, SyncMeta};

/// Pages read per transaction by whole-store scans (counts, `checkStore`).
pub const SCAN_PAGES: usize = 16;

/// Whether a connection writes (the sync, holding the database's lock) or only reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The one writer: opens the packed store for writing (and cleans up after an
    /// interrupted compaction).
    Writer,
    /// A reader beside a possible writer: never writes, refreshes its view.
    Reader,
}

/// An [`IdbRecords`] shared by every store a reader reopens, noting when a page it was
/// asked for is not there (a compaction deleted it since the runs were read).
#[derive(Debug, Clone)]
pub struct SharedRecords {
    records: Rc<IdbRecords>,
    vanished: Rc<Cell<bool>>,
}

impl RecordBackend for SharedRecords {
    async fn get(&self, table: Table, keys: &[u64]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let out = self.records.get(table, keys).await?;
        if table == Table::Pages && out.iter().any(Option::is_none) {
            self.vanished.set(true);
        }
        Ok(out)
    }
    async fn get_all(&self, table: Table) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        self.records.get_all(table).await
    }
    async fn keys(&self, table: Table) -> Result<Vec<u64>, StoreError> {
        self.records.keys(table).await
    }
    async fn commit(&self, puts: Vec<Put>, deletes: Vec<(Table, u64)>) -> Result<(), StoreError> {
        self.records.commit(puts, deletes).await
    }
}

/// A packed database: its connection and the store over it.
#[derive(Debug)]
pub struct PackedDb {
    records: SharedRecords,
    store: RefCell<Rc<PackedStore<SharedRecords>>>,
    /// A reader's run ids at its last (re)open; `None` for the writer, whose view is
    /// always current.
    runs: Option<RefCell<Vec<u64>>>,
}

impl PackedDb {
    async fn open(records: IdbRecords, role: Role) -> Result<PackedDb, StoreError> {
        let records = SharedRecords {
            records: Rc::new(records),
            vanished: Rc::new(Cell::new(false)),
        };
        let (store, runs) = match role {
            Role::Writer => (
                PackedStore::open(records.clone(), PackedConfig::default()).await?,
                None,
            ),
            Role::Reader => {
                let runs = records.keys(Table::Runs).await?;
                let store =
                    PackedStore::open_reader(records.clone(), PackedConfig::default()).await?;
                (store, Some(RefCell::new(runs)))
            }
        };
        Ok(PackedDb {
            records,
            store: RefCell::new(Rc::new(store)),
            runs,
        })
    }

    /// The store now (an `Rc`, so that no `RefCell` borrow is held across an await).
    fn store(&self) -> Rc<PackedStore<SharedRecords>> {
        self.store.borrow().clone()
    }

    /// The connection.
    pub fn records(&self) -> &IdbRecords {
        &self.records.records
    }
}

/// The store of one database, in its layout.
#[derive(Debug)]
pub enum Db {
    /// One record per item.
    PerItem(IdbStore),
    /// Items packed in pages.
    Packed(PackedDb),
}

impl Db {
    /// Opens (creating if needed) `database` in the global scope's `indexedDB`: an
    /// existing database keeps its layout, a new one gets `wanted` (packed when `None`);
    /// `wanted` set and different from the existing layout is [`Error::LayoutMismatch`].
    pub async fn open(database: &str, wanted: Option<Layout>, role: Role) -> Result<Db, Error> {
        let factory = Factory::new().map_err(|e| {
            Error::Store(StoreError::Backend(format!(
                "indexedDB is not available: {e}"
            )))
        })?;
        Self::open_in(&factory, database, wanted, role).await
    }

    /// As [`Db::open`], in `factory` (a storage bucket's `indexedDB`, ...).
    pub async fn open_in(
        factory: &Factory,
        database: &str,
        wanted: Option<Layout>,
        role: Role,
    ) -> Result<Db, Error> {
        let (db, layout) = layout::open(factory, database, wanted).await?;
        Ok(match layout {
            Layout::PerItem => Db::PerItem(IdbStore::from_database(db, database)),
            Layout::Packed => {
                let records = IdbRecords::from_database(db, database);
                Db::Packed(PackedDb::open(records, role).await?)
            }
        })
    }

    /// Deletes database `name`, whatever its layout (open connections of this crate close
    /// themselves first).
    pub async fn delete(name: &str) -> Result<(), StoreError> {
        IdbStore::delete(name).await
    }

    /// The layout.
    pub fn layout(&self) -> Layout {
        match self {
            Db::PerItem(_) => Layout::PerItem,
            Db::Packed(_) => Layout::Packed,
        }
    }

    /// Closes the connection (also done on drop).
    pub fn close(&self) {
        match self {
            Db::PerItem(s) => s.close(),
            Db::Packed(p) => p.records().close(),
        }
    }

    /// A reader of a packed database reopens its runs if the runs table changed since it
    /// last did; anything else has nothing to do.
    pub async fn refresh(&self) -> Result<(), StoreError> {
        let Db::Packed(p) = self else { return Ok(()) };
        let Some(runs) = &p.runs else { return Ok(()) };
        p.records.vanished.set(false);
        let now = p.records.keys(Table::Runs).await?;
        if *runs.borrow() != now {
            let store =
                PackedStore::open_reader(p.records.clone(), PackedConfig::default()).await?;
            *p.store.borrow_mut() = Rc::new(store);
            *runs.borrow_mut() = now;
        }
        Ok(())
    }

    /// True when a read since the last [`Db::refresh`] found a page of a run gone: the
    /// call that failed is worth another try after a refresh.
    pub fn page_vanished(&self) -> bool {
        match self {
            Db::PerItem(_) => false,
            Db::Packed(p) => p.records.vanished.get(),
        }
    }

    /// Items stored: `(nodes, codes)`. Per-item: the records of each object store.
    /// Packed: from the run descriptors (each knows its item count) and the pages that
    /// may hold codes (keys sort nodes first, so only a run's last node page and its code
    /// pages are read); an item in several runs counts once per run until they merge (a
    /// sync writes every item once).
    pub async fn counts(&self) -> Result<(u64, u64), StoreError> {
        match self {
            Db::PerItem(s) => Ok((s.count(Kind::Node).await?, s.count(Kind::Code).await?)),
            Db::Packed(p) => {
                // A compaction in another connection may delete pages between reading
                // the runs and their pages: read both again.
                for _ in 0..3 {
                    if let Some(counts) = packed_counts(p.records()).await? {
                        return Ok(counts);
                    }
                }
                Err(StoreError::Backend(
                    "counts: the runs kept changing while read".into(),
                ))
            }
        }
    }
}

/// Every run descriptor of a packed database, oldest first.
pub async fn read_runs(records: &IdbRecords) -> Result<Vec<RunDesc>, StoreError> {
    let mut runs = Vec::new();
    for (_, bytes) in records.get_all(Table::Runs).await? {
        runs.push(RunDesc::decode(&bytes)?);
    }
    Ok(by_seq(runs, |r| r.seq))
}

/// The pages `ids` (None where absent) parsed, or the parse error of each.
pub async fn read_pages(
    records: &IdbRecords,
    ids: &[u64],
) -> Result<Vec<Option<Result<Page, StoreError>>>, StoreError> {
    Ok(records
        .get(Table::Pages, ids)
        .await?
        .into_iter()
        .map(|b| b.map(Page::parse))
        .collect())
}

/// `(nodes, codes)` of a packed database, or `None` when a page was gone.
async fn packed_counts(records: &IdbRecords) -> Result<Option<(u64, u64)>, StoreError> {
    let (mut nodes, mut codes) = (0, 0);
    for run in read_runs(records).await? {
        // Pages from the last one that starts with a node key may hold codes.
        let first_code_page = run.pages.partition_point(|p| p.first[0] == 0);
        let from = first_code_page.saturating_sub(1);
        let ids: Vec<u64> = run.pages[from..].iter().map(|p| p.id).collect();
        let mut run_codes = 0;
        for chunk in ids.chunks(SCAN_PAGES) {
            for page in read_pages(records, chunk).await? {
                let Some(page) = page else { return Ok(None) };
                let page = page?;
                run_codes += (0..page.len()).filter(|&i| page.key(i)[0] == 1).count() as u64;
            }
        }
        codes += run_codes;
        nodes += run.items.saturating_sub(run_codes);
    }
    Ok(Some((nodes, codes)))
}

impl Store for Db {
    async fn contains(&self, keys: &[ItemKey]) -> Result<Vec<bool>, StoreError> {
        match self {
            Db::PerItem(s) => s.contains(keys).await,
            Db::Packed(p) => p.store().contains(keys).await,
        }
    }

    async fn get_many(&self, keys: &[ItemKey]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        match self {
            Db::PerItem(s) => s.get_many(keys).await,
            Db::Packed(p) => p.store().get_many(keys).await,
        }
    }

    async fn write(&self, batch: &Batch, meta: &SyncMeta) -> Result<(), StoreError> {
        match self {
            Db::PerItem(s) => s.write(batch, meta).await,
            Db::Packed(p) => {
                // The batch's commit calls the write test hooks, as the per-item write does.
                p.records()
                    .hook_next_commit(Some((batch.items.len(), batch.bytes)));
                let result = p.store().write(batch, meta).await;
                p.records().hook_next_commit(None);
                result
            }
        }
    }

    async fn meta(&self) -> Result<Option<SyncMeta>, StoreError> {
        match self {
            Db::PerItem(s) => s.meta().await,
            // Read, not the store's copy: a reader's may predate the writer's last commit.
            Db::Packed(p) => match p.records.get(Table::Meta, &[META_KEY]).await?.pop() {
                Some(Some(bytes)) => decode_meta(&bytes).map(Some),
                _ => Ok(None),
            },
        }
    }

    async fn frontier(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        match self {
            Db::PerItem(s) => s.frontier().await,
            Db::Packed(p) => p.store().frontier().await,
        }
    }
}
