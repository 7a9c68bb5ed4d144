//! Tokens whose signature and claims were already checked, so a client that
//! sends the same token on every request pays for the signature once (an
//! HS256 or RS256 check was the largest single cost of a GET by id).
//!
//! An entry is keyed by the token's exact text, so only the very bytes that
//! passed [`super::auth::JwtVerifier`] ever match. The time claims are checked
//! again at every use, with jsonwebtoken's own rules and no leeway: a cached
//! token stops matching the second it expires, and the caller then verifies it
//! in full, which answers 401 exactly as before. Only successes are kept;
//! bad tokens are verified (and refused) every time. Memory is bounded by
//! [`MAX_ENTRIES`] tokens of at most [`MAX_TOKEN_LEN`] bytes. Nothing here
//! logs.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

/// At most this many tokens are remembered (about 2.5 MB at the worst).
pub const MAX_ENTRIES: usize = 1024;
/// Longer tokens are verified every time rather than stored.
pub const MAX_TOKEN_LEN: usize = 2048;

/// The claims of a verified token that decide whether it is still valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validity {
    pub exp: u64,
    pub nbf: Option<u64>,
}

impl Validity {
    /// jsonwebtoken's rules with leeway 0: expired once `exp < now`, not yet
    /// valid while `nbf > now`.
    fn holds_at(&self, now: u64) -> bool {
        self.exp >= now && self.nbf.is_none_or(|nbf| nbf <= now)
    }
}

struct Entry {
    sub: String,
    validity: Validity,
}

#[derive(Default)]
pub struct TokenCache {
    entries: Mutex<HashMap<Box<str>, Entry>>,
}

impl TokenCache {
    /// The `sub` of `token` if it was verified before and is valid at `now`.
    pub fn get(&self, token: &str, now: u64) -> Option<String> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = entries.get(token)?;
        entry.validity.holds_at(now).then(|| entry.sub.clone())
    }

    /// Remembers a token that has just passed full verification.
    pub fn remember(&self, token: &str, sub: &str, validity: Validity, now: u64) {
        if token.len() > MAX_TOKEN_LEN || !validity.holds_at(now) {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(token) {
            entries.retain(|_, e| e.validity.holds_at(now));
            if entries.len() >= MAX_ENTRIES {
                // Every entry is live: start over rather than track recency.
                // The cost is one full verification per token afterwards.
                entries.clear();
            }
        }
        let entry = Entry {
            sub: sub.to_string(),
            validity,
        };
        entries.insert(token.into(), entry);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// A JWT NumericDate as jsonwebtoken reads it: a non-negative integer, or a
/// finite non-negative float, rounded. `None` for anything else.
pub fn numeric_date(value: &serde_json::Value) -> Option<u64> {
    let n = value.as_number()?;
    n.as_u64().or_else(|| {
        n.as_f64()
            .filter(|f| f.is_finite() && *f >= 0.0 && *f < u64::MAX as f64)
            .map(|f| f.round() as u64)
    })
}

/// Whole seconds since the Unix epoch, as jsonwebtoken counts them; `None`
/// on a clock before 1970 (then nothing is cached or served from the cache).
pub fn now_secs() -> Option<u64> {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn until(exp: u64) -> Validity {
        Validity { exp, nbf: None }
    }

    #[test]
    fn a_cached_token_expires_on_the_second() {
        let cache = TokenCache::default();
        cache.remember("t", "alice", until(100), 90);
        assert_eq!(cache.get("t", 99).as_deref(), Some("alice"));
        // jsonwebtoken still accepts exp == now; one second later it does not.
        assert_eq!(cache.get("t", 100).as_deref(), Some("alice"));
        assert_eq!(cache.get("t", 101), None);
        assert_eq!(cache.get("other", 99), None);
    }

    #[test]
    fn not_before_is_honoured_and_expired_tokens_are_not_stored() {
        let cache = TokenCache::default();
        let later = Validity {
            exp: 200,
            nbf: Some(150),
        };
        cache.remember("early", "bob", later, 150);
        assert_eq!(cache.get("early", 149), None);
        assert_eq!(cache.get("early", 150).as_deref(), Some("bob"));
        cache.remember("old", "bob", until(10), 11);
        assert_eq!(cache.len(), 1);
        cache.remember(&"x".repeat(MAX_TOKEN_LEN + 1), "bob", until(500), 1);
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn memory_stays_bounded() {
        let cache = TokenCache::default();
        for i in 0..(3 * MAX_ENTRIES) {
            cache.remember(&format!("token-{i}"), "u", until(1000), 1);
            assert!(cache.len() <= MAX_ENTRIES);
        }
        // Expired entries go first when the cache is full.
        let cache = TokenCache::default();
        for i in 0..MAX_ENTRIES {
            cache.remember(&format!("short-{i}"), "u", until(5), 1);
        }
        cache.remember("fresh", "u", until(1000), 10);
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.get("fresh", 10).as_deref(), Some("u"));
    }

    #[test]
    fn numeric_dates_as_jsonwebtoken_reads_them() {
        use serde_json::json;
        assert_eq!(numeric_date(&json!(1700000000)), Some(1_700_000_000));
        assert_eq!(numeric_date(&json!(1700000000.6)), Some(1_700_000_001));
        assert_eq!(numeric_date(&json!(-1)), None);
        assert_eq!(numeric_date(&json!("1700000000")), None);
        assert_eq!(numeric_date(&json!(null)), None);
    }
}
