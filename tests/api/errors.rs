//! The envelope for everything that is not a success.

use serde_json::json;

use crate::support::{spawn_app, spawn_app_with, Auth};

#[test]
fn unknown_routes_and_wrong_methods() {
    let app = spawn_app();
    let r = app.get("/api/v1/nothing", Auth::None);
    assert_eq!((r.status, r.code()), (404, "NOT_FOUND"));
    let r = app.request("DELETE", "/api/v1/orders", Auth::None, &[], None);
    assert_eq!((r.status, r.code()), (405, "METHOD_NOT_ALLOWED"));
    assert!(r.header("allow").unwrap_or("").contains("POST"));
    // 405 comes before 401.
    let r = app.request("PUT", "/api/v1/internal/orders", Auth::None, &[], None);
    assert_eq!(r.status, 405);
    let r = app.get("/", Auth::None);
    assert_eq!(r.code(), "NOT_FOUND");
}

#[test]
fn bodies_bad_json_wrong_type_too_large_not_json() {
    let app = spawn_app_with(|c| c.server.body_limit = 1024);
    let create = |ct: &str, body: &[u8]| {
        app.request(
            "POST",
            "/api/v1/orders",
            Auth::User("a"),
            &[],
            Some((ct, body)),
        )
    };
    let bad_json = create("application/json", b"{\"planId\": ");
    assert_eq!((bad_json.status, bad_json.code()), (400, "BAD_REQUEST"));
    let array = create("application/json", b"[1,2]");
    assert_eq!(array.code(), "BAD_REQUEST");
    let text = create("text/plain", br#"{"planId":"x"}"#);
    assert_eq!((text.status, text.code()), (415, "UNSUPPORTED_MEDIA_TYPE"));
    let none = create("", br#"{"planId":"x"}"#);
    assert_eq!(none.status, 415);
    let big = format!(r#"{{"planId":"{}"}}"#, "x".repeat(2000));
    let large = create("application/json", big.as_bytes());
    assert_eq!((large.status, large.code()), (413, "PAYLOAD_TOO_LARGE"));
    let deep = format!("{}{}", "[".repeat(600), "]".repeat(600));
    let deep_r = create("application/json", deep.as_bytes());
    assert!(
        deep_r.status == 400 || deep_r.status == 413,
        "{}",
        deep_r.status
    );
    let empty = create("application/json", b"");
    assert_eq!(empty.code(), "BAD_REQUEST");
    let charset = create(
        "application/json; charset=utf-8",
        br#"{"planId":"vps-basic","imageId":"ubuntu-22-04","duration":"MONTHLY"}"#,
    );
    assert_eq!(charset.status, 201);
    for r in [&bad_json, &array, &text, &large, &deep_r] {
        assert!(r.body["error"]["message"].is_string());
        assert!(
            !r.text.contains("panicked") && !r.text.contains("/src/"),
            "{}",
            r.text
        );
    }
}

#[test]
fn auth_comes_before_body_validation() {
    let app = spawn_app();
    let r = app.request(
        "POST",
        "/api/v1/orders",
        Auth::None,
        &[],
        Some(("text/plain", b"junk")),
    );
    assert_eq!(r.code(), "UNAUTHORIZED");
}

#[test]
fn responses_carry_security_headers() {
    let app = spawn_app();
    let r = app.get("/api/v1/health", Auth::None);
    assert_eq!(r.status, 200);
    // The backend this run tests; a lone instance runs the background work
    // on either.
    let backend = if crate::support::on_postgres() {
        "postgres"
    } else {
        "redb"
    };
    assert_eq!(
        r.body,
        json!({"data": {"status": "ok", "version": env!("CARGO_PKG_VERSION"), "storage": "ok", "cloud": "sandbox", "catalog": "embedded", "backend": backend, "backgroundWork": true}})
    );
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert!(r
        .header("content-type")
        .unwrap_or("")
        .starts_with("application/json"));
}
