//! Operator probes: health (public), the OpenAPI document (public) and
//! Prometheus metrics (API key).

use serde_json::json;
use warp::http::{HeaderValue, StatusCode};

use super::{json, json_response, Call, HttpResponse};
use crate::error::AppError;

/// The OpenAPI 3 document of this API (kept beside the route table; a test
/// checks that the two list the same operations).
pub const OPENAPI: &str = include_str!("openapi.json");

pub async fn health(call: Call<'_>) -> Result<HttpResponse, AppError> {
    let health = call.state.ops.health();
    let (status, code) = if health.storage_ok {
        ("ok", StatusCode::OK)
    } else {
        ("degraded", StatusCode::SERVICE_UNAVAILABLE)
    };
    let body = json::data(json!({
        "status": status,
        "version": env!("CARGO_PKG_VERSION"),
        "storage": if health.storage_ok { "ok" } else { "unavailable" },
        "cloud": health.cloud,
        "catalog": health.catalog,
        "backend": health.backend,
        "backgroundWork": health.background_work,
    }));
    Ok(json_response(code, body))
}

pub async fn openapi(_call: Call<'_>) -> Result<HttpResponse, AppError> {
    Ok(json_response(StatusCode::OK, OPENAPI.as_bytes().to_vec()))
}

pub async fn metrics(call: Call<'_>) -> Result<HttpResponse, AppError> {
    let body = call.state.ops.metrics_text().await?;
    let mut response = json_response(StatusCode::OK, body);
    response.headers_mut().insert(
        warp::http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(response)
}
