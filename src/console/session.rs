//! Console sessions and CSRF tokens.
//!
//! Sessions live in memory: a restart logs every operator out, which is the
//! safe direction, and keeps session secrets out of the data file and its
//! backups. A session id is 256 bits from the OS random source; the table is
//! keyed by its SHA-256, so a lookup's timing says nothing about stored ids.
//! Each session has its own CSRF token (synchronizer pattern), compared in
//! constant time.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use warp::http::HeaderMap;

/// The session cookie.
pub const COOKIE: &str = "vpsd_session";
/// Before login: ties the login form's CSRF token to this browser.
pub const LOGIN_COOKIE: &str = "vpsd_login";

/// Failed logins one client address may make per minute before it gets 429.
pub const MAX_FAILURES: u32 = 5;

/// More live sessions than any shop has operators; past it the oldest goes.
const MAX_SESSIONS: usize = 10_000;

/// 32 bytes from the OS random source, hex. `None` only if the OS refuses,
/// in which case no session is created.
pub fn random_token() -> Option<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).ok()?;
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Constant-time equality of two tokens.
pub fn same_token(a: &str, b: &str) -> bool {
    let (a, b): ([u8; 32], [u8; 32]) = (Sha256::digest(a).into(), Sha256::digest(b).into());
    bool::from(a.ct_eq(&b))
}

/// A logged-in operator.
#[derive(Debug, Clone)]
pub struct Session {
    /// The name given at login; the actor is `admin:{name}`, or `admin`.
    pub operator: Option<String>,
    /// The token every form of this session carries.
    pub csrf: String,
    expires: Instant,
}

impl Session {
    pub fn actor_text(&self) -> String {
        crate::domain::Actor::Admin(self.operator.clone()).render()
    }
}

pub struct Sessions {
    ttl: Duration,
    table: Mutex<HashMap<[u8; 32], Session>>,
}

fn key(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

impl Sessions {
    pub fn new(ttl: Duration) -> Sessions {
        Sessions {
            ttl,
            table: Mutex::new(HashMap::new()),
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A new session; returns its id (the cookie value).
    pub fn create(&self, operator: Option<String>) -> Option<(String, Session)> {
        let id = random_token()?;
        let session = Session {
            operator,
            csrf: random_token()?,
            expires: Instant::now() + self.ttl,
        };
        let mut table = self.table.lock().ok()?;
        let now = Instant::now();
        table.retain(|_, s| s.expires > now);
        if table.len() >= MAX_SESSIONS {
            if let Some(oldest) = table.iter().min_by_key(|(_, s)| s.expires).map(|(k, _)| *k) {
                table.remove(&oldest);
            }
        }
        table.insert(key(&id), session.clone());
        Some((id, session))
    }

    /// The live session a request's cookie names, if any.
    pub fn find(&self, headers: &HeaderMap) -> Option<Session> {
        let id = cookie(headers, COOKIE)?;
        let mut table = self.table.lock().ok()?;
        let k = key(&id);
        match table.get(&k) {
            Some(s) if s.expires > Instant::now() => Some(s.clone()),
            Some(_) => {
                table.remove(&k);
                None
            }
            None => None,
        }
    }

    /// Ends the session a request's cookie names.
    pub fn end(&self, headers: &HeaderMap) {
        if let (Some(id), Ok(mut table)) = (cookie(headers, COOKIE), self.table.lock()) {
            table.remove(&key(&id));
        }
    }
}

/// The value of cookie `name` in the request, if sent.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(warp::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
        .filter(|v| !v.is_empty() && v.len() <= 128)
}

/// `Set-Cookie` text: `HttpOnly; SameSite=Strict; Path=/admin`, `Secure` when
/// the console is served over https. `max_age` 0 deletes the cookie.
pub fn set_cookie(name: &str, value: &str, max_age: Duration, secure: bool) -> String {
    let mut text = format!(
        "{name}={value}; Max-Age={}; Path=/admin; HttpOnly; SameSite=Strict",
        max_age.as_secs()
    );
    if secure {
        text.push_str("; Secure");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_and_differ() {
        let a = random_token().unwrap();
        let b = random_token().unwrap();
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert!(same_token(&a, &a.clone()));
        assert!(!same_token(&a, &b));
    }

    #[test]
    fn a_session_ends_at_its_ttl_and_at_logout() {
        let sessions = Sessions::new(Duration::from_millis(50));
        let (id, session) = sessions.create(Some("alice".into())).unwrap();
        assert_eq!(session.actor_text(), "admin:alice");
        let mut headers = HeaderMap::new();
        let cookie = format!("{COOKIE}={id}");
        headers.insert(warp::http::header::COOKIE, cookie.parse().unwrap());
        assert!(sessions.find(&headers).is_some());
        std::thread::sleep(Duration::from_millis(80));
        assert!(sessions.find(&headers).is_none(), "expired");

        let sessions = Sessions::new(Duration::from_secs(60));
        let (id, _) = sessions.create(None).unwrap();
        let mut headers = HeaderMap::new();
        let cookie = format!("{COOKIE}={id}");
        headers.insert(warp::http::header::COOKIE, cookie.parse().unwrap());
        assert_eq!(sessions.find(&headers).unwrap().actor_text(), "admin");
        sessions.end(&headers);
        assert!(sessions.find(&headers).is_none(), "logged out");
    }

    #[test]
    fn cookies_are_read_by_name() {
        let mut headers = HeaderMap::new();
        headers.insert(
            warp::http::header::COOKIE,
            "a=1; vpsd_session=abc; b=2".parse().unwrap(),
        );
        assert_eq!(cookie(&headers, COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie(&headers, "c"), None);
    }
}
