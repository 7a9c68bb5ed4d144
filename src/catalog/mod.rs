//! Where plans, images and coupons come from. Two sources behind one trait:
//! `embedded` (a TOML file shipped in the repo, reloadable) and `http` (the Webrana
//! catalog-service). Calls are blocking (ureq): callers run them off the async runtime.
//!
//! The service layer turns these answers into INVALID_* errors; this module only
//! reports what the catalog says, or that it could not be asked.

pub mod embedded;
pub mod http;

use crate::domain::PlanDuration;

/// A plan as the order service needs it, whichever source it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanInfo {
    pub id: String,
    /// `displayName`, else `name`.
    pub display_name: String,
    pub cpu: u32,
    pub memory_mb: u32,
    pub disk_gb: u32,
    /// The DigitalOcean size slug, already resolved (provider slug, else the
    /// `catalog.sizes` map). `None` means the plan cannot be provisioned.
    pub size_slug: Option<String>,
    pub active: bool,
    /// Only the durations the catalog can price; a missing one is INVALID_DURATION.
    pub prices: Vec<PlanPrice>,
    /// Image ids this plan may be ordered with; empty means every image.
    pub allowed_image_ids: Vec<String>,
}

impl PlanInfo {
    pub fn price_for(&self, duration: PlanDuration) -> Option<&PlanPrice> {
        self.prices.iter().find(|p| p.duration == duration)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanPrice {
    pub duration: PlanDuration,
    /// The plan's list price for the duration.
    pub base: u64,
    /// The price after the plan's active promo (equal to `base` without one).
    pub after_promo: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    pub id: String,
    pub display_name: String,
    /// The DigitalOcean image slug.
    pub slug: String,
    pub active: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CouponRequest {
    pub code: String,
    pub plan_id: String,
    pub user_id: String,
    /// The price the coupon applies to: the plan price after promo.
    pub amount: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CouponVerdict {
    Valid(CouponGrant),
    /// `reason` is the catalog's word: NOT_FOUND, INACTIVE, BEFORE_START, EXPIRED,
    /// LIMIT_GLOBAL_REACHED, LIMIT_PER_USER_REACHED, PLAN_NOT_ALLOWED,
    /// USER_NOT_ALLOWED, MIN_AMOUNT_NOT_MET.
    Invalid {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CouponGrant {
    /// The coupon's canonical (upper-case) code, as recorded on the order.
    pub code: String,
    /// The discount the catalog computed; the order caps it at the amount.
    pub discount: u64,
    /// Usage limits vpsd must enforce itself, inside the order's write
    /// transaction. Only the embedded catalog returns these: the catalog-service
    /// counts its own redemptions.
    pub limits: Option<CouponLimits>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CouponLimits {
    pub max_uses: Option<u64>,
    pub max_uses_per_user: Option<u64>,
}

/// The catalog could not be asked: transport failure, timeout, 5xx or an answer
/// that does not parse. Maps to 503 CATALOG_SERVICE_UNAVAILABLE.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("catalog unavailable: {0}")]
pub struct CatalogUnavailable(pub String);

/// A reload (SIGHUP) failed; the previous catalog stays in use.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    File(#[from] embedded::CatalogFileError),
}

pub trait Catalog: Send + Sync {
    /// `Ok(None)` when the catalog does not know the plan.
    fn plan(&self, id: &str) -> Result<Option<PlanInfo>, CatalogUnavailable>;
    /// `Ok(None)` when the catalog does not know the image.
    fn image(&self, id: &str) -> Result<Option<ImageInfo>, CatalogUnavailable>;
    /// Static validation and discount. Usage limits of an embedded coupon come
    /// back in `CouponGrant::limits` and are enforced by the store.
    fn validate_coupon(&self, req: &CouponRequest) -> Result<CouponVerdict, CatalogUnavailable>;
    /// Re-reads the source (SIGHUP). Sources with nothing to reload do nothing.
    fn reload(&self) -> Result<(), ReloadError> {
        Ok(())
    }
    /// `embedded` or `http`, for logs and health.
    fn source_name(&self) -> &'static str;
    /// Whether calls may wait on I/O (and so must run off the async workers).
    /// The embedded catalog answers from memory in microseconds, where a hop to
    /// the blocking pool would cost more than the work.
    fn blocks(&self) -> bool {
        true
    }
}
