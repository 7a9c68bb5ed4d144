//! The outbox on PostgreSQL (SPEC §10): events and their deliveries written
//! in the transaction of the change they report, each endpoint's queue an
//! index on the pending rows in event order. Only the leading instance
//! sends; every instance queues.

use std::collections::HashSet;

use postgres::Row;
use uuid::Uuid;

use super::conn::{pg_err, stamp};
use super::sql;
use super::txn::PgTxn;
use crate::backend::store::outbox::{AttemptRecord, DueDeliveries, OutboxStats, StoredEvent};
use crate::backend::store::{codec, corrupt, StoreError};
use crate::domain::lifecycle::OutEvent;
use crate::domain::time::Millis;
use crate::domain::webhook::{Delivery, DeliveryStatus, Outbox, OutboxEvent};
use crate::domain::OrderRecord;

/// The status column's text; the queue index is on `'PENDING'`.
pub fn status_text(status: DeliveryStatus) -> &'static str {
    match status {
        DeliveryStatus::Pending => "PENDING",
        DeliveryStatus::Delivered => "DELIVERED",
        DeliveryStatus::Failed => "FAILED",
    }
}

/// Writes the events of one change for every endpoint that takes them;
/// returns how many deliveries were queued.
pub fn queue_events(
    t: &mut PgTxn<'_, '_>,
    outbox: &Outbox,
    record: &OrderRecord,
    events: &[OutEvent],
    now: Millis,
) -> Result<usize, StoreError> {
    let mut queued = 0;
    for out in events {
        let urls: Vec<&str> = outbox
            .routes_for(out.kind)
            .map(|r| r.url.as_str())
            .collect();
        if urls.is_empty() {
            continue;
        }
        let next = t.stmt(sql::NEXT_EVENT_SEQ)?;
        let seq: i64 =
            t.tx.query_one(&next, &[])
                .and_then(|row| row.try_get(0))
                .map_err(pg_err)?;
        let mut event = OutboxEvent::new(out.kind, out.seconds_left, record, now);
        let deliveries: Vec<Delivery> = urls
            .iter()
            .map(|url| Delivery::new(&event, url, u64::try_from(seq).unwrap_or(0)))
            .collect();
        event.deliveries = deliveries.iter().map(|d| d.id).collect();
        let put = t.stmt(sql::EVENT_PUT)?;
        t.tx.execute(
            &put,
            &[
                &event.id,
                &event.record.order.id,
                &event.kind.as_str(),
                &stamp(event.committed_at),
                &codec::encode(&StoredEvent::from_event(&event)),
            ],
        )
        .map_err(pg_err)?;
        for d in &deliveries {
            put_delivery(t, d)?;
        }
        queued += deliveries.len();
    }
    Ok(queued)
}

pub fn put_delivery(t: &mut PgTxn<'_, '_>, d: &Delivery) -> Result<(), StoreError> {
    let put = t.stmt(sql::DELIVERY_PUT)?;
    t.tx.execute(
        &put,
        &[
            &d.id,
            &d.event_id,
            &d.order_id,
            &d.url,
            &(d.seq as i64),
            &status_text(d.status),
            &(d.attempts as i32),
            &d.next_attempt_at,
            &d.created_at,
            &d.delivered_at,
            &codec::encode(d),
        ],
    )
    .map_err(pg_err)?;
    Ok(())
}

fn load_delivery_locked(t: &mut PgTxn<'_, '_>, id: Uuid) -> Result<Option<Delivery>, StoreError> {
    let row =
        t.tx.query_opt(
            "SELECT record FROM webhook_deliveries WHERE id = $1 FOR UPDATE",
            &[&id],
        )
        .map_err(pg_err)?;
    row.map(|r| decode_record(&r, 0)).transpose()
}

pub fn decode_record<T: serde::de::DeserializeOwned + codec::Record>(
    row: &Row,
    col: usize,
) -> Result<T, StoreError> {
    let bytes: &[u8] = row.try_get(col).map_err(pg_err)?;
    codec::decode(bytes).map_err(corrupt)
}

/// One attempt's result, unless something moved the delivery on meanwhile.
pub fn record_attempt(
    t: &mut PgTxn<'_, '_>,
    outbox: &Outbox,
    attempt: AttemptRecord,
) -> Result<bool, StoreError> {
    let Some(before) = load_delivery_locked(t, attempt.delivery)? else {
        return Ok(false);
    };
    if before.status != DeliveryStatus::Pending || before.attempts != attempt.attempts_before {
        return Ok(false);
    }
    let mut after = before;
    after.after_attempt(attempt.outcome, attempt.at, &outbox.retry_schedule_ms);
    put_delivery(t, &after)?;
    Ok(true)
}

pub fn replay(t: &mut PgTxn<'_, '_>, id: Uuid, now: Millis) -> Result<bool, StoreError> {
    let Some(mut d) = load_delivery_locked(t, id)? else {
        return Ok(false);
    };
    d.replay(now);
    put_delivery(t, &d)?;
    Ok(true)
}

pub fn prune_delivered(t: &mut PgTxn<'_, '_>, before: Millis) -> Result<u64, StoreError> {
    let pruned =
        t.tx.execute(
            "DELETE FROM webhook_deliveries WHERE delivered_ms < $1",
            &[&before],
        )
        .map_err(pg_err)?;
    t.tx.execute(
        "DELETE FROM webhook_events e WHERE NOT EXISTS \
         (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = e.id)",
        &[],
    )
    .map_err(pg_err)?;
    Ok(pruned)
}

pub fn fail_unrouted(
    t: &mut PgTxn<'_, '_>,
    outbox: &Outbox,
    now: Millis,
) -> Result<u64, StoreError> {
    let urls: Vec<&str> = outbox.routes.iter().map(|r| r.url.as_str()).collect();
    let rows =
        t.tx.query(
            "SELECT record FROM webhook_deliveries \
             WHERE status = 'PENDING' AND NOT (endpoint = ANY($1)) FOR UPDATE",
            &[&urls],
        )
        .map_err(pg_err)?;
    for row in &rows {
        let mut d: Delivery = decode_record(row, 0)?;
        d.fail_unrouted(now);
        put_delivery(t, &d)?;
    }
    Ok(rows.len() as u64)
}

/// How far one worker pass reads an endpoint's queue (as on redb).
const QUEUE_SCAN_LIMIT: i64 = 4096;

/// The deliveries to `url` due at `now`: the first pending one of each
/// order only, so an order's events go out in commit order.
pub fn due(
    client: &mut postgres::Client,
    url: &str,
    now: Millis,
    max: usize,
) -> Result<DueDeliveries, StoreError> {
    let rows = client
        .query(
            "SELECT d.record, e.record FROM webhook_deliveries d \
             JOIN webhook_events e ON e.id = d.event_id \
             WHERE d.endpoint = $1 AND d.status = 'PENDING' ORDER BY d.event_seq LIMIT $2",
            &[&url, &QUEUE_SCAN_LIMIT],
        )
        .map_err(pg_err)?;
    let mut out = DueDeliveries::default();
    let mut orders_seen = HashSet::new();
    for row in &rows {
        let d: Delivery = decode_record(row, 0)?;
        if !orders_seen.insert(d.order_id) {
            continue;
        }
        match d.next_attempt_at {
            Some(at) if at > now => {
                out.next_at = Some(out.next_at.map_or(at, |n: Millis| n.min(at)));
            }
            _ if out.due.len() < max => {
                let event: StoredEvent = decode_record(row, 1)?;
                out.due.push((d, event.into_event()?));
            }
            _ => {}
        }
    }
    Ok(out)
}

pub fn stats(client: &mut postgres::Client, urls: &[String]) -> Result<OutboxStats, StoreError> {
    let row = client
        .query_one(
            "SELECT count(*), min(created_ms) FILTER (WHERE endpoint = ANY($1)) \
             FROM webhook_deliveries WHERE status = 'PENDING'",
            &[&urls],
        )
        .map_err(pg_err)?;
    let pending: i64 = row.try_get(0).map_err(pg_err)?;
    Ok(OutboxStats {
        pending: u64::try_from(pending).unwrap_or(0),
        oldest_pending_at: row.try_get(1).map_err(pg_err)?,
    })
}
