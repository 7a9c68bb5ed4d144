//! payment-status (SPEC §2): PAID starts provisioning, PAYMENT_FAILED is an
//! event row on an order that still awaits payment.

use serde_json::json;

use super::draft::Draft;
use super::{record_outcome, status_only, Outcome, Rule, PAID_BY_OVERRIDE, PAYMENT_FROM};
use crate::domain::order::{HistoryStatus, OrderStatus};
use crate::domain::task::ProvisioningTask;

pub(super) const PAID: Rule = Rule {
    from: &[PAYMENT_FROM],
    outcome: Outcome::MoveTo(OrderStatus::Paid),
    requested: HistoryStatus::Paid,
    payment: true,
    operator: true,
    check: status_only,
    #[cfg(test)]
    samples: |_| vec![super::Command::Pay { notes: None }],
};

pub(super) const PAYMENT_FAILED: Rule = Rule {
    from: &[PAYMENT_FROM],
    outcome: Outcome::RecordOnly(HistoryStatus::PaymentFailed),
    requested: HistoryStatus::PaymentFailed,
    payment: true,
    operator: true,
    check: status_only,
    #[cfg(test)]
    samples: |_| vec![super::Command::PaymentFailed { notes: None }],
};

/// PAID commits the provisioning task with it, so the order is never paid
/// without the work that follows.
pub(super) fn pay(d: &mut Draft<'_>, outcome: Outcome, notes: Option<String>) {
    d.order.paid_at = Some(d.now);
    d.task = Some(ProvisioningTask::for_paid_order(&d.order, d.now));
    // v1 wrote this text when the payment system gave none (SPEC §12).
    let (reason, metadata) = match notes {
        Some(notes) => (Some(notes), None),
        None => (
            Some(PAID_BY_OVERRIDE.to_string()),
            Some(json!({ "paymentMethod": "manual_override" }).to_string()),
        ),
    };
    record_outcome(d, outcome, reason, metadata);
}

pub(super) fn failed(d: &mut Draft<'_>, outcome: Outcome, notes: Option<String>) {
    record_outcome(d, outcome, notes, None);
}
