#!/usr/bin/env node
// `npm run bench`: triesync's benchmarks in one run, printed as a table and written to
// BENCHMARKS.md.
//
//   1. builds what it measures: the npm package (scripts/build-pkg.mjs), the reference peer
//      (release), and bench/core natively and for wasm (as shipped: the wasm-release
//      profile, opt-level z with sha3 and keccak at opt-level 3, + wasm-opt -Oz; opt-level
//      z throughout, the profile before; as shipped with triesync-core at opt-level 3 too;
//      and for speed: opt-level 3 + wasm-opt -O3);
//   2. the core alone, native and wasm (in the page), on the peer's `--synthetic 100k`;
//   3. per state (mainnet genesis, synthetic 100k, synthetic 1m), with the reference peer
//      serving it on 127.0.0.1, each run in headless Chromium:
//        triesync sync into IndexedDB in each layout (packed, per-item: fresh page and
//          database each, memory sampled),
//        the ceiling: raw IndexedDB writes of the same node set (one put per item in
//          ~100 KiB transactions; packed into ~64 KiB and ~100 KiB records),
//        the JS peer loop (@ethereumjs/rlp + @noble/hashes) into IndexedDB;
//   4. medians, ratios and targets → stdout and BENCHMARKS.md.
//
// Every server it uses (the peer, a static file server for the bench page) is started here
// on 127.0.0.1 and stopped on exit.
//
// Options:
//   --runs N           runs per measurement (default 3)
//   --runs-1m N        runs for the 1m state (default 1: each of its syncs takes minutes)
//   --states LIST      comma-separated subset of genesis,100k,1m (default all)
//   --layouts LIST     triesync's database layouts, each synced into and reported as a row
//                      of its own: packed (a new database's default), per-item (one record
//                      per item); default packed,per-item
//   --layouts-1m LIST  the layouts for the 1m state (default: --layouts)
//   --baselines LIST   the states on which the ceiling and the JS loop run (default: every
//                      state measured; "none" for none). The ceiling writes the node set
//                      read back from the per-item sync: these states need that layout.
//   --merge FILE       raw results of an earlier run (JSON): whatever this run leaves out
//                      (a state, a layout, the ceiling, the JS loop) is carried over from
//                      it, and labelled in the report with that run's date and commit. The
//                      raw results this run saves hold what was carried over.
//   --skip-build       use pkg/, the peer and bench/core as already built
//   --out FILE         where to write the report (default BENCHMARKS.md; --out - : nowhere)
//   --report FILE      only write the report again from the raw results a run saved (JSON;
//                      with --merge, merged as above)
//
// A shorter run that keeps the slowest measurements of an earlier full run, e.g.:
//   npm run bench -- --states genesis,100k,1m --layouts-1m packed --baselines genesis,100k \
//     --merge target/bench/results-<date>.json

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

const LAYOUTS = ['packed', 'per-item'];

function parseArgs(argv) {
  const o = { runs: 3, runs1m: null, states: ['genesis', '100k', '1m'], layouts: [...LAYOUTS], layouts1m: null, baselines: null, merge: null, skipBuild: false, out: 'BENCHMARKS.md', report: null };
  const list = (v) => v.split(',').map((s) => s.trim()).filter(Boolean);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--runs') o.runs = Number(val());
    else if (a === '--runs-1m') o.runs1m = Number(val());
    else if (a === '--states') o.states = list(val());
    else if (a === '--layouts') o.layouts = list(val());
    else if (a === '--layouts-1m') o.layouts1m = list(val());
    else if (a === '--baselines') {
      const v = val();
      o.baselines = v === 'none' ? [] : list(v);
    }
    else if (a === '--merge') o.merge = val();
    else if (a === '--skip-build') o.skipBuild = true;
    else if (a === '--out') o.out = val();
    else if (a === '--report') o.report = val();
    else if (a === '--help' || a === '-h') {
      // The comment block at the top of this file.
      const lines = fs.readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n').slice(1);
      console.log(lines.slice(0, lines.findIndex((l) => !l.startsWith('//'))).map((l) => l.slice(3)).join('\n'));
      process.exit(0);
    } else throw new Error(`unknown argument ${a}`);
  }
  if (!(o.runs >= 1)) throw new Error('--runs must be at least 1');
  // One run of the 1m state takes minutes per measurement: one run unless asked.
  o.runs1m ??= Math.min(o.runs, 1);
  o.layouts1m ??= o.layouts;
  o.baselines ??= o.states;
  for (const s of [...o.states, ...o.baselines]) if (!STATES[s]) throw new Error(`unknown state ${s}`);
  for (const l of [...o.layouts, ...o.layouts1m]) if (!LAYOUTS.includes(l)) throw new Error(`unknown layout ${l} (${LAYOUTS.join(', ')})`);
  for (const s of o.baselines) {
    if (!o.states.includes(s)) throw new Error(`--baselines ${s}: not in --states`);
    if (!layoutsOf(o, s).includes('per-item')) throw new Error(`--baselines ${s}: the ceiling needs the per-item layout synced on that state`);
  }
  return o;
}

/** The layouts measured on state `key`. */
const layoutsOf = (o, key) => (key === '1m' ? o.layouts1m : o.layouts);

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

/** The wasm builds of bench/core: cargo profile (bench/core/Cargo.toml), wasm-opt level. */
const CORE_VARIANTS = [
  // As the package is built (root Cargo.toml, scripts/build-pkg.mjs).
  { key: 'size', profile: 'wasm-release', opt: '-Oz', label: 'as shipped (opt-level z, sha3 and keccak at opt-level 3, wasm-opt -Oz' },
  // The shipped profile before keccak was built for speed.
  { key: 'size-z', profile: 'wasm-z', opt: '-Oz', label: 'opt-level z throughout (the profile before; wasm-opt -Oz' },
  // Not shipped: the shipped profile with triesync-core at opt-level 3 too.
  { key: 'size-core3', profile: 'wasm-core3', opt: '-Oz', label: 'as shipped with triesync-core at opt-level 3 too (not shipped; wasm-opt -Oz' },
  // The same code built for speed.
  { key: 'speed', profile: 'release', opt: '-O3', label: 'for speed (opt-level 3, wasm-opt -O3' },
];

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
  // The wasm profiles are in bench/core/Cargo.toml (wasm-release mirrors the root
  // Cargo.toml's, which scripts/build-pkg.mjs builds the package with).
  const variants = Object.fromEntries(CORE_VARIANTS.map((v) => [v.key, v]));
  if (!skip || !fs.existsSync(nativeBin)) {
    run('cargo', ['build', '--release', '-q', '--manifest-path', path.join(coreDir, 'Cargo.toml')], { env: cargoEnv });
  }
  for (const [name, v] of Object.entries(variants)) {
    const out = path.join(benchTarget, `wasm-${name}`);
    const bindgen = path.join(out, 'triesync_bench_core_bg.wasm');
    if (skip && fs.existsSync(bindgen)) continue;
    const cargoOut = path.join(benchTarget, 'wasm32-unknown-unknown', v.profile, 'triesync_bench_core.wasm');
    run('cargo', ['build', '-q', '--target', 'wasm32-unknown-unknown', '--profile', v.profile, '--manifest-path', path.join(coreDir, 'Cargo.toml')], { env: cargoEnv });
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
    ...CORE_VARIANTS.map((v) => [`/bench-core/${v.key}/`, path.join(benchTarget, `wasm-${v.key}`)]),
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
  const { context, base, peerBin, runs, tmp, layouts, baselines } = ctx;
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
      const r = { load: os.loadavg()[0], triesync: {} };
      for (const layout of layouts) {
        const database = `bench-triesync-${layout}`;
        const ts = await inPage(context, base, 'triesyncSync', { peer: peer.url, root: peer.root, database, layout, check: true });
        if (!ts.report.complete) throw new Error(`${st.label}: triesync (${layout}) did not complete`);
        if (ts.counts.nodes !== info.nodes || ts.counts.codes !== info.codes) {
          throw new Error(`${st.label}: triesync (${layout}) wrote ${ts.counts.nodes} nodes + ${ts.counts.codes} codes, the peer serves ${info.nodes} + ${info.codes}`);
        }
        // The database must be in the layout asked for (a library without the option
        // would write its default).
        if (ts.layout !== layout) throw new Error(`${st.label}: asked for the ${layout} layout, the database says ${ts.layout}`);
        r.triesync[layout] = ts;
        const tm = ts.report.timings;
        log(`${st.label} run ${i + 1}/${runs}: triesync ${layout} ${fmt(ts.wallMs / 1000, 2)} s, ${fmtInt(items / (ts.wallMs / 1000))} items/s (wait: peers ${fmtInt(tm.peerWaitMs)} ms, write ${fmtInt(tm.writeWaitMs)} ms), peak wasm ${fmt(mib(ts.memory.peakWasm))} MiB, peak heap ${fmt(mib(ts.memory.peakHeap))} MiB`);
        // The per-item database is the ceiling's source: kept until it has been read.
        if (!(layout === 'per-item' && baselines)) await inPage(context, base, 'deleteTriesyncDatabase', { database });
      }
      if (baselines) {
        // The ceiling, from the node set the per-item sync just wrote, in a page of its own.
        const page = await context.newPage();
        try {
          await page.goto(`${base}/bench/index.html`);
          await page.waitForFunction(() => window.benchReady === true);
          const set = await page.evaluate((a) => window.bench.loadNodeSet(a), { database: 'bench-triesync-per-item' });
          if (set.items !== items || set.bytes !== out.bytes) throw new Error(`${st.label}: node set read back: ${JSON.stringify(set)}`);
          await page.evaluate((a) => window.bench.deleteDatabase(a), { database: 'bench-triesync-per-item' });
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
      }
      out.runs.push(r);
    }
    return out;
  } finally {
    await peer.stop();
  }
}

// ---- the report -------------------------------------------------------------------------

/** Results saved before there were layouts (one sync per run, per-item, as `triesync`)
 *  in today's shape: `triesync` keyed by layout. */
function normalise(res) {
  for (const s of res.states) {
    for (const r of [...s.runs, ...(s.earlier?.runs ?? [])]) {
      if (r.triesync && Number.isFinite(r.triesync.wallMs)) r.triesync = { 'per-item': r.triesync };
    }
  }
  return res;
}

/** Carries over from `old` (the raw results of an earlier run, saved in `file`) every state
 *  `res` did not measure and, per state, the runs of what it left out (a layout, the
 *  ceiling, the JS loop): kept in `state.earlier`, labelled with that run's date and
 *  commit. */
function merge(res, old, file) {
  normalise(old);
  const from = {
    date: old.date,
    commit: old.machine.commit,
    file: path.relative(root, path.resolve(file)),
    loadStart: old.machine.loadStart,
    loadEnd: old.machine.loadEnd,
    chromium: old.machine.chromium,
    runs: old.opts.runs,
    runs1m: old.opts.runs1m,
    size: old.size,
  };
  const states = [];
  for (const key of Object.keys(STATES)) {
    const now = res.states.find((s) => s.key === key);
    const was = old.states.find((s) => s.key === key);
    if (!was) {
      if (now) states.push(now);
      continue;
    }
    if (now && (now.info.root !== was.info.root || now.items !== was.items)) {
      log(`--merge: ${now.label} is another state in ${file} (root ${was.info.root}): not merged`);
      states.push(now);
      continue;
    }
    const earlier = { from, runs: was.runs };
    states.push(now ? { ...now, earlier } : { ...was, runs: [], earlier });
  }
  res.states = states;
  res.merged = from;
  return res;
}

/** Medians of one state, per measurement: each from this run's runs when it measured it,
 *  else from the runs carried over (`from` says which run they are from). */
function summarise(s) {
  const rate = (ms) => s.items / (ms / 1000);
  const pick = (has) => {
    const now = s.runs.filter(has);
    if (now.length) return { runs: now, from: null };
    const old = (s.earlier?.runs ?? []).filter(has);
    return { runs: old, from: old.length ? s.earlier.from : null };
  };
  const layouts = {};
  for (const L of LAYOUTS) {
    const { runs, from } = pick((r) => r.triesync?.[L]);
    if (!runs.length) continue;
    const xs = runs.map((r) => r.triesync[L]);
    const med = (f) => median(xs.map(f));
    const tm = (k) => med((x) => x.report.timings[k] ?? NaN);
    layouts[L] = {
      from,
      n: xs.length,
      wallMs: med((x) => x.wallMs),
      rate: med((x) => rate(x.wallMs)),
      mbps: med((x) => s.bytes / 1e6 / (x.wallMs / 1000)),
      processMs: tm('processMs'),
      waitMs: tm('waitMs'),
      peerWaitMs: tm('peerWaitMs'),
      writeWaitMs: tm('writeWaitMs'),
      checkMs: tm('checkMs'),
      commitMs: tm('commitMs'),
      batches: med((x) => x.report.batches),
      requests: med((x) => x.report.peers.reduce((a, p) => a + p.requests, 0)),
      peakWasm: Math.max(...xs.map((x) => x.memory.peakWasm)),
      peakHeap: Math.max(...xs.map((x) => x.memory.peakHeap)),
      // A quarter without a sample (one batch spanned it) has no figure.
      quarters: [0, 1, 2, 3].map((q) => {
        const of = (k) => median(xs.map((x) => (x.memory.quarters[q].samples ? x.memory.quarters[q][k] : NaN)));
        return { wasm: of('wasm'), heap: of('heap') };
      }),
    };
  }
  let ceiling = null;
  {
    const { runs, from } = pick((r) => r.ceiling);
    if (runs.length) {
      const med = (f) => median(runs.map(f));
      ceiling = { from, n: runs.length };
      for (const [v] of CEILINGS) {
        ceiling[v] = { wallMs: med((r) => r.ceiling[v].wallMs), rate: med((r) => rate(r.ceiling[v].wallMs)), mbps: med((r) => s.bytes / 1e6 / (r.ceiling[v].wallMs / 1000)), transactions: runs[0].ceiling[v].transactions };
      }
    }
  }
  let js = null;
  {
    const { runs, from } = pick((r) => r.js);
    if (runs.length) {
      const med = (f) => median(runs.map(f));
      js = {
        from,
        n: runs.length,
        wallMs: med((r) => r.js.wallMs),
        rate: med((r) => rate(r.js.wallMs)),
        mbps: med((r) => s.bytes / 1e6 / (r.js.wallMs / 1000)),
        processMs: med((r) => r.js.timings.processMs),
        waitMs: med((r) => r.js.timings.waitMs),
        commitMs: med((r) => r.js.timings.commitMs),
        requests: med((r) => r.js.requests),
        peakHeap: Math.max(...runs.map((r) => r.js.memory.peakHeap)),
      };
    }
  }
  return { ...s, layouts, ceiling, js };
}

function pct(part, whole) {
  return Number.isFinite(part) ? `${fmtInt(part)} (${fmt((100 * part) / whole, 0)}%)` : '–';
}

function mark(ok) {
  return ok ? 'met' : '**missed**';
}

/** "†" after a figure carried over from an earlier run (any of `parts`). */
const dag = (...parts) => (parts.some((p) => p?.from) ? ' †' : '');

/** a / b as "0.86×" (with † when either is carried over), "–" when either is missing. */
function ratio(a, b, aRate = a?.rate, bRate = b?.rate) {
  if (!a || !b || !Number.isFinite(aRate) || !Number.isFinite(bRate)) return '–';
  return `${fmt(aRate / bRate, 2)}×${dag(a, b)}`;
}

const LAYOUT_LABEL = { packed: 'packed', 'per-item': 'one record per item' };

/** Sentences derived from the figures (the same code words them whatever they are). */
function findings(S, res) {
  const out = [];
  // The biggest state each layout was measured on.
  for (const L of LAYOUTS) {
    const big = [...S].reverse().find((s) => s.layouts[L]);
    if (!big) continue;
    const t = big.layouts[L];
    const shares = [
      ['IndexedDB commits (commitMs)', t.commitMs],
      ['waiting for the peer (peerWaitMs)', t.peerWaitMs],
      ['waiting for the background write (writeWaitMs)', t.writeWaitMs],
      ['hashing, decoding and scheduling (processMs)', t.processMs],
      ['store lookups (checkMs)', t.checkMs],
    ].filter(([, ms]) => Number.isFinite(ms)).sort((a, b) => b[1] - a[1]);
    const split = Number.isFinite(t.peerWaitMs) ? '' : ` (that run predates the split of waitMs: waiting in all ${fmt((100 * t.waitMs) / t.wallMs, 0)}%)`;
    out.push(`Where triesync's time goes, ${LAYOUT_LABEL[L]} layout (${big.label}${dag(t)}): ${shares.map(([n, ms]) => `${n} ${fmt((100 * ms) / t.wallMs, 0)}%`).join(', ')}${split}; commits run in the background, so they overlap the rest.`);
    if (t.checkMs > 0.3 * t.wallMs) {
      out.push(`Store lookups (${LAYOUT_LABEL[L]}, ${big.label}: checkMs ${fmt((100 * t.checkMs) / t.wallMs, 0)}%) are IndexedDB readonly transactions on the object stores a batch write holds: IndexedDB starts them only once the readwrite transaction before them has committed, so the driver looks up only between writes.`);
    }
  }
  const withCeiling = S.filter((s) => s.ceiling);
  const bigC = withCeiling[withCeiling.length - 1];
  if (bigC) {
    const c = bigC.ceiling;
    const per = c['per-item'];
    const p64 = c['packed-64k'];
    const p100 = c['packed-100k'];
    const usPer = (x) => (1000 * x.wallMs) / bigC.items;
    out.push(`Raw IndexedDB in this browser (${bigC.label}${dag(c)}) costs ${fmt(usPer(per), 1)} µs per item with one put per item, against ${fmt(usPer(p64), 2)} µs (records under 64 KiB) and ${fmt(usPer(p100), 2)} µs (~100 KiB records) when the same bytes are packed: ${fmt(per.wallMs / p64.wallMs, 0)}× and ${fmt(per.wallMs / p100.wallMs, 0)}× less. The cost is per put, not per byte.`);
  }
  for (const s of S) {
    const p = s.layouts.packed;
    const q = s.layouts['per-item'];
    if (!p) continue;
    const parts = [];
    if (q) parts.push(`${fmt(p.rate / q.rate, 1)}× the rate of the one-record-per-item layout${dag(p, q)}`);
    if (s.ceiling) {
      parts.push(`${ratio(p, s.ceiling['per-item'])} the one-put-per-item ceiling`);
      parts.push(`${ratio(p, s.ceiling['packed-64k'])} and ${ratio(p, s.ceiling['packed-100k'])} the packed ceilings (records under 64 KiB, ~100 KiB)`);
    }
    if (s.js) parts.push(`${ratio(p, s.js)} the JS loop`);
    out.push(`Packed layout, ${s.label}: ${fmtInt(p.rate)} items/s${dag(p)} in ${fmt(p.wallMs / 1000, 2)} s, ${parts.join('; ')}. The packed ceilings only write, with no network, hashing or lookups: a sync stays below them by what it does besides writing.`);
  }
  for (const s of S) {
    const q = s.layouts['per-item'];
    if (!q || !s.ceiling || !s.js) continue;
    if (s !== S.filter((x) => x.layouts['per-item'] && x.ceiling && x.js).slice(-1)[0]) continue;
    out.push(`The one-record-per-item layout runs at ${ratio(q, s.ceiling['per-item'])} the one-put-per-item ceiling (${s.label}): bound by the puts, whatever the engine does. The JS loop is bound by the same puts (its commits take ${fmt((100 * s.js.commitMs) / s.js.wallMs, 0)}% of its time${dag(s.js)}), which is why that layout is only ${ratio(q, s.js)} the JS loop; ≥ 5× the JS loop needs fewer puts, which the packed layout makes.`);
  }
  for (const s of S) {
    const p = s.layouts.packed;
    const q = s.layouts['per-item'];
    // The biggest state with both layouts, measured in this run if there is one.
    const both = S.filter((x) => x.layouts.packed && x.layouts['per-item']);
    const pickMem = [...both].reverse().find((x) => !x.layouts.packed.from && !x.layouts['per-item'].from) ?? both[both.length - 1];
    if (!p || !q || s !== pickMem) continue;
    out.push(`Memory (${s.label}): the packed layout peaks at ${fmt(mib(p.peakHeap))} MiB of JS heap and ${fmt(mib(p.peakWasm))} MiB of wasm memory, one record per item at ${fmt(mib(q.peakHeap))} MiB and ${fmt(mib(q.peakWasm))} MiB${dag(p, q)}${s.js ? ` (the JS loop: ${fmt(mib(s.js.peakHeap))} MiB of heap${dag(s.js)})` : ''}.`);
  }
  const core = res.core;
  const r = (b) => median(b.runs.map((x) => x.itemsPerSec));
  if (core?.size && core['size-z'] && core.speed) {
    const wasmRate = r(core.size);
    const zRate = r(core['size-z']);
    const speedRate = r(core.speed);
    const natRate = r(core.native);
    const d = core.sizes.size - core.sizes['size-z'];
    out.push(`The engine alone (no I/O) verifies and schedules ${fmtInt(wasmRate)} items/s in wasm as shipped (${fmt(wasmRate / natRate, 2)}× native). Building sha3 and keccak at opt-level 3 in the shipped profile gives ${fmt(wasmRate / zRate, 2)}× the rate of opt-level z throughout (${fmtInt(zRate)} items/s) for ${d >= 0 ? `${fmt(kb(d), 1)} KB more` : `${fmt(kb(-d), 1)} KB less`} (bench/core's wasm, before gzip)${Math.abs(wasmRate / zRate - 1) < 0.1 ? ', a difference within the run-to-run noise of this shared machine' : ''}; ${core['size-core3'] ? `triesync-core at opt-level 3 as well (not shipped) gives ${fmtInt(r(core['size-core3']))} items/s (${fmt(r(core['size-core3']) / wasmRate, 2)}× as shipped) for ${fmt(kb(core.sizes['size-core3'] - core.sizes.size), 1)} KB more; ` : ''}everything at opt-level 3 gives ${fmtInt(speedRate)} items/s (${fmt(speedRate / wasmRate, 2)}× as shipped) for ${fmt(kb(core.sizes.speed - core.sizes.size), 0)} KB more.`);
  }
  const both = withCeiling.filter((s) => s.ceiling && !s.ceiling.from);
  const fromAll = withCeiling;
  if (fromAll.length > 1) {
    const small = fromAll[0];
    const big = fromAll[fromAll.length - 1];
    const a = small.ceiling;
    const b = big.ceiling;
    out.push(`The one-put rate falls as the database grows: ${fmtInt(a['per-item'].rate)} items/s for ${small.label}${dag(a)}, ${fmtInt(b['per-item'].rate)} for ${big.label}${dag(b)} (LevelDB compacts every small record it holds). Packed records under 64 KiB, which LevelDB stores inline, go from ${fmt(a['per-item'].wallMs / a['packed-64k'].wallMs, 0)}× to ${fmt(b['per-item'].wallMs / b['packed-64k'].wallMs, 0)}× faster than one put per item; ~100 KiB records, which Chromium moves to blob files outside LevelDB, from ${fmt(a['per-item'].wallMs / a['packed-100k'].wallMs, 0)}× to ${fmt(b['per-item'].wallMs / b['packed-100k'].wallMs, 0)}×.`);
  }
  void both;
  const M = res.merged;
  if (M?.size) {
    const d = res.size.gzip - M.size.gzip;
    out.push(`pkg/triesync_bg.wasm is ${fmt(kb(res.size.gzip))} KB gzipped, ${d >= 0 ? `${fmt(kb(d))} KB more` : `${fmt(kb(-d))} KB less`} than at commit ${M.commit} (${fmt(kb(M.size.gzip))} KB), ${res.size.gzip <= 150_000 ? 'within' : `${fmt(kb(res.size.gzip - 150_000))} KB over`} the 150 KB target.`);
  }
  if (S.some((s) => Object.values(s.layouts).some((t) => t.n === 1))) {
    out.push('A figure from one run on a shared machine (the 1m state) is good to about ±40%: ratios between measurements taken minutes apart, under a load that changes, are rough.');
  }
  return out;
}

function report(res) {
  normalise(res);
  const L = [];
  const p = (s = '') => L.push(s);
  const S = res.states.map(summarise);
  const byKey = Object.fromEntries(S.map((s) => [s.key, s]));
  const M = res.merged;

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
  if (M) p(`| carried over (†) | from the run of ${M.date} on commit ${M.commit} (${M.chromium}; load average ${fmt(M.loadStart, 2)} at its start, ${fmt(M.loadEnd, 2)} at its end), raw results \`${M.file}\` |`);
  p();
  const n1m = byKey['1m'] && Object.values(byKey['1m'].layouts).some((t) => !t.from) ? res.opts.runs1m : null;
  p(`Each figure is the median of ${res.opts.runs} runs${n1m !== null && n1m !== res.opts.runs ? ` (synthetic 1m: ${n1m} run${n1m > 1 ? 's' : ''})` : ''}. "items" are trie nodes plus contract codes; rates are items (or bytes) over wall time. triesync writes them in one of two layouts: **packed** (the default of a new database: items many to a record, in sorted runs of pages with a page index and a Bloom filter per run for lookups by hash; core/src/packed) or **one record per item** (\`layout: 'per-item'\`). The peer is the reference peer (\`target/release/triesync-peer\`, binary HTTP) on 127.0.0.1, sharing the machine's cores with the browser.`);
  if (M) {
    const carried = [];
    for (const s of S) {
      const what = [...LAYOUTS.filter((l) => s.layouts[l]?.from).map((l) => `triesync ${LAYOUT_LABEL[l]}`), ...(s.ceiling?.from ? ['the ceiling'] : []), ...(s.js?.from ? ['the JS loop'] : [])];
      if (what.length) carried.push(`${s.label}: ${what.join(', ')}`);
    }
    if (carried.length) p(`\n**†: carried over** from the run of ${M.date} (commit ${M.commit}, ${M.runs} runs, synthetic 1m ${M.runs1m}; \`${M.file}\`), not measured again in this run: ${carried.join('; ')}. A ratio marked † sets figures of the two runs against each other. That run's per-item sync had no \`peerWaitMs\`/\`writeWaitMs\` split ("–").`);
  }
  p();

  p('## Sync throughput: triesync into IndexedDB');
  p();
  p('| state | layout | items | MB | wall | items/s | MB/s | processMs (hash, decode, schedule) | waitMs (all) | peerWaitMs | writeWaitMs | checkMs (store lookups) | commitMs (IndexedDB writes) | transactions | vs ceiling (one put per item) | vs JS loop |');
  p('|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const s of S) {
    for (const Lk of LAYOUTS) {
      const t = s.layouts[Lk];
      if (!t) continue;
      p(`| ${s.label} | ${LAYOUT_LABEL[Lk]}${dag(t)} | ${fmtInt(s.items)} | ${fmt(s.bytes / 1e6)} | ${fmt(t.wallMs / 1000, 2)} s | ${fmtInt(t.rate)} | ${fmt(t.mbps, 2)} | ${pct(t.processMs, t.wallMs)} | ${pct(t.waitMs, t.wallMs)} | ${pct(t.peerWaitMs, t.wallMs)} | ${pct(t.writeWaitMs, t.wallMs)} | ${pct(t.checkMs, t.wallMs)} | ${pct(t.commitMs, t.wallMs)} | ${fmtInt(t.batches)} | ${ratio(t, s.ceiling?.['per-item'] && { ...s.ceiling['per-item'], from: s.ceiling.from })} | ${ratio(t, s.js)} |`);
    }
  }
  p();
  p('The timings are the final report\'s `timings` (ms, share of wall time). The driver writes batches in the background: commitMs (start to end of each write) overlaps the others. waitMs is the main loop\'s waiting in all, split into peerWaitMs (for answers, requests in flight) and writeWaitMs (for the background write: held back by back-pressure, or nothing in flight and only the write pending). "transactions": batches written. "vs ceiling": items/s over the one-put-per-item ceiling\'s, the rate the issue sets the target against (for the packed layout, see the packed ceilings below); "vs JS loop": over the JS peer loop\'s.');
  p();

  if (S.some((s) => s.ceiling)) {
    p('## The ceiling: raw IndexedDB writes of the same node set');
    p();
    p('Plain JavaScript in the same browser, writing the node set triesync had just written in the per-item layout (read back, shuffled: hashes arrive in no key order), transactions awaited one after the other, as triesync does. No network, no hashing: only the store.');
    p();
    p('| state | layout | transactions | wall | items/s | MB/s | triesync packed / it | triesync per-item / it |');
    p('|---|---|---:|---:|---:|---:|---:|---:|');
    for (const s of S) {
      if (!s.ceiling) continue;
      for (const [v, label] of CEILINGS) {
        const c = { ...s.ceiling[v], from: s.ceiling.from };
        p(`| ${s.label} | ${label}${dag(c)} | ${fmtInt(c.transactions)} | ${fmt(c.wallMs / 1000, 3)} s | ${fmtInt(c.rate)} | ${fmt(c.mbps, 1)} | ${ratio(s.layouts.packed, c)} | ${ratio(s.layouts['per-item'], c)} |`);
      }
    }
    p();
  }

  if (S.some((s) => s.js)) {
    p('## A JS peer loop (same data, same peer)');
    p();
    p('`bench/page/jsloop.js`: fetch → keccak-verify (@noble/hashes `keccak_256`) → decode children (@ethereumjs/rlp) → one put per item in ~100 KiB transactions, 2 requests of 384 hashes in flight, a Set of every hash seen.');
    p();
    p('| state | wall | items/s | MB/s | process (hash, decode) | wait (peer) | commit (IndexedDB) | requests | peak JS heap | triesync packed / JS | triesync per-item / JS |');
    p('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
    for (const s of S) {
      const j = s.js;
      if (!j) continue;
      p(`| ${s.label}${dag(j)} | ${fmt(j.wallMs / 1000, 2)} s | ${fmtInt(j.rate)} | ${fmt(j.mbps, 2)} | ${pct(j.processMs, j.wallMs)} | ${pct(j.waitMs, j.wallMs)} | ${pct(j.commitMs, j.wallMs)} | ${fmtInt(j.requests)} | ${fmt(mib(j.peakHeap))} MiB | ${ratio(s.layouts.packed, j)} | ${ratio(s.layouts['per-item'], j)} |`);
    }
    p();
  }

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
  // Results saved before the variants were named in them: two builds, both opt-level z or 3.
  const labels = c.labels ?? { size: 'as shipped (opt-level z, wasm-opt -Oz', speed: 'for speed (opt-level 3, wasm-opt -O3' };
  for (const v of CORE_VARIANTS) {
    if (c[v.key]) row(`wasm in Chromium, ${labels[v.key]}; ${fmt(kb(c.sizes[v.key]), 1)} KB)`, c[v.key]);
  }
  p();

  p('## Memory during the sync');
  p();
  p('Sampled every 100 ms and at every commit in the syncing page: the triesync instance\'s `WebAssembly.Memory` (`buffer.byteLength`; it never shrinks) and `performance.memory.usedJSHeapSize` (precise). Peak overall, and the peak within each quarter of the run by items already committed ("–": no sample fell in that quarter).');
  p();
  p('| state | layout | peak wasm memory | peak JS heap | wasm by quarter (MiB) | JS heap by quarter (MiB) | JS loop peak heap |');
  p('|---|---|---:|---:|---|---|---:|');
  for (const s of S) {
    for (const Lk of LAYOUTS) {
      const t = s.layouts[Lk];
      if (!t) continue;
      const q = t.quarters;
      p(`| ${s.label} | ${LAYOUT_LABEL[Lk]}${dag(t)} | ${fmt(mib(t.peakWasm))} MiB | ${fmt(mib(t.peakHeap))} MiB | ${q.map((x) => fmt(mib(x.wasm))).join(' / ')} | ${q.map((x) => fmt(mib(x.heap))).join(' / ')} | ${s.js ? `${fmt(mib(s.js.peakHeap))} MiB${dag(s.js)}` : '–'} |`);
    }
  }
  p();

  p('## Size');
  p();
  p(`| file | raw | gzip -9 | brotli |`);
  p('|---|---:|---:|---:|');
  p(`| pkg/triesync_bg.wasm | ${fmt(kb(res.size.raw))} KB | ${fmt(kb(res.size.gzip))} KB | ${fmt(kb(res.size.brotli))} KB |`);
  if (M?.size) p(`| the same at commit ${M.commit} (the run carried over from) † | ${fmt(kb(M.size.raw))} KB | ${fmt(kb(M.size.gzip))} KB | ${fmt(kb(M.size.brotli))} KB |`);
  p();

  p('## Targets');
  p();
  p('Each target per layout: the issue\'s ratios are against the one-put-per-item ceiling and the JS loop; for the packed layout the packed ceilings are given beside them.');
  p();
  p('| target | layout | measured | |');
  p('|---|---|---|---|');
  // Every target row's layout and outcome, for the summary under the table.
  const outcomes = [];
  const target = (what, Lk, measured, ok) => {
    outcomes.push({ what, Lk, ok });
    p(`| ${what} | ${Lk ? LAYOUT_LABEL[Lk] : 'both (one module)'} | ${measured} | ${mark(ok)} |`);
  };
  const g = byKey.genesis;
  for (const Lk of LAYOUTS) {
    const t = g?.layouts[Lk];
    if (t) target('mainnet-genesis under 1.5 s', Lk, `${fmt(t.wallMs / 1000, 2)} s${dag(t)}`, t.wallMs < 1500);
  }
  for (const s of S) {
    if (!s.ceiling) continue;
    const per = { ...s.ceiling['per-item'], from: s.ceiling.from };
    for (const Lk of LAYOUTS) {
      const t = s.layouts[Lk];
      if (!t) continue;
      const extra = Lk === 'packed' ? ` (packed ceilings: ${ratio(t, { ...s.ceiling['packed-64k'], from: s.ceiling.from })} under 64 KiB, ${ratio(t, { ...s.ceiling['packed-100k'], from: s.ceiling.from })} ~100 KiB)` : '';
      target(`≥ 0.9 × the one-put-per-item IndexedDB rate (${s.label})`, Lk, `${ratio(t, per)}${extra}`, t.rate / per.rate >= 0.9);
    }
  }
  for (const s of S) {
    if (!s.js) continue;
    for (const Lk of LAYOUTS) {
      const t = s.layouts[Lk];
      if (t) target(`≥ 5 × the JS loop (${s.label})`, Lk, ratio(t, s.js), t.rate / s.js.rate >= 5);
    }
  }
  if (byKey['100k'] && byKey['1m']) {
    for (const Lk of LAYOUTS) {
      const a = byKey['100k'].layouts[Lk];
      const b = byKey['1m'].layouts[Lk];
      if (!a || !b) continue;
      const tot = (x) => x.peakWasm + x.peakHeap;
      target('peak memory (wasm + JS heap) for 1m ≤ 2 × that for 100k', Lk, `${fmt(mib(tot(b)))} MiB${dag(b)} vs ${fmt(mib(tot(a)))} MiB${dag(a)}: ${fmt(tot(b) / tot(a), 2)}× (wasm alone ${fmt(b.peakWasm / a.peakWasm, 2)}×)`, tot(b) <= 2 * tot(a));
    }
  }
  target('wasm ≤ 150 KB gzipped', null, `${fmt(kb(res.size.gzip))} KB`, res.size.gzip <= 150_000);
  p();
  for (const Lk of LAYOUTS) {
    const mine = outcomes.filter((o) => o.Lk === Lk || o.Lk === null);
    if (!mine.some((o) => o.Lk === Lk)) continue;
    const missed = mine.filter((o) => !o.ok);
    p(`- **${LAYOUT_LABEL[Lk]}**: ${mine.length - missed.length} of ${mine.length} met${missed.length ? `; missed: ${missed.map((o) => o.what).join('; ')}` : ''}.`);
  }
  p();

  p('## What the numbers say');
  p();
  for (const line of findings(S, res)) p(`- ${line}`);
  p();

  p('## Every run');
  p();
  p('| state | run | load | triesync packed | triesync per-item | ceiling per item | packed 64 KiB | packed 100 KiB | JS loop |');
  p('|---|---:|---:|---:|---:|---:|---:|---:|---:|');
  const ms = (x) => (x ? `${fmt(x.wallMs, 0)} ms` : '–');
  for (const s of S) {
    for (const [i, r] of s.runs.entries()) {
      p(`| ${s.label} | ${i + 1} | ${fmt(r.load, 2)} | ${ms(r.triesync?.packed)} | ${ms(r.triesync?.['per-item'])} | ${ms(r.ceiling?.['per-item'])} | ${ms(r.ceiling?.['packed-64k'])} | ${ms(r.ceiling?.['packed-100k'])} | ${ms(r.js)} |`);
    }
    // The earlier run's figures, only those carried over.
    const take = (x, used) => (used ? ms(x) : '–');
    const ts = (L) => s.layouts[L]?.from;
    const ce = s.ceiling?.from;
    for (const [i, r] of (s.earlier?.runs ?? []).entries()) {
      if (!(ts('packed') || ts('per-item') || ce || s.js?.from)) break;
      p(`| ${s.label} | ${i + 1} † | ${fmt(r.load, 2)} | ${take(r.triesync?.packed, ts('packed'))} | ${take(r.triesync?.['per-item'], ts('per-item'))} | ${take(r.ceiling?.['per-item'], ce)} | ${take(r.ceiling?.['packed-64k'], ce)} | ${take(r.ceiling?.['packed-100k'], ce)} | ${take(r.js, s.js?.from)} |`);
    }
  }
  p();
  p('Reproduce: `npm run bench` (options after `--`: `--runs N`, `--runs-1m N`, `--states genesis,100k,1m`, `--layouts packed,per-item`, `--layouts-1m LIST`, `--baselines LIST`, `--merge FILE` to carry over what a run leaves out from an earlier run\'s raw results, `--skip-build`, `--report FILE` to rewrite this file from the saved results of a run; `--help` for all). The harness is in `bench/`: `run.mjs` (builds, starts the peer and a static server on 127.0.0.1, drives headless Chromium through playwright-core), `page/` (the in-page measurements), `core/` (the native/wasm core bench, its own cargo workspace).');
  return L.join('\n') + '\n';
}

// ---- main ----------------------------------------------------------------------------

async function main() {
  const argv = process.argv.slice(2);
  const opts = parseArgs(argv);
  const earlier = opts.merge ? normalise(JSON.parse(fs.readFileSync(path.resolve(root, opts.merge), 'utf8'))) : null;
  if (opts.report) {
    const saved = JSON.parse(fs.readFileSync(opts.report, 'utf8'));
    const md = report(earlier ? merge(normalise(saved), earlier, opts.merge) : saved);
    console.log(md);
    if (opts.out !== '-') fs.writeFileSync(path.resolve(root, opts.out), md);
    return;
  }
  const started = Date.now();
  const loadStart = os.loadavg()[0];
  // The commit measured is the one built now (others may commit during a long run).
  const git = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8' }).stdout.trim();
  // Code only: documentation edited meanwhile is not what is measured.
  const dirty = spawnSync('git', ['status', '--porcelain', '--', 'core', 'crate', ':(exclude)*.md'], { cwd: root, encoding: 'utf8' }).stdout.trim();
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

    core = { native, sizes: {}, labels: Object.fromEntries(CORE_VARIANTS.map((v) => [v.key, v.label])) };
    for (const v of CORE_VARIANTS.map((x) => x.key)) {
      log(`core bench, wasm (${v}) in Chromium`);
      core[v] = await inPage(context, base, 'coreWasm', { variant: v, accounts: CORE_ACCOUNTS, runs: opts.runs });
      core.sizes[v] = fs.statSync(path.join(benchTarget, `wasm-${v}`, 'triesync_bench_core_bg.wasm')).size;
      if (core[v].root !== native.root) throw new Error('wasm and native core benches built different states');
    }
    log(`core: native ${fmtInt(median(native.runs.map((r) => r.itemsPerSec)))} items/s, wasm ${fmtInt(median(core.size.runs.map((r) => r.itemsPerSec)))} (as shipped), ${fmtInt(median(core.speed.runs.map((r) => r.itemsPerSec)))} (opt-level 3)`);

    for (const key of opts.states) {
      const runs = key === '1m' ? opts.runs1m : opts.runs;
      states.push(await benchState(key, { context, base, peerBin, runs, tmp, layouts: layoutsOf(opts, key), baselines: opts.baselines.includes(key) }));
      // What is measured so far, should a later state fail.
      fs.mkdirSync(benchTarget, { recursive: true });
      const partial = { argv, opts, date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'), machine: { commit: git, chromium: chromiumVersion, loadStart, loadEnd: os.loadavg()[0] }, size, core, states };
      fs.writeFileSync(path.join(benchTarget, 'results-partial.json'), JSON.stringify(partial));
    }
    idbFiles = listIdb(path.join(tmp, 'profile'));
  } finally {
    if (context) await context.close();
    server.close();
    fs.rmSync(tmp, { recursive: true, force: true });
  }

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
  // The saved results hold what was carried over (state.earlier), so --report alone
  // renders them again.
  if (earlier) merge(res, earlier, opts.merge);
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
