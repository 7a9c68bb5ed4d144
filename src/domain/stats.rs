//! What the Webrana UIs' dashboards count (SPEC §14): money an order brought
//! in, and the calendar day "today" is in the configured zone.
//!
//! Money paid on an order is its `finalPrice` once it was paid (`paidAt` is
//! set exactly then, SPEC §1) plus every renewal's `amount` (what the payment
//! system charged; an expiry change records 0). Refunds are not recorded by
//! vpsd, so nothing is ever subtracted.

use chrono::{LocalResult, NaiveDate, Offset, TimeZone};
use chrono_tz::Tz;

use super::order::Order;
use super::time::Millis;

/// Everything paid on `order`, ever: the order and all its renewals.
pub fn spent(order: &Order) -> u64 {
    paid_within(order, Millis::MIN, Millis::MAX)
}

/// What was paid on `order` at an instant in `[start, end)`: its
/// `finalPrice` if `paidAt` falls there, and each renewal made there.
pub fn paid_within(order: &Order, start: Millis, end: Millis) -> u64 {
    let within = |at: Millis| start <= at && at < end;
    let first = match order.paid_at {
        Some(at) if within(at) => order.pricing.final_price,
        _ => 0,
    };
    order
        .term
        .renewals
        .iter()
        .filter(|r| within(r.created_at))
        .fold(first, |sum, r| sum.saturating_add(r.amount))
}

/// The instants `[start, end)` of the calendar day in `zone` that holds
/// `now`. A day is not always 24 hours (daylight saving), and in a few zones
/// midnight itself is skipped: the day then starts at the first instant
/// after the gap.
pub fn day_bounds(now: Millis, zone: Tz) -> (Millis, Millis) {
    let Some(utc) = chrono::DateTime::from_timestamp_millis(now) else {
        return (now, now);
    };
    let today = utc.with_timezone(&zone).date_naive();
    let start = midnight(today, zone);
    let end = today
        .succ_opt()
        .map_or(Millis::MAX, |next| midnight(next, zone));
    (start, end)
}

fn midnight(day: NaiveDate, zone: Tz) -> Millis {
    let naive = day.and_time(chrono::NaiveTime::MIN);
    match zone.from_local_datetime(&naive) {
        LocalResult::Single(at) | LocalResult::Ambiguous(at, _) => at.timestamp_millis(),
        LocalResult::None => {
            // Midnight falls in a gap: the offset before it, applied to the
            // naive midnight, lands on the gap's end, the day's first instant.
            let before = naive.and_utc() - chrono::Duration::hours(1);
            let offset = zone
                .offset_from_utc_datetime(&before.naive_utc())
                .fix()
                .local_minus_utc();
            naive.and_utc().timestamp_millis() - i64::from(offset) * 1000
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::order::{test_order, Actor, Renewal, RenewalType};
    use crate::domain::time::parse_rfc3339;

    fn at(text: &str) -> Millis {
        parse_rfc3339(text).expect("a timestamp")
    }

    #[test]
    fn today_follows_the_zone() {
        let now = at("2026-12-07T20:00:00.000Z");
        let utc = day_bounds(now, chrono_tz::UTC);
        assert_eq!(
            utc,
            (
                at("2026-12-07T00:00:00.000Z"),
                at("2026-12-08T00:00:00.000Z")
            )
        );
        // 03:00 on the 8th in Jakarta (UTC+7).
        let jakarta = day_bounds(now, chrono_tz::Asia::Jakarta);
        assert_eq!(
            jakarta,
            (
                at("2026-12-07T17:00:00.000Z"),
                at("2026-12-08T17:00:00.000Z")
            )
        );
        // A 23-hour day: New York springs forward on 2026-03-08.
        let (start, end) = day_bounds(at("2026-03-08T12:00:00.000Z"), chrono_tz::America::New_York);
        assert_eq!(start, at("2026-03-08T05:00:00.000Z"));
        assert_eq!(end - start, 23 * 3_600_000);
        // Midnight skipped (Santiago, 2026-09-06 00:00 -> 01:00).
        let (start, _) = day_bounds(at("2026-09-06T12:00:00.000Z"), chrono_tz::America::Santiago);
        assert_eq!(start, at("2026-09-06T04:00:00.000Z"));
    }

    #[test]
    fn money_is_the_paid_price_and_every_renewal() {
        let mut order = test_order("u");
        assert_eq!(spent(&order), 0, "unpaid");
        order.paid_at = Some(1_000);
        let renewal = |amount, created_at| Renewal {
            id: uuid::Uuid::nil(),
            renewal_type: RenewalType::ManualRenewal,
            periods: 1,
            amount,
            previous_expiry: None,
            new_expiry: 0,
            actor: Actor::System,
            created_at,
        };
        order.term.renewals = vec![renewal(40, 5_000), renewal(0, 6_000)];
        assert_eq!(spent(&order), 140);
        assert_eq!(paid_within(&order, 0, 2_000), 100);
        assert_eq!(paid_within(&order, 2_000, 9_000), 40);
        assert_eq!(paid_within(&order, 9_000, 10_000), 0);
    }
}
