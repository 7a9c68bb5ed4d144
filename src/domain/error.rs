//! The crate-wide error vocabulary: every way a request can fail, as plain data.
//! It lives in the domain because a refusal is part of an idempotent outcome that
//! the store keeps and the API renders again on replay; `api::error` maps each
//! variant to its HTTP status and SPEC error code, in one place.

use serde::{Deserialize, Serialize};

use super::order::{HistoryStatus, OrderStatus};

/// A field that failed validation, reported in `details.fields`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

/// A request's field problems, collected so one 400 names them all: what
/// the API's JSON reader and the console's form reader share.
#[derive(Debug, Default)]
pub struct FieldProblems(Vec<FieldError>);

impl FieldProblems {
    pub fn fail(&mut self, field: &str, message: impl Into<String>) {
        self.0.push(FieldError::new(field, message));
    }

    /// The parsed value, or its refusal recorded against `field`.
    pub fn check<T, E: Into<String>>(&mut self, field: &str, parsed: Result<T, E>) -> Option<T> {
        parsed.map_err(|why| self.fail(field, why)).ok()
    }

    /// `value` when no field failed, else one 400 naming each problem.
    pub fn finish<T>(self, value: impl FnOnce() -> Option<T>) -> Result<T, AppError> {
        if !self.0.is_empty() {
            return Err(AppError::invalid_fields(self.0));
        }
        value().ok_or_else(|| AppError::bad_request("invalid request body"))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
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
        requested: HistoryStatus,
    },
    #[error("order status cannot change from {current} to {requested}")]
    OrderStatusConflict {
        current: OrderStatus,
        requested: HistoryStatus,
    },
    #[error("the order expired at {expires_at}; renew it or move its expiry first")]
    OrderExpired { expires_at: String },
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
    // Stored in idempotency records by variant index: append only.
    #[error("webhook delivery not found")]
    DeliveryNotFound,
    /// Too many wrong API keys from one address (SPEC §12); never stored.
    #[error("too many failed attempts from this address; try again in {retry_after_secs} s")]
    TooManyFailures { retry_after_secs: u64 },
    #[error("this caller already holds {limit} live Idempotency-Keys (idempotency.max_keys_per_user); try again in {retry_after_secs} s")]
    IdempotencyKeysExhausted { limit: u64, retry_after_secs: u64 },
    #[error("no DigitalOcean account has this name")]
    AccountNotFound,
    /// SPEC §14: only an ACTIVE server takes customer actions (answered as
    /// ORDER_STATUS_CONFLICT with `requestedStatus` null).
    #[error("only an ACTIVE server takes actions; this order is {current}")]
    ActionNeedsActive { current: OrderStatus },
    /// SPEC §14: a lifecycle droplet action or another customer action is
    /// open (`action_id` names the customer one).
    #[error("another action on this server is still in progress")]
    ActionInProgress { action_id: Option<String> },
    #[error("the server is {droplet_status}; this action needs another state")]
    DropletStateConflict { droplet_status: String },
    #[error("one action per server every cooldown; try again in {retry_after_secs} s")]
    ActionCooldown { retry_after_secs: u64 },
    #[error("this order has no action with that id")]
    ActionNotFound,
    /// SPEC §15: vpsd snapshots only its embedded redb file; a shared
    /// database is backed up with the database's own tools. `backend` is
    /// the store's name as `/health` gives it (`postgres`).
    #[error(
        "backups on the {backend} backend are {owner}'s own: use pg_dump (or a replica); vpsd backs up only an embedded redb data file",
        owner = backend_title(backend)
    )]
    NotSupportedOnBackend { backend: String },
}

/// How an operator knows a backend by name (`postgres` is PostgreSQL).
fn backend_title(backend: &str) -> &str {
    match backend {
        "postgres" => "PostgreSQL",
        other => other,
    }
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

impl AppError {
    /// Whether the same request would meet this answer again, so it is kept
    /// under an idempotency key and replayed. Transient failures (catalog or
    /// storage trouble, an internal fault, a rate limit that passes, a
    /// customer action that waits for another or for its cooldown) are not:
    /// the client may retry those and must not be told the same thing for a day.
    pub fn is_replayable(&self) -> bool {
        !matches!(
            self,
            AppError::Internal(_)
                | AppError::CatalogUnavailable(_)
                | AppError::StorageUnavailable(_)
                | AppError::RateLimited { .. }
                | AppError::TooManyFailures { .. }
                | AppError::IdempotencyKeysExhausted { .. }
                | AppError::ActionInProgress { .. }
                | AppError::DropletStateConflict { .. }
                | AppError::ActionCooldown { .. }
        )
    }
}

impl AppError {
    /// The seconds a 429 asks the client to wait (`Retry-After`).
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            AppError::RateLimited { retry_after_secs }
            | AppError::TooManyFailures { retry_after_secs }
            | AppError::IdempotencyKeysExhausted {
                retry_after_secs, ..
            }
            | AppError::ActionCooldown { retry_after_secs } => Some(*retry_after_secs),
            _ => None,
        }
    }
}

impl From<super::customer_action::ActionRefusal> for AppError {
    fn from(refusal: super::customer_action::ActionRefusal) -> AppError {
        use super::customer_action::ActionRefusal as R;
        match refusal {
            R::NotActive { current } => AppError::ActionNeedsActive { current },
            R::InProgress { action_id } => AppError::ActionInProgress {
                action_id: action_id.map(|id| id.to_string()),
            },
            R::DropletState { droplet } => AppError::DropletStateConflict {
                droplet_status: droplet.as_str().to_string(),
            },
            R::Cooldown { retry_after_ms } => AppError::ActionCooldown {
                // Rounded up: a client that waits what it is told is let in.
                retry_after_secs: u64::try_from(retry_after_ms)
                    .unwrap_or(1)
                    .div_ceil(1000)
                    .max(1),
            },
        }
    }
}

/// An embedded coupon's usage limit, counted in the data file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CouponLimit {
    Global,
    PerUser,
}

impl CouponLimit {
    /// The SPEC's INVALID_COUPON reason.
    pub fn reason(self) -> &'static str {
        match self {
            CouponLimit::Global => "LIMIT_GLOBAL_REACHED",
            CouponLimit::PerUser => "LIMIT_PER_USER_REACHED",
        }
    }
}

/// Why the writer refused a well-formed operation; nothing was written for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    OrderNotFound,
    NotOwner,
    Refused(super::lifecycle::Refused),
    CouponLimit(CouponLimit),
    /// The task changed since the caller read it; re-read and decide again.
    StaleTask,
    /// Another instance on the same database stored an outcome under this
    /// idempotency key while this request ran (SPEC §15); nothing of this
    /// request was written.
    KeyInUse,
    /// An imported order's id is already stored (SPEC §16); nothing written.
    AlreadyStored,
}

use super::lifecycle::Refused;

impl From<Rejection> for AppError {
    fn from(e: Rejection) -> AppError {
        match e {
            Rejection::OrderNotFound => AppError::OrderNotFound,
            Rejection::NotOwner => AppError::OrderAccessDenied,
            Rejection::Refused(Refused::Status(c)) if c.event.is_payment() => {
                AppError::PaymentStatusConflict {
                    current: c.current,
                    requested: c.event.requested_status(),
                }
            }
            Rejection::Refused(Refused::Status(c)) => AppError::OrderStatusConflict {
                current: c.current,
                requested: c.event.requested_status(),
            },
            Rejection::Refused(Refused::Expired { expires_at }) => AppError::OrderExpired {
                expires_at: super::time::format_millis(expires_at),
            },
            Rejection::Refused(Refused::Action(refusal)) => AppError::from(refusal),
            Rejection::Refused(Refused::OutOfRange { field }) => {
                AppError::invalid_fields(vec![FieldError::new(
                    field,
                    format!("would move expiresAt past {}", super::time::LATEST_TEXT),
                )])
            }
            Rejection::CouponLimit(limit) => AppError::InvalidCoupon {
                reason: limit.reason().to_string(),
            },
            Rejection::StaleTask => AppError::Internal("stale provisioning task".into()),
            Rejection::KeyInUse => AppError::IdempotencyKeyInUse,
            // Only `vpsd import-v1` writes imports, and it reports this
            // itself; no route can meet it.
            Rejection::AlreadyStored => AppError::Internal("the order is already stored".into()),
        }
    }
}
