//! Read models for the operator console (SPEC §11): counts and a 30-day
//! series for the overview, what needs an operator now, the snapshots on disk.
//! Built on the store's existing reads only; every change the console makes
//! goes through [`super::OrderService`] and [`super::backups`] like the API's.

use std::path::{Path, PathBuf};

use super::orders::blocking;
use super::OrderService;
use crate::backend::store::StoreHandle;
use crate::domain::task::ProvisioningError;
use crate::domain::time::Millis;
use crate::domain::{ListQuery, OrderRecord, OrderStatus, ProvisioningStatus};
use crate::error::AppError;

const DAY_MS: Millis = 86_400_000;

/// Days the overview chart covers, today included.
pub const CHART_DAYS: usize = 30;

/// The overview reads at most this many of the newest orders for its chart:
/// the store has no index by creation day, so the series pages through the
/// newest-first list. Past this the page says the chart is partial.
pub const CHART_SCAN_LIMIT: usize = 5_000;

/// How long a provisioning task may run before it needs an operator's look.
pub const STUCK_AFTER_MS: Millis = 10 * 60 * 1000;

/// How many rows each attention list shows.
const ATTENTION_ROWS: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Day {
    /// Midnight UTC that starts the day.
    pub start: Millis,
    pub orders: u64,
    /// Sum of `finalPrice` of orders paid that day, in `Overview::currency`.
    pub revenue: u64,
}

#[derive(Debug, Clone)]
pub struct Overview {
    pub counts: Vec<(OrderStatus, u64)>,
    /// Oldest first; the last is today.
    pub days: Vec<Day>,
    /// The currency of the newest order (all amounts of one deployment share it).
    pub currency: Option<String>,
    /// True when the scan stopped at [`CHART_SCAN_LIMIT`] before the window's start.
    pub partial: bool,
}

impl OrderService {
    /// Counts per status and the 30-day series of orders created and revenue
    /// paid, as of `now`.
    ///
    /// Revenue is counted on the day of `paidAt`, over the orders created in
    /// the window (plus the scan's reach before it): an order created before
    /// the window and paid inside it is only counted if the scan reached it.
    pub async fn overview(&self, now: Millis) -> Result<Overview, AppError> {
        let store = self.store().clone();
        blocking(move || overview_blocking(&store, now)).await?
    }

    /// What needs an operator as of `now`: see [`Attention`].
    pub async fn attention(&self, now: Millis) -> Result<Attention, AppError> {
        let store = self.store().clone();
        blocking(move || attention_blocking(&store, now)).await?
    }
}

fn overview_blocking(store: &StoreHandle, now: Millis) -> Result<Overview, AppError> {
    let counts = store.status_counts()?;
    let today = now.div_euclid(DAY_MS) * DAY_MS;
    let first = today - (CHART_DAYS as Millis - 1) * DAY_MS;
    let mut days: Vec<Day> = (0..CHART_DAYS as Millis)
        .map(|i| Day {
            start: first + i * DAY_MS,
            orders: 0,
            revenue: 0,
        })
        .collect();
    let slot = |at: Millis| -> Option<usize> {
        (at >= first && at < today + DAY_MS).then(|| ((at - first) / DAY_MS) as usize)
    };
    let mut currency: Option<String> = None;
    let mut seen = 0usize;
    let mut page = 1u32;
    let mut partial = false;
    'pages: loop {
        let query = ListQuery {
            user: None,
            status: None,
            expires_before: None,
            page,
            limit: 100,
        };
        let batch = store.list_orders(&query)?;
        if batch.items.is_empty() {
            break;
        }
        for record in &batch.items {
            let order = &record.order;
            if order.created_at < first {
                break 'pages;
            }
            if seen >= CHART_SCAN_LIMIT {
                partial = true;
                break 'pages;
            }
            seen += 1;
            let currency = currency.get_or_insert_with(|| order.pricing.currency.clone());
            if let Some(i) = slot(order.created_at) {
                days[i].orders += 1;
            }
            if let (Some(paid), true) = (order.paid_at, &order.pricing.currency == currency) {
                if let Some(i) = slot(paid) {
                    days[i].revenue = days[i].revenue.saturating_add(order.pricing.final_price);
                }
            }
        }
        page += 1;
    }
    Ok(Overview {
        counts,
        days,
        currency,
        partial,
    })
}

/// What needs an operator now (SPEC §11 Attention).
#[derive(Debug, Clone, Default)]
pub struct Attention {
    /// FAILED orders, newest first (at most 100), and how many there are.
    pub failed: Vec<OrderRecord>,
    pub failed_total: u64,
    /// Provisioning for more than 10 minutes, or with an error code while
    /// retrying; not those only waiting for capacity.
    pub stuck: Vec<OrderRecord>,
    /// Paid, but no account can take the server now (task `NO_CAPACITY`,
    /// SPEC §13): not broken, it is placed when a slot opens, but an
    /// operator may want to add an account or raise a limit. Oldest first.
    pub waiting_capacity: Vec<OrderRecord>,
    /// A droplet action (power off / on, delete) that has failed at least once.
    pub actions_failing: Vec<OrderRecord>,
}

impl Attention {
    pub fn is_empty(&self) -> bool {
        self.failed.is_empty()
            && self.stuck.is_empty()
            && self.waiting_capacity.is_empty()
            && self.actions_failing.is_empty()
    }
}

fn attention_blocking(store: &StoreHandle, now: Millis) -> Result<Attention, AppError> {
    let failed = store.list_orders(&ListQuery {
        user: None,
        status: Some(OrderStatus::Failed.into()),
        expires_before: None,
        page: 1,
        limit: ATTENTION_ROWS as u32,
    })?;
    let (mut waiting_capacity, mut stuck): (Vec<OrderRecord>, Vec<OrderRecord>) = store
        .open_tasks()?
        .into_iter()
        .filter(|r| r.task.as_ref().is_some_and(|t| is_stuck(t, now)))
        .partition(|r| {
            r.task
                .as_ref()
                .is_some_and(|t| t.error_code == Some(ProvisioningError::NoCapacity))
        });
    for list in [&mut stuck, &mut waiting_capacity] {
        list.sort_by_key(|r| r.order.created_at);
        list.truncate(ATTENTION_ROWS);
    }
    let mut actions_failing: Vec<OrderRecord> = store
        .pending_actions()?
        .into_iter()
        .filter(|r| {
            r.task
                .as_ref()
                .and_then(|t| t.action.as_ref())
                .is_some_and(|a| a.failures > 0)
        })
        .collect();
    actions_failing.sort_by_key(|r| r.order.updated_at);
    actions_failing.truncate(ATTENTION_ROWS);
    Ok(Attention {
        failed: failed.items,
        failed_total: failed.total,
        stuck,
        waiting_capacity,
        actions_failing,
    })
}

/// Open for more than [`STUCK_AFTER_MS`] since it started (or was created),
/// or already carrying an error code while it retries.
pub fn is_stuck(task: &crate::domain::task::ProvisioningTask, now: Millis) -> bool {
    let open = matches!(
        task.status,
        ProvisioningStatus::Pending | ProvisioningStatus::InProgress
    );
    let since = task.started_at.unwrap_or(task.created_at);
    open && (task.error_code.is_some() || now.saturating_sub(since) > STUCK_AFTER_MS)
}

/// A finished snapshot in `backup.dir`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub name: String,
    pub path: PathBuf,
    pub bytes: u64,
    /// The file's modification time: when the snapshot was completed.
    pub modified: Option<Millis>,
}

/// The snapshots in `dir`, newest first.
pub async fn snapshots(dir: &Path) -> Result<Vec<Snapshot>, AppError> {
    let dir = dir.to_path_buf();
    blocking(move || {
        let paths = crate::backend::store::backup::list_snapshots(&dir)
            .map_err(|e| AppError::Internal(format!("cannot list backups: {e}")))?;
        let mut out: Vec<Snapshot> = paths
            .into_iter()
            .filter_map(|path| {
                let meta = std::fs::metadata(&path).ok()?;
                let name = path.file_name()?.to_str()?.to_string();
                let modified = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .and_then(|d| Millis::try_from(d.as_millis()).ok());
                Some(Snapshot {
                    name,
                    path,
                    bytes: meta.len(),
                    modified,
                })
            })
            .collect();
        // Names carry the UTC time, so they sort in time order.
        out.sort_by(|a, b| b.name.cmp(&a.name));
        Ok(out)
    })
    .await?
}
