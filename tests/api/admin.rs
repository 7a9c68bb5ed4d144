//! Internal endpoints: list with filters, detail with history, cancel.

use serde_json::json;

use crate::support::{spawn_app, Auth};

#[test]
fn admin_lists_every_user_with_status_and_user_filters() {
    let app = spawn_app();
    let a1 = app.create_order("alice").id();
    let _a2 = app.create_order("alice").id();
    let b1 = app.create_order("bob").id();
    app.post_empty(&format!("/api/v1/internal/orders/{a1}/cancel"), Auth::Admin);

    let all = app.get("/api/v1/internal/orders", Auth::Admin);
    assert_eq!(all.status, 200);
    assert_eq!(all.body["meta"]["total"], 3);
    assert_eq!(all.data()[0]["id"], b1.as_str(), "newest first");

    let bob = app.get("/api/v1/internal/orders?userId=bob", Auth::Admin);
    assert_eq!(bob.body["meta"]["total"], 1);
    assert_eq!(bob.data()[0]["userId"], "bob");

    let canceled = app.get("/api/v1/internal/orders?status=CANCELED", Auth::Admin);
    assert_eq!(canceled.body["meta"]["total"], 1);
    assert_eq!(canceled.data()[0]["id"], a1.as_str());

    let alice_pending = app.get(
        "/api/v1/internal/orders?userId=alice&status=PENDING_PAYMENT",
        Auth::Admin,
    );
    assert_eq!(alice_pending.body["meta"]["total"], 1);

    let none = app.get(
        "/api/v1/internal/orders?userId=bob&status=CANCELED",
        Auth::Admin,
    );
    assert_eq!(
        none.body["meta"],
        json!({"page": 1, "limit": 10, "total": 0, "totalPages": 0})
    );
    assert!(all.data()[0].get("statusHistory").is_none());
}

#[test]
fn admin_detail_has_history_in_commit_order() {
    let app = spawn_app();
    let id = app.create_order("alice").id();
    app.post_json(
        &format!("/api/v1/internal/orders/{id}/payment-status"),
        Auth::Admin,
        &json!({"status": "PAYMENT_FAILED"}),
    );
    let canceled = app.post_json(
        &format!("/api/v1/internal/orders/{id}/cancel"),
        Auth::Admin,
        &json!({"reason": "customer asked"}),
    );
    assert_eq!(canceled.status, 200, "{}", canceled.text);
    assert_eq!(canceled.data()["status"], "CANCELED");
    let detail = app.admin_order(&id);
    assert_eq!(detail.status, 200);
    let history = detail.data()["statusHistory"].as_array().unwrap().clone();
    let chain: Vec<&str> = history
        .iter()
        .map(|h| h["newStatus"].as_str().unwrap())
        .collect();
    assert_eq!(chain, vec!["PENDING_PAYMENT", "PAYMENT_FAILED", "CANCELED"]);
    assert_eq!(history[2]["previousStatus"], "PENDING_PAYMENT");
    assert_eq!(history[2]["actor"], "admin");
    assert_eq!(history[2]["reason"], "customer asked");
    for h in &history {
        for key in [
            "id",
            "previousStatus",
            "newStatus",
            "actor",
            "reason",
            "metadata",
            "createdAt",
        ] {
            assert!(h.get(key).is_some(), "history row lacks {key}");
        }
    }
    let missing = app.admin_order(&uuid::Uuid::new_v4().to_string());
    assert_eq!(missing.code(), "ORDER_NOT_FOUND");
}

#[test]
fn admin_cancel_only_from_pending_payment() {
    let app = spawn_app();
    let id = app.create_order("alice").id();
    app.pay(&id);
    let r = app.post_empty(&format!("/api/v1/internal/orders/{id}/cancel"), Auth::Admin);
    assert_eq!(r.status, 409);
    assert_eq!(r.code(), "ORDER_STATUS_CONFLICT");
    assert_eq!(r.body["error"]["details"]["requestedStatus"], "CANCELED");
}

#[test]
fn retry_is_refused_unless_failed() {
    let app = spawn_app();
    let id = app.create_order("alice").id();
    let r = app.post_empty(
        &format!("/api/v1/internal/orders/{id}/retry-provisioning"),
        Auth::Admin,
    );
    assert_eq!(r.status, 409);
    assert_eq!(r.code(), "ORDER_STATUS_CONFLICT");
    assert_eq!(
        r.body["error"]["details"],
        json!({"currentStatus": "PENDING_PAYMENT", "requestedStatus": "PROVISIONING"})
    );
}

#[test]
fn coupon_limits_hold_under_concurrent_orders_and_cancel_releases() {
    let app = spawn_app();
    let body = json!({"planId": "vps-basic", "imageId": "ubuntu-22-04", "duration": "MONTHLY", "couponCode": "FLASH3"});
    let results: Vec<(u16, String, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..20)
            .map(|i| {
                let app = &app;
                let body = &body;
                s.spawn(move || {
                    let r = app.post_json("/api/v1/orders", Auth::User(&format!("user-{i}")), body);
                    let reason = r.body["error"]["details"]["reason"]
                        .as_str()
                        .unwrap_or("")
                        .to_string();
                    let id = r.body["data"]["id"].as_str().unwrap_or("").to_string();
                    (r.status, reason, id)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let won: Vec<&(u16, String, String)> = results.iter().filter(|r| r.0 == 201).collect();
    assert_eq!(won.len(), 3, "{results:?}");
    assert!(results
        .iter()
        .filter(|r| r.0 != 201)
        .all(|r| r.0 == 400 && r.1 == "LIMIT_GLOBAL_REACHED"));

    // Cancelling an unpaid order gives its redemption back.
    let id = &won[0].2;
    let canceled = app.post_empty(&format!("/api/v1/internal/orders/{id}/cancel"), Auth::Admin);
    assert_eq!(canceled.status, 200);
    let again = app.post_json("/api/v1/orders", Auth::User("late"), &body);
    assert_eq!(again.status, 201, "{}", again.text);
    let over = app.post_json("/api/v1/orders", Auth::User("later"), &body);
    assert_eq!(
        over.body["error"]["details"]["reason"],
        "LIMIT_GLOBAL_REACHED"
    );
}

#[test]
fn per_user_coupon_limit() {
    let app = spawn_app();
    let body = json!({"planId": "vps-basic", "imageId": "ubuntu-22-04", "duration": "MONTHLY", "couponCode": "PERTAMA"});
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    app.post_json("/api/v1/orders", Auth::User("alice"), &body)
                        .status
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    let other = app.post_json("/api/v1/orders", Auth::User("bob"), &body);
    assert_eq!(other.status, 201);
    let again = app.post_json("/api/v1/orders", Auth::User("alice"), &body);
    assert_eq!(
        again.body["error"]["details"]["reason"],
        "LIMIT_PER_USER_REACHED"
    );
}

#[test]
fn a_malformed_admin_id_is_refused_on_every_internal_route() {
    let app = spawn_app();
    for (method, path) in [
        ("GET", "/api/v1/internal/orders"),
        ("POST", "/api/v1/internal/backups"),
    ] {
        let r = app.request(
            method,
            path,
            Auth::Admin,
            &[("X-Admin-Id", "two words")],
            None,
        );
        assert_eq!(
            (r.status, r.code()),
            (400, "BAD_REQUEST"),
            "{method} {path}"
        );
    }
    let ok = app.request(
        "GET",
        "/api/v1/internal/orders",
        Auth::Admin,
        &[("X-Admin-Id", "ops.team@example.com")],
        None,
    );
    assert_eq!(ok.status, 200);
}
