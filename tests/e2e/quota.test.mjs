// Storage quota: the origin's quota is made small through the DevTools protocol
// (Storage.overrideQuotaForOrigin), and a sync through the public JS API of the npm
// package runs out of it:
//   - it ends with a TriesyncError of code QUOTA_EXCEEDED carrying its last progress;
//   - progress events carried `storage` ({ usage, quota } from navigator.storage.estimate());
//   - the database is consistent (checkStore: every record sound and with its subtree;
//     verify: nothing corrupt; meta counters = records stored);
//   - once the quota is lifted, a new sync resumes and completes, fetching only what was
//     missing.
// Also StateSync.persist() and StateSync.estimateStorage(). (Chromium's
// navigator.storage.estimate() reports a fixed quota to pages, not the override; the usage
// is real.)

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { launchBrowser } from './helpers.mjs';
import { openHarness, startHarness, startSyntheticPeer } from './harness.mjs';

const DATABASE = 'quota';
const QUOTA = 1_500_000;

async function runSync(page, options) {
  await page.evaluate((o) => window.startSync(o), options);
  await page.waitForFunction(() => window.sync.result !== null, null, { timeout: 120000, polling: 100 });
  return page.evaluate(() => ({ ...window.sync.result, errorProgress: window.sync.result.progress, progress: window.sync.progress }));
}

async function inspect(page, root) {
  const s = await page.evaluate(([d, r]) => window.inspect(d, r), [DATABASE, root]);
  assert.equal(s.check.sound, true, `checkStore: ${JSON.stringify({ ...s.check, nodes: undefined })}`);
  assert.deepEqual(s.verify.corrupt, []);
  if (s.meta) {
    assert.equal(s.meta.nodes, s.counts.nodes, 'meta.nodes vs records');
    assert.equal(s.meta.codes, s.counts.codes, 'meta.codes vs records');
  }
  return s;
}

test('a sync out of quota fails with QUOTA_EXCEEDED, stays consistent, and resumes once the quota is lifted', async (t) => {
  const peer = await startSyntheticPeer(['--synthetic', '20k']);
  const web = await startHarness();
  const b = await launchBrowser();
  t.after(async () => {
    await b.close();
    await web.close();
    await peer.stop();
  });
  const { page, context } = b;
  const total = peer.info.nodes + peer.info.codes;
  const root = peer.root;
  const peers = [peer.url, peer.wsUrl];
  await openHarness(page, web.url);
  const cdp = await context.newCDPSession(page);
  await cdp.send('Storage.overrideQuotaForOrigin', { origin: web.origin, quotaSize: QUOTA });

  const storage = await page.evaluate(async () => ({
    persisted: await window.triesync.StateSync.persist(),
    estimate: await window.triesync.StateSync.estimateStorage(),
  }));
  assert.equal(typeof storage.persisted, 'boolean', 'persist() resolves with a boolean');
  // Chromium reports a fixed quota to pages (no fingerprinting of the disk size), not the
  // override; the override is what writes are held to, as the DevTools protocol shows.
  assert.ok(storage.estimate.quota > 0, `estimateStorage(): ${JSON.stringify(storage.estimate)}`);
  assert.equal(typeof storage.estimate.usage, 'number');
  const overridden = await cdp.send('Storage.getUsageAndQuota', { origin: web.origin });
  assert.equal(overridden.quota, QUOTA);

  // 1. Out of quota: a typed error, with the last progress.
  const failed = await runSync(page, { root, peers, database: DATABASE });
  assert.equal(failed.ok, false, 'the sync ran out of quota');
  assert.equal(failed.code, 'QUOTA_EXCEEDED', `${failed.code}: ${failed.message}`);
  assert.ok(failed.progress.length > 0, 'some batches were committed before the quota ran out');
  for (const p of failed.progress) {
    assert.ok(p.storage, 'progress carries storage');
    assert.ok(p.storage.quota > 0 && p.storage.usage >= 0, JSON.stringify(p.storage));
  }
  const usages = failed.progress.map((p) => p.storage.usage);
  assert.ok(usages[usages.length - 1] > 0, `usage grows as batches land: ${usages}`);
  assert.ok(failed.errorProgress?.storage, 'the error carries the last progress, with storage');

  // 2. Consistent: what was committed is sound, nothing half-written.
  const partial = await inspect(page, root);
  const stored = partial.counts.nodes + partial.counts.codes;
  assert.ok(stored > 0 && stored < total, `stored ${stored} of ${total}`);
  assert.equal(partial.verify.complete, false);
  assert.ok(partial.meta && !partial.meta.complete);

  // 3. Lifted: the sync resumes and completes, fetching only what was missing.
  await cdp.send('Storage.overrideQuotaForOrigin', { origin: web.origin });
  const done = await runSync(page, { root, peers, database: DATABASE });
  assert.equal(done.ok, true, `resume: ${done.code} ${done.message}`);
  assert.equal(done.report.complete, true);
  const fetched = done.report.peers.reduce((n, p) => n + p.items, 0);
  assert.ok(fetched <= total - stored + 16, `fetched ${fetched} with ${stored} of ${total} stored`);
  assert.ok(done.report.storage.usage > usages[usages.length - 1], `the final report has a fresh estimate: ${JSON.stringify(done.report.storage)}`);
  const end = await inspect(page, root);
  assert.equal(end.verify.complete, true);
  assert.equal(end.counts.nodes + end.counts.codes, total);
  console.log(
    `quota ${QUOTA}: stopped with ${stored} of ${total} items stored (usage ${usages[usages.length - 1]}), ` +
      `resumed and fetched ${fetched}`,
  );
});
