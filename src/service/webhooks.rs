//! The admin side of webhooks (SPEC §10): what was sent where, and sending a
//! delivery again. Sending itself is `crate::webhooks::deliver`'s.

use uuid::Uuid;

use super::orders::blocking;
use crate::backend::store::{Maintenance, StoreHandle};
use crate::domain::time::now_millis;
use crate::domain::webhook::Delivery;
use crate::domain::webhook::{DeliveryPage, DeliveryQuery};
use crate::error::AppError;

pub struct WebhookService {
    store: StoreHandle,
}

impl WebhookService {
    pub fn new(store: impl Into<StoreHandle>) -> WebhookService {
        WebhookService {
            store: store.into(),
        }
    }

    /// Deliveries newest first, filtered by status and order.
    pub async fn list(&self, query: DeliveryQuery) -> Result<DeliveryPage, AppError> {
        let store = self.store.clone();
        Ok(blocking(move || store.list_deliveries(&query)).await??)
    }

    /// Queues a delivery again (same event, same `webhook-id`, a fresh
    /// retry schedule) and returns it as queued.
    pub async fn replay(&self, id: Uuid) -> Result<Delivery, AppError> {
        let replay = Maintenance::ReplayDelivery {
            id,
            now: now_millis(),
        };
        if self.store.maintain(replay).await? == 0 {
            return Err(AppError::DeliveryNotFound);
        }
        let store = self.store.clone();
        blocking(move || store.delivery(id))
            .await??
            .ok_or(AppError::DeliveryNotFound)
    }
}
