// The pieces the crash, quota and two-tab tests share: a page that loads the npm package
// (pkg/) with nothing else on it, a server for it with a hook endpoint (a test decides
// from inside a write what happens next), a reference peer serving a synthetic state, and
// Chromium launched by hand so that a test can SIGKILL it and launch it again on the same
// profile.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import readline from 'node:readline';
import { chromium } from 'playwright-core';
import { CHROMIUM, CHROMIUM_ARGS, PEER_BIN, ROOT_DIR } from './helpers.mjs';

const PKG = path.join(ROOT_DIR, 'pkg');

// The page: the package and hooks. `window.hook.mode` set by a test makes every write
// report itself with a synchronous request to /hook, which the test answers when it
// wants: the write's transaction stays open (its puts issued, not committed) until then.
const HARNESS = `<!doctype html><meta charset="utf-8"><title>triesync harness</title><body>
<script type="module">
import init, * as triesync from '/pkg/triesync.js';
window.hook = { mode: null };
function report(event, info) {
  if (!window.hook.mode) return;
  const x = new XMLHttpRequest();
  x.open('POST', '/hook?event=' + event + '&items=' + info.items + '&bytes=' + info.bytes, false);
  try { x.send(); } catch (e) { /* the test may never answer */ }
}
window.__triesyncTestHooks = {
  writeIssued: (info) => report('writeIssued', info),
  writeDone: (info) => report('writeDone', info),
};
// Starts a sync without waiting for it: window.sync holds its state. Each progress entry
// has the wall-clock time of its report (at: one clock for every tab).
window.startSync = (options) => {
  const s = { progress: [], result: null };
  window.sync = s;
  const sync = new triesync.StateSync({ ...options, onProgress: (p) => { s.last = p; s.progress.push({ nodes: p.nodes, codes: p.codes, storage: p.storage, at: Date.now() }); } });
  s.handle = sync;
  s.started = performance.now();
  s.done = sync.run().then(
    (report) => { s.result = { ok: true, report, ms: performance.now() - s.started }; },
    (e) => { s.result = { ok: false, code: e.code, message: String(e.message), progress: e.progress ?? null, ms: performance.now() - s.started }; },
  );
  return true;
};
// The state of a database: its meta record, record counts, the whole-store check and a
// walk from the root.
window.inspect = async (database, root) => {
  const db = await triesync.StateDb.open(database);
  try {
    const [meta, counts, check, verify] = [await db.meta(), await db.counts(), await db.checkStore(), root ? await db.verify(root) : null];
    return { meta, counts, check, verify };
  } finally {
    db.close();
  }
};
await init();
window.triesync = triesync;
document.body.dataset.ready = 'true';
</script>`;

const TYPES = { '.js': 'text/javascript', '.wasm': 'application/wasm', '.json': 'application/json', '.ts': 'text/plain' };

/**
 * Serves the harness page at `/` and the package at `/pkg/`, and `POST /hook?event=…`:
 * `onHook(event, query, respond)` is called for each and must call `respond()` (now, later
 * or never). Resolves with `{ url, origin, close() }`.
 */
export function startHarness({ onHook = (_e, _q, respond) => respond() } = {}) {
  if (!fs.existsSync(path.join(PKG, 'triesync_bg.wasm'))) {
    throw new Error('pkg/ is missing: node scripts/build-pkg.mjs');
  }
  const sockets = new Set();
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    const headers = { 'cache-control': 'no-store' };
    if (url.pathname === '/' || url.pathname === '/harness.html') {
      res.writeHead(200, { ...headers, 'content-type': 'text/html; charset=utf-8' }).end(HARNESS);
      return;
    }
    if (url.pathname === '/hook') {
      req.resume();
      let answered = false;
      const respond = () => {
        if (!answered) {
          answered = true;
          res.writeHead(204, headers).end();
        }
      };
      onHook(url.searchParams.get('event'), Object.fromEntries(url.searchParams), respond);
      return;
    }
    if (url.pathname.startsWith('/pkg/')) {
      const file = path.join(PKG, path.basename(url.pathname));
      fs.readFile(file, (err, data) => {
        if (err) {
          res.writeHead(404, headers).end();
          return;
        }
        res.writeHead(200, { ...headers, 'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream' }).end(data);
      });
      return;
    }
    res.writeHead(404, headers).end();
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      const origin = `http://127.0.0.1:${port}`;
      resolve({
        url: `${origin}/`,
        origin,
        setHook(f) {
          onHook = f;
        },
        async close() {
          for (const s of sockets) s.destroy();
          await new Promise((r) => server.close(r));
        },
      });
    });
  });
}

/**
 * Starts `triesync-peer` with `args` (e.g. `['--synthetic', '20k', '--delay-ms', '20']`) on
 * a free port. Resolves with `{ url, wsUrl, root, info, stop() }`.
 */
export async function startSyntheticPeer(args) {
  if (!fs.existsSync(PEER_BIN)) throw new Error(`${PEER_BIN} is missing: cargo build -p triesync-peer`);
  const child = spawn(PEER_BIN, ['--host', '127.0.0.1', '--port', '0', '--log', 'warn', '--exit-on-stdin-close', ...args], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => {
    stderr = (stderr + d).slice(-4000);
  });
  const lines = readline.createInterface({ input: child.stdout });
  const first = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`triesync-peer did not start in 60 s: ${stderr}`)), 60000);
    lines.once('line', (l) => {
      clearTimeout(timer);
      resolve(l);
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`triesync-peer exited with ${code}: ${stderr}`));
    });
  });
  lines.on('line', () => {});
  const m = /^listening (http:\/\/\S+) root (0x[0-9a-f]{64})/.exec(first);
  if (!m) {
    child.kill();
    throw new Error(`unexpected first line from triesync-peer: ${first}`);
  }
  const url = m[1].replace(/\/$/, '');
  const info = await (await fetch(`${url}/v1/info`)).json();
  let exited = false;
  const exit = new Promise((resolve) => child.once('exit', () => {
    exited = true;
    resolve();
  }));
  return {
    url,
    wsUrl: url.replace(/^http/, 'ws'),
    root: m[2],
    info,
    async stop() {
      if (exited) return;
      child.stdin.end();
      const t = setTimeout(() => child.kill('SIGKILL'), 3000);
      child.kill('SIGTERM');
      await exit;
      clearTimeout(t);
    },
  };
}

/** Pids of the processes whose command line names `needle` (our own profile path). */
function pidsWith(needle) {
  const out = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (fs.readFileSync(`/proc/${d}/cmdline`, 'utf8').includes(needle)) out.push(Number(d));
    } catch {
      // gone
    }
  }
  return out;
}

function alive(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^\d+ \(.*\) Z/.test(stat); // a zombie is dead
  } catch {
    return false;
  }
}

/**
 * Launches headless Chromium on the profile `profileDir` (kept across launches) in a
 * process group of its own, connected over CDP. Resolves with
 * `{ browser, context, page, pid, kill(), close() }`: `kill()` sends SIGKILL to every
 * process of the browser at once (a power cut for the browser) and resolves once they are
 * gone.
 */
export async function launchChromium(profileDir) {
  // A killed browser leaves its singleton lock behind; nothing of ours is still running.
  for (const f of ['SingletonLock', 'SingletonSocket', 'SingletonCookie']) {
    fs.rmSync(path.join(profileDir, f), { force: true });
  }
  const child = spawn(
    CHROMIUM,
    [
      '--headless=new',
      `--user-data-dir=${profileDir}`,
      '--remote-debugging-port=0',
      ...CHROMIUM_ARGS,
      ...(process.env.TRIESYNC_CHROMIUM_LOG ? ['--enable-logging=stderr', '--vmodule=*indexed_db*=1,*leveldb*=1,*sqlite*=1'] : []),
      'about:blank',
    ],
    { detached: true, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  const wsUrl = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`chromium did not start: ${stderr}`)), 30000);
    child.stderr.on('data', (d) => {
      stderr += d;
      const m = /DevTools listening on (ws:\/\/\S+)/.exec(stderr);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`chromium exited with ${code}: ${stderr}`));
    });
  });
  const logFile = process.env.TRIESYNC_CHROMIUM_LOG;
  child.stderr.on('data', (d) => {
    if (logFile) fs.appendFileSync(logFile, d);
  });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const browser = await chromium.connectOverCDP(wsUrl);
  const context = browser.contexts()[0];
  const page = context.pages()[0] ?? (await context.newPage());
  const logs = [];
  page.on('console', (m) => logs.push(`[${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => logs.push(`[pageerror] ${e.message}`));
  const pid = child.pid;
  const kill = async () => {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // already gone
    }
    await exited;
    // Anything of this profile that left the group (none expected) goes too.
    for (let i = 0; i < 100; i++) {
      const left = pidsWith(profileDir).filter(alive);
      if (!left.length) break;
      for (const p of left) {
        try {
          process.kill(p, 'SIGKILL');
        } catch {
          // gone
        }
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  return {
    browser,
    context,
    page,
    pid,
    logs,
    kill,
    /** Closes the browser the ordinary way (SIGTERM), SIGKILL after 5 s. */
    async close() {
      await browser.close().catch(() => {});
      try {
        process.kill(-pid, 'SIGTERM');
      } catch {
        // already gone
      }
      const t = setTimeout(() => kill(), 5000);
      await exited;
      clearTimeout(t);
      await kill();
    },
  };
}

/** Opens the harness page and waits for the package to be loaded. */
export async function openHarness(page, url) {
  await page.goto(url);
  await page.waitForSelector('body[data-ready="true"]', { state: 'attached', timeout: 30000 });
}
