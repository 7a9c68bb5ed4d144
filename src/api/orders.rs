//! User routes (`/api/v1/orders...`, JWT): the caller's own orders only,
//! rendered in the customer view (see [`super::json::View`]).

use warp::http::{Method, StatusCode};

use super::json::{self, View::Customer};
use super::{
    json_response, list_page_as, order_response_as, request, respond_as, Call, HttpResponse,
};
use crate::error::AppError;

/// GET lists the caller's orders; POST creates one.
pub async fn list_or_create(call: Call<'_>) -> Result<HttpResponse, AppError> {
    if *call.method == Method::POST {
        return create(call).await;
    }
    let params = request::list_params(call.query, false)?;
    list_page_as(Customer, call.state, Some(call.user().to_string()), params).await
}

async fn create(call: Call<'_>) -> Result<HttpResponse, AppError> {
    let user = call.user();
    let scope = format!("user:{user}");
    let key = request::idempotency_key(call.headers, scope, "POST", call.path, &call.body)?;
    // Validation failures under a key are stored too, so they replay exactly.
    let parsed = request::json_object(call.headers, &call.body, true)
        .and_then(|map| request::new_order(map.as_ref().unwrap_or(&Default::default())));
    let reply = call.state.orders.create_order(user, parsed, key).await;
    respond_as(&call, Customer, reply, StatusCode::CREATED)
}

pub async fn get(call: Call<'_>) -> Result<HttpResponse, AppError> {
    let id = request::order_id(call.id)?;
    let body = call
        .state
        .orders
        .rendered_for_user(call.user(), id, |record| {
            json::data(json::order_for(Customer, record, None))
        })
        .await?;
    Ok(json_response(StatusCode::OK, body))
}

pub async fn cancel(call: Call<'_>) -> Result<HttpResponse, AppError> {
    let (reason, id) = call.reason_and_id()?;
    let record = call
        .state
        .orders
        .cancel_by_user(call.user(), id, reason)
        .await?;
    Ok(order_response_as(Customer, StatusCode::OK, &record))
}
