//! The operator console (SPEC §11): server-rendered HTML under `/admin/`,
//! templates compiled into the binary with maud, one stylesheet, no script.
//!
//! `edge` hands it `/admin` and `/admin/...` (only when the console is
//! enabled) with the same client address and time-limited body as the API
//! gets, so every other path reaches the API untouched. Every change it makes
//! goes through the same service calls as the API, with the operator's
//! session standing in for `X-API-Key` and `X-Admin-Id`.
//!
//! Request flow: [`Console::handle`] routes ([`route`]), checks the session
//! (a page without one redirects to the login form, a POST without one is
//! 403), checks the CSRF token of every POST, runs the page, then adds the
//! headers every console response carries ([`finish`]).

mod action_list;
mod actions;
mod chart;
mod form;
mod layout;
mod login;
mod order;
mod pages;
mod parts;
mod session;
mod webhooks;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use futures_util::Stream;
use maud::Markup;
use warp::http::{HeaderMap, HeaderValue, Method, Response, StatusCode};

use crate::api::auth::ApiKey;
use crate::api::body::{Body, BodyError};
use crate::api::client::{self, FailureLimiter};
use crate::api::{ApiState, Head, HttpResponse};
use crate::config::Config;
use session::{Session, Sessions};

/// The whole Content-Security-Policy: no script, no inline style, no framing.
pub const CSP: &str = "default-src 'self'; frame-ancestors 'none'";

/// Largest form body the console reads.
const FORM_LIMIT: u64 = 16 * 1024;

/// The console's state, shared by all its requests.
pub struct Console {
    api: Arc<ApiState>,
    /// Checks the key typed into the login form exactly as `X-API-Key` is checked.
    key: ApiKey,
    sessions: Sessions,
    /// Failed logins per client address.
    limiter: FailureLimiter,
    /// `server.public_url` is https: cookies get `Secure`.
    secure: bool,
    backup_dir: PathBuf,
    /// `webhooks.endpoints` is not empty: the Webhooks page's empty state.
    webhooks_configured: bool,
}

impl Console {
    /// `None` when the console is off (`admin.enabled`, or no API key).
    pub fn from_config(config: &Config, api: Arc<ApiState>) -> Option<Arc<Console>> {
        if !config.console_enabled() {
            return None;
        }
        let secure = config
            .server
            .public_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://"));
        Some(Arc::new(Console {
            api,
            key: ApiKey::new(config.auth.internal_api_key.as_deref()),
            sessions: Sessions::new(Duration::from_secs(config.admin.session_ttl_seconds)),
            limiter: FailureLimiter::new(session::MAX_FAILURES, crate::api::FAILURE_WINDOW),
            secure,
            backup_dir: config.backup.dir.clone(),
            webhooks_configured: !config.webhooks.endpoints.is_empty(),
        }))
    }
}

/// Whether `path` is the console's.
pub(crate) fn owns(path: &str) -> bool {
    path == "/admin" || path.starts_with("/admin/")
}

/// What a page handler gets.
pub(crate) struct Req<'a> {
    console: &'a Console,
    query: &'a str,
    headers: &'a HeaderMap,
    client: Option<IpAddr>,
    /// A POST's form body (under [`FORM_LIMIT`]); empty for GETs.
    form: form::Form,
    /// The operator, on every route that needs one.
    session: Option<Session>,
}

impl Req<'_> {
    fn api(&self) -> &ApiState {
        &self.console.api
    }

    /// The operator's name for the actor `admin:{name}`.
    fn operator(&self) -> Option<String> {
        self.session.as_ref().and_then(|s| s.operator.clone())
    }
}

/// The console's routes. `{id}` is an order id (a delivery id under
/// `webhooks/`), `{action}` an order action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Overview,
    Login,
    Logout,
    Style,
    Icon,
    Orders,
    Order,
    Action,
    Attention,
    Backups,
    Webhooks,
    Replay,
}

impl Route {
    /// The metrics and log label.
    fn label(self) -> &'static str {
        match self {
            Route::Overview => "/admin/",
            Route::Login => "/admin/login",
            Route::Logout => "/admin/logout",
            Route::Style => "/admin/style.css",
            Route::Icon => "/admin/favicon.svg",
            Route::Orders => "/admin/orders",
            Route::Order => "/admin/orders/{id}",
            Route::Action => "/admin/orders/{id}/{action}",
            Route::Attention => "/admin/attention",
            Route::Backups => "/admin/backups",
            Route::Webhooks => "/admin/webhooks",
            Route::Replay => "/admin/webhooks/{id}/replay",
        }
    }

    fn methods(self) -> &'static [Method] {
        const GET: &[Method] = &[Method::GET, Method::HEAD];
        const POST: &[Method] = &[Method::POST];
        const BOTH: &[Method] = &[Method::GET, Method::HEAD, Method::POST];
        match self {
            Route::Login | Route::Action | Route::Backups => BOTH,
            Route::Logout | Route::Replay => POST,
            _ => GET,
        }
    }

    /// Open without a session: the login form and what it needs.
    fn is_public(self) -> bool {
        matches!(self, Route::Login | Route::Style | Route::Icon)
    }
}

/// The route `path` names, with the order id and action segments.
fn route(path: &str) -> Option<(Route, Option<&str>, Option<&str>)> {
    let rest = path.strip_prefix("/admin")?;
    let rest = rest.strip_prefix('/').unwrap_or(rest);
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let parts: Vec<&str> = if rest.is_empty() {
        Vec::new()
    } else {
        rest.split('/').collect()
    };
    Some(match parts.as_slice() {
        [] => (Route::Overview, None, None),
        ["login"] => (Route::Login, None, None),
        ["logout"] => (Route::Logout, None, None),
        ["style.css"] => (Route::Style, None, None),
        ["favicon.svg"] => (Route::Icon, None, None),
        ["orders"] => (Route::Orders, None, None),
        ["orders", id] if !id.is_empty() => (Route::Order, Some(*id), None),
        ["orders", id, action] if !id.is_empty() => (Route::Action, Some(*id), Some(*action)),
        ["attention"] => (Route::Attention, None, None),
        ["backups"] => (Route::Backups, None, None),
        ["webhooks"] => (Route::Webhooks, None, None),
        ["webhooks", id, "replay"] if !id.is_empty() => (Route::Replay, Some(*id), None),
        _ => return None,
    })
}

/// A method label with bounded values (SPEC §12).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

impl Console {
    pub(crate) async fn handle<S, B>(&self, incoming: Head, body: Body<S>) -> HttpResponse
    where
        S: Stream<Item = Result<B, warp::Error>> + Send,
        B: Buf + Send,
    {
        let started = Instant::now();
        let matched = route(&incoming.path);
        let label = matched.map_or("/admin/unmatched", |(r, _, _)| r.label());
        let mut response = self.dispatch(&incoming, matched, body).await;
        finish(&mut response, matched.map(|(r, _, _)| r));
        if incoming.method == Method::HEAD {
            response.body_mut().clear();
        }
        let status = response.status();
        let method = method_label(&incoming.method);
        let metrics = &self.api.metrics;
        metrics
            .http_requests
            .with_label_values(&[label, method, status.as_str()])
            .inc();
        metrics
            .http_duration
            .with_label_values(&[label])
            .observe(started.elapsed().as_secs_f64());
        tracing::info!(
            client = %client::display(incoming.client),
            method,
            route = label,
            status = status.as_u16(),
            latency_ms = started.elapsed().as_secs_f64() * 1000.0,
            "console request"
        );
        response
    }

    async fn dispatch<S, B>(
        &self,
        incoming: &Head,
        matched: Option<(Route, Option<&str>, Option<&str>)>,
        body: Body<S>,
    ) -> HttpResponse
    where
        S: Stream<Item = Result<B, warp::Error>> + Send,
        B: Buf + Send,
    {
        let session = self.sessions.find(&incoming.headers);
        let Some((route, id, action)) = matched else {
            return parts::not_found(session.as_ref());
        };
        if !route.methods().contains(&incoming.method) {
            return parts::method_not_allowed(session.as_ref(), route.methods());
        }
        let post = incoming.method == Method::POST;
        if !route.is_public() && session.is_none() {
            return if post {
                parts::forbidden(
                    None,
                    "Your session has ended. Log in again, then repeat what you were doing.",
                )
            } else {
                redirect("/admin/login")
            };
        }
        let form = match read_form(incoming, route, session.as_ref(), post, body).await {
            Ok(form) => form,
            Err(refused) => return refused,
        };
        let req = Req {
            console: self,
            query: &incoming.query,
            headers: &incoming.headers,
            client: incoming.client,
            form,
            session,
        };
        page(&req, route, post, id, action).await
    }
}

/// A POST's form, read within the body timeout and, but for the login form
/// (whose token is tied to a pre-login cookie and checked by its handler),
/// carrying the session's CSRF token; else the page that refuses it.
async fn read_form<S, B>(
    incoming: &Head,
    route: Route,
    session: Option<&Session>,
    post: bool,
    body: Body<S>,
) -> Result<form::Form, HttpResponse>
where
    S: Stream<Item = Result<B, warp::Error>> + Send,
    B: Buf + Send,
{
    if !post {
        return Ok(form::Form::parse(&Bytes::new()));
    }
    let bytes = match body.read(&incoming.headers, FORM_LIMIT).await {
        Ok(bytes) => bytes,
        Err(BodyError::Refused(_)) => {
            return Err(parts::error_page(
                session,
                StatusCode::PAYLOAD_TOO_LARGE,
                "Form too large",
                "That form was larger than the console accepts; nothing was changed.",
            ))
        }
        Err(BodyError::TimedOut(limit)) => return Err(form_timed_out(session, limit)),
    };
    let form = form::Form::parse(&bytes);
    if route != Route::Login {
        let valid = session
            .zip(form.get("csrf"))
            .is_some_and(|(s, token)| session::same_token(&s.csrf, token));
        if !valid {
            tracing::warn!(route = route.label(), client = %client::display(incoming.client), "console POST refused: missing or wrong CSRF token");
            return Err(parts::forbidden(
                session,
                "This form has expired or did not come from this console, so nothing was changed. Reload the page and try again.",
            ));
        }
    }
    Ok(form)
}

/// The page a route and method name, for a request that passed the gates.
async fn page(
    req: &Req<'_>,
    route: Route,
    post: bool,
    id: Option<&str>,
    action: Option<&str>,
) -> HttpResponse {
    match (route, post) {
        (Route::Style, _) => asset("text/css; charset=utf-8", STYLE),
        (Route::Icon, _) => asset("image/svg+xml", ICON),
        (Route::Login, false) => login::form_page(req),
        (Route::Login, true) => login::submit(req).await,
        (Route::Logout, _) => login::logout(req),
        (Route::Overview, _) => pages::overview(req).await,
        (Route::Orders, _) => pages::orders(req).await,
        (Route::Order, _) => order::order(req, id.unwrap_or("")).await,
        (Route::Action, false) => {
            actions::form_page(req, id.unwrap_or(""), action.unwrap_or("")).await
        }
        (Route::Action, true) => actions::submit(req, id.unwrap_or(""), action.unwrap_or("")).await,
        (Route::Attention, _) => pages::attention(req).await,
        (Route::Backups, false) => pages::backups(req).await,
        (Route::Backups, true) => pages::take_backup(req).await,
        (Route::Webhooks, _) => webhooks::webhooks(req).await,
        (Route::Replay, _) => webhooks::replay(req, id.unwrap_or("")).await,
    }
}

/// A form whose body stalled: 408, and the connection closes (the rest of
/// the body is never read), as for the API.
fn form_timed_out(session: Option<&Session>, limit: Duration) -> HttpResponse {
    let mut response = parts::error_page(
        session,
        StatusCode::REQUEST_TIMEOUT,
        "Form timed out",
        &format!(
            "The form did not arrive within {} ms; nothing was changed.",
            limit.as_millis()
        ),
    );
    response.headers_mut().insert(
        warp::http::header::CONNECTION,
        HeaderValue::from_static("close"),
    );
    response
}

const STYLE: &str = include_str!("style.css");
const ICON: &str = include_str!("favicon.svg");

fn asset(content_type: &'static str, body: &'static str) -> HttpResponse {
    let mut response = Response::new(body.as_bytes().to_vec());
    let headers = response.headers_mut();
    headers.insert(
        warp::http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    headers.insert(
        warp::http::header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}

/// An HTML page with `status`.
pub(crate) fn html(status: StatusCode, markup: Markup) -> HttpResponse {
    let mut response = Response::new(markup.into_string().into_bytes());
    *response.status_mut() = status;
    response.headers_mut().insert(
        warp::http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

/// 303 See Other: after a POST the browser GETs the result (no resubmission
/// on reload).
pub(crate) fn redirect(location: &str) -> HttpResponse {
    let mut response = Response::new(Vec::new());
    *response.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = HeaderValue::from_str(location) {
        response
            .headers_mut()
            .insert(warp::http::header::LOCATION, v);
    }
    response
}

pub(crate) fn with_cookie(mut response: HttpResponse, cookie: &str) -> HttpResponse {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        response
            .headers_mut()
            .append(warp::http::header::SET_COOKIE, v);
    }
    response
}

/// Headers on every console response: the CSP, no framing, no sniffing, no
/// referrer leaving the console, and no caching of pages that show data.
fn finish(response: &mut HttpResponse, route: Option<Route>) {
    let headers = response.headers_mut();
    headers.insert("content-security-policy", HeaderValue::from_static(CSP));
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    if !matches!(route, Some(Route::Style | Route::Icon)) {
        headers.insert(
            warp::http::header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        );
    }
}
