//! Renewal and expiry changes (SPEC §9): `expiresAt` moves, a renewal entry
//! records it, the reminders re-arm, and an order suspended only for expiry
//! comes back when its new expiry is ahead.

use serde_json::json;

use super::draft::Draft;
use super::suspend::resume;
use super::{status_only, Outcome, Refused, Renewing, Rule};
use crate::domain::expiry::{checked_add_months, months_of};
use crate::domain::new_id;
use crate::domain::order::{HistoryStatus, OrderStatus, Renewal, RenewalType, SuspendReason};
use crate::domain::time::{self, format_millis, Millis};

const LIVE: &[OrderStatus] = &[OrderStatus::Active, OrderStatus::Suspended];

pub(super) const RENEW: Rule = Rule {
    from: LIVE,
    outcome: Outcome::RecordOnly(HistoryStatus::Renewed),
    requested: HistoryStatus::Active,
    payment: false,
    operator: true,
    check: status_only,
    #[cfg(test)]
    samples: |_| {
        let renew = |periods, amount, renewal_type| {
            super::Command::Renew(Renewing {
                periods,
                amount,
                renewal_type,
                notes: None,
            })
        };
        vec![
            renew(1, 100, RenewalType::ManualRenewal),
            // Twelve periods from the edge of time must be refused, never wrap.
            renew(12, 0, RenewalType::AutoRenewal),
        ]
    },
};

pub(super) const SET_EXPIRY: Rule = Rule {
    from: LIVE,
    outcome: Outcome::RecordOnly(HistoryStatus::ExpiryChanged),
    requested: HistoryStatus::Active,
    payment: false,
    operator: true,
    check: status_only,
    #[cfg(test)]
    samples: |now| {
        const HOUR: Millis = 3_600_000;
        let at = |at| super::Command::SetExpiry { at, reason: None };
        vec![
            // Lapsed within the grace (suspends), past it (terminates), ahead.
            at(now - HOUR),
            at(now - 48 * HOUR),
            at(now + 48 * HOUR),
            // The edge of time: renewals from here must be refused, never wrap.
            at(time::LATEST - 24 * HOUR),
        ]
    },
};

/// New `expiresAt` = (the later of `expiresAt` and now) + periods x duration,
/// one step of periods x months from that base. Past year 9999 it is refused
/// naming `periods`: the periods asked for are what does not fit.
pub(super) fn renew(d: &mut Draft<'_>, r: Renewing) -> Result<(), Refused> {
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
pub(super) fn set_expiry(
    d: &mut Draft<'_>,
    at: Millis,
    reason: Option<String>,
) -> Result<(), Refused> {
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
