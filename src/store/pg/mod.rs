//! The PostgreSQL backend (SPEC §15): the storage contract on a database
//! that several vpsd instances share. Decisions are the same code as on
//! redb (`store::apply`); what differs is that each operation is its own
//! PostgreSQL transaction on a pooled connection, row locks decide between
//! instances, and one instance at a time runs the background work
//! ([`leader`]).

pub mod conn;
pub mod copy;
mod leader;
mod outbox;
mod read;
pub mod schema;
mod sql;
mod txn;
pub mod verify;
mod write;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use uuid::Uuid;

use super::apply::apply;
use super::backup::{BackupError, SnapshotInfo};
use super::contract::{Deliveries, Housekeeping, IdempotencyKeys, Operations, Orders, Pending};
use super::idempotency::KeyUsage;
use super::outbox::{DueDeliveries, OutboxStats};
use super::views::ViewCache;
use super::{IdempotencyRecord, Maintenance, OpResult, OpenError, Rules, StoreError, WriteOp};
use crate::domain::customer_action::CustomerAction;
use crate::domain::error::Rejection;
use crate::domain::time::Millis;
use crate::domain::webhook::{Delivery, DeliveryPage, DeliveryQuery};
use crate::domain::{HistoryEntry, ListQuery, OrderRecord, OrderStatus, Page};
use conn::{off_runtime, pg_err, pool_err, Connector, PgConn, Pool};
use leader::Leadership;
use write::PgTxn;

/// How the store reaches its database.
pub struct PgSettings {
    pub url: String,
    pub pool_size: u32,
    pub takeover: Duration,
}

/// A handle to the shared database: cheap to clone.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// Always `Some` until the store is dropped (see `Drop for Inner`).
    pool: Option<Pool>,
    rules: Rules,
    views: ViewCache,
    events: watch::Receiver<u64>,
    leadership: Arc<Leadership>,
    /// `user@host:port/database`, never the password.
    shown: String,
    /// Writers queue here, first come first served, for one of the pool's
    /// connections (see `Orders::write`).
    turns: Arc<tokio::sync::Semaphore>,
}

/// The database a URL names, for messages: no password.
pub fn describe_url(config: &postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "{}@{host}:{port}/{}",
        config.get_user().unwrap_or("?"),
        config.get_dbname().unwrap_or("?")
    )
}

/// Parses `storage.postgres.url` without ever echoing it (it holds a password).
pub fn parse_url(url: &str) -> Result<postgres::Config, OpenError> {
    let mut config: postgres::Config = url.parse().map_err(|_| {
        OpenError("storage.postgres.url is not a valid PostgreSQL URL (postgres://user:password@host:port/database)".into())
    })?;
    config
        .application_name("vpsd")
        .connect_timeout(Duration::from_secs(5));
    Ok(config)
}

impl PgStore {
    /// Connects, creates or checks vpsd's tables, fills the pool and joins
    /// the leadership. Blocking: call it off the async workers.
    pub fn open(settings: &PgSettings, rules: Rules) -> Result<PgStore, OpenError> {
        let config = parse_url(&settings.url)?;
        let shown = describe_url(&config);
        let mut first = config.connect(postgres::NoTls).map_err(|e| {
            OpenError(format!(
                "cannot connect to PostgreSQL {shown}: {}",
                schema::describe(&e)
            ))
        })?;
        schema::prepare(&mut first, &shown)?;
        drop(first);
        let pool = r2d2::Pool::builder()
            .max_size(settings.pool_size)
            .min_idle(Some(1))
            // A check per checkout is a round trip per request; a closed
            // connection is noticed by `has_broken`, and any other failure
            // fails that request, not the next ones.
            .test_on_check_out(false)
            .connection_timeout(Duration::from_secs(10))
            .error_handler(Box::new(r2d2::NopErrorHandler))
            .build(Connector {
                config: config.clone(),
            })
            .map_err(|e| OpenError(format!("PostgreSQL {shown}: cannot fill the pool: {e}")))?;
        let (events_tx, events) = watch::channel(0);
        let leadership = Leadership::new(settings.takeover, events_tx);
        leader::start(config, settings.takeover, leadership.clone());
        Ok(PgStore {
            inner: Arc::new(Inner {
                pool: Some(pool),
                rules,
                views: ViewCache::off(),
                events,
                leadership,
                shown,
                turns: Arc::new(tokio::sync::Semaphore::new(settings.pool_size as usize)),
            }),
        })
    }

    /// The database, as messages name it.
    pub fn shown(&self) -> &str {
        &self.inner.shown
    }

    /// Changes when another instance (or this one) committed reconciler work.
    pub fn reconciler_work(&self) -> watch::Receiver<u64> {
        self.inner.leadership.work.subscribe()
    }

    fn read<T: Send>(
        &self,
        query: impl FnOnce(&mut PgConn) -> Result<T, StoreError> + Send,
    ) -> Result<T, StoreError> {
        off_runtime(|| {
            let mut conn = self.inner.connection()?;
            query(&mut conn)
        })
    }
}

impl Drop for Inner {
    /// The last handle gone: give the leadership up for another instance,
    /// and close the connections on a thread of their own. The last handle
    /// may go on an async worker (a scheduler job cancelled at shutdown),
    /// where closing a synchronous client would start a runtime inside the
    /// runtime: a panic, and during that unwind a second one, an abort.
    fn drop(&mut self) {
        self.leadership.stop();
        if let Some(pool) = self.pool.take() {
            let closing = std::thread::Builder::new()
                .name("vpsd-pool-close".into())
                .spawn(move || drop(pool));
            if let Ok(closing) = closing {
                let _ = closing.join();
            }
        }
    }
}

impl Inner {
    fn connection(&self) -> Result<r2d2::PooledConnection<Connector>, StoreError> {
        match &self.pool {
            Some(pool) => pool.get().map_err(pool_err),
            None => Err(StoreError::Unavailable("the store is closed".into())),
        }
    }

    /// One operation, one transaction. A refusal commits what the domain
    /// kept (an idempotent refusal); a key another instance stored first
    /// rolls everything back.
    fn write_one(&self, op: WriteOp) -> Result<OpResult, StoreError> {
        // The reconciler's own saves wake nobody: it is the one awake.
        let from_reconciler = matches!(op, WriteOp::SaveTask { .. });
        let mut conn = self.connection()?;
        let (client, statements) = conn.split();
        let mut tx = client.transaction().map_err(pg_err)?;
        let mut t = PgTxn::new(&mut tx, statements);
        let result = apply(&mut t, op, &self.rules)?;
        if matches!(result, Err(Rejection::KeyInUse)) {
            tx.rollback().map_err(pg_err)?;
            return Ok(result);
        }
        let (queued, wakes) = (t.queued, t.wakes_reconciler && !from_reconciler);
        self.commit(tx, queued, wakes)?;
        Ok(result)
    }

    /// Imported orders (`vpsd import-v1`) in one transaction: one commit,
    /// one WAL flush, for a page of whole orders. An import refused for a
    /// taken id writes nothing, so the others still commit; any error
    /// rolls the page back, and a rerun imports it.
    fn write_imports(&self, ops: Vec<WriteOp>) -> Result<Vec<OpResult>, StoreError> {
        let mut conn = self.connection()?;
        let (client, statements) = conn.split();
        let mut tx = client.transaction().map_err(pg_err)?;
        let mut t = PgTxn::new(&mut tx, statements);
        let mut results = Vec::with_capacity(ops.len());
        for op in ops {
            results.push(apply(&mut t, op, &self.rules)?);
        }
        let (queued, wakes) = (t.queued, t.wakes_reconciler);
        self.commit(tx, queued, wakes)?;
        Ok(results)
    }

    fn maintain_one(&self, work: Maintenance) -> Result<u64, StoreError> {
        let mut conn = self.connection()?;
        let (client, statements) = conn.split();
        let mut tx = client.transaction().map_err(pg_err)?;
        let mut t = PgTxn::new(&mut tx, statements);
        let touched = housekeeping(&mut t, work, &self.rules)?;
        let queued = t.queued;
        self.commit(tx, queued, false)?;
        Ok(touched)
    }

    /// Commits, telling the other instances (and this one) what it queued.
    fn commit(
        &self,
        mut tx: postgres::Transaction<'_>,
        queued: usize,
        wakes: bool,
    ) -> Result<(), StoreError> {
        if queued > 0 {
            tx.batch_execute(&format!("NOTIFY {}", leader::EVENTS_CHANNEL))
                .map_err(pg_err)?;
        }
        if wakes {
            tx.batch_execute(&format!("NOTIFY {}", leader::WORK_CHANNEL))
                .map_err(pg_err)?;
        }
        tx.commit().map_err(pg_err)?;
        if queued > 0 {
            self.leadership
                .events
                .send_modify(|n| *n = n.wrapping_add(1));
        }
        Ok(())
    }
}

fn housekeeping(
    t: &mut PgTxn<'_, '_>,
    work: Maintenance,
    rules: &Rules,
) -> Result<u64, StoreError> {
    match work {
        Maintenance::RecordAttempts(attempts) => {
            let mut recorded = 0;
            for attempt in attempts {
                recorded += u64::from(outbox::record_attempt(t, &rules.outbox, attempt)?);
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
            use super::apply::OrderTxn;
            Ok(u64::from(t.put_idempotency(&scope, &key, &record)?))
        }
        Maintenance::SweepIdempotency { now } => {
            t.tx.execute(
                "DELETE FROM idempotency_keys WHERE expires_ms <= $1",
                &[&now],
            )
            .map_err(pg_err)
        }
        Maintenance::SweepIdempotencyScope { scope, now } => {
            t.tx.execute(
                "DELETE FROM idempotency_keys WHERE scope = $1 AND expires_ms <= $2",
                &[&scope, &now],
            )
            .map_err(pg_err)
        }
    }
}

impl Orders for PgStore {
    fn write(&self, op: WriteOp) -> Pending<'_, OpResult> {
        let inner = self.inner.clone();
        Box::pin(async move {
            let turn = inner
                .turns
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| StoreError::Unavailable("the store is closed".into()))?;
            tokio::task::spawn_blocking(move || {
                let written = inner.write_one(op);
                drop(turn);
                written
            })
            .await
            .map_err(|e| StoreError::Unavailable(format!("write did not finish: {e}")))?
        })
    }

    fn write_all_blocking(&self, ops: Vec<WriteOp>) -> Vec<Result<OpResult, StoreError>> {
        if ops.iter().all(|op| matches!(op, WriteOp::Import { .. })) {
            let n = ops.len();
            return match off_runtime(|| self.inner.write_imports(ops)) {
                Ok(results) => results.into_iter().map(Ok).collect(),
                Err(e) => (0..n)
                    .map(|_| Err(StoreError::Unavailable(e.to_string())))
                    .collect(),
            };
        }
        off_runtime(|| ops.into_iter().map(|op| self.inner.write_one(op)).collect())
    }

    fn get_order(&self, id: Uuid) -> Result<Option<OrderRecord>, StoreError> {
        self.read(|c| read::order(c, id))
    }

    fn history(&self, id: Uuid) -> Result<Vec<HistoryEntry>, StoreError> {
        self.read(|c| read::history(c, id))
    }

    fn customer_actions(
        &self,
        id: Uuid,
        skip: usize,
        limit: usize,
    ) -> Result<Vec<CustomerAction>, StoreError> {
        self.read(|c| read::customer_actions(c, id, skip, limit))
    }

    fn list_orders(&self, query: &ListQuery) -> Result<Page, StoreError> {
        self.read(|c| read::list(c, query))
    }

    fn open_tasks(&self) -> Result<Vec<OrderRecord>, StoreError> {
        self.read(|c| read::with_task_flag(c, "open"))
    }

    fn pending_actions(&self) -> Result<Vec<OrderRecord>, StoreError> {
        self.read(|c| read::with_task_flag(c, "owes_work"))
    }

    fn due_orders(&self, now: Millis, limit: usize) -> Result<Vec<Uuid>, StoreError> {
        self.read(|c| read::due_orders(c, now, limit))
    }

    fn status_counts(&self) -> Result<Vec<(OrderStatus, u64)>, StoreError> {
        self.read(|c| read::status_counts(c, None))
    }

    fn user_status_counts(&self, user: &str) -> Result<Vec<(OrderStatus, u64)>, StoreError> {
        self.read(|c| read::status_counts(c, Some(user)))
    }

    fn orders_created_since(&self, since: Millis) -> Result<Vec<OrderRecord>, StoreError> {
        self.read(|c| read::created_since(c, since))
    }

    fn account_usage(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.read(|c| read::account_usage(c))
    }

    fn views(&self) -> &ViewCache {
        &self.inner.views
    }
}

impl IdempotencyKeys for PgStore {
    fn idempotency(&self, scope: &str, key: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
        self.read(|c| read::idempotency(c, scope, key))
    }

    fn idempotency_usage(&self, scope: &str) -> Result<KeyUsage, StoreError> {
        self.read(|c| {
            let row = c
                .query_one(
                    "SELECT count(*), min(expires_ms) FROM idempotency_keys WHERE scope = $1",
                    &[&scope],
                )
                .map_err(pg_err)?;
            let stored: i64 = row.try_get(0).map_err(pg_err)?;
            Ok(KeyUsage {
                stored: u64::try_from(stored).unwrap_or(0),
                oldest_expiry: row.try_get(1).map_err(pg_err)?,
            })
        })
    }
}

impl Deliveries for PgStore {
    fn due_deliveries(
        &self,
        url: &str,
        now: Millis,
        max: usize,
    ) -> Result<DueDeliveries, StoreError> {
        self.read(|c| outbox::due(c, url, now, max))
    }

    fn delivery(&self, id: Uuid) -> Result<Option<Delivery>, StoreError> {
        self.read(|c| {
            let rows = c.query_prepared(sql::DELIVERY_GET, &[&id])?;
            rows.first()
                .map(|r| outbox::decode_record(r, 0))
                .transpose()
        })
    }

    fn list_deliveries(&self, query: &DeliveryQuery) -> Result<DeliveryPage, StoreError> {
        self.read(|c| read::deliveries(c, query))
    }

    fn outbox_stats(&self, urls: &[String]) -> Result<OutboxStats, StoreError> {
        self.read(|c| outbox::stats(c, urls))
    }

    fn queued_events(&self) -> watch::Receiver<u64> {
        self.inner.events.clone()
    }
}

impl Housekeeping for PgStore {
    fn maintain(&self, work: Maintenance) -> Pending<'_, u64> {
        let inner = self.inner.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || inner.maintain_one(work))
                .await
                .map_err(|e| StoreError::Unavailable(format!("write did not finish: {e}")))?
        })
    }

    fn maintain_blocking(&self, work: Maintenance) -> Result<u64, StoreError> {
        off_runtime(|| self.inner.maintain_one(work))
    }
}

impl Operations for PgStore {
    fn snapshot_into(&self, _dir: &Path) -> Result<SnapshotInfo, BackupError> {
        Err(BackupError::NotSupported {
            backend: "postgres",
        })
    }

    fn probe(&self) -> bool {
        self.read(|c| c.simple_query("SELECT 1").map(drop).map_err(pg_err))
            .is_ok()
    }

    fn size_bytes(&self) -> Option<u64> {
        self.read(|c| {
            let row = c
                .query_one("SELECT pg_database_size(current_database())", &[])
                .map_err(pg_err)?;
            let bytes: i64 = row.try_get(0).map_err(pg_err)?;
            Ok(u64::try_from(bytes).ok())
        })
        .ok()
        .flatten()
    }

    fn full_repair_if_crashed(&self) -> bool {
        false
    }

    fn shutdown(&self) {
        self.inner.leadership.stop();
    }

    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn leads(&self) -> bool {
        self.inner.leadership.leads()
    }

    fn leadership(&self) -> watch::Receiver<bool> {
        self.inner.leadership.changed.subscribe()
    }
}
