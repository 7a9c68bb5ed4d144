//! Cloud providers behind one trait: `digitalocean` (API v2 over ureq) and `sandbox`
//! (in-process droplets for local runs). Calls are blocking: the provisioner runs
//! them off the async runtime.

pub mod accounts;
pub mod digitalocean;
pub mod fleet;
pub mod sandbox;

use std::time::Duration;

use crate::domain::customer_action::ActionType;
use crate::domain::droplet::Droplet;
use crate::domain::time::Millis;

/// What to create. Field meanings follow DigitalOcean's `POST /v2/droplets`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropletSpec {
    pub name: String,
    pub region: String,
    pub size: String,
    pub image: String,
    pub tags: Vec<String>,
    pub monitoring: bool,
    pub ipv6: bool,
    /// cloud-init user data; omitted from the request when `None`.
    pub user_data: Option<String>,
}

/// The answer to a create: the droplet as first reported, and its create
/// action (from `links.actions`), which only this answer names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    pub droplet: Droplet,
    pub create_action_id: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionStatus {
    InProgress,
    Completed,
    Errored,
}

/// A power action (`POST /v2/droplets/{id}/actions`), SPEC §9.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PowerAction {
    Off,
    On,
}

impl PowerAction {
    /// DigitalOcean's action `type`, also what `ActionInfo::kind` reports.
    pub fn as_str(self) -> &'static str {
        match self {
            PowerAction::Off => "power_off",
            PowerAction::On => "power_on",
        }
    }

    /// The inverse of [`PowerAction::as_str`]; `None` for any other action type.
    pub fn parse(kind: &str) -> Option<PowerAction> {
        match kind {
            "power_off" => Some(PowerAction::Off),
            "power_on" => Some(PowerAction::On),
            _ => None,
        }
    }

    /// The same action as a customer may ask for it (SPEC §14).
    pub fn kind(self) -> ActionType {
        match self {
            PowerAction::Off => ActionType::PowerOff,
            PowerAction::On => ActionType::PowerOn,
        }
    }
}

/// What `GET /v2/account` says of an account's capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountInfo {
    pub droplet_limit: u64,
    /// The account's `status` is `active`; anything else may not create.
    pub active: bool,
}

/// One entry of a droplet's action list (`GET /v2/droplets/{id}/actions`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionInfo {
    pub id: u64,
    /// The provider's action `type`: `create`, `power_off`, `power_on`, ...
    pub kind: String,
    pub status: ActionStatus,
    /// When the action was started; `None` if the provider did not say.
    pub started_at: Option<Millis>,
}

/// How many of a droplet's most recent actions [`Cloud::droplet_actions`] returns.
/// The reconciler looks for an action it sent moments (or one crash) ago, so one
/// page is plenty and costs a single request.
pub const RECENT_ACTIONS: usize = 20;

/// Guards `DELETE /v2/droplets?tag_name=`: an empty tag must never reach the
/// provider, whatever it would make of it.
fn check_delete_tag(tag: &str) -> Result<(), CloudError> {
    if tag.trim().is_empty() {
        return Err(CloudError::Rejected {
            status: 400,
            message: "refusing to delete droplets by an empty tag".into(),
        });
    }
    Ok(())
}

/// Why a call failed. Messages never contain the API token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloudError {
    #[error("not found")]
    NotFound,
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// A 4xx that will not fix itself (e.g. 422 droplet limit, bad name), with the
    /// provider's message.
    #[error("rejected ({status}): {message}")]
    Rejected { status: u16, message: String },
    /// 429, or the client holding back to stay under `RateLimit-Remaining`:
    /// try again after `retry_after`.
    #[error("rate limited, retry after {retry_after:?}")]
    RateLimited { retry_after: Duration },
    /// 5xx, timeout, connection error, unparseable answer: retry later.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// Droplets per page when listing by tag: what a listing costs in calls.
pub const LIST_PAGE_SIZE: usize = 200;

pub trait Cloud: Send + Sync {
    /// `digitalocean` or `sandbox`, for logs and health.
    fn name(&self) -> &'static str;
    fn create_droplet(&self, spec: &DropletSpec) -> Result<Created, CloudError>;
    fn get_droplet(&self, id: u64) -> Result<Droplet, CloudError>;
    /// Every droplet carrying `tag`, following pagination (200 per page).
    fn list_by_tag(&self, tag: &str) -> Result<Vec<Droplet>, CloudError>;
    fn delete_droplet(&self, id: u64) -> Result<(), CloudError>;
    fn get_action(&self, id: u64) -> Result<ActionStatus, CloudError>;
    /// The droplet's create action (id and status), found from the droplet's
    /// own action list. Needed for a droplet adopted by tag after a crash: the
    /// create response that named the action was lost.
    fn find_create_action(
        &self,
        droplet_id: u64,
    ) -> Result<Option<(u64, ActionStatus)>, CloudError>;
    /// Starts `kind` on the droplet (a rebuild onto the image with provider
    /// slug `image`) and returns the action's id. Refusals such as a locked
    /// droplet, a pending event or "already powered off" are `Rejected` (422)
    /// and change nothing.
    fn act(
        &self,
        droplet_id: u64,
        kind: ActionType,
        image: Option<&str>,
    ) -> Result<u64, CloudError>;
    /// The lifecycle's power actions (SPEC §9) are actions like any other.
    fn power(&self, droplet_id: u64, action: PowerAction) -> Result<u64, CloudError> {
        self.act(droplet_id, action.kind(), None)
    }
    /// The droplet's [`RECENT_ACTIONS`] most recent actions, newest first (by
    /// action id, which providers hand out in increasing order). After a crash
    /// the reconciler finds an action it already sent here instead of sending
    /// a second one.
    fn droplet_actions(&self, droplet_id: u64) -> Result<Vec<ActionInfo>, CloudError>;
    /// Deletes every droplet carrying `tag`. Ok when none does. Deletion is
    /// asynchronous: droplets may still be listed for a while afterwards, so
    /// callers confirm with [`Cloud::list_by_tag`].
    fn delete_by_tag(&self, tag: &str) -> Result<(), CloudError>;
    /// The account's droplet limit and whether it may create (SPEC §13).
    fn account(&self) -> Result<AccountInfo, CloudError>;
    /// How many droplets the account holds, vpsd's and anyone else's.
    fn droplet_count(&self) -> Result<u64, CloudError>;
    /// The longest one call can take (the client's timeout). Shutdown waits
    /// this long for a call under way, so its answer (a droplet just created)
    /// is recorded rather than left for the next start to find.
    fn call_timeout(&self) -> Duration {
        Duration::ZERO
    }
    /// Requests sent to the provider so far (metrics).
    fn calls_sent(&self) -> u64 {
        0
    }
    /// 429 answers received so far (metrics).
    fn rate_limited_count(&self) -> u64 {
        0
    }
    /// What the provider last said is left of this token's rate budget.
    fn rate_limit_remaining(&self) -> Option<u64> {
        None
    }
}

impl CloudError {
    /// DigitalOcean's 422 on a create because the account holds all the
    /// droplets it may ("creating this/these droplet(s) will exceed your
    /// droplet limit", or "You have reached the droplet limit ..."): the
    /// account is full, the order is not at fault.
    pub fn is_droplet_limit(&self) -> bool {
        matches!(self, CloudError::Rejected { status: 422, message }
            if message.to_ascii_lowercase().contains("droplet limit"))
    }
}
