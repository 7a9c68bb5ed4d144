//! Hostile input against the real binary (RS256, issuer and audience set):
//! every answer is the error envelope with the right code, nothing changes,
//! and no response or log line carries a stack trace, a source path,
//! `panicked`, a token or a configured secret.

mod support;

use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use support::process::Daemon;
use support::{base_config, fixture, hs256_token, now_secs, signed_token, API_KEY};
use vpsd::config::JwtAlgorithm;

const ISS: &str = "https://auth.webrana.test";
const AUD: &str = "order-service";
const DO_TOKEN: &str = "dop_v1_do-not-leak-this-token";
const HS_SECRET: &str = "configured-but-unused-hs-secret";

/// (name, headers, expected status and code).
type KeyCase = (&'static str, Vec<(String, String)>, (u16, &'static str));

struct Call {
    name: String,
    method: &'static str,
    path: String,
    headers: Vec<(String, String)>,
    body: Option<(String, Vec<u8>)>,
    expect: (u16, &'static str),
}

fn send(agent: &ureq::Agent, base: &str, c: &Call) -> (u16, String) {
    let mut b = ureq::http::Request::builder()
        .method(c.method)
        .uri(format!("{base}{}", c.path));
    for (k, v) in &c.headers {
        b = b.header(k.as_str(), v.as_str());
    }
    let result = match &c.body {
        Some((ct, bytes)) => {
            if !ct.is_empty() {
                b = b.header("Content-Type", ct.as_str());
            }
            agent.run(b.body(bytes.clone()).unwrap())
        }
        None => agent.run(b.body(()).unwrap()),
    };
    let mut r = result.unwrap_or_else(|e| panic!("{}: transport error {e}", c.name));
    let status = r.status().as_u16();
    (
        status,
        r.body_mut()
            .with_config()
            .limit(1 << 20)
            .read_to_string()
            .unwrap_or_default(),
    )
}

fn token(claims: Value) -> String {
    signed_token(Algorithm::RS256, &fixture("rs256-private.pem"), claims)
}

fn good_claims(sub: &str) -> Value {
    json!({"sub": sub, "exp": now_secs() + 600, "iss": ISS, "aud": AUD})
}

#[test]
fn hostile_requests_get_the_envelope_change_nothing_and_leak_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = base_config(dir.path());
    config.auth.jwt_algorithm = JwtAlgorithm::RS256;
    config.auth.jwt_public_key = Some(fixture("rs256-public.pem"));
    config.auth.jwt_secret = Some(HS_SECRET.into());
    config.auth.jwt_issuer = Some(ISS.into());
    config.auth.jwt_audience = Some(AUD.into());
    // A token means the DigitalOcean provider (a sandbox never runs with
    // one): a local fake, so the token really travels and must still leak nowhere.
    let fake_do = support::fake_do::FakeDo::start_with_token(DO_TOKEN);
    support::use_fake_do(&mut config, &fake_do);
    config.cloud.digitalocean.token = Some(DO_TOKEN.into());
    config.provisioning.poll_interval_ms = 600_000;
    let daemon = Daemon::start(&config, dir.path());
    let base = format!("http://{}", daemon.addr);
    // A fresh connection per call: a refused oversized body leaves its
    // connection unusable (the server answers before reading it and closes),
    // and a pooled client would send the next call into the closed socket.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(30)))
        .max_idle_connections_per_host(0)
        .build()
        .into();
    let alice = token(good_claims("alice"));
    let bob = token(good_claims("bob"));
    let auth = |t: &str| ("Authorization".to_string(), format!("Bearer {t}"));

    // Legitimate state to protect.
    let create = |t: &str, body: &str| Call {
        name: "legit create".into(),
        method: "POST",
        path: "/api/v1/orders".into(),
        headers: vec![auth(t)],
        body: Some(("application/json".into(), body.as_bytes().to_vec())),
        expect: (201, ""),
    };
    let valid = r#"{"planId":"vps-basic","imageId":"ubuntu-22-04","duration":"MONTHLY"}"#;
    let (status, text) = send(&agent, &base, &create(&alice, valid));
    assert_eq!(status, 201, "{text}");
    let victim: Value = serde_json::from_str(&text).unwrap();
    let victim_id = victim["data"]["id"].as_str().unwrap().to_string();
    let admin_view = |agent: &ureq::Agent| {
        send(
            agent,
            &base,
            &Call {
                name: "admin view".into(),
                method: "GET",
                path: format!("/api/v1/internal/orders/{victim_id}"),
                headers: vec![("X-API-Key".into(), API_KEY.into())],
                body: None,
                expect: (200, ""),
            },
        )
        .1
    };
    let before = admin_view(&agent);

    let exp = now_secs() + 600;
    let b64 = |s: &str| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    };
    let alg_none = format!(
        "{}.{}.",
        b64(r#"{"alg":"none","typ":"JWT"}"#),
        b64(&good_claims("alice").to_string())
    );
    let confused = hs256_token(&fixture("rs256-public.pem"), good_claims("alice"));
    let mut bad_sig = alice.clone();
    let last = bad_sig.pop().unwrap();
    bad_sig.push(if last == 'A' { 'B' } else { 'A' });
    let truncated = alice.rsplit_once('.').unwrap().0.to_string();
    let mut tokens: Vec<(&str, String)> = vec![
        ("alg none", alg_none),
        ("HS256 with the public key (key confusion)", confused),
        (
            "HS256 with the configured secret",
            hs256_token(HS_SECRET, good_claims("alice")),
        ),
        (
            "expired",
            token(json!({"sub": "alice", "exp": now_secs() - 30, "iss": ISS, "aud": AUD})),
        ),
        (
            "future nbf",
            token(
                json!({"sub": "alice", "exp": exp, "nbf": now_secs() + 600, "iss": ISS, "aud": AUD}),
            ),
        ),
        ("bad signature", bad_sig),
        ("garbage", "definitely-not-a-jwt".into()),
        ("truncated", truncated),
        (
            "missing sub",
            token(json!({"exp": exp, "iss": ISS, "aud": AUD})),
        ),
        (
            "empty sub",
            token(json!({"sub": "", "exp": exp, "iss": ISS, "aud": AUD})),
        ),
        (
            "wrong iss",
            token(json!({"sub": "alice", "exp": exp, "iss": "https://evil", "aud": AUD})),
        ),
        (
            "wrong aud",
            token(json!({"sub": "alice", "exp": exp, "iss": ISS, "aud": "other"})),
        ),
        (
            "no exp",
            token(json!({"sub": "alice", "iss": ISS, "aud": AUD})),
        ),
    ];
    let mut calls = Vec::new();
    for (name, t) in tokens.drain(..) {
        calls.push(Call {
            name: format!("jwt: {name}"),
            method: "GET",
            path: "/api/v1/orders".into(),
            headers: vec![auth(&t)],
            body: None,
            expect: (401, "UNAUTHORIZED"),
        });
    }
    for (name, value) in [
        ("Basic scheme", "Basic YWxpY2U6c2VjcmV0"),
        ("empty bearer", "Bearer "),
        ("no scheme", "abc"),
    ] {
        calls.push(Call {
            name: format!("authorization: {name}"),
            method: "POST",
            path: format!("/api/v1/orders/{victim_id}/cancel"),
            headers: vec![("Authorization".into(), value.into())],
            body: None,
            expect: (401, "UNAUTHORIZED"),
        });
    }
    let key_cases: Vec<KeyCase> = vec![
        ("missing", vec![], (401, "API_KEY_MISSING")),
        (
            "empty",
            vec![("X-API-Key".into(), String::new())],
            (401, "API_KEY_MISSING"),
        ),
        (
            "wrong",
            vec![("X-API-Key".into(), "guess".into())],
            (401, "API_KEY_INVALID"),
        ),
        (
            "prefix of the key",
            vec![("X-API-Key".into(), API_KEY[..4].into())],
            (401, "API_KEY_INVALID"),
        ),
        (
            "a JWT instead",
            vec![auth(&alice)],
            (401, "API_KEY_MISSING"),
        ),
    ];
    for (name, headers, expect) in key_cases {
        calls.push(Call {
            name: format!("api key: {name}"),
            method: "POST",
            path: format!("/api/v1/internal/orders/{victim_id}/payment-status"),
            headers,
            body: Some(("application/json".into(), br#"{"status":"PAID"}"#.to_vec())),
            expect,
        });
    }
    calls.push(Call {
        name: "another user's order: read".into(),
        method: "GET",
        path: format!("/api/v1/orders/{victim_id}"),
        headers: vec![auth(&bob)],
        body: None,
        expect: (403, "ORDER_ACCESS_DENIED"),
    });
    calls.push(Call {
        name: "another user's order: cancel".into(),
        method: "POST",
        path: format!("/api/v1/orders/{victim_id}/cancel"),
        headers: vec![auth(&bob)],
        body: None,
        expect: (403, "ORDER_ACCESS_DENIED"),
    });
    let json_post = |name: &str, body: Vec<u8>, expect: (u16, &'static str)| Call {
        name: name.into(),
        method: "POST",
        path: "/api/v1/orders".into(),
        headers: vec![("Authorization".into(), format!("Bearer {alice}"))],
        body: Some(("application/json".into(), body)),
        expect,
    };
    let long = "x".repeat(10_000);
    let bodies: Vec<(&str, Value, (u16, &'static str))> = vec![
        (
            "wrong types",
            json!({"planId": 7, "imageId": ["a"], "duration": true}),
            (400, "BAD_REQUEST"),
        ),
        (
            "unknown field",
            json!({"planId": "vps-basic", "imageId": "ubuntu-22-04", "duration": "MONTHLY", "price": 1}),
            (400, "BAD_REQUEST"),
        ),
        (
            "long planId",
            json!({"planId": long, "imageId": "ubuntu-22-04", "duration": "MONTHLY"}),
            (400, "BAD_REQUEST"),
        ),
        (
            "NUL in planId",
            json!({"planId": "vps\u{0}basic", "imageId": "ubuntu-22-04", "duration": "MONTHLY"}),
            (400, "BAD_REQUEST"),
        ),
        (
            "NUL in imageId",
            json!({"planId": "vps-basic", "imageId": "\u{0}", "duration": "MONTHLY"}),
            (400, "BAD_REQUEST"),
        ),
        (
            "NUL in duration",
            json!({"planId": "vps-basic", "imageId": "ubuntu-22-04", "duration": "MONTHLY\u{0}"}),
            (400, "BAD_REQUEST"),
        ),
        (
            "NUL in couponCode",
            json!({"planId": "vps-basic", "imageId": "ubuntu-22-04", "duration": "MONTHLY", "couponCode": "HEMAT\u{0}"}),
            (400, "BAD_REQUEST"),
        ),
        (
            "NUL in region",
            json!({"planId": "vps-basic", "imageId": "ubuntu-22-04", "duration": "MONTHLY", "region": "sgp\u{0}"}),
            (400, "BAD_REQUEST"),
        ),
        (
            "NUL in hostname",
            json!({"planId": "vps-basic", "imageId": "ubuntu-22-04", "duration": "MONTHLY", "hostname": "web\u{0}"}),
            (400, "BAD_REQUEST"),
        ),
        (
            "NUL in a key",
            json!({"planId": "vps-basic", "imageId": "ubuntu-22-04", "duration": "MONTHLY", "sshPublicKeys": ["ssh-ed25519 \u{0}"]}),
            (400, "BAD_REQUEST"),
        ),
        (
            "unicode planId",
            json!({"planId": "paket-🚀-計画", "imageId": "ubuntu-22-04", "duration": "MONTHLY"}),
            // Outside the id pattern (SPEC §12): refused before the catalog is asked.
            (400, "BAD_REQUEST"),
        ),
        (
            "unicode imageId",
            json!({"planId": "vps-basic", "imageId": "образ", "duration": "MONTHLY"}),
            (400, "BAD_REQUEST"),
        ),
        (
            "unicode couponCode",
            json!({"planId": "vps-basic", "imageId": "ubuntu-22-04", "duration": "MONTHLY", "couponCode": "HÉMAT20"}),
            (400, "INVALID_COUPON"),
        ),
        (
            "unicode region",
            json!({"planId": "vps-basic", "imageId": "ubuntu-22-04", "duration": "MONTHLY", "region": "sgp1é"}),
            (400, "BAD_REQUEST"),
        ),
        (
            "unicode hostname",
            json!({"planId": "vps-basic", "imageId": "ubuntu-22-04", "duration": "MONTHLY", "hostname": "wéb"}),
            (400, "BAD_REQUEST"),
        ),
        (
            "unicode duration",
            json!({"planId": "vps-basic", "imageId": "ubuntu-22-04", "duration": "MΟNTHLY"}),
            (400, "BAD_REQUEST"),
        ),
        (
            "yaml in a key",
            json!({"planId": "vps-basic", "imageId": "ubuntu-22-04", "duration": "MONTHLY", "sshPublicKeys": ["ssh-ed25519 AAAA\nruncmd: [rm]"]}),
            (400, "BAD_REQUEST"),
        ),
        ("array body", json!([1, 2, 3]), (400, "BAD_REQUEST")),
        ("null body", json!(null), (400, "BAD_REQUEST")),
    ];
    for (name, body, expect) in bodies {
        calls.push(json_post(
            &format!("body: {name}"),
            serde_json::to_vec(&body).unwrap(),
            expect,
        ));
    }
    calls.push(json_post(
        "body: truncated JSON",
        b"{\"planId\": \"vps-".to_vec(),
        (400, "BAD_REQUEST"),
    ));
    calls.push(json_post(
        "body: deeply nested",
        format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes(),
        (413, "PAYLOAD_TOO_LARGE"),
    ));
    calls.push(json_post(
        "body: nested under the limit",
        format!("{}{}", "{\"a\":".repeat(5000), "}".repeat(5000)).into_bytes(),
        (400, "BAD_REQUEST"),
    ));
    calls.push(json_post(
        "body: oversized",
        vec![b' '; 70_000],
        (413, "PAYLOAD_TOO_LARGE"),
    ));
    calls.push(json_post(
        "body: invalid UTF-8",
        vec![0xff, 0xfe, b'{', b'}'],
        (400, "BAD_REQUEST"),
    ));
    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
    ] {
        calls.push(Call {
            name: format!("content type {ct}"),
            method: "POST",
            path: "/api/v1/orders".into(),
            headers: vec![auth(&alice)],
            body: Some((ct.into(), valid.as_bytes().to_vec())),
            expect: (415, "UNSUPPORTED_MEDIA_TYPE"),
        });
    }
    for q in [
        "page=0",
        "page=-1",
        "page=99999999999",
        "limit=0",
        "limit=-1",
        "limit=1000000",
        "limit=abc",
        "status=paid",
        "status=%00",
        "page=1%00",
    ] {
        calls.push(Call {
            name: format!("query {q}"),
            method: "GET",
            path: format!("/api/v1/orders?{q}"),
            headers: vec![auth(&alice)],
            body: None,
            expect: (400, "BAD_REQUEST"),
        });
    }
    for id in [
        "123",
        "not-a-uuid",
        "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz",
        "%00",
        "..%2F..%2Fetc%2Fpasswd",
        &format!("{victim_id}x"),
    ] {
        calls.push(Call {
            name: format!("order id {id}"),
            method: "GET",
            path: format!("/api/v1/orders/{id}"),
            headers: vec![auth(&alice)],
            body: None,
            expect: (400, "BAD_REQUEST"),
        });
    }
    let admin_post =
        |name: &str, path: String, extra: Vec<(String, String)>, body: &[u8], expect| {
            let mut headers = vec![("X-API-Key".to_string(), API_KEY.to_string())];
            headers.extend(extra);
            Call {
                name: name.into(),
                method: "POST",
                path,
                headers,
                body: Some(("application/json".into(), body.to_vec())),
                expect,
            }
        };
    let pay_path = format!("/api/v1/internal/orders/{victim_id}/payment-status");
    calls.push(admin_post(
        "payment: unknown status",
        pay_path.clone(),
        vec![],
        br#"{"status":"REFUNDED"}"#,
        (400, "BAD_REQUEST"),
    ));
    calls.push(admin_post(
        "payment: NUL in notes",
        pay_path.clone(),
        vec![],
        "{\"status\":\"PAID\",\"notes\":\"a\\u0000b\"}".as_bytes(),
        (400, "BAD_REQUEST"),
    ));
    calls.push(admin_post(
        "payment: status wrong type",
        pay_path.clone(),
        vec![],
        br#"{"status":1}"#,
        (400, "BAD_REQUEST"),
    ));
    calls.push(admin_post(
        "payment: hostile X-Admin-Id",
        pay_path.clone(),
        vec![("X-Admin-Id".into(), "root; rm -rf /".into())],
        br#"{"status":"PAID"}"#,
        (400, "BAD_REQUEST"),
    ));
    calls.push(admin_post(
        "payment: long X-Admin-Id",
        pay_path.clone(),
        vec![("X-Admin-Id".into(), "a".repeat(65))],
        br#"{"status":"PAID"}"#,
        (400, "BAD_REQUEST"),
    ));
    calls.push(admin_post(
        "payment: bad idempotency key",
        pay_path.clone(),
        vec![("Idempotency-Key".into(), "a\tb".into())],
        br#"{"status":"PAID"}"#,
        (400, "BAD_REQUEST"),
    ));
    calls.push(admin_post(
        "cancel: NUL in reason",
        format!("/api/v1/internal/orders/{victim_id}/cancel"),
        vec![],
        "{\"reason\":\"\\u0000\"}".as_bytes(),
        (400, "BAD_REQUEST"),
    ));
    calls.push(admin_post(
        "cancel: long reason",
        format!("/api/v1/internal/orders/{victim_id}/cancel"),
        vec![],
        format!("{{\"reason\":\"{}\"}}", "r".repeat(5000)).as_bytes(),
        (400, "BAD_REQUEST"),
    ));

    let mut texts = Vec::new();
    for c in &calls {
        let (status, text) = send(&agent, &base, c);
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        assert_eq!(
            (
                status,
                body["error"]["code"].as_str().unwrap_or("<no envelope>")
            ),
            c.expect,
            "{}: {text}",
            c.name
        );
        assert!(body["error"]["message"].is_string(), "{}: {text}", c.name);
        texts.push(text);
    }
    // Header names are case-insensitive: an odd spelling of X-API-Key works.
    let (status, _) = send(
        &agent,
        &base,
        &Call {
            name: "header case".into(),
            method: "GET",
            path: "/api/v1/internal/orders".into(),
            headers: vec![("x-API-kEY".into(), API_KEY.into())],
            body: None,
            expect: (200, ""),
        },
    );
    assert_eq!(status, 200);

    // Nothing changed.
    assert_eq!(admin_view(&agent), before);
    let (_, list) = send(
        &agent,
        &base,
        &Call {
            name: "count".into(),
            method: "GET",
            path: "/api/v1/internal/orders".into(),
            headers: vec![("X-API-Key".into(), API_KEY.into())],
            body: None,
            expect: (200, ""),
        },
    );
    let list: Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list["meta"]["total"], 1, "hostile requests created nothing");

    let (exit, logs) = daemon.terminate_with_logs();
    assert_eq!(exit, Some(0));
    let secrets = [API_KEY, DO_TOKEN, HS_SECRET, alice.as_str(), bob.as_str()];
    for (what, haystack) in texts
        .iter()
        .map(|t| ("response", t))
        .chain(logs.iter().map(|l| ("log line", l)))
    {
        for needle in [
            "panicked",
            "RUST_BACKTRACE",
            "src/",
            ".rs:",
            "stack backtrace",
        ] {
            assert!(
                !haystack.contains(needle),
                "{what} contains {needle:?}: {haystack}"
            );
        }
        for secret in secrets {
            assert!(
                !haystack.contains(secret),
                "{what} leaks a secret: {haystack}"
            );
        }
    }
    eprintln!(
        "hostile suite: {} hostile requests, {} log lines scanned, nothing changed, nothing leaked",
        calls.len(),
        logs.len()
    );
    assert!(logs.len() >= calls.len(), "one log line per request");
}

/// Sends raw bytes on a fresh connection and reads until the server closes it.
fn raw_exchange(addr: std::net::SocketAddr, request: &[u8]) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn made_up_methods_and_unparsable_requests_stay_out_of_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let config = base_config(dir.path());
    let daemon = Daemon::start(&config, dir.path());
    let long = format!("FOOBAR{}", "X".repeat(20_000));
    for method in ["FOOBAR", long.as_str()] {
        let request =
            format!("{method} /api/v1/health HTTP/1.1\r\nHost: vpsd\r\nConnection: close\r\n\r\n");
        let response = raw_exchange(daemon.addr, request.as_bytes());
        assert!(response.starts_with("HTTP/1.1 405"), "{response:.200}");
    }
    let response = raw_exchange(
        daemon.addr,
        b"GET /api/v1/health HTTP/1.1\r\nHost: vpsd\r\nBad Header: x\r\n\r\n",
    );
    assert!(response.starts_with("HTTP/1.1 400"), "{response:.200}");
    let (exit, logs) = daemon.terminate_with_logs();
    assert_eq!(exit, Some(0));
    let requests: Vec<&String> = logs.iter().filter(|l| l.contains("\"request\"")).collect();
    assert!(requests.len() >= 2, "{logs:#?}");
    for line in &logs {
        assert!(
            !line.contains("FOOBAR"),
            "a request's method reached the log: {line:.300}"
        );
        assert!(
            !line.contains("\"ERROR\""),
            "an unparsable request logged an error: {line}"
        );
    }
    assert!(
        logs.iter().any(|l| l.contains("\"OTHER\"")),
        "made-up methods are logged as OTHER: {logs:#?}"
    );
}

#[test]
fn the_access_log_names_the_client_address_and_never_a_wrong_key() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let config = base_config(dir.path());
    let daemon = Daemon::start(&config, dir.path());
    let wrong = "guessed-key-0123456789";
    let mut stream = support::connect_from("127.0.0.66", daemon.addr);
    let request = format!(
        "GET /api/v1/internal/orders HTTP/1.1\r\nHost: vpsd\r\nX-API-Key: {wrong}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = std::io::Read::read_to_string(&mut stream, &mut answer);
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer:.200}");
    let (exit, logs) = daemon.terminate_with_logs();
    assert_eq!(exit, Some(0));
    let access = logs
        .iter()
        .find(|l| l.contains("\"request\"") && l.contains("/api/v1/internal/orders"))
        .unwrap_or_else(|| panic!("no access-log line: {logs:#?}"));
    assert!(
        access.contains("\"client\":\"127.0.0.66\""),
        "the access log names the client: {access}"
    );
    assert!(
        logs.iter()
            .any(|l| l.contains("wrong API key") && l.contains("127.0.0.66")),
        "the refusal is logged with the address: {logs:#?}"
    );
    for line in &logs {
        assert!(!line.contains(wrong), "a wrong key reached the log: {line}");
    }
}
