//! The write path on PostgreSQL: each operation is one transaction on a
//! pooled connection, decided by the same code as on redb
//! ([`super::super::apply`]) through [`PgTxn`]. The order's row is locked
//! (`FOR UPDATE`) before anything is decided, so two instances changing
//! one order take turns and the second decides on what the first wrote;
//! coupon rows are locked the same way, so limits hold across instances.

use std::time::SystemTime;

use uuid::Uuid;

use super::conn::{pg_err, stamp};
use super::outbox::queue_events;
use super::sql;
pub use super::txn::PgTxn;
use crate::backend::store::apply::OrderTxn;
use crate::backend::store::outbox::StoredEvent;
use crate::backend::store::{codec, corrupt, IdempotencyRecord, StoreError};
use crate::domain::coupon::{CouponClaim, CouponUses};
use crate::domain::customer_action::CustomerAction;
use crate::domain::lifecycle::{Change, CouponEffect, OutEvent, TaskEffect};
use crate::domain::task::ProvisioningTask;
use crate::domain::time::{now_millis, Millis};
use crate::domain::webhook::{Outbox, OutboxEvent};
use crate::domain::{HistoryEntry, Order, OrderItem, OrderRecord, OrderStatus};

impl PgTxn<'_, '_> {
    /// The order's row, its new history rows and (new order) its items, in
    /// one statement ([`sql::ORDER_WRITE`]); then its new renewals.
    fn write_order(&mut self, change: &Change, account: Option<&str>) -> Result<(), StoreError> {
        let order = &change.order;
        let first_row = order
            .history_len
            .saturating_sub(u32::try_from(change.history.len()).unwrap_or(u32::MAX));
        let history = HistoryColumns::of(first_row, &change.history);
        let no_items: &[OrderItem] = &[];
        let items = ItemColumns::of(match change.previous_status {
            // Items never change: written once, with the new order.
            None => &order.items,
            Some(_) => no_items,
        });
        let write = self.stmt(sql::ORDER_WRITE)?;
        self.tx
            .execute(
                &write,
                &[
                    &order.id,
                    &(order.seq as i64),
                    &order.user_id,
                    &order.status.as_str(),
                    &order.plan_id,
                    &order.image_id,
                    &(order.pricing.final_price as i64),
                    &order.pricing.currency,
                    &order.pricing.coupon_code,
                    &order.coupon_counted,
                    &stamp(order.created_at),
                    &order.created_at,
                    &order.paid_at.map(stamp),
                    &order.term.expires_at.map(stamp),
                    &order.term.next_due,
                    &account,
                    &codec::encode(order),
                    &history.no,
                    &history.at,
                    &history.from,
                    &history.to,
                    &history.actor,
                    &history.reason,
                    &history.record,
                    &items.no,
                    &items.id,
                    &items.kind,
                    &items.reference,
                    &items.description,
                    &items.unit_price,
                    &items.quantity,
                    &items.total,
                ],
            )
            .map_err(pg_err)?;
        self.write_renewals(order)
    }

    fn write_renewals(&mut self, order: &Order) -> Result<(), StoreError> {
        let known = self.renewals.get(&order.id).copied().unwrap_or(0);
        if order.term.renewals.len() <= known {
            return Ok(());
        }
        let row = self.stmt(sql::RENEWAL_ROW)?;
        for (no, r) in order.term.renewals.iter().enumerate().skip(known) {
            self.tx
                .execute(
                    &row,
                    &[
                        &order.id,
                        &(no as i32),
                        &r.id,
                        &r.renewal_type.as_str(),
                        &(r.periods as i32),
                        &(r.amount as i64),
                        &stamp(r.new_expiry),
                        &r.actor.render(),
                        &stamp(r.created_at),
                    ],
                )
                .map_err(pg_err)?;
        }
        self.renewals.insert(order.id, order.term.renewals.len());
        Ok(())
    }

    fn put_task(&mut self, task: &ProvisioningTask) -> Result<(), StoreError> {
        let stmt = self.stmt(sql::TASK_PUT)?;
        let droplet = task.droplet.as_ref();
        let (open, owes) = (task.is_open(), task.owes_droplet_work());
        self.tx
            .execute(
                &stmt,
                &[
                    &task.order_id,
                    &task.status.as_str(),
                    &task.do_account,
                    &droplet.map(|d| d.id as i64),
                    &droplet.and_then(|d| d.ipv4_public.clone()),
                    &(task.revision as i64),
                    &open,
                    &owes,
                    &stamp(task.updated_at),
                    &codec::encode(task),
                ],
            )
            .map_err(pg_err)?;
        if let Some(action) = &task.customer_action {
            self.put_action(task.order_id, action)?;
        }
        self.wakes_reconciler |= open || owes;
        self.tasks.insert(task.order_id, Some(task.clone()));
        Ok(())
    }

    fn query_u64(
        &mut self,
        sql: &'static str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        let stmt = self.stmt(sql)?;
        let row = self.tx.query_one(&stmt, params).map_err(pg_err)?;
        let n: i64 = row.try_get(0).map_err(pg_err)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

impl OrderTxn for PgTxn<'_, '_> {
    fn load_order(&mut self, id: Uuid) -> Result<Option<Order>, StoreError> {
        let stmt = self.stmt(sql::ORDER_FOR_UPDATE)?;
        let Some(row) = self.tx.query_opt(&stmt, &[&id]).map_err(pg_err)? else {
            return Ok(None);
        };
        let bytes: &[u8] = row.try_get(0).map_err(pg_err)?;
        let order: Order = codec::decode(bytes).map_err(corrupt)?;
        self.renewals.insert(id, order.term.renewals.len());
        self.statuses.insert(id, order.status);
        Ok(Some(order))
    }

    fn load_task(&mut self, id: Uuid) -> Result<Option<ProvisioningTask>, StoreError> {
        if let Some(known) = self.tasks.get(&id) {
            return Ok(known.clone());
        }
        let stmt = self.stmt(sql::TASK)?;
        let task = match self.tx.query_opt(&stmt, &[&id]).map_err(pg_err)? {
            Some(row) => {
                let bytes: &[u8] = row.try_get(0).map_err(pg_err)?;
                Some(codec::decode::<ProvisioningTask>(bytes).map_err(corrupt)?)
            }
            None => None,
        };
        self.tasks.insert(id, task.clone());
        Ok(task)
    }

    /// On a shared database the count is the orders themselves (those
    /// holding the code with `coupon_counted`), not a counter row: a row
    /// every order with the coupon updated would make them take turns
    /// through each commit's flush. A coupon with a limit takes turns on an
    /// advisory lock of its code instead, held to the commit, so its count
    /// is exact across instances; one without takes no lock at all.
    fn coupon_uses(&mut self, claim: &CouponClaim, user: &str) -> Result<CouponUses, StoreError> {
        if claim.max_uses.is_none() && claim.max_uses_per_user.is_none() {
            return Ok(CouponUses {
                global: 0,
                by_user: 0,
            });
        }
        let lock = self.stmt(sql::COUPON_LOCK)?;
        self.tx.execute(&lock, &[&claim.code]).map_err(pg_err)?;
        let count = self.stmt(sql::COUPON_COUNT)?;
        let row = self
            .tx
            .query_one(&count, &[&claim.code, &user])
            .map_err(pg_err)?;
        let (global, mine): (i64, i64) = (
            row.try_get(0).map_err(pg_err)?,
            row.try_get(1).map_err(pg_err)?,
        );
        Ok(CouponUses {
            global: u64::try_from(global).unwrap_or(0),
            by_user: u64::try_from(mine).unwrap_or(0),
        })
    }

    fn count_coupon(
        &mut self,
        _claim: &CouponClaim,
        _user: &str,
        _uses: CouponUses,
    ) -> Result<(), StoreError> {
        // The order written with `coupon_counted` is the count.
        Ok(())
    }

    fn next_order_seq(&mut self) -> Result<u64, StoreError> {
        self.query_u64(sql::NEXT_ORDER_SEQ, &[])
    }

    fn persist(&mut self, change: &Change) -> Result<(), StoreError> {
        let order = &change.order;
        let written = match &change.task {
            TaskEffect::Write(task) => Some(task.as_ref().clone()),
            TaskEffect::Unchanged => None,
        };
        let task = match (&written, change.previous_status) {
            (Some(task), _) => Some(task.clone()),
            (None, Some(_)) => self.load_task(order.id)?,
            (None, None) => None,
        };
        let account = task
            .as_ref()
            .and_then(|t| t.live_account(order.status))
            .map(str::to_string);
        self.write_order(change, account.as_deref())?;
        if let Some(task) = &written {
            self.put_task(task)?;
        }
        self.statuses.insert(order.id, order.status);
        if change.previous_status != Some(order.status) && order.status == OrderStatus::Paid {
            self.wakes_reconciler = true;
        }
        // A released redemption is the order's `coupon_counted` turned off
        // (`CouponEffect::Release`), written with the order above.
        Ok(())
    }

    fn write_task(&mut self, task: &ProvisioningTask) -> Result<(), StoreError> {
        self.put_task(task)?;
        // A task saved on its own can still move its order on or off an
        // account (a droplet made, deleted).
        let Some(status) = self.statuses.get(&task.order_id).copied() else {
            return Ok(());
        };
        let stmt = self.stmt(sql::LIVE_ACCOUNT_SET)?;
        self.tx
            .execute(&stmt, &[&task.order_id, &task.live_account(status)])
            .map_err(pg_err)?;
        Ok(())
    }
    fn record_events(
        &mut self,
        outbox: &Outbox,
        record: &OrderRecord,
        events: &[OutEvent],
        now: Millis,
    ) -> Result<(), StoreError> {
        self.queued += queue_events(self, outbox, record, events, now)?;
        Ok(())
    }

    fn put_idempotency(
        &mut self,
        scope: &str,
        key: &str,
        record: &IdempotencyRecord,
    ) -> Result<bool, StoreError> {
        let stmt = self.stmt(sql::KEY_PUT)?;
        let stored = self
            .tx
            .query_opt(
                &stmt,
                &[
                    &scope,
                    &key,
                    &record.expires_at,
                    &codec::encode(record),
                    &now_millis(),
                ],
            )
            .map_err(pg_err)?;
        Ok(stored.is_some())
    }
}

/// Copying a data file in (`vpsd store copy`, SPEC §15): each row goes
/// through the same writers as the live path, so a copied order is stored
/// exactly as one written here would be.
impl PgTxn<'_, '_> {
    /// One order as the file holds it: its record (same id and sequence),
    /// items, renewals, every history row, its task and every customer
    /// action. `history` must be rows `0..history_len`, in order.
    pub fn copy_order(
        &mut self,
        record: &OrderRecord,
        history: &[HistoryEntry],
        actions: &[CustomerAction],
    ) -> Result<(), StoreError> {
        let order = &record.order;
        // A change from nothing to the order with every row: the live path
        // writes a new order's row, items and renewals from exactly this.
        let change = Change {
            order: order.clone(),
            previous_status: None,
            previous_due: None,
            history: history.to_vec(),
            task: TaskEffect::Unchanged,
            coupon: CouponEffect::None,
            events: Vec::new(),
        };
        let account = record
            .task
            .as_ref()
            .and_then(|t| t.live_account(order.status));
        self.write_order(&change, account)?;
        let written = match &record.task {
            Some(task) => {
                self.put_task(task)?;
                task.customer_action.as_ref().map(|a| a.no)
            }
            None => None,
        };
        // The task's copy of its last action was written with it.
        for action in actions.iter().filter(|a| Some(a.no) != written) {
            self.put_action(order.id, action)?;
        }
        Ok(())
    }

    /// One row of an order's customer actions (the statement `put_task`
    /// writes the task's last action with).
    fn put_action(&mut self, order_id: Uuid, action: &CustomerAction) -> Result<(), StoreError> {
        let put = self.stmt(sql::ACTION_PUT)?;
        self.tx
            .execute(
                &put,
                &[
                    &order_id,
                    &(action.no as i32),
                    &action.id,
                    &action.kind.as_str(),
                    &action.status.as_str(),
                    &action.requested_by,
                    &stamp(action.created_at),
                    &codec::encode(action),
                ],
            )
            .map_err(pg_err)?;
        Ok(())
    }

    /// An outbox event with the deliveries it lists (written after it, by
    /// `outbox::put_delivery`).
    pub fn copy_event(&mut self, event: &OutboxEvent) -> Result<(), StoreError> {
        let put = self.stmt(sql::EVENT_PUT)?;
        self.tx
            .execute(
                &put,
                &[
                    &event.id,
                    &event.record.order.id,
                    &event.kind.as_str(),
                    &stamp(event.committed_at),
                    &codec::encode(&StoredEvent::from_event(event)),
                ],
            )
            .map_err(pg_err)?;
        Ok(())
    }
}

/// History rows as [`sql::ORDER_WRITE`] takes them: one array per column.
struct HistoryColumns<'a> {
    no: Vec<i32>,
    at: Vec<SystemTime>,
    from: Vec<Option<&'static str>>,
    to: Vec<&'static str>,
    actor: Vec<String>,
    reason: Vec<Option<&'a str>>,
    record: Vec<Vec<u8>>,
}

impl<'a> HistoryColumns<'a> {
    /// `rows` numbered from `first`.
    fn of(first: u32, rows: &'a [HistoryEntry]) -> Self {
        HistoryColumns {
            no: (first..).take(rows.len()).map(|no| no as i32).collect(),
            at: rows.iter().map(|r| stamp(r.created_at)).collect(),
            from: rows
                .iter()
                .map(|r| r.previous_status.map(|s| s.as_str()))
                .collect(),
            to: rows.iter().map(|r| r.new_status.as_str()).collect(),
            actor: rows.iter().map(|r| r.actor.render()).collect(),
            reason: rows.iter().map(|r| r.reason.as_deref()).collect(),
            record: rows.iter().map(codec::encode).collect(),
        }
    }
}

/// Item rows as [`sql::ORDER_WRITE`] takes them: one array per column.
struct ItemColumns<'a> {
    no: Vec<i32>,
    id: Vec<Uuid>,
    kind: Vec<&'static str>,
    reference: Vec<&'a str>,
    description: Vec<&'a str>,
    unit_price: Vec<i64>,
    quantity: Vec<i32>,
    total: Vec<i64>,
}

impl<'a> ItemColumns<'a> {
    fn of(items: &'a [OrderItem]) -> Self {
        ItemColumns {
            no: (0..items.len()).map(|no| no as i32).collect(),
            id: items.iter().map(|it| it.id).collect(),
            kind: items.iter().map(|it| it.item_type.as_str()).collect(),
            reference: items.iter().map(|it| it.reference_id.as_str()).collect(),
            description: items.iter().map(|it| it.description.as_str()).collect(),
            unit_price: items.iter().map(|it| it.unit_price as i64).collect(),
            quantity: items.iter().map(|it| it.quantity as i32).collect(),
            total: items.iter().map(|it| it.total_price as i64).collect(),
        }
    }
}
