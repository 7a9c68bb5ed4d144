//! Applying one queued operation to the tables of the open transaction. Each
//! operation reads what the domain needs (the stored order and task, the
//! coupon counters), asks the domain (`lifecycle::decide`, the coupon limit,
//! ownership, what an idempotency key keeps, what a task save announces) and
//! writes the answer through [`persist`]. Every precondition is checked before
//! the first write, so a refused operation leaves no trace and the rest of its
//! batch still commits.

use super::outbox;
use super::persist::{get_user_uses, load_order, load_task, persist, write_task};
use super::tables::{self, CountScope};
use super::txn::{bump, get_u64, Tables};
use super::{
    idempotency, storage_err, IdempotencyRecord, IdempotencyWrite, Maintenance, OpResult,
    OrderRecord, Rules, StoreError, WriteOp,
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
use crate::domain::Actor;

/// One operation of a batch; a storage error fails the whole batch.
pub(super) fn apply(
    t: &mut Tables<'_>,
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
                id: order_id.as_u128(),
                owner: owner.as_deref(),
            };
            let result = apply_command(t, target, command, &actor, rules)?;
            finish(t, result, idempotency)
        }
        WriteOp::SaveTask { task, commands } => save_task(t, *task, commands, rules),
    }
}

/// One housekeeping job; returns how many records it touched.
pub(super) fn maintain(
    t: &mut Tables<'_>,
    work: Maintenance,
    rules: &Rules,
) -> Result<u64, StoreError> {
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

/// Keeps the outcome under its idempotency key, in this transaction, when
/// the domain says a repeat of the request would meet the same answer.
fn finish(
    t: &mut Tables<'_>,
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
        idempotency::put(t, &w.scope, &w.key, &record)?;
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

/// Counts one redemption unless the domain finds a limit reached (read and
/// counted in the order's own transaction, so limits hold under concurrent
/// orders).
fn claim_coupon(
    t: &mut Tables<'_>,
    claim: &CouponClaim,
    user: &str,
) -> Result<Result<(), CouponLimit>, StoreError> {
    let uses = CouponUses {
        global: get_u64(&t.coupon_uses, claim.code.as_str())?,
        by_user: get_user_uses(t, &claim.code, user)?,
    };
    if let Err(limit) = claim.admits(uses) {
        return Ok(Err(limit));
    }
    t.coupon_uses
        .insert(claim.code.as_str(), uses.global + 1)
        .map_err(storage_err)?;
    t.coupon_user_uses
        .insert((claim.code.as_str(), user), uses.by_user + 1)
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
    if let Err(refused) = check_owner(&order, target.owner) {
        return Ok(Err(refused));
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

/// The provisioner's save: refused with StaleTask unless the stored task is
/// still the one it read; then the system commands it implies, decided in
/// order on the order as each leaves it.
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
        (None, Some(task)) => write_task(t, task)?,
        (_, None) => {}
    }
    for change in &changes {
        persist(t, change)?;
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
