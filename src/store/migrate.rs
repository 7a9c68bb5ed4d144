//! Bringing a data file up to this build at open, in one transaction:
//! - schema 1 -> 2: orders gained their paid period (`Order` record v2). An
//!   ACTIVE v1 order gets `activatedAt` from its history (the row that moved it
//!   to ACTIVE) and its period from the lifecycle's own rule
//!   ([`start_paid_period`]).
//! - schema 3 -> 4: the per-user index no longer holds the status: each
//!   `(user, status, seq)` entry of `orders_by_user_status` becomes a
//!   `(user, seq)` entry of `orders_by_user`, and the old table is dropped.
//! - schema 4 -> 5: each caller's idempotency keys get their own expiry
//!   order and a count (`store::idempotency`), built from the stored keys.
//! - schema 5 -> 6: live orders are counted per DigitalOcean account (SPEC
//!   §13), from the tasks (which name `default` for every started task of a
//!   file made before accounts existed).
//! - the `due` index is rebuilt whenever the expiry policy (`lifecycle.*`)
//!   differs from the one it was built with, since due times follow from it.

use redb::{ReadableTable, Table, WriteTransaction};

use super::{codec, tables, OpenError};
use crate::domain::expiry::{self, Policy};
use crate::domain::period::start_paid_period;
use crate::domain::{HistoryEntry, HistoryStatus, Order, OrderStatus};

type Fail<'a> = &'a dyn Fn(&str, &dyn std::fmt::Display) -> OpenError;

/// Runs what the stored schema version and policy fingerprint call for.
pub(super) fn run(
    txn: &WriteTransaction,
    stored_schema: u64,
    policy: &Policy,
    fail: Fail<'_>,
) -> Result<(), OpenError> {
    let mut orders = txn
        .open_table(tables::ORDERS)
        .map_err(|e| fail("cannot open orders", &e))?;
    if stored_schema < 2 {
        let active = ids_with_status(txn, OrderStatus::Active, fail)?;
        let history = txn
            .open_table(tables::HISTORY)
            .map_err(|e| fail("cannot open history", &e))?;
        for id in active {
            let mut order = load(&orders, id, fail)?;
            let activated = activation_time(&history, &order, fail)?;
            start_paid_period(&mut order.term, activated, order.duration);
            store(&mut orders, &order, fail)?;
        }
    }
    if stored_schema < 4 {
        rekey_user_index(txn, fail)?;
    }
    if stored_schema < 5 {
        super::idempotency::index_existing(txn)
            .map_err(|e| fail("cannot index the idempotency keys", &e))?;
    }
    if stored_schema < 6 {
        count_accounts(txn, &orders, fail)?;
    }
    let mut meta = txn
        .open_table(tables::META)
        .map_err(|e| fail("cannot open meta", &e))?;
    let wanted = expiry::fingerprint(policy);
    let built = meta
        .get(tables::META_DUE_POLICY)
        .map_err(|e| fail("cannot read meta", &e))?
        .map(|v| v.value());
    if stored_schema < 2 || built != Some(wanted) {
        reindex_due(txn, &mut orders, policy, fail)?;
        meta.insert(tables::META_DUE_POLICY, wanted)
            .map_err(|e| fail("cannot write meta", &e))?;
    }
    Ok(())
}

/// Schema 6's per-account counts of live orders, from the stored tasks.
fn count_accounts(
    txn: &WriteTransaction,
    orders: &Table<'_, u128, &'static [u8]>,
    fail: Fail<'_>,
) -> Result<(), OpenError> {
    let tasks = txn
        .open_table(tables::TASKS)
        .map_err(|e| fail("cannot open tasks", &e))?;
    let mut per_account: std::collections::BTreeMap<String, u64> = Default::default();
    for entry in tasks.iter().map_err(|e| fail("cannot read tasks", &e))? {
        let (id, bytes) = entry.map_err(|e| fail("cannot read tasks", &e))?;
        let task: crate::domain::task::ProvisioningTask = codec::decode(bytes.value())
            .map_err(|e| fail(&format!("task {}", uuid::Uuid::from_u128(id.value())), &e))?;
        let order = load(orders, id.value(), fail)?;
        if let Some(name) = task.live_account(order.status) {
            *per_account.entry(name.to_string()).or_default() += 1;
        }
    }
    let mut counts = txn
        .open_table(tables::COUNTS)
        .map_err(|e| fail("cannot open counts", &e))?;
    for (name, n) in per_account {
        let key = tables::count_key(tables::CountScope::Account(&name));
        counts
            .insert(key.as_str(), n)
            .map_err(|e| fail("cannot write counts", &e))?;
    }
    Ok(())
}

/// Schema 4's `orders_by_user` from schema 1-3's `orders_by_user_status`.
fn rekey_user_index(txn: &WriteTransaction, fail: Fail<'_>) -> Result<(), OpenError> {
    {
        let legacy = txn
            .open_table(tables::LEGACY_BY_USER_STATUS)
            .map_err(|e| fail("cannot open the old per-user index", &e))?;
        let mut by_user = txn
            .open_table(tables::BY_USER)
            .map_err(|e| fail("cannot open the per-user index", &e))?;
        let entries = legacy
            .iter()
            .map_err(|e| fail("cannot read the old per-user index", &e))?;
        for entry in entries {
            let (key, id) = entry.map_err(|e| fail("cannot read the old per-user index", &e))?;
            let (user, _, seq) = key.value();
            by_user
                .insert((user, seq), id.value())
                .map_err(|e| fail("cannot write the per-user index", &e))?;
        }
    }
    txn.delete_table(tables::LEGACY_BY_USER_STATUS)
        .map_err(|e| fail("cannot drop the old per-user index", &e))?;
    Ok(())
}

/// Recomputes every live order's due time under `policy`.
fn reindex_due(
    txn: &WriteTransaction,
    orders: &mut Table<'_, u128, &'static [u8]>,
    policy: &Policy,
    fail: Fail<'_>,
) -> Result<(), OpenError> {
    let mut due = txn
        .open_table(tables::DUE)
        .map_err(|e| fail("cannot open the due index", &e))?;
    due.retain(|_, _| false)
        .map_err(|e| fail("cannot clear the due index", &e))?;
    for status in [OrderStatus::Active, OrderStatus::Suspended] {
        for id in ids_with_status(txn, status, fail)? {
            let mut order = load(orders, id, fail)?;
            order.term.next_due = expiry::due_of(&order, policy);
            if let Some(at) = order.term.next_due {
                due.insert((at, id), ())
                    .map_err(|e| fail("cannot write the due index", &e))?;
            }
            store(orders, &order, fail)?;
        }
    }
    Ok(())
}

fn ids_with_status(
    txn: &WriteTransaction,
    status: OrderStatus,
    fail: Fail<'_>,
) -> Result<Vec<u128>, OpenError> {
    let index = txn
        .open_table(tables::BY_STATUS)
        .map_err(|e| fail("cannot open the status index", &e))?;
    let code = status.code();
    let range = index
        .range((code, 0)..=(code, u64::MAX))
        .map_err(|e| fail("cannot read the status index", &e))?;
    let mut ids = Vec::new();
    for entry in range {
        let (_, id) = entry.map_err(|e| fail("cannot read the status index", &e))?;
        ids.push(id.value());
    }
    Ok(ids)
}

/// When the order last became ACTIVE, from its history rows.
fn activation_time(
    history: &Table<'_, (u64, u32), &'static [u8]>,
    order: &Order,
    fail: Fail<'_>,
) -> Result<i64, OpenError> {
    let rows = history
        .range((order.seq, 0)..=(order.seq, u32::MAX))
        .map_err(|e| fail("cannot read history", &e))?;
    let mut activated = None;
    for entry in rows {
        let (_, bytes) = entry.map_err(|e| fail("cannot read history", &e))?;
        let row: HistoryEntry =
            codec::decode(bytes.value()).map_err(|e| fail("a history row does not decode", &e))?;
        if row.new_status == HistoryStatus::Active {
            activated = Some(row.created_at);
        }
    }
    // An ACTIVE order without an ACTIVE row is inconsistent (`vpsd verify`
    // reports it); its last change is the best evidence of when it became
    // active, and the operator is told.
    Ok(activated.unwrap_or_else(|| {
        tracing::warn!(order_id = %order.id, "ACTIVE order has no ACTIVE history row; its period starts at its last change");
        order.updated_at
    }))
}

fn load(
    orders: &Table<'_, u128, &'static [u8]>,
    id: u128,
    fail: Fail<'_>,
) -> Result<Order, OpenError> {
    let bytes = orders
        .get(id)
        .map_err(|e| fail("cannot read an order", &e))?
        .ok_or_else(|| fail("an index names a missing order", &id))?;
    codec::decode(bytes.value()).map_err(|e| fail("an order does not decode", &e))
}

fn store(
    orders: &mut Table<'_, u128, &'static [u8]>,
    order: &Order,
    fail: Fail<'_>,
) -> Result<(), OpenError> {
    orders
        .insert(order.id.as_u128(), codec::encode(order).as_slice())
        .map_err(|e| fail("cannot write an order", &e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use redb::ReadableDatabase;

    use super::*;
    use crate::backend::store::Store;
    use crate::domain::order::test_order;
    use crate::domain::{Actor, HistoryEntry};

    fn row(prev: Option<OrderStatus>, new: HistoryStatus, at: i64) -> Vec<u8> {
        codec::encode(&HistoryEntry {
            id: uuid::Uuid::new_v4(),
            previous_status: prev,
            new_status: new,
            actor: Actor::System,
            reason: None,
            metadata: None,
            created_at: at,
        })
    }

    /// An ACTIVE order as the previous vpsd stored it, with the four history
    /// rows [`write_v1_file`] writes.
    fn active_v1_order() -> Order {
        let mut order = test_order("u");
        order.seq = 1;
        order.status = OrderStatus::Active;
        order.history_len = 4;
        order.paid_at = Some(2);
        order
    }

    /// A data file as the previous vpsd left it: schema 1, an ACTIVE v1 order
    /// that became ACTIVE on Jan 31.
    fn write_v1_file(path: &std::path::Path, order: &Order, active_at: i64) {
        let db = redb::Database::create(path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut meta = txn.open_table(tables::META).unwrap();
            meta.insert(tables::META_SCHEMA_VERSION, 1).unwrap();
            meta.insert(tables::META_ORDER_SEQ, order.seq).unwrap();
            let mut orders = txn.open_table(tables::ORDERS).unwrap();
            let bytes = codec::legacy::encode_order_v1(order);
            orders.insert(order.id.as_u128(), bytes.as_slice()).unwrap();
            let mut history = txn.open_table(tables::HISTORY).unwrap();
            use HistoryStatus as H;
            use OrderStatus as S;
            let rows = [
                row(None, H::PendingPayment, 1),
                row(Some(S::PendingPayment), H::Paid, 2),
                row(Some(S::Paid), H::Provisioning, 3),
                row(Some(S::Provisioning), H::Active, active_at),
            ];
            for (n, bytes) in rows.iter().enumerate() {
                history
                    .insert((order.seq, n as u32), bytes.as_slice())
                    .unwrap();
            }
            let (id, code) = (order.id.as_u128(), S::Active.code());
            let mut by_status = txn.open_table(tables::BY_STATUS).unwrap();
            by_status.insert((code, order.seq), id).unwrap();
            let mut by_seq = txn.open_table(tables::BY_SEQ).unwrap();
            by_seq.insert(order.seq, id).unwrap();
            let mut by_user = txn.open_table(tables::LEGACY_BY_USER_STATUS).unwrap();
            let user = order.user_id.as_str();
            by_user.insert((user, code, order.seq), id).unwrap();
            let mut counts = txn.open_table(tables::COUNTS).unwrap();
            for scope in [
                tables::CountScope::All,
                tables::CountScope::Status(code),
                tables::CountScope::UserStatus(user, code),
            ] {
                counts.insert(tables::count_key(scope).as_str(), 1).unwrap();
            }
            // The rest of the v1 table list, empty.
            txn.open_table(tables::TASKS).unwrap();
            txn.open_table(tables::OPEN_TASKS).unwrap();
            txn.open_table(tables::COUPON_USES).unwrap();
            txn.open_table(tables::COUPON_USER_USES).unwrap();
            txn.open_table(tables::IDEMPOTENCY).unwrap();
            txn.open_table(tables::IDEMPOTENCY_EXPIRY).unwrap();
        }
        txn.commit().unwrap();
    }

    #[test]
    fn active_v1_orders_get_their_period_from_history() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.redb");
        let order = active_v1_order();
        let jan31 = crate::domain::time::parse_rfc3339("2024-01-31T10:00:00Z").unwrap();
        write_v1_file(&path, &order, jan31);

        let store = Store::open(&path).unwrap();
        let migrated = store.get_order(order.id).unwrap().unwrap().order;
        assert_eq!(migrated.term.activated_at, Some(jan31));
        assert_eq!(
            migrated.term.expires_at,
            crate::domain::time::parse_rfc3339("2024-02-29T10:00:00Z")
        );
        let due = migrated.term.next_due.expect("reminders are due");
        let db = store.database().unwrap();
        let txn = db.begin_read().unwrap();
        let index = txn.open_table(tables::DUE).unwrap();
        assert!(index.get((due, order.id.as_u128())).unwrap().is_some());
        let meta = txn.open_table(tables::META).unwrap();
        let version = meta
            .get(tables::META_SCHEMA_VERSION)
            .unwrap()
            .unwrap()
            .value();
        assert_eq!(version, tables::SCHEMA_VERSION);
        let mine = crate::domain::ListQuery {
            expires_before: None,
            user: Some(order.user_id.clone()),
            status: Some(OrderStatus::Active.into()),
            page: 1,
            limit: 10,
        };
        let listed = store.list_orders(&mine).unwrap();
        assert_eq!(listed.total, 1);
        assert_eq!(
            listed.items[0].order.id, order.id,
            "the re-keyed user index"
        );
        assert!(txn.open_table(tables::LEGACY_BY_USER_STATUS).is_err());
        drop((index, meta, txn, db));
        store.shutdown();
    }

    #[test]
    fn verify_reads_a_v1_file_as_it_is_and_once_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.redb");
        let order = active_v1_order();
        write_v1_file(&path, &order, 5_000);
        // The offline tool on an old backup: no due or owed-action tables yet.
        let report = crate::backend::store::backup::verify(&path).expect("a v1 file verifies");
        assert_eq!(report.orders, 1);
        assert_eq!(report.rows["orders_due"], 0);
        let store = Store::open(&path).unwrap();
        store.shutdown();
        drop(store);
        let report =
            crate::backend::store::backup::verify(&path).expect("the migrated file verifies");
        assert_eq!(report.rows["orders_due"], 1);
    }
}
