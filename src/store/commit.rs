//! The commit thread (group commit). One thread owns `begin_write`; callers
//! queue jobs through a [`super::Writer`] and wait for their reply.
//! Everything queued while the previous commit was syncing is applied in one
//! transaction and made durable by one commit, so throughput follows the
//! disk's fsync rate times the batch size.
//!
//! A storage error aborts the whole transaction: every caller in the batch
//! gets STORAGE_UNAVAILABLE and nothing is half-written. After an I/O failure
//! the file is reopened; when the policy asks for it, a quiet writer records
//! redb's allocator state (quick repair, see [`super::repair`]).

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

use redb::Database;
use tokio::runtime::Runtime;
use tokio::sync::{mpsc, oneshot};

use super::apply::apply;
use super::redb_txn::maintain;
use super::repair::QuickRepair;
use super::txn::Tables;
use super::views::ViewCache;
use super::{storage_err, DbSlot, Maintenance, OpResult, Rules, StoreError, WriteOp};

/// Upper bound on operations per transaction, so one commit's latency stays bounded.
pub const MAX_BATCH: usize = 512;
/// Queue depth before callers wait: back-pressure instead of unbounded memory.
pub(super) const QUEUE_DEPTH: usize = 4096;

/// Bumped after every commit that queued webhook deliveries, so the delivery
/// workers wake without polling.
pub(crate) type Signal = tokio::sync::watch::Sender<u64>;

/// A queued operation and where its answer goes.
pub(super) enum Job {
    Op(WriteOp, oneshot::Sender<Result<OpResult, StoreError>>),
    Maintain(Maintenance, oneshot::Sender<Result<u64, StoreError>>),
}

/// What the writer thread's queue carries.
pub(super) enum Message {
    Job(Box<Job>),
    Stop,
}

/// What one job produced inside a committed transaction.
enum Applied {
    Op(Box<OpResult>),
    Count(u64),
}

/// How long after a failed reopen the writer tries again.
const REOPEN_PAUSE: std::time::Duration = std::time::Duration::from_millis(500);

/// What the writer thread works with besides its queue.
pub(super) struct Shared {
    pub(super) faults: Arc<AtomicU32>,
    pub(super) rules: Arc<Rules>,
    pub(super) events: Signal,
    pub(super) views: Arc<ViewCache>,
    /// Mirrors whether the last commit left the allocator state unrecorded.
    pub(super) unrecorded: Arc<AtomicBool>,
    /// Quiet this long after such a commit, the writer records it.
    pub(super) checkpoint_after: std::time::Duration,
    /// Test hook, like `faults`, for those empty commits.
    pub(super) checkpoint_faults: Arc<AtomicU32>,
}

/// The writer thread's loop, until a stop message or every sender is gone.
pub(super) fn run(slot: Arc<DbSlot>, mut rx: mpsc::Receiver<Message>, shared: &Shared) {
    let Shared {
        faults,
        rules,
        events,
        views,
        unrecorded,
        checkpoint_after,
        checkpoint_faults,
    } = shared;
    let clock = checkpoint_clock(rules.quick_repair);
    let mut stop = false;
    // Set when redb reported an I/O failure: its handle is then unusable
    // (PreviousIo) until the file is reopened.
    let mut broken = false;
    let mut last_reopen: Option<std::time::Instant> = None;
    // A checkpoint is owed after a commit that did not record the state; one
    // attempt settles it, so a refusing disk is not retried in a loop.
    let mut owed = false;
    let mut reopen = |broken: &mut bool| {
        if last_reopen.is_none_or(|t| t.elapsed() >= REOPEN_PAUSE) {
            last_reopen = Some(std::time::Instant::now());
            *broken = slot.reopen().is_err();
            // The reopen's repair commit recorded nothing.
            unrecorded.store(true, Ordering::Relaxed);
        }
    };
    while !stop {
        let deadline = clock.as_ref().filter(|_| owed && !broken);
        let first = match next_message(&mut rx, deadline.map(|c| (c, *checkpoint_after))) {
            Next::Message(m) => m,
            Next::Closed => break,
            Next::Quiet => {
                owed = false;
                // A refused commit leaves redb's handle refusing the next
                // one too: reopen before the next batch, as after any.
                broken = !checkpoint(&slot, unrecorded, checkpoint_faults);
                continue;
            }
        };
        let (works, replies) = collect_batch(first, &mut rx, &mut stop);
        if works.is_empty() {
            continue;
        }
        if broken {
            reopen(&mut broken);
        }
        let alone = works.len() == 1;
        let record_state = || rules.quick_repair.records_state(alone && rx.is_empty());
        let outcome = match slot.get() {
            Ok(db) => commit_batch(&db, works, faults, rules, record_state),
            Err(e) => Err(BatchError {
                error: e,
                io: false,
            }),
        };
        // Before anyone hears of the commit, so no one who did can read an
        // older rendering of what it changed.
        match &outcome {
            Ok(done) => {
                views.invalidate(&done.touched);
                owed = !done.recorded_state;
                unrecorded.store(owed, Ordering::Relaxed);
            }
            Err(_) => views.clear(),
        }
        if matches!(&outcome, Ok(done) if done.queued > 0) {
            events.send_modify(|n| *n = n.wrapping_add(1));
        }
        if answer(replies, outcome.map(|done| done.results)) {
            broken = true;
            reopen(&mut broken);
        }
    }
}

/// What the writer waits for next.
enum Next {
    Message(Message),
    /// Nothing came within the wait.
    Quiet,
    Closed,
}

/// The next message. With a clock, waits at most the time given with it.
fn next_message(
    rx: &mut mpsc::Receiver<Message>,
    clock: Option<(&Runtime, std::time::Duration)>,
) -> Next {
    let received = match clock {
        Some((clock, at_most)) => {
            // Made inside `block_on`: a timer needs the runtime's context.
            let waited = clock.block_on(async { tokio::time::timeout(at_most, rx.recv()).await });
            match waited {
                Ok(received) => received,
                Err(_) => return Next::Quiet,
            }
        }
        None => rx.blocking_recv(),
    };
    received.map_or(Next::Closed, Next::Message)
}

/// A timer for the writer thread's waits, when the policy checkpoints. Its
/// own one-thread runtime: the writer runs outside the async workers.
fn checkpoint_clock(policy: QuickRepair) -> Option<Runtime> {
    if !policy.checkpoints() {
        return None;
    }
    match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        Ok(clock) => Some(clock),
        Err(e) => {
            tracing::warn!(error = %e, "cannot start the writer's timer: after a burst of writes a crash will need redb's full repair");
            None
        }
    }
}

/// An empty commit that records the allocator state, after a burst whose
/// last commit did not; false when it failed. A failure leaves it
/// unrecorded until the next commit: a crash meanwhile costs the full
/// repair, as without the option.
fn checkpoint(slot: &DbSlot, unrecorded: &AtomicBool, faults: &AtomicU32) -> bool {
    if take_injected_failure(faults) {
        tracing::warn!("cannot record redb's allocator state (injected failure)");
        return false;
    }
    let committed = slot.get().and_then(|db| {
        super::begin_write(&db, true)
            .map_err(storage_err)?
            .commit()
            .map_err(storage_err)
    });
    match committed {
        Ok(()) => {
            unrecorded.store(false, Ordering::Relaxed);
            true
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot record redb's allocator state; a crash now needs the full repair");
            false
        }
    }
}

/// Whether a test asked this commit to fail. A constant `false` outside test
/// builds: production commits skip the check.
fn take_injected_failure(faults: &AtomicU32) -> bool {
    cfg!(any(test, feature = "testing"))
        && faults
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
}

/// Everything queued now, up to [`MAX_BATCH`] jobs; sets `stop` on a stop message.
fn collect_batch(
    first: Message,
    rx: &mut mpsc::Receiver<Message>,
    stop: &mut bool,
) -> (Vec<Work>, Vec<ReplyTo>) {
    let mut works = Vec::new();
    let mut replies = Vec::new();
    for message in std::iter::once(first).chain(std::iter::from_fn(|| rx.try_recv().ok())) {
        match message {
            Message::Job(job) => match *job {
                Job::Op(op, reply) => {
                    works.push(Work::Op(op));
                    replies.push(ReplyTo::Op(reply));
                }
                Job::Maintain(m, reply) => {
                    works.push(Work::Maintain(m));
                    replies.push(ReplyTo::Count(reply));
                }
            },
            Message::Stop => *stop = true,
        }
        if *stop || works.len() >= MAX_BATCH {
            break;
        }
    }
    (works, replies)
}

/// Sends every caller its answer; true when redb itself failed and the file
/// must be reopened.
fn answer(replies: Vec<ReplyTo>, outcome: Result<Vec<Applied>, BatchError>) -> bool {
    match outcome {
        Ok(results) => {
            for (reply, result) in replies.into_iter().zip(results) {
                match (reply, result) {
                    (ReplyTo::Op(r), Applied::Op(v)) => drop(r.send(Ok(*v))),
                    (ReplyTo::Count(r), Applied::Count(n)) => drop(r.send(Ok(n))),
                    // Results are produced in job order and kind; a mismatch is
                    // impossible, and dropping the sender reports "stopped".
                    _ => {}
                }
            }
            false
        }
        Err(BatchError { error, io }) => {
            tracing::error!(error = %error, batch = replies.len(), "write transaction failed");
            for reply in replies {
                match reply {
                    ReplyTo::Op(r) => drop(r.send(Err(error.clone()))),
                    ReplyTo::Count(r) => drop(r.send(Err(error.clone()))),
                }
            }
            io
        }
    }
}

/// A failed batch: the error every caller gets, and whether redb itself
/// failed (its handle must then be reopened) rather than a refused start or
/// an injected fault.
#[derive(Debug)]
struct BatchError {
    error: StoreError,
    io: bool,
}

enum Work {
    Op(WriteOp),
    Maintain(Maintenance),
}

enum ReplyTo {
    Op(oneshot::Sender<Result<OpResult, StoreError>>),
    Count(oneshot::Sender<Result<u64, StoreError>>),
}

/// What a committed batch produced.
struct Committed {
    results: Vec<Applied>,
    /// Webhook deliveries it queued.
    queued: usize,
    /// Orders whose record or task it wrote.
    touched: Vec<u128>,
    /// Whether it recorded redb's allocator state (see [`super::repair`]).
    recorded_state: bool,
}

fn commit_batch(
    db: &Database,
    ops: Vec<Work>,
    faults: &AtomicU32,
    rules: &Rules,
    record_state: impl FnOnce() -> bool,
) -> Result<Committed, BatchError> {
    let io = |error: StoreError| BatchError { error, io: true };
    let mut txn = super::begin_write(db, false).map_err(|e| io(storage_err(e)))?;
    let (results, queued, touched) = {
        let mut t = Tables::open(&txn).map_err(io)?;
        let mut results = Vec::with_capacity(ops.len());
        for work in ops {
            results.push(match work {
                Work::Op(op) => Applied::Op(Box::new(apply(&mut t, op, rules).map_err(io)?)),
                Work::Maintain(m) => Applied::Count(maintain(&mut t, m, rules).map_err(io)?),
            });
        }
        let (queued, touched) = t.finish().map_err(io)?;
        (results, queued, touched)
    };
    if take_injected_failure(faults) {
        // Dropping the transaction aborts it: the fault leaves nothing behind.
        return Err(BatchError {
            error: StoreError::Unavailable("injected commit failure".into()),
            io: false,
        });
    }
    // Decided last: whether more work waited is best known just before the commit.
    let recorded_state = record_state();
    txn.set_quick_repair(recorded_state);
    txn.commit().map_err(|e| io(storage_err(e)))?;
    Ok(Committed {
        results,
        queued,
        touched,
        recorded_state,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::store::Store;
    use crate::domain::error::Rejection;
    use crate::domain::lifecycle::{self, Change, Command};
    use crate::domain::{Actor, OrderStatus};
    use uuid::Uuid;

    /// A writer thread under `when_idle` on a fresh file, driven job by job.
    struct Harness {
        _dir: tempfile::TempDir,
        path: std::path::PathBuf,
        tx: mpsc::Sender<Message>,
        writer: std::thread::JoinHandle<()>,
        unrecorded: Arc<AtomicBool>,
        checkpoint_faults: Arc<AtomicU32>,
    }

    impl Harness {
        /// Starts the writer with `first_batch` jobs already queued, so they
        /// share its first commit (two or more: a busy writer), and waits
        /// for their answers. Its checkpoints fail `checkpoint_faults` times.
        fn after_first_batch(
            first_batch: usize,
            checkpoint_after: std::time::Duration,
            checkpoint_faults: u32,
        ) -> Harness {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("d.redb");
            let store = Store::open(&path).unwrap();
            store.shutdown();
            let slot = store.db.clone();
            drop(store);
            let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
            let answers: Vec<_> = (0..first_batch).map(|_| queue_prune(&tx)).collect();
            let unrecorded = Arc::new(AtomicBool::new(false));
            let faults = Arc::new(AtomicU32::new(checkpoint_faults));
            let shared = Shared {
                faults: Arc::new(AtomicU32::new(0)),
                rules: Arc::new(Rules {
                    quick_repair: QuickRepair::WhenIdle,
                    ..Rules::default()
                }),
                events: tokio::sync::watch::channel(0).0,
                views: Arc::new(ViewCache::default()),
                unrecorded: unrecorded.clone(),
                checkpoint_after,
                checkpoint_faults: faults.clone(),
            };
            let writer = std::thread::spawn(move || run(slot, rx, &shared));
            for answer in answers {
                answer.blocking_recv().unwrap().unwrap();
            }
            Harness {
                _dir: dir,
                path,
                tx,
                writer,
                unrecorded,
                checkpoint_faults: faults,
            }
        }

        fn unrecorded(&self) -> bool {
            self.unrecorded.load(Ordering::SeqCst)
        }

        /// Waits (30 s at most) until `done` holds; whether it did.
        fn wait_until(&self, done: impl Fn(&Harness) -> bool) -> bool {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while !done(self) && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            done(self)
        }

        fn on_disk_needs_full_repair(&self) -> bool {
            super::super::repair::full_repair_needed(&self.path).unwrap()
        }

        fn finish(self) {
            drop(self.tx);
            self.writer.join().unwrap();
        }
    }

    /// Queues a housekeeping job that touches nothing.
    fn queue_prune(tx: &mpsc::Sender<Message>) -> oneshot::Receiver<Result<u64, StoreError>> {
        let (reply, answer) = oneshot::channel();
        let job = Job::Maintain(Maintenance::PruneDelivered { before: 0 }, reply);
        tx.try_send(Message::Job(Box::new(job))).unwrap();
        answer
    }

    #[test]
    fn a_busy_commit_leaves_the_allocator_state_unrecorded() {
        let writer = Harness::after_first_batch(2, std::time::Duration::from_secs(3600), 0);
        assert!(
            writer.unrecorded(),
            "the writer says a crash needs the full repair"
        );
        assert!(writer.on_disk_needs_full_repair(), "and redb agrees");
        writer.finish();
    }

    #[test]
    fn a_quiet_writer_records_the_allocator_state_after_a_busy_commit() {
        let writer = Harness::after_first_batch(2, std::time::Duration::from_millis(20), 0);
        assert!(
            writer.wait_until(|w| !w.unrecorded()),
            "the writer says a crash is quick to open"
        );
        assert!(!writer.on_disk_needs_full_repair(), "and redb agrees");
        writer.finish();
    }

    #[test]
    fn a_failed_checkpoint_is_reported_and_the_next_quiet_commit_records_the_state() {
        let writer = Harness::after_first_batch(2, std::time::Duration::from_millis(20), 1);
        assert!(
            writer.wait_until(|w| w.checkpoint_faults.load(Ordering::SeqCst) == 0),
            "the writer tried a checkpoint"
        );
        // It failed, and the writer says so: the file still needs the walk.
        assert!(writer.unrecorded());
        assert!(writer.on_disk_needs_full_repair());
        // The handle is reopened first, then a lone job commits and records.
        queue_prune(&writer.tx).blocking_recv().unwrap().unwrap();
        assert!(!writer.unrecorded());
        assert!(!writer.on_disk_needs_full_repair());
        writer.finish();
    }

    fn new_order(user: &str) -> Change {
        lifecycle::create(
            crate::domain::order::test_order(user),
            &Actor::User(user.into()),
            1,
        )
    }

    fn create(change: Change) -> Work {
        Work::Op(WriteOp::Create {
            change: Box::new(change),
            coupon: None,
            idempotency: None,
        })
    }

    fn pay(id: Uuid) -> Work {
        Work::Op(WriteOp::Apply {
            order_id: id,
            command: Command::Pay { notes: None },
            actor: Actor::Admin(None),
            owner: None,
            idempotency: None,
        })
    }

    fn op_result(applied: &Applied) -> &OpResult {
        match applied {
            Applied::Op(r) => r,
            Applied::Count(_) => panic!("not an op"),
        }
    }

    #[test]
    fn a_conflict_in_a_batch_leaves_the_rest_committed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("d.redb")).unwrap();
        let x = new_order("alice");
        let x_id = x.order.id;
        let y = new_order("bob");
        let y_id = y.order.id;
        let faults = AtomicU32::new(0);
        commit_batch(
            &store.database().unwrap(),
            vec![create(x)],
            &faults,
            &Rules::default(),
            || false,
        )
        .unwrap();
        let Committed {
            results, touched, ..
        } = commit_batch(
            &store.database().unwrap(),
            vec![pay(x_id), pay(x_id), create(y)],
            &faults,
            &Rules::default(),
            || false,
        )
        .unwrap();
        let mut changed = touched.clone();
        changed.dedup();
        assert_eq!(
            changed,
            [x_id.as_u128(), y_id.as_u128()],
            "the refused pay wrote nothing"
        );
        assert!(op_result(&results[0]).is_ok());
        assert!(matches!(op_result(&results[1]), Err(Rejection::Refused(_))));
        assert!(op_result(&results[2]).is_ok());
        let x = store.get_order(x_id).unwrap().unwrap();
        assert_eq!(x.order.status, OrderStatus::Paid);
        assert_eq!(
            store.history(x_id).unwrap().len(),
            2,
            "one PAID row, not two"
        );
        assert!(store.get_order(y_id).unwrap().is_some());
        store.shutdown();
    }

    #[test]
    fn a_storage_failure_fails_the_whole_batch_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("d.redb")).unwrap();
        let a = new_order("alice");
        let b = new_order("bob");
        let (a_id, b_id) = (a.order.id, b.order.id);
        let faults = AtomicU32::new(1);
        let result = commit_batch(
            &store.database().unwrap(),
            vec![create(a), create(b)],
            &faults,
            &Rules::default(),
            || false,
        );
        assert!(matches!(
            result,
            Err(BatchError {
                error: StoreError::Unavailable(_),
                io: false
            })
        ));
        assert!(store.get_order(a_id).unwrap().is_none());
        assert!(store.get_order(b_id).unwrap().is_none());
        let page = store
            .list_orders(&crate::domain::ListQuery {
                expires_before: None,
                user: None,
                status: None,
                page: 1,
                limit: 10,
            })
            .unwrap();
        assert_eq!(page.total, 0);
        store.shutdown();
    }
}
