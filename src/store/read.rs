//! Queries. Each runs in one read transaction (a consistent snapshot) and walks an
//! index range, so a page costs O(offset + limit) lookups whatever the table size.

use redb::{ReadOnlyTable, ReadTransaction, ReadableDatabase, ReadableTable};
use uuid::Uuid;

use super::tables::{self, count_key, CountScope};
use super::{codec, corrupt, storage_err, IdempotencyRecord, OrderRecord, Store, StoreError};
use crate::domain::task::ProvisioningTask;
use crate::domain::{HistoryEntry, ListQuery, Order, OrderStatus, Page};

/// Collects one page of order ids from an index range, newest first.
macro_rules! page_ids {
    ($table:expr, $range:expr, $skip:expr, $take:expr) => {{
        let mut ids = Vec::new();
        for entry in $table
            .range($range)
            .map_err(storage_err)?
            .rev()
            .skip($skip)
            .take($take)
        {
            let (_, id) = entry.map_err(storage_err)?;
            ids.push(id.value());
        }
        ids
    }};
}

impl Store {
    fn snapshot(&self) -> Result<ReadTransaction, StoreError> {
        self.database()?.begin_read().map_err(storage_err)
    }

    pub fn get_order(&self, id: Uuid) -> Result<Option<OrderRecord>, StoreError> {
        let txn = self.snapshot()?;
        let orders = txn.open_table(tables::ORDERS).map_err(storage_err)?;
        let tasks = txn.open_table(tables::TASKS).map_err(storage_err)?;
        read_record(&orders, &tasks, id.as_u128())
    }

    /// The order's history rows in commit order (empty for an unknown order).
    pub fn history(&self, id: Uuid) -> Result<Vec<HistoryEntry>, StoreError> {
        let txn = self.snapshot()?;
        let orders = txn.open_table(tables::ORDERS).map_err(storage_err)?;
        let Some(bytes) = orders.get(id.as_u128()).map_err(storage_err)? else {
            return Ok(Vec::new());
        };
        let seq = codec::decode::<Order>(bytes.value()).map_err(corrupt)?.seq;
        let table = txn.open_table(tables::HISTORY).map_err(storage_err)?;
        let mut rows = Vec::new();
        for entry in table
            .range((seq, 0)..=(seq, u32::MAX))
            .map_err(storage_err)?
        {
            let (_, bytes) = entry.map_err(storage_err)?;
            rows.push(codec::decode(bytes.value()).map_err(corrupt)?);
        }
        Ok(rows)
    }

    pub fn list_orders(&self, q: &ListQuery) -> Result<Page, StoreError> {
        if let Some(before) = q.expires_before {
            return self.list_expiring(q, before);
        }
        let txn = self.snapshot()?;
        let skip = (q.page.saturating_sub(1) as usize).saturating_mul(q.limit as usize);
        let take = q.limit as usize;
        // A page past the end is answered from the counts: skipping through
        // the whole range to find nothing would cost O(orders) per request.
        let total = self.list_total(&txn, q)?;
        if skip as u64 >= total {
            return Ok(Page {
                items: Vec::new(),
                total,
            });
        }
        let ids = match (&q.user, q.status) {
            (None, None) => {
                let t = txn.open_table(tables::BY_SEQ).map_err(storage_err)?;
                page_ids!(t, 0..=u64::MAX, skip, take)
            }
            (None, Some(s)) => {
                let t = txn.open_table(tables::BY_STATUS).map_err(storage_err)?;
                let c = s.code();
                page_ids!(t, (c, 0)..=(c, u64::MAX), skip, take)
            }
            (Some(u), None) => {
                // Newest first across the user's per-status ranges.
                let t = txn
                    .open_table(tables::BY_USER_STATUS)
                    .map_err(storage_err)?;
                let u = u.as_str();
                let mut ranges = Vec::new();
                for status in OrderStatus::ALL {
                    let c = status.code();
                    ranges.push(
                        t.range((u, c, 0)..=(u, c, u64::MAX))
                            .map_err(storage_err)?
                            .rev()
                            .map(|e| {
                                e.map(|(k, v)| (k.value().2, v.value()))
                                    .map_err(storage_err)
                            }),
                    );
                }
                merge_newest(ranges, skip, take)?
            }
            (Some(u), Some(s)) => {
                let t = txn
                    .open_table(tables::BY_USER_STATUS)
                    .map_err(storage_err)?;
                let (u, c) = (u.as_str(), s.code());
                page_ids!(t, (u, c, 0)..=(u, c, u64::MAX), skip, take)
            }
        };
        self.page_of(&txn, ids, total)
    }

    /// How many orders the list's filters match, from the counts alone.
    fn list_total(&self, txn: &ReadTransaction, q: &ListQuery) -> Result<u64, StoreError> {
        let counts = txn.open_table(tables::COUNTS).map_err(storage_err)?;
        let count = |scope: CountScope<'_>| -> Result<u64, StoreError> {
            Ok(counts
                .get(count_key(scope).as_str())
                .map_err(storage_err)?
                .map_or(0, |v| v.value()))
        };
        match (&q.user, q.status) {
            (None, None) => count(CountScope::All),
            (None, Some(s)) => count(CountScope::Status(s.code())),
            (Some(u), Some(s)) => count(CountScope::UserStatus(u, s.code())),
            (Some(u), None) => OrderStatus::ALL
                .iter()
                .map(|s| count(CountScope::UserStatus(u, s.code())))
                .sum(),
        }
    }

    /// Live (ACTIVE / SUSPENDED) orders whose `expiresAt` is before `before`,
    /// soonest first. Only live orders have a period, so this reads their
    /// status ranges: O(live orders), fine for "what lapses this week".
    fn list_expiring(&self, q: &ListQuery, before: i64) -> Result<Page, StoreError> {
        let txn = self.snapshot()?;
        let by_status = txn.open_table(tables::BY_STATUS).map_err(storage_err)?;
        let orders = txn.open_table(tables::ORDERS).map_err(storage_err)?;
        let statuses = [OrderStatus::Active, OrderStatus::Suspended];
        let mut matches = Vec::new();
        for status in statuses
            .into_iter()
            .filter(|s| q.status.is_none_or(|w| w == *s))
        {
            let c = status.code();
            for entry in by_status
                .range((c, 0)..=(c, u64::MAX))
                .map_err(storage_err)?
            {
                let (key, id) = entry.map_err(storage_err)?;
                let Some(bytes) = orders.get(id.value()).map_err(storage_err)? else {
                    continue;
                };
                let order: Order = codec::decode(bytes.value()).map_err(corrupt)?;
                let mine = q.user.as_ref().is_none_or(|u| *u == order.user_id);
                if let Some(expires) = order.term.expires_at.filter(|e| *e < before && mine) {
                    matches.push((expires, key.value().1, id.value()));
                }
            }
        }
        matches.sort_unstable();
        let skip = (q.page.saturating_sub(1) as usize).saturating_mul(q.limit as usize);
        let ids = matches
            .iter()
            .skip(skip)
            .take(q.limit as usize)
            .map(|m| m.2)
            .collect();
        self.page_of(&txn, ids, matches.len() as u64)
    }

    fn page_of(
        &self,
        txn: &ReadTransaction,
        ids: Vec<u128>,
        total: u64,
    ) -> Result<Page, StoreError> {
        let orders = txn.open_table(tables::ORDERS).map_err(storage_err)?;
        let tasks = txn.open_table(tables::TASKS).map_err(storage_err)?;
        let mut items = Vec::with_capacity(ids.len());
        for id in ids {
            let record = read_record(&orders, &tasks, id)?.ok_or_else(|| {
                corrupt(format!(
                    "index points to missing order {}",
                    Uuid::from_u128(id)
                ))
            })?;
            items.push(record);
        }
        Ok(Page { items, total })
    }

    /// Every order whose provisioning task is PENDING or IN_PROGRESS.
    pub fn open_tasks(&self) -> Result<Vec<OrderRecord>, StoreError> {
        let txn = self.snapshot()?;
        let open = txn.open_table(tables::OPEN_TASKS).map_err(storage_err)?;
        let orders = txn.open_table(tables::ORDERS).map_err(storage_err)?;
        let tasks = txn.open_table(tables::TASKS).map_err(storage_err)?;
        let mut out = Vec::new();
        for entry in open.iter().map_err(storage_err)? {
            let (id, _) = entry.map_err(storage_err)?;
            if let Some(record) = read_record(&orders, &tasks, id.value())? {
                out.push(record);
            }
        }
        Ok(out)
    }

    /// Orders whose task owes a droplet action (SPEC §9), with their tasks.
    pub fn pending_actions(&self) -> Result<Vec<OrderRecord>, StoreError> {
        let txn = self.snapshot()?;
        let pending = txn
            .open_table(tables::PENDING_ACTIONS)
            .map_err(storage_err)?;
        let orders = txn.open_table(tables::ORDERS).map_err(storage_err)?;
        let tasks = txn.open_table(tables::TASKS).map_err(storage_err)?;
        let mut out = Vec::new();
        for entry in pending.iter().map_err(storage_err)? {
            let (id, _) = entry.map_err(storage_err)?;
            if let Some(record) = read_record(&orders, &tasks, id.value())? {
                out.push(record);
            }
        }
        Ok(out)
    }

    /// Up to `limit` orders due at or before `now`, soonest first: one range
    /// of the `due` index, so the cost follows the due orders, not the file.
    pub fn due_orders(&self, now: i64, limit: usize) -> Result<Vec<Uuid>, StoreError> {
        let txn = self.snapshot()?;
        let due = txn.open_table(tables::DUE).map_err(storage_err)?;
        let mut ids = Vec::new();
        for entry in due
            .range((i64::MIN, 0)..=(now, u128::MAX))
            .map_err(storage_err)?
            .take(limit)
        {
            let (key, _) = entry.map_err(storage_err)?;
            ids.push(Uuid::from_u128(key.value().1));
        }
        Ok(ids)
    }

    pub fn idempotency(
        &self,
        scope: &str,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        let txn = self.snapshot()?;
        let table = txn.open_table(tables::IDEMPOTENCY).map_err(storage_err)?;
        match table.get((scope, key)).map_err(storage_err)? {
            Some(bytes) => codec::decode(bytes.value()).map(Some).map_err(corrupt),
            None => Ok(None),
        }
    }

    /// Number of orders in each status (for metrics).
    pub fn status_counts(&self) -> Result<Vec<(OrderStatus, u64)>, StoreError> {
        let txn = self.snapshot()?;
        let counts = txn.open_table(tables::COUNTS).map_err(storage_err)?;
        let mut out = Vec::new();
        for status in OrderStatus::ALL {
            let n = counts
                .get(count_key(CountScope::Status(status.code())).as_str())
                .map_err(storage_err)?
                .map(|v| v.value())
                .unwrap_or(0);
            out.push((*status, n));
        }
        Ok(out)
    }
}

/// Merges newest-first streams of (seq, id) into one newest-first page.
fn merge_newest<I>(mut streams: Vec<I>, skip: usize, take: usize) -> Result<Vec<u128>, StoreError>
where
    I: Iterator<Item = Result<(u64, u128), StoreError>>,
{
    let mut heads = Vec::with_capacity(streams.len());
    for s in streams.iter_mut() {
        heads.push(s.next().transpose()?);
    }
    let mut out = Vec::with_capacity(take);
    let mut skipped = 0;
    while out.len() < take {
        let newest = heads
            .iter()
            .enumerate()
            .filter_map(|(i, h)| h.map(|(seq, _)| (seq, i)))
            .max();
        let Some((_, i)) = newest else {
            break;
        };
        let Some((_, id)) = heads[i] else {
            break;
        };
        heads[i] = streams[i].next().transpose()?;
        if skipped < skip {
            skipped += 1;
        } else {
            out.push(id);
        }
    }
    Ok(out)
}

fn read_record(
    orders: &ReadOnlyTable<u128, &'static [u8]>,
    tasks: &ReadOnlyTable<u128, &'static [u8]>,
    id: u128,
) -> Result<Option<OrderRecord>, StoreError> {
    let Some(bytes) = orders.get(id).map_err(storage_err)? else {
        return Ok(None);
    };
    let order: Order = codec::decode(bytes.value()).map_err(corrupt)?;
    let task: Option<ProvisioningTask> = match tasks.get(id).map_err(storage_err)? {
        Some(bytes) => Some(codec::decode(bytes.value()).map_err(corrupt)?),
        None => None,
    };
    Ok(Some(OrderRecord { order, task }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn merging_status_ranges_equals_one_sorted_list(
            seqs in proptest::collection::btree_set(1u64..10_000, 0..200),
            assignment in proptest::collection::vec(0usize..6, 200),
            skip in 0usize..50,
            take in 1usize..30,
        ) {
            let all: Vec<u64> = seqs.iter().rev().copied().collect();
            let mut streams = vec![Vec::new(); 6];
            for (i, seq) in all.iter().enumerate() {
                streams[assignment[i]].push(Ok((*seq, u128::from(*seq))));
            }
            let merged = merge_newest(streams.into_iter().map(Vec::into_iter).collect(), skip, take).unwrap();
            let expected: Vec<u128> = all.iter().skip(skip).take(take).map(|s| u128::from(*s)).collect();
            prop_assert_eq!(merged, expected);
        }
    }
}
