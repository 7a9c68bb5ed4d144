//! Limits that hold under abuse (SPEC §12): bounded metric labels, the
//! envelope for requests the HTTP layer cannot parse, HEAD wherever GET, a
//! bounded `details.fields` and stored response, and connection timeouts and
//! the connection cap. Slow clients are raw sockets with small configured
//! timeouts; every wait polls for its condition with a deadline.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{spawn_app, spawn_app_with, stored_bytes, Auth, TestApp};

/// How long a test waits for something the daemon should do within a few
/// hundred milliseconds; only reached when the limit does not hold.
const PATIENCE: Duration = Duration::from_secs(10);

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(PATIENCE))
        .expect("read timeout");
    stream
}

/// Reads until the server closes the connection (or `PATIENCE` passes);
/// returns what arrived and whether the server closed it.
fn read_until_closed(stream: &mut TcpStream) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return (out, true),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return (out, true),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return (out, false)
            }
            Err(e) => panic!("read failed: {e}"),
        }
    }
}

/// Sends `request` on a fresh connection and reads the answer until the
/// server closes (requests here say `Connection: close` or are refused).
fn raw_exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = connect(addr);
    stream.write_all(request).expect("send");
    let (bytes, closed) = read_until_closed(&mut stream);
    assert!(closed, "the server kept the connection open");
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Reads exactly one response (head plus `Content-Length` body) off a
/// keep-alive connection.
fn read_one_response(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = find(&out, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&out[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if out.len() >= end + 4 + length {
                return String::from_utf8_lossy(&out).into_owned();
            }
        }
        let n = stream.read(&mut buf).expect("read a response");
        assert!(
            n > 0,
            "closed before a full response: {:?}",
            String::from_utf8_lossy(&out)
        );
        out.extend_from_slice(&buf[..n]);
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn status_of(response: &str) -> u16 {
    response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn body_of(response: &str) -> Value {
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or(Value::Null)
}

fn metrics(app: &TestApp) -> String {
    let r = app.get("/metrics", Auth::Admin);
    assert_eq!(r.status, 200, "{}", r.text);
    r.text
}

/// Every `name="value"` of one label in the exposition.
fn label_values(text: &str, label: &str) -> Vec<String> {
    let key = format!("{label}=\"");
    let mut values = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let mut rest = line;
        while let Some(at) = rest.find(&key) {
            rest = &rest[at + key.len()..];
            if let Some(end) = rest.find('"') {
                values.push(rest[..end].to_string());
                rest = &rest[end..];
            }
        }
    }
    values.sort();
    values.dedup();
    values
}

#[test]
fn made_up_methods_and_paths_add_no_metric_labels() {
    let app = spawn_app();
    let long = "X".repeat(20_000);
    for method in ["FOOBAR", "PROPFIND", long.as_str()] {
        for path in ["/api/v1/health", "/made/up/path-FOOBAR"] {
            let request =
                format!("{method} {path} HTTP/1.1\r\nHost: vpsd\r\nConnection: close\r\n\r\n");
            let response = raw_exchange(app.addr, request.as_bytes());
            let status = status_of(&response);
            assert!(
                status == 404 || status == 405,
                "{method:.20} {path}: {response:.300}"
            );
            assert!(
                body_of(&response)["error"]["code"].is_string(),
                "{response:.300}"
            );
        }
    }
    let text = metrics(&app);
    let methods: Vec<String> = label_values(&text, "method")
        .into_iter()
        .map(|m| m.chars().take(40).collect())
        .collect();
    let known = [
        "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "OTHER",
    ];
    assert!(
        methods.iter().all(|m| known.contains(&m.as_str())),
        "{methods:?}"
    );
    assert!(methods.contains(&"OTHER".to_string()), "{methods:?}");
    let patterns: Vec<&str> = vpsd::edge::routes::ROUTES
        .iter()
        .map(|r| r.pattern)
        .collect();
    let routes = label_values(&text, "route");
    for route in &routes {
        assert!(
            route == "unmatched" || patterns.contains(&route.as_str()),
            "route label {route:?} is not a pattern of the route table"
        );
    }
    assert!(routes.contains(&"unmatched".to_string()), "{routes:?}");
    assert!(!text.contains("FOOBAR") && !text.contains("PROPFIND"));
}

#[test]
fn a_request_the_http_layer_cannot_parse_gets_the_envelope() {
    let app = spawn_app();
    let cases: [&[u8]; 3] = [
        b"GET /api/v1/health HTTP/1.1\r\nHost: vpsd\r\nBad Header: x\r\n\r\n",
        b"GET /api/v1/health HTTP/1.1\r\nHost: vpsd\r\nX-Ctl: a\x01b\r\n\r\n",
        b"GET /api/v1/health HTTP/1.1\r\nHost: vpsd\r\n: no-name\r\n\r\n",
    ];
    for request in cases {
        let response = raw_exchange(app.addr, request);
        assert_eq!(status_of(&response), 400, "{response}");
        assert!(
            response
                .to_ascii_lowercase()
                .contains("content-type: application/json"),
            "{response}"
        );
        assert_eq!(
            body_of(&response)["error"]["code"],
            "BAD_REQUEST",
            "{response}"
        );
    }
    // The server is still serving.
    assert_eq!(app.get("/api/v1/health", Auth::None).status, 200);
}

#[test]
fn head_is_answered_wherever_get_is() {
    let app = spawn_app();
    app.create_order("alice");
    let cases = [
        ("/api/v1/health", Auth::None),
        ("/api/v1/openapi.json", Auth::None),
        ("/api/v1/orders", Auth::User("alice")),
        ("/api/v1/internal/orders", Auth::Admin),
        ("/metrics", Auth::Admin),
    ];
    for (path, auth) in cases {
        let get = app.get(path, auth);
        let head = app.request("HEAD", path, auth, &[], None);
        assert_eq!(head.status, get.status, "HEAD {path}: {}", head.text);
        assert!(head.text.is_empty(), "HEAD {path} carried a body");
        assert_eq!(
            head.header("content-type"),
            get.header("content-type"),
            "{path}"
        );
    }
    // A HEAD that fails is refused like the GET (auth, then the envelope's status).
    let head = app.request("HEAD", "/api/v1/orders", Auth::None, &[], None);
    assert_eq!(head.status, 401);
    // Where GET is not allowed, HEAD is not either, and Allow names both.
    let head = app.request("HEAD", "/api/v1/internal/backups", Auth::Admin, &[], None);
    assert_eq!(head.status, 405);
    let put = app.request("PUT", "/api/v1/health", Auth::None, &[], None);
    assert_eq!(put.status, 405);
    assert_eq!(put.header("allow"), Some("GET, HEAD"));
}

/// A body of many unknown keys, just under the 64 KiB body limit.
fn many_unknown_keys() -> Vec<u8> {
    let mut map = serde_json::Map::new();
    for i in 0..5000 {
        map.insert(format!("k{i:06}"), json!(0));
    }
    map.insert("planId".into(), json!("vps-basic"));
    let bytes = serde_json::to_vec(&Value::Object(map)).unwrap();
    assert!(bytes.len() < 65536, "{}", bytes.len());
    bytes
}

#[test]
fn unknown_keys_cannot_grow_responses_or_the_data_file() {
    let app = spawn_app();
    let body = many_unknown_keys();
    let post = |key: &str| {
        app.request(
            "POST",
            "/api/v1/orders",
            Auth::User("mallory"),
            &[("Idempotency-Key", key)],
            Some(("application/json", &body)),
        )
    };
    let first = post("flood-0");
    assert_eq!(first.status, 400, "{}", first.text);
    assert_eq!(first.code(), "BAD_REQUEST");
    let fields = first.body["error"]["details"]["fields"].as_array().unwrap();
    assert!(
        !fields.is_empty() && fields.len() <= 20,
        "{} fields",
        fields.len()
    );
    assert!(first.text.len() < 16 * 1024, "{} bytes", first.text.len());
    // Still replayed, byte for byte.
    let again = post("flood-0");
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.text, first.text);
    let stored = app
        .store
        .idempotency("user:mallory", "flood-0")
        .unwrap()
        .expect("the refusal is stored");
    let stored_size = serde_json::to_vec(&stored).unwrap().len();
    assert!(stored_size <= 16 * 1024, "stored {stored_size} bytes");

    // The redb file, or the PostgreSQL database.
    let before = stored_bytes(&app);
    for i in 1..=40 {
        let r = post(&format!("flood-{i}"));
        assert_eq!(r.status, 400);
    }
    let grown = stored_bytes(&app).saturating_sub(before);
    // Unbounded, 40 of these stored about 6 MiB.
    assert!(grown < 2 << 20, "the stored data grew {grown} bytes");
}

/// Waits for the server to close `stream`; returns when it did, measured
/// from `since`.
fn closed_after(stream: &mut TcpStream, since: Instant) -> Duration {
    let (_, closed) = read_until_closed(stream);
    assert!(closed, "the connection was still open after {PATIENCE:?}");
    since.elapsed()
}

#[test]
fn a_half_sent_header_is_cut_after_the_header_timeout() {
    let app = spawn_app_with(|c| {
        c.server.header_timeout_ms = 300;
        c.server.idle_timeout_ms = 60_000;
    });
    let started = Instant::now();
    let mut half = connect(app.addr);
    half.write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: vpsd\r\nX-Slow: ")
        .unwrap();
    let mut silent = connect(app.addr);
    let waited = closed_after(&mut half, started);
    assert!(
        waited >= Duration::from_millis(300),
        "closed after {waited:?}"
    );
    // A connection that never sends a byte is held to the same limit.
    closed_after(&mut silent, started);
    assert_eq!(app.get("/api/v1/health", Auth::None).status, 200);
}

#[test]
fn a_half_sent_body_is_cut_after_the_body_timeout() {
    let app = spawn_app_with(|c| {
        c.server.body_timeout_ms = 300;
    });
    let token = app.token("alice");
    let mut stream = connect(app.addr);
    let head = format!(
        "POST /api/v1/orders HTTP/1.1\r\nHost: vpsd\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"planId\":"
    );
    let started = Instant::now();
    stream.write_all(head.as_bytes()).unwrap();
    let (bytes, closed) = read_until_closed(&mut stream);
    assert!(closed, "the connection was still open after {PATIENCE:?}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    let response = String::from_utf8_lossy(&bytes);
    assert_eq!(status_of(&response), 408, "{response}");
    assert_eq!(body_of(&response)["error"]["code"], "REQUEST_TIMEOUT");
    // Nothing was created.
    let list = app.get("/api/v1/orders", Auth::User("alice"));
    assert_eq!(list.body["meta"]["total"], 0, "{}", list.text);
}

/// SPEC §12 "The console is held to §12's limits too": stalled login forms
/// are answered 408 and closed within the body timeout, so as many of them
/// as there are connection slots cannot keep the API from answering.
#[test]
fn stalled_console_logins_are_cut_at_the_body_timeout_and_cannot_hold_the_server() {
    let app = spawn_app_with(|c| {
        c.server.body_timeout_ms = 300;
        c.server.max_connections = 4;
    });
    let head = "POST /admin/login HTTP/1.1\r\nHost: vpsd\r\n\
                Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ncsrf=";
    let started = Instant::now();
    let stalled: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut s = connect(app.addr);
            s.write_all(head.as_bytes()).unwrap();
            s
        })
        .collect();
    // Every slot is held; the API is answered once the stalled forms are cut.
    let health = raw_exchange(
        app.addr,
        b"GET /api/v1/health HTTP/1.1\r\nHost: vpsd\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status_of(&health), 200, "{health}");
    for mut s in stalled {
        let (bytes, closed) = read_until_closed(&mut s);
        assert!(
            closed,
            "a stalled console form still held its connection after {PATIENCE:?}"
        );
        let response = String::from_utf8_lossy(&bytes);
        assert_eq!(status_of(&response), 408, "{response:.300}");
    }
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[test]
fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let app = spawn_app_with(|c| {
        c.server.header_timeout_ms = 300;
        c.server.idle_timeout_ms = 2_000;
    });
    let mut stream = connect(app.addr);
    let request = b"GET /api/v1/health HTTP/1.1\r\nHost: vpsd\r\n\r\n";
    stream.write_all(request).unwrap();
    assert_eq!(status_of(&read_one_response(&mut stream)), 200);
    // Idle longer than the header timeout: the idle timeout governs, so the
    // connection is still usable.
    std::thread::sleep(Duration::from_millis(800));
    stream.write_all(request).unwrap();
    assert_eq!(status_of(&read_one_response(&mut stream)), 200);
    let idle_since = Instant::now();
    let waited = closed_after(&mut stream, idle_since);
    assert!(
        waited >= Duration::from_millis(1_500),
        "closed after {waited:?}"
    );
}

#[test]
fn clients_over_the_connection_cap_wait_for_a_slot_and_are_then_served() {
    let app = spawn_app_with(|c| {
        c.server.max_connections = 3;
        c.server.header_timeout_ms = 500;
    });
    let started = Instant::now();
    let stalled: Vec<_> = (0..3)
        .map(|_| {
            let mut s = connect(app.addr);
            s.write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: vpsd\r\n")
                .unwrap();
            std::thread::spawn(move || closed_after(&mut s, started))
        })
        .collect();
    // The fourth client is not refused: its request waits for a slot.
    let fourth = std::thread::spawn(move || {
        let response = raw_exchange(
            app.addr,
            b"GET /api/v1/health HTTP/1.1\r\nHost: vpsd\r\nConnection: close\r\n\r\n",
        );
        (response, started.elapsed(), app)
    });
    let closes: Vec<Duration> = stalled.into_iter().map(|t| t.join().unwrap()).collect();
    let (response, answered, _app) = fourth.join().unwrap();
    assert_eq!(status_of(&response), 200, "{response}");
    // The first slot frees when a stalled client is cut, a header timeout
    // after its accept (after `started`). The stalled threads' own clocks
    // read their close late by however long each waited to run, so on a
    // busy machine they are no bound for the fourth's answer.
    assert!(
        answered >= Duration::from_millis(500),
        "served after {answered:?}, before any stalled client could be cut ({closes:?})"
    );
}

/// SPEC §12: a stored idempotent response is at most 16 KiB, successes too.
/// Ten long SSH keys make a 55 KB order; its stored reply leaves them out
/// (they are never rendered) while the order keeps them for its droplet.
#[test]
fn an_order_with_long_ssh_keys_stores_a_small_reply() {
    let app = spawn_app();
    let comment = "x".repeat(5500);
    let key = format!(
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICrc/SKQ2lxYjKAY5aGy0IyKZvZJJarimIXYH8ti5R7p {comment}"
    );
    let body = serde_json::json!({
        "planId": "vps-basic", "imageId": "ubuntu-22-04", "duration": "MONTHLY",
        "sshPublicKeys": vec![key; 10],
    })
    .to_string();
    let post = || {
        app.request(
            "POST",
            "/api/v1/orders",
            Auth::User("alice"),
            &[("Idempotency-Key", "big-keys")],
            Some(("application/json", body.as_bytes())),
        )
    };
    let first = post();
    assert_eq!(first.status, 201, "{}", first.text);
    let again = post();
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.text, first.text);
    let stored = app
        .store
        .idempotency("user:alice", "big-keys")
        .unwrap()
        .expect("stored");
    let stored_size = serde_json::to_vec(&stored).unwrap().len();
    assert!(stored_size <= 16 * 1024, "stored {stored_size} bytes");
    let id = uuid::Uuid::parse_str(&first.id()).unwrap();
    let order = app.store.get_order(id).unwrap().expect("order");
    assert_eq!(
        order.order.droplet.ssh_public_keys.len(),
        10,
        "the droplet still gets them"
    );
}

/// SPEC §12 "Nothing grows with repetition": a keyed renewal's stored reply
/// holds the order without its renewals (a renewal's answer never shows
/// them), so the hundredth keyed renewal stores no more than the first
/// (before: each stored reply held every renewal so far).
#[test]
fn keyed_renewals_store_replies_that_do_not_grow_with_the_renewals() {
    let app = spawn_app();
    let id = app.create_order("u-renewals").id();
    assert_eq!(app.pay(&id).status, 200);
    app.wait_for_status(&id, &["ACTIVE"], PATIENCE);
    let renew = |key: &str| {
        app.request(
            "POST",
            &format!("/api/v1/internal/orders/{id}/renewals"),
            Auth::Admin,
            &[("Idempotency-Key", key)],
            Some(("application/json", br#"{"amount": 1000}"#.as_slice())),
        )
    };
    let stored_size = |key: &str| {
        let stored = app
            .store
            .idempotency("internal", key)
            .unwrap()
            .expect("stored");
        serde_json::to_vec(&stored).unwrap().len()
    };
    let first = renew("renewal-1");
    assert_eq!(first.status, 200, "{}", first.text);
    for n in 2..=100 {
        assert_eq!(renew(&format!("renewal-{n}")).status, 200);
    }
    let last = renew("renewal-100");
    assert_eq!(last.header("idempotent-replayed"), Some("true"));
    // Equal but for the width of numbers (times, expiry) in the encoding.
    let (hundredth, first) = (stored_size("renewal-100"), stored_size("renewal-1"));
    assert!(
        hundredth <= first + 64,
        "the 100th stored reply is {hundredth} bytes, the first {first}"
    );
    let detail = app.admin_order(&id);
    assert_eq!(
        detail.data()["renewalsTotal"],
        100,
        "the order keeps them all"
    );
}
