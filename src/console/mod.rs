//! The operator console (SPEC §11): server-rendered HTML under `/admin/`,
//! templates compiled into the binary with maud, one stylesheet, no script.
//!
//! Its pages are rows of the one route table (`edge::routes`), which the
//! edge matches against `/admin` and `/admin/...` only when the console is
//! enabled, with the same client address, time-limited body, precedence,
//! request id, metrics and log line as the API's; every other path reaches
//! the API untouched. Every change it makes goes through the same service
//! calls as the API, with the operator's session standing in for
//! `X-API-Key` and `X-Admin-Id`.
//!
//! What is the console's own is [`Console::serve`]: it checks the session (a
//! page without one redirects to the login form, a POST without one is
//! 403), reads a POST's form and checks its CSRF token, and runs the page;
//! and the headers every console page carries ([`page_headers`]).

pub(crate) mod accounts;
mod action_list;
pub(crate) mod actions;
mod chart;
mod form;
mod layout;
pub(crate) mod login;
pub(crate) mod order;
pub(crate) mod pages;
mod parts;
pub(crate) mod server_actions;
mod session;
pub(crate) mod webhooks;

use std::future::Future;
use std::net::IpAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes};
use futures_util::Stream;
use maud::Markup;
use warp::http::{HeaderMap, HeaderValue, Response, StatusCode};

use crate::config::Config;
use crate::http::api::auth::ApiKey;
use crate::http::api::body::{Body, BodyError};
use crate::http::api::client::{self, FailureLimiter};
use crate::http::api::{ApiState, Head, HttpResponse};
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
            limiter: FailureLimiter::new(session::MAX_FAILURES, crate::http::api::FAILURE_WINDOW),
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
    /// A POST (else a GET or HEAD): what a page taking both is asked to do.
    post: bool,
    /// The route's `{id}` and `{action}` segments; empty when it has none.
    id: &'a str,
    action: &'a str,
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

/// A page's future.
pub(crate) type PagePending<'a> = Pin<Box<dyn Future<Output = HttpResponse> + Send + 'a>>;
/// What a console route runs: `async fn(&Req) -> HttpResponse`.
pub(crate) type Page = for<'a> fn(&'a Req<'a>) -> PagePending<'a>;

/// What the edge knows of a matched console route.
pub(crate) struct Gate<'a> {
    /// Open without a session (`Access::ConsoleOpen`): the login form and
    /// what it needs. Its POST checks its own pre-login token, not the
    /// session's.
    pub open: bool,
    /// The route's pattern, for the log.
    pub label: &'a str,
    pub post: bool,
    pub id: &'a str,
    pub action: &'a str,
}

impl Console {
    /// A matched route whose method is allowed: the session gate, the form
    /// and its CSRF check, then the page.
    pub(crate) async fn serve<S, B>(
        &self,
        gate: Gate<'_>,
        page: Page,
        incoming: &Head,
        body: Body<S>,
    ) -> HttpResponse
    where
        S: Stream<Item = Result<B, warp::Error>> + Send,
        B: Buf + Send,
    {
        let session = self.sessions.find(&incoming.headers);
        if !gate.open && session.is_none() {
            return if gate.post {
                parts::forbidden(
                    None,
                    "Your session has ended. Log in again, then repeat what you were doing.",
                )
            } else {
                redirect("/admin/login")
            };
        }
        let form = match read_form(incoming, &gate, session.as_ref(), body).await {
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
            post: gate.post,
            id: gate.id,
            action: gate.action,
        };
        page(&req).await
    }

    /// No console page at this address.
    pub(crate) fn not_found(&self, headers: &HeaderMap) -> HttpResponse {
        parts::not_found(self.sessions.find(headers).as_ref())
    }

    /// A console page that does not take this method (the edge adds `Allow`).
    pub(crate) fn method_not_allowed(&self, headers: &HeaderMap) -> HttpResponse {
        parts::method_not_allowed(self.sessions.find(headers).as_ref())
    }
}

/// A POST's form, read within the body timeout and, but on an open route
/// (the login form, whose token is tied to a pre-login cookie and checked by
/// its handler), carrying the session's CSRF token; else the page that
/// refuses it.
async fn read_form<S, B>(
    incoming: &Head,
    gate: &Gate<'_>,
    session: Option<&Session>,
    body: Body<S>,
) -> Result<form::Form, HttpResponse>
where
    S: Stream<Item = Result<B, warp::Error>> + Send,
    B: Buf + Send,
{
    if !gate.post {
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
    if !gate.open {
        let valid = session
            .zip(form.get("csrf"))
            .is_some_and(|(s, token)| session::same_token(&s.csrf, token));
        if !valid {
            tracing::warn!(route = gate.label, client = %client::display(incoming.client), "console POST refused: missing or wrong CSRF token");
            return Err(parts::forbidden(
                session,
                "This form has expired or did not come from this console, so nothing was changed. Reload the page and try again.",
            ));
        }
    }
    Ok(form)
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

/// GET `/admin/style.css`.
pub(crate) async fn style(_req: &Req<'_>) -> HttpResponse {
    asset("text/css; charset=utf-8", STYLE)
}

/// GET `/admin/favicon.svg`.
pub(crate) async fn icon(_req: &Req<'_>) -> HttpResponse {
    asset("image/svg+xml", ICON)
}

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

/// Headers on every console response besides the edge's (request id, no
/// sniffing, no caching of pages that show data): the CSP, no framing, and no
/// referrer leaving the console.
pub(crate) fn page_headers(response: &mut HttpResponse) {
    let headers = response.headers_mut();
    headers.insert("content-security-policy", HeaderValue::from_static(CSP));
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert("referrer-policy", HeaderValue::from_static("same-origin"));
}
