//! The provisioning task: the durable to-do written together with PAID, and the
//! record of everything observed about the order's droplet.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::order::{Order, ProvisioningStatus};
use super::time::Millis;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvisioningTask {
    pub id: Uuid,
    pub order_id: Uuid,
    pub status: ProvisioningStatus,
    /// Bumped on every write; a writer compares it so a stale update is refused
    /// instead of overwriting a newer one (e.g. a retry that raced a sweep).
    pub revision: u64,
    /// Observations made since the task was (re)started; the timeout budget.
    pub attempts: u32,
    pub do_region: String,
    pub do_size: String,
    pub do_image: String,
    pub droplet_id: Option<u64>,
    pub droplet_name: Option<String>,
    pub droplet_status: Option<String>,
    pub droplet_tags: Vec<String>,
    pub droplet_created_at: Option<Millis>,
    pub ipv4_public: Option<String>,
    pub ipv4_private: Option<String>,
    pub ipv6_public: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    /// The droplet's create action, checked for `errored`.
    pub create_action_id: Option<u64>,
    /// Consecutive 404s since the droplet was created (tolerated for a few sweeps).
    pub not_found_streak: u32,
    /// Back-off: the reconciler leaves the task alone until then.
    pub next_attempt_at: Option<Millis>,
    pub started_at: Option<Millis>,
    pub completed_at: Option<Millis>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

impl ProvisioningTask {
    /// The PENDING task written in the same transaction as PAID.
    pub fn for_paid_order(order: &Order, now: Millis) -> ProvisioningTask {
        ProvisioningTask {
            id: Uuid::new_v4(),
            order_id: order.id,
            status: ProvisioningStatus::Pending,
            revision: 0,
            attempts: 0,
            do_region: order.droplet.region.clone(),
            do_size: order.droplet.size_slug.clone(),
            do_image: order.droplet.image_slug.clone(),
            droplet_id: None,
            droplet_name: None,
            droplet_status: None,
            droplet_tags: Vec::new(),
            droplet_created_at: None,
            ipv4_public: None,
            ipv4_private: None,
            ipv6_public: None,
            error_code: None,
            error_message: None,
            create_action_id: None,
            not_found_streak: 0,
            next_attempt_at: None,
            started_at: None,
            completed_at: None,
            created_at: now,
            updated_at: now,
        }
    }

    /// Open tasks are the reconciler's work list.
    pub fn is_open(&self) -> bool {
        matches!(
            self.status,
            ProvisioningStatus::Pending | ProvisioningStatus::InProgress
        )
    }
}

/// The tag every droplet of an order carries; listing it is how vpsd finds a
/// droplet whose create response was lost.
pub fn order_tag(order_id: &Uuid) -> String {
    format!("vpsd-order-{order_id}")
}

/// The tag common to all vpsd droplets; large sweeps list it page by page.
pub const COMMON_TAG: &str = "vpsd";
