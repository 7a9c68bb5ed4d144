//! `vpsd store copy --from FILE --to URL` (SPEC §15 "Moving an existing
//! file"): a stopped daemon's data file, or a backup, into an empty
//! PostgreSQL database, in ONE transaction, so the database ends with the
//! whole file or with nothing of it.
//!
//! Rows are written by the live path's own writers ([`PgTxn`]), so a copied
//! order, its history, task and actions are stored exactly as if this
//! database had taken them; events and deliveries keep their ids, sequence
//! and state (a pending delivery stays pending, and the instance that leads
//! there sends it); the sequences are set past every copied one.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use postgres::Transaction;
use r2d2::ManageConnection;
use redb::{
    ReadOnlyTable, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    TableDefinition,
};
use uuid::Uuid;

use super::conn::{Connector, PgConn};
use super::schema::{self, describe};
use super::write::PgTxn;
use super::{describe_url, leader, outbox, parse_url};
use crate::backend::store::outbox::StoredEvent;
use crate::backend::store::{codec, open_offline, tables, IdempotencyRecord, OpenError};
use crate::domain::customer_action::CustomerAction;
use crate::domain::task::ProvisioningTask;
use crate::domain::webhook::{Delivery, DeliveryStatus};
use crate::domain::{HistoryEntry, Order, OrderRecord};

/// Why nothing was copied: the one line `vpsd store copy` prints. Never
/// holds the URL's password (databases are named by [`describe_url`]).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CopyError(pub String);

impl From<OpenError> for CopyError {
    fn from(e: OpenError) -> CopyError {
        CopyError(e.0)
    }
}

/// What was copied, as `vpsd store copy` prints it (`vpsd verify URL`
/// prints the same names for the same things).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyReport {
    /// `user@host:port/database`: no password.
    pub database: String,
    pub orders: u64,
    pub history: u64,
    pub tasks: u64,
    pub actions: u64,
    pub keys: u64,
    /// Coupons with a redemption counted by some order.
    pub coupons: u64,
    pub events: u64,
    pub deliveries: u64,
    pub pending: u64,
}

/// The last order and event sequences the file assigned.
#[derive(Default)]
struct Seqs {
    orders: u64,
    events: u64,
}

/// Copies the data file at `from` into the (empty) database at `url`.
/// `progress` is told how many of the file's orders are copied.
pub fn copy(
    from: &Path,
    url: &str,
    progress: super::super::Progress<'_>,
) -> Result<CopyReport, CopyError> {
    let config = parse_url(url)?;
    let shown = describe_url(&config);
    // The file first: a locked or damaged file stops the copy before the
    // database is touched at all.
    let db = open_offline(from)?;
    let source = Source::open(&db, from)?;
    let mut conn = connect(config, &shown)?;
    let (client, statements) = conn.split();
    let fail = |e: postgres::Error| {
        CopyError(format!(
            "copy into PostgreSQL {shown} failed, nothing was written: {}",
            describe(&e)
        ))
    };
    let mut tx = client.transaction().map_err(fail)?;
    claim_empty(&mut tx, &shown)?;
    let mut report = CopyReport {
        database: shown.clone(),
        ..CopyReport::default()
    };
    let mut t = PgTxn::new(&mut tx, statements);
    let seqs = source
        .copy_into(&mut t, &mut report, progress)
        .map_err(|e| {
            CopyError(format!(
                "copy into PostgreSQL {shown} failed, nothing was written: {e}"
            ))
        })?;
    drop(t);
    set_sequences(&mut tx, &seqs).map_err(fail)?;
    // An instance already running on this database learns of the pending
    // deliveries and open tasks now rather than at its next poll.
    tx.batch_execute(&format!(
        "NOTIFY {}; NOTIFY {}",
        leader::EVENTS_CHANNEL,
        leader::WORK_CHANNEL
    ))
    .map_err(fail)?;
    tx.commit().map_err(fail)?;
    Ok(report)
}

/// Connects, creates vpsd's tables in an empty database (or checks they are
/// vpsd's, of a version this build writes), then opens the connection the
/// copy runs on, with the live path's statements prepared.
fn connect(config: postgres::Config, shown: &str) -> Result<PgConn, CopyError> {
    let unreachable = |e: postgres::Error| {
        CopyError(format!(
            "cannot connect to PostgreSQL {shown}: {}",
            describe(&e)
        ))
    };
    let mut first = config.connect(postgres::NoTls).map_err(unreachable)?;
    schema::prepare(&mut first, shown)?;
    drop(first);
    Connector { config }.connect().map_err(unreachable)
}

/// Holds off every writer until the copy commits, and refuses a database
/// that already holds vpsd data: a copy merges nothing.
fn claim_empty(tx: &mut Transaction<'_>, shown: &str) -> Result<(), CopyError> {
    let fail = |e: postgres::Error| {
        CopyError(format!(
            "PostgreSQL {shown}: cannot check that vpsd's tables are empty: {}",
            describe(&e)
        ))
    };
    let data: Vec<&str> = schema::TABLES
        .iter()
        .copied()
        .filter(|t| *t != "vpsd_meta")
        .collect();
    // EXCLUSIVE still lets readers in; a vpsd instance already started on
    // this database waits with its first write until the copy is done.
    tx.batch_execute(&format!("LOCK TABLE {} IN EXCLUSIVE MODE", data.join(", ")))
        .map_err(fail)?;
    let mut holding = Vec::new();
    for table in data {
        let sql = format!("SELECT EXISTS (SELECT 1 FROM {table})");
        let found: bool = tx
            .query_one(sql.as_str(), &[])
            .and_then(|row| row.try_get(0))
            .map_err(fail)?;
        if found {
            holding.push(table);
        }
    }
    if holding.is_empty() {
        return Ok(());
    }
    Err(CopyError(format!(
        "PostgreSQL {shown} already holds vpsd data ({}); store copy only fills an empty database: nothing was written",
        holding.join(", ")
    )))
}

/// `setval(n)`: the next value handed out is n + 1, past every copied one.
fn set_sequences(tx: &mut Transaction<'_>, seqs: &Seqs) -> Result<(), postgres::Error> {
    for (name, last) in [
        ("vpsd_order_seq", seqs.orders),
        ("vpsd_event_seq", seqs.events),
    ] {
        // A sequence starts at 1: a file that never assigned one leaves it.
        if last > 0 {
            let last = i64::try_from(last).unwrap_or(i64::MAX);
            tx.execute(format!("SELECT setval('{name}', $1)").as_str(), &[&last])?;
        }
    }
    Ok(())
}

/// Redemptions the copied orders count, per coupon and per coupon and user.
#[derive(Default)]
struct CouponCounts {
    global: BTreeMap<String, u64>,
    by_user: BTreeMap<(String, String), u64>,
}

impl CouponCounts {
    fn add(&mut self, order: &Order) {
        let Some(code) = order
            .pricing
            .coupon_code
            .as_ref()
            .filter(|_| order.coupon_counted)
        else {
            return;
        };
        *self.global.entry(code.clone()).or_default() += 1;
        *self
            .by_user
            .entry((code.clone(), order.user_id.clone()))
            .or_default() += 1;
    }
}

/// The first key whose count differs (a missing key counts 0).
fn first_difference<K: Ord + Clone>(
    stored: &BTreeMap<K, u64>,
    counted: &BTreeMap<K, u64>,
) -> Option<K> {
    stored
        .keys()
        .chain(counted.keys())
        .find(|k| stored.get(*k).copied().unwrap_or(0) != counted.get(*k).copied().unwrap_or(0))
        .cloned()
}

/// The data file, read in one redb snapshot.
struct Source {
    txn: ReadTransaction,
    path: PathBuf,
}

impl Source {
    /// Begins the snapshot; a file of another schema version is refused
    /// (an older one is brought up to date by a daemon starting on it, which
    /// the copy must not do: it only reads the file).
    fn open(db: &redb::Database, path: &Path) -> Result<Source, CopyError> {
        let txn = db.begin_read().map_err(|e| read_failed(path, e))?;
        let source = Source {
            txn,
            path: path.to_path_buf(),
        };
        let meta = source.table(tables::META)?;
        let version = meta
            .get(tables::META_SCHEMA_VERSION)
            .map_err(|e| source.failed(e))?
            .map(|v| v.value());
        match version {
            Some(v) if v == tables::SCHEMA_VERSION => Ok(source),
            Some(v) if v > tables::SCHEMA_VERSION => Err(CopyError(format!(
                "data file {} has schema version {v}, newer than this vpsd supports ({}); copy it with a newer vpsd",
                path.display(),
                tables::SCHEMA_VERSION
            ))),
            Some(v) => Err(CopyError(format!(
                "data file {} has schema version {v}, older than this vpsd's ({}); start this vpsd on it once (it updates the file at start-up), stop it, then copy",
                path.display(),
                tables::SCHEMA_VERSION
            ))),
            None => Err(CopyError(format!(
                "data file {} has no schema version: it is not a vpsd data file",
                path.display()
            ))),
        }
    }

    fn failed(&self, e: impl Into<redb::Error>) -> CopyError {
        read_failed(&self.path, e)
    }

    fn table<K: redb::Key + 'static, V: redb::Value + 'static>(
        &self,
        table: TableDefinition<'static, K, V>,
    ) -> Result<ReadOnlyTable<K, V>, CopyError> {
        self.txn.open_table(table).map_err(|e| self.failed(e))
    }

    fn decode<T: codec::Record>(&self, bytes: &[u8], what: String) -> Result<T, CopyError> {
        codec::decode(bytes).map_err(|e| {
            CopyError(format!(
                "{what} in {} does not decode ({e}); nothing was copied (vpsd verify FILE names every problem)",
                self.path.display()
            ))
        })
    }

    /// Everything, in the order the tables refer to each other.
    fn copy_into(
        &self,
        t: &mut PgTxn<'_, '_>,
        report: &mut CopyReport,
        progress: super::super::Progress<'_>,
    ) -> Result<Seqs, CopyError> {
        let mut counted = CouponCounts::default();
        let mut seqs = Seqs {
            orders: self.copy_orders(t, report, &mut counted, progress)?,
            events: 0,
        };
        let meta = self.table(tables::META)?;
        for (key, last) in [
            (tables::META_ORDER_SEQ, &mut seqs.orders),
            (tables::META_EVENT_SEQ, &mut seqs.events),
        ] {
            let stored = meta.get(key).map_err(|e| self.failed(e))?;
            *last = (*last).max(stored.map_or(0, |v| v.value()));
        }
        self.copy_keys(t, report)?;
        self.check_coupons(&counted, report)?;
        seqs.events = seqs.events.max(self.copy_outbox(t, report)?);
        Ok(seqs)
    }

    /// Every order with its rows, counting the coupon redemptions they
    /// hold; returns the highest order sequence.
    fn copy_orders(
        &self,
        t: &mut PgTxn<'_, '_>,
        report: &mut CopyReport,
        counted: &mut CouponCounts,
        progress: super::super::Progress<'_>,
    ) -> Result<u64, CopyError> {
        let orders = self.table(tables::ORDERS)?;
        let total = orders.len().map_err(|e| self.failed(e))?;
        let tasks = self.table(tables::TASKS)?;
        let history = self.table(tables::HISTORY)?;
        let actions = self.table(tables::CUSTOMER_ACTIONS)?;
        let mut last_seq = 0;
        for entry in orders.iter().map_err(|e| self.failed(e))? {
            let (key, bytes) = entry.map_err(|e| self.failed(e))?;
            let id = Uuid::from_u128(key.value());
            let order: Order = self.decode(bytes.value(), format!("order {id}"))?;
            if order.id != id {
                return Err(CopyError(format!(
                    "order stored under {id} in {} has id {}; nothing was copied",
                    self.path.display(),
                    order.id
                )));
            }
            let task = match tasks.get(key.value()).map_err(|e| self.failed(e))? {
                Some(bytes) => Some(
                    self.decode::<ProvisioningTask>(bytes.value(), format!("task of order {id}"))?,
                ),
                None => None,
            };
            let rows = self.history_of(&history, &order)?;
            let mut asked = Vec::new();
            let range = (key.value(), 0)..=(key.value(), u32::MAX);
            for entry in actions.range(range).map_err(|e| self.failed(e))? {
                let (_, bytes) = entry.map_err(|e| self.failed(e))?;
                asked.push(self.decode::<CustomerAction>(
                    bytes.value(),
                    format!("customer action of order {id}"),
                )?);
            }
            last_seq = last_seq.max(order.seq);
            counted.add(&order);
            report.orders += 1;
            report.history += rows.len() as u64;
            report.tasks += u64::from(task.is_some());
            report.actions += asked.len() as u64;
            t.copy_order(&OrderRecord { order, task }, &rows, &asked)
                .map_err(|e| CopyError(e.to_string()))?;
            if report.orders.is_multiple_of(256) || report.orders == total {
                progress("copying", report.orders, total);
            }
        }
        Ok(last_seq)
    }

    /// The order's history rows, which must be exactly `0..history_len`:
    /// the database numbers them from the order's count.
    fn history_of(
        &self,
        history: &ReadOnlyTable<(u64, u32), &'static [u8]>,
        order: &Order,
    ) -> Result<Vec<HistoryEntry>, CopyError> {
        let mut rows = Vec::with_capacity(order.history_len as usize);
        let range = (order.seq, 0)..=(order.seq, u32::MAX);
        for entry in history.range(range).map_err(|e| self.failed(e))? {
            let (key, bytes) = entry.map_err(|e| self.failed(e))?;
            if key.value().1 as usize != rows.len() {
                break;
            }
            rows.push(self.decode(
                bytes.value(),
                format!("history row {} of order {}", key.value().1, order.id),
            )?);
        }
        if rows.len() != order.history_len as usize {
            return Err(CopyError(format!(
                "order {}: history rows in {} are missing or out of order (vpsd verify FILE); nothing was copied",
                order.id,
                self.path.display()
            )));
        }
        Ok(rows)
    }

    fn copy_keys(&self, t: &mut PgTxn<'_, '_>, report: &mut CopyReport) -> Result<(), CopyError> {
        use crate::backend::store::apply::OrderTxn;
        for entry in self
            .table(tables::IDEMPOTENCY)?
            .iter()
            .map_err(|e| self.failed(e))?
        {
            let (key, bytes) = entry.map_err(|e| self.failed(e))?;
            let (scope, key) = key.value();
            let record: IdempotencyRecord =
                self.decode(bytes.value(), format!("idempotency key {key:?}"))?;
            // Always stored: the database has no key yet to hold it.
            t.put_idempotency(scope, key, &record)
                .map_err(|e| CopyError(e.to_string()))?;
            report.keys += 1;
        }
        Ok(())
    }

    /// On PostgreSQL a coupon's redemptions are the orders that count one
    /// (`coupon_counted`, copied with each order), not a counter: the
    /// file's counters must say the same, or the limits would change on the
    /// way.
    fn check_coupons(
        &self,
        counted: &CouponCounts,
        report: &mut CopyReport,
    ) -> Result<(), CopyError> {
        let mut global = BTreeMap::new();
        for entry in self
            .table(tables::COUPON_USES)?
            .iter()
            .map_err(|e| self.failed(e))?
        {
            let (code, uses) = entry.map_err(|e| self.failed(e))?;
            global.insert(code.value().to_string(), uses.value());
        }
        let mut by_user = BTreeMap::new();
        for entry in self
            .table(tables::COUPON_USER_USES)?
            .iter()
            .map_err(|e| self.failed(e))?
        {
            let (key, uses) = entry.map_err(|e| self.failed(e))?;
            let (code, user) = key.value();
            by_user.insert((code.to_string(), user.to_string()), uses.value());
        }
        let disagree = first_difference(&global, &counted.global)
            .map(|code| format!("coupon {code:?}"))
            .or_else(|| {
                first_difference(&by_user, &counted.by_user)
                    .map(|(code, user)| format!("coupon {code:?} of user {user:?}"))
            });
        if let Some(what) = disagree {
            return Err(CopyError(format!(
                "{what}: the counter in {} disagrees with the orders that count it (vpsd verify FILE); nothing was copied",
                self.path.display()
            )));
        }
        report.coupons = counted.global.len() as u64;
        Ok(())
    }

    /// Events, then their deliveries as they stand; returns the highest
    /// event sequence a delivery carries.
    fn copy_outbox(
        &self,
        t: &mut PgTxn<'_, '_>,
        report: &mut CopyReport,
    ) -> Result<u64, CopyError> {
        let mut events = HashSet::new();
        for entry in self
            .table(tables::EVENTS)?
            .iter()
            .map_err(|e| self.failed(e))?
        {
            let (key, bytes) = entry.map_err(|e| self.failed(e))?;
            let id = Uuid::from_u128(key.value());
            let stored: StoredEvent = self.decode(bytes.value(), format!("webhook event {id}"))?;
            let event = stored
                .into_event()
                .map_err(|e| CopyError(format!("webhook event {id}: {e}")))?;
            t.copy_event(&event).map_err(|e| CopyError(e.to_string()))?;
            events.insert(event.id);
            report.events += 1;
        }
        let mut last_seq = 0;
        for entry in self
            .table(tables::DELIVERIES)?
            .iter()
            .map_err(|e| self.failed(e))?
        {
            let (key, bytes) = entry.map_err(|e| self.failed(e))?;
            let id = Uuid::from_u128(key.value());
            let d: Delivery = self.decode(bytes.value(), format!("webhook delivery {id}"))?;
            if !events.contains(&d.event_id) {
                return Err(CopyError(format!(
                    "webhook delivery {id} in {} has no event (vpsd verify FILE); nothing was copied",
                    self.path.display()
                )));
            }
            outbox::put_delivery(t, &d).map_err(|e| CopyError(e.to_string()))?;
            last_seq = last_seq.max(d.seq);
            report.deliveries += 1;
            report.pending += u64::from(d.status == DeliveryStatus::Pending);
        }
        Ok(last_seq)
    }
}

fn read_failed(path: &Path, e: impl Into<redb::Error>) -> CopyError {
    CopyError(format!(
        "cannot read data file {}: {}",
        path.display(),
        e.into()
    ))
}
