//! The outgoing ureq agent: DigitalOcean and the catalog-service (webhook
//! deliveries have their own asynchronous client, `webhooks::client`).
//!
//! ureq resolves the host before it looks for a kept-alive connection, and
//! its default resolver, when a timeout is set (ours always is), spawns a
//! thread per lookup so the lookup can be abandoned. That was a thread created
//! and torn down per call, even to an IP address over a pooled connection:
//! for an http catalog two or three per order. Here a lookup's answer is reused for a short while, so a
//! busy host costs one lookup per [`REMEMBER`], not one per call.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ureq::config::{Config, ConfigBuilder};
use ureq::http::Uri;
use ureq::typestate::AgentScope;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;

/// How long a successful lookup is reused. Short, so a receiver that moves
/// (a DNS change, a failover) is followed within this; failed lookups are
/// never kept.
const REMEMBER: Duration = Duration::from_secs(30);

/// What every outgoing client needs: `timeout` bounds each whole call
/// (connect, send, receive); 4xx/5xx are answers to read, not transport
/// errors; and a redirect is never followed, so a request (a token, a signed
/// body) never travels to a host nobody configured. Callers add their own.
pub fn config(timeout: Duration) -> ConfigBuilder<AgentScope> {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .max_redirects(0)
}

/// An agent with `config`, ureq's own connector (TCP, TLS) and lookups
/// remembered by [`RememberingResolver`].
pub fn agent(config: Config) -> ureq::Agent {
    ureq::Agent::with_parts(
        config,
        ureq::unversioned::transport::DefaultConnector::default(),
        RememberingResolver::default(),
    )
}

/// The default resolver (thread and timeout included), with its answers
/// remembered per `host:port`.
#[derive(Debug, Default)]
pub struct RememberingResolver {
    lookup: DefaultResolver,
    known: Mutex<HashMap<String, (Instant, ResolvedSocketAddrs)>>,
}

impl Resolver for RememberingResolver {
    fn resolve(
        &self,
        uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let key = match (uri.scheme(), uri.authority()) {
            (Some(scheme), Some(authority)) => DefaultResolver::host_and_port(scheme, authority),
            _ => None,
        };
        // No host and port to name the answer by: let ureq's own resolver
        // refuse or resolve it.
        let Some(key) = key else {
            return self.lookup.resolve(uri, config, timeout);
        };
        if let Some(addrs) = self.remembered(&key) {
            return Ok(addrs);
        }
        let addrs = self.lookup.resolve(uri, config, timeout)?;
        if let Ok(mut known) = self.known.lock() {
            known.insert(key, (Instant::now(), addrs.clone()));
        }
        Ok(addrs)
    }
}

impl RememberingResolver {
    fn remembered(&self, key: &str) -> Option<ResolvedSocketAddrs> {
        let known = self.known.lock().ok()?;
        let (at, addrs) = known.get(key)?;
        (at.elapsed() < REMEMBER).then(|| addrs.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_reused_and_named_by_host_and_port() {
        let resolver = RememberingResolver::default();
        let config = Config::default();
        let uri: Uri = "http://127.0.0.1:9/hook".parse().unwrap();
        let first = resolver
            .resolve(&uri, &config, NextTimeout::default())
            .unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(first[0], "127.0.0.1:9".parse().unwrap());
        assert!(resolver.remembered("127.0.0.1:9").is_some());
        assert!(resolver.remembered("127.0.0.1:10").is_none());
        let again = resolver
            .resolve(&uri, &config, NextTimeout::default())
            .unwrap();
        assert_eq!(again[..], first[..]);
    }
}
