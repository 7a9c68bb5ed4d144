//! Cancel: an unpaid order ends, by its owner or an admin, and gives back
//! the coupon redemption it counted.

use super::draft::{CouponEffect, Draft};
use super::{record_outcome, status_only, Outcome, Rule};
use crate::domain::order::{HistoryStatus, OrderStatus};

pub(super) const CANCEL: Rule = Rule {
    from: &[OrderStatus::PendingPayment],
    outcome: Outcome::MoveTo(OrderStatus::Canceled),
    requested: HistoryStatus::Canceled,
    payment: false,
    operator: true,
    check: status_only,
    #[cfg(test)]
    samples: |_| vec![super::Command::Cancel { reason: None }],
};

pub(super) fn cancel(d: &mut Draft<'_>, outcome: Outcome, reason: Option<String>) {
    if d.order.coupon_counted {
        d.order.coupon_counted = false;
        d.coupon = CouponEffect::Release;
    }
    record_outcome(d, outcome, reason, None);
}
