//! The bodies of the lifecycle commands: payment status, cancel, suspend,
//! terminate, renew, expiry. Free text in them (`notes`, `reason`) is parsed
//! into [`FreeText`], whose rules bound what the history stores; it is handed
//! on as a `String` because the service's command methods still take one.

use serde_json::{Map, Value};
use warp::http::HeaderMap;

use super::fields::Fields;
use super::json_body::json_object;
use crate::domain::lifecycle::Renewing;
use crate::domain::time::Millis;
use crate::domain::values::FreeText;
use crate::domain::{RenewalType, TerminationReason};
use crate::error::AppError;

/// payment-status body: `{"status": "PAID" | "PAYMENT_FAILED", "notes"?}`.
pub fn payment_status(map: &Map<String, Value>) -> Result<(bool, Option<String>), AppError> {
    let mut f = Fields::new(map, &["status", "notes"]);
    let paid = match f.text("status", true, 32).as_deref() {
        Some("PAID") => Some(true),
        Some("PAYMENT_FAILED") => Some(false),
        Some(_) => {
            f.fail("status", "must be PAID or PAYMENT_FAILED");
            None
        }
        None => None,
    };
    let notes = f.free_text("notes").map(FreeText::into_string);
    f.finish(|| Some((paid?, notes)))
}

/// A body for a route that takes no input (retry, backups, replay): absent or
/// an empty JSON object. Any field is refused by name, as everywhere else: a
/// client that believes it passes an option must learn that it does not.
pub fn no_input(headers: &HeaderMap, body: &[u8]) -> Result<(), AppError> {
    let Some(map) = json_object(headers, body, false)? else {
        return Ok(());
    };
    Fields::new(&map, &[]).finish(|| Some(()))
}

/// cancel, suspend, unsuspend and the owner's terminate: `{"reason"?}`;
/// absent body means no reason.
pub fn cancel_reason(map: Option<&Map<String, Value>>) -> Result<Option<String>, AppError> {
    let Some(map) = map else {
        return Ok(None);
    };
    let mut f = Fields::new(map, &["reason"]);
    let reason = f.free_text("reason").map(FreeText::into_string);
    f.finish(|| Some(reason))
}

/// Admin terminate body: `{"reason"?, "terminationReason"?: ADMIN_TERMINATED |
/// POLICY_VIOLATION}`; absent body means ADMIN_TERMINATED without a reason.
pub fn admin_termination(
    map: Option<&Map<String, Value>>,
) -> Result<(TerminationReason, Option<String>), AppError> {
    let Some(map) = map else {
        return Ok((TerminationReason::AdminTerminated, None));
    };
    let mut f = Fields::new(map, &["reason", "terminationReason"]);
    let reason = f.free_text("reason").map(FreeText::into_string);
    let allowed = TerminationReason::BY_OPERATOR.map(TerminationReason::as_str);
    let why = f
        .one_of("terminationReason", false, &allowed)
        .and_then(|t| TerminationReason::parse(&t))
        .unwrap_or(TerminationReason::AdminTerminated);
    f.finish(|| Some((why, reason)))
}

/// renewals body: `{"periods"?: 1-12, "amount": >= 0, "renewalType"?, "notes"?}`.
pub fn renewal(map: &Map<String, Value>) -> Result<Renewing, AppError> {
    let mut f = Fields::new(map, &["periods", "amount", "renewalType", "notes"]);
    let periods = f.integer("periods", false, 1, 12).unwrap_or(1);
    let amount = f.integer("amount", true, 0, i64::MAX as u64);
    let renewal_type = f
        .one_of(
            "renewalType",
            false,
            &RenewalType::BY_RENEWAL.map(RenewalType::as_str),
        )
        .and_then(|t| RenewalType::parse(&t))
        .unwrap_or(RenewalType::ManualRenewal);
    let notes = f.free_text("notes").map(FreeText::into_string);
    f.finish(|| {
        Some(Renewing {
            periods: u32::try_from(periods).ok()?,
            amount: amount?,
            renewal_type,
            notes,
        })
    })
}

/// auto-renew body (SPEC §14): `{"autoRenew": true | false}`, nothing else.
pub fn auto_renew(map: &Map<String, Value>) -> Result<bool, AppError> {
    let mut f = Fields::new(map, &["autoRenew"]);
    let on = f.boolean("autoRenew");
    f.finish(|| on)
}

/// expiry body: `{"expiresAt": RFC 3339, "reason"?}`. An instant after
/// 9999-12-31T23:59:59.999Z (reachable with a negative offset) has no
/// four-digit year to render, so it is refused rather than stored.
pub fn expiry_change(map: &Map<String, Value>) -> Result<(Millis, Option<String>), AppError> {
    let mut f = Fields::new(map, &["expiresAt", "reason"]);
    let at = f.text("expiresAt", true, 64);
    let parsed = at.as_deref().and_then(crate::domain::time::parse_rfc3339);
    match parsed {
        None if at.is_some() => f.fail("expiresAt", "must be an RFC 3339 timestamp"),
        Some(ms) if !crate::domain::time::in_range(ms) => f.fail(
            "expiresAt",
            format!("must not be after {}", crate::domain::time::LATEST_TEXT),
        ),
        _ => {}
    }
    let reason = f.free_text("reason").map(FreeText::into_string);
    f.finish(|| Some((parsed?, reason)))
}
