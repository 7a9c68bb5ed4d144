//! The redb side of the write path: [`OrderTxn`] over the tables of one
//! write transaction, and the housekeeping jobs, which touch no order and
//! so are the backend's own.

use uuid::Uuid;

use super::apply::OrderTxn;
use super::persist::{get_user_uses, load_order, load_task, persist, write_task};
use super::tables::{self, CountScope};
use super::txn::{bump, get_u64, Tables};
use super::{idempotency, outbox, storage_err, IdempotencyRecord, Maintenance, Rules, StoreError};
use crate::domain::coupon::{CouponClaim, CouponUses};
use crate::domain::lifecycle::{Change, OutEvent};
use crate::domain::task::ProvisioningTask;
use crate::domain::time::Millis;
use crate::domain::webhook::Outbox;
use crate::domain::{Order, OrderRecord};

impl OrderTxn for Tables<'_> {
    fn load_order(&mut self, id: Uuid) -> Result<Option<Order>, StoreError> {
        load_order(self, id.as_u128())
    }

    fn load_task(&mut self, id: Uuid) -> Result<Option<ProvisioningTask>, StoreError> {
        load_task(self, id.as_u128())
    }

    fn coupon_uses(&mut self, claim: &CouponClaim, user: &str) -> Result<CouponUses, StoreError> {
        Ok(CouponUses {
            global: get_u64(&self.coupon_uses, &claim.code)?,
            by_user: get_user_uses(self, &claim.code, user)?,
        })
    }

    fn count_coupon(
        &mut self,
        claim: &CouponClaim,
        user: &str,
        uses: CouponUses,
    ) -> Result<(), StoreError> {
        let code = claim.code.as_str();
        self.coupon_uses
            .insert(code, uses.global + 1)
            .map_err(storage_err)?;
        self.coupon_user_uses
            .insert((code, user), uses.by_user + 1)
            .map_err(storage_err)?;
        Ok(())
    }

    fn next_order_seq(&mut self) -> Result<u64, StoreError> {
        let seq = get_u64(&self.meta, tables::META_ORDER_SEQ)? + 1;
        self.meta
            .insert(tables::META_ORDER_SEQ, seq)
            .map_err(storage_err)?;
        Ok(seq)
    }

    fn persist(&mut self, change: &Change) -> Result<(), StoreError> {
        if change.previous_status.is_none() {
            // A new order: the indexes written once, at creation.
            let (id, seq) = (change.order.id.as_u128(), change.order.seq);
            self.by_seq.insert(seq, id).map_err(storage_err)?;
            self.by_user
                .insert((change.order.user_id.as_str(), seq), id)
                .map_err(storage_err)?;
            bump(self, CountScope::All, 1);
        }
        persist(self, change)
    }

    fn write_task(&mut self, task: &ProvisioningTask) -> Result<(), StoreError> {
        write_task(self, task)
    }

    fn record_events(
        &mut self,
        outbox: &Outbox,
        record: &OrderRecord,
        events: &[OutEvent],
        now: Millis,
    ) -> Result<(), StoreError> {
        let queued = outbox::record_events(self, outbox, record, events, now)?;
        self.queued += queued;
        Ok(())
    }

    fn put_idempotency(
        &mut self,
        scope: &str,
        key: &str,
        record: &IdempotencyRecord,
    ) -> Result<bool, StoreError> {
        // One process owns the file, and its in-memory claims keep a key to
        // one request at a time: the key is always this request's to store.
        idempotency::put(self, scope, key, record)?;
        Ok(true)
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
