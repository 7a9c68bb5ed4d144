//! Snapshots and verification. redb has no backup API, and copying the live
//! file could catch a commit half-written, so a snapshot is one read
//! transaction copied table by table into a fresh redb file. The file is
//! written under a hidden name and renamed only when complete and synced, so a
//! backup folder never holds anything that looks complete but is not.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata};

use super::tables::{self, count_key, CountScope};
use super::{codec, create_private_file, IdempotencyRecord};
use crate::domain::task::ProvisioningTask;
use crate::domain::time::{format_millis, now_millis, Millis};
use crate::domain::{HistoryEntry, Order, OrderStatus};

/// A finished snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// Absolute path of the snapshot file.
    pub path: PathBuf,
    pub bytes: u64,
    pub orders: u64,
    pub created_at: Millis,
}

/// Copies every row of one table definition from a read to a write transaction.
macro_rules! copy_table {
    ($from:expr, $to:expr, $def:expr) => {{
        let source = $from.open_table($def).map_err(err)?;
        let mut target = $to.open_table($def).map_err(err)?;
        for entry in source.iter().map_err(err)? {
            let (k, v) = entry.map_err(err)?;
            target.insert(k.value(), v.value()).map_err(err)?;
        }
    }};
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Writes a consistent snapshot of `db` to `dest` (which must not exist).
pub fn snapshot_to(db: &Database, dest: &Path) -> Result<SnapshotInfo, String> {
    let dest = absolute(dest)?;
    if dest.exists() {
        return Err(format!("{} already exists", dest.display()));
    }
    let dir = dest
        .parent()
        .ok_or_else(|| format!("{} has no parent folder", dest.display()))?;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let name = dest
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("{} has no file name", dest.display()))?;
    let partial = dir.join(format!(".{name}.partial"));
    let _ = std::fs::remove_file(&partial);
    let result = write_snapshot(db, &partial).and_then(|orders| {
        std::fs::rename(&partial, &dest).map_err(|e| format!("cannot rename the snapshot: {e}"))?;
        sync_dir(dir);
        let bytes = std::fs::metadata(&dest).map(|m| m.len()).unwrap_or(0);
        Ok(SnapshotInfo {
            path: dest.clone(),
            bytes,
            orders,
            created_at: now_millis(),
        })
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

/// A snapshot in `dir` named `vpsd-YYYYMMDDTHHMMSSZ.redb` (a `-N` suffix keeps
/// names unique within a second).
pub fn snapshot_into(db: &Database, dir: &Path) -> Result<SnapshotInfo, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let stamp: String = format_millis(now_millis())
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == 'T')
        .take(15)
        .collect();
    let mut path = dir.join(format!("vpsd-{stamp}Z.redb"));
    let mut n = 1;
    while path.exists() {
        path = dir.join(format!("vpsd-{stamp}Z-{n}.redb"));
        n += 1;
    }
    snapshot_to(db, &path)
}

/// Deletes the oldest snapshots in `dir` beyond the newest `keep`; returns
/// what it deleted. Only finished `vpsd-*.redb` files are considered.
pub fn prune(dir: &Path, keep: usize) -> Result<Vec<PathBuf>, String> {
    let mut snapshots = list_snapshots(dir)?;
    snapshots.sort();
    let excess = snapshots.len().saturating_sub(keep);
    let mut deleted = Vec::new();
    for path in snapshots.into_iter().take(excess) {
        std::fs::remove_file(&path)
            .map_err(|e| format!("cannot delete {}: {e}", path.display()))?;
        deleted.push(path);
    }
    Ok(deleted)
}

/// Finished snapshots in `dir`, unsorted.
pub fn list_snapshots(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot read {}: {e}", dir.display())),
    };
    Ok(entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("vpsd-") && n.ends_with(".redb"))
        })
        .collect())
}

fn write_snapshot(db: &Database, path: &Path) -> Result<u64, String> {
    create_private_file(path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    let read = db.begin_read().map_err(err)?;
    let orders = read
        .open_table(tables::ORDERS)
        .map_err(err)?
        .len()
        .map_err(err)?;
    let target = Database::builder().create(path).map_err(err)?;
    let write = target.begin_write().map_err(err)?;
    copy_table!(read, write, tables::META);
    copy_table!(read, write, tables::ORDERS);
    copy_table!(read, write, tables::HISTORY);
    copy_table!(read, write, tables::TASKS);
    copy_table!(read, write, tables::OPEN_TASKS);
    copy_table!(read, write, tables::BY_SEQ);
    copy_table!(read, write, tables::BY_STATUS);
    copy_table!(read, write, tables::BY_USER_STATUS);
    copy_table!(read, write, tables::COUNTS);
    copy_table!(read, write, tables::COUPON_USES);
    copy_table!(read, write, tables::COUPON_USER_USES);
    copy_table!(read, write, tables::IDEMPOTENCY);
    copy_table!(read, write, tables::IDEMPOTENCY_EXPIRY);
    write.commit().map_err(err)?;
    drop(target);
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| format!("cannot sync the snapshot: {e}"))?;
    Ok(orders)
}

fn absolute(path: &Path) -> Result<PathBuf, String> {
    std::path::absolute(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Makes a rename durable: the directory entry is synced too.
fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// What `vpsd verify` counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub orders: u64,
    pub items: u64,
    pub history: u64,
    pub tasks: u64,
}

/// Opens a data file or snapshot (exclusively), runs redb's integrity check,
/// and checks every record, index entry, count and history chain. The error
/// names the first inconsistency found.
pub fn verify(path: &Path) -> Result<VerifyReport, String> {
    let mut db = super::open_offline(path).map_err(|e| e.0)?;
    match super::quietly(|| db.check_integrity()) {
        Ok(Ok(true)) => {}
        Ok(Ok(false)) => return Err("redb integrity check failed (the file needed repair)".into()),
        Ok(Err(e)) => return Err(format!("redb integrity check failed: {e}")),
        Err(_) => return Err("redb integrity check failed: the file is corrupt".into()),
    }
    let txn = db.begin_read().map_err(err)?;
    check_contents(&txn)
}

fn check_contents(txn: &redb::ReadTransaction) -> Result<VerifyReport, String> {
    let mut report = VerifyReport::default();
    let meta = txn
        .open_table(tables::META)
        .map_err(|e| format!("meta table: {e}"))?;
    let version = meta
        .get(tables::META_SCHEMA_VERSION)
        .map_err(err)?
        .map(|v| v.value())
        .ok_or("meta: no schema version")?;
    if version > tables::SCHEMA_VERSION {
        return Err(format!(
            "schema version {version} is newer than this vpsd supports ({})",
            tables::SCHEMA_VERSION
        ));
    }
    let last_seq = meta
        .get(tables::META_ORDER_SEQ)
        .map_err(err)?
        .map(|v| v.value())
        .unwrap_or(0);

    // Orders, and what every index and count should therefore hold.
    let mut orders: HashMap<u128, Order> = HashMap::new();
    let mut seqs = BTreeSet::new();
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut coupon_uses: BTreeMap<String, u64> = BTreeMap::new();
    let mut coupon_user_uses: BTreeMap<(String, String), u64> = BTreeMap::new();
    for entry in txn
        .open_table(tables::ORDERS)
        .map_err(err)?
        .iter()
        .map_err(err)?
    {
        let (key, bytes) = entry.map_err(err)?;
        let id = key.value();
        let order: Order = codec::decode(bytes.value())
            .map_err(|e| format!("order {}: {e}", uuid::Uuid::from_u128(id)))?;
        if order.id.as_u128() != id {
            return Err(format!(
                "order stored under {} has id {}",
                uuid::Uuid::from_u128(id),
                order.id
            ));
        }
        if order.seq == 0 || order.seq > last_seq || !seqs.insert(order.seq) {
            return Err(format!(
                "order {} has a bad or duplicate sequence {}",
                order.id, order.seq
            ));
        }
        let code = order.status.code();
        for scope in [
            CountScope::All,
            CountScope::Status(code),
            CountScope::UserStatus(&order.user_id, code),
        ] {
            *counts.entry(count_key(scope)).or_default() += 1;
        }
        if order.coupon_counted {
            if let Some(c) = &order.pricing.coupon_code {
                *coupon_uses.entry(c.clone()).or_default() += 1;
                *coupon_user_uses
                    .entry((c.clone(), order.user_id.clone()))
                    .or_default() += 1;
            }
        }
        report.items += order.items.len() as u64;
        orders.insert(id, order);
    }
    report.orders = orders.len() as u64;

    let lookup = |index: &str, id: u128| -> Result<&Order, String> {
        orders.get(&id).ok_or_else(|| {
            format!(
                "index {index}: entry points to missing order {}",
                uuid::Uuid::from_u128(id)
            )
        })
    };
    let mismatch = |index: &str, o: &Order| {
        format!(
            "index {index}: entry for order {} does not match the order",
            o.id
        )
    };

    let by_seq = txn.open_table(tables::BY_SEQ).map_err(err)?;
    for entry in by_seq.iter().map_err(err)? {
        let (k, v) = entry.map_err(err)?;
        let o = lookup("orders_by_seq", v.value())?;
        if o.seq != k.value() {
            return Err(mismatch("orders_by_seq", o));
        }
    }
    let by_status = txn.open_table(tables::BY_STATUS).map_err(err)?;
    for entry in by_status.iter().map_err(err)? {
        let (k, v) = entry.map_err(err)?;
        let (code, seq) = k.value();
        let o = lookup("orders_by_status", v.value())?;
        if o.status.code() != code || o.seq != seq {
            return Err(mismatch("orders_by_status", o));
        }
    }
    let by_user_status = txn.open_table(tables::BY_USER_STATUS).map_err(err)?;
    for entry in by_user_status.iter().map_err(err)? {
        let (k, v) = entry.map_err(err)?;
        let (user, code, seq) = k.value();
        let o = lookup("orders_by_user_status", v.value())?;
        if o.user_id != user || o.status.code() != code || o.seq != seq {
            return Err(mismatch("orders_by_user_status", o));
        }
    }
    // Every entry matched an order; equal sizes mean every order has its entry.
    for (name, len) in [
        ("orders_by_seq", by_seq.len().map_err(err)?),
        ("orders_by_status", by_status.len().map_err(err)?),
        ("orders_by_user_status", by_user_status.len().map_err(err)?),
    ] {
        if len != report.orders {
            return Err(format!(
                "index {name} has {len} entries for {} orders",
                report.orders
            ));
        }
    }

    let mut stored_counts = BTreeMap::new();
    for entry in txn
        .open_table(tables::COUNTS)
        .map_err(err)?
        .iter()
        .map_err(err)?
    {
        let (k, v) = entry.map_err(err)?;
        stored_counts.insert(k.value().to_string(), v.value());
    }
    if stored_counts != counts {
        let differing = counts
            .iter()
            .find(|(k, v)| stored_counts.get(*k) != Some(v))
            .map(|(k, _)| k.clone())
            .or_else(|| {
                stored_counts
                    .keys()
                    .find(|k| !counts.contains_key(*k))
                    .cloned()
            })
            .unwrap_or_default();
        return Err(format!("counts: {differing:?} does not match the orders"));
    }

    let uses = txn.open_table(tables::COUPON_USES).map_err(err)?;
    for entry in uses.iter().map_err(err)? {
        let (k, v) = entry.map_err(err)?;
        if coupon_uses.get(k.value()).copied().unwrap_or(0) != v.value() {
            return Err(format!(
                "coupon_uses: {:?} does not match the orders",
                k.value()
            ));
        }
    }
    let user_uses = txn.open_table(tables::COUPON_USER_USES).map_err(err)?;
    for entry in user_uses.iter().map_err(err)? {
        let (k, v) = entry.map_err(err)?;
        let (code, user) = k.value();
        let expected = coupon_user_uses
            .get(&(code.to_string(), user.to_string()))
            .copied()
            .unwrap_or(0);
        if expected != v.value() {
            return Err(format!(
                "coupon_user_uses: {code:?} for {user:?} does not match the orders"
            ));
        }
    }

    report.history = check_history(txn, &orders)?;
    report.tasks = check_tasks(txn, &orders)?;
    check_idempotency(txn)?;
    Ok(report)
}

/// Rows 0..history_len exist for every order and chain: each row starts where
/// the last status change ended (payment events change no status), and the
/// chain ends at the order's status.
fn check_history(
    txn: &redb::ReadTransaction,
    orders: &HashMap<u128, Order>,
) -> Result<u64, String> {
    let table = txn.open_table(tables::HISTORY).map_err(err)?;
    let mut rows: HashMap<u64, Vec<(u32, HistoryEntry)>> = HashMap::new();
    let mut total = 0;
    for entry in table.iter().map_err(err)? {
        let (k, v) = entry.map_err(err)?;
        let (seq, n) = k.value();
        let row: HistoryEntry = codec::decode(v.value())
            .map_err(|e| format!("history of order #{seq} row {n}: {e}"))?;
        rows.entry(seq).or_default().push((n, row));
        total += 1;
    }
    let seqs: BTreeSet<u64> = orders.values().map(|o| o.seq).collect();
    if let Some(seq) = rows.keys().find(|s| !seqs.contains(s)) {
        return Err(format!("history rows for missing order #{seq}"));
    }
    for order in orders.values() {
        let list = rows.get(&order.seq).map(Vec::as_slice).unwrap_or(&[]);
        if list.len() != order.history_len as usize
            || list.iter().enumerate().any(|(i, (n, _))| *n as usize != i)
        {
            return Err(format!(
                "order {}: history rows are missing or out of order",
                order.id
            ));
        }
        let mut last: Option<OrderStatus> = None;
        for (n, row) in list {
            if row.previous_status != last {
                return Err(format!(
                    "order {}: history row {n} starts at {:?}, expected {last:?}",
                    order.id, row.previous_status
                ));
            }
            if let Some(status) = row.new_status.status() {
                last = Some(status);
            }
        }
        if last != Some(order.status) {
            return Err(format!(
                "order {}: history ends at {last:?} but the order is {}",
                order.id, order.status
            ));
        }
        let paid = list
            .iter()
            .any(|(_, r)| r.new_status == crate::domain::HistoryStatus::Paid);
        if paid != order.paid_at.is_some() {
            return Err(format!(
                "order {}: paidAt does not match its history",
                order.id
            ));
        }
    }
    Ok(total)
}

fn check_tasks(txn: &redb::ReadTransaction, orders: &HashMap<u128, Order>) -> Result<u64, String> {
    let mut open = BTreeSet::new();
    let mut total = 0;
    for entry in txn
        .open_table(tables::TASKS)
        .map_err(err)?
        .iter()
        .map_err(err)?
    {
        let (k, v) = entry.map_err(err)?;
        let id = k.value();
        let task: ProvisioningTask = codec::decode(v.value())
            .map_err(|e| format!("task of {}: {e}", uuid::Uuid::from_u128(id)))?;
        if task.order_id.as_u128() != id || !orders.contains_key(&id) {
            return Err(format!(
                "task {} does not belong to an existing order",
                task.id
            ));
        }
        if task.is_open() {
            open.insert(id);
        }
        total += 1;
    }
    let mut listed = BTreeSet::new();
    for entry in txn
        .open_table(tables::OPEN_TASKS)
        .map_err(err)?
        .iter()
        .map_err(err)?
    {
        let (k, _) = entry.map_err(err)?;
        listed.insert(k.value());
    }
    if listed != open {
        return Err("open_tasks does not match the tasks that are PENDING or IN_PROGRESS".into());
    }
    Ok(total)
}

fn check_idempotency(txn: &redb::ReadTransaction) -> Result<(), String> {
    let expiry = txn.open_table(tables::IDEMPOTENCY_EXPIRY).map_err(err)?;
    for entry in txn
        .open_table(tables::IDEMPOTENCY)
        .map_err(err)?
        .iter()
        .map_err(err)?
    {
        let (k, v) = entry.map_err(err)?;
        let (scope, key) = k.value();
        let record: IdempotencyRecord =
            codec::decode(v.value()).map_err(|e| format!("idempotency key {key:?}: {e}"))?;
        if expiry
            .get((record.expires_at, scope, key))
            .map_err(err)?
            .is_none()
        {
            return Err(format!("idempotency key {key:?} has no expiry entry"));
        }
    }
    Ok(())
}
