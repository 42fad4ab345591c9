// The npm package as a user gets it: `npm pack` of pkg/, installed into a fresh project in
// a temporary folder outside this repository, then
//   - type-checked with TypeScript (the shipped .d.ts, resolved through `exports`);
//   - bundled with webpack 5 and with Vite (no plugin, no wasm setting in either), the sync
//     running in a module Web Worker, each build checked for a separate .wasm file;
//   - loaded without any bundler from a plain <script type="module">;
// and each page runs a real sync in headless Chromium against the reference peer.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ROOT_DIR, launchBrowser, loadFixture, startPeer, startStatic, until } from './helpers.mjs';

const PKG = path.join(ROOT_DIR, 'pkg');
const fixture = loadFixture();
const ADDRESS = '0x5abfec25f74cd88437631a7731906932776356f9';
const NPM = process.platform === 'win32' ? 'npm.cmd' : 'npm';

let work; // the temporary folder
let project; // the fresh project inside it
let tarball;
let peer;
let browser;

function rootVersion(name) {
  return JSON.parse(fs.readFileSync(path.join(ROOT_DIR, 'node_modules', name, 'package.json'), 'utf8')).version;
}

function sh(cmd, args, cwd) {
  try {
    return execFileSync(cmd, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 240000 });
  } catch (e) {
    throw new Error(`${cmd} ${args.join(' ')} failed in ${cwd}:\n${e.stdout ?? ''}\n${e.stderr ?? ''}`);
  }
}

function write(rel, content) {
  const f = path.join(project, rel);
  fs.mkdirSync(path.dirname(f), { recursive: true });
  fs.writeFileSync(f, content);
}

// The application code every build shares: import the package by its name, sync in a
// module worker (or on the page), then read an account back on the page.
const APP = `
import init, { StateSync, StateDb } from 'triesync';

export async function main({ useWorker }) {
  const params = new URLSearchParams(location.search);
  const root = params.get('root');
  const peer = params.get('peer');
  const address = params.get('address');
  const database = 'app-' + Math.random().toString(36).slice(2);
  try {
    await init();
    let report;
    if (useWorker) {
      const worker = new Worker(new URL('./sync-worker.js', import.meta.url), { type: 'module' });
      report = await new Promise((resolve, reject) => {
        worker.onmessage = ({ data }) => (data.ok ? resolve(data.report) : reject(Object.assign(new Error(data.message), { code: data.code })));
        worker.onerror = (e) => reject(new Error('worker failed: ' + e.message));
        worker.postMessage({ root, peers: [peer], database });
      });
    } else {
      const progress = [];
      report = await new StateSync({ root, peers: [peer], database, onProgress: (p) => progress.push(p.nodes) }).run();
      if (!progress.length) throw new Error('no progress callback');
    }
    const db = await StateDb.open(database);
    const account = await db.account(root, address);
    const verify = await db.verify(root);
    window.result = { report, balance: account.balance.toString(), nonce: account.nonce, verify, wasmUrls: performance.getEntriesByType('resource').map((r) => r.name).filter((n) => n.endsWith('.wasm')) };
  } catch (e) {
    window.result = { error: { code: e.code, message: String(e.message || e) } };
  }
}
`;

const WORKER = `
import init, { StateSync } from 'triesync';

self.onmessage = async ({ data }) => {
  try {
    await init();
    const report = await new StateSync(data).run();
    postMessage({ ok: true, report });
  } catch (e) {
    postMessage({ ok: false, code: e.code, message: String(e.message || e) });
  }
};
`;

const TYPES = `
import init, { StateSync, StateDb, type Progress, type Account, type TriesyncError, type VerifyReport } from 'triesync';

export async function typed(root: string): Promise<bigint | null> {
  await init();
  const sync = new StateSync({
    root,
    peers: ['http://127.0.0.1:1', { url: 'ws://127.0.0.1:1', protocol: 'ws' }],
    database: 'typed',
    batchBytes: 65536,
    onProgress: (p: Progress) => console.log(p.nodes, p.peers[0]?.inFlight),
  });
  try {
    const report: Progress = await sync.run();
    console.log(report.complete);
  } catch (e) {
    const err = e as TriesyncError;
    if (err.code === 'CANCELLED') return null;
  }
  const db: StateDb = await StateDb.open('typed');
  const acct: Account | null = await db.account(root, '0x00');
  const check: VerifyReport = await db.verify(root);
  console.log(check.complete);
  return acct ? acct.balance : null;
}
`;

before(async () => {
  assert.ok(fs.existsSync(path.join(PKG, 'package.json')), 'pkg/ is missing: npm run build:pkg');
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'triesync-package-test-'));
  assert.ok(!work.startsWith(ROOT_DIR), 'the project must live outside the repository');

  // npm pack, exactly what `npm publish` would upload.
  const packed = JSON.parse(sh(NPM, ['pack', PKG, '--pack-destination', work, '--json'], ROOT_DIR));
  tarball = path.join(work, packed[0].filename);

  project = path.join(work, 'app');
  write('package.json', JSON.stringify({ name: 'triesync-consumer', private: true, type: 'module' }, null, 2));
  write('src/app.js', APP);
  write('src/sync-worker.js', WORKER);
  write('src/webpack-entry.js', "import { main } from './app.js';\nmain({ useWorker: true });\n");
  write('webpack.config.js', `
import path from 'node:path';
export default {
  mode: 'production',
  entry: './src/webpack-entry.js',
  output: { path: path.resolve('dist-webpack'), clean: true },
};
`);
  write('dist-webpack-index.html', '<!doctype html><meta charset="utf-8"><title>webpack</title><script src="main.js"></script>');
  // Vite: an index.html at the project root, no config beyond the output folder.
  write('index.html', '<!doctype html><meta charset="utf-8"><title>vite</title><script type="module">import { main } from "/src/app.js"; main({ useWorker: true });</script>');
  write('vite.config.js', "export default { build: { outDir: 'dist-vite' }, worker: { format: 'es' }, logLevel: 'warn' };\n");
  // No bundler: the package straight from node_modules through an import map.
  write('plain.html', `<!doctype html><meta charset="utf-8"><title>plain</title>
<script type="importmap">{ "imports": { "triesync": "./node_modules/triesync/triesync.js" } }</script>
<script type="module">import { main } from './src/app.js'; main({ useWorker: false });</script>`);
  write('src/typed.ts', TYPES);
  write('tsconfig.json', JSON.stringify({
    compilerOptions: {
      target: 'es2022', module: 'esnext', moduleResolution: 'bundler', strict: true, noEmit: true,
      lib: ['es2022', 'dom'], skipLibCheck: false, types: [],
    },
    include: ['src/typed.ts'],
  }, null, 2));

  // The versions this repository locks (already in npm's cache after `npm ci`).
  sh(NPM, [
    'install', '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error',
    tarball,
    `webpack@${rootVersion('webpack')}`, `webpack-cli@${rootVersion('webpack-cli')}`,
    `vite@${rootVersion('vite')}`, `typescript@${rootVersion('typescript')}`,
  ], project);

  peer = await startPeer();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await peer?.stop();
  if (work && !process.env.KEEP_PACKAGE_TEST) fs.rmSync(work, { recursive: true, force: true });
});

async function runPage(url) {
  const page = await browser.context.newPage();
  try {
    const q = new URLSearchParams({ root: fixture.root, peer: peer.url, address: ADDRESS });
    await page.goto(`${url}${url.includes('?') ? '&' : '?'}${q}`);
    await page.waitForFunction(() => window.result !== undefined, null, { timeout: 60000 });
    return await page.evaluate(() => window.result);
  } finally {
    await page.close();
  }
}

function checkResult(result) {
  assert.equal(result.error, undefined, `the page failed: ${JSON.stringify(result.error)}`);
  assert.equal(result.report.complete, true);
  assert.equal(result.report.nodes, fixture.nodes);
  assert.equal(result.balance, BigInt(fixture.alloc[ADDRESS].balance).toString());
  assert.equal(result.nonce, 0);
  assert.equal(result.verify.complete, true);
  assert.ok(result.wasmUrls.length >= 1, 'the .wasm was not fetched as a file of its own');
}

/** Every file under dir, relative. */
function files(dir) {
  return fs.readdirSync(dir, { recursive: true }).filter((f) => fs.statSync(path.join(dir, f)).isFile());
}

function checkNoInlinedWasm(dir) {
  const all = files(dir);
  const wasm = all.filter((f) => f.endsWith('.wasm'));
  assert.equal(wasm.length, 1, `expected one .wasm file, got ${wasm}`);
  assert.equal(fs.statSync(path.join(dir, wasm[0])).size, fs.statSync(path.join(PKG, 'triesync_bg.wasm')).size);
  for (const f of all.filter((f) => f.endsWith('.js'))) {
    const js = fs.readFileSync(path.join(dir, f), 'utf8');
    assert.ok(!js.includes('data:application/wasm'), `${f} inlines the wasm`);
    assert.ok(js.length < 150 * 1024, `${f} is ${js.length} bytes: is the wasm inlined?`);
  }
}

test('the tarball holds the module, the .wasm, the types, the README, the LICENSE and nothing else', () => {
  const list = execFileSync('tar', ['-tzf', tarball], { encoding: 'utf8' }).trim().split('\n').sort();
  assert.deepEqual(list, [
    'package/LICENSE',
    'package/README.md',
    'package/package.json',
    'package/triesync.d.ts',
    'package/triesync.js',
    'package/triesync_bg.wasm',
    'package/triesync_bg.wasm.d.ts',
  ]);
  const pkg = JSON.parse(fs.readFileSync(path.join(project, 'node_modules', 'triesync', 'package.json'), 'utf8'));
  assert.equal(pkg.name, 'triesync');
  // The license texts match the declared license; no placeholder repository URL.
  assert.equal(pkg.license, 'MIT OR Apache-2.0');
  const license = fs.readFileSync(path.join(project, 'node_modules', 'triesync', 'LICENSE'), 'utf8');
  assert.match(license, /MIT License[\s\S]*Apache License\s+Version 2\.0/);
  assert.equal(pkg.repository, undefined);
  assert.doesNotMatch(JSON.stringify(pkg), /example\.invalid/);
  assert.equal(pkg.type, 'module');
  assert.equal(pkg.exports['.'].types, './triesync.d.ts');
  assert.equal(pkg.exports['.'].import, './triesync.js');
  assert.equal(pkg.exports['./triesync_bg.wasm'], './triesync_bg.wasm');
  const dts = fs.readFileSync(path.join(project, 'node_modules', 'triesync', 'triesync.d.ts'), 'utf8');
  for (const name of ['class StateSync', 'class StateDb', 'interface StateSyncOptions', 'interface Progress', 'export default function']) {
    assert.ok(dts.includes(name), `triesync.d.ts lacks ${name}`);
  }
});

test('TypeScript type-checks a program against the shipped types', () => {
  sh(process.execPath, [path.join(project, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], project);
});

test('webpack 5 bundles it with no configuration, the .wasm as a file, and a worker syncs with it', async () => {
  sh(process.execPath, [path.join(project, 'node_modules', 'webpack-cli', 'bin', 'cli.js'), '--config', 'webpack.config.js'], project);
  const dist = path.join(project, 'dist-webpack');
  fs.copyFileSync(path.join(project, 'dist-webpack-index.html'), path.join(dist, 'index.html'));
  checkNoInlinedWasm(dist);
  const web = await startStatic(dist);
  try {
    checkResult(await runPage(web.url));
  } finally {
    await web.close();
  }
});

test('Vite builds it with no plugin, the .wasm as a file, and a worker syncs with it', async () => {
  sh(process.execPath, [path.join(project, 'node_modules', 'vite', 'bin', 'vite.js'), 'build'], project);
  const dist = path.join(project, 'dist-vite');
  checkNoInlinedWasm(dist);
  const web = await startStatic(dist);
  try {
    checkResult(await runPage(web.url));
  } finally {
    await web.close();
  }
});

test('the Vite dev server serves it with no optimizeDeps setting, and a worker syncs with it', async (t) => {
  const vite = spawn(process.execPath, [path.join(project, 'node_modules', 'vite', 'bin', 'vite.js'), '--host', '127.0.0.1', '--port', '0', '--clearScreen', 'false', '--logLevel', 'info'], {
    cwd: project,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.after(() => vite.kill('SIGTERM'));
  let out = '';
  vite.stdout.on('data', (d) => (out += d));
  vite.stderr.on('data', (d) => (out += d));
  const url = await until(
    () => {
      if (vite.exitCode !== null) throw new Error(`vite dev exited: ${out}`);
      return /(http:\/\/127\.0\.0\.1:\d+\/)/.exec(out.replace(/\x1b\[[0-9;]*m/g, ''))?.[1];
    },
    { what: 'the vite dev URL', timeoutMs: 30000 },
  );
  assert.doesNotMatch(fs.readFileSync(path.join(project, 'vite.config.js'), 'utf8'), /optimizeDeps/);
  checkResult(await runPage(url));
});

test('a plain <script type="module"> page uses it from node_modules with no build step', async () => {
  const web = await startStatic(project);
  try {
    checkResult(await runPage(`${web.url}plain.html`));
  } finally {
    await web.close();
  }
});

test("the root README's wallet example runs as written against local peers", async () => {
  const readme = fs.readFileSync(path.join(ROOT_DIR, 'README.md'), 'utf8');
  const block = /^## Using it in a wallet\n[\s\S]*?^```js\n([\s\S]*?)^```$/m.exec(readme);
  assert.ok(block, 'README.md has no ```js block under "Using it in a wallet"');
  // The example's peers become the local reference peer, over each of its transports.
  let source = block[1];
  for (const [from, to] of [
    ["'https://peer-a.example'", peer.url],
    ["'wss://peer-b.example'", peer.wsUrl],
    ["'https://geth.example'", peer.url],
  ]) {
    assert.ok(source.includes(from), `the README example no longer names ${from}: update this test`);
    source = source.replaceAll(from, JSON.stringify(to));
  }
  source += `
window.result = {
  account: account && { nonce: account.nonce, balance: account.balance.toString() },
  slot0,
  code: code === null ? null : code.length,
  check: { complete: check.complete, nodes: check.nodes },
};
`;
  write('src/readme-example.js', source);
  write('readme.html', `<!doctype html><meta charset="utf-8"><title>README example</title>
<script>
  window.addEventListener('error', (e) => { window.result = { error: String(e.message) }; });
  window.addEventListener('unhandledrejection', (e) => { window.result = { error: String(e.reason?.message ?? e.reason) }; });
</script>
<script type="importmap">{ "imports": { "triesync": "./node_modules/triesync/triesync.js" } }</script>
<script type="module" src="./src/readme-example.js"></script>`);

  const web = await startStatic(project);
  const page = await browser.context.newPage();
  const logs = [];
  page.on('console', (m) => logs.push(m.text()));
  try {
    await page.goto(`${web.url}readme.html`);
    await page.waitForFunction(() => window.result !== undefined, null, { timeout: 60000 });
    const result = await page.evaluate(() => window.result);
    assert.equal(result.error, undefined, `the README example failed: ${result.error}\n${logs.join('\n')}`);
    assert.ok(logs.some((l) => l.startsWith(`synced ${fixture.nodes} nodes in `)), `no "synced" line:\n${logs.join('\n')}`);
    const address = '0x000d836201318ec6899a67540690382780743280';
    assert.deepEqual(result.account, { nonce: 0, balance: BigInt(fixture.alloc[address].balance).toString() });
    assert.equal(result.slot0, `0x${'0'.repeat(64)}`);
    assert.equal(result.code, 0, 'an account without code has empty code');
    assert.deepEqual(result.check, { complete: true, nodes: fixture.nodes });
  } finally {
    await page.close();
    await web.close();
  }
});
