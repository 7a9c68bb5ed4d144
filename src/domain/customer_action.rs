//! Customers operate their own servers (SPEC §14): reboot, power and
//! rebuild, asked for over the API and brought into effect by the
//! reconciler exactly once, like the lifecycle's droplet actions (§9). Here
//! are the pure rules: which actions exist, what state each needs and
//! leaves, and whether a request is admitted now.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::droplet::DropletStatus;
use super::order::OrderStatus;
use super::time::Millis;
use super::wire::wire_enum;

wire_enum!(
    /// What a customer (or an admin on their behalf) asks of a server; the
    /// text is DigitalOcean's action `type`.
    text ActionType {
        Reboot => "reboot",
        PowerCycle => "power_cycle",
        Shutdown => "shutdown",
        PowerOff => "power_off",
        PowerOn => "power_on",
        Rebuild => "rebuild",
    }
);

wire_enum!(
    /// Where an action stands.
    text ActionState {
        Pending => "pending",
        Running => "running",
        Completed => "completed",
        Failed => "failed",
        Canceled => "canceled",
    }
);

impl ActionType {
    /// Whether the droplet's observed state lets this action run: a server
    /// is powered on only when off, rebooted or stopped only when running;
    /// a rebuild works either way.
    pub fn fits(self, droplet: DropletStatus) -> bool {
        match self {
            ActionType::PowerOn => droplet == DropletStatus::Off,
            ActionType::Rebuild => matches!(droplet, DropletStatus::Active | DropletStatus::Off),
            _ => droplet == DropletStatus::Active,
        }
    }

    /// The droplet state that confirms the action is in effect.
    pub fn target(self) -> DropletStatus {
        match self {
            ActionType::Shutdown | ActionType::PowerOff => DropletStatus::Off,
            _ => DropletStatus::Active,
        }
    }
}

impl ActionState {
    /// Pending or running: the one action an order may have open.
    pub fn is_open(self) -> bool {
        matches!(self, ActionState::Pending | ActionState::Running)
    }
}

impl CustomerAction {
    /// A new action as admitted: pending, nothing sent.
    pub fn new(ask: ActionAsk, order_id: Uuid, no: u32, by: String, now: Millis) -> Self {
        CustomerAction {
            id: ask.id,
            order_id,
            no,
            kind: ask.kind,
            image: ask.image,
            status: ActionState::Pending,
            requested_by: by,
            created_at: now,
            started_at: None,
            completed_at: None,
            error_code: None,
            error_message: None,
            provider_action_id: None,
            attempts: 0,
            retry_at: None,
        }
    }

    /// Ends the action as `status` (completed, failed or canceled); a failure
    /// or cancellation says why.
    pub fn end(&mut self, status: ActionState, why: Option<(&str, String)>, now: Millis) {
        self.status = status;
        self.completed_at = Some(now);
        self.retry_at = None;
        if let Some((code, message)) = why {
            self.error_code = Some(code.to_string());
            self.error_message = Some(message);
        }
    }
}

/// `errorCode` of an action the lifecycle canceled (a suspend or terminate).
pub const CANCELED_BY_LIFECYCLE: &str = "CANCELED_BY_LIFECYCLE";
/// `errorCode` of an action that failed every attempt or that DigitalOcean
/// reported errored.
pub const ACTION_FAILED: &str = "DROPLET_ACTION_FAILED";

/// One customer action, as stored and shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerAction {
    pub id: Uuid,
    pub order_id: Uuid,
    /// The order's actions are numbered from 0 in the order they were asked.
    pub no: u32,
    pub kind: ActionType,
    /// Rebuild only: the catalog image, as the order will show it.
    pub image: Option<ImageChoice>,
    pub status: ActionState,
    /// `user:{sub}` or `admin[:{id}]`, as in history rows.
    pub requested_by: String,
    pub created_at: Millis,
    pub started_at: Option<Millis>,
    pub completed_at: Option<Millis>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    /// DigitalOcean's action, once sent.
    pub provider_action_id: Option<u64>,
    /// Failed attempts so far, and when the next may go.
    pub attempts: u32,
    pub retry_at: Option<Millis>,
}

/// A catalog image a rebuild installs: what the order shows from then on,
/// and the slug the provider knows it by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageChoice {
    pub id: String,
    pub name: String,
    pub slug: String,
}

/// What the API asks the lifecycle for: an action of `kind` (a rebuild onto
/// `image`), admitted under `cooldown_ms` unless an admin asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionAsk {
    pub id: Uuid,
    pub kind: ActionType,
    pub image: Option<ImageChoice>,
    pub cooldown_ms: Millis,
}

/// Why a request is not admitted, in the order SPEC §14 checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionRefusal {
    /// Only an ACTIVE server takes actions (a SUSPENDED one stays off).
    NotActive { current: OrderStatus },
    /// A lifecycle droplet action or another customer action is open.
    InProgress { action_id: Option<Uuid> },
    /// The droplet is not in a state this action fits.
    DropletState { droplet: DropletStatus },
    /// The last customer action was too recent; `retry_after_ms` to wait.
    Cooldown { retry_after_ms: Millis },
}

/// A request for an action, with what its admission depends on besides the
/// order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    pub kind: ActionType,
    /// Admins skip the cooldown.
    pub by_admin: bool,
    pub cooldown_ms: Millis,
    pub now: Millis,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_type_fits_the_droplet_states_it_needs() {
        use ActionType::*;
        let (on, off) = (DropletStatus::Active, DropletStatus::Off);
        for kind in [Reboot, PowerCycle, Shutdown, PowerOff] {
            assert!(kind.fits(on) && !kind.fits(off), "{kind:?}");
        }
        assert!(PowerOn.fits(off) && !PowerOn.fits(on));
        assert!(Rebuild.fits(on) && Rebuild.fits(off));
        assert!(!Rebuild.fits(DropletStatus::New));
        assert_eq!(Shutdown.target(), off);
        assert_eq!(PowerCycle.target(), on);
    }
}
