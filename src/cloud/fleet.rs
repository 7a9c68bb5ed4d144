//! The accounts servers are spread over (SPEC §13), each with its own client
//! (its own token and rate budget), and what vpsd last learnt of each:
//! health, DigitalOcean's droplet limit, the droplet count, and the servers
//! placed since that count. Placement itself is the domain's rule
//! ([`crate::domain::fleet::place`]); this keeps the facts it decides on and
//! takes a slot under one lock, so two orders never take the last one.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use super::{Cloud, CloudError};
use crate::domain::fleet::{self, Account, Health};
use crate::domain::time::{now_millis, Millis};

/// One configured account: how placement may use it, and its client.
pub struct Member {
    pub name: String,
    pub priority: i64,
    pub regions: Vec<String>,
    pub max_droplets: Option<u64>,
    pub drain: bool,
    pub client: Arc<dyn Cloud>,
}

/// What an account looks like from outside (`GET /internal/cloud/accounts`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountView {
    pub account: Account,
    pub checked_at: Option<Millis>,
    pub last_error: Option<String>,
}

struct Entry {
    client: Arc<dyn Cloud>,
    state: AccountView,
    /// Slots taken since the last count: by reservation id, with when the
    /// server's droplet was created. A count that started after that
    /// instant includes the droplet, so its slot is no longer held twice.
    reservations: BTreeMap<u64, Option<Instant>>,
}

/// A slot taken on an account, until a count sees its droplet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub account: String,
    pub reservation: u64,
}

/// Every account and its last known state.
pub struct Fleet {
    entries: Mutex<BTreeMap<String, Entry>>,
    next_reservation: std::sync::atomic::AtomicU64,
}

impl Fleet {
    pub fn new(members: Vec<Member>) -> Fleet {
        let entries = members
            .into_iter()
            .map(|m| {
                let account = Account {
                    name: m.name.clone(),
                    priority: m.priority,
                    regions: m.regions,
                    drain: m.drain,
                    // Unknown until the first check answers: nothing placed.
                    health: Health::Unreachable,
                    droplet_limit: None,
                    max_droplets: m.max_droplets,
                    droplets: 0,
                    placing: 0,
                    refused_full: false,
                };
                let state = AccountView {
                    account,
                    checked_at: None,
                    last_error: None,
                };
                let entry = Entry {
                    client: m.client,
                    state,
                    reservations: BTreeMap::new(),
                };
                (m.name, entry)
            })
            .collect();
        Fleet {
            entries: Mutex::new(entries),
            next_reservation: std::sync::atomic::AtomicU64::new(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Entry>> {
        // The map holds plain facts; a panic elsewhere cannot leave it half-written.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The client of `name`, for every call about a server placed there.
    pub fn client(&self, name: &str) -> Option<Arc<dyn Cloud>> {
        self.lock().get(name).map(|e| e.client.clone())
    }

    /// Takes a slot for a new server in `region`; `None` when no account
    /// can take it now.
    pub fn place(&self, region: &str) -> Option<Placement> {
        let mut entries = self.lock();
        let accounts: Vec<Account> = entries.values().map(|e| e.state.account.clone()).collect();
        let account = fleet::place(&accounts, region)?.name.clone();
        let reservation = self
            .next_reservation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let entry = entries.get_mut(&account)?;
        entry.reservations.insert(reservation, None);
        entry.state.account.placing = entry.reservations.len() as u64;
        Some(Placement {
            account,
            reservation,
        })
    }

    /// The placed server's droplet exists now.
    pub fn created(&self, placement: &Placement) {
        if let Some(entry) = self.lock().get_mut(&placement.account) {
            if let Some(at) = entry.reservations.get_mut(&placement.reservation) {
                *at = Some(Instant::now());
            }
        }
    }

    /// The slot is given back: nothing was created (refused, or placed elsewhere).
    pub fn release(&self, placement: &Placement) {
        if let Some(entry) = self.lock().get_mut(&placement.account) {
            entry.reservations.remove(&placement.reservation);
            entry.state.account.placing = entry.reservations.len() as u64;
        }
    }

    /// DigitalOcean refused a create on `name` for its droplet limit: no more
    /// placements there until the next check, whatever the counts said.
    pub fn mark_full(&self, name: &str) {
        if let Some(entry) = self.lock().get_mut(name) {
            entry.state.account.refused_full = true;
        }
    }

    /// Reads `name`'s limit, status and droplet count again (a blocking
    /// call: run it off the async workers). The count now includes the
    /// servers placed before it, so those slots are no longer held twice.
    pub fn refresh(&self, name: &str) {
        let Some(client) = self.client(name) else {
            return;
        };
        let started = Instant::now();
        let answer = client
            .account()
            .and_then(|info| client.droplet_count().map(|count| (info, count)));
        let mut entries = self.lock();
        let Some(entry) = entries.get_mut(name) else {
            return;
        };
        let state = &mut entry.state;
        state.checked_at = Some(now_millis());
        match answer {
            Ok((info, count)) => {
                let account = &mut state.account;
                account.health = if info.active {
                    Health::Ok
                } else {
                    Health::Locked
                };
                account.droplet_limit = Some(info.droplet_limit);
                account.droplets = count;
                entry
                    .reservations
                    .retain(|_, created| created.is_none_or(|at| at >= started));
                account.placing = entry.reservations.len() as u64;
                account.refused_full = false;
                state.last_error = None;
            }
            Err(e) => {
                state.account.health = health_after(&e);
                state.last_error = Some(e.to_string());
            }
        }
    }

    /// Every account's name, for a refresh of them all.
    pub fn names(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    pub fn views(&self) -> Vec<AccountView> {
        self.lock().values().map(|e| e.state.clone()).collect()
    }
}

/// What a failed check says of an account's health.
fn health_after(error: &CloudError) -> Health {
    match error {
        CloudError::Unauthorized(_) => Health::Unauthorized,
        _ => Health::Unreachable,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::cloud::sandbox::Sandbox;
    use crate::cloud::DropletSpec;

    fn member(name: &str, priority: i64, limit: u64) -> Member {
        Member {
            name: name.into(),
            priority,
            regions: Vec::new(),
            max_droplets: None,
            drain: false,
            client: Arc::new(Sandbox::new(Duration::ZERO).with_droplet_limit(Some(limit))),
        }
    }

    fn spec(n: usize) -> DropletSpec {
        DropletSpec {
            name: format!("vps-{n}"),
            region: "sgp1".into(),
            size: "s".into(),
            image: "i".into(),
            tags: vec!["vpsd".into()],
            monitoring: false,
            ipv6: false,
            user_data: None,
        }
    }

    #[test]
    fn nothing_is_placed_before_the_first_check() {
        let fleet = Fleet::new(vec![member("a", 1, 5)]);
        assert_eq!(fleet.place("sgp1"), None);
        fleet.refresh("a");
        assert_eq!(fleet.place("sgp1").map(|p| p.account).as_deref(), Some("a"));
    }

    /// 20 orders at once against 3 accounts with 5 free slots in all: exactly
    /// 5 are placed, never past a limit.
    #[test]
    fn twenty_concurrent_placements_take_exactly_the_free_slots() {
        let fleet = Arc::new(Fleet::new(vec![
            member("a", 1, 2),
            member("b", 2, 2),
            member("c", 3, 1),
        ]));
        for name in fleet.names() {
            fleet.refresh(&name);
        }
        let racers: Vec<_> = (0..20)
            .map(|_| {
                let fleet = fleet.clone();
                std::thread::spawn(move || fleet.place("sgp1").map(|p| p.account))
            })
            .collect();
        let placed: Vec<String> = racers
            .into_iter()
            .filter_map(|r| r.join().expect("racer"))
            .collect();
        assert_eq!(placed.len(), 5);
        let on = |name: &str| placed.iter().filter(|p| *p == name).count();
        assert_eq!((on("a"), on("b"), on("c")), (2, 2, 1));
    }

    #[test]
    fn a_refresh_counts_placed_servers_once_and_a_refusal_marks_full() {
        let fleet = Fleet::new(vec![member("a", 1, 3)]);
        fleet.refresh("a");
        let made = fleet.place("sgp1").expect("a slot");
        let waiting = fleet.place("sgp1").expect("another slot");
        let client = fleet.client("a").expect("client");
        client.create_droplet(&spec(1)).expect("created");
        fleet.created(&made);
        fleet.refresh("a");
        // The count sees the one droplet; the other placement is still held.
        let view = &fleet.views()[0];
        assert_eq!((view.account.droplets, view.account.placing), (1, 1));
        assert_eq!(view.account.free_slots(), 1);
        fleet.release(&waiting);
        assert_eq!(fleet.views()[0].account.free_slots(), 2);
        fleet.mark_full("a");
        assert_eq!(fleet.place("sgp1"), None);
        fleet.refresh("a");
        assert!(fleet.place("sgp1").is_some());
    }
}
