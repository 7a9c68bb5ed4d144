//! One function per route: authenticate, read input, call the service, render.
//! The order of checks is the SPEC's precedence: auth 401, then body/query 400,
//! then missing 404 / foreign 403, then state 409.

use std::sync::Arc;

use bytes::{Buf, Bytes};
use futures_util::Stream;
use serde_json::json;
use warp::http::{HeaderMap, Method, StatusCode};

use super::request::{self, ListParams};
use super::routes::Route;
use super::{error, json, json_response, ApiState, HttpResponse};
use crate::error::AppError;
use crate::service::{PaymentUpdate, Renderer, Reply};
use crate::store::read::ListQuery;
use crate::store::{OrderRecord, StoredResponse};

pub async fn dispatch<S, B>(
    state: &ApiState,
    route: Route,
    method: &Method,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: S,
) -> Result<HttpResponse, AppError>
where
    S: Stream<Item = Result<B, warp::Error>> + Send,
    B: Buf + Send,
{
    // Internal routes: the key, then the optional operator id (400 if malformed).
    let admin = if route.is_internal() {
        state.api_key.check(headers)?;
        request::admin_id(headers)?
    } else {
        None
    };
    match route {
        Route::Health => Ok(health(state).await),
        Route::OpenApi => Ok(json_response(StatusCode::OK, OPENAPI.as_bytes().to_vec())),
        Route::Metrics => metrics(state).await,
        Route::InternalBackups => {
            let body = read(state, headers, body).await?;
            request::json_object(headers, &body, false)?;
            let info = state.backups.snapshot().await?;
            let body = json::data(json!({
                "file": info.path.display().to_string(),
                "bytes": info.bytes,
                "orders": info.orders,
                "createdAt": crate::domain::time::format_millis(info.created_at),
            }));
            Ok(json_response(StatusCode::CREATED, body))
        }
        Route::Orders if method == Method::POST => {
            let user = state.jwt.user(headers)?;
            let body = read(state, headers, body).await?;
            create_order(state, &user, path, headers, &body).await
        }
        Route::Orders => {
            let user = state.jwt.user(headers)?;
            let params = request::list_params(query, false)?;
            list(state, Some(user), params).await
        }
        Route::Order(id) => {
            let user = state.jwt.user(headers)?;
            let id = request::order_id(&id)?;
            let record = state.orders.get_for_user(&user, id).await?;
            Ok(order_response(StatusCode::OK, &record))
        }
        Route::OrderCancel(id) => {
            let user = state.jwt.user(headers)?;
            let body = read(state, headers, body).await?;
            let map = request::json_object(headers, &body, false)?;
            let reason = request::cancel_reason(map.as_ref())?;
            let id = request::order_id(&id)?;
            let record = state.orders.cancel_by_user(&user, id, reason).await?;
            Ok(order_response(StatusCode::OK, &record))
        }
        Route::InternalOrders => {
            let params = request::list_params(query, true)?;
            let user = params.user_id.clone();
            list(state, user, params).await
        }
        Route::InternalOrder(id) => {
            let admin_id = request::order_id(&id)?;
            let (record, history) = state.orders.get_with_history(admin_id).await?;
            let body = json::data(json::order(&record, Some(&history)));
            Ok(json_response(StatusCode::OK, body))
        }
        Route::InternalPaymentStatus(id) => {
            let body = read(state, headers, body).await?;
            let key = request::idempotency_key(headers, "internal".into(), "POST", path, &body)?;
            let parsed = request::json_object(headers, &body, true).and_then(|map| {
                let (paid, notes) =
                    request::payment_status(map.as_ref().unwrap_or(&Default::default()))?;
                let id = request::order_id(&id)?;
                Ok(PaymentUpdate { id, paid, notes })
            });
            let reply = state
                .orders
                .set_payment_status(parsed, admin, key, renderer(StatusCode::OK))
                .await;
            respond(reply, StatusCode::OK)
        }
        Route::InternalCancel(id) => {
            let body = read(state, headers, body).await?;
            let map = request::json_object(headers, &body, false)?;
            let reason = request::cancel_reason(map.as_ref())?;
            let id = request::order_id(&id)?;
            let record = state.orders.cancel_by_admin(id, reason, admin).await?;
            Ok(order_response(StatusCode::OK, &record))
        }
        Route::InternalRetry(id) => {
            let body = read(state, headers, body).await?;
            request::json_object(headers, &body, false)?;
            let id = request::order_id(&id)?;
            let record = state.orders.retry_provisioning(id, admin).await?;
            Ok(order_response(StatusCode::ACCEPTED, &record))
        }
    }
}

async fn read<S, B>(state: &ApiState, headers: &HeaderMap, body: S) -> Result<Bytes, AppError>
where
    S: Stream<Item = Result<B, warp::Error>> + Send,
    B: Buf + Send,
{
    request::read_body(headers, body, state.body_limit).await
}

async fn create_order(
    state: &ApiState,
    user: &str,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<HttpResponse, AppError> {
    let key = request::idempotency_key(headers, format!("user:{user}"), "POST", path, body)?;
    // Validation failures under a key are stored too, so they replay exactly.
    let parsed = request::json_object(headers, body, true)
        .and_then(|map| request::new_order(map.as_ref().unwrap_or(&Default::default())));
    let reply = state
        .orders
        .create_order(user, parsed, key, renderer(StatusCode::CREATED))
        .await;
    respond(reply, StatusCode::CREATED)
}

async fn list(
    state: &ApiState,
    user: Option<String>,
    params: ListParams,
) -> Result<HttpResponse, AppError> {
    let page = state
        .orders
        .list(ListQuery {
            user,
            status: params.status,
            page: params.page,
            limit: params.limit,
        })
        .await?;
    Ok(json_response(
        StatusCode::OK,
        json::order_page(&page, params.page, params.limit),
    ))
}

/// The OpenAPI 3 document of this API (kept beside the route table; a test
/// checks that the two list the same operations).
pub const OPENAPI: &str = include_str!("openapi.json");

/// Prometheus text: the registry plus gauges read now.
async fn metrics(state: &ApiState) -> Result<HttpResponse, AppError> {
    let store = state.orders.store().clone();
    let (counts, file_bytes) = tokio::task::spawn_blocking(move || {
        let bytes = std::fs::metadata(store.path())
            .map(|m| m.len())
            .unwrap_or(0);
        (store.status_counts(), bytes)
    })
    .await
    .map_err(|e| AppError::Internal(format!("metrics task failed: {e}")))?;
    let m = &state.metrics;
    for (status, n) in counts? {
        m.orders
            .with_label_values(&[status.as_str()])
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    m.data_file_bytes
        .set(i64::try_from(file_bytes).unwrap_or(i64::MAX));
    crate::metrics::Metrics::catch_up(&m.cloud_calls, state.cloud.calls_sent());
    crate::metrics::Metrics::catch_up(&m.cloud_rate_limited, state.cloud.rate_limited_count());
    let last = m.backup_last_success.get();
    let age = if last > 0 {
        crate::domain::time::now_millis() / 1000 - last
    } else {
        -1
    };
    m.backup_age_seconds.set(age);
    let body = m
        .render()
        .map_err(|e| AppError::Internal(format!("cannot render metrics: {e}")))?;
    let mut response = json_response(StatusCode::OK, body);
    response.headers_mut().insert(
        warp::http::header::CONTENT_TYPE,
        warp::http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(response)
}

async fn health(state: &ApiState) -> HttpResponse {
    let readable = crate::store::probe(state.orders.store());
    let (status, code) = if readable {
        ("ok", StatusCode::OK)
    } else {
        ("degraded", StatusCode::SERVICE_UNAVAILABLE)
    };
    let body = json::data(json!({
        "status": status,
        "version": env!("CARGO_PKG_VERSION"),
        "storage": if readable { "ok" } else { "unavailable" },
        "cloud": state.cloud.name(),
        "catalog": state.orders.catalog().source_name(),
    }));
    json_response(code, body)
}

fn order_response(status: StatusCode, record: &OrderRecord) -> HttpResponse {
    json_response(status, json::data(json::order(record, None)))
}

/// How a command's outcome is rendered, for the response and for the copy
/// stored under an idempotency key.
fn renderer(success: StatusCode) -> Renderer {
    Arc::new(
        move |outcome: &Result<OrderRecord, AppError>| match outcome {
            Ok(record) => StoredResponse {
                status: success.as_u16(),
                body: json::data(json::order(record, None)),
            },
            Err(e) => {
                let (status, body) = error::envelope(e);
                StoredResponse {
                    status: status.as_u16(),
                    body,
                }
            }
        },
    )
}

fn respond(reply: Reply, success: StatusCode) -> Result<HttpResponse, AppError> {
    match reply {
        Reply::Fresh(Ok(record)) => Ok(order_response(success, &record)),
        Reply::Fresh(Err(e)) => Err(e),
        Reply::Replayed(stored) => {
            let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
            let mut response = json_response(status, stored.body);
            response.headers_mut().insert(
                "idempotent-replayed",
                warp::http::HeaderValue::from_static("true"),
            );
            Ok(response)
        }
    }
}
