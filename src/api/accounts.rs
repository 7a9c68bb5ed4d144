//! The DigitalOcean accounts servers are spread over (SPEC §13), for
//! operators: what vpsd last learnt of each, and a check on demand. Tokens
//! are not part of what the service hands over, so none can leave here.

use serde::Serialize;
use warp::http::StatusCode;

use super::{json_response, request, Call, HttpResponse};
use crate::domain::time::format_millis;
use crate::error::AppError;
use crate::service::ops::AccountView;

pub async fn list(call: Call<'_>) -> Result<HttpResponse, AppError> {
    let accounts: Vec<AccountJson> = call.state.ops.accounts().iter().map(account_json).collect();
    Ok(json_response(StatusCode::OK, super::json::data(accounts)))
}

/// 202: the check runs after the answer (several DigitalOcean calls); its
/// result shows in the list's `checkedAt`.
pub async fn refresh(call: Call<'_>) -> Result<HttpResponse, AppError> {
    request::no_input(call.headers, &call.body)?;
    let name = request::account_name(call.id)?;
    call.state.ops.refresh_account(name)?;
    tracing::info!(account = name, admin = ?call.admin(), "account refresh requested");
    let body = serde_json::json!({"name": name, "refreshing": true});
    Ok(json_response(StatusCode::ACCEPTED, super::json::data(body)))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountJson {
    name: String,
    priority: i64,
    /// Empty: any region.
    regions: Vec<String>,
    drain: bool,
    health: &'static str,
    droplet_limit: Option<u64>,
    droplets: u64,
    placing: u64,
    free_slots: u64,
    rate_limit_remaining: Option<u64>,
    checked_at: Option<String>,
    last_error: Option<String>,
}

pub fn account_json(view: &AccountView) -> AccountJson {
    let a = &view.account;
    AccountJson {
        name: a.name.clone(),
        priority: a.priority,
        regions: a.regions.clone(),
        drain: a.drain,
        health: a.health.as_str(),
        droplet_limit: a.droplet_limit,
        droplets: a.droplets,
        placing: a.placing,
        free_slots: a.free_slots(),
        rate_limit_remaining: view.rate_limit_remaining,
        checked_at: view.checked_at.map(format_millis),
        last_error: view.last_error.clone(),
    }
}
