//! `vpsd verify URL`: the outbox. Every delivery has its event, which lists
//! it, and agrees with its columns.

use std::collections::HashMap;

use postgres::{Row, Transaction};
use uuid::Uuid;

use super::super::outbox::status_text;
use super::{each_row, Checks};
use crate::backend::store::outbox::StoredEvent;
use crate::domain::webhook::{Delivery, DeliveryStatus};

impl Checks {
    /// Every delivery has its event, which lists it; every event keeps at
    /// least one of its deliveries (the retention sweep drops an event with
    /// its last delivery, so an event may list deliveries already pruned).
    pub(super) fn outbox(&mut self, tx: &mut Transaction<'_>) -> Result<(), postgres::Error> {
        let mut events: HashMap<Uuid, (Uuid, Vec<Uuid>, u32)> = HashMap::new();
        each_row(tx, EVENTS, |row| {
            let id: Uuid = row.try_get(0)?;
            let order: Uuid = row.try_get(1)?;
            self.report.events += 1;
            let what = || format!("order {order}: webhook event {id}");
            let Some(stored) = self.decode::<StoredEvent>(row, 3, what)? else {
                return Ok(());
            };
            match stored.into_event() {
                Ok(event) => {
                    self.agree(order, "webhook_events.id", id, event.id);
                    self.agree(
                        order,
                        "webhook_events.order_id",
                        order,
                        event.record.order.id,
                    );
                    self.agree(
                        order,
                        "webhook_events.kind",
                        row.try_get(2)?,
                        event.kind.as_str(),
                    );
                    events.insert(id, (order, event.deliveries, 0));
                }
                Err(e) => self.problem(format!("order {order}: webhook event {id}: {e}")),
            }
            Ok(())
        })?;
        each_row(tx, DELIVERIES, |row| self.delivery_row(row, &mut events))?;
        for (id, (order, _, found)) in events {
            if found == 0 {
                self.problem(format!(
                    "order {order}: webhook event {id} has none of its deliveries"
                ));
            }
        }
        Ok(())
    }

    pub(super) fn delivery_row(
        &mut self,
        row: &Row,
        events: &mut HashMap<Uuid, (Uuid, Vec<Uuid>, u32)>,
    ) -> Result<(), postgres::Error> {
        let id: Uuid = row.try_get(0)?;
        let order: Uuid = row.try_get(2)?;
        self.report.deliveries += 1;
        let what = || format!("order {order}: webhook delivery {id}");
        let Some(d) = self.decode::<Delivery>(row, 10, what)? else {
            return Ok(());
        };
        self.report.pending += u64::from(d.status == DeliveryStatus::Pending);
        let seq: i64 = row.try_get(4)?;
        self.max_event_seq = self.max_event_seq.max(seq);
        let column = |c: &str| format!("webhook delivery {id}: {c}");
        self.agree(order, &column("id"), id, d.id);
        self.agree(order, &column("event_id"), row.try_get(1)?, d.event_id);
        self.agree(order, &column("order_id"), order, d.order_id);
        self.agree(order, &column("endpoint"), row.try_get(3)?, d.url.as_str());
        self.agree(
            order,
            &column("event_seq"),
            seq,
            i64::try_from(d.seq).unwrap_or(-1),
        );
        self.agree(
            order,
            &column("status"),
            row.try_get(5)?,
            status_text(d.status),
        );
        self.agree(
            order,
            &column("attempts"),
            row.try_get(6)?,
            i32::try_from(d.attempts).ok(),
        );
        self.agree(
            order,
            &column("next_attempt_ms"),
            row.try_get(7)?,
            d.next_attempt_at,
        );
        self.agree(order, &column("created_ms"), row.try_get(8)?, d.created_at);
        self.agree(
            order,
            &column("delivered_ms"),
            row.try_get(9)?,
            d.delivered_at,
        );
        if !self.orders.contains_key(&d.order_id) {
            self.problem(format!(
                "webhook delivery {id} is for a missing order {}",
                d.order_id
            ));
        }
        match events.get_mut(&d.event_id) {
            Some((_, listed, found)) if listed.contains(&d.id) => *found += 1,
            Some(_) => self.problem(format!(
                "order {order}: webhook event {} does not list delivery {id}",
                d.event_id
            )),
            None => self.problem(format!("order {order}: webhook delivery {id} has no event")),
        }
        Ok(())
    }
}

const EVENTS: &str = "SELECT id, order_id, kind, record FROM webhook_events";
const DELIVERIES: &str = "SELECT id, event_id, order_id, endpoint, event_seq, status, attempts, \
    next_attempt_ms, created_ms, delivered_ms, record FROM webhook_deliveries";
