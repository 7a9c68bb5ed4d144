//! Suspension (SPEC §9): an admin suspends an ACTIVE order and ends the
//! suspension; the sweep suspends for expiry (`tick`), and a renewal ends a
//! suspension for expiry (`renew`). The droplet is powered off and on with it.

use serde_json::json;

use super::draft::Draft;
use super::{status_only, Event, Outcome, Refused, Rule};
use crate::domain::droplet::DropletAction;
use crate::domain::order::{HistoryStatus, OrderStatus, SuspendReason};

pub(super) const SUSPEND: Rule = Rule {
    from: &[OrderStatus::Active],
    outcome: Outcome::MoveTo(OrderStatus::Suspended),
    requested: HistoryStatus::Suspended,
    payment: false,
    operator: true,
    check: status_only,
    #[cfg(test)]
    samples: |_| vec![super::Command::Suspend { reason: None }],
};

pub(super) const UNSUSPEND: Rule = Rule {
    from: &[OrderStatus::Suspended],
    outcome: Outcome::MoveTo(OrderStatus::Active),
    requested: HistoryStatus::Active,
    payment: false,
    operator: true,
    check: not_expired,
    #[cfg(test)]
    samples: |_| vec![super::Command::Unsuspend { reason: None }],
};

/// Unsuspend is refused while the period is over and enforcement would only
/// suspend the order again at the next sweep.
fn not_expired(d: &Draft<'_>, _: Event) -> Result<(), Refused> {
    match d.order.term.expires_at {
        Some(expires_at) if d.policy.enforce && expires_at <= d.now => {
            Err(Refused::Expired { expires_at })
        }
        _ => Ok(()),
    }
}

pub(super) fn suspend(d: &mut Draft<'_>, why: SuspendReason, reason: Option<String>) {
    d.order.term.suspended_at = Some(d.now);
    d.order.term.suspend_reason = Some(why);
    let metadata = json!({ "suspendReason": why.as_str() }).to_string();
    d.move_to(OrderStatus::Suspended, reason, Some(metadata));
    d.owe(DropletAction::PowerOff);
}

pub(super) fn resume(d: &mut Draft<'_>, reason: Option<String>) {
    d.order.term.suspended_at = None;
    d.order.term.suspend_reason = None;
    d.move_to(OrderStatus::Active, reason, None);
    d.owe(DropletAction::PowerOn);
}
