//! The actions half of the DigitalOcean fake ([`super`]): actions posted to
//! `/v2/droplets/{id}/actions` (SPEC §9's power actions, §14's customer
//! actions), deletes by tag, and the counters and accessors the tests read
//! them with. A child module so it shares the fake's private
//! state without widening it.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{
    droplet_actions, now_rfc3339, parse_query, After, Decision, FakeDo, Fault, State,
    ALREADY_OFF_MESSAGE, ALREADY_ON_MESSAGE, DROPLET_LOCKED_MESSAGE, IMAGE_REQUIRED_MESSAGE,
    PENDING_EVENT_MESSAGE,
};

/// How many requests of one kind the fake saw: `received` counts every one
/// (faulted, refused or unauthenticated included); `accepted` those that took
/// effect — answered 2xx, or taken in and then delayed or dropped by a
/// [`Fault::Delay`] / [`Fault::DropConnection`], the "DigitalOcean did it but
/// the client never heard" case exactly-once must survive.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestCount {
    pub received: usize,
    pub accepted: usize,
}

/// The action types vpsd sends (SPEC §9 and §14); DigitalOcean has more, and
/// the fake refuses those so that vpsd sending one shows up as a failure.
const ACTION_TYPES: [&str; 6] = [
    "power_off",
    "shutdown",
    "power_on",
    "reboot",
    "power_cycle",
    "rebuild",
];

#[derive(Debug, Clone)]
pub(super) struct FakeAction {
    id: u64,
    droplet_id: u64,
    /// One of [`ACTION_TYPES`].
    kind: &'static str,
    /// The image slug a rebuild installs when it completes, not before:
    /// DigitalOcean's droplet shows the old image while the rebuild runs.
    image: Option<String>,
    region: String,
    started_at: String,
    done_at: Instant,
    completed_at: Option<String>,
}

impl FakeAction {
    pub(super) fn to_json(&self) -> Value {
        let status = if self.completed_at.is_some() {
            "completed"
        } else {
            "in-progress"
        };
        json!({
            "id": self.id, "status": status, "type": self.kind,
            "started_at": self.started_at, "completed_at": self.completed_at,
            "resource_id": self.droplet_id, "resource_type": "droplet",
            "region_slug": self.region,
        })
    }
}

/// The droplet status an action leaves behind once completed: a rebuild
/// boots the new image, so it ends `active` even from `off`.
fn action_target(kind: &str) -> &'static str {
    match kind {
        "power_off" | "shutdown" => "off",
        _ => "active",
    }
}

/// Why DigitalOcean would refuse `kind` on a droplet in `status`. Reboot and
/// power_cycle on an `off` droplet are refused although DigitalOcean may take
/// them: SPEC §14 has vpsd check the state first, and a test should see it if
/// vpsd did not. Other statuses (`new`, `archive`) refuse nothing, as before.
fn state_refusal(kind: &str, status: &str) -> Option<&'static str> {
    match (kind, status) {
        ("power_off" | "shutdown" | "reboot" | "power_cycle", "off") => Some(ALREADY_OFF_MESSAGE),
        ("power_on", "active") => Some(ALREADY_ON_MESSAGE),
        _ => None,
    }
}

impl State {
    /// Completes due actions (the droplet's status, and for a rebuild its
    /// image, change then) and removes deleted droplets whose delay has passed.
    pub(super) fn settle(&mut self, now: Instant) {
        if self.pending_actions.is_empty() && self.pending_deletes.is_empty() {
            return;
        }
        let due: Vec<u64> = self
            .pending_actions
            .iter()
            .copied()
            .filter(|a| self.posted_actions.get(a).is_none_or(|a| a.done_at <= now))
            .collect();
        self.pending_actions.retain(|a| !due.contains(a));
        for aid in due {
            let Some(action) = self.posted_actions.get_mut(&aid) else {
                continue;
            };
            action.completed_at = Some(now_rfc3339());
            let (did, target) = (action.droplet_id, action_target(action.kind));
            if let Some(d) = self.droplets.get_mut(&did) {
                d.forced_status = Some(target.to_string());
                d.pending_action = None;
                if let Some(image) = &action.image {
                    d.image = image.clone();
                }
            }
        }
        let gone: Vec<u64> = self
            .pending_deletes
            .iter()
            .copied()
            .filter(|id| {
                self.droplets
                    .get(id)
                    .is_none_or(|d| d.deleting_until.is_none_or(|t| t <= now))
            })
            .collect();
        self.pending_deletes.retain(|id| !gone.contains(id));
        for id in gone {
            if let Some(d) = self.droplets.remove(&id) {
                self.deleted.insert(id, d);
            }
        }
    }

    /// Feeds the per-droplet and per-tag counters (see [`RequestCount`]).
    pub(super) fn count_request(
        &mut self,
        method: &str,
        path: &str,
        query: &str,
        body: &str,
        status: u16,
    ) {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let accepted = usize::from((200..300).contains(&status));
        let count = match (method, segments.as_slice()) {
            ("POST", ["v2", "droplets", d, "actions"]) => {
                let Ok(id) = d.parse::<u64>() else { return };
                let kind = serde_json::from_str::<Value>(body)
                    .ok()
                    .and_then(|v| v.get("type").and_then(Value::as_str).map(str::to_string))
                    .unwrap_or_default();
                self.action_counts.entry((id, kind)).or_default()
            }
            ("DELETE", ["v2", "droplets"]) => {
                let tag = parse_query(query).remove("tag_name").unwrap_or_default();
                self.delete_counts.entry(tag).or_default()
            }
            _ => return,
        };
        count.received += 1;
        count.accepted += accepted;
    }
}

/// `POST /v2/droplets/{id}/actions` for every [`ACTION_TYPES`] entry: 201
/// with the action `in-progress`; it completes after the action delay (see
/// [`State::settle`]). Refused with 422 like DigitalOcean, nothing changed,
/// while a delete is under way or another action runs, and when the droplet's
/// status does not fit ([`state_refusal`]).
pub(super) fn post_action(state: &mut State, id: Option<u64>, body: &str) -> Decision {
    let request = serde_json::from_str::<Value>(body).unwrap_or(Value::Null);
    let kind = match request.get("type").and_then(Value::as_str) {
        Some(kind) => match ACTION_TYPES.iter().find(|t| **t == kind) {
            Some(known) => *known,
            None => {
                let message = format!("fake: action type {kind:?} is not supported");
                return Decision::error(422, "unprocessable_entity", &message);
            }
        },
        None => return Decision::error(422, "unprocessable_entity", "type is required."),
    };
    // DigitalOcean also takes an image id; vpsd sends slugs (SPEC §14), so
    // anything else is treated as missing.
    let image = request
        .get("image")
        .and_then(Value::as_str)
        .filter(|slug| !slug.is_empty())
        .map(str::to_string);
    if kind == "rebuild" && image.is_none() {
        return Decision::error(422, "unprocessable_entity", IMAGE_REQUIRED_MESSAGE);
    }
    let action_id = state.next_posted_action_id;
    let done_at = Instant::now() + state.action_delay;
    let Some(d) = id.and_then(|id| state.droplets.get_mut(&id)) else {
        return Decision::not_found();
    };
    let refusal = if d.deleting_until.is_some() {
        Some(DROPLET_LOCKED_MESSAGE)
    } else if d.pending_action.is_some() {
        Some(PENDING_EVENT_MESSAGE)
    } else {
        state_refusal(kind, &d.status())
    };
    if let Some(message) = refusal {
        return Decision::error(422, "unprocessable_entity", message);
    }
    d.pending_action = Some(action_id);
    d.posted_action_ids.push(action_id);
    let action = FakeAction {
        id: action_id,
        droplet_id: d.id,
        kind,
        image: image.filter(|_| kind == "rebuild"),
        region: d.region.clone(),
        started_at: now_rfc3339(),
        done_at,
        completed_at: None,
    };
    let answer = json!({"action": action.to_json()});
    state.next_posted_action_id += 1;
    state.posted_actions.insert(action_id, action);
    state.pending_actions.push(action_id);
    Decision::json(201, answer)
}

/// `DELETE /v2/droplets?tag_name=T`: 204 (also when nothing carries `T`); the
/// droplets are still listed until the action delay has passed.
pub(super) fn delete_by_tag(state: &mut State, query: &str) -> Decision {
    let Some(tag) = parse_query(query)
        .remove("tag_name")
        .filter(|t| !t.is_empty())
    else {
        return Decision::error(400, "bad_request", "tag_name is required.");
    };
    let until = Instant::now() + state.action_delay;
    let mut marked = Vec::new();
    let caller = state.caller.clone();
    let everyone = state.accounts.is_empty();
    for d in state.droplets.values_mut() {
        let seen = everyone || d.owner == caller;
        if d.deleting_until.is_none() && d.tags.contains(&tag) && seen {
            d.deleting_until = Some(until);
            marked.push(d.id);
        }
    }
    state.pending_deletes.extend(marked);
    Decision {
        status: 204,
        body: None,
        retry_after: None,
        after: After::Answer,
    }
}

impl FakeDo {
    /// How long a posted action stays `in-progress` (the droplet keeps its old
    /// status and image meanwhile) and how long droplets deleted by tag keep being
    /// listed. Default zero: done by the next request. Applies to requests
    /// from then on.
    pub fn set_action_delay(&self, delay: Duration) {
        self.shared.lock().action_delay = delay;
    }

    /// The next `times` action POSTs (any droplet, any type) answer with `fault`
    /// and, for 422/500/429, change nothing.
    pub fn fail_next_droplet_actions(&self, fault: Fault, times: usize) {
        self.inject_matching(fault, times, Some("POST"), "/v2/droplets/");
    }

    /// The next `times` action POSTs answer 422 [`DROPLET_LOCKED_MESSAGE`].
    pub fn lock_next_droplet_actions(&self, times: usize) {
        self.fail_next_droplet_actions(Fault::locked(), times);
    }

    /// The next `times` `DELETE /v2/droplets?tag_name=` answer with `fault`.
    pub fn fail_next_deletes_by_tag(&self, fault: Fault, times: usize) {
        self.inject_matching(fault, times, Some("DELETE"), "/v2/droplets?");
    }

    /// The next `times` deletes by tag answer 422 [`DROPLET_LOCKED_MESSAGE`].
    pub fn lock_next_deletes_by_tag(&self, times: usize) {
        self.fail_next_deletes_by_tag(Fault::locked(), times);
    }

    /// `POST /v2/droplets/{droplet_id}/actions` requests of type `kind`;
    /// `accepted` counts the actions that took effect (see [`RequestCount`]).
    pub fn action_requests(&self, droplet_id: u64, kind: &str) -> RequestCount {
        let state = self.shared.lock();
        let key = (droplet_id, kind.to_string());
        state.action_counts.get(&key).copied().unwrap_or_default()
    }

    /// [`FakeDo::action_requests`] summed over every droplet.
    pub fn action_requests_total(&self, kind: &str) -> RequestCount {
        let state = self.shared.lock();
        let mut total = RequestCount::default();
        for ((_, k), c) in &state.action_counts {
            if k == kind {
                total.received += c.received;
                total.accepted += c.accepted;
            }
        }
        total
    }

    /// The name the §9 tests were written with: [`FakeDo::action_requests`].
    pub fn power_requests(&self, droplet_id: u64, kind: &str) -> RequestCount {
        self.action_requests(droplet_id, kind)
    }

    /// The name the §9 tests were written with: [`FakeDo::action_requests_total`].
    pub fn power_requests_total(&self, kind: &str) -> RequestCount {
        self.action_requests_total(kind)
    }

    /// The droplet's status now, due actions completed: what the next action
    /// POST is judged by and a GET answers. Not itself an observation, so a
    /// scripted droplet never observed still reads `new` here, where the
    /// first GET (which counts) may already say `active`. `None` once deleted.
    pub fn droplet_status(&self, droplet_id: u64) -> Option<String> {
        let state = self.shared.lock();
        state.droplets.get(&droplet_id).map(|d| d.status())
    }

    /// The droplet's image slug (`"image": {"slug": ..}`): the create's, or
    /// the last completed rebuild's; `None` once deleted.
    pub fn droplet_image(&self, droplet_id: u64) -> Option<String> {
        let state = self.shared.lock();
        state.droplets.get(&droplet_id).map(|d| d.image.clone())
    }

    /// `DELETE /v2/droplets?tag_name={tag}` requests.
    pub fn delete_by_tag_requests(&self, tag: &str) -> RequestCount {
        let state = self.shared.lock();
        state.delete_counts.get(tag).copied().unwrap_or_default()
    }

    /// The droplet's actions as `GET /v2/droplets/{id}/actions` lists them
    /// (newest first, create last), without recording a request; empty when
    /// the droplet is gone.
    pub fn droplet_actions(&self, droplet_id: u64) -> Vec<Value> {
        let state = self.shared.lock();
        match droplet_actions(&state, Some(droplet_id), "per_page=200").body {
            Some(v) => v["actions"].as_array().cloned().unwrap_or_default(),
            None => Vec::new(),
        }
    }

    /// Whether a delete by tag has been accepted for the droplet and it is
    /// still listed.
    pub fn is_deleting(&self, droplet_id: u64) -> bool {
        let state = self.shared.lock();
        state
            .droplets
            .get(&droplet_id)
            .is_some_and(|d| d.deleting_until.is_some())
    }
}

#[cfg(test)]
mod tests {
    //! The fake's own contract for the action types, so the §14 tests can
    //! trust what it says about state, images and counts.

    use std::time::{Duration, Instant};

    use serde_json::{json, Value};

    // One path for the rest of the fake: a bench that compiles this module
    // without the #[test] functions would flag their imports as unused.
    use super::super::{self as fake_do, DropletScript, FakeDo, RequestCount};

    const SEED_IMAGE: &str = "ubuntu-24-04-x64";

    /// Status and JSON body; status 0 when the fake dropped the connection.
    fn call(fake: &FakeDo, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        let url = format!("{}{path}", fake.url());
        let auth = format!("Bearer {}", fake_do::DEFAULT_TOKEN);
        let response = match (method, body) {
            ("POST", Some(body)) => agent
                .post(&url)
                .header("Authorization", &auth)
                .send_json(body),
            ("DELETE", _) => agent.delete(&url).header("Authorization", &auth).call(),
            _ => agent.get(&url).header("Authorization", &auth).call(),
        };
        match response {
            Ok(mut r) => {
                let status = r.status().as_u16();
                (status, r.body_mut().read_json().unwrap_or(Value::Null))
            }
            Err(_) => (0, Value::Null),
        }
    }

    fn act(fake: &FakeDo, id: u64, body: Value) -> (u16, Value) {
        call(
            fake,
            "POST",
            &format!("/v2/droplets/{id}/actions"),
            Some(body),
        )
    }

    /// Status and the refusal's message, for asserting 422s in one line.
    fn refusal(fake: &FakeDo, id: u64, body: Value) -> (u16, String) {
        let (status, answer) = act(fake, id, body);
        (status, answer["message"].as_str().unwrap_or("").to_string())
    }

    fn kind(kind: &str) -> Value {
        json!({"type": kind})
    }

    fn rebuild(image: &str) -> Value {
        json!({"type": "rebuild", "image": image})
    }

    fn unprocessable(message: &str) -> (u16, String) {
        (422, message.to_string())
    }

    /// A droplet that reads `active` (observed once, as vpsd would have).
    fn active_droplet(fake: &FakeDo) -> u64 {
        let id = fake.seed_droplet("web-1", &["vpsd"], DropletScript::new().active_after(0));
        assert_eq!(
            call(fake, "GET", &format!("/v2/droplets/{id}"), None).0,
            200
        );
        assert_eq!(fake.droplet_status(id).as_deref(), Some("active"));
        id
    }

    fn count(received: usize, accepted: usize) -> RequestCount {
        RequestCount { received, accepted }
    }

    fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ok() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn every_action_type_ends_in_its_state_and_is_listed_newest_first() {
        let fake = FakeDo::start();
        let id = active_droplet(&fake);
        // Each step is legal from the state the one before left.
        let steps = [
            (kind("shutdown"), "off"),
            (kind("power_on"), "active"),
            (kind("reboot"), "active"),
            (kind("power_cycle"), "active"),
            (kind("power_off"), "off"),
            (rebuild("debian-12-x64"), "active"),
            (rebuild("rockylinux-9-x64"), "active"),
        ];
        for (body, state) in &steps {
            let (status, answer) = act(&fake, id, body.clone());
            assert_eq!(status, 201, "{body} -> {answer}");
            assert_eq!(answer["action"]["type"], body["type"]);
            assert_eq!(answer["action"]["status"], "in-progress");
            assert_eq!(fake.droplet_status(id).as_deref(), Some(*state), "{body}");
        }
        assert_eq!(fake.droplet_image(id).as_deref(), Some("rockylinux-9-x64"));
        let (_, got) = call(&fake, "GET", &format!("/v2/droplets/{id}"), None);
        assert_eq!(got["droplet"]["image"]["slug"], "rockylinux-9-x64");
        assert_eq!(got["droplet"]["status"], "active");
        let (_, listed) = call(&fake, "GET", "/v2/droplets?tag_name=vpsd", None);
        assert_eq!(listed["droplets"][0]["image"]["slug"], "rockylinux-9-x64");

        let actions = fake.droplet_actions(id);
        let types: Vec<&str> = actions.iter().filter_map(|a| a["type"].as_str()).collect();
        assert_eq!(
            types,
            [
                "rebuild",
                "rebuild",
                "power_off",
                "power_cycle",
                "reboot",
                "power_on",
                "shutdown",
                "create"
            ]
        );
        assert!(actions.iter().all(|a| a["status"] == "completed"));
        assert!(actions.iter().all(|a| a["started_at"].is_string()));
        let ids: Vec<u64> = actions.iter().filter_map(|a| a["id"].as_u64()).collect();
        assert!(ids.windows(2).all(|w| w[0] > w[1]), "{ids:?}");
        for t in ["shutdown", "power_on", "reboot", "power_cycle", "power_off"] {
            assert_eq!(fake.action_requests(id, t), count(1, 1), "{t}");
        }
        assert_eq!(fake.action_requests(id, "rebuild"), count(2, 2));
        assert_eq!(fake.power_requests(id, "power_off"), count(1, 1));
    }

    #[test]
    fn actions_the_state_does_not_fit_are_refused_and_change_nothing() {
        let fake = FakeDo::start();
        let id = active_droplet(&fake);
        let on = unprocessable(fake_do::ALREADY_ON_MESSAGE);
        assert_eq!(refusal(&fake, id, kind("power_on")), on);
        assert_eq!(act(&fake, id, kind("power_off")).0, 201);
        assert_eq!(fake.droplet_status(id).as_deref(), Some("off"));
        let off = unprocessable(fake_do::ALREADY_OFF_MESSAGE);
        for t in ["power_off", "shutdown", "reboot", "power_cycle"] {
            assert_eq!(refusal(&fake, id, kind(t)), off, "{t}");
        }
        let no_image = unprocessable(fake_do::IMAGE_REQUIRED_MESSAGE);
        assert_eq!(refusal(&fake, id, kind("rebuild")), no_image);
        assert_eq!(refusal(&fake, id, rebuild("")), no_image);
        let by_id = json!({"type": "rebuild", "image": 12345});
        assert_eq!(refusal(&fake, id, by_id), no_image);
        let (status, message) = refusal(&fake, id, kind("enable_backups"));
        assert_eq!(status, 422);
        assert!(message.contains("not supported"), "{message}");
        assert_eq!(refusal(&fake, id, json!({})).0, 422);
        assert_eq!(act(&fake, 1, kind("reboot")).0, 404);

        assert_eq!(fake.droplet_status(id).as_deref(), Some("off"));
        assert_eq!(fake.droplet_image(id).as_deref(), Some(SEED_IMAGE));
        assert_eq!(fake.droplet_actions(id).len(), 2, "power_off and create");
        assert_eq!(fake.action_requests(id, "power_off"), count(2, 1));
        assert_eq!(fake.action_requests(id, "power_on"), count(1, 0));
        assert_eq!(fake.action_requests(id, "reboot"), count(1, 0));
        assert_eq!(fake.action_requests(id, "rebuild"), count(3, 0));
        assert_eq!(fake.action_requests_total("reboot"), count(2, 0));
    }

    #[test]
    fn a_running_action_or_delete_refuses_others_and_a_rebuild_changes_the_image_on_completion() {
        let fake = FakeDo::start();
        // Long enough that "still running" holds between statements on a busy machine.
        fake.set_action_delay(Duration::from_secs(2));
        let id = active_droplet(&fake);
        let (status, answer) = act(&fake, id, rebuild("debian-12-x64"));
        assert_eq!(status, 201);
        let action = answer["action"]["id"].as_u64().expect("action id");
        let (_, got) = call(&fake, "GET", &format!("/v2/droplets/{id}"), None);
        assert_eq!(got["droplet"]["locked"], true);
        assert_eq!(got["droplet"]["image"]["slug"], SEED_IMAGE);
        let pending = unprocessable(fake_do::PENDING_EVENT_MESSAGE);
        assert_eq!(refusal(&fake, id, kind("reboot")), pending);
        assert_eq!(fake.droplet_actions(id)[0]["status"], "in-progress");

        wait_until("the rebuild to complete", || {
            call(&fake, "GET", &format!("/v2/actions/{action}"), None).1["action"]["status"]
                == "completed"
        });
        assert_eq!(fake.droplet_image(id).as_deref(), Some("debian-12-x64"));
        assert_eq!(fake.droplet_status(id).as_deref(), Some("active"));
        assert_eq!(fake.action_requests(id, "reboot"), count(1, 0));

        assert_eq!(
            call(&fake, "DELETE", "/v2/droplets?tag_name=vpsd", None).0,
            204
        );
        let locked = unprocessable(fake_do::DROPLET_LOCKED_MESSAGE);
        assert_eq!(refusal(&fake, id, kind("power_off")), locked);
        assert_eq!(fake.action_requests(id, "power_off"), count(1, 0));
        assert_eq!(fake.droplet_status(id).as_deref(), Some("active"));
    }

    #[test]
    fn accepted_counts_the_actions_that_took_effect_even_unanswered() {
        let fake = FakeDo::start();
        let id = active_droplet(&fake);
        fake.fail_next_droplet_actions(fake_do::Fault::ServerError, 1);
        assert_eq!(act(&fake, id, kind("reboot")).0, 500);
        fake.fail_next_droplet_actions(fake_do::Fault::DropConnection, 1);
        assert_eq!(act(&fake, id, kind("reboot")).0, 0);
        assert_eq!(fake.action_requests(id, "reboot"), count(2, 1));
        assert_eq!(fake.droplet_actions(id)[0]["type"], "reboot");
        fake.lock_next_droplet_actions(1);
        let locked = unprocessable(fake_do::DROPLET_LOCKED_MESSAGE);
        assert_eq!(refusal(&fake, id, rebuild("debian-12-x64")), locked);
        assert_eq!(fake.action_requests_total("rebuild"), count(1, 0));
        assert_eq!(fake.droplet_image(id).as_deref(), Some(SEED_IMAGE));
    }
}
