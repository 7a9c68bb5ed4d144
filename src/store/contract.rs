//! What the service asks of storage, as traits a backend implements. The redb
//! [`Store`] is one implementation; a second backend (SPEC §15) implements the
//! same traits and is proven by the same contract test suite
//! (`store::contract_tests`, run against every implementation).
//!
//! The semantics every implementation keeps:
//! - **Atomic.** A [`WriteOp`] is applied whole or not at all: the order, its
//!   history rows, its task, coupon counters, indexes, queued webhook events
//!   and the idempotency record it stores commit together. A `StoreError`
//!   means nothing of it was written.
//! - **Decided on the stored state.** `Apply` and `SaveTask` decide against
//!   the record as it is inside the write, never a copy read earlier; a
//!   `SaveTask` whose task revision moved on is refused (`StaleTask`), so
//!   two writers never both win.
//! - **Ordered.** Operations are applied in the order they were queued by one
//!   caller; history rows and events keep commit order, and a read that
//!   starts after a write returned sees it (read your writes).
//! - **Conflicts are values.** A refusal (`Conflict`, `NotOwner`, a coupon at
//!   its limit, ...) comes back as `Ok(Err(Rejection))` and changed nothing;
//!   `Err(StoreError)` is reserved for storage that could not answer.
//! - **Reads are snapshots.** Each read sees one committed state.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;

use uuid::Uuid;

use super::backup::{BackupError, SnapshotInfo};
use super::idempotency::KeyUsage;
use super::outbox::{DueDeliveries, OutboxStats};
use super::views::ViewCache;
use super::{IdempotencyRecord, Maintenance, OpResult, Store, StoreError, WriteOp};
use crate::domain::customer_action::CustomerAction;
use crate::domain::time::Millis;
use crate::domain::webhook::{Delivery, DeliveryPage, DeliveryQuery};
use crate::domain::{HistoryEntry, ListQuery, OrderRecord, OrderStatus, Page};

/// A write in flight on the async runtime.
pub type Pending<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Orders, their history and tasks: the one write path and the reads over it.
pub trait Orders: Send + Sync {
    /// Applies one operation atomically (see the module's semantics); the
    /// caller awaits its commit.
    fn write(&self, op: WriteOp) -> Pending<'_, OpResult>;

    /// Applies every operation, in order, for a caller on a blocking thread
    /// (the provisioner). They may share commits; each has its own result.
    fn write_all_blocking(&self, ops: Vec<WriteOp>) -> Vec<Result<OpResult, StoreError>>;

    /// One operation from a blocking thread.
    fn write_blocking(&self, op: WriteOp) -> Result<OpResult, StoreError> {
        self.write_all_blocking(vec![op])
            .pop()
            .unwrap_or_else(|| Err(StoreError::Unavailable("no result for the write".into())))
    }

    fn get_order(&self, id: Uuid) -> Result<Option<OrderRecord>, StoreError>;

    /// The order's history rows in commit order (empty for an unknown order).
    fn history(&self, id: Uuid) -> Result<Vec<HistoryEntry>, StoreError>;

    /// Up to `limit` of the order's customer actions, newest first, after
    /// skipping `skip` (empty for an unknown order).
    fn customer_actions(
        &self,
        id: Uuid,
        skip: usize,
        limit: usize,
    ) -> Result<Vec<CustomerAction>, StoreError>;

    /// One page, newest first, with the total that matches the filter.
    fn list_orders(&self, query: &ListQuery) -> Result<Page, StoreError>;

    /// Every order whose provisioning task is PENDING or IN_PROGRESS.
    fn open_tasks(&self) -> Result<Vec<OrderRecord>, StoreError>;

    /// Orders whose task owes a droplet action (SPEC §9).
    fn pending_actions(&self) -> Result<Vec<OrderRecord>, StoreError>;

    /// Up to `limit` orders due (a reminder or expiry) at or before `now`,
    /// soonest first.
    fn due_orders(&self, now: Millis, limit: usize) -> Result<Vec<Uuid>, StoreError>;

    /// The number of orders in every status.
    fn status_counts(&self) -> Result<Vec<(OrderStatus, u64)>, StoreError>;
    /// The number of one user's orders in every status.
    fn user_status_counts(&self, user: &str) -> Result<Vec<(OrderStatus, u64)>, StoreError>;
    /// The orders created at or after `since`, newest first, at a cost that
    /// follows them rather than all orders ("today" in stats, SPEC §14).
    fn orders_created_since(&self, since: Millis) -> Result<Vec<OrderRecord>, StoreError>;
    /// Live orders per DigitalOcean account (SPEC §13: paid and not failed,
    /// canceled or terminated, or owing a droplet action), by account name;
    /// accounts with none are left out.
    fn account_usage(&self) -> Result<Vec<(String, u64)>, StoreError>;

    /// Renderings of single orders, dropped when a commit changes them.
    fn views(&self) -> &ViewCache;
}

/// Stored idempotency outcomes (SPEC §2, §12). They are written by the
/// operation they belong to ([`WriteOp`]'s `idempotency`) or, for a refusal
/// that changed nothing, by [`Maintenance::StoreResponse`].
pub trait IdempotencyKeys: Send + Sync {
    fn idempotency(&self, scope: &str, key: &str) -> Result<Option<IdempotencyRecord>, StoreError>;

    /// How many keys `scope` holds and when its oldest expires.
    fn idempotency_usage(&self, scope: &str) -> Result<KeyUsage, StoreError>;
}

/// The webhook outbox: events queued by the commits that caused them (SPEC §10).
pub trait Deliveries: Send + Sync {
    /// The deliveries to `url` due at `now`, at most `max`, oldest first.
    fn due_deliveries(
        &self,
        url: &str,
        now: Millis,
        max: usize,
    ) -> Result<DueDeliveries, StoreError>;

    fn delivery(&self, id: Uuid) -> Result<Option<Delivery>, StoreError>;

    fn list_deliveries(&self, query: &DeliveryQuery) -> Result<DeliveryPage, StoreError>;

    /// Pending count and the oldest pending delivery, over `urls`.
    fn outbox_stats(&self, urls: &[String]) -> Result<OutboxStats, StoreError>;

    /// Changes whenever a commit queued deliveries.
    fn queued_events(&self) -> tokio::sync::watch::Receiver<u64>;
}

/// Writes that touch no order: sweeps, attempts' results, retention.
pub trait Housekeeping: Send + Sync {
    /// Returns how many records the work touched.
    fn maintain(&self, work: Maintenance) -> Pending<'_, u64>;

    fn maintain_blocking(&self, work: Maintenance) -> Result<u64, StoreError>;
}

/// Online snapshots of the whole store, and what `/health` needs to know.
pub trait Operations: Send + Sync {
    /// A consistent copy of every record into a new file in `dir`, taken
    /// while writes go on.
    fn snapshot_into(&self, dir: &Path) -> Result<SnapshotInfo, BackupError>;

    /// Can the store be read right now?
    fn probe(&self) -> bool;

    /// Bytes the store occupies, when it can tell.
    fn size_bytes(&self) -> Option<u64>;

    /// Whether a crash now would make the next start repair the whole store.
    fn full_repair_if_crashed(&self) -> bool;

    /// Finishes the queued writes and stops.
    fn shutdown(&self);

    /// `redb` or `postgres`, as `/health` names it.
    fn backend(&self) -> &'static str;

    /// Whether this instance runs the background work (sweeps, enforcement,
    /// droplet and customer actions, webhook delivery) right now. One
    /// instance at a time does on a shared database (SPEC §15); an embedded
    /// file has one instance, which always does.
    fn leads(&self) -> bool;

    /// Changes when [`Operations::leads`] may have changed.
    fn leadership(&self) -> tokio::sync::watch::Receiver<bool>;
}

/// Everything the service needs from a backend, behind one handle.
pub trait Storage: Orders + IdempotencyKeys + Deliveries + Housekeeping + Operations {}

impl<T: Orders + IdempotencyKeys + Deliveries + Housekeeping + Operations> Storage for T {}

impl Orders for Store {
    fn write(&self, op: WriteOp) -> Pending<'_, OpResult> {
        Box::pin(self.writer().submit(op))
    }

    fn write_all_blocking(&self, ops: Vec<WriteOp>) -> Vec<Result<OpResult, StoreError>> {
        self.writer().submit_all_blocking(ops)
    }

    fn get_order(&self, id: Uuid) -> Result<Option<OrderRecord>, StoreError> {
        Store::get_order(self, id)
    }

    fn history(&self, id: Uuid) -> Result<Vec<HistoryEntry>, StoreError> {
        Store::history(self, id)
    }

    fn customer_actions(
        &self,
        id: Uuid,
        skip: usize,
        limit: usize,
    ) -> Result<Vec<CustomerAction>, StoreError> {
        Store::customer_actions(self, id, skip, limit)
    }

    fn list_orders(&self, query: &ListQuery) -> Result<Page, StoreError> {
        Store::list_orders(self, query)
    }

    fn open_tasks(&self) -> Result<Vec<OrderRecord>, StoreError> {
        Store::open_tasks(self)
    }

    fn pending_actions(&self) -> Result<Vec<OrderRecord>, StoreError> {
        Store::pending_actions(self)
    }

    fn due_orders(&self, now: Millis, limit: usize) -> Result<Vec<Uuid>, StoreError> {
        Store::due_orders(self, now, limit)
    }

    fn status_counts(&self) -> Result<Vec<(OrderStatus, u64)>, StoreError> {
        Store::status_counts(self)
    }

    fn user_status_counts(&self, user: &str) -> Result<Vec<(OrderStatus, u64)>, StoreError> {
        Store::user_status_counts(self, user)
    }

    fn orders_created_since(&self, since: Millis) -> Result<Vec<OrderRecord>, StoreError> {
        Store::orders_created_since(self, since)
    }

    fn account_usage(&self) -> Result<Vec<(String, u64)>, StoreError> {
        Store::account_usage(self)
    }

    fn views(&self) -> &ViewCache {
        Store::views(self)
    }
}

impl IdempotencyKeys for Store {
    fn idempotency(&self, scope: &str, key: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
        Store::idempotency(self, scope, key)
    }

    fn idempotency_usage(&self, scope: &str) -> Result<KeyUsage, StoreError> {
        Store::idempotency_usage(self, scope)
    }
}

impl Deliveries for Store {
    fn due_deliveries(
        &self,
        url: &str,
        now: Millis,
        max: usize,
    ) -> Result<DueDeliveries, StoreError> {
        Store::due_deliveries(self, url, now, max)
    }

    fn delivery(&self, id: Uuid) -> Result<Option<Delivery>, StoreError> {
        Store::delivery(self, id)
    }

    fn list_deliveries(&self, query: &DeliveryQuery) -> Result<DeliveryPage, StoreError> {
        Store::list_deliveries(self, query)
    }

    fn outbox_stats(&self, urls: &[String]) -> Result<OutboxStats, StoreError> {
        Store::outbox_stats(self, urls)
    }

    fn queued_events(&self) -> tokio::sync::watch::Receiver<u64> {
        Store::queued_events(self)
    }
}

impl Housekeeping for Store {
    fn maintain(&self, work: Maintenance) -> Pending<'_, u64> {
        Box::pin(self.writer().maintain(work))
    }

    fn maintain_blocking(&self, work: Maintenance) -> Result<u64, StoreError> {
        self.writer().maintain_blocking(work)
    }
}

impl Operations for Store {
    fn snapshot_into(&self, dir: &Path) -> Result<SnapshotInfo, BackupError> {
        let db = self.database()?;
        super::backup::snapshot_into(&db, dir)
    }

    fn probe(&self) -> bool {
        super::probe(self)
    }

    fn size_bytes(&self) -> Option<u64> {
        std::fs::metadata(self.path()).ok().map(|m| m.len())
    }

    fn full_repair_if_crashed(&self) -> bool {
        Store::full_repair_if_crashed(self)
    }

    fn shutdown(&self) {
        Store::shutdown(self)
    }

    fn backend(&self) -> &'static str {
        "redb"
    }

    fn leads(&self) -> bool {
        true
    }

    fn leadership(&self) -> tokio::sync::watch::Receiver<bool> {
        tokio::sync::watch::channel(true).1
    }
}
