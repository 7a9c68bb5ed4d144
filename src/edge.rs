//! The one path every request takes from the connection to a handler, API
//! and console alike. The client's address (the peer `server` recorded, or
//! the trusted `X-Forwarded-For` hop) and a body that can only be read within
//! `server.body_timeout_ms` are worked out here, once; then the route is found
//! in the one table ([`routes`]) and everything around the handler is done
//! here, once, for both: the precedence (404, then 405, then the route's
//! gates), the request id, the HEAD rule, the common headers, the metrics
//! labels and the access-log line. What differs is only how a refusal looks
//! (the API's JSON envelope, the console's HTML page) and the gates a route's
//! [`routes::Access`] names.

// Loaded by path: `http` declares this file with `#[path]`, which makes its
// children resolve from `src/`.
#[path = "edge/routes.rs"]
pub mod routes;

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Buf;
use futures_util::Stream;
use warp::http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use warp::Filter;

use crate::error::AppError;
use crate::http::api::body::Body;
use crate::http::api::client::{self, client_address};
use crate::http::api::{ApiState, Caller, Head, HttpResponse};
use crate::http::console::Console;
use crate::http::server::PeerAddr;
use routes::{Access, Handler, Route, Vars};

/// The filter serving every request: console and API.
pub fn filter(
    console: Option<Arc<Console>>,
    api: Arc<ApiState>,
) -> impl Filter<Extract = (HttpResponse,), Error = Infallible> + Clone + Send + Sync + 'static {
    let query = warp::query::raw().or(warp::any().map(String::new)).unify();
    warp::method()
        .and(warp::path::full())
        .and(query)
        .and(warp::header::headers_cloned())
        .and(warp::ext::optional::<PeerAddr>())
        .and(warp::body::stream())
        .then(
            move |method: Method,
                  path: warp::path::FullPath,
                  query: String,
                  headers: HeaderMap,
                  peer: Option<PeerAddr>,
                  body| {
                let api = api.clone();
                let console = console.clone();
                async move {
                    let client =
                        client_address(peer.map(|p| p.0), &headers, api.trust_forwarded_for);
                    let head = Head {
                        method,
                        path: path.as_str().to_string(),
                        query,
                        headers,
                        client,
                    };
                    let body = Body::new(body, api.body_timeout);
                    handle(&api, console.as_deref(), head, body).await
                }
            },
        )
        .recover(|_rejection: warp::Rejection| async move {
            // The filter above accepts every request; a rejection can only come
            // from warp itself (e.g. a malformed query), and still gets the envelope.
            Ok::<_, Infallible>(crate::http::api::error_response(&AppError::bad_request(
                "the request is malformed",
            )))
        })
        .unify()
}

/// Who answers a request: the API, or the console for its own paths when it
/// is on (when it is off, its paths are the API's unknown routes).
#[derive(Clone, Copy)]
enum Surface<'a> {
    Api,
    Console(&'a Console),
}

impl Surface<'_> {
    /// The metrics and log label of a path no route matches.
    fn unmatched_label(self) -> &'static str {
        match self {
            Surface::Api => "unmatched",
            Surface::Console(_) => "/admin/unmatched",
        }
    }
}

/// Handles one request end to end, records and logs it.
async fn handle<S, B>(
    api: &ApiState,
    console: Option<&Console>,
    head: Head,
    body: Body<S>,
) -> HttpResponse
where
    S: Stream<Item = Result<B, warp::Error>> + Send,
    B: Buf + Send,
{
    let started = Instant::now();
    let request_id = request_id();
    let surface = match console {
        Some(console) if crate::http::console::owns(&head.path) => Surface::Console(console),
        _ => Surface::Api,
    };
    let matched = routes::find(&head.path, matches!(surface, Surface::Console(_)));
    let route = matched.map(|(route, _)| route);
    let label = route.map_or(surface.unmatched_label(), |r| r.pattern);
    let mut response = respond(api, surface, &head, matched, body, (&request_id, label)).await;
    finish(api, surface, &head.headers, &mut response, &request_id);
    if head.method == Method::HEAD {
        without_body(&mut response);
    }
    record_request(
        api,
        &head.method,
        label,
        response.status(),
        started,
        (&request_id, head.client),
    );
    response
}

/// The precedence: a CORS preflight (API), unknown route 404, wrong method
/// 405 (naming the methods the route takes), then the route's gates and its
/// handler. HEAD is answered wherever GET is: the GET runs, and its body is
/// dropped.
async fn respond<S, B>(
    api: &ApiState,
    surface: Surface<'_>,
    head: &Head,
    matched: Option<(&'static Route, Vars<'_>)>,
    body: Body<S>,
    (request_id, label): (&str, &str),
) -> HttpResponse
where
    S: Stream<Item = Result<B, warp::Error>> + Send,
    B: Buf + Send,
{
    let serve_as = if head.method == Method::HEAD {
        &Method::GET
    } else {
        &head.method
    };
    let preflight = head.method == Method::OPTIONS && !api.cors_origins.is_empty();
    match (surface, matched) {
        (Surface::Api, _) if preflight => empty_response(StatusCode::NO_CONTENT),
        (Surface::Api, None) => crate::http::api::error_response(&AppError::NotFound),
        (Surface::Console(console), None) => console.not_found(&head.headers),
        (surface, Some((route, _))) if !route.methods.contains(serve_as) => {
            let mut response = match surface {
                Surface::Api => crate::http::api::error_response(&AppError::MethodNotAllowed),
                Surface::Console(console) => console.method_not_allowed(&head.headers),
            };
            add_allow_header(&mut response, route);
            response
        }
        (surface, Some((route, vars))) => {
            let result = serve(api, surface, (route, vars), head, serve_as, body, label).await;
            result.unwrap_or_else(|e| {
                if let Some(detail) = crate::http::api::error::log_detail(&e) {
                    tracing::error!(request_id = %request_id, route = label, cause = detail, "request failed");
                }
                crate::http::api::error_response(&e)
            })
        }
    }
}

/// The route's gates (its [`Access`]), then its handler.
async fn serve<S, B>(
    api: &ApiState,
    surface: Surface<'_>,
    (route, vars): (&'static Route, Vars<'_>),
    head: &Head,
    method: &Method,
    body: Body<S>,
    label: &str,
) -> Result<HttpResponse, AppError>
where
    S: Stream<Item = Result<B, warp::Error>> + Send,
    B: Buf + Send,
{
    match (route.handler, surface) {
        (Handler::Api(handler), _) => {
            let caller = match route.access {
                Access::User => crate::http::api::user_caller(api, &head.headers)?,
                Access::Internal => {
                    crate::http::api::internal_caller(api, &head.headers, head.client)?
                }
                Access::Public | Access::Console | Access::ConsoleOpen => Caller::Anonymous,
            };
            let parts = crate::http::api::Parts {
                method,
                path: &head.path,
                id: vars.id.unwrap_or(""),
                item: vars.action.unwrap_or(""),
                query: &head.query,
                headers: &head.headers,
            };
            crate::http::api::serve(api, caller, handler, parts, body).await
        }
        (Handler::Console(page), Surface::Console(console)) => {
            let gate = crate::http::console::Gate {
                open: route.access == Access::ConsoleOpen,
                label,
                post: *method == Method::POST,
                id: vars.id.unwrap_or(""),
                action: vars.action.unwrap_or(""),
            };
            Ok(console.serve(gate, page, head, body).await)
        }
        // `routes::find` matches console routes only on the console's paths.
        (Handler::Console(_), Surface::Api) => Err(AppError::NotFound),
    }
}

/// A 405 names the methods the route serves (HEAD wherever GET is).
fn add_allow_header(response: &mut HttpResponse, route: &Route) {
    let mut list: Vec<&str> = route.methods.iter().map(Method::as_str).collect();
    if route.methods.contains(&Method::GET) {
        list.push(Method::HEAD.as_str());
    }
    if let Ok(v) = HeaderValue::from_str(&list.join(", ")) {
        response.headers_mut().insert(warp::http::header::ALLOW, v);
    }
}

/// Headers every response carries: the request id, no MIME sniffing, and no
/// caching unless the handler chose otherwise (the console's stylesheet and
/// icon); then the API's CORS or the console's page policy.
fn finish(
    api: &ApiState,
    surface: Surface<'_>,
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
    if !headers.contains_key(warp::http::header::CACHE_CONTROL) {
        headers.insert(
            warp::http::header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        );
    }
    match surface {
        Surface::Api => crate::http::api::cors_headers(api, request, response),
        Surface::Console(_) => crate::http::console::page_headers(response),
    }
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

/// The request's metrics and its access-log line.
fn record_request(
    api: &ApiState,
    method: &Method,
    label: &str,
    status: StatusCode,
    started: Instant,
    (request_id, client): (&str, Option<IpAddr>),
) {
    let method_label = crate::metrics::method_label(method);
    api.metrics
        .http_requests
        .with_label_values(&[label, method_label, status.as_str()])
        .inc();
    api.metrics
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
