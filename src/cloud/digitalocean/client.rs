//! The HTTP plumbing under every DigitalOcean call: one `ureq::Agent`, the
//! rate-limit gate, and the mapping from an answer's status to `CloudError`.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::Value;

use crate::cloud::CloudError;

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
pub(super) const PER_PAGE: usize = crate::cloud::LIST_PAGE_SIZE;
/// Upper bound on how long a single rate-limit wait is reported as; the caller
/// re-asks after it anyway, and an hour-long reset should not park a task for an hour.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);
/// Used when a 429 carries neither `Retry-After` nor a usable `RateLimit-Reset`.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(60);
/// A tag listing of 200 full droplet objects is ~1 MB; anything far bigger is not
/// a DigitalOcean answer.
const MAX_BODY_BYTES: u64 = 32 * 1024 * 1024;
/// Guards the pagination loop against a server that always says "next".
pub(super) const MAX_PAGES: u32 = 10_000;

pub struct DigitalOcean {
    agent: ureq::Agent,
    /// Base including `/v2`, without a trailing slash.
    base: String,
    token: String,
    /// Every call's global timeout, also what shutdown waits for a call under way.
    pub(super) timeout: Duration,
    gate: Mutex<Gate>,
    calls_sent: AtomicU64,
    rate_limited: AtomicU64,
}

/// The HTTP methods vpsd uses on DigitalOcean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Method {
    Get,
    Post,
    Delete,
}

impl Method {
    pub(super) fn as_str(self) -> &'static str {
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

    /// `RateLimit-Remaining` as last answered.
    pub fn rate_limit_remaining(&self) -> Option<u64> {
        self.gate().remaining
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
    pub(super) fn call(
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
