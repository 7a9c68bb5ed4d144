//! Per-address limits (SPEC §12 "Per-address means per address"): the
//! console's failed logins and wrong `X-API-Key`s are counted per client
//! address, so one address that guesses never locks out an operator at
//! another. Clients connect from 127.0.0.66 and 127.0.0.77 (any 127/8
//! source reaches a server on 127.0.0.1 under Linux), over raw sockets.

use std::io::{Read, Write};
use std::net::SocketAddr;

use crate::support::{connect_from, spawn_app_with, API_KEY};

const ATTACKER: &str = "127.0.0.66";
const OPERATOR: &str = "127.0.0.77";

/// One response, read until the server closes (requests say `Connection: close`).
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<String> {
        let prefix = format!("{}:", name.to_ascii_lowercase());
        self.head
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with(&prefix))
            .map(|l| l[prefix.len()..].trim().to_string())
    }

    fn error_code(&self) -> String {
        let json: serde_json::Value = serde_json::from_str(&self.body).unwrap_or_default();
        json["error"]["code"].as_str().unwrap_or("").to_string()
    }
}

/// Sends `method path` with `headers` and `body` from `source`.
fn send_from(
    source: &str,
    server: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: vpsd\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    let mut stream = connect_from(source, server);
    stream.write_all(request.as_bytes()).expect("send");
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).expect("read the answer");
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    Answer {
        status: head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        head: head.to_string(),
        body: body.to_string(),
    }
}

/// Opens the login form from `source` and submits `key`; the login form's
/// CSRF token is tied to its cookie, so each attempt fetches a fresh form.
fn login_from(source: &str, server: SocketAddr, key: &str) -> Answer {
    let form = send_from(source, server, "GET", "/admin/login", &[], "");
    assert_eq!(form.status, 200, "{}", form.head);
    let cookie = form
        .header("set-cookie")
        .and_then(|c| c.split(';').next().map(str::to_string))
        .expect("the login form sets its cookie");
    let token = cookie.split_once('=').map(|(_, v)| v.to_string()).unwrap();
    let body = serde_urlencoded::to_string([("csrf", token.as_str()), ("key", key)]).unwrap();
    send_from(
        source,
        server,
        "POST",
        "/admin/login",
        &[
            ("Cookie", &cookie),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        &body,
    )
}

#[test]
fn five_wrong_logins_lock_out_their_own_address_only() {
    let app = spawn_app_with(|_| {});
    for _ in 0..5 {
        let r = login_from(ATTACKER, app.addr, "not-the-key-at-all");
        assert_eq!(r.status, 401, "{}", r.head);
    }
    let locked = login_from(ATTACKER, app.addr, API_KEY);
    assert_eq!(locked.status, 429, "the guessing address is locked out");
    assert!(locked.header("retry-after").is_some(), "{}", locked.head);
    // The operator at another address logs in as usual.
    let r = login_from(OPERATOR, app.addr, API_KEY);
    assert_eq!(
        r.status, 303,
        "another address is not locked out: {}",
        r.head
    );
}

fn internal_health(source: &str, app_addr: SocketAddr, key: &str, forwarded: &str) -> Answer {
    let mut headers = vec![("X-API-Key", key)];
    if !forwarded.is_empty() {
        headers.push(("X-Forwarded-For", forwarded));
    }
    send_from(
        source,
        app_addr,
        "GET",
        "/api/v1/internal/orders",
        &headers,
        "",
    )
}

#[test]
fn twenty_wrong_api_keys_lock_their_address_for_the_minute_and_no_other() {
    let app = spawn_app_with(|_| {});
    for _ in 0..20 {
        let r = internal_health(ATTACKER, app.addr, "wrong-key-0123456789", "");
        assert_eq!(r.status, 401, "{}", r.head);
        assert_eq!(r.error_code(), "API_KEY_INVALID");
    }
    // Past the limit even the right key is refused from that address.
    let r = internal_health(ATTACKER, app.addr, API_KEY, "");
    assert_eq!(r.status, 429, "{} {}", r.head, r.body);
    assert_eq!(r.error_code(), "RATE_LIMIT_EXCEEDED");
    let wait: u64 = r
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!((1..=60).contains(&wait), "Retry-After {wait}");
    assert!(!r.body.contains("wrong-key"), "the key is not echoed");
    // Another address is served, and its own wrong key is a plain 401.
    assert_eq!(internal_health(OPERATOR, app.addr, API_KEY, "").status, 200);
    let r = internal_health(OPERATOR, app.addr, "wrong-key-0123456789", "");
    assert_eq!(r.status, 401);
    // Naming another address in X-Forwarded-For does not escape the limit
    // while the proxy header is not trusted.
    let r = internal_health(ATTACKER, app.addr, API_KEY, "198.51.100.7");
    assert_eq!(r.status, 429, "an untrusted X-Forwarded-For is ignored");
}

#[test]
fn behind_a_trusted_proxy_the_forwarded_address_is_the_client() {
    let app = spawn_app_with(|c| c.server.trust_forwarded_for = true);
    // Every request comes from the proxy's address; the clients differ.
    for _ in 0..20 {
        let r = internal_health(ATTACKER, app.addr, "wrong-key-0123456789", "198.51.100.1");
        assert_eq!(r.status, 401);
    }
    let r = internal_health(ATTACKER, app.addr, API_KEY, "198.51.100.1, 10.0.0.1");
    assert_eq!(r.status, 429, "the guessing client is locked out");
    let r = internal_health(ATTACKER, app.addr, API_KEY, "198.51.100.2");
    assert_eq!(r.status, 200, "another client behind the same proxy is not");
}
