// End-to-end tests of the demo page (dist/, built by `npm run build`) in headless Chromium
// against the real reference peer serving fixtures/mainnet-genesis.json on 127.0.0.1.
//
//   node --test tests/e2e/

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import {
  ROOT_DIR, ensureArtifacts, launchBrowser, loadFixture, startPeer, startStatic, until,
} from './helpers.mjs';

const DIST = path.join(ROOT_DIR, 'dist');
const fixture = loadFixture();
// The largest genesis allocation (a fractional ETH amount) and one ordinary account.
const RICH = '0x5abfec25f74cd88437631a7731906932776356f9';
const PRESALE = '0x000d836201318ec6899a67540690382780743280';

let web;

before(async () => {
  assert.ok(fs.existsSync(path.join(DIST, 'index.html')), 'dist/ is missing: npm run build');
  web = await startStatic(DIST);
});

after(async () => {
  await web?.close();
});

function pageUrl(peers, database = 'e2e') {
  const q = new URLSearchParams();
  for (const p of peers) q.append('peer', p);
  q.set('database', database);
  return `${web.url}?${q}`;
}

const phase = (page) => page.evaluate(() => window.triesyncDemo.phase);

/** Counts every WebAssembly compile or instantiation on the page itself (not in workers:
 *  an init script runs in the page's frames only). */
function countPageWasm(page) {
  return page.addInitScript(() => {
    window.pageWasmCalls = 0;
    for (const name of ['compile', 'compileStreaming', 'instantiate', 'instantiateStreaming']) {
      const orig = WebAssembly[name];
      WebAssembly[name] = function (...args) {
        window.pageWasmCalls += 1;
        return orig.apply(this, args);
      };
    }
  });
}

/** The state pills of the peer table. */
const pills = (page) => page.locator('#peers-body .pill').allTextContents();

/** The figures of the stats panel. */
const stats = (page) => page.evaluate(() => Object.fromEntries(
  ['nodes', 'bytes', 'bytes-sub', 'codes', 'codes-sub', 'rate', 'rate-sub', 'eta', 'eta-sub']
    .map((k) => [k, document.getElementById(`stat-${k}`).textContent]),
));

const DURATION = /^\d+ ms$|^\d+\.\d s$|^\d+ min \d\d s$|^\d+ h \d\d min$/;

async function waitReady(page) {
  await page.waitForSelector('body[data-ready="true"]', { timeout: 30000 });
}

async function waitPhase(page, wanted, timeout = 60000) {
  await page.waitForFunction(
    (w) => w.includes(window.triesyncDemo.phase) || window.triesyncDemo.phase === 'error',
    wanted,
    { timeout },
  );
  const p = await phase(page);
  if (!wanted.includes(p)) {
    const err = await page.textContent('#error');
    throw new Error(`the page stopped in phase ${p}: ${err}`);
  }
}

/** Starts a slow peer (every answer delayed `delayMs`, so that a sync is still running
 *  while a test acts on it: the trie's depth, not its size, sets the round trips, about 48
 *  in two lanes, so the whole sync takes about 7 s at 250 ms, 11 s at 400 ms and 16 s at
 *  600 ms) and a browser, both closed after test `t`; opens the page on
 *  `database`, starts the sync, waits until it is syncing and, if `nodes` is given, until
 *  that many nodes are stored. */
async function startSlowSync(t, database, nodes, { delayMs = 250 } = {}) {
  const peer = await startPeer(['--delay-ms', String(delayMs)]);
  const b = await launchBrowser();
  t.after(async () => {
    await b.close();
    await peer.stop();
  });
  const { page } = b;
  await page.goto(pageUrl([peer.url], database));
  await waitReady(page);
  await page.click('#start');
  await waitPhase(page, ['syncing']);
  if (nodes !== undefined) {
    await page.waitForFunction((n) => (window.triesyncDemo.progress?.nodes ?? 0) >= n, nodes, { timeout: 60000 });
  }
  return { peer, b, page };
}

test('the demo syncs mainnet genesis over HTTP, WebSocket and JSON-RPC, verifies the root and answers lookups offline', async (t) => {
  const peer = await startPeer();
  const b = await launchBrowser();
  t.after(async () => {
    await b.close();
    await peer.stop();
  });
  const { page } = b;
  await countPageWasm(page);
  await page.goto(pageUrl([peer.url, peer.wsUrl, `jsonrpc+${peer.url}`]));
  await waitReady(page);
  // Nothing is stored yet: no example addresses to try.
  assert.equal(await page.isHidden('#examples'), true, 'example addresses shown before anything was synced');

  // The root field is prefilled from the peer's /v1/info, and says so.
  assert.equal(await page.inputValue('#root'), fixture.root);
  assert.match(await page.textContent('#info-note'), /prefilled from the peer/i);

  // The page must stay responsive: the sync runs in a worker, so no long main-thread task.
  await page.evaluate(() => {
    window.longTasks = [];
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) window.longTasks.push(e.duration);
    }).observe({ type: 'longtask' });
  });
  await page.click('#start');
  await waitPhase(page, ['complete']);
  // A long task's duration is wall time: a loaded machine stretches any task past 50 ms by
  // descheduling the page, so this only catches a page frozen for over a second. Where the
  // sync runs is proven below (the worker loaded the wasm, the page never did); this state
  // synced on the page itself makes no long task at all.
  const longest = await page.evaluate(() => Math.max(0, ...window.longTasks));
  assert.ok(longest < 1500, `the page was blocked for ${longest} ms during the sync`);

  const { report, verify } = await page.evaluate(() => ({
    report: window.triesyncDemo.reports.at(-1),
    verify: window.triesyncDemo.verify,
  }));
  assert.equal(report.root, fixture.root);
  assert.equal(report.complete, true);
  assert.equal(report.nodes, fixture.nodes, 'a fresh database fetches every node once');
  assert.equal(report.rejected, 0);
  assert.equal(report.peers.length, 3);
  for (const p of report.peers) {
    assert.ok(p.items > 0, `peer ${p.id} delivered nothing`);
    assert.equal(p.dropped, null);
  }
  assert.equal(verify.complete, true);
  assert.equal(verify.nodes, fixture.nodes);
  assert.equal(verify.missingCount, 0);

  // What the page shows.
  assert.match(await page.textContent('#verified'), /Root verified/);
  assert.equal(await page.getAttribute('#verified', 'data-root'), fixture.root);
  assert.equal(await page.textContent('#pct'), '100%');
  assert.equal(await page.textContent('#stat-nodes'), fixture.nodes.toLocaleString('en-US'));
  assert.equal(await page.textContent('#status-badge'), 'Complete');
  assert.equal(await page.locator('#peers-body tr').count(), 3);
  assert.deepEqual(await page.locator('#peers-body .proto').allTextContents(), ['HTTP', 'WebSocket', 'JSON-RPC']);
  assert.deepEqual(await pills(page), ['done', 'done', 'done']);
  assert.equal(await page.textContent('#start'), 'Check again');
  assert.equal(await page.isHidden('#examples'), false, 'no example addresses once synced');

  // The stats once complete: the run's download, no code in the genesis, an average speed.
  const done = await stats(page);
  assert.match(done.bytes, /^\d+(\.\d+)? (KiB|MiB)$/);
  assert.match(done['bytes-sub'], /^\d+(\.\d+)? (KiB|MiB) stored$/);
  assert.equal(done.codes, '0');
  assert.equal(done['codes-sub'], 'none in this state');
  assert.match(done.rate, /^\d[\d,]*(\.\d)?$/);
  assert.match(done['rate-sub'], /^nodes\/s · .+\/s average$/);
  assert.equal(done.eta, 'Done');
  assert.match(done['eta-sub'], /^elapsed /);

  // The sync ran in the worker: it fetched the .wasm, the page never compiled any.
  assert.ok(page.workers().length >= 1, 'no worker');
  const workerWasm = [];
  for (const w of page.workers()) {
    workerWasm.push(...(await w.evaluate(() => performance.getEntriesByType('resource').map((r) => r.name).filter((n) => n.endsWith('.wasm')))));
  }
  assert.equal(workerWasm.length, 1, `the worker fetched ${workerWasm.length} .wasm files`);
  const pageWasm = await page.evaluate(() => ({
    calls: window.pageWasmCalls,
    fetched: performance.getEntriesByType('resource').map((r) => r.name).filter((n) => n.endsWith('.wasm')),
  }));
  assert.deepEqual(pageWasm, { calls: 0, fetched: [] }, 'the page itself loaded WebAssembly');

  // Lookups come from IndexedDB alone: stop the peer first.
  await peer.stop();
  const requests = [];
  b.context.on('request', (r) => requests.push(r.url()));

  const wei = BigInt(fixture.alloc[RICH].balance);
  await page.fill('#address', RICH);
  await page.click('#lookup');
  await page.waitForSelector('#account:not([hidden])', { timeout: 10000 });
  assert.equal(await page.textContent('#acct-wei'), `${wei.toLocaleString('en-US')} wei`);
  assert.equal(await page.textContent('#acct-eth'), '11,901,484.23948 ETH');
  assert.equal(await page.textContent('#acct-nonce'), '0');
  assert.equal(await page.textContent('#acct-code'), '0 bytes (no code)');
  assert.equal(await page.evaluate(() => window.triesyncDemo.lastAccount.balance), wei.toString());

  await page.click('#read-slot');
  await page.waitForSelector('#slot-value:not([hidden])', { timeout: 10000 });
  assert.equal(await page.textContent('#slot-word'), `0x${'0'.repeat(64)}`);

  // A second account, typed in mixed case.
  await page.fill('#address', PRESALE.toUpperCase().replace('0X', '0x'));
  await page.click('#lookup');
  await until(async () => (await page.textContent('#acct-wei')) === `${BigInt(fixture.alloc[PRESALE].balance).toLocaleString('en-US')} wei`, {
    what: 'the second account',
    timeoutMs: 10000,
  });

  // An address that is not in the state is proven absent.
  await page.fill('#address', '0x0000000000000000000000000000000000000001');
  await page.click('#lookup');
  await until(async () => /proves it absent/.test((await page.textContent('#account-note')) ?? ''), {
    what: 'the absent account',
    timeoutMs: 10000,
  });
  assert.deepEqual(requests.filter((u) => !u.startsWith(web.url)), [], 'lookups made network requests');

  // The screenshot of the finished page, with the rich account shown.
  await page.fill('#address', RICH);
  await page.click('#lookup');
  await page.waitForSelector('#account:not([hidden])');
  await page.click('#read-slot');
  await page.waitForSelector('#slot-value:not([hidden])');
  const shot = path.join(ensureArtifacts(), 'demo-finished.png');
  await page.screenshot({ path: shot, fullPage: true });
  assert.ok(fs.statSync(shot).size > 10000);
  assert.deepEqual(b.logs.filter((l) => /error/i.test(l)), [], 'console errors');
});

test('a reload mid-sync resumes, pause survives a reload, and only the missing nodes are fetched', async (t) => {
  // A slow peer so that the sync is still running when we reload, once a few thousand
  // nodes are stored, and after the resume until the pause: at 600 ms the first run has
  // about 10 s left at 2000 nodes, room for the screenshot and reload on a loaded machine.
  const { page } = await startSlowSync(t, 'e2e-resume', 2000, { delayMs: 600 });
  const firstRun = await page.evaluate(() => window.triesyncDemo.progress);
  assert.equal(firstRun.complete, false, 'the sync finished before the reload: slow the peer down');
  // The stats while syncing: a speed, a time left (from the peer's claimed size), a busy peer.
  await page.waitForFunction(() => document.getElementById('stat-eta').textContent !== '—', null, { timeout: 10000 });
  const running = await stats(page);
  assert.match(running.bytes, /^\d+(\.\d+)? (KiB|MiB)$/);
  assert.match(running.rate, /^\d[\d,]*(\.\d)?$/);
  assert.match(running['rate-sub'], /^nodes\/s/);
  assert.doesNotMatch(running['rate-sub'], /average/);
  assert.match(running.eta, DURATION);
  assert.match(running['eta-sub'], /^elapsed /);
  assert.equal(running['codes-sub'], 'none yet');
  const syncingPills = await pills(page);
  assert.equal(syncingPills.length, 1);
  assert.match(syncingPills[0], /^(downloading|waiting)$/);
  assert.match(await page.textContent('#pct'), /^\d+(\.\d)?%$/);
  await page.screenshot({ path: path.join(ensureArtifacts(), 'demo-syncing.png'), fullPage: true });
  await page.reload();
  await waitReady(page);

  // The page carries on by itself, starting from what the database holds.
  await waitPhase(page, ['syncing', 'complete']);
  const second = await page.evaluate(() => ({ base: window.triesyncDemo.base, resumed: window.triesyncDemo.resumed }));
  assert.equal(second.resumed, true);
  assert.ok(second.base.nodes >= firstRun.nodes, `resumed from ${second.base.nodes} stored nodes, first run had ${firstRun.nodes}`);
  assert.match(await page.textContent('#notice'), /reloaded during a sync: resuming/);

  // Pause it, reload, and resume by hand.
  await page.waitForFunction((n) => (window.triesyncDemo.progress?.nodes ?? 0) >= 1000 || window.triesyncDemo.phase === 'complete', second.base.nodes, { timeout: 60000 });
  assert.equal(await phase(page), 'syncing', 'the sync finished before the pause: slow the peer down');
  await page.click('#pause');
  await waitPhase(page, ['paused']);
  const stop = await page.evaluate(() => window.triesyncDemo.stops.at(-1));
  assert.equal(stop.error.code, 'CANCELLED');
  await page.reload();
  await waitReady(page);
  assert.equal(await phase(page), 'paused');
  assert.equal(await page.textContent('#start'), 'Resume sync');
  await page.click('#start');
  // Most of the slow sync is left: far longer than its 15 s or so on a loaded machine.
  await waitPhase(page, ['complete'], 180000);

  const last = await page.evaluate(() => ({ base: window.triesyncDemo.base, report: window.triesyncDemo.reports.at(-1), verify: window.triesyncDemo.verify }));
  assert.ok(last.base.nodes > second.base.nodes, 'the paused run committed nothing');
  assert.ok(last.report.nodes < fixture.nodes, `the last run fetched ${last.report.nodes} nodes, not fewer than all ${fixture.nodes}`);
  assert.ok(last.report.nodes > 0);
  assert.equal(last.base.nodes + last.report.nodes, fixture.nodes, 'no node was written twice');
  assert.equal(last.verify.complete, true);
  assert.equal(last.verify.nodes, fixture.nodes);
  assert.match(await page.textContent('#verified'), /Root verified/);
});

test('errors are shown clearly: a peer that is down, a malformed root', async (t) => {
  const peer = await startPeer();
  const deadUrl = peer.url;
  await peer.stop(); // nothing listens there any more
  const b = await launchBrowser();
  t.after(() => b.close());
  const { page } = b;
  await page.goto(pageUrl([deadUrl], 'e2e-errors'));
  await waitReady(page);
  // The root could not be prefilled, and the page says why.
  assert.match(await page.textContent('#info-note'), /Could not read .*\/v1\/info/);

  await page.fill('#root', '0x1234');
  await page.click('#start');
  await until(async () => !(await page.isHidden('#error')), { what: 'the root error', timeoutMs: 5000 });
  assert.match(await page.textContent('#error'), /64 hex digits/);

  await page.fill('#root', fixture.root);
  await page.click('#start');
  await waitPhase(page, ['error'], 90000).catch(() => {});
  assert.equal(await phase(page), 'error');
  // No size was known (the peer is down): the bar is empty at once, no stripe shrinking.
  assert.equal(await page.evaluate(() => document.getElementById('bar-fill').getBoundingClientRect().width), 0);
  const text = await page.textContent('#error');
  assert.match(text, /NO_PEERS|UNAVAILABLE/);
  assert.match(text, /is it running|do not have/i);
  assert.equal(await page.textContent('#pct'), '—', 'the percent label is empty in the error state');

  // A lookup error is about the input, not the peers or the root; nothing stored: no examples.
  assert.equal(await page.isHidden('#examples'), true);
  await page.fill('#address', '0x1234');
  await page.click('#lookup');
  await until(async () => !(await page.isHidden('#lookup-error')), { what: 'the lookup error', timeoutMs: 5000 });
  const lookupText = await page.textContent('#lookup-error');
  assert.match(lookupText, /INVALID_ARGUMENT: An address is 0x followed by 40 hex digits/);
  assert.doesNotMatch(lookupText, /peer/i);
  await page.screenshot({ path: path.join(ensureArtifacts(), 'demo-error.png'), fullPage: true });
});

test('a second tab syncing into the same database is told that the first one holds it', async (t) => {
  // The first tab's sync must outlast loading the second page: 600 ms makes it about 16 s
  // (the test pauses it, never waits for its end).
  const { peer, b, page: first } = await startSlowSync(t, 'e2e-locked', undefined, { delayMs: 600 });

  const second = await b.context.newPage();
  await second.goto(pageUrl([peer.url], 'e2e-locked'));
  await waitReady(second);
  await second.click('#start');
  await waitPhase(second, ['error'], 30000);
  assert.match(await second.textContent('#error'), /LOCKED[\s\S]*Another tab is syncing/);
  assert.equal(await phase(first), 'syncing', 'the first tab was disturbed');

  await first.click('#pause');
  await waitPhase(first, ['paused']);
});

test('the page prefills the peers of the server\'s demo-config.json; peers saved against another config do not override it', async (t) => {
  const peer = await startPeer();
  const other = await startPeer();
  const config = { peers: [peer.url, peer.wsUrl, `jsonrpc+${peer.url}`] };
  // The config object is read on every request: changing it is a demo restarted on new ports.
  const site = await startStatic(DIST, config);
  const b = await launchBrowser();
  t.after(async () => {
    await b.close();
    await site.close();
    await peer.stop();
    await other.stop();
  });
  const { page } = b;
  const bare = `${site.url}`;
  await page.goto(bare);
  await waitReady(page);
  assert.equal(await page.inputValue('#peers'), config.peers.join('\n'));
  assert.equal(await page.inputValue('#root'), fixture.root);
  assert.match(await page.textContent('#info-note'), /prefilled from the peer/i);

  // The user narrows the list to one peer and syncs: kept across a reload (same config).
  await page.fill('#peers', peer.wsUrl);
  await page.click('#start');
  await waitPhase(page, ['complete']);
  await page.reload();
  await waitReady(page);
  assert.equal(await page.inputValue('#peers'), peer.wsUrl, 'the edited peers were lost with the same config');

  // The demo comes back with its peer on another port: the config wins over the saved edit.
  config.peers = [other.url, other.wsUrl];
  await page.reload();
  await waitReady(page);
  assert.equal(await page.inputValue('#peers'), config.peers.join('\n'), 'a peer saved against an old config was prefilled');
  assert.match(await page.textContent('#info-note'), new RegExp(`${other.url}/v1/info`));

  // Peers saved by an earlier version of the page (no config recorded) give way too.
  await page.evaluate((stale) => {
    const saved = JSON.parse(localStorage.getItem('triesync-demo/v1'));
    delete saved.peersConfig;
    localStorage.setItem('triesync-demo/v1', JSON.stringify({ ...saved, peers: [stale] }));
  }, peer.url);
  await page.reload();
  await waitReady(page);
  assert.equal(await page.inputValue('#peers'), config.peers.join('\n'));
});

test('a reload while "Pausing…" does not resume the sync', async (t) => {
  const { page } = await startSlowSync(t, 'e2e-pause-reload', 500);
  // Pause and, in the same task (before the worker can answer CANCELLED), see what a
  // reload would find.
  const atPause = await page.evaluate(() => {
    document.getElementById('pause').click();
    return { phase: window.triesyncDemo.phase, running: sessionStorage.getItem('triesync-demo/running') };
  });
  assert.deepEqual(atPause, { phase: 'pausing', running: null }, 'the tab is still marked as syncing while pausing');
  await page.reload();
  await waitReady(page);
  await new Promise((r) => setTimeout(r, 1500));
  assert.equal(await phase(page), 'paused', 'the reload resumed the sync');
  assert.notEqual(await page.evaluate(() => window.triesyncDemo.resumed), true);
  assert.equal(await page.textContent('#start'), 'Resume sync');
});
