//! Orders: create, read, list, pay, cancel, retry. Reads and catalog calls run on
//! the blocking pool; changes go through the store's single writer.

use std::sync::Arc;

use tokio::sync::Notify;
use uuid::Uuid;

use super::idempotency::{self, IdempotencyKey, InFlight, Renderer, Reply};
use super::rate_limit::RateLimiter;
use crate::catalog::{Catalog, CouponRequest, CouponVerdict};
use crate::domain::lifecycle::{self, Event, Note};
use crate::domain::time::now_millis;
use crate::domain::{
    Actor, DropletPlan, HistoryEntry, ItemType, Order, OrderItem, OrderStatus, PlanDuration,
    Pricing,
};
use crate::error::{AppError, FieldError};
use crate::store::read::{ListQuery, Page};
use crate::store::{
    CouponClaim, IdempotencyRecord, IdempotencyWrite, Maintenance, OrderRecord, Store, WriteOp,
};

/// A validated payment-status request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentUpdate {
    pub id: Uuid,
    /// PAID, else PAYMENT_FAILED.
    pub paid: bool,
    pub notes: Option<String>,
}

/// A create-order request whose shape is already validated by the API layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrder {
    pub plan_id: String,
    pub image_id: String,
    pub duration: PlanDuration,
    pub coupon_code: Option<String>,
    pub region: Option<String>,
    pub hostname: Option<String>,
    pub ssh_public_keys: Vec<String>,
}

pub struct OrderService {
    store: Store,
    catalog: Arc<dyn Catalog>,
    currency: String,
    /// The first is the default region.
    regions: Vec<String>,
    limiter: RateLimiter,
    in_flight: Arc<InFlight>,
    /// Wakes the provisioner as soon as a PAID commit leaves it work.
    provisioner: Arc<Notify>,
}

impl OrderService {
    pub fn new(
        store: Store,
        catalog: Arc<dyn Catalog>,
        currency: String,
        regions: Vec<String>,
        rate_limit_per_minute: u32,
        provisioner: Arc<Notify>,
    ) -> OrderService {
        OrderService {
            store,
            catalog,
            currency,
            regions,
            limiter: RateLimiter::new(rate_limit_per_minute),
            in_flight: Arc::new(InFlight::default()),
            provisioner,
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn catalog(&self) -> &Arc<dyn Catalog> {
        &self.catalog
    }

    /// `request` is the validated body, or why it is invalid: a refusal
    /// under an idempotency key is stored and replayed like any other 4xx.
    pub async fn create_order(
        &self,
        user: &str,
        request: Result<NewOrder, AppError>,
        key: Option<IdempotencyKey>,
        render: Renderer,
    ) -> Reply {
        let user = user.to_string();
        self.idempotent(key, render, move |svc, write| {
            Box::pin(async move {
                // After the replay check, so a replay never costs the user a slot.
                if let Err(retry_after_secs) = svc.limiter.check(&user) {
                    return Err(AppError::RateLimited { retry_after_secs });
                }
                svc.create_inner(&user, request?, write).await
            })
        })
        .await
    }

    async fn create_inner(
        &self,
        user: &str,
        request: NewOrder,
        idempotency: &mut Option<IdempotencyWrite>,
    ) -> Result<OrderRecord, AppError> {
        let region = match &request.region {
            None => self.regions.first().cloned().unwrap_or_default(),
            Some(r) if self.regions.contains(r) => r.clone(),
            Some(r) => {
                return Err(AppError::invalid_fields(vec![FieldError::new(
                    "region",
                    format!(
                        "{r:?} is not offered; choose one of {}",
                        self.regions.join(", ")
                    ),
                )]))
            }
        };
        let catalog = self.catalog.clone();
        let currency = self.currency.clone();
        let user_owned = user.to_string();
        let priced = blocking(move || {
            price_order(catalog.as_ref(), &user_owned, &request, currency, region)
        })
        .await??;
        let (order, first, coupon) = priced;
        let op = WriteOp::CreateOrder {
            order: Box::new(order),
            first,
            coupon,
            idempotency: idempotency.take(),
        };
        Ok(self.store.write(op).await??)
    }

    pub async fn get_for_user(&self, user: &str, id: Uuid) -> Result<OrderRecord, AppError> {
        let record = self.get(id).await?;
        if record.order.user_id != user {
            return Err(AppError::OrderAccessDenied);
        }
        Ok(record)
    }

    // Reads run inline: a redb read is a few page lookups, almost always from
    // redb's cache or the OS page cache, and measured cheaper than the hop to
    // the blocking pool (which cost about half the CPU of GET /orders/{id};
    // see BENCHMARKS.md). Commits and network calls stay off the workers.

    pub async fn get(&self, id: Uuid) -> Result<OrderRecord, AppError> {
        self.store.get_order(id)?.ok_or(AppError::OrderNotFound)
    }

    pub async fn get_with_history(
        &self,
        id: Uuid,
    ) -> Result<(OrderRecord, Vec<HistoryEntry>), AppError> {
        let record = self.store.get_order(id)?.ok_or(AppError::OrderNotFound)?;
        let history = self.store.history(id)?;
        Ok((record, history))
    }

    pub async fn list(&self, query: ListQuery) -> Result<Page, AppError> {
        Ok(self.store.list_orders(&query)?)
    }

    pub async fn cancel_by_user(
        &self,
        user: &str,
        id: Uuid,
        reason: Option<String>,
    ) -> Result<OrderRecord, AppError> {
        // A foreign order is 403 whatever its status, so check ownership first.
        self.get_for_user(user, id).await?;
        let note = Note {
            actor: Actor::User(user.to_string()).render(),
            reason,
            metadata: None,
        };
        self.transition(id, Event::Cancel, note, Some(user.to_string()), None)
            .await
    }

    pub async fn cancel_by_admin(
        &self,
        id: Uuid,
        reason: Option<String>,
        admin: Option<String>,
    ) -> Result<OrderRecord, AppError> {
        let note = Note {
            actor: Actor::Admin(admin).render(),
            reason,
            metadata: None,
        };
        self.transition(id, Event::Cancel, note, None, None).await
    }

    pub async fn retry_provisioning(
        &self,
        id: Uuid,
        admin: Option<String>,
    ) -> Result<OrderRecord, AppError> {
        let note = Note {
            actor: Actor::Admin(admin).render(),
            reason: Some("retry provisioning".into()),
            metadata: None,
        };
        let record = self
            .transition(id, Event::RetryProvisioning, note, None, None)
            .await?;
        self.provisioner.notify_one();
        Ok(record)
    }

    /// payment-status: PAID (commits the PENDING provisioning task with it) or
    /// PAYMENT_FAILED (a history event; the order stays PENDING_PAYMENT).
    pub async fn set_payment_status(
        &self,
        request: Result<PaymentUpdate, AppError>,
        admin: Option<String>,
        key: Option<IdempotencyKey>,
        render: Renderer,
    ) -> Reply {
        let paid = matches!(&request, Ok(PaymentUpdate { paid: true, .. }));
        let reply = self
            .idempotent(key, render, move |svc, write| {
                Box::pin(async move {
                    let PaymentUpdate { id, paid, notes } = request?;
                    let event = if paid {
                        Event::Paid
                    } else {
                        Event::PaymentFailed
                    };
                    let note = Note {
                        actor: Actor::Admin(admin).render(),
                        reason: notes,
                        metadata: None,
                    };
                    svc.transition(id, event, note, None, write.take()).await
                })
            })
            .await;
        if paid && matches!(&reply, Reply::Fresh(Ok(_))) {
            self.provisioner.notify_one();
        }
        reply
    }

    async fn transition(
        &self,
        id: Uuid,
        event: Event,
        note: Note,
        owner: Option<String>,
        idempotency: Option<IdempotencyWrite>,
    ) -> Result<OrderRecord, AppError> {
        let op = WriteOp::Transition {
            order_id: id,
            event,
            note,
            owner,
            idempotency,
        };
        Ok(self.store.write(op).await??)
    }

    /// Runs `command` under an idempotency key: replays a stored response, refuses
    /// a reused or busy key, and otherwise lets the command's write store its
    /// response. A 4xx produced before the command reached the writer is stored
    /// here, so replays are exact for every stored outcome.
    async fn idempotent<F>(
        &self,
        key: Option<IdempotencyKey>,
        render: Renderer,
        command: F,
    ) -> Reply
    where
        F: for<'a> FnOnce(
            &'a OrderService,
            &'a mut Option<IdempotencyWrite>,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<OrderRecord, AppError>> + Send + 'a>,
        >,
    {
        let Some(key) = key else {
            let mut none = None;
            return Reply::Fresh(command(self, &mut none).await);
        };
        let Some(_claim) = self.in_flight.claim(&key.scope, &key.key) else {
            return Reply::Fresh(Err(AppError::IdempotencyKeyInUse));
        };
        let now = now_millis();
        let stored = match self.store.idempotency(&key.scope, &key.key) {
            Ok(found) => found.filter(|r| r.expires_at > now),
            Err(e) => return Reply::Fresh(Err(e.into())),
        };
        if let Some(record) = stored {
            return if record.fingerprint == key.fingerprint {
                Reply::Replayed(record.response)
            } else {
                Reply::Fresh(Err(AppError::IdempotencyKeyReused))
            };
        }
        let mut write = Some(idempotency::write_for(&key, now, render.clone()));
        let outcome = command(self, &mut write).await;
        if write.is_some() {
            // The command failed before its write: store a 4xx answer ourselves.
            if let Some(response) = idempotency::storable(render(&outcome)) {
                let record = IdempotencyRecord {
                    fingerprint: key.fingerprint,
                    response,
                    expires_at: now.saturating_add(idempotency::TTL_MS),
                };
                let work = Maintenance::StoreResponse {
                    scope: key.scope.clone(),
                    key: key.key.clone(),
                    record,
                };
                if let Err(e) = self.store.writer().maintain(work).await {
                    tracing::warn!(error = %e, "could not store an idempotent 4xx response");
                }
            }
        }
        Reply::Fresh(outcome)
    }
}

pub type Priced = (Order, HistoryEntry, Option<CouponClaim>);

/// Prices an order from the catalog (blocking). Every refusal is a 400 with its
/// own code; nothing here writes.
pub fn price_order(
    catalog: &dyn Catalog,
    user: &str,
    request: &NewOrder,
    currency: String,
    region: String,
) -> Result<Priced, AppError> {
    let plan = catalog.plan(&request.plan_id)?.ok_or_else(|| {
        AppError::InvalidPlan(format!("plan {:?} does not exist", request.plan_id))
    })?;
    if !plan.active {
        return Err(AppError::InvalidPlan(format!(
            "plan {:?} is not available",
            plan.id
        )));
    }
    let size_slug = plan.size_slug.clone().ok_or_else(|| {
        AppError::InvalidPlan(format!("plan {:?} has no droplet size configured", plan.id))
    })?;
    let image = catalog.image(&request.image_id)?.ok_or_else(|| {
        AppError::InvalidImage(format!("image {:?} does not exist", request.image_id))
    })?;
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
    let price = plan.price_for(request.duration).ok_or_else(|| {
        AppError::InvalidDuration(format!(
            "plan {:?} has no {} price",
            plan.id, request.duration
        ))
    })?;
    let (coupon, claim) = match &request.coupon_code {
        None => (None, None),
        Some(code) => {
            let verdict = catalog.validate_coupon(&CouponRequest {
                code: code.clone(),
                plan_id: plan.id.clone(),
                user_id: user.to_string(),
                amount: price.after_promo,
            })?;
            match verdict {
                CouponVerdict::Invalid { reason } => {
                    return Err(AppError::InvalidCoupon { reason })
                }
                CouponVerdict::Valid(grant) => {
                    let claim = grant.limits.map(|l| CouponClaim {
                        code: grant.code.clone(),
                        max_uses: l.max_uses,
                        max_uses_per_user: l.max_uses_per_user,
                    });
                    (Some((grant.code, grant.discount)), claim)
                }
            }
        }
    };
    let pricing = Pricing::compute(price.base, price.after_promo, coupon, currency);
    let now = now_millis();
    let id = Uuid::new_v4();
    let hostname = request
        .hostname
        .clone()
        .unwrap_or_else(|| default_hostname(&id));
    let item = |item_type, reference_id: &str, description: String, unit_price| OrderItem {
        id: Uuid::new_v4(),
        item_type,
        reference_id: reference_id.to_string(),
        description,
        unit_price,
        quantity: 1,
        total_price: unit_price,
        created_at: now,
    };
    let items = vec![
        item(
            ItemType::Plan,
            &plan.id,
            format!(
                "{} - {} vCPU, {}MB RAM, {}GB SSD",
                plan.display_name, plan.cpu, plan.memory_mb, plan.disk_gb
            ),
            price.base,
        ),
        item(ItemType::Image, &image.id, image.display_name.clone(), 0),
    ];
    let mut order = Order {
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
        droplet: DropletPlan {
            region,
            size_slug,
            image_slug: image.slug.clone(),
            hostname,
            ssh_public_keys: request.ssh_public_keys.clone(),
        },
        paid_at: None,
        created_at: now,
        updated_at: now,
        history_len: 0,
    };
    let first = lifecycle::first_entry(&mut order, Actor::User(user.to_string()).render(), now);
    Ok((order, first, claim))
}

/// `vps-` and the first 8 characters of the order id.
pub fn default_hostname(id: &Uuid) -> String {
    let text = id.to_string();
    format!("vps-{}", &text[..8])
}

/// Runs blocking work (redb reads, ureq calls) on the blocking pool.
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, AppError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| AppError::Internal(format!("blocking task failed: {e}")))
}
