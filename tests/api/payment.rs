//! payment-status: PAID and PAYMENT_FAILED.

use serde_json::json;

use crate::support::{spawn_app, Auth};

#[test]
fn paid_sets_paid_at_writes_history_and_a_pending_task() {
    let app = spawn_app();
    let id = app.create_order("alice").id();
    let r = app.request(
        "POST",
        &format!("/api/v1/internal/orders/{id}/payment-status"),
        Auth::Admin,
        &[("X-Admin-Id", "ops@example.com")],
        Some((
            "application/json",
            br#"{"status":"PAID","notes":"bank transfer #77"}"#,
        )),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let o = r.data();
    assert_eq!(o["status"], "PAID");
    assert!(o["paidAt"].is_string());
    let task = &o["provisioningTask"];
    assert_eq!(task["status"], "PENDING");
    assert_eq!(task["attempts"], 0);
    assert_eq!(task["doRegion"], "sgp1");
    assert_eq!(task["dropletId"], json!(null));
    assert_eq!(task["errorCode"], json!(null));

    let history = app.admin_order(&id).data()["statusHistory"].clone();
    let row = history
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["newStatus"] == "PAID")
        .expect("PAID row")
        .clone();
    assert_eq!(row["previousStatus"], "PENDING_PAYMENT");
    assert_eq!(row["actor"], "admin:ops@example.com");
    assert_eq!(row["reason"], "bank transfer #77");
}

#[test]
fn paid_twice_is_a_conflict_with_details() {
    let app = spawn_app();
    let id = app.create_order("alice").id();
    assert_eq!(app.pay(&id).status, 200);
    let again = app.pay(&id);
    assert_eq!(again.status, 409);
    assert_eq!(again.code(), "PAYMENT_STATUS_CONFLICT");
    assert_eq!(again.body["error"]["details"]["requestedStatus"], "PAID");
    let current = again.body["error"]["details"]["currentStatus"]
        .as_str()
        .unwrap();
    assert!(
        ["PAID", "PROVISIONING", "ACTIVE"].contains(&current),
        "{current}"
    );
}

#[test]
fn payment_failed_is_an_event_and_payment_can_be_retried() {
    let app = spawn_app();
    let id = app.create_order("alice").id();
    let path = format!("/api/v1/internal/orders/{id}/payment-status");
    let failed = app.post_json(
        &path,
        Auth::Admin,
        &json!({"status": "PAYMENT_FAILED", "notes": "card declined"}),
    );
    assert_eq!(failed.status, 200, "{}", failed.text);
    assert_eq!(failed.data()["status"], "PENDING_PAYMENT");
    assert_eq!(failed.data()["paidAt"], json!(null));
    assert_eq!(failed.data()["provisioningTask"], json!(null));

    assert_eq!(app.pay(&id).status, 200);
    let history = app.admin_order(&id).data()["statusHistory"].clone();
    let rows: Vec<(&str, &str)> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["previousStatus"].as_str().unwrap(),
                h["newStatus"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        &rows[..3],
        &[
            ("", "PENDING_PAYMENT"),
            ("PENDING_PAYMENT", "PAYMENT_FAILED"),
            ("PENDING_PAYMENT", "PAID")
        ]
    );
    assert_eq!(history[1]["reason"], "card declined");
}

#[test]
fn payment_failed_after_paid_is_a_conflict() {
    let app = spawn_app();
    let id = app.create_order("alice").id();
    app.pay(&id);
    let r = app.post_json(
        &format!("/api/v1/internal/orders/{id}/payment-status"),
        Auth::Admin,
        &json!({"status": "PAYMENT_FAILED"}),
    );
    assert_eq!(r.status, 409);
    assert_eq!(r.code(), "PAYMENT_STATUS_CONFLICT");
    assert_eq!(
        r.body["error"]["details"]["requestedStatus"],
        "PAYMENT_FAILED"
    );
}

#[test]
fn payment_body_is_validated_before_the_order_is_looked_up() {
    let app = spawn_app();
    let unknown = uuid::Uuid::new_v4();
    let path = format!("/api/v1/internal/orders/{unknown}/payment-status");
    let bad = app.post_json(&path, Auth::Admin, &json!({"status": "REFUNDED"}));
    assert_eq!(bad.status, 400);
    assert_eq!(bad.code(), "BAD_REQUEST");
    let missing = app.post_json(&path, Auth::Admin, &json!({"status": "PAID"}));
    assert_eq!(missing.status, 404);
    assert_eq!(missing.code(), "ORDER_NOT_FOUND");
    let bad_admin = app.request(
        "POST",
        &path,
        Auth::Admin,
        &[("X-Admin-Id", "has space")],
        Some(("application/json", br#"{"status":"PAID"}"#)),
    );
    assert_eq!(bad_admin.status, 400);
}

#[test]
fn concurrent_payments_pay_once() {
    let app = spawn_app();
    let id = app.create_order("alice").id();
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..10).map(|_| s.spawn(|| app.pay(&id).status)).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        9,
        "{statuses:?}"
    );
    let history = app.admin_order(&id).data()["statusHistory"].clone();
    let paid_rows = history
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["newStatus"] == "PAID")
        .count();
    assert_eq!(paid_rows, 1);
}
