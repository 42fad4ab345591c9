#!/usr/bin/env node
// Builds the npm package `triesync` from crate/ into pkg/:
//
//   1. wasm-pack (target `web`, wasm-opt off so it never downloads binaryen) with the
//      size-optimised `wasm-release` cargo profile of the root Cargo.toml (opt-level z,
//      sha3 and keccak at opt-level 3; a profile of its own, so that the native builds and
//      tests keep their fast profiles);
//   2. wasm-opt -Oz (twice) from the npm `binaryen` package (skip with TRIESYNC_WASM_OPT=0);
//   3. the package.json of the published package (exports, types, files), its README and
//      LICENSE;
//   4. prints the size of the .wasm, raw and gzipped.
//
// One build serves every consumer: the ES module loads `triesync_bg.wasm` as a separate
// file through `new URL('triesync_bg.wasm', import.meta.url)`, which webpack 5 and Vite
// turn into an emitted asset and a browser resolves next to the module.
//
// Usage: node scripts/build-pkg.mjs [--dev]

import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const out = path.join(root, 'pkg');
const dev = process.argv.includes('--dev');
const require = createRequire(import.meta.url);

function run(cmd, args, env = {}) {
  console.log(`$ ${cmd} ${args.join(' ')}`);
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', env: { ...process.env, ...env } });
  if (r.error) {
    throw new Error(`${cmd}: ${r.error.message}${r.error.code === 'ENOENT' ? ' (run scripts/setup.sh)' : ''}`);
  }
  if (r.status !== 0) throw new Error(`${cmd} exited with ${r.status ?? r.signal}`);
}

function kib(n) {
  return `${(n / 1024).toFixed(1)} KiB`;
}

fs.rmSync(out, { recursive: true, force: true });
run(
  'wasm-pack',
  [
    'build', 'crate',
    '--target', 'web',
    '--out-dir', '../pkg',
    '--out-name', 'triesync',
    '--no-opt',
    // The profile is in the root Cargo.toml.
    ...(dev ? ['--dev'] : ['--profile', 'wasm-release']),
  ],
);

const wasmPath = path.join(out, 'triesync_bg.wasm');
const rawSize = fs.statSync(wasmPath).size;

if (!dev && process.env.TRIESYNC_WASM_OPT !== '0') {
  let wasmOpt;
  try {
    wasmOpt = path.join(path.dirname(require.resolve('binaryen/package.json')), 'bin', 'wasm-opt');
  } catch {
    console.warn('warning: the npm package binaryen is not installed (npm ci); .wasm left unoptimised');
  }
  if (wasmOpt) {
    // The features rustc enables by default for wasm32-unknown-unknown; binaryen must
    // know them to keep (and not break) reference types and bulk memory.
    // -Oz twice: the second pass still shrinks what the first one left (about 0.1 KiB
    // gzipped); the target_features section only serves linkers.
    run(process.execPath, [
      wasmOpt, wasmPath, '-Oz', '-Oz',
      '--enable-bulk-memory', '--enable-nontrapping-float-to-int', '--enable-sign-ext',
      '--enable-reference-types', '--enable-multivalue', '--enable-mutable-globals',
      '--strip-debug', '--strip-producers', '--strip-target-features',
      '-o', wasmPath,
    ]);
  }
}

// wasm-bindgen declares `[Symbol.dispose]()` on the classes: pull in the lib that types
// it, so that a project compiling with `lib: ["es2022", "dom"]` and full lib checks works.
const dtsPath = path.join(out, 'triesync.d.ts');
const dts = fs.readFileSync(dtsPath, 'utf8');
if (dts.includes('Symbol.dispose') && !dts.includes('esnext.disposable')) {
  fs.writeFileSync(dtsPath, `/// <reference lib="esnext.disposable" />\n${dts}`);
}

// The published package.json: wasm-pack's fields plus exports, keywords and files.
const generated = JSON.parse(fs.readFileSync(path.join(out, 'package.json'), 'utf8'));
const pkg = {
  name: 'triesync',
  version: generated.version,
  description: generated.description,
  // No `repository` until the project has a public home: a package must not point at a URL
  // that does not exist.
  license: generated.license,
  keywords: ['ethereum', 'state', 'trie', 'merkle-patricia', 'sync', 'indexeddb', 'wasm', 'wallet'],
  type: 'module',
  main: './triesync.js',
  module: './triesync.js',
  types: './triesync.d.ts',
  exports: {
    '.': {
      types: './triesync.d.ts',
      import: './triesync.js',
      default: './triesync.js',
    },
    './triesync_bg.wasm': './triesync_bg.wasm',
    './wasm': './triesync_bg.wasm',
    './package.json': './package.json',
  },
  files: ['triesync.js', 'triesync.d.ts', 'triesync_bg.wasm', 'triesync_bg.wasm.d.ts', 'README.md', 'LICENSE'],
  // wasm-bindgen's own value: only its JS snippets (if any) have side effects.
  sideEffects: generated.sideEffects ?? false,
  browser: './triesync.js',
};
if (fs.existsSync(path.join(out, 'snippets'))) pkg.files.push('snippets/');
fs.writeFileSync(path.join(out, 'package.json'), JSON.stringify(pkg, null, 2) + '\n');
fs.copyFileSync(path.join(root, 'npm', 'README.md'), path.join(out, 'README.md'));
// The license texts of the SPDX expression in Cargo.toml (MIT OR Apache-2.0).
if (pkg.license !== 'MIT OR Apache-2.0') throw new Error(`npm/LICENSE does not cover the license ${pkg.license}`);
fs.copyFileSync(path.join(root, 'npm', 'LICENSE'), path.join(out, 'LICENSE'));
// wasm-pack's `*` .gitignore is not wanted: pkg/ is ignored from the repository's root.
fs.rmSync(path.join(out, '.gitignore'), { force: true });

for (const f of pkg.files.filter((f) => !f.endsWith('/'))) {
  if (!fs.existsSync(path.join(out, f))) throw new Error(`pkg/${f} was not produced`);
}

const wasm = fs.readFileSync(wasmPath);
const gz = zlib.gzipSync(wasm, { level: 9 }).length;
const br = zlib.brotliCompressSync(wasm, {
  params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 11 },
}).length;
const js = fs.statSync(path.join(out, 'triesync.js')).size;
console.log(
  `\ntriesync ${pkg.version} → pkg/ (${dev ? 'dev' : 'release'})\n` +
    `  triesync_bg.wasm  ${kib(wasm.length)}` +
    (wasm.length !== rawSize ? ` (before wasm-opt ${kib(rawSize)})` : '') +
    `\n  gzipped           ${kib(gz)}   (brotli ${kib(br)})\n` +
    `  triesync.js       ${kib(js)}`,
);
