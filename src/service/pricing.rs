//! Pricing an order from the catalog (SPEC §8 "Pricing"): blocking calls, run
//! off the async workers, before and outside any write transaction. Every
//! refusal is a 400 with its own code; nothing here writes.

use uuid::Uuid;

use crate::backend::store::CouponClaim;
use crate::catalog::{Catalog, CouponRequest, CouponVerdict, ImageInfo, PlanInfo, PlanPrice};
use crate::domain::time::now_millis;
use crate::domain::values::{CatalogId, Hostname, SshKeys};
use crate::domain::{DropletPlan, ItemType, Order, OrderItem, OrderStatus, PlanDuration, Pricing};
use crate::error::AppError;

/// A create-order request as the API parsed it: ids, hostname and keys are
/// domain values, so nothing unchecked reaches pricing or the droplet plan.
/// The coupon and region stay text: the catalog and the configured regions
/// are what judge them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrder {
    pub plan_id: CatalogId,
    pub image_id: CatalogId,
    pub duration: PlanDuration,
    pub coupon_code: Option<String>,
    pub region: Option<String>,
    pub hostname: Option<Hostname>,
    pub ssh_public_keys: SshKeys,
}

/// Where the order will be provisioned, chosen by the caller.
pub struct Placement {
    pub currency: String,
    pub region: String,
}

/// The unpaid order as priced now, and the coupon redemption the store must count.
pub type Priced = (Order, Option<CouponClaim>);

pub fn price_order(
    catalog: &dyn Catalog,
    user: &str,
    request: &NewOrder,
    placement: Placement,
) -> Result<Priced, AppError> {
    let (plan, size_slug) = resolve_plan(catalog, request.plan_id.as_str())?;
    let image = resolve_image(catalog, &plan, request.image_id.as_str())?;
    let price = *plan.price_for(request.duration).ok_or_else(|| {
        AppError::InvalidDuration(format!(
            "plan {:?} has no {} price",
            plan.id, request.duration
        ))
    })?;
    let (coupon, claim) = match &request.coupon_code {
        None => (None, None),
        Some(code) => apply_coupon(catalog, code, &plan, user, price.after_promo)?,
    };
    let pricing = Pricing::compute(price.base, price.after_promo, coupon, placement.currency);
    let droplet = DropletPlan {
        region: placement.region,
        size_slug,
        image_slug: image.slug.clone(),
        hostname: String::new(),
        ssh_public_keys: request.ssh_public_keys.lines(),
    };
    let order = build_order(user, request, &plan, &image, price, pricing, droplet);
    Ok((order, claim))
}

/// The plan, active and with a droplet size.
fn resolve_plan(catalog: &dyn Catalog, id: &str) -> Result<(PlanInfo, String), AppError> {
    let plan = catalog
        .plan(id)?
        .ok_or_else(|| AppError::InvalidPlan(format!("plan {id:?} does not exist")))?;
    if !plan.active {
        return Err(AppError::InvalidPlan(format!(
            "plan {:?} is not available",
            plan.id
        )));
    }
    let size_slug = plan.size_slug.clone().ok_or_else(|| {
        AppError::InvalidPlan(format!("plan {:?} has no droplet size configured", plan.id))
    })?;
    Ok((plan, size_slug))
}

/// The image, active and offered with the plan (an empty allow-list offers all).
pub(super) fn resolve_image(
    catalog: &dyn Catalog,
    plan: &PlanInfo,
    id: &str,
) -> Result<ImageInfo, AppError> {
    let image = catalog
        .image(id)?
        .ok_or_else(|| AppError::InvalidImage(format!("image {id:?} does not exist")))?;
    if !image.active {
        return Err(AppError::InvalidImage(format!(
            "image {:?} is not available",
            image.id
        )));
    }
    if !plan.allowed_image_ids.is_empty() && !plan.allowed_image_ids.contains(&image.id) {
        return Err(AppError::InvalidImage(format!(
            "image {:?} is not offered with plan {:?}",
            image.id, plan.id
        )));
    }
    Ok(image)
}

type CouponOutcome = (Option<(String, u64)>, Option<CouponClaim>);

/// Validates the coupon against the price after promo: its code and discount,
/// and the usage limits the store must count (embedded catalog only).
fn apply_coupon(
    catalog: &dyn Catalog,
    code: &str,
    plan: &PlanInfo,
    user: &str,
    amount: u64,
) -> Result<CouponOutcome, AppError> {
    let verdict = catalog.validate_coupon(&CouponRequest {
        code: code.to_string(),
        plan_id: plan.id.clone(),
        user_id: user.to_string(),
        amount,
    })?;
    match verdict {
        CouponVerdict::Invalid { reason } => Err(AppError::InvalidCoupon { reason }),
        CouponVerdict::Valid(grant) => {
            let claim = grant.limits.map(|l| CouponClaim {
                code: grant.code.clone(),
                max_uses: l.max_uses,
                max_uses_per_user: l.max_uses_per_user,
            });
            Ok((Some((grant.code, grant.discount)), claim))
        }
    }
}

fn build_order(
    user: &str,
    request: &NewOrder,
    plan: &PlanInfo,
    image: &ImageInfo,
    price: PlanPrice,
    pricing: Pricing,
    mut droplet: DropletPlan,
) -> Order {
    let now = now_millis();
    let id = crate::domain::new_id();
    droplet.hostname = match &request.hostname {
        Some(hostname) => hostname.as_str().to_string(),
        None => default_hostname(&id),
    };
    let item = |item_type, reference_id: &str, description: String, unit_price| OrderItem {
        id: crate::domain::new_id(),
        item_type,
        reference_id: reference_id.to_string(),
        description,
        unit_price,
        quantity: 1,
        total_price: unit_price,
        created_at: now,
    };
    let plan_description = format!(
        "{} - {} vCPU, {}MB RAM, {}GB SSD",
        plan.display_name, plan.cpu, plan.memory_mb, plan.disk_gb
    );
    let items = vec![
        item(ItemType::Plan, &plan.id, plan_description, price.base),
        item(ItemType::Image, &image.id, image.display_name.clone(), 0),
    ];
    Order {
        id,
        seq: 0,
        user_id: user.to_string(),
        status: OrderStatus::PendingPayment,
        plan_id: plan.id.clone(),
        plan_name: plan.display_name.clone(),
        image_id: image.id.clone(),
        image_name: image.display_name.clone(),
        duration: request.duration,
        pricing,
        coupon_counted: false,
        items,
        droplet,
        paid_at: None,
        created_at: now,
        updated_at: now,
        history_len: 0,
        term: crate::domain::Term::default(),
        auto_renew: false,
    }
}

/// `vps-` and the first 8 characters of the order id.
pub fn default_hostname(id: &Uuid) -> String {
    let text = id.to_string();
    format!("vps-{}", &text[..8])
}
