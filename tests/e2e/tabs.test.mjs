// Two tabs, one database: only one sync writes at a time (the Web Lock
// `triesync:<database>`). With `lockTimeoutMs` the second tab waits for the first to finish
// and then proceeds; past the timeout it gets LOCKED; without it, LOCKED at once; cancel()
// ends the wait. Batches never interleave: the meta record's counters equal the records
// stored, every record is sound and has its subtree, and both states verify.

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
  return page.evaluate(() => ({ ...window.sync.result, startedAt: window.sync.startedAt, endedAt: window.sync.endedAt }));
}

const fetched = (report) => report.peers.reduce((n, p) => n + p.items, 0);

test('two tabs on one database: the second waits for the lock (lockTimeoutMs) or gets LOCKED; batches never interleave', async (t) => {
  // A's sync must outlast B's three attempts in step 2 (about 1.5 s): with the packed
  // layout the writes no longer slow it down, so the peer does.
  const big = await startSyntheticPeer(['--synthetic', '20k', '--delay-ms', '120']);
  const small = await startSyntheticPeer(['--synthetic', '3000,seed=2']);
  const web = await startHarness();
  const b = await launchBrowser();
  t.after(async () => {
    await b.close();
    await web.close();
    await big.stop();
    await small.stop();
  });
  const tabA = b.page;
  const tabB = await b.context.newPage();
  await openHarness(tabA, web.url);
  await openHarness(tabB, web.url);
  const bigSync = (database, extra = {}) => ({ root: big.root, peers: [big.url, big.wsUrl], database, ...extra });
  const smallSync = (database, extra = {}) => ({ root: small.root, peers: [small.url], database, ...extra });
  const waitProgress = (page) => page.waitForFunction(() => window.sync.progress.length > 0, null, { timeout: 60000, polling: 20 });

  // 1. B waits for A, then syncs another state into the same database.
  await start(tabA, bigSync('tabs'));
  await waitProgress(tabA);
  await start(tabB, smallSync('tabs', { lockTimeoutMs: 120000 }));
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(await tabB.evaluate(() => window.sync.progress.length), 0, 'B writes nothing while A holds the lock');
  const a = await result(tabA);
  const bRes = await result(tabB);
  assert.equal(a.ok, true, `A: ${a.code} ${a.message}`);
  assert.equal(bRes.ok, true, `B: ${bRes.code} ${bRes.message}`);
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
  //    after the timeout with it, and CANCELLED when it cancels the wait.
  await start(tabA, bigSync('tabs2'));
  await waitProgress(tabA);
  await start(tabB, bigSync('tabs2'));
  const now = await result(tabB, 10000);
  assert.equal(now.code, 'LOCKED', `${now.code} ${now.message}`);
  assert.ok(now.ms < 500, `LOCKED at once: ${now.ms} ms`);
  await start(tabB, bigSync('tabs2', { lockTimeoutMs: 700 }));
  const later = await result(tabB, 10000);
  assert.equal(later.code, 'LOCKED', `${later.code} ${later.message}`);
  assert.ok(later.ms >= 650 && later.ms < 3000, `LOCKED after the timeout: ${later.ms} ms`);
  await start(tabB, bigSync('tabs2', { lockTimeoutMs: 60000 }));
  await new Promise((r) => setTimeout(r, 300));
  await tabB.evaluate(() => window.sync.handle.cancel());
  const cancelled = await result(tabB, 10000);
  assert.equal(cancelled.code, 'CANCELLED', `${cancelled.code} ${cancelled.message}`);
  assert.ok(cancelled.ms < 2000, `cancel ends the wait: ${cancelled.ms} ms`);
  assert.equal(await tabA.evaluate(() => window.sync.result), null, 'A was still running all along');
  const a2 = await result(tabA);
  assert.equal(a2.ok, true);
  const s2 = await tabA.evaluate(([d, r]) => window.inspect(d, r), ['tabs2', big.root]);
  assert.equal(s2.check.sound, true);
  assert.equal(s2.verify.complete, true);
  assert.equal(s2.meta.nodes, s2.counts.nodes);
  assert.equal(s2.counts.nodes, big.info.nodes);
  // The lock is free again: B syncs into it at once (nothing left to fetch).
  await start(tabB, bigSync('tabs2'));
  const after = await result(tabB);
  assert.equal(after.ok, true, `${after.code} ${after.message}`);
  assert.equal(fetched(after.report), 0);
  console.log(`B waited ${Math.round(bRes.ms)} ms for A; LOCKED after ${Math.round(later.ms)} ms with lockTimeoutMs 700`);
});
