// The demo's Web Worker: every triesync call of the page runs here, so neither the sync
// (hashing, decoding, IndexedDB writes) nor a lookup ever blocks the page.
//
// Messages in:  { id, op, ...args }   ops: start, pause, status, account, storage, verify, delete
// Messages out: { id, ok: true, value } / { id, ok: false, error }   answers to an op
//               { event: 'progress', progress }                       after every commit
//               { event: 'finished', report, verify }                 the sync completed
//               { event: 'stopped', error, progress }                 paused or failed

import init, { StateSync, StateDb } from 'triesync';

const ready = init();
/** The running sync, if any. */
let sync = null;
/** Open StateDb connections by database name. */
const dbs = new Map();

function errorToPlain(e) {
  return {
    code: e && e.code ? String(e.code) : 'ERROR',
    message: e && e.message ? String(e.message) : String(e),
    name: e && e.name ? String(e.name) : 'Error',
  };
}

async function db(name) {
  let d = dbs.get(name);
  if (!d) {
    d = StateDb.open(name);
    dbs.set(name, d);
    d.catch(() => dbs.delete(name));
  }
  return d;
}

function timed(promise) {
  const t0 = performance.now();
  return promise.then((value) => ({ value, ms: performance.now() - t0 }));
}

const ops = {
  async start({ root, peers, database, batchBytes }) {
    if (sync) throw Object.assign(new Error('a sync is already running'), { code: 'ALREADY_STARTED' });
    const d = await db(database);
    const meta = await d.meta();
    const s = new StateSync({
      root,
      peers,
      database,
      ...(batchBytes ? { batchBytes } : {}),
      onProgress: (progress) => postMessage({ event: 'progress', progress }),
    });
    sync = s;
    // run() resolves after the last commit; report it with a full re-verification.
    s.run().then(
      async (report) => {
        sync = null;
        let verify = null;
        try {
          verify = await d.verify(root);
        } catch (e) {
          verify = { error: errorToPlain(e) };
        }
        postMessage({ event: 'finished', report, verify });
      },
      (e) => {
        sync = null;
        postMessage({ event: 'stopped', error: errorToPlain(e), progress: e && e.progress ? e.progress : s.progress ?? null });
      },
    );
    return { meta };
  },

  pause() {
    if (sync) sync.cancel();
    return { paused: Boolean(sync) };
  },

  async status({ database }) {
    const d = await db(database);
    const [meta, counts] = await Promise.all([d.meta(), d.counts()]);
    return { meta, counts, running: Boolean(sync) };
  },

  async verify({ database, root }) {
    return timed((await db(database)).verify(root));
  },

  async account({ database, root, address }) {
    const d = await db(database);
    const t0 = performance.now();
    const account = await d.account(root, address);
    const code = account ? await d.code(root, address) : null;
    return {
      account: account && { ...account, balance: account.balance.toString() },
      codeSize: code ? code.length : null,
      ms: performance.now() - t0,
    };
  },

  async storage({ database, root, address, slot }) {
    return timed((await db(database)).storage(root, address, slot));
  },

  async delete({ database }) {
    if (sync) throw Object.assign(new Error('pause the sync before deleting its database'), { code: 'BUSY' });
    const d = dbs.get(database);
    dbs.delete(database);
    if (d) {
      try {
        (await d).close();
      } catch {
        // A connection that failed to open needs no closing.
      }
    }
    await StateDb.deleteDatabase(database);
    return { deleted: database };
  },
};

self.onmessage = async ({ data }) => {
  const { id, op } = data;
  try {
    await ready;
    if (!ops[op]) throw new Error(`unknown op ${op}`);
    const value = await ops[op](data);
    postMessage({ id, ok: true, value });
  } catch (e) {
    postMessage({ id, ok: false, error: errorToPlain(e) });
  }
};
