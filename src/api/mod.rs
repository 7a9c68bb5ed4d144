//! The JSON API. The edge (`crate::http::edge`) finds a request's route in the one
//! route table, answers 404/405, and authenticates the caller with the
//! functions here; [`serve`] then reads the body and calls the route's
//! handler. Handlers (grouped by resource: [`orders`], [`internal`], [`ops`])
//! validate input, call a service and render the SPEC's JSON. Every failure,
//! including unknown routes and bad bodies, leaves as the error envelope.

pub mod auth;
pub mod body;
pub mod client;
pub mod error;
pub use crate::json;
pub mod request;
mod token_cache;

pub(crate) mod accounts;
pub(crate) mod actions;
pub(crate) mod internal;
pub(crate) mod ops;
pub(crate) mod orders;
pub(crate) mod paid_period;
pub(crate) mod webhooks;
pub(crate) mod webrana;

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use futures_util::Stream;
use warp::http::{HeaderMap, HeaderValue, Method, Response, StatusCode};

use crate::error::AppError;
use crate::service::ops::OpsService;
use crate::service::OrderService;
use auth::{ApiKey, JwtVerifier};
use body::{Body, BodyError};

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
    /// The route's `{id}` (or `{name}`) segment, unparsed (handlers validate it after the body).
    pub id: &'a str,
    /// A second variable segment (`{actionId}`), unparsed; `""` elsewhere.
    pub item: &'a str,
    pub query: &'a str,
    pub headers: &'a HeaderMap,
    /// Read for POSTs and PATCHes only, under the body limit.
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

/// A handler's future.
pub type Pending<'a> = Pin<Box<dyn Future<Output = Result<HttpResponse, AppError>> + Send + 'a>>;
/// What an API route runs: `async fn(Call) -> Result<HttpResponse, AppError>`.
pub type Handler = for<'a> fn(Call<'a>) -> Pending<'a>;

/// The parts of a request a route needs besides its body.
pub(crate) struct Parts<'a> {
    /// GET for a HEAD request: the GET runs, the edge drops its body.
    pub method: &'a Method,
    pub path: &'a str,
    pub id: &'a str,
    pub item: &'a str,
    pub query: &'a str,
    pub headers: &'a HeaderMap,
}

/// Reads a POST's or PATCH's body, then runs the handler for `caller`, whom the edge
/// has authenticated already: the SPEC's precedence (401 before 413/400).
pub(crate) async fn serve<S, B>(
    state: &ApiState,
    caller: Caller,
    handler: Handler,
    parts: Parts<'_>,
    body: Body<S>,
) -> Result<HttpResponse, AppError>
where
    S: Stream<Item = Result<B, warp::Error>> + Send,
    B: Buf + Send,
{
    let body = if *parts.method == Method::POST || *parts.method == Method::PATCH {
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
        item: parts.item,
        query: parts.query,
        headers: parts.headers,
        body,
        subject: &subject,
    };
    match handler(call).await {
        Err(e) if error::names_subject(&e) => Ok(error_response_about(&e, &subject)),
        other => other,
    }
}

/// A user route's caller: the bearer token's `sub`, or 401.
pub(crate) fn user_caller(state: &ApiState, headers: &HeaderMap) -> Result<Caller, AppError> {
    Ok(Caller::User(state.jwt.user(headers)?))
}

/// An internal route's caller: the API key, then the operator `X-Admin-Id`
/// names.
pub(crate) fn internal_caller(
    state: &ApiState,
    headers: &HeaderMap,
    client: Option<IpAddr>,
) -> Result<Caller, AppError> {
    check_api_key(state, headers, client)?;
    Ok(Caller::Internal {
        admin: request::admin_id(headers)?,
    })
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

/// CORS, when an allow-list is configured and the request's `Origin` is on it.
pub(crate) fn cors_headers(state: &ApiState, request: &HeaderMap, response: &mut HttpResponse) {
    let Some(origin) = request.get(warp::http::header::ORIGIN) else {
        return;
    };
    let allowed = origin
        .to_str()
        .is_ok_and(|o| state.cors_origins.iter().any(|a| a == o || a == "*"));
    if !allowed {
        return;
    }
    let headers = response.headers_mut();
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
        HeaderValue::from_static("GET, HEAD, POST, PATCH, OPTIONS"),
    );
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
/// back to [`serve`], which renders them with the request's subject, as a
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
