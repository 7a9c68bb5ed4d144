//! The Order page: everything about one order, one section function each,
//! under the action panel of [`super::actions`].

use maud::{html, Markup};
use warp::http::StatusCode;

use super::layout::{self, badge, money, notice, page, status_badge, time, when};
use super::parts::{error_page, failure, not_found, short, user_link};
use super::{html, redirect, HttpResponse, Req};
use crate::domain::{HistoryEntry, OrderRecord};
use crate::error::AppError;

/// GET `/admin/orders/{id}`.
pub async fn order(req: &Req<'_>) -> HttpResponse {
    let session = req.session.as_ref();
    let Ok(id) = uuid::Uuid::try_parse(req.id) else {
        return not_found(session);
    };
    let done = serde_urlencoded::from_str::<Vec<(String, String)>>(req.query)
        .unwrap_or_default()
        .into_iter()
        .find(|(k, _)| k == "done")
        .and_then(|(_, v)| match v.as_str() {
            "replay" => Some(super::webhooks::REPLAYED),
            "server-action" => Some(super::server_actions::QUEUED),
            other => super::action_list::done_text(other),
        });
    let message = done.map(|t| notice("ok", t));
    order_page(req, id, StatusCode::OK, message).await
}

/// The order page with `message` on top (a result, or why an action failed).
pub async fn order_page(
    req: &Req<'_>,
    id: uuid::Uuid,
    status: StatusCode,
    message: Option<Markup>,
) -> HttpResponse {
    let session = req.session.as_ref();
    let (record, history, actions) = match req.api().orders.admin_detail(id).await {
        Ok(found) => found,
        Err(AppError::OrderNotFound) => {
            return error_page(
                session,
                StatusCode::NOT_FOUND,
                "No such order",
                "There is no order with this id.",
            )
        }
        Err(e) => return failure(session, &e),
    };
    let Some(session_ref) = session else {
        return redirect("/admin/login");
    };
    let o = &record.order;
    let title = format!("Order {}", short(&o.id));
    let deliveries = super::webhooks::for_order(req, o.id).await;
    // Each section is one function.
    let sections = [
        super::action_list::panel(session_ref, &record),
        summary(&record),
        pricing(&record),
        task(&record),
        super::server_actions::section(session_ref, &record, &actions),
        renewals(&record),
        super::webhooks::order_section(session_ref, o.id, &deliveries),
        timeline(&history),
    ];
    let body = html! {
        p.crumbs { a href="/admin/orders" { "Orders" } " / " span.mono { (o.id) } }
        h1 { (title) " " (status_badge(o.status)) }
        @if let Some(message) = message { (message) }
        @for section in sections { (section) }
    };
    html(status, page(&title, session, "/admin/orders", body))
}

fn summary(record: &OrderRecord) -> Markup {
    let o = &record.order;
    let t = &o.term;
    html! {
        section aria-labelledby="summary-h" {
            h2 #summary-h { "Summary" }
            dl.facts {
                dt { "Order id" } dd.mono { (o.id) }
                dt { "User" } dd { a href=(user_link(&o.user_id)) { (o.user_id) } }
                dt { "Plan" } dd { (o.plan_name) " (" (o.plan_id) "), " (o.duration.as_str()) }
                dt { "Image" } dd { (o.image_name) " (" (o.image_id) ")" }
                dt { "Auto-renew" } dd { @if o.auto_renew { "on (the customer's wish; vpsd never charges)" } @else { "off" } }
                dt { "Region / hostname" } dd { (o.droplet.region) " / " (o.droplet.hostname) }
                dt { "Created" } dd { (when(Some(o.created_at))) }
                dt { "Paid" } dd { (when(o.paid_at)) }
                dt { "Activated" } dd { (when(t.activated_at)) }
                dt { "Expires" } dd { (when(t.expires_at)) }
                @if t.suspended_at.is_some() {
                    dt { "Suspended" } dd { (when(t.suspended_at)) @if let Some(r) = t.suspend_reason { " (" (r.as_str()) ")" } }
                }
                @if t.terminated_at.is_some() {
                    dt { "Terminated" } dd { (when(t.terminated_at)) @if let Some(r) = t.termination_reason { " (" (r.as_str()) ")" } }
                }
            }
        }
    }
}

fn pricing(record: &OrderRecord) -> Markup {
    let o = &record.order;
    let p = &o.pricing;
    let c = p.currency.as_str();
    html! {
        section aria-labelledby="pricing-h" {
            h2 #pricing-h { "Pricing and items" }
            dl.facts {
                dt { "Base price" } dd.num { (money(p.base_price, c)) }
                dt { "Promo discount" } dd.num { "− " (money(p.promo_discount, c)) }
                dt { "Coupon" } dd.num {
                    @if let Some(code) = &p.coupon_code { (code) ": " }
                    "− " (money(p.coupon_discount, c))
                }
                dt { "Final price" } dd.num { strong { (money(p.final_price, c)) } }
            }
            div.table role="region" aria-label="Items" tabindex="0" {
                table {
                    thead { tr { th scope="col" { "Type" } th scope="col" { "Description" } th scope="col" { "Unit price" } th scope="col" { "Qty" } th scope="col" { "Total" } } }
                    tbody {
                        @for item in &o.items {
                            tr {
                                td { (item.item_type.as_str()) }
                                td { (item.description) }
                                td.num { (money(item.unit_price, c)) }
                                td.num { (item.quantity) }
                                td.num { (money(item.total_price, c)) }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn task(record: &OrderRecord) -> Markup {
    html! {
        section aria-labelledby="task-h" {
            h2 #task-h { "Provisioning and droplet" }
            @match &record.task {
                None => p.empty { "No provisioning task yet: one starts when the order is paid." },
                Some(t) => {
                    dl.facts {
                        dt { "Task" } dd { (badge(t.status.as_str())) " · " (t.attempts) " attempts" }
                        dt { "Region / size / image" } dd { (t.do_region) " / " (t.do_size) " / " (t.do_image) }
                        dt { "DigitalOcean account" } dd {
                            @match &t.do_account {
                                Some(name) => a.mono href="/admin/accounts" { (name) },
                                None => "not placed yet",
                            }
                        }
                        @if let Some(d) = &t.droplet {
                            dt { "Droplet" } dd { (d.name) " (id " (d.id) ") " (badge(d.status.as_str())) }
                            dt { "Public IPv4" } dd.mono { (d.ipv4_public.as_deref().unwrap_or("—")) }
                            dt { "Private IPv4" } dd.mono { (d.ipv4_private.as_deref().unwrap_or("—")) }
                            @if let Some(v6) = &d.ipv6_public { dt { "IPv6" } dd.mono { (v6) } }
                        } @else {
                            dt { "Droplet" } dd { "none yet" }
                        }
                        @if let Some(a) = &t.action {
                            dt { "Pending droplet action" } dd {
                                (a.action.as_str())
                                @if a.failures > 0 { " · failed " (a.failures) " times, retrying" }
                            }
                        }
                        @if let Some(code) = t.error_code {
                            dt { "Error" } dd.error-text { (code.as_str()) @if let Some(m) = &t.error_message { ": " (m) } }
                        }
                        dt { "Started / completed" } dd { (when(t.started_at)) " / " (when(t.completed_at)) }
                    }
                }
            }
        }
    }
}

/// The newest renewals, as many as the admin API shows (SPEC §12: a page
/// must not grow with every expiry change), and how many there are.
fn renewals(record: &OrderRecord) -> Markup {
    let all = &record.order.term.renewals;
    let shown = crate::json::RENEWALS_SHOWN;
    let list = &all[all.len().saturating_sub(shown)..];
    let c = record.order.pricing.currency.as_str();
    html! {
        section aria-labelledby="renewals-h" {
            h2 #renewals-h { "Renewals" }
            @if list.is_empty() {
                p.empty { "No renewals or expiry changes yet." }
            } @else {
                @if all.len() > list.len() {
                    p.hint { "The " (list.len()) " newest of " (all.len()) "; the history below has every change." }
                }
                div.table role="region" aria-label="Renewals" tabindex="0" {
                    table {
                        thead { tr { th scope="col" { "When" } th scope="col" { "Type" } th scope="col" { "Periods" } th scope="col" { "Amount" } th scope="col" { "Expiry" } th scope="col" { "By" } } }
                        tbody {
                            @for r in list.iter().rev() {
                                tr {
                                    td { (when(Some(r.created_at))) }
                                    td { (r.renewal_type.as_str()) }
                                    td.num { (r.periods) }
                                    td.num { (money(r.amount, c)) }
                                    td { (layout::time_opt(r.previous_expiry)) " → " (time(r.new_expiry)) }
                                    td { (r.actor.render()) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn timeline(history: &[HistoryEntry]) -> Markup {
    html! {
        section aria-labelledby="history-h" {
            h2 #history-h { "History" }
            ol.timeline {
                @for h in history.iter().rev() {
                    li {
                        p.when { (when(Some(h.created_at))) " · " (h.actor.render()) }
                        p {
                            @if let Some(prev) = h.previous_status { (status_badge(prev)) " → " }
                            (badge(h.new_status.as_str()))
                        }
                        @if let Some(reason) = &h.reason { p { (reason) } }
                        @if let Some(meta) = &h.metadata { p.meta.mono { (meta) } }
                    }
                }
            }
        }
    }
}
