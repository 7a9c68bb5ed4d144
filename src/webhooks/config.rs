//! `[webhooks]` settings (SPEC §6, §10). Checked at start-up, so a typo in an
//! event name or a malformed secret stops vpsd instead of dropping events.

use serde::{Deserialize, Serialize};

use super::sign::WebhookSecret;
use crate::domain::webhook::{EventFilter, Outbox, Route};
use crate::url_rules::{mask_url, require_https_unless_loopback};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// None configured: no events are recorded.
    pub endpoints: Vec<EndpointConfig>,
    /// A 2xx must arrive within this, or the attempt failed.
    pub timeout_ms: u64,
    /// Waits between attempts; one failure more than it has entries makes a
    /// delivery `failed` (Standard Webhooks' schedule by default).
    pub retry_schedule_seconds: Vec<u64>,
    /// How long delivered rows are kept for the admin list.
    pub retention_hours: u64,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        WebhooksConfig {
            endpoints: Vec::new(),
            timeout_ms: 10_000,
            retry_schedule_seconds: vec![5, 300, 1800, 7200, 18_000, 36_000, 36_000],
            retention_hours: 168,
        }
    }
}

/// One receiver. Its URL names it in the data file; the secret never leaves
/// the process except as signatures.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    pub url: String,
    /// `whsec_` + base64 (Standard Webhooks).
    pub secret: String,
    #[serde(default = "every_event")]
    pub events: Vec<String>,
}

fn every_event() -> Vec<String> {
    vec!["*".into()]
}

/// Debug output (logs, panics) shows no secret, in the URL or beside it.
impl std::fmt::Debug for EndpointConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointConfig")
            .field("url", &mask_url(&self.url))
            .field("secret", &"***")
            .field("events", &self.events)
            .finish()
    }
}

/// At most a week between two attempts, and a timeout under ten minutes:
/// larger values are typos, not intentions.
const MAX_WAIT_SECONDS: u64 = 7 * 86_400;
const MAX_TIMEOUT_MS: u64 = 600_000;

impl WebhooksConfig {
    /// The first problem found, as (key, problem).
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        for (i, e) in self.endpoints.iter().enumerate() {
            check_url(&e.url).map_err(|p| ("webhooks.endpoints.url", p))?;
            if self.endpoints[..i].iter().any(|other| other.url == e.url) {
                return Err((
                    "webhooks.endpoints.url",
                    format!("{} is configured twice", mask_url(&e.url)),
                ));
            }
            WebhookSecret::parse(&e.secret).map_err(|p| {
                (
                    "webhooks.endpoints.secret",
                    format!("endpoint {}: {p}", mask_url(&e.url)),
                )
            })?;
            EventFilter::parse(&e.events).map_err(|p| ("webhooks.endpoints.events", p))?;
        }
        if self.timeout_ms == 0 || self.timeout_ms > MAX_TIMEOUT_MS {
            return Err((
                "webhooks.timeout_ms",
                format!("must be between 1 and {MAX_TIMEOUT_MS}"),
            ));
        }
        if self
            .retry_schedule_seconds
            .iter()
            .any(|s| *s > MAX_WAIT_SECONDS)
        {
            return Err((
                "webhooks.retry_schedule_seconds",
                "a wait must be at most 7 days".into(),
            ));
        }
        Ok(())
    }

    /// What the writer needs: routes and the schedule (no secrets).
    pub fn outbox(&self) -> Outbox {
        Outbox {
            routes: self
                .endpoints
                .iter()
                .filter_map(|e| {
                    Some(Route {
                        url: e.url.clone(),
                        events: EventFilter::parse(&e.events).ok()?,
                    })
                })
                .collect(),
            retry_schedule_ms: self
                .retry_schedule_seconds
                .iter()
                .map(|s| i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX))
                .collect(),
        }
    }

    /// The same settings with every secret replaced by `***` (`vpsd config`).
    pub fn masked(&self) -> WebhooksConfig {
        let mut shown = self.clone();
        for e in &mut shown.endpoints {
            e.secret = "***".into();
            e.url = mask_url(&e.url);
        }
        shown
    }
}

/// An http(s) URL with a host; https unless the host is loopback, since the
/// URL (its query string often holds the receiver's token) and the signed
/// order travel in it.
fn check_url(url: &str) -> Result<(), String> {
    let uri: ureq::http::Uri = url
        .parse()
        .map_err(|_| format!("{:?} is not a URL", mask_url(url)))?;
    match uri.scheme_str() {
        Some("http") | Some("https") if uri.host().is_some_and(|h| !h.is_empty()) => {
            require_https_unless_loopback(url)
        }
        _ => Err(format!(
            "{} must be an http:// or https:// URL with a host",
            mask_url(url)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(url: &str, secret: &str, events: &[&str]) -> EndpointConfig {
        EndpointConfig {
            url: url.into(),
            secret: secret.into(),
            events: events.iter().map(|e| e.to_string()).collect(),
        }
    }

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    #[test]
    fn bad_endpoints_are_named() {
        let mut c = WebhooksConfig {
            endpoints: vec![endpoint("ftp://x", SECRET, &["*"])],
            ..Default::default()
        };
        assert_eq!(c.validate().unwrap_err().0, "webhooks.endpoints.url");
        c.endpoints = vec![endpoint("http://127.0.0.1:1/h", "secret", &["*"])];
        assert_eq!(c.validate().unwrap_err().0, "webhooks.endpoints.secret");
        c.endpoints = vec![endpoint("http://127.0.0.1:1/h", SECRET, &["order.nope"])];
        assert_eq!(c.validate().unwrap_err().0, "webhooks.endpoints.events");
        c.endpoints = vec![
            endpoint("http://127.0.0.1:1/h", SECRET, &["*"]),
            endpoint("http://127.0.0.1:1/h", SECRET, &["*"]),
        ];
        assert!(c.validate().unwrap_err().1.contains("twice"));
        c.endpoints.pop();
        assert!(c.validate().is_ok());
        c.endpoints = vec![endpoint(
            "http://hooks.example/h?token=t0ps3cret",
            SECRET,
            &["*"],
        )];
        let (key, problem) = c.validate().unwrap_err();
        assert_eq!(key, "webhooks.endpoints.url");
        assert!(
            problem.contains("https") && !problem.contains("t0ps3cret"),
            "{problem}"
        );
        for fine in [
            "https://hooks.example/h",
            "http://localhost:9/h",
            "http://[::1]:9/h",
        ] {
            c.endpoints = vec![endpoint(fine, SECRET, &["*"])];
            assert!(c.validate().is_ok(), "{fine}");
        }
    }

    #[test]
    fn masking_hides_secrets_and_url_credentials() {
        let c = WebhooksConfig {
            endpoints: vec![endpoint(
                "https://bob:pw@hooks.example/x?token=t0ps3cret",
                SECRET,
                &["*"],
            )],
            ..Default::default()
        };
        let shown = c.masked();
        assert_eq!(shown.endpoints[0].secret, "***");
        assert_eq!(shown.endpoints[0].url, "https://***@hooks.example/x?***");
        let debug = format!("{:?}", c);
        assert!(
            !debug.contains("MfKQ") && !debug.contains("t0ps3cret"),
            "{debug}"
        );
    }
}
