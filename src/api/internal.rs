//! Internal routes (`/api/v1/internal/...`, API key): every user's orders,
//! payment, cancel, retry and backups, for operators and the payment system.

use serde_json::json;
use warp::http::StatusCode;

use super::HttpResponse;
use super::{json, json_response, list_page, order_response, request, respond_with, Call};
use crate::error::AppError;
use crate::service::PaymentUpdate;

pub async fn list(call: Call<'_>) -> Result<HttpResponse, AppError> {
    let params = request::list_params(call.query, true)?;
    let user = params.user_id.clone();
    list_page(call.state, user, params).await
}

/// The order with its status history and newest customer actions.
pub async fn get(call: Call<'_>) -> Result<HttpResponse, AppError> {
    let id = request::order_id(call.id)?;
    let (record, history, actions) = call.state.orders.admin_detail(id).await?;
    let body = json::data(json::admin_detail(&record, &history, &actions));
    Ok(json_response(StatusCode::OK, body))
}

pub async fn payment_status(call: Call<'_>) -> Result<HttpResponse, AppError> {
    let key = call.internal_key()?;
    let parsed = request::json_object(call.headers, &call.body, true).and_then(|map| {
        let (paid, notes) = request::payment_status(map.as_ref().unwrap_or(&Default::default()))?;
        let id = request::order_id(call.id)?;
        Ok(PaymentUpdate { id, paid, notes })
    });
    let reply = call
        .state
        .orders
        .set_payment_status(parsed, call.admin(), key)
        .await;
    // v1's answer also names the status before the call (SPEC §2).
    respond_with(&call, reply, StatusCode::OK, |record| {
        json::data(json::payment_reply(record))
    })
}

pub async fn cancel(call: Call<'_>) -> Result<HttpResponse, AppError> {
    let (reason, id) = call.reason_and_id()?;
    let orders = &call.state.orders;
    let record = orders.cancel_by_admin(id, reason, call.admin()).await?;
    Ok(order_response(StatusCode::OK, &record))
}

pub async fn retry(call: Call<'_>) -> Result<HttpResponse, AppError> {
    request::no_input(call.headers, &call.body)?;
    let id = request::order_id(call.id)?;
    let record = call
        .state
        .orders
        .retry_provisioning(id, call.admin())
        .await?;
    Ok(order_response(StatusCode::ACCEPTED, &record))
}

/// A consistent online snapshot into `backup.dir`.
pub async fn backup(call: Call<'_>) -> Result<HttpResponse, AppError> {
    request::no_input(call.headers, &call.body)?;
    let info = call.state.backups.snapshot().await?;
    let body = json::data(json!({
        "file": info.path.display().to_string(),
        "bytes": info.bytes,
        "orders": info.orders,
        "createdAt": crate::domain::time::format_millis(info.created_at),
    }));
    Ok(json_response(StatusCode::CREATED, body))
}
