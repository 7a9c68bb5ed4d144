//! The read pages: Overview, Orders, Attention, Backups, and the error
//! pages. The Order page is [`super::order`]; its actions [`super::actions`].

use maud::{html, Markup};
use warp::http::StatusCode;

use super::chart::{self, Bar};
use super::layout::{self, csrf, money, notice, page, status_badge, time, when};
use super::parts::{failure, pager, sentence, short, user_link};
use super::{html, redirect, HttpResponse, Req};
use crate::domain::time::now_millis;
use crate::domain::{ListQuery, OrderRecord, OrderStatus};
use crate::error::AppError;
use crate::service::console as read;

pub async fn overview(req: &Req<'_>) -> HttpResponse {
    let session = req.session.as_ref();
    let data = match req.api().orders.overview(now_millis()).await {
        Ok(data) => data,
        Err(e) => return failure(session, &e),
    };
    let total: u64 = data.counts.iter().map(|(_, n)| n).sum();
    let body = html! {
        h1 { "Overview" }
        section aria-labelledby="counts-h" {
            h2 #counts-h { "Orders by status" }
            @if total == 0 {
                p.empty { "No orders yet. They appear here as soon as customers place them." }
            }
            ul.counts {
                @for (status, n) in &data.counts {
                    li {
                        a href=(format!("/admin/orders?status={}", status.as_str())) {
                            span.count { (n) }
                            (status_badge(*status))
                        }
                    }
                }
            }
        }
        (chart_section(&data))
        (instance_section(req))
    };
    html(StatusCode::OK, page("Overview", session, "/admin/", body))
}

/// What `/health` says of this instance: where its data lives and whether
/// it is the one running background work (on PostgreSQL, one of several).
fn instance_section(req: &Req<'_>) -> Markup {
    let health = req.api().ops.health();
    let storage = match health.backend {
        "redb" => "redb (the embedded data file)",
        "postgres" => "PostgreSQL (shared by every instance of this shop)",
        other => other,
    };
    html! {
        section aria-labelledby="instance-h" {
            h2 #instance-h { "This instance" }
            dl.facts {
                dt { "Storage backend" }
                dd data-backend=(health.backend) { (storage) }
                dt { "Runs background work" }
                dd data-background-work=(health.background_work) {
                    @if health.background_work { "yes" } @else { "no" }
                }
            }
            @if !health.background_work {
                p.hint { "Another instance runs the sweeps, expiry enforcement, server actions and webhook delivery; this one serves requests and takes over if that one stops." }
            }
        }
    }
}

/// The last 30 days: two bar charts and, folded away, their numbers.
fn chart_section(data: &read::Overview) -> Markup {
    let currency = data.currency.clone().unwrap_or_default();
    let label = |start| time(start).get(5..10).unwrap_or_default().to_string();
    let bars = |value: fn(&read::Day) -> u64| -> Vec<Bar> {
        data.days
            .iter()
            .map(|d| Bar {
                label: label(d.start),
                value: value(d),
            })
            .collect()
    };
    let orders = bars(|d| d.orders);
    let revenue = bars(|d| d.revenue);
    let money_of = |v: u64| money(v, &currency);
    let count_of = |v: u64| v.to_string();
    html! {
        section aria-labelledby="chart-h" {
            h2 #chart-h { "Last 30 days" }
            @if data.partial {
                (notice("ok", &format!("Only the newest {} orders were counted; older days may be incomplete.", read::CHART_SCAN_LIMIT)))
            }
            div.charts {
                figure {
                    figcaption { "Orders created per day" }
                    (chart::bars("orders-chart", "Orders created per day, last 30 days", "bar", &orders, &count_of))
                }
                figure {
                    figcaption { "Paid revenue per day" @if !currency.is_empty() { " (" (currency) ")" } }
                    (chart::bars("revenue-chart", "Paid revenue per day, last 30 days", "bar revenue", &revenue, &money_of))
                }
            }
            details {
                summary { "The numbers" }
                div.table role="region" aria-label="Orders and revenue per day" tabindex="0" {
                    table {
                        thead { tr { th scope="col" { "Day" } th scope="col" { "Orders" } th scope="col" { "Paid revenue" } } }
                        tbody {
                            @for d in data.days.iter().rev() {
                                tr {
                                    td { (time(d.start).get(0..10).unwrap_or_default()) }
                                    td.num { (d.orders) }
                                    td.num { (money(d.revenue, &currency)) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

// ----- orders --------------------------------------------------------------

pub async fn orders(req: &Req<'_>) -> HttpResponse {
    let session = req.session.as_ref();
    // Empty filter fields come from the form's "any" choices: drop them, then
    // read the rest exactly as the API reads its query string.
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(req.query).unwrap_or_default();
    let id_filter = pairs
        .iter()
        .find(|(k, v)| k == "id" && !v.trim().is_empty())
        .map(|(_, v)| v.trim().to_string());
    let kept: Vec<(String, String)> = pairs
        .into_iter()
        .filter(|(k, v)| k != "id" && !v.trim().is_empty())
        .map(|(k, v)| (k, v.trim().to_string()))
        .collect();
    let kept_value = |name: &str| {
        kept.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let filters = filter_form(
        &kept_value("status"),
        &kept_value("userId"),
        id_filter.as_deref().unwrap_or(""),
    );
    let (status, content) = match order_listing(req, &kept, id_filter).await {
        Ok(listing) => listing,
        Err(e) => return failure(session, &e),
    };
    let body = html! {
        h1 { "Orders" }
        (filters)
        (content)
    };
    html(status, page("Orders", session, "/admin/orders", body))
}

/// The Orders page's content for the filters `kept` (or the one order
/// `id_filter` names): a page of the list, or what is wrong with the filters.
/// `Err` is a failure of the service, shown as the error page.
async fn order_listing(
    req: &Req<'_>,
    kept: &[(String, String)],
    id_filter: Option<String>,
) -> Result<(StatusCode, Markup), AppError> {
    let query = serde_urlencoded::to_string(kept).unwrap_or_default();
    let params = crate::http::api::request::list_params(&query, true);
    Ok(match (params, id_filter) {
        (Err(e), _) => (
            StatusCode::BAD_REQUEST,
            notice("error", &sentence(&e, Some("filter the orders"))),
        ),
        (Ok(_), Some(id)) => match uuid::Uuid::try_parse(&id) {
            Err(_) => (
                StatusCode::BAD_REQUEST,
                notice(
                    "error",
                    "An order id looks like 6f0429ea-4344-496d-bd40-1f4e47a6220c (the whole id).",
                ),
            ),
            Ok(id) => match req.api().orders.get(id).await {
                Ok(record) => (StatusCode::OK, order_table(&[record])),
                Err(AppError::OrderNotFound) => (
                    StatusCode::OK,
                    html! { p.empty { "No order has this id." } },
                ),
                Err(e) => return Err(e),
            },
        },
        (Ok(p), None) => {
            let query = ListQuery {
                user: p.user_id.clone(),
                status: p.status,
                expires_before: p.expires_before,
                page: p.page,
                limit: p.limit,
            };
            let found = req.api().orders.list(query).await?;
            (
                StatusCode::OK,
                html! {
                    @if found.items.is_empty() {
                        @if found.total == 0 {
                            p.empty { "No orders match these filters." }
                        } @else {
                            p.empty { "This page is past the last one." }
                        }
                    } @else {
                        (order_table(&found.items))
                    }
                    (pager("/admin/orders", ("order", "orders"), kept, p.page, p.limit, found.total))
                },
            )
        }
    })
}

fn filter_form(status: &str, user: &str, id: &str) -> Markup {
    html! {
        form.filters method="get" action="/admin/orders" role="search" aria-label="Filter orders" {
            div.field {
                label for="f-status" { "Status" }
                select #f-status name="status" {
                    option value="" selected[status.is_empty()] { "Any status" }
                    @for s in OrderStatus::ALL {
                        option value=(s.as_str()) selected[status == s.as_str()] { (s.as_str()) }
                    }
                }
            }
            div.field {
                label for="f-user" { "User id" }
                input #f-user type="text" name="userId" value=(user) maxlength="255";
            }
            div.field {
                label for="f-id" { "Order id" }
                input #f-id type="text" name="id" value=(id) maxlength="36" spellcheck="false";
            }
            div.buttons {
                button type="submit" { "Filter" }
                a href="/admin/orders" { "Clear" }
            }
        }
    }
}

pub fn order_table(records: &[OrderRecord]) -> Markup {
    html! {
        div.table role="region" aria-label="Orders" tabindex="0" {
            table.stack {
                thead {
                    tr {
                        th scope="col" { "Order" }
                        th scope="col" { "User" }
                        th scope="col" { "Status" }
                        th scope="col" { "Plan" }
                        th scope="col" { "Price" }
                        th scope="col" { "Created" }
                    }
                }
                tbody {
                    @for r in records {
                        @let o = &r.order;
                        tr {
                            td data-label="Order" { a.mono href=(format!("/admin/orders/{}", o.id)) { (short(&o.id)) } }
                            td data-label="User" { a href=(user_link(&o.user_id)) { (o.user_id) } }
                            td data-label="Status" { (status_badge(o.status)) }
                            td data-label="Plan" { (o.plan_name) " · " (o.duration.as_str()) }
                            td.num data-label="Price" { (money(o.pricing.final_price, &o.pricing.currency)) }
                            td data-label="Created" { (when(Some(o.created_at))) }
                        }
                    }
                }
            }
        }
    }
}

// ----- attention -----------------------------------------------------------

pub async fn attention(req: &Req<'_>) -> HttpResponse {
    let session = req.session.as_ref();
    let data = match req.api().orders.attention(now_millis()).await {
        Ok(data) => data,
        Err(e) => return failure(session, &e),
    };
    let problem = |r: &OrderRecord| -> String {
        r.task
            .as_ref()
            .map(|t| match (t.error_code, &t.action) {
                (Some(code), _) => code.as_str().to_string(),
                (None, Some(a)) => format!("{} failed {} times", a.action.as_str(), a.failures),
                (None, None) => format!("{} attempts so far", t.attempts),
            })
            .unwrap_or_default()
    };
    let Some(session_ref) = session else {
        return redirect("/admin/login");
    };
    let (no_failed_deliveries, deliveries) =
        super::webhooks::attention_section(req, session_ref).await;
    let (accounts_healthy, accounts) = super::accounts::attention_section(req);
    let body = html! {
        h1 { "Attention" }
        @if data.is_empty() && no_failed_deliveries && accounts_healthy {
            p.empty.all-clear { "Nothing needs attention: no failed orders, no stuck provisioning, no orders waiting for capacity, no failing droplet actions, no failed webhook deliveries, no unhealthy accounts." }
        }
        section aria-labelledby="failed-h" {
            h2 #failed-h { "Failed provisioning (" (data.failed_total) ")" }
            @if data.failed.is_empty() { p.empty { "No FAILED orders." } }
            @else {
                p.hint { "Open an order to retry provisioning or terminate it." }
                (attention_table(&data.failed, &problem))
            }
        }
        section aria-labelledby="stuck-h" {
            h2 #stuck-h { "Provisioning for over 10 minutes or with an error (" (data.stuck.len()) ")" }
            @if data.stuck.is_empty() { p.empty { "No provisioning is stuck." } }
            @else { (attention_table(&data.stuck, &problem)) }
        }
        section aria-labelledby="capacity-h" {
            h2 #capacity-h { "Waiting for capacity (" (data.waiting_capacity.len()) ")" }
            @if data.waiting_capacity.is_empty() { p.empty { "No paid order is waiting for a free slot." } }
            @else {
                p.hint { "No account can take these servers now (NO_CAPACITY): each is placed as soon as a slot opens. Add an account, raise a limit or end a drain to place them sooner; see the Accounts page." }
                (attention_table(&data.waiting_capacity, &problem))
            }
        }
        (accounts)
        section aria-labelledby="actions-h" {
            h2 #actions-h { "Droplet actions failing (" (data.actions_failing.len()) ")" }
            @if data.actions_failing.is_empty() { p.empty { "Every owed power or delete action is on track." } }
            @else { (attention_table(&data.actions_failing, &problem)) }
        }
        (deliveries)
    };
    html(
        StatusCode::OK,
        page("Attention", session, "/admin/attention", body),
    )
}

fn attention_table(records: &[OrderRecord], problem: &dyn Fn(&OrderRecord) -> String) -> Markup {
    html! {
        div.table role="region" aria-label="Orders needing attention" tabindex="0" {
            table {
                thead { tr { th scope="col" { "Order" } th scope="col" { "User" } th scope="col" { "Status" } th scope="col" { "Problem" } th scope="col" { "Since" } } }
                tbody {
                    @for r in records {
                        tr {
                            td { a.mono href=(format!("/admin/orders/{}", r.order.id)) { (short(&r.order.id)) } }
                            td { (r.order.user_id) }
                            td { (status_badge(r.order.status)) }
                            td { (problem(r)) }
                            td { (when(Some(since(r)))) }
                        }
                    }
                }
            }
        }
    }
}

/// When the trouble began: the owed action's request, else the task's start.
fn since(r: &OrderRecord) -> crate::domain::time::Millis {
    match &r.task {
        Some(t) => match &t.action {
            Some(a) => a.requested_at,
            None => t.started_at.unwrap_or(t.created_at),
        },
        None => r.order.updated_at,
    }
}

// ----- backups -------------------------------------------------------------

/// `/admin/backups`: the list, or (POST) a snapshot taken now.
pub async fn backups(req: &Req<'_>) -> HttpResponse {
    if req.post {
        return take_backup(req).await;
    }
    let done = req.query.split('&').any(|p| p == "done=snapshot");
    backups_page(
        req,
        StatusCode::OK,
        done.then(|| notice("ok", "Snapshot written.")),
    )
    .await
}

async fn backups_page(req: &Req<'_>, status: StatusCode, message: Option<Markup>) -> HttpResponse {
    let session = req.session.as_ref();
    let Some(session_ref) = session else {
        return redirect("/admin/login");
    };
    if let Some(backend) = req.api().backups.not_ours() {
        let body = not_ours_body(backend, message);
        return html(status, page("Backups", session, "/admin/backups", body));
    }
    let dir = &req.console.backup_dir;
    let list = match read::snapshots(dir).await {
        Ok(list) => list,
        Err(e) => return failure(session, &e),
    };
    let body = html! {
        h1 { "Backups" }
        @if let Some(message) = message { (message) }
        p { "Snapshots in " code { (dir.display()) } " (" code { "backup.dir" } "). A restore is: stop vpsd, copy a snapshot over the data file, start." }
        form method="post" action="/admin/backups" {
            (csrf(session_ref))
            button type="submit" { "Take a snapshot now" }
        }
        @if list.is_empty() {
            p.empty { "No snapshots yet." }
        } @else {
            div.table role="region" aria-label="Snapshots" tabindex="0" {
                table {
                    thead { tr { th scope="col" { "File" } th scope="col" { "Size" } th scope="col" { "Written" } } }
                    tbody {
                        @for s in &list {
                            tr {
                                td.mono { (s.name) }
                                td.num { (layout::size(s.bytes)) }
                                td { (when(s.modified)) }
                            }
                        }
                    }
                }
            }
        }
    };
    html(status, page("Backups", session, "/admin/backups", body))
}

/// The Backups page on a backend with its own backups: what to use instead,
/// and no button that could only fail.
fn not_ours_body(backend: &str, message: Option<Markup>) -> Markup {
    html! {
        h1 { "Backups" }
        @if let Some(message) = message { (message) }
        p.not-ours data-backend=(backend) {
            "This shop keeps its data in PostgreSQL, so its backups are PostgreSQL's own, not vpsd's: "
            code { "pg_dump -Fc" } " for a copy (restored with " code { "pg_restore" } " into an empty database), and a streaming replica for a standby. vpsd writes no snapshots here, and "
            code { "vpsd backup" } " and " code { "POST /api/v1/internal/backups" } " refuse with NOT_SUPPORTED_ON_BACKEND."
        }
    }
}

/// "Take a snapshot now": the same service call as `POST /internal/backups`.
async fn take_backup(req: &Req<'_>) -> HttpResponse {
    match req.api().backups.snapshot().await {
        Ok(info) => {
            tracing::info!(actor = %req.session.as_ref().map(|s| s.actor_text()).unwrap_or_default(), file = %info.path.display(), "console snapshot");
            redirect("/admin/backups?done=snapshot")
        }
        Err(e) => {
            if let Some(detail) = crate::http::api::error::log_detail(&e) {
                tracing::error!(cause = detail, "console snapshot failed");
            }
            let (status, _, _) = crate::http::api::error::classify(&e);
            let text = sentence(&e, Some("take a snapshot"));
            backups_page(req, status, Some(notice("error", &text))).await
        }
    }
}
