//! The one place where errors become HTTP: status, SPEC code, message, details.
//! Internal causes are logged with the request id and never leave the process.

use serde_json::{json, Value};
use warp::http::StatusCode;

use crate::error::AppError;
use crate::service::idempotency::MAX_FIELDS;

/// Status, code and public details of an error.
pub fn classify(e: &AppError) -> (StatusCode, &'static str, Option<Value>) {
    use AppError as E;
    match e {
        E::BadRequest { fields, .. } => (
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            // Capped as stored (`service::idempotency::storable`), so a replay
            // renders the same list.
            Some(json!({ "fields": &fields[..fields.len().min(MAX_FIELDS)] })),
        ),
        E::InvalidPlan(_) => (StatusCode::BAD_REQUEST, "INVALID_PLAN", None),
        E::InvalidImage(_) => (StatusCode::BAD_REQUEST, "INVALID_IMAGE", None),
        E::InvalidCoupon { reason } => (
            StatusCode::BAD_REQUEST,
            "INVALID_COUPON",
            Some(json!({ "reason": reason })),
        ),
        E::InvalidDuration(_) => (StatusCode::BAD_REQUEST, "INVALID_DURATION", None),
        E::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "UNAUTHORIZED", None),
        E::ApiKeyMissing => (StatusCode::UNAUTHORIZED, "API_KEY_MISSING", None),
        E::ApiKeyInvalid => (StatusCode::UNAUTHORIZED, "API_KEY_INVALID", None),
        E::ApiKeyNotConfigured => (StatusCode::UNAUTHORIZED, "API_KEY_NOT_CONFIGURED", None),
        E::OrderAccessDenied => (StatusCode::FORBIDDEN, "ORDER_ACCESS_DENIED", None),
        E::OrderNotFound
        | E::NotFound
        | E::DeliveryNotFound
        | E::AccountNotFound
        | E::ActionNotFound => (StatusCode::NOT_FOUND, not_found_code(e), None),
        E::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED", None),
        E::PaymentStatusConflict { current, requested } => (
            StatusCode::CONFLICT,
            "PAYMENT_STATUS_CONFLICT",
            Some(
                json!({ "currentStatus": current.as_str(), "requestedStatus": requested.as_str() }),
            ),
        ),
        E::OrderStatusConflict { current, requested } => (
            StatusCode::CONFLICT,
            "ORDER_STATUS_CONFLICT",
            Some(
                json!({ "currentStatus": current.as_str(), "requestedStatus": requested.as_str() }),
            ),
        ),
        E::OrderExpired { expires_at } => (
            StatusCode::CONFLICT,
            "ORDER_EXPIRED",
            Some(json!({ "expiresAt": expires_at })),
        ),
        E::IdempotencyKeyInUse => (StatusCode::CONFLICT, "IDEMPOTENCY_KEY_IN_USE", None),
        E::IdempotencyKeyReused => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "IDEMPOTENCY_KEY_REUSED",
            None,
        ),
        E::PayloadTooLarge { limit } => (
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            Some(json!({ "limit": limit })),
        ),
        E::UnsupportedMediaType => (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            None,
        ),
        E::RateLimited { .. } | E::TooManyFailures { .. } | E::IdempotencyKeysExhausted { .. } => (
            StatusCode::TOO_MANY_REQUESTS,
            "RATE_LIMIT_EXCEEDED",
            Some(json!({ "retryAfter": e.retry_after_secs() })),
        ),
        E::Internal(_) | E::CatalogUnavailable(_) | E::StorageUnavailable(_) => server_side(e),
        E::NotSupportedOnBackend { backend } => not_supported(backend),
        E::ActionNeedsActive { .. }
        | E::ActionInProgress { .. }
        | E::DropletStateConflict { .. }
        | E::ActionCooldown { .. } => action_refusal(e),
    }
}

/// A failure on the server's side: the caller can only try again later.
fn server_side(e: &AppError) -> (StatusCode, &'static str, Option<Value>) {
    match e {
        AppError::CatalogUnavailable(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "CATALOG_SERVICE_UNAVAILABLE",
            None,
        ),
        AppError::StorageUnavailable(_) => {
            (StatusCode::SERVICE_UNAVAILABLE, "STORAGE_UNAVAILABLE", None)
        }
        _ => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_SERVER_ERROR",
            None,
        ),
    }
}

/// SPEC §15: the request is fine, but this deployment's storage does not do
/// it (backups on PostgreSQL are PostgreSQL's): a conflict with how the
/// server is set up, not a server fault, so 409 naming the backend.
fn not_supported(backend: &str) -> (StatusCode, &'static str, Option<Value>) {
    (
        StatusCode::CONFLICT,
        "NOT_SUPPORTED_ON_BACKEND",
        Some(json!({ "backend": backend })),
    )
}

/// A customer action refused by SPEC §14's rules.
fn action_refusal(e: &AppError) -> (StatusCode, &'static str, Option<Value>) {
    match e {
        AppError::ActionNeedsActive { current } => (
            StatusCode::CONFLICT,
            "ORDER_STATUS_CONFLICT",
            Some(json!({ "currentStatus": current.as_str(), "requestedStatus": null })),
        ),
        AppError::ActionInProgress { action_id } => (
            StatusCode::CONFLICT,
            "ACTION_IN_PROGRESS",
            Some(json!({ "actionId": action_id })),
        ),
        AppError::DropletStateConflict { droplet_status } => (
            StatusCode::CONFLICT,
            "DROPLET_STATE_CONFLICT",
            Some(json!({ "dropletStatus": droplet_status })),
        ),
        _ => (
            StatusCode::TOO_MANY_REQUESTS,
            "ACTION_COOLDOWN",
            Some(json!({ "retryAfter": e.retry_after_secs() })),
        ),
    }
}

/// Which 404: the thing the request named, or the route itself.
fn not_found_code(e: &AppError) -> &'static str {
    match e {
        AppError::OrderNotFound => "ORDER_NOT_FOUND",
        AppError::DeliveryNotFound => "DELIVERY_NOT_FOUND",
        AppError::AccountNotFound => "ACCOUNT_NOT_FOUND",
        AppError::ActionNotFound => "ACTION_NOT_FOUND",
        _ => "NOT_FOUND",
    }
}

/// The public message: for server-side failures a fixed text, so no internal
/// error text (paths, library messages) can leak.
fn public_message(e: &AppError) -> String {
    match e {
        AppError::Internal(_) => "an unexpected error occurred".into(),
        AppError::CatalogUnavailable(_) => {
            "the catalog service is unavailable; try again later".into()
        }
        AppError::StorageUnavailable(_) => {
            "the data file cannot be written right now; nothing was changed".into()
        }
        other => other.to_string(),
    }
}

/// What a request was about, as the client sent it: the route's `{id}` and
/// the create body's catalog fields. v1 named them in `error.details` (SPEC
/// §12); they are taken from the request when the error is rendered, not kept
/// in [`AppError`], so stored idempotency records keep their layout and a
/// replay (same path, same body, else 422) renders the same details.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subject {
    pub order_id: Option<String>,
    pub plan_id: Option<String>,
    pub image_id: Option<String>,
    pub coupon_code: Option<String>,
    pub duration: Option<String>,
}

impl Subject {
    /// From the route's `{id}` segment (empty when the route has none) and
    /// the request body, read leniently: only errors raised after the body
    /// validated use it, and then its fields are exactly the validated ones.
    pub fn of(id: &str, body: &[u8]) -> Subject {
        let map = serde_json::from_slice::<Value>(body).ok();
        let field = |name: &str| {
            map.as_ref()
                .and_then(|m| m.get(name))
                .and_then(Value::as_str)
                .map(|s| s.trim().to_string())
        };
        Subject {
            order_id: (!id.is_empty()).then(|| id.to_string()),
            plan_id: field("planId"),
            image_id: field("imageId"),
            coupon_code: field("couponCode"),
            duration: field("duration"),
        }
    }
}

/// Whether `e`'s details name part of the request ([`Subject`]).
pub fn names_subject(e: &AppError) -> bool {
    matches!(
        e,
        AppError::InvalidPlan(_)
            | AppError::InvalidImage(_)
            | AppError::InvalidCoupon { .. }
            | AppError::InvalidDuration(_)
            | AppError::OrderNotFound
            | AppError::OrderAccessDenied
    )
}

/// [`classify`]'s details with what v1 named from the request added.
fn details_about(e: &AppError, subject: &Subject) -> Option<Value> {
    let (_, _, details) = classify(e);
    let named: &[(&str, &Option<String>)] = match e {
        AppError::InvalidPlan(_) => &[("planId", &subject.plan_id)],
        AppError::InvalidImage(_) => &[("imageId", &subject.image_id)],
        AppError::InvalidCoupon { .. } => &[("couponCode", &subject.coupon_code)],
        AppError::InvalidDuration(_) => &[("duration", &subject.duration)],
        AppError::OrderNotFound | AppError::OrderAccessDenied => &[("orderId", &subject.order_id)],
        _ => &[],
    };
    let mut details = details;
    for (name, value) in named {
        if let Some(value) = value {
            let obj = details.get_or_insert_with(|| json!({}));
            if let Some(obj) = obj.as_object_mut() {
                obj.insert((*name).to_string(), json!(value));
            }
        }
    }
    details
}

/// `{"error":{"code","message","details"?}}` and its status, for a request
/// about `subject`.
pub fn envelope_about(e: &AppError, subject: &Subject) -> (StatusCode, Vec<u8>) {
    let (status, code, _) = classify(e);
    let details = details_about(e, subject);
    let mut error = json!({ "code": code, "message": public_message(e) });
    if let (Some(details), Some(obj)) = (details, error.as_object_mut()) {
        obj.insert("details".into(), details);
    }
    let body = serde_json::to_vec(&json!({ "error": error })).unwrap_or_default();
    (status, body)
}

/// What to log about an error: internal causes included, never secrets (no
/// variant carries a token or key).
pub fn log_detail(e: &AppError) -> Option<&str> {
    match e {
        AppError::Internal(why)
        | AppError::CatalogUnavailable(why)
        | AppError::StorageUnavailable(why) => Some(why.as_str()),
        _ => None,
    }
}
