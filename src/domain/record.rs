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
    /// Orders in any of these statuses (`status=A,B`); `None` is every status.
    pub status: Option<StatusSet>,
    /// Only live orders whose `expiresAt` is before this (admin list).
    pub expires_before: Option<super::time::Millis>,
    /// 1-based.
    pub page: u32,
    pub limit: u32,
}

/// Some order statuses, one bit per [`OrderStatus::code`]: a list filter is
/// the same set however the query spelled it (order, repeats), and it is
/// `Copy`, as the single status it replaced was.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatusSet(u16);

impl StatusSet {
    pub fn insert(&mut self, status: OrderStatus) {
        self.0 |= 1 << status.code();
    }

    pub fn contains(self, status: OrderStatus) -> bool {
        self.0 & (1 << status.code()) != 0
    }

    /// The statuses in the set, in [`OrderStatus::ALL`]'s order.
    pub fn iter(self) -> impl Iterator<Item = OrderStatus> {
        OrderStatus::ALL
            .iter()
            .copied()
            .filter(move |s| self.contains(*s))
    }

    /// The one status of a set of one.
    pub fn single(self) -> Option<OrderStatus> {
        let mut all = self.iter();
        match (all.next(), all.next()) {
            (Some(only), None) => Some(only),
            _ => None,
        }
    }

    /// Every status: the same as no filter.
    pub fn is_all(self) -> bool {
        OrderStatus::ALL.iter().all(|s| self.contains(*s))
    }
}

impl From<OrderStatus> for StatusSet {
    fn from(status: OrderStatus) -> StatusSet {
        let mut set = StatusSet::default();
        set.insert(status);
        set
    }
}

impl FromIterator<OrderStatus> for StatusSet {
    fn from_iter<I: IntoIterator<Item = OrderStatus>>(items: I) -> StatusSet {
        let mut set = StatusSet::default();
        for status in items {
            set.insert(status);
        }
        set
    }
}

/// One page of a list, with the total the query matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub items: Vec<OrderRecord>,
    pub total: u64,
}
