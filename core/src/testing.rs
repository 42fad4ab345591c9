//! Native stand-ins for tests, benchmarks and tools: a thread-backed clock and in-memory
//! peers that serve a built state, honestly or with one of the faults real peers show.

use crate::hash::H256;
use crate::peer::{Clock, Peer, PeerError};
use crate::state::BuiltState;
use crate::store::{ItemKey, Kind};
use futures::future::{self, FutureExt, LocalBoxFuture};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

#[derive(Default)]
struct TimerQueue {
    /// Deadline → (timer id, waker).
    timers: BTreeMap<(Instant, u64), Waker>,
    next_id: u64,
}

/// A clock whose sleeps are woken by one background thread: works under any executor.
#[derive(Clone)]
pub struct ThreadClock {
    start: Instant,
    shared: Arc<(Mutex<TimerQueue>, Condvar)>,
}

impl std::fmt::Debug for ThreadClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ThreadClock")
    }
}

impl Default for ThreadClock {
    fn default() -> Self {
        Self::new()
    }
}

impl ThreadClock {
    /// Starts the timer thread (it lives as long as any clone of the clock).
    pub fn new() -> Self {
        let shared: Arc<(Mutex<TimerQueue>, Condvar)> = Arc::default();
        let weak = Arc::downgrade(&shared);
        std::thread::spawn(move || loop {
            let Some(shared) = weak.upgrade() else { return };
            let (lock, cv) = &*shared;
            let mut q = lock.lock().expect("timer lock");
            let now = Instant::now();
            while let Some((&(when, id), _)) = q.timers.iter().next() {
                if when > now {
                    break;
                }
                q.timers.remove(&(when, id)).expect("present").wake();
            }
            let wait = q
                .timers
                .keys()
                .next()
                .map_or(Duration::from_millis(50), |(w, _)| {
                    w.saturating_duration_since(now)
                        .min(Duration::from_millis(50))
                });
            let _unused = cv.wait_timeout(q, wait).expect("timer lock");
        });
        ThreadClock {
            start: Instant::now(),
            shared,
        }
    }
}

struct Sleep {
    deadline: Instant,
    id: Option<u64>,
    shared: Arc<(Mutex<TimerQueue>, Condvar)>,
}

impl Future for Sleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.deadline {
            return Poll::Ready(());
        }
        let (lock, cv) = &*self.shared.clone();
        let mut q = lock.lock().expect("timer lock");
        let id = match self.id {
            Some(id) => id,
            None => {
                q.next_id += 1;
                q.next_id
            }
        };
        self.id = Some(id);
        q.timers.insert((self.deadline, id), cx.waker().clone());
        cv.notify_one();
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            if let Ok(mut q) = self.shared.0.lock() {
                q.timers.remove(&(self.deadline, id));
            }
        }
    }
}

impl Clock for ThreadClock {
    fn now_ms(&self) -> f64 {
        self.start.elapsed().as_secs_f64() * 1000.0
    }
    fn sleep(&self, d: Duration) -> LocalBoxFuture<'static, ()> {
        Sleep {
            deadline: Instant::now() + d,
            id: None,
            shared: self.shared.clone(),
        }
        .boxed_local()
    }
}

/// How an in-memory peer misbehaves.
#[derive(Clone)]
#[allow(missing_debug_implementations)]
pub enum Behaviour {
    /// Answers everything it has.
    Honest,
    /// Never answers.
    Stall,
    /// Every request fails as a dropped connection.
    Drop,
    /// Answers random bytes instead of blobs.
    Garbage,
    /// Flips a byte in every blob.
    Corrupt,
    /// Leaves out every `n`th asked item, counting from 1 (a partial answer).
    OmitEvery(usize),
    /// Answers nothing (an empty list).
    Empty,
    /// Adds these blobs, asked or not, to every answer.
    Unrequested(Vec<Vec<u8>>),
    /// Repeats every blob this many times.
    Duplicate(usize),
    /// Answers after this delay (a peer limited by its latency).
    Delay(Duration, Rc<dyn Clock>),
    /// Answers after this delay per item asked (a peer limited by its bandwidth).
    DelayPerItem(Duration, Rc<dyn Clock>),
}

/// Serves a built state from memory and counts what it was asked for.
#[derive(Clone)]
pub struct MemoryPeer {
    id: String,
    nodes: Rc<HashMap<H256, Vec<u8>>>,
    codes: Rc<HashMap<H256, Vec<u8>>>,
    behaviour: Behaviour,
    /// Items asked of this peer, by key (shared by clones).
    pub asked: Rc<RefCell<HashMap<ItemKey, u32>>>,
    /// Requests received.
    pub requests: Rc<Cell<u64>>,
}

impl std::fmt::Debug for MemoryPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryPeer").field("id", &self.id).finish()
    }
}

impl MemoryPeer {
    /// A peer with `behaviour` serving `state`.
    pub fn new(id: &str, state: &BuiltState, behaviour: Behaviour) -> Self {
        MemoryPeer {
            id: id.to_string(),
            nodes: Rc::new(state.nodes.clone()),
            codes: Rc::new(state.codes.clone()),
            behaviour,
            asked: Rc::default(),
            requests: Rc::default(),
        }
    }

    /// A peer sharing another's data (cheap), with its own behaviour and counters.
    pub fn sibling(&self, id: &str, behaviour: Behaviour) -> Self {
        MemoryPeer {
            id: id.to_string(),
            nodes: self.nodes.clone(),
            codes: self.codes.clone(),
            behaviour,
            asked: Rc::default(),
            requests: Rc::default(),
        }
    }

    /// Total items asked (counting repeats).
    pub fn items_asked(&self) -> u64 {
        self.asked.borrow().values().map(|&n| u64::from(n)).sum()
    }

    fn lookup(&self, key: &ItemKey) -> Option<Vec<u8>> {
        match key.kind {
            Kind::Node => self.nodes.get(&key.hash).cloned(),
            Kind::Code => self.codes.get(&key.hash).cloned(),
        }
    }
}

impl Peer for MemoryPeer {
    fn id(&self) -> &str {
        &self.id
    }

    fn fetch(
        &self,
        keys: Vec<ItemKey>,
    ) -> LocalBoxFuture<'static, Result<Vec<Vec<u8>>, PeerError>> {
        self.requests.set(self.requests.get() + 1);
        {
            let mut asked = self.asked.borrow_mut();
            for k in &keys {
                *asked.entry(*k).or_default() += 1;
            }
        }
        let mut blobs: Vec<Vec<u8>> = keys.iter().filter_map(|k| self.lookup(k)).collect();
        match &self.behaviour {
            Behaviour::Honest => {}
            Behaviour::Stall => return future::pending().boxed_local(),
            Behaviour::Drop => {
                return future::ready(Err(PeerError::Connection("reset by peer".into())))
                    .boxed_local()
            }
            Behaviour::Garbage => {
                return future::ready(Err(PeerError::Malformed("not RLP".into()))).boxed_local()
            }
            Behaviour::Corrupt => {
                for b in &mut blobs {
                    let mid = b.len() / 2;
                    b[mid] ^= 0x01;
                }
            }
            Behaviour::OmitEvery(n) => {
                let n = (*n).max(1);
                blobs = blobs
                    .into_iter()
                    .enumerate()
                    .filter(|(i, _)| i % n != n - 1)
                    .map(|(_, b)| b)
                    .collect();
            }
            Behaviour::Empty => blobs.clear(),
            Behaviour::Unrequested(extra) => blobs.extend(extra.iter().cloned()),
            Behaviour::Duplicate(times) => {
                blobs = blobs
                    .iter()
                    .flat_map(|b| std::iter::repeat_n(b.clone(), *times))
                    .collect();
            }
            Behaviour::Delay(d, clock) => return after(clock.sleep(*d), blobs),
            Behaviour::DelayPerItem(d, clock) => {
                return after(clock.sleep(*d * keys.len() as u32), blobs)
            }
        }
        future::ready(Ok(blobs)).boxed_local()
    }
}

/// `blobs`, answered once `sleep` ends.
fn after(
    sleep: LocalBoxFuture<'static, ()>,
    blobs: Vec<Vec<u8>>,
) -> LocalBoxFuture<'static, Result<Vec<Vec<u8>>, PeerError>> {
    async move {
        sleep.await;
        Ok(blobs)
    }
    .boxed_local()
}
