//! The shared vocabulary of reads: an order as every response shows it, and the
//! list query and page that the API, the service and the store all speak.

use super::order::{Order, OrderStatus};
use super::task::ProvisioningTask;

/// An order with its provisioning task, as every API response shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OrderRecord {
    pub order: Order,
    pub task: Option<ProvisioningTask>,
}

/// Which orders to list, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    pub user: Option<String>,
    pub status: Option<OrderStatus>,
    /// Only live orders whose `expiresAt` is before this (admin list).
    pub expires_before: Option<super::time::Millis>,
    /// 1-based.
    pub page: u32,
    pub limit: u32,
}

/// One page of a list, with the total the query matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub items: Vec<OrderRecord>,
    pub total: u64,
}
