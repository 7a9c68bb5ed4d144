//! Wiring: build every part from the config, serve until the shutdown future
//! resolves, then stop in order: stop accepting and drain in-flight requests,
//! stop the scheduler and let a running sweep finish (bounded), close the data
//! file. `main` and the tests both go through [`App`].

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::backend::{Backend, OpenError, Surroundings};
use crate::catalog::embedded::{CatalogFileError, EmbeddedCatalog};
use crate::catalog::http::HttpCatalog;
use crate::catalog::Catalog;
use crate::cloud::accounts;
use crate::cloud::fleet::Fleet;
use crate::config::{CatalogSource, CloudProvider, Config, JwtAlgorithm};
use crate::http::api::auth::{ApiKey, JwtVerifier};
use crate::http::api::{self, ApiState};
use crate::metrics::Metrics;
use crate::provision::{self, Provisioner};
use crate::service::backups::BackupService;
use tokio_cron_scheduler::JobSchedulerError;

/// A start-up failure: one line for the operator (`.0`, also its Display),
/// and a non-zero exit. [`StartError::failure`] says which step failed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StartError(pub String, #[source] StartFailure);

impl StartError {
    pub fn failure(&self) -> &StartFailure {
        &self.1
    }
}

impl From<StartFailure> for StartError {
    fn from(failure: StartFailure) -> StartError {
        StartError(failure.to_string(), failure)
    }
}

/// Which step of start-up failed, in the order they run.
#[derive(Debug, thiserror::Error)]
pub enum StartFailure {
    #[error("server.bind: cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    /// The JWT key, key file or secret is unusable (the text names the key).
    #[error("{0}")]
    Auth(String),
    #[error("catalog.file: {0}")]
    Catalog(#[source] CatalogFileError),
    /// Metric names are fixed in code: this is a programming error.
    #[error("cannot set up metrics: {0}")]
    Metrics(#[source] prometheus::Error),
    /// Missing, locked, corrupt or newer data file.
    #[error(transparent)]
    Store(#[from] OpenError),
    /// `step` is e.g. "create the scheduler" or "schedule a job".
    #[error("cannot {step}: {source}")]
    Scheduler {
        step: &'static str,
        source: tokio_cron_scheduler::JobSchedulerError,
    },
    #[error("backup.schedule: {schedule:?} is not a valid cron expression: {source}")]
    BackupSchedule {
        schedule: String,
        source: tokio_cron_scheduler::JobSchedulerError,
    },
    #[error("{0}")]
    Provisioner(String),
    /// An account's token cannot be read, or live orders use an account the
    /// configuration no longer has (SPEC §13).
    #[error("{0}")]
    Accounts(String),
    /// A signal handler could not be installed (`main`).
    #[error("cannot handle {signal}: {source}")]
    Signal {
        signal: &'static str,
        source: std::io::Error,
    },
}

fn scheduler_failed(step: &'static str) -> impl Fn(JobSchedulerError) -> StartFailure + Copy {
    move |source| StartFailure::Scheduler { step, source }
}

/// A built, bound, not yet serving daemon.
pub struct App {
    listener: tokio::net::TcpListener,
    state: Arc<ApiState>,
    backend: Backend,
    catalog: Arc<dyn Catalog>,
    config: Config,
    provisioner: Arc<Provisioner>,
    /// Wakes the provisioner when PAID (or retry) commits.
    provisioner_wake: Arc<Notify>,
    backups: Arc<BackupService>,
    /// Where SIGHUP re-reads the configuration's account list from (the
    /// `--config` file, or `Config.toml` and the environment); `None`: the
    /// config was handed in whole, so only the catalog reloads.
    reload_source: Option<Option<std::path::PathBuf>>,
}

impl App {
    /// Binds `server.bind` and builds everything.
    pub async fn build(config: Config) -> Result<App, StartError> {
        let listener = tokio::net::TcpListener::bind(&config.server.bind)
            .await
            .map_err(|source| StartFailure::Bind {
                addr: config.server.bind.clone(),
                source,
            })?;
        App::build_with_listener(config, listener).await
    }

    /// Builds on a listener the caller bound (tests bind 127.0.0.1:0).
    pub async fn build_with_listener(
        config: Config,
        listener: tokio::net::TcpListener,
    ) -> Result<App, StartError> {
        let jwt = JwtVerifier::from_config(&config.auth).map_err(StartFailure::Auth)?;
        let catalog = build_catalog(&config)?;
        let metrics = Arc::new(Metrics::new().map_err(StartFailure::Metrics)?);
        let members =
            accounts::members(&config).map_err(|e| StartFailure::Accounts(e.to_string()))?;
        let backend = Backend::open(&config).await.map_err(StartFailure::Store)?;
        // Warnings only once everything is built: a failed start prints its
        // one error line and nothing else.
        warn_about_development_settings(&config);
        let around = Surroundings {
            catalog: catalog.clone(),
            fleet: build_fleet(&config, members),
            metrics: metrics.clone(),
            provisioning: provisioner_settings(&config),
        };
        let fleet = around.fleet.clone();
        let parts = backend.build(&config, around);
        parts
            .provisioner
            .check_accounts(&fleet.names())
            .map_err(StartFailure::Accounts)?;
        let state = Arc::new(ApiState {
            orders: parts.orders,
            jwt,
            api_key: ApiKey::new(config.auth.internal_api_key.as_deref()),
            body_limit: config.server.body_limit,
            body_timeout: Duration::from_millis(config.server.body_timeout_ms),
            ops: parts.ops,
            webhooks: parts.webhooks,
            cors_origins: config.server.cors_origins.clone(),
            metrics,
            backups: parts.backups.clone(),
            trust_forwarded_for: config.server.trust_forwarded_for,
            key_failures: crate::http::api::client::FailureLimiter::new(
                api::MAX_KEY_FAILURES,
                api::FAILURE_WINDOW,
            ),
        });
        Ok(App {
            listener,
            state,
            backend: parts.backend,
            catalog,
            config,
            provisioner: parts.provisioner,
            provisioner_wake: parts.provisioner_wake,
            backups: parts.backups,
            reload_source: None,
        })
    }

    /// SIGHUP also reloads the DigitalOcean accounts from `source` (`None`:
    /// `Config.toml` and the environment, as at start-up).
    pub fn reload_config_from(mut self, source: Option<std::path::PathBuf>) -> App {
        self.reload_source = Some(source);
        self
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The redb store itself (none on PostgreSQL), for the tests'
    /// file-level access.
    #[cfg(feature = "testing")]
    pub fn store(&self) -> Option<&crate::backend::store::Store> {
        self.backend.store()
    }

    /// The store behind the contract, whichever backend it is.
    #[cfg(feature = "testing")]
    pub fn store_handle(&self) -> crate::backend::store::StoreHandle {
        self.backend.handle().clone()
    }

    /// The provisioner, so tests and benchmarks can run a sweep directly.
    pub fn provisioner(&self) -> &Arc<Provisioner> {
        &self.provisioner
    }

    /// Serves until `shutdown` resolves, then shuts down gracefully within
    /// `server.shutdown_grace_ms` and closes the data file.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartError> {
        let App {
            listener,
            state,
            backend,
            catalog,
            config,
            provisioner,
            provisioner_wake,
            backups,
            reload_source,
        } = self;
        let mut scheduler = tokio_cron_scheduler::JobScheduler::new()
            .await
            .map_err(scheduler_failed("create the scheduler"))?;
        let waker = provision::start(provisioner.clone(), &scheduler, provisioner_wake)
            .await
            .map_err(StartFailure::Provisioner)?;
        schedule_housekeeping(&scheduler, &config, &backups, &backend).await?;
        scheduler
            .start()
            .await
            .map_err(scheduler_failed("start the scheduler"))?;
        let reload = tokio::spawn(reload_on_sighup(
            catalog,
            provisioner.clone(),
            reload_source,
        ));
        let senders = backend.start_webhooks(&config, state.metrics.clone()).await;
        let addr = listener.local_addr().ok();
        tracing::info!(addr = ?addr, version = env!("CARGO_PKG_VERSION"), "vpsd listening");

        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        // The operator console claims `/admin` paths; everything else is the API's.
        let console = crate::http::console::Console::from_config(&config, state.clone());
        let routes = crate::http::edge::filter(console, state);
        let server = crate::http::server::serve(
            listener,
            warp::service(routes),
            connection_limits(&config),
            async move {
                let _ = stop_rx.await;
            },
        );
        // Aborting this task (grace expired) drops every connection with it.
        let mut server = tokio::spawn(server);
        tokio::select! {
            _ = shutdown => {}
            _ = &mut server => {}
        }
        tracing::info!("shutting down: no new connections, finishing in-flight requests");
        let _ = stop_tx.send(());
        let grace = Duration::from_millis(config.server.shutdown_grace_ms);
        if tokio::time::timeout(grace, &mut server).await.is_err() {
            tracing::warn!(
                grace_ms = config.server.shutdown_grace_ms,
                "in-flight requests did not finish in time; closing anyway"
            );
            server.abort();
        }
        reload.abort();
        waker.abort();
        // An attempt cut off here was not recorded: it goes out again after
        // the restart, with the same webhook-id.
        for sender in senders {
            sender.abort();
        }
        if let Err(e) = scheduler.shutdown().await {
            tracing::warn!(error = %e, "scheduler did not stop cleanly");
        }
        provisioner.stop(grace).await;
        backend.close().await;
        tracing::info!("vpsd stopped");
        Ok(())
    }
}

/// Scheduled backups (when `backup.schedule` is set) and the hourly sweep of
/// expired idempotency keys.
async fn schedule_housekeeping(
    scheduler: &tokio_cron_scheduler::JobScheduler,
    config: &Config,
    backups: &Arc<BackupService>,
    backend: &Backend,
) -> Result<(), StartError> {
    let add_failed = scheduler_failed("schedule a job");
    if let Some(schedule) = config
        .backup
        .schedule
        .as_ref()
        .filter(|_| backups.takes_schedule())
    {
        let service = backups.clone();
        let job = tokio_cron_scheduler::Job::new_async(schedule.as_str(), move |_, _| {
            let service = service.clone();
            Box::pin(async move { service.scheduled().await })
        })
        .map_err(|source| StartFailure::BackupSchedule {
            schedule: schedule.clone(),
            source,
        })?;
        scheduler.add(job).await.map_err(add_failed)?;
        tracing::info!(schedule = %schedule, keep = config.backup.keep, dir = %config.backup.dir.display(), "scheduled backups on");
    }
    backend
        .schedule_housekeeping(scheduler, config)
        .await
        .map_err(add_failed)?;
    Ok(())
}

/// Settings that are fine on a laptop and wrong in production.
fn warn_about_development_settings(config: &Config) {
    if config.auth.jwt_algorithm == JwtAlgorithm::HS256 {
        tracing::warn!("JWT algorithm is HS256 (shared secret): for development only; use RS256 or ES256 in production");
    }
    if config
        .auth
        .internal_api_key
        .as_deref()
        .is_none_or(str::is_empty)
    {
        tracing::warn!(
            "no internal API key configured: internal endpoints answer 401 API_KEY_NOT_CONFIGURED"
        );
    }
}

fn connection_limits(config: &Config) -> crate::http::server::Limits {
    let s = &config.server;
    crate::http::server::Limits {
        header_timeout: Duration::from_millis(s.header_timeout_ms),
        idle_timeout: Duration::from_millis(s.idle_timeout_ms),
        max_connections: usize::try_from(s.max_connections).unwrap_or(usize::MAX),
    }
}

fn provisioner_settings(config: &Config) -> provision::Settings {
    provision::Settings {
        max_attempts: config.provisioning.max_attempts,
        destroy_failed_droplets: config.provisioning.destroy_failed_droplets,
        ipv6: config.cloud.digitalocean.ipv6,
        poll_interval: Duration::from_millis(config.provisioning.poll_interval_ms),
        capacity_wait: Duration::from_secs(config.cloud.digitalocean.capacity_wait_seconds),
        account_refresh: Duration::from_secs(config.cloud.digitalocean.account_refresh_seconds),
        action_max_attempts: config.actions.max_attempts,
    }
}

fn build_fleet(config: &Config, members: Vec<accounts::Member>) -> Arc<Fleet> {
    if config.cloud.provider == CloudProvider::Sandbox {
        tracing::warn!("cloud provider is sandbox: droplets are simulated in-process, nothing is created at DigitalOcean");
    }
    Arc::new(Fleet::new(accounts::provider(config), members))
}

/// `vpsd import-v1` (SPEC §16): the v1 database is reached first, so a
/// wrong URL fails before the store is opened; then the configured store
/// and catalog, as `serve` opens them. Each error is one line.
pub fn import_v1(
    config: &Config,
    url: &str,
    dry_run: bool,
    progress: crate::backend::service::import_v1::Progress<'_>,
) -> Result<crate::backend::service::import_v1::ImportReport, String> {
    let mut source = crate::backend::service::import_v1::V1Source::connect(url)?;
    let catalog = build_catalog(config).map_err(|e| e.to_string())?;
    // A dry run creates no data file just to find it empty.
    let no_file = config.storage.backend == crate::config::StorageBackend::Redb
        && !config.storage.path.exists();
    if dry_run && no_file {
        return crate::backend::import_into(None, &mut source, &*catalog, config, true, progress);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start: {e}"))?;
    let backend = runtime.block_on(Backend::open(config)).map_err(|e| e.0)?;
    // Outside the runtime: the store's blocking calls run on this thread.
    let report = backend.import_v1(&mut source, &*catalog, config, dry_run, progress);
    runtime.block_on(backend.close());
    report
}

fn build_catalog(config: &Config) -> Result<Arc<dyn Catalog>, StartError> {
    let c = &config.catalog;
    Ok(match c.source {
        CatalogSource::Embedded => {
            // Outside a checkout the default file is absent: the shipped sample
            // is compiled in. A file the operator named must exist.
            let default_file = crate::config::CatalogConfig::default().file;
            let catalog = if c.file == default_file && !c.file.exists() {
                tracing::info!(file = %c.file.display(), "catalog file not found; using the sample catalog built into vpsd");
                EmbeddedCatalog::builtin(&c.file, &c.sizes)
            } else {
                EmbeddedCatalog::load(&c.file, &c.sizes)
            };
            Arc::new(catalog.map_err(StartFailure::Catalog)?)
        }
        CatalogSource::Http => {
            let url = c.url.as_deref().unwrap_or_default();
            Arc::new(HttpCatalog::new(
                url,
                Duration::from_millis(c.timeout_ms),
                &c.sizes,
            ))
        }
    })
}

/// SIGHUP re-reads the embedded catalog and, when the config came from
/// files, the DigitalOcean accounts; whatever is refused keeps what was
/// there.
async fn reload_on_sighup(
    catalog: Arc<dyn Catalog>,
    provisioner: Arc<Provisioner>,
    source: Option<Option<std::path::PathBuf>>,
) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            let catalog = catalog.clone();
            let result = tokio::task::spawn_blocking(move || catalog.reload()).await;
            match result {
                Ok(Ok(())) => tracing::info!("catalog reloaded"),
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "catalog reload failed; keeping the previous catalog")
                }
                Err(e) => tracing::error!(error = %e, "catalog reload failed"),
            }
            if let Some(path) = source.clone() {
                let provisioner = provisioner.clone();
                let reloaded = tokio::task::spawn_blocking(move || {
                    let config = Config::load(path.as_deref()).map_err(|e| e.to_string())?;
                    reload_accounts(&provisioner, &config)
                })
                .await;
                match reloaded {
                    Ok(Ok(names)) => tracing::info!(accounts = ?names, "cloud accounts reloaded"),
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "cloud accounts reload refused; keeping the previous accounts")
                    }
                    Err(e) => tracing::error!(error = %e, "cloud accounts reload failed"),
                }
            }
        }
    }
    #[cfg(not(unix))]
    drop((catalog, provisioner, source));
}

/// Replaces the provisioner's accounts with `config`'s (blocking: it reads
/// token files and waits for a running sweep). Refused, changing nothing,
/// when a token cannot be read or an account live orders use is missing.
/// Returns the account names now in use.
pub fn reload_accounts(provisioner: &Provisioner, config: &Config) -> Result<Vec<String>, String> {
    if accounts::provider(config) != provisioner.fleet().provider() {
        return Err("cloud.provider cannot change on reload; restart vpsd".into());
    }
    let members = accounts::members(config).map_err(|e| e.to_string())?;
    let names = members.iter().map(|m| m.name.clone()).collect();
    provisioner.reconfigure(members)?;
    Ok(names)
}
