// The baseline: the state-sync loop as one would write it in JavaScript with the usual
// libraries (@ethereumjs/rlp, @noble/hashes keccak_256): fetch blobs by hash from the peer's
// binary HTTP endpoint (PROTOCOL.md §3), keccak-verify each against what was asked, decode
// the node (and, for an account leaf, the account) to find the children, and put every
// verified item into IndexedDB in ~100 KiB transactions, one record per item with its
// binary 32-byte hash as key (the layout triesync uses).
//
// Deliberately ordinary: depth-first work stack, a Set of every hash queued (hex strings)
// to skip shared subtries and codes, two requests in flight and 384 hashes per request
// (triesync's defaults), no completeness ordering of writes (triesync writes a node only
// once its subtree is complete; this loop writes as it goes).

import { keccak_256 } from '@noble/hashes/sha3.js';
import { bytesToHex, hexToBytes } from '@noble/hashes/utils.js';
import { RLP } from '@ethereumjs/rlp';
import { done, openDb } from './idb.js';

const EMPTY_ROOT = '56e81f171bcc55a6ff8345e692c0f86e5b48e01b996cadc001622fb5e363b421';
const EMPTY_CODE = 'c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470';

const ACCOUNT = 0;
const STORAGE = 1;
const CODE = 2;

async function fetchBlobs(endpoint, hashes) {
  const resp = await fetch(endpoint, { method: 'POST', body: RLP.encode(hashes) });
  if (!resp.ok) throw new Error(`peer answered ${resp.status}`);
  const blobs = RLP.decode(new Uint8Array(await resp.arrayBuffer()));
  if (!Array.isArray(blobs)) throw new Error('answer is not a list');
  return blobs;
}

/**
 * Syncs `root` from `peer` into database `database` (which must not exist yet).
 * Returns { items, bytes, nodes, codes, rejected, requests, timings }.
 */
export async function jsLoopSync({ peer, root, database, batchBytes = 100 * 1024, maxItems = 384, inFlight = 2, onCommit = () => {} }) {
  const endpoint = `${peer.replace(/\/$/, '')}/v1/nodes`;
  const db = await openDb(database, ['nodes', 'code']);
  const timings = { processMs: 0, commitMs: 0, waitMs: 0 };
  const rootHex = root.replace(/^0x/, '');
  const seen = new Set([rootHex]);
  const stack = [{ hash: hexToBytes(rootHex), hex: rootHex, trie: ACCOUNT }];
  const queue = (hash, trie) => {
    const hex = bytesToHex(hash);
    if (seen.has(hex)) return;
    seen.add(hex);
    stack.push({ hash, hex, trie });
  };
  const child = (ref, trie) => {
    if (ref instanceof Uint8Array) {
      if (ref.length === 32) queue(ref, trie);
      else if (ref.length !== 0) throw new Error('bad child reference');
    } else {
      visit(ref, trie); // an embedded node
    }
  };
  const visit = (node, trie) => {
    if (!Array.isArray(node)) throw new Error('node is not a list');
    if (node.length === 17) {
      for (let i = 0; i < 16; i++) child(node[i], trie);
    } else if (node.length === 2) {
      const flag = node[0][0] >> 4;
      if (flag === 2 || flag === 3) {
        if (trie === ACCOUNT) {
          const [, , storageRoot, codeHash] = RLP.decode(node[1]);
          if (bytesToHex(storageRoot) !== EMPTY_ROOT) queue(storageRoot, STORAGE);
          if (bytesToHex(codeHash) !== EMPTY_CODE) queue(codeHash, CODE);
        }
      } else if (flag === 0 || flag === 1) {
        child(node[1], trie);
      } else {
        throw new Error('bad path flag');
      }
    } else {
      throw new Error(`node of ${node.length} items`);
    }
  };

  let batch = [];
  let batchSize = 0;
  const stats = { items: 0, bytes: 0, nodes: 0, codes: 0, rejected: 0, requests: 0, batches: 0 };
  const commit = async () => {
    if (batch.length === 0) return;
    const t = performance.now();
    const tx = db.transaction(['nodes', 'code'], 'readwrite');
    const nodes = tx.objectStore('nodes');
    const code = tx.objectStore('code');
    for (const [task, blob] of batch) (task.trie === CODE ? code : nodes).put(blob, task.hash);
    await done(tx);
    timings.commitMs += performance.now() - t;
    stats.batches++;
    batch = [];
    batchSize = 0;
    onCommit(stats.items);
  };

  const running = new Set();
  const send = (tasks) => {
    stats.requests++;
    const p = fetchBlobs(endpoint, tasks.map((t) => t.hash)).then(
      (blobs) => ({ p, tasks, blobs }),
      (error) => ({ p, tasks, error }),
    );
    running.add(p);
  };

  while (stack.length > 0 || running.size > 0) {
    while (running.size < inFlight && stack.length > 0) {
      send(stack.splice(Math.max(0, stack.length - maxItems)));
    }
    const w = performance.now();
    const { p, tasks, blobs, error } = await Promise.race(running);
    timings.waitMs += performance.now() - w;
    running.delete(p);
    if (error) throw error;
    const t = performance.now();
    const asked = new Map(tasks.map((task) => [task.hex, task]));
    for (const blob of blobs) {
      const hex = bytesToHex(keccak_256(blob));
      const task = asked.get(hex);
      if (!task) {
        stats.rejected++;
        continue;
      }
      asked.delete(hex);
      if (task.trie === CODE) stats.codes++;
      else {
        visit(RLP.decode(blob), task.trie);
        stats.nodes++;
      }
      stats.items++;
      stats.bytes += blob.length;
      batch.push([task, blob]);
      batchSize += blob.length;
    }
    for (const task of asked.values()) stack.push(task); // not delivered: ask again
    timings.processMs += performance.now() - t;
    if (batchSize >= batchBytes) await commit();
  }
  await commit();
  db.close();
  return { ...stats, timings, seen: seen.size };
}
