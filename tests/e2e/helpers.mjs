// Shared pieces of the end-to-end tests: the real reference peer, the static server,
// headless Chromium (Debian's, through playwright-core; never a downloaded browser).

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { serve } from '../../scripts/serve.mjs';

export const ROOT_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const ARTIFACTS = path.join(ROOT_DIR, 'tests', 'artifacts');
export const FIXTURE = path.join(ROOT_DIR, 'fixtures', 'mainnet-genesis.json');
export const PEER_BIN = process.env.TRIESYNC_PEER_BIN ?? path.join(ROOT_DIR, 'target', 'release', 'triesync-peer');
export const CHROMIUM = process.env.TRIESYNC_CHROMIUM ?? '/usr/bin/chromium';

/** The fixture: root, node count and the accounts with their balances. */
export function loadFixture() {
  const f = JSON.parse(fs.readFileSync(FIXTURE, 'utf8'));
  const nodes = Number(/(\d+) trie nodes/.exec(f.description)?.[1] ?? 12356);
  return { root: f.stateRoot, alloc: f.alloc, nodes };
}

/**
 * Starts `triesync-peer` serving the mainnet genesis on a free port of 127.0.0.1.
 * Resolves with `{ url, wsUrl, root, stop() }` once it prints its `listening` line. It
 * exits by itself if this process dies (its stdin closes).
 */
export async function startPeer(extraArgs = []) {
  if (!fs.existsSync(PEER_BIN)) {
    throw new Error(`${PEER_BIN} is missing: cargo build --release -p triesync-peer`);
  }
  const child = spawn(
    PEER_BIN,
    ['--state', FIXTURE, '--host', '127.0.0.1', '--port', '0', '--log', 'warn', '--exit-on-stdin-close', ...extraArgs],
    { stdio: ['pipe', 'pipe', 'pipe'] },
  );
  let stderr = '';
  child.stderr.on('data', (d) => {
    stderr = (stderr + d).slice(-4000);
  });
  const lines = readline.createInterface({ input: child.stdout });
  const first = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`triesync-peer did not start in 20 s: ${stderr}`)), 20000);
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
  let exited = false;
  const exit = new Promise((resolve) => child.once('exit', () => {
    exited = true;
    resolve();
  }));
  return {
    url,
    wsUrl: url.replace(/^http/, 'ws'),
    root: m[2],
    pid: child.pid,
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

/** Serves a folder on 127.0.0.1 (see scripts/serve.mjs). */
export function startStatic(dir, config = null) {
  return serve({ dir, port: 0, config });
}

/** Chromium flags: no sandbox (root in a container), nothing that phones home. */
export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-quic',
  '--no-first-run',
  '--no-proxy-server',
  '--disable-dev-shm-usage',
];

/**
 * Headless Chromium with a fresh profile (user-data-dir) of its own. Resolves with
 * `{ context, page, close() }`; `close()` also deletes the profile.
 */
export async function launchBrowser({ viewport = { width: 1200, height: 900 } } = {}) {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'triesync-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport,
    deviceScaleFactor: 1,
  });
  const page = context.pages()[0] ?? (await context.newPage());
  const logs = [];
  const watch = (p) => {
    p.on('console', (m) => logs.push(`[${m.type()}] ${m.text()}`));
    p.on('pageerror', (e) => logs.push(`[pageerror] ${e.message}`));
  };
  watch(page);
  context.on('page', watch);
  return {
    context,
    page,
    logs,
    async close() {
      await context.close().catch(() => {});
      fs.rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** Waits until `fn()` returns a truthy value (polling), or throws after `timeoutMs`. */
export async function until(fn, { timeoutMs = 30000, intervalMs = 50, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

export function ensureArtifacts() {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  return ARTIFACTS;
}
