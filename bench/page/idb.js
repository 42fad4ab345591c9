// Small promise helpers over the raw IndexedDB API, shared by the JS peer loop and the
// ceiling measurements (plain JavaScript, no library: the ceiling is what the browser does).

/** Resolves with the request's result, rejects with its error. */
export function request(req) {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

/** Resolves when `tx` commits; rejects when it aborts (a failed put, a full disk). */
export function done(tx) {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onabort = () => reject(tx.error ?? new Error('transaction aborted'));
    tx.onerror = () => {};
  });
}

/** Deletes database `name` (waits while another connection still holds it open). */
export function deleteDb(name) {
  return new Promise((resolve, reject) => {
    const req = indexedDB.deleteDatabase(name);
    req.onsuccess = () => resolve();
    req.onerror = () => reject(req.error);
  });
}

/** Opens (creating) database `name` with these object stores (out-of-line keys). */
export function openDb(name, stores) {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(name, 1);
    req.onupgradeneeded = () => {
      for (const s of stores) {
        if (!req.result.objectStoreNames.contains(s)) req.result.createObjectStore(s);
      }
    };
    req.onsuccess = () => {
      const db = req.result;
      db.onversionchange = () => db.close();
      resolve(db);
    };
    req.onerror = () => reject(req.error);
    req.onblocked = () => reject(new Error(`open ${name}: blocked`));
  });
}

/** Opens an existing database at its current version, creating nothing. */
export function openExisting(name) {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(name);
    req.onsuccess = () => {
      const db = req.result;
      db.onversionchange = () => db.close();
      resolve(db);
    };
    req.onerror = () => reject(req.error);
  });
}

/** Every [key, value] of `store`, read in pages of `page` records. */
export async function readAll(db, store, page = 20000) {
  const out = [];
  let range = null;
  for (;;) {
    const tx = db.transaction(store, 'readonly');
    const os = tx.objectStore(store);
    const [keys, values] = await Promise.all([
      request(os.getAllKeys(range, page)),
      request(os.getAll(range, page)),
    ]);
    for (let i = 0; i < keys.length; i++) out.push([new Uint8Array(keys[i]), new Uint8Array(values[i])]);
    if (keys.length < page) return out;
    range = IDBKeyRange.lowerBound(keys[keys.length - 1], true);
  }
}
