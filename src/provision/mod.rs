//! Provisioning: turns PAID orders into running droplets, exactly once.
//!
//! The PENDING task written with PAID is the durable to-do. A reconciler sweep
//! (scheduled by tokio-cron-scheduler, run once at start-up, and woken at once
//! by PAID and retry) takes every open task forward by one observation. Sweeps
//! never overlap. DigitalOcean has no idempotency key, so before any create
//! the sweep lists the order's tag and adopts what it finds: a crash between
//! the create call and the commit of the droplet id cannot make a second one.
//!
//! Servers live on several DigitalOcean accounts (SPEC §13): a task is placed
//! on one (recorded before anything is created there) and every later call
//! for its order uses that account's client. Each account has its own
//! back-off: a 429 or an outage on one never holds up another.

mod actions;
mod customer;
mod enforce;
mod place;
mod sweep;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::backend::store::StoreHandle;
use crate::cloud::fleet::Fleet;
use crate::domain::error::Rejection;
use crate::metrics::Metrics;

pub use sweep::SweepReport;

/// Shutdown's allowance, beyond a cloud call's timeout, for recording its answer.
const COMMIT_ALLOWANCE: Duration = Duration::from_secs(2);

/// Provisioning settings from the config.
#[derive(Debug, Clone)]
pub struct Settings {
    pub max_attempts: u32,
    pub destroy_failed_droplets: bool,
    pub ipv6: bool,
    pub poll_interval: Duration,
    /// How long an order may wait for a free slot on some account before it
    /// fails `NO_CAPACITY`.
    pub capacity_wait: Duration,
    /// How often each account's limit, status and droplet count are read.
    pub account_refresh: Duration,
    /// Attempts a customer action gets before it is `failed` (SPEC §14).
    pub action_max_attempts: u32,
}

/// Back-off of one account: a 429 or an outage is the account's, not a
/// droplet's, so every call on that account waits.
#[derive(Debug, Default)]
struct Backoff {
    until: Option<Instant>,
    failures: u32,
}

pub struct Provisioner {
    store: StoreHandle,
    fleet: Arc<Fleet>,
    settings: Settings,
    /// Held for the whole of a sweep: sweeps never overlap.
    running: tokio::sync::Mutex<()>,
    /// Held by the blocking thread while it does a sweep's work. Shutdown
    /// aborts the tasks that await sweeps, which releases `running` while the
    /// blocking work (a DigitalOcean call, then its commit) goes on: shutdown
    /// waits on this one before the data file closes.
    working: tokio::sync::Mutex<()>,
    /// A wake-up arrived; the running (or next) sweep must go round again.
    again: AtomicBool,
    /// Set at shutdown: a running sweep stops between tasks.
    stopping: AtomicBool,
    /// Per account name.
    backoff: Mutex<HashMap<String, Backoff>>,
    metrics: Arc<Metrics>,
}

impl Provisioner {
    pub fn new(
        store: impl Into<StoreHandle>,
        fleet: Arc<Fleet>,
        settings: Settings,
        metrics: Arc<Metrics>,
    ) -> Arc<Provisioner> {
        Arc::new(Provisioner {
            store: store.into(),
            fleet,
            settings,
            running: tokio::sync::Mutex::new(()),
            working: tokio::sync::Mutex::new(()),
            again: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            backoff: Mutex::new(HashMap::new()),
            metrics,
        })
    }

    /// The accounts servers are placed on.
    pub fn fleet(&self) -> &Arc<Fleet> {
        &self.fleet
    }

    /// Runs a sweep unless one is running, in which case that one goes round
    /// again when it ends. Returns the report of the last sweep this call ran.
    pub async fn sweep(self: &Arc<Self>) -> Option<SweepReport> {
        self.again.store(true, Ordering::SeqCst);
        let mut last = None;
        loop {
            let Ok(guard) = self.running.try_lock() else {
                return last;
            };
            while self.again.swap(false, Ordering::SeqCst) && !self.stopping.load(Ordering::SeqCst)
            {
                last = self.run_one().await.or(last);
            }
            drop(guard);
            // A wake-up that landed after the check above but before the unlock
            // would otherwise wait for the next tick.
            if !self.again.load(Ordering::SeqCst) || self.stopping.load(Ordering::SeqCst) {
                return last;
            }
        }
    }

    /// Waits for any running sweep, then runs exactly one: tests and benchmarks
    /// count calls per sweep, which `sweep`'s coalescing would blur.
    #[cfg(any(test, feature = "testing"))]
    #[doc(hidden)]
    pub async fn sweep_once(self: &Arc<Self>) -> Option<SweepReport> {
        let _guard = self.running.lock().await;
        self.run_one().await
    }

    async fn run_one(self: &Arc<Self>) -> Option<SweepReport> {
        let me = self.clone();
        let started = Instant::now();
        let work = move || {
            let _working = me.working.blocking_lock();
            // Shutdown may have begun meanwhile and is about to close the store.
            (!me.standing_down()).then(|| me.full_sweep())
        };
        let report = match tokio::task::spawn_blocking(work).await {
            Ok(report) => report,
            Err(e) => {
                tracing::error!(error = %e, "provisioning sweep failed");
                None
            }
        };
        // A follower's or a stopping instance's turn did nothing: counted,
        // it would hide in the histogram which instance really sweeps.
        if report.is_some() {
            self.metrics
                .sweep_duration
                .observe(started.elapsed().as_secs_f64());
        }
        report
    }

    /// Expiry first (it may owe droplet actions), then provisioning, then the
    /// droplet actions owed.
    fn full_sweep(&self) -> SweepReport {
        let ticked = self.enforce_blocking();
        let mut report = self.sweep_blocking();
        report.ticked = ticked;
        report.actions = self.actions_blocking();
        report
    }

    /// Stops background sweeps: a running one finishes the step under way and
    /// returns. That step may be waiting on DigitalOcean (a create it sent):
    /// its answer is recorded before the data file closes, so the wait is
    /// `grace` or the call's own timeout plus a commit, whichever is longer.
    /// Once stopping, no create, power request or delete is started.
    pub async fn stop(&self, grace: Duration) {
        self.stopping.store(true, Ordering::SeqCst);
        let bound = grace.max(self.fleet.call_timeout() + COMMIT_ALLOWANCE);
        if tokio::time::timeout(bound, self.working.lock())
            .await
            .is_err()
        {
            tracing::warn!(waited_ms = bound.as_millis() as u64, "a provisioning sweep is still running at shutdown; abandoning it (its task is retried at the next start)");
        }
    }

    /// Stopping, or no longer the instance that runs background work on a
    /// shared database (SPEC §15): either way no create, power request or
    /// delete starts, and a sweep under way returns at its next step.
    fn standing_down(&self) -> bool {
        self.stopping.load(Ordering::SeqCst) || !self.store.leads()
    }

    /// Finished tasks by outcome: `SUCCESS` or an error code.
    fn record_outcome(&self, outcome: &str) {
        self.metrics
            .provisioning_outcomes
            .with_label_values(&[outcome])
            .inc();
    }
}

/// A refused save is expected when an operator acted on the order meanwhile
/// (retry raced a sweep): the next sweep reads the new state.
fn log_save(
    result: Result<crate::backend::store::OpResult, crate::backend::store::StoreError>,
) -> bool {
    match result {
        Ok(Ok(_)) => true,
        Ok(Err(Rejection::StaleTask)) => {
            tracing::debug!("task changed during the sweep; it is taken up again next sweep");
            false
        }
        Ok(Err(e)) => {
            tracing::warn!(error = ?e, "provisioning update refused");
            false
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot save provisioning progress; it is retried next sweep");
            false
        }
    }
}

/// Schedules the reconciler on `scheduler` every `poll_interval`, sweeps once
/// now, and on every `wake`. Returns the wake-up loop so shutdown can stop it.
pub async fn start(
    provisioner: Arc<Provisioner>,
    scheduler: &tokio_cron_scheduler::JobScheduler,
    wake: Arc<Notify>,
) -> Result<tokio::task::JoinHandle<()>, String> {
    // tokio-cron-scheduler repeats in whole seconds: round up, never down to 0.
    let period = provisioner.settings.poll_interval;
    let seconds = period.as_millis().div_ceil(1000).max(1) as u64;
    if u128::from(seconds) * 1000 != period.as_millis() {
        tracing::warn!(
            poll_interval_ms = period.as_millis() as u64,
            used_seconds = seconds,
            "provisioning.poll_interval_ms rounded up to whole seconds"
        );
    }
    let ticker = provisioner.clone();
    let job =
        tokio_cron_scheduler::Job::new_repeated_async(Duration::from_secs(seconds), move |_, _| {
            let p = ticker.clone();
            Box::pin(async move {
                p.sweep().await;
            })
        })
        .map_err(|e| format!("cannot schedule the reconciler: {e}"))?;
    scheduler
        .add(job)
        .await
        .map_err(|e| format!("cannot schedule the reconciler: {e}"))?;
    let mut leadership = Some(provisioner.store.leadership());
    Ok(tokio::spawn(async move {
        // Tasks survive restarts: sweep once at start-up.
        provisioner.sweep().await;
        loop {
            next_turn(&wake, &mut leadership).await;
            provisioner.sweep().await;
        }
    }))
}

/// Waits for a wake-up, or for this instance to take over the background
/// work on a shared database (SPEC §15): the work a dead leader left should
/// not wait for the next tick. A backend whose leadership never changes
/// (the embedded file) closes the channel; then only wake-ups count.
async fn next_turn(wake: &Notify, leadership: &mut Option<tokio::sync::watch::Receiver<bool>>) {
    loop {
        let Some(watch) = leadership.as_mut() else {
            wake.notified().await;
            return;
        };
        tokio::select! {
            _ = wake.notified() => return,
            changed = watch.changed() => match changed {
                Ok(()) if *watch.borrow_and_update() => return,
                Ok(()) => {}
                Err(_) => *leadership = None,
            },
        }
    }
}
