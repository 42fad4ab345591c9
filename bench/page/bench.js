// The in-page half of `npm run bench` (bench/run.mjs drives it through Playwright): each
// function runs one measurement in this page and resolves with a small JSON summary.
// A sync runs in a fresh page each time, so its wasm instance's memory starts from zero.

import { deleteDb, done, openDb, openExisting, readAll } from './idb.js';
import { jsLoopSync } from './jsloop.js';

const KIB = 1024;

/** Samples wasm linear memory and the JS heap every `intervalMs` and on demand. */
function memorySampler(wasmMemory, intervalMs) {
  const samples = [];
  const take = (items) =>
    samples.push({
      t: performance.now(),
      items,
      wasm: wasmMemory ? wasmMemory.buffer.byteLength : 0,
      heap: performance.memory ? performance.memory.usedJSHeapSize : 0,
    });
  take(0);
  const id = setInterval(() => take(null), intervalMs);
  return {
    take,
    /** Peak wasm memory and JS heap overall and in each quarter of the run by items
     *  committed (is memory growing with what is already written?). */
    stop(total) {
      clearInterval(id);
      take(total);
      // Interval samples carry the items committed at their time.
      let last = 0;
      for (const s of samples) {
        if (s.items === null) s.items = last;
        else last = s.items;
      }
      const quarters = [0, 1, 2, 3].map((q) => {
        const inQ = samples.filter((s) => {
          const f = total ? s.items / total : 1;
          return q === 3 ? f > 0.75 : f > q / 4 && f <= (q + 1) / 4;
        });
        return {
          wasm: Math.max(0, ...inQ.map((s) => s.wasm)),
          heap: Math.max(0, ...inQ.map((s) => s.heap)),
          samples: inQ.length,
        };
      });
      return {
        peakWasm: Math.max(...samples.map((s) => s.wasm)),
        peakHeap: Math.max(...samples.map((s) => s.heap)),
        startWasm: samples[0].wasm,
        startHeap: samples[0].heap,
        quarters,
        samples: samples.length,
      };
    },
  };
}

function gc() {
  if (typeof globalThis.gc === 'function') globalThis.gc();
}

let triesync = null;
async function loadTriesync() {
  if (!triesync) {
    const mod = await import('triesync');
    const wasm = await mod.default();
    triesync = { mod, memory: wasm.memory };
  }
  return triesync;
}

/** One triesync sync from `peer` into a new database, in `layout` ('packed' or
 *  'per-item'; the library's default when not given). */
async function triesyncSync({ peer, root, database, layout = null, sampleMs = 100, check = false }) {
  const { mod, memory } = await loadTriesync();
  await mod.StateDb.deleteDatabase(database);
  gc();
  const mem = memorySampler(memory, sampleMs);
  let commits = 0;
  const t0 = performance.now();
  const sync = new mod.StateSync({
    root,
    peers: [peer],
    database,
    ...(layout ? { layout } : {}),
    onProgress: (p) => {
      commits++;
      mem.take(p.nodes + p.codes);
    },
  });
  const report = await sync.run();
  const wallMs = performance.now() - t0;
  const memory_ = mem.stop(report.nodes + report.codes);
  let counts = null;
  let dbLayout = null;
  if (check) {
    // Opened without a layout: the database's own.
    const db = await mod.StateDb.open(database);
    counts = await db.counts();
    dbLayout = typeof db.layout === 'string' ? db.layout : ((await db.meta())?.layout ?? null);
    db.close();
  }
  const { peers, ...rest } = report;
  // The layout the database was written in.
  return { wallMs, report: { ...rest, peers: peers.map(({ id, ...p }) => p) }, commits, memory: memory_, counts, layout: dbLayout };
}

/** The JS peer loop into a new database. */
async function jsLoop({ peer, root, database, sampleMs = 100 }) {
  await deleteDb(database);
  gc();
  const mem = memorySampler(null, sampleMs);
  const t0 = performance.now();
  const r = await jsLoopSync({ peer, root, database, onCommit: (items) => mem.take(items) });
  const wallMs = performance.now() - t0;
  return { wallMs, ...r, memory: mem.stop(r.items) };
}

// ---- The ceiling: raw IndexedDB writes of the same node set -------------------------

/** The node set, read back from a database triesync filled: [kind, key, value][]. */
let nodeSet = null;

/** Deterministic shuffle (xorshift32): the order of keys matters to LevelDB's compaction,
 *  and a sync writes hashes in no key order, so neither does the ceiling. */
function shuffle(a, seed = 0x9e3779b9) {
  let x = seed >>> 0;
  for (let i = a.length - 1; i > 0; i--) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    const j = x % (i + 1);
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

async function loadNodeSet({ database }) {
  const db = await openExisting(database);
  const nodes = await readAll(db, 'nodes');
  const codes = await readAll(db, 'code');
  db.close();
  nodeSet = shuffle([...nodes.map(([k, v]) => ['nodes', k, v]), ...codes.map(([k, v]) => ['code', k, v])]);
  let bytes = 0;
  for (const [, , v] of nodeSet) bytes += v.length;
  return { items: nodeSet.length, nodes: nodes.length, codes: codes.length, bytes };
}

/** One put per item, binary 32-byte keys, a transaction per ~`batchBytes`, awaited one
 *  after the other: what triesync's store does, without anything else. */
async function ceilingPerItem(db, batchBytes) {
  let tx = null;
  let size = 0;
  let txs = 0;
  let stores = null;
  for (const [kind, key, value] of nodeSet) {
    if (!tx) {
      tx = db.transaction(['nodes', 'code'], 'readwrite');
      stores = { nodes: tx.objectStore('nodes'), code: tx.objectStore('code') };
    }
    stores[kind].put(value, key);
    size += value.length;
    if (size >= batchBytes) {
      await done(tx);
      txs++;
      tx = null;
      size = 0;
    }
  }
  if (tx) {
    await done(tx);
    txs++;
  }
  return { transactions: txs, records: nodeSet.length };
}

/** The same bytes packed into records of about `recordBytes` (one record, one
 *  transaction): [u32 count][count × (32-byte key, u32 length)][values...], keyed by a
 *  sequence number. `under`: stay below recordBytes (Chromium's 64 KiB blob-wrapping
 *  threshold) instead of passing it. The packing (copies) is timed too. */
async function ceilingPacked(db, recordBytes, under) {
  let records = 0;
  let start = 0;
  const n = nodeSet.length;
  while (start < n) {
    // Pick the items of this record.
    let end = start;
    let size = 4;
    while (end < n) {
      const add = 36 + nodeSet[end][2].length;
      if (under && end > start && size + add > recordBytes) break;
      size += add;
      end++;
      if (!under && size >= recordBytes) break;
    }
    const rec = new Uint8Array(size);
    const view = new DataView(rec.buffer);
    view.setUint32(0, end - start);
    let idx = 4;
    let off = 4 + 36 * (end - start);
    for (let i = start; i < end; i++) {
      const [, key, value] = nodeSet[i];
      rec.set(key, idx);
      view.setUint32(idx + 32, value.length);
      idx += 36;
      rec.set(value, off);
      off += value.length;
    }
    const tx = db.transaction('packed', 'readwrite');
    tx.objectStore('packed').put(rec, records);
    await done(tx);
    records++;
    start = end;
  }
  return { transactions: records, records };
}

async function ceiling({ variant, database, batchBytes = 100 * KIB }) {
  if (!nodeSet) throw new Error('loadNodeSet first');
  await deleteDb(database);
  const db = await openDb(database, ['nodes', 'code', 'packed']);
  gc();
  const t0 = performance.now();
  let r;
  if (variant === 'per-item') r = await ceilingPerItem(db, batchBytes);
  else if (variant === 'packed-64k') r = await ceilingPacked(db, 64 * KIB - 512, true);
  else if (variant === 'packed-100k') r = await ceilingPacked(db, 100 * KIB, false);
  else throw new Error(`unknown variant ${variant}`);
  const wallMs = performance.now() - t0;
  db.close();
  await deleteDb(database);
  let bytes = 0;
  for (const [, , v] of nodeSet) bytes += v.length;
  return { wallMs, items: nodeSet.length, bytes, ...r };
}

// ---- The core alone, compiled to wasm -------------------------------------------------

async function coreWasm({ variant, accounts, runs }) {
  const base = `/bench-core/${variant}/`;
  const mod = await import(`${base}triesync_bench_core.js`);
  await mod.default({ module_or_path: `${base}triesync_bench_core_bg.wasm` });
  return JSON.parse(await mod.runCoreBench(accounts, runs));
}

async function deleteDatabase({ database }) {
  await deleteDb(database);
}

/** Deletes a database triesync wrote (whatever its layout), through the library. */
async function deleteTriesyncDatabase({ database }) {
  const { mod } = await loadTriesync();
  await mod.StateDb.deleteDatabase(database);
}

window.bench = { triesyncSync, jsLoop, loadNodeSet, ceiling, coreWasm, deleteDatabase, deleteTriesyncDatabase };
window.benchReady = true;
