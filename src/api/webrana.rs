//! What the later Webrana UIs call (SPEC §14): the caller's and the
//! operator's dashboard numbers, and the owner's auto-renew wish.

use serde_json::{json, Map, Value};
use warp::http::StatusCode;

use super::json::{self, View::Customer};
use super::{json_response, order_response_as, request, Call, HttpResponse};
use crate::domain::time::now_millis;
use crate::error::AppError;

/// `GET /orders/stats`: the caller's own numbers only.
pub async fn user_stats(call: Call<'_>) -> Result<HttpResponse, AppError> {
    let stats = call.state.orders.user_stats(call.user()).await?;
    let body = json::data(json!({
        "activeServers": stats.active_servers,
        "pendingOrders": stats.pending_orders,
        "totalSpent": stats.total_spent,
    }));
    Ok(json_response(StatusCode::OK, body))
}

/// `GET /internal/stats`: today's orders and revenue, and every status's count.
pub async fn internal_stats(call: Call<'_>) -> Result<HttpResponse, AppError> {
    let stats = call.state.orders.day_stats(now_millis()).await?;
    let count = |status| {
        stats
            .by_status
            .iter()
            .find(|c| c.0 == status)
            .map_or(0, |c| c.1)
    };
    let by_status: Map<String, Value> = crate::domain::OrderStatus::ALL
        .iter()
        .map(|s| (s.as_str().to_string(), Value::from(count(*s))))
        .collect();
    let body = json::data(json!({
        "ordersToday": stats.orders_today,
        "revenueToday": stats.revenue_today,
        "pendingPayment": count(crate::domain::OrderStatus::PendingPayment),
        "activeServers": count(crate::domain::OrderStatus::Active),
        "byStatus": by_status,
    }));
    Ok(json_response(StatusCode::OK, body))
}

/// `PATCH /orders/{id}/auto-renew` `{"autoRenew": bool}`: the body, then the
/// id, in the SPEC's precedence; the owner only.
pub async fn auto_renew(call: Call<'_>) -> Result<HttpResponse, AppError> {
    let map = request::json_object(call.headers, &call.body, true)?;
    let on = request::auto_renew(map.as_ref().unwrap_or(&Map::new()))?;
    let id = request::order_id(call.id)?;
    let record = call
        .state
        .orders
        .set_auto_renew(call.user(), id, on)
        .await?;
    Ok(order_response_as(Customer, StatusCode::OK, &record))
}
