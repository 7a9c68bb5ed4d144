//! Customer actions (SPEC §14): the owner, or an admin on their behalf, asks
//! for a reboot, a power change or a rebuild. The request is checked (a
//! rebuild's image against the catalog and the order's plan), decided by the
//! lifecycle on the stored order inside the writer, and committed before
//! the 202; the reconciler does the rest.

use uuid::Uuid;

use super::idempotency::{IdempotencyKey, Reply};
use super::orders::{blocking, OrderService};
use super::pricing::resolve_image;
use crate::domain::access::check_owner;
use crate::domain::customer_action::{ActionAsk, ActionType, CustomerAction, ImageChoice};
use crate::domain::lifecycle::Command;
use crate::domain::{Actor, HistoryEntry, OrderRecord};
use crate::error::{AppError, FieldError};

/// A validated action request: the type, and a rebuild's catalog image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionRequest {
    pub kind: ActionType,
    pub image_id: Option<String>,
}

/// Who asks: the owner through the user routes (cooldown applies), or an
/// admin through the internal ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requester {
    Owner(String),
    Admin(Option<String>),
}

/// How many actions the admin detail lists (SPEC §14: the 20 newest).
pub const ACTIONS_SHOWN: usize = 20;

/// One page of an order's actions, newest first.
pub struct ActionPage {
    pub items: Vec<CustomerAction>,
    pub total: u64,
}

impl Requester {
    fn actor(&self) -> Actor {
        match self {
            Requester::Owner(sub) => Actor::User(sub.clone()),
            Requester::Admin(id) => Actor::Admin(id.clone()),
        }
    }

    /// The user the order must belong to; `None` for an admin.
    pub fn owner(&self) -> Option<&str> {
        match self {
            Requester::Owner(sub) => Some(sub),
            Requester::Admin(_) => None,
        }
    }
}

impl OrderService {
    /// Asks for an action on order `id` (`request` is the validated path and
    /// body, or why they are invalid) under an optional Idempotency-Key. A
    /// success is the order with the new action as its task's last one.
    pub async fn request_action(
        &self,
        who: Requester,
        request: Result<(Uuid, ActionRequest), AppError>,
        key: Option<IdempotencyKey>,
    ) -> Reply {
        let reply = self
            .idempotent(key, move |svc, write| {
                Box::pin(async move {
                    let (id, request) = request?;
                    let record = svc.get(id).await?;
                    check_owner(&record.order, who.owner())?;
                    let image = match request.image_id {
                        Some(image_id) => {
                            Some(svc.rebuild_image(&record.order.plan_id, image_id).await?)
                        }
                        None => None,
                    };
                    let ask = ActionAsk {
                        id: crate::domain::new_id(),
                        kind: request.kind,
                        image,
                        cooldown_ms: i64::try_from(svc.action_cooldown().as_millis())
                            .unwrap_or(i64::MAX),
                    };
                    let owner = who.owner().map(str::to_string);
                    let command = Command::RequestAction(Box::new(ask));
                    svc.apply(id, command, who.actor(), owner, write.take())
                        .await
                })
            })
            .await;
        if matches!(&reply, Reply::Fresh(Ok(_))) {
            self.wake_provisioner();
        }
        reply
    }

    /// The image a rebuild installs: active in the catalog and offered with
    /// the order's plan, as at ordering; else a 400 naming `imageId`.
    async fn rebuild_image(
        &self,
        plan_id: &str,
        image_id: String,
    ) -> Result<ImageChoice, AppError> {
        let catalog = self.catalog().clone();
        let plan_id = plan_id.to_string();
        let found = blocking(move || {
            let plan = catalog.plan(&plan_id)?.ok_or_else(|| {
                AppError::InvalidImage(format!("the order's plan {plan_id:?} is no longer offered"))
            })?;
            resolve_image(catalog.as_ref(), &plan, &image_id)
        })
        .await?;
        match found {
            Ok(image) => Ok(ImageChoice {
                id: image.id,
                name: image.display_name,
                slug: image.slug,
            }),
            Err(AppError::InvalidImage(why)) => {
                Err(AppError::invalid_fields(vec![FieldError::new(
                    "imageId", why,
                )]))
            }
            Err(other) => Err(other),
        }
    }

    /// A page of the order's actions, newest first, for its owner (or an
    /// admin, `owner` None).
    pub async fn actions(
        &self,
        owner: Option<&str>,
        id: Uuid,
        page: u32,
        limit: u32,
    ) -> Result<ActionPage, AppError> {
        let record = self.get(id).await?;
        check_owner(&record.order, owner)?;
        let total = record.task.as_ref().map_or(0, |t| u64::from(t.actions_len));
        let skip = (page.saturating_sub(1) as usize).saturating_mul(limit as usize);
        let items = self.store().customer_actions(id, skip, limit as usize)?;
        Ok(ActionPage { items, total })
    }

    /// The admin detail: the order, its history and its newest actions.
    pub async fn admin_detail(
        &self,
        id: Uuid,
    ) -> Result<(OrderRecord, Vec<HistoryEntry>, Vec<CustomerAction>), AppError> {
        let (record, history) = self.get_with_history(id).await?;
        let actions = self.store().customer_actions(id, 0, ACTIONS_SHOWN)?;
        Ok((record, history, actions))
    }

    /// One of the order's actions by its id.
    pub async fn action(
        &self,
        owner: Option<&str>,
        id: Uuid,
        action_id: Uuid,
    ) -> Result<CustomerAction, AppError> {
        let record = self.get(id).await?;
        check_owner(&record.order, owner)?;
        let total = record.task.as_ref().map_or(0, |t| t.actions_len as usize);
        // An order has few actions (one a minute at most for its owner):
        // reading them newest first finds recent ones at once.
        let all = self.store().customer_actions(id, 0, total)?;
        all.into_iter()
            .find(|a| a.id == action_id)
            .ok_or(AppError::ActionNotFound)
    }
}
