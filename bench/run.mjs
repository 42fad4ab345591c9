#!/usr/bin/env node
// `npm run bench`: triesync's benchmarks in one run, printed as a table and written to
// BENCHMARKS.md.
//
//   1. builds what it measures: the npm package (scripts/build-pkg.mjs), the reference peer
//      (release), and bench/core natively and for wasm (as shipped: opt-level z + wasm-opt
//      -Oz; and for speed: opt-level 3 + wasm-opt -O3);
//   2. the core alone, native and wasm (in the page), on the peer's `--synthetic 100k`;
//   3. per state (mainnet genesis, synthetic 100k, synthetic 1m), with the reference peer
//      serving it on 127.0.0.1, each run in headless Chromium:
//        triesync sync into IndexedDB (fresh page, memory sampled),
//        the ceiling: raw IndexedDB writes of the same node set (one put per item in
//          ~100 KiB transactions; packed into ~64 KiB and ~100 KiB records),
//        the JS peer loop (@ethereumjs/rlp + @noble/hashes) into IndexedDB;
//   4. medians, ratios and targets → stdout and BENCHMARKS.md.
//
// Every server it uses (the peer, a static file server for the bench page) is started here
// on 127.0.0.1 and stopped on exit.
//
// Options:
//   --runs N          runs per measurement (default 3)
//   --runs-1m N       runs for the 1m state (default 1: each of its syncs takes minutes)
//   --states LIST     comma-separated subset of genesis,100k,1m (default all)
//   --skip-build      use pkg/, the peer and bench/core as already built
//   --out FILE        where to write the report (default BENCHMARKS.md; --out - : nowhere)
//   --report FILE     only write the report again from the raw results a run saved (JSON)

import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
// Cargo's target folder (CARGO_TARGET_DIR is honoured, as cargo and wasm-pack do).
const targetDir = process.env.CARGO_TARGET_DIR ? path.resolve(process.env.CARGO_TARGET_DIR) : path.join(root, 'target');
const benchTarget = path.join(targetDir, 'bench');
const env = { ...process.env, PATH: `${os.homedir()}/.cargo/bin:${process.env.PATH}` };

// ---- options -----------------------------------------------------------------------

function parseArgs(argv) {
  const o = { runs: 3, runs1m: null, states: ['genesis', '100k', '1m'], skipBuild: false, out: 'BENCHMARKS.md', report: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--runs') o.runs = Number(val());
    else if (a === '--runs-1m') o.runs1m = Number(val());
    else if (a === '--states') o.states = val().split(',').map((s) => s.trim()).filter(Boolean);
    else if (a === '--skip-build') o.skipBuild = true;
    else if (a === '--out') o.out = val();
    else if (a === '--report') o.report = val();
    else if (a === '--help' || a === '-h') {
      console.log(fs.readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n').filter((l) => l.startsWith('//')).map((l) => l.slice(3)).join('\n'));
      process.exit(0);
    } else throw new Error(`unknown argument ${a}`);
  }
  if (!(o.runs >= 1)) throw new Error('--runs must be at least 1');
  // One run of the 1m state takes minutes per measurement: one run unless asked.
  o.runs1m ??= Math.min(o.runs, 1);
  for (const s of o.states) if (!STATES[s]) throw new Error(`unknown state ${s}`);
  return o;
}

const STATES = {
  genesis: { label: 'mainnet-genesis', args: ['--state', path.join(root, 'fixtures', 'mainnet-genesis.json')] },
  '100k': { label: 'synthetic 100k', args: ['--synthetic', '100k'] },
  '1m': { label: 'synthetic 1m', args: ['--synthetic', '1m'] },
};

const CORE_ACCOUNTS = 100_000;

// ---- small helpers -----------------------------------------------------------------

const log = (...a) => console.error('[bench]', ...a);

function run(cmd, args, opts = {}) {
  log(`$ ${cmd} ${args.join(' ')}`);
  const r = spawnSync(cmd, args, { cwd: root, stdio: ['ignore', opts.capture ? 'pipe' : 'inherit', 'inherit'], env: { ...env, ...(opts.env ?? {}) }, encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.error) throw new Error(`${cmd}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${cmd} exited with ${r.status ?? r.signal}`);
  return r.stdout;
}

function median(xs) {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

const fmtInt = (n) => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '–');
const fmt = (n, d = 1) => (Number.isFinite(n) ? n.toFixed(d) : '–');
const mib = (b) => b / (1024 * 1024);
const kb = (b) => b / 1000;

// ---- builds ------------------------------------------------------------------------

const WASM_FEATURES = [
  '--enable-bulk-memory', '--enable-nontrapping-float-to-int', '--enable-sign-ext',
  '--enable-reference-types', '--enable-multivalue', '--enable-mutable-globals',
  '--strip-debug', '--strip-producers',
];

function wasmOpt(file, level) {
  const bin = path.join(root, 'node_modules', 'binaryen', 'bin', 'wasm-opt');
  run(process.execPath, [bin, file, level, ...WASM_FEATURES, '-o', file]);
}

/** Newest modification time under `dir` (files matching `keep`), 0 when absent. */
function newest(dir, keep = () => true) {
  if (!fs.existsSync(dir)) return 0;
  let t = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (!e.isFile() || !keep(e.name)) continue;
    t = Math.max(t, fs.statSync(path.join(e.parentPath ?? e.path, e.name)).mtimeMs);
  }
  return t;
}

const mtime = (f) => (fs.existsSync(f) ? fs.statSync(f).mtimeMs : 0);

function buildAll(skip) {
  // pkg/ is shared with the other scripts (demo, e2e): rebuild it only when it is missing
  // or older than the sources it is built from.
  const pkgWasm = path.join(root, 'pkg', 'triesync_bg.wasm');
  const sources = Math.max(
    newest(path.join(root, 'crate'), (n) => n.endsWith('.rs') || n === 'Cargo.toml'),
    newest(path.join(root, 'core', 'src')),
    mtime(path.join(root, 'Cargo.lock')),
  );
  if (!fs.existsSync(pkgWasm) || (!skip && mtime(pkgWasm) < sources)) run(process.execPath, ['scripts/build-pkg.mjs']);
  else if (mtime(pkgWasm) < sources) log('warning: pkg/ is older than crate/ or core/ sources (--skip-build)');
  const peerBin = path.join(targetDir, 'release', 'triesync-peer');
  if (!skip || !fs.existsSync(peerBin)) run('cargo', ['build', '--release', '-q', '-p', 'triesync-peer']);
  const coreDir = path.join(root, 'bench', 'core');
  const nativeBin = path.join(benchTarget, 'release', 'triesync-bench-core');
  const cargoEnv = { CARGO_TARGET_DIR: benchTarget };
  const variants = {
    // As the package is built (scripts/build-pkg.mjs): smallest code.
    size: {
      profile: 'wasm-release', opt: '-Oz',
      env: {
        CARGO_PROFILE_WASM_RELEASE_INHERITS: 'release', CARGO_PROFILE_WASM_RELEASE_OPT_LEVEL: 'z',
        CARGO_PROFILE_WASM_RELEASE_LTO: 'fat', CARGO_PROFILE_WASM_RELEASE_CODEGEN_UNITS: '1',
        CARGO_PROFILE_WASM_RELEASE_PANIC: 'abort',
      },
    },
    // The same code built for speed.
    speed: { profile: 'release', opt: '-O3', env: {} },
  };
  if (!skip || !fs.existsSync(nativeBin)) {
    run('cargo', ['build', '--release', '-q', '--manifest-path', path.join(coreDir, 'Cargo.toml')], { env: cargoEnv });
  }
  for (const [name, v] of Object.entries(variants)) {
    const out = path.join(benchTarget, `wasm-${name}`);
    const bindgen = path.join(out, 'triesync_bench_core_bg.wasm');
    if (skip && fs.existsSync(bindgen)) continue;
    const cargoOut = path.join(benchTarget, 'wasm32-unknown-unknown', v.profile, 'triesync_bench_core.wasm');
    run('cargo', ['build', '-q', '--target', 'wasm32-unknown-unknown', '--profile', v.profile, '--manifest-path', path.join(coreDir, 'Cargo.toml')], { env: { ...cargoEnv, ...v.env } });
    if (mtime(bindgen) > mtime(cargoOut)) continue;
    run('wasm-bindgen', ['--target', 'web', '--out-dir', out, cargoOut]);
    wasmOpt(bindgen, v.opt);
  }
  return { pkgWasm: snapshotPkg(), peerBin, nativeBin };
}

/** Copies the built package into target/bench/pkg, which the bench page loads: a rebuild of
 *  the shared pkg/ during the run (another script, another terminal) cannot swap it
 *  mid-measurement. Waits while pkg/ is being built (its package.json is written last). */
function snapshotPkg() {
  const src = path.join(root, 'pkg');
  const dst = path.join(benchTarget, 'pkg');
  const files = ['triesync.js', 'triesync_bg.wasm', 'package.json'];
  for (let i = 0; ; i++) {
    const ok =
      files.every((f) => fs.existsSync(path.join(src, f))) &&
      JSON.parse(fs.readFileSync(path.join(src, 'package.json'), 'utf8')).exports &&
      mtime(path.join(src, 'package.json')) >= mtime(path.join(src, 'triesync_bg.wasm')) &&
      Date.now() - mtime(path.join(src, 'package.json')) > 2000;
    if (ok) break;
    if (i === 0) log('pkg/ is being built elsewhere: waiting');
    if (i > 300) throw new Error('pkg/ is incomplete (run npm run build:pkg)');
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1000);
  }
  fs.rmSync(dst, { recursive: true, force: true });
  fs.mkdirSync(dst, { recursive: true });
  for (const f of files) fs.copyFileSync(path.join(src, f), path.join(dst, f));
  return path.join(dst, 'triesync_bg.wasm');
}

// ---- static server for the bench page ------------------------------------------------

const MIME = { '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.wasm': 'application/wasm', '.json': 'application/json' };

/** Serves only these prefixes, each from its folder. */
function startStatic() {
  const mounts = [
    ['/bench/', path.join(root, 'bench', 'page')],
    ['/pkg/', path.join(benchTarget, 'pkg')],
    ['/node_modules/@noble/hashes/', path.join(root, 'node_modules', '@noble', 'hashes')],
    ['/node_modules/@ethereumjs/rlp/', path.join(root, 'node_modules', '@ethereumjs', 'rlp')],
    ['/bench-core/size/', path.join(benchTarget, 'wasm-size')],
    ['/bench-core/speed/', path.join(benchTarget, 'wasm-speed')],
  ];
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    const p = decodeURIComponent(url.pathname);
    for (const [prefix, dir] of mounts) {
      if (!p.startsWith(prefix)) continue;
      const file = path.resolve(dir, `.${p.slice(prefix.length - 1)}`);
      if (!file.startsWith(dir + path.sep)) break;
      fs.readFile(file, (err, data) => {
        if (err) {
          res.writeHead(404).end('not found');
          return;
        }
        res.writeHead(200, { 'Content-Type': MIME[path.extname(file)] ?? 'application/octet-stream', 'Cache-Control': 'no-store' });
        res.end(data);
      });
      return;
    }
    res.writeHead(404).end('not found');
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

// ---- the reference peer ------------------------------------------------------------------

/** Starts the peer; resolves with { url, root, stop() } once it printed its first line. */
function startPeer(bin, args, logFile) {
  const child = spawn(bin, ['--port', '0', '--exit-on-stdin-close', ...args], { stdio: ['pipe', 'pipe', fs.openSync(logFile, 'w')] });
  const stop = () =>
    new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      child.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
      child.stdin.end();
      child.kill('SIGTERM');
    });
  return new Promise((resolve, reject) => {
    let buf = '';
    const onData = (d) => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      child.stdout.off('data', onData);
      child.stdout.resume();
      const m = /^listening (\S+) root (0x[0-9a-f]{64})/.exec(buf.slice(0, nl));
      if (!m) return reject(new Error(`peer said: ${buf.slice(0, nl)}`));
      resolve({ url: m[1], root: m[2], stop, pid: child.pid });
    };
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', onData);
    child.once('exit', (code) => reject(new Error(`peer exited with ${code}: see ${logFile}`)));
  });
}

async function getJson(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: ${r.status}`);
  return r.json();
}

// ---- the browser -------------------------------------------------------------------

const CHROMIUM_ARGS = [
  '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
  '--disable-sync', '--disable-quic', '--no-first-run',
  // performance.memory without bucketing, and gc() between measurements.
  '--enable-precise-memory-info', '--js-flags=--expose-gc',
];

async function launch(userDataDir) {
  return chromium.launchPersistentContext(userDataDir, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: CHROMIUM_ARGS,
  });
}

/** Runs window.bench[fn](arg) in a page of its own (a fresh wasm instance, a clean heap). */
async function inPage(context, base, fn, arg) {
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(m.text());
  });
  try {
    await page.goto(`${base}/bench/index.html`);
    await page.waitForFunction(() => window.benchReady === true, null, { timeout: 30_000 });
    return await page.evaluate(([f, a]) => window.bench[f](a), [fn, arg]);
  } catch (e) {
    throw new Error(`${fn}: ${e.message}${errors.length ? `\npage errors:\n${errors.join('\n')}` : ''}`);
  } finally {
    await page.close();
  }
}

/** The profile's IndexedDB folders (which backend, whether values went to blob files). */
function listIdb(profile) {
  const dir = path.join(profile, 'Default', 'IndexedDB');
  return fs.existsSync(dir) ? fs.readdirSync(dir) : [];
}

function idbBackend(files) {
  const kinds = new Set(files.map((f) => (/\.indexeddb\.(\w+)$/.exec(f) ?? [])[1]).filter(Boolean));
  if (kinds.size === 0) return 'unknown backend';
  const backend = kinds.has('leveldb') ? 'LevelDB' : kinds.has('sqlite') ? 'SQLite' : [...kinds].join('+');
  return `${backend} backend${kinds.has('blob') ? ', large values in blob files' : ''}`;
}

// ---- the measurements --------------------------------------------------------------------

const CEILINGS = [
  ['per-item', 'one put per item, ~100 KiB transactions'],
  ['packed-64k', 'packed into records just under 64 KiB, one per transaction'],
  ['packed-100k', 'packed into ~100 KiB records, one per transaction'],
];

async function benchState(key, ctx) {
  const { context, base, peerBin, runs, tmp } = ctx;
  const st = STATES[key];
  log(`${st.label}: starting the peer`);
  const t = Date.now();
  const peer = await startPeer(peerBin, st.args, path.join(tmp, `peer-${key}.log`));
  try {
    const info = await getJson(`${peer.url}/v1/info`);
    log(`${st.label}: ${peer.url} root ${peer.root}, ${info.nodes} nodes + ${info.codes} codes (${fmt(mib(info.nodeBytes + info.codeBytes))} MiB), built in ${((Date.now() - t) / 1000).toFixed(1)} s`);
    const items = info.nodes + info.codes;
    const out = { key, label: st.label, info, items, bytes: info.nodeBytes + info.codeBytes, runs: [] };
    for (let i = 0; i < runs; i++) {
      const r = { load: os.loadavg()[0] };
      const ts = await inPage(context, base, 'triesyncSync', { peer: peer.url, root: peer.root, database: 'bench-triesync', check: true });
      if (!ts.report.complete) throw new Error(`${st.label}: triesync did not complete`);
      if (ts.counts.nodes !== info.nodes || ts.counts.codes !== info.codes) {
        throw new Error(`${st.label}: triesync wrote ${ts.counts.nodes} nodes + ${ts.counts.codes} codes, the peer serves ${info.nodes} + ${info.codes}`);
      }
      r.triesync = ts;
      log(`${st.label} run ${i + 1}/${runs}: triesync ${fmt(ts.wallMs / 1000, 2)} s, ${fmtInt(items / (ts.wallMs / 1000))} items/s, peak wasm ${fmt(mib(ts.memory.peakWasm))} MiB, peak heap ${fmt(mib(ts.memory.peakHeap))} MiB`);

      // The ceiling, from the node set triesync just wrote, in a page of its own.
      const page = await context.newPage();
      try {
        await page.goto(`${base}/bench/index.html`);
        await page.waitForFunction(() => window.benchReady === true);
        const set = await page.evaluate((a) => window.bench.loadNodeSet(a), { database: 'bench-triesync' });
        if (set.items !== items || set.bytes !== out.bytes) throw new Error(`${st.label}: node set read back: ${JSON.stringify(set)}`);
        await page.evaluate((a) => window.bench.deleteDatabase(a), { database: 'bench-triesync' });
        r.ceiling = {};
        for (const [variant] of CEILINGS) {
          const c = await page.evaluate((a) => window.bench.ceiling(a), { variant, database: 'bench-ceiling' });
          r.ceiling[variant] = c;
          log(`${st.label} run ${i + 1}/${runs}: ceiling ${variant} ${fmt(c.wallMs / 1000, 2)} s, ${fmtInt(items / (c.wallMs / 1000))} items/s (${c.transactions} transactions)`);
        }
      } finally {
        await page.close();
      }

      const js = await inPage(context, base, 'jsLoop', { peer: peer.url, root: peer.root, database: 'bench-jsloop' });
      if (js.items !== items) throw new Error(`${st.label}: JS loop wrote ${js.items} items, expected ${items}`);
      await inPage(context, base, 'deleteDatabase', { database: 'bench-jsloop' });
      r.js = js;
      log(`${st.label} run ${i + 1}/${runs}: JS loop ${fmt(js.wallMs / 1000, 2)} s, ${fmtInt(items / (js.wallMs / 1000))} items/s, peak heap ${fmt(mib(js.memory.peakHeap))} MiB`);
      out.runs.push(r);
    }
    return out;
  } finally {
    await peer.stop();
  }
}

// ---- the report -------------------------------------------------------------------------

function summarise(s) {
  const rate = (ms) => s.items / (ms / 1000);
  const med = (f) => median(s.runs.map(f));
  const wall = med((r) => r.triesync.wallMs);
  const t = {
    wallMs: wall,
    rate: med((r) => rate(r.triesync.wallMs)),
    mbps: med((r) => s.bytes / 1e6 / (r.triesync.wallMs / 1000)),
    processMs: med((r) => r.triesync.report.timings.processMs),
    waitMs: med((r) => r.triesync.report.timings.waitMs),
    checkMs: med((r) => r.triesync.report.timings.checkMs),
    commitMs: med((r) => r.triesync.report.timings.commitMs),
    batches: med((r) => r.triesync.report.batches),
    requests: med((r) => r.triesync.report.peers.reduce((a, p) => a + p.requests, 0)),
    peakWasm: Math.max(...s.runs.map((r) => r.triesync.memory.peakWasm)),
    peakHeap: Math.max(...s.runs.map((r) => r.triesync.memory.peakHeap)),
    // A quarter without a sample (one batch spanned it) has no figure.
    quarters: [0, 1, 2, 3].map((q) => {
      const of = (k) => median(s.runs.map((r) => (r.triesync.memory.quarters[q].samples ? r.triesync.memory.quarters[q][k] : NaN)));
      return { wasm: of('wasm'), heap: of('heap') };
    }),
  };
  const ceiling = Object.fromEntries(
    CEILINGS.map(([v]) => [v, { wallMs: med((r) => r.ceiling[v].wallMs), rate: med((r) => rate(r.ceiling[v].wallMs)), mbps: med((r) => s.bytes / 1e6 / (r.ceiling[v].wallMs / 1000)), transactions: s.runs[0].ceiling[v].transactions }]),
  );
  const js = {
    wallMs: med((r) => r.js.wallMs),
    rate: med((r) => rate(r.js.wallMs)),
    mbps: med((r) => s.bytes / 1e6 / (r.js.wallMs / 1000)),
    processMs: med((r) => r.js.timings.processMs),
    waitMs: med((r) => r.js.timings.waitMs),
    commitMs: med((r) => r.js.timings.commitMs),
    requests: med((r) => r.js.requests),
    peakHeap: Math.max(...s.runs.map((r) => r.js.memory.peakHeap)),
  };
  return { ...s, t, ceiling, js };
}

function pct(part, whole) {
  return `${fmtInt(part)} (${fmt((100 * part) / whole, 0)}%)`;
}

function mark(ok) {
  return ok ? 'met' : '**missed**';
}

/** Sentences derived from the figures (the same code words them whatever they are). */
function findings(S, res) {
  const out = [];
  const big = S[S.length - 1];
  if (!big) return out;
  const t = big.t;
  const shares = [
    ['IndexedDB commits (commitMs)', t.commitMs],
    ['waiting for the peer (waitMs)', t.waitMs],
    ['hashing, decoding and scheduling (processMs)', t.processMs],
    ['store lookups (checkMs)', t.checkMs],
  ].sort((a, b) => b[1] - a[1]);
  const sum = shares.reduce((a, [, ms]) => a + ms, 0);
  out.push(`Where triesync's time goes (${big.label}): ${shares.map(([n, ms]) => `${n} ${fmt((100 * ms) / t.wallMs, 0)}%`).join(', ')}${sum <= t.wallMs ? `; the rest (${fmt((100 * (t.wallMs - sum)) / t.wallMs, 0)}%) is the driver's other work` : ' (they add up to more than the wall time: batch writes overlap waiting and processing)'}.`);
  if (t.checkMs > 0.3 * t.wallMs) {
    out.push(`Store lookups (checkMs, ${fmt((100 * t.checkMs) / t.wallMs, 0)}%) are IndexedDB readonly transactions on the object stores a batch write holds: IndexedDB starts them only once the readwrite transaction before them has committed, so while a write is in progress the loop waits in the lookup, and the write does not overlap the rest of the work.`);
  }
  const per = big.ceiling['per-item'];
  const p64 = big.ceiling['packed-64k'];
  const p100 = big.ceiling['packed-100k'];
  const usPer = (c) => (1000 * c.wallMs) / big.items;
  out.push(`Raw IndexedDB in this browser costs ${fmt(usPer(per), 1)} µs per item with one put per item, against ${fmt(usPer(p64), 2)} µs (records under 64 KiB) and ${fmt(usPer(p100), 2)} µs (~100 KiB records) when the same bytes are packed: ${fmt(per.wallMs / p64.wallMs, 0)}× and ${fmt(per.wallMs / p100.wallMs, 0)}× less. The cost is per put, not per byte.`);
  out.push(`triesync runs at ${fmt(t.rate / per.rate, 2)}× the one-put-per-item ceiling${t.rate > per.rate ? ` (above 1: that ceiling run was slower than the sync before it; ${big.runs.length === 1 ? 'with one run on a shared machine, take such figures ±40%' : 'the machine was shared'})` : ''}: with this layout it cannot go much faster, whatever the engine does. The JS loop is bound by the same puts (its commits take ${fmt((100 * big.js.commitMs) / big.js.wallMs, 0)}% of its time), which is why triesync's rate is only ${fmt(t.rate / big.js.rate, 2)}× the JS loop's; ≥ 5× needs fewer puts, not faster code.`);
  const core = res.core;
  const wasmRate = median(core.size.runs.map((r) => r.itemsPerSec));
  const speedRate = median(core.speed.runs.map((r) => r.itemsPerSec));
  const natRate = median(core.native.runs.map((r) => r.itemsPerSec));
  out.push(`The engine alone (no I/O) verifies and schedules ${fmtInt(wasmRate)} items/s in wasm as shipped (${fmt(wasmRate / natRate, 2)}× native; ${fmtInt(speedRate)} items/s built with opt-level 3, ${fmt(speedRate / wasmRate, 2)}× as fast for ${fmt(kb(core.sizes.speed - core.sizes.size), 0)} KB more before gzip): ${fmt(wasmRate / per.rate, 1)}× the rate IndexedDB accepts one put per item.`);
  const best = p64.wallMs <= p100.wallMs ? ['records under 64 KiB', p64] : ['~100 KiB records', p100];
  // What the sync does besides writing: with serial writes, its wall time less its
  // commits; with background writes (the timings add up to more than the wall time) only
  // processing and lookups are known to be its own (its waits include waiting for writes).
  const serial = sum <= t.wallMs;
  // Serial writes: the wall time less the commits is what the sync does besides writing.
  // Background writes: waits and lookups include waiting for writes, so take processing
  // plus the peer's time as the JS loop saw it.
  const rest = serial ? t.wallMs - t.commitMs : t.processMs + big.js.waitMs;
  const projected = rest + best[1].wallMs;
  out.push(`Estimate for a packed layout (${big.label}): ${serial ? "triesync's wall time minus its commits" : "triesync's processing plus the JS loop's wait for the peer"} (${fmt(rest / 1000, 1)} s) plus the time of the faster packed ceiling (${best[0]}, ${fmt(best[1].wallMs / 1000, 1)} s) = ${fmt(projected / 1000, 1)} s instead of ${fmt(t.wallMs / 1000, 1)} s (${fmt(t.wallMs / projected, 1)}×, ${fmtInt(big.items / (projected / 1000))} items/s, ${fmt(big.items / (projected / 1000) / big.js.rate, 1)}× the JS loop), with writes done one after the other and not counting store lookups (a packed layout answers them from an index of its own).`);
  if (S.length > 1) {
    const small = S[0];
    out.push(`The one-put rate falls as the database grows: ${fmtInt(small.ceiling['per-item'].rate)} items/s for ${small.label}, ${fmtInt(per.rate)} for ${big.label} (LevelDB compacts every small record it holds). Packed records under 64 KiB, which LevelDB stores inline, go from ${fmt(small.ceiling['per-item'].wallMs / small.ceiling['packed-64k'].wallMs, 0)}× to ${fmt(per.wallMs / p64.wallMs, 0)}× faster than one put per item; ~100 KiB records, which Chromium moves to blob files outside LevelDB, from ${fmt(small.ceiling['per-item'].wallMs / small.ceiling['packed-100k'].wallMs, 0)}× to ${fmt(per.wallMs / p100.wallMs, 0)}×.`);
  }
  return out;
}

function report(res) {
  const L = [];
  const p = (s = '') => L.push(s);
  const S = res.states.map(summarise);
  const byKey = Object.fromEntries(S.map((s) => [s.key, s]));

  p('# triesync benchmarks');
  p();
  p(`Produced by \`npm run bench\`${res.argv.length ? ` (\`${res.argv.join(' ')}\`)` : ''} on ${res.date}.`);
  p();
  p('| machine | |');
  p('|---|---|');
  p(`| CPU | ${res.machine.cpu}, ${res.machine.nproc} cores (\`nproc\`) |`);
  p(`| memory | ${fmt(res.machine.memGiB, 1)} GiB |`);
  p(`| OS | ${res.machine.os} |`);
  p(`| browser | ${res.machine.chromium} (headless, IndexedDB on disk in a fresh profile: ${res.machine.idb}) |`);
  p(`| node | ${process.version} |`);
  p(`| triesync | commit ${res.machine.commit}; pkg/triesync_bg.wasm as built by scripts/build-pkg.mjs |`);
  if (res.machine.minutes) p(`| run time | ${fmt(res.machine.minutes, 1)} min, builds included |`);
  p(`| load average | ${fmt(res.machine.loadStart, 2)} at the start, ${fmt(res.machine.loadEnd, 2)} at the end (1 min; the machine is shared: above ~0.5 the figures are noisy) |`);
  p();
  p(`Each figure is the median of ${res.opts.runs} runs${res.opts.runs1m !== res.opts.runs && byKey['1m'] ? ` (synthetic 1m: ${res.opts.runs1m} run${res.opts.runs1m > 1 ? 's' : ''})` : ''}. "items" are trie nodes plus contract codes, each one IndexedDB record in triesync's layout; rates are items (or bytes) over wall time. The peer is the reference peer (\`target/release/triesync-peer\`, binary HTTP) on 127.0.0.1, sharing the machine's cores with the browser.`);
  p();

  p('## Sync throughput: triesync into IndexedDB');
  p();
  p('| state | items | MB | wall | items/s | MB/s | processMs (hash, decode, schedule) | waitMs (peer) | checkMs (store lookups) | commitMs (IndexedDB writes) | transactions | vs ceiling | vs JS loop |');
  p('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const s of S) {
    const t = s.t;
    p(`| ${s.label} | ${fmtInt(s.items)} | ${fmt(s.bytes / 1e6)} | ${fmt(t.wallMs / 1000, 2)} s | ${fmtInt(t.rate)} | ${fmt(t.mbps, 2)} | ${pct(t.processMs, t.wallMs)} | ${pct(t.waitMs, t.wallMs)} | ${pct(t.checkMs, t.wallMs)} | ${pct(t.commitMs, t.wallMs)} | ${fmtInt(t.batches)} | ${fmt(t.rate / s.ceiling['per-item'].rate, 2)}× | ${fmt(t.rate / s.js.rate, 2)}× |`);
  }
  p();
  p('The four timings are the final report\'s `timings` (ms, share of wall time). When the driver writes batches in the background, commitMs (start to end of each write) overlaps waitMs and processMs; otherwise what they leave of the wall time is the driver\'s other work (request assembly, progress, opening the database). "transactions": batches written. "vs ceiling": items/s over the one-put-per-item ceiling\'s; "vs JS loop": over the JS peer loop\'s.');
  p();

  p('## The ceiling: raw IndexedDB writes of the same node set (same run, same data)');
  p();
  p('Plain JavaScript in the same browser, writing the node set triesync had just written (read back, shuffled: hashes arrive in no key order), transactions awaited one after the other, as triesync does. No network, no hashing: only the store.');
  p();
  p('| state | layout | transactions | wall | items/s | MB/s | triesync as a share of it |');
  p('|---|---|---:|---:|---:|---:|---:|');
  for (const s of S) {
    for (const [v, label] of CEILINGS) {
      const c = s.ceiling[v];
      p(`| ${s.label} | ${label} | ${fmtInt(c.transactions)} | ${fmt(c.wallMs / 1000, 3)} s | ${fmtInt(c.rate)} | ${fmt(c.mbps, 1)} | ${fmt(s.t.rate / c.rate, 2)}× |`);
    }
  }
  p();

  p('## A JS peer loop (same run, same data, same peer)');
  p();
  p('`bench/page/jsloop.js`: fetch → keccak-verify (@noble/hashes `keccak_256`) → decode children (@ethereumjs/rlp) → one put per item in ~100 KiB transactions, 2 requests of 384 hashes in flight, a Set of every hash seen.');
  p();
  p('| state | wall | items/s | MB/s | process (hash, decode) | wait (peer) | commit (IndexedDB) | requests | peak JS heap | triesync / JS |');
  p('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const s of S) {
    const j = s.js;
    p(`| ${s.label} | ${fmt(j.wallMs / 1000, 2)} s | ${fmtInt(j.rate)} | ${fmt(j.mbps, 2)} | ${pct(j.processMs, j.wallMs)} | ${pct(j.waitMs, j.wallMs)} | ${pct(j.commitMs, j.wallMs)} | ${fmtInt(j.requests)} | ${fmt(mib(j.peakHeap))} MiB | ${fmt(s.t.rate / j.rate, 2)}× |`);
  }
  p();

  p('## The core alone: native vs wasm');
  p();
  const c = res.core;
  p(`\`bench/core\`: \`Syncer::run\` of the peer's \`--synthetic 100k\` state (${fmtInt(c.native.nodes + c.native.codes)} items, ${fmt(c.native.runs[0].bytes / 1e6)} MB) from an honest in-memory peer (\`testing::MemoryPeer\`) into \`store::MemoryStore\`: scheduler, keccak256 verification, node decoding, driver; no I/O. Median of ${c.native.runs.length} runs.`);
  p();
  p('| build | items/s | wall | processMs | ratio to native |');
  p('|---|---:|---:|---:|---:|');
  const nat = median(c.native.runs.map((r) => r.itemsPerSec));
  const row = (label, b) => {
    const r = median(b.runs.map((x) => x.itemsPerSec));
    p(`| ${label} | ${fmtInt(r)} | ${fmt(median(b.runs.map((x) => x.ms)), 0)} ms | ${fmt(median(b.runs.map((x) => x.processMs)), 0)} ms | ${fmt(r / nat, 2)}× |`);
  };
  row('native (x86_64, opt-level 3, LTO)', c.native);
  row(`wasm in Chromium, as shipped (opt-level z, wasm-opt -Oz; ${fmt(kb(c.sizes.size), 0)} KB)`, c.size);
  row(`wasm in Chromium, for speed (opt-level 3, wasm-opt -O3; ${fmt(kb(c.sizes.speed), 0)} KB)`, c.speed);
  p();

  p('## Memory during the sync');
  p();
  p('Sampled every 100 ms and at every commit in the syncing page: the triesync instance\'s `WebAssembly.Memory` (`buffer.byteLength`; it never shrinks) and `performance.memory.usedJSHeapSize` (precise). Peak overall, and the peak within each quarter of the run by items already committed ("–": no sample fell in that quarter).');
  p();
  p('| state | peak wasm memory | peak JS heap | wasm by quarter (MiB) | JS heap by quarter (MiB) | JS loop peak heap |');
  p('|---|---:|---:|---|---|---:|');
  for (const s of S) {
    const q = s.t.quarters;
    p(`| ${s.label} | ${fmt(mib(s.t.peakWasm))} MiB | ${fmt(mib(s.t.peakHeap))} MiB | ${q.map((x) => fmt(mib(x.wasm))).join(' / ')} | ${q.map((x) => fmt(mib(x.heap))).join(' / ')} | ${fmt(mib(s.js.peakHeap))} MiB |`);
  }
  p();

  p('## Size');
  p();
  p(`| file | raw | gzip -9 | brotli |`);
  p('|---|---:|---:|---:|');
  p(`| pkg/triesync_bg.wasm | ${fmt(kb(res.size.raw))} KB | ${fmt(kb(res.size.gzip))} KB | ${fmt(kb(res.size.brotli))} KB |`);
  p();

  p('## Targets');
  p();
  p('| target | measured | |');
  p('|---|---|---|');
  const g = byKey.genesis;
  if (g) p(`| mainnet-genesis under 1.5 s | ${fmt(g.t.wallMs / 1000, 2)} s | ${mark(g.t.wallMs < 1500)} |`);
  for (const s of S) p(`| ≥ 0.9 × the one-put-per-item IndexedDB rate (${s.label}) | ${fmt(s.t.rate / s.ceiling['per-item'].rate, 2)}× | ${mark(s.t.rate / s.ceiling['per-item'].rate >= 0.9)} |`);
  for (const s of S) p(`| ≥ 5 × the JS loop (${s.label}) | ${fmt(s.t.rate / s.js.rate, 2)}× | ${mark(s.t.rate / s.js.rate >= 5)} |`);
  if (byKey['100k'] && byKey['1m']) {
    const a = byKey['100k'].t;
    const b = byKey['1m'].t;
    const tot = (x) => x.peakWasm + x.peakHeap;
    p(`| peak memory (wasm + JS heap) for 1m ≤ 2 × that for 100k | ${fmt(mib(tot(b)))} MiB vs ${fmt(mib(tot(a)))} MiB: ${fmt(tot(b) / tot(a), 2)}× (wasm alone ${fmt(b.peakWasm / a.peakWasm, 2)}×) | ${mark(tot(b) <= 2 * tot(a))} |`);
  }
  p(`| wasm ≤ 150 KB gzipped | ${fmt(kb(res.size.gzip))} KB | ${mark(res.size.gzip <= 150_000)} |`);
  p();

  p('## What the numbers say');
  p();
  for (const line of findings(S, res)) p(`- ${line}`);
  p();

  p('## Every run');
  p();
  p('| state | run | load | triesync wall | ceiling per item | packed 64 KiB | packed 100 KiB | JS loop |');
  p('|---|---:|---:|---:|---:|---:|---:|---:|');
  for (const s of S) {
    s.runs.forEach((r, i) => {
      p(`| ${s.label} | ${i + 1} | ${fmt(r.load, 2)} | ${fmt(r.triesync.wallMs, 0)} ms | ${fmt(r.ceiling['per-item'].wallMs, 0)} ms | ${fmt(r.ceiling['packed-64k'].wallMs, 0)} ms | ${fmt(r.ceiling['packed-100k'].wallMs, 0)} ms | ${fmt(r.js.wallMs, 0)} ms |`);
    });
  }
  p();
  p('Reproduce: `npm run bench` (options after `--`: `--runs N`, `--runs-1m N`, `--states genesis,100k,1m`, `--skip-build`, `--report FILE` to rewrite this file from the saved results of a run). The harness is in `bench/`: `run.mjs` (builds, starts the peer and a static server on 127.0.0.1, drives headless Chromium through playwright-core), `page/` (the in-page measurements), `core/` (the native/wasm core bench, its own cargo workspace).');
  return L.join('\n') + '\n';
}

// ---- main ----------------------------------------------------------------------------

async function main() {
  const argv = process.argv.slice(2);
  const opts = parseArgs(argv);
  if (opts.report) {
    const md = report(JSON.parse(fs.readFileSync(opts.report, 'utf8')));
    console.log(md);
    if (opts.out !== '-') fs.writeFileSync(path.resolve(root, opts.out), md);
    return;
  }
  const started = Date.now();
  const loadStart = os.loadavg()[0];
  const { pkgWasm, peerBin, nativeBin } = buildAll(opts.skipBuild);

  const wasm = fs.readFileSync(pkgWasm);
  const size = {
    raw: wasm.length,
    gzip: zlib.gzipSync(wasm, { level: 9 }).length,
    brotli: zlib.brotliCompressSync(wasm, { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 11 } }).length,
  };

  log(`core bench, native: ${CORE_ACCOUNTS} accounts × ${opts.runs}`);
  const native = JSON.parse(run(nativeBin, [String(CORE_ACCOUNTS), String(opts.runs)], { capture: true }));

  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'triesync-bench-'));
  const server = await startStatic();
  const base = `http://127.0.0.1:${server.address().port}`;
  let context;
  const states = [];
  let core;
  let chromiumVersion;
  let idbFiles = [];
  try {
    context = await launch(path.join(tmp, 'profile'));
    const first = context.pages()[0] ?? (await context.newPage());
    const cdp = await context.newCDPSession(first);
    chromiumVersion = (await cdp.send('Browser.getVersion')).product;
    await cdp.detach();

    core = { native, sizes: {} };
    for (const v of ['size', 'speed']) {
      log(`core bench, wasm (${v}) in Chromium`);
      core[v] = await inPage(context, base, 'coreWasm', { variant: v, accounts: CORE_ACCOUNTS, runs: opts.runs });
      core.sizes[v] = fs.statSync(path.join(benchTarget, `wasm-${v}`, 'triesync_bench_core_bg.wasm')).size;
      if (core[v].root !== native.root) throw new Error('wasm and native core benches built different states');
    }
    log(`core: native ${fmtInt(median(native.runs.map((r) => r.itemsPerSec)))} items/s, wasm ${fmtInt(median(core.size.runs.map((r) => r.itemsPerSec)))} (as shipped), ${fmtInt(median(core.speed.runs.map((r) => r.itemsPerSec)))} (opt-level 3)`);

    for (const key of opts.states) {
      const runs = key === '1m' ? opts.runs1m : opts.runs;
      states.push(await benchState(key, { context, base, peerBin, runs, tmp }));
    }
    idbFiles = listIdb(path.join(tmp, 'profile'));
  } finally {
    if (context) await context.close();
    server.close();
    fs.rmSync(tmp, { recursive: true, force: true });
  }

  const git = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8' }).stdout.trim();
  const dirty = spawnSync('git', ['status', '--porcelain', '--', 'core', 'crate'], { cwd: root, encoding: 'utf8' }).stdout.trim();
  const osRelease = fs.existsSync('/etc/os-release') ? (/PRETTY_NAME="([^"]+)"/.exec(fs.readFileSync('/etc/os-release', 'utf8'))?.[1] ?? os.type()) : os.type();
  const res = {
    argv,
    opts,
    date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    machine: {
      cpu: os.cpus()[0]?.model?.trim() ?? 'unknown',
      nproc: os.availableParallelism(),
      memGiB: os.totalmem() / 2 ** 30,
      os: `${osRelease}, Linux ${os.release()}`,
      chromium: chromiumVersion,
      commit: `${git}${dirty ? ' + uncommitted changes in core/ or crate/' : ''}`,
      loadStart,
      loadEnd: os.loadavg()[0],
      idb: idbBackend(idbFiles),
      minutes: (Date.now() - started) / 60000,
    },
    size,
    core,
    states,
  };
  const md = report(res);
  console.log(md);
  log(`done in ${((Date.now() - started) / 60000).toFixed(1)} min`);
  const raw = path.join(benchTarget, `results-${res.date.replace(/[:]/g, '')}.json`);
  fs.mkdirSync(benchTarget, { recursive: true });
  fs.writeFileSync(raw, JSON.stringify(res));
  log(`raw results: ${raw} (npm run bench -- --report FILE writes the report again)`);
  if (opts.out !== '-') {
    fs.writeFileSync(path.resolve(root, opts.out), md);
    log(`wrote ${opts.out}`);
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
