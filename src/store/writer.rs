//! The single write path. One thread owns `begin_write`; callers queue operations
//! and wait for their reply. Everything queued while the previous commit was
//! syncing is applied in one transaction and made durable by one commit (group
//! commit), so throughput follows the disk's fsync rate times the batch size.
//!
//! Each operation checks all its preconditions before it writes, so a refused
//! operation (conflict, coupon limit) leaves no trace and the rest of its batch
//! still commits. A storage error aborts the whole transaction: every caller in
//! the batch gets STORAGE_UNAVAILABLE and nothing is half-written.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use redb::{Database, ReadableTable, Table, WriteTransaction};
use tokio::sync::{mpsc, oneshot};

use super::tables::{self, count_key, CountScope};
use super::{
    codec, corrupt, storage_err, CouponClaim, DbSlot, IdempotencyRecord, IdempotencyWrite,
    Maintenance, OpError, OpResult, OrderRecord, StoreError, WriteOp,
};
use crate::domain::lifecycle::{self, Event, Note};
use crate::domain::task::ProvisioningTask;
use crate::domain::time::{now_millis, Millis};
use crate::domain::{Order, OrderStatus, ProvisioningStatus};

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
}

impl Writer {
    pub(super) fn start(db: Arc<DbSlot>) -> Writer {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let injected_failures = Arc::new(AtomicU32::new(0));
        let faults = injected_failures.clone();
        let thread = std::thread::Builder::new()
            .name("vpsd-writer".into())
            .spawn(move || run(db, rx, faults))
            .ok();
        Writer {
            tx,
            thread: Arc::new(Mutex::new(thread)),
            injected_failures,
        }
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

/// How long after a failed reopen the writer tries again.
const REOPEN_PAUSE: std::time::Duration = std::time::Duration::from_millis(500);

fn run(slot: Arc<DbSlot>, mut rx: mpsc::Receiver<Message>, faults: Arc<AtomicU32>) {
    let mut stop = false;
    // Set when redb reported an I/O failure: its handle is then unusable
    // (PreviousIo) until the file is reopened.
    let mut broken = false;
    let mut last_reopen: Option<std::time::Instant> = None;
    let mut reopen = |broken: &mut bool| {
        if last_reopen.is_none_or(|t| t.elapsed() >= REOPEN_PAUSE) {
            last_reopen = Some(std::time::Instant::now());
            *broken = slot.reopen().is_err();
        }
    };
    while !stop {
        let Some(first) = rx.blocking_recv() else {
            break;
        };
        let mut batch = Vec::new();
        for message in std::iter::once(first).chain(std::iter::from_fn(|| rx.try_recv().ok())) {
            match message {
                Message::Job(job) => batch.push(*job),
                Message::Stop => stop = true,
            }
            if stop || batch.len() >= MAX_BATCH {
                break;
            }
        }
        if batch.is_empty() {
            continue;
        }
        let mut works = Vec::with_capacity(batch.len());
        let mut replies = Vec::with_capacity(batch.len());
        for job in batch {
            match job {
                Job::Op(op, reply) => {
                    works.push(Work::Op(op));
                    replies.push(ReplyTo::Op(reply));
                }
                Job::Maintain(m, reply) => {
                    works.push(Work::Maintain(m));
                    replies.push(ReplyTo::Count(reply));
                }
            }
        }
        if broken {
            reopen(&mut broken);
        }
        let outcome = match slot.get() {
            Ok(db) => commit_batch(&db, works, &faults),
            Err(e) => Err(BatchError {
                error: e,
                io: false,
            }),
        };
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
            }
            Err(BatchError { error, io }) => {
                tracing::error!(error = %error, batch = replies.len(), "write transaction failed");
                for reply in replies {
                    match reply {
                        ReplyTo::Op(r) => drop(r.send(Err(error.clone()))),
                        ReplyTo::Count(r) => drop(r.send(Err(error.clone()))),
                    }
                }
                if io {
                    broken = true;
                    reopen(&mut broken);
                }
            }
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

fn commit_batch(
    db: &Database,
    ops: Vec<Work>,
    faults: &AtomicU32,
) -> Result<Vec<Applied>, BatchError> {
    let io = |error: StoreError| BatchError { error, io: true };
    let txn = db.begin_write().map_err(|e| io(storage_err(e)))?;
    let results = {
        let mut t = Tables::open(&txn).map_err(io)?;
        let mut results = Vec::with_capacity(ops.len());
        for work in ops {
            results.push(match work {
                Work::Op(op) => Applied::Op(Box::new(apply(&mut t, op).map_err(io)?)),
                Work::Maintain(m) => Applied::Count(maintain(&mut t, m).map_err(io)?),
            });
        }
        results
    };
    // A constant `false` outside test builds: production commits skip the check.
    let injected = cfg!(any(test, feature = "testing"))
        && faults
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
    if injected {
        // Dropping the transaction aborts it: the fault leaves nothing behind.
        return Err(BatchError {
            error: StoreError::Unavailable("injected commit failure".into()),
            io: false,
        });
    }
    txn.commit().map_err(|e| io(storage_err(e)))?;
    Ok(results)
}

/// Every table, opened once per transaction.
pub(crate) struct Tables<'txn> {
    pub meta: Table<'txn, &'static str, u64>,
    pub orders: Table<'txn, u128, &'static [u8]>,
    pub history: Table<'txn, (u64, u32), &'static [u8]>,
    pub tasks: Table<'txn, u128, &'static [u8]>,
    pub open_tasks: Table<'txn, u128, ()>,
    pub by_seq: Table<'txn, u64, u128>,
    pub by_status: Table<'txn, (u8, u64), u128>,
    pub by_user_status: Table<'txn, (&'static str, u8, u64), u128>,
    pub counts: Table<'txn, &'static str, u64>,
    pub coupon_uses: Table<'txn, &'static str, u64>,
    pub coupon_user_uses: Table<'txn, (&'static str, &'static str), u64>,
    pub idempotency: Table<'txn, (&'static str, &'static str), &'static [u8]>,
    pub idempotency_expiry: Table<'txn, (i64, &'static str, &'static str), ()>,
}

impl<'txn> Tables<'txn> {
    pub(crate) fn open(txn: &'txn WriteTransaction) -> Result<Tables<'txn>, StoreError> {
        Ok(Tables {
            meta: txn.open_table(tables::META).map_err(storage_err)?,
            orders: txn.open_table(tables::ORDERS).map_err(storage_err)?,
            history: txn.open_table(tables::HISTORY).map_err(storage_err)?,
            tasks: txn.open_table(tables::TASKS).map_err(storage_err)?,
            open_tasks: txn.open_table(tables::OPEN_TASKS).map_err(storage_err)?,
            by_seq: txn.open_table(tables::BY_SEQ).map_err(storage_err)?,
            by_status: txn.open_table(tables::BY_STATUS).map_err(storage_err)?,
            by_user_status: txn
                .open_table(tables::BY_USER_STATUS)
                .map_err(storage_err)?,
            counts: txn.open_table(tables::COUNTS).map_err(storage_err)?,
            coupon_uses: txn.open_table(tables::COUPON_USES).map_err(storage_err)?,
            coupon_user_uses: txn
                .open_table(tables::COUPON_USER_USES)
                .map_err(storage_err)?,
            idempotency: txn.open_table(tables::IDEMPOTENCY).map_err(storage_err)?,
            idempotency_expiry: txn
                .open_table(tables::IDEMPOTENCY_EXPIRY)
                .map_err(storage_err)?,
        })
    }
}

fn apply(t: &mut Tables<'_>, op: WriteOp) -> Result<OpResult, StoreError> {
    let now = now_millis();
    match op {
        WriteOp::CreateOrder {
            order,
            first,
            coupon,
            idempotency,
        } => {
            let result = create_order(t, *order, first, coupon.as_ref())?;
            finish(t, result, idempotency)
        }
        WriteOp::Transition {
            order_id,
            event,
            note,
            owner,
            idempotency,
        } => {
            let result = transition(t, order_id.as_u128(), event, note, owner.as_deref(), now)?;
            finish(t, result, idempotency)
        }
        WriteOp::SaveTask { task, events } => save_task(t, *task, events, now),
    }
}

fn maintain(t: &mut Tables<'_>, work: Maintenance) -> Result<u64, StoreError> {
    match work {
        Maintenance::StoreResponse { scope, key, record } => {
            put_idempotency(t, &scope, &key, &record)?;
            Ok(1)
        }
        Maintenance::SweepIdempotency { now } => sweep_idempotency(t, now),
    }
}

/// Stores the rendered response under its idempotency key, in this transaction.
fn finish(
    t: &mut Tables<'_>,
    result: OpResult,
    idempotency: Option<IdempotencyWrite>,
) -> Result<OpResult, StoreError> {
    if let Some(w) = idempotency {
        if let Some(response) = (w.render)(&result) {
            let record = IdempotencyRecord {
                fingerprint: w.fingerprint,
                response,
                expires_at: w.expires_at,
            };
            put_idempotency(t, &w.scope, &w.key, &record)?;
        }
    }
    Ok(result)
}

fn put_idempotency(
    t: &mut Tables<'_>,
    scope: &str,
    key: &str,
    record: &IdempotencyRecord,
) -> Result<(), StoreError> {
    t.idempotency
        .insert((scope, key), codec::encode(record).as_slice())
        .map_err(storage_err)?;
    t.idempotency_expiry
        .insert((record.expires_at, scope, key), ())
        .map_err(storage_err)?;
    Ok(())
}

fn sweep_idempotency(t: &mut Tables<'_>, now: i64) -> Result<u64, StoreError> {
    let mut expired = Vec::new();
    for entry in t
        .idempotency_expiry
        .range((i64::MIN, "", "")..=(now, "\u{10FFFF}", "\u{10FFFF}"))
        .map_err(storage_err)?
    {
        let (key, _) = entry.map_err(storage_err)?;
        let (at, scope, k) = key.value();
        expired.push((at, scope.to_string(), k.to_string()));
    }
    for (at, scope, key) in &expired {
        t.idempotency_expiry
            .remove((*at, scope.as_str(), key.as_str()))
            .map_err(storage_err)?;
        // A key re-stored later has a newer expiry entry; only delete a record
        // that this entry describes.
        let current = match t
            .idempotency
            .get((scope.as_str(), key.as_str()))
            .map_err(storage_err)?
        {
            Some(bytes) => codec::decode::<IdempotencyRecord>(bytes.value()).ok(),
            None => None,
        };
        if current.is_some_and(|r| r.expires_at <= now) {
            t.idempotency
                .remove((scope.as_str(), key.as_str()))
                .map_err(storage_err)?;
        }
    }
    Ok(expired.len() as u64)
}

fn create_order(
    t: &mut Tables<'_>,
    mut order: Order,
    first: crate::domain::HistoryEntry,
    coupon: Option<&CouponClaim>,
) -> Result<OpResult, StoreError> {
    if let Some(claim) = coupon {
        let global = get_u64(&t.coupon_uses, claim.code.as_str())?;
        if claim.max_uses.is_some_and(|max| global >= max) {
            return Ok(Err(OpError::CouponLimit("LIMIT_GLOBAL_REACHED")));
        }
        let mine = t
            .coupon_user_uses
            .get((claim.code.as_str(), order.user_id.as_str()))
            .map_err(storage_err)?
            .map(|v| v.value())
            .unwrap_or(0);
        if claim.max_uses_per_user.is_some_and(|max| mine >= max) {
            return Ok(Err(OpError::CouponLimit("LIMIT_PER_USER_REACHED")));
        }
        t.coupon_uses
            .insert(claim.code.as_str(), global + 1)
            .map_err(storage_err)?;
        t.coupon_user_uses
            .insert((claim.code.as_str(), order.user_id.as_str()), mine + 1)
            .map_err(storage_err)?;
        order.coupon_counted = true;
    }
    let seq = get_u64(&t.meta, tables::META_ORDER_SEQ)? + 1;
    t.meta
        .insert(tables::META_ORDER_SEQ, seq)
        .map_err(storage_err)?;
    order.seq = seq;
    order.history_len = 1;
    let id = order.id.as_u128();
    t.history
        .insert((seq, 0), codec::encode(&first).as_slice())
        .map_err(storage_err)?;
    t.by_seq.insert(seq, id).map_err(storage_err)?;
    bump(t, CountScope::All, 1)?;
    index_status(t, &order, order.status, 1)?;
    t.orders
        .insert(id, codec::encode(&order).as_slice())
        .map_err(storage_err)?;
    Ok(Ok(OrderRecord { order, task: None }))
}

fn transition(
    t: &mut Tables<'_>,
    id: u128,
    event: Event,
    note: Note,
    owner: Option<&str>,
    now: Millis,
) -> Result<OpResult, StoreError> {
    let Some(mut order) = load_order(t, id)? else {
        return Ok(Err(OpError::OrderNotFound));
    };
    if owner.is_some_and(|o| o != order.user_id) {
        return Ok(Err(OpError::NotOwner));
    }
    let mut task = load_task(t, id)?;
    let before = order.status;
    let row = match lifecycle::apply(&mut order, event, note, now) {
        Ok(row) => row,
        Err(conflict) => return Ok(Err(OpError::Conflict(conflict))),
    };
    match event {
        Event::Paid => task = Some(ProvisioningTask::for_paid_order(&order, now)),
        Event::Cancel if order.coupon_counted => {
            release_coupon(t, &order)?;
            order.coupon_counted = false;
        }
        Event::RetryProvisioning => {
            let mut fresh = task.unwrap_or_else(|| ProvisioningTask::for_paid_order(&order, now));
            restart_task(&mut fresh, now);
            task = Some(fresh);
        }
        _ => {}
    }
    if let Some(task) = &task {
        write_task(t, task)?;
    }
    write_order_change(t, &order, before, &row)?;
    Ok(Ok(OrderRecord { order, task }))
}

/// retry-provisioning: a fresh attempt budget and no stale error, keeping the
/// droplet fields so the provisioner can adopt or replace the droplet.
fn restart_task(task: &mut ProvisioningTask, now: Millis) {
    task.status = ProvisioningStatus::Pending;
    task.revision += 1;
    task.attempts = 0;
    task.error_code = None;
    task.error_message = None;
    task.not_found_streak = 0;
    task.completed_at = None;
    task.updated_at = now;
}

fn save_task(
    t: &mut Tables<'_>,
    mut task: ProvisioningTask,
    events: Vec<(Event, Note)>,
    now: Millis,
) -> Result<OpResult, StoreError> {
    let id = task.order_id.as_u128();
    let Some(mut order) = load_order(t, id)? else {
        return Ok(Err(OpError::OrderNotFound));
    };
    let stored = load_task(t, id)?;
    if stored.as_ref().map(|s| s.revision) != Some(task.revision) {
        return Ok(Err(OpError::StaleTask));
    }
    task.revision += 1;
    task.updated_at = now;
    // Apply every event in memory first, so a conflict writes nothing at all.
    let mut changes = Vec::with_capacity(events.len());
    for (event, note) in events {
        let before = order.status;
        match lifecycle::apply(&mut order, event, note, now) {
            Ok(row) => changes.push((before, order.clone(), row)),
            Err(conflict) => return Ok(Err(OpError::Conflict(conflict))),
        }
    }
    for (before, state, row) in &changes {
        write_order_change(t, state, *before, row)?;
    }
    write_task(t, &task)?;
    Ok(Ok(OrderRecord {
        order,
        task: Some(task),
    }))
}

fn write_task(t: &mut Tables<'_>, task: &ProvisioningTask) -> Result<(), StoreError> {
    let id = task.order_id.as_u128();
    t.tasks
        .insert(id, codec::encode(task).as_slice())
        .map_err(storage_err)?;
    if task.is_open() {
        t.open_tasks.insert(id, ()).map_err(storage_err)?;
    } else {
        t.open_tasks.remove(id).map_err(storage_err)?;
    }
    Ok(())
}

/// Writes the order, its new history row, and moves its status index entries.
fn write_order_change(
    t: &mut Tables<'_>,
    order: &Order,
    before: OrderStatus,
    row: &crate::domain::HistoryEntry,
) -> Result<(), StoreError> {
    let id = order.id.as_u128();
    let row_no = order.history_len.saturating_sub(1);
    t.history
        .insert((order.seq, row_no), codec::encode(row).as_slice())
        .map_err(storage_err)?;
    if before != order.status {
        index_status(t, order, before, -1)?;
        index_status(t, order, order.status, 1)?;
    }
    t.orders
        .insert(id, codec::encode(order).as_slice())
        .map_err(storage_err)?;
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
    let id = order.id.as_u128();
    if delta > 0 {
        t.by_status.insert((code, seq), id).map_err(storage_err)?;
        t.by_user_status
            .insert((user, code, seq), id)
            .map_err(storage_err)?;
    } else {
        t.by_status.remove((code, seq)).map_err(storage_err)?;
        t.by_user_status
            .remove((user, code, seq))
            .map_err(storage_err)?;
    }
    bump(t, CountScope::Status(code), delta)?;
    bump(t, CountScope::UserStatus(user, code), delta)
}

fn bump(t: &mut Tables<'_>, scope: CountScope<'_>, delta: i64) -> Result<(), StoreError> {
    let key = count_key(scope);
    let current = get_u64(&t.counts, key.as_str())?;
    let next = current.saturating_add_signed(delta);
    if next == 0 {
        t.counts.remove(key.as_str()).map_err(storage_err)?;
    } else {
        t.counts.insert(key.as_str(), next).map_err(storage_err)?;
    }
    Ok(())
}

fn release_coupon(t: &mut Tables<'_>, order: &Order) -> Result<(), StoreError> {
    let Some(code) = order.pricing.coupon_code.as_deref() else {
        return Ok(());
    };
    let global = get_u64(&t.coupon_uses, code)?;
    t.coupon_uses
        .insert(code, global.saturating_sub(1))
        .map_err(storage_err)?;
    let user_key = (code, order.user_id.as_str());
    let mine = t
        .coupon_user_uses
        .get(user_key)
        .map_err(storage_err)?
        .map(|v| v.value())
        .unwrap_or(0);
    t.coupon_user_uses
        .insert(user_key, mine.saturating_sub(1))
        .map_err(storage_err)?;
    Ok(())
}

fn get_u64(table: &Table<'_, &'static str, u64>, key: &str) -> Result<u64, StoreError> {
    Ok(table
        .get(key)
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
    use crate::domain::lifecycle::{self, Note};
    use crate::domain::{HistoryEntry, OrderStatus};
    use crate::store::Store;
    use uuid::Uuid;

    fn new_order(user: &str) -> (Order, HistoryEntry) {
        let mut order = crate::domain::order::test_order(user);
        let first = lifecycle::first_entry(&mut order, format!("user:{user}"), 1);
        (order, first)
    }

    fn create(order: Order, first: HistoryEntry) -> Work {
        Work::Op(WriteOp::CreateOrder {
            order: Box::new(order),
            first,
            coupon: None,
            idempotency: None,
        })
    }

    fn pay(id: Uuid) -> Work {
        Work::Op(WriteOp::Transition {
            order_id: id,
            event: Event::Paid,
            note: Note {
                actor: "admin".into(),
                ..Note::default()
            },
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
        let (x, first) = new_order("alice");
        let x_id = x.id;
        let (y, y_first) = new_order("bob");
        let y_id = y.id;
        let faults = AtomicU32::new(0);
        commit_batch(&store.database().unwrap(), vec![create(x, first)], &faults).unwrap();
        let results = commit_batch(
            &store.database().unwrap(),
            vec![pay(x_id), pay(x_id), create(y, y_first)],
            &faults,
        )
        .unwrap();
        assert!(op_result(&results[0]).is_ok());
        assert!(matches!(op_result(&results[1]), Err(OpError::Conflict(_))));
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
        let (a, a_first) = new_order("alice");
        let (b, b_first) = new_order("bob");
        let (a_id, b_id) = (a.id, b.id);
        let faults = AtomicU32::new(1);
        let result = commit_batch(
            &store.database().unwrap(),
            vec![create(a, a_first), create(b, b_first)],
            &faults,
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
            .list_orders(&crate::store::read::ListQuery {
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
