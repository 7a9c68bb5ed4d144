//! The route table: every path vpsd serves, the methods it takes, who may call
//! it and the handler. Matching is done here, by hand, so precedence is exactly
//! the SPEC's: unknown route 404, then wrong method 405, before any
//! authentication or body reading. Adding a route is one line here plus its
//! handler; the OpenAPI test reads this same table.

use std::future::Future;
use std::pin::Pin;

use warp::http::Method;

use super::{internal, ops, orders, paid_period, webhooks, Call, HttpResponse};
use crate::error::AppError;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Public,
    /// `Authorization: Bearer <JWT>`; the caller is the token's `sub`.
    User,
    /// `X-API-Key`, plus the optional `X-Admin-Id` naming the operator.
    Internal,
}

pub type Pending<'a> = Pin<Box<dyn Future<Output = Result<HttpResponse, AppError>> + Send + 'a>>;
pub type Handler = for<'a> fn(Call<'a>) -> Pending<'a>;

pub struct Route {
    /// The path with `{id}` for the one variable segment; also the metrics label.
    pub pattern: &'static str,
    pub methods: &'static [Method],
    pub access: Access,
    pub handler: Handler,
}

/// Turns `async fn(Call) -> Result<..>` into a table entry.
macro_rules! handler {
    ($f:path) => {{
        fn boxed(call: Call<'_>) -> Pending<'_> {
            Box::pin($f(call))
        }
        boxed as Handler
    }};
}

const GET: &[Method] = &[Method::GET];
const POST: &[Method] = &[Method::POST];

/// Every route, tried in order. `/api/v1/orders` takes two methods and so has
/// one handler that looks at the method.
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
        &[Method::GET, Method::POST],
        Access::User,
        handler!(orders::list_or_create),
    ),
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

/// Every (pattern, method) served, for the OpenAPI cross-check.
pub fn all_operations() -> Vec<(&'static str, Method)> {
    ROUTES
        .iter()
        .flat_map(|r| r.methods.iter().map(move |m| (r.pattern, m.clone())))
        .collect()
}

/// The route a path names, and its `{id}` segment. One trailing slash is
/// tolerated; an empty segment matches nothing.
pub fn match_path(path: &str) -> Option<(&'static Route, Option<&str>)> {
    let path = path
        .strip_suffix('/')
        .filter(|p| !p.is_empty())
        .unwrap_or(path);
    ROUTES
        .iter()
        .find_map(|route| match_pattern(route.pattern, path).map(|id| (route, id)))
}

/// `Some(id)` when `path` fits `pattern` (`id` is `None` without `{id}`).
fn match_pattern<'p>(pattern: &str, path: &'p str) -> Option<Option<&'p str>> {
    let mut id = None;
    let mut pattern_parts = pattern.split('/');
    let mut path_parts = path.split('/');
    loop {
        match (pattern_parts.next(), path_parts.next()) {
            (None, None) => return Some(id),
            (Some("{id}"), Some(segment)) if !segment.is_empty() => id = Some(segment),
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
    }

    #[test]
    fn every_pattern_is_unique() {
        let mut patterns: Vec<_> = ROUTES.iter().map(|r| r.pattern).collect();
        patterns.sort_unstable();
        patterns.dedup();
        assert_eq!(patterns.len(), ROUTES.len());
    }
}
