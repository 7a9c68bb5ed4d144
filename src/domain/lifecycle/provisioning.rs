//! Provisioning (SPEC §3): the provisioner takes the task, the droplet comes
//! up (the paid period starts) or fails, and an admin may retry a failure.

use super::draft::Draft;
use super::{record_outcome, status_only, Outcome, Rule};
use crate::domain::order::{HistoryStatus, OrderStatus};
use crate::domain::task::ProvisioningTask;

pub(super) const START: Rule = Rule {
    from: &[OrderStatus::Paid],
    outcome: Outcome::MoveTo(OrderStatus::Provisioning),
    requested: HistoryStatus::Provisioning,
    payment: false,
    operator: false,
    check: status_only,
    #[cfg(test)]
    samples: |_| vec![super::Command::StartProvisioning],
};

pub(super) const SUCCEEDED: Rule = Rule {
    from: &[OrderStatus::Provisioning],
    outcome: Outcome::MoveTo(OrderStatus::Active),
    requested: HistoryStatus::Active,
    payment: false,
    operator: false,
    check: status_only,
    #[cfg(test)]
    samples: |_| vec![super::Command::ProvisioningSucceeded { metadata: None }],
};

pub(super) const FAILED: Rule = Rule {
    from: &[OrderStatus::Provisioning],
    outcome: Outcome::MoveTo(OrderStatus::Failed),
    requested: HistoryStatus::Failed,
    payment: false,
    operator: false,
    check: status_only,
    #[cfg(test)]
    samples: |_| {
        vec![super::Command::ProvisioningFailed {
            message: "x".into(),
            metadata: None,
        }]
    },
};

pub(super) const RETRY: Rule = Rule {
    from: &[OrderStatus::Failed],
    outcome: Outcome::MoveTo(OrderStatus::Provisioning),
    requested: HistoryStatus::Provisioning,
    payment: false,
    operator: true,
    check: status_only,
    #[cfg(test)]
    samples: |_| vec![super::Command::RetryProvisioning],
};

pub(super) fn start(d: &mut Draft<'_>, outcome: Outcome) {
    record_outcome(d, outcome, None, None);
}

pub(super) fn succeeded(d: &mut Draft<'_>, outcome: Outcome, metadata: Option<String>) {
    activate(d);
    record_outcome(d, outcome, None, metadata);
}

pub(super) fn failed(
    d: &mut Draft<'_>,
    outcome: Outcome,
    message: String,
    metadata: Option<String>,
) {
    record_outcome(d, outcome, Some(message), metadata);
}

/// Restarts the stored task, or writes a fresh one should the order have none.
pub(super) fn retry(d: &mut Draft<'_>, outcome: Outcome) {
    let now = d.now;
    let mut task = d
        .record
        .task
        .clone()
        .unwrap_or_else(|| ProvisioningTask::for_paid_order(&d.order, now));
    task.restart(now);
    d.task = Some(task);
    record_outcome(d, outcome, Some("retry provisioning".into()), None);
}

/// First ACTIVE: the paid period starts now.
fn activate(d: &mut Draft<'_>) {
    crate::domain::period::start_paid_period(&mut d.order.term, d.now, d.order.duration);
    d.order.term.reminded.clear();
}
