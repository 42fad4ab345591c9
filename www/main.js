// The triesync demo page. Every triesync call happens in sync.worker.js; this file only
// talks to the worker, keeps the form's settings across reloads and draws the numbers.
import './style.css';
import * as fmt from './format.js';

const STORAGE_KEY = 'triesync-demo/v1';
const DEFAULT_PEER = 'http://127.0.0.1:8547';
const HEX32 = /^0x[0-9a-fA-F]{64}$/;
const ADDRESS = /^0x[0-9a-fA-F]{40}$/;
/** Mainnet genesis: a few accounts to try once it is synced (public knowledge, not a hint to the sync). */
const EXAMPLES = {
  '0xd7f8974fb5ac78d9ac099b9ad5018bedc2ce0a72dad1827a1709da30580f0544': [
    ['0x5abfec25f74cd88437631a7731906932776356f9', 'largest genesis allocation'],
    ['0x000d836201318ec6899a67540690382780743280', 'a presale account'],
    ['0x0000000000000000000000000000000000000000', 'not in the genesis'],
  ],
};

const $ = (id) => document.getElementById(id);
const el = {
  form: $('sync-form'), peers: $('peers'), root: $('root'), database: $('database'),
  infoNote: $('info-note'), start: $('start'), pause: $('pause'), del: $('delete'),
  badge: $('status-badge'), error: $('error'), notice: $('notice'),
  bar: $('bar'), barFill: $('bar-fill'), pct: $('pct'),
  nodes: $('stat-nodes'), nodesSub: $('stat-nodes-sub'), bytes: $('stat-bytes'), bytesSub: $('stat-bytes-sub'),
  codes: $('stat-codes'), codesSub: $('stat-codes-sub'), rate: $('stat-rate'), rateSub: $('stat-rate-sub'),
  eta: $('stat-eta'), etaSub: $('stat-eta-sub'), checks: $('stat-checks'), checksSub: $('stat-checks-sub'),
  peersBody: $('peers-body'), verified: $('verified'),
  lookupForm: $('lookup-form'), address: $('address'), examples: $('examples'), lookupError: $('lookup-error'),
  account: $('account'), accountNote: $('account-note'), acctEth: $('acct-eth'), acctWei: $('acct-wei'),
  acctNonce: $('acct-nonce'), acctCode: $('acct-code'), acctStorageRoot: $('acct-storage-root'),
  acctCodeHash: $('acct-code-hash'), slotForm: $('slot-form'), slot: $('slot'), slotError: $('slot-error'),
  slotValue: $('slot-value'),
};

/** What a test (or a curious developer in the console) can read. */
const demo = (window.triesyncDemo = { phase: 'idle', reports: [], stops: [], progress: null, verify: null });

// ---------------------------------------------------------------- worker RPC

const worker = new Worker(new URL('./sync.worker.js', import.meta.url), { type: 'module', name: 'sync-worker' });
let nextId = 1;
const waiting = new Map();

function call(op, args = {}) {
  const id = nextId++;
  return new Promise((resolve, reject) => {
    waiting.set(id, { resolve, reject });
    worker.postMessage({ id, op, ...args });
  });
}

worker.onmessage = ({ data }) => {
  if (data.id !== undefined) {
    const w = waiting.get(data.id);
    waiting.delete(data.id);
    if (!w) return;
    if (data.ok) w.resolve(data.value);
    else w.reject(Object.assign(new Error(data.error.message), data.error));
    return;
  }
  if (data.event === 'progress') onProgress(data.progress);
  else if (data.event === 'finished') onFinished(data.report, data.verify);
  else if (data.event === 'stopped') onStopped(data.error, data.progress);
};

worker.onerror = (e) => {
  e.preventDefault();
  showError({ code: 'WORKER', message: `the sync worker failed to start: ${e.message || 'unknown error'}` });
  setPhase('error');
};

// ---------------------------------------------------------------- settings

function saved() {
  try {
    return JSON.parse(localStorage.getItem(STORAGE_KEY)) || {};
  } catch {
    return {};
  }
}

/** What the server's demo-config.json named when the page loaded (a JSON string, or null
 *  without a config): saved with the peers, so that a peer list edited against one config
 *  is not applied to another (demo.sh may have started its peer on another port since). */
let configKey = null;

function save(patch) {
  const next = { ...saved(), ...patch };
  localStorage.setItem(STORAGE_KEY, JSON.stringify(next));
  return next;
}

/** Whether this tab was syncing: kept per tab (sessionStorage survives a reload, and a
 *  second tab does not inherit it), so only the tab that was reloaded resumes by itself. */
const RUNNING_KEY = 'triesync-demo/running';
function markRunning(running) {
  try {
    if (running) sessionStorage.setItem(RUNNING_KEY, '1');
    else sessionStorage.removeItem(RUNNING_KEY);
  } catch {
    // Storage disabled: the page simply does not resume by itself.
  }
}
function wasRunning() {
  try {
    return sessionStorage.getItem(RUNNING_KEY) === '1';
  } catch {
    return false;
  }
}

function settings() {
  const peers = el.peers.value.split(/[\s,]+/).map((s) => s.trim()).filter(Boolean);
  return { peers, root: el.root.value.trim(), database: el.database.value.trim() };
}

/** A line of the peers field as the library takes it: `jsonrpc+http://…` → `{ url, protocol: 'jsonrpc' }`. */
function peerLike(line) {
  const m = /^jsonrpc\+(https?:\/\/.+)$/i.exec(line);
  return m ? { url: m[1], protocol: 'jsonrpc' } : line;
}

function validate({ peers, root, database }) {
  if (!peers.length) return 'Enter at least one peer URL.';
  const bad = peers.find((p) => !/^((jsonrpc\+)?https?|wss?):\/\/[^/\s]+/i.test(p));
  if (bad) return `“${bad}” is not a peer URL: it must start with http://, https://, ws://, wss:// or jsonrpc+http(s)://.`;
  if (!HEX32.test(root)) return 'The state root must be 0x followed by 64 hex digits.';
  if (!database) return 'Enter a database name.';
  return null;
}

/** The http(s) base of a peer URL, for GET /v1/info. */
function infoUrl(peer) {
  const base = peer.replace(/^jsonrpc\+/i, '').replace(/^ws(s?):\/\//i, 'http$1://').replace(/\/v1\/(nodes|ws)\/?$/, '').replace(/\/+$/, '');
  return `${base}/v1/info`;
}

// ---------------------------------------------------------------- sync state

let phase = 'idle';
/** What the database held for this root before the current run (from its progress record). */
let base = { nodes: 0, nodeBytes: 0, codes: 0, codeBytes: 0 };
/** The size a peer claims for the root: only for the bar and the ETA, never trusted. */
let expected = null;
/** Recent (elapsedMs, nodes, bytes) points for the speed. */
let samples = [];
let lastProgress = null;
let drawQueued = false;

const BADGES = {
  idle: 'Idle', starting: 'Starting…', syncing: 'Syncing', pausing: 'Pausing…', paused: 'Paused',
  complete: 'Complete', error: 'Stopped by an error',
};

function setPhase(p) {
  phase = p;
  demo.phase = p;
  el.badge.dataset.status = p;
  el.badge.textContent = BADGES[p] ?? p;
  document.body.dataset.phase = p;
  const busy = p === 'starting' || p === 'syncing' || p === 'pausing';
  el.start.disabled = busy;
  el.pause.disabled = p !== 'syncing';
  el.del.disabled = busy;
  for (const f of [el.peers, el.root, el.database]) f.readOnly = busy;
  el.start.textContent = p === 'paused' || (p === 'error' && base.nodes + (lastProgress?.nodes ?? 0) > 0) ? 'Resume sync' : 'Start sync';
  // On a complete database a run only finds the root stored and re-verifies it.
  if (p === 'complete') el.start.textContent = 'Check again';
}

function showError(err) {
  if (!err) {
    el.error.hidden = true;
    return;
  }
  el.error.hidden = false;
  el.error.replaceChildren(
    strong(`${err.code ? `${err.code}: ` : ''}${humanError(err)}`),
    ...(hintFor(err) ? [document.createElement('br'), text(hintFor(err))] : []),
  );
}

function showNotice(msg) {
  el.notice.hidden = !msg;
  el.notice.textContent = msg ?? '';
}

function humanError(err) {
  if (err.code === 'MISSING') return 'this part of the state is not in the local database yet.';
  const m = String(err.message ?? err).replace(/^invalid argument: /, '');
  return m.charAt(0).toUpperCase() + m.slice(1);
}

function hintFor(err) {
  switch (err.code) {
    case 'NO_PEERS':
      return 'Every peer was dropped: the peer table below says why for each. An unreachable peer: is it running (scripts/demo.sh starts one) and is its URL right?';
    case 'UNAVAILABLE':
      return 'The peers do not have some nodes of this root. Check the root, or add a peer that serves this state.';
    case 'INVALID_ARGUMENT':
      return 'Check the peer URLs and the root.';
    case 'QUOTA_EXCEEDED':
      return 'The browser refused more storage. Free some space (or delete local data) and resume: what is stored is kept.';
    case 'LOCKED':
      return 'Another tab is syncing into this database. Close it or use another database name.';
    case 'CORRUPT':
      return 'Stored data failed its hash check. Delete local data and sync again.';
    case 'MISSING':
      return 'That part of the state is not downloaded yet: finish (or resume) the sync first.';
    default:
      return '';
  }
}

function text(s) {
  return document.createTextNode(s);
}

function strong(s) {
  const b = document.createElement('strong');
  b.textContent = s;
  return b;
}

/** Until when a LOCKED answer is retried: the page before a reload (or a sync that just
 *  stopped) may hold the database's lock for a moment longer. */
let lockRetryUntil = 0;
let lastStart = { resumed: false };

async function start({ resumed = false, retry = false } = {}) {
  if (!retry) lockRetryUntil = Date.now() + (resumed ? 10000 : 3000);
  lastStart = { resumed };
  const s = settings();
  const problem = validate(s);
  if (problem) {
    showError({ code: 'INVALID_ARGUMENT', message: problem });
    return;
  }
  showError(null);
  el.verified.hidden = true;
  setPhase('starting');
  samples = [];
  lastProgress = null;
  if (expected && expected.root !== s.root) expected = null;
  save({ ...s, peersConfig: configKey });
  markRunning(true);
  try {
    const { meta } = await call('start', { ...s, peers: s.peers.map(peerLike) });
    base = meta && meta.root === s.root
      ? { nodes: meta.nodes, nodeBytes: meta.nodeBytes, codes: meta.codes, codeBytes: meta.codeBytes }
      : { nodes: 0, nodeBytes: 0, codes: 0, codeBytes: 0 };
    demo.base = { ...base };
    demo.resumed = resumed;
    setPhase('syncing');
    showNotice(
      resumed
        ? `The page was reloaded during a sync: resuming. ${fmt.count(base.nodes)} nodes were already stored and are not fetched again.`
        : base.nodes
          ? `Resuming: ${fmt.count(base.nodes)} nodes are already stored and are not fetched again.`
          : null,
    );
    draw();
  } catch (e) {
    setPhase('error');
    showError(e);
  }
}

function onProgress(p) {
  lastProgress = p;
  demo.progress = p;
  samples.push({ t: p.elapsedMs, nodes: p.nodes, bytes: p.bytes });
  while (samples.length > 2 && samples[samples.length - 1].t - samples[0].t > 3000) samples.shift();
  queueDraw();
}

async function onFinished(report, verify) {
  onProgress(report);
  demo.reports.push(report);
  demo.verify = verify;
  markRunning(false);
  setPhase('complete');
  showNotice(null);
  showVerified(verify, report);
  draw();
}

function onStopped(err, progress) {
  if (err.code === 'LOCKED' && Date.now() < lockRetryUntil) {
    showNotice('Waiting for the previous sync of this database (the page before the reload, or another tab) to let go of it…');
    setTimeout(() => start({ ...lastStart, retry: true }), 400);
    return;
  }
  if (progress) onProgress(progress);
  demo.stops.push({ error: err, progress });
  if (err.code === 'CANCELLED') {
    markRunning(false);
    setPhase('paused');
    const stored = base.nodes + (progress?.nodes ?? 0);
    showNotice(`Paused. ${fmt.count(stored)} verified nodes are stored. Resume, now or after reloading the page, fetches only what is missing.`);
  } else {
    markRunning(false);
    setPhase('error');
    showNotice(null);
    showError(err);
  }
  draw();
}

async function pause() {
  if (phase !== 'syncing') return;
  setPhase('pausing');
  // Asked to stop: a reload before CANCELLED arrives must not resume the sync.
  markRunning(false);
  try {
    await call('pause');
  } catch (e) {
    showError(e);
  }
}

async function deleteData() {
  const { database } = settings();
  if (!database) return;
  try {
    await call('delete', { database });
    markRunning(false);
    base = { nodes: 0, nodeBytes: 0, codes: 0, codeBytes: 0 };
    lastProgress = null;
    samples = [];
    setPhase('idle');
    showError(null);
    el.verified.hidden = true;
    el.account.hidden = true;
    el.accountNote.hidden = true;
    el.slotValue.hidden = true;
    showNotice(`Deleted the local database “${database}”.`);
    draw();
  } catch (e) {
    showError(e);
  }
}

function showVerified(verify, report) {
  el.verified.hidden = false;
  const root = settings().root;
  if (!verify || verify.error) {
    el.verified.className = 'verified bad';
    el.verified.textContent = `Could not re-verify the stored state: ${verify?.error?.message ?? 'no answer'}`;
    return;
  }
  const v = verify.value ?? verify;
  if (v.complete) {
    el.verified.className = 'verified ok';
    el.verified.replaceChildren(
      strong('✓ Root verified.'),
      text(
        ` All ${fmt.count(v.nodes)} trie nodes (${fmt.bytes(v.nodeBytes)})` +
          (v.codes ? ` and ${fmt.count(v.codes)} codes (${fmt.bytes(v.codeBytes)})` : '') +
          ` under ${fmt.shortHex(root, 8)} were read back from IndexedDB and re-hashed: nothing missing, nothing damaged.`,
      ),
    );
    el.verified.dataset.root = root;
  } else {
    el.verified.className = 'verified bad';
    el.verified.textContent = `The stored state is incomplete: ${fmt.count(v.missingCount)} items missing, ${v.corrupt?.length ?? 0} damaged.`;
  }
  if (report) el.verified.title = `Sync: ${fmt.count(report.nodes)} nodes fetched in ${fmt.duration(report.elapsedMs)}`;
}

// ---------------------------------------------------------------- drawing

function queueDraw() {
  if (drawQueued) return;
  drawQueued = true;
  requestAnimationFrame(() => {
    drawQueued = false;
    draw();
  });
}

function currentRate() {
  if (!lastProgress) return { nodes: 0, bytes: 0 };
  const first = samples[0];
  const last = samples[samples.length - 1];
  if (samples.length >= 2 && last.t - first.t > 200) {
    const dt = (last.t - first.t) / 1000;
    return { nodes: (last.nodes - first.nodes) / dt, bytes: (last.bytes - first.bytes) / dt };
  }
  const dt = lastProgress.elapsedMs / 1000;
  return dt > 0 ? { nodes: lastProgress.nodes / dt, bytes: lastProgress.bytes / dt } : { nodes: 0, bytes: 0 };
}

function draw() {
  const p = lastProgress;
  const stored = base.nodes + (p?.nodes ?? 0);
  const storedBytes = base.nodeBytes + (p?.nodeBytes ?? 0);
  const codes = base.codes + (p?.codes ?? 0);
  const codeBytes = base.codeBytes + (p?.codeBytes ?? 0);
  const complete = phase === 'complete' || Boolean(p?.complete);
  const total = expected && expected.root === settings().root ? expected.nodes : null;

  // The bar: exact at the end, an estimate from the peer's claimed size before.
  let pct = null;
  if (complete) pct = 100;
  else if (total) pct = Math.min(99, (stored / total) * 100);
  el.bar.classList.toggle('indeterminate', pct === null && phase === 'syncing');
  el.bar.classList.toggle('done', complete);
  el.bar.classList.toggle('determinate', pct !== null);
  el.barFill.style.width = `${pct ?? 0}%`;
  el.bar.setAttribute('aria-valuenow', String(Math.round(pct ?? 0)));
  // Never empty: the label keeps its width, so the bar ends at the same place in every phase.
  el.pct.textContent = pct === null ? (phase === 'syncing' ? '…' : '—') : `${pct >= 10 || pct === 0 ? Math.floor(pct) : pct.toFixed(1)}%`;

  el.nodes.textContent = fmt.count(stored);
  el.nodesSub.textContent = total && !complete
    ? `of ~${fmt.count(total)} · ${fmt.count(p?.nodes ?? 0)} this run`
    : p
      ? `${fmt.count(p.nodes)} fetched this run${p.foundInStore ? ` · ${fmt.count(p.foundInStore)} found stored` : ''}`
      : stored ? 'stored before this page' : '\u00a0';

  el.bytes.textContent = fmt.bytes(p?.bytes ?? 0);
  el.bytesSub.textContent = `${fmt.bytes(storedBytes + codeBytes)} stored`;

  el.codes.textContent = fmt.count(codes);
  el.codesSub.textContent = codes ? fmt.bytes(codeBytes) : complete ? 'none in this state' : 'none yet';

  const r = currentRate();
  const running = phase === 'syncing' || phase === 'pausing';
  if (running) {
    el.rate.textContent = fmt.rate(r.nodes);
    el.rateSub.textContent = r.bytes > 0 ? `nodes/s · ${fmt.bytes(r.bytes)}/s` : 'nodes/s';
  } else if (p && p.elapsedMs > 0 && p.nodes > 0) {
    el.rate.textContent = fmt.rate(p.nodes / (p.elapsedMs / 1000));
    el.rateSub.textContent = `nodes/s · ${fmt.bytes(p.bytes / (p.elapsedMs / 1000))}/s average`;
  } else {
    el.rate.textContent = '—';
    el.rateSub.textContent = '\u00a0';
  }

  if (complete) {
    el.eta.textContent = 'Done';
  } else if (running && total && r.nodes > 0) {
    el.eta.textContent = fmt.duration((Math.max(total - stored, 0) / r.nodes) * 1000);
  } else {
    el.eta.textContent = '—';
  }
  el.etaSub.textContent = p ? `elapsed ${fmt.duration(p.elapsedMs)}` : '\u00a0';

  el.checks.textContent = p ? `${fmt.count(p.rejected)} rejected` : '—';
  el.checksSub.textContent = p ? `${fmt.count(p.pending)} pending · ${fmt.count(p.duplicates)} duplicates` : '\u00a0';

  drawPeers(p?.peers ?? [], running);
  showExamples();
}

function peerState(peer, running) {
  if (peer.dropped) return ['dropped', 'dropped'];
  if (!running) return ['idle', phase === 'complete' ? 'done' : 'stopped'];
  return peer.inFlight > 0 ? ['busy', 'downloading'] : ['idle', 'waiting'];
}

function cell(content, className) {
  const td = document.createElement('td');
  if (className) td.className = className;
  if (typeof content === 'string') td.textContent = content;
  else td.append(...content);
  return td;
}

function drawPeers(peers, running) {
  if (!peers.length) {
    const tr = document.createElement('tr');
    tr.className = 'empty';
    const td = cell('No peer contacted yet.');
    td.colSpan = 10;
    tr.append(td);
    el.peersBody.replaceChildren(tr);
    return;
  }
  const rows = [];
  for (const peer of peers) {
    const tr = document.createElement('tr');
    const [cls, label] = peerState(peer, running);
    const proto = document.createElement('span');
    proto.className = 'proto';
    proto.textContent = /^jsonrpc\+/i.test(peer.id) ? 'JSON-RPC' : /^wss?:/i.test(peer.id) ? 'WebSocket' : 'HTTP';
    const pill = document.createElement('span');
    pill.className = `pill ${cls}`;
    pill.textContent = label;
    const problem = (n) => cell(fmt.count(n), n > 0 ? 'num warn' : 'num');
    tr.append(
      cell([proto, text(` ${peer.id.replace(/^jsonrpc\+/i, '')}`)], 'mono peer-id'),
      cell([pill]),
      cell(fmt.count(peer.requests), 'num'),
      cell(fmt.count(peer.items), 'num'),
      cell(fmt.bytes(peer.bytes), 'num'),
      cell(fmt.count(peer.inFlight), 'num'),
      cell(fmt.count(peer.capacity), 'num'),
      problem(peer.timeouts),
      problem(peer.failures),
      problem(peer.rejected),
    );
    tr.title = peer.id;
    rows.push(tr);
    if (peer.dropped) {
      // Why a peer was dropped gets a line of its own: it is the thing to read.
      const why = document.createElement('tr');
      why.className = 'reason';
      const td = cell(`Dropped: ${peer.dropped}`);
      td.colSpan = 10;
      why.append(td);
      rows.push(why);
    }
  }
  el.peersBody.replaceChildren(...rows);
}

// ---------------------------------------------------------------- lookups

/** The example addresses, once there is something to look them up in. */
let examplesShown = null;
function showExamples() {
  const root = settings().root.toLowerCase();
  const stored = base.nodes + (lastProgress?.nodes ?? 0) > 0;
  const list = phase === 'complete' || stored ? EXAMPLES[root] : null;
  el.examples.hidden = !list;
  if (!list) {
    examplesShown = null;
    return;
  }
  if (examplesShown === root) return;
  examplesShown = root;
  el.examples.replaceChildren(
    text('Try: '),
    ...list.flatMap(([addr, what], i) => {
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'chip';
      b.title = what;
      b.textContent = `${fmt.shortHex(addr, 4)} (${what})`;
      b.onclick = () => {
        el.address.value = addr;
        lookup();
      };
      return i ? [text(' '), b] : [b];
    }),
  );
}

/** Hints for a lookup: about the local data, never about peers (a lookup uses none). */
function lookupHintFor(err) {
  return err.code === 'MISSING' || err.code === 'CORRUPT' ? hintFor(err) : '';
}

function showLookupError(target, err) {
  target.hidden = !err;
  if (!err) return;
  const hint = lookupHintFor(err);
  target.replaceChildren(strong(`${err.code ? `${err.code}: ` : ''}${humanError(err)}`), ...(hint ? [document.createElement('br'), text(hint)] : []));
}

async function lookup() {
  const { root, database } = settings();
  const address = el.address.value.trim();
  el.account.hidden = true;
  el.accountNote.hidden = true;
  el.slotValue.hidden = true;
  showLookupError(el.slotError, null);
  if (!ADDRESS.test(address)) {
    showLookupError(el.lookupError, { code: 'INVALID_ARGUMENT', message: 'An address is 0x followed by 40 hex digits.' });
    return;
  }
  if (!HEX32.test(root)) {
    showLookupError(el.lookupError, { code: 'INVALID_ARGUMENT', message: 'Enter the state root above first.' });
    return;
  }
  showLookupError(el.lookupError, null);
  try {
    const { account, codeSize, ms } = await call('account', { database, root, address });
    demo.lastAccount = account;
    el.accountNote.hidden = false;
    if (!account) {
      el.accountNote.className = 'answer-note';
      el.accountNote.textContent = `No account at ${address} in this state: the trie proves it absent (answered from IndexedDB in ${ms.toFixed(1)} ms, no network).`;
      return;
    }
    el.account.hidden = false;
    el.acctEth.textContent = `${fmt.eth(account.balance)} ETH`;
    el.acctWei.textContent = `${fmt.wei(account.balance)} wei`;
    el.acctNonce.textContent = fmt.count(account.nonce);
    el.acctCode.textContent = codeSize ? `${fmt.count(codeSize)} bytes (contract)` : '0 bytes (no code)';
    el.acctStorageRoot.textContent = account.storageRoot;
    el.acctCodeHash.textContent = account.codeHash;
    el.accountNote.className = 'answer-note';
    el.accountNote.textContent = `Answered in ${ms.toFixed(1)} ms from the verified copy in IndexedDB, along the trie path from root ${fmt.shortHex(root, 6)}. No network request.`;
  } catch (e) {
    showLookupError(el.lookupError, e);
  }
}

async function readSlot() {
  const { root, database } = settings();
  const address = el.address.value.trim();
  const slot = el.slot.value.trim();
  el.slotValue.hidden = true;
  if (!ADDRESS.test(address)) {
    showLookupError(el.slotError, { code: 'INVALID_ARGUMENT', message: 'Enter an address above first.' });
    return;
  }
  if (!/^0x[0-9a-fA-F]{1,64}$/.test(slot)) {
    showLookupError(el.slotError, { code: 'INVALID_ARGUMENT', message: 'A slot is 0x followed by 1 to 64 hex digits (0x0, 0x1, …).' });
    return;
  }
  showLookupError(el.slotError, null);
  try {
    const { value, ms } = await call('storage', { database, root, address, slot });
    el.slotValue.hidden = false;
    el.slotValue.replaceChildren();
    if (value === null) {
      el.slotValue.textContent = `No account at ${fmt.shortHex(address, 4)}, so no storage (${ms.toFixed(1)} ms).`;
    } else {
      const zero = /^0x0*$/.test(value);
      const label = document.createElement('span');
      label.className = 'label-inline';
      label.textContent = `Slot ${slot} =`;
      const v = document.createElement('code');
      v.className = 'mono word';
      v.id = 'slot-word';
      v.textContent = value;
      el.slotValue.append(label, text(' '), v, text(` ${zero ? '(zero: never written) ' : ''}· ${ms.toFixed(1)} ms, no network`));
    }
  } catch (e) {
    showLookupError(el.slotError, e);
  }
}

// ---------------------------------------------------------------- start-up

async function prefill(peers, keepRoot) {
  const httpPeer = peers[0];
  if (!httpPeer) return;
  const url = infoUrl(httpPeer);
  try {
    const res = await fetch(url, { cache: 'no-store' });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    const info = await res.json();
    if (!HEX32.test(info.root ?? '')) throw new Error('no root in the answer');
    if (!keepRoot || !el.root.value) el.root.value = info.root;
    expected = { root: info.root, nodes: Number(info.nodes) || null, bytes: Number(info.nodeBytes) + Number(info.codeBytes || 0) };
    el.infoNote.hidden = false;
    el.infoNote.replaceChildren(
      strong('Root prefilled from the peer. '),
      text(
        `${url} says it serves “${info.name ?? 'a state'}”: ${fmt.count(info.accounts)} accounts, ${fmt.count(info.nodes)} nodes, ${fmt.bytes(expected.bytes)}. ` +
          'That is only the peer’s word: a wallet takes the root from a block header it trusts. Every node downloaded is checked against the root above; ' +
          'the size is used only for the progress bar and the time estimate.',
      ),
    );
  } catch (e) {
    el.infoNote.hidden = false;
    el.infoNote.className = 'note warn';
    el.infoNote.textContent = `Could not read ${url} (${e.message}) to prefill the root: enter the root yourself. Is the peer running?`;
  }
}

async function boot() {
  const params = new URLSearchParams(location.search);
  const memory = saved();
  let peers = params.getAll('peer');
  if (!peers.length) {
    let configPeers = [];
    try {
      const res = await fetch('demo-config.json', { cache: 'no-store' });
      if (res.ok) configPeers = (await res.json()).peers ?? [];
    } catch {
      // No config next to the page: fall back to the peer's default port.
    }
    configKey = configPeers.length ? JSON.stringify(configPeers) : null;
    // The peers this browser last used win only if they were chosen against this same
    // config: a config that changed (a peer on a new port) replaces them.
    const savedFits = memory.peers?.length && (memory.peersConfig ?? null) === configKey;
    peers = savedFits ? memory.peers : configPeers;
  }
  if (!peers.length) peers = [DEFAULT_PEER];
  el.peers.value = peers.join('\n');
  el.peers.rows = Math.min(Math.max(peers.length, 2), 6);
  if (params.get('database')) el.database.value = params.get('database');
  else if (memory.database) el.database.value = memory.database;
  if (memory.root) el.root.value = memory.root;

  setPhase('idle');
  draw();
  await prefill(peers, Boolean(memory.root));

  const { root, database } = settings();
  let status = null;
  try {
    status = await call('status', { database });
  } catch (e) {
    showError(e);
  }
  const meta = status?.meta;
  if (meta && meta.root === root) {
    base = { nodes: meta.nodes, nodeBytes: meta.nodeBytes, codes: meta.codes, codeBytes: meta.codeBytes };
  }
  if (wasRunning() && HEX32.test(root)) {
    // The page went away during a sync: carry on where the database stopped.
    await start({ resumed: true });
  } else if (meta && meta.root === root && meta.complete) {
    setPhase('complete');
    showNotice(`This browser already holds the complete state of this root (${fmt.count(meta.nodes)} nodes).`);
    try {
      const verify = await call('verify', { database, root });
      demo.verify = verify.value;
      showVerified(verify.value, null);
    } catch (e) {
      showError(e);
    }
  } else if (meta && meta.root === root && meta.nodes > 0) {
    setPhase('paused');
    showNotice(`${fmt.count(meta.nodes)} verified nodes of this root are stored from an earlier visit. Resume fetches only what is missing.`);
  }
  draw();
  document.body.dataset.ready = 'true';
}

el.form.addEventListener('submit', (e) => {
  e.preventDefault();
  start();
});
el.pause.addEventListener('click', pause);
el.del.addEventListener('click', deleteData);
el.lookupForm.addEventListener('submit', (e) => {
  e.preventDefault();
  lookup();
});
el.slotForm.addEventListener('submit', (e) => {
  e.preventDefault();
  readSlot();
});
el.root.addEventListener('change', draw);

boot();
