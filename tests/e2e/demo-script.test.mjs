// scripts/demo.sh (`npm run demo`) as a user runs it, minus the build (TRIESYNC_SKIP_BUILD=1
// reuses pkg/, dist/ and the peer binary): on free ports, it prints the page's URL, serves
// the page and a demo-config.json naming its peer, the page prefills them, and SIGTERM
// stops everything it started.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { PEER_BIN, ROOT_DIR, launchBrowser, loadFixture, until } from './helpers.mjs';

const fixture = loadFixture();

/** The processes whose parent is `pid`, as `{ pid, name }`. */
function children(pid) {
  try {
    return execFileSync('ps', ['-o', 'pid=,comm=', '--ppid', String(pid)], { encoding: 'utf8' })
      .trim().split('\n').map((l) => l.trim().split(/\s+/)).map(([p, name]) => ({ pid: Number(p), name }));
  } catch {
    return []; // ps exits 1 when there are none
  }
}

function alive(pid) {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // A zombie (exited, not yet reaped) counts as gone.
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  return !/^\d+ \(.*\) Z /.test(stat);
}

async function refused(url) {
  try {
    await fetch(url, { signal: AbortSignal.timeout(3000) });
    return false;
  } catch (e) {
    return e.cause?.code === 'ECONNREFUSED';
  }
}

test('scripts/demo.sh serves the page and its peer on free ports and cleans up on SIGTERM', async (t) => {
  assert.ok(fs.existsSync(path.join(ROOT_DIR, 'dist', 'index.html')), 'dist/ is missing: npm run build');
  const demo = spawn('bash', [path.join(ROOT_DIR, 'scripts', 'demo.sh')], {
    cwd: ROOT_DIR,
    env: { ...process.env, TRIESYNC_SKIP_BUILD: '1', PEER_PORT: '0', DEMO_PORT: '0', TRIESYNC_PEER_BIN: PEER_BIN },
    stdio: ['ignore', 'pipe', 'pipe'],
    // A process group of its own: if the script hangs, the test can end all of it.
    detached: true,
  });
  let out = '';
  demo.stdout.on('data', (d) => (out += d));
  demo.stderr.on('data', (d) => (out += d));
  const exited = new Promise((resolve) => demo.once('exit', (code, signal) => resolve({ code, signal })));
  const b = await launchBrowser();
  t.after(async () => {
    await b.close();
    if (demo.exitCode === null && demo.signalCode === null) {
      try {
        process.kill(-demo.pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
  });

  await until(() => /^\s+open\s+http:\/\//m.test(out) || demo.exitCode !== null, { what: 'the demo URL', timeoutMs: 30000 });
  const pageUrl = /^\s+open\s+(http:\/\/\S+)/m.exec(out)?.[1];
  const peerUrl = /^\s+peer\s+(http:\/\/\S+)/m.exec(out)?.[1];
  assert.ok(pageUrl && peerUrl, `demo.sh printed no URLs:\n${out}`);
  assert.match(out, new RegExp(fixture.root));

  // What it serves: the page, the config naming the peer three ways, and the peer itself.
  const config = await (await fetch(new URL('demo-config.json', pageUrl))).json();
  const wsUrl = peerUrl.replace(/^http:/, 'ws:');
  assert.deepEqual(config, { peers: [peerUrl, wsUrl, `jsonrpc+${peerUrl}`] });
  const html = await (await fetch(pageUrl)).text();
  assert.match(html, /<title>triesync demo/);
  const info = await (await fetch(`${peerUrl}/v1/info`)).json();
  assert.equal(info.root, fixture.root);

  // The bare URL prefills the peers and the root.
  await b.page.goto(pageUrl);
  await b.page.waitForSelector('body[data-ready="true"]', { timeout: 30000 });
  assert.equal(await b.page.inputValue('#peers'), config.peers.join('\n'));
  assert.equal(await b.page.inputValue('#root'), fixture.root);

  // SIGTERM: the peer and the page server stop with it.
  const started = children(demo.pid);
  const names = started.map((c) => c.name).sort();
  assert.deepEqual(names, ['node', path.basename(PEER_BIN)].sort(), 'the peer and the page server run under demo.sh');
  demo.kill('SIGTERM');
  const { code } = await Promise.race([
    exited,
    new Promise((resolve) => setTimeout(() => resolve({ code: 'still running 15 s after SIGTERM' }), 15000)),
  ]);
  assert.equal(code, 130, `demo.sh exited with ${code}:\n${out}`);
  assert.match(out, /demo stopped/);
  for (const c of started) assert.equal(alive(c.pid), false, `${c.name} (${c.pid}) outlived demo.sh`);
  assert.equal(await refused(`${peerUrl}/v1/info`), true, 'the peer still answers');
  assert.equal(await refused(pageUrl), true, 'the page server still answers');
});
