//! The single write path's handle. One thread ([`super::commit`]) owns
//! `begin_write`; callers queue operations here and wait for their reply, so
//! everything queued while a commit syncs shares the next one (group commit).
//!
//! The write path is split the way redb splits its own: the commit thread
//! with its batching, reopening after an I/O error and quick repair
//! ([`super::commit`]); applying one operation to the tables
//! ([`super::apply`]); writing a decided change with its index upkeep
//! ([`super::persist`]); and the outbox's writes ([`super::outbox`]).
//! Decisions are the domain's; the store reads, asks and writes.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tokio::sync::{mpsc, oneshot};

use super::commit::{run, Job, Message, Shared, Signal, QUEUE_DEPTH};
use super::repair::CHECKPOINT_AFTER;
use super::views::ViewCache;
use super::{DbSlot, Maintenance, OpResult, Rules, StoreError, WriteOp};

/// Handle to the writer thread; cheap to clone.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Message>,
    thread: Arc<Mutex<Option<JoinHandle<()>>>>,
    /// Test hook: the next N commits fail as if the disk refused them. Only
    /// test builds (feature `testing`) can set it or look at it.
    #[cfg_attr(not(any(test, feature = "testing")), allow(dead_code))]
    injected_failures: Arc<AtomicU32>,
    /// Set while the last commit did not record redb's allocator state.
    full_repair_if_crashed: Arc<AtomicBool>,
}

impl Writer {
    pub(super) fn start(
        db: Arc<DbSlot>,
        rules: Arc<Rules>,
        events: Signal,
        views: Arc<ViewCache>,
    ) -> Writer {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let injected_failures = Arc::new(AtomicU32::new(0));
        let faults = injected_failures.clone();
        // The schema commit at open recorded it unless the policy never does.
        let full_repair_if_crashed =
            Arc::new(AtomicBool::new(!rules.quick_repair.records_state(true)));
        let unrecorded = full_repair_if_crashed.clone();
        let thread = std::thread::Builder::new()
            .name("vpsd-writer".into())
            .spawn(move || {
                let shared = Shared {
                    faults,
                    rules,
                    events,
                    views,
                    unrecorded,
                    checkpoint_after: CHECKPOINT_AFTER,
                    checkpoint_faults: Arc::new(AtomicU32::new(0)),
                };
                run(db, rx, &shared)
            })
            .ok();
        Writer {
            tx,
            thread: Arc::new(Mutex::new(thread)),
            injected_failures,
            full_repair_if_crashed,
        }
    }

    /// See [`super::Store::full_repair_if_crashed`].
    pub fn full_repair_if_crashed(&self) -> bool {
        self.full_repair_if_crashed.load(Ordering::Relaxed)
    }

    pub async fn submit(&self, op: WriteOp) -> Result<OpResult, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Message::Job(Box::new(Job::Op(op, reply))))
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Queues every op before waiting, so they share commits (group commit).
    pub fn submit_all_blocking(&self, ops: Vec<WriteOp>) -> Vec<Result<OpResult, StoreError>> {
        let mut answers = Vec::with_capacity(ops.len());
        for op in ops {
            let (reply, answer) = oneshot::channel();
            match self
                .tx
                .blocking_send(Message::Job(Box::new(Job::Op(op, reply))))
            {
                Ok(()) => answers.push(Some(answer)),
                Err(_) => answers.push(None),
            }
        }
        answers
            .into_iter()
            .map(|a| match a {
                Some(answer) => answer.blocking_recv().map_err(|_| stopped())?,
                None => Err(stopped()),
            })
            .collect()
    }

    /// Housekeeping writes; returns how many records they touched.
    pub fn maintain_blocking(&self, work: Maintenance) -> Result<u64, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .blocking_send(Message::Job(Box::new(Job::Maintain(work, reply))))
            .map_err(|_| stopped())?;
        answer.blocking_recv().map_err(|_| stopped())?
    }

    pub async fn maintain(&self, work: Maintenance) -> Result<u64, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Message::Job(Box::new(Job::Maintain(work, reply))))
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    pub fn submit_blocking(&self, op: WriteOp) -> Result<OpResult, StoreError> {
        self.submit_all_blocking(vec![op])
            .pop()
            .unwrap_or_else(|| Err(stopped()))
    }

    /// Makes the next `n` commits fail with a storage error (fault-injection tests).
    #[cfg(any(test, feature = "testing"))]
    #[doc(hidden)]
    pub fn inject_commit_failures(&self, n: u32) {
        self.injected_failures.store(n, Ordering::SeqCst);
    }

    /// Finishes what is queued, then stops the thread and waits for it.
    pub fn shutdown(&self) {
        // A full queue only delays the stop until the writer drains it.
        let _ = self.tx.blocking_send(Message::Stop);
        let handle = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }
}

fn stopped() -> StoreError {
    StoreError::Unavailable("the store is shutting down".into())
}
