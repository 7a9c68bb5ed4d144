//! The provisioning task: the durable to-do written together with PAID, and the
//! record of everything observed about the order's droplet.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::customer_action::CustomerAction;
use super::droplet::{Droplet, DropletAction, DropletStatus};
use super::order::{Order, OrderStatus, ProvisioningStatus};
use super::time::Millis;
use super::wire::wire_enum;

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
    /// The order's droplet as last observed; `None` until one is created or
    /// adopted. Kept across a retry so the provisioner can adopt or replace it.
    pub droplet: Option<Droplet>,
    /// Why the task failed, or (while it is still open) the transient trouble it
    /// is retrying through. Set and cleared together with `error_message`.
    pub error_code: Option<ProvisioningError>,
    pub error_message: Option<String>,
    /// The droplet's create action, checked for `errored`.
    pub create_action_id: Option<u64>,
    /// Consecutive 404s since the droplet was created (tolerated for a few sweeps).
    pub not_found_streak: u32,
    pub started_at: Option<Millis>,
    pub completed_at: Option<Millis>,
    pub created_at: Millis,
    pub updated_at: Millis,
    /// A droplet action owed since a status change (SPEC §9), durable with it.
    pub action: Option<PendingAction>,
    /// The DigitalOcean account the server lives on (SPEC §13), recorded
    /// before the first create and never changed while a droplet may exist
    /// there; `None` until the task is placed.
    pub do_account: Option<String>,
    /// Since when no account could take the server (SPEC §13); `None` once
    /// placed. The wait ends in `NO_CAPACITY` after `capacity_wait_seconds`.
    pub capacity_wait_since: Option<Millis>,
    /// The order's last customer action (SPEC §14): the one open, if any, or
    /// the one the cooldown counts from. Every action is also kept in the
    /// store's action list; this copy is what the reconciler works on.
    pub customer_action: Option<CustomerAction>,
    /// Customer actions asked so far: the next one's number.
    pub actions_len: u32,
}

/// A droplet action the reconciler must bring into effect and confirm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingAction {
    pub action: DropletAction,
    /// When the status change that owes it committed: an action the provider
    /// lists as started at or after this is ours (found again after a crash).
    pub requested_at: Millis,
    /// The provider's action, once sent (power actions).
    pub action_id: Option<u64>,
    /// When the request was last sent: it is not sent again while in flight.
    pub sent_at: Option<Millis>,
    /// Consecutive failures, for back-off.
    pub failures: u32,
    /// Earliest time of the next attempt after a failure.
    pub retry_at: Option<Millis>,
}

impl PendingAction {
    pub fn new(action: DropletAction, now: Millis) -> PendingAction {
        PendingAction {
            action,
            requested_at: now,
            action_id: None,
            sent_at: None,
            failures: 0,
            retry_at: None,
        }
    }
}

impl ProvisioningTask {
    /// True when this save confirms the delete `before` owed: the droplet is
    /// gone (`order.droplet_deleted`).
    pub fn confirms_delete(&self, before: &ProvisioningTask) -> bool {
        before
            .action
            .as_ref()
            .is_some_and(|a| a.action == super::droplet::DropletAction::Delete)
            && self.action.is_none()
    }

    /// The PENDING task written in the same transaction as PAID.
    pub fn for_paid_order(order: &Order, now: Millis) -> ProvisioningTask {
        ProvisioningTask {
            id: super::new_id(),
            order_id: order.id,
            status: ProvisioningStatus::Pending,
            revision: 0,
            attempts: 0,
            do_region: order.droplet.region.clone(),
            do_size: order.droplet.size_slug.clone(),
            do_image: order.droplet.image_slug.clone(),
            droplet: None,
            error_code: None,
            error_message: None,
            create_action_id: None,
            not_found_streak: 0,
            started_at: None,
            completed_at: None,
            created_at: now,
            updated_at: now,
            action: None,
            do_account: None,
            capacity_wait_since: None,
            customer_action: None,
            actions_len: 0,
        }
    }

    /// The customer action the reconciler still has to bring into effect.
    pub fn open_customer_action(&self) -> Option<&CustomerAction> {
        self.customer_action.as_ref().filter(|a| a.status.is_open())
    }

    /// Whether the reconciler owes this task any droplet work: the
    /// lifecycle's action or a customer's (its work list).
    pub fn owes_droplet_work(&self) -> bool {
        self.action.is_some() || self.open_customer_action().is_some()
    }

    /// The account a task written before accounts existed belongs to: the
    /// single account of that time (`default`), unless it was never started,
    /// in which case no droplet can exist and placement decides.
    pub fn account_before_fleets(&self) -> Option<String> {
        let never_started = self.status == ProvisioningStatus::Pending
            && self.droplet.is_none()
            && self.create_action_id.is_none()
            && self.started_at.is_none();
        (!never_started).then(|| super::fleet::DEFAULT_ACCOUNT.to_string())
    }

    /// The account whose slot this order's server takes while the order is
    /// live (SPEC §13: paid and not yet failed, canceled or terminated, or
    /// still owing a droplet action). Such an account cannot be removed.
    pub fn live_account(&self, order: OrderStatus) -> Option<&str> {
        let live = matches!(
            order,
            OrderStatus::Paid
                | OrderStatus::Provisioning
                | OrderStatus::Active
                | OrderStatus::Suspended
        ) || self.action.is_some();
        self.do_account.as_deref().filter(|_| live)
    }

    /// The task is placed on `account`: the wait for capacity is over.
    pub fn place_on(&mut self, account: String) {
        self.do_account = Some(account);
        self.capacity_wait_since = None;
        if self.error_code == Some(ProvisioningError::NoCapacity) {
            self.error_code = None;
            self.error_message = None;
        }
    }

    /// No account can take the server now. Waiting does not spend attempts;
    /// after `limit_ms` of it the task fails `NO_CAPACITY` (SPEC §13).
    pub fn wait_for_capacity(
        &mut self,
        code: ProvisioningError,
        message: String,
        now: Millis,
        limit_ms: Millis,
    ) -> Verdict {
        self.do_account = None;
        let since = *self.capacity_wait_since.get_or_insert(now);
        if now.saturating_sub(since) >= limit_ms {
            return Verdict::Failed {
                code: ProvisioningError::NoCapacity,
                message: format!(
                    "no DigitalOcean account had room for this server for {} s ({message})",
                    limit_ms / 1000
                ),
            };
        }
        self.note_retrying(code, message);
        Verdict::Waiting
    }

    /// Open tasks are the reconciler's work list.
    pub fn is_open(&self) -> bool {
        matches!(
            self.status,
            ProvisioningStatus::Pending | ProvisioningStatus::InProgress
        )
    }

    pub fn droplet_id(&self) -> Option<u64> {
        self.droplet.as_ref().map(|d| d.id)
    }

    /// retry-provisioning (SPEC §8 "Retry"): a fresh attempt budget and no stale
    /// error, keeping the droplet so the provisioner can adopt or replace it.
    pub fn restart(&mut self, now: Millis) {
        self.status = ProvisioningStatus::Pending;
        self.revision += 1;
        self.attempts = 0;
        self.error_code = None;
        self.error_message = None;
        self.not_found_streak = 0;
        self.completed_at = None;
        self.updated_at = now;
    }

    /// Shows transient trouble on a task that stays open (SPEC §4: recorded as
    /// `DIGITALOCEAN_UNAVAILABLE` while retrying).
    pub fn note_retrying(&mut self, code: ProvisioningError, message: String) {
        self.error_code = Some(code);
        self.error_message = Some(message);
    }
}

/// The tag every droplet of an order carries; listing it is how vpsd finds a
/// droplet whose create response was lost.
pub fn order_tag(order_id: &Uuid) -> String {
    format!("vpsd-order-{order_id}")
}

/// The tag common to all vpsd droplets; large sweeps list it page by page.
pub const COMMON_TAG: &str = "vpsd";

wire_enum!(
    /// Provisioning error codes (SPEC §2): recorded on the task as `errorCode`,
    /// never HTTP errors. Records store the code text (see [`super::wire`]).
    text ProvisioningError {
        DropletCreationFailed => "DROPLET_CREATION_FAILED",
        DropletErrored => "DROPLET_ERRORED",
        DropletNotFound => "DROPLET_NOT_FOUND",
        DigitaloceanUnauthorized => "DIGITALOCEAN_UNAUTHORIZED",
        DigitaloceanUnavailable => "DIGITALOCEAN_UNAVAILABLE",
        ProvisioningTimeout => "PROVISIONING_TIMEOUT",
        DropletActionFailed => "DROPLET_ACTION_FAILED",
        NoCapacity => "NO_CAPACITY",
    }
);

/// How many consecutive sweeps may see a fresh droplet as 404 before it counts
/// as gone (DigitalOcean can 404 a droplet right after creating it).
pub const NOT_FOUND_TOLERANCE: u32 = 3;

/// A droplet in this status will not become `active` by itself: provisioning
/// fails it (`DROPLET_ERRORED`), and a retry deletes it before creating anew.
pub fn fails_provisioning(status: DropletStatus) -> bool {
    matches!(status, DropletStatus::Off | DropletStatus::Archive)
}

/// What one sweep learned about a task's droplet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    Droplet(Droplet),
    /// The droplet's create action errored.
    CreateActionErrored(Droplet),
    NotFound,
}

/// The task's fate after an observation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Keep following it.
    Waiting,
    Succeeded,
    Failed {
        code: ProvisioningError,
        message: String,
    },
}

impl ProvisioningTask {
    /// Copies what was observed onto the task. A creation time once known is
    /// kept when a later answer leaves it out.
    pub fn record_droplet(&mut self, d: &Droplet) {
        let known = self.droplet.as_ref().and_then(|old| old.created_at);
        self.droplet = Some(Droplet {
            created_at: d.created_at.or(known),
            ..d.clone()
        });
    }

    /// Counts one attempt and decides: `active` with a public IPv4 succeeds;
    /// an errored create action or `off`/`archive` fails; a 404 is tolerated for
    /// [`NOT_FOUND_TOLERANCE`] sweeps; the attempt budget ends in a timeout.
    pub fn judge(&mut self, observation: &Observation, max_attempts: u32) -> Verdict {
        self.attempts = self.attempts.saturating_add(1);
        let verdict = match observation {
            Observation::Droplet(d) => {
                self.not_found_streak = 0;
                self.record_droplet(d);
                if d.status == DropletStatus::Active && d.ipv4_public.is_some() {
                    Verdict::Succeeded
                } else if fails_provisioning(d.status) {
                    Verdict::Failed {
                        code: ProvisioningError::DropletErrored,
                        message: format!("droplet {} is {}", d.id, d.status),
                    }
                } else {
                    Verdict::Waiting
                }
            }
            Observation::CreateActionErrored(d) => {
                self.record_droplet(d);
                Verdict::Failed {
                    code: ProvisioningError::DropletErrored,
                    message: format!("the create action of droplet {} errored", d.id),
                }
            }
            Observation::NotFound => {
                self.not_found_streak = self.not_found_streak.saturating_add(1);
                if self.not_found_streak > NOT_FOUND_TOLERANCE {
                    Verdict::Failed {
                        code: ProvisioningError::DropletNotFound,
                        message: format!(
                            "droplet {} was not found {} times in a row",
                            self.droplet_id().unwrap_or_default(),
                            self.not_found_streak
                        ),
                    }
                } else {
                    Verdict::Waiting
                }
            }
        };
        match verdict {
            Verdict::Waiting if self.attempts >= max_attempts => Verdict::Failed {
                code: ProvisioningError::ProvisioningTimeout,
                message: format!(
                    "the droplet was not active with a public IPv4 after {} attempts",
                    self.attempts
                ),
            },
            other => other,
        }
    }

    /// Marks the task finished.
    pub fn conclude(&mut self, verdict: &Verdict, now: Millis) {
        match verdict {
            Verdict::Waiting => {}
            Verdict::Succeeded => {
                self.status = ProvisioningStatus::Success;
                self.error_code = None;
                self.error_message = None;
                self.completed_at = Some(now);
            }
            Verdict::Failed { code, message } => {
                self.status = ProvisioningStatus::Failed;
                self.error_code = Some(*code);
                self.error_message = Some(message.clone());
                self.completed_at = Some(now);
            }
        }
    }
}

/// cloud-init user data installing `keys` for root; `None` without keys.
/// Keys were validated as OpenSSH public keys (no quotes, no control
/// characters), and are JSON-quoted, which YAML reads as plain strings.
pub fn cloud_init_user_data(keys: &[String]) -> Option<String> {
    if keys.is_empty() {
        return None;
    }
    let mut doc = String::from(
        "#cloud-config\ndisable_root: false\nusers:\n  - name: root\n    ssh_authorized_keys:\n",
    );
    for key in keys {
        let quoted = serde_json::to_string(key).unwrap_or_default();
        doc.push_str("      - ");
        doc.push_str(&quoted);
        doc.push('\n');
    }
    Some(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task() -> ProvisioningTask {
        let mut t = ProvisioningTask::for_paid_order(&crate::domain::order::test_order("u"), 0);
        t.status = ProvisioningStatus::InProgress;
        t.droplet = Some(droplet(DropletStatus::New, None));
        t
    }

    fn droplet(status: DropletStatus, ip: Option<&str>) -> Droplet {
        Droplet {
            id: 1,
            name: "vps".into(),
            status,
            tags: vec![],
            created_at: None,
            ipv4_public: ip.map(str::to_string),
            ipv4_private: None,
            ipv6_public: None,
        }
    }

    #[test]
    fn active_needs_a_public_ip() {
        let mut t = task();
        assert_eq!(
            t.judge(
                &Observation::Droplet(droplet(DropletStatus::Active, None)),
                60
            ),
            Verdict::Waiting
        );
        assert_eq!(
            t.judge(
                &Observation::Droplet(droplet(DropletStatus::Active, Some("203.0.113.9"))),
                60
            ),
            Verdict::Succeeded
        );
        assert_eq!(t.attempts, 2);
    }

    #[test]
    fn not_found_is_tolerated_three_times() {
        let mut t = task();
        for _ in 0..NOT_FOUND_TOLERANCE {
            assert_eq!(t.judge(&Observation::NotFound, 60), Verdict::Waiting);
        }
        assert!(matches!(
            t.judge(&Observation::NotFound, 60),
            Verdict::Failed {
                code: ProvisioningError::DropletNotFound,
                ..
            }
        ));
    }

    #[test]
    fn off_fails_and_budget_times_out() {
        let mut t = task();
        assert!(matches!(
            t.judge(&Observation::Droplet(droplet(DropletStatus::Off, None)), 60),
            Verdict::Failed {
                code: ProvisioningError::DropletErrored,
                ..
            }
        ));
        let mut t = task();
        assert_eq!(
            t.judge(&Observation::Droplet(droplet(DropletStatus::New, None)), 2),
            Verdict::Waiting
        );
        assert!(matches!(
            t.judge(&Observation::Droplet(droplet(DropletStatus::New, None)), 2),
            Verdict::Failed {
                code: ProvisioningError::ProvisioningTimeout,
                ..
            }
        ));
    }

    #[test]
    fn unknown_status_waits_and_creation_time_is_kept() {
        let mut t = task();
        let mut first = droplet(DropletStatus::New, None);
        first.created_at = Some(1_000);
        assert_eq!(t.judge(&Observation::Droplet(first), 60), Verdict::Waiting);
        assert_eq!(
            t.judge(
                &Observation::Droplet(droplet(DropletStatus::Unknown, Some("203.0.113.9"))),
                60
            ),
            Verdict::Waiting
        );
        let seen = t.droplet.as_ref().unwrap();
        assert_eq!(seen.status, DropletStatus::Unknown);
        assert_eq!(seen.created_at, Some(1_000));
    }

    #[test]
    fn error_codes_are_the_spec_names() {
        let names: Vec<&str> = ProvisioningError::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(
            names,
            [
                "DROPLET_CREATION_FAILED",
                "DROPLET_ERRORED",
                "DROPLET_NOT_FOUND",
                "DIGITALOCEAN_UNAUTHORIZED",
                "DIGITALOCEAN_UNAVAILABLE",
                "PROVISIONING_TIMEOUT",
                "DROPLET_ACTION_FAILED",
                "NO_CAPACITY",
            ]
        );
        for c in ProvisioningError::ALL {
            assert_eq!(ProvisioningError::parse(c.as_str()), Some(*c));
        }
    }

    #[test]
    fn restart_clears_the_error_and_keeps_the_droplet() {
        let mut t = task();
        t.judge(&Observation::Droplet(droplet(DropletStatus::Off, None)), 60);
        let verdict = Verdict::Failed {
            code: ProvisioningError::DropletErrored,
            message: "off".into(),
        };
        t.conclude(&verdict, 5);
        assert_eq!(t.error_code, Some(ProvisioningError::DropletErrored));
        let revision = t.revision;
        t.restart(9);
        assert_eq!(t.status, ProvisioningStatus::Pending);
        assert_eq!((t.attempts, t.error_code, t.completed_at), (0, None, None));
        assert_eq!(t.revision, revision + 1);
        assert_eq!(t.droplet_id(), Some(1));
    }

    #[test]
    fn user_data_installs_root_keys() {
        assert_eq!(cloud_init_user_data(&[]), None);
        let doc = cloud_init_user_data(&["ssh-ed25519 AAAA x@y".into()]).unwrap();
        assert!(doc.starts_with("#cloud-config\n"));
        assert!(doc.contains("- name: root"));
        assert!(doc.contains("\"ssh-ed25519 AAAA x@y\""));
    }
}
