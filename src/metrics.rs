//! Prometheus metrics, kept apart from the API: the HTTP layer, the
//! provisioner and the backup service record into one registry, and `/metrics`
//! (API key) renders it with the gauges that are read at scrape time.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

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
}

impl Metrics {
    /// Builds the registry. Metric names and labels are fixed here, so a
    /// failure is a programming error caught by the first test run; it is
    /// still reported rather than panicking.
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let http_requests = IntCounterVec::new(
            Opts::new(
                "vpsd_http_requests_total",
                "HTTP requests by route, method and status",
            ),
            &["route", "method", "status"],
        )?;
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "vpsd_http_request_duration_seconds",
                "HTTP request latency by route",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["route"],
        )?;
        let orders = IntGaugeVec::new(Opts::new("vpsd_orders", "Orders by status"), &["status"])?;
        let provisioning_outcomes = IntCounterVec::new(
            Opts::new(
                "vpsd_provisioning_outcomes_total",
                "Finished provisioning tasks by outcome (SUCCESS or error code)",
            ),
            &["outcome"],
        )?;
        let cloud_calls = IntCounter::new(
            "vpsd_cloud_api_calls_total",
            "Requests sent to the cloud provider",
        )?;
        let cloud_rate_limited = IntCounter::new(
            "vpsd_cloud_api_rate_limited_total",
            "429 answers from the cloud provider",
        )?;
        let sweep_duration = Histogram::with_opts(
            HistogramOpts::new(
                "vpsd_reconciler_sweep_duration_seconds",
                "Reconciler sweep duration",
            )
            .buckets(vec![
                0.001, 0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            ]),
        )?;
        let backups = IntCounterVec::new(
            Opts::new("vpsd_backups_total", "Snapshots by result"),
            &["result"],
        )?;
        let backup_last_success = IntGauge::new(
            "vpsd_backup_last_success_timestamp_seconds",
            "Unix time of the last successful snapshot (0: none yet)",
        )?;
        let backup_last_bytes = IntGauge::new(
            "vpsd_backup_last_size_bytes",
            "Size of the last successful snapshot",
        )?;
        let backup_age_seconds = IntGauge::new(
            "vpsd_backup_age_seconds",
            "Seconds since the last successful snapshot (-1: none yet)",
        )?;
        let data_file_bytes = IntGauge::new("vpsd_data_file_bytes", "Size of the redb data file")?;
        registry.register(Box::new(http_requests.clone()))?;
        registry.register(Box::new(http_duration.clone()))?;
        registry.register(Box::new(orders.clone()))?;
        registry.register(Box::new(provisioning_outcomes.clone()))?;
        let droplet_actions_pending = IntGauge::new(
            "vpsd_droplet_actions_pending",
            "Droplet actions owed after a status change (power off / on, delete)",
        )?;
        let droplet_actions_failing = IntGauge::new(
            "vpsd_droplet_actions_failing",
            "Owed droplet actions whose last attempt failed and are being retried",
        )?;
        registry.register(Box::new(droplet_actions_pending.clone()))?;
        registry.register(Box::new(droplet_actions_failing.clone()))?;
        registry.register(Box::new(cloud_calls.clone()))?;
        registry.register(Box::new(cloud_rate_limited.clone()))?;
        registry.register(Box::new(sweep_duration.clone()))?;
        registry.register(Box::new(backups.clone()))?;
        registry.register(Box::new(backup_last_success.clone()))?;
        registry.register(Box::new(backup_last_bytes.clone()))?;
        registry.register(Box::new(backup_age_seconds.clone()))?;
        registry.register(Box::new(data_file_bytes.clone()))?;
        Ok(Metrics {
            registry,
            http_requests,
            http_duration,
            orders,
            provisioning_outcomes,
            droplet_actions_pending,
            droplet_actions_failing,
            cloud_calls,
            cloud_rate_limited,
            sweep_duration,
            backups,
            backup_last_success,
            backup_last_bytes,
            backup_age_seconds,
            data_file_bytes,
        })
    }

    /// Brings a counter up to a monotonic total kept elsewhere (the cloud client).
    pub fn catch_up(counter: &IntCounter, total: u64) {
        let current = counter.get();
        if total > current {
            counter.inc_by(total - current);
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Result<Vec<u8>, prometheus::Error> {
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out)?;
        Ok(out)
    }
}
