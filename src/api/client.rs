//! Where a request comes from, and the per-address failure limit that the
//! console's login and the internal API's key check share (SPEC §12).
//!
//! The address is the connection's peer, which `server` records on every
//! request. Behind a reverse proxy every peer is the proxy, so with
//! `server.trust_forwarded_for` the first `X-Forwarded-For` hop is used
//! instead; without it the header is ignored, since any client could name
//! any address in it and so escape its own limit.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use warp::http::HeaderMap;

/// The client's address as the limits and the access log see it. `None`
/// only where no socket is involved (a request built in-process).
pub fn client_address(
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
    trust_forwarded_for: bool,
) -> Option<IpAddr> {
    if trust_forwarded_for {
        let first_hop = headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .and_then(|hop| hop.trim().parse::<IpAddr>().ok());
        if first_hop.is_some() {
            return first_hop;
        }
    }
    peer.map(|p| p.ip())
}

/// Addresses tracked at once. Past it, addresses not yet seen are not
/// counted (those already counted stay limited): the table cannot be grown
/// without bound by a client that owns many addresses.
const MAX_TRACKED: usize = 100_000;

/// Failures per client address in fixed windows: after `max` failures in
/// one window, every attempt from that address is refused until the window
/// is over, even a correct one, so guessing cannot go on in between.
pub struct FailureLimiter {
    max: u32,
    window: Duration,
    windows: Mutex<HashMap<Option<IpAddr>, (Instant, u32)>>,
}

impl FailureLimiter {
    pub fn new(max: u32, window: Duration) -> FailureLimiter {
        FailureLimiter {
            max,
            window,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(seconds to wait)` while `client` is locked out.
    pub fn check(&self, client: Option<IpAddr>) -> Result<(), u64> {
        let windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        match windows.get(&client) {
            Some((start, n)) if *n >= self.max && start.elapsed() < self.window => {
                let left = self.window.saturating_sub(start.elapsed());
                Err(left.as_secs().max(1))
            }
            _ => Ok(()),
        }
    }

    pub fn failed(&self, client: Option<IpAddr>) {
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        if windows.len() >= MAX_TRACKED {
            let window = self.window;
            windows.retain(|_, (start, _)| start.elapsed() < window);
            if windows.len() >= MAX_TRACKED && !windows.contains_key(&client) {
                return;
            }
        }
        let entry = windows.entry(client).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= self.window {
            *entry = (Instant::now(), 0);
        }
        entry.1 = entry.1.saturating_add(1);
    }

    /// A success forgets the address's failures.
    pub fn succeeded(&self, client: Option<IpAddr>) {
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        windows.remove(&client);
    }
}

/// `client` for a log field: the address, or `-` when there is none.
pub fn display(client: Option<IpAddr>) -> String {
    client.map_or_else(|| "-".to_string(), |ip| ip.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> Option<IpAddr> {
        text.parse().ok()
    }

    #[test]
    fn the_limit_locks_one_address_for_the_rest_of_its_window() {
        let limiter = FailureLimiter::new(5, Duration::from_secs(60));
        for _ in 0..5 {
            assert!(limiter.check(ip("10.0.0.1")).is_ok());
            limiter.failed(ip("10.0.0.1"));
        }
        let wait = limiter.check(ip("10.0.0.1")).unwrap_err();
        assert!((1..=60).contains(&wait));
        assert!(limiter.check(ip("10.0.0.2")).is_ok());
        limiter.succeeded(ip("10.0.0.1"));
        assert!(limiter.check(ip("10.0.0.1")).is_ok());
    }

    #[test]
    fn a_window_that_ends_starts_the_count_again() {
        let limiter = FailureLimiter::new(1, Duration::from_millis(30));
        limiter.failed(ip("10.0.0.1"));
        assert!(limiter.check(ip("10.0.0.1")).is_err());
        std::thread::sleep(Duration::from_millis(40));
        assert!(limiter.check(ip("10.0.0.1")).is_ok());
    }

    #[test]
    fn forwarded_for_counts_only_when_trusted() {
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "203.0.113.9, 10.0.0.1".parse().unwrap());
        assert_eq!(client_address(Some(peer), &headers, false), ip("127.0.0.1"));
        assert_eq!(
            client_address(Some(peer), &headers, true),
            ip("203.0.113.9")
        );
        headers.insert("x-forwarded-for", "not an address".parse().unwrap());
        assert_eq!(client_address(Some(peer), &headers, true), ip("127.0.0.1"));
    }
}
