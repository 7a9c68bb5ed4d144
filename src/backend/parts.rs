//! The open store and everything built on it, handed to `App` as parts it
//! can use but not open up: `App` holds a [`Backend`], never the store, so
//! nothing outside `backend` gets a store handle to pass on.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_cron_scheduler::{Job, JobScheduler, JobSchedulerError};

use super::provision::{self, Provisioner};
use super::service::backups::BackupService;
use super::service::import_v1::{ImportReport, Importer, Progress, Settings, V1Source};
use super::service::ops::OpsService;
use super::service::webhooks::WebhookService;
use super::service::OrderService;
use super::store::pg::{PgSettings, PgStore};
use super::store::{backup, Maintenance, OpenError, Rules, Store, StoreHandle};
use crate::catalog::Catalog;
use crate::cloud::fleet::Fleet;
use crate::config::{Config, StorageBackend};
use crate::metrics::Metrics;

/// The open data file: housekeeping, webhook senders and the final close,
/// all through the storage contract, like every service built on it.
pub struct Backend {
    handle: StoreHandle,
    /// Changes when another instance on a shared database committed work
    /// for the reconciler (SPEC §15); `None` on an embedded file.
    reconciler_work: Option<tokio::sync::watch::Receiver<u64>>,
    /// The redb store itself (none on PostgreSQL), only for the tests'
    /// direct access.
    #[cfg(feature = "testing")]
    store: Option<Store>,
}

/// What the edge and the scheduler work with, all on one store.
pub struct Parts {
    pub orders: OrderService,
    pub backups: Arc<BackupService>,
    pub ops: OpsService,
    pub webhooks: WebhookService,
    pub provisioner: Arc<Provisioner>,
    /// Wakes the provisioner when PAID (or retry) commits.
    pub provisioner_wake: Arc<Notify>,
    pub backend: Backend,
}

/// What the parts need besides the store, all built from the config by `App`.
pub struct Surroundings {
    pub catalog: Arc<dyn Catalog>,
    pub fleet: Arc<Fleet>,
    pub metrics: Arc<Metrics>,
    pub provisioning: provision::Settings,
}

impl Backend {
    /// Opens the data file off the async workers: redb's open can repair a
    /// file after a crash, which takes as long as the file is large. The
    /// backup folder is checked here too, so both copies of the data are
    /// private before serving.
    pub async fn open(config: &Config) -> Result<Backend, OpenError> {
        if config.storage.backend == StorageBackend::Postgres {
            return Backend::open_postgres(config).await;
        }
        let path = config.storage.path.clone();
        let cache = usize::try_from(config.storage.cache_mb << 20).unwrap_or(usize::MAX);
        let rules = rules_of(config);
        let backups = config.backup.dir.clone();
        let store = tokio::task::spawn_blocking(move || {
            backup::tighten_dir(&backups);
            Store::open_with(&path, cache, rules)
        })
        .await
        .map_err(|e| OpenError(format!("cannot open the data file: {e}")))??;
        Ok(Backend {
            handle: StoreHandle::from(store.clone()),
            reconciler_work: None,
            #[cfg(feature = "testing")]
            store: Some(store),
        })
    }

    /// Connects to the shared database (SPEC §15), off the async workers.
    async fn open_postgres(config: &Config) -> Result<Backend, OpenError> {
        let pg = &config.storage.postgres;
        let settings = PgSettings {
            url: pg.url.clone().unwrap_or_default(),
            pool_size: pg.pool_size,
            takeover: Duration::from_secs(pg.takeover_seconds),
        };
        let rules = rules_of(config);
        let store = tokio::task::spawn_blocking(move || PgStore::open(&settings, rules))
            .await
            .map_err(|e| OpenError(format!("cannot open the database: {e}")))??;
        tracing::info!(database = %store.shown(), "storage: PostgreSQL");
        Ok(Backend {
            reconciler_work: Some(store.reconciler_work()),
            handle: Arc::new(store),
            #[cfg(feature = "testing")]
            store: None,
        })
    }

    /// Builds every service on this store.
    pub fn build(self, config: &Config, around: Surroundings) -> Parts {
        let store = &self.handle;
        let provisioner_wake = Arc::new(Notify::new());
        if let Some(work) = self.reconciler_work.clone() {
            relay_wakes(work, provisioner_wake.clone());
        }
        let urls = config.webhooks.endpoints.iter().map(|e| e.url.clone());
        Parts {
            orders: OrderService::new(
                store.clone(),
                around.catalog.clone(),
                config.catalog.currency.clone(),
                config.allowed_regions(),
                config.server.order_rate_limit_per_minute,
                config.idempotency.max_keys_per_user,
                provisioner_wake.clone(),
            )
            .with_action_cooldown(Duration::from_secs(config.actions.cooldown_seconds))
            .with_timezone(config.console.zone().unwrap_or(chrono_tz::UTC)),
            backups: Arc::new(BackupService::new(
                store.clone(),
                config.backup.dir.clone(),
                config.backup.keep as usize,
                around.metrics.clone(),
            )),
            ops: OpsService::new(
                store.clone(),
                around.fleet.clone(),
                around.catalog,
                around.metrics.clone(),
                urls.collect(),
            ),
            webhooks: WebhookService::new(store.clone()),
            provisioner: Provisioner::new(
                store.clone(),
                around.fleet,
                around.provisioning,
                around.metrics,
            ),
            provisioner_wake,
            backend: self,
        }
    }

    /// The hourly sweep of expired idempotency keys and of webhook
    /// deliveries past `webhooks.retention_hours`.
    pub async fn schedule_housekeeping(
        &self,
        scheduler: &JobScheduler,
        config: &Config,
    ) -> Result<(), JobSchedulerError> {
        let store = self.handle.clone();
        let retention_ms = i64::try_from(config.webhooks.retention_hours.saturating_mul(3_600_000))
            .unwrap_or(i64::MAX);
        let job = Job::new_repeated_async(Duration::from_secs(3600), move |_, _| {
            let store = store.clone();
            Box::pin(async move { sweep_hourly(&store, retention_ms).await })
        })?;
        scheduler.add(job).await.map(drop)
    }

    /// Fails deliveries to endpoints removed from the configuration, then
    /// starts one delivery worker per configured endpoint.
    pub async fn start_webhooks(
        &self,
        config: &Config,
        metrics: Arc<Metrics>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let now = crate::domain::time::now_millis();
        // Instances of one shop share their endpoints; the one running the
        // background work speaks for them.
        let unrouted = match self.handle.leads() {
            true => {
                self.handle
                    .maintain(Maintenance::FailUnrouted { now })
                    .await
            }
            false => Ok(0),
        };
        match unrouted {
            Ok(0) => {}
            Ok(n) => tracing::warn!(
                deliveries = n,
                "pending webhook deliveries to endpoints no longer configured are now failed"
            ),
            Err(e) => tracing::warn!(error = %e, "could not check webhook deliveries"),
        }
        let senders = super::webhooks::deliver::start(&self.handle, &config.webhooks, metrics);
        if !senders.is_empty() {
            tracing::info!(endpoints = senders.len(), "webhook delivery on");
        }
        senders
    }

    /// `vpsd import-v1` (SPEC §16) into this store: droplets v1 made are on
    /// the account its one token is configured as (`default`).
    pub fn import_v1(
        &self,
        source: &mut V1Source,
        catalog: &dyn Catalog,
        config: &Config,
        dry_run: bool,
        progress: Progress<'_>,
    ) -> Result<ImportReport, String> {
        import_into(
            Some(&self.handle),
            source,
            catalog,
            config,
            dry_run,
            progress,
        )
    }

    /// Finishes the queued writes and closes the data file.
    pub async fn close(&self) {
        let closing = self.handle.clone();
        let _ = tokio::task::spawn_blocking(move || closing.shutdown()).await;
    }

    /// The redb store itself (none on PostgreSQL), for the tests' and
    /// benchmarks' file-level access.
    #[cfg(feature = "testing")]
    pub fn store(&self) -> Option<&Store> {
        self.store.as_ref()
    }

    /// The store behind the contract, whichever backend it is.
    #[cfg(feature = "testing")]
    pub fn handle(&self) -> &StoreHandle {
        &self.handle
    }
}

fn rules_of(config: &Config) -> Rules {
    Rules {
        policy: config.lifecycle.policy(),
        outbox: config.webhooks.outbox(),
        quick_repair: config.storage.quick_repair,
    }
}

/// Wakes this instance's reconciler when another instance committed work
/// for it: only the leading instance acts on it (see `Provisioner`).
fn relay_wakes(mut work: tokio::sync::watch::Receiver<u64>, wake: Arc<Notify>) {
    tokio::spawn(async move {
        while work.changed().await.is_ok() {
            wake.notify_one();
        }
    });
}

async fn sweep_hourly(store: &StoreHandle, retention_ms: i64) {
    let now = crate::domain::time::now_millis();
    match store.maintain(Maintenance::SweepIdempotency { now }).await {
        Ok(n) if n > 0 => tracing::info!(expired = n, "expired idempotency keys removed"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "could not sweep idempotency keys"),
    }
    let before = now.saturating_sub(retention_ms);
    match store.maintain(Maintenance::PruneDelivered { before }).await {
        Ok(n) if n > 0 => tracing::info!(pruned = n, "old webhook deliveries removed"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "could not prune webhook deliveries"),
    }
}

/// `vpsd import-v1` into `store`, or (a dry run before any data file
/// exists) against no store at all.
pub fn import_into(
    store: Option<&StoreHandle>,
    source: &mut V1Source,
    catalog: &dyn Catalog,
    config: &Config,
    dry_run: bool,
    progress: Progress<'_>,
) -> Result<ImportReport, String> {
    let policy = config.lifecycle.policy();
    let importer = Importer {
        store,
        catalog,
        settings: Settings {
            policy: &policy,
            region: &config.cloud.digitalocean.default_region,
            account: crate::domain::fleet::DEFAULT_ACCOUNT,
        },
    };
    importer.run(source, dry_run, progress)
}
