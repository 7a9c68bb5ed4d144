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

/// Provisioning error codes (SPEC §2), recorded on the task, never HTTP errors.
pub mod codes {
    pub const DROPLET_CREATION_FAILED: &str = "DROPLET_CREATION_FAILED";
    pub const DROPLET_ERRORED: &str = "DROPLET_ERRORED";
    pub const DROPLET_NOT_FOUND: &str = "DROPLET_NOT_FOUND";
    pub const DIGITALOCEAN_UNAUTHORIZED: &str = "DIGITALOCEAN_UNAUTHORIZED";
    pub const DIGITALOCEAN_UNAVAILABLE: &str = "DIGITALOCEAN_UNAVAILABLE";
    pub const PROVISIONING_TIMEOUT: &str = "PROVISIONING_TIMEOUT";
}

/// How many consecutive sweeps may see a fresh droplet as 404 before it counts
/// as gone (DigitalOcean can 404 a droplet right after creating it).
pub const NOT_FOUND_TOLERANCE: u32 = 3;

/// A droplet as observed, in domain terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropletState {
    pub id: u64,
    pub name: String,
    pub status: String,
    pub tags: Vec<String>,
    pub created_at: Option<Millis>,
    pub ipv4_public: Option<String>,
    pub ipv4_private: Option<String>,
    pub ipv6_public: Option<String>,
}

/// What one sweep learned about a task's droplet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    Droplet(DropletState),
    /// The droplet's create action errored.
    CreateActionErrored(DropletState),
    NotFound,
}

/// The task's fate after an observation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Keep following it.
    Waiting,
    Succeeded,
    Failed {
        code: &'static str,
        message: String,
    },
}

impl ProvisioningTask {
    /// Copies what was observed onto the task.
    pub fn record_droplet(&mut self, d: &DropletState) {
        self.droplet_id = Some(d.id);
        self.droplet_name = Some(d.name.clone());
        self.droplet_status = Some(d.status.clone());
        self.droplet_tags = d.tags.clone();
        if d.created_at.is_some() {
            self.droplet_created_at = d.created_at;
        }
        self.ipv4_public = d.ipv4_public.clone();
        self.ipv4_private = d.ipv4_private.clone();
        self.ipv6_public = d.ipv6_public.clone();
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
                match d.status.as_str() {
                    "active" if d.ipv4_public.is_some() => Verdict::Succeeded,
                    "off" | "archive" => Verdict::Failed {
                        code: codes::DROPLET_ERRORED,
                        message: format!("droplet {} is {}", d.id, d.status),
                    },
                    _ => Verdict::Waiting,
                }
            }
            Observation::CreateActionErrored(d) => {
                self.record_droplet(d);
                Verdict::Failed {
                    code: codes::DROPLET_ERRORED,
                    message: format!("the create action of droplet {} errored", d.id),
                }
            }
            Observation::NotFound => {
                self.not_found_streak = self.not_found_streak.saturating_add(1);
                if self.not_found_streak > NOT_FOUND_TOLERANCE {
                    Verdict::Failed {
                        code: codes::DROPLET_NOT_FOUND,
                        message: format!(
                            "droplet {} was not found {} times in a row",
                            self.droplet_id.unwrap_or_default(),
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
                code: codes::PROVISIONING_TIMEOUT,
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
                self.status = super::order::ProvisioningStatus::Success;
                self.error_code = None;
                self.error_message = None;
                self.completed_at = Some(now);
            }
            Verdict::Failed { code, message } => {
                self.status = super::order::ProvisioningStatus::Failed;
                self.error_code = Some((*code).to_string());
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
    use crate::domain::order::ProvisioningStatus;

    fn task() -> ProvisioningTask {
        let mut t = ProvisioningTask::for_paid_order(&crate::domain::order::test_order("u"), 0);
        t.status = ProvisioningStatus::InProgress;
        t.droplet_id = Some(1);
        t
    }

    fn droplet(status: &str, ip: Option<&str>) -> DropletState {
        DropletState {
            id: 1,
            name: "vps".into(),
            status: status.into(),
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
            t.judge(&Observation::Droplet(droplet("active", None)), 60),
            Verdict::Waiting
        );
        assert_eq!(
            t.judge(
                &Observation::Droplet(droplet("active", Some("203.0.113.9"))),
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
                code: codes::DROPLET_NOT_FOUND,
                ..
            }
        ));
    }

    #[test]
    fn off_fails_and_budget_times_out() {
        let mut t = task();
        assert!(matches!(
            t.judge(&Observation::Droplet(droplet("off", None)), 60),
            Verdict::Failed {
                code: codes::DROPLET_ERRORED,
                ..
            }
        ));
        let mut t = task();
        assert_eq!(
            t.judge(&Observation::Droplet(droplet("new", None)), 2),
            Verdict::Waiting
        );
        assert!(matches!(
            t.judge(&Observation::Droplet(droplet("new", None)), 2),
            Verdict::Failed {
                code: codes::PROVISIONING_TIMEOUT,
                ..
            }
        ));
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
