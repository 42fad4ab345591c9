//! The invariants checked on every input, shared by the coverage-guided fuzz targets
//! (`fuzz/fuzz_targets/*`, through `triesync_fuzz::checks`) and the bounded property tests
//! (`core/tests/properties.rs`, which includes this file by path). It depends on nothing
//! but `triesync_core` and std, and panics (with a message) when an invariant breaks.
#![allow(dead_code, unreachable_pub)]

use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use triesync_core::builder::{build_trie, NodeMap};
use triesync_core::nodes::{
    decode_node, encode_branch, encode_extension, encode_leaf, ChildRef, Node, NodeRef,
};
use triesync_core::scheduler::{ProcessError, Scheduler};
use triesync_core::state::Account;
use triesync_core::store::{ItemKey, Kind};
use triesync_core::wire;
use triesync_core::{keccak256, EMPTY_CODE_HASH, EMPTY_ROOT, H256};

/// A cheap hasher for the harness's own maps of `ItemKey`s (their hashes are keccak256
/// digests, already uniform): SipHash was a quarter of the scheduler targets' time.
#[derive(Default)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word))
                .wrapping_mul(0x517c_c1b7_2722_0a95);
        }
    }
}

type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<KeyHasher>>;
type FastSet<K> = HashSet<K, BuildHasherDefault<KeyHasher>>;

// ---------------------------------------------------------------------------------------
// An independent strict RLP reader: the oracle for "the decoder accepted only canonical RLP".
// ---------------------------------------------------------------------------------------

/// How bytes fail to be exactly one canonical RLP item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RlpFlaw {
    /// Empty input, or an item longer than the bytes that hold it.
    Truncated,
    /// Bytes after the one top-level item.
    TrailingBytes,
    /// A list whose payload is not exactly a sequence of items: it ends with bytes that do
    /// not parse as an item (a cut-off or malformed last item).
    JunkInList,
    /// A one-byte string below 0x80 written as `0x81 b` instead of `b`.
    SingleByteIndirection,
    /// A long-form length of 55 or less, or a length with leading zero bytes.
    NonCanonicalLength,
    /// Nested deeper than this reader follows (64 levels).
    TooDeep,
}

/// Whether `bytes` is exactly one canonical RLP item (strings and lists, recursively).
pub fn rlp_canonical(bytes: &[u8]) -> Result<(), RlpFlaw> {
    let len = rlp_item(bytes, 0)?;
    if len != bytes.len() {
        return Err(RlpFlaw::TrailingBytes);
    }
    Ok(())
}

/// Length of the canonical item at the start of `bytes`.
fn rlp_item(bytes: &[u8], depth: usize) -> Result<usize, RlpFlaw> {
    if depth > 64 {
        return Err(RlpFlaw::TooDeep);
    }
    let &first = bytes.first().ok_or(RlpFlaw::Truncated)?;
    let (header, payload, list) = match first {
        0x00..=0x7f => return Ok(1),
        0x80..=0xb7 => (1, usize::from(first - 0x80), false),
        0xb8..=0xbf => (
            1 + usize::from(first - 0xb7),
            long_len(bytes, usize::from(first - 0xb7))?,
            false,
        ),
        0xc0..=0xf7 => (1, usize::from(first - 0xc0), true),
        0xf8..=0xff => (
            1 + usize::from(first - 0xf7),
            long_len(bytes, usize::from(first - 0xf7))?,
            true,
        ),
    };
    let total = header.checked_add(payload).ok_or(RlpFlaw::Truncated)?;
    if bytes.len() < total {
        return Err(RlpFlaw::Truncated);
    }
    let body = &bytes[header..total];
    if !list {
        if first == 0x81 && body[0] < 0x80 {
            return Err(RlpFlaw::SingleByteIndirection);
        }
        return Ok(total);
    }
    let mut at = 0;
    while at < body.len() {
        match rlp_item(&body[at..], depth + 1) {
            Ok(n) => at += n,
            // An item that does not parse ends the list for an item-by-item reader: the
            // rest of the payload is junk.
            Err(RlpFlaw::Truncated | RlpFlaw::NonCanonicalLength) => {
                return Err(RlpFlaw::JunkInList)
            }
            Err(e) => return Err(e),
        }
    }
    Ok(total)
}

/// A long-form length of `len_of_len` bytes after the first byte: canonical only without
/// leading zeros and above 55.
fn long_len(bytes: &[u8], len_of_len: usize) -> Result<usize, RlpFlaw> {
    let digits = bytes.get(1..1 + len_of_len).ok_or(RlpFlaw::Truncated)?;
    if digits[0] == 0 {
        return Err(RlpFlaw::NonCanonicalLength);
    }
    if len_of_len > std::mem::size_of::<usize>() {
        return Err(RlpFlaw::Truncated);
    }
    let len = digits
        .iter()
        .fold(0usize, |acc, &d| (acc << 8) | usize::from(d));
    if len <= 55 {
        return Err(RlpFlaw::NonCanonicalLength);
    }
    Ok(len)
}

/// Called when a decoder accepted `data`: panics unless the bytes are canonical RLP (the
/// caller then checks that the re-encoding gives the same bytes).
pub fn accepted_rlp(what: &str, data: &[u8]) {
    if let Err(flaw) = rlp_canonical(data) {
        panic!(
            "{what} accepted RLP that is not canonical ({flaw:?}): {}",
            short_hex(data)
        );
    }
}

// ---------------------------------------------------------------------------------------
// Decoders: never panic; whatever is accepted re-encodes to exactly the input bytes.
// ---------------------------------------------------------------------------------------

/// The canonical encoding of a decoded node (with the builder's encoders).
pub fn encode_node(node: &Node<'_>) -> Vec<u8> {
    fn to_ref(c: &ChildRef<'_>) -> NodeRef {
        match c {
            ChildRef::Empty => NodeRef::Empty,
            ChildRef::Hash(h) => NodeRef::Hash(*h),
            ChildRef::Inline(raw) => NodeRef::Inline(raw.to_vec()),
        }
    }
    match node {
        Node::Branch { children, value } => {
            let refs: Vec<NodeRef> = children.iter().map(to_ref).collect();
            encode_branch(&refs, *value)
        }
        Node::Extension { path, child } => encode_extension(path, &to_ref(child)),
        Node::Leaf { path, value } => encode_leaf(path, value),
    }
}

/// `decode_node` on arbitrary bytes: no panic; an accepted node is canonical (re-encodes to
/// the same bytes), its paths are nibbles, an extension is non-empty and points somewhere,
/// and every embedded child is itself a valid node under 32 bytes. Returns whether the
/// bytes were accepted.
pub fn check_node(data: &[u8]) -> bool {
    let Ok(node) = decode_node(data) else {
        return false;
    };
    accepted_rlp("decode_node", data);
    assert_eq!(
        encode_node(&node),
        data,
        "decode_node accepted a non-canonical encoding: {node:?}"
    );
    match &node {
        Node::Leaf { path, .. } => assert!(path.iter().all(|&n| n < 16)),
        Node::Extension { path, child } => {
            assert!(!path.is_empty() && path.iter().all(|&n| n < 16));
            assert_ne!(*child, ChildRef::Empty);
        }
        Node::Branch { value, .. } => assert!(value.is_none_or(|v| !v.is_empty())),
    }
    for (_, child) in node.children() {
        if let ChildRef::Inline(raw) = child {
            assert!(raw.len() < 32, "embedded child of {} bytes", raw.len());
            assert!(
                check_node(raw),
                "accepted node with an invalid embedded child"
            );
        }
    }
    // Decoding is a pure function of the bytes.
    assert_eq!(decode_node(data), Ok(node));
    true
}

/// `Account::decode` on arbitrary bytes: no panic; an accepted account re-encodes to the
/// same bytes (so integers were canonical and nothing trailed).
pub fn check_account(data: &[u8]) -> bool {
    let Ok(account) = Account::decode(data) else {
        return false;
    };
    accepted_rlp("Account::decode", data);
    assert_eq!(
        account.encode(),
        data,
        "Account::decode accepted a non-canonical encoding"
    );
    assert_eq!(Account::decode(&account.encode()), Ok(account.clone()));
    let hex = account.balance_hex();
    assert!(hex.starts_with("0x") && (hex == "0x0" || !hex.starts_with("0x0")));
    true
}

/// `decode_request`: 1 to `MAX_HASHES` hashes, re-encoding to the same body.
pub fn check_request(data: &[u8]) -> bool {
    let Ok(hashes) = wire::decode_request(data) else {
        return false;
    };
    assert!(!hashes.is_empty() && hashes.len() <= wire::MAX_HASHES);
    accepted_rlp("decode_request", data);
    assert_eq!(
        wire::encode_request(&hashes),
        data,
        "decode_request accepted a non-canonical body"
    );
    true
}

/// `decode_blobs` with the bound `max`: at most `max` blobs, re-encoding to the same body,
/// and the same answer as without a bound whenever the count fits.
pub fn check_blobs(data: &[u8], max: usize) -> bool {
    let bounded = wire::decode_blobs(data, max);
    let unbounded = wire::decode_blobs(data, usize::MAX);
    match (&bounded, &unbounded) {
        (Ok(b), Ok(u)) => assert_eq!(b, u),
        (Err(wire::WireError::TooMany { count, max: m }), Ok(u)) => {
            assert_eq!((*count, *m), (u.len(), max));
            assert!(u.len() > max);
        }
        (Err(_), Err(_)) => {}
        (b, u) => panic!("bound {max} changed the answer: {b:?} vs {u:?}"),
    }
    let Ok(blobs) = bounded else { return false };
    assert!(blobs.len() <= max);
    accepted_rlp("decode_blobs", data);
    assert_eq!(
        wire::encode_blobs(&blobs),
        data,
        "decode_blobs accepted a non-canonical body"
    );
    true
}

/// `decode_ws_request`: re-encodes to the same message.
pub fn check_ws_request(data: &[u8]) -> bool {
    let Ok((id, hashes)) = wire::decode_ws_request(data) else {
        return false;
    };
    assert!(!hashes.is_empty() && hashes.len() <= wire::MAX_HASHES);
    accepted_rlp("decode_ws_request", data);
    assert_eq!(
        wire::encode_ws_request(id, &hashes),
        data,
        "decode_ws_request: non-canonical"
    );
    true
}

/// `decode_ws_response` with the bound `max`: re-encodes to the same message, and the bound
/// only ever turns an answer into `TooMany`.
pub fn check_ws_response(data: &[u8], max: usize) -> bool {
    let bounded = wire::decode_ws_response(data, max);
    let unbounded = wire::decode_ws_response(data, usize::MAX);
    match (&bounded, &unbounded) {
        (Ok(b), Ok(u)) => assert_eq!(b, u),
        (Err(wire::WireError::TooMany { count, .. }), Ok(u)) => {
            assert_eq!(*count, u.1.len());
            assert!(u.1.len() > max);
        }
        (Err(_), Err(_)) => {}
        (b, u) => panic!("bound {max} changed the answer: {b:?} vs {u:?}"),
    }
    let Ok((id, blobs)) = bounded else {
        return false;
    };
    assert!(blobs.len() <= max);
    accepted_rlp("decode_ws_response", data);
    assert_eq!(
        wire::encode_ws_response(id, &blobs),
        data,
        "decode_ws_response: non-canonical"
    );
    true
}

/// `decode_rpc_batch` with `asked` calls: no more values than calls asked, and the values
/// survive a canonical re-encoding of the answer.
pub fn check_rpc_batch(body: &str, asked: usize) -> bool {
    let Ok(values) = wire::decode_rpc_batch(body, asked) else {
        return false;
    };
    assert!(
        values.len() <= asked,
        "{} values for {asked} calls",
        values.len()
    );
    let canonical = rpc_answer(&values);
    assert_eq!(wire::decode_rpc_batch(&canonical, asked), Ok(values));
    true
}

/// A JSON-RPC batch answer carrying `values` as results, ids in order.
pub fn rpc_answer(values: &[Vec<u8>]) -> String {
    let items: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, v)| format!(r#"{{"jsonrpc":"2.0","id":{i},"result":"0x{}"}}"#, hex(v)))
        .collect();
    format!("[{}]", items.join(","))
}

/// Hex of at most the first 96 bytes (panic messages stay readable).
pub fn short_hex(bytes: &[u8]) -> String {
    if bytes.len() <= 96 {
        hex(bytes)
    } else {
        format!("{}… ({} bytes)", hex(&bytes[..96]), bytes.len())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ---------------------------------------------------------------------------------------
// The scheduler against a real state.
// ---------------------------------------------------------------------------------------

/// A state as a sync must reproduce it: every item by key, and each item's direct
/// dependencies (hash children, including those inside embedded nodes; for account
/// leaves the storage root and code).
#[derive(Debug, Clone)]
pub struct RealState {
    /// The state root.
    pub root: H256,
    /// Every node and code, sorted by key.
    pub items: Vec<(ItemKey, Vec<u8>)>,
    index: FastMap<ItemKey, usize>,
    deps: FastMap<ItemKey, Vec<ItemKey>>,
}

impl RealState {
    /// From a built state's node and code maps (`BuiltState.nodes`, `.codes`). Panics
    /// when the maps are not exactly the items reachable from `root`.
    pub fn new(root: H256, nodes: &HashMap<H256, Vec<u8>>, codes: &HashMap<H256, Vec<u8>>) -> Self {
        let mut items: Vec<(ItemKey, Vec<u8>)> = nodes
            .iter()
            .map(|(h, b)| (ItemKey::node(*h), b.clone()))
            .chain(codes.iter().map(|(h, b)| (ItemKey::code(*h), b.clone())))
            .collect();
        items.sort();
        let index = items
            .iter()
            .enumerate()
            .map(|(i, (k, _))| (*k, i))
            .collect();
        let mut state = RealState {
            root,
            items,
            index,
            deps: FastMap::default(),
        };
        let deps = {
            let view = &state;
            walk(root, &|k: &ItemKey| view.get(k))
        };
        assert_eq!(
            deps.len(),
            state.items.len(),
            "items not reachable from the root"
        );
        state.deps = deps;
        state
    }

    /// The bytes of `key`, if it is part of the state.
    pub fn get(&self, key: &ItemKey) -> Option<&[u8]> {
        self.index.get(key).map(|&i| self.items[i].1.as_slice())
    }

    /// The direct dependencies of `key`.
    pub fn deps(&self, key: &ItemKey) -> &[ItemKey] {
        self.deps.get(key).map_or(&[], Vec::as_slice)
    }

    /// Every key of the state.
    pub fn keys(&self) -> BTreeSet<ItemKey> {
        self.items.iter().map(|(k, _)| *k).collect()
    }
}

/// Walks the state from `root`, knowing which trie each node belongs to, and returns
/// every reached item's direct dependencies. Panics on an item that is missing, does not
/// hash to its key, or is both an account-trie node and a storage-trie node.
fn walk<'a>(
    root: H256,
    get: &dyn Fn(&ItemKey) -> Option<&'a [u8]>,
) -> FastMap<ItemKey, Vec<ItemKey>> {
    let mut deps: FastMap<ItemKey, Vec<ItemKey>> = FastMap::default();
    let mut account_trie: FastMap<ItemKey, bool> = FastMap::default();
    let mut stack = if root == EMPTY_ROOT {
        vec![]
    } else {
        vec![(ItemKey::node(root), true)]
    };
    while let Some((key, account)) = stack.pop() {
        if let Some(&seen) = account_trie.get(&key) {
            assert_eq!(
                seen, account,
                "{key:?} is in the account trie and a storage trie"
            );
            continue;
        }
        account_trie.insert(key, account);
        let bytes = get(&key).unwrap_or_else(|| panic!("{key:?} reachable, not in the state"));
        assert_eq!(
            keccak256(bytes),
            key.hash,
            "{key:?} does not hash to its key"
        );
        let (mut children, mut leaf_refs) = (Vec::new(), Vec::new());
        if key.kind == Kind::Node {
            node_refs(bytes, account, &mut children, &mut leaf_refs);
        }
        stack.extend(children.iter().map(|c| (*c, account)));
        stack.extend(leaf_refs.iter().map(|r| (*r, false)));
        for r in leaf_refs {
            push_unique(&mut children, r);
        }
        deps.insert(key, children);
    }
    deps
}

/// The hash children of a node (including those inside embedded nodes) and, for an
/// account-trie node, the storage roots and codes of its accounts. Decodes once.
fn node_refs(
    bytes: &[u8],
    account: bool,
    children: &mut Vec<ItemKey>,
    leaf_refs: &mut Vec<ItemKey>,
) {
    let node = decode_node(bytes).expect("a node of a real state decodes");
    let value = match &node {
        Node::Leaf { value, .. } => Some(*value),
        Node::Branch { value, .. } => *value,
        Node::Extension { .. } => None,
    };
    for (_, c) in node.children() {
        match c {
            ChildRef::Empty => {}
            ChildRef::Hash(h) => push_unique(children, ItemKey::node(h)),
            ChildRef::Inline(raw) => node_refs(raw, account, children, leaf_refs),
        }
    }
    if let (true, Some(v)) = (account, value) {
        let acc = Account::decode(v).expect("an account leaf of a real state decodes");
        if acc.storage_root != EMPTY_ROOT {
            push_unique(leaf_refs, ItemKey::node(acc.storage_root));
        }
        if acc.code_hash != EMPTY_CODE_HASH {
            push_unique(leaf_refs, ItemKey::code(acc.code_hash));
        }
    }
}

fn push_unique(out: &mut Vec<ItemKey>, key: ItemKey) {
    if !out.contains(&key) {
        out.push(key);
    }
}

/// Reads the fuzz input a byte at a time (zeros once it runs out).
#[derive(Debug)]
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    /// Over `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Input { data }
    }
    /// True when no byte is left.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
    /// The next byte, 0 when exhausted.
    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }
    /// Up to `n` next bytes.
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }
}

/// What a scheduler run saw (for the property tests' sanity checks).
#[derive(Debug, Default, Clone, Copy)]
pub struct RunStats {
    /// Blobs taken.
    pub accepted: usize,
    /// Blobs refused as not requested.
    pub not_requested: usize,
    /// Blobs refused as already processed.
    pub duplicates: usize,
    /// Items written to the store.
    pub written: usize,
    /// Scheduler restarts (simulated crashes).
    pub restarts: usize,
    /// Items asked for again although already stored (only without store lookups).
    pub refetched: usize,
}

/// One sync of a [`RealState`] by a [`Scheduler`], driven by fuzz bytes, with every
/// invariant checked at every step:
/// * `process` never panics; it takes a blob only if its keccak256 is a key being fetched
///   (queued or in flight), and then the blob is exactly the state's item and no key of
///   that hash is wanted any more; it refuses nothing that is wanted;
/// * a blob refused as `NotRequested` matched nothing wanted; a real node is never refused
///   as invalid;
/// * `missing` hands out only keys of the state;
/// * every batch item hashes to its key, is the state's item, and is written only after
///   every one of its dependencies is in the store ("present" means "complete");
/// * once every requested real blob is delivered, the sync completes with exactly the
///   state's node and code set in the store, and nothing left pending.
#[derive(Debug)]
pub struct SchedulerRun<'s> {
    state: &'s RealState,
    sched: Scheduler,
    check_nodes: bool,
    store: FastMap<ItemKey, Vec<u8>>,
    /// A taken batch being written (as the driver does, in the background: the scheduler
    /// goes on while its items are not in the store yet).
    writing: Option<Vec<(ItemKey, Vec<u8>)>>,
    handed_out: FastSet<ItemKey>,
    /// Counters.
    pub stats: RunStats,
}

impl<'s> SchedulerRun<'s> {
    /// A fresh sync of `state` on an empty store.
    pub fn new(state: &'s RealState, check_nodes: bool) -> Self {
        SchedulerRun {
            state,
            sched: Scheduler::new(state.root, check_nodes),
            check_nodes,
            store: FastMap::default(),
            writing: None,
            handed_out: FastSet::default(),
            stats: RunStats::default(),
        }
    }

    /// Runs the operations encoded in `input`, then completes the sync and checks the
    /// result.
    pub fn run(mut self, input: &mut Input<'_>) -> RunStats {
        let n = self.state.items.len().max(1);
        while !input.is_empty() {
            match input.byte() % 12 {
                0 => {
                    let max = usize::from(input.byte());
                    self.resolve_checks(max);
                }
                1 | 2 => {
                    // A real blob (perhaps not asked for yet, or already delivered).
                    let i = usize::from(input.byte()) % n;
                    if let Some((key, blob)) = self.state.items.get(i) {
                        self.feed_hashed(key.hash, blob.clone());
                    }
                }
                3 => {
                    // Arbitrary bytes.
                    let len = usize::from(input.byte());
                    let blob = input.take(len).to_vec();
                    self.feed(blob);
                }
                4 => {
                    // A real blob, damaged: one byte changed, cut short or extended.
                    let i = usize::from(input.byte()) % n;
                    let (how, at, with) = (input.byte(), input.byte(), input.byte());
                    if let Some((_, blob)) = self.state.items.get(i) {
                        let mut blob = blob.clone();
                        let at = usize::from(at) % blob.len().max(1);
                        match how % 4 {
                            0 if !blob.is_empty() => blob[at] ^= with | 1,
                            1 => blob.truncate(at),
                            2 => blob.push(with),
                            _ => blob.insert(at.min(blob.len()), with),
                        }
                        self.feed(blob);
                    }
                }
                5 | 6 => {
                    // Fetch what the scheduler asks for, then deliver some of it.
                    let max = usize::from(input.byte() % 16);
                    let keys = self.missing(max);
                    let mask = input.byte();
                    for (i, key) in keys.iter().enumerate() {
                        if mask & (1 << (i % 8)) != 0 {
                            let blob = self.state.get(key).expect("checked in missing").to_vec();
                            self.feed_hashed(key.hash, blob);
                        }
                    }
                }
                7 => {
                    let keys: Vec<ItemKey> = self.handed_out.iter().copied().collect();
                    let skip = usize::from(input.byte());
                    let keys: Vec<ItemKey> = keys.into_iter().skip(skip % 4).collect();
                    self.sched.retry(&keys);
                }
                8 | 9 => self.take_batch(),
                10 => self.write_done(),
                _ => {
                    if input.byte().is_multiple_of(4) {
                        // Crash and resume: the unflushed batch and the frontier are lost,
                        // the store is kept, and the new scheduler checks the store.
                        self.stats.restarts += 1;
                        self.sched = Scheduler::new(self.state.root, true);
                        self.check_nodes = true;
                        self.handed_out.clear();
                        // A write in progress is lost or done, all or nothing.
                        if input.byte().is_multiple_of(2) {
                            self.writing = None;
                        } else if let Some(items) = self.writing.take() {
                            self.store.extend(items);
                        }
                    }
                }
            }
        }
        self.finish()
    }

    /// Answers up to `max` store lookups from the store.
    pub fn resolve_checks(&mut self, max: usize) {
        for key in self.sched.pending_checks(max) {
            let present = self.store.contains_key(&key);
            self.sched.resolve_check(key, present);
        }
    }

    /// Up to `max` keys to fetch; each must be an item of the state.
    pub fn missing(&mut self, max: usize) -> Vec<ItemKey> {
        let keys = self.sched.missing(max);
        for key in &keys {
            assert!(
                self.state.get(key).is_some(),
                "scheduler asked for {key:?}, not in the state"
            );
            if self.store.contains_key(key) {
                // Without store lookups (`check_nodes = false`) a subtrie shared by two
                // parents is fetched again once its first copy was flushed: wasteful,
                // harmless (content-addressed). With lookups it must not happen.
                assert!(
                    !self.check_nodes,
                    "scheduler asked for {key:?}, already stored (check_nodes = true)"
                );
                self.stats.refetched += 1;
            }
            self.handed_out.insert(*key);
        }
        keys
    }

    /// Delivers any blob through `Scheduler::process` (which hashes it) and checks the
    /// answer against the blob's real keccak256.
    pub fn feed(&mut self, blob: Vec<u8>) {
        let hash = keccak256(&blob);
        self.deliver(hash, blob, false);
    }

    /// Delivers a real item through `Scheduler::process_hashed` with its key's hash, as the
    /// driver does after hashing (the state's items hash to their keys: checked in
    /// `RealState::new`). Saves the fuzzer the hashing of every real delivery.
    fn feed_hashed(&mut self, hash: H256, blob: Vec<u8>) {
        self.deliver(hash, blob, true);
    }

    fn deliver(&mut self, hash: H256, blob: Vec<u8>, prehashed: bool) {
        let wanted: Vec<ItemKey> = [ItemKey::node(hash), ItemKey::code(hash)]
            .into_iter()
            .filter(|k| self.sched.wants(k))
            .collect();
        let result = if prehashed {
            self.sched.process_hashed(hash, blob.clone())
        } else {
            self.sched.process(blob.clone())
        };
        match result {
            Ok(key) => {
                assert!(
                    wanted.contains(&key),
                    "took {key:?}, which was not being fetched"
                );
                assert_eq!(key.hash, hash);
                assert_eq!(
                    self.state.get(&key),
                    Some(blob.as_slice()),
                    "took bytes that are not the state's {key:?}"
                );
                // The same bytes wanted as a node and as a code are taken for both.
                for k in &wanted {
                    assert!(
                        !self.sched.wants(k),
                        "{k:?} still wanted after its bytes were taken"
                    );
                }
                self.stats.accepted += 1;
            }
            Err(ProcessError::NotRequested(h)) => {
                assert_eq!(h, hash);
                assert!(
                    wanted.is_empty(),
                    "refused {wanted:?} as not requested while fetching it"
                );
                self.stats.not_requested += 1;
            }
            Err(ProcessError::AlreadyProcessed(h)) => {
                assert_eq!(h, hash);
                assert!(
                    wanted.is_empty(),
                    "refused {wanted:?} as already processed while fetching it"
                );
                self.stats.duplicates += 1;
            }
            Err(e) => panic!("a blob of the state was refused: {e} (wanted {wanted:?})"),
        }
    }

    /// Takes the batch for writing (unless a write is in progress: one at a time, as the
    /// driver), checking each item: the state's, after all its dependencies (in the store
    /// or earlier in the batch).
    pub fn take_batch(&mut self) {
        if self.writing.is_some() {
            return;
        }
        let batch = self.sched.take_batch();
        assert_eq!(
            batch.bytes,
            batch.items.iter().map(|(_, d)| d.len()).sum::<usize>()
        );
        let mut earlier: FastSet<ItemKey> = FastSet::default();
        for (key, data) in &batch.items {
            // The state's items hash to their keys (checked in RealState::new), so equal
            // bytes also mean the item hashes to its key.
            assert_eq!(
                self.state.get(key),
                Some(data.as_slice()),
                "batch item {key:?} is not the state's"
            );
            for dep in self.state.deps(key) {
                assert!(
                    self.store.contains_key(dep) || earlier.contains(dep),
                    "{key:?} written before its dependency {dep:?}"
                );
            }
            earlier.insert(*key);
        }
        self.stats.written += batch.items.len();
        self.writing = Some(batch.items);
    }

    /// The write in progress is durable: into the store, and the scheduler is told.
    pub fn write_done(&mut self) {
        if let Some(items) = self.writing.take() {
            self.store.extend(items);
            self.sched.batch_written();
        }
    }

    /// Delivers every missing item until the sync completes, then checks the store holds
    /// exactly the state.
    pub fn finish(mut self) -> RunStats {
        let limit = 4 * self.state.items.len() + 16;
        for _ in 0..limit {
            let keys: Vec<ItemKey> = self.handed_out.iter().copied().collect();
            self.sched.retry(&keys);
            self.resolve_checks(usize::MAX);
            for key in self.missing(usize::MAX) {
                let blob = self.state.get(&key).expect("checked in missing").to_vec();
                self.feed_hashed(key.hash, blob);
            }
            self.write_done();
            self.take_batch();
            self.write_done();
            if self.sched.is_done() && self.sched.pending() == 0 {
                break;
            }
        }
        assert!(
            self.sched.is_done(),
            "sync not done with {} pending",
            self.sched.pending()
        );
        assert_eq!(self.sched.pending(), 0);
        assert_eq!(self.sched.live_entries(), 0);
        let stored: BTreeSet<ItemKey> = self.store.keys().copied().collect();
        assert_eq!(
            stored,
            self.state.keys(),
            "the store does not hold exactly the state"
        );
        self.stats
    }
}

/// A small state made from fuzz bytes: storage tries and an account trie over short raw
/// keys (so embedded nodes, extensions, branch values and shared subtries all occur),
/// accounts sharing storage roots and codes.
pub fn generated_state(input: &mut Input<'_>) -> RealState {
    let mut nodes = NodeMap::new();
    let mut storage_roots = vec![EMPTY_ROOT];
    for _ in 0..input.byte() % 4 {
        let mut pairs = Vec::new();
        for _ in 0..input.byte() % 10 {
            let klen = usize::from(input.byte() % 3) + 1;
            let key = input.take(klen).to_vec();
            // Storage values are RLP of at most 32 bytes: never an account's encoding.
            let vlen = usize::from(input.byte() % 34);
            let value = input.take(vlen).to_vec();
            pairs.push((key, value));
        }
        storage_roots.push(build_trie(pairs, &mut nodes));
    }
    let mut codes: HashMap<H256, Vec<u8>> = HashMap::new();
    let mut code_hashes = vec![EMPTY_CODE_HASH];
    for _ in 0..input.byte() % 3 {
        let len = usize::from(input.byte() % 48) + 1;
        let code = input.take(len).to_vec();
        let h = keccak256(&code);
        codes.insert(h, code);
        code_hashes.push(h);
    }
    // Sometimes a code that is byte for byte a storage trie's root node (anyone can deploy
    // such a contract): the same bytes are then wanted as a node and as a code.
    if input.byte().is_multiple_of(4) {
        if let Some(&root) = storage_roots.iter().find(|r| nodes.contains_key(r)) {
            codes.insert(root, nodes[&root].clone());
            code_hashes.push(root);
        }
    }
    let mut accounts = Vec::new();
    for _ in 0..input.byte() % 8 + 1 {
        let klen = usize::from(input.byte() % 3) + 1;
        let key = input.take(klen).to_vec();
        let (nonce, bal, s, c) = (input.byte(), input.byte(), input.byte(), input.byte());
        let mut balance = [0u8; 32];
        balance[31] = bal;
        let account = Account {
            nonce: u64::from(nonce),
            balance,
            storage_root: storage_roots[usize::from(s) % storage_roots.len()],
            code_hash: code_hashes[usize::from(c) % code_hashes.len()],
        };
        accounts.push((key, account));
    }
    let pairs = accounts
        .iter()
        .map(|(k, a)| (k.clone(), a.encode()))
        .collect();
    let root = build_trie(pairs, &mut nodes);
    // Later duplicates of a key overwrite earlier ones, and unused storage tries and codes
    // are dropped: keep exactly what is reachable from the root.
    RealState::reachable(root, &nodes, &codes)
}

impl RealState {
    /// As [`RealState::new`], keeping only the items reachable from `root`.
    pub fn reachable(
        root: H256,
        nodes: &HashMap<H256, Vec<u8>>,
        codes: &HashMap<H256, Vec<u8>>,
    ) -> Self {
        let get = |k: &ItemKey| -> Option<&[u8]> {
            match k.kind {
                Kind::Node => nodes.get(&k.hash).map(Vec::as_slice),
                Kind::Code => codes.get(&k.hash).map(Vec::as_slice),
            }
        };
        let deps = walk(root, &get);
        let mut items: Vec<(ItemKey, Vec<u8>)> = deps
            .keys()
            .map(|k| (*k, get(k).expect("walked").to_vec()))
            .collect();
        items.sort();
        let index = items
            .iter()
            .enumerate()
            .map(|(i, (k, _))| (*k, i))
            .collect();
        RealState {
            root,
            items,
            index,
            deps,
        }
    }
}
