//! Webhook deliveries (SPEC §10, §11): the Webhooks page, the deliveries
//! table the Order and Attention pages share, and Replay, which is the same
//! [`crate::service::webhooks::WebhookService::replay`] call as
//! `POST /internal/webhooks/deliveries/{id}/replay`.

use maud::{html, Markup};
use warp::http::StatusCode;

use super::layout::{badge, csrf, notice, page, stamp};
use super::parts::{failure, not_found, pager, sentence, short};
use super::session::Session;
use super::{html, redirect, HttpResponse, Req};
use crate::domain::webhook::{Delivery, DeliveryStatus};
use crate::domain::webhook::{DeliveryPage, DeliveryQuery};
use crate::error::AppError;
use crate::url_rules::mask_url;

/// The result sentence after a replay (`?done=replay`).
pub const REPLAYED: &str = "Delivery queued again: it goes out shortly with the same webhook-id and a fresh retry schedule. Reload to see how it went.";

/// The filter parameters the page keeps in its links and forms.
const FILTER_KEYS: [&str; 4] = ["status", "orderId", "page", "limit"];

/// Where a Replay button sends the operator back to.
pub enum Origin<'a> {
    /// The Webhooks page with these (already sanitised) filter parameters.
    List(&'a [(String, String)]),
    /// The page of the delivery's order.
    Order,
}

/// The filters of a query string: blanks (the form's "any" choices) and
/// unknown keys dropped, values trimmed.
fn kept_filters(query: &str) -> Vec<(String, String)> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(query)
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, v)| FILTER_KEYS.contains(&k.as_str()) && !v.trim().is_empty())
        .map(|(k, v)| (k, v.trim().to_string()))
        .collect()
}

/// The filters read with the rules (and error sentences) of the API's list.
fn delivery_query(kept: &[(String, String)]) -> Result<DeliveryQuery, AppError> {
    crate::http::api::request::delivery_filters(kept.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

/// GET `/admin/webhooks`.
pub async fn webhooks(req: &Req<'_>) -> HttpResponse {
    let done = req.query.split('&').any(|p| p == "done=replay");
    let message = done.then(|| notice("ok", REPLAYED));
    webhooks_page(req, req.query, StatusCode::OK, message).await
}

async fn webhooks_page(
    req: &Req<'_>,
    query: &str,
    status: StatusCode,
    message: Option<Markup>,
) -> HttpResponse {
    let session = req.session.as_ref();
    let Some(session_ref) = session else {
        return redirect("/admin/login");
    };
    let kept = kept_filters(query);
    let value = |key: &str| {
        kept.iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    };
    let filters = filter_form(value("status"), value("orderId"));
    let configured = req.console.webhooks_configured;
    let (status, content) = match delivery_query(&kept) {
        Err(e) => (
            StatusCode::BAD_REQUEST,
            notice("error", &sentence(&e, Some("filter the deliveries"))),
        ),
        Ok(q) => match req.api().webhooks.list(q.clone()).await {
            Err(e) => return failure(session, &e),
            Ok(found) => {
                let filtered = q.status.is_some() || q.order_id.is_some();
                let content = html! {
                    @if found.items.is_empty() {
                        @if found.total > 0 {
                            p.empty { "This page is past the last one." }
                        } @else if !configured && !filtered {
                            p.empty { "No webhook endpoint is configured (" code { "webhooks.endpoints" } "), so no events are recorded for delivery." }
                        } @else {
                            p.empty { "No deliveries match these filters." }
                        }
                    } @else {
                        (table(session_ref, &found.items, Origin::List(&kept), true))
                    }
                    (pager("/admin/webhooks", ("delivery", "deliveries"), &kept, q.page, q.limit, found.total))
                };
                (status, content)
            }
        },
    };
    let body = html! {
        h1 { "Webhooks" }
        @if let Some(message) = message { (message) }
        @if configured {
            p { "Deliveries of signed events to the configured endpoints, newest first. Replay sends a delivery again with the same webhook-id, so receivers that deduplicate see it once." }
        } @else {
            p.warning { "No webhook endpoint is configured: new changes send no events. Deliveries listed here were recorded while one was; a replay to an endpoint that is no longer configured fails at the next start." }
        }
        (filters)
        (content)
    };
    html(status, page("Webhooks", session, "/admin/webhooks", body))
}

fn filter_form(status: &str, order: &str) -> Markup {
    html! {
        form.filters method="get" action="/admin/webhooks" role="search" aria-label="Filter deliveries" {
            div.field {
                label for="w-status" { "Status" }
                select #w-status name="status" {
                    option value="" selected[status.is_empty()] { "Any status" }
                    @for s in [DeliveryStatus::Pending, DeliveryStatus::Delivered, DeliveryStatus::Failed] {
                        option value=(s.as_str()) selected[status == s.as_str()] { (s.as_str()) }
                    }
                }
            }
            div.field {
                label for="w-order" { "Order id" }
                input #w-order type="text" name="orderId" value=(order) maxlength="36" spellcheck="false";
            }
            div.buttons {
                button type="submit" { "Filter" }
                a href="/admin/webhooks" { "Clear" }
            }
        }
    }
}

/// Deliveries as a table, each with its Replay button; `order_column` is
/// off on the Order page, where every row is that order's.
pub fn table(
    session: &Session,
    items: &[Delivery],
    origin: Origin<'_>,
    order_column: bool,
) -> Markup {
    let back = match origin {
        Origin::Order => "order".to_string(),
        Origin::List(kept) => serde_urlencoded::to_string(kept).unwrap_or_default(),
    };
    html! {
        div.table role="region" aria-label="Webhook deliveries" tabindex="0" {
            table.stack.deliveries {
                thead {
                    tr {
                        th scope="col" { "Event" }
                        @if order_column { th scope="col" { "Order" } }
                        th scope="col" { "Endpoint" }
                        th scope="col" { "Status" }
                        th scope="col" { "Attempts" }
                        th scope="col" { "Last attempt" }
                        th scope="col" { "Next attempt" }
                        th scope="col" { "Replay" }
                    }
                }
                tbody {
                    // Each cell holds one block, so the phone layout (label
                    // beside content) keeps the content's own lines.
                    @for d in items {
                        tr {
                            td data-label="Event" { div { span.mono { (d.event_type.as_str()) } br; span.hint { (stamp(Some(d.created_at))) } } }
                            @if order_column {
                                td data-label="Order" { a.mono href=(format!("/admin/orders/{}", d.order_id)) { (short(&d.order_id)) } }
                            }
                            td.url data-label="Endpoint" { span.mono { (breakable_url(&mask_url(&d.url))) } }
                            td data-label="Status" { (badge(d.status.as_str())) }
                            td.num data-label="Attempts" { (d.attempts) }
                            td data-label="Last attempt" {
                                div {
                                    (stamp(d.last_attempt_at))
                                    @if let Some(code) = d.last_response_status { br; "HTTP " (code) }
                                    @if let Some(error) = shown_error(d) { br; span.error-text { (error) } }
                                }
                            }
                            td data-label="Next attempt" { div { (stamp(d.next_attempt_at)) } }
                            td data-label="Replay" {
                                form.inline method="post" action=(format!("/admin/webhooks/{}/replay", d.id)) {
                                    (csrf(session))
                                    input type="hidden" name="back" value=(back);
                                    button type="submit" aria-label=(format!("Replay {} of order {}", d.event_type.as_str(), short(&d.order_id))) { "Replay" }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A URL that may wrap after its slashes (not inside a host name or port).
fn breakable_url(url: &str) -> Markup {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let parts: Vec<&str> = rest.split_inclusive('/').collect();
    html! {
        @if !scheme.is_empty() { (scheme) "://" }
        @for (i, part) in parts.iter().enumerate() {
            @if i > 0 { wbr; }
            (part)
        }
    }
}

/// The last error, unless it only repeats the response status shown above it.
fn shown_error(d: &Delivery) -> Option<&str> {
    let error = d.last_error.as_deref()?;
    match d.last_response_status {
        Some(code) if error.ends_with(&format!("HTTP {code}")) => None,
        _ => Some(error),
    }
}

/// The Order page's section: that order's deliveries, newest first.
pub fn order_section(
    session: &Session,
    order: uuid::Uuid,
    found: &Result<DeliveryPage, AppError>,
) -> Markup {
    html! {
        section aria-labelledby="webhooks-h" {
            h2 #webhooks-h { "Webhook deliveries" }
            @match found {
                Err(e) => (notice("error", &sentence(e, Some("list this order's deliveries")))),
                Ok(page) if page.items.is_empty() => p.empty { "No webhook deliveries for this order." },
                Ok(page) => {
                    (table(session, &page.items, Origin::Order, false))
                    @if page.total > page.items.len() as u64 {
                        p.hint { "The newest " (page.items.len()) " of " (page.total) ". " a href=(format!("/admin/webhooks?orderId={order}")) { "All of them on the Webhooks page" } }
                    }
                }
            }
        }
    }
}

/// What the Order page shows at most; the rest are on the Webhooks page.
pub const ORDER_ROWS: u32 = 50;

/// That order's deliveries for [`order_section`]; a failure is logged and
/// shown in the section rather than failing the whole page.
pub async fn for_order(req: &Req<'_>, order: uuid::Uuid) -> Result<DeliveryPage, AppError> {
    let query = DeliveryQuery {
        status: None,
        order_id: Some(order),
        page: 1,
        limit: ORDER_ROWS,
    };
    let found = req.api().webhooks.list(query).await;
    if let Err(e) = &found {
        if let Some(detail) = crate::http::api::error::log_detail(e) {
            tracing::error!(
                cause = detail,
                "console: listing an order's deliveries failed"
            );
        }
    }
    found
}

/// How many failed deliveries the Attention page lists.
const ATTENTION_ROWS: u32 = 20;

/// The Attention page's section: failed deliveries, with the way to the
/// Webhooks page filtered to them.
pub async fn attention_section(req: &Req<'_>, session: &Session) -> (bool, Markup) {
    let query = DeliveryQuery {
        status: Some(DeliveryStatus::Failed),
        order_id: None,
        page: 1,
        limit: ATTENTION_ROWS,
    };
    let found = req.api().webhooks.list(query).await;
    let kept = [("status".to_string(), "failed".to_string())];
    let clear = matches!(&found, Ok(p) if p.total == 0);
    let markup = html! {
        section aria-labelledby="webhooks-h" {
            @match &found {
                Err(e) => {
                    h2 #webhooks-h { "Failed webhook deliveries" }
                    (notice("error", &sentence(e, Some("list the failed deliveries"))))
                }
                Ok(page) => {
                    h2 #webhooks-h { "Failed webhook deliveries (" (page.total) ")" }
                    @if page.items.is_empty() {
                        p.empty { "No failed webhook deliveries." }
                    } @else {
                        p {
                            "These used up their retry schedule. "
                            a href="/admin/webhooks?status=failed" { "See all failed deliveries on the Webhooks page" }
                            " or replay one here once its endpoint answers again."
                        }
                        (table(session, &page.items, Origin::List(&kept), true))
                    }
                }
            }
        }
    };
    if let Err(e) = &found {
        if let Some(detail) = crate::http::api::error::log_detail(e) {
            tracing::error!(cause = detail, "console: listing failed deliveries failed");
        }
    }
    (clear, markup)
}

/// POST `/admin/webhooks/{id}/replay`.
pub async fn replay(req: &Req<'_>) -> HttpResponse {
    let session = req.session.as_ref();
    let Ok(id) = uuid::Uuid::try_parse(req.id) else {
        return not_found(session);
    };
    let back = req.form.get("back").unwrap_or("");
    let kept = kept_filters(back);
    match req.api().webhooks.replay(id).await {
        Ok(delivery) => {
            tracing::info!(
                actor = %session.map(Session::actor_text).unwrap_or_default(),
                delivery_id = %id,
                order_id = %delivery.order_id,
                "console webhook replay"
            );
            if back == "order" {
                return redirect(&format!(
                    "/admin/orders/{}?done=replay#webhooks-h",
                    delivery.order_id
                ));
            }
            let mut q = kept;
            q.push(("done".into(), "replay".into()));
            redirect(&format!(
                "/admin/webhooks?{}",
                serde_urlencoded::to_string(&q).unwrap_or_default()
            ))
        }
        Err(e) => {
            if let Some(detail) = crate::http::api::error::log_detail(&e) {
                tracing::error!(cause = detail, "console webhook replay failed");
            }
            let (status, _, _) = crate::http::api::error::classify(&e);
            let text = sentence(&e, Some("replay the delivery"));
            let query = serde_urlencoded::to_string(&kept).unwrap_or_default();
            webhooks_page(req, &query, status, Some(notice("error", &text))).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_keep_only_known_non_blank_keys() {
        let kept = kept_filters("status=failed&orderId=+&done=replay&x=1&page=2");
        assert_eq!(
            kept,
            vec![
                ("status".to_string(), "failed".to_string()),
                ("page".to_string(), "2".to_string())
            ]
        );
        let q = delivery_query(&kept).unwrap();
        assert_eq!(q.status, Some(DeliveryStatus::Failed));
        assert_eq!((q.page, q.limit), (2, 10));
        assert!(delivery_query(&[("status".into(), "lost".into())]).is_err());
        assert!(delivery_query(&[("limit".into(), "101".into())]).is_err());
        // A `back` field that is not a query string leads nowhere else.
        assert!(kept_filters("https://evil.example/").is_empty());
    }
}
