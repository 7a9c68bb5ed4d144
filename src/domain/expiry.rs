//! Expiry math (SPEC §9): periods are calendar months with the day clamped and
//! the time of day kept, and an order's next due moment (a reminder, a
//! suspension, a termination) follows from its `expiresAt` and the policy.

use ::time::{Date, Month, OffsetDateTime};

use super::order::{Order, OrderStatus, PlanDuration};
use super::time::{self, Millis};

const DAY_MS: Millis = 86_400_000;

/// Months one period of `duration` lasts.
pub fn months_of(duration: PlanDuration) -> u32 {
    match duration {
        PlanDuration::Monthly => 1,
        PlanDuration::Quarterly => 3,
        PlanDuration::SemiAnnual => 6,
        PlanDuration::Annual => 12,
    }
}

/// `at` plus `months` calendar months: Jan 31 + 1 month = Feb 28 (29 in a leap
/// year), the time of day kept. Saturates at [`time::LATEST`]; where running
/// past it must be refused rather than clamped, see [`checked_add_months`].
pub fn add_months(at: Millis, months: u32) -> Millis {
    checked_add_months(at, months).unwrap_or(time::LATEST)
}

/// [`add_months`], or `None` when `at` or the result is outside
/// [`time::in_range`] (a renewal from 9999-12-31, say).
pub fn checked_add_months(at: Millis, months: u32) -> Option<Millis> {
    if !time::in_range(at) {
        return None;
    }
    let dt = OffsetDateTime::from_unix_timestamp_nanos(i128::from(at) * 1_000_000).ok()?;
    let index = i64::from(dt.year()) * 12 + i64::from(u8::from(dt.month())) - 1 + i64::from(months);
    let year = i32::try_from(index.div_euclid(12)).ok()?;
    let month = Month::try_from(u8::try_from(index.rem_euclid(12) + 1).ok()?).ok()?;
    let day = dt.day().min(month.length(year));
    let date = Date::from_calendar_date(year, month, day).ok()?;
    let moved = dt.replace_date(date);
    i64::try_from(moved.unix_timestamp_nanos() / 1_000_000)
        .ok()
        .filter(|ms| time::in_range(*ms))
}

/// The rules §9 applies after `expiresAt`, from `lifecycle.*` config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Suspend and terminate automatically (default off).
    pub enforce: bool,
    /// Grace after `expiresAt` before termination, per duration.
    pub grace_ms: [Millis; 4],
    /// Reminder thresholds before `expiresAt`, in milliseconds.
    pub remind_before_ms: Vec<Millis>,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            enforce: false,
            grace_ms: [DAY_MS, 3 * DAY_MS, 3 * DAY_MS, 3 * DAY_MS],
            remind_before_ms: vec![7 * DAY_MS, 3 * DAY_MS, DAY_MS, 8 * 3_600_000],
        }
    }
}

impl Policy {
    pub fn grace(&self, duration: PlanDuration) -> Millis {
        let index = PlanDuration::ALL
            .iter()
            .position(|d| *d == duration)
            .unwrap_or(0);
        self.grace_ms[index]
    }
}

/// Reminder thresholds crossed by `now` and not yet sent, while the order has
/// not expired (an expired order is past "expiring").
pub fn reminders_due(
    policy: &Policy,
    expires_at: Millis,
    sent: &[Millis],
    now: Millis,
) -> Vec<Millis> {
    if now >= expires_at {
        return Vec::new();
    }
    policy
        .remind_before_ms
        .iter()
        .copied()
        .filter(|t| !sent.contains(t) && expires_at.saturating_sub(*t) <= now)
        .collect()
}

/// When the reconciler must next look at `order`: `None` unless it is ACTIVE
/// or SUSPENDED with an expiry.
pub fn due_of(order: &Order, policy: &Policy) -> Option<Millis> {
    let suspended = order.status == OrderStatus::Suspended;
    if !(suspended || order.status == OrderStatus::Active) {
        return None;
    }
    let term = &order.term;
    next_due(
        policy,
        order.duration,
        suspended,
        term.expires_at?,
        &term.reminded,
    )
}

/// A stable fingerprint of the policy, so a file whose `due` index was built
/// under another policy is re-indexed at open.
pub fn fingerprint(policy: &Policy) -> u64 {
    let mut text = format!("{}|{:?}|", policy.enforce, policy.grace_ms);
    for t in &policy.remind_before_ms {
        text.push_str(&t.to_string());
        text.push(',');
    }
    // FNV-1a: tiny, stable across builds (unlike std's randomly keyed hasher).
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// When the reconciler must next look at an order that lives until
/// `expires_at`: its next unsent reminder, or the enforcement step.
pub fn next_due(
    policy: &Policy,
    duration: PlanDuration,
    suspended: bool,
    expires_at: Millis,
    sent: &[Millis],
) -> Option<Millis> {
    let reminder = policy
        .remind_before_ms
        .iter()
        .filter(|t| !sent.contains(t))
        .map(|t| expires_at.saturating_sub(*t))
        .filter(|at| *at < expires_at)
        .min();
    let enforcement = policy.enforce.then(|| {
        let grace = policy.grace(duration);
        if suspended || grace == 0 {
            expires_at.saturating_add(grace)
        } else {
            expires_at
        }
    });
    match (reminder, enforcement) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::time::parse_rfc3339;

    fn at(text: &str) -> Millis {
        parse_rfc3339(text).unwrap()
    }

    #[test]
    fn months_clamp_the_day_and_keep_the_time() {
        let jan31 = at("2024-01-31T10:11:12.345Z");
        assert_eq!(add_months(jan31, 1), at("2024-02-29T10:11:12.345Z"));
        assert_eq!(
            add_months(at("2023-01-31T00:00:00Z"), 1),
            at("2023-02-28T00:00:00Z")
        );
        assert_eq!(add_months(jan31, 3), at("2024-04-30T10:11:12.345Z"));
        assert_eq!(add_months(jan31, 12), at("2025-01-31T10:11:12.345Z"));
        assert_eq!(
            add_months(at("2024-11-15T00:00:00Z"), 2),
            at("2025-01-15T00:00:00Z")
        );
    }

    #[test]
    fn months_past_year_9999_are_refused_or_saturate_never_wrap() {
        let last_day = at("9999-12-31T00:00:00Z");
        assert_eq!(checked_add_months(last_day, 1), None);
        assert_eq!(checked_add_months(last_day, 0), Some(last_day));
        assert_eq!(
            checked_add_months(at("9999-11-30T23:59:59.999Z"), 1),
            Some(at("9999-12-30T23:59:59.999Z"))
        );
        assert_eq!(checked_add_months(i64::MAX, 1), None);
        assert_eq!(add_months(last_day, 12), time::LATEST);
        assert_eq!(add_months(last_day, u32::MAX), time::LATEST);
    }

    #[test]
    fn reminders_fire_once_per_threshold_and_not_after_expiry() {
        let policy = Policy::default();
        let expires = 30 * DAY_MS;
        assert!(reminders_due(&policy, expires, &[], 0).is_empty());
        let two_days_left = expires - 2 * DAY_MS;
        assert_eq!(
            reminders_due(&policy, expires, &[], two_days_left),
            vec![7 * DAY_MS, 3 * DAY_MS]
        );
        assert_eq!(
            reminders_due(&policy, expires, &[7 * DAY_MS, 3 * DAY_MS], two_days_left),
            Vec::<Millis>::new()
        );
        assert!(reminders_due(&policy, expires, &[], expires).is_empty());
    }

    #[test]
    fn next_due_is_the_earliest_of_reminder_and_enforcement() {
        let mut policy = Policy::default();
        let expires = 30 * DAY_MS;
        let monthly = PlanDuration::Monthly;
        assert_eq!(
            next_due(&policy, monthly, false, expires, &[]),
            Some(expires - 7 * DAY_MS)
        );
        let all_sent = policy.remind_before_ms.clone();
        assert_eq!(next_due(&policy, monthly, false, expires, &all_sent), None);
        policy.enforce = true;
        assert_eq!(
            next_due(&policy, monthly, false, expires, &all_sent),
            Some(expires)
        );
        assert_eq!(
            next_due(&policy, monthly, true, expires, &all_sent),
            Some(expires + DAY_MS)
        );
        policy.grace_ms = [0; 4];
        assert_eq!(
            next_due(&policy, monthly, false, expires, &all_sent),
            Some(expires)
        );
    }
}
