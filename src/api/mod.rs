//! HTTP: one warp filter hands every request to [`handle`], which finds the
//! route in the table ([`routes`]), authenticates the caller, reads the body and
//! calls the route's handler. Handlers (grouped by resource: [`orders`],
//! [`internal`], [`ops`]) validate input, call a service and render the SPEC's
//! JSON. Every failure, including unknown routes and bad bodies, leaves as the
//! error envelope.

pub mod auth;
pub mod body;
pub mod client;
pub mod error;
pub mod json;
pub mod request;
pub mod routes;
mod token_cache;

mod internal;
mod ops;
mod orders;
mod paid_period;
mod webhooks;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, Bytes};
use futures_util::Stream;
use warp::http::{HeaderMap, HeaderValue, Method, Response, StatusCode};

use crate::error::AppError;
use crate::service::ops::OpsService;
use crate::service::OrderService;
use auth::{ApiKey, JwtVerifier};
use body::{Body, BodyError};
use routes::{Access, Route};

/// Wrong `X-API-Key`s one client address may send per minute before every
/// internal request from it is 429 for the rest of that minute (SPEC §12).
pub const MAX_KEY_FAILURES: u32 = 20;
/// The window of [`MAX_KEY_FAILURES`] and of the console's failed logins.
pub const FAILURE_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

/// Everything a request handler needs, shared by all requests.
pub struct ApiState {
    pub orders: OrderService,
    pub jwt: JwtVerifier,
    pub api_key: ApiKey,
    pub body_limit: u64,
    /// How long reading a request body may take (`server.body_timeout_ms`).
    pub body_timeout: std::time::Duration,
    /// Health and metrics.
    pub ops: OpsService,
    pub cors_origins: Vec<String>,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub backups: Arc<crate::service::backups::BackupService>,
    pub webhooks: crate::service::webhooks::WebhookService,
    /// `server.trust_forwarded_for`: see [`client::client_address`].
    pub trust_forwarded_for: bool,
    /// Wrong `X-API-Key`s per client address.
    pub key_failures: client::FailureLimiter,
}

/// A request as it arrives, before its body is read: what the API and the
/// console both start from (see `edge`).
pub struct Head {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub headers: HeaderMap,
    /// The client's address (see [`client::client_address`]).
    pub client: Option<IpAddr>,
}

pub type HttpResponse = Response<Vec<u8>>;

/// Who is calling, as authenticated for the route's [`Access`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Anonymous,
    /// A user: the token's `sub`.
    User(String),
    /// The internal API key, with the operator named by `X-Admin-Id`, if any.
    Internal {
        admin: Option<String>,
    },
}

/// What a handler gets: the caller and the request's parts.
pub struct Call<'a> {
    pub state: &'a ApiState,
    pub caller: Caller,
    pub method: &'a Method,
    pub path: &'a str,
    /// The route's `{id}` segment, unparsed (handlers validate it after the body).
    pub id: &'a str,
    pub query: &'a str,
    pub headers: &'a HeaderMap,
    /// Read for POSTs only, under the body limit.
    pub body: Bytes,
    /// What the request is about, for error details (see [`error::Subject`]).
    pub subject: &'a error::Subject,
}

impl Call<'_> {
    /// The user's `sub` (user routes only).
    fn user(&self) -> &str {
        match &self.caller {
            Caller::User(sub) => sub,
            _ => "",
        }
    }

    /// An optional `{"reason"?}` body, then the `{id}`: the SPEC's precedence
    /// (body 400 before a bad id).
    fn reason_and_id(&self) -> Result<(Option<String>, uuid::Uuid), AppError> {
        let map = request::json_object(self.headers, &self.body, false)?;
        let reason = request::cancel_reason(map.as_ref())?;
        Ok((reason, request::order_id(self.id)?))
    }

    /// The `Idempotency-Key` of an internal POST, scoped to the API key.
    fn internal_key(&self) -> Result<Option<crate::service::IdempotencyKey>, AppError> {
        request::idempotency_key(
            self.headers,
            "internal".into(),
            "POST",
            self.path,
            &self.body,
        )
    }

    /// The operator named by `X-Admin-Id` (internal routes only).
    fn admin(&self) -> Option<String> {
        match &self.caller {
            Caller::Internal { admin } => admin.clone(),
            _ => None,
        }
    }
}

/// Handles one request end to end and logs it.
pub async fn handle<S, B>(state: &ApiState, head: Head, body: Body<S>) -> HttpResponse
where
    S: Stream<Item = Result<B, warp::Error>> + Send,
    B: Buf + Send,
{
    let started = Instant::now();
    let request_id = request_id();
    let Head {
        method,
        path,
        query,
        headers,
        client,
    } = head;
    let matched = routes::match_path(&path);
    let route = matched.map(|(route, _)| route);
    let label = route.map_or("unmatched", |r| r.pattern);
    let preflight = method == Method::OPTIONS && !state.cors_origins.is_empty();
    // HEAD is answered wherever GET is: the GET runs, and its body is dropped.
    let head = method == Method::HEAD;
    let serve_as = if head { &Method::GET } else { &method };
    let result = match matched {
        _ if preflight => Ok(empty_response(StatusCode::NO_CONTENT)),
        None => Err(AppError::NotFound),
        Some((route, _)) if !route.methods.contains(serve_as) => Err(AppError::MethodNotAllowed),
        Some((route, id)) => {
            let parts = Parts {
                method: serve_as,
                path: &path,
                id: id.unwrap_or(""),
                query: &query,
                headers: &headers,
                client,
            };
            dispatch(state, route, parts, body).await
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
    if let Some(route) = route.filter(|_| response.status() == StatusCode::METHOD_NOT_ALLOWED) {
        add_allow_header(&mut response, route);
    }
    finish_headers(state, &headers, &mut response, &request_id);
    if head {
        without_body(&mut response);
    }
    record_request(
        state,
        &method,
        label,
        response.status(),
        started,
        (&request_id, client),
    );
    response
}

/// A 405 names the methods the route serves (HEAD wherever GET is).
fn add_allow_header(response: &mut HttpResponse, route: &routes::Route) {
    let mut list: Vec<&str> = route.methods.iter().map(Method::as_str).collect();
    if route.methods.contains(&Method::GET) {
        list.push(Method::HEAD.as_str());
    }
    if let Ok(v) = HeaderValue::from_str(&list.join(", ")) {
        response.headers_mut().insert(warp::http::header::ALLOW, v);
    }
}

/// The request's metrics and its access-log line.
fn record_request(
    state: &ApiState,
    method: &Method,
    label: &str,
    status: StatusCode,
    started: Instant,
    (request_id, client): (&str, Option<IpAddr>),
) {
    let method_label = crate::metrics::method_label(method);
    state
        .metrics
        .http_requests
        .with_label_values(&[label, method_label, status.as_str()])
        .inc();
    state
        .metrics
        .http_duration
        .with_label_values(&[label])
        .observe(started.elapsed().as_secs_f64());
    tracing::info!(
        request_id = %request_id,
        client = %client::display(client),
        method = method_label,
        route = label,
        status = status.as_u16(),
        latency_ms = started.elapsed().as_secs_f64() * 1000.0,
        "request"
    );
}

/// A fresh request id in UUID v4 form. Ids only need to be unique, so instead
/// of 122 random bits from the OS per request (a `getrandom` system call,
/// measurable on a GET by id) they are a random per-process key with a
/// counter mixed into the low 56 bits: unique for 2^56 requests per process,
/// and not sequential to look at.
fn request_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static KEY: std::sync::OnceLock<u128> = std::sync::OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    const LOW_56: u128 = (1 << 56) - 1;
    let key = *KEY.get_or_init(|| uuid::Uuid::new_v4().as_u128());
    let n = u128::from(NEXT.fetch_add(1, Ordering::Relaxed));
    // An odd multiplier is a bijection modulo 2^56; the XOR is one too. The
    // version and variant bits uuid sets lie above the low 56 bits.
    let low = (n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ key) & LOW_56;
    let bits = (key & !LOW_56) | low;
    uuid::Builder::from_random_bytes(bits.to_be_bytes())
        .into_uuid()
        .to_string()
}

/// The parts of a request a route needs besides its body.
struct Parts<'a> {
    method: &'a Method,
    path: &'a str,
    id: &'a str,
    query: &'a str,
    headers: &'a HeaderMap,
    client: Option<IpAddr>,
}

/// Authenticates for the route's access, reads a POST's body, then runs the
/// handler: the SPEC's precedence (401 before 413/400).
async fn dispatch<S, B>(
    state: &ApiState,
    route: &Route,
    parts: Parts<'_>,
    body: Body<S>,
) -> Result<HttpResponse, AppError>
where
    S: Stream<Item = Result<B, warp::Error>> + Send,
    B: Buf + Send,
{
    let caller = match route.access {
        Access::Public => Caller::Anonymous,
        Access::User => Caller::User(state.jwt.user(parts.headers)?),
        Access::Internal => {
            check_api_key(state, parts.headers, parts.client)?;
            Caller::Internal {
                admin: request::admin_id(parts.headers)?,
            }
        }
    };
    let body = if *parts.method == Method::POST {
        match body.read(parts.headers, state.body_limit).await {
            Ok(bytes) => bytes,
            Err(BodyError::Refused(e)) => return Err(e),
            Err(BodyError::TimedOut(limit)) => return Ok(body_timeout_response(limit)),
        }
    } else {
        Bytes::new()
    };
    let subject = error::Subject::of(parts.id, &body);
    let call = Call {
        state,
        caller,
        method: parts.method,
        path: parts.path,
        id: parts.id,
        query: parts.query,
        headers: parts.headers,
        body,
        subject: &subject,
    };
    match (route.handler)(call).await {
        Err(e) if error::names_subject(&e) => Ok(error_response_about(&e, &subject)),
        other => other,
    }
}

/// The internal API key, counting wrong ones per client address: a locked
/// address is refused before its key is even compared.
fn check_api_key(
    state: &ApiState,
    headers: &HeaderMap,
    client: Option<IpAddr>,
) -> Result<(), AppError> {
    if let Err(retry_after_secs) = state.key_failures.check(client) {
        // Debug, not warn: a locked-out guesser would otherwise fill the log.
        tracing::debug!(client = %client::display(client), "internal request refused: too many wrong API keys from this address");
        return Err(AppError::TooManyFailures { retry_after_secs });
    }
    let checked = state.api_key.check(headers);
    if matches!(checked, Err(AppError::ApiKeyInvalid)) {
        state.key_failures.failed(client);
        tracing::warn!(client = %client::display(client), "internal request refused: wrong API key");
    }
    checked
}

/// A body that did not arrive in time: 408 in the envelope, and the
/// connection closes (the rest of the body is never read).
pub(crate) fn body_timeout_response(limit: std::time::Duration) -> HttpResponse {
    let ms = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX);
    let body = serde_json::json!({"error": {
        "code": "REQUEST_TIMEOUT",
        "message": format!("the request body did not arrive within {ms} ms"),
        "details": {"timeoutMs": ms},
    }});
    let mut response = json_response(
        StatusCode::REQUEST_TIMEOUT,
        serde_json::to_vec(&body).unwrap_or_default(),
    );
    response.headers_mut().insert(
        warp::http::header::CONNECTION,
        HeaderValue::from_static("close"),
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

/// A HEAD answer: the GET's status and headers, its length, no body.
fn without_body(response: &mut HttpResponse) {
    let length = std::mem::take(response.body_mut()).len();
    response.headers_mut().insert(
        warp::http::header::CONTENT_LENGTH,
        HeaderValue::from(length),
    );
}

fn empty_response(status: StatusCode) -> HttpResponse {
    let mut response = Response::new(Vec::new());
    *response.status_mut() = status;
    response
}

pub fn error_response(e: &AppError) -> HttpResponse {
    error_response_about(e, &error::Subject::default())
}

/// [`error_response`] naming what the request was about (v1's details).
fn error_response_about(e: &AppError, subject: &error::Subject) -> HttpResponse {
    let (status, body) = error::envelope_about(e, subject);
    let mut response = json_response(status, body);
    if let Some(retry_after_secs) = e.retry_after_secs() {
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
                HeaderValue::from_static("GET, HEAD, POST, OPTIONS"),
            );
        }
    }
}

/// `{"data": <order>}` with `status`, operator view.
fn order_response(status: StatusCode, record: &crate::domain::OrderRecord) -> HttpResponse {
    order_response_as(json::View::Operator, status, record)
}

/// `{"data": <order>}` with `status`, as `view` may see it.
fn order_response_as(
    view: json::View,
    status: StatusCode,
    record: &crate::domain::OrderRecord,
) -> HttpResponse {
    json_response(status, json::data(json::order_for(view, record, None)))
}

/// Renders a command's reply. A replay is rendered from the stored outcome by
/// the same code as a fresh one, so it is byte-for-byte the first response,
/// and is marked with `Idempotent-Replayed: true`.
fn respond(
    call: &Call<'_>,
    reply: crate::service::Reply,
    success: StatusCode,
) -> Result<HttpResponse, AppError> {
    respond_as(call, json::View::Operator, reply, success)
}

/// [`respond`] for `view`.
fn respond_as(
    call: &Call<'_>,
    view: json::View,
    reply: crate::service::Reply,
    success: StatusCode,
) -> Result<HttpResponse, AppError> {
    respond_with(call, reply, success, |record| {
        json::data(json::order_for(view, record, None))
    })
}

/// [`respond`] with the success body rendered by `render`. Fresh refusals go
/// back to [`dispatch`], which renders them with the request's subject, as a
/// replayed refusal is rendered here.
fn respond_with(
    call: &Call<'_>,
    reply: crate::service::Reply,
    success: StatusCode,
    render: impl Fn(&crate::domain::OrderRecord) -> Vec<u8>,
) -> Result<HttpResponse, AppError> {
    use crate::service::{Replay, Reply};
    match reply {
        Reply::Fresh(outcome) => outcome.map(|record| json_response(success, render(&record))),
        Reply::Replayed(replay) => {
            let mut response = match replay {
                Replay::Outcome(outcome) => match *outcome {
                    Ok(record) => json_response(success, render(&record)),
                    Err(e) => error_response_about(&e, call.subject),
                },
                Replay::Legacy(old) => {
                    let (status, body) = old.into_sent();
                    json_response(StatusCode::from_u16(status).unwrap_or(StatusCode::OK), body)
                }
            };
            response.headers_mut().insert(
                "idempotent-replayed",
                warp::http::HeaderValue::from_static("true"),
            );
            Ok(response)
        }
    }
}

/// One page of orders (`user` narrows it to one user's), operator view.
async fn list_page(
    state: &ApiState,
    user: Option<String>,
    params: request::ListParams,
) -> Result<HttpResponse, AppError> {
    list_page_as(json::View::Operator, state, user, params).await
}

/// [`list_page`] for `view`.
async fn list_page_as(
    view: json::View,
    state: &ApiState,
    user: Option<String>,
    params: request::ListParams,
) -> Result<HttpResponse, AppError> {
    let query = crate::domain::ListQuery {
        user,
        status: params.status,
        expires_before: params.expires_before,
        page: params.page,
        limit: params.limit,
    };
    let page = state.orders.list(query).await?;
    Ok(json_response(
        StatusCode::OK,
        json::order_page_for(view, &page, params.page, params.limit),
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn request_ids_are_distinct_v4_uuids() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            let id: uuid::Uuid = super::request_id().parse().unwrap();
            assert_eq!(id.get_version_num(), 4);
            assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
            assert!(seen.insert(id));
        }
    }
}
