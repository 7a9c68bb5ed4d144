//! Writing what the domain decided: a [`Change`] becomes its history rows,
//! the order, the task and the coupon counters, with every index and count
//! that follows from them kept in step (status index, per-status and
//! per-account counts, `due`, open tasks, pending droplet actions). Nothing here decides; it
//! only writes, and reads back what the applying code needs to ask domain.

use redb::ReadableTable;

use super::tables::CountScope;
use super::txn::{bump, get_u64, Tables};
use super::{codec, corrupt, storage_err, StoreError};
use crate::domain::lifecycle::{Change, CouponEffect, TaskEffect};
use crate::domain::task::ProvisioningTask;
use crate::domain::{Order, OrderStatus};

/// The one function that persists a [`Change`]: every write path (a new
/// order, a command on a stored one, the provisioner's task save) stores its
/// decisions through it, so a change is written the same way whoever made
/// it. Writes the order's part (history rows, the record, its status and due
/// index entries), the task when the change writes one, and gives back a
/// released coupon redemption.
pub(super) fn persist(t: &mut Tables<'_>, change: &Change) -> Result<(), StoreError> {
    let order = &change.order;
    let written = match &change.task {
        TaskEffect::Write(task) => Some(task.as_ref()),
        TaskEffect::Unchanged => None,
    };
    // Only a status change or a task write can move an order on or off an
    // account; anything else leaves the per-account counts alone.
    let moves = written.is_some() || change.previous_status != Some(order.status);
    let stored = match change.previous_status {
        Some(_) if moves => load_task(t, order.id.as_u128())?,
        _ => None,
    };
    persist_order(t, change)?;
    if let Some(task) = written {
        write_task(t, task)?;
    }
    if moves {
        let before = change
            .previous_status
            .zip(stored.as_ref())
            .and_then(|(status, task)| task.live_account(status));
        let after = written
            .or(stored.as_ref())
            .and_then(|task| task.live_account(order.status));
        if before != after {
            if let Some(name) = before {
                bump(t, CountScope::Account(name), -1);
            }
            if let Some(name) = after {
                bump(t, CountScope::Account(name), 1);
            }
        }
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

/// Writes a task with its work-list entries (open tasks, pending actions)
/// and its last customer action's row in the order's action list.
pub(super) fn write_task(t: &mut Tables<'_>, task: &ProvisioningTask) -> Result<(), StoreError> {
    let id = task.order_id.as_u128();
    t.tasks
        .insert(id, codec::encode(task).as_slice())
        .map_err(storage_err)?;
    if let Some(action) = &task.customer_action {
        t.customer_actions
            .insert((id, action.no), codec::encode(action).as_slice())
            .map_err(storage_err)?;
    }
    t.touched.push(id);
    if task.is_open() {
        t.open_tasks.insert(id, ()).map_err(storage_err)?;
    } else {
        t.open_tasks.remove(id).map_err(storage_err)?;
    }
    if task.owes_droplet_work() {
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
    bump(t, CountScope::Status(code), delta);
    bump(t, CountScope::UserStatus(user, code), delta);
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
    let mine = get_user_uses(t, code, &order.user_id)?;
    t.coupon_user_uses
        .insert((code, order.user_id.as_str()), mine.saturating_sub(1))
        .map_err(storage_err)?;
    Ok(())
}

/// Redemptions of `code` by `user` counted so far.
pub(super) fn get_user_uses(t: &Tables<'_>, code: &str, user: &str) -> Result<u64, StoreError> {
    Ok(t.coupon_user_uses
        .get((code, user))
        .map_err(storage_err)?
        .map(|v| v.value())
        .unwrap_or(0))
}

pub(super) fn load_order(t: &Tables<'_>, id: u128) -> Result<Option<Order>, StoreError> {
    match t.orders.get(id).map_err(storage_err)? {
        Some(bytes) => codec::decode(bytes.value()).map(Some).map_err(corrupt),
        None => Ok(None),
    }
}

pub(super) fn load_task(t: &Tables<'_>, id: u128) -> Result<Option<ProvisioningTask>, StoreError> {
    match t.tasks.get(id).map_err(storage_err)? {
        Some(bytes) => codec::decode(bytes.value()).map(Some).map_err(corrupt),
        None => Ok(None),
    }
}
