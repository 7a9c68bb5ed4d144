//! The catalog as a TOML file shipped with the daemon (`config/catalog.toml`, whose
//! comments document the layout). The whole file is validated up front, so a typo
//! fails start-up or a SIGHUP reload with one line naming the file and the problem,
//! instead of surfacing later as a puzzling INVALID_* on some order.
//!
//! Coupon usage limits are not counted here: they come back in
//! `CouponGrant::limits` and the store enforces them in the order's own write
//! transaction, the only place they can hold under concurrent orders.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde::Deserialize;

use super::{
    CatalogUnavailable, CouponGrant, CouponLimits, CouponRequest, CouponVerdict, ImageInfo,
    PlanInfo, PlanPrice,
};
use crate::domain::time::{now_millis, parse_rfc3339, Millis};
use crate::domain::PlanDuration;

pub struct EmbeddedCatalog {
    /// Re-read on every `reload()`.
    path: PathBuf,
    /// `catalog.sizes`: plan id -> DO size slug, for plans without `sizeSlug`.
    sizes: BTreeMap<String, String>,
    /// Readers clone the `Arc` and drop the lock at once, so a reload never waits
    /// on a slow caller and a caller never sees half of an old and half of a new file.
    current: RwLock<Arc<Contents>>,
}

/// A validated catalog file.
#[derive(Debug)]
struct Contents {
    plans: BTreeMap<String, PlanInfo>,
    images: BTreeMap<String, ImageInfo>,
    /// Keyed by the canonical (upper-case) code.
    coupons: BTreeMap<String, Coupon>,
}

#[derive(Debug)]
struct Coupon {
    code: String,
    discount: Discount,
    max_discount: Option<u64>,
    valid_from: Option<Millis>,
    valid_until: Option<Millis>,
    limits: CouponLimits,
    plan_ids: BTreeSet<String>,
    user_ids: BTreeSet<String>,
    min_amount: Option<u64>,
    active: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Discount {
    /// Whole percent, 0..=100.
    Percent(u64),
    Fixed(u64),
}

impl Discount {
    /// Rounds a percentage down, so a customer is never promised more than stated.
    fn of(self, amount: u64) -> u64 {
        match self {
            Discount::Percent(p) => {
                let d = u128::from(amount) * u128::from(p) / 100;
                u64::try_from(d).unwrap_or(amount)
            }
            Discount::Fixed(v) => v,
        }
        .min(amount)
    }
}

impl EmbeddedCatalog {
    /// Reads and validates the file. The error is one line naming the file.
    pub fn load(
        path: &Path,
        sizes: &BTreeMap<String, String>,
    ) -> Result<EmbeddedCatalog, CatalogFileError> {
        let contents = read_file(path, sizes)?;
        Ok(EmbeddedCatalog {
            path: path.to_path_buf(),
            sizes: sizes.clone(),
            current: RwLock::new(Arc::new(contents)),
        })
    }

    /// The sample catalog shipped in the repository, compiled into the binary:
    /// used when vpsd runs outside a checkout with the default
    /// `catalog.file`. SIGHUP still reads `path` once it exists.
    pub fn builtin(
        path: &Path,
        sizes: &BTreeMap<String, String>,
    ) -> Result<EmbeddedCatalog, CatalogFileError> {
        let contents = parse(BUILTIN, sizes).map_err(CatalogFileError::Builtin)?;
        Ok(EmbeddedCatalog {
            path: path.to_path_buf(),
            sizes: sizes.clone(),
            current: RwLock::new(Arc::new(contents)),
        })
    }

    /// `validate_coupon` at a given instant, so expiry can be tested without a clock.
    pub fn validate_coupon_at(&self, req: &CouponRequest, now: Millis) -> CouponVerdict {
        check_coupon(&self.snapshot(), req, now)
    }

    fn snapshot(&self) -> Arc<Contents> {
        // Nothing can panic while the write lock is held (it only swaps an Arc),
        // so a poisoned lock still guards a whole catalog.
        match self.current.read() {
            Ok(guard) => Arc::clone(&guard),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }
}

impl super::Catalog for EmbeddedCatalog {
    fn plan(&self, id: &str) -> Result<Option<PlanInfo>, CatalogUnavailable> {
        Ok(self.snapshot().plans.get(id).cloned())
    }

    fn image(&self, id: &str) -> Result<Option<ImageInfo>, CatalogUnavailable> {
        Ok(self.snapshot().images.get(id).cloned())
    }

    fn validate_coupon(&self, req: &CouponRequest) -> Result<CouponVerdict, CatalogUnavailable> {
        Ok(self.validate_coupon_at(req, now_millis()))
    }

    fn reload(&self) -> Result<(), super::ReloadError> {
        let fresh = Arc::new(read_file(&self.path, &self.sizes)?);
        match self.current.write() {
            Ok(mut guard) => *guard = fresh,
            Err(poisoned) => *poisoned.into_inner() = fresh,
        }
        Ok(())
    }

    fn source_name(&self) -> &'static str {
        "embedded"
    }

    fn blocks(&self) -> bool {
        false
    }
}

/// Verdict reasons, checked in this order.
fn check_coupon(contents: &Contents, req: &CouponRequest, now: Millis) -> CouponVerdict {
    let invalid = |reason: &str| CouponVerdict::Invalid {
        reason: reason.to_string(),
    };
    let Some(coupon) = contents.coupons.get(&canonical_code(&req.code)) else {
        return invalid("NOT_FOUND");
    };
    if !coupon.active {
        return invalid("INACTIVE");
    }
    if coupon.valid_from.is_some_and(|from| now < from) {
        return invalid("BEFORE_START");
    }
    if coupon.valid_until.is_some_and(|until| now > until) {
        return invalid("EXPIRED");
    }
    if !coupon.plan_ids.is_empty() && !coupon.plan_ids.contains(&req.plan_id) {
        return invalid("PLAN_NOT_ALLOWED");
    }
    if !coupon.user_ids.is_empty() && !coupon.user_ids.contains(&req.user_id) {
        return invalid("USER_NOT_ALLOWED");
    }
    if coupon.min_amount.is_some_and(|min| req.amount < min) {
        return invalid("MIN_AMOUNT_NOT_MET");
    }
    let mut discount = coupon.discount.of(req.amount);
    if let Some(cap) = coupon.max_discount {
        discount = discount.min(cap);
    }
    CouponVerdict::Valid(CouponGrant {
        code: coupon.code.clone(),
        discount,
        limits: Some(coupon.limits),
    })
}

fn canonical_code(code: &str) -> String {
    code.to_uppercase()
}

// ----- the file format -----------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    #[serde(default)]
    plans: Vec<FilePlan>,
    #[serde(default)]
    images: Vec<FileImage>,
    #[serde(default)]
    coupons: Vec<FileCoupon>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FilePlan {
    id: String,
    name: String,
    display_name: Option<String>,
    cpu: u32,
    memory_mb: u32,
    disk_gb: u32,
    size_slug: Option<String>,
    #[serde(default = "yes")]
    active: bool,
    prices: FilePrices,
    promo: Option<FileDiscount>,
    #[serde(default)]
    allowed_image_ids: Vec<String>,
}

/// A struct rather than a map so that a misspelt duration is an unknown key.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(non_snake_case)]
struct FilePrices {
    MONTHLY: Option<u64>,
    QUARTERLY: Option<u64>,
    SEMI_ANNUAL: Option<u64>,
    ANNUAL: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FileDiscount {
    name: String,
    discount_type: DiscountType,
    discount_value: u64,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "UPPERCASE")]
enum DiscountType {
    Percent,
    Fixed,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FileImage {
    id: String,
    display_name: String,
    slug: String,
    #[serde(default = "yes")]
    active: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FileCoupon {
    code: String,
    name: String,
    discount_type: DiscountType,
    discount_value: u64,
    max_discount_amount: Option<u64>,
    /// Quoted text or TOML's own unquoted datetime; checked in `timestamp`.
    valid_from: Option<toml::Value>,
    valid_until: Option<toml::Value>,
    max_uses: Option<u64>,
    max_uses_per_user: Option<u64>,
    #[serde(default)]
    plan_ids: Vec<String>,
    #[serde(default)]
    user_ids: Vec<String>,
    min_amount: Option<u64>,
    #[serde(default = "yes")]
    active: bool,
}

fn yes() -> bool {
    true
}

/// `config/catalog.toml` as shipped.
const BUILTIN: &str = include_str!("../../config/catalog.toml");

/// The catalog file could not be used; start-up fails, or a reload keeps the
/// previous catalog. One line, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum CatalogFileError {
    #[error("catalog file {}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("catalog file {}: {problem}", path.display())]
    Invalid { path: PathBuf, problem: ParseError },
    /// The sample compiled into the binary does not load (a build mistake).
    #[error("built-in catalog: {0}")]
    Builtin(ParseError),
}

/// What is wrong inside a catalog file. `what` names the entry, e.g.
/// `plan "vps-basic"` or `coupon "HEMAT20"`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not TOML, or not the catalog's layout (unknown key, wrong type).
    #[error("{}", match line { Some(line) => format!("line {line}: {message}"), None => message.clone() })]
    Syntax {
        line: Option<usize>,
        message: String,
    },
    #[error("{what} is empty")]
    Empty { what: String },
    #[error("duplicate {what}")]
    Duplicate { what: String },
    #[error("{plan} has no prices")]
    NoPrices { plan: String },
    #[error("{plan} allows unknown image {image:?}")]
    UnknownImage { plan: String, image: String },
    #[error("{coupon} names unknown plan {plan:?}")]
    UnknownPlan { coupon: String, plan: String },
    #[error("{coupon}: validFrom is after validUntil")]
    WindowReversed { coupon: String },
    #[error("{what}: PERCENT discountValue {value} is over 100")]
    PercentOver100 { what: String, value: u64 },
    #[error("{what}: {key} {text} is not an RFC 3339 timestamp with an offset")]
    BadTimestamp {
        what: String,
        key: &'static str,
        text: String,
    },
}

fn read_file(path: &Path, sizes: &BTreeMap<String, String>) -> Result<Contents, CatalogFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| CatalogFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, sizes).map_err(|problem| CatalogFileError::Invalid {
        path: path.to_path_buf(),
        problem,
    })
}

fn parse(text: &str, sizes: &BTreeMap<String, String>) -> Result<Contents, ParseError> {
    let doc: FileDoc = toml::from_str(text).map_err(|e| syntax_error(text, &e))?;
    let images = parse_images(doc.images)?;
    let plans = parse_plans(doc.plans, &images, sizes)?;
    let coupons = parse_coupons(doc.coupons, &plans)?;
    Ok(Contents {
        plans,
        images,
        coupons,
    })
}

/// toml's Display draws a multi-line snippet; a log line wants one line.
fn syntax_error(text: &str, e: &toml::de::Error) -> ParseError {
    ParseError::Syntax {
        line: e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1),
        message: e.message().replace('\n', " ").trim().to_string(),
    }
}

fn parse_images(list: Vec<FileImage>) -> Result<BTreeMap<String, ImageInfo>, ParseError> {
    let mut images = BTreeMap::new();
    for image in list {
        non_empty("image id", &image.id)?;
        non_empty(&format!("image {:?} slug", image.id), &image.slug)?;
        let info = ImageInfo {
            id: image.id.clone(),
            display_name: image.display_name,
            slug: image.slug,
            active: image.active,
        };
        if images.insert(image.id.clone(), info).is_some() {
            return Err(ParseError::Duplicate {
                what: format!("image id {:?}", image.id),
            });
        }
    }
    Ok(images)
}

fn parse_plans(
    list: Vec<FilePlan>,
    images: &BTreeMap<String, ImageInfo>,
    sizes: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, PlanInfo>, ParseError> {
    let mut plans = BTreeMap::new();
    for plan in list {
        non_empty("plan id", &plan.id)?;
        let id = plan.id.clone();
        let info = plan_info(plan, images, sizes)?;
        if plans.insert(id.clone(), info).is_some() {
            return Err(ParseError::Duplicate {
                what: format!("plan id {id:?}"),
            });
        }
    }
    Ok(plans)
}

fn plan_info(
    plan: FilePlan,
    images: &BTreeMap<String, ImageInfo>,
    sizes: &BTreeMap<String, String>,
) -> Result<PlanInfo, ParseError> {
    let what = format!("plan {:?}", plan.id);
    let promo = plan
        .promo
        .map(|p| discount(&format!("{what} promo {:?}", p.name), &p))
        .transpose()?;
    let prices = plan_prices(&plan.prices, promo);
    if prices.is_empty() {
        return Err(ParseError::NoPrices { plan: what });
    }
    if let Some(unknown) = plan
        .allowed_image_ids
        .iter()
        .find(|id| !images.contains_key(*id))
    {
        return Err(ParseError::UnknownImage {
            plan: what,
            image: unknown.clone(),
        });
    }
    let size_slug = plan
        .size_slug
        .filter(|s| !s.is_empty())
        .or_else(|| sizes.get(&plan.id).cloned());
    Ok(PlanInfo {
        id: plan.id,
        display_name: plan
            .display_name
            .filter(|d| !d.is_empty())
            .unwrap_or(plan.name),
        cpu: plan.cpu,
        memory_mb: plan.memory_mb,
        disk_gb: plan.disk_gb,
        size_slug,
        active: plan.active,
        prices,
        allowed_image_ids: plan.allowed_image_ids,
    })
}

/// The durations the file prices, each with its price after the plan's promo.
fn plan_prices(prices: &FilePrices, promo: Option<Discount>) -> Vec<PlanPrice> {
    let listed = [
        (PlanDuration::Monthly, prices.MONTHLY),
        (PlanDuration::Quarterly, prices.QUARTERLY),
        (PlanDuration::SemiAnnual, prices.SEMI_ANNUAL),
        (PlanDuration::Annual, prices.ANNUAL),
    ];
    listed
        .into_iter()
        .filter_map(|(duration, base)| {
            let base = base?;
            let off = promo.map_or(0, |d| d.of(base));
            Some(PlanPrice {
                duration,
                base,
                after_promo: base - off,
            })
        })
        .collect()
}

fn parse_coupons(
    list: Vec<FileCoupon>,
    plans: &BTreeMap<String, PlanInfo>,
) -> Result<BTreeMap<String, Coupon>, ParseError> {
    let mut coupons = BTreeMap::new();
    for c in list {
        non_empty("coupon code", &c.code)?;
        let coupon = coupon(c, plans)?;
        let what = format!("coupon {:?}", coupon.code);
        if coupons.insert(coupon.code.clone(), coupon).is_some() {
            return Err(ParseError::Duplicate {
                what: format!("{what} (codes ignore case)"),
            });
        }
    }
    Ok(coupons)
}

fn coupon(c: FileCoupon, plans: &BTreeMap<String, PlanInfo>) -> Result<Coupon, ParseError> {
    let code = canonical_code(&c.code);
    let what = format!("coupon {code:?}");
    let rule = FileDiscount {
        name: c.name,
        discount_type: c.discount_type,
        discount_value: c.discount_value,
    };
    let valid_from = timestamp(&what, "validFrom", c.valid_from.as_ref())?;
    let valid_until = timestamp(&what, "validUntil", c.valid_until.as_ref())?;
    if let (Some(from), Some(until)) = (valid_from, valid_until) {
        if from > until {
            return Err(ParseError::WindowReversed { coupon: what });
        }
    }
    if let Some(unknown) = c.plan_ids.iter().find(|id| !plans.contains_key(*id)) {
        return Err(ParseError::UnknownPlan {
            coupon: what,
            plan: unknown.clone(),
        });
    }
    Ok(Coupon {
        code,
        discount: discount(&what, &rule)?,
        max_discount: c.max_discount_amount,
        valid_from,
        valid_until,
        limits: CouponLimits {
            max_uses: c.max_uses,
            max_uses_per_user: c.max_uses_per_user,
        },
        plan_ids: c.plan_ids.into_iter().collect(),
        user_ids: c.user_ids.into_iter().collect(),
        min_amount: c.min_amount,
        active: c.active,
    })
}

fn non_empty(what: &str, value: &str) -> Result<(), ParseError> {
    if value.trim().is_empty() {
        return Err(ParseError::Empty { what: what.into() });
    }
    Ok(())
}

fn discount(what: &str, rule: &FileDiscount) -> Result<Discount, ParseError> {
    match rule.discount_type {
        DiscountType::Percent if rule.discount_value > 100 => Err(ParseError::PercentOver100 {
            what: what.into(),
            value: rule.discount_value,
        }),
        DiscountType::Percent => Ok(Discount::Percent(rule.discount_value)),
        DiscountType::Fixed => Ok(Discount::Fixed(rule.discount_value)),
    }
}

fn timestamp(
    what: &str,
    key: &'static str,
    value: Option<&toml::Value>,
) -> Result<Option<Millis>, ParseError> {
    let Some(value) = value else {
        return Ok(None);
    };
    let text = match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Datetime(d) => d.to_string(),
        other => other.to_string(),
    };
    match parse_rfc3339(&text) {
        Some(ms) => Ok(Some(ms)),
        None => Err(ParseError::BadTimestamp {
            what: what.into(),
            key,
            text,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;

    const SAMPLE: &str = include_str!("../../config/catalog.toml");

    fn sample() -> Contents {
        match parse(SAMPLE, &BTreeMap::new()) {
            Ok(c) => c,
            Err(e) => panic!("shipped sample does not load: {e}"),
        }
    }

    fn req(code: &str, plan: &str, user: &str, amount: u64) -> CouponRequest {
        CouponRequest {
            code: code.into(),
            plan_id: plan.into(),
            user_id: user.into(),
            amount,
        }
    }

    fn reason(v: CouponVerdict) -> String {
        match v {
            CouponVerdict::Invalid { reason } => reason,
            CouponVerdict::Valid(g) => format!("valid {}", g.discount),
        }
    }

    fn parse_err(text: &str) -> String {
        match parse(text, &BTreeMap::new()) {
            Ok(_) => panic!("accepted: {text}"),
            Err(e) => e.to_string(),
        }
    }

    /// 2025-01-01T00:00:00Z
    const NOW: Millis = 1_735_689_600_000;

    #[test]
    fn shipped_sample_reproduces_the_spec_example() {
        let c = sample();
        let plan = &c.plans["vps-basic"];
        assert_eq!(plan.display_name, "VPS Basic");
        let monthly = plan.price_for(PlanDuration::Monthly).copied();
        assert_eq!(
            monthly,
            Some(PlanPrice {
                duration: PlanDuration::Monthly,
                base: 150_000,
                after_promo: 135_000
            })
        );
        let v = check_coupon(&c, &req("hemat20", "vps-basic", "u1", 135_000), NOW);
        let CouponVerdict::Valid(grant) = v else {
            panic!("HEMAT20 rejected: {v:?}")
        };
        assert_eq!(grant.code, "HEMAT20");
        assert_eq!(grant.discount, 27_000);
        assert_eq!(135_000 - grant.discount, 108_000);
    }

    /// Coupons that each fail one rule, or several (to show which wins).
    const VERDICT_FIXTURE: &str = r#"
            [[plans]]
            id = "p1"
            name = "P1"
            cpu = 1
            memoryMb = 1024
            diskGb = 25
            prices = { MONTHLY = 1000 }
            [[plans]]
            id = "p2"
            name = "P2"
            cpu = 1
            memoryMb = 1024
            diskGb = 25
            prices = { MONTHLY = 1000 }

            [[coupons]]
            code = "Off"
            name = "inactive and expired"
            discountType = "FIXED"
            discountValue = 10
            validUntil = "2020-01-01T00:00:00Z"
            active = false
            [[coupons]]
            code = "SOON"
            name = "not yet"
            discountType = "FIXED"
            discountValue = 10
            validFrom = "2030-01-01T00:00:00Z"
            planIds = ["p2"]
            [[coupons]]
            code = "PICKY"
            name = "plan, user and minimum"
            discountType = "PERCENT"
            discountValue = 50
            maxDiscountAmount = 300
            planIds = ["p1"]
            userIds = ["alice"]
            minAmount = 500
            maxUses = 3
            maxUsesPerUser = 1
"#;

    fn verdict_fixture() -> Contents {
        match parse(VERDICT_FIXTURE, &BTreeMap::new()) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn verdicts_follow_the_documented_order() {
        let c = verdict_fixture();
        assert_eq!(
            reason(check_coupon(&c, &req("nope", "p1", "alice", 900), NOW)),
            "NOT_FOUND"
        );
        assert_eq!(
            reason(check_coupon(&c, &req("off", "p1", "alice", 900), NOW)),
            "INACTIVE"
        );
        assert_eq!(
            reason(check_coupon(&c, &req("soon", "p1", "alice", 900), NOW)),
            "BEFORE_START"
        );
        assert_eq!(
            reason(check_coupon(&c, &req("picky", "p2", "bob", 1), NOW)),
            "PLAN_NOT_ALLOWED"
        );
        assert_eq!(
            reason(check_coupon(&c, &req("picky", "p1", "bob", 1), NOW)),
            "USER_NOT_ALLOWED"
        );
        assert_eq!(
            reason(check_coupon(&c, &req("picky", "p1", "alice", 499), NOW)),
            "MIN_AMOUNT_NOT_MET"
        );
        // 50% of 900 is 450, capped at 300.
        let v = check_coupon(&c, &req("Picky", "p1", "alice", 900), NOW);
        assert_eq!(
            v,
            CouponVerdict::Valid(CouponGrant {
                code: "PICKY".into(),
                discount: 300,
                limits: Some(CouponLimits {
                    max_uses: Some(3),
                    max_uses_per_user: Some(1)
                }),
            })
        );
    }

    #[test]
    fn a_coupon_is_valid_from_the_first_millisecond_of_its_window() {
        let c = verdict_fixture();
        let soon_starts = parse_rfc3339("2030-01-01T00:00:00Z").unwrap_or(0);
        assert_eq!(
            reason(check_coupon(&c, &req("SOON", "p2", "x", 900), soon_starts)),
            "valid 10"
        );
        assert_eq!(
            reason(check_coupon(
                &c,
                &req("SOON", "p2", "x", 900),
                soon_starts - 1
            )),
            "BEFORE_START"
        );
    }

    #[test]
    fn each_sample_coupon_shows_its_rule() {
        let c = sample();
        let verdict = |code: &str, plan: &str, user: &str, amount: u64| {
            reason(check_coupon(&c, &req(code, plan, user, amount), NOW))
        };
        assert_eq!(
            verdict("potong25k", "vps-basic", "u1", 135_000),
            "valid 25000"
        );
        assert_eq!(verdict("HEMAT20", "vps-pro", "u1", 850_000), "valid 50000");
        assert_eq!(verdict("LAUNCH2023", "vps-basic", "u1", 135_000), "EXPIRED");
        assert_eq!(
            verdict("TAHUNBARU2099", "vps-basic", "u1", 135_000),
            "BEFORE_START"
        );
        assert_eq!(
            verdict("PRO15", "vps-basic", "u1", 135_000),
            "PLAN_NOT_ALLOWED"
        );
        assert_eq!(verdict("PRO15", "vps-pro", "u1", 850_000), "valid 127500");
        assert_eq!(
            verdict("MITRA50", "vps-basic", "u1", 135_000),
            "USER_NOT_ALLOWED"
        );
        assert_eq!(
            verdict("MITRA50", "vps-basic", "partner-001", 135_000),
            "valid 67500"
        );
        assert_eq!(
            verdict("BELANJA1JT", "vps-basic", "u1", 135_000),
            "MIN_AMOUNT_NOT_MET"
        );
        assert_eq!(
            verdict("BELANJA1JT", "vps-basic", "u1", 1_350_000),
            "valid 100000"
        );
        assert_eq!(verdict("RAMADAN", "vps-basic", "u1", 135_000), "INACTIVE");
        let limits =
            |code: &str| match check_coupon(&c, &req(code, "vps-basic", "u1", 135_000), NOW) {
                CouponVerdict::Valid(g) => g.limits,
                CouponVerdict::Invalid { reason } => panic!("{code}: {reason}"),
            };
        assert_eq!(limits("FLASH3").and_then(|l| l.max_uses), Some(3));
        assert_eq!(limits("PERTAMA").and_then(|l| l.max_uses_per_user), Some(1));
        assert!(!c.plans["vps-mini"].active);
        assert!(!c.images["centos-7"].active);
        assert_eq!(c.plans["vps-pro"].allowed_image_ids.len(), 3);
        assert!(c.plans["vps-standard"].allowed_image_ids.is_empty());
    }

    #[test]
    fn timestamps_may_be_native_toml_datetimes() {
        let text = "[[coupons]]\ncode = \"X\"\nname = \"x\"\ndiscountType = \"FIXED\"\ndiscountValue = 1\nvalidUntil = 2024-01-01T00:00:00+07:00\n";
        let c = match parse(text, &BTreeMap::new()) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(c.coupons["X"].valid_until, Some(1_704_042_000_000));
        let local = text.replace("+07:00", "");
        assert!(parse_err(&local).contains("offset"));
    }

    #[test]
    fn discounts_round_down_and_never_exceed_the_amount() {
        assert_eq!(Discount::Percent(10).of(15), 1);
        assert_eq!(Discount::Percent(100).of(u64::MAX), u64::MAX);
        assert_eq!(Discount::Fixed(500).of(80), 80);
        let text = r#"
            [[plans]]
            id = "tiny"
            name = "Tiny"
            cpu = 1
            memoryMb = 512
            diskGb = 10
            prices = { MONTHLY = 999, ANNUAL = 50 }
            promo = { name = "big", discountType = "FIXED", discountValue = 100 }
        "#;
        let c = match parse(text, &BTreeMap::new()) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        let plan = &c.plans["tiny"];
        assert_eq!(
            plan.price_for(PlanDuration::Annual).map(|p| p.after_promo),
            Some(0)
        );
        assert_eq!(
            plan.price_for(PlanDuration::Monthly).map(|p| p.after_promo),
            Some(899)
        );
        assert_eq!(plan.price_for(PlanDuration::Quarterly), None);
        assert_eq!(plan.display_name, "Tiny");
    }

    #[test]
    fn size_slug_falls_back_to_the_sizes_map() {
        let text = r#"
            [[plans]]
            id = "a"
            name = "A"
            cpu = 1
            memoryMb = 512
            diskGb = 10
            prices = { MONTHLY = 1 }
            [[plans]]
            id = "b"
            name = "B"
            cpu = 1
            memoryMb = 512
            diskGb = 10
            prices = { MONTHLY = 1 }
            [[plans]]
            id = "c"
            name = "C"
            sizeSlug = "s-own"
            cpu = 1
            memoryMb = 512
            diskGb = 10
            prices = { MONTHLY = 1 }
        "#;
        let sizes = BTreeMap::from([
            ("a".to_string(), "s-from-map".to_string()),
            ("c".to_string(), "s-ignored".to_string()),
        ]);
        let c = match parse(text, &sizes) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(c.plans["a"].size_slug.as_deref(), Some("s-from-map"));
        assert_eq!(c.plans["b"].size_slug, None);
        assert_eq!(c.plans["c"].size_slug.as_deref(), Some("s-own"));
    }

    #[test]
    fn bad_files_are_rejected_with_one_line() {
        let plan = "[[plans]]\nid = \"p\"\nname = \"P\"\ncpu = 1\nmemoryMb = 1\ndiskGb = 1\nprices = { MONTHLY = 1 }\n";
        let coupon = |extra: &str| {
            format!("{plan}[[coupons]]\ncode = \"C\"\nname = \"c\"\ndiscountType = \"PERCENT\"\ndiscountValue = 10\n{extra}\n")
        };
        let cases = [
            (format!("{plan}colour = \"red\"\n"), "colour"),
            (format!("{plan}{plan}"), "duplicate plan id"),
            (plan.replace("MONTHLY", "WEEKLY"), "WEEKLY"),
            (plan.replace("cpu = 1", "cpu = -1"), "line 4"),
            (coupon("validFrom = \"yesterday\""), "validFrom"),
            (coupon("planIds = [\"ghost\"]"), "unknown plan"),
            (coupon("").replace("= 10", "= 101"), "over 100"),
            (coupon("").replace("PERCENT", "HALF"), "HALF"),
            (format!("{}[[coupons]]\ncode = \"c\"\nname = \"again\"\ndiscountType = \"FIXED\"\ndiscountValue = 1\n", coupon("")), "duplicate coupon"),
            (coupon("validFrom = \"2025-02-01T00:00:00Z\"\nvalidUntil = \"2025-01-01T00:00:00Z\""), "after validUntil"),
            (format!("{plan}allowedImageIds = [\"nope\"]\n"), "unknown image"),
            ("[[images]]\nid = \"i\"\ndisplayName = \"I\"\nslug = \"\"\n".to_string(), "slug is empty"),
        ];
        for (text, needle) in cases {
            let e = parse_err(&text);
            assert!(e.contains(needle), "{needle:?} not in {e:?}");
            assert!(!e.contains('\n'), "multi-line error {e:?}");
        }
    }

    #[test]
    fn errors_say_which_step_failed() {
        let plan =
            "[[plans]]\nid = \"p\"\nname = \"P\"\ncpu = 1\nmemoryMb = 1\ndiskGb = 1\nprices = {}\n";
        assert_eq!(
            parse(plan, &BTreeMap::new()).err(),
            Some(ParseError::NoPrices {
                plan: "plan \"p\"".into()
            })
        );
        let missing =
            EmbeddedCatalog::load(Path::new("/nonexistent/catalog.toml"), &BTreeMap::new());
        assert!(matches!(missing, Err(CatalogFileError::Read { .. })));
    }

    #[test]
    fn the_built_in_catalog_is_the_shipped_file() {
        use crate::catalog::Catalog;
        let sizes = BTreeMap::new();
        let builtin = EmbeddedCatalog::builtin(Path::new("missing.toml"), &sizes).unwrap();
        let shipped_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/catalog.toml");
        let shipped = EmbeddedCatalog::load(&shipped_path, &sizes).unwrap();
        assert_eq!(
            builtin.plan("vps-basic").unwrap(),
            shipped.plan("vps-basic").unwrap()
        );
        assert!(builtin.plan("vps-basic").unwrap().is_some());
        // Reloading re-reads the configured path, which does not exist here.
        assert!(builtin.reload().is_err());
    }

    #[test]
    fn reload_swaps_and_keeps_the_old_catalog_on_a_bad_file() {
        let dir = match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => panic!("temp dir: {e}"),
        };
        let path = dir.path().join("catalog.toml");
        let write = |text: &str| {
            if let Err(e) = std::fs::write(&path, text) {
                panic!("write {}: {e}", path.display());
            }
        };
        let plan = |id: &str| {
            format!("[[plans]]\nid = \"{id}\"\nname = \"P\"\ncpu = 1\nmemoryMb = 1\ndiskGb = 1\nprices = {{ MONTHLY = 1 }}\n")
        };
        write(&plan("one"));
        let cat = match EmbeddedCatalog::load(&path, &BTreeMap::new()) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(cat.source_name(), "embedded");
        assert!(matches!(cat.plan("one"), Ok(Some(_))));

        write(&plan("two"));
        assert!(cat.reload().is_ok());
        assert!(matches!(cat.plan("one"), Ok(None)));
        assert!(matches!(cat.plan("two"), Ok(Some(_))));

        write("[[plans]]\nid = ");
        let err = cat
            .reload()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("catalog.toml"), "{err}");
        assert!(matches!(cat.plan("two"), Ok(Some(_))));

        drop(dir);
        let err = cat
            .reload()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("cannot read"), "{err}");
        assert!(matches!(cat.plan("two"), Ok(Some(_))));
    }
}
