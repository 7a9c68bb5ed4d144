//! `vpsd verify` for the webhook outbox: every delivery decodes, has its
//! event, and sits in exactly the indexes its state calls for; the counts the
//! admin list reads agree with the rows.

use std::collections::{BTreeMap, BTreeSet};

use redb::{ReadTransaction, ReadableTable};

use super::super::codec;
use super::super::outbox::{status_code, StoredEvent};
use super::super::tables::{self, count_key, CountScope};
use super::verify_common::{inconsistent, open_if_present, VerifyError};
use crate::domain::time::Millis;
use crate::domain::webhook::{Delivery, DeliveryStatus};

/// Every key of an index table whose key is a plain tuple of integers.
macro_rules! keys {
    ($txn:expr, $table:expr) => {{
        let mut out = BTreeSet::new();
        for entry in $txn.open_table($table)?.iter()? {
            out.insert(entry?.0.value());
        }
        out
    }};
}

/// Checks the outbox tables; returns the delivery counts they imply, which
/// the caller compares with the stored counts together with the orders'.
pub(super) fn check_outbox(txn: &ReadTransaction) -> Result<BTreeMap<String, u64>, VerifyError> {
    let mut counts = BTreeMap::new();
    let Some(deliveries) = open_if_present(txn, tables::DELIVERIES)? else {
        // A file from before the outbox (schema < 3) has none.
        return Ok(counts);
    };
    let Some(events) = open_if_present(txn, tables::EVENTS)? else {
        return Err(inconsistent("webhook_events is missing".into()));
    };
    let mut queue = BTreeSet::new();
    let mut by_status = BTreeSet::new();
    let mut by_order = BTreeSet::new();
    let mut delivered_at: BTreeSet<(Millis, u128)> = BTreeSet::new();
    for entry in deliveries.iter()? {
        let (key, bytes) = entry?;
        let id = key.value();
        let d: Delivery = codec::decode(bytes.value())
            .map_err(|e| inconsistent(format!("webhook delivery {id:x}: {e}")))?;
        let Some(event) = events.get(d.event_id.as_u128())? else {
            return Err(inconsistent(format!(
                "webhook delivery {} has no event",
                d.id
            )));
        };
        let event: StoredEvent = codec::decode(event.value())
            .map_err(|e| inconsistent(format!("webhook event {}: {e}", d.event_id)))?;
        if !event.deliveries.contains(&d.id) {
            return Err(inconsistent(format!(
                "webhook event {} does not list delivery {}",
                d.event_id, d.id
            )));
        }
        if d.status == DeliveryStatus::Pending {
            queue.insert((d.url.clone(), d.seq, id));
        }
        if let Some(at) = d.delivered_at {
            delivered_at.insert((at, id));
        }
        by_status.insert((status_code(d.status), id));
        by_order.insert((d.order_id.as_u128(), id));
        *counts
            .entry(count_key(CountScope::Deliveries(status_code(d.status))))
            .or_default() += 1;
    }
    let mut listed = BTreeSet::new();
    for entry in txn.open_table(tables::DELIVERY_QUEUE)?.iter()? {
        let (key, id) = entry?;
        let (url, seq) = key.value();
        listed.insert((url.to_string(), seq, id.value()));
    }
    same(listed, queue, "webhook_queue")?;
    let listed = keys!(txn, tables::DELIVERIES_BY_STATUS);
    same(listed, by_status, "webhook_deliveries_by_status")?;
    let listed = keys!(txn, tables::DELIVERIES_BY_ORDER);
    same(listed, by_order, "webhook_deliveries_by_order")?;
    let listed = keys!(txn, tables::DELIVERED_AT);
    same(listed, delivered_at, "webhook_delivered_at")?;
    Ok(counts)
}

fn same<T: Eq>(listed: T, expected: T, table: &str) -> Result<(), VerifyError> {
    if listed == expected {
        Ok(())
    } else {
        Err(inconsistent(format!(
            "{table} does not match the webhook deliveries"
        )))
    }
}
