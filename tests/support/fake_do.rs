#![allow(dead_code)]
//! A scriptable local fake of DigitalOcean API v2, for integration tests.
//!
//! It serves, on `127.0.0.1:{random port}` (see [`FakeDo::url`], which has no `/v2`):
//!
//! - `POST /v2/droplets` -> 202 `{"droplet": {..status "new"..}, "links": {"actions":
//!   [{id, rel: "create", href}]}}`
//! - `GET /v2/droplets/{id}` -> 200 `{"droplet": {..}}` or 404
//! - `GET /v2/droplets?tag_name=T&per_page=P&page=N` -> 200 `{"droplets": [..],
//!   "links": {"pages": {first, prev, next, last}}, "meta": {"total": n}}` (`per_page`
//!   defaults to 20 and is clamped to 200, like DigitalOcean; ordered by id)
//! - `DELETE /v2/droplets/{id}` -> 204 or 404
//! - `GET /v2/droplets/{id}/actions?per_page=P&page=N` -> 200 `{"actions": [<posted
//!   actions, newest first>.., <the create action>], "links": {}, "meta": {"total": n}}`
//!   or 404
//! - `GET /v2/actions/{id}` -> 200 `{"action": {id, status, type, ..}}` or 404
//! - `POST /v2/droplets/{id}/actions` `{"type": "power_off" | "shutdown" | "power_on" |
//!   "reboot" | "power_cycle"}` or `{"type": "rebuild", "image": "<slug>"}` -> 201
//!   `{"action": {.."status": "in-progress"..}}`; after [`FakeDo::set_action_delay`]
//!   (default 0) the action is `completed` and the droplet `off` (power_off, shutdown)
//!   or `active` (the others); a rebuild then also carries its image (`"image":
//!   {"slug": ..}`). 422, nothing changed: while another action runs
//!   ([`PENDING_EVENT_MESSAGE`]); while the droplet is being deleted
//!   ([`DROPLET_LOCKED_MESSAGE`]); power_off, shutdown, reboot or power_cycle when `off`
//!   ([`ALREADY_OFF_MESSAGE`]) and power_on when `active` ([`ALREADY_ON_MESSAGE`]) —
//!   strict on purpose for reboot and power_cycle, so an action vpsd should not
//!   have sent shows; a rebuild without an image ([`IMAGE_REQUIRED_MESSAGE`]); other
//!   types. Unknown droplet 404.
//! - `DELETE /v2/droplets?tag_name=T` -> 204 (also when nothing carries T); the droplets
//!   are still listed, `locked`, until the action delay has passed.
//! - `GET /v2/account` -> 200 `{"account": {..}}`
//!
//! Every answer carries `RateLimit-Limit/Remaining/Reset`. A missing or wrong bearer
//! token gets 401 `{"id":"unauthorized","message":"Unable to authenticate you."}`.
//! Every request is recorded ([`FakeDo::requests`], [`FakeDo::count`]; count lists
//! with prefix `/v2/droplets?` and by-id reads with `/v2/droplets/`).
//!
//! # Droplet lifecycle scripting
//!
//! Each droplet follows a [`DropletScript`], taken when it is created: the next
//! script queued with [`FakeDo::push_script`] (FIFO, one per create), else the
//! default ([`FakeDo::set_default_script`]). An *observation* is a successful
//! `GET /v2/droplets/{id}` or an appearance in a list answer. The create answer is
//! not an observation and always shows `new` with no networks.
//!
//! ```ignore
//! let fake = FakeDo::start();                      // token "test-token"
//! fake.set_default_script(DropletScript::new().active_after(0));
//! fake.push_script(DropletScript::new().active_after(2).ip_after(1)); // next create only
//! fake.push_script(DropletScript::new().action_errored());            // the create after
//! fake.inject(Fault::ServerError, 2);                                // next 2 requests: 500
//! let busy = Fault::TooManyRequests { retry_after_secs: 1 };
//! fake.inject_matching(busy, 1, Some("GET"), "/v2/droplets");      // next list/get: 429
//! fake.reject_next_create_droplet_limit();                           // next create: 422
//! fake.hold_creates(true);      // creates take effect but their answers wait ...
//! fake.release_creates();       // ... until released (or the fake is dropped)
//! let ids = fake.seed_droplets(10_000, "vpsd");                      // sweep benchmark
//! fake.set_action_delay(Duration::from_millis(300)); // droplet actions, deletes by tag
//! fake.lock_next_droplet_actions(2);         // next 2 action POSTs: 422 locked
//! fake.fail_next_deletes_by_tag(Fault::ServerError, 1);
//! fake.action_requests(id, "reboot");        // RequestCount { received, accepted }
//! fake.action_requests_total("rebuild");     // over every droplet
//! fake.power_requests(id, "power_off");      // the same as action_requests
//! fake.droplet_status(id);                   // Some("off"), as a GET would say now
//! fake.droplet_image(id);                    // Some("ubuntu-24-04-x64"), the slug
//! fake.delete_by_tag_requests("vpsd-order-..");
//! assert_eq!(fake.count("POST", "/v2/droplets"), 1);
//! ```
//!
//! Faults ([`Fault`]) apply to authenticated requests, first matching rule first.
//! `ServerError` and `TooManyRequests` answer without any effect; `Delay` and
//! `DropConnection` let the request take effect (a create creates the droplet) and
//! only delay or lose the answer — the "DigitalOcean got it, the client did not
//! hear back" case.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use warp::http::{HeaderValue, StatusCode};
use warp::reply::Response;
use warp::{Filter, Reply};

#[path = "fake_do_actions.rs"]
mod actions;
pub use actions::RequestCount;
use actions::{delete_by_tag, post_action, FakeAction};

/// The token [`FakeDo::start`] accepts.
pub const DEFAULT_TOKEN: &str = "test-token";
/// DigitalOcean's message when the account's droplet limit is reached.
pub const DROPLET_LIMIT_MESSAGE: &str =
    "You have reached the droplet limit for this account. Please contact support to raise it.";
const FIRST_DROPLET_ID: u64 = 300_000_001;
const FIRST_ACTION_ID: u64 = 2_000_000_001;
const RATE_LIMIT_LIMIT: u64 = 5000;
/// The droplet limit of the fake's one account when no limits are set: a
/// raised account, so tests about other things never run out of room.
const SINGLE_ACCOUNT_LIMIT: u64 = 100_000;
/// The 422 message [`Fault::locked`] answers with.
pub const DROPLET_LOCKED_MESSAGE: &str = "Droplet is currently locked";
/// The 422 message for an action while another one is still running.
pub const PENDING_EVENT_MESSAGE: &str = "Droplet already has a pending event.";
/// DigitalOcean's 422 message for power_off, shutdown, reboot or power_cycle
/// on a droplet that is off.
pub const ALREADY_OFF_MESSAGE: &str = "Droplet is already powered off.";
/// DigitalOcean's 422 message for power_on on a droplet that is active.
pub const ALREADY_ON_MESSAGE: &str = "Droplet is already powered on.";
/// The 422 message for a rebuild without an image.
pub const IMAGE_REQUIRED_MESSAGE: &str = "You must specify an image.";
/// Posted actions get ids from here on, above every create action's, so a
/// droplet's actions sort by id in the order they were started.
const FIRST_POSTED_ACTION_ID: u64 = 3_000_000_001;

/// How one droplet evolves. Build with [`DropletScript::new`] and the builder
/// methods; the defaults are: `new` on the first observation, `active` with a
/// public IPv4 from the second, create action completed, no 404s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropletScript {
    /// Observations answered with `new` before the status changes.
    pub observations_until_active: u32,
    /// Observations after the status changed that still list no public IPv4.
    pub observations_until_ip: u32,
    /// The create action ends `errored`; the droplet then stays `new`.
    pub action_errored: bool,
    /// The status changes to `off` instead of `active`.
    pub goes_off: bool,
    /// The first N `GET /v2/droplets/{id}` after create answer 404 (lists are not
    /// affected; 404s are not observations).
    pub not_found_gets: u32,
}

impl Default for DropletScript {
    fn default() -> Self {
        DropletScript {
            observations_until_active: 1,
            observations_until_ip: 0,
            action_errored: false,
            goes_off: false,
            not_found_gets: 0,
        }
    }
}

impl DropletScript {
    pub fn new() -> Self {
        Self::default()
    }
    /// `new` for the first `n` observations (0: active on the first one).
    pub fn active_after(mut self, n: u32) -> Self {
        self.observations_until_active = n;
        self
    }
    /// After becoming active, `n` more observations without a public IPv4.
    pub fn ip_after(mut self, n: u32) -> Self {
        self.observations_until_ip = n;
        self
    }
    pub fn action_errored(mut self) -> Self {
        self.action_errored = true;
        self
    }
    pub fn goes_off(mut self) -> Self {
        self.goes_off = true;
        self
    }
    pub fn not_found_for(mut self, gets: u32) -> Self {
        self.not_found_gets = gets;
        self
    }
}

/// A fault for [`FakeDo::inject`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// 500 `{"id":"server_error",..}`; the request has no effect.
    ServerError,
    /// 429 `{"id":"too_many_requests",..}` with `Retry-After`; no effect.
    TooManyRequests { retry_after_secs: u64 },
    /// The request takes effect, then the answer is sent after this long (use more
    /// than the client's timeout to simulate a timeout).
    Delay(Duration),
    /// The request takes effect, then the connection is broken instead of answered.
    DropConnection,
    /// 422 `{"id":"unprocessable_entity","message": message}`; no effect. See
    /// [`Fault::locked`].
    Unprocessable { message: String },
}

impl Fault {
    /// DigitalOcean's answer to an action on a droplet that is busy:
    /// 422 [`DROPLET_LOCKED_MESSAGE`].
    pub fn locked() -> Fault {
        Fault::Unprocessable {
            message: DROPLET_LOCKED_MESSAGE.to_string(),
        }
    }
}

#[derive(Debug, Clone)]
struct FaultRule {
    fault: Fault,
    remaining: usize,
    method: Option<String>,
    path_prefix: String,
}

/// One request as the fake received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    pub method: String,
    /// Path plus `?query` when there was one, as sent (still percent-encoded).
    pub path: String,
    pub body: String,
    /// Whether the bearer token was the expected one.
    pub auth_ok: bool,
    /// The bearer token sent (the fake's own test tokens, never real ones):
    /// which account a request was made on.
    pub token: String,
    /// The status the fake chose (0 when the connection was dropped instead).
    pub status: u16,
}

impl RecordedRequest {
    /// The body parsed as JSON (`None` when empty or not JSON).
    pub fn json(&self) -> Option<Value> {
        serde_json::from_str(&self.body).ok()
    }
}

/// A droplet pre-created by [`FakeDo::seed_droplets`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeededDroplet {
    pub id: u64,
    /// `vpsd-order-{uuid}`.
    pub order_tag: String,
    pub order_id: String,
}

#[derive(Debug, Clone)]
struct FakeDroplet {
    id: u64,
    /// The token whose account holds it.
    owner: String,
    seq: u64,
    name: String,
    region: String,
    size: String,
    /// The image slug: the create's, then each completed rebuild's.
    image: String,
    tags: Vec<String>,
    ipv6: bool,
    created_at: String,
    action_id: u64,
    script: DropletScript,
    observations: u32,
    gets_404_left: u32,
    /// Set by [`FakeDo::set_droplet_status`]; wins over the script.
    forced_status: Option<String>,
    /// Actions posted for it (ids into `State::posted_actions`), oldest first.
    posted_action_ids: Vec<u64>,
    /// The posted action still in progress, if any.
    pending_action: Option<u64>,
    /// Set by a delete by tag; the droplet is gone once this instant passes.
    deleting_until: Option<Instant>,
}

impl FakeDroplet {
    fn activated(&self) -> bool {
        !self.script.action_errored && self.observations > self.script.observations_until_active
    }

    fn status(&self) -> String {
        if let Some(s) = &self.forced_status {
            return s.clone();
        }
        if self.activated() {
            if self.script.goes_off {
                "off"
            } else {
                "active"
            }
            .to_string()
        } else {
            "new".to_string()
        }
    }

    fn has_ip(&self) -> bool {
        self.activated()
            && self.observations
                > self.script.observations_until_active + self.script.observations_until_ip
    }

    fn public_ip(&self) -> String {
        format!("203.0.113.{}", self.seq % 254 + 1)
    }

    fn private_ip(&self) -> String {
        format!("10.130.{}.{}", (self.seq / 254) % 256, self.seq % 254 + 1)
    }

    fn action_status(&self) -> &'static str {
        if self.script.action_errored {
            "errored"
        } else if self.activated() || self.forced_status.is_some() {
            "completed"
        } else {
            "in-progress"
        }
    }

    fn action_json(&self) -> Value {
        let status = self.action_status();
        let completed_at = if status == "in-progress" {
            Value::Null
        } else {
            json!(self.created_at)
        };
        json!({
            "id": self.action_id, "status": status, "type": "create",
            "started_at": self.created_at, "completed_at": completed_at,
            "resource_id": self.id, "resource_type": "droplet",
            "region_slug": self.region,
        })
    }

    /// The droplet object as DigitalOcean renders it (the commonly used fields).
    fn to_json(&self, with_networks: bool) -> Value {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        if with_networks && self.has_ip() {
            // DigitalOcean really does send the string "nil" as a private gateway.
            v4.push(json!({
                "ip_address": self.private_ip(), "netmask": "255.255.0.0",
                "gateway": "nil", "type": "private",
            }));
            v4.push(json!({
                "ip_address": self.public_ip(), "netmask": "255.255.255.0",
                "gateway": "203.0.113.254", "type": "public",
            }));
            if self.ipv6 {
                v6.push(json!({
                    "ip_address": format!("2001:db8::{:x}", self.seq + 1), "netmask": 64,
                    "gateway": "2001:db8::1", "type": "public",
                }));
            }
        }
        let features = if self.ipv6 {
            json!(["monitoring", "ipv6"])
        } else {
            json!(["monitoring"])
        };
        json!({
            "id": self.id,
            "name": self.name,
            "memory": 1024,
            "vcpus": 1,
            "disk": 25,
            "locked": self.pending_action.is_some() || self.deleting_until.is_some(),
            "status": if with_networks { self.status() } else { "new".to_string() },
            "kernel": null,
            "created_at": self.created_at,
            "features": features,
            "backup_ids": [],
            "next_backup_window": null,
            "snapshot_ids": [],
            "image": {
                "id": 63663980, "name": self.image, "distribution": "Ubuntu",
                "slug": self.image, "public": true,
            },
            "volume_ids": [],
            "size": {"slug": self.size, "memory": 1024, "vcpus": 1, "disk": 25},
            "size_slug": self.size,
            "networks": {"v4": v4, "v6": v6},
            "region": {"name": self.region, "slug": self.region, "available": true},
            "tags": self.tags,
            "vpc_uuid": "760e09ef-dc84-11e8-981e-3cfdfeaae000",
        })
    }
}

/// What a create request (or a seed) specifies.
struct DropletInit {
    name: String,
    region: String,
    size: String,
    image: String,
    tags: Vec<String>,
    ipv6: bool,
}

impl DropletInit {
    fn seeded(name: String, tags: Vec<String>) -> DropletInit {
        DropletInit {
            name,
            region: "sgp1".into(),
            size: "s-1vcpu-1gb".into(),
            image: "ubuntu-24-04-x64".into(),
            tags,
            ipv6: false,
        }
    }
}

#[derive(Debug)]
struct State {
    token: String,
    /// Tokens of further accounts and their droplet limits (SPEC §13): each
    /// token sees only its own droplets and is refused past its limit.
    accounts: BTreeMap<String, u64>,
    /// Tokens whose account `status` is `locked` rather than `active`.
    locked_accounts: std::collections::BTreeSet<String>,
    /// The token of the request being decided.
    caller: String,
    next_seq: u64,
    droplets: BTreeMap<u64, FakeDroplet>,
    /// action id -> droplet id (kept after deletes so actions stay readable).
    actions: HashMap<u64, u64>,
    deleted: HashMap<u64, FakeDroplet>,
    default_script: DropletScript,
    scripts: VecDeque<DropletScript>,
    faults: Vec<FaultRule>,
    create_rejections: VecDeque<(u16, String, String)>,
    hold_creates: bool,
    held: usize,
    rate_remaining: u64,
    /// Off until [`FakeDo::set_rate_limit`], so long tests never run dry.
    rate_decrements: bool,
    rate_reset_in: Duration,
    /// `RateLimit-Limit`; [`FakeDo::set_rate_window`] changes it.
    rate_limit: u64,
    /// A refilling budget ([`FakeDo::set_rate_window`]): its length and when
    /// the current window ends.
    rate_window: Option<(Duration, SystemTime)>,
    requests: Vec<RecordedRequest>,
    /// How long posted actions and deletes by tag take ([`FakeDo::set_action_delay`]).
    action_delay: Duration,
    next_posted_action_id: u64,
    posted_actions: BTreeMap<u64, FakeAction>,
    /// Posted actions in progress and droplets being deleted, settled lazily.
    pending_actions: Vec<u64>,
    pending_deletes: Vec<u64>,
    action_counts: HashMap<(u64, String), RequestCount>,
    delete_counts: HashMap<String, RequestCount>,
}

/// A droplet, or an action on one, is found only by the token that holds it.
fn visible_to_caller(state: &State, segments: &[&str]) -> bool {
    let droplet = match segments {
        ["v2", "droplets", d, ..] => d.parse::<u64>().ok(),
        ["v2", "actions", a] => a
            .parse::<u64>()
            .ok()
            .and_then(|a| state.actions.get(&a).copied()),
        _ => None,
    };
    let owner = droplet.and_then(|id| {
        state
            .droplets
            .get(&id)
            .or_else(|| state.deleted.get(&id))
            .map(|d| d.owner.as_str())
    });
    owner.is_none_or(|owner| state.sees(owner))
}

impl State {
    /// With one token (no accounts set) it sees every droplet, whatever
    /// token it had when the droplet was made.
    fn sees(&self, owner: &str) -> bool {
        self.accounts.is_empty() || owner == self.caller
    }

    /// Droplets an account holds, as its droplet limit counts them.
    fn held_by(&self, token: &str) -> usize {
        self.droplets.values().filter(|d| d.owner == token).count()
    }

    fn new_droplet(&mut self, init: DropletInit, script: DropletScript) -> u64 {
        let DropletInit {
            name,
            region,
            size,
            image,
            tags,
            ipv6,
        } = init;
        let seq = self.next_seq;
        self.next_seq += 1;
        let id = FIRST_DROPLET_ID + seq;
        let action_id = FIRST_ACTION_ID + seq;
        let droplet = FakeDroplet {
            id,
            owner: self.caller.clone(),
            seq,
            name,
            region,
            size,
            image,
            tags,
            ipv6,
            created_at: now_rfc3339(),
            action_id,
            gets_404_left: script.not_found_gets,
            script,
            observations: 0,
            forced_status: None,
            posted_action_ids: Vec::new(),
            pending_action: None,
            deleting_until: None,
        };
        self.droplets.insert(id, droplet);
        self.actions.insert(action_id, id);
        id
    }
}

struct Shared {
    state: Mutex<State>,
    addr: SocketAddr,
    release: tokio::sync::watch::Sender<u64>,
}

impl Shared {
    /// The state with every posted action and delete whose delay has passed
    /// applied, so the fake needs no timer and every reader sees the same time.
    fn lock(&self) -> MutexGuard<'_, State> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.settle(Instant::now());
        state
    }
}

/// The running fake; stops (abandoning held and delayed answers) when dropped.
pub struct FakeDo {
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for FakeDo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeDo")
            .field("addr", &self.shared.addr)
            .finish()
    }
}

impl FakeDo {
    /// Starts a fake accepting [`DEFAULT_TOKEN`].
    pub fn start() -> FakeDo {
        Self::start_with_token(DEFAULT_TOKEN)
    }

    pub fn start_with_token(token: &str) -> FakeDo {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind fake DigitalOcean");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let addr = listener.local_addr().expect("local addr");
        let (release, _) = tokio::sync::watch::channel(0u64);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                token: token.to_string(),
                accounts: BTreeMap::new(),
                locked_accounts: Default::default(),
                caller: token.to_string(),
                next_seq: 0,
                droplets: BTreeMap::new(),
                actions: HashMap::new(),
                deleted: HashMap::new(),
                default_script: DropletScript::default(),
                scripts: VecDeque::new(),
                faults: Vec::new(),
                create_rejections: VecDeque::new(),
                hold_creates: false,
                held: 0,
                rate_remaining: RATE_LIMIT_LIMIT - 1,
                rate_decrements: false,
                rate_reset_in: Duration::from_secs(60),
                rate_limit: RATE_LIMIT_LIMIT,
                rate_window: None,
                requests: Vec::new(),
                action_delay: Duration::ZERO,
                next_posted_action_id: FIRST_POSTED_ACTION_ID,
                posted_actions: BTreeMap::new(),
                pending_actions: Vec::new(),
                pending_deletes: Vec::new(),
                action_counts: HashMap::new(),
                delete_counts: HashMap::new(),
            }),
            addr,
            release,
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let for_server = shared.clone();
        let thread = std::thread::Builder::new()
            .name("fake-do".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("fake DigitalOcean runtime");
                rt.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                    let server = warp::serve(routes(for_server)).incoming(listener).run();
                    tokio::select! {
                        _ = server => {}
                        _ = stopped => {}
                    }
                });
                // Held and delayed answers are abandoned, not awaited.
                rt.shutdown_timeout(Duration::from_millis(100));
            })
            .expect("spawn fake DigitalOcean thread");
        FakeDo {
            shared,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// A fake holding several accounts, one per token, each with its droplet
    /// limit (SPEC §13). Every token sees only its own droplets.
    pub fn start_accounts(accounts: &[(&str, u64)]) -> FakeDo {
        let fake = Self::start_with_token(accounts.first().map_or(DEFAULT_TOKEN, |a| a.0));
        for (token, limit) in accounts {
            fake.set_droplet_limit(token, *limit);
        }
        fake
    }

    /// Sets (or adds) the account of `token` with `limit` droplets.
    pub fn set_droplet_limit(&self, token: &str, limit: u64) {
        self.shared.lock().accounts.insert(token.to_string(), limit);
    }

    /// The account of `token` reports `status` `locked` (or `active` again).
    pub fn set_account_locked(&self, token: &str, locked: bool) {
        let mut state = self.shared.lock();
        if locked {
            state.locked_accounts.insert(token.to_string());
        } else {
            state.locked_accounts.remove(token);
        }
    }

    /// Droplets the account of `token` holds (its own and foreign ones).
    pub fn droplets_of(&self, token: &str) -> usize {
        self.shared.lock().held_by(token)
    }

    /// `n` droplets vpsd did not make, on the account of `token`: they count
    /// against its limit.
    pub fn seed_foreign(&self, token: &str, n: usize) {
        let mut state = self.shared.lock();
        let previous = std::mem::replace(&mut state.caller, token.to_string());
        for i in 0..n {
            let init = DropletInit::seeded(format!("foreign-{i}"), vec!["not-vpsd".into()]);
            let script = state.default_script.clone();
            state.new_droplet(init, script);
        }
        state.caller = previous;
    }

    /// Base URL without `/v2`, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://{}", self.shared.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    pub fn set_token(&self, token: &str) {
        self.shared.lock().token = token.to_string();
    }

    // ----- scripting -----

    /// Script for creates with no queued script.
    pub fn set_default_script(&self, script: DropletScript) {
        self.shared.lock().default_script = script;
    }

    /// Script for the next create (FIFO: each create consumes one).
    pub fn push_script(&self, script: DropletScript) {
        self.shared.lock().scripts.push_back(script);
    }

    /// Answers the next `times` authenticated requests with `fault`.
    pub fn inject(&self, fault: Fault, times: usize) {
        self.inject_matching(fault, times, None, "");
    }

    /// Like [`FakeDo::inject`], only for requests with this method (any when
    /// `None`) whose path (with query) starts with `path_prefix`.
    pub fn inject_matching(
        &self,
        fault: Fault,
        times: usize,
        method: Option<&str>,
        path_prefix: &str,
    ) {
        self.shared.lock().faults.push(FaultRule {
            fault,
            remaining: times,
            method: method.map(|m| m.to_ascii_uppercase()),
            path_prefix: path_prefix.to_string(),
        });
    }

    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }

    /// The next create answers `status` with `{"id": id, "message": message}` and
    /// creates nothing.
    pub fn reject_next_create(&self, status: u16, id: &str, message: &str) {
        self.shared.lock().create_rejections.push_back((
            status,
            id.to_string(),
            message.to_string(),
        ));
    }

    /// The next create answers 422 with [`DROPLET_LIMIT_MESSAGE`].
    pub fn reject_next_create_droplet_limit(&self) {
        self.reject_next_create(422, "unprocessable_entity", DROPLET_LIMIT_MESSAGE);
    }

    /// While on, a create takes effect at once (the droplet exists and is listed
    /// by tag) but its answer is withheld until [`FakeDo::release_creates`].
    pub fn hold_creates(&self, on: bool) {
        self.shared.lock().hold_creates = on;
        if !on {
            self.shared.release.send_modify(|g| *g += 1);
        }
    }

    /// Turns holding off and lets every withheld create answer go out.
    pub fn release_creates(&self) {
        self.hold_creates(false);
    }

    /// Create answers currently withheld.
    pub fn held_creates(&self) -> usize {
        self.shared.lock().held
    }

    /// Sets the budget the `RateLimit-Remaining` header reports, from then on
    /// decreasing by one per request (never below 0), and `RateLimit-Reset` = now +
    /// `reset_in`. Until called, every answer reports 4999 remaining of 5000, reset
    /// in 60 s.
    pub fn set_rate_limit(&self, remaining: u64, reset_in: Duration) {
        let mut state = self.shared.lock();
        state.rate_remaining = remaining;
        state.rate_decrements = true;
        state.rate_reset_in = reset_in;
    }

    /// A budget of `limit` calls per `window`, refilled when each window
    /// ends, as DigitalOcean meters a token: `RateLimit-Limit` is `limit`,
    /// `RateLimit-Reset` the window's end (rounded up to a second), and a call
    /// with nothing left is answered 429 with `Retry-After`.
    pub fn set_rate_window(&self, limit: u64, window: Duration) {
        let mut state = self.shared.lock();
        state.rate_limit = limit;
        state.rate_remaining = limit;
        state.rate_decrements = true;
        state.rate_window = Some((window, SystemTime::now() + window));
    }

    // ----- droplets -----

    /// Current droplets as `GET /v2/droplets/{id}` would render them (without
    /// counting as an observation).
    pub fn droplets(&self) -> Vec<Value> {
        let state = self.shared.lock();
        state.droplets.values().map(|d| d.to_json(true)).collect()
    }

    pub fn droplet(&self, id: u64) -> Option<Value> {
        self.shared
            .lock()
            .droplets
            .get(&id)
            .map(|d| d.to_json(true))
    }

    /// Ids of current droplets carrying `tag`.
    pub fn droplet_ids_with_tag(&self, tag: &str) -> Vec<u64> {
        let state = self.shared.lock();
        state
            .droplets
            .values()
            .filter(|d| d.tags.iter().any(|t| t == tag))
            .map(|d| d.id)
            .collect()
    }

    /// Forces a droplet's status (e.g. `off`, `archive`), overriding its script.
    pub fn set_droplet_status(&self, id: u64, status: &str) -> bool {
        match self.shared.lock().droplets.get_mut(&id) {
            Some(d) => {
                d.forced_status = Some(status.to_string());
                true
            }
            None => false,
        }
    }

    /// Removes a droplet as if deleted outside vpsd.
    pub fn remove_droplet(&self, id: u64) -> bool {
        let mut state = self.shared.lock();
        match state.droplets.remove(&id) {
            Some(d) => {
                state.deleted.insert(id, d);
                true
            }
            None => false,
        }
    }

    /// Creates one droplet directly (no request recorded) with `script`.
    pub fn seed_droplet(&self, name: &str, tags: &[&str], script: DropletScript) -> u64 {
        let tags = tags.iter().map(|t| t.to_string()).collect();
        self.shared
            .lock()
            .new_droplet(DropletInit::seeded(name.to_string(), tags), script)
    }

    /// Creates `n` droplets that are already active with addresses, each tagged
    /// `[common_tag, "vpsd-order-{uuid}"]`.
    pub fn seed_droplets(&self, n: usize, common_tag: &str) -> Vec<SeededDroplet> {
        let token = self.shared.lock().caller.clone();
        self.seed_droplets_on(&token, n, common_tag)
    }

    /// [`FakeDo::seed_droplets`] on the account of `token`.
    pub fn seed_droplets_on(&self, token: &str, n: usize, common_tag: &str) -> Vec<SeededDroplet> {
        let mut state = self.shared.lock();
        let previous = std::mem::replace(&mut state.caller, token.to_string());
        let seeded = (0..n)
            .map(|i| {
                let order_id = uuid::Uuid::new_v4().to_string();
                let order_tag = format!("vpsd-order-{order_id}");
                let tags = vec![common_tag.to_string(), order_tag.clone()];
                let id = state.new_droplet(
                    DropletInit::seeded(format!("seed-{i}"), tags),
                    DropletScript::new().active_after(0),
                );
                SeededDroplet {
                    id,
                    order_tag,
                    order_id,
                }
            })
            .collect();
        state.caller = previous;
        seeded
    }

    // ----- recorded requests -----

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().requests.clone()
    }

    pub fn clear_requests(&self) {
        self.shared.lock().requests.clear();
    }

    /// Requests with this method whose path (with query) starts with `path_prefix`.
    pub fn count(&self, method: &str, path_prefix: &str) -> usize {
        self.shared
            .lock()
            .requests
            .iter()
            .filter(|r| r.method.eq_ignore_ascii_case(method) && r.path.starts_with(path_prefix))
            .count()
    }

    /// Polls until `count(method, path_prefix) >= n`; false on timeout.
    pub fn wait_for_count(
        &self,
        method: &str,
        path_prefix: &str,
        n: usize,
        timeout: Duration,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.count(method, path_prefix) >= n {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for FakeDo {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let now = now.replace_nanosecond(0).unwrap_or(now);
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "2024-01-01T00:00:00Z".to_string())
}

fn epoch_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_query(raw: &str) -> HashMap<String, String> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(p), String::new()),
        })
        .collect()
}

fn encode_query_value(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// What the handler decided, computed under the lock; the waiting happens after.
enum After {
    Answer,
    Delay(Duration),
    Drop,
    Hold,
}

struct Decision {
    status: u16,
    body: Option<Value>,
    retry_after: Option<u64>,
    after: After,
}

impl Decision {
    fn json(status: u16, body: Value) -> Decision {
        Decision {
            status,
            body: Some(body),
            retry_after: None,
            after: After::Answer,
        }
    }
    fn error(status: u16, id: &str, message: &str) -> Decision {
        Self::json(status, json!({"id": id, "message": message}))
    }
    fn not_found() -> Decision {
        Self::error(
            404,
            "not_found",
            "The resource you were accessing could not be found.",
        )
    }
}

fn routes(
    shared: Arc<Shared>,
) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static {
    let raw_query = warp::query::raw().or(warp::any().map(String::new)).unify();
    warp::method()
        .and(warp::path::full())
        .and(raw_query)
        .and(warp::header::optional::<String>("authorization"))
        .and(warp::body::bytes())
        .and_then(
            move |method: warp::http::Method,
                  path: warp::path::FullPath,
                  query: String,
                  auth: Option<String>,
                  body: bytes::Bytes| {
                let shared = shared.clone();
                async move {
                    Ok::<_, Infallible>(
                        handle(shared, method.as_str(), path.as_str(), &query, auth, &body).await,
                    )
                }
            },
        )
        .recover(|_rejection: warp::Rejection| async {
            Ok::<_, Infallible>(error_response(
                400,
                "bad_request",
                "The request could not be read.",
            ))
        })
        .unify()
}

fn error_response(status: u16, id: &str, message: &str) -> Response {
    let mut res = warp::reply::json(&json!({"id": id, "message": message})).into_response();
    *res.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    res
}

async fn handle(
    shared: Arc<Shared>,
    method: &str,
    path: &str,
    query: &str,
    auth: Option<String>,
    body: &[u8],
) -> Response {
    // Subscribe before the decision so a release between the two is not missed.
    let mut release = shared.release.subscribe();
    let (decision, remaining, reset) = decide_and_record(&shared, method, path, query, auth, body);
    match decision.after {
        After::Answer => {}
        After::Delay(d) => tokio::time::sleep(d).await,
        After::Hold => {
            let _ = release.wait_for(|_| !shared.lock().hold_creates).await;
            shared.lock().held -= 1;
        }
        After::Drop => {
            let chunks = vec![Err::<bytes::Bytes, std::io::Error>(std::io::Error::other(
                "fake: connection dropped",
            ))];
            return warp::reply::stream(futures_util::stream::iter(chunks)).into_response();
        }
    }
    respond(decision, remaining, reset)
}

/// Under the lock: checks the token, decides, counts the rate budget and
/// records the request. Returns the decision, `RateLimit-Limit` and
/// `RateLimit-Remaining`, and `RateLimit-Reset`.
fn decide_and_record(
    shared: &Shared,
    method: &str,
    path: &str,
    query: &str,
    auth: Option<String>,
    body: &[u8],
) -> (Decision, (u64, u64), u64) {
    let body_text = String::from_utf8_lossy(body).into_owned();
    let full_path = if query.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{query}")
    };
    let mut state = shared.lock();
    let caller = auth
        .as_deref()
        .and_then(|a| a.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_string();
    let auth_ok = caller == state.token || state.accounts.contains_key(&caller);
    if auth_ok {
        state.caller = caller.clone();
    }
    let window_end = state.rate_window.map(|(length, mut ends)| {
        let now = SystemTime::now();
        if now >= ends {
            while ends <= now {
                ends += length;
            }
            state.rate_remaining = state.rate_limit;
            state.rate_window = Some((length, ends));
        }
        ends
    });
    let exhausted = window_end.is_some() && state.rate_remaining == 0;
    let decision = if auth_ok && exhausted {
        let wait = window_end
            .and_then(|end| end.duration_since(SystemTime::now()).ok())
            .unwrap_or_default();
        let mut d = Decision::error(429, "too_many_requests", "API Rate limit exceeded.");
        d.retry_after = Some(wait.as_secs() + 1);
        d
    } else if auth_ok {
        decide(
            &mut state,
            shared.addr,
            method,
            path,
            &full_path,
            query,
            &body_text,
        )
    } else {
        Decision::error(401, "unauthorized", "Unable to authenticate you.")
    };
    if matches!(decision.after, After::Hold) {
        state.held += 1;
    }
    if state.rate_decrements {
        state.rate_remaining = state.rate_remaining.saturating_sub(1);
    }
    let status = if matches!(decision.after, After::Drop) {
        0
    } else {
        decision.status
    };
    state.count_request(method, path, query, &body_text, decision.status);
    state.requests.push(RecordedRequest {
        method: method.to_string(),
        path: full_path,
        body: body_text,
        auth_ok,
        token: caller,
        status,
    });
    let reset = match window_end {
        // Rounded up: a reset reported early would invite a call that 429s.
        Some(end) => epoch_secs(end + Duration::from_millis(999)),
        None => epoch_secs(SystemTime::now() + state.rate_reset_in),
    };
    (decision, (state.rate_limit, state.rate_remaining), reset)
}

fn respond(decision: Decision, (limit, remaining): (u64, u64), reset: u64) -> Response {
    let mut res = match decision.body {
        Some(v) => warp::reply::json(&v).into_response(),
        None => warp::reply().into_response(),
    };
    *res.status_mut() =
        StatusCode::from_u16(decision.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = res.headers_mut();
    headers.insert("ratelimit-limit", HeaderValue::from(limit));
    headers.insert("ratelimit-remaining", HeaderValue::from(remaining));
    headers.insert("ratelimit-reset", HeaderValue::from(reset));
    if let Some(secs) = decision.retry_after {
        headers.insert("retry-after", HeaderValue::from(secs));
    }
    res
}

fn take_fault(state: &mut State, method: &str, full_path: &str) -> Option<Fault> {
    let rule = state.faults.iter_mut().find(|r| {
        r.remaining > 0
            && r.method.as_deref().is_none_or(|m| m == method)
            && full_path.starts_with(&r.path_prefix)
    })?;
    rule.remaining -= 1;
    let fault = rule.fault.clone();
    state.faults.retain(|r| r.remaining > 0);
    Some(fault)
}

fn decide(
    state: &mut State,
    addr: SocketAddr,
    method: &str,
    path: &str,
    full_path: &str,
    query: &str,
    body: &str,
) -> Decision {
    let after = match take_fault(state, method, full_path) {
        Some(Fault::ServerError) => {
            return Decision::error(500, "server_error", "Unexpected server-side error");
        }
        Some(Fault::TooManyRequests { retry_after_secs }) => {
            let mut d = Decision::error(429, "too_many_requests", "API rate limit exceeded.");
            d.retry_after = Some(retry_after_secs);
            return d;
        }
        Some(Fault::Delay(d)) => After::Delay(d),
        Some(Fault::DropConnection) => After::Drop,
        Some(Fault::Unprocessable { message }) => {
            return Decision::error(422, "unprocessable_entity", &message);
        }
        None => After::Answer,
    };
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let id = |text: &str| text.parse::<u64>().ok();
    if !visible_to_caller(state, &segments) {
        return Decision::not_found();
    }
    let mut decision = match (method, segments.as_slice()) {
        ("POST", ["v2", "droplets"]) => create(state, body),
        ("GET", ["v2", "droplets"]) => list(state, addr, query),
        ("GET", ["v2", "droplets", d]) => get_droplet(state, id(d)),
        ("DELETE", ["v2", "droplets", d]) => delete_droplet(state, id(d)),
        ("GET", ["v2", "droplets", d, "actions"]) => droplet_actions(state, id(d), query),
        ("POST", ["v2", "droplets", d, "actions"]) => post_action(state, id(d), body),
        ("DELETE", ["v2", "droplets"]) => delete_by_tag(state, query),
        ("GET", ["v2", "actions", a]) => get_action(state, id(a)),
        ("GET", ["v2", "account"]) => Decision::json(
            200,
            json!({"account": {
                "droplet_limit": state.accounts.get(&state.caller).copied().unwrap_or(SINGLE_ACCOUNT_LIMIT),
                "floating_ip_limit": 5, "email": "sammy@example.com",
                "uuid": "b6fr89dbf6d9156cace5f3c78dc9851d957381ef", "email_verified": true,
                "status": if state.locked_accounts.contains(&state.caller) { "locked" } else { "active" },
                "status_message": "",
            }}),
        ),
        _ => Decision::not_found(),
    };
    if let After::Answer = decision.after {
        decision.after = after;
    }
    decision
}

fn get_droplet(state: &mut State, id: Option<u64>) -> Decision {
    match id.and_then(|id| state.droplets.get_mut(&id)) {
        Some(d) if d.gets_404_left > 0 => {
            d.gets_404_left -= 1;
            Decision::not_found()
        }
        Some(d) => {
            d.observations += 1;
            Decision::json(200, json!({"droplet": d.to_json(true)}))
        }
        None => Decision::not_found(),
    }
}

fn delete_droplet(state: &mut State, id: Option<u64>) -> Decision {
    match id.and_then(|id| state.droplets.remove(&id)) {
        Some(d) => {
            state.deleted.insert(d.id, d);
            Decision {
                status: 204,
                body: None,
                retry_after: None,
                after: After::Answer,
            }
        }
        None => Decision::not_found(),
    }
}

/// Newest first: the droplet's posted actions, then its create action.
/// `per_page` (default 20, at most 200) and `page` as DigitalOcean takes them.
fn droplet_actions(state: &State, id: Option<u64>, query: &str) -> Decision {
    let Some(d) = id.and_then(|id| state.droplets.get(&id)) else {
        return Decision::not_found();
    };
    let params = parse_query(query);
    let number = |k: &str, default: usize| {
        params
            .get(k)
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|n| *n > 0)
            .unwrap_or(default)
    };
    let (per_page, page) = (number("per_page", 20).min(200), number("page", 1));
    let mut all: Vec<Value> = d
        .posted_action_ids
        .iter()
        .rev()
        .filter_map(|a| state.posted_actions.get(a))
        .map(FakeAction::to_json)
        .collect();
    all.push(d.action_json());
    let total = all.len();
    let shown: Vec<Value> = all
        .into_iter()
        .skip((page - 1).saturating_mul(per_page))
        .take(per_page)
        .collect();
    let mut pages = serde_json::Map::new();
    if page * per_page < total {
        let next = format!(
            "/v2/droplets/{}/actions?page={}&per_page={per_page}",
            d.id,
            page + 1
        );
        pages.insert("next".into(), json!(next));
    }
    let links = if pages.is_empty() {
        json!({})
    } else {
        json!({ "pages": pages })
    };
    Decision::json(
        200,
        json!({"actions": shown, "links": links, "meta": {"total": total}}),
    )
}

/// Actions outlive their droplet, as on DigitalOcean.
fn get_action(state: &State, id: Option<u64>) -> Decision {
    if let Some(a) = id.and_then(|aid| state.posted_actions.get(&aid)) {
        return Decision::json(200, json!({"action": a.to_json()}));
    }
    let droplet = id.and_then(|aid| {
        let did = state.actions.get(&aid)?;
        state.droplets.get(did).or_else(|| state.deleted.get(did))
    });
    match droplet {
        Some(d) => Decision::json(200, json!({"action": d.action_json()})),
        None => Decision::not_found(),
    }
}

fn create(state: &mut State, body: &str) -> Decision {
    if let Some((status, id, message)) = state.create_rejections.pop_front() {
        return Decision::error(status, &id, &message);
    }
    if let Some(limit) = state.accounts.get(&state.caller) {
        if state.held_by(&state.caller) >= *limit as usize {
            return Decision::error(422, "unprocessable_entity", DROPLET_LIMIT_MESSAGE);
        }
    }
    let Ok(req) = serde_json::from_str::<Value>(body) else {
        return Decision::error(
            400,
            "bad_request",
            "The request body could not be parsed as JSON.",
        );
    };
    let text = |k: &str| req.get(k).and_then(Value::as_str).map(str::to_string);
    let (Some(name), Some(size), Some(image)) = (text("name"), text("size"), text("image")) else {
        return Decision::error(
            422,
            "unprocessable_entity",
            "name, size and image are required.",
        );
    };
    let tags = match req.get("tags") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        Some(_) => {
            return Decision::error(
                422,
                "unprocessable_entity",
                "tags must be an array of strings.",
            )
        }
    };
    let ipv6 = req.get("ipv6").and_then(Value::as_bool).unwrap_or(false);
    let region = text("region").unwrap_or_else(|| "nyc3".into());
    let script = state
        .scripts
        .pop_front()
        .unwrap_or_else(|| state.default_script.clone());
    let init = DropletInit {
        name,
        region,
        size,
        image,
        tags,
        ipv6,
    };
    let id = state.new_droplet(init, script);
    let (droplet, action_id) = match state.droplets.get(&id) {
        Some(d) => (d.to_json(false), d.action_id),
        None => return Decision::error(500, "server_error", "fake lost its droplet"),
    };
    let mut decision = Decision::json(
        202,
        json!({
            "droplet": droplet,
            "links": {"actions": [{
                "id": action_id,
                "rel": "create",
                "href": format!("https://api.digitalocean.com/v2/actions/{action_id}"),
            }]},
        }),
    );
    if state.hold_creates {
        decision.after = After::Hold;
    }
    decision
}

fn list(state: &mut State, addr: SocketAddr, query: &str) -> Decision {
    let params = parse_query(query);
    let per_page = params
        .get("per_page")
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(20)
        .min(200);
    let page = params
        .get("page")
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(1);
    let tag = params.get("tag_name").cloned();
    let matching: Vec<u64> = state
        .droplets
        .values()
        .filter(|d| state.sees(&d.owner))
        .filter(|d| tag.as_ref().is_none_or(|t| d.tags.iter().any(|x| x == t)))
        .map(|d| d.id)
        .collect();
    let total = matching.len();
    let last = total.div_ceil(per_page).max(1);
    let mut droplets = Vec::new();
    for id in matching
        .iter()
        .skip((page - 1).saturating_mul(per_page))
        .take(per_page)
    {
        if let Some(d) = state.droplets.get_mut(id) {
            d.observations += 1;
            droplets.push(d.to_json(true));
        }
    }
    let link = |n: usize| {
        let mut url = format!("http://{addr}/v2/droplets?page={n}&per_page={per_page}");
        if let Some(t) = &tag {
            url.push_str(&format!("&tag_name={}", encode_query_value(t)));
        }
        url
    };
    let mut pages = serde_json::Map::new();
    if page > 1 {
        pages.insert("first".into(), json!(link(1)));
        pages.insert("prev".into(), json!(link(page - 1)));
    }
    if page < last {
        pages.insert("last".into(), json!(link(last)));
        pages.insert("next".into(), json!(link(page + 1)));
    }
    Decision::json(
        200,
        json!({"droplets": droplets, "links": {"pages": pages}, "meta": {"total": total}}),
    )
}
