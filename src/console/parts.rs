//! Pieces every console page uses: the error pages and the sentence that
//! explains an [`AppError`] to an operator, and the small widgets of lists
//! (short ids, user links, the pager). Kept apart from the pages themselves so
//! no page module imports another for them.

use maud::{html, Markup};
use warp::http::StatusCode;

use super::layout::{notice, page};
use super::session::Session;
use super::{html, HttpResponse};
use crate::error::AppError;

pub fn error_page(
    session: Option<&Session>,
    status: StatusCode,
    title: &str,
    text: &str,
) -> HttpResponse {
    let body = html! {
        h1 { (title) }
        (notice("error", text))
        p {
            @if session.is_some() {
                a href="/admin/" { "Back to the overview" }
            } @else {
                a href="/admin/login" { "Go to the login page" }
            }
        }
    };
    html(status, page(title, session, "", body))
}

pub fn not_found(session: Option<&Session>) -> HttpResponse {
    error_page(
        session,
        StatusCode::NOT_FOUND,
        "Not found",
        "There is no console page at this address.",
    )
}

pub fn method_not_allowed(session: Option<&Session>) -> HttpResponse {
    error_page(
        session,
        StatusCode::METHOD_NOT_ALLOWED,
        "Not allowed",
        "This page cannot be used that way.",
    )
}

pub fn forbidden(session: Option<&Session>, text: &str) -> HttpResponse {
    error_page(session, StatusCode::FORBIDDEN, "Refused", text)
}

/// A service error as a sentence on a page: never JSON, never internals.
pub fn failure(session: Option<&Session>, e: &AppError) -> HttpResponse {
    let (status, _, _) = crate::http::api::error::classify(e);
    if let Some(detail) = crate::http::api::error::log_detail(e) {
        tracing::error!(cause = detail, "console page failed");
    }
    error_page(session, status, "Something went wrong", &sentence(e, None))
}

/// What went wrong, for a person. `action` names what was attempted
/// ("cancel the order") when there is one.
pub fn sentence(e: &AppError, action: Option<&str>) -> String {
    let attempt = action.unwrap_or("do that");
    match e {
        AppError::PaymentStatusConflict { current, .. } => format!(
            "Cannot {attempt}: the order is {current}, and only an order awaiting payment (PENDING_PAYMENT) takes a payment result. Nothing was changed."
        ),
        AppError::OrderStatusConflict { current, .. } => format!(
            "Cannot {attempt}: the order is {current} now, which does not allow it. Nothing was changed."
        ),
        AppError::OrderExpired { expires_at } => format!(
            "Cannot {attempt}: the order expired at {expires_at}. Renew it or move its expiry into the future first."
        ),
        AppError::BadRequest { fields, message } if !fields.is_empty() => {
            let parts: Vec<String> = fields
                .iter()
                .map(|f| format!("{} {}", field_label(&f.field), f.message))
                .collect();
            format!("Please check the form: {}.", parts.join("; "))
        }
        AppError::BadRequest { message, .. } => format!("Please check the form: {message}."),
        AppError::OrderNotFound => "There is no order with this id.".into(),
        AppError::DeliveryNotFound => {
            "There is no webhook delivery with this id (delivered ones are removed after webhooks.retention_hours). Nothing was changed.".into()
        }
        AppError::AccountNotFound => {
            "There is no account with this name: accounts come from the config, and a reload may have removed it. Nothing was done.".into()
        }
        AppError::IdempotencyKeyInUse => {
            "This form is being submitted already. Wait a moment, then reload the order.".into()
        }
        AppError::IdempotencyKeyReused => {
            "This form was already submitted with other values. Open the form again to start afresh.".into()
        }
        AppError::StorageUnavailable(_) => {
            "The data file cannot be written right now; nothing was changed. Try again shortly.".into()
        }
        AppError::NotSupportedOnBackend { .. } => format!(
            "Cannot {attempt}: this shop's data is in PostgreSQL, whose backups are its own (pg_dump, replicas). Nothing was written."
        ),
        AppError::CatalogUnavailable(_) => {
            "The catalog service is unavailable; try again later.".into()
        }
        AppError::Internal(_) => {
            "An unexpected error occurred; it has been logged. Nothing was changed.".into()
        }
        other => format!("Cannot {attempt}: {other}."),
    }
}

/// The form label of an API field named in a validation error.
fn field_label(field: &str) -> &str {
    match field {
        "amount" => "Amount",
        "periods" => "Periods",
        "renewalType" => "Renewal type",
        "notes" => "Note",
        "reason" => "Reason",
        "expiresAt" => "New expiry",
        "terminationReason" => "Termination reason",
        "status" => "Status",
        "orderId" => "Order id",
        other => other,
    }
}

// ----- overview ------------------------------------------------------------

pub fn user_link(user: &str) -> String {
    let q = serde_urlencoded::to_string([("userId", user)]).unwrap_or_default();
    format!("/admin/orders?{q}")
}

/// The last 8 characters of an id: its random part. New ids are UUID v7,
/// whose first characters are a timestamp shared by every order of the same
/// minute, so the front would not tell orders apart.
pub fn short(id: &uuid::Uuid) -> String {
    let text = id.to_string();
    text[text.len() - 8..].to_string()
}

/// Previous/next links of a list at `base`, keeping its filters; `noun` is
/// what is counted, singular and plural (`("order", "orders")`).
pub fn pager(
    base: &str,
    noun: (&str, &str),
    kept: &[(String, String)],
    page_no: u32,
    limit: u32,
    total: u64,
) -> Markup {
    let pages = total.div_ceil(u64::from(limit)).max(1);
    let link = |p: u64| {
        let mut q: Vec<(String, String)> =
            kept.iter().filter(|(k, _)| k != "page").cloned().collect();
        q.push(("page".into(), p.to_string()));
        format!(
            "{base}?{}",
            serde_urlencoded::to_string(&q).unwrap_or_default()
        )
    };
    let page_no = u64::from(page_no);
    html! {
        nav.pager aria-label="Pages" {
            @if page_no > 1 {
                a href=(link((page_no - 1).min(pages))) rel="prev" { "← Previous" }
            }
            span { "Page " (page_no) " of " (pages) " · " (total) " " (if total == 1 { noun.0 } else { noun.1 }) }
            @if page_no < pages {
                a href=(link(page_no + 1)) rel="next" { "Next →" }
            }
        }
    }
}
