//! Idempotency keys on POST /orders and POST payment-status (SPEC §2).

use serde_json::json;

use crate::support::{skip_on_postgres, spawn_app, verify_stopped, Auth, TestApp};

fn create(app: &TestApp, user: &str, key: &str, body: &serde_json::Value) -> crate::support::Resp {
    let bytes = serde_json::to_vec(body).unwrap();
    app.request(
        "POST",
        "/api/v1/orders",
        Auth::User(user),
        &[("Idempotency-Key", key)],
        Some(("application/json", &bytes)),
    )
}

fn basic() -> serde_json::Value {
    json!({"planId": "vps-basic", "imageId": "ubuntu-22-04", "duration": "MONTHLY"})
}

fn total(app: &TestApp) -> u64 {
    app.get("/api/v1/internal/orders", Auth::Admin).body["meta"]["total"]
        .as_u64()
        .unwrap()
}

#[test]
fn the_same_request_twice_creates_one_order_and_replays_the_response() {
    let app = spawn_app();
    let first = create(&app, "alice", "order-123", &basic());
    assert_eq!(first.status, 201);
    // Whitespace and key order do not make it a different request.
    let reordered =
        r#"{ "duration": "MONTHLY", "imageId": "ubuntu-22-04", "planId": "vps-basic" }"#;
    let again = app.request(
        "POST",
        "/api/v1/orders",
        Auth::User("alice"),
        &[("Idempotency-Key", "order-123")],
        Some(("application/json", reordered.as_bytes())),
    );
    assert_eq!(again.status, 201);
    assert_eq!(again.text, first.text, "byte-for-byte the first response");
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(total(&app), 1);

    let different = create(
        &app,
        "alice",
        "order-123",
        &json!({"planId": "vps-standard", "imageId": "ubuntu-22-04", "duration": "MONTHLY"}),
    );
    assert_eq!(
        (different.status, different.code()),
        (422, "IDEMPOTENCY_KEY_REUSED")
    );
    assert_eq!(total(&app), 1);

    // Keys are scoped per user.
    let bob = create(&app, "bob", "order-123", &basic());
    assert_eq!(bob.status, 201);
    assert_ne!(bob.id(), first.id());
    assert_eq!(total(&app), 2);
}

#[test]
fn twenty_concurrent_requests_with_one_key_make_one_order() {
    let app = spawn_app();
    let results: Vec<(u16, String, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..20)
            .map(|_| {
                s.spawn(|| {
                    let r = create(&app, "alice", "burst-key", &basic());
                    let id = r.body["data"]["id"].as_str().unwrap_or("").to_string();
                    (r.status, r.code().to_string(), id)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(total(&app), 1, "{results:?}");
    let created: Vec<_> = results.iter().filter(|r| r.0 == 201).collect();
    assert!(!created.is_empty());
    assert!(
        created.iter().all(|r| r.2 == created[0].2),
        "every 201 names the one order"
    );
    assert!(
        results
            .iter()
            .all(|r| r.0 == 201 || (r.0 == 409 && r.1 == "IDEMPOTENCY_KEY_IN_USE")),
        "{results:?}"
    );
}

#[test]
fn bad_keys_are_refused() {
    let app = spawn_app();
    let long = "k".repeat(256);
    for key in ["", long.as_str(), "tab\there"] {
        let r = create(&app, "alice", key, &basic());
        assert_eq!((r.status, r.code()), (400, "BAD_REQUEST"), "{key:?}");
    }
    assert_eq!(
        create(&app, "alice", &"k".repeat(255), &basic()).status,
        201
    );
}

#[test]
fn four_xx_outcomes_replay() {
    let app = spawn_app();
    let bad_plan = json!({"planId": "nope", "imageId": "ubuntu-22-04", "duration": "MONTHLY"});
    let first = create(&app, "alice", "k-400", &bad_plan);
    assert_eq!(first.code(), "INVALID_PLAN");
    let again = create(&app, "alice", "k-400", &bad_plan);
    assert_eq!(again.text, first.text);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
}

#[test]
fn five_xx_outcomes_do_not_replay() {
    if skip_on_postgres("the storage failure is injected into the redb writer") {
        return;
    }
    let app = spawn_app();
    // Once the server answers, start-up's own writes are done: the injected
    // failure is this request's.
    assert_eq!(app.get("/api/v1/health", Auth::None).status, 200);
    let redb = app.redb().expect("a redb store");
    redb.writer().inject_commit_failures(1);
    let failed = create(&app, "alice", "k-503", &basic());
    assert_eq!((failed.status, failed.code()), (503, "STORAGE_UNAVAILABLE"));
    let retried = create(&app, "alice", "k-503", &basic());
    assert_eq!(retried.status, 201, "a 5xx is not stored: the retry runs");
    assert_eq!(total(&app), 1);
}

#[test]
fn payment_status_is_idempotent_too() {
    let app = spawn_app();
    let id = app.create_order("alice").id();
    let path = format!("/api/v1/internal/orders/{id}/payment-status");
    let pay = |key: &str| {
        app.request(
            "POST",
            &path,
            Auth::Admin,
            &[("Idempotency-Key", key)],
            Some(("application/json", br#"{"status":"PAID"}"#)),
        )
    };
    let first = pay("pay-1");
    assert_eq!(first.status, 200);
    let again = pay("pay-1");
    assert_eq!(again.status, 200, "a replay, not a 409");
    assert_eq!(again.text, first.text);
    let other_key = pay("pay-2");
    assert_eq!(other_key.code(), "PAYMENT_STATUS_CONFLICT");
    let history = app.admin_order(&id).data()["statusHistory"].clone();
    let paid_rows = history
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["newStatus"] == "PAID")
        .count();
    assert_eq!(paid_rows, 1);
}

#[test]
fn keys_survive_a_restart_and_expire() {
    let app = spawn_app();
    let first = create(&app, "alice", "durable", &basic());
    let app = app.restart();
    let again = create(&app, "alice", "durable", &basic());
    assert_eq!(again.text, first.text);
    assert_eq!(total(&app), 1);

    // A day later the sweeper removes the key; the same key then starts afresh.
    let swept = app
        .store
        .maintain_blocking(vpsd::store::Maintenance::SweepIdempotency {
            now: vpsd::domain::time::now_millis() + 25 * 3600 * 1000,
        })
        .unwrap();
    assert_eq!(swept, 1);
    assert!(app
        .store
        .idempotency("user:alice", "durable")
        .unwrap()
        .is_none());
    let fresh = create(&app, "alice", "durable", &basic());
    assert_eq!(fresh.status, 201);
    assert_ne!(fresh.id(), first.id());
}

#[test]
fn a_refused_body_is_stored_too_and_429_is_not() {
    let app = spawn_app();
    let bad = json!({"planId": "vps-basic", "duration": "WEEKLY"});
    let first = create(&app, "alice", "k-bad", &bad);
    assert_eq!(first.code(), "BAD_REQUEST");
    assert_eq!(create(&app, "alice", "k-bad", &bad).text, first.text);
    let fixed = create(&app, "alice", "k-bad", &basic());
    assert_eq!(
        fixed.code(),
        "IDEMPOTENCY_KEY_REUSED",
        "the key already answered a different body"
    );
    assert_eq!(total(&app), 0);

    let limited = crate::support::spawn_app_with(|c| c.server.order_rate_limit_per_minute = 1);
    assert_eq!(create(&limited, "bob", "first", &basic()).status, 201);
    let refused = create(&limited, "bob", "second", &basic());
    assert_eq!(refused.code(), "RATE_LIMIT_EXCEEDED");
    // A replay of the first key is not rate limited; the second key was not
    // burned by its 429.
    assert_eq!(create(&limited, "bob", "first", &basic()).status, 201);
    let again = create(&limited, "bob", "second", &basic());
    assert_eq!(again.code(), "RATE_LIMIT_EXCEEDED");
    assert!(again.header("idempotent-replayed").is_none());
}

/// SPEC §12 "Idempotency keys are bounded per caller": at most
/// `idempotency.max_keys_per_user` live keys per user and as many for the
/// internal API; beyond, 429 RATE_LIMIT_EXCEEDED with Retry-After until keys
/// expire. Replays still work at the limit; other users are not affected.
#[test]
fn keys_per_caller_are_bounded_and_replays_still_work_at_the_limit() {
    let app = crate::support::spawn_app_with(|c| c.idempotency.max_keys_per_user = 3);
    let mut ids = Vec::new();
    for key in ["k1", "k2"] {
        let r = create(&app, "alice", key, &basic());
        assert_eq!(r.status, 201, "{}", r.text);
        ids.push(r.id());
    }
    // A stored refusal holds its key too.
    let bad_plan = json!({"planId": "nope", "imageId": "ubuntu-22-04", "duration": "MONTHLY"});
    assert_eq!(
        create(&app, "alice", "k3", &bad_plan).code(),
        "INVALID_PLAN"
    );

    let refused = create(&app, "alice", "k4", &basic());
    assert_eq!(
        (refused.status, refused.code()),
        (429, "RATE_LIMIT_EXCEEDED"),
        "{}",
        refused.text
    );
    let retry: u64 = refused
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    // Until the oldest key expires: about a day from now.
    assert!((86_000..=86_400).contains(&retry), "{retry}");
    assert_eq!(refused.body["error"]["details"]["retryAfter"], retry);
    assert!(refused.header("idempotent-replayed").is_none());
    assert_eq!(total(&app), 2, "the refused request changed nothing");
    assert!(app.store.idempotency("user:alice", "k4").unwrap().is_none());

    // At the limit: replays answer as before, requests without a key work,
    // and another user has a limit of their own.
    let replay = create(&app, "alice", "k1", &basic());
    assert_eq!(replay.status, 201);
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    assert_eq!(
        create(&app, "alice", "k3", &bad_plan).code(),
        "INVALID_PLAN"
    );
    let unkeyed = app.create_order("alice");
    assert_eq!(unkeyed.status, 201);
    assert_eq!(create(&app, "bob", "k4", &basic()).status, 201);

    // The internal API is one caller with the same limit.
    let order_ids: Vec<String> = ids.iter().cloned().chain([unkeyed.id()]).collect();
    let pay = |id: &str, key: &str| {
        app.request(
            "POST",
            &format!("/api/v1/internal/orders/{id}/payment-status"),
            Auth::Admin,
            &[("Idempotency-Key", key)],
            Some(("application/json", br#"{"status":"PAYMENT_FAILED"}"#)),
        )
    };
    for (id, key) in order_ids.iter().zip(["p1", "p2", "p3"]) {
        assert_eq!(pay(id, key).status, 200);
    }
    let over = pay(&order_ids[0], "p4");
    assert_eq!((over.status, over.code()), (429, "RATE_LIMIT_EXCEEDED"));
    assert!(over.header("retry-after").is_some());
    assert_eq!(
        pay(&order_ids[0], "p1").status,
        200,
        "a replay at the limit"
    );

    // Once the hourly sweep has removed expired keys, they stop counting.
    let swept = app
        .store
        .maintain_blocking(vpsd::store::Maintenance::SweepIdempotency {
            now: vpsd::domain::time::now_millis() + 25 * 3600 * 1000,
        })
        .unwrap();
    assert_eq!(swept, 7);
    assert_eq!(create(&app, "alice", "k4", &basic()).status, 201);
    assert_eq!(pay(&order_ids[0], "p4").status, 200);

    // The key counts are among the invariants the check covers.
    let orders = total(&app);
    assert_eq!(verify_stopped(app), orders, "the key counts verify");
}

/// At the limit, a caller's expired keys stop counting at once (removed
/// before the refusal would be decided), not only at the hourly sweep; and
/// concurrent requests with new keys never take the caller past the limit.
#[test]
fn expired_keys_stop_counting_at_the_limit_and_a_burst_cannot_overshoot() {
    let app = crate::support::spawn_app_with(|c| c.idempotency.max_keys_per_user = 3);
    let now = vpsd::domain::time::now_millis();
    let first = create(&app, "alice", "old-1", &basic());
    assert_eq!(first.status, 201);
    let expired = vpsd::store::IdempotencyRecord {
        expires_at: now - 1000,
        ..app
            .store
            .idempotency("user:alice", "old-1")
            .unwrap()
            .unwrap()
    };
    // Two more keys that expired a second ago, not yet swept.
    for key in ["old-2", "old-3"] {
        app.store
            .maintain_blocking(vpsd::store::Maintenance::StoreResponse {
                scope: "user:alice".into(),
                key: key.into(),
                record: Box::new(expired.clone()),
            })
            .unwrap();
    }
    let r = create(&app, "alice", "new-1", &basic());
    assert_eq!(r.status, 201, "{}", r.text);
    assert!(app
        .store
        .idempotency("user:alice", "old-2")
        .unwrap()
        .is_none());
    assert!(app
        .store
        .idempotency("user:alice", "old-1")
        .unwrap()
        .is_some());

    // Two live keys now (old-1, new-1), so one slot: a burst of eight new
    // keys gets exactly one through.
    let results: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let app = &app;
                s.spawn(move || create(app, "alice", &format!("burst-{i}"), &basic()).status)
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        results.iter().filter(|s| **s == 201).count(),
        1,
        "{results:?}"
    );
    assert!(
        results.iter().all(|s| *s == 201 || *s == 429),
        "{results:?}"
    );
    assert_eq!(app.store.idempotency_usage("user:alice").unwrap().stored, 3);

    let orders = total(&app);
    assert_eq!(verify_stopped(app), orders, "the key counts verify");
}
