// Two tabs, one database: only one sync writes at a time (the Web Lock
// `triesync:<database>`). With `lockTimeoutMs` the second tab waits for the first to finish
// and then proceeds; past the timeout it gets LOCKED; without it, LOCKED at once; cancel()
// ends the wait. Batches never interleave: the meta record's counters equal the records
// stored, every record is sound and has its subtree, and both states verify.
//
// Times are taken in the pages (a sleep or a DevTools round trip on a loaded machine says
// nothing about the library): Date.now() is one clock for both tabs, so the order of
// events in different tabs is read from it.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { launchBrowser } from './helpers.mjs';
import { openHarness, startHarness, startSyntheticPeer } from './harness.mjs';

async function start(page, options) {
  await page.evaluate((o) => {
    window.startSync(o);
    window.sync.done.then(() => {
      window.sync.endedAt = Date.now();
    });
    window.sync.startedAt = Date.now();
  }, options);
}

async function result(page, timeout = 120000) {
  await page.waitForFunction(() => window.sync.result !== null && window.sync.endedAt, null, { timeout, polling: 50 });
  return page.evaluate(() => {
    const s = window.sync;
    return { ...s.result, startedAt: s.startedAt, endedAt: s.endedAt, firstAt: s.progress[0]?.at, lastAt: s.progress.at(-1)?.at };
  });
}

/** Waits until the page's sync has asked for the lock of `database` and is queued behind
 *  its holder (navigator.locks sees the requests of every tab of the origin). */
async function waitQueued(page, database) {
  await page.evaluate(async (name) => {
    const deadline = Date.now() + 30000;
    for (;;) {
      const q = await navigator.locks.query();
      if (q.pending.some((l) => l.name === name)) return;
      if (window.sync.result || window.sync.progress.length || Date.now() > deadline) {
        throw new Error(`never queued for ${name}: ${JSON.stringify({ q, result: window.sync.result })}`);
      }
      await new Promise((r) => setTimeout(r, 10));
    }
  }, `triesync:${database}`);
}

const fetched = (report) => report.peers.reduce((n, p) => n + p.items, 0);

test('two tabs on one database: the second waits for the lock (lockTimeoutMs) or gets LOCKED; batches never interleave', async (t) => {
  // With the packed layout the writes hardly slow a sync down, so the peer's delay sets its
  // length: about 4 s for A in step 1 (B queues behind it at once), about 21 s in step 2,
  // where A must outlast B's three attempts (about 1.5 s, far longer on a loaded machine).
  const [big, slow, small] = await Promise.all([
    startSyntheticPeer(['--synthetic', '20k', '--delay-ms', '120']),
    startSyntheticPeer(['--synthetic', '20k', '--delay-ms', '400']),
    startSyntheticPeer(['--synthetic', '3000,seed=2']),
  ]);
  const web = await startHarness();
  const b = await launchBrowser();
  t.after(async () => {
    await b.close();
    await web.close();
    await big.stop();
    await slow.stop();
    await small.stop();
  });
  const tabA = b.page;
  const tabB = await b.context.newPage();
  await openHarness(tabA, web.url);
  await openHarness(tabB, web.url);
  const bigSync = (database, extra = {}) => ({ root: big.root, peers: [big.url, big.wsUrl], database, ...extra });
  const slowSync = (database, extra = {}) => ({ root: slow.root, peers: [slow.url, slow.wsUrl], database, ...extra });
  const smallSync = (database, extra = {}) => ({ root: small.root, peers: [small.url], database, ...extra });
  const waitProgress = (page) => page.waitForFunction(() => window.sync.progress.length > 0, null, { timeout: 60000, polling: 20 });

  // 1. B waits for A, then syncs another state into the same database.
  await start(tabA, bigSync('tabs'));
  await waitProgress(tabA);
  await start(tabB, smallSync('tabs', { lockTimeoutMs: 120000 }));
  await waitQueued(tabB, 'tabs');
  const a = await result(tabA);
  const bRes = await result(tabB);
  assert.equal(a.ok, true, `A: ${a.code} ${a.message}`);
  assert.equal(bRes.ok, true, `B: ${bRes.code} ${bRes.message}`);
  // A reports each commit while it holds the lock, B only once it has it.
  assert.ok(bRes.firstAt >= a.lastAt, `B writes nothing while A holds the lock: B's first commit ${a.lastAt - bRes.firstAt} ms before A's last`);
  assert.ok(bRes.endedAt >= a.endedAt, 'B finished after A');
  assert.equal(bRes.report.complete, true);
  assert.equal(fetched(bRes.report), small.info.nodes + small.info.codes);
  const s = await tabA.evaluate(([d, r]) => window.inspect(d, r), ['tabs', big.root]);
  assert.equal(s.check.sound, true, JSON.stringify(s.check.dangling));
  assert.equal(s.verify.complete, true, 'the first state is complete');
  const total = big.info.nodes + big.info.codes + small.info.nodes + small.info.codes;
  // Shared items (the empty-ish leaves two synthetic states may share) are stored once.
  assert.ok(s.counts.nodes + s.counts.codes <= total);
  assert.equal(s.meta.nodes, s.counts.nodes, 'meta counters = records: no batch lost or doubled');
  assert.equal(s.meta.codes, s.counts.codes);
  assert.equal(s.meta.root, small.root, 'the last writer was B');
  const v2 = await tabB.evaluate(async ([d, r]) => {
    const db = await window.triesync.StateDb.open(d);
    try {
      return await db.verify(r);
    } finally {
      db.close();
    }
  }, ['tabs', small.root]);
  assert.equal(v2.complete, true, 'the second state is complete');

  // 2. A holds the lock of a fresh database: B gets LOCKED at once without lockTimeoutMs,
  //    after the timeout with it, and CANCELLED when it cancels the wait. The durations
  //    are the runs' own (in B's page, from run() to its end).
  await start(tabA, slowSync('tabs2'));
  await waitProgress(tabA);
  await start(tabB, slowSync('tabs2'));
  const now = await result(tabB, 10000);
  assert.equal(now.code, 'LOCKED', `${now.code} ${now.message}`);
  // No timer runs: one request to the lock manager (with room for a descheduled page).
  assert.ok(now.ms < 1000, `LOCKED at once: ${now.ms} ms`);
  await start(tabB, slowSync('tabs2', { lockTimeoutMs: 700 }));
  const later = await result(tabB, 10000);
  assert.equal(later.code, 'LOCKED', `${later.code} ${later.message}`);
  assert.ok(later.ms >= 650 && later.ms < 3000, `LOCKED after the timeout: ${later.ms} ms`);
  await start(tabB, slowSync('tabs2', { lockTimeoutMs: 60000 }));
  // Cancel once B is queued for the lock, timed from the cancel() call itself.
  await waitQueued(tabB, 'tabs2');
  const cancelAfter = await tabB.evaluate(() => {
    const at = performance.now();
    window.sync.handle.cancel();
    return at - window.sync.started;
  });
  const cancelled = await result(tabB, 10000);
  assert.equal(cancelled.code, 'CANCELLED', `${cancelled.code} ${cancelled.message}`);
  const cancelMs = cancelled.ms - cancelAfter;
  assert.ok(cancelMs < 1000, `cancel ends the wait: settled ${cancelMs} ms after cancel()`);
  // A's slow sync only gets slower on a loaded machine: give it time.
  const a2 = await result(tabA, 300000);
  assert.equal(a2.ok, true, `A: ${a2.code} ${a2.message}`);
  // B's attempts ended while A ran: none waited for A, and A went on undisturbed.
  assert.ok(cancelled.endedAt < a2.endedAt, `A was still running all along: B's last attempt ended ${cancelled.endedAt - a2.endedAt} ms after A`);
  const s2 = await tabA.evaluate(([d, r]) => window.inspect(d, r), ['tabs2', slow.root]);
  assert.equal(s2.check.sound, true);
  assert.equal(s2.verify.complete, true);
  assert.equal(s2.meta.nodes, s2.counts.nodes);
  assert.equal(s2.counts.nodes, slow.info.nodes);
  // The lock is free again: B syncs into it at once (nothing left to fetch).
  await start(tabB, slowSync('tabs2'));
  const after = await result(tabB);
  assert.equal(after.ok, true, `${after.code} ${after.message}`);
  assert.equal(fetched(after.report), 0);
  console.log(
    `B waited ${Math.round(bRes.ms)} ms for A; LOCKED at once in ${Math.round(now.ms)} ms, after ${Math.round(later.ms)} ms ` +
      `with lockTimeoutMs 700; cancel settled in ${Math.round(cancelMs)} ms; A ran ${Math.round(a2.ms)} ms in step 2, ` +
      `${a2.endedAt - cancelled.endedAt} ms past B's last attempt`,
  );
});
