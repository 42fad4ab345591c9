//! Which storage layout a database has, and opening it with that layout's schema.
//!
//! Two layouts: `packed` (the default: [`PackedStore`](triesync_core::packed::PackedStore)
//! over [`IdbRecords`](crate::idb_records::IdbRecords), object stores `pages`, `runs`,
//! `meta`) and `per-item` (the first one, [`IdbStore`](crate::idb_store::IdbStore): `nodes`,
//! `code`, `meta`). A database's object store names say which it has, so a wallet's
//! database created before packed became the default keeps its layout.
//!
//! Detection opens the database WITHOUT a version, which for a database that does not
//! exist yet creates it at version 1 with no object stores. So the detection's own
//! `upgradeneeded` handler (it fires only for that new database) creates the wanted
//! layout's schema: no empty version-1 database is left that a versioned open could not
//! upgrade, and two contexts creating one database at once cannot race (the second open
//! waits for the first's upgrade, then sees its stores). `indexedDB.databases()` would
//! need a second round trip and leaves that race open. A database that exists without
//! any object store (made by something else) is upgraded to the next version to get the
//! schema.

use crate::error::Error;
use idb::{DatabaseEvent, Factory};
use triesync_core::store::StoreError;
use web_sys::IdbDatabase;

/// A database's storage layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Items packed many to a ~64 KiB record (an LSM of sorted runs): the default.
    Packed,
    /// One record per trie node or code.
    PerItem,
}

impl Layout {
    /// The name of the `layout` option and of `meta().layout`.
    pub fn name(self) -> &'static str {
        match self {
            Layout::Packed => "packed",
            Layout::PerItem => "per-item",
        }
    }

    /// The layout named `s` (`'packed'` or `'per-item'`).
    pub fn parse(s: &str) -> Result<Layout, Error> {
        match s {
            "packed" => Ok(Layout::Packed),
            "per-item" => Ok(Layout::PerItem),
            _ => Err(Error::invalid(format!(
                "layout must be 'packed' or 'per-item', not {s:?}"
            ))),
        }
    }

    /// The `layout` property of an options object, if set (undefined/null: not set).
    pub fn from_options(options: &wasm_bindgen::JsValue) -> Result<Option<Layout>, Error> {
        if !options.is_object() {
            return Ok(None);
        }
        let v = crate::interop::get(options, "layout");
        if v.is_undefined() || v.is_null() {
            return Ok(None);
        }
        let s = v
            .as_string()
            .ok_or_else(|| Error::invalid("layout must be a string"))?;
        Layout::parse(&s).map(Some)
    }

    /// Creates this layout's object stores (in an upgrade).
    fn create_schema(self, db: &idb::Database) {
        match self {
            Layout::Packed => crate::idb_records::IdbRecords::create_schema(db),
            Layout::PerItem => crate::idb_store::IdbStore::create_schema(db),
        }
    }

    /// The layout whose object stores `names` are; `Ok(None)` for no stores at all.
    fn of_stores(names: &[String], database: &str) -> Result<Option<Layout>, Error> {
        let has = |n: &str| names.iter().any(|x| x == n);
        if names.is_empty() {
            Ok(None)
        } else if has("pages") && has("runs") && has("meta") {
            Ok(Some(Layout::Packed))
        } else if has("nodes") && has("code") && has("meta") {
            Ok(Some(Layout::PerItem))
        } else {
            Err(Error::Store(StoreError::Backend(format!(
                "database {database:?} is not a triesync database (object stores: {})",
                names.join(", ")
            ))))
        }
    }
}

fn open_error(e: idb::Error) -> Error {
    match e {
        idb::Error::DomException(d) if d.name() == "QuotaExceededError" => {
            Error::Store(StoreError::QuotaExceeded)
        }
        idb::Error::DomException(d) => Error::Store(StoreError::Backend(format!(
            "open: {}: {}",
            d.name(),
            d.message()
        ))),
        other => Error::Store(StoreError::Backend(format!("open: {other}"))),
    }
}

/// Opens `database` in `factory`: an existing one keeps its layout, a new one is created
/// with `wanted` (packed when `None`). With `wanted` set and the database of the other
/// layout, fails with [`Error::LayoutMismatch`] and changes nothing.
pub async fn open(
    factory: &Factory,
    database: &str,
    wanted: Option<Layout>,
) -> Result<(IdbDatabase, Layout), Error> {
    let create = wanted.unwrap_or(Layout::Packed);
    let mut request = factory.open(database, None).map_err(open_error)?;
    request.on_upgrade_needed(move |event| {
        // Without a version, an upgrade happens only when the database is new.
        if let Ok(db) = event.database() {
            create.create_schema(&db);
        }
    });
    let mut db = request.await.map_err(open_error)?;
    let layout = match Layout::of_stores(&db.store_names(), database) {
        Ok(Some(layout)) => layout,
        Ok(None) => {
            // Exists with no stores: one version up, with the schema.
            let version = db.version().map_err(open_error)?;
            db.close();
            let mut request = factory
                .open(database, Some(version + 1))
                .map_err(open_error)?;
            request.on_upgrade_needed(move |event| {
                if let Ok(db) = event.database() {
                    create.create_schema(&db);
                }
            });
            db = request.await.map_err(open_error)?;
            match Layout::of_stores(&db.store_names(), database) {
                Ok(Some(layout)) => layout,
                Ok(None) => {
                    db.close();
                    return Err(Error::Store(StoreError::Backend(format!(
                        "database {database:?}: its object stores could not be created"
                    ))));
                }
                Err(e) => {
                    db.close();
                    return Err(e);
                }
            }
        }
        Err(e) => {
            db.close();
            return Err(e);
        }
    };
    if let Some(wanted) = wanted {
        if wanted != layout {
            db.close();
            return Err(Error::LayoutMismatch {
                database: database.to_string(),
                existing: layout.name(),
                wanted: wanted.name(),
            });
        }
    }
    Ok((db.into(), layout))
}
