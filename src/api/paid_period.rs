//! Routes for the paid period (SPEC §9): terminate (user and admin), suspend,
//! unsuspend, renewals and expiry changes. The service decides; these read the
//! body, then the id, in the SPEC's precedence.

use warp::http::StatusCode;

use super::{order_response, order_response_as, request, respond, Call, HttpResponse};
use crate::error::AppError;

/// The owner terminates (`POST /orders/{id}/terminate`, `{"reason"?}`, no
/// body needed); the reason goes on the TERMINATED history row.
pub async fn terminate_own(call: Call<'_>) -> Result<HttpResponse, AppError> {
    let (reason, id) = call.reason_and_id()?;
    let orders = &call.state.orders;
    let record = orders.terminate_by_user(call.user(), id, reason).await?;
    Ok(order_response_as(
        super::json::View::Customer,
        StatusCode::OK,
        &record,
    ))
}

pub async fn terminate(call: Call<'_>) -> Result<HttpResponse, AppError> {
    let map = request::json_object(call.headers, &call.body, false)?;
    let (why, note) = request::admin_termination(map.as_ref())?;
    let id = request::order_id(call.id)?;
    let orders = &call.state.orders;
    let record = orders
        .terminate_by_admin(id, why, note, call.admin())
        .await?;
    Ok(order_response(StatusCode::OK, &record))
}

pub async fn suspend(call: Call<'_>) -> Result<HttpResponse, AppError> {
    let (reason, id) = call.reason_and_id()?;
    let record = call.state.orders.suspend(id, reason, call.admin()).await?;
    Ok(order_response(StatusCode::OK, &record))
}

pub async fn unsuspend(call: Call<'_>) -> Result<HttpResponse, AppError> {
    let (reason, id) = call.reason_and_id()?;
    let record = call
        .state
        .orders
        .unsuspend(id, reason, call.admin())
        .await?;
    Ok(order_response(StatusCode::OK, &record))
}

pub async fn renew(call: Call<'_>) -> Result<HttpResponse, AppError> {
    let key = call.internal_key()?;
    let parsed = request::json_object(call.headers, &call.body, true).and_then(|map| {
        let renewing = request::renewal(map.as_ref().unwrap_or(&Default::default()))?;
        Ok((request::order_id(call.id)?, renewing))
    });
    let reply = call.state.orders.renew(parsed, call.admin(), key).await;
    respond(&call, reply, StatusCode::OK)
}

pub async fn expiry(call: Call<'_>) -> Result<HttpResponse, AppError> {
    let map = request::json_object(call.headers, &call.body, true)?;
    let (at, reason) = request::expiry_change(map.as_ref().unwrap_or(&Default::default()))?;
    let id = request::order_id(call.id)?;
    let orders = &call.state.orders;
    let record = orders.set_expiry(id, at, reason, call.admin()).await?;
    Ok(order_response(StatusCode::OK, &record))
}
