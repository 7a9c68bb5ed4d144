//! The actions half of the DigitalOcean fake ([`super`]): actions posted to
//! `/v2/droplets/{id}/actions`, deletes by tag, and the counters and accessors
//! the tests read them with. A child module so it shares the fake's private
//! state without widening it.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{
    droplet_actions, now_rfc3339, parse_query, After, Decision, FakeDo, Fault, State,
    DROPLET_LOCKED_MESSAGE, PENDING_EVENT_MESSAGE,
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

#[derive(Debug, Clone)]
pub(super) struct FakePowerAction {
    id: u64,
    droplet_id: u64,
    /// `power_off` | `power_on`.
    kind: &'static str,
    region: String,
    started_at: String,
    done_at: Instant,
    completed_at: Option<String>,
}

impl FakePowerAction {
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

/// The droplet status a power action leads to.
fn power_target(kind: &str) -> &'static str {
    if kind == "power_off" {
        "off"
    } else {
        "active"
    }
}

impl State {
    /// Completes power actions (the droplet's status changes then) and removes
    /// deleted droplets whose delay has passed.
    pub(super) fn settle(&mut self, now: Instant) {
        if self.pending_actions.is_empty() && self.pending_deletes.is_empty() {
            return;
        }
        let due: Vec<u64> = self
            .pending_actions
            .iter()
            .copied()
            .filter(|a| self.power_actions.get(a).is_none_or(|a| a.done_at <= now))
            .collect();
        self.pending_actions.retain(|a| !due.contains(a));
        for aid in due {
            let Some(action) = self.power_actions.get_mut(&aid) else {
                continue;
            };
            action.completed_at = Some(now_rfc3339());
            let (did, target) = (action.droplet_id, power_target(action.kind));
            if let Some(d) = self.droplets.get_mut(&did) {
                d.forced_status = Some(target.to_string());
                d.pending_action = None;
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
                self.power_counts.entry((id, kind)).or_default()
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

/// `POST /v2/droplets/{id}/actions` for `power_off` / `power_on`: 201 with the
/// action `in-progress`; it completes (and the droplet turns `off` / `active`)
/// after the action delay. Refused with 422 like DigitalOcean while another
/// power action runs or a delete is under way, and when already in effect.
pub(super) fn post_action(state: &mut State, id: Option<u64>, body: &str) -> Decision {
    let kind = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v.get("type").and_then(Value::as_str).map(str::to_string));
    let kind: &'static str = match kind.as_deref() {
        Some("power_off") => "power_off",
        Some("power_on") => "power_on",
        Some(other) => {
            let message = format!("fake: action type {other:?} is not supported");
            return Decision::error(422, "unprocessable_entity", &message);
        }
        None => return Decision::error(422, "unprocessable_entity", "type is required."),
    };
    let action_id = state.next_power_action_id;
    let done_at = Instant::now() + state.action_delay;
    let Some(d) = id.and_then(|id| state.droplets.get_mut(&id)) else {
        return Decision::not_found();
    };
    let refusal = if d.deleting_until.is_some() {
        Some(DROPLET_LOCKED_MESSAGE)
    } else if d.pending_action.is_some() {
        Some(PENDING_EVENT_MESSAGE)
    } else if d.status() == power_target(kind) {
        Some(if kind == "power_off" {
            "Droplet is already powered off."
        } else {
            "Droplet is already powered on."
        })
    } else {
        None
    };
    if let Some(message) = refusal {
        return Decision::error(422, "unprocessable_entity", message);
    }
    d.pending_action = Some(action_id);
    d.power_action_ids.push(action_id);
    let action = FakePowerAction {
        id: action_id,
        droplet_id: d.id,
        kind,
        region: d.region.clone(),
        started_at: now_rfc3339(),
        done_at,
        completed_at: None,
    };
    let answer = json!({"action": action.to_json()});
    state.next_power_action_id += 1;
    state.power_actions.insert(action_id, action);
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
    /// How long a power action stays `in-progress` (the droplet keeps its old
    /// status meanwhile) and how long droplets deleted by tag keep being
    /// listed. Default zero: done by the next request. Applies to requests
    /// from then on.
    pub fn set_action_delay(&self, delay: Duration) {
        self.shared.lock().action_delay = delay;
    }

    /// The next `times` power action POSTs (any droplet) answer with `fault`
    /// and, for 422/500/429, change nothing.
    pub fn fail_next_droplet_actions(&self, fault: Fault, times: usize) {
        self.inject_matching(fault, times, Some("POST"), "/v2/droplets/");
    }

    /// The next `times` power action POSTs answer 422 [`DROPLET_LOCKED_MESSAGE`].
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

    /// `power_off` / `power_on` (`kind`) requests for one droplet.
    pub fn power_requests(&self, droplet_id: u64, kind: &str) -> RequestCount {
        let state = self.shared.lock();
        let key = (droplet_id, kind.to_string());
        state.power_counts.get(&key).copied().unwrap_or_default()
    }

    /// `power_off` / `power_on` (`kind`) requests over all droplets.
    pub fn power_requests_total(&self, kind: &str) -> RequestCount {
        let state = self.shared.lock();
        let mut total = RequestCount::default();
        for ((_, k), c) in &state.power_counts {
            if k == kind {
                total.received += c.received;
                total.accepted += c.accepted;
            }
        }
        total
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
