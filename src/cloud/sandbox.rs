//! In-process droplets for local runs: no network, no token, no cost. A droplet is
//! `new` until `boot_delay` has passed since its create, then `active` with
//! addresses from documentation ranges (203.0.113.0/24, 2001:db8::/32) so nothing
//! it reports can be mistaken for, or routed to, a real machine.
//!
//! With a state file the droplets survive a restart of vpsd, as real ones do,
//! so an order provisioning across a restart is adopted instead of failing.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ActionStatus, Cloud, CloudError, Created, DropletSpec};
use crate::domain::droplet::{Droplet, DropletStatus};
use crate::domain::time::{format_millis, now_millis, parse_rfc3339, Millis};

const FIRST_DROPLET_ID: u64 = 100_000_001;
const FIRST_ACTION_ID: u64 = 900_000_001;

#[derive(Debug)]
pub struct Sandbox {
    boot_delay: Duration,
    state: Mutex<State>,
    /// Where the droplets are kept between runs (`None`: memory only).
    state_file: Option<PathBuf>,
}

#[derive(Debug)]
struct State {
    next_id: u64,
    next_action_id: u64,
    droplets: HashMap<u64, Entry>,
    actions: HashSet<u64>,
}

#[derive(Debug, Clone)]
struct Entry {
    /// The droplet as it looks once booted.
    booted: Droplet,
    /// Wall-clock milliseconds, so boot progress carries over a restart.
    created_ms: i64,
    action_id: u64,
}

/// A droplet as written to the state file.
#[derive(Serialize, Deserialize)]
struct Saved {
    id: u64,
    name: String,
    tags: Vec<String>,
    /// RFC 3339, so the file stays readable by eye.
    created_at: Option<String>,
    ipv4_public: Option<String>,
    ipv4_private: Option<String>,
    ipv6_public: Option<String>,
    created_ms: i64,
    action_id: u64,
}

impl Sandbox {
    pub fn new(boot_delay: Duration) -> Sandbox {
        Sandbox {
            boot_delay,
            state: Mutex::new(State {
                next_id: FIRST_DROPLET_ID,
                next_action_id: FIRST_ACTION_ID,
                droplets: HashMap::new(),
                actions: HashSet::new(),
            }),
            state_file: None,
        }
    }

    /// A sandbox whose droplets are kept in `path` across restarts. An
    /// unreadable file is reported and the sandbox starts empty.
    pub fn with_state_file(boot_delay: Duration, path: PathBuf) -> Sandbox {
        let mut sandbox = Sandbox::new(boot_delay);
        match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<Vec<Saved>>(&bytes) {
                Ok(saved) => {
                    let state = sandbox.state.get_mut().unwrap_or_else(|e| e.into_inner());
                    for d in saved {
                        state.next_id = state.next_id.max(d.id + 1);
                        state.next_action_id = state.next_action_id.max(d.action_id + 1);
                        state.actions.insert(d.action_id);
                        state.droplets.insert(
                            d.id,
                            Entry {
                                booted: Droplet {
                                    id: d.id,
                                    name: d.name,
                                    status: DropletStatus::Active,
                                    tags: d.tags,
                                    created_at: d.created_at.as_deref().and_then(parse_rfc3339),
                                    ipv4_public: d.ipv4_public,
                                    ipv4_private: d.ipv4_private,
                                    ipv6_public: d.ipv6_public,
                                },
                                created_ms: d.created_ms,
                                action_id: d.action_id,
                            },
                        );
                    }
                }
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "sandbox state file unreadable; starting with no sandbox droplets")
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "sandbox state file unreadable; starting with no sandbox droplets")
            }
        }
        sandbox.state_file = Some(path);
        sandbox
    }

    /// Writes the droplets to the state file (temp file + rename, so a crash
    /// leaves the old or the new list, never half of one).
    fn persist(&self, state: &State) {
        let Some(path) = &self.state_file else {
            return;
        };
        let saved: Vec<Saved> = state
            .droplets
            .values()
            .map(|e| Saved {
                id: e.booted.id,
                name: e.booted.name.clone(),
                tags: e.booted.tags.clone(),
                created_at: e.booted.created_at.map(format_millis),
                ipv4_public: e.booted.ipv4_public.clone(),
                ipv4_private: e.booted.ipv4_private.clone(),
                ipv6_public: e.booted.ipv6_public.clone(),
                created_ms: e.created_ms,
                action_id: e.action_id,
            })
            .collect();
        let tmp = path.with_extension("tmp");
        let written = serde_json::to_vec(&saved)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&tmp, bytes))
            .and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = written {
            tracing::warn!(file = %path.display(), error = %e, "cannot save sandbox droplets");
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every mutation below is a single insert/remove, so a poisoned lock still
        // guards consistent data.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn observe(&self, entry: &Entry) -> Droplet {
        let age = now_millis().saturating_sub(entry.created_ms);
        if age >= i64::try_from(self.boot_delay.as_millis()).unwrap_or(i64::MAX) {
            entry.booted.clone()
        } else {
            unbooted(&entry.booted)
        }
    }
}

impl Sandbox {
    /// Mirrors `DigitalOcean::find_create_action`: the create action of a
    /// droplet found by tag (sandbox actions always complete).
    pub fn find_create_action(
        &self,
        droplet_id: u64,
    ) -> Result<Option<(u64, ActionStatus)>, CloudError> {
        let state = self.state();
        let entry = state
            .droplets
            .get(&droplet_id)
            .ok_or(CloudError::NotFound)?;
        Ok(Some((entry.action_id, ActionStatus::Completed)))
    }
}

fn unbooted(booted: &Droplet) -> Droplet {
    Droplet {
        status: DropletStatus::New,
        ipv4_public: None,
        ipv4_private: None,
        ipv6_public: None,
        ..booted.clone()
    }
}

/// DigitalOcean reports creation times in whole seconds.
fn whole_seconds(ms: Millis) -> Millis {
    ms - ms.rem_euclid(1000)
}

impl Cloud for Sandbox {
    fn find_create_action(
        &self,
        droplet_id: u64,
    ) -> Result<Option<(u64, ActionStatus)>, CloudError> {
        Sandbox::find_create_action(self, droplet_id)
    }

    fn name(&self) -> &'static str {
        "sandbox"
    }

    fn create_droplet(&self, spec: &DropletSpec) -> Result<Created, CloudError> {
        let mut state = self.state();
        let id = state.next_id;
        state.next_id += 1;
        let action_id = state.next_action_id;
        state.next_action_id += 1;
        let n = id - FIRST_DROPLET_ID;
        let created_ms = now_millis();
        let booted = Droplet {
            id,
            name: spec.name.clone(),
            status: DropletStatus::Active,
            tags: spec.tags.clone(),
            created_at: Some(whole_seconds(created_ms)),
            ipv4_public: Some(format!("203.0.113.{}", n % 254 + 1)),
            ipv4_private: Some(format!("10.130.{}.{}", (n / 254) % 256, n % 254 + 1)),
            ipv6_public: spec.ipv6.then(|| format!("2001:db8::{:x}", n + 1)),
        };
        // Like DigitalOcean, the create answer shows the droplet before it boots,
        // even with no boot delay.
        let answer = Created {
            droplet: unbooted(&booted),
            create_action_id: Some(action_id),
        };
        let entry = Entry {
            booted,
            created_ms,
            action_id,
        };
        state.droplets.insert(id, entry);
        state.actions.insert(action_id);
        self.persist(&state);
        Ok(answer)
    }

    fn get_droplet(&self, id: u64) -> Result<Droplet, CloudError> {
        let state = self.state();
        let entry = state.droplets.get(&id).ok_or(CloudError::NotFound)?;
        Ok(self.observe(entry))
    }

    fn list_by_tag(&self, tag: &str) -> Result<Vec<Droplet>, CloudError> {
        let state = self.state();
        let mut out: Vec<Droplet> = state
            .droplets
            .values()
            .filter(|e| e.booted.tags.iter().any(|t| t == tag))
            .map(|e| self.observe(e))
            .collect();
        out.sort_by_key(|d| d.id);
        Ok(out)
    }

    fn delete_droplet(&self, id: u64) -> Result<(), CloudError> {
        let mut state = self.state();
        if state.droplets.remove(&id).is_some() {
            self.persist(&state);
        }
        Ok(())
    }

    fn get_action(&self, id: u64) -> Result<ActionStatus, CloudError> {
        if self.state().actions.contains(&id) {
            Ok(ActionStatus::Completed)
        } else {
            Err(CloudError::NotFound)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(tags: &[&str]) -> DropletSpec {
        DropletSpec {
            name: "web-1".into(),
            region: "sgp1".into(),
            size: "s-1vcpu-1gb".into(),
            image: "ubuntu-24-04-x64".into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            monitoring: true,
            ipv6: false,
            user_data: None,
        }
    }

    #[test]
    fn boots_after_delay() {
        let cloud = Sandbox::new(Duration::from_millis(50));
        let created = cloud.create_droplet(&spec(&["vpsd"])).unwrap();
        let d = created.droplet;
        assert_eq!(d.id, FIRST_DROPLET_ID);
        assert_eq!(d.status, DropletStatus::New);
        assert!(d.ipv4_public.is_none());
        assert!(created.create_action_id.is_some());
        assert!(d.created_at.is_some_and(|ms| ms % 1000 == 0));

        let early = cloud.get_droplet(d.id).unwrap();
        assert_eq!(early.status, DropletStatus::New);
        assert!(early.ipv4_public.is_none());

        std::thread::sleep(Duration::from_millis(60));
        let booted = cloud.get_droplet(d.id).unwrap();
        assert_eq!(booted.status, DropletStatus::Active);
        assert_eq!(booted.ipv4_public.as_deref(), Some("203.0.113.1"));
        assert!(booted
            .ipv4_private
            .as_deref()
            .is_some_and(|ip| ip.starts_with("10.130.")));
        assert_eq!(booted.created_at, d.created_at);
    }

    #[test]
    fn zero_delay_is_active_on_first_get() {
        let cloud = Sandbox::new(Duration::ZERO);
        let d = cloud.create_droplet(&spec(&["vpsd"])).unwrap().droplet;
        assert_eq!(d.status, DropletStatus::New);
        assert_eq!(
            cloud.get_droplet(d.id).unwrap().status,
            DropletStatus::Active
        );
    }

    #[test]
    fn ids_increase_and_ips_differ() {
        let cloud = Sandbox::new(Duration::ZERO);
        let a = cloud.create_droplet(&spec(&["vpsd"])).unwrap().droplet;
        let b = cloud.create_droplet(&spec(&["vpsd"])).unwrap().droplet;
        assert!(b.id > a.id);
        let a = cloud.get_droplet(a.id).unwrap();
        let b = cloud.get_droplet(b.id).unwrap();
        assert_ne!(a.ipv4_public, b.ipv4_public);
        assert_ne!(a.ipv4_private, b.ipv4_private);
    }

    #[test]
    fn list_filters_by_tag_and_delete_removes() {
        let cloud = Sandbox::new(Duration::ZERO);
        let a = cloud
            .create_droplet(&spec(&["vpsd", "vpsd-order-a"]))
            .unwrap()
            .droplet;
        let b = cloud
            .create_droplet(&spec(&["vpsd", "vpsd-order-b"]))
            .unwrap()
            .droplet;
        assert_eq!(cloud.list_by_tag("vpsd").unwrap().len(), 2);
        let only_a = cloud.list_by_tag("vpsd-order-a").unwrap();
        assert_eq!(only_a.len(), 1);
        assert_eq!(only_a[0].id, a.id);
        assert!(cloud.list_by_tag("other").unwrap().is_empty());

        cloud.delete_droplet(a.id).unwrap();
        assert_eq!(cloud.get_droplet(a.id), Err(CloudError::NotFound));
        assert_eq!(cloud.list_by_tag("vpsd").unwrap().len(), 1);
        // Deleting again is fine, like a 404 on DigitalOcean.
        cloud.delete_droplet(a.id).unwrap();
        assert_eq!(cloud.get_droplet(b.id).unwrap().id, b.id);
    }

    #[test]
    fn actions_complete_and_unknown_is_not_found() {
        let cloud = Sandbox::new(Duration::ZERO);
        let created = cloud.create_droplet(&spec(&["vpsd"])).unwrap();
        let (d, action) = (created.droplet, created.create_action_id.unwrap());
        assert_eq!(cloud.get_action(action), Ok(ActionStatus::Completed));
        assert_eq!(
            cloud.find_create_action(d.id),
            Ok(Some((action, ActionStatus::Completed)))
        );
        assert_eq!(cloud.get_action(1), Err(CloudError::NotFound));
        assert_eq!(cloud.get_droplet(42), Err(CloudError::NotFound));
        assert_eq!(cloud.name(), "sandbox");
    }

    #[test]
    fn droplets_survive_a_restart_with_the_state_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sandbox.json");
        let first = Sandbox::with_state_file(Duration::ZERO, path.clone());
        let made = first.create_droplet(&spec(&["vpsd"])).unwrap().droplet;
        let before = first.get_droplet(made.id).unwrap();
        let again = Sandbox::with_state_file(Duration::ZERO, path);
        assert_eq!(again.get_droplet(made.id).unwrap(), before);
        assert!(again.create_droplet(&spec(&["vpsd"])).unwrap().droplet.id > made.id);
    }

    #[test]
    fn ipv6_only_when_asked() {
        let cloud = Sandbox::new(Duration::ZERO);
        let mut s = spec(&["vpsd"]);
        s.ipv6 = true;
        let d = cloud.create_droplet(&s).unwrap().droplet;
        assert!(cloud.get_droplet(d.id).unwrap().ipv6_public.is_some());
    }
}
