//! Webhook deliveries for operators (SPEC §10): the list and replay. URLs are
//! shown without credentials; secrets never appear.

use serde::Serialize;
use warp::http::StatusCode;

use super::{json_response, request, Call, HttpResponse};
use crate::config::mask_url;
use crate::domain::time::format_millis;
use crate::domain::webhook::{Delivery, DeliveryStatus};
use crate::domain::webhook::{DeliveryPage, DeliveryQuery};
use crate::error::{AppError, FieldError};

pub async fn list(call: Call<'_>) -> Result<HttpResponse, AppError> {
    let query = delivery_query(call.query)?;
    let page = call.state.webhooks.list(query.clone()).await?;
    Ok(json_response(StatusCode::OK, page_json(&page, &query)))
}

pub async fn replay(call: Call<'_>) -> Result<HttpResponse, AppError> {
    request::json_object(call.headers, &call.body, false)?;
    let id = request::order_id(call.id)?;
    let delivery = call.state.webhooks.replay(id).await?;
    Ok(json_response(
        StatusCode::ACCEPTED,
        super::json::data(delivery_json(&delivery)),
    ))
}

/// `status`, `orderId`, `page`, `limit`; unknown parameters are ignored as on
/// the order lists.
fn delivery_query(query: &str) -> Result<DeliveryQuery, AppError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
        .map_err(|_| AppError::bad_request("the query string is malformed"))?;
    let mut q = DeliveryQuery {
        status: None,
        order_id: None,
        page: 1,
        limit: 10,
    };
    let mut errors = Vec::new();
    for (key, value) in pairs {
        match key.as_str() {
            "status" => match DeliveryStatus::parse(&value) {
                Some(s) => q.status = Some(s),
                None => errors.push(FieldError::new(
                    "status",
                    "must be one of pending, delivered, failed",
                )),
            },
            "orderId" => match uuid::Uuid::try_parse(&value) {
                Ok(id) => q.order_id = Some(id),
                Err(_) => errors.push(FieldError::new("orderId", "must be a UUID")),
            },
            "page" => match value.parse::<u32>() {
                Ok(p) if p >= 1 => q.page = p,
                _ => errors.push(FieldError::new("page", "must be an integer of at least 1")),
            },
            "limit" => match value.parse::<u32>() {
                Ok(l) if (1..=100).contains(&l) => q.limit = l,
                _ => errors.push(FieldError::new("limit", "must be an integer from 1 to 100")),
            },
            _ => {}
        }
    }
    if errors.is_empty() {
        Ok(q)
    } else {
        Err(AppError::invalid_fields(errors))
    }
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

#[derive(Serialize)]
struct ListBody {
    data: Vec<DeliveryJson>,
    meta: super::json::Meta,
}

fn page_json(page: &DeliveryPage, q: &DeliveryQuery) -> Vec<u8> {
    let body = ListBody {
        data: page.items.iter().map(delivery_json).collect(),
        meta: super::json::Meta::new(q.page, q.limit, page.total),
    };
    serde_json::to_vec(&body).unwrap_or_default()
}
