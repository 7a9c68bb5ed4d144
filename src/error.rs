//! The crate-wide error: every way a request can fail. `api::error` maps each
//! variant to its HTTP status and SPEC error code, in one place.

use crate::domain::OrderStatus;

/// A field that failed validation, reported in `details.fields`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppError {
    #[error("{message}")]
    BadRequest {
        message: String,
        fields: Vec<FieldError>,
    },
    #[error("{0}")]
    InvalidPlan(String),
    #[error("{0}")]
    InvalidImage(String),
    #[error("coupon is not valid: {reason}")]
    InvalidCoupon { reason: String },
    #[error("{0}")]
    InvalidDuration(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("X-API-Key header is required")]
    ApiKeyMissing,
    #[error("X-API-Key is not valid")]
    ApiKeyInvalid,
    #[error("no internal API key is configured on this server")]
    ApiKeyNotConfigured,
    #[error("this order belongs to another user")]
    OrderAccessDenied,
    #[error("order not found")]
    OrderNotFound,
    #[error("route not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("payment status cannot change from {current}")]
    PaymentStatusConflict {
        current: OrderStatus,
        requested: &'static str,
    },
    #[error("order status cannot change from {current} to {requested}")]
    OrderStatusConflict {
        current: OrderStatus,
        requested: &'static str,
    },
    #[error("a request with this Idempotency-Key is still in progress")]
    IdempotencyKeyInUse,
    #[error("this Idempotency-Key was used with a different request")]
    IdempotencyKeyReused,
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: u64 },
    #[error("request body must be JSON (Content-Type: application/json)")]
    UnsupportedMediaType,
    #[error("too many orders; try again in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    /// The cause is logged with the request id, never returned.
    #[error("internal error")]
    Internal(String),
    #[error("catalog service unavailable")]
    CatalogUnavailable(String),
    #[error("storage unavailable")]
    StorageUnavailable(String),
}

impl AppError {
    pub fn bad_request(message: impl Into<String>) -> AppError {
        AppError::BadRequest {
            message: message.into(),
            fields: Vec::new(),
        }
    }

    pub fn invalid_fields(fields: Vec<FieldError>) -> AppError {
        AppError::BadRequest {
            message: "validation failed".into(),
            fields,
        }
    }
}

impl From<crate::store::StoreError> for AppError {
    fn from(e: crate::store::StoreError) -> AppError {
        match e {
            crate::store::StoreError::Unavailable(why) => AppError::StorageUnavailable(why),
            crate::store::StoreError::Corrupt(why) => AppError::Internal(why),
        }
    }
}

impl From<crate::catalog::CatalogUnavailable> for AppError {
    fn from(e: crate::catalog::CatalogUnavailable) -> AppError {
        AppError::CatalogUnavailable(e.0)
    }
}

impl From<crate::store::OpError> for AppError {
    fn from(e: crate::store::OpError) -> AppError {
        use crate::store::OpError;
        match e {
            OpError::OrderNotFound => AppError::OrderNotFound,
            OpError::NotOwner => AppError::OrderAccessDenied,
            OpError::Conflict(c) if c.event.is_payment() => AppError::PaymentStatusConflict {
                current: c.current,
                requested: c.event.requested_status(),
            },
            OpError::Conflict(c) => AppError::OrderStatusConflict {
                current: c.current,
                requested: c.event.requested_status(),
            },
            OpError::CouponLimit(reason) => AppError::InvalidCoupon {
                reason: reason.to_string(),
            },
            OpError::StaleTask => AppError::Internal("stale provisioning task".into()),
        }
    }
}
