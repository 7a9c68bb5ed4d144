//! The single write path. One thread owns `begin_write`; callers queue operations
//! and wait for their reply. Everything queued while the previous commit was
//! syncing is applied in one transaction and made durable by one commit (group
//! commit), so throughput follows the disk's fsync rate times the batch size.
//!
//! Each operation checks all its preconditions before it writes, so a refused
//! operation (conflict, coupon limit) leaves no trace and the rest of its batch
//! still commits. A storage error aborts the whole transaction: every caller in
//! the batch gets STORAGE_UNAVAILABLE and nothing is half-written.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use redb::{Database, ReadableTable};
use tokio::runtime::Runtime;
use tokio::sync::{mpsc, oneshot};

use super::idempotency;
use super::outbox;
use super::repair::{QuickRepair, CHECKPOINT_AFTER};
use super::tables::{self, CountScope};
use super::txn::{bump, get_u64, Tables};
use super::views::ViewCache;
use super::{
    codec, corrupt, storage_err, CouponClaim, DbSlot, IdempotencyRecord, IdempotencyWrite,
    Maintenance, OpResult, OrderRecord, Replay, StoreError, WriteOp,
};
use crate::domain::error::{AppError, CouponLimit, Rejection};
use crate::domain::expiry::Policy;
use crate::domain::lifecycle::{
    self, Change, Command, CouponEffect, EventType, OutEvent, TaskEffect,
};
use crate::domain::task::ProvisioningTask;
use crate::domain::time::now_millis;
use crate::domain::webhook::Outbox;
use crate::domain::{Actor, Order, OrderStatus};

/// Upper bound on operations per transaction, so one commit's latency stays bounded.
pub const MAX_BATCH: usize = 512;
/// Queue depth before callers wait: back-pressure instead of unbounded memory.
const QUEUE_DEPTH: usize = 4096;

/// A queued operation and where its answer goes.
enum Job {
    Op(WriteOp, oneshot::Sender<Result<OpResult, StoreError>>),
    Maintain(Maintenance, oneshot::Sender<Result<u64, StoreError>>),
}

enum Message {
    Job(Box<Job>),
    Stop,
}

/// What one job produced inside a committed transaction.
enum Applied {
    Op(Box<OpResult>),
    Count(u64),
}

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

/// What every decision is taken under: the expiry policy, and where events go;
/// and how each commit is made (`storage.quick_repair`, see [`super::begin_write`]).
#[derive(Debug, Clone, Default)]
pub struct Rules {
    pub policy: Policy,
    pub outbox: Outbox,
    pub quick_repair: super::QuickRepair,
}

/// Bumped after every commit that queued webhook deliveries, so the delivery
/// workers wake without polling.
pub(crate) type Signal = tokio::sync::watch::Sender<u64>;

/// How long after a failed reopen the writer tries again.
const REOPEN_PAUSE: std::time::Duration = std::time::Duration::from_millis(500);

/// What the writer thread works with besides its queue.
struct Shared {
    faults: Arc<AtomicU32>,
    rules: Arc<Rules>,
    events: Signal,
    views: Arc<ViewCache>,
    /// Mirrors whether the last commit left the allocator state unrecorded.
    unrecorded: Arc<AtomicBool>,
    /// Quiet this long after such a commit, the writer records it.
    checkpoint_after: std::time::Duration,
    /// Test hook, like `faults`, for those empty commits.
    checkpoint_faults: Arc<AtomicU32>,
}

fn run(slot: Arc<DbSlot>, mut rx: mpsc::Receiver<Message>, shared: &Shared) {
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
        (results, t.queued, t.touched)
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

fn apply(t: &mut Tables<'_>, op: WriteOp, rules: &Rules) -> Result<OpResult, StoreError> {
    match op {
        WriteOp::Create {
            change,
            coupon,
            idempotency,
        } => {
            let result = create_order(t, *change, coupon.as_ref(), &rules.outbox)?;
            finish(t, result, idempotency)
        }
        WriteOp::Apply {
            order_id,
            command,
            actor,
            owner,
            idempotency,
        } => {
            let target = Target {
                id: order_id.as_u128(),
                owner: owner.as_deref(),
            };
            let result = apply_command(t, target, command, &actor, rules)?;
            finish(t, result, idempotency)
        }
        WriteOp::SaveTask { task, commands } => save_task(t, *task, commands, rules),
    }
}

fn maintain(t: &mut Tables<'_>, work: Maintenance, rules: &Rules) -> Result<u64, StoreError> {
    match work {
        Maintenance::RecordAttempts(attempts) => {
            let mut recorded = 0;
            for attempt in attempts {
                if outbox::record_attempt(t, &rules.outbox, attempt)?.is_some() {
                    recorded += 1;
                }
            }
            Ok(recorded)
        }
        Maintenance::ReplayDelivery { id, now } => {
            let found = outbox::replay(t, id, now)?;
            t.queued += usize::from(found);
            Ok(u64::from(found))
        }
        Maintenance::PruneDelivered { before } => outbox::prune_delivered(t, before),
        Maintenance::FailUnrouted { now } => outbox::fail_unrouted(t, &rules.outbox, now),
        Maintenance::StoreResponse { scope, key, record } => {
            idempotency::put(t, &scope, &key, &record)?;
            Ok(1)
        }
        Maintenance::SweepIdempotency { now } => idempotency::sweep(t, now),
        Maintenance::SweepIdempotencyScope { scope, now } => {
            idempotency::sweep_scope(t, &scope, now)
        }
    }
}

/// Keeps the outcome under its idempotency key, in this transaction, when a
/// repeat of the request would meet the same answer.
fn finish(
    t: &mut Tables<'_>,
    result: OpResult,
    idempotency: Option<IdempotencyWrite>,
) -> Result<OpResult, StoreError> {
    if let Some(w) = idempotency {
        let mut outcome = result.clone().map_err(AppError::from);
        if let Ok(record) = &mut outcome {
            // Neither is rendered in a reply (renewals only in the admin
            // detail, with the history): dropping the SSH keys (up to 64 KiB)
            // and the renewals (one more per renewal) keeps a stored reply
            // small (SPEC §12: at most 16 KiB, not growing with repetition)
            // and its replay identical.
            record.order.droplet.ssh_public_keys.clear();
            record.order.term.renewals.clear();
        }
        if outcome.as_ref().err().is_none_or(AppError::is_replayable) {
            let record = IdempotencyRecord {
                fingerprint: w.fingerprint,
                outcome: Replay::Outcome(Box::new(outcome)),
                expires_at: w.expires_at,
            };
            idempotency::put(t, &w.scope, &w.key, &record)?;
        }
    }
    Ok(result)
}

fn create_order(
    t: &mut Tables<'_>,
    mut change: Change,
    coupon: Option<&CouponClaim>,
    outbox: &Outbox,
) -> Result<OpResult, StoreError> {
    if let Some(claim) = coupon {
        if let Err(limit) = claim_coupon(t, claim, &change.order.user_id)? {
            return Ok(Err(Rejection::CouponLimit(limit)));
        }
        change.order.coupon_counted = true;
    }
    let seq = get_u64(&t.meta, tables::META_ORDER_SEQ)? + 1;
    t.meta
        .insert(tables::META_ORDER_SEQ, seq)
        .map_err(storage_err)?;
    change.order.seq = seq;
    t.by_seq
        .insert(seq, change.order.id.as_u128())
        .map_err(storage_err)?;
    t.by_user
        .insert(
            (change.order.user_id.as_str(), seq),
            change.order.id.as_u128(),
        )
        .map_err(storage_err)?;
    bump(t, CountScope::All, 1)?;
    persist(t, &change)?;
    let record = OrderRecord {
        order: change.order,
        task: None,
    };
    announce(t, outbox, &record, &change.events)?;
    Ok(Ok(record))
}

/// Counts one redemption unless a limit is reached (checked and counted in
/// the order's own transaction, so limits hold under concurrent orders).
fn claim_coupon(
    t: &mut Tables<'_>,
    claim: &CouponClaim,
    user: &str,
) -> Result<Result<(), CouponLimit>, StoreError> {
    let global = get_u64(&t.coupon_uses, claim.code.as_str())?;
    if claim.max_uses.is_some_and(|max| global >= max) {
        return Ok(Err(CouponLimit::Global));
    }
    let mine = get_user_uses(t, &claim.code, user)?;
    if claim.max_uses_per_user.is_some_and(|max| mine >= max) {
        return Ok(Err(CouponLimit::PerUser));
    }
    t.coupon_uses
        .insert(claim.code.as_str(), global + 1)
        .map_err(storage_err)?;
    t.coupon_user_uses
        .insert((claim.code.as_str(), user), mine + 1)
        .map_err(storage_err)?;
    Ok(Ok(()))
}

/// The order a command is for, and the user it must belong to (user routes).
struct Target<'a> {
    id: u128,
    owner: Option<&'a str>,
}

fn apply_command(
    t: &mut Tables<'_>,
    target: Target<'_>,
    command: Command,
    actor: &Actor,
    rules: &Rules,
) -> Result<OpResult, StoreError> {
    let Some(order) = load_order(t, target.id)? else {
        return Ok(Err(Rejection::OrderNotFound));
    };
    if target.owner.is_some_and(|o| o != order.user_id) {
        return Ok(Err(Rejection::NotOwner));
    }
    let record = OrderRecord {
        order,
        task: load_task(t, target.id)?,
    };
    let change = match lifecycle::decide(&record, command, actor, now_millis(), &rules.policy) {
        Ok(change) => change,
        Err(refused) => return Ok(Err(Rejection::Refused(refused))),
    };
    persist(t, &change)?;
    let task = match change.task {
        TaskEffect::Write(task) => Some(*task),
        TaskEffect::Unchanged => record.task,
    };
    let record = OrderRecord {
        order: change.order,
        task,
    };
    announce(t, &rules.outbox, &record, &change.events)?;
    Ok(Ok(record))
}

fn save_task(
    t: &mut Tables<'_>,
    mut task: ProvisioningTask,
    commands: Vec<Command>,
    rules: &Rules,
) -> Result<OpResult, StoreError> {
    let now = now_millis();
    let id = task.order_id.as_u128();
    let Some(order) = load_order(t, id)? else {
        return Ok(Err(Rejection::OrderNotFound));
    };
    let stored = load_task(t, id)?;
    if stored.as_ref().map(|s| s.revision) != Some(task.revision) {
        return Ok(Err(Rejection::StaleTask));
    }
    task.revision += 1;
    task.updated_at = now;
    // Decide every command in memory first, so a refusal writes nothing at all.
    let mut record = OrderRecord {
        order,
        task: Some(task),
    };
    let mut changes = Vec::with_capacity(commands.len());
    for command in commands {
        match lifecycle::decide(&record, command, &Actor::System, now, &rules.policy) {
            Ok(change) => {
                record.order = change.order.clone();
                if let TaskEffect::Write(task) = &change.task {
                    record.task = Some((**task).clone());
                }
                changes.push(change);
            }
            Err(refused) => return Ok(Err(Rejection::Refused(refused))),
        }
    }
    for change in &changes {
        persist_order(t, change)?;
    }
    if let Some(task) = &record.task {
        write_task(t, task)?;
    }
    // Each event carries the order as its change left it, and the task as
    // this save leaves it (the droplet's address for `order.active`).
    for change in &changes {
        let snapshot = OrderRecord {
            order: change.order.clone(),
            task: record.task.clone(),
        };
        announce(t, &rules.outbox, &snapshot, &change.events)?;
    }
    if let (Some(before), Some(after)) = (&stored, &record.task) {
        if after.confirms_delete(before) {
            let deleted = [OutEvent {
                kind: EventType::DropletDeleted,
                seconds_left: None,
            }];
            announce(t, &rules.outbox, &record, &deleted)?;
        }
    }
    Ok(Ok(record))
}

/// Queues the change's events for the endpoints that take them.
fn announce(
    t: &mut Tables<'_>,
    outbox: &Outbox,
    record: &OrderRecord,
    events: &[OutEvent],
) -> Result<(), StoreError> {
    if events.is_empty() || outbox.routes.is_empty() {
        return Ok(());
    }
    let queued = outbox::record_events(t, outbox, record, events, now_millis())?;
    t.queued += queued;
    Ok(())
}

/// Writes what a decision changed: the order's part, the task and the coupon.
fn persist(t: &mut Tables<'_>, change: &Change) -> Result<(), StoreError> {
    persist_order(t, change)?;
    if let TaskEffect::Write(task) = &change.task {
        write_task(t, task)?;
    }
    if change.coupon == CouponEffect::Release {
        release_coupon(t, &change.order)?;
    }
    Ok(())
}

/// History rows, the order, and its status and due index entries.
fn persist_order(t: &mut Tables<'_>, change: &Change) -> Result<(), StoreError> {
    let order = &change.order;
    let first_row = order
        .history_len
        .saturating_sub(u32::try_from(change.history.len()).unwrap_or(u32::MAX));
    for (row_no, row) in (first_row..).zip(&change.history) {
        t.history
            .insert((order.seq, row_no), codec::encode(row).as_slice())
            .map_err(storage_err)?;
    }
    match change.previous_status {
        None => index_status(t, order, order.status, 1)?,
        Some(before) if before != order.status => {
            index_status(t, order, before, -1)?;
            index_status(t, order, order.status, 1)?;
        }
        Some(_) => {}
    }
    let id = order.id.as_u128();
    if change.previous_due != order.term.next_due {
        if let Some(due) = change.previous_due {
            t.due.remove((due, id)).map_err(storage_err)?;
        }
        if let Some(due) = order.term.next_due {
            t.due.insert((due, id), ()).map_err(storage_err)?;
        }
    }
    t.orders
        .insert(id, codec::encode(order).as_slice())
        .map_err(storage_err)?;
    t.touched.push(id);
    Ok(())
}

fn write_task(t: &mut Tables<'_>, task: &ProvisioningTask) -> Result<(), StoreError> {
    let id = task.order_id.as_u128();
    t.tasks
        .insert(id, codec::encode(task).as_slice())
        .map_err(storage_err)?;
    t.touched.push(id);
    if task.is_open() {
        t.open_tasks.insert(id, ()).map_err(storage_err)?;
    } else {
        t.open_tasks.remove(id).map_err(storage_err)?;
    }
    if task.action.is_some() {
        t.pending_actions.insert(id, ()).map_err(storage_err)?;
    } else {
        t.pending_actions.remove(id).map_err(storage_err)?;
    }
    Ok(())
}

/// Adds (`delta = 1`) or removes (`-1`) the order's status index entries.
fn index_status(
    t: &mut Tables<'_>,
    order: &Order,
    status: OrderStatus,
    delta: i64,
) -> Result<(), StoreError> {
    let (code, seq, user) = (status.code(), order.seq, order.user_id.as_str());
    if delta > 0 {
        t.by_status
            .insert((code, seq), order.id.as_u128())
            .map_err(storage_err)?;
    } else {
        t.by_status.remove((code, seq)).map_err(storage_err)?;
    }
    bump(t, CountScope::Status(code), delta)?;
    bump(t, CountScope::UserStatus(user, code), delta)
}

fn release_coupon(t: &mut Tables<'_>, order: &Order) -> Result<(), StoreError> {
    let Some(code) = order.pricing.coupon_code.as_deref() else {
        return Ok(());
    };
    let global = get_u64(&t.coupon_uses, code)?;
    t.coupon_uses
        .insert(code, global.saturating_sub(1))
        .map_err(storage_err)?;
    let mine = get_user_uses(t, code, &order.user_id)?;
    t.coupon_user_uses
        .insert((code, order.user_id.as_str()), mine.saturating_sub(1))
        .map_err(storage_err)?;
    Ok(())
}

fn get_user_uses(t: &Tables<'_>, code: &str, user: &str) -> Result<u64, StoreError> {
    Ok(t.coupon_user_uses
        .get((code, user))
        .map_err(storage_err)?
        .map(|v| v.value())
        .unwrap_or(0))
}

fn load_order(t: &Tables<'_>, id: u128) -> Result<Option<Order>, StoreError> {
    match t.orders.get(id).map_err(storage_err)? {
        Some(bytes) => codec::decode(bytes.value()).map(Some).map_err(corrupt),
        None => Ok(None),
    }
}

fn load_task(t: &Tables<'_>, id: u128) -> Result<Option<ProvisioningTask>, StoreError> {
    match t.tasks.get(id).map_err(storage_err)? {
        Some(bytes) => codec::decode(bytes.value()).map(Some).map_err(corrupt),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::OrderStatus;
    use crate::store::Store;
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
