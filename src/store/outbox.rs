//! The outbox (SPEC §10): events written in the transaction of the change
//! they report, one delivery per endpoint that takes them, and the queue the
//! delivery workers read. A change that does not commit leaves no event; a
//! crash after the commit leaves the event queued.

use std::collections::HashSet;

use redb::{ReadableDatabase, ReadableTable};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::codec::{self, Record};
use super::tables::{self, count_key, CountScope};
use super::txn::{bump, Tables};
use super::{corrupt, storage_err, Store, StoreError};
use crate::domain::lifecycle::{EventType, OutEvent};
use crate::domain::task::ProvisioningTask;
use crate::domain::time::Millis;
use crate::domain::webhook::{
    AttemptOutcome, Delivery, DeliveryPage, DeliveryQuery, DeliveryStatus, Outbox, OutboxEvent,
};
use crate::domain::{Order, OrderRecord};

impl Record for Delivery {
    const VERSION: u8 = 1;
}

/// An event as stored. The order and task keep their own record versions
/// (nested encodings), so they migrate like the live rows do.
#[derive(Serialize, Deserialize)]
pub(crate) struct StoredEvent {
    id: Uuid,
    kind: EventType,
    committed_at: Millis,
    seconds_left: Option<i64>,
    order: Vec<u8>,
    task: Option<Vec<u8>>,
    pub(crate) deliveries: Vec<Uuid>,
}

impl Record for StoredEvent {
    const VERSION: u8 = 1;
}

impl StoredEvent {
    pub(crate) fn from_event(e: &OutboxEvent) -> StoredEvent {
        StoredEvent {
            id: e.id,
            kind: e.kind,
            committed_at: e.committed_at,
            seconds_left: e.seconds_left,
            order: codec::encode(&e.record.order),
            task: e.record.task.as_ref().map(codec::encode),
            deliveries: e.deliveries.clone(),
        }
    }

    pub(crate) fn into_event(self) -> Result<OutboxEvent, StoreError> {
        let order: Order = codec::decode(&self.order).map_err(corrupt)?;
        let task = match &self.task {
            Some(bytes) => Some(codec::decode::<ProvisioningTask>(bytes).map_err(corrupt)?),
            None => None,
        };
        Ok(OutboxEvent {
            id: self.id,
            kind: self.kind,
            committed_at: self.committed_at,
            seconds_left: self.seconds_left,
            record: OrderRecord { order, task },
            deliveries: self.deliveries,
        })
    }
}

/// The status index's code: stable, independent of the enum's declaration order.
pub(crate) fn status_code(status: DeliveryStatus) -> u8 {
    match status {
        DeliveryStatus::Pending => 0,
        DeliveryStatus::Delivered => 1,
        DeliveryStatus::Failed => 2,
    }
}

/// Records the events of one committed change for every endpoint that takes
/// them; returns how many events were written.
pub(crate) fn record_events(
    t: &mut Tables<'_>,
    outbox: &Outbox,
    record: &OrderRecord,
    events: &[OutEvent],
    now: Millis,
) -> Result<usize, StoreError> {
    let mut written = 0;
    for out in events {
        let urls: Vec<&str> = outbox
            .routes_for(out.kind)
            .map(|r| r.url.as_str())
            .collect();
        if urls.is_empty() {
            continue;
        }
        let seq = t.next_event_seq()?;
        let mut event = OutboxEvent::new(out.kind, out.seconds_left, record, now);
        for url in urls {
            let delivery = Delivery::new(&event, url, seq);
            event.deliveries.push(delivery.id);
            put_delivery(t, &delivery, None)?;
        }
        t.events
            .insert(
                event.id.as_u128(),
                codec::encode(&StoredEvent::from_event(&event)).as_slice(),
            )
            .map_err(storage_err)?;
        written += 1;
    }
    Ok(written)
}

/// Writes a delivery and moves its index entries from `before` (the stored
/// version, if any) to its current state.
fn put_delivery(
    t: &mut Tables<'_>,
    d: &Delivery,
    before: Option<&Delivery>,
) -> Result<(), StoreError> {
    let id = d.id.as_u128();
    let old_status = before.map(|b| b.status);
    if old_status != Some(d.status) {
        if let Some(old) = old_status {
            t.deliveries_by_status
                .remove((status_code(old), id))
                .map_err(storage_err)?;
            bump(t, CountScope::Deliveries(status_code(old)), -1);
        }
        t.deliveries_by_status
            .insert((status_code(d.status), id), ())
            .map_err(storage_err)?;
        bump(t, CountScope::Deliveries(status_code(d.status)), 1);
        let (was_queued, is_queued) = (
            old_status == Some(DeliveryStatus::Pending),
            d.status == DeliveryStatus::Pending,
        );
        if was_queued && !is_queued {
            t.delivery_queue
                .remove((d.url.as_str(), d.seq))
                .map_err(storage_err)?;
        } else if is_queued && !was_queued {
            t.delivery_queue
                .insert((d.url.as_str(), d.seq), id)
                .map_err(storage_err)?;
        }
    }
    if before.is_none() {
        t.deliveries_by_order
            .insert((d.order_id.as_u128(), id), ())
            .map_err(storage_err)?;
    }
    let old_delivered = before.and_then(|b| b.delivered_at);
    if old_delivered != d.delivered_at {
        if let Some(at) = old_delivered {
            t.delivered_at.remove((at, id)).map_err(storage_err)?;
        }
        if let Some(at) = d.delivered_at {
            t.delivered_at.insert((at, id), ()).map_err(storage_err)?;
        }
    }
    t.deliveries
        .insert(id, codec::encode(d).as_slice())
        .map_err(storage_err)?;
    Ok(())
}

fn load_delivery(t: &Tables<'_>, id: u128) -> Result<Option<Delivery>, StoreError> {
    match t.deliveries.get(id).map_err(storage_err)? {
        Some(bytes) => codec::decode(bytes.value()).map(Some).map_err(corrupt),
        None => Ok(None),
    }
}

/// One attempt's result, applied only if nothing else moved the delivery on
/// meanwhile (a replay, another worker): `attempts_before` must still match.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub delivery: Uuid,
    pub attempts_before: u32,
    pub outcome: AttemptOutcome,
    pub at: Millis,
}

/// Returns the delivery's new status, or `None` when the attempt was stale.
pub(crate) fn record_attempt(
    t: &mut Tables<'_>,
    outbox: &Outbox,
    attempt: AttemptRecord,
) -> Result<Option<DeliveryStatus>, StoreError> {
    let Some(before) = load_delivery(t, attempt.delivery.as_u128())? else {
        return Ok(None);
    };
    if before.status != DeliveryStatus::Pending || before.attempts != attempt.attempts_before {
        return Ok(None);
    }
    let mut after = before.clone();
    after.after_attempt(attempt.outcome, attempt.at, &outbox.retry_schedule_ms);
    put_delivery(t, &after, Some(&before))?;
    Ok(Some(after.status))
}

/// Queues a delivery again with a fresh schedule; false when it does not exist.
pub(crate) fn replay(t: &mut Tables<'_>, id: Uuid, now: Millis) -> Result<bool, StoreError> {
    let Some(before) = load_delivery(t, id.as_u128())? else {
        return Ok(false);
    };
    let mut after = before.clone();
    after.replay(now);
    put_delivery(t, &after, Some(&before))?;
    Ok(true)
}

/// Deletes deliveries delivered before `before`, and events none of whose
/// deliveries is left; returns how many deliveries went.
pub(crate) fn prune_delivered(t: &mut Tables<'_>, before: Millis) -> Result<u64, StoreError> {
    let mut old = Vec::new();
    for entry in t
        .delivered_at
        .range((i64::MIN, 0)..(before, 0))
        .map_err(storage_err)?
    {
        let (key, _) = entry.map_err(storage_err)?;
        old.push(key.value());
    }
    for &(at, id) in &old {
        t.delivered_at.remove((at, id)).map_err(storage_err)?;
        let Some(d) = load_delivery(t, id)? else {
            continue;
        };
        t.deliveries.remove(id).map_err(storage_err)?;
        t.deliveries_by_status
            .remove((status_code(d.status), id))
            .map_err(storage_err)?;
        bump(t, CountScope::Deliveries(status_code(d.status)), -1);
        t.deliveries_by_order
            .remove((d.order_id.as_u128(), id))
            .map_err(storage_err)?;
        drop_event_if_unused(t, d.event_id)?;
    }
    Ok(old.len() as u64)
}

fn drop_event_if_unused(t: &mut Tables<'_>, event_id: Uuid) -> Result<(), StoreError> {
    let deliveries = match t.events.get(event_id.as_u128()).map_err(storage_err)? {
        Some(bytes) => {
            codec::decode::<StoredEvent>(bytes.value())
                .map_err(corrupt)?
                .deliveries
        }
        None => return Ok(()),
    };
    for id in deliveries {
        if t.deliveries
            .get(id.as_u128())
            .map_err(storage_err)?
            .is_some()
        {
            return Ok(());
        }
    }
    t.events.remove(event_id.as_u128()).map_err(storage_err)?;
    Ok(())
}

/// Pending deliveries to endpoints no longer configured fail at start-up
/// (nobody would ever send them); a replay queues them again should the
/// endpoint come back.
pub(crate) fn fail_unrouted(
    t: &mut Tables<'_>,
    outbox: &Outbox,
    now: Millis,
) -> Result<u64, StoreError> {
    let mut stranded = Vec::new();
    for entry in t.delivery_queue.iter().map_err(storage_err)? {
        let (key, id) = entry.map_err(storage_err)?;
        if !outbox.routes.iter().any(|r| r.url == key.value().0) {
            stranded.push(id.value());
        }
    }
    for id in &stranded {
        if let Some(before) = load_delivery(t, *id)? {
            let mut after = before.clone();
            after.fail_unrouted(now);
            put_delivery(t, &after, Some(&before))?;
        }
    }
    Ok(stranded.len() as u64)
}

/// What an endpoint's worker should send now, and when to look again.
#[derive(Debug, Default)]
pub struct DueDeliveries {
    /// Deliveries due now, with their events: the first pending one of each
    /// order only, so an order's events go out in commit order.
    pub due: Vec<(Delivery, OutboxEvent)>,
    /// The earliest retry among the pending ones not yet due.
    pub next_at: Option<Millis>,
}

/// Pending deliveries and the creation time of the oldest one (metrics).
#[derive(Debug, Clone, Copy, Default)]
pub struct OutboxStats {
    pub pending: u64,
    pub oldest_pending_at: Option<Millis>,
}

fn load_indexed(
    deliveries: &redb::ReadOnlyTable<u128, &'static [u8]>,
    id: u128,
) -> Result<Delivery, StoreError> {
    match deliveries.get(id).map_err(storage_err)? {
        Some(bytes) => codec::decode(bytes.value()).map_err(corrupt),
        None => Err(corrupt("an indexed delivery is missing")),
    }
}

/// An order's deliveries in creation order, optionally of one status.
fn deliveries_of(
    by_order: &redb::ReadOnlyTable<(u128, u128), ()>,
    deliveries: &redb::ReadOnlyTable<u128, &'static [u8]>,
    order: Uuid,
    status: Option<DeliveryStatus>,
) -> Result<Vec<Delivery>, StoreError> {
    let o = order.as_u128();
    let mut found = Vec::new();
    for entry in by_order
        .range((o, 0)..=(o, u128::MAX))
        .map_err(storage_err)?
    {
        let (key, _) = entry.map_err(storage_err)?;
        let d = load_indexed(deliveries, key.value().1)?;
        if status.is_none_or(|s| s == d.status) {
            found.push(d);
        }
    }
    Ok(found)
}

/// How far one worker pass reads an endpoint's queue: a long backlog (a dead
/// endpoint) costs a bounded read per pass, and its head goes first.
const QUEUE_SCAN_LIMIT: usize = 4096;

impl Store {
    /// The deliveries to `url` due at `now`, at most `max`.
    pub fn due_deliveries(
        &self,
        url: &str,
        now: Millis,
        max: usize,
    ) -> Result<DueDeliveries, StoreError> {
        let txn = self.database()?.begin_read().map_err(storage_err)?;
        let queue = txn
            .open_table(tables::DELIVERY_QUEUE)
            .map_err(storage_err)?;
        let deliveries = txn.open_table(tables::DELIVERIES).map_err(storage_err)?;
        let events = txn.open_table(tables::EVENTS).map_err(storage_err)?;
        let mut out = DueDeliveries::default();
        let mut orders_seen = HashSet::new();
        for entry in queue
            .range((url, 0)..=(url, u64::MAX))
            .map_err(storage_err)?
            .take(QUEUE_SCAN_LIMIT)
        {
            // A full pass is followed by another at once, so when the next
            // delivery falls due matters only to a pass that found none.
            if out.due.len() == max {
                break;
            }
            let (_, id) = entry.map_err(storage_err)?;
            let Some(bytes) = deliveries.get(id.value()).map_err(storage_err)? else {
                return Err(corrupt("a queued delivery is missing"));
            };
            let d: Delivery = codec::decode(bytes.value()).map_err(corrupt)?;
            if !orders_seen.insert(d.order_id) {
                continue;
            }
            match d.next_attempt_at {
                Some(at) if at > now => {
                    out.next_at = Some(out.next_at.map_or(at, |n: Millis| n.min(at)));
                }
                _ => {
                    let Some(bytes) = events.get(d.event_id.as_u128()).map_err(storage_err)? else {
                        return Err(corrupt("a delivery's event is missing"));
                    };
                    let event = codec::decode::<StoredEvent>(bytes.value())
                        .map_err(corrupt)?
                        .into_event()?;
                    out.due.push((d, event));
                }
            }
        }
        Ok(out)
    }

    pub fn delivery(&self, id: Uuid) -> Result<Option<Delivery>, StoreError> {
        let txn = self.database()?.begin_read().map_err(storage_err)?;
        let table = txn.open_table(tables::DELIVERIES).map_err(storage_err)?;
        match table.get(id.as_u128()).map_err(storage_err)? {
            Some(bytes) => codec::decode(bytes.value()).map(Some).map_err(corrupt),
            None => Ok(None),
        }
    }

    /// Deliveries newest first. A page past the end answers from the counts
    /// alone.
    pub fn list_deliveries(&self, q: &DeliveryQuery) -> Result<DeliveryPage, StoreError> {
        let txn = self.database()?.begin_read().map_err(storage_err)?;
        let deliveries = txn.open_table(tables::DELIVERIES).map_err(storage_err)?;
        let skip = (q.page.saturating_sub(1) as usize).saturating_mul(q.limit as usize);
        let take = q.limit as usize;
        let load = |id: u128| load_indexed(&deliveries, id);
        if let Some(order) = q.order_id {
            // An order has a handful of deliveries: filter them in memory.
            let by_order = txn
                .open_table(tables::DELIVERIES_BY_ORDER)
                .map_err(storage_err)?;
            let mut all = deliveries_of(&by_order, &deliveries, order, q.status)?;
            all.reverse();
            let total = all.len() as u64;
            let items = all.into_iter().skip(skip).take(take).collect();
            return Ok(DeliveryPage { items, total });
        }
        let counts = txn.open_table(tables::COUNTS).map_err(storage_err)?;
        let count = |code: u8| -> Result<u64, StoreError> {
            Ok(counts
                .get(count_key(CountScope::Deliveries(code)).as_str())
                .map_err(storage_err)?
                .map_or(0, |v| v.value()))
        };
        let total = match q.status {
            Some(s) => count(status_code(s))?,
            None => DeliveryStatus::ALL
                .iter()
                .map(|s| count(status_code(*s)))
                .sum::<Result<u64, StoreError>>()?,
        };
        if skip as u64 >= total {
            return Ok(DeliveryPage {
                items: Vec::new(),
                total,
            });
        }
        let mut items = Vec::with_capacity(take);
        match q.status {
            Some(s) => {
                let c = status_code(s);
                let index = txn
                    .open_table(tables::DELIVERIES_BY_STATUS)
                    .map_err(storage_err)?;
                for entry in index
                    .range((c, 0)..=(c, u128::MAX))
                    .map_err(storage_err)?
                    .rev()
                    .skip(skip)
                    .take(take)
                {
                    let (key, _) = entry.map_err(storage_err)?;
                    items.push(load(key.value().1)?);
                }
            }
            None => {
                for entry in deliveries
                    .iter()
                    .map_err(storage_err)?
                    .rev()
                    .skip(skip)
                    .take(take)
                {
                    let (_, bytes) = entry.map_err(storage_err)?;
                    items.push(codec::decode(bytes.value()).map_err(corrupt)?);
                }
            }
        }
        Ok(DeliveryPage { items, total })
    }

    /// Pending count and the oldest pending delivery's creation time: the
    /// head of each endpoint's queue is its oldest.
    pub fn outbox_stats(&self, urls: &[String]) -> Result<OutboxStats, StoreError> {
        let txn = self.database()?.begin_read().map_err(storage_err)?;
        let counts = txn.open_table(tables::COUNTS).map_err(storage_err)?;
        let pending = counts
            .get(count_key(CountScope::Deliveries(status_code(DeliveryStatus::Pending))).as_str())
            .map_err(storage_err)?
            .map_or(0, |v| v.value());
        let queue = txn
            .open_table(tables::DELIVERY_QUEUE)
            .map_err(storage_err)?;
        let deliveries = txn.open_table(tables::DELIVERIES).map_err(storage_err)?;
        let mut oldest: Option<Millis> = None;
        for url in urls {
            let head = queue
                .range((url.as_str(), 0)..=(url.as_str(), u64::MAX))
                .map_err(storage_err)?
                .next();
            if let Some(entry) = head {
                let (_, id) = entry.map_err(storage_err)?;
                if let Some(bytes) = deliveries.get(id.value()).map_err(storage_err)? {
                    let d: Delivery = codec::decode(bytes.value()).map_err(corrupt)?;
                    oldest = Some(oldest.map_or(d.created_at, |o| o.min(d.created_at)));
                }
            }
        }
        Ok(OutboxStats {
            pending,
            oldest_pending_at: oldest,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::store::{Maintenance, Rules, WriteOp};
    use crate::domain::lifecycle::{self, Command};
    use crate::domain::webhook::{EventFilter, Route};
    use crate::domain::Actor;

    fn store_with_endpoints(dir: &std::path::Path, urls: &[&str]) -> Store {
        let outbox = Outbox {
            routes: urls
                .iter()
                .map(|u| Route {
                    url: u.to_string(),
                    events: EventFilter::All,
                })
                .collect(),
            retry_schedule_ms: vec![1_000],
        };
        let rules = Rules {
            outbox,
            ..Rules::default()
        };
        Store::open_with(&dir.join("d.redb"), 1 << 20, rules).unwrap()
    }

    fn create_and_pay(store: &Store) -> Uuid {
        let order = crate::domain::order::test_order("alice");
        let id = order.id;
        let change = lifecycle::create(order, &Actor::User("alice".into()), 1);
        let create = WriteOp::Create {
            change: Box::new(change),
            coupon: None,
            idempotency: None,
        };
        store.write_blocking(create).unwrap().unwrap();
        let pay = WriteOp::Apply {
            order_id: id,
            command: Command::Pay { notes: None },
            actor: Actor::Admin(None),
            owner: None,
            idempotency: None,
        };
        store.write_blocking(pay).unwrap().unwrap();
        id
    }

    fn attempt(d: &Delivery, outcome: AttemptOutcome, at: Millis) -> AttemptRecord {
        AttemptRecord {
            delivery: d.id,
            attempts_before: d.attempts,
            outcome,
            at,
        }
    }

    #[test]
    fn events_fan_out_move_through_their_states_verify_and_are_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = ("http://127.0.0.1:1/a", "http://127.0.0.1:1/b");
        let store = store_with_endpoints(dir.path(), &[a, b]);
        let id = create_and_pay(&store);
        let due = store.due_deliveries(a, i64::MAX, 10).unwrap();
        assert_eq!(
            due.due.len(),
            1,
            "one order: only its first event is handed out"
        );
        let (created, event) = &due.due[0];
        assert_eq!(event.kind, EventType::Created);
        assert_eq!(event.record.order.id, id);
        assert_eq!(event.deliveries.len(), 2, "one delivery per endpoint");

        let writer = store.writer();
        let delivered = AttemptOutcome::Delivered { status: 200 };
        let n = writer
            .maintain_blocking(Maintenance::RecordAttempts(vec![
                attempt(created, delivered.clone(), 5_000),
                // The same attempt again is stale and changes nothing.
                attempt(created, delivered.clone(), 5_000),
            ]))
            .unwrap();
        assert_eq!(n, 1);
        let next = store.due_deliveries(a, i64::MAX, 10).unwrap();
        assert_eq!(
            next.due[0].1.kind,
            EventType::Paid,
            "then the next in commit order"
        );

        let page = store
            .list_deliveries(&DeliveryQuery {
                status: None,
                order_id: Some(id),
                page: 1,
                limit: 10,
            })
            .unwrap();
        assert_eq!(page.total, 4, "2 events x 2 endpoints");
        let stats = store.outbox_stats(&[a.into(), b.into()]).unwrap();
        assert_eq!(stats.pending, 3);

        // Pruning keeps the event while endpoint b still owes it.
        let pruned = writer
            .maintain_blocking(Maintenance::PruneDelivered { before: 6_000 })
            .unwrap();
        assert_eq!(pruned, 1);
        assert!(store.delivery(created.id).unwrap().is_none());
        let for_b = store.due_deliveries(b, i64::MAX, 10).unwrap();
        assert_eq!(
            for_b.due[0].1.id, event.id,
            "the event outlives one endpoint's row"
        );
        store.shutdown();
        drop(store);
        crate::backend::store::backup::verify(&dir.path().join("d.redb"))
            .expect("the outbox verifies");
    }

    #[test]
    fn deliveries_to_a_removed_endpoint_fail_at_start_and_can_be_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let gone = "http://127.0.0.1:1/gone";
        let store = store_with_endpoints(dir.path(), &[gone]);
        create_and_pay(&store);
        store.shutdown();
        drop(store);
        let store = store_with_endpoints(dir.path(), &[]);
        let failed = store
            .writer()
            .maintain_blocking(Maintenance::FailUnrouted { now: 9 })
            .unwrap();
        assert_eq!(failed, 2);
        let page = store
            .list_deliveries(&DeliveryQuery {
                status: Some(DeliveryStatus::Failed),
                order_id: None,
                page: 1,
                limit: 10,
            })
            .unwrap();
        assert_eq!(page.total, 2);
        let replayed = store
            .writer()
            .maintain_blocking(Maintenance::ReplayDelivery {
                id: page.items[0].id,
                now: 10,
            })
            .unwrap();
        assert_eq!(replayed, 1);
        assert_eq!(store.outbox_stats(&[gone.into()]).unwrap().pending, 1);
        store.shutdown();
        drop(store);
        crate::backend::store::backup::verify(&dir.path().join("d.redb"))
            .expect("still consistent");
    }
}
