//! When a paid period starts and when it ends: one rule, shared by the
//! lifecycle (an order's first ACTIVE) and the schema-2 migration (an ACTIVE
//! v1 order given its period from its history), so the two cannot drift.

use super::expiry::{add_months, months_of};
use super::order::{PlanDuration, Term};
use super::time::Millis;

/// The period an order activated at `at` has paid for: `expiresAt` is
/// `duration` calendar months later. `add_months` saturates at the last
/// representable instant, which no real clock comes near.
pub fn start_paid_period(term: &mut Term, at: Millis, duration: PlanDuration) {
    term.activated_at = Some(at);
    term.expires_at = Some(add_months(at, months_of(duration)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::time::parse_rfc3339;

    #[test]
    fn a_period_ends_its_duration_in_calendar_months_later() {
        let at = parse_rfc3339("2024-01-31T10:00:00Z").unwrap();
        let mut term = Term::default();
        start_paid_period(&mut term, at, PlanDuration::Monthly);
        assert_eq!(term.activated_at, Some(at));
        assert_eq!(term.expires_at, Some(add_months(at, 1)));
        start_paid_period(&mut term, at, PlanDuration::Annual);
        assert_eq!(term.expires_at, Some(add_months(at, 12)));
    }
}
