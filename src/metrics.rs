//! Prometheus metrics, kept apart from the API: the HTTP layer, the
//! provisioner and the backup service record into one registry, and `/metrics`
//! (API key) renders it with the gauges that are read at scrape time.

use prometheus::core::Collector;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use warp::http;

use crate::domain::fleet::{Account, Health};

pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub orders: IntGaugeVec,
    pub provisioning_outcomes: IntCounterVec,
    /// Droplet actions owed (power off / on, delete), at the last sweep.
    pub droplet_actions_pending: IntGauge,
    /// Of those, the ones whose last attempt failed (retrying).
    pub droplet_actions_failing: IntGauge,
    pub cloud_calls: IntCounter,
    pub cloud_rate_limited: IntCounter,
    pub sweep_duration: Histogram,
    pub backups: IntCounterVec,
    pub backup_last_success: IntGauge,
    pub backup_last_bytes: IntGauge,
    pub backup_age_seconds: IntGauge,
    pub data_file_bytes: IntGauge,
    /// 1 while a crash would make the next start walk the whole data file.
    pub storage_full_repair_if_crashed: IntGauge,
    /// Webhook attempts by result: delivered, retried, failed (schedule used up).
    pub webhook_deliveries: IntCounterVec,
    /// Deliveries waiting (queued or between retries), at the last scrape.
    pub webhook_pending: IntGauge,
    /// Age of the oldest pending delivery, at the last scrape (0: none).
    pub webhook_oldest_pending_seconds: IntGauge,
    /// Per DigitalOcean account (SPEC §13), labelled `account`; set from the
    /// fleet at each scrape, so labels are the configured names only.
    pub account_droplet_limit: IntGaugeVec,
    pub account_droplets: IntGaugeVec,
    pub account_free_slots: IntGaugeVec,
    pub account_healthy: IntGaugeVec,
}

impl Metrics {
    /// Builds the registry. Metric names and labels are fixed here, so a
    /// failure is a programming error caught by the first test run; it is
    /// still reported rather than panicking.
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let r = Registry::new();
        let http_duration =
            HistogramOpts::new(HTTP_DURATION.0, HTTP_DURATION.1).buckets(HTTP_BUCKETS.to_vec());
        let sweep_duration =
            HistogramOpts::new(SWEEP_DURATION.0, SWEEP_DURATION.1).buckets(SWEEP_BUCKETS.to_vec());
        Ok(Metrics {
            http_requests: counter_vec(&r, HTTP_REQUESTS, &["route", "method", "status"])?,
            http_duration: add(&r, HistogramVec::new(http_duration, &["route"]))?,
            orders: add(
                &r,
                IntGaugeVec::new(Opts::new(ORDERS.0, ORDERS.1), &["status"]),
            )?,
            provisioning_outcomes: counter_vec(&r, PROVISIONING_OUTCOMES, &["outcome"])?,
            droplet_actions_pending: gauge(&r, DROPLET_ACTIONS_PENDING)?,
            droplet_actions_failing: gauge(&r, DROPLET_ACTIONS_FAILING)?,
            cloud_calls: counter(&r, CLOUD_CALLS)?,
            cloud_rate_limited: counter(&r, CLOUD_RATE_LIMITED)?,
            sweep_duration: add(&r, Histogram::with_opts(sweep_duration))?,
            backups: counter_vec(&r, BACKUPS, &["result"])?,
            backup_last_success: gauge(&r, BACKUP_LAST_SUCCESS)?,
            backup_last_bytes: gauge(&r, BACKUP_LAST_BYTES)?,
            backup_age_seconds: gauge(&r, BACKUP_AGE)?,
            data_file_bytes: gauge(&r, DATA_FILE_BYTES)?,
            storage_full_repair_if_crashed: gauge(&r, FULL_REPAIR_IF_CRASHED)?,
            webhook_deliveries: counter_vec(&r, WEBHOOK_DELIVERIES, &["result"])?,
            webhook_pending: gauge(&r, WEBHOOK_PENDING)?,
            webhook_oldest_pending_seconds: gauge(&r, WEBHOOK_OLDEST_PENDING)?,
            account_droplet_limit: gauge_vec(&r, ACCOUNT_DROPLET_LIMIT, &["account"])?,
            account_droplets: gauge_vec(&r, ACCOUNT_DROPLETS, &["account"])?,
            account_free_slots: gauge_vec(&r, ACCOUNT_FREE_SLOTS, &["account"])?,
            account_healthy: gauge_vec(&r, ACCOUNT_HEALTHY, &["account"])?,
            registry: r,
        })
    }

    /// Brings a counter up to a monotonic total kept elsewhere (the cloud client).
    pub fn catch_up(counter: &IntCounter, total: u64) {
        let current = counter.get();
        if total > current {
            counter.inc_by(total - current);
        }
    }

    /// The per-account gauges, from scratch: an account a reload removed
    /// leaves no series behind. The limit is left out until DigitalOcean
    /// has told it (absent reads as unknown, where 0 would read as full).
    pub fn set_accounts<'a>(&self, accounts: impl IntoIterator<Item = &'a Account>) {
        let vecs = [
            &self.account_droplet_limit,
            &self.account_droplets,
            &self.account_free_slots,
            &self.account_healthy,
        ];
        vecs.iter().for_each(|v| v.reset());
        let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        for a in accounts {
            let label = [a.name.as_str()];
            if let Some(limit) = a.droplet_limit {
                self.account_droplet_limit
                    .with_label_values(&label)
                    .set(count(limit));
            }
            self.account_droplets
                .with_label_values(&label)
                .set(count(a.droplets));
            self.account_free_slots
                .with_label_values(&label)
                .set(count(a.free_slots()));
            self.account_healthy
                .with_label_values(&label)
                .set(i64::from(a.health == Health::Ok));
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Result<Vec<u8>, prometheus::Error> {
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out)?;
        Ok(out)
    }
}

/// The HTTP method as a metric label and log field. Clients can send any
/// token as a method; only this fixed set reaches labels and logs, so made-up
/// methods cannot grow memory, `/metrics` or the log (SPEC §12).
pub fn method_label(method: &http::Method) -> &'static str {
    use http::Method as M;
    match *method {
        M::GET => "GET",
        M::HEAD => "HEAD",
        M::POST => "POST",
        M::PUT => "PUT",
        M::PATCH => "PATCH",
        M::DELETE => "DELETE",
        M::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// A metric's name and help text. Kept in one list so the exposition's
/// vocabulary reads in one place and `Metrics::new` only wires them up.
type Spec = (&'static str, &'static str);

const HTTP_REQUESTS: Spec = (
    "vpsd_http_requests_total",
    "HTTP requests by route, method and status",
);
const HTTP_DURATION: Spec = (
    "vpsd_http_request_duration_seconds",
    "HTTP request latency by route",
);
const ORDERS: Spec = ("vpsd_orders", "Orders by status");
const PROVISIONING_OUTCOMES: Spec = (
    "vpsd_provisioning_outcomes_total",
    "Finished provisioning tasks by outcome (SUCCESS or error code)",
);
const DROPLET_ACTIONS_PENDING: Spec = (
    "vpsd_droplet_actions_pending",
    "Droplet actions owed after a status change (power off / on, delete)",
);
const DROPLET_ACTIONS_FAILING: Spec = (
    "vpsd_droplet_actions_failing",
    "Owed droplet actions whose last attempt failed and are being retried",
);
const CLOUD_CALLS: Spec = (
    "vpsd_cloud_api_calls_total",
    "Requests sent to the cloud provider",
);
const CLOUD_RATE_LIMITED: Spec = (
    "vpsd_cloud_api_rate_limited_total",
    "429 answers from the cloud provider",
);
const SWEEP_DURATION: Spec = (
    "vpsd_reconciler_sweep_duration_seconds",
    "Reconciler sweep duration",
);
const BACKUPS: Spec = ("vpsd_backups_total", "Snapshots by result");
const BACKUP_LAST_SUCCESS: Spec = (
    "vpsd_backup_last_success_timestamp_seconds",
    "Unix time of the last successful snapshot (0: none yet)",
);
const BACKUP_LAST_BYTES: Spec = (
    "vpsd_backup_last_size_bytes",
    "Size of the last successful snapshot",
);
const BACKUP_AGE: Spec = (
    "vpsd_backup_age_seconds",
    "Seconds since the last successful snapshot (-1: none yet)",
);
const DATA_FILE_BYTES: Spec = ("vpsd_data_file_bytes", "Size of the redb data file");
const FULL_REPAIR_IF_CRASHED: Spec = (
    "vpsd_storage_full_repair_if_crashed",
    "1 while the last commit did not record redb's allocator state: a crash now means a full repair at the next start",
);
const WEBHOOK_DELIVERIES: Spec = (
    "vpsd_webhook_deliveries_total",
    "Webhook delivery attempts by result (delivered, retried, failed)",
);
const WEBHOOK_PENDING: Spec = (
    "vpsd_webhook_deliveries_pending",
    "Webhook deliveries not yet delivered nor failed",
);
const WEBHOOK_OLDEST_PENDING: Spec = (
    "vpsd_webhook_oldest_pending_age_seconds",
    "Age of the oldest pending webhook delivery (0: none)",
);
const ACCOUNT_DROPLET_LIMIT: Spec = (
    "vpsd_cloud_account_droplet_limit",
    "DigitalOcean's droplet_limit per account, before max_droplets (absent until the first check)",
);
const ACCOUNT_DROPLETS: Spec = (
    "vpsd_cloud_account_droplets",
    "Droplets per DigitalOcean account at its last count, vpsd's or not",
);
const ACCOUNT_FREE_SLOTS: Spec = (
    "vpsd_cloud_account_free_slots",
    "Servers a DigitalOcean account can take now (limit and max_droplets, less droplets and placements not yet counted)",
);
const ACCOUNT_HEALTHY: Spec = (
    "vpsd_cloud_account_healthy",
    "1 when a DigitalOcean account's last check was ok, else 0 (unauthorized, locked, unreachable)",
);

const HTTP_BUCKETS: [f64; 13] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];
const SWEEP_BUCKETS: [f64; 11] = [0.001, 0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// Registers a new metric and hands it back: a metric built but never
/// registered would silently stay out of `/metrics`.
fn add<C: Collector + Clone + 'static>(
    registry: &Registry,
    metric: Result<C, prometheus::Error>,
) -> Result<C, prometheus::Error> {
    let metric = metric?;
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

fn counter(registry: &Registry, (name, help): Spec) -> Result<IntCounter, prometheus::Error> {
    add(registry, IntCounter::new(name, help))
}

fn counter_vec(
    registry: &Registry,
    (name, help): Spec,
    labels: &[&str],
) -> Result<IntCounterVec, prometheus::Error> {
    add(registry, IntCounterVec::new(Opts::new(name, help), labels))
}

fn gauge_vec(
    registry: &Registry,
    (name, help): Spec,
    labels: &[&str],
) -> Result<IntGaugeVec, prometheus::Error> {
    add(registry, IntGaugeVec::new(Opts::new(name, help), labels))
}

fn gauge(registry: &Registry, (name, help): Spec) -> Result<IntGauge, prometheus::Error> {
    add(registry, IntGauge::new(name, help))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(name: &str, limit: Option<u64>, health: Health) -> Account {
        Account {
            name: name.into(),
            priority: 100,
            regions: Vec::new(),
            drain: false,
            health,
            droplet_limit: limit,
            max_droplets: None,
            droplets: 1,
            placing: 0,
            refused_full: false,
        }
    }

    #[test]
    fn an_account_gone_from_the_config_leaves_no_series() {
        let m = Metrics::new().unwrap();
        let a = account("alpha", Some(3), Health::Ok);
        let b = account("beta", None, Health::Unauthorized);
        m.set_accounts([&a, &b]);
        let text = String::from_utf8(m.render().unwrap()).unwrap();
        assert!(text.contains(r#"vpsd_cloud_account_free_slots{account="alpha"} 2"#));
        assert!(text.contains(r#"vpsd_cloud_account_healthy{account="beta"} 0"#));
        assert!(!text.contains(r#"vpsd_cloud_account_droplet_limit{account="beta"}"#));
        m.set_accounts([&a]);
        let text = String::from_utf8(m.render().unwrap()).unwrap();
        assert!(text.contains(r#"vpsd_cloud_account_healthy{account="alpha"} 1"#));
        assert!(!text.contains(r#"account="beta""#), "{text}");
    }
}
