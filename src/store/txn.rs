//! The tables of one write transaction, opened once, and the counters every
//! part of the write path keeps in them. The writer, the outbox and the
//! idempotency bookkeeping all write through these; none of them imports
//! another for it.

use std::collections::HashMap;

use redb::{ReadableTable, Table, WriteTransaction};

use super::tables::{self, count_key, CountScope};
use super::{storage_err, StoreError};

/// Every table, opened once per transaction.
pub(crate) struct Tables<'txn> {
    pub meta: Table<'txn, &'static str, u64>,
    pub orders: Table<'txn, u128, &'static [u8]>,
    pub history: Table<'txn, (u64, u32), &'static [u8]>,
    pub tasks: Table<'txn, u128, &'static [u8]>,
    pub open_tasks: Table<'txn, u128, ()>,
    pub by_seq: Table<'txn, u64, u128>,
    pub by_status: Table<'txn, (u8, u64), u128>,
    pub by_user: Table<'txn, (&'static str, u64), u128>,
    pub counts: Table<'txn, &'static str, u64>,
    pub coupon_uses: Table<'txn, &'static str, u64>,
    pub coupon_user_uses: Table<'txn, (&'static str, &'static str), u64>,
    pub idempotency: Table<'txn, (&'static str, &'static str), &'static [u8]>,
    pub idempotency_expiry: Table<'txn, (i64, &'static str, &'static str), ()>,
    pub idempotency_by_scope: Table<'txn, (&'static str, i64, &'static str), ()>,
    pub due: Table<'txn, (i64, u128), ()>,
    pub pending_actions: Table<'txn, u128, ()>,
    pub customer_actions: Table<'txn, (u128, u32), &'static [u8]>,
    pub events: Table<'txn, u128, &'static [u8]>,
    pub deliveries: Table<'txn, u128, &'static [u8]>,
    pub delivery_queue: Table<'txn, (&'static str, u64), u128>,
    pub deliveries_by_status: Table<'txn, (u8, u128), ()>,
    pub deliveries_by_order: Table<'txn, (u128, u128), ()>,
    pub delivered_at: Table<'txn, (i64, u128), ()>,
    /// Deliveries queued (or queued again) in this transaction.
    pub queued: usize,
    /// Orders whose record or task this transaction wrote.
    pub touched: Vec<u128>,
    /// Counter changes, written once per key by [`Tables::finish`]: a batch
    /// of orders or webhook attempts moves the same few counters many
    /// times, and each move in the table is a lookup and an insert.
    count_deltas: HashMap<String, i64>,
    /// The outbox's event sequence as this transaction moved it, written
    /// once by [`Tables::finish`].
    event_seq: Option<u64>,
}

impl<'txn> Tables<'txn> {
    pub(crate) fn open(txn: &'txn WriteTransaction) -> Result<Tables<'txn>, StoreError> {
        Ok(Tables {
            meta: txn.open_table(tables::META).map_err(storage_err)?,
            orders: txn.open_table(tables::ORDERS).map_err(storage_err)?,
            history: txn.open_table(tables::HISTORY).map_err(storage_err)?,
            tasks: txn.open_table(tables::TASKS).map_err(storage_err)?,
            open_tasks: txn.open_table(tables::OPEN_TASKS).map_err(storage_err)?,
            by_seq: txn.open_table(tables::BY_SEQ).map_err(storage_err)?,
            by_status: txn.open_table(tables::BY_STATUS).map_err(storage_err)?,
            by_user: txn.open_table(tables::BY_USER).map_err(storage_err)?,
            counts: txn.open_table(tables::COUNTS).map_err(storage_err)?,
            coupon_uses: txn.open_table(tables::COUPON_USES).map_err(storage_err)?,
            coupon_user_uses: txn
                .open_table(tables::COUPON_USER_USES)
                .map_err(storage_err)?,
            idempotency: txn.open_table(tables::IDEMPOTENCY).map_err(storage_err)?,
            idempotency_expiry: txn
                .open_table(tables::IDEMPOTENCY_EXPIRY)
                .map_err(storage_err)?,
            idempotency_by_scope: txn
                .open_table(tables::IDEMPOTENCY_BY_SCOPE)
                .map_err(storage_err)?,
            due: txn.open_table(tables::DUE).map_err(storage_err)?,
            pending_actions: txn
                .open_table(tables::PENDING_ACTIONS)
                .map_err(storage_err)?,
            customer_actions: txn
                .open_table(tables::CUSTOMER_ACTIONS)
                .map_err(storage_err)?,
            events: txn.open_table(tables::EVENTS).map_err(storage_err)?,
            deliveries: txn.open_table(tables::DELIVERIES).map_err(storage_err)?,
            delivery_queue: txn
                .open_table(tables::DELIVERY_QUEUE)
                .map_err(storage_err)?,
            deliveries_by_status: txn
                .open_table(tables::DELIVERIES_BY_STATUS)
                .map_err(storage_err)?,
            deliveries_by_order: txn
                .open_table(tables::DELIVERIES_BY_ORDER)
                .map_err(storage_err)?,
            delivered_at: txn.open_table(tables::DELIVERED_AT).map_err(storage_err)?,
            queued: 0,
            touched: Vec::new(),
            count_deltas: HashMap::new(),
            event_seq: None,
        })
    }

    /// The next outbox event's sequence number.
    pub(crate) fn next_event_seq(&mut self) -> Result<u64, StoreError> {
        let last = match self.event_seq {
            Some(seq) => seq,
            None => get_u64(&self.meta, tables::META_EVENT_SEQ)?,
        };
        self.event_seq = Some(last + 1);
        Ok(last + 1)
    }

    /// Writes what this transaction kept aside (counters, the event
    /// sequence); the last step before the commit. Dropped without it, the
    /// transaction must not commit.
    pub(crate) fn finish(mut self) -> Result<(usize, Vec<u128>), StoreError> {
        let deltas = std::mem::take(&mut self.count_deltas);
        for (key, delta) in deltas {
            if delta == 0 {
                continue;
            }
            let next = get_u64(&self.counts, key.as_str())?.saturating_add_signed(delta);
            if next == 0 {
                self.counts.remove(key.as_str()).map_err(storage_err)?;
            } else {
                self.counts
                    .insert(key.as_str(), next)
                    .map_err(storage_err)?;
            }
        }
        if let Some(seq) = self.event_seq {
            self.meta
                .insert(tables::META_EVENT_SEQ, seq)
                .map_err(storage_err)?;
        }
        Ok((self.queued, self.touched))
    }
}

/// Moves a counter; the table sees it at [`Tables::finish`].
pub(crate) fn bump(t: &mut Tables<'_>, scope: CountScope<'_>, delta: i64) {
    *t.count_deltas.entry(count_key(scope)).or_default() += delta;
}

pub(crate) fn get_u64(table: &Table<'_, &'static str, u64>, key: &str) -> Result<u64, StoreError> {
    Ok(table
        .get(key)
        .map_err(storage_err)?
        .map(|v| v.value())
        .unwrap_or(0))
}
