//! Order actions: their forms and confirmation steps, and what a submitted
//! form does. Which actions an order offers is `action_list`.
//!
//! Which actions show is decided by the domain's transition table, the same
//! one the service enforces (see `action_list`); a form is read into the
//! typed request by the API's rules and words (`form::Checked`), then handed
//! to the same service call as the API's, with the session's operator as
//! `X-Admin-Id`. Payment and renewal forms carry a fresh
//! idempotency key, so a double submit is answered from the first result
//! instead of charging or extending twice.

use maud::{html, Markup};
use serde_json::json;
use warp::http::StatusCode;

use super::form::{Checked, Form};
use super::layout::{csrf, money, notice, page, status_badge, when};
use super::parts::{self, short};
use super::session::Session;
use super::{html, redirect, HttpResponse, Req};
use crate::domain::lifecycle::Renewing;
use crate::domain::{HistoryStatus, OrderRecord, RenewalType, TerminationReason};
use crate::error::{AppError, FieldError};
use crate::service::{IdempotencyKey, PaymentUpdate, Replay, Reply};

use super::action_list::fresh_key;
pub use super::action_list::Action;

/// `/admin/orders/{id}/{action}`: the action's form or confirmation, or
/// what its POST does.
pub async fn action(req: &Req<'_>) -> HttpResponse {
    if req.post {
        submit(req, req.id, req.action).await
    } else {
        form_page(req, req.id, req.action).await
    }
}

/// GET: the action's form or confirmation.
async fn form_page(req: &Req<'_>, id: &str, slug: &str) -> HttpResponse {
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

/// What a termination reason an operator can give means, for its choice.
fn termination_meaning(why: TerminationReason) -> &'static str {
    match why {
        TerminationReason::PolicyViolation => "broke the terms",
        _ => "ended by an operator",
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
            let default = TerminationReason::AdminTerminated.as_str();
            let chosen = values.get("terminationReason").unwrap_or(default);
            html! {
                div.field {
                    label for="a-why" { "Termination reason" }
                    select #a-why name="terminationReason" {
                        @for why in TerminationReason::BY_OPERATOR {
                            option value=(why.as_str()) selected[chosen == why.as_str()] {
                                (why.as_str()) " — " (termination_meaning(why))
                            }
                        }
                    }
                }
                (text_field("reason", "Note (optional)", values, None))
            }
        }
        Action::Renew => {
            let default = RenewalType::ManualRenewal.as_str();
            let chosen = values.get("renewalType").unwrap_or(default);
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
                        @for kind in RenewalType::BY_RENEWAL {
                            option value=(kind.as_str()) selected[chosen == kind.as_str()] { (kind.as_str()) }
                        }
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

/// POST: run the action.
async fn submit(req: &Req<'_>, id: &str, slug: &str) -> HttpResponse {
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
            if let Some(detail) = crate::http::api::error::log_detail(&e) {
                tracing::error!(
                    cause = detail,
                    action = action.slug(),
                    "console action failed"
                );
            }
            let (status, _, _) = crate::http::api::error::classify(&e);
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

/// The service call this action is, with the form read into its typed
/// request by the API's rules (see [`Checked`]).
async fn run(req: &Req<'_>, id: uuid::Uuid, action: Action) -> Result<(), AppError> {
    let orders = &req.api().orders;
    let admin = req.operator();
    let form = &req.form;
    let reason = || {
        let mut f = Checked::new(form);
        let reason = f.free_text("reason");
        f.finish(|| Some(reason))
    };
    match action {
        Action::Pay | Action::PaymentFailed => {
            let paid = action == Action::Pay;
            let mut f = Checked::new(form);
            let notes = f.free_text("notes");
            let update = f.finish(|| Some(PaymentUpdate { id, paid, notes }));
            let api_body = match &update {
                Ok(u) => {
                    let status = if u.paid {
                        HistoryStatus::Paid
                    } else {
                        HistoryStatus::PaymentFailed
                    };
                    json!({"status": status.as_str(), "notes": u.notes})
                }
                Err(_) => as_typed(form, &["notes"]),
            };
            let key = idempotency(form, &format!("{id}/payment-status"), &api_body)?;
            settle(orders.set_payment_status(update, admin, key).await)
        }
        Action::Cancel => orders.cancel_by_admin(id, reason()?, admin).await.map(drop),
        Action::Retry => orders.retry_provisioning(id, admin).await.map(drop),
        Action::Suspend => orders.suspend(id, reason()?, admin).await.map(drop),
        Action::Unsuspend => orders.unsuspend(id, reason()?, admin).await.map(drop),
        Action::Renew => {
            let renewing = renewal(form);
            let api_body = match &renewing {
                Ok(r) => json!({"periods": r.periods, "amount": r.amount,
                    "renewalType": r.renewal_type.as_str(), "notes": r.notes}),
                Err(_) => as_typed(form, &["periods", "amount", "renewalType", "notes"]),
            };
            let key = idempotency(form, &format!("{id}/renewals"), &api_body)?;
            settle(orders.renew(renewing.map(|r| (id, r)), admin, key).await)
        }
        Action::Expiry => {
            let mut f = Checked::new(form);
            let at = f.instant("expiresAt");
            let reason = f.free_text("reason");
            let at = f.finish(|| at)?;
            orders.set_expiry(id, at, reason, admin).await.map(drop)
        }
        Action::Terminate => {
            let mut f = Checked::new(form);
            let note = f.free_text("reason");
            let why = f
                .one_of("terminationReason", &TerminationReason::BY_OPERATOR, |r| {
                    r.as_str()
                })
                .unwrap_or(TerminationReason::AdminTerminated);
            f.finish(|| Some(()))?;
            orders
                .terminate_by_admin(id, why, note, admin)
                .await
                .map(drop)
        }
    }
}

/// The renewal form: periods (1-12, default 1), the amount charged, the
/// renewal type (default manual) and a note.
fn renewal(form: &Form) -> Result<Renewing, AppError> {
    let mut f = Checked::new(form);
    let periods = f.whole_number("periods", false, 1, 12).unwrap_or(1);
    let amount = f.whole_number("amount", true, 0, i64::MAX as u64);
    let renewal_type = f
        .one_of("renewalType", &RenewalType::BY_RENEWAL, |t| t.as_str())
        .unwrap_or(RenewalType::ManualRenewal);
    let notes = f.free_text("notes");
    f.finish(|| {
        Some(Renewing {
            periods: u32::try_from(periods).ok()?,
            amount: amount?,
            renewal_type,
            notes,
        })
    })
}

/// The fields of a form that failed its checks, as typed, for its
/// fingerprint: a second submit of the same form is refused the same way,
/// one with other values is another request.
fn as_typed(form: &Form, fields: &[&str]) -> serde_json::Value {
    fields
        .iter()
        .filter_map(|f| Some(((*f).to_string(), json!(form.text(f)?))))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// The form's idempotency key, scoped like the API key's and fingerprinted
/// over the internal API path (`/api/v1/internal/orders/{tail}`) and the
/// request as that API call's body, so it means what `Idempotency-Key` means
/// there.
fn idempotency(
    form: &Form,
    tail: &str,
    api_body: &serde_json::Value,
) -> Result<Option<IdempotencyKey>, AppError> {
    let Some(key) = form.text("idem") else {
        return Ok(None);
    };
    if key.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(AppError::bad_request(
            "the form's idempotency key is malformed",
        ));
    }
    if key.len() > 255 || !key.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        return Err(AppError::invalid_fields(vec![FieldError::new(
            "Idempotency-Key",
            "must be 1-255 printable ASCII characters",
        )]));
    }
    let path = format!("/api/v1/internal/orders/{tail}");
    let body = serde_json::to_vec(api_body).unwrap_or_default();
    Ok(Some(IdempotencyKey {
        scope: "internal".into(),
        key: key.to_string(),
        fingerprint: crate::http::api::request::fingerprint("POST", &path, &body),
    }))
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
