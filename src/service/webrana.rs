//! What the later Webrana UIs call (SPEC §14): the owner's auto-renew wish,
//! and the counts and sums of their dashboards. The counts come from the
//! store's per-status counts; the sums read the orders they cover.

use uuid::Uuid;

use super::orders::OrderService;
use crate::domain::lifecycle::Command;
use crate::domain::stats::{day_bounds, paid_within, spent};
use crate::domain::time::Millis;
use crate::domain::{Actor, ListQuery, OrderRecord, OrderStatus};
use crate::error::AppError;

/// One user's dashboard (`GET /orders/stats`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserStats {
    pub active_servers: u64,
    pub pending_orders: u64,
    /// Everything the user paid: see [`crate::domain::stats`].
    pub total_spent: u64,
}

/// The operator's dashboard (`GET /internal/stats`), "today" being the
/// calendar day in `console.timezone`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayStats {
    /// Orders created today.
    pub orders_today: u64,
    /// Paid today (`paidAt` or a renewal today) on the orders created today.
    pub revenue_today: u64,
    /// Every status with its count, zeros included, in `OrderStatus::ALL` order.
    pub by_status: Vec<(OrderStatus, u64)>,
}

/// Orders read per page while summing a user's spending.
const SUM_PAGE: u32 = 100;

impl OrderService {
    /// The owner's auto-renew wish, stored through the writer, decided and
    /// owner-checked on the stored order. A foreign order is 403, an unknown
    /// one 404, as for reads.
    pub async fn set_auto_renew(
        &self,
        user: &str,
        id: Uuid,
        on: bool,
    ) -> Result<OrderRecord, AppError> {
        self.get_for_user(user, id).await?;
        let actor = Actor::User(user.to_string());
        let owner = Some(user.to_string());
        self.apply(id, Command::SetAutoRenew { on }, actor, owner, None)
            .await
    }

    /// The caller's counts (from the per-user status counts) and spending
    /// (a read of the caller's orders only).
    pub async fn user_stats(&self, user: &str) -> Result<UserStats, AppError> {
        let counts = self.store().user_status_counts(user)?;
        let count = |status| counts.iter().find(|c| c.0 == status).map_or(0, |c| c.1);
        let mut total_spent = 0u64;
        let mut page = 1;
        loop {
            let query = ListQuery {
                user: Some(user.to_string()),
                status: None,
                expires_before: None,
                page,
                limit: SUM_PAGE,
            };
            let batch = self.store().list_orders(&query)?;
            for record in &batch.items {
                total_spent = total_spent.saturating_add(spent(&record.order));
            }
            if u64::from(page) * u64::from(SUM_PAGE) >= batch.total || batch.items.is_empty() {
                break;
            }
            page += 1;
        }
        Ok(UserStats {
            active_servers: count(OrderStatus::Active),
            pending_orders: count(OrderStatus::PendingPayment),
            total_spent,
        })
    }

    /// The operator's counts as of `now`: the status counts, and the orders
    /// created since today's start in the configured zone (only those).
    pub async fn day_stats(&self, now: Millis) -> Result<DayStats, AppError> {
        let (start, end) = day_bounds(now, self.timezone);
        let today = self.store().orders_created_since(start)?;
        let today: Vec<&OrderRecord> = today.iter().filter(|r| r.order.created_at < end).collect();
        let revenue_today = today.iter().fold(0u64, |sum, r| {
            sum.saturating_add(paid_within(&r.order, start, end))
        });
        Ok(DayStats {
            orders_today: today.len() as u64,
            revenue_today,
            by_status: self.store().status_counts()?,
        })
    }
}
