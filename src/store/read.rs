//! Queries. Each runs in one read transaction (a consistent snapshot) and walks an
//! index range, so a page costs O(offset + limit) lookups whatever the table size.

use redb::{ReadOnlyTable, ReadTransaction, ReadableDatabase, ReadableTable};
use uuid::Uuid;

use super::tables::{self, count_key, CountScope};
use super::{codec, corrupt, storage_err, IdempotencyRecord, OrderRecord, Store, StoreError};
use crate::domain::customer_action::CustomerAction;
use crate::domain::task::ProvisioningTask;
use crate::domain::{HistoryEntry, ListQuery, Order, OrderStatus, Page, StatusSet};

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

    /// Up to `limit` of the order's customer actions, newest first, after
    /// skipping `skip` (SPEC §14); the total is the task's `actions_len`.
    pub fn customer_actions(
        &self,
        id: Uuid,
        skip: usize,
        limit: usize,
    ) -> Result<Vec<CustomerAction>, StoreError> {
        let txn = self.snapshot()?;
        let table = txn
            .open_table(tables::CUSTOMER_ACTIONS)
            .map_err(storage_err)?;
        let key = id.as_u128();
        let mut rows = Vec::new();
        let range = table
            .range((key, 0)..=(key, u32::MAX))
            .map_err(storage_err)?;
        for entry in range.rev().skip(skip).take(limit) {
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
        let ids = match (&q.user, wanted(q)) {
            (None, None) => {
                let t = txn.open_table(tables::BY_SEQ).map_err(storage_err)?;
                page_ids!(t, 0..=u64::MAX, skip, take)
            }
            (None, Some(set)) => match set.single() {
                Some(s) => {
                    let t = txn.open_table(tables::BY_STATUS).map_err(storage_err)?;
                    let c = s.code();
                    page_ids!(t, (c, 0)..=(c, u64::MAX), skip, take)
                }
                None => page_in_statuses(&txn, set, skip, take)?,
            },
            (Some(u), None) => {
                let t = txn.open_table(tables::BY_USER).map_err(storage_err)?;
                let u = u.as_str();
                page_ids!(t, (u, 0)..=(u, u64::MAX), skip, take)
            }
            (Some(u), Some(set)) => user_page_in_statuses(&txn, u, set, skip, take)?,
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
        match (&q.user, wanted(q)) {
            (None, None) => count(CountScope::All),
            (None, Some(set)) => set
                .iter()
                .map(|s| count(CountScope::Status(s.code())))
                .sum(),
            (Some(u), set) => set
                .unwrap_or_else(|| OrderStatus::ALL.iter().copied().collect())
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
            .filter(|s| q.status.is_none_or(|w| w.contains(*s)))
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

    /// Number of `user`'s orders in each status, from the per-user counts.
    pub fn user_status_counts(&self, user: &str) -> Result<Vec<(OrderStatus, u64)>, StoreError> {
        let txn = self.snapshot()?;
        let counts = txn.open_table(tables::COUNTS).map_err(storage_err)?;
        let mut out = Vec::new();
        for status in OrderStatus::ALL {
            let n = counts
                .get(count_key(CountScope::UserStatus(user, status.code())).as_str())
                .map_err(storage_err)?
                .map_or(0, |v| v.value());
            out.push((*status, n));
        }
        Ok(out)
    }

    /// The orders created at or after `since`, newest first: the by-seq index
    /// walked back until an older order, so the cost follows the orders since
    /// then, not the file. Seq is commit order and `created_at` the clock at
    /// creation; orders committed out of clock order by a few milliseconds
    /// at the boundary may be left out.
    pub fn orders_created_since(&self, since: i64) -> Result<Vec<OrderRecord>, StoreError> {
        let txn = self.snapshot()?;
        let by_seq = txn.open_table(tables::BY_SEQ).map_err(storage_err)?;
        let orders = txn.open_table(tables::ORDERS).map_err(storage_err)?;
        let tasks = txn.open_table(tables::TASKS).map_err(storage_err)?;
        let mut out = Vec::new();
        for entry in by_seq.iter().map_err(storage_err)?.rev() {
            let (_, id) = entry.map_err(storage_err)?;
            let Some(record) = read_record(&orders, &tasks, id.value())? else {
                continue;
            };
            if record.order.created_at < since {
                break;
            }
            out.push(record);
        }
        Ok(out)
    }

    /// Live orders per DigitalOcean account (SPEC §13), by account name.
    pub fn account_usage(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let txn = self.snapshot()?;
        let counts = txn.open_table(tables::COUNTS).map_err(storage_err)?;
        let prefix = tables::ACCOUNT_COUNT_PREFIX;
        let mut out = Vec::new();
        // Count keys sort as text: every key with the prefix sorts before
        // the prefix with its final `:` raised to `;`.
        let end = format!("{};", prefix.trim_end_matches(':'));
        for entry in counts.range(prefix..end.as_str()).map_err(storage_err)? {
            let (key, n) = entry.map_err(storage_err)?;
            if let Some(name) = key.value().strip_prefix(prefix) {
                out.push((name.to_string(), n.value()));
            }
        }
        Ok(out)
    }
}

/// The status filter that narrows anything: a set of every status lists
/// what no filter lists, through the cheaper unfiltered range.
fn wanted(q: &ListQuery) -> Option<StatusSet> {
    q.status.filter(|set| !set.is_all())
}

/// Orders in any of several statuses, newest first: each status's range
/// gives at most `skip + take` of its newest (seq, id), and merging those by
/// seq gives the page. Costs O(statuses x (offset + limit)), never a scan of
/// the orders outside the statuses.
fn page_in_statuses(
    txn: &ReadTransaction,
    set: StatusSet,
    skip: usize,
    take: usize,
) -> Result<Vec<u128>, StoreError> {
    let by_status = txn.open_table(tables::BY_STATUS).map_err(storage_err)?;
    let reach = skip.saturating_add(take);
    let mut newest: Vec<(u64, u128)> = Vec::new();
    for status in set.iter() {
        let c = status.code();
        for entry in by_status
            .range((c, 0)..=(c, u64::MAX))
            .map_err(storage_err)?
            .rev()
            .take(reach)
        {
            let (key, id) = entry.map_err(storage_err)?;
            newest.push((key.value().1, id.value()));
        }
    }
    newest.sort_unstable_by_key(|entry| std::cmp::Reverse(entry.0));
    Ok(newest
        .into_iter()
        .skip(skip)
        .take(take)
        .map(|(_, id)| id)
        .collect())
}

/// A user's orders in some statuses, newest first: the user's range filtered
/// by the status index (see [`tables::BY_USER`] for why the status is not in
/// the per-user key). Costs O(the user's orders up to the page), not
/// O(page), which per-user order counts keep small.
fn user_page_in_statuses(
    txn: &ReadTransaction,
    user: &str,
    set: StatusSet,
    skip: usize,
    take: usize,
) -> Result<Vec<u128>, StoreError> {
    let by_user = txn.open_table(tables::BY_USER).map_err(storage_err)?;
    let by_status = txn.open_table(tables::BY_STATUS).map_err(storage_err)?;
    let mut ids = Vec::with_capacity(take);
    let mut skipped = 0;
    for entry in by_user
        .range((user, 0)..=(user, u64::MAX))
        .map_err(storage_err)?
        .rev()
    {
        if ids.len() == take {
            break;
        }
        let (key, id) = entry.map_err(storage_err)?;
        let seq = key.value().1;
        let mut in_set = false;
        for status in set.iter() {
            if by_status
                .get((status.code(), seq))
                .map_err(storage_err)?
                .is_some()
            {
                in_set = true;
                break;
            }
        }
        if !in_set {
            continue;
        }
        if skipped < skip {
            skipped += 1;
        } else {
            ids.push(id.value());
        }
    }
    Ok(ids)
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
    use crate::backend::store::{Store, WriteOp};
    use crate::domain::lifecycle::{self, Command};
    use crate::domain::{Actor, ListQuery, OrderStatus};
    use proptest::prelude::*;

    const USERS: [&str; 3] = ["ann", "bob", "cy"];

    /// Orders of three users, each left PENDING_PAYMENT (0), PAID (1) or
    /// CANCELED (2); returns (user, status, id) newest first.
    fn fill(store: &Store, orders: &[(usize, u8)]) -> Vec<(&'static str, OrderStatus, u128)> {
        let mut made = Vec::new();
        for &(user, fate) in orders {
            let user = USERS[user];
            let order = crate::domain::order::test_order(user);
            let id = order.id;
            let change = lifecycle::create(order, &Actor::User(user.into()), 1);
            let create = WriteOp::Create {
                change: Box::new(change),
                coupon: None,
                idempotency: None,
            };
            store.write_blocking(create).unwrap().unwrap();
            let (command, status) = match fate {
                0 => (None, OrderStatus::PendingPayment),
                1 => (Some(Command::Pay { notes: None }), OrderStatus::Paid),
                _ => (
                    Some(Command::Cancel { reason: None }),
                    OrderStatus::Canceled,
                ),
            };
            if let Some(command) = command {
                let apply = WriteOp::Apply {
                    order_id: id,
                    command,
                    actor: Actor::Admin(None),
                    owner: None,
                    idempotency: None,
                };
                store.write_blocking(apply).unwrap().unwrap();
            }
            made.push((user, status, id.as_u128()));
        }
        made.reverse();
        made
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn a_users_pages_match_filtering_all_orders_newest_first(
            orders in proptest::collection::vec((0usize..3, 0u8..3), 0..40),
            // 3: everyone's orders (the admin list).
            user in 0usize..4,
            status in proptest::option::of(1u8..8),
            page in 1u32..5,
            limit in 1u32..7,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(&dir.path().join("d.redb")).unwrap();
            let made = fill(&store, &orders);
            // A bit per fate: every non-empty set of the three statuses.
            let fates = [
                OrderStatus::PendingPayment,
                OrderStatus::Paid,
                OrderStatus::Canceled,
            ];
            let status: Option<crate::domain::StatusSet> = status.map(|bits| {
                (0..3).filter(|i| bits & (1 << i) != 0).map(|i| fates[i]).collect()
            });
            let query = ListQuery {
                expires_before: None,
                user: USERS.get(user).map(|u| u.to_string()),
                status,
                page,
                limit,
            };
            let listed = store.list_orders(&query).unwrap();
            let matching: Vec<u128> = made
                .iter()
                .filter(|(u, _, _)| USERS.get(user).is_none_or(|w| w == u))
                .filter(|(_, s, _)| status.is_none_or(|w| w.contains(*s)))
                .map(|m| m.2)
                .collect();
            let expected: Vec<u128> = matching
                .iter()
                .skip(((page - 1) * limit) as usize)
                .take(limit as usize)
                .copied()
                .collect();
            let got: Vec<u128> = listed.items.iter().map(|r| r.order.id.as_u128()).collect();
            prop_assert_eq!(got, expected);
            prop_assert_eq!(listed.total, matching.len() as u64);
            store.shutdown();
        }
    }
}
