//! Customer actions (SPEC §14): `/orders/{id}/actions` for the owner (with
//! the cooldown), its aliases `/reboot`, `/power-off`, `/power-on`, and
//! `/internal/orders/{id}/actions` for admins (without it).

use warp::http::StatusCode;

use super::json::{self, View};
use super::{json_response, request, respond_with, Call, HttpResponse};
use crate::domain::customer_action::ActionType;
use crate::domain::OrderRecord;
use crate::error::AppError;
use crate::service::actions::{ActionPage, ActionRequest, Requester};

/// GET lists the order's actions; POST asks for one.
pub async fn own(call: Call<'_>) -> Result<HttpResponse, AppError> {
    let who = Requester::Owner(call.user().to_string());
    list_or_ask(call, who, View::Customer).await
}

pub async fn admin(call: Call<'_>) -> Result<HttpResponse, AppError> {
    let who = Requester::Admin(call.admin());
    list_or_ask(call, who, View::Operator).await
}

pub async fn own_one(call: Call<'_>) -> Result<HttpResponse, AppError> {
    let owner = call.user().to_string();
    one(call, Some(&owner), View::Customer).await
}

pub async fn admin_one(call: Call<'_>) -> Result<HttpResponse, AppError> {
    one(call, None, View::Operator).await
}

/// The Webrana UI's `POST /orders/{id}/reboot` (no body).
pub async fn reboot(call: Call<'_>) -> Result<HttpResponse, AppError> {
    alias(call, ActionType::Reboot).await
}

pub async fn power_off(call: Call<'_>) -> Result<HttpResponse, AppError> {
    alias(call, ActionType::PowerOff).await
}

pub async fn power_on(call: Call<'_>) -> Result<HttpResponse, AppError> {
    alias(call, ActionType::PowerOn).await
}

async fn list_or_ask(call: Call<'_>, who: Requester, view: View) -> Result<HttpResponse, AppError> {
    if *call.method == warp::http::Method::POST {
        let parsed = request::json_object(call.headers, &call.body, true).and_then(|map| {
            let asked = request::customer_action(map.as_ref().unwrap_or(&Default::default()))?;
            Ok((request::order_id(call.id)?, asked))
        });
        return ask(call, who, view, parsed).await;
    }
    let id = request::order_id(call.id)?;
    let (page, limit) = request::page_params(call.query)?;
    let found = call
        .state
        .orders
        .actions(who.owner(), id, page, limit)
        .await?;
    Ok(json_response(
        StatusCode::OK,
        page_body(view, &found, page, limit),
    ))
}

async fn alias(call: Call<'_>, kind: ActionType) -> Result<HttpResponse, AppError> {
    let who = Requester::Owner(call.user().to_string());
    let parsed = request::no_input(call.headers, &call.body).and_then(|()| {
        let asked = ActionRequest {
            kind,
            image_id: None,
        };
        Ok((request::order_id(call.id)?, asked))
    });
    ask(call, who, View::Customer, parsed).await
}

/// The 202 with the action as committed; a replay renders the same action
/// from the stored outcome.
async fn ask(
    call: Call<'_>,
    who: Requester,
    view: View,
    parsed: Result<(uuid::Uuid, ActionRequest), AppError>,
) -> Result<HttpResponse, AppError> {
    let key = match &who {
        Requester::Owner(sub) => request::idempotency_key(
            call.headers,
            format!("user:{sub}"),
            "POST",
            call.path,
            &call.body,
        )?,
        Requester::Admin(_) => call.internal_key()?,
    };
    let reply = call.state.orders.request_action(who, parsed, key).await;
    respond_with(&call, reply, StatusCode::ACCEPTED, |record| {
        action_body(view, record)
    })
}

fn action_body(view: View, record: &OrderRecord) -> Vec<u8> {
    let action = record
        .task
        .as_ref()
        .and_then(|t| t.customer_action.as_ref());
    json::data(action.map(|a| json::action_for(view, a)))
}

async fn one(call: Call<'_>, owner: Option<&str>, view: View) -> Result<HttpResponse, AppError> {
    let id = request::order_id(call.id)?;
    let action_id = request::action_id(call.item)?;
    let action = call.state.orders.action(owner, id, action_id).await?;
    let body = json::data(json::action_for(view, &action));
    Ok(json_response(StatusCode::OK, body))
}

fn page_body(view: View, found: &ActionPage, page: u32, limit: u32) -> Vec<u8> {
    let items = found
        .items
        .iter()
        .map(|a| json::action_for(view, a))
        .collect();
    json::list(items, json::Meta::new(page, limit, found.total))
}
