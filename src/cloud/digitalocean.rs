//! DigitalOcean API v2 over ureq (blocking).
//!
//! One `ureq::Agent` with a global timeout, because ureq 3 has no timeouts by
//! default and a hung call would stall a whole sweep. Status codes are read rather
//! than turned into errors so that 4xx/5xx bodies and rate-limit headers are seen.
//!
//! The client keeps itself under DigitalOcean's limits: every answer's
//! `RateLimit-Limit` / `RateLimit-Remaining` / `RateLimit-Reset` is remembered, and
//! once the remaining budget drops to the reserve ([`RATE_LIMIT_RESERVE`], at most a
//! tenth of the limit) calls are refused locally (without being sent) until the
//! reset time. A 429 likewise blocks calls for its `Retry-After`.
//!
//! Redirects are never followed: the token must go to the configured API only.

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{
    check_delete_tag, ActionInfo, ActionStatus, Cloud, CloudError, Created, DropletSpec,
    PowerAction, RECENT_ACTIONS,
};
use crate::domain::droplet::{Droplet, DropletStatus};
use crate::domain::time::parse_rfc3339;

/// Calls kept in hand below DigitalOcean's hourly budget, so a burst from several
/// sweeps cannot run the token into a hard 429 that also hits other users of it.
/// A small budget lowers it (see [`reserve_for`]).
pub const RATE_LIMIT_RESERVE: u64 = 5;

/// The reserve for a budget of `limit` calls per window: at most a tenth of it.
/// A reserve as large as the budget would leave one call per window (the one
/// after each reset) and provisioning would never get past its tag look-up.
pub fn reserve_for(limit: Option<u64>) -> u64 {
    match limit {
        Some(limit) => RATE_LIMIT_RESERVE.min(limit / 10),
        None => RATE_LIMIT_RESERVE,
    }
}
/// DigitalOcean's maximum page size for lists.
const PER_PAGE: usize = super::LIST_PAGE_SIZE;
/// Upper bound on how long a single rate-limit wait is reported as; the caller
/// re-asks after it anyway, and an hour-long reset should not park a task for an hour.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);
/// Used when a 429 carries neither `Retry-After` nor a usable `RateLimit-Reset`.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(60);
/// A tag listing of 200 full droplet objects is ~1 MB; anything far bigger is not
/// a DigitalOcean answer.
const MAX_BODY_BYTES: u64 = 32 * 1024 * 1024;
/// Guards the pagination loop against a server that always says "next".
const MAX_PAGES: u32 = 10_000;

pub struct DigitalOcean {
    agent: ureq::Agent,
    /// Base including `/v2`, without a trailing slash.
    base: String,
    token: String,
    /// Every call's global timeout, also what shutdown waits for a call under way.
    timeout: Duration,
    gate: Mutex<Gate>,
    calls_sent: AtomicU64,
    rate_limited: AtomicU64,
}

/// The HTTP methods vpsd uses on DigitalOcean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Get,
    Post,
    Delete,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Delete => "DELETE",
        }
    }
}

/// What the last answers said about the rate-limit budget.
#[derive(Debug, Default)]
struct Gate {
    /// `RateLimit-Limit`: the budget per window, which sizes the reserve.
    limit: Option<u64>,
    remaining: Option<u64>,
    /// `RateLimit-Reset`, as wall-clock time because DigitalOcean sends epoch seconds.
    reset_at: Option<SystemTime>,
    /// Set by a 429's `Retry-After`.
    blocked_until: Option<Instant>,
}

impl fmt::Debug for DigitalOcean {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DigitalOcean")
            .field("base", &self.base)
            .field("token", &"[redacted]")
            .field("calls_sent", &self.calls_sent())
            .field("rate_limited", &self.rate_limited_count())
            .finish()
    }
}

impl DigitalOcean {
    /// `api_url` is the host part (`https://api.digitalocean.com`), without `/v2`.
    pub fn new(api_url: &str, token: &str, timeout: Duration) -> DigitalOcean {
        // A 3xx is an answer (an unexpected one), never a new destination
        // for the token.
        let agent = crate::http_client::agent(
            crate::http_client::config(timeout)
                .user_agent(concat!("vpsd/", env!("CARGO_PKG_VERSION")))
                .build(),
        );
        DigitalOcean {
            agent,
            base: format!("{}/v2", api_url.trim_end_matches('/')),
            token: token.to_string(),
            timeout,
            gate: Mutex::new(Gate::default()),
            calls_sent: AtomicU64::new(0),
            rate_limited: AtomicU64::new(0),
        }
    }

    /// Requests actually sent (local refusals are not counted).
    pub fn calls_sent(&self) -> u64 {
        self.calls_sent.load(Ordering::Relaxed)
    }

    /// 429 answers received from DigitalOcean.
    pub fn rate_limited_count(&self) -> u64 {
        self.rate_limited.load(Ordering::Relaxed)
    }

    /// The create action of a droplet found by tag (its id is only in the create
    /// answer, which a crash may have lost), via `GET /v2/droplets/{id}/actions`.
    /// `Ok(None)` when the droplet lists no create action.
    pub fn find_create_action(
        &self,
        droplet_id: u64,
    ) -> Result<Option<(u64, ActionStatus)>, CloudError> {
        let path = format!("/droplets/{droplet_id}/actions");
        let mut page = 1u32;
        loop {
            let query = [
                ("per_page", PER_PAGE.to_string()),
                ("page", page.to_string()),
            ];
            let text = self.call(Method::Get, &path, &query, None)?;
            let parsed: ActionListResponse =
                serde_json::from_str(&text).map_err(|e| unparseable("droplet actions", e))?;
            let actions = parsed.actions.unwrap_or_default();
            if let Some(a) = actions.iter().find(|a| a.kind.as_deref() == Some("create")) {
                return Ok(Some((a.id, action_status(&a.status)?)));
            }
            let has_next = parsed
                .links
                .and_then(|l| l.pages)
                .and_then(|p| p.next)
                .is_some();
            if actions.is_empty() || !has_next || page >= MAX_PAGES {
                return Ok(None);
            }
            page += 1;
        }
    }

    /// Transport errors are formatted by ureq; scrub the token in case any layer
    /// ever echoes request headers.
    fn redact(&self, text: &str) -> String {
        if self.token.is_empty() {
            text.to_string()
        } else {
            text.replace(&self.token, "[redacted]")
        }
    }

    fn gate(&self) -> std::sync::MutexGuard<'_, Gate> {
        // The gate holds plain numbers; a panic elsewhere cannot leave it inconsistent.
        self.gate.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn check_gate(&self) -> Result<(), CloudError> {
        let mut gate = self.gate();
        if let Some(until) = gate.blocked_until {
            let now = Instant::now();
            if until > now {
                return Err(CloudError::RateLimited {
                    retry_after: (until - now).min(MAX_RETRY_AFTER),
                });
            }
            gate.blocked_until = None;
        }
        if let (Some(remaining), Some(reset_at)) = (gate.remaining, gate.reset_at) {
            if remaining <= reserve_for(gate.limit) {
                match reset_at.duration_since(SystemTime::now()) {
                    Ok(wait) if !wait.is_zero() => {
                        return Err(CloudError::RateLimited {
                            retry_after: wait.min(MAX_RETRY_AFTER),
                        })
                    }
                    // Past the reset: the budget has refilled at least partly;
                    // the next answer tells us by how much.
                    _ => gate.remaining = None,
                }
            }
        }
        Ok(())
    }

    fn note_limits(&self, headers: &ureq::http::HeaderMap) {
        let limit = header_u64(headers, "ratelimit-limit");
        let remaining = header_u64(headers, "ratelimit-remaining");
        let reset = header_u64(headers, "ratelimit-reset");
        if remaining.is_none() && reset.is_none() && limit.is_none() {
            return;
        }
        let mut gate = self.gate();
        if limit.is_some() {
            gate.limit = limit;
        }
        if remaining.is_some() {
            gate.remaining = remaining;
        }
        if let Some(secs) = reset {
            gate.reset_at = Some(UNIX_EPOCH + Duration::from_secs(secs));
        }
    }

    /// Sends one request and returns the 2xx body; everything else becomes a
    /// `CloudError`. Refused locally, unsent, while the rate-limit gate is shut.
    fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<String, CloudError> {
        self.check_gate()?;
        self.calls_sent.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let mut response = self.send(method, path, query, body).map_err(|e| {
            let error = self.transport_error(method, path, false, e);
            let elapsed_ms = started.elapsed().as_millis() as u64;
            tracing::debug!(method = method.as_str(), path, elapsed_ms, error = %error, "digitalocean call failed");
            error
        })?;
        let status = response.status().as_u16();
        self.note_limits(response.headers());
        let retry_after = retry_after_from(response.headers());
        let text = response
            .body_mut()
            .with_config()
            .limit(MAX_BODY_BYTES)
            .read_to_string();
        tracing::debug!(
            method = method.as_str(),
            path,
            status,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "digitalocean call"
        );
        let text = text.map_err(|e| self.transport_error(method, path, true, e))?;
        self.classify(method, path, status, retry_after, text)
    }

    /// Builds and sends the request: the token goes only to the configured base.
    fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
        let url = format!("{}{}", self.base, path);
        match method {
            Method::Get => self.prepare(self.agent.get(&url), query).call(),
            Method::Delete => self.prepare(self.agent.delete(&url), query).call(),
            Method::Post => self
                .prepare(self.agent.post(&url), query)
                .send_json(body.unwrap_or(&Value::Null)),
        }
    }

    fn prepare<B>(
        &self,
        request: ureq::RequestBuilder<B>,
        query: &[(&str, String)],
    ) -> ureq::RequestBuilder<B> {
        request
            .header("Authorization", &format!("Bearer {}", self.token))
            .header("Accept", "application/json")
            .query_pairs(query.iter().map(|(k, v)| (*k, v.as_str())))
    }

    /// A request that got no (complete) answer: worth retrying later. ureq
    /// formats the text, so it is scrubbed of the token.
    fn transport_error(
        &self,
        method: Method,
        path: &str,
        reading: bool,
        e: ureq::Error,
    ) -> CloudError {
        let method = method.as_str();
        let (timed_out, failed) = if reading {
            (" reading the answer", "reading the answer: ")
        } else {
            ("", "")
        };
        CloudError::Unavailable(match e {
            ureq::Error::Timeout(_) => format!("{method} {path}: timed out{timed_out}"),
            other => self.redact(&format!("{method} {path}: {failed}{other}")),
        })
    }

    /// Maps an answer's status to the body (2xx) or the `CloudError` the
    /// provisioner acts on; a 429 also shuts the gate for its wait.
    fn classify(
        &self,
        method: Method,
        path: &str,
        status: u16,
        retry_after: Duration,
        text: String,
    ) -> Result<String, CloudError> {
        match status {
            200..=299 => Ok(text),
            401 => Err(CloudError::Unauthorized(self.error_message(&text, status))),
            404 => Err(CloudError::NotFound),
            429 => {
                self.rate_limited.fetch_add(1, Ordering::Relaxed);
                let wait = retry_after.min(MAX_RETRY_AFTER);
                self.gate().blocked_until = Some(Instant::now() + wait);
                Err(CloudError::RateLimited { retry_after: wait })
            }
            400..=499 => Err(CloudError::Rejected {
                status,
                message: self.error_message(&text, status),
            }),
            _ => Err(CloudError::Unavailable(format!(
                "{} {path}: HTTP {status}: {}",
                method.as_str(),
                self.error_message(&text, status)
            ))),
        }
    }

    /// DigitalOcean's `message`, else a short prefix of whatever came back (an HTML
    /// page from a proxy, say).
    fn error_message(&self, body: &str, status: u16) -> String {
        #[derive(Deserialize)]
        struct ErrorBody {
            message: Option<String>,
        }
        if let Ok(ErrorBody { message: Some(m) }) = serde_json::from_str::<ErrorBody>(body) {
            if !m.is_empty() {
                return self.redact(&m);
            }
        }
        let trimmed = body.trim();
        if trimmed.is_empty() {
            return format!("HTTP {status}");
        }
        let short: String = trimmed.chars().take(200).collect();
        self.redact(&short)
    }
}

fn header_u64(headers: &ureq::http::HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// `Retry-After` (seconds), else `RateLimit-Reset` (epoch seconds) from now, else
/// a minute.
fn retry_after_from(headers: &ureq::http::HeaderMap) -> Duration {
    if let Some(secs) = header_u64(headers, "retry-after") {
        return Duration::from_secs(secs);
    }
    if let Some(reset) = header_u64(headers, "ratelimit-reset") {
        if let Ok(wait) =
            (UNIX_EPOCH + Duration::from_secs(reset)).duration_since(SystemTime::now())
        {
            return wait;
        }
    }
    DEFAULT_RETRY_AFTER
}

fn unparseable(what: &str, e: serde_json::Error) -> CloudError {
    CloudError::Unavailable(format!("unparseable {what} answer: {e}"))
}

#[derive(Deserialize)]
struct DropletJson {
    id: u64,
    #[serde(default)]
    name: Option<String>,
    status: String,
    #[serde(default)]
    tags: Option<Vec<String>>,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    networks: Option<NetworksJson>,
}

#[derive(Deserialize, Default)]
struct NetworksJson {
    #[serde(default)]
    v4: Option<Vec<NetworkJson>>,
    #[serde(default)]
    v6: Option<Vec<NetworkJson>>,
}

#[derive(Deserialize)]
struct NetworkJson {
    #[serde(default)]
    ip_address: Option<String>,
    #[serde(rename = "type", default)]
    kind: Option<String>,
}

#[derive(Deserialize)]
struct ActionLink {
    id: u64,
    #[serde(default)]
    rel: Option<String>,
}

#[derive(Deserialize, Default)]
struct CreateLinks {
    #[serde(default)]
    actions: Option<Vec<ActionLink>>,
}

#[derive(Deserialize)]
struct CreateResponse {
    droplet: DropletJson,
    #[serde(default)]
    links: Option<CreateLinks>,
}

#[derive(Deserialize)]
struct GetResponse {
    droplet: DropletJson,
}

#[derive(Deserialize, Default)]
struct Pages {
    #[serde(default)]
    next: Option<String>,
}

#[derive(Deserialize, Default)]
struct PageLinks {
    #[serde(default)]
    pages: Option<Pages>,
}

#[derive(Deserialize, Default)]
struct Meta {
    #[serde(default)]
    total: Option<u64>,
}

#[derive(Deserialize)]
struct ListResponse {
    #[serde(default)]
    droplets: Option<Vec<DropletJson>>,
    #[serde(default)]
    links: Option<PageLinks>,
    #[serde(default)]
    meta: Option<Meta>,
}

#[derive(Deserialize)]
struct ActionJson {
    status: String,
}

#[derive(Deserialize)]
struct ActionResponse {
    action: ActionJson,
}

/// An action object (`actions/models/action.yml`), as listed or as answered
/// to a `POST /v2/droplets/{id}/actions`.
#[derive(Deserialize)]
struct ListedAction {
    id: u64,
    status: String,
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    started_at: Option<String>,
}

impl ListedAction {
    fn into_info(self) -> Result<ActionInfo, CloudError> {
        Ok(ActionInfo {
            id: self.id,
            status: action_status(&self.status)?,
            kind: self.kind.unwrap_or_default(),
            started_at: self.started_at.as_deref().and_then(parse_rfc3339),
        })
    }
}

/// `droplets/responses/droplet_action.yml`: `{"action": {..}}` with status 201.
#[derive(Deserialize)]
struct PostedActionResponse {
    action: ListedAction,
}

#[derive(Deserialize)]
struct ActionListResponse {
    #[serde(default)]
    actions: Option<Vec<ListedAction>>,
    #[serde(default)]
    links: Option<PageLinks>,
}

fn action_status(status: &str) -> Result<ActionStatus, CloudError> {
    match status {
        "in-progress" => Ok(ActionStatus::InProgress),
        "completed" => Ok(ActionStatus::Completed),
        "errored" => Ok(ActionStatus::Errored),
        other => Err(CloudError::Unavailable(format!(
            "unknown action status {other:?}"
        ))),
    }
}

fn first_ip(nets: &Option<Vec<NetworkJson>>, kind: &str) -> Option<String> {
    nets.as_deref()?
        .iter()
        .find(|n| {
            n.kind.as_deref() == Some(kind)
                && n.ip_address.as_deref().is_some_and(|ip| !ip.is_empty())
        })
        .and_then(|n| n.ip_address.clone())
}

impl DropletJson {
    fn into_droplet(self) -> Droplet {
        let networks = self.networks.unwrap_or_default();
        let status = DropletStatus::from_provider(&self.status);
        if status == DropletStatus::Unknown {
            tracing::warn!(droplet_id = self.id, status = %self.status, "DigitalOcean reported a droplet status vpsd does not know; waiting on it like `new`");
        }
        Droplet {
            id: self.id,
            name: self.name.unwrap_or_default(),
            status,
            tags: self.tags.unwrap_or_default(),
            created_at: self.created_at.as_deref().and_then(parse_rfc3339),
            ipv4_public: first_ip(&networks.v4, "public"),
            ipv4_private: first_ip(&networks.v4, "private"),
            ipv6_public: first_ip(&networks.v6, "public"),
        }
    }
}

/// The request body per `droplet_single_create.yml`: optional fields that do not
/// allow `null` (`user_data`) are left out rather than sent as null.
fn create_body(spec: &DropletSpec) -> Value {
    let mut body = Map::new();
    body.insert("name".into(), json!(spec.name));
    body.insert("region".into(), json!(spec.region));
    body.insert("size".into(), json!(spec.size));
    body.insert("image".into(), json!(spec.image));
    body.insert("tags".into(), json!(spec.tags));
    body.insert("monitoring".into(), json!(spec.monitoring));
    body.insert("ipv6".into(), json!(spec.ipv6));
    if let Some(user_data) = &spec.user_data {
        body.insert("user_data".into(), json!(user_data));
    }
    Value::Object(body)
}

/// The request body per `droplet_actions.yml#/droplet_action`: power actions
/// take nothing but their `type`.
fn power_body(action: PowerAction) -> Value {
    json!({ "type": action.as_str() })
}

/// The most recent actions first, at most [`RECENT_ACTIONS`]. DigitalOcean
/// already lists newest first; sorting by id (allocated increasingly) keeps
/// the promise whatever order a page comes in.
fn recent_first(actions: Vec<ListedAction>) -> Result<Vec<ActionInfo>, CloudError> {
    let mut out = actions
        .into_iter()
        .map(ListedAction::into_info)
        .collect::<Result<Vec<_>, _>>()?;
    out.sort_by_key(|a| std::cmp::Reverse(a.id));
    out.truncate(RECENT_ACTIONS);
    Ok(out)
}

impl Cloud for DigitalOcean {
    fn find_create_action(
        &self,
        droplet_id: u64,
    ) -> Result<Option<(u64, ActionStatus)>, CloudError> {
        DigitalOcean::find_create_action(self, droplet_id)
    }

    fn call_timeout(&self) -> Duration {
        self.timeout
    }

    fn calls_sent(&self) -> u64 {
        DigitalOcean::calls_sent(self)
    }

    fn rate_limited_count(&self) -> u64 {
        DigitalOcean::rate_limited_count(self)
    }

    fn name(&self) -> &'static str {
        "digitalocean"
    }

    fn create_droplet(&self, spec: &DropletSpec) -> Result<Created, CloudError> {
        let body = create_body(spec);
        let text = self.call(Method::Post, "/droplets", &[], Some(&body))?;
        let parsed: CreateResponse =
            serde_json::from_str(&text).map_err(|e| unparseable("create", e))?;
        let actions = parsed.links.unwrap_or_default().actions.unwrap_or_default();
        let action_id = actions
            .iter()
            .find(|a| a.rel.as_deref() == Some("create"))
            .or_else(|| actions.first())
            .map(|a| a.id);
        let droplet = parsed.droplet.into_droplet();
        tracing::debug!(droplet_id = droplet.id, action_id = ?action_id, "droplet create accepted");
        Ok(Created {
            droplet,
            create_action_id: action_id,
        })
    }

    fn get_droplet(&self, id: u64) -> Result<Droplet, CloudError> {
        let text = self.call(Method::Get, &format!("/droplets/{id}"), &[], None)?;
        let parsed: GetResponse =
            serde_json::from_str(&text).map_err(|e| unparseable("droplet", e))?;
        Ok(parsed.droplet.into_droplet())
    }

    fn list_by_tag(&self, tag: &str) -> Result<Vec<Droplet>, CloudError> {
        let mut out = Vec::new();
        // Droplets created while paging shift later pages; never report one twice.
        let mut seen = HashSet::new();
        let mut page = 1u32;
        loop {
            let query = [
                ("tag_name", tag.to_string()),
                ("per_page", PER_PAGE.to_string()),
                ("page", page.to_string()),
            ];
            let text = self.call(Method::Get, "/droplets", &query, None)?;
            let parsed: ListResponse =
                serde_json::from_str(&text).map_err(|e| unparseable("droplet list", e))?;
            let droplets = parsed.droplets.unwrap_or_default();
            let count = droplets.len();
            for d in droplets {
                if seen.insert(d.id) {
                    out.push(d.into_droplet());
                }
            }
            // `links.pages.next` is the documented signal; `meta.total` covers a
            // server that omits links. The next URL itself is not followed so the
            // token is only ever sent to the configured host.
            let has_next = parsed
                .links
                .and_then(|l| l.pages)
                .and_then(|p| p.next)
                .is_some();
            let total = parsed.meta.and_then(|m| m.total);
            let more_by_total = total.is_some_and(|t| (out.len() as u64) < t);
            if count == 0 || !(has_next || more_by_total) {
                break;
            }
            page += 1;
            if page > MAX_PAGES {
                return Err(CloudError::Unavailable(format!(
                    "listing tag {tag}: more than {MAX_PAGES} pages"
                )));
            }
        }
        Ok(out)
    }

    fn delete_droplet(&self, id: u64) -> Result<(), CloudError> {
        match self.call(Method::Delete, &format!("/droplets/{id}"), &[], None) {
            Ok(_) | Err(CloudError::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn get_action(&self, id: u64) -> Result<ActionStatus, CloudError> {
        let text = self.call(Method::Get, &format!("/actions/{id}"), &[], None)?;
        let parsed: ActionResponse =
            serde_json::from_str(&text).map_err(|e| unparseable("action", e))?;
        action_status(&parsed.action.status)
    }

    fn power(&self, droplet_id: u64, action: PowerAction) -> Result<u64, CloudError> {
        let path = format!("/droplets/{droplet_id}/actions");
        let text = self.call(Method::Post, &path, &[], Some(&power_body(action)))?;
        let parsed: PostedActionResponse =
            serde_json::from_str(&text).map_err(|e| unparseable("droplet action", e))?;
        let action_id = parsed.action.id;
        tracing::debug!(
            droplet_id,
            action = action.as_str(),
            action_id,
            "droplet action accepted"
        );
        Ok(action_id)
    }

    fn droplet_actions(&self, droplet_id: u64) -> Result<Vec<ActionInfo>, CloudError> {
        let path = format!("/droplets/{droplet_id}/actions");
        let query = [
            ("per_page", RECENT_ACTIONS.to_string()),
            ("page", "1".to_string()),
        ];
        let text = self.call(Method::Get, &path, &query, None)?;
        let parsed: ActionListResponse =
            serde_json::from_str(&text).map_err(|e| unparseable("droplet actions", e))?;
        recent_first(parsed.actions.unwrap_or_default())
    }

    fn delete_by_tag(&self, tag: &str) -> Result<(), CloudError> {
        check_delete_tag(tag)?;
        // 204 whether or not any droplet carried the tag; a 404 (no such tag)
        // means the same thing for the caller: nothing carries it.
        let query = [("tag_name", tag.to_string())];
        match self.call(Method::Delete, "/droplets", &query, None) {
            Ok(_) | Err(CloudError::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_body_omits_absent_user_data() {
        let spec = DropletSpec {
            name: "web-1".into(),
            region: "sgp1".into(),
            size: "s-1vcpu-1gb".into(),
            image: "ubuntu-24-04-x64".into(),
            tags: vec!["vpsd".into()],
            monitoring: true,
            ipv6: false,
            user_data: None,
        };
        let body = create_body(&spec);
        assert!(body.get("user_data").is_none());
        assert_eq!(body["tags"], json!(["vpsd"]));
    }

    #[test]
    fn power_body_is_only_the_type() {
        assert_eq!(power_body(PowerAction::Off), json!({"type": "power_off"}));
        assert_eq!(power_body(PowerAction::On), json!({"type": "power_on"}));
    }

    #[test]
    fn posted_action_answer_parses_per_schema() {
        // The shape of `droplets/responses/droplet_action.yml`.
        let parsed: PostedActionResponse = serde_json::from_value(json!({"action": {
            "id": 36804751, "status": "in-progress", "type": "power_off",
            "started_at": "2020-11-14T16:31:07Z", "completed_at": null,
            "resource_id": 3164450, "resource_type": "droplet", "region_slug": "nyc3"
        }}))
        .unwrap();
        let info = parsed.action.into_info().unwrap();
        assert_eq!(info.id, 36804751);
        assert_eq!(info.kind, "power_off");
        assert_eq!(info.status, ActionStatus::InProgress);
        assert_eq!(info.started_at, parse_rfc3339("2020-11-14T16:31:07Z"));
    }

    #[test]
    fn action_list_comes_back_newest_first_and_bounded() {
        let mut listed: Vec<Value> = (1..=30u64)
            .map(|id| json!({"id": id, "status": "completed", "type": "power_on"}))
            .collect();
        listed.push(json!({"id": 31, "status": "errored", "type": "power_off",
            "started_at": null}));
        let parsed: ActionListResponse = serde_json::from_value(json!({
            "actions": listed, "links": {}, "meta": {"total": 31}
        }))
        .unwrap();
        let out = recent_first(parsed.actions.unwrap()).unwrap();
        assert_eq!(out.len(), RECENT_ACTIONS);
        assert_eq!(out[0].id, 31);
        assert_eq!(out[0].status, ActionStatus::Errored);
        assert_eq!(out[0].started_at, None);
        assert!(out.windows(2).all(|w| w[0].id > w[1].id));
    }

    #[test]
    fn empty_tag_is_refused_before_any_request() {
        // Port 1 is closed: reaching the network would be `Unavailable`.
        let d = DigitalOcean::new("http://127.0.0.1:1", "t", Duration::from_secs(1));
        assert!(matches!(
            d.delete_by_tag(" "),
            Err(CloudError::Rejected { status: 400, .. })
        ));
        assert_eq!(d.calls_sent(), 0);
    }

    #[test]
    fn statuses_do_may_add_later_are_unknown() {
        let d: DropletJson =
            serde_json::from_value(json!({"id": 2, "status": "rebuilding"})).unwrap();
        let d = d.into_droplet();
        assert_eq!(d.status, DropletStatus::Unknown);
        assert_eq!(d.created_at, None);
    }

    #[test]
    fn debug_redacts_token() {
        let d = DigitalOcean::new(
            "http://127.0.0.1:1/",
            "dop_v1_secret",
            Duration::from_secs(1),
        );
        let text = format!("{d:?}");
        assert!(!text.contains("dop_v1_secret"));
        assert!(text.contains("http://127.0.0.1:1/v2"));
    }

    #[test]
    fn parses_networks() {
        let d: DropletJson = serde_json::from_value(json!({
            "id": 1, "name": "a", "status": "active", "tags": null,
            "created_at": "2024-01-15T10:00:00Z",
            "networks": {"v4": [
                {"ip_address": "10.1.2.3", "type": "private", "gateway": "nil"},
                {"ip_address": "192.0.2.1", "type": "public"}
            ], "v6": [{"ip_address": "2001:db8::1", "netmask": 64, "type": "public"}]}
        }))
        .unwrap();
        let d = d.into_droplet();
        assert_eq!(d.status, DropletStatus::Active);
        assert_eq!(d.created_at, Some(1_705_312_800_000));
        assert_eq!(d.ipv4_public.as_deref(), Some("192.0.2.1"));
        assert_eq!(d.ipv4_private.as_deref(), Some("10.1.2.3"));
        assert_eq!(d.ipv6_public.as_deref(), Some("2001:db8::1"));
        assert!(d.tags.is_empty());
    }
}
