//! Cloud providers behind one trait: `digitalocean` (API v2 over ureq) and `sandbox`
//! (in-process droplets for local runs). Calls are blocking: the provisioner runs
//! them off the async runtime.

pub mod digitalocean;
pub mod sandbox;

use std::time::Duration;

use crate::domain::droplet::Droplet;

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
    /// Requests sent to the provider so far (metrics).
    fn calls_sent(&self) -> u64 {
        0
    }
    /// 429 answers received so far (metrics).
    fn rate_limited_count(&self) -> u64 {
        0
    }
}
