//! The route table: every path vpsd serves, API and console alike, the
//! methods it takes, who may call it and the handler. Matching is done here,
//! by hand, so precedence is exactly the SPEC's: unknown route 404, then wrong
//! method 405, before any authentication or body reading, for the console's
//! pages as for the API. Adding a route is one line here plus its handler;
//! the OpenAPI test reads the API's rows of this same table.

use warp::http::Method;

use crate::http::api::{accounts, actions as customer, internal, ops, orders, paid_period};
use crate::http::api::{webhooks, webrana, Call};
use crate::http::console::{actions, login, order, pages, Req};

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Public,
    /// `Authorization: Bearer <JWT>`; the caller is the token's `sub`.
    User,
    /// `X-API-Key`, plus the optional `X-Admin-Id` naming the operator.
    Internal,
    /// A console page for a logged-in operator: without a session a GET is
    /// sent to the login form and a POST refused; every POST carries the
    /// session's CSRF token.
    Console,
    /// A console page open without a session: the login form (whose POST
    /// checks the token tied to its pre-login cookie) and what it needs.
    ConsoleOpen,
}

impl Access {
    /// Served by the console (HTML, session cookies) rather than the API.
    pub fn is_console(self) -> bool {
        matches!(self, Access::Console | Access::ConsoleOpen)
    }
}

/// What runs a route once its gates are passed.
#[derive(Clone, Copy)]
pub(crate) enum Handler {
    Api(crate::http::api::Handler),
    Console(crate::http::console::Page),
}

pub struct Route {
    /// The path with `{id}` (and, on the console, `{action}`) for its
    /// variable segments; also the metrics label.
    pub pattern: &'static str,
    /// HEAD is served wherever GET is, without being listed.
    pub methods: &'static [Method],
    pub access: Access,
    pub(crate) handler: Handler,
}

/// Turns `async fn(Call) -> Result<..>` into a table entry.
macro_rules! handler {
    ($f:path) => {{
        fn boxed(call: Call<'_>) -> crate::http::api::Pending<'_> {
            Box::pin($f(call))
        }
        Handler::Api(boxed)
    }};
}

/// Turns `async fn(&Req) -> HttpResponse` into a table entry.
macro_rules! page {
    ($f:path) => {{
        fn boxed<'a>(req: &'a Req<'a>) -> crate::http::console::PagePending<'a> {
            Box::pin($f(req))
        }
        Handler::Console(boxed)
    }};
}

const GET: &[Method] = &[Method::GET];
const POST: &[Method] = &[Method::POST];
const GET_POST: &[Method] = &[Method::GET, Method::POST];
const PATCH: &[Method] = &[Method::PATCH];

/// Every route, tried in order: the API's, then the console's (which exist
/// only when the console is on). A route that takes two methods has one
/// handler that looks at the method.
pub static ROUTES: &[Route] = &[
    route("/api/v1/health", GET, Access::Public, handler!(ops::health)),
    route(
        "/api/v1/openapi.json",
        GET,
        Access::Public,
        handler!(ops::openapi),
    ),
    route("/metrics", GET, Access::Internal, handler!(ops::metrics)),
    route(
        "/api/v1/orders",
        GET_POST,
        Access::User,
        handler!(orders::list_or_create),
    ),
    // ---- Webrana UI extras (SPEC §14) ----
    // Before `/orders/{id}`, which would otherwise take `stats` as an id.
    route(
        "/api/v1/orders/stats",
        GET,
        Access::User,
        handler!(webrana::user_stats),
    ),
    route(
        "/api/v1/orders/{id}/auto-renew",
        PATCH,
        Access::User,
        handler!(webrana::auto_renew),
    ),
    route(
        "/api/v1/internal/stats",
        GET,
        Access::Internal,
        handler!(webrana::internal_stats),
    ),
    // ---- end of the Webrana UI extras ----
    route(
        "/api/v1/orders/{id}",
        GET,
        Access::User,
        handler!(orders::get),
    ),
    route(
        "/api/v1/orders/{id}/cancel",
        POST,
        Access::User,
        handler!(orders::cancel),
    ),
    // Customer actions (SPEC §14).
    route(
        "/api/v1/orders/{id}/actions",
        GET_POST,
        Access::User,
        handler!(customer::own),
    ),
    route(
        "/api/v1/orders/{id}/actions/{actionId}",
        GET,
        Access::User,
        handler!(customer::own_one),
    ),
    route(
        "/api/v1/orders/{id}/reboot",
        POST,
        Access::User,
        handler!(customer::reboot),
    ),
    route(
        "/api/v1/orders/{id}/power-off",
        POST,
        Access::User,
        handler!(customer::power_off),
    ),
    route(
        "/api/v1/orders/{id}/power-on",
        POST,
        Access::User,
        handler!(customer::power_on),
    ),
    route(
        "/api/v1/internal/orders/{id}/actions",
        GET_POST,
        Access::Internal,
        handler!(customer::admin),
    ),
    route(
        "/api/v1/internal/orders/{id}/actions/{actionId}",
        GET,
        Access::Internal,
        handler!(customer::admin_one),
    ),
    route(
        "/api/v1/internal/orders",
        GET,
        Access::Internal,
        handler!(internal::list),
    ),
    route(
        "/api/v1/internal/orders/{id}",
        GET,
        Access::Internal,
        handler!(internal::get),
    ),
    route(
        "/api/v1/internal/orders/{id}/payment-status",
        POST,
        Access::Internal,
        handler!(internal::payment_status),
    ),
    route(
        "/api/v1/internal/orders/{id}/cancel",
        POST,
        Access::Internal,
        handler!(internal::cancel),
    ),
    route(
        "/api/v1/internal/orders/{id}/retry-provisioning",
        POST,
        Access::Internal,
        handler!(internal::retry),
    ),
    route(
        "/api/v1/internal/backups",
        POST,
        Access::Internal,
        handler!(internal::backup),
    ),
    route(
        "/api/v1/orders/{id}/terminate",
        POST,
        Access::User,
        handler!(paid_period::terminate_own),
    ),
    route(
        "/api/v1/internal/orders/{id}/suspend",
        POST,
        Access::Internal,
        handler!(paid_period::suspend),
    ),
    route(
        "/api/v1/internal/orders/{id}/unsuspend",
        POST,
        Access::Internal,
        handler!(paid_period::unsuspend),
    ),
    route(
        "/api/v1/internal/orders/{id}/terminate",
        POST,
        Access::Internal,
        handler!(paid_period::terminate),
    ),
    route(
        "/api/v1/internal/orders/{id}/renewals",
        POST,
        Access::Internal,
        handler!(paid_period::renew),
    ),
    route(
        "/api/v1/internal/orders/{id}/expiry",
        POST,
        Access::Internal,
        handler!(paid_period::expiry),
    ),
    route(
        "/api/v1/internal/webhooks/deliveries",
        GET,
        Access::Internal,
        handler!(webhooks::list),
    ),
    route(
        "/api/v1/internal/webhooks/deliveries/{id}/replay",
        POST,
        Access::Internal,
        handler!(webhooks::replay),
    ),
    route(
        "/api/v1/internal/cloud/accounts",
        GET,
        Access::Internal,
        handler!(accounts::list),
    ),
    route(
        "/api/v1/internal/cloud/accounts/{name}/refresh",
        POST,
        Access::Internal,
        handler!(accounts::refresh),
    ),
    route("/admin/", GET, Access::Console, page!(pages::overview)),
    route(
        "/admin/login",
        GET_POST,
        Access::ConsoleOpen,
        page!(login::login),
    ),
    route("/admin/logout", POST, Access::Console, page!(login::logout)),
    route(
        "/admin/style.css",
        GET,
        Access::ConsoleOpen,
        page!(crate::http::console::style),
    ),
    route(
        "/admin/favicon.svg",
        GET,
        Access::ConsoleOpen,
        page!(crate::http::console::icon),
    ),
    route("/admin/orders", GET, Access::Console, page!(pages::orders)),
    route(
        "/admin/orders/{id}",
        GET,
        Access::Console,
        page!(order::order),
    ),
    route(
        "/admin/orders/{id}/server-action",
        POST,
        Access::Console,
        page!(crate::http::console::server_actions::submit),
    ),
    route(
        "/admin/orders/{id}/{action}",
        GET_POST,
        Access::Console,
        page!(actions::action),
    ),
    route(
        "/admin/attention",
        GET,
        Access::Console,
        page!(pages::attention),
    ),
    route(
        "/admin/accounts",
        GET,
        Access::Console,
        page!(crate::http::console::accounts::accounts),
    ),
    route(
        "/admin/accounts/{name}/refresh",
        POST,
        Access::Console,
        page!(crate::http::console::accounts::refresh),
    ),
    route(
        "/admin/backups",
        GET_POST,
        Access::Console,
        page!(pages::backups),
    ),
    route(
        "/admin/webhooks",
        GET,
        Access::Console,
        page!(crate::http::console::webhooks::webhooks),
    ),
    route(
        "/admin/webhooks/{id}/replay",
        POST,
        Access::Console,
        page!(crate::http::console::webhooks::replay),
    ),
];

const fn route(
    pattern: &'static str,
    methods: &'static [Method],
    access: Access,
    handler: Handler,
) -> Route {
    Route {
        pattern,
        methods,
        access,
        handler,
    }
}

/// Every (pattern, method) the API serves, for the OpenAPI cross-check.
#[cfg(any(test, feature = "testing"))]
pub fn all_operations() -> Vec<(&'static str, Method)> {
    ROUTES
        .iter()
        .filter(|r| !r.access.is_console())
        .flat_map(|r| r.methods.iter().map(move |m| (r.pattern, m.clone())))
        .collect()
}

/// The variable segments of a matched path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Vars<'p> {
    pub id: Option<&'p str>,
    /// The console's `{action}`, or the API's `{actionId}`.
    pub action: Option<&'p str>,
}

/// The API route a path names, and its `{id}` segment (the console's routes
/// are left out: see [`find`]). For the tests' precedence checks.
#[cfg(any(test, feature = "testing"))]
pub fn match_path(path: &str) -> Option<(&'static Route, Option<&str>)> {
    find(path, false).map(|(route, vars)| (route, vars.id))
}

/// The route a path names. `console`: the console is on and `path` is one of
/// its own (`/admin`, `/admin/...`), so only its routes can match; otherwise
/// only the API's can.
///
/// API paths tolerate one trailing slash. A console path is read after
/// `/admin`, less one leading and one trailing slash, so `/admin` and
/// `/admin/` are both the overview. An empty `{id}` matches nothing.
pub(crate) fn find(path: &str, console: bool) -> Option<(&'static Route, Vars<'_>)> {
    let console_rest = if console { console_rest(path) } else { None };
    let api_path = path
        .strip_suffix('/')
        .filter(|p| !p.is_empty())
        .unwrap_or(path);
    ROUTES
        .iter()
        .filter(|route| route.access.is_console() == console_rest.is_some())
        .find_map(|route| {
            let vars = match console_rest {
                Some(rest) => match_pattern(route.pattern.strip_prefix("/admin/")?, rest),
                None => match_pattern(route.pattern, api_path),
            };
            vars.map(|vars| (route, vars))
        })
}

/// A console path after `/admin`, less one leading and one trailing slash;
/// `None` for a path that is not the console's.
fn console_rest(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/admin")?;
    if !(rest.is_empty() || rest.starts_with('/')) {
        return None;
    }
    let rest = rest.strip_prefix('/').unwrap_or(rest);
    Some(rest.strip_suffix('/').unwrap_or(rest))
}

/// The variable segments when `path` fits `pattern`.
fn match_pattern<'p>(pattern: &str, path: &'p str) -> Option<Vars<'p>> {
    let mut vars = Vars::default();
    let mut pattern_parts = pattern.split('/');
    let mut path_parts = path.split('/');
    loop {
        match (pattern_parts.next(), path_parts.next()) {
            (None, None) => return Some(vars),
            // `{name}` (an account's) is the route's one variable like `{id}`.
            (Some("{id}" | "{name}"), Some(segment)) if !segment.is_empty() => {
                vars.id = Some(segment)
            }
            (Some("{action}"), Some(segment)) => vars.action = Some(segment),
            (Some("{actionId}"), Some(segment)) if !segment.is_empty() => {
                vars.action = Some(segment)
            }
            (Some(expected), Some(segment)) if expected == segment => {}
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern_of(path: &str) -> Option<(&'static str, Option<&str>)> {
        match_path(path).map(|(route, id)| (route.pattern, id))
    }

    #[test]
    fn matches_the_spec_paths() {
        assert_eq!(pattern_of("/api/v1/orders"), Some(("/api/v1/orders", None)));
        assert_eq!(
            pattern_of("/api/v1/orders/"),
            Some(("/api/v1/orders", None))
        );
        assert_eq!(
            pattern_of("/api/v1/orders/x/cancel"),
            Some(("/api/v1/orders/{id}/cancel", Some("x")))
        );
        assert_eq!(
            pattern_of("/api/v1/internal/orders/x/retry-provisioning"),
            Some(("/api/v1/internal/orders/{id}/retry-provisioning", Some("x")))
        );
        assert_eq!(
            pattern_of("/api/v1/internal/backups"),
            Some(("/api/v1/internal/backups", None))
        );
        assert_eq!(pattern_of("/api/v1/orders//cancel"), None);
        assert_eq!(pattern_of("/api/v2/orders"), None);
        assert_eq!(pattern_of("/"), None);
        assert_eq!(pattern_of("/metrics"), Some(("/metrics", None)));
        assert_eq!(
            pattern_of("/api/v1/orders/stats"),
            Some(("/api/v1/orders/stats", None))
        );
    }

    fn console_pattern_of(path: &str) -> Option<(&'static str, Vars<'_>)> {
        find(path, true).map(|(route, vars)| (route.pattern, vars))
    }

    #[test]
    fn console_paths_match_only_console_routes_and_only_when_it_is_on() {
        let overview = Some(("/admin/", Vars::default()));
        assert_eq!(console_pattern_of("/admin"), overview);
        assert_eq!(console_pattern_of("/admin/"), overview);
        assert_eq!(console_pattern_of("/admin//"), overview);
        assert_eq!(
            console_pattern_of("/admin/orders/x/"),
            Some((
                "/admin/orders/{id}",
                Vars {
                    id: Some("x"),
                    action: None
                }
            ))
        );
        assert_eq!(
            console_pattern_of("/admin/orders/x/pay"),
            Some((
                "/admin/orders/{id}/{action}",
                Vars {
                    id: Some("x"),
                    action: Some("pay")
                }
            ))
        );
        assert_eq!(console_pattern_of("/admin/orders//"), None);
        assert_eq!(console_pattern_of("/admin/nope"), None);
        assert_eq!(console_pattern_of("/admin/api/v1/health"), None);
        assert_eq!(pattern_of("/admin/"), None, "console off: the API's 404");
        assert!(all_operations()
            .iter()
            .all(|(p, _)| !p.starts_with("/admin")));
    }

    #[test]
    fn every_pattern_is_unique() {
        let mut patterns: Vec<_> = ROUTES.iter().map(|r| r.pattern).collect();
        patterns.sort_unstable();
        patterns.dedup();
        assert_eq!(patterns.len(), ROUTES.len());
    }
}
