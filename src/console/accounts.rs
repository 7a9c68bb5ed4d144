//! The Accounts page (SPEC §13): each DigitalOcean account's capacity and
//! health as vpsd last checked it, with Refresh, which is the same
//! [`crate::service::ops::OpsService::refresh_account`] call as `POST
//! /internal/cloud/accounts/{name}/refresh`; and the Attention page's list
//! of accounts that take no new servers because their check failed.

use maud::{html, Markup};
use warp::http::StatusCode;

use super::layout::{badge, csrf, notice, page, stamp, when};
use super::parts::sentence;
use super::session::Session;
use super::{html, redirect, HttpResponse, Req};
use crate::domain::fleet::Health;
use crate::http::api::request::account_name;
use crate::service::ops::AccountView;

/// GET `/admin/accounts`; `?refreshed={name}` after a Refresh.
pub async fn accounts(req: &Req<'_>) -> HttpResponse {
    let refreshed = serde_urlencoded::from_str::<Vec<(String, String)>>(req.query)
        .unwrap_or_default()
        .into_iter()
        .find(|(k, _)| k == "refreshed")
        .and_then(|(_, name)| account_name(&name).ok().map(str::to_string));
    let message = refreshed.map(|name| {
        notice(
            "ok",
            &format!("Checking {name} now: its limit, status and droplet count. Reload in a moment to see the result under Checked."),
        )
    });
    accounts_page(req, StatusCode::OK, message)
}

fn accounts_page(req: &Req<'_>, status: StatusCode, message: Option<Markup>) -> HttpResponse {
    let session = req.session.as_ref();
    let Some(session_ref) = session else {
        return redirect("/admin/login");
    };
    let ops = &req.api().ops;
    let sandbox = ops.health().cloud == "sandbox";
    let views = ops.accounts();
    let body = html! {
        h1 { "Accounts" }
        @if let Some(message) = message { (message) }
        p {
            "The DigitalOcean accounts new servers are placed on (" code { "[[cloud.digitalocean.accounts]]" } "): the lowest priority first, then the most free slots, among healthy accounts that are not draining and serve the order's region. Checked every "
            code { "account_refresh_seconds" } " and after a refusal; Refresh checks one now."
        }
        @if sandbox {
            p.hint { "The sandbox cloud: these accounts are simulated (" code { "[[cloud.sandbox.accounts]]" } ")." }
        }
        (table(session_ref, &views))
    };
    html(status, page("Accounts", session, "/admin/accounts", body))
}

fn table(session: &Session, views: &[AccountView]) -> Markup {
    html! {
        div.table role="region" aria-label="DigitalOcean accounts" tabindex="0" {
            table.stack {
                thead {
                    tr {
                        th scope="col" { "Account" }
                        th scope="col" { "Health" }
                        th scope="col" { "Placement" }
                        th scope="col" { "Droplets / limit" }
                        th scope="col" { "Placing" }
                        th scope="col" { "Free slots" }
                        th scope="col" { "Rate limit" }
                        th scope="col" { "Checked" }
                        th scope="col" { "Last error" }
                        th scope="col" { "Refresh" }
                    }
                }
                tbody {
                    @for v in views {
                        @let a = &v.account;
                        tr {
                            td data-label="Account" { span.mono { (a.name) } }
                            td data-label="Health" { (badge(a.health.as_str())) }
                            // Priority, regions and drain: what placement reads, one line each.
                            td data-label="Placement" {
                                div {
                                    "priority " (a.priority) br;
                                    @if a.regions.is_empty() { "any region" } @else { (a.regions.join(", ")) }
                                    br;
                                    @if a.drain { strong { "draining" } } @else { "not draining" }
                                }
                            }
                            td.num data-label="Droplets / limit" {
                                div {
                                    (a.droplets) " / "
                                    @match a.droplet_limit { Some(l) => (l.to_string()), None => "—" }
                                    @if let Some(cap) = a.max_droplets { br; span.hint { "capped at " (cap) } }
                                }
                            }
                            td.num data-label="Placing" { (a.placing) }
                            td.num data-label="Free slots" { (a.free_slots()) }
                            td.num data-label="Rate limit" {
                                @match v.rate_limit_remaining { Some(n) => (n), None => "—" }
                            }
                            td data-label="Checked" { div { (stamp(v.checked_at)) } }
                            td data-label="Last error" {
                                @match &v.last_error {
                                    Some(e) => span.error-text { (e) },
                                    None => "—",
                                }
                            }
                            td data-label="Refresh" {
                                form.inline method="post" action=(format!("/admin/accounts/{}/refresh", a.name)) {
                                    (csrf(session))
                                    button type="submit" aria-label=(format!("Refresh {}", a.name)) { "Refresh" }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// POST `/admin/accounts/{name}/refresh`.
pub async fn refresh(req: &Req<'_>) -> HttpResponse {
    let session = req.session.as_ref();
    let done = account_name(req.id).and_then(|name| req.api().ops.refresh_account(name));
    match done {
        Ok(()) => {
            tracing::info!(
                actor = %session.map(Session::actor_text).unwrap_or_default(),
                account = req.id,
                "console account refresh"
            );
            let query = serde_urlencoded::to_string([("refreshed", req.id)]).unwrap_or_default();
            redirect(&format!("/admin/accounts?{query}"))
        }
        Err(e) => {
            let (status, _, _) = crate::http::api::error::classify(&e);
            let text = sentence(&e, Some("refresh the account"));
            accounts_page(req, status, Some(notice("error", &text)))
        }
    }
}

/// The Attention page's section: accounts whose last check failed, which
/// take no new servers until they answer again (`true`: none).
pub fn attention_section(req: &Req<'_>) -> (bool, Markup) {
    let unhealthy: Vec<AccountView> = req
        .api()
        .ops
        .accounts()
        .into_iter()
        // Before its first check an account is not known to be unhealthy.
        .filter(|v| v.checked_at.is_some() && v.account.health != Health::Ok)
        .collect();
    let markup = html! {
        section aria-labelledby="accounts-h" {
            h2 #accounts-h { "Unhealthy DigitalOcean accounts (" (unhealthy.len()) ")" }
            @if unhealthy.is_empty() {
                p.empty { "Every account answered its last check." }
            } @else {
                p {
                    "No new servers go to these until a check succeeds: "
                    strong { "unauthorized" } " needs a new token and a reload, "
                    strong { "locked" } " DigitalOcean's support, "
                    strong { "unreachable" } " usually only time. "
                    a href="/admin/accounts" { "Refresh them on the Accounts page" } "."
                }
                div.table role="region" aria-label="Unhealthy accounts" tabindex="0" {
                    table {
                        thead { tr { th scope="col" { "Account" } th scope="col" { "Health" } th scope="col" { "Last error" } th scope="col" { "Checked" } } }
                        tbody {
                            @for v in &unhealthy {
                                tr {
                                    td { a.mono href="/admin/accounts" { (v.account.name) } }
                                    td { (badge(v.account.health.as_str())) }
                                    td { @match &v.last_error { Some(e) => span.error-text { (e) }, None => "—" } }
                                    td { (when(v.checked_at)) }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    (unhealthy.is_empty(), markup)
}
