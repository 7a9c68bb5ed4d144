//! The route table: which paths exist and which methods each takes. Matching is
//! done here, by hand, so precedence is exactly the SPEC's: unknown route 404,
//! then wrong method 405, before any authentication or body reading.

use warp::http::Method;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Health,
    OpenApi,
    Metrics,
    Orders,
    Order(String),
    OrderCancel(String),
    InternalOrders,
    InternalOrder(String),
    InternalPaymentStatus(String),
    InternalCancel(String),
    InternalRetry(String),
    InternalBackups,
}

impl Route {
    /// The route's path pattern, for logs and metrics labels.
    pub fn pattern(&self) -> &'static str {
        match self {
            Route::Health => "/api/v1/health",
            Route::OpenApi => "/api/v1/openapi.json",
            Route::Metrics => "/metrics",
            Route::Orders => "/api/v1/orders",
            Route::Order(_) => "/api/v1/orders/{id}",
            Route::OrderCancel(_) => "/api/v1/orders/{id}/cancel",
            Route::InternalOrders => "/api/v1/internal/orders",
            Route::InternalOrder(_) => "/api/v1/internal/orders/{id}",
            Route::InternalPaymentStatus(_) => "/api/v1/internal/orders/{id}/payment-status",
            Route::InternalCancel(_) => "/api/v1/internal/orders/{id}/cancel",
            Route::InternalRetry(_) => "/api/v1/internal/orders/{id}/retry-provisioning",
            Route::InternalBackups => "/api/v1/internal/backups",
        }
    }

    pub fn methods(&self) -> &'static [Method] {
        match self {
            Route::Health | Route::OpenApi | Route::Metrics => &[Method::GET],
            Route::Order(_) | Route::InternalOrder(_) | Route::InternalOrders => &[Method::GET],
            Route::Orders => &[Method::GET, Method::POST],
            Route::OrderCancel(_)
            | Route::InternalPaymentStatus(_)
            | Route::InternalCancel(_)
            | Route::InternalRetry(_)
            | Route::InternalBackups => &[Method::POST],
        }
    }

    /// Internal routes authenticate with `X-API-Key`; user routes with a JWT.
    pub fn is_internal(&self) -> bool {
        matches!(
            self,
            Route::Metrics
                | Route::InternalOrders
                | Route::InternalOrder(_)
                | Route::InternalPaymentStatus(_)
                | Route::InternalCancel(_)
                | Route::InternalRetry(_)
                | Route::InternalBackups
        )
    }
}

/// Every (pattern, method) served, for the OpenAPI cross-check.
pub fn all_operations() -> Vec<(&'static str, Method)> {
    let samples = [
        Route::Health,
        Route::OpenApi,
        Route::Metrics,
        Route::Orders,
        Route::Order(String::new()),
        Route::OrderCancel(String::new()),
        Route::InternalOrders,
        Route::InternalOrder(String::new()),
        Route::InternalPaymentStatus(String::new()),
        Route::InternalCancel(String::new()),
        Route::InternalRetry(String::new()),
        Route::InternalBackups,
    ];
    samples
        .iter()
        .flat_map(|r| r.methods().iter().map(move |m| (r.pattern(), m.clone())))
        .collect()
}

/// Matches a request path. One trailing slash is tolerated.
pub fn match_path(path: &str) -> Option<Route> {
    let path = path
        .strip_suffix('/')
        .filter(|p| !p.is_empty())
        .unwrap_or(path);
    if path == "/metrics" {
        return Some(Route::Metrics);
    }
    let rest = path.strip_prefix("/api/v1/")?;
    let segments: Vec<&str> = rest.split('/').collect();
    let id = |s: &str| s.to_string();
    let route = match segments.as_slice() {
        ["health"] => Route::Health,
        ["openapi.json"] => Route::OpenApi,
        ["orders"] => Route::Orders,
        ["orders", o] if !o.is_empty() => Route::Order(id(o)),
        ["orders", o, "cancel"] if !o.is_empty() => Route::OrderCancel(id(o)),
        ["internal", "orders"] => Route::InternalOrders,
        ["internal", "backups"] => Route::InternalBackups,
        ["internal", "orders", o] if !o.is_empty() => Route::InternalOrder(id(o)),
        ["internal", "orders", o, "payment-status"] if !o.is_empty() => {
            Route::InternalPaymentStatus(id(o))
        }
        ["internal", "orders", o, "cancel"] if !o.is_empty() => Route::InternalCancel(id(o)),
        ["internal", "orders", o, "retry-provisioning"] if !o.is_empty() => {
            Route::InternalRetry(id(o))
        }
        _ => return None,
    };
    Some(route)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_spec_paths() {
        assert_eq!(match_path("/api/v1/orders"), Some(Route::Orders));
        assert_eq!(match_path("/api/v1/orders/"), Some(Route::Orders));
        assert_eq!(
            match_path("/api/v1/orders/x/cancel"),
            Some(Route::OrderCancel("x".into()))
        );
        assert_eq!(
            match_path("/api/v1/internal/orders/x/retry-provisioning"),
            Some(Route::InternalRetry("x".into()))
        );
        assert_eq!(match_path("/api/v1/orders//cancel"), None);
        assert_eq!(match_path("/api/v2/orders"), None);
        assert_eq!(match_path("/"), None);
    }
}
