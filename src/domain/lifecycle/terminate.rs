//! Termination (SPEC §9): the owner, an admin or the expiry sweep (`tick`)
//! ends the order for good and the droplet is deleted. The owner's and the
//! admin's are two events because they are allowed from different statuses.

use serde_json::json;

use super::draft::Draft;
use super::{status_only, Conflict, Event, Outcome, Refused, Rule};
use crate::domain::droplet::DropletAction;
use crate::domain::order::{HistoryStatus, OrderStatus, SuspendReason, TerminationReason};

pub(super) const BY_OWNER: Rule = Rule {
    from: &[OrderStatus::Active, OrderStatus::Suspended],
    outcome: Outcome::MoveTo(OrderStatus::Terminated),
    requested: HistoryStatus::Terminated,
    payment: false,
    operator: false,
    check: not_held_by_admin,
    #[cfg(test)]
    samples: |_| {
        vec![super::Command::Terminate {
            reason: TerminationReason::UserDeleted,
            note: None,
        }]
    },
};

pub(super) const TERMINATE: Rule = Rule {
    from: &[
        OrderStatus::Failed,
        OrderStatus::Active,
        OrderStatus::Suspended,
    ],
    outcome: Outcome::MoveTo(OrderStatus::Terminated),
    requested: HistoryStatus::Terminated,
    payment: false,
    operator: true,
    check: status_only,
    #[cfg(test)]
    samples: |_| {
        vec![super::Command::Terminate {
            reason: TerminationReason::AdminTerminated,
            note: None,
        }]
    },
};

/// The reason says whose terminate it is: USER_DELETED is the owner's.
pub(super) fn event_for(reason: TerminationReason) -> Event {
    match reason {
        TerminationReason::UserDeleted => Event::TerminateByOwner,
        _ => Event::Terminate,
    }
}

/// The owner may end a server suspended for expiry, but not one an admin
/// suspended: the shop may need that server as it is (abuse evidence, a
/// dispute), so only the admin ends that suspension (SPEC §12).
fn not_held_by_admin(d: &Draft<'_>, event: Event) -> Result<(), Refused> {
    let held = d.order.status == OrderStatus::Suspended
        && d.order.term.suspend_reason == Some(SuspendReason::Admin);
    if held {
        return Err(Refused::Status(Conflict {
            current: d.order.status,
            event,
        }));
    }
    Ok(())
}

pub(super) fn terminate(d: &mut Draft<'_>, why: TerminationReason, note: Option<String>) {
    d.order.term.terminated_at = Some(d.now);
    d.order.term.termination_reason = Some(why);
    let metadata = json!({ "terminationReason": why.as_str() }).to_string();
    d.move_to(OrderStatus::Terminated, note, Some(metadata));
    d.owe(DropletAction::Delete);
}
