//! Orders: create, read, list, pay, cancel, retry. Reads and catalog calls run on
//! the blocking pool; changes go through the store's single writer.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use uuid::Uuid;

use super::idempotency::{self, IdempotencyKey, InFlight, Reply};
use super::pricing::{price_order, Placement};
use super::rate_limit::RateLimiter;
use crate::backend::store::views::Lookup;
use crate::backend::store::{
    IdempotencyRecord, IdempotencyWrite, Maintenance, StoreHandle, WriteOp,
};
use crate::catalog::Catalog;
use crate::domain::access::check_owner;
use crate::domain::lifecycle::{self, Command};
use crate::domain::replay::Replay;
use crate::domain::time::now_millis;
use crate::domain::{Actor, HistoryEntry, ListQuery, OrderRecord, Page};
use crate::error::{AppError, FieldError};

/// A validated payment-status request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentUpdate {
    pub id: Uuid,
    /// PAID, else PAYMENT_FAILED.
    pub paid: bool,
    pub notes: Option<String>,
}

pub use super::pricing::NewOrder;

/// `actions.cooldown_seconds`' default.
const DEFAULT_ACTION_COOLDOWN: Duration = Duration::from_secs(60);

pub struct OrderService {
    store: StoreHandle,
    catalog: Arc<dyn Catalog>,
    currency: String,
    /// The first is the default region.
    regions: Vec<String>,
    limiter: RateLimiter,
    in_flight: Arc<InFlight>,
    /// Wakes the provisioner as soon as a PAID commit leaves it work.
    provisioner: Arc<Notify>,
    /// At most one customer action per order this often (SPEC §14).
    action_cooldown: Duration,
    /// Where "today" is for the stats (`console.timezone`, SPEC §14).
    pub(super) timezone: chrono_tz::Tz,
}

impl OrderService {
    pub fn new(
        store: impl Into<StoreHandle>,
        catalog: Arc<dyn Catalog>,
        currency: String,
        regions: Vec<String>,
        rate_limit_per_minute: u32,
        max_keys_per_user: u64,
        provisioner: Arc<Notify>,
    ) -> OrderService {
        OrderService {
            store: store.into(),
            catalog,
            currency,
            regions,
            limiter: RateLimiter::new(rate_limit_per_minute),
            in_flight: Arc::new(InFlight::new(max_keys_per_user)),
            provisioner,
            action_cooldown: DEFAULT_ACTION_COOLDOWN,
            timezone: chrono_tz::UTC,
        }
    }

    /// `actions.cooldown_seconds` (default 60).
    pub fn with_action_cooldown(mut self, cooldown: Duration) -> OrderService {
        self.action_cooldown = cooldown;
        self
    }

    pub(super) fn action_cooldown(&self) -> Duration {
        self.action_cooldown
    }

    /// "Today" in the stats is the calendar day in `zone` (default UTC).
    pub fn with_timezone(mut self, zone: chrono_tz::Tz) -> OrderService {
        self.timezone = zone;
        self
    }

    /// The store, for the console's read models next door; nothing above
    /// the service layer reaches it.
    pub(super) fn store(&self) -> &StoreHandle {
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
    ) -> Reply {
        let user = user.to_string();
        self.idempotent(key, move |svc, write| {
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
        let (order, coupon) = blocking(move || {
            let placement = Placement { currency, region };
            price_order(catalog.as_ref(), &user_owned, &request, placement)
        })
        .await??;
        let change = lifecycle::create(order, &Actor::User(user.to_string()), now_millis());
        let op = WriteOp::Create {
            change: Box::new(change),
            coupon,
            idempotency: idempotency.take(),
        };
        Ok(self.store.write(op).await??)
    }

    /// The caller's own order as `render` renders it, from the store's view
    /// cache while the order is unchanged. `render` must be a pure function
    /// of the record: every caller of this shares the cached bytes.
    pub async fn rendered_for_user(
        &self,
        user: &str,
        id: Uuid,
        render: impl FnOnce(&OrderRecord) -> Vec<u8>,
    ) -> Result<Vec<u8>, AppError> {
        let views = self.store.views();
        // The miss comes before the read's snapshot opens (see store::views).
        let generation = match views.lookup(id.as_u128()) {
            Lookup::Hit(hit) if *hit.owner == *user => return Ok(hit.body.to_vec()),
            Lookup::Hit(_) => return Err(AppError::OrderAccessDenied),
            Lookup::Miss { generation } => generation,
        };
        let record = self.get_for_user(user, id).await?;
        let body = render(&record);
        views.offer(generation, id.as_u128(), &record.order.user_id, &body);
        Ok(body)
    }

    pub async fn get_for_user(&self, user: &str, id: Uuid) -> Result<OrderRecord, AppError> {
        let record = self.get(id).await?;
        check_owner(&record.order, Some(user))?;
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
        let actor = Actor::User(user.to_string());
        let owner = Some(user.to_string());
        self.apply(id, Command::Cancel { reason }, actor, owner, None)
            .await
    }

    pub async fn cancel_by_admin(
        &self,
        id: Uuid,
        reason: Option<String>,
        admin: Option<String>,
    ) -> Result<OrderRecord, AppError> {
        let command = Command::Cancel { reason };
        self.apply(id, command, Actor::Admin(admin), None, None)
            .await
    }

    pub async fn retry_provisioning(
        &self,
        id: Uuid,
        admin: Option<String>,
    ) -> Result<OrderRecord, AppError> {
        let command = Command::RetryProvisioning;
        let record = self
            .apply(id, command, Actor::Admin(admin), None, None)
            .await?;
        self.wake_provisioner();
        Ok(record)
    }

    /// The reconciler has new work (a task, a droplet action): run it now
    /// rather than at the next tick.
    pub(super) fn wake_provisioner(&self) {
        self.provisioner.notify_one();
    }

    /// payment-status: PAID (commits the PENDING provisioning task with it) or
    /// PAYMENT_FAILED (a history event; the order stays PENDING_PAYMENT).
    pub async fn set_payment_status(
        &self,
        request: Result<PaymentUpdate, AppError>,
        admin: Option<String>,
        key: Option<IdempotencyKey>,
    ) -> Reply {
        let paid = matches!(&request, Ok(PaymentUpdate { paid: true, .. }));
        let reply = self
            .idempotent(key, move |svc, write| {
                Box::pin(async move {
                    let PaymentUpdate { id, paid, notes } = request?;
                    let command = if paid {
                        Command::Pay { notes }
                    } else {
                        Command::PaymentFailed { notes }
                    };
                    svc.apply(id, command, Actor::Admin(admin), None, write.take())
                        .await
                })
            })
            .await;
        if paid && matches!(&reply, Reply::Fresh(Ok(_))) {
            self.provisioner.notify_one();
        }
        reply
    }

    /// One command through the writer, decided on the stored record.
    pub(super) async fn apply(
        &self,
        order_id: Uuid,
        command: Command,
        actor: Actor,
        owner: Option<String>,
        idempotency: Option<IdempotencyWrite>,
    ) -> Result<OrderRecord, AppError> {
        let op = WriteOp::Apply {
            order_id,
            command,
            actor,
            owner,
            idempotency,
        };
        Ok(self.store.write(op).await??)
    }

    /// Runs `command` under an idempotency key: replays a stored response, refuses
    /// a reused or busy key, and otherwise lets the command's write store its
    /// response. A 4xx produced before the command reached the writer is stored
    /// here, so replays are exact for every stored outcome.
    pub(super) async fn idempotent<F>(&self, key: Option<IdempotencyKey>, command: F) -> Reply
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
        let Some(mut claim) = self.in_flight.claim(&key.scope, &key.key) else {
            return Reply::Fresh(Err(AppError::IdempotencyKeyInUse));
        };
        let now = now_millis();
        let found = match self.store.idempotency(&key.scope, &key.key) {
            Ok(found) => found,
            Err(e) => return Reply::Fresh(Err(e.into())),
        };
        // Only a new row counts towards the caller's limit; a replay (or an
        // expired key used again) is answered at the limit too.
        if found.is_none() {
            if let Err(refusal) = self.in_flight.admit(&self.store, &mut claim, now).await {
                return Reply::Fresh(Err(refusal));
            }
        }
        if let Some(record) = found.filter(|r| r.expires_at > now) {
            return if record.fingerprint == key.fingerprint {
                Reply::Replayed(record.outcome)
            } else {
                Reply::Fresh(Err(AppError::IdempotencyKeyReused))
            };
        }
        let mut write = Some(idempotency::write_for(&key, now));
        let outcome = command(self, &mut write).await;
        if let (Some(write), Err(refusal)) = (write, &outcome) {
            // Refused before it reached the writer (validation, catalog): keep
            // the refusal ourselves, so replays are exact for every outcome.
            if let Some(kept) = idempotency::storable(refusal) {
                self.store_refusal(write, kept).await;
            }
        }
        Reply::Fresh(outcome)
    }

    async fn store_refusal(&self, write: IdempotencyWrite, refusal: AppError) {
        let record = IdempotencyRecord {
            fingerprint: write.fingerprint,
            outcome: Replay::Outcome(Box::new(Err(refusal))),
            expires_at: write.expires_at,
        };
        if !idempotency::fits(&record) {
            tracing::warn!(
                limit = idempotency::MAX_STORED_BYTES,
                "a 4xx response is too large to keep under its Idempotency-Key; not stored"
            );
            return;
        }
        let work = Maintenance::StoreResponse {
            scope: write.scope,
            key: write.key,
            record: Box::new(record),
        };
        if let Err(e) = self.store.maintain(work).await {
            tracing::warn!(error = %e, "could not store an idempotent 4xx response");
        }
    }
}

/// Runs blocking work (redb reads, ureq calls) on the blocking pool.
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, AppError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| AppError::Internal(format!("blocking task failed: {e}")))
}
