//! Applying one queued operation inside an open transaction. Each operation
//! reads what the domain needs (the stored order and task, the coupon
//! counters), asks the domain (`lifecycle::decide`, the coupon limit,
//! ownership, what an idempotency key keeps, what a task save announces) and
//! writes the answer. Every precondition is checked before the first write,
//! so a refused operation leaves no trace and the rest of its batch still
//! commits.
//!
//! The deciding code is the same for every backend: it reads and writes
//! through [`OrderTxn`], which the redb tables and a PostgreSQL transaction
//! each implement, so "decided on the stored state, written by one path"
//! holds whichever stores the rows.

use uuid::Uuid;

use super::{
    IdempotencyRecord, IdempotencyWrite, OpResult, OrderRecord, Rules, StoreError, WriteOp,
};
use crate::domain::access::check_owner;
use crate::domain::coupon::{CouponClaim, CouponUses};
use crate::domain::effects::task_save_events;
use crate::domain::error::{CouponLimit, Rejection};
use crate::domain::lifecycle::{self, Change, Command, OutEvent, TaskEffect};
use crate::domain::replay::kept_outcome;
use crate::domain::task::ProvisioningTask;
use crate::domain::time::{now_millis, Millis};
use crate::domain::webhook::Outbox;
use crate::domain::{Actor, Order};

/// What applying an operation reads and writes, inside one transaction of
/// one backend. Reads see the transaction's own writes; on a shared
/// database, [`OrderTxn::load_order`] also holds the order against other
/// writers until the transaction ends.
pub(crate) trait OrderTxn {
    fn load_order(&mut self, id: Uuid) -> Result<Option<Order>, StoreError>;
    fn load_task(&mut self, id: Uuid) -> Result<Option<ProvisioningTask>, StoreError>;
    /// The coupon's redemptions so far, held against other claims of it
    /// until the transaction ends.
    fn coupon_uses(&mut self, claim: &CouponClaim, user: &str) -> Result<CouponUses, StoreError>;
    /// Counts one more redemption over `uses` (as just read). The new
    /// order, persisted with `coupon_counted`, is counted with it.
    fn count_coupon(
        &mut self,
        claim: &CouponClaim,
        user: &str,
        uses: CouponUses,
    ) -> Result<(), StoreError>;
    /// The next order sequence: orders sort newest first by it.
    fn next_order_seq(&mut self) -> Result<u64, StoreError>;
    /// Writes a change: history rows, the order, the task it writes, the
    /// coupon it releases, and whatever the backend indexes from them.
    fn persist(&mut self, change: &Change) -> Result<(), StoreError>;
    /// Writes a task no change came with.
    fn write_task(&mut self, task: &ProvisioningTask) -> Result<(), StoreError>;
    /// Queues the events of a committed change for their endpoints.
    fn record_events(
        &mut self,
        outbox: &Outbox,
        record: &OrderRecord,
        events: &[OutEvent],
        now: Millis,
    ) -> Result<(), StoreError>;
    /// Stores an outcome under its idempotency key. `Ok(false)`: another
    /// instance holds the live key (a shared database only); the caller
    /// refuses and the transaction must not commit.
    fn put_idempotency(
        &mut self,
        scope: &str,
        key: &str,
        record: &IdempotencyRecord,
    ) -> Result<bool, StoreError>;
}

/// One operation of a batch; a storage error fails the whole batch.
pub(crate) fn apply(
    t: &mut impl OrderTxn,
    op: WriteOp,
    rules: &Rules,
) -> Result<OpResult, StoreError> {
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
                id: order_id,
                owner: owner.as_deref(),
            };
            let result = apply_command(t, target, command, &actor, rules)?;
            finish(t, result, idempotency)
        }
        WriteOp::SaveTask { task, commands } => save_task(t, *task, commands, rules),
        WriteOp::Import { change } => import_order(t, *change),
    }
}

fn import_order(t: &mut impl OrderTxn, mut change: Change) -> Result<OpResult, StoreError> {
    if t.load_order(change.order.id)?.is_some() {
        return Ok(Err(Rejection::AlreadyStored));
    }
    change.order.seq = t.next_order_seq()?;
    t.persist(&change)?;
    let task = match change.task {
        TaskEffect::Write(task) => Some(*task),
        TaskEffect::Unchanged => None,
    };
    Ok(Ok(OrderRecord {
        order: change.order,
        task,
    }))
}

/// Keeps the outcome under its idempotency key, in this transaction, when
/// the domain says a repeat of the request would meet the same answer.
fn finish(
    t: &mut impl OrderTxn,
    result: OpResult,
    idempotency: Option<IdempotencyWrite>,
) -> Result<OpResult, StoreError> {
    let Some(w) = idempotency else {
        return Ok(result);
    };
    if let Some(outcome) = kept_outcome(&result) {
        let record = IdempotencyRecord {
            fingerprint: w.fingerprint,
            outcome,
            expires_at: w.expires_at,
        };
        if !t.put_idempotency(&w.scope, &w.key, &record)? {
            return Ok(Err(Rejection::KeyInUse));
        }
    }
    Ok(result)
}

fn create_order(
    t: &mut impl OrderTxn,
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
    change.order.seq = t.next_order_seq()?;
    t.persist(&change)?;
    let record = OrderRecord {
        order: change.order,
        task: None,
    };
    announce(t, outbox, &record, &change.events)?;
    Ok(Ok(record))
}

/// Counts one redemption unless the domain finds a limit reached (read and
/// counted in the order's own transaction, so limits hold under concurrent
/// orders).
fn claim_coupon(
    t: &mut impl OrderTxn,
    claim: &CouponClaim,
    user: &str,
) -> Result<Result<(), CouponLimit>, StoreError> {
    let uses = t.coupon_uses(claim, user)?;
    if let Err(limit) = claim.admits(uses) {
        return Ok(Err(limit));
    }
    t.count_coupon(claim, user, uses)?;
    Ok(Ok(()))
}

/// The order a command is for, and the user it must belong to (user routes).
struct Target<'a> {
    id: Uuid,
    owner: Option<&'a str>,
}

fn apply_command(
    t: &mut impl OrderTxn,
    target: Target<'_>,
    command: Command,
    actor: &Actor,
    rules: &Rules,
) -> Result<OpResult, StoreError> {
    let Some(order) = t.load_order(target.id)? else {
        return Ok(Err(Rejection::OrderNotFound));
    };
    if let Err(refused) = check_owner(&order, target.owner) {
        return Ok(Err(refused));
    }
    let record = OrderRecord {
        order,
        task: t.load_task(target.id)?,
    };
    let change = match lifecycle::decide(&record, command, actor, now_millis(), &rules.policy) {
        Ok(change) => change,
        Err(refused) => return Ok(Err(Rejection::Refused(refused))),
    };
    t.persist(&change)?;
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

/// The provisioner's save: refused with StaleTask unless the stored task is
/// still the one it read; then the system commands it implies, decided in
/// order on the order as each leaves it.
fn save_task(
    t: &mut impl OrderTxn,
    mut task: ProvisioningTask,
    commands: Vec<Command>,
    rules: &Rules,
) -> Result<OpResult, StoreError> {
    let now = now_millis();
    let id = task.order_id;
    let Some(order) = t.load_order(id)? else {
        return Ok(Err(Rejection::OrderNotFound));
    };
    let stored = t.load_task(id)?;
    if stored.as_ref().map(|s| s.revision) != Some(task.revision) {
        return Ok(Err(Rejection::StaleTask));
    }
    task.revision += 1;
    task.updated_at = now;
    let mut record = OrderRecord {
        order,
        task: Some(task),
    };
    let mut changes = match decide_all(&mut record, commands, now, rules) {
        Ok(changes) => changes,
        Err(refused) => return Ok(Err(refused)),
    };
    // The task as this save leaves it is written once: with the last change,
    // or on its own when no command came with the save (then there is no
    // change to persist).
    for change in &mut changes {
        change.task = TaskEffect::Unchanged;
    }
    match (changes.last_mut(), &record.task) {
        (Some(last), Some(task)) => last.task = TaskEffect::Write(Box::new(task.clone())),
        (None, Some(task)) => t.write_task(task)?,
        (_, None) => {}
    }
    for change in &changes {
        t.persist(change)?;
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
    let implied = task_save_events(stored.as_ref(), record.task.as_ref());
    announce(t, &rules.outbox, &record, &implied)?;
    Ok(Ok(record))
}

/// Decides every command in memory first, so a refusal writes nothing at
/// all; `record` ends as the last change leaves it.
fn decide_all(
    record: &mut OrderRecord,
    commands: Vec<Command>,
    now: Millis,
    rules: &Rules,
) -> Result<Vec<Change>, Rejection> {
    let mut changes = Vec::with_capacity(commands.len());
    for command in commands {
        let change = lifecycle::decide(record, command, &Actor::System, now, &rules.policy)
            .map_err(Rejection::Refused)?;
        record.order = change.order.clone();
        if let TaskEffect::Write(task) = &change.task {
            record.task = Some((**task).clone());
        }
        changes.push(change);
    }
    Ok(changes)
}

/// Queues the change's events for the endpoints that take them.
fn announce(
    t: &mut impl OrderTxn,
    outbox: &Outbox,
    record: &OrderRecord,
    events: &[OutEvent],
) -> Result<(), StoreError> {
    if events.is_empty() || outbox.routes.is_empty() {
        return Ok(());
    }
    t.record_events(outbox, record, events, now_millis())
}
