// Crash safety: Chromium is killed with SIGKILL (every process of it at once) at many
// moments of a sync of a synthetic state, on one profile reused across the kills: while a
// write transaction is open with its puts issued, right after a commit was handed to the
// database, right after a commit completed, and at random times. After each kill the
// browser is launched again and
//   - StateDb.checkStore() reads every stored record: each hashes to its key and has its
//     whole subtree (nothing stored refers to anything absent);
//   - StateDb.verify(root) finds nothing corrupt;
//   - the meta record's counters equal the records stored (batches are all or nothing);
// then the sync resumes (and is killed again). A sync that finishes fetched only what was
// missing: items fetched <= total - committed before it + a little slack.
//
// Committed batches survive a kill: what is stored never shrinks from one launch to the
// next, except when Chromium itself throws the database away: its LevelDB backing store
// refuses to open after some kills mid-commit ("Corruption: checksum mismatch") and
// Chromium deletes the origin's IndexedDB data ("IndexedDB recovering from a corrupted
// (and deleted) database"). That loses everything at once, never part of it; the test
// checks that, counts it and goes on (the sync starts over).
//
//   TRIESYNC_CRASH_ROUNDS=N (default 20) kills.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { launchChromium, openHarness, startHarness, startSyntheticPeer } from './harness.mjs';

const ROUNDS = Number(process.env.TRIESYNC_CRASH_ROUNDS ?? 20);
const DATABASE = 'crash';
// Items a resumed sync may fetch beyond what was missing (none are expected: an item is
// fetched once per run, and everything stored is found in the store).
const SLACK = 16;
// The moments, taken in turn.
const MODES = ['write-open', 'committing', 'after-commit', 'random'];

function rand(n) {
  return Math.floor(Math.random() * n);
}

const fetched = (report) => report.peers.reduce((n, p) => n + p.items, 0);

test(`SIGKILL at ${ROUNDS} moments of a sync (mid-commit included): the store stays sound and the sync resumes`, async (t) => {
  // The peer's delay sets the sync's length (the packed layout's writes hardly do): long
  // enough that most random kills land before the sync ends.
  const peer = await startSyntheticPeer(['--synthetic', '20k', '--delay-ms', '60', '--fault-seed', '1']);
  const total = peer.info.nodes + peer.info.codes;
  const root = peer.root;
  const peers = [peer.url, peer.wsUrl];
  let onHook = (_e, _q, respond) => respond();
  const web = await startHarness({ onHook: (e, q, respond) => onHook(e, q, respond) });
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'triesync-crash-'));
  let browser = null;
  t.after(async () => {
    await browser?.close().catch(() => {});
    await web.close();
    await peer.stop();
    fs.rmSync(profile, { recursive: true, force: true });
  });

  // Each line is printed as it happens too, so that a failing run shows its rounds.
  const log = [];
  const note = (line) => {
    log.push(line);
    console.log(line);
  };
  const counts = Object.fromEntries(MODES.map((m) => [m, 0]));
  let kills = 0;
  let finished = 0;
  let discarded = 0;
  let lastResume = null;
  // Items stored when the last sync started: a kill never takes any of them away.
  let storedAtStart = 0;

  /** The database as the relaunched browser finds it; asserts the invariants. */
  async function inspect(page, what) {
    const s = await page.evaluate(([d, r]) => window.inspect(d, r), [DATABASE, root]);
    const c = s.check;
    assert.equal(c.corruptCount, 0, `${what}: corrupt records ${JSON.stringify(c.corrupt)}`);
    assert.equal(c.danglingCount, 0, `${what}: stored nodes without their subtree ${JSON.stringify(c.dangling.slice(0, 5))}`);
    assert.equal(c.sound, true, what);
    assert.deepEqual(s.verify.corrupt, [], `${what}: verify found corrupt items`);
    assert.equal(c.nodes, s.counts.nodes, `${what}: every node record read`);
    assert.equal(c.codes, s.counts.codes, `${what}: every code record read`);
    if (s.meta) {
      // The counters are written in the same transaction as the items they count.
      assert.equal(s.meta.nodes, s.counts.nodes, `${what}: meta.nodes vs records`);
      assert.equal(s.meta.codes, s.counts.codes, `${what}: meta.codes vs records`);
      assert.equal(s.meta.complete, s.verify.complete, `${what}: meta.complete vs verify`);
    } else {
      assert.equal(s.counts.nodes + s.counts.codes, 0, `${what}: records without a meta record`);
    }
    return s;
  }

  // A random kill still pending when its round's sync finished must not fire: kill() also
  // kills whatever runs on the profile, i.e. the next round's browser.
  let randomKill = null;
  // Set when a kill has begun: a sync that reports its end while the browser is being
  // killed was killed all the same (its round counts as a kill, not as a finished sync).
  let killing = false;

  /** Arms the kill for `mode`; resolves when the browser was killed. */
  function arm(mode, b) {
    let fire;
    const killed = new Promise((resolve) => {
      fire = async () => {
        killing = true;
        await b.kill();
        resolve(true);
      };
    });
    const k = 1 + rand(6);
    let seen = 0;
    onHook = (event, _q, respond) => {
      if (mode === 'write-open' && event === 'writeIssued' && ++seen === k) {
        // Never answered: the transaction is open, its puts issued, when the kill lands.
        fire();
      } else if (mode === 'committing' && event === 'writeIssued' && ++seen === k) {
        respond();
        // The page commits as soon as it gets the answer: kill while it does.
        setTimeout(fire, rand(4));
      } else if (mode === 'after-commit' && event === 'writeDone' && ++seen === k) {
        fire();
      } else {
        respond();
      }
    };
    // Within the first ~1.5 s: a sync of this state takes about 2 s (packed layout).
    if (mode === 'random') randomKill = setTimeout(fire, 100 + rand(1400));
    return killed;
  }

  for (let round = 0; kills < ROUNDS; round++) {
    assert.ok(round < ROUNDS * 3, 'too many rounds finished before their kill');
    browser = await launchChromium(profile);
    const { page } = browser;
    await openHarness(page, web.url);
    const s = await inspect(page, `after round ${round}`);
    const before = s.counts.nodes + s.counts.codes;
    if (before < storedAtStart) {
      // Chromium discarded the database as corrupt: all of it, nothing left half.
      assert.equal(before, 0, `round ${round}: ${storedAtStart} items stored, ${before} after the kill`);
      assert.equal(s.meta, null);
      discarded++;
      note(`round ${round}: the browser discarded the database after the last kill (${storedAtStart} items were stored)`);
    }
    if (lastResume && !lastResume.killed) {
      // The last sync finished: it fetched only what was missing when it started.
      assert.equal(s.verify.complete, true, 'a finished sync left a complete state');
    }
    if (s.meta?.complete) {
      // Start over, so that there is a sync to kill.
      assert.equal(before, total);
      note(`round ${round}: the state is complete; starting over`);
      await page.evaluate((d) => window.triesync.StateDb.deleteDatabase(d), DATABASE);
    } else if (before > 0 && round % 5 === 1) {
      // Lookups on the partial store: MISSING, named readably.
      const err = await page.evaluate(async ([d, r]) => {
        const db = await window.triesync.StateDb.open(d);
        try {
          await db.account(r, '0x00000000000000000000000000000000000000aa');
          return null;
        } catch (e) {
          return { code: e.code, message: e.message };
        } finally {
          db.close();
        }
      }, [DATABASE, root]);
      if (err) {
        assert.equal(err.code, 'MISSING');
        assert.match(err.message, /^(node|code) 0x[0-9a-f]{64} is missing/);
      }
    }
    const committedBefore = s.meta?.complete ? 0 : before;
    storedAtStart = committedBefore;

    // The moment with the fewest kills so far (a random kill that came after its sync had
    // finished is tried again), so every moment gets its share of the kills.
    const mode = MODES.reduce((a, b) => (counts[b] < counts[a] ? b : a));
    killing = false;
    const killed = arm(mode, browser);
    await page.evaluate(() => {
      window.hook.mode = 'report';
    });
    await page.evaluate(([r, p, d]) => window.startSync({ root: r, peers: p, database: d }), [root, peers, DATABASE]);
    const done = page
      .waitForFunction(() => window.sync.result !== null, null, { timeout: 120000, polling: 50 })
      .then(() => page.evaluate(() => window.sync.result))
      .catch(() => null);
    let outcome = await Promise.race([killed.then(() => 'killed'), done]);
    if (outcome !== 'killed' && killing) {
      // The sync ended just as its kill began: the kill lands all the same.
      await killed;
      outcome = 'killed';
    }
    if (outcome === null) {
      // The page went away: only the kill does that.
      assert.equal(await Promise.race([killed, new Promise((r) => setTimeout(() => r(false), 10000))]), true, 'the page died without a kill');
    }
    if (outcome === 'killed' || outcome === null) {
      kills++;
      counts[mode]++;
      note(`round ${round}: killed (${mode}) with ${committedBefore} of ${total} items stored before`);
      lastResume = { killed: true };
    } else {
      assert.equal(outcome.ok, true, `sync failed: ${outcome.code} ${outcome.message}`);
      const got = fetched(outcome.report);
      note(`round ${round}: finished (${mode} never came) after ${Math.round(outcome.ms)} ms, fetched ${got}, ${committedBefore} stored before`);
      assert.ok(
        got <= total - committedBefore + SLACK,
        `fetched ${got} items with ${committedBefore} of ${total} stored before`,
      );
      finished++;
      lastResume = { killed: false };
      clearTimeout(randomKill);
      onHook = (_e, _q, respond) => respond();
      await browser.close();
    }
    browser = null;
  }

  // After the last kill: the sync resumes and finishes, fetching only what was missing.
  onHook = (_e, _q, respond) => respond();
  browser = await launchChromium(profile);
  await openHarness(browser.page, web.url);
  const s = await inspect(browser.page, 'after the last kill');
  const committedBefore = s.counts.nodes + s.counts.codes;
  if (committedBefore < storedAtStart) {
    assert.equal(committedBefore, 0);
    discarded++;
    note(`final: the browser discarded the database after the last kill (${storedAtStart} items were stored)`);
  }
  await browser.page.evaluate(([r, p, d]) => window.startSync({ root: r, peers: p, database: d }), [root, peers, DATABASE]);
  await browser.page.waitForFunction(() => window.sync.result !== null, null, { timeout: 120000, polling: 100 });
  const result = await browser.page.evaluate(() => window.sync.result);
  assert.equal(result.ok, true, `final sync: ${result.code} ${result.message}`);
  assert.equal(result.report.complete, true);
  const got = fetched(result.report);
  note(`final: fetched ${got} with ${committedBefore} of ${total} stored before, ${Math.round(result.ms)} ms`);
  assert.ok(got <= total - committedBefore + SLACK, `final sync fetched ${got} with ${committedBefore} of ${total} stored`);
  const end = await inspect(browser.page, 'at the end');
  assert.equal(end.verify.complete, true);
  assert.equal(end.counts.nodes, peer.info.nodes);
  assert.equal(end.counts.codes, peer.info.codes);
  console.log(
    `kills by moment: ${JSON.stringify(counts)}; ${finished} syncs finished before their kill; ` +
      `Chromium discarded the database as corrupt after ${discarded} of ${kills} kills ` +
      `(${Math.round((100 * discarded) / Math.max(1, kills))}%; the bound is 50%)`,
  );
  // Discarding must stay the exception: most kills keep everything committed. It is
  // Chromium's chance event (a kill that lands mid-commit), not ours, and its rate over
  // some 20 kills varies from run to run: half of them bounds it without failing on a run
  // of bad luck, and still catches a store that loses its database on most kills.
  assert.ok(discarded <= kills / 2, `Chromium discarded the database after ${discarded} of ${kills} kills`);
  const each = Math.max(1, Math.floor(ROUNDS / MODES.length) - 2);
  for (const m of MODES) assert.ok(counts[m] >= each, `at least ${each} kills ${m}: ${JSON.stringify(counts)}`);
});
