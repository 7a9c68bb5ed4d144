//! Webhook deliveries for operators (SPEC §10): the list and replay. URLs are
//! shown without credentials; secrets never appear.

use serde::Serialize;
use warp::http::StatusCode;

use super::{json_response, request, Call, HttpResponse};
use crate::domain::time::format_millis;
use crate::domain::webhook::Delivery;
use crate::domain::webhook::{DeliveryPage, DeliveryQuery};
use crate::error::AppError;
use crate::url_rules::mask_url;

pub async fn list(call: Call<'_>) -> Result<HttpResponse, AppError> {
    let query = request::delivery_query(call.query)?;
    let page = call.state.webhooks.list(query.clone()).await?;
    Ok(json_response(StatusCode::OK, page_json(&page, &query)))
}

pub async fn replay(call: Call<'_>) -> Result<HttpResponse, AppError> {
    request::no_input(call.headers, &call.body)?;
    let id = request::order_id(call.id)?;
    let delivery = call.state.webhooks.replay(id).await?;
    Ok(json_response(
        StatusCode::ACCEPTED,
        super::json::data(delivery_json(&delivery)),
    ))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryJson {
    id: String,
    event_type: &'static str,
    order_id: String,
    url: String,
    status: &'static str,
    attempts: u32,
    last_attempt_at: Option<String>,
    next_attempt_at: Option<String>,
    last_response_status: Option<u16>,
    last_error: Option<String>,
    created_at: String,
    delivered_at: Option<String>,
}

pub fn delivery_json(d: &Delivery) -> DeliveryJson {
    DeliveryJson {
        id: d.id.to_string(),
        event_type: d.event_type.as_str(),
        order_id: d.order_id.to_string(),
        url: mask_url(&d.url),
        status: d.status.as_str(),
        attempts: d.attempts,
        last_attempt_at: d.last_attempt_at.map(format_millis),
        next_attempt_at: d.next_attempt_at.map(format_millis),
        last_response_status: d.last_response_status,
        last_error: d.last_error.clone(),
        created_at: format_millis(d.created_at),
        delivered_at: d.delivered_at.map(format_millis),
    }
}

fn page_json(page: &DeliveryPage, q: &DeliveryQuery) -> Vec<u8> {
    let items = page.items.iter().map(delivery_json).collect();
    super::json::list(items, super::json::Meta::new(q.page, q.limit, page.total))
}
