//! Health and metrics: what an operator's probes ask of the running daemon.
//! Kept beside the order service so the API renders answers and never reaches
//! into storage or the cloud provider itself.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};

use crate::backend::store::StoreHandle;
use crate::catalog::Catalog;
use crate::cloud::fleet::Fleet;
use crate::domain::time::now_millis;
use crate::error::AppError;
use crate::metrics::Metrics;

/// One account as operators see it (SPEC §13): what the last check found,
/// never its token.
pub use crate::cloud::fleet::AccountView;

/// What `/health` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    /// The data file answered a read just now.
    pub storage_ok: bool,
    /// `sandbox` or `digitalocean`.
    pub cloud: &'static str,
    /// `embedded` or `http`.
    pub catalog: &'static str,
    /// `redb` or `postgres` (SPEC §15).
    pub backend: &'static str,
    /// This instance runs the background work now: always on redb; on a
    /// shared PostgreSQL database, the one instance holding leadership.
    pub background_work: bool,
}

pub struct OpsService {
    store: StoreHandle,
    fleet: Arc<Fleet>,
    catalog: Arc<dyn Catalog>,
    metrics: Arc<Metrics>,
    /// Configured webhook endpoints (their queues' heads give the oldest
    /// pending delivery).
    webhook_urls: Vec<String>,
    /// Accounts whose on-demand check is running: asking again meanwhile
    /// joins it rather than spending the account's rate budget twice.
    refreshing: Arc<Mutex<BTreeSet<String>>>,
}

impl OpsService {
    pub fn new(
        store: impl Into<StoreHandle>,
        fleet: Arc<Fleet>,
        catalog: Arc<dyn Catalog>,
        metrics: Arc<Metrics>,
        webhook_urls: Vec<String>,
    ) -> OpsService {
        OpsService {
            store: store.into(),
            fleet,
            catalog,
            metrics,
            webhook_urls,
            refreshing: Arc::default(),
        }
    }

    pub fn health(&self) -> Health {
        Health {
            storage_ok: self.store.probe(),
            cloud: self.fleet.provider(),
            catalog: self.catalog.source_name(),
            backend: self.store.backend(),
            background_work: self.store.leads(),
        }
    }

    /// Every configured account, by name.
    pub fn accounts(&self) -> Vec<AccountView> {
        self.fleet.views()
    }

    /// Starts a check of `name`'s capacity and health and returns at once:
    /// the check is several DigitalOcean calls, each up to the client's
    /// timeout, which a request (or a console page) should not wait for.
    /// The answer shows on the account's `checkedAt` when it lands.
    pub fn refresh_account(&self, name: &str) -> Result<(), AppError> {
        if !self.fleet.names().iter().any(|n| n == name) {
            return Err(AppError::AccountNotFound);
        }
        let running = Arc::clone(&self.refreshing);
        let started = lock(&running).insert(name.to_string());
        if !started {
            return Ok(());
        }
        let fleet = Arc::clone(&self.fleet);
        let running = Running {
            set: running,
            name: name.to_string(),
        };
        tokio::task::spawn_blocking(move || fleet.refresh(&running.name));
        Ok(())
    }

    /// Prometheus text: the registry plus gauges read now (off the async
    /// workers: counting statuses and sizing the file touch the disk).
    pub async fn metrics_text(&self) -> Result<Vec<u8>, AppError> {
        let store = self.store.clone();
        let urls = self.webhook_urls.clone();
        let (counts, file_bytes, outbox) = tokio::task::spawn_blocking(move || {
            let bytes = store.size_bytes().unwrap_or(0);
            (store.status_counts(), bytes, store.outbox_stats(&urls))
        })
        .await
        .map_err(|e| AppError::Internal(format!("metrics task failed: {e}")))?;
        let m = &self.metrics;
        for (status, n) in counts? {
            m.orders
                .with_label_values(&[status.as_str()])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        m.data_file_bytes
            .set(i64::try_from(file_bytes).unwrap_or(i64::MAX));
        m.storage_full_repair_if_crashed
            .set(i64::from(self.store.full_repair_if_crashed()));
        let outbox = outbox?;
        m.webhook_pending
            .set(i64::try_from(outbox.pending).unwrap_or(i64::MAX));
        m.webhook_oldest_pending_seconds.set(
            outbox
                .oldest_pending_at
                .map_or(0, |at| (now_millis() - at).max(0) / 1000),
        );
        m.set_accounts(self.fleet.views().iter().map(|v| &v.account));
        Metrics::catch_up(&m.cloud_calls, self.fleet.calls_sent());
        Metrics::catch_up(&m.cloud_rate_limited, self.fleet.rate_limited_count());
        let last = m.backup_last_success.get();
        let age = if last > 0 {
            now_millis() / 1000 - last
        } else {
            -1
        };
        m.backup_age_seconds.set(age);
        m.render()
            .map_err(|e| AppError::Internal(format!("cannot render metrics: {e}")))
    }
}

/// The set of running checks; a panic elsewhere while holding it leaves a
/// set that is still correct, so poisoning is ignored.
fn lock(set: &Mutex<BTreeSet<String>>) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
    set.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An on-demand check in progress; leaves the set however the check ends.
struct Running {
    set: Arc<Mutex<BTreeSet<String>>>,
    name: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        lock(&self.set).remove(&self.name);
    }
}
