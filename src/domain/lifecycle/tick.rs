//! What falls due by itself (SPEC §9): the reconciler's look at an order,
//! which no table row gates; it decides from the order's own state.

use super::draft::{Draft, EventType, OutEvent};
use super::suspend::suspend;
use super::terminate::terminate;
use crate::domain::expiry;
use crate::domain::order::{OrderStatus, SuspendReason, TerminationReason};

/// Reminders crossed, then expiry rules when enforcement is on. Anything else
/// is left as it is.
pub(super) fn tick(d: &mut Draft<'_>) {
    let live = matches!(d.order.status, OrderStatus::Active | OrderStatus::Suspended);
    let Some(expires) = d.order.term.expires_at.filter(|_| live) else {
        return;
    };
    for threshold in expiry::reminders_due(d.policy, expires, &d.order.term.reminded, d.now) {
        d.order.term.reminded.push(threshold);
        d.events.push(OutEvent {
            kind: EventType::Expiring,
            seconds_left: Some((expires - d.now) / 1000),
        });
    }
    if d.now < expires {
        return;
    }
    // Past expiry, reminders that never fired are moot ("expiring" is over):
    // mark them so they are never due again.
    for threshold in &d.policy.remind_before_ms {
        if !d.order.term.reminded.contains(threshold) {
            d.order.term.reminded.push(*threshold);
        }
    }
    if !d.policy.enforce {
        return;
    }
    let grace = d.policy.grace(d.order.duration);
    if d.now >= expires.saturating_add(grace) {
        terminate(d, TerminationReason::ExpiredNoRenewal, None);
    } else if d.order.status == OrderStatus::Active {
        suspend(d, SuspendReason::Expired, None);
    }
}
