//! The trie-sync scheduler (go-ethereum's `trie.Sync` + the account layer of
//! `core/state/sync.go`): decides what to fetch, verifies what arrives and releases a node
//! for writing only once its whole subtree is complete. It does no I/O: the driver asks
//! the store about [`Scheduler::pending_checks`], fetches [`Scheduler::missing`] from peers,
//! feeds blobs to [`Scheduler::process`] and writes [`Scheduler::take_batch`].
//!
//! Memory holds only the frontier: requests still waiting for data or for children, plus
//! the unflushed batch. Items already written are asked of the store, not remembered, so
//! memory does not grow with the size of the state; on a fresh store a fixed-size bloom
//! filter of written storage-trie nodes says which ones are worth the lookup.

use crate::hash::{keccak256, EMPTY_CODE_HASH, EMPTY_ROOT, H256};
use crate::nodes::{decode_node, ChildRef, Node, NodeError};
use crate::packed::bloom::Bloom;
use crate::packed::codec::raw_key;
use crate::state::{Account, AccountError};
use crate::store::{Batch, ItemKey, Kind};
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};

/// Nibbles of a path that feed the priority (as geth: 14 nibbles under an 8-bit depth).
const PRIO_NIBBLES: usize = 14;
/// Depth given to code: above every trie node, since a code completes its account at once.
const CODE_DEPTH: u16 = 255;

/// Which trie a node belongs to: account-trie leaves carry accounts, storage leaves do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trie {
    /// The account trie.
    Account,
    /// A storage trie (and code, which has no children).
    Storage,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Not known whether the store has it: waiting for the driver to ask.
    Checking,
    /// Known missing, in the fetch queue.
    Queued,
    /// Handed out by `missing`, not yet delivered.
    Fetching,
    /// Delivered and verified; waiting for `deps` children to complete.
    Waiting,
}

/// One item of the frontier.
#[derive(Debug)]
struct Request {
    state: State,
    trie: Trie,
    /// Nibbles from the account-trie root (storage tries continue their account's path).
    depth: u16,
    /// The first nibbles of that path, for the priority.
    path: Vec<u8>,
    /// Items that referenced this one and wait for it.
    parents: Vec<ItemKey>,
    /// Children not yet complete.
    deps: u32,
    /// The verified bytes, once delivered.
    data: Option<Vec<u8>>,
}

impl Request {
    fn priority(&self) -> u64 {
        // Deeper first, then left to right: subtries finish early and the frontier stays
        // narrow, so memory is bounded by the trie's depth, not its size.
        let mut prio = u64::from(self.depth.min(255)) << 56;
        for (i, &n) in self.path.iter().take(PRIO_NIBBLES).enumerate() {
            prio |= u64::from(15 - n) << (52 - 4 * i);
        }
        prio
    }
}

/// Why a delivered blob was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProcessError {
    /// Its hash is not anything being synced (corrupt, stale or unasked-for data).
    #[error("blob {0} was not requested")]
    NotRequested(H256),
    /// Its hash was asked for and already delivered.
    #[error("blob {0} already processed")]
    AlreadyProcessed(H256),
    /// It hashes to a requested node but is not a valid node: the trie itself is invalid.
    #[error("node {hash} is invalid: {error}")]
    InvalidNode {
        /// The node's hash.
        hash: H256,
        /// What is wrong with it.
        error: NodeError,
    },
    /// An account-trie leaf whose value is not an account.
    #[error("account leaf in node {hash} is invalid: {error}")]
    InvalidAccount {
        /// The node holding the leaf.
        hash: H256,
        /// What is wrong with it.
        error: AccountError,
    },
}

/// Counters kept by the scheduler.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SchedulerStats {
    /// Blobs delivered again after they were processed.
    pub duplicates: u64,
    /// Blobs whose hash matched nothing requested.
    pub not_requested: u64,
    /// References to an item already requested (shared subtries, storage, code).
    pub shared_references: u64,
    /// Items found already in the store (resume).
    pub found_in_store: u64,
}

/// The scheduler of one sync of one root.
#[derive(Debug)]
pub struct Scheduler {
    root: H256,
    requests: HashMap<ItemKey, Request>,
    to_check: VecDeque<ItemKey>,
    queue: BinaryHeap<(u64, ItemKey)>,
    batch: Batch,
    /// Keys of `batch`, for dedup before it is flushed.
    batch_keys: HashSet<ItemKey>,
    /// Keys handed to the driver for writing and not yet confirmed.
    flushing: HashSet<ItemKey>,
    /// `None`: every trie node is looked up in the store. `Some` (a store known to hold
    /// nothing of this state, saving a lookup per node): the storage-trie nodes completed by
    /// this run. Storage tries share subtries, and a shared node written (and forgotten)
    /// already must be looked up, not fetched again; a hit means "maybe written", so it is
    /// looked up in the store. Fixed size (~250 KiB): past ~200,000 nodes more hits only
    /// cost lookups.
    written: Option<Bloom>,
    done: bool,
    stats: SchedulerStats,
}

impl Scheduler {
    /// A scheduler for `root`. `check_nodes = false` skips the store lookup for trie
    /// nodes below the root (use it only when the store is known to be empty); storage
    /// roots and code are always looked up since accounts share them, and storage-trie
    /// nodes whenever this run may have written them already.
    pub fn new(root: H256, check_nodes: bool) -> Self {
        let mut s = Scheduler {
            root,
            requests: HashMap::new(),
            to_check: VecDeque::new(),
            queue: BinaryHeap::new(),
            batch: Batch::default(),
            batch_keys: HashSet::new(),
            flushing: HashSet::new(),
            written: (!check_nodes).then(|| Bloom::with_capacity(200_000, 10)),
            done: root == EMPTY_ROOT,
            stats: SchedulerStats::default(),
        };
        if !s.done {
            let key = ItemKey::node(root);
            s.requests
                .insert(key, new_request(State::Checking, Trie::Account, 0, vec![]));
            s.to_check.push_back(key);
        }
        s
    }

    /// The root being synced.
    pub fn root(&self) -> H256 {
        self.root
    }

    /// True once the root and everything under it is complete (written or in the batch).
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Items in the frontier (checking, queued, in flight or waiting for children): the
    /// scheduler's live memory, apart from the unflushed batch.
    pub fn pending(&self) -> usize {
        self.requests.len()
    }

    /// Live entries of every structure, for memory-bound tests.
    pub fn live_entries(&self) -> usize {
        self.requests.len()
            + self.queue.len()
            + self.to_check.len()
            + self.batch.items.len()
            + self.flushing.len()
    }

    /// Items whose presence in the store the driver must look up, then report through
    /// [`Scheduler::resolve_check`].
    pub fn pending_checks(&mut self, max: usize) -> Vec<ItemKey> {
        let n = max.min(self.to_check.len());
        self.to_check.drain(..n).collect()
    }

    /// True while some items wait for a store lookup.
    pub fn has_pending_checks(&self) -> bool {
        !self.to_check.is_empty()
    }

    /// Reports whether the store holds `key`. Present means complete (the store invariant),
    /// so it is never fetched; absent queues it for fetching.
    pub fn resolve_check(&mut self, key: ItemKey, present: bool) {
        let Some(req) = self.requests.get_mut(&key) else {
            return;
        };
        if req.state != State::Checking {
            return;
        }
        if present {
            self.stats.found_in_store += 1;
            self.complete(key, false);
        } else {
            req.state = State::Queued;
            let prio = req.priority();
            self.queue.push((prio, key));
        }
    }

    /// Up to `max` items to fetch, highest priority first; they stay in flight until
    /// delivered or handed back with [`Scheduler::retry`].
    pub fn missing(&mut self, max: usize) -> Vec<ItemKey> {
        let mut out = Vec::with_capacity(max.min(self.queue.len()));
        while out.len() < max {
            let Some((_, key)) = self.queue.pop() else {
                break;
            };
            if let Some(req) = self.requests.get_mut(&key) {
                if req.state == State::Queued {
                    req.state = State::Fetching;
                    out.push(key);
                }
            }
        }
        out
    }

    /// Puts in-flight items back in the queue (undelivered, timed out, peer gone).
    pub fn retry(&mut self, keys: &[ItemKey]) {
        for key in keys {
            if let Some(req) = self.requests.get_mut(key) {
                if req.state == State::Fetching {
                    req.state = State::Queued;
                    let prio = req.priority();
                    self.queue.push((prio, *key));
                }
            }
        }
    }

    /// Items in the fetch queue or in flight.
    pub fn fetchable(&self) -> usize {
        self.requests
            .values()
            .filter(|r| matches!(r.state, State::Queued | State::Fetching))
            .count()
    }

    /// Takes a delivered blob: hashes it and keeps it only if the hash is a requested item.
    /// Returns the item it completed or advanced.
    pub fn process(&mut self, blob: Vec<u8>) -> Result<ItemKey, ProcessError> {
        let hash = keccak256(&blob);
        self.process_hashed(hash, blob)
    }

    /// As [`Scheduler::process`], with `hash` already computed by the caller as
    /// keccak256(blob): callers that hash must pass exactly that.
    pub fn process_hashed(&mut self, hash: H256, blob: Vec<u8>) -> Result<ItemKey, ProcessError> {
        let keys = [ItemKey::node(hash), ItemKey::code(hash)];
        // The same bytes can be wanted as a node and as a code (a contract whose code is a
        // node's encoding): both requests take them.
        let wanted: Vec<ItemKey> = keys.iter().copied().filter(|k| self.wants(k)).collect();
        match wanted.as_slice() {
            [] => {
                let seen = keys.iter().any(|k| {
                    self.requests
                        .get(k)
                        .is_some_and(|r| r.state == State::Waiting)
                        || self.batch_keys.contains(k)
                        || self.flushing.contains(k)
                });
                if seen {
                    return self.duplicate(hash);
                }
                self.stats.not_requested += 1;
                Err(ProcessError::NotRequested(hash))
            }
            [key] => self.deliver(*key, blob).map(|()| *key),
            [node, code] => {
                self.deliver(*code, blob.clone())?;
                self.deliver(*node, blob).map(|()| *node)
            }
            _ => unreachable!("two keys at most"),
        }
    }

    /// Takes verified bytes for a wanted item: schedules its children, or completes it.
    fn deliver(&mut self, key: ItemKey, blob: Vec<u8>) -> Result<(), ProcessError> {
        if key.kind == Kind::Code {
            self.requests.get_mut(&key).expect("present").data = Some(blob);
            self.complete(key, true);
            return Ok(());
        }
        let (trie, depth, path) = {
            let r = &self.requests[&key];
            (r.trie, r.depth, r.path.clone())
        };
        let mut children = Vec::new();
        collect_children(&blob, trie, depth, &path, &mut children)
            .map_err(|e| e.with_hash(key.hash))?;
        let mut deps = 0;
        for child in children {
            if self.link_child(key, child) {
                deps += 1;
            }
        }
        let req = self.requests.get_mut(&key).expect("present");
        req.data = Some(blob);
        req.deps = deps;
        req.state = State::Waiting;
        if deps == 0 {
            self.complete(key, true);
        }
        Ok(())
    }

    fn duplicate(&mut self, hash: H256) -> Result<ItemKey, ProcessError> {
        self.stats.duplicates += 1;
        Err(ProcessError::AlreadyProcessed(hash))
    }

    /// Makes `child` a dependency of `parent`; false if it is already complete.
    fn link_child(&mut self, parent: ItemKey, child: Child) -> bool {
        if let Some(existing) = self.requests.get_mut(&child.key) {
            // Shared subtrie, storage or code: fetched once, every parent waits for it.
            self.stats.shared_references += 1;
            if !existing.parents.contains(&parent) {
                existing.parents.push(parent);
                return true;
            }
            // The same parent referencing the same child twice waits for it once.
            return false;
        }
        if self.batch_keys.contains(&child.key) || self.flushing.contains(&child.key) {
            self.stats.shared_references += 1;
            return false;
        }
        let check = match &self.written {
            None => true,
            Some(written) => {
                child.key.kind == Kind::Code
                    || child.trie_root
                    || (child.trie == Trie::Storage && written.may_contain(&raw_key(&child.key)))
            }
        };
        let state = if check {
            State::Checking
        } else {
            State::Queued
        };
        let mut req = new_request(state, child.trie, child.depth, child.path);
        req.parents.push(parent);
        let prio = req.priority();
        self.requests.insert(child.key, req);
        if check {
            self.to_check.push_back(child.key);
        } else {
            self.queue.push((prio, child.key));
        }
        true
    }

    /// Marks `key` complete: its data (if `with_data`) joins the batch and its parents are
    /// told, completing them in turn when it was their last missing child.
    fn complete(&mut self, key: ItemKey, with_data: bool) {
        let mut stack = vec![(key, with_data)];
        while let Some((key, with_data)) = stack.pop() {
            let Some(req) = self.requests.remove(&key) else {
                continue;
            };
            if with_data {
                if req.trie == Trie::Storage && key.kind == Kind::Node {
                    if let Some(written) = &mut self.written {
                        written.insert(&raw_key(&key));
                    }
                }
                let data = req.data.expect("completed with data");
                self.batch_keys.insert(key);
                self.batch.push(key, data);
            }
            if key.kind == Kind::Node && key.hash == self.root && req.depth == 0 {
                self.done = true;
            }
            for parent in req.parents {
                let p = self
                    .requests
                    .get_mut(&parent)
                    .expect("parent waits for its children");
                p.deps -= 1;
                if p.deps == 0 && p.state == State::Waiting {
                    stack.push((parent, true));
                }
            }
        }
    }

    /// Bytes of complete items not yet handed out for writing.
    pub fn batch_bytes(&self) -> usize {
        self.batch.bytes
    }

    /// Hands the complete items to the driver for one atomic write; confirm with
    /// [`Scheduler::batch_written`] once it is durable.
    pub fn take_batch(&mut self) -> Batch {
        self.flushing.extend(self.batch_keys.drain());
        std::mem::take(&mut self.batch)
    }

    /// The last taken batch is in the store: forget its keys (the store answers for them).
    pub fn batch_written(&mut self) {
        self.flushing.clear();
    }

    /// Nodes verified and waiting for children: the work a stop would lose.
    pub fn waiting(&self) -> Vec<Vec<u8>> {
        self.requests
            .values()
            .filter_map(|r| r.data.clone())
            .collect()
    }

    /// Whether `key` is queued or in flight (wanted from a peer now).
    pub fn wants(&self, key: &ItemKey) -> bool {
        self.requests
            .get(key)
            .is_some_and(|r| matches!(r.state, State::Queued | State::Fetching))
    }

    /// Counters.
    pub fn stats(&self) -> SchedulerStats {
        self.stats
    }
}

fn new_request(state: State, trie: Trie, depth: u16, path: Vec<u8>) -> Request {
    Request {
        state,
        trie,
        depth,
        path,
        parents: Vec::new(),
        deps: 0,
        data: None,
    }
}

/// A reference found in a delivered node.
#[derive(Debug)]
pub(crate) struct Child {
    pub(crate) key: ItemKey,
    pub(crate) trie: Trie,
    depth: u16,
    path: Vec<u8>,
    /// The root of a storage trie (always looked up: accounts share them).
    trie_root: bool,
}

/// Errors of `collect_children` before the node's hash is attached.
#[derive(Debug)]
pub(crate) enum ChildError {
    Node(NodeError),
    Account(AccountError),
}

impl ChildError {
    pub(crate) fn with_hash(self, hash: H256) -> ProcessError {
        match self {
            ChildError::Node(error) => ProcessError::InvalidNode { hash, error },
            ChildError::Account(error) => ProcessError::InvalidAccount { hash, error },
        }
    }
}

/// Every hash reference in a node, including those inside embedded (inline) children, and
/// for account-trie leaves the account's storage root and code.
pub(crate) fn collect_children(
    encoded: &[u8],
    trie: Trie,
    depth: u16,
    path: &[u8],
    out: &mut Vec<Child>,
) -> Result<(), ChildError> {
    let node = decode_node(encoded).map_err(ChildError::Node)?;
    let extend = |path: &[u8], more: &[u8]| -> Vec<u8> {
        path.iter()
            .chain(more)
            .take(PRIO_NIBBLES)
            .copied()
            .collect()
    };
    let visit_child = |nibbles: &[u8], child: ChildRef<'_>, out: &mut Vec<Child>| {
        let child_depth = depth.saturating_add(nibbles.len() as u16);
        let child_path = extend(path, nibbles);
        match child {
            ChildRef::Empty => Ok(()),
            ChildRef::Hash(h) => {
                out.push(Child {
                    key: ItemKey::node(h),
                    trie,
                    depth: child_depth,
                    path: child_path,
                    trie_root: false,
                });
                Ok(())
            }
            ChildRef::Inline(raw) => collect_children(raw, trie, child_depth, &child_path, out),
        }
    };
    match &node {
        Node::Branch { children, value } => {
            for (i, c) in children.iter().enumerate() {
                visit_child(&[i as u8], *c, out)?;
            }
            if let Some(v) = value {
                leaf_value(v, trie, depth, path, out)?;
            }
        }
        Node::Extension { path: ext, child } => visit_child(ext, *child, out)?,
        Node::Leaf { path: rest, value } => {
            let leaf_depth = depth.saturating_add(rest.len() as u16);
            leaf_value(value, trie, leaf_depth, &extend(path, rest), out)?;
        }
    }
    Ok(())
}

/// An account-trie leaf schedules its storage trie and code as its dependencies.
fn leaf_value(
    value: &[u8],
    trie: Trie,
    depth: u16,
    path: &[u8],
    out: &mut Vec<Child>,
) -> Result<(), ChildError> {
    if trie != Trie::Account {
        return Ok(());
    }
    let account = Account::decode(value).map_err(ChildError::Account)?;
    if account.storage_root != EMPTY_ROOT {
        out.push(Child {
            key: ItemKey::node(account.storage_root),
            trie: Trie::Storage,
            depth,
            path: path.to_vec(),
            trie_root: true,
        });
    }
    if account.code_hash != EMPTY_CODE_HASH {
        out.push(Child {
            key: ItemKey::code(account.code_hash),
            trie: Trie::Storage,
            depth: CODE_DEPTH,
            path: path.to_vec(),
            trie_root: true,
        });
    }
    Ok(())
}
