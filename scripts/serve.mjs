#!/usr/bin/env node
// A small static file server for the demo and the tests: serves a folder on 127.0.0.1 with
// the right MIME types (`application/wasm` lets browsers compile the .wasm while it
// downloads) and no caching, plus an optional `/demo-config.json` naming the peers the
// demo page should prefill.
//
// Usage: node scripts/serve.mjs --dir dist [--port 8080] [--host 127.0.0.1] [--peer URL]...
// Prints `serving http://HOST:PORT/` once listening. Also importable: `serve({ dir, ... })`.

import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.wasm': 'application/wasm',
  '.map': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.txt': 'text/plain; charset=utf-8',
  '.ts': 'text/plain; charset=utf-8',
};

/**
 * Serves `dir`. Resolves once listening with `{ url, port, close() }`.
 * @param {{ dir: string, port?: number, host?: string, config?: object, log?: boolean }} options
 */
export function serve({ dir, port = 0, host = '127.0.0.1', config = null, log = false }) {
  const rootDir = path.resolve(dir);
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    let rel;
    try {
      rel = decodeURIComponent(url.pathname);
    } catch {
      res.writeHead(400).end('bad path');
      return;
    }
    if (log) console.log(`${req.method} ${rel}`);
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (config && rel === '/demo-config.json') {
      res.writeHead(200, { 'content-type': TYPES['.json'], 'cache-control': 'no-store' });
      res.end(JSON.stringify(config));
      return;
    }
    let file = path.join(rootDir, rel);
    if (file !== rootDir && !file.startsWith(rootDir + path.sep)) {
      res.writeHead(403).end('forbidden');
      return;
    }
    fs.stat(file, (err, st) => {
      if (!err && st.isDirectory()) {
        file = path.join(file, 'index.html');
        st = fs.existsSync(file) ? fs.statSync(file) : null;
      }
      if (err || !st || !st.isFile()) {
        res.writeHead(404, { 'content-type': TYPES['.txt'] }).end(`not found: ${rel}`);
        return;
      }
      res.writeHead(200, {
        'content-type': TYPES[path.extname(file).toLowerCase()] ?? 'application/octet-stream',
        'content-length': st.size,
        'cache-control': 'no-cache',
      });
      if (req.method === 'HEAD') res.end();
      else fs.createReadStream(file).pipe(res);
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      const addr = server.address();
      const shownHost = host.includes(':') ? `[${host}]` : host;
      resolve({
        url: `http://${shownHost}:${addr.port}/`,
        port: addr.port,
        server,
        close: () =>
          new Promise((done) => {
            server.closeAllConnections?.();
            server.close(() => done());
          }),
      });
    });
  });
}

function parseArgs(argv) {
  const opts = { dir: 'dist', port: 8080, host: '127.0.0.1', peers: [], log: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--dir') opts.dir = next();
    else if (a === '--port') opts.port = Number(next());
    else if (a === '--host') opts.host = next();
    else if (a === '--peer') opts.peers.push(next());
    else if (a === '--log') opts.log = true;
    else throw new Error(`unknown option ${a}`);
  }
  return opts;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const opts = parseArgs(process.argv.slice(2));
  if (!fs.existsSync(path.join(opts.dir, 'index.html'))) {
    console.error(`serve: ${opts.dir}/index.html is missing (build the demo: npm run build)`);
    process.exit(1);
  }
  const config = opts.peers.length ? { peers: opts.peers } : null;
  let started;
  // A busy port: try the next few, so that a second demo does not fail for nothing.
  for (let port = opts.port, tries = 0; !started; port++, tries++) {
    try {
      started = await serve({ ...opts, port, config });
    } catch (e) {
      if (e.code !== 'EADDRINUSE' || tries >= 20 || opts.port === 0) {
        console.error(`serve: ${e.message}`);
        process.exit(1);
      }
    }
  }
  console.log(`serving ${started.url}`);
  const stop = () => started.close().then(() => process.exit(0));
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}
