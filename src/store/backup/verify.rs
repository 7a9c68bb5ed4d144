//! `vpsd verify`: opens a data file or snapshot (exclusively), runs redb's
//! integrity check, opens every table of the list ([`tables::for_each`]), then
//! checks every record, index entry, count, coupon counter and history chain.
//! Each check is one area; the first inconsistency found is the error.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use redb::{
    ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
    TableHandle,
};

use super::super::tables::{self, count_key, CountScope, TableVisitor};
use super::super::{codec, IdempotencyRecord};
pub use super::verify_common::VerifyError;
use super::verify_common::{inconsistent, open_if_present, written_before, written_before_tables};
use crate::domain::task::ProvisioningTask;
use crate::domain::{HistoryEntry, Order, OrderStatus};

/// What `vpsd verify` counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub orders: u64,
    pub items: u64,
    pub history: u64,
    pub tasks: u64,
    /// Rows per table, by table name: every table of the list is present.
    pub rows: BTreeMap<String, u64>,
}

fn decode<T: codec::Record>(
    bytes: &[u8],
    record: impl FnOnce() -> String,
) -> Result<T, VerifyError> {
    codec::decode(bytes).map_err(|source| VerifyError::Decode {
        record: record(),
        source,
    })
}

/// [`verify_showing`] with no progress to show: the tests' way in.
#[cfg(any(test, feature = "testing"))]
pub fn verify(path: &Path) -> Result<VerifyReport, VerifyError> {
    verify_showing(path, &super::super::no_progress)
}

/// The checks [`verify_showing`] makes, in order; `progress` is told each
/// one done.
const STEPS: u64 = 10;

/// Opens a data file or snapshot (exclusively), runs redb's integrity check,
/// and checks every table, record, index entry, count and history chain,
/// telling `progress` how many of its checks are done.
pub fn verify_showing(
    path: &Path,
    progress: super::super::Progress<'_>,
) -> Result<VerifyReport, VerifyError> {
    let mut db = super::super::open_offline(path)?;
    match super::super::quietly(|| db.check_integrity()) {
        Ok(Ok(true)) => {}
        Ok(Ok(false)) => return Err(VerifyError::NeedsRepair),
        Ok(Err(e)) => return Err(VerifyError::Integrity(e)),
        Err(_) => return Err(VerifyError::IntegrityPanicked),
    }
    let txn = db.begin_read()?;
    let mut walk = CountRows {
        txn: &txn,
        rows: BTreeMap::new(),
    };
    tables::for_each(&mut walk)?;
    let rows = walk.rows;
    progress("checking", 1, STEPS);
    Ok(VerifyReport {
        rows,
        ..check_contents(&txn, progress)?
    })
}

/// Opens every table of the list and counts its rows.
struct CountRows<'a> {
    txn: &'a ReadTransaction,
    rows: BTreeMap<String, u64>,
}

impl TableVisitor for CountRows<'_> {
    type Error = VerifyError;

    fn visit<K: redb::Key + 'static, V: redb::Value + 'static>(
        &mut self,
        table: TableDefinition<'static, K, V>,
    ) -> Result<(), VerifyError> {
        let name = table.name().to_string();
        let failed = |e: redb::Error| VerifyError::Table {
            table: name.clone(),
            source: e,
        };
        let len = match self.txn.open_table(table) {
            Ok(t) => t.len().map_err(|e| failed(e.into()))?,
            // A file written before the table existed (an older schema,
            // migrated when a daemon opens it) simply has none of its rows.
            Err(redb::TableError::TableDoesNotExist(_)) if written_before_tables(self.txn)? => 0,
            Err(e) => return Err(failed(e.into())),
        };
        self.rows.insert(name, len);
        Ok(())
    }
}

fn check_contents(
    txn: &ReadTransaction,
    progress: super::super::Progress<'_>,
) -> Result<VerifyReport, VerifyError> {
    let step = |n| progress("checking", n, STEPS);
    let (schema, last_seq) = check_schema(txn)?;
    let mut expected = Expected::from_orders(txn, last_seq)?;
    step(2);
    check_order_indexes(txn, &expected.orders)?;
    step(3);
    expected
        .counts
        .extend(super::verify_outbox::check_outbox(txn)?);
    step(4);
    expected.counts.extend(check_idempotency(txn)?);
    step(5);
    let (tasks, per_account) = check_tasks(txn, &expected.orders)?;
    step(6);
    // Files older than schema 6 get their per-account counts when a daemon
    // opens (migrates) them.
    if schema >= 6 {
        expected.counts.extend(per_account);
    }
    check_counts(txn, &expected.counts)?;
    step(7);
    check_coupon_counters(txn, &expected)?;
    step(8);
    let history = check_history(txn, &expected.orders)?;
    step(9);
    check_due(txn, &expected.orders)?;
    step(STEPS);
    Ok(VerifyReport {
        orders: expected.orders.len() as u64,
        items: expected.items,
        history,
        tasks,
        rows: BTreeMap::new(),
    })
}

/// The file's schema is one this vpsd reads; returns it and the last order
/// sequence.
fn check_schema(txn: &ReadTransaction) -> Result<(u64, u64), VerifyError> {
    let meta = txn.open_table(tables::META)?;
    let version = meta
        .get(tables::META_SCHEMA_VERSION)?
        .map(|v| v.value())
        .ok_or_else(|| inconsistent("meta: no schema version".into()))?;
    if version > tables::SCHEMA_VERSION {
        return Err(VerifyError::NewerSchema {
            found: version,
            supported: tables::SCHEMA_VERSION,
        });
    }
    let last_seq = meta
        .get(tables::META_ORDER_SEQ)?
        .map(|v| v.value())
        .unwrap_or(0);
    Ok((version, last_seq))
}

/// The orders, and what every index, count and coupon counter should
/// therefore hold.
#[derive(Default)]
struct Expected {
    orders: HashMap<u128, Order>,
    seqs: BTreeSet<u64>,
    items: u64,
    counts: BTreeMap<String, u64>,
    coupon_uses: BTreeMap<String, u64>,
    coupon_user_uses: BTreeMap<(String, String), u64>,
}

impl Expected {
    fn from_orders(txn: &ReadTransaction, last_seq: u64) -> Result<Expected, VerifyError> {
        let mut expected = Expected::default();
        for entry in txn.open_table(tables::ORDERS)?.iter()? {
            let (key, bytes) = entry?;
            let id = key.value();
            let order: Order = decode(bytes.value(), || {
                format!("order {}", uuid::Uuid::from_u128(id))
            })?;
            if order.id.as_u128() != id {
                return Err(inconsistent(format!(
                    "order stored under {} has id {}",
                    uuid::Uuid::from_u128(id),
                    order.id
                )));
            }
            if order.seq == 0 || order.seq > last_seq || !expected.seqs.insert(order.seq) {
                return Err(inconsistent(format!(
                    "order {} has a bad or duplicate sequence {}",
                    order.id, order.seq
                )));
            }
            expected.add(order);
        }
        Ok(expected)
    }

    fn add(&mut self, order: Order) {
        let code = order.status.code();
        for scope in [
            CountScope::All,
            CountScope::Status(code),
            CountScope::UserStatus(&order.user_id, code),
        ] {
            *self.counts.entry(count_key(scope)).or_default() += 1;
        }
        if order.coupon_counted {
            if let Some(c) = &order.pricing.coupon_code {
                *self.coupon_uses.entry(c.clone()).or_default() += 1;
                *self
                    .coupon_user_uses
                    .entry((c.clone(), order.user_id.clone()))
                    .or_default() += 1;
            }
        }
        self.items += order.items.len() as u64;
        self.orders.insert(order.id.as_u128(), order);
    }
}

/// The key's stored bytes, so keys of any index type compare alike.
fn key_bytes<K: redb::Value>(key: &K::SelfType<'_>) -> Vec<u8> {
    K::as_bytes(key).as_ref().to_vec()
}

/// Both ways: every entry points to an order whose fields give back the
/// entry's key, and (sizes being equal) every order has its entry.
fn check_index<K: redb::Key + 'static>(
    txn: &ReadTransaction,
    index: TableDefinition<'static, K, u128>,
    orders: &HashMap<u128, Order>,
    key_of: impl Fn(&Order) -> Vec<u8>,
) -> Result<(), VerifyError> {
    let name = index.name();
    let table = txn.open_table(index)?;
    for entry in table.iter()? {
        let (k, v) = entry?;
        let id = v.value();
        let order = orders.get(&id).ok_or_else(|| {
            inconsistent(format!(
                "index {name}: entry points to missing order {}",
                uuid::Uuid::from_u128(id)
            ))
        })?;
        if key_bytes::<K>(&k.value()) != key_of(order) {
            return Err(inconsistent(format!(
                "index {name}: entry for order {} does not match the order",
                order.id
            )));
        }
    }
    let len = table.len()?;
    if len != orders.len() as u64 {
        return Err(inconsistent(format!(
            "index {name} has {len} entries for {} orders",
            orders.len()
        )));
    }
    Ok(())
}

fn check_order_indexes(
    txn: &ReadTransaction,
    orders: &HashMap<u128, Order>,
) -> Result<(), VerifyError> {
    check_index(txn, tables::BY_SEQ, orders, |o| key_bytes::<u64>(&o.seq))?;
    check_index(txn, tables::BY_STATUS, orders, |o| {
        key_bytes::<(u8, u64)>(&(o.status.code(), o.seq))
    })?;
    // A backup taken before schema 4 still has the status in the per-user key.
    if written_before(txn, 4)? {
        check_index(txn, tables::LEGACY_BY_USER_STATUS, orders, |o| {
            key_bytes::<(&str, u8, u64)>(&(o.user_id.as_str(), o.status.code(), o.seq))
        })
    } else {
        check_index(txn, tables::BY_USER, orders, |o| {
            key_bytes::<(&str, u64)>(&(o.user_id.as_str(), o.seq))
        })
    }
}

fn check_counts(txn: &ReadTransaction, counts: &BTreeMap<String, u64>) -> Result<(), VerifyError> {
    let mut stored = BTreeMap::new();
    for entry in txn.open_table(tables::COUNTS)?.iter()? {
        let (k, v) = entry?;
        stored.insert(k.value().to_string(), v.value());
    }
    if stored == *counts {
        return Ok(());
    }
    let differing = counts
        .iter()
        .find(|(k, v)| stored.get(*k) != Some(v))
        .map(|(k, _)| k.clone())
        .or_else(|| stored.keys().find(|k| !counts.contains_key(*k)).cloned())
        .unwrap_or_default();
    Err(inconsistent(format!(
        "counts: {differing:?} does not match the orders"
    )))
}

/// Stored redemptions equal those of the orders that hold each coupon.
fn check_coupon_counters(txn: &ReadTransaction, expected: &Expected) -> Result<(), VerifyError> {
    for entry in txn.open_table(tables::COUPON_USES)?.iter()? {
        let (k, v) = entry?;
        if expected.coupon_uses.get(k.value()).copied().unwrap_or(0) != v.value() {
            return Err(inconsistent(format!(
                "coupon_uses: {:?} does not match the orders",
                k.value()
            )));
        }
    }
    for entry in txn.open_table(tables::COUPON_USER_USES)?.iter()? {
        let (k, v) = entry?;
        let (code, user) = k.value();
        let counted = expected
            .coupon_user_uses
            .get(&(code.to_string(), user.to_string()))
            .copied()
            .unwrap_or(0);
        if counted != v.value() {
            return Err(inconsistent(format!(
                "coupon_user_uses: {code:?} for {user:?} does not match the orders"
            )));
        }
    }
    Ok(())
}

/// (row number, row) of each order, by order sequence, in key order.
type HistoryRows = HashMap<u64, Vec<(u32, HistoryEntry)>>;

/// Every history row, grouped; and their total.
fn history_rows(txn: &ReadTransaction) -> Result<(HistoryRows, u64), VerifyError> {
    let mut rows = HistoryRows::new();
    let mut total = 0;
    for entry in txn.open_table(tables::HISTORY)?.iter()? {
        let (k, v) = entry?;
        let (seq, n) = k.value();
        let row: HistoryEntry = decode(v.value(), || format!("history of order #{seq} row {n}"))?;
        rows.entry(seq).or_default().push((n, row));
        total += 1;
    }
    Ok((rows, total))
}

/// Rows 0..history_len exist for every order and chain: each row starts where
/// the last status change ended (payment events change no status), and the
/// chain ends at the order's status.
fn check_history(txn: &ReadTransaction, orders: &HashMap<u128, Order>) -> Result<u64, VerifyError> {
    let (rows, total) = history_rows(txn)?;
    let seqs: BTreeSet<u64> = orders.values().map(|o| o.seq).collect();
    if let Some(seq) = rows.keys().find(|s| !seqs.contains(s)) {
        return Err(inconsistent(format!(
            "history rows for missing order #{seq}"
        )));
    }
    for order in orders.values() {
        let list = rows.get(&order.seq).map(Vec::as_slice).unwrap_or(&[]);
        check_chain(order, list)?;
    }
    Ok(total)
}

fn check_chain(order: &Order, list: &[(u32, HistoryEntry)]) -> Result<(), VerifyError> {
    if list.len() != order.history_len as usize
        || list.iter().enumerate().any(|(i, (n, _))| *n as usize != i)
    {
        return Err(inconsistent(format!(
            "order {}: history rows are missing or out of order",
            order.id
        )));
    }
    let mut last: Option<OrderStatus> = None;
    for (n, row) in list {
        if row.previous_status != last {
            return Err(inconsistent(format!(
                "order {}: history row {n} starts at {:?}, expected {last:?}",
                order.id, row.previous_status
            )));
        }
        if let Some(status) = row.new_status.status() {
            last = Some(status);
        }
    }
    if last != Some(order.status) {
        return Err(inconsistent(format!(
            "order {}: history ends at {last:?} but the order is {}",
            order.id, order.status
        )));
    }
    let paid = list
        .iter()
        .any(|(_, r)| r.new_status == crate::domain::HistoryStatus::Paid);
    if paid != order.paid_at.is_some() {
        return Err(inconsistent(format!(
            "order {}: paidAt does not match its history",
            order.id
        )));
    }
    Ok(())
}

/// Every task belongs to an order, and open_tasks lists exactly the open
/// ones. Returns the number of tasks and the per-account counts they imply.
fn check_tasks(
    txn: &ReadTransaction,
    orders: &HashMap<u128, Order>,
) -> Result<(u64, BTreeMap<String, u64>), VerifyError> {
    let mut per_account = BTreeMap::new();
    let mut open = BTreeSet::new();
    let mut owing = BTreeSet::new();
    let mut total = 0;
    for entry in txn.open_table(tables::TASKS)?.iter()? {
        let (k, v) = entry?;
        let id = k.value();
        let task: ProvisioningTask = decode(v.value(), || {
            format!("task of {}", uuid::Uuid::from_u128(id))
        })?;
        let Some(order) = orders.get(&id).filter(|_| task.order_id.as_u128() == id) else {
            return Err(inconsistent(format!(
                "task {} does not belong to an existing order",
                task.id
            )));
        };
        if let Some(name) = task.live_account(order.status) {
            *per_account
                .entry(count_key(CountScope::Account(name)))
                .or_default() += 1;
        }
        if task.is_open() {
            open.insert(id);
        }
        if task.owes_droplet_work() {
            owing.insert(id);
        }
        total += 1;
    }
    let mut pending = BTreeSet::new();
    if let Some(table) = open_if_present(txn, tables::PENDING_ACTIONS)? {
        for entry in table.iter()? {
            pending.insert(entry?.0.value());
        }
    }
    if pending != owing {
        return Err(inconsistent(
            "pending_actions does not match the tasks that owe droplet work".into(),
        ));
    }
    let mut listed = BTreeSet::new();
    for entry in txn.open_table(tables::OPEN_TASKS)?.iter()? {
        listed.insert(entry?.0.value());
    }
    if listed != open {
        return Err(inconsistent(
            "open_tasks does not match the tasks that are PENDING or IN_PROGRESS".into(),
        ));
    }
    Ok((total, per_account))
}

/// The due index holds exactly each live order's `next_due` (SPEC §9 sweeps
/// read nothing else), and only live orders have one.
fn check_due(txn: &ReadTransaction, orders: &HashMap<u128, Order>) -> Result<(), VerifyError> {
    let mut expected = BTreeSet::new();
    for (id, order) in orders {
        let live = matches!(order.status, OrderStatus::Active | OrderStatus::Suspended);
        match order.term.next_due {
            Some(due) if live => {
                expected.insert((due, *id));
            }
            Some(_) => {
                return Err(inconsistent(format!(
                    "order {} is {} but has a due time",
                    order.id, order.status
                )))
            }
            None => {}
        }
    }
    let mut listed = BTreeSet::new();
    if let Some(table) = open_if_present(txn, tables::DUE)? {
        for entry in table.iter()? {
            listed.insert(entry?.0.value());
        }
    }
    if listed != expected {
        return Err(inconsistent(
            "orders_due does not match the orders' due times".into(),
        ));
    }
    Ok(())
}

/// Every idempotency record has the expiry entry the sweeper deletes it by
/// and its caller's entry (schema 5), and the caller entries name exactly the
/// records; returns the per-caller counts the records imply.
fn check_idempotency(txn: &ReadTransaction) -> Result<BTreeMap<String, u64>, VerifyError> {
    let expiry = txn.open_table(tables::IDEMPOTENCY_EXPIRY)?;
    let by_scope = open_if_present(txn, tables::IDEMPOTENCY_BY_SCOPE)?;
    let mut counts = BTreeMap::new();
    let mut records = 0u64;
    for entry in txn.open_table(tables::IDEMPOTENCY)?.iter()? {
        let (k, v) = entry?;
        let (scope, key) = k.value();
        let record: IdempotencyRecord = decode(v.value(), || format!("idempotency key {key:?}"))?;
        if expiry.get((record.expires_at, scope, key))?.is_none() {
            return Err(inconsistent(format!(
                "idempotency key {key:?} has no expiry entry"
            )));
        }
        if let Some(by_scope) = &by_scope {
            if by_scope.get((scope, record.expires_at, key))?.is_none() {
                return Err(inconsistent(format!(
                    "idempotency key {key:?} is missing from its caller's keys"
                )));
            }
            *counts
                .entry(count_key(CountScope::IdempotencyKeys(scope)))
                .or_default() += 1;
        }
        records += 1;
    }
    if let Some(by_scope) = &by_scope {
        if by_scope.len()? != records {
            return Err(inconsistent(format!(
                "idempotency_by_scope has {} entries for {records} keys",
                by_scope.len()?
            )));
        }
    }
    Ok(counts)
}
