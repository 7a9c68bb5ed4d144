//! Login with the internal API key (and an optional operator name), logout.
//!
//! Before login the form's CSRF token is tied to a short-lived cookie
//! (double submit), so another site cannot log a browser into the console. A
//! wrong key sets no cookie at all. Failed logins are counted per client
//! address and logged with the address and operator name, never the key.

use std::time::Duration;

use maud::html;
use warp::http::{HeaderValue, StatusCode};

use super::layout::{notice, page};
use super::session::{self, LOGIN_COOKIE};
use super::{html, redirect, with_cookie, HttpResponse, Req};
use crate::http::api::client;

/// How long a login form stays usable.
const LOGIN_FORM_TTL: Duration = Duration::from_secs(3600);

/// `/admin/login`: the form, or what its POST does.
pub async fn login(req: &Req<'_>) -> HttpResponse {
    if req.post {
        submit(req).await
    } else {
        form_page(req)
    }
}

fn form_page(req: &Req<'_>) -> HttpResponse {
    if req.session.is_some() {
        return redirect("/admin/");
    }
    let existing = session::cookie(req.headers, LOGIN_COOKIE);
    let Some(token) = existing.clone().or_else(session::random_token) else {
        return super::parts::error_page(
            None,
            StatusCode::SERVICE_UNAVAILABLE,
            "Login unavailable",
            "The system's random source is unavailable, so no session can be created. Try again shortly.",
        );
    };
    let response = render(&token, StatusCode::OK, None, "");
    if existing.is_some() {
        response
    } else {
        let cookie = session::set_cookie(LOGIN_COOKIE, &token, LOGIN_FORM_TTL, req.console.secure);
        with_cookie(response, &cookie)
    }
}

fn render(token: &str, status: StatusCode, error: Option<&str>, operator: &str) -> HttpResponse {
    let body = html! {
        section.login {
            h1 { "Log in" }
            p { "Use the internal API key (" code { "auth.internal_api_key" } "). The operator name is optional; your actions are recorded as " code { "admin:NAME" } ", or " code { "admin" } " without one." }
            @if let Some(error) = error {
                (notice("error", error))
            }
            form method="post" action="/admin/login" {
                input type="hidden" name="csrf" value=(token);
                div.field {
                    label for="key" { "API key" }
                    input #key type="password" name="key" required autocomplete="current-password" autofocus;
                }
                div.field {
                    label for="operator" { "Operator name (optional)" }
                    input #operator type="text" name="operator" value=(operator) maxlength="64"
                        pattern="[A-Za-z0-9._@\\-]{1,64}" autocomplete="username"
                        aria-describedby="operator-hint";
                    p.hint #operator-hint { "Letters, digits and . _ @ - (up to 64)." }
                }
                button type="submit" { "Log in" }
            }
        }
    };
    html(status, page("Log in", None, "", body))
}

/// The operator name rule of `X-Admin-Id`: 1-64 of `A-Za-z0-9._@-`.
fn valid_operator(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b))
}

async fn submit(req: &Req<'_>) -> HttpResponse {
    let console = req.console;
    if let Err(wait) = console.limiter.check(req.client) {
        tracing::warn!(client = %client::display(req.client), "console login refused: too many failed attempts");
        let mut response = super::parts::error_page(
            None,
            StatusCode::TOO_MANY_REQUESTS,
            "Too many attempts",
            &format!("Too many failed logins from this address. Try again in {wait} seconds."),
        );
        if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
            response
                .headers_mut()
                .insert(warp::http::header::RETRY_AFTER, v);
        }
        return response;
    }
    let token = session::cookie(req.headers, LOGIN_COOKIE);
    let form_token = req.form.get("csrf");
    let Some(token) = token.filter(|t| form_token.is_some_and(|f| session::same_token(t, f)))
    else {
        return super::parts::forbidden(
            None,
            "This login form has expired or did not come from this console. Open the login page again.",
        );
    };
    let operator = req.form.text("operator").unwrap_or("");
    if !operator.is_empty() && !valid_operator(operator) {
        return render(
            &token,
            StatusCode::BAD_REQUEST,
            Some(
                "The operator name may only use letters, digits and . _ @ - (up to 64 characters).",
            ),
            "",
        );
    }
    let key = req.form.get("key").unwrap_or("");
    if console.key.check_key(key.as_bytes()).is_err() {
        console.limiter.failed(req.client);
        tracing::warn!(client = %client::display(req.client), operator, "console login failed: wrong API key");
        return render(
            &token,
            StatusCode::UNAUTHORIZED,
            Some("That key is not right."),
            operator,
        );
    }
    console.limiter.succeeded(req.client);
    let operator = (!operator.is_empty()).then(|| operator.to_string());
    let Some((id, session)) = console.sessions.create(operator) else {
        return super::parts::error_page(
            None,
            StatusCode::SERVICE_UNAVAILABLE,
            "Login unavailable",
            "No session could be created. Try again shortly.",
        );
    };
    tracing::info!(client = %client::display(req.client), actor = %session.actor_text(), "console login");
    let ttl = console.sessions.ttl();
    let response = redirect("/admin/");
    let response = with_cookie(
        response,
        &session::set_cookie(session::COOKIE, &id, ttl, console.secure),
    );
    with_cookie(
        response,
        &session::set_cookie(LOGIN_COOKIE, "", Duration::ZERO, console.secure),
    )
}

/// POST `/admin/logout`.
pub async fn logout(req: &Req<'_>) -> HttpResponse {
    req.console.sessions.end(req.headers);
    if let Some(session) = &req.session {
        tracing::info!(actor = %session.actor_text(), "console logout");
    }
    with_cookie(
        redirect("/admin/login"),
        &session::set_cookie(session::COOKIE, "", Duration::ZERO, req.console.secure),
    )
}
