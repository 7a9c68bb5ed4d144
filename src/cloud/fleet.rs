//! The accounts servers are spread over (SPEC §13), each with its own client
//! (its own token and rate budget), and what vpsd last learnt of each:
//! health, DigitalOcean's droplet limit, the droplet count, and the servers
//! placed since that count. Placement itself is the domain's rule
//! ([`crate::domain::fleet::place`]); this keeps the facts it decides on and
//! takes a slot under one lock, so two orders never take the last one.
//!
//! A slot is held per order until a count that started after its droplet
//! was created sees that droplet. Holds live in memory; the reconciler
//! re-declares them from the stored tasks every sweep ([`Fleet::sync_holds`]),
//! so a restart between placement and create cannot give a slot away twice.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::{Cloud, CloudError};
use crate::domain::fleet::{self, Account, Health, DEFAULT_ACCOUNT};
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

impl Member {
    /// The v1 deployment's one token as the account `default`.
    pub fn single(client: Arc<dyn Cloud>) -> Member {
        Member {
            name: DEFAULT_ACCOUNT.into(),
            priority: 100,
            regions: Vec::new(),
            max_droplets: None,
            drain: false,
            client,
        }
    }
}

/// What an account looks like from outside (`GET /internal/cloud/accounts`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountView {
    pub account: Account,
    pub checked_at: Option<Millis>,
    pub last_error: Option<String>,
    pub rate_limit_remaining: Option<u64>,
}

struct Entry {
    client: Arc<dyn Cloud>,
    /// What was learnt; its `account.placing` stays 0, since the holds are
    /// the placements ([`Entry::account`] fills it in).
    state: AccountView,
    /// Orders holding a slot here, with when their droplet was created.
    holds: HashMap<Uuid, Option<Instant>>,
    /// When the last check finished; `None` before the first.
    checked: Option<Instant>,
    /// A refusal or a reload asks for a check before the next placement.
    stale: bool,
}

impl Entry {
    fn new(member: Member) -> Entry {
        let account = Account {
            name: member.name,
            priority: member.priority,
            regions: member.regions,
            drain: member.drain,
            // Unknown until the first check answers: nothing placed.
            health: Health::Unreachable,
            droplet_limit: None,
            max_droplets: member.max_droplets,
            droplets: 0,
            placing: 0,
            refused_full: false,
        };
        Entry {
            client: member.client,
            state: AccountView {
                account,
                checked_at: None,
                last_error: None,
                rate_limit_remaining: None,
            },
            holds: HashMap::new(),
            checked: None,
            stale: true,
        }
    }

    /// The account as placement and operators see it.
    fn account(&self) -> Account {
        Account {
            placing: self.holds.len() as u64,
            ..self.state.account.clone()
        }
    }
}

/// Why an order could not be placed now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoPlace {
    /// Every account that could serve the region refuses the token.
    Unauthorized,
    /// No account that could serve the region is healthy, and some do not
    /// answer (5xx, timeouts): DigitalOcean's trouble, not a lack of room.
    Unavailable,
    /// No account has a free slot for the region (or none may serve it).
    NoCapacity,
}

/// Every account and its last known state.
pub struct Fleet {
    /// `digitalocean` or `sandbox`, for health and logs.
    provider: &'static str,
    entries: Mutex<BTreeMap<String, Entry>>,
}

impl Fleet {
    pub fn new(provider: &'static str, members: Vec<Member>) -> Fleet {
        let entries = members
            .into_iter()
            .map(|m| (m.name.clone(), Entry::new(m)))
            .collect();
        Fleet {
            provider,
            entries: Mutex::new(entries),
        }
    }

    /// One account, `default`, on `client`.
    pub fn single(client: Arc<dyn Cloud>) -> Fleet {
        Fleet::new(client.name(), vec![Member::single(client)])
    }

    pub fn provider(&self) -> &'static str {
        self.provider
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Entry>> {
        // The map holds plain facts; a panic elsewhere cannot leave it half-written.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The client of `name`, for every call about a server placed there.
    pub fn client(&self, name: &str) -> Option<Arc<dyn Cloud>> {
        self.lock().get(name).map(|e| e.client.clone())
    }

    pub fn health(&self, name: &str) -> Option<Health> {
        self.lock().get(name).map(|e| e.state.account.health)
    }

    /// Takes a slot for `order`'s new server in `region` and names the
    /// account, or says why none can take it now.
    pub fn place(&self, region: &str, order: Uuid) -> Result<String, NoPlace> {
        let mut entries = self.lock();
        let accounts: Vec<Account> = entries.values().map(Entry::account).collect();
        let Some(chosen) = fleet::place(&accounts, region) else {
            return Err(why_not(&accounts, region));
        };
        let name = chosen.name.clone();
        if let Some(entry) = entries.get_mut(&name) {
            entry.holds.insert(order, None);
        }
        Ok(name)
    }

    /// The slots the stored tasks say are held: placed orders whose droplet
    /// is not known yet. Holds of other orders that never got a droplet are
    /// dropped (the order was canceled, failed or re-placed); missing ones
    /// are taken (after a restart).
    pub fn sync_holds(&self, placed: &[(String, Uuid)]) {
        let mut entries = self.lock();
        let mut wanted: HashMap<&str, Vec<Uuid>> = HashMap::new();
        for (account, order) in placed {
            wanted.entry(account.as_str()).or_default().push(*order);
        }
        for (name, entry) in entries.iter_mut() {
            let mine = wanted.remove(name.as_str()).unwrap_or_default();
            entry
                .holds
                .retain(|order, created| created.is_some() || mine.contains(order));
            for order in mine {
                entry.holds.entry(order).or_insert(None);
            }
        }
    }

    /// `order`'s droplet exists now on `account`.
    pub fn created(&self, account: &str, order: Uuid) {
        if let Some(entry) = self.lock().get_mut(account) {
            entry.holds.insert(order, Some(Instant::now()));
        }
    }

    /// The slot is given back: nothing was created there.
    pub fn release(&self, account: &str, order: Uuid) {
        if let Some(entry) = self.lock().get_mut(account) {
            entry.holds.remove(&order);
        }
    }

    /// DigitalOcean refused a create on `name` for its droplet limit: no more
    /// placements there until the next check, whatever the counts said.
    pub fn mark_full(&self, name: &str) {
        if let Some(entry) = self.lock().get_mut(name) {
            entry.state.account.refused_full = true;
            entry.stale = true;
        }
    }

    /// A call on `name` failed: the account's health says so until a check
    /// answers (401: until a reload gives it a token that works).
    pub fn mark_failed(&self, name: &str, error: &CloudError) {
        if let Some(entry) = self.lock().get_mut(name) {
            entry.state.account.health = health_after(error);
            entry.state.last_error = Some(error.to_string());
            entry.stale = true;
        }
    }

    /// A server on `name` was deleted: its slot opens at the next check.
    pub fn mark_stale(&self, name: &str) {
        if let Some(entry) = self.lock().get_mut(name) {
            entry.stale = true;
        }
    }

    /// Checks every account that was never checked, asked for a check, or
    /// was last checked longer than `every` ago.
    pub fn refresh_due(&self, every: Duration) {
        let due: Vec<String> = self
            .lock()
            .iter()
            .filter(|(_, e)| e.stale || e.checked.is_none_or(|at| at.elapsed() >= every))
            .map(|(name, _)| name.clone())
            .collect();
        for name in due {
            self.refresh(&name);
        }
    }

    /// Reads `name`'s limit, status and droplet count again (blocking calls:
    /// run it off the async workers). The count now includes the droplets
    /// created before it started, so their slots are no longer held twice.
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
        entry.checked = Some(Instant::now());
        entry.stale = false;
        let state = &mut entry.state;
        state.checked_at = Some(now_millis());
        state.rate_limit_remaining = client.rate_limit_remaining();
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
                account.refused_full = false;
                state.last_error = None;
                entry
                    .holds
                    .retain(|_, created| created.is_none_or(|at| at >= started));
            }
            Err(e) => {
                state.account.health = health_after(&e);
                state.last_error = Some(e.to_string());
                // An account that did not answer is asked again next sweep;
                // a refused token waits for a reload or the periodic check.
                entry.stale = state.account.health == Health::Unreachable;
            }
        }
    }

    /// A reload's account list. Accounts that stay keep what was learnt of
    /// them and their holds, with the new client and settings; every
    /// account is checked again before the next placement (a token may have
    /// changed). The caller has made sure no live order uses a removed one.
    pub fn replace(&self, members: Vec<Member>) {
        let mut entries = self.lock();
        let mut next = BTreeMap::new();
        for member in members {
            let name = member.name.clone();
            let entry = match entries.remove(&name) {
                Some(mut kept) => {
                    let account = &mut kept.state.account;
                    account.priority = member.priority;
                    account.regions = member.regions;
                    account.max_droplets = member.max_droplets;
                    account.drain = member.drain;
                    kept.client = member.client;
                    kept.stale = true;
                    kept
                }
                None => Entry::new(member),
            };
            next.insert(name, entry);
        }
        *entries = next;
    }

    /// Droplets `name` held at its last count (0 before the first).
    pub fn droplet_count(&self, name: &str) -> u64 {
        self.lock()
            .get(name)
            .map_or(0, |e| e.state.account.droplets)
    }

    /// Every account's name.
    pub fn names(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    pub fn views(&self) -> Vec<AccountView> {
        self.lock()
            .values()
            .map(|e| AccountView {
                account: e.account(),
                rate_limit_remaining: e.client.rate_limit_remaining(),
                ..e.state.clone()
            })
            .collect()
    }

    /// Requests sent over every account's client (metrics).
    pub fn calls_sent(&self) -> u64 {
        self.lock().values().map(|e| e.client.calls_sent()).sum()
    }

    /// 429 answers over every account's client (metrics).
    pub fn rate_limited_count(&self) -> u64 {
        self.lock()
            .values()
            .map(|e| e.client.rate_limited_count())
            .sum()
    }

    /// The longest one call can take on any account.
    pub fn call_timeout(&self) -> Duration {
        self.lock()
            .values()
            .map(|e| e.client.call_timeout())
            .max()
            .unwrap_or_default()
    }
}

/// Why nothing in `accounts` takes a server in `region`: a lack of room
/// unless no account that could serve it is healthy, in which case their
/// trouble is the reason shown.
fn why_not(accounts: &[Account], region: &str) -> NoPlace {
    let candidates: Vec<&Account> = accounts.iter().filter(|a| a.serves(region)).collect();
    let all = |health: &[Health]| {
        !candidates.is_empty() && candidates.iter().all(|a| health.contains(&a.health))
    };
    if all(&[Health::Unauthorized]) {
        NoPlace::Unauthorized
    } else if all(&[Health::Unauthorized, Health::Unreachable]) {
        NoPlace::Unavailable
    } else {
        NoPlace::NoCapacity
    }
}

/// What a failed call says of an account's health.
fn health_after(error: &CloudError) -> Health {
    match error {
        CloudError::Unauthorized(_) => Health::Unauthorized,
        _ => Health::Unreachable,
    }
}

#[cfg(test)]
mod tests {
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

    fn fleet(members: Vec<Member>) -> Fleet {
        let fleet = Fleet::new("sandbox", members);
        fleet.refresh_due(Duration::from_secs(300));
        fleet
    }

    #[test]
    fn nothing_is_placed_before_the_first_check() {
        let fleet = Fleet::new("sandbox", vec![member("a", 1, 5)]);
        let order = Uuid::new_v4();
        assert_eq!(fleet.place("sgp1", order), Err(NoPlace::Unavailable));
        fleet.refresh("a");
        assert_eq!(fleet.place("sgp1", order).as_deref(), Ok("a"));
    }

    /// 20 orders at once against 3 accounts with 5 free slots in all: exactly
    /// 5 are placed, never past a limit.
    #[test]
    fn twenty_concurrent_placements_take_exactly_the_free_slots() {
        let fleet = Arc::new(fleet(vec![
            member("a", 1, 2),
            member("b", 2, 2),
            member("c", 3, 1),
        ]));
        let racers: Vec<_> = (0..20)
            .map(|_| {
                let fleet = fleet.clone();
                std::thread::spawn(move || fleet.place("sgp1", Uuid::new_v4()).ok())
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
        let fleet = fleet(vec![member("a", 1, 3)]);
        let (made, waiting) = (Uuid::new_v4(), Uuid::new_v4());
        fleet.place("sgp1", made).expect("a slot");
        fleet.place("sgp1", waiting).expect("another slot");
        let client = fleet.client("a").expect("client");
        client.create_droplet(&spec(1)).expect("created");
        fleet.created("a", made);
        fleet.refresh("a");
        // The count sees the one droplet; the other placement is still held.
        let view = &fleet.views()[0];
        assert_eq!((view.account.droplets, view.account.placing), (1, 1));
        assert_eq!(view.account.free_slots(), 1);
        fleet.release("a", waiting);
        assert_eq!(fleet.views()[0].account.free_slots(), 2);
        fleet.mark_full("a");
        assert!(fleet.place("sgp1", Uuid::new_v4()).is_err());
        fleet.refresh_due(Duration::from_secs(300));
        assert!(fleet.place("sgp1", Uuid::new_v4()).is_ok());
    }

    #[test]
    fn holds_follow_the_stored_tasks() {
        let fleet = fleet(vec![member("a", 1, 2)]);
        let (kept, gone, restored) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        fleet.place("sgp1", kept).expect("slot");
        fleet.place("sgp1", gone).expect("slot");
        // After a restart the store names `restored` as placed on `a`.
        fleet.sync_holds(&[("a".into(), kept), ("a".into(), restored)]);
        assert_eq!(fleet.views()[0].account.placing, 2);
        assert!(fleet.place("sgp1", Uuid::new_v4()).is_err());
    }

    #[test]
    fn an_unauthorized_account_is_the_reason_only_when_it_is_the_only_candidate() {
        let fleet = fleet(vec![member("a", 1, 0), member("b", 2, 0)]);
        let refused = CloudError::Unauthorized("bad token".into());
        fleet.mark_failed("a", &refused);
        assert_eq!(
            fleet.place("sgp1", Uuid::new_v4()),
            Err(NoPlace::NoCapacity)
        );
        fleet.mark_failed("b", &refused);
        assert_eq!(
            fleet.place("sgp1", Uuid::new_v4()),
            Err(NoPlace::Unauthorized)
        );
    }

    #[test]
    fn an_account_that_does_not_answer_is_checked_again_at_the_next_sweep() {
        use crate::cloud::digitalocean::DigitalOcean;
        // Nothing listens on port 1: every call fails to connect.
        let client = Arc::new(DigitalOcean::new(
            "http://127.0.0.1:1",
            "t",
            Duration::from_millis(200),
        ));
        let fleet = Fleet::new(
            "digitalocean",
            vec![Member {
                name: "a".into(),
                ..Member::single(client.clone())
            }],
        );
        fleet.refresh_due(Duration::from_secs(300));
        assert_eq!(fleet.health("a"), Some(Health::Unreachable));
        let asked = client.calls_sent();
        fleet.refresh_due(Duration::from_secs(300));
        assert!(client.calls_sent() > asked, "not checked again");
    }

    #[test]
    fn a_reload_keeps_what_was_learnt_and_checks_again() {
        let fleet = fleet(vec![member("a", 1, 2), member("b", 2, 2)]);
        fleet.place("sgp1", Uuid::new_v4()).expect("slot");
        fleet.replace(vec![member("a", 5, 2), member("c", 1, 2)]);
        assert_eq!(fleet.names(), ["a", "c"]);
        let a = &fleet.views()[0].account;
        assert_eq!((a.priority, a.placing, a.health), (5, 1, Health::Ok));
        fleet.refresh_due(Duration::from_secs(300));
        assert_eq!(fleet.place("sgp1", Uuid::new_v4()).as_deref(), Ok("c"));
    }

    mod model {
        use proptest::prelude::*;

        use super::*;

        #[derive(Debug, Clone)]
        enum Step {
            /// A paid order wants a server.
            Arrive,
            /// One of vpsd's servers on this account (by index) is deleted,
            /// and the account checked again, as a confirmed delete causes.
            Delete(usize),
            /// The periodic check of every account.
            Refresh,
        }

        fn step() -> impl Strategy<Value = Step> {
            prop_oneof![
                4 => Just(Step::Arrive),
                1 => (0usize..4).prop_map(Step::Delete),
                1 => Just(Step::Refresh),
            ]
        }

        struct World {
            fleet: Fleet,
            clouds: Vec<(String, Arc<Sandbox>, u64, bool, i64)>,
            made: Vec<(usize, u64)>,
        }

        impl World {
            fn new(accounts: &[(u64, u64, i64, bool)]) -> World {
                let mut clouds = Vec::new();
                let mut members = Vec::new();
                for (n, &(limit, foreign, priority, drain)) in accounts.iter().enumerate() {
                    let sandbox =
                        Arc::new(Sandbox::new(Duration::ZERO).with_droplet_limit(Some(limit)));
                    for f in 0..foreign.min(limit) {
                        sandbox
                            .create_droplet(&spec(1000 + f as usize))
                            .expect("foreign");
                    }
                    let name = format!("acct-{n}");
                    members.push(Member {
                        name: name.clone(),
                        priority,
                        regions: Vec::new(),
                        max_droplets: None,
                        drain,
                        client: sandbox.clone(),
                    });
                    clouds.push((name, sandbox, limit, drain, priority));
                }
                let fleet = Fleet::new("sandbox", members);
                fleet.refresh_due(Duration::from_secs(300));
                World {
                    fleet,
                    clouds,
                    made: Vec::new(),
                }
            }

            fn free(&self, n: usize) -> u64 {
                let (_, sandbox, limit, _, _) = &self.clouds[n];
                limit.saturating_sub(sandbox.droplet_count().expect("count"))
            }

            fn arrive(&mut self) -> Result<(), TestCaseError> {
                let order = Uuid::new_v4();
                match self.fleet.place("sgp1", order) {
                    Ok(name) => {
                        let n = self.clouds.iter().position(|c| c.0 == name).expect("known");
                        let (_, sandbox, _, drain, priority) = &self.clouds[n];
                        prop_assert!(!drain, "placed on a draining account");
                        let better = (0..self.clouds.len()).any(|m| {
                            !self.clouds[m].3 && self.clouds[m].4 < *priority && self.free(m) > 0
                        });
                        prop_assert!(!better, "a preferred account had room");
                        let made = sandbox.create_droplet(&spec(self.made.len()));
                        prop_assert!(made.is_ok(), "placed past the limit: {made:?}");
                        if let Ok(made) = made {
                            self.fleet.created(&name, order);
                            self.made.push((n, made.droplet.id));
                        }
                    }
                    Err(_) => {
                        for n in 0..self.clouds.len() {
                            prop_assert!(
                                self.clouds[n].3 || self.free(n) == 0,
                                "left waiting while {} had a free slot",
                                self.clouds[n].0
                            );
                        }
                    }
                }
                Ok(())
            }

            fn delete(&mut self, pick: usize) {
                if self.made.is_empty() {
                    return;
                }
                let (n, id) = self.made.remove(pick % self.made.len());
                let (name, sandbox, ..) = &self.clouds[n];
                sandbox.delete_droplet(id).expect("deleted");
                self.fleet.mark_stale(name);
                self.fleet.refresh_due(Duration::from_secs(300));
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]

            /// Random accounts (limits, foreign droplets, priorities,
            /// draining) and random arrivals, deletions and checks: a
            /// placement never passes a limit, never skips a preferred
            /// account with room, and an order is only left waiting when no
            /// account that may take it has a free slot.
            #[test]
            fn placement_never_passes_a_limit_nor_leaves_an_order_beside_a_free_slot(
                accounts in proptest::collection::vec((0u64..4, 0u64..3, 0i64..3, proptest::bool::weighted(0.2)), 1..4),
                steps in proptest::collection::vec(step(), 1..40),
            ) {
                let mut world = World::new(&accounts);
                for step in steps {
                    match step {
                        Step::Arrive => world.arrive()?,
                        Step::Delete(pick) => world.delete(pick),
                        Step::Refresh => {
                            for name in world.fleet.names() {
                                world.fleet.refresh(&name);
                            }
                        }
                    }
                }
            }
        }
    }
}
