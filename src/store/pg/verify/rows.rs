//! `vpsd verify URL`: tasks, orders and the rows listed beside them (items,
//! renewals), the coupons orders count, and idempotency keys.

use std::collections::HashMap;
use std::time::SystemTime;

use postgres::{Row, Transaction};
use uuid::Uuid;

use super::super::conn::stamp;
use super::{each_row, Checks};
use crate::backend::store::IdempotencyRecord;
use crate::domain::task::ProvisioningTask;
use crate::domain::{Order, OrderStatus};

impl Checks {
    pub(super) fn task_row(&mut self, row: &Row) -> Result<(), postgres::Error> {
        let id: Uuid = row.try_get(0)?;
        self.report.tasks += 1;
        let Some(task) = self.decode::<ProvisioningTask>(row, 8, || format!("order {id}: task"))?
        else {
            return Ok(());
        };
        let droplet = task.droplet.as_ref();
        self.agree(id, "tasks.order_id", id, task.order_id);
        self.agree(id, "tasks.status", row.try_get(1)?, task.status.as_str());
        self.agree(
            id,
            "tasks.account",
            row.try_get(2)?,
            task.do_account.clone(),
        );
        let droplet_id = droplet.and_then(|d| i64::try_from(d.id).ok());
        self.agree(id, "tasks.droplet_id", row.try_get(3)?, droplet_id);
        let ipv4 = droplet.and_then(|d| d.ipv4_public.clone());
        self.agree(id, "tasks.ipv4", row.try_get(4)?, ipv4);
        let revision = i64::try_from(task.revision).ok();
        self.agree(id, "tasks.revision", row.try_get(5)?, revision);
        self.agree(id, "tasks.open", row.try_get(6)?, task.is_open());
        self.agree(
            id,
            "tasks.owes_work",
            row.try_get(7)?,
            task.owes_droplet_work(),
        );
        self.tasks.insert(id, task);
        Ok(())
    }

    pub(super) fn order_row(&mut self, row: &Row) -> Result<(), postgres::Error> {
        let id: Uuid = row.try_get(0)?;
        self.report.orders += 1;
        let seq: i64 = row.try_get(1)?;
        self.max_order_seq = self.max_order_seq.max(seq);
        let Some(order) = self.decode::<Order>(row, 14, || format!("order {id}"))? else {
            return Ok(());
        };
        self.agree(id, "orders.id", id, order.id);
        self.agree(
            id,
            "orders.seq",
            seq,
            i64::try_from(order.seq).unwrap_or(-1),
        );
        if order.seq == 0 {
            self.problem(format!("order {id}: sequence 0 (sequences start at 1)"));
        }
        self.agree(
            id,
            "orders.user_id",
            row.try_get(2)?,
            order.user_id.as_str(),
        );
        self.agree(id, "orders.status", row.try_get(3)?, order.status.as_str());
        self.agree(
            id,
            "orders.plan_id",
            row.try_get(4)?,
            order.plan_id.as_str(),
        );
        self.agree(
            id,
            "orders.image_id",
            row.try_get(5)?,
            order.image_id.as_str(),
        );
        let price = i64::try_from(order.pricing.final_price).ok();
        self.agree(id, "orders.final_price", row.try_get(6)?, price);
        self.agree(
            id,
            "orders.currency",
            row.try_get(7)?,
            order.pricing.currency.as_str(),
        );
        let coupon = order.pricing.coupon_code.as_deref();
        self.agree(id, "orders.coupon_code", row.try_get(8)?, coupon);
        self.coupon_columns(id, row, &order)?;
        self.agree(id, "orders.created_ms", row.try_get(9)?, order.created_at);
        let paid: Option<SystemTime> = row.try_get(10)?;
        self.agree(id, "orders.paid_at", paid, order.paid_at.map(stamp));
        let expires: Option<SystemTime> = row.try_get(11)?;
        self.agree(
            id,
            "orders.expires_at",
            expires,
            order.term.expires_at.map(stamp),
        );
        self.agree(
            id,
            "orders.next_due_ms",
            row.try_get(12)?,
            order.term.next_due,
        );
        let account = self
            .tasks
            .get(&id)
            .and_then(|t| t.live_account(order.status))
            .map(str::to_string);
        self.agree(id, "orders.live_account", row.try_get(13)?, account);
        let live = matches!(order.status, OrderStatus::Active | OrderStatus::Suspended);
        if order.term.next_due.is_some() && !live {
            self.problem(format!("order {id} is {} but has a due time", order.status));
        }
        self.orders.insert(id, order);
        Ok(())
    }

    /// Rows of `table` (items, renewals) are exactly the record's, by
    /// number and id.
    pub(super) fn listed_rows(
        &mut self,
        tx: &mut Transaction<'_>,
        table: &str,
        expected: impl Fn(&Order) -> Vec<Uuid>,
    ) -> Result<(), postgres::Error> {
        let mut rows: HashMap<Uuid, Vec<(i32, Uuid)>> = HashMap::new();
        let sql = format!("SELECT order_id, no, id FROM {table} ORDER BY order_id, no");
        each_row(tx, &sql, |row| {
            let entry = rows.entry(row.try_get(0)?).or_default();
            entry.push((row.try_get(1)?, row.try_get(2)?));
            Ok(())
        })?;
        let mut wrong = Vec::new();
        for (id, order) in &self.orders {
            let want: Vec<(i32, Uuid)> = (0..).zip(expected(order)).collect();
            let have = rows.remove(id).unwrap_or_default();
            if table == "order_items" {
                self.report.items += have.len() as u64;
            }
            if have != want {
                wrong.push(*id);
            }
        }
        for id in wrong {
            self.problem(format!("order {id}: {table} rows do not match the record"));
        }
        Ok(())
    }

    /// A coupon's redemptions are the orders whose `coupon_counted`
    /// column is set (limits count them): the column must be the record's,
    /// and only an order with a coupon can count one.
    fn coupon_columns(
        &mut self,
        id: Uuid,
        row: &Row,
        order: &Order,
    ) -> Result<(), postgres::Error> {
        let counted: bool = row.try_get(15)?;
        self.agree(id, "orders.coupon_counted", counted, order.coupon_counted);
        if order.coupon_counted {
            match &order.pricing.coupon_code {
                Some(code) => {
                    self.coupons.insert(code.clone());
                }
                None => self.problem(format!("order {id} counts a coupon but holds none")),
            }
        }
        Ok(())
    }

    pub(super) fn key_row(&mut self, row: &Row) -> Result<(), postgres::Error> {
        let key: String = row.try_get(1)?;
        self.report.keys += 1;
        let what = || format!("idempotency key {key:?}");
        if let Some(record) = self.decode::<IdempotencyRecord>(row, 3, what)? {
            let stored: i64 = row.try_get(2)?;
            if stored != record.expires_at {
                self.problem(format!(
                    "idempotency key {key:?}: expires_ms is {stored} but the record says {}",
                    record.expires_at
                ));
            }
        }
        Ok(())
    }
}

pub(super) const TASKS: &str =
    "SELECT order_id, status, account, droplet_id, ipv4, revision, open, \
    owes_work, record FROM tasks";
pub(super) const ORDERS: &str = "SELECT id, seq, user_id, status, plan_id, image_id, final_price, \
    currency, coupon_code, created_ms, paid_at, expires_at, next_due_ms, live_account, record, \
    coupon_counted FROM orders";
pub(super) const KEYS: &str = "SELECT scope, key, expires_ms, record FROM idempotency_keys";
