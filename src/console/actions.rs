//! Order actions: their forms and confirmation steps, and what a submitted
//! form does. Which actions an order offers is `action_list`.
//!
//! Which actions show is decided by the domain's transition table, the same
//! one the service enforces (see `action_list`); a form is
//! turned into the JSON body the API would receive and checked by the API's
//! own validators, then handed to the same service call, with the session's
//! operator as `X-Admin-Id`. Payment and renewal forms carry a fresh
//! idempotency key, so a double submit is answered from the first result
//! instead of charging or extending twice.

use maud::{html, Markup};
use serde_json::{Map, Value};
use warp::http::StatusCode;

use super::form::{datetime_to_rfc3339, Form};
use super::layout::{csrf, money, notice, page, status_badge, when};
use super::parts::{self, short};
use super::session::Session;
use super::{html, redirect, HttpResponse, Req};
use crate::domain::OrderRecord;
use crate::error::AppError;
use crate::service::{IdempotencyKey, PaymentUpdate, Replay, Reply};

use super::action_list::fresh_key;
pub use super::action_list::Action;

/// GET `/admin/orders/{id}/{action}`: the action's form or confirmation.
pub async fn form_page(req: &Req<'_>, id: &str, slug: &str) -> HttpResponse {
    let session = req.session.as_ref();
    let (Ok(id), Some(action)) = (uuid::Uuid::try_parse(id), Action::parse(slug)) else {
        return parts::not_found(session);
    };
    let record = match req.api().orders.get(id).await {
        Ok(record) => record,
        Err(e) => return parts::failure(session, &e),
    };
    render_form(req, &record, action, StatusCode::OK, None, &Form::default())
}

fn render_form(
    req: &Req<'_>,
    record: &OrderRecord,
    action: Action,
    status: StatusCode,
    error: Option<&str>,
    values: &Form,
) -> HttpResponse {
    let Some(session) = req.session.as_ref() else {
        return redirect("/admin/login");
    };
    let o = &record.order;
    let back = format!("/admin/orders/{}", o.id);
    let title = format!("{} · order {}", action.label(), short(&o.id));
    let allowed = action.allowed(record);
    let conflict = (!allowed).then(|| {
        parts::sentence(
            &AppError::OrderStatusConflict {
                current: o.status,
                requested: action.event().requested_status(),
            },
            Some(action.attempt()),
        )
    });
    let body = html! {
        p.crumbs { a href="/admin/orders" { "Orders" } " / " a.mono href=(back) { (short(&o.id)) } " / " (action.label()) }
        h1 { (action.label()) }
        dl.facts {
            dt { "Order" } dd.mono { (o.id) }
            dt { "User" } dd { (o.user_id) }
            dt { "Status" } dd { (status_badge(o.status)) }
            dt { "Plan" } dd { (o.plan_name) ", " (o.duration.as_str()) " · " (money(o.pricing.final_price, &o.pricing.currency)) }
            dt { "Expires" } dd { (when(o.term.expires_at)) }
        }
        @if let Some(error) = error { (notice("error", error)) }
        @if let Some(conflict) = &conflict {
            (notice("error", conflict))
        } @else {
            @if let Some(warning) = warning(action) { p.warning { (warning) } }
            form.action-form method="post" action=(format!("/admin/orders/{}/{}", o.id, action.slug())) {
                (csrf(session))
                @if action.destructive() { input type="hidden" name="confirm" value="yes"; }
                @if matches!(action, Action::Pay | Action::PaymentFailed | Action::Renew) {
                    (fresh_key())
                }
                (fields(action, values))
                div.buttons {
                    button.danger[action.destructive()] type="submit" {
                        @if action.destructive() { "Yes, " (action.label().to_lowercase()) } @else { (action.label()) }
                    }
                    a href=(back) { "Back to the order" }
                }
            }
        }
    };
    let status = if conflict.is_some() && status == StatusCode::OK {
        StatusCode::CONFLICT
    } else {
        status
    };
    html(status, page(&title, Some(session), "/admin/orders", body))
}

fn warning(action: Action) -> Option<&'static str> {
    match action {
        Action::Cancel => Some("Canceling is final: the order cannot be paid afterwards, and its coupon use is released."),
        Action::Suspend => Some("Suspending powers off the customer's server until it is unsuspended."),
        Action::Terminate => Some("Terminating is final: the customer's droplet and everything on it are deleted."),
        _ => None,
    }
}

fn text_field(name: &str, label: &str, values: &Form, hint: Option<&str>) -> Markup {
    let id = format!("a-{name}");
    let hint_id = format!("{id}-hint");
    html! {
        div.field {
            label for=(id) { (label) }
            @if let Some(hint) = hint {
                input id=(id) type="text" name=(name) value=(values.get(name).unwrap_or("")) maxlength="1000" aria-describedby=(hint_id);
                p.hint id=(hint_id) { (hint) }
            } @else {
                input id=(id) type="text" name=(name) value=(values.get(name).unwrap_or("")) maxlength="1000";
            }
        }
    }
}

fn fields(action: Action, values: &Form) -> Markup {
    match action {
        Action::Pay | Action::PaymentFailed => text_field(
            "notes",
            "Note (optional)",
            values,
            Some("Kept in the order's history, e.g. a transfer reference."),
        ),
        Action::Cancel | Action::Suspend | Action::Unsuspend => {
            text_field("reason", "Reason (optional)", values, None)
        }
        Action::Retry => html! {},
        Action::Terminate => {
            let chosen = values
                .get("terminationReason")
                .unwrap_or("ADMIN_TERMINATED");
            html! {
                div.field {
                    label for="a-why" { "Termination reason" }
                    select #a-why name="terminationReason" {
                        option value="ADMIN_TERMINATED" selected[chosen == "ADMIN_TERMINATED"] { "ADMIN_TERMINATED — ended by an operator" }
                        option value="POLICY_VIOLATION" selected[chosen == "POLICY_VIOLATION"] { "POLICY_VIOLATION — broke the terms" }
                    }
                }
                (text_field("reason", "Note (optional)", values, None))
            }
        }
        Action::Renew => {
            let chosen = values.get("renewalType").unwrap_or("MANUAL_RENEWAL");
            html! {
                div.field {
                    label for="a-periods" { "Periods" }
                    input #a-periods type="number" name="periods" min="1" max="12" step="1" value=(values.get("periods").unwrap_or("1")) aria-describedby="a-periods-hint";
                    p.hint #a-periods-hint { "Whole periods of the order's duration, 1 to 12." }
                }
                div.field {
                    label for="a-amount" { "Amount charged" }
                    input #a-amount type="number" name="amount" min="0" step="1" required value=(values.get("amount").unwrap_or("")) aria-describedby="a-amount-hint";
                    p.hint #a-amount-hint { "In the currency's smallest unit, as the payment system charged it." }
                }
                div.field {
                    label for="a-type" { "Renewal type" }
                    select #a-type name="renewalType" {
                        option value="MANUAL_RENEWAL" selected[chosen == "MANUAL_RENEWAL"] { "MANUAL_RENEWAL" }
                        option value="AUTO_RENEWAL" selected[chosen == "AUTO_RENEWAL"] { "AUTO_RENEWAL" }
                    }
                }
                (text_field("notes", "Note (optional)", values, None))
            }
        }
        Action::Expiry => html! {
            div.field {
                label for="a-at" { "New expiry (UTC)" }
                input #a-at type="datetime-local" name="expiresAt" step="1" required value=(values.get("expiresAt").unwrap_or("")) aria-describedby="a-at-hint";
                p.hint #a-at-hint { "A time in the past lets the next sweep apply expiry at once (when enforcement is on)." }
            }
            (text_field("reason", "Reason (optional)", values, None))
        },
    }
}

/// POST `/admin/orders/{id}/{action}`.
pub async fn submit(req: &Req<'_>, id: &str, slug: &str) -> HttpResponse {
    let session = req.session.as_ref();
    let (Ok(id), Some(action)) = (uuid::Uuid::try_parse(id), Action::parse(slug)) else {
        return parts::not_found(session);
    };
    // A destructive action only runs from its confirmation page.
    if action.destructive() && req.form.get("confirm") != Some("yes") {
        return match req.api().orders.get(id).await {
            Ok(record) => render_form(req, &record, action, StatusCode::OK, None, &req.form),
            Err(e) => parts::failure(session, &e),
        };
    }
    let outcome = run(req, id, action).await;
    let actor = session.map(Session::actor_text).unwrap_or_default();
    match outcome {
        Ok(()) => {
            tracing::info!(actor = %actor, order_id = %id, action = action.slug(), "console action");
            redirect(&format!("/admin/orders/{id}?done={}", action.slug()))
        }
        Err(e) => {
            if let Some(detail) = crate::api::error::log_detail(&e) {
                tracing::error!(
                    cause = detail,
                    action = action.slug(),
                    "console action failed"
                );
            }
            let (status, _, _) = crate::api::error::classify(&e);
            let text = parts::sentence(&e, Some(action.attempt()));
            if action.inline() || matches!(e, AppError::OrderNotFound) {
                return super::order::order_page(req, id, status, Some(notice("error", &text)))
                    .await;
            }
            match req.api().orders.get(id).await {
                Ok(record) => render_form(req, &record, action, status, Some(&text), &req.form),
                Err(e) => parts::failure(session, &e),
            }
        }
    }
}

/// The API call this action is, through the API's validators and the
/// same service method.
async fn run(req: &Req<'_>, id: uuid::Uuid, action: Action) -> Result<(), AppError> {
    let orders = &req.api().orders;
    let admin = req.operator();
    let form = &req.form;
    match action {
        Action::Pay | Action::PaymentFailed => {
            let mut body = form.to_json(&[("notes", "notes")], &[]);
            let status = if action == Action::Pay {
                "PAID"
            } else {
                "PAYMENT_FAILED"
            };
            body.insert("status".into(), Value::String(status.into()));
            let key = idempotency(
                form,
                &format!("/api/v1/internal/orders/{id}/payment-status"),
                &body,
            )?;
            let update = crate::api::request::payment_status(&body)
                .map(|(paid, notes)| PaymentUpdate { id, paid, notes });
            settle(orders.set_payment_status(update, admin, key).await)
        }
        Action::Cancel => {
            let body = form.to_json(&[("reason", "reason")], &[]);
            let reason = crate::api::request::cancel_reason(Some(&body))?;
            orders.cancel_by_admin(id, reason, admin).await.map(drop)
        }
        Action::Retry => orders.retry_provisioning(id, admin).await.map(drop),
        Action::Suspend => {
            let body = form.to_json(&[("reason", "reason")], &[]);
            let reason = crate::api::request::cancel_reason(Some(&body))?;
            orders.suspend(id, reason, admin).await.map(drop)
        }
        Action::Unsuspend => {
            let body = form.to_json(&[("reason", "reason")], &[]);
            let reason = crate::api::request::cancel_reason(Some(&body))?;
            orders.unsuspend(id, reason, admin).await.map(drop)
        }
        Action::Renew => {
            let body = form.to_json(
                &[("renewalType", "renewalType"), ("notes", "notes")],
                &[("periods", "periods"), ("amount", "amount")],
            );
            let key = idempotency(
                form,
                &format!("/api/v1/internal/orders/{id}/renewals"),
                &body,
            )?;
            let renewing = crate::api::request::renewal(&body).map(|r| (id, r));
            settle(orders.renew(renewing, admin, key).await)
        }
        Action::Expiry => {
            let mut body = form.to_json(&[("reason", "reason")], &[]);
            if let Some(at) = form.text("expiresAt") {
                body.insert("expiresAt".into(), Value::String(datetime_to_rfc3339(at)));
            }
            let (at, reason) = crate::api::request::expiry_change(&body)?;
            orders.set_expiry(id, at, reason, admin).await.map(drop)
        }
        Action::Terminate => {
            let body = form.to_json(
                &[
                    ("reason", "reason"),
                    ("terminationReason", "terminationReason"),
                ],
                &[],
            );
            let (why, note) = crate::api::request::admin_termination(Some(&body))?;
            orders
                .terminate_by_admin(id, why, note, admin)
                .await
                .map(drop)
        }
    }
}

/// The form's idempotency key, scoped like the API key's and fingerprinted
/// over the API path and body, so it means what `Idempotency-Key` means.
fn idempotency(
    form: &Form,
    api_path: &str,
    body: &Map<String, Value>,
) -> Result<Option<IdempotencyKey>, AppError> {
    let Some(key) = form.text("idem") else {
        return Ok(None);
    };
    let mut headers = warp::http::HeaderMap::new();
    let value = warp::http::HeaderValue::from_str(key)
        .map_err(|_| AppError::bad_request("the form's idempotency key is malformed"))?;
    headers.insert("idempotency-key", value);
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    crate::api::request::idempotency_key(&headers, "internal".into(), "POST", api_path, &bytes)
}

/// A reply, fresh or replayed, as success or the refusal it carries.
fn settle(reply: Reply) -> Result<(), AppError> {
    match reply {
        Reply::Fresh(outcome) => outcome.map(drop),
        Reply::Replayed(Replay::Outcome(outcome)) => (*outcome).map(drop),
        // A response stored by an older version as rendered bytes: it was a
        // completed request; the order page shows its effect.
        Reply::Replayed(Replay::Legacy(old)) if old.succeeded() => Ok(()),
        Reply::Replayed(Replay::Legacy(_)) => Err(AppError::bad_request(
            "this form was already submitted and refused",
        )),
    }
}
