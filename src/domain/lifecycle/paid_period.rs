//! What each allowed command does to the draft: the status rows of the table,
//! plus the paid period after ACTIVE (SPEC §9): expiry, renewal, suspension,
//! termination, and the droplet action each status owes.

use crate::domain::new_id;
use serde_json::json;

use super::draft::{CouponEffect, Draft, EventType, OutEvent};
use super::{Command, Conflict, Event, Outcome, Refused, Renewing, PAID_BY_OVERRIDE};
use crate::domain::droplet::DropletAction;
use crate::domain::expiry::{self, checked_add_months, months_of};
use crate::domain::order::{
    HistoryStatus, OrderStatus, Renewal, RenewalType, SuspendReason, TerminationReason,
};
use crate::domain::task::ProvisioningTask;
use crate::domain::time::{self, format_millis, Millis};

/// Applies an allowed command (its outcome already checked against the table).
/// Refused only when a new `expiresAt` would leave the representable range.
pub(super) fn apply(d: &mut Draft<'_>, command: Command, outcome: Outcome) -> Result<(), Refused> {
    match command {
        Command::Pay { notes } => {
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
            moved(d, outcome, reason, metadata);
        }
        Command::PaymentFailed { notes } => moved(d, outcome, notes, None),
        Command::Cancel { reason } => {
            if d.order.coupon_counted {
                d.order.coupon_counted = false;
                d.coupon = CouponEffect::Release;
            }
            moved(d, outcome, reason, None);
        }
        Command::StartProvisioning => moved(d, outcome, None, None),
        Command::ProvisioningSucceeded { metadata } => {
            activate(d);
            moved(d, outcome, None, metadata);
        }
        Command::ProvisioningFailed { message, metadata } => {
            moved(d, outcome, Some(message), metadata)
        }
        Command::RetryProvisioning => {
            let now = d.now;
            let mut task = d
                .record
                .task
                .clone()
                .unwrap_or_else(|| ProvisioningTask::for_paid_order(&d.order, now));
            task.restart(now);
            d.task = Some(task);
            moved(d, outcome, Some("retry provisioning".into()), None);
        }
        Command::Suspend { reason } => suspend(d, SuspendReason::Admin, reason),
        Command::Unsuspend { reason } => resume(d, reason),
        Command::Terminate { reason, note } => terminate(d, reason, note),
        Command::Renew(renewing) => return renew(d, renewing),
        Command::SetExpiry { at, reason } => return change_expiry(d, at, reason),
        Command::Tick => tick(d),
    }
    Ok(())
}

fn moved(d: &mut Draft<'_>, outcome: Outcome, reason: Option<String>, metadata: Option<String>) {
    match outcome {
        Outcome::MoveTo(to) => d.move_to(to, reason, metadata),
        Outcome::RecordOnly(name) => d.record_event(name, reason, metadata),
    }
}

/// First ACTIVE: the paid period starts now.
fn activate(d: &mut Draft<'_>) {
    crate::domain::period::start_paid_period(&mut d.order.term, d.now, d.order.duration);
    d.order.term.reminded.clear();
}

fn suspend(d: &mut Draft<'_>, why: SuspendReason, reason: Option<String>) {
    d.order.term.suspended_at = Some(d.now);
    d.order.term.suspend_reason = Some(why);
    let metadata = json!({ "suspendReason": why.as_str() }).to_string();
    d.move_to(OrderStatus::Suspended, reason, Some(metadata));
    d.owe(DropletAction::PowerOff);
}

fn resume(d: &mut Draft<'_>, reason: Option<String>) {
    d.order.term.suspended_at = None;
    d.order.term.suspend_reason = None;
    d.move_to(OrderStatus::Active, reason, None);
    d.owe(DropletAction::PowerOn);
}

fn terminate(d: &mut Draft<'_>, why: TerminationReason, note: Option<String>) {
    d.order.term.terminated_at = Some(d.now);
    d.order.term.termination_reason = Some(why);
    let metadata = json!({ "terminationReason": why.as_str() }).to_string();
    d.move_to(OrderStatus::Terminated, note, Some(metadata));
    d.owe(DropletAction::Delete);
}

/// The owner may end a server suspended for expiry, but not one an admin
/// suspended: the shop may need that server as it is (abuse evidence, a
/// dispute), so only the admin ends that suspension (SPEC §12).
pub(super) fn check_not_held_by_admin(d: &Draft<'_>, event: Event) -> Result<(), Refused> {
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

/// Unsuspend is refused while the period is over and enforcement would only
/// suspend the order again at the next sweep.
pub(super) fn check_not_expired(d: &Draft<'_>) -> Result<(), Refused> {
    match d.order.term.expires_at {
        Some(expires_at) if d.policy.enforce && expires_at <= d.now => {
            Err(Refused::Expired { expires_at })
        }
        _ => Ok(()),
    }
}

/// New `expiresAt` = (the later of `expiresAt` and now) + periods x duration,
/// one step of periods x months from that base. Past year 9999 it is refused
/// naming `periods`: the periods asked for are what does not fit.
fn renew(d: &mut Draft<'_>, r: Renewing) -> Result<(), Refused> {
    let base = d.order.term.expires_at.unwrap_or(d.now).max(d.now);
    let months = r.periods.saturating_mul(months_of(d.order.duration));
    let new_expiry =
        checked_add_months(base, months).ok_or(Refused::OutOfRange { field: "periods" })?;
    let entry = RenewalEntry {
        kind: r.renewal_type,
        periods: r.periods,
        amount: r.amount,
        new_expiry,
    };
    extend(d, entry, HistoryStatus::Renewed, r.notes);
    Ok(())
}

/// The API refuses such an instant already; checked here too so no caller
/// can store one.
fn change_expiry(d: &mut Draft<'_>, at: Millis, reason: Option<String>) -> Result<(), Refused> {
    if !time::in_range(at) {
        return Err(Refused::OutOfRange { field: "expiresAt" });
    }
    let entry = RenewalEntry {
        kind: RenewalType::AdminExtension,
        periods: 0,
        amount: 0,
        new_expiry: at,
    };
    extend(d, entry, HistoryStatus::ExpiryChanged, reason);
    Ok(())
}

struct RenewalEntry {
    kind: RenewalType,
    periods: u32,
    amount: u64,
    new_expiry: Millis,
}

/// Records the renewal and its event row, moves `expiresAt` (re-arming the
/// reminders), and resumes an order that was suspended only for expiry.
fn extend(d: &mut Draft<'_>, e: RenewalEntry, row: HistoryStatus, reason: Option<String>) {
    let previous = d.order.term.expires_at;
    let metadata = json!({
        "renewalType": e.kind.as_str(),
        "periods": e.periods,
        "amount": e.amount,
        "previousExpiry": previous.map(format_millis),
        "newExpiry": format_millis(e.new_expiry),
    });
    d.order.term.renewals.push(Renewal {
        id: new_id(),
        renewal_type: e.kind,
        periods: e.periods,
        amount: e.amount,
        previous_expiry: previous,
        new_expiry: e.new_expiry,
        actor: d.actor.clone(),
        created_at: d.now,
    });
    d.order.term.expires_at = Some(e.new_expiry);
    d.order.term.reminded.clear();
    d.record_event(row, reason, Some(metadata.to_string()));
    let expired_only = d.order.term.suspend_reason == Some(SuspendReason::Expired);
    if d.order.status == OrderStatus::Suspended && expired_only && e.new_expiry > d.now {
        resume(d, None);
    }
}

/// The reconciler's look at an order: reminders crossed, then expiry rules
/// when enforcement is on. Anything else is left as it is.
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
