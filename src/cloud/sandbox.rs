//! In-process droplets for local runs: no network, no token, no cost. A droplet is
//! `new` until `boot_delay` has passed since its create, then `active` with
//! addresses from documentation ranges (203.0.113.0/24, 2001:db8::/32) so nothing
//! it reports can be mistaken for, or routed to, a real machine.
//!
//! With a state file the droplets survive a restart of vpsd, as real ones do,
//! so an order provisioning across a restart is adopted instead of failing.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use super::{
    check_delete_tag, AccountInfo, ActionInfo, ActionStatus, Cloud, CloudError, Created,
    DropletSpec, RECENT_ACTIONS,
};
use crate::domain::customer_action::ActionType;
use crate::domain::droplet::{Droplet, DropletStatus};
use saved::{load, write_private, Saved};

mod saved;
use crate::domain::time::{now_millis, Millis};

const FIRST_DROPLET_ID: u64 = 100_000_001;
const FIRST_ACTION_ID: u64 = 900_000_001;

#[derive(Debug)]
pub struct Sandbox {
    /// How long a create, a droplet action and a delete by tag take to finish.
    boot_delay: Duration,
    state: Mutex<State>,
    /// Where the droplets are kept between runs (`None`: memory only).
    state_file: Option<PathBuf>,
    /// Added to the wall clock. Always 0 in a running daemon; tests move it
    /// forward ([`Sandbox::advance`]) to finish actions without sleeping.
    skew_ms: AtomicI64,
    /// The simulated account's droplet limit (SPEC §13); `None`: reported
    /// as [`UNLIMITED_DROPLETS`], finite so JSON readers keep it exact.
    droplet_limit: Option<u64>,
}

pub const UNLIMITED_DROPLETS: u64 = 1_000_000;
/// DigitalOcean's 422 message when an account's droplet limit is reached.
pub const DROPLET_LIMIT_MESSAGE: &str =
    "creating this/these droplet(s) will exceed your droplet limit";

#[derive(Debug)]
struct State {
    next_id: u64,
    next_action_id: u64,
    droplets: HashMap<u64, Entry>,
    /// Every action by id, kept after its droplet is deleted (as DigitalOcean
    /// keeps them) until the process ends.
    actions: HashMap<u64, ActionRecord>,
}

#[derive(Debug, Clone, Copy)]
enum ActionRecord {
    /// Sandbox creates always report their action completed.
    Create,
    Action {
        started_ms: Millis,
    },
}

/// A droplet action (power, reboot, rebuild, ...), as DigitalOcean lists it.
#[derive(Debug, Clone, Copy)]
struct DropletActionRecord {
    id: u64,
    kind: ActionType,
    /// Wall-clock milliseconds, so progress carries over a restart.
    started_ms: Millis,
}

#[derive(Debug, Clone)]
struct Entry {
    /// The droplet as it looks once booted (and powered on).
    booted: Droplet,
    /// Wall-clock milliseconds, so boot progress carries over a restart.
    created_ms: i64,
    action_id: u64,
    /// Droplet actions, oldest first.
    actions: Vec<DropletActionRecord>,
    /// When a delete by tag asked for it; it is gone `boot_delay` later.
    deleting_since_ms: Option<Millis>,
}

impl Sandbox {
    pub fn new(boot_delay: Duration) -> Sandbox {
        Sandbox {
            boot_delay,
            state: Mutex::new(State {
                next_id: FIRST_DROPLET_ID,
                next_action_id: FIRST_ACTION_ID,
                droplets: HashMap::new(),
                actions: HashMap::new(),
            }),
            state_file: None,
            skew_ms: AtomicI64::new(0),
            droplet_limit: None,
        }
    }

    /// A simulated account that holds at most `limit` droplets.
    pub fn with_droplet_limit(mut self, limit: Option<u64>) -> Sandbox {
        self.droplet_limit = limit;
        self
    }

    /// The sandbox's time: wall clock plus whatever tests moved it forward.
    fn now(&self) -> Millis {
        now_millis().saturating_add(self.skew_ms.load(Ordering::Relaxed))
    }

    /// Moves the sandbox's clock forward by `by`: boots, power actions and
    /// deletes due by then are finished, as if that time had passed.
    #[cfg(any(test, feature = "testing"))]
    pub fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.skew_ms.fetch_add(ms, Ordering::Relaxed);
    }

    /// A sandbox whose droplets are kept in `path` across restarts. An
    /// unreadable file is reported and the sandbox starts empty.
    pub fn with_state_file(boot_delay: Duration, path: PathBuf) -> Sandbox {
        let mut sandbox = Sandbox::new(boot_delay);
        match load(&path) {
            Ok(saved) => sandbox
                .state
                .get_mut()
                .unwrap_or_else(|e| e.into_inner())
                .restore(saved),
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
        let saved: Vec<Saved> = state.droplets.values().map(Saved::from_entry).collect();
        let tmp = path.with_extension("tmp");
        let written = serde_json::to_vec(&saved)
            .map_err(std::io::Error::other)
            .and_then(|bytes| write_private(&tmp, &bytes))
            .and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = written {
            tracing::warn!(file = %path.display(), error = %e, "cannot save sandbox droplets");
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every mutation below leaves the maps consistent between statements, so
        // a poisoned lock still guards consistent data.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The state with finished deletes applied, and the time they were judged
    /// by. Every operation starts here, so a delete by tag takes effect lazily,
    /// `boot_delay` after it was asked for, with no background timer.
    fn settled(&self) -> (MutexGuard<'_, State>, Millis) {
        let now = self.now();
        let mut state = self.state();
        if self.purge(&mut state, now) {
            self.persist(&state);
        }
        (state, now)
    }

    /// Drops droplets whose delete has finished; true when any went.
    fn purge(&self, state: &mut State, now: Millis) -> bool {
        let before = state.droplets.len();
        state
            .droplets
            .retain(|_, e| !e.deleting_since_ms.is_some_and(|t| self.done(t, now)));
        state.droplets.len() != before
    }

    /// Whether something started at `since` has taken `boot_delay` by `now`.
    fn done(&self, since: Millis, now: Millis) -> bool {
        now.saturating_sub(since) >= i64::try_from(self.boot_delay.as_millis()).unwrap_or(i64::MAX)
    }

    fn action_status(&self, started_ms: Millis, now: Millis) -> ActionStatus {
        if self.done(started_ms, now) {
            ActionStatus::Completed
        } else {
            ActionStatus::InProgress
        }
    }

    fn observe(&self, entry: &Entry, now: Millis) -> Droplet {
        if !self.done(entry.created_ms, now) {
            return unbooted(&entry.booted);
        }
        let mut droplet = entry.booted.clone();
        droplet.status = self.powered(entry, now);
        droplet
    }

    /// A booted droplet's status: what its last finished action made it.
    fn powered(&self, entry: &Entry, now: Millis) -> DropletStatus {
        entry
            .actions
            .iter()
            .rev()
            .find(|p| self.done(p.started_ms, now))
            .map_or(DropletStatus::Active, |p| p.kind.target())
    }

    /// DigitalOcean's refusals (422), so the sandbox exercises the same retry
    /// paths: nothing while another event runs or a delete is under way, and
    /// nothing that is already in effect.
    fn check_action(
        &self,
        entry: &Entry,
        kind: ActionType,
        image: Option<&str>,
        now: Millis,
    ) -> Result<(), CloudError> {
        let busy = !self.done(entry.created_ms, now)
            || entry
                .actions
                .last()
                .is_some_and(|p| !self.done(p.started_ms, now));
        let status = self.powered(entry, now);
        let message = if entry.deleting_since_ms.is_some() {
            "Droplet is currently locked."
        } else if busy {
            "Droplet already has a pending event."
        } else if kind == ActionType::Rebuild && image.is_none_or(str::is_empty) {
            "You must specify an image."
        } else if !kind.fits(status) {
            match status {
                DropletStatus::Off => "Droplet is already powered off.",
                _ => "Droplet is already powered on.",
            }
        } else {
            return Ok(());
        };
        Err(CloudError::Rejected {
            status: 422,
            message: message.to_string(),
        })
    }
}

impl Sandbox {
    /// Mirrors `DigitalOcean::find_create_action`: the create action of a
    /// droplet found by tag (sandbox actions always complete).
    pub fn find_create_action(
        &self,
        droplet_id: u64,
    ) -> Result<Option<(u64, ActionStatus)>, CloudError> {
        let (state, _) = self.settled();
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

    fn account(&self) -> Result<AccountInfo, CloudError> {
        Ok(AccountInfo {
            droplet_limit: self.droplet_limit.unwrap_or(UNLIMITED_DROPLETS),
            active: true,
        })
    }

    fn droplet_count(&self) -> Result<u64, CloudError> {
        Ok(self.settled().0.droplets.len() as u64)
    }

    fn create_droplet(&self, spec: &DropletSpec) -> Result<Created, CloudError> {
        let (mut state, created_ms) = self.settled();
        if self
            .droplet_limit
            .is_some_and(|limit| state.droplets.len() as u64 >= limit)
        {
            return Err(CloudError::Rejected {
                status: 422,
                message: DROPLET_LIMIT_MESSAGE.into(),
            });
        }
        let id = state.next_id;
        state.next_id += 1;
        let action_id = state.next_action_id;
        state.next_action_id += 1;
        let n = id - FIRST_DROPLET_ID;
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
            actions: Vec::new(),
            deleting_since_ms: None,
        };
        state.droplets.insert(id, entry);
        state.actions.insert(action_id, ActionRecord::Create);
        self.persist(&state);
        Ok(answer)
    }

    fn get_droplet(&self, id: u64) -> Result<Droplet, CloudError> {
        let (state, now) = self.settled();
        let entry = state.droplets.get(&id).ok_or(CloudError::NotFound)?;
        Ok(self.observe(entry, now))
    }

    fn list_by_tag(&self, tag: &str) -> Result<Vec<Droplet>, CloudError> {
        let (state, now) = self.settled();
        let mut out: Vec<Droplet> = state
            .droplets
            .values()
            .filter(|e| e.booted.tags.iter().any(|t| t == tag))
            .map(|e| self.observe(e, now))
            .collect();
        out.sort_by_key(|d| d.id);
        Ok(out)
    }

    fn delete_droplet(&self, id: u64) -> Result<(), CloudError> {
        let (mut state, _) = self.settled();
        if state.droplets.remove(&id).is_some() {
            self.persist(&state);
        }
        Ok(())
    }

    fn get_action(&self, id: u64) -> Result<ActionStatus, CloudError> {
        let (state, now) = self.settled();
        match state.actions.get(&id) {
            Some(ActionRecord::Create) => Ok(ActionStatus::Completed),
            Some(ActionRecord::Action { started_ms }) => Ok(self.action_status(*started_ms, now)),
            None => Err(CloudError::NotFound),
        }
    }

    /// The action is recorded in progress and finishes `boot_delay` later; the
    /// droplet's status changes then (`off` / `active`). A rebuild keeps the
    /// droplet's addresses, as DigitalOcean's does.
    fn act(
        &self,
        droplet_id: u64,
        kind: ActionType,
        image: Option<&str>,
    ) -> Result<u64, CloudError> {
        let (mut state, now) = self.settled();
        let entry = state
            .droplets
            .get(&droplet_id)
            .ok_or(CloudError::NotFound)?;
        self.check_action(entry, kind, image, now)?;
        let id = state.next_action_id;
        state.next_action_id += 1;
        let record = DropletActionRecord {
            id,
            kind,
            started_ms: now,
        };
        if let Some(entry) = state.droplets.get_mut(&droplet_id) {
            entry.actions.push(record);
        }
        state
            .actions
            .insert(id, ActionRecord::Action { started_ms: now });
        self.persist(&state);
        Ok(id)
    }

    fn droplet_actions(&self, droplet_id: u64) -> Result<Vec<ActionInfo>, CloudError> {
        let (state, now) = self.settled();
        let entry = state
            .droplets
            .get(&droplet_id)
            .ok_or(CloudError::NotFound)?;
        let mut out: Vec<ActionInfo> = entry
            .actions
            .iter()
            .map(|p| ActionInfo {
                id: p.id,
                kind: p.kind.as_str().to_string(),
                status: self.action_status(p.started_ms, now),
                started_at: Some(whole_seconds(p.started_ms)),
            })
            .collect();
        out.push(ActionInfo {
            id: entry.action_id,
            kind: "create".to_string(),
            status: ActionStatus::Completed,
            started_at: Some(whole_seconds(entry.created_ms)),
        });
        out.sort_by_key(|a| std::cmp::Reverse(a.id));
        out.truncate(RECENT_ACTIONS);
        Ok(out)
    }

    /// Marks every droplet carrying `tag` for deletion; they keep being listed
    /// until `boot_delay` has passed (at once with no delay), as DigitalOcean's
    /// deletes take a while. Asking again does not restart the clock.
    fn delete_by_tag(&self, tag: &str) -> Result<(), CloudError> {
        check_delete_tag(tag)?;
        let (mut state, now) = self.settled();
        let mut marked = false;
        for entry in state.droplets.values_mut() {
            if entry.deleting_since_ms.is_none() && entry.booted.tags.iter().any(|t| t == tag) {
                entry.deleting_since_ms = Some(now);
                marked = true;
            }
        }
        let purged = self.purge(&mut state, now);
        if marked || purged {
            self.persist(&state);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::PowerAction;

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

    /// Long enough that a busy test machine does not finish an action between
    /// two statements that expect it in progress.
    const DELAY: Duration = Duration::from_millis(250);
    const PAST: Duration = Duration::from_millis(300);

    fn rejected(result: Result<u64, CloudError>) -> String {
        match result {
            Err(CloudError::Rejected {
                status: 422,
                message,
            }) => message,
            other => panic!("expected a 422, got {other:?}"),
        }
    }

    #[test]
    fn power_off_then_on_after_the_delay_with_action_records() {
        let cloud = Sandbox::new(DELAY);
        let created = cloud.create_droplet(&spec(&["vpsd"])).unwrap();
        let id = created.droplet.id;
        // Still booting: the create is a pending event.
        assert!(rejected(cloud.power(id, PowerAction::Off)).contains("pending event"));
        std::thread::sleep(PAST);
        assert!(rejected(cloud.power(id, PowerAction::On)).contains("already powered on"));

        let off = cloud.power(id, PowerAction::Off).unwrap();
        assert_eq!(cloud.get_action(off), Ok(ActionStatus::InProgress));
        assert_eq!(cloud.get_droplet(id).unwrap().status, DropletStatus::Active);
        assert!(rejected(cloud.power(id, PowerAction::On)).contains("pending event"));
        let listed = cloud.droplet_actions(id).unwrap();
        assert_eq!(listed.len(), 2);
        assert_eq!((listed[0].id, listed[0].kind.as_str()), (off, "power_off"));
        assert_eq!(listed[0].status, ActionStatus::InProgress);
        assert!(listed[0].started_at.is_some());
        assert_eq!(listed[1].kind, "create");
        assert_eq!(Some(listed[1].id), created.create_action_id);

        std::thread::sleep(PAST);
        assert_eq!(cloud.get_action(off), Ok(ActionStatus::Completed));
        let droplet = cloud.get_droplet(id).unwrap();
        assert_eq!(droplet.status, DropletStatus::Off);
        // An off droplet keeps its addresses, as on DigitalOcean.
        assert!(droplet.ipv4_public.is_some());
        assert!(rejected(cloud.power(id, PowerAction::Off)).contains("already powered off"));

        let on = cloud.power(id, PowerAction::On).unwrap();
        assert!(on > off);
        std::thread::sleep(PAST);
        assert_eq!(cloud.get_droplet(id).unwrap().status, DropletStatus::Active);
        let kinds: Vec<String> = cloud
            .droplet_actions(id)
            .unwrap()
            .into_iter()
            .map(|a| a.kind)
            .collect();
        assert_eq!(kinds, ["power_on", "power_off", "create"]);
        assert_eq!(cloud.power(42, PowerAction::Off), Err(CloudError::NotFound));
        assert_eq!(cloud.droplet_actions(42), Err(CloudError::NotFound));
    }

    #[test]
    fn every_customer_action_type_takes_the_delay_and_leaves_its_state() {
        let cloud = Sandbox::new(DELAY);
        let id = cloud.create_droplet(&spec(&["vpsd"])).unwrap().droplet.id;
        cloud.advance(PAST);
        let ip = cloud.get_droplet(id).unwrap().ipv4_public;
        let steps = [
            (ActionType::Reboot, None, DropletStatus::Active),
            (ActionType::PowerCycle, None, DropletStatus::Active),
            (ActionType::Shutdown, None, DropletStatus::Off),
            (
                ActionType::Rebuild,
                Some("debian-12-x64"),
                DropletStatus::Active,
            ),
            (ActionType::PowerOff, None, DropletStatus::Off),
            (
                ActionType::Rebuild,
                Some("debian-12-x64"),
                DropletStatus::Active,
            ),
        ];
        for (kind, image, after) in steps {
            let action = cloud.act(id, kind, image).unwrap();
            assert_eq!(cloud.get_action(action), Ok(ActionStatus::InProgress));
            assert!(rejected(cloud.act(id, kind, image)).contains("pending event"));
            cloud.advance(PAST);
            assert_eq!(cloud.get_action(action), Ok(ActionStatus::Completed));
            let droplet = cloud.get_droplet(id).unwrap();
            assert_eq!((kind, droplet.status), (kind, after));
            assert_eq!(droplet.ipv4_public, ip, "{kind} keeps the address");
            let newest = &cloud.droplet_actions(id).unwrap()[0];
            assert_eq!((newest.id, newest.kind.as_str()), (action, kind.as_str()));
        }
        assert!(rejected(cloud.act(id, ActionType::Rebuild, None)).contains("image"));
        assert!(rejected(cloud.act(id, ActionType::PowerOn, None)).contains("already powered on"));
        cloud.act(id, ActionType::PowerOff, None).unwrap();
        cloud.advance(PAST);
        for kind in [
            ActionType::Reboot,
            ActionType::PowerCycle,
            ActionType::Shutdown,
        ] {
            assert!(rejected(cloud.act(id, kind, None)).contains("already powered off"));
        }
    }

    #[test]
    fn delete_by_tag_takes_the_delay_and_spares_other_tags() {
        let cloud = Sandbox::new(DELAY);
        let a1 = cloud
            .create_droplet(&spec(&["vpsd", "vpsd-order-a"]))
            .unwrap();
        let a2 = cloud
            .create_droplet(&spec(&["vpsd", "vpsd-order-a"]))
            .unwrap();
        let b = cloud
            .create_droplet(&spec(&["vpsd", "vpsd-order-b"]))
            .unwrap();
        cloud.delete_by_tag("vpsd-order-a").unwrap();
        assert_eq!(cloud.list_by_tag("vpsd-order-a").unwrap().len(), 2);
        assert!(rejected(cloud.power(a1.droplet.id, PowerAction::Off)).contains("locked"));
        std::thread::sleep(PAST);
        assert!(cloud.list_by_tag("vpsd-order-a").unwrap().is_empty());
        assert_eq!(cloud.get_droplet(a2.droplet.id), Err(CloudError::NotFound));
        assert_eq!(cloud.list_by_tag("vpsd").unwrap().len(), 1);
        assert!(cloud.get_droplet(b.droplet.id).is_ok());
        // Nothing carries the tag any more: still fine.
        cloud.delete_by_tag("vpsd-order-a").unwrap();
        cloud.delete_by_tag("no-such-tag").unwrap();
        assert!(matches!(
            cloud.delete_by_tag(""),
            Err(CloudError::Rejected { status: 400, .. })
        ));
        assert_eq!(cloud.list_by_tag("vpsd").unwrap().len(), 1);
    }

    #[test]
    fn zero_delay_deletes_at_once() {
        let cloud = Sandbox::new(Duration::ZERO);
        let d = cloud.create_droplet(&spec(&["t"])).unwrap().droplet;
        cloud.delete_by_tag("t").unwrap();
        assert_eq!(cloud.get_droplet(d.id), Err(CloudError::NotFound));
    }

    #[test]
    fn power_state_and_pending_deletes_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sandbox.json");
        let delay = DELAY;
        let first = Sandbox::with_state_file(delay, path.clone());
        let kept = first.create_droplet(&spec(&["keep"])).unwrap().droplet;
        let gone = first.create_droplet(&spec(&["drop"])).unwrap().droplet;
        std::thread::sleep(PAST);
        let off = first.power(kept.id, PowerAction::Off).unwrap();
        first.delete_by_tag("drop").unwrap();
        drop(first);

        let again = Sandbox::with_state_file(delay, path);
        assert_eq!(again.get_action(off), Ok(ActionStatus::InProgress));
        assert_eq!(again.list_by_tag("drop").unwrap().len(), 1);
        std::thread::sleep(PAST);
        assert_eq!(
            again.get_droplet(kept.id).unwrap().status,
            DropletStatus::Off
        );
        assert_eq!(again.droplet_actions(kept.id).unwrap()[0].id, off);
        assert_eq!(again.get_droplet(gone.id), Err(CloudError::NotFound));
        let next = again.power(kept.id, PowerAction::On).unwrap();
        assert!(next > off, "action ids continue after the restored ones");
    }

    #[test]
    fn state_files_from_before_power_actions_still_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sandbox.json");
        // Exactly what the previous version wrote.
        let old = r#"[{"id":100000007,"name":"web-1","tags":["vpsd"],
            "created_at":"2024-01-15T10:00:00Z","ipv4_public":"203.0.113.7",
            "ipv4_private":"10.130.0.7","ipv6_public":null,
            "created_ms":1705312800000,"action_id":900000007}]"#;
        std::fs::write(&path, old).unwrap();
        let cloud = Sandbox::with_state_file(Duration::ZERO, path);
        let d = cloud.get_droplet(100_000_007).unwrap();
        assert_eq!(d.status, DropletStatus::Active);
        assert_eq!(d.ipv4_public.as_deref(), Some("203.0.113.7"));
        let listed = cloud.droplet_actions(d.id).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(
            (listed[0].id, listed[0].kind.as_str()),
            (900_000_007, "create")
        );
        assert!(cloud.power(d.id, PowerAction::Off).unwrap() > 900_000_007);
    }
}
