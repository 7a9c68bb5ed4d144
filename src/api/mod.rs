//! HTTP: one warp filter hands every request to [`handle`], which routes by the
//! table in [`routes`], authenticates, reads and validates input, calls the
//! service, and renders the SPEC's JSON. Every failure, including unknown routes
//! and bad bodies, leaves as the error envelope.

pub mod auth;
pub mod error;
pub mod json;
pub mod request;
pub mod routes;

mod handlers;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use bytes::Buf;
use futures_util::Stream;
use warp::http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use warp::Filter;

use crate::error::AppError;
use crate::service::OrderService;
use auth::{ApiKey, JwtVerifier};
use routes::Route;

/// Everything a request handler needs, shared by all requests.
pub struct ApiState {
    pub orders: OrderService,
    pub jwt: JwtVerifier,
    pub api_key: ApiKey,
    pub body_limit: u64,
    /// Shown by `/health` (`sandbox` or `digitalocean`); its call counters
    /// feed `/metrics`.
    pub cloud: Arc<dyn crate::cloud::Cloud>,
    pub cors_origins: Vec<String>,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub backups: Arc<crate::service::backups::BackupService>,
}

pub type HttpResponse = Response<Vec<u8>>;

/// The single filter serving the whole API.
pub fn filter(
    state: Arc<ApiState>,
) -> impl Filter<Extract = (HttpResponse,), Error = Infallible> + Clone + Send + Sync + 'static {
    let query = warp::query::raw().or(warp::any().map(String::new)).unify();
    warp::method()
        .and(warp::path::full())
        .and(query)
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .then(
            move |method: Method,
                  path: warp::path::FullPath,
                  query: String,
                  headers: HeaderMap,
                  body| {
                let state = state.clone();
                async move { handle(&state, method, path.as_str(), &query, headers, body).await }
            },
        )
        .recover(|_rejection: warp::Rejection| async move {
            // The filter above accepts every request; a rejection can only come
            // from warp itself (e.g. a malformed query), and still gets the envelope.
            Ok::<_, Infallible>(error_response(&AppError::bad_request(
                "the request is malformed",
            )))
        })
        .unify()
}

/// Handles one request end to end and logs it.
pub async fn handle<S, B>(
    state: &ApiState,
    method: Method,
    path: &str,
    query: &str,
    headers: HeaderMap,
    body: S,
) -> HttpResponse
where
    S: Stream<Item = Result<B, warp::Error>> + Send,
    B: Buf + Send,
{
    let started = Instant::now();
    let request_id = uuid::Uuid::new_v4().to_string();
    let route = routes::match_path(path);
    let label = route.as_ref().map(Route::pattern).unwrap_or("unmatched");
    let allowed = route.as_ref().map(Route::methods);
    let preflight = method == Method::OPTIONS && !state.cors_origins.is_empty();
    let result = if preflight {
        Ok(empty_response(StatusCode::NO_CONTENT))
    } else {
        match route {
            None => Err(AppError::NotFound),
            Some(route) if !route.methods().contains(&method) => Err(AppError::MethodNotAllowed),
            Some(route) => {
                handlers::dispatch(state, route, &method, path, query, &headers, body).await
            }
        }
    };
    let mut response = match result {
        Ok(response) => response,
        Err(e) => {
            if let Some(detail) = error::log_detail(&e) {
                tracing::error!(request_id = %request_id, route = label, cause = detail, "request failed");
            }
            error_response(&e)
        }
    };
    if response.status() == StatusCode::METHOD_NOT_ALLOWED {
        if let Some(methods) = allowed {
            let list: Vec<&str> = methods.iter().map(Method::as_str).collect();
            if let Ok(v) = HeaderValue::from_str(&list.join(", ")) {
                response.headers_mut().insert(warp::http::header::ALLOW, v);
            }
        }
    }
    finish_headers(state, &headers, &mut response, &request_id);
    let status = response.status();
    state
        .metrics
        .http_requests
        .with_label_values(&[label, method.as_str(), status.as_str()])
        .inc();
    state
        .metrics
        .http_duration
        .with_label_values(&[label])
        .observe(started.elapsed().as_secs_f64());
    tracing::info!(
        request_id = %request_id,
        method = %method,
        route = label,
        status = status.as_u16(),
        latency_ms = started.elapsed().as_secs_f64() * 1000.0,
        "request"
    );
    response
}

pub fn json_response(status: StatusCode, body: Vec<u8>) -> HttpResponse {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        warp::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn empty_response(status: StatusCode) -> HttpResponse {
    let mut response = Response::new(Vec::new());
    *response.status_mut() = status;
    response
}

pub fn error_response(e: &AppError) -> HttpResponse {
    let (status, body) = error::envelope(e);
    let mut response = json_response(status, body);
    if let AppError::RateLimited { retry_after_secs } = e {
        if let Ok(v) = HeaderValue::from_str(&retry_after_secs.to_string()) {
            response
                .headers_mut()
                .insert(warp::http::header::RETRY_AFTER, v);
        }
    }
    response
}

/// Headers every response carries: request id, no caching of API data, no
/// MIME sniffing, and CORS when an allow-list is configured.
fn finish_headers(
    state: &ApiState,
    request: &HeaderMap,
    response: &mut HttpResponse,
    request_id: &str,
) {
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert("x-request-id", v);
    }
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        warp::http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    if let Some(origin) = request.get(warp::http::header::ORIGIN) {
        let allowed = origin
            .to_str()
            .is_ok_and(|o| state.cors_origins.iter().any(|a| a == o || a == "*"));
        if allowed {
            headers.insert("access-control-allow-origin", origin.clone());
            headers.insert("vary", HeaderValue::from_static("Origin"));
            headers.insert(
                "access-control-allow-headers",
                HeaderValue::from_static(
                    "authorization, content-type, idempotency-key, x-api-key, x-admin-id",
                ),
            );
            headers.insert(
                "access-control-allow-methods",
                HeaderValue::from_static("GET, POST, OPTIONS"),
            );
        }
    }
}
