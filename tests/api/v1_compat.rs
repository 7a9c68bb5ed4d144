//! Drop-in gaps found by running v1's own tests against vpsd (SPEC §12): the
//! payment answer's `previousStatus`, v1's error details, free text with
//! newlines, and v1's default history text.

use serde_json::{json, Value};

use crate::support::{repo_path, spawn_app, spawn_app_with, Auth, Resp, TestApp};

fn create(app: &TestApp, body: &Value, key: Option<&str>) -> Resp {
    let bytes = serde_json::to_vec(body).unwrap();
    let headers: Vec<(&str, &str)> = key.map(|k| ("Idempotency-Key", k)).into_iter().collect();
    app.request(
        "POST",
        "/api/v1/orders",
        Auth::User("alice"),
        &headers,
        Some(("application/json", &bytes)),
    )
}

fn payment(app: &TestApp, id: &str, body: &Value, key: &str) -> Resp {
    let bytes = serde_json::to_vec(body).unwrap();
    app.request(
        "POST",
        &format!("/api/v1/internal/orders/{id}/payment-status"),
        Auth::Admin,
        &[("Idempotency-Key", key)],
        Some(("application/json", &bytes)),
    )
}

fn history(app: &TestApp, id: &str) -> Vec<Value> {
    app.admin_order(id).data()["statusHistory"]
        .as_array()
        .expect("statusHistory")
        .clone()
}

#[test]
fn payment_status_answers_previous_status_and_replays_it() {
    let app = spawn_app();
    for (status, after) in [("PAYMENT_FAILED", "PENDING_PAYMENT"), ("PAID", "PAID")] {
        let id = app.create_order("alice").id();
        let key = format!("pay-{status}");
        let body = json!({"status": status});
        let first = payment(&app, &id, &body, &key);
        assert_eq!(first.status, 200, "{}", first.text);
        assert_eq!(first.data()["previousStatus"], "PENDING_PAYMENT");
        assert_eq!(first.data()["status"], after);
        let again = payment(&app, &id, &body, &key);
        assert_eq!(again.status, 200);
        assert_eq!(again.header("idempotent-replayed"), Some("true"));
        assert_eq!(again.text, first.text, "a replay is the first answer");
    }
    // Only the payment answer carries it; an order read does not.
    let id = app.create_order("alice").id();
    assert!(app.admin_order(&id).data().get("previousStatus").is_none());
}

/// The shipped catalog plus a plan sold only by the year.
fn yearly_only_catalog(dir: &std::path::Path) -> std::path::PathBuf {
    let mut text = std::fs::read_to_string(repo_path("config/catalog.toml")).unwrap();
    text.push_str(
        "\n[[plans]]\nid = \"vps-yearly\"\nname = \"yearly\"\ncpu = 1\nmemoryMb = 1024\n\
         diskGb = 25\nsizeSlug = \"s-1vcpu-1gb\"\nprices = { ANNUAL = 1500000 }\n",
    );
    let path = dir.join("catalog.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn error_details_name_what_the_request_was_about() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = yearly_only_catalog(dir.path());
    let app = spawn_app_with(|c| c.catalog.file = catalog);
    let order = |plan: &str, image: &str, duration: &str| json!({"planId": plan, "imageId": image, "duration": duration});

    let r = create(&app, &order("vps-mini", "ubuntu-22-04", "MONTHLY"), None);
    assert_eq!(r.code(), "INVALID_PLAN", "{}", r.text);
    assert_eq!(r.body["error"]["details"], json!({"planId": "vps-mini"}));

    let r = create(&app, &order("vps-basic", "centos-7", "MONTHLY"), None);
    assert_eq!(r.code(), "INVALID_IMAGE", "{}", r.text);
    assert_eq!(r.body["error"]["details"], json!({"imageId": "centos-7"}));

    let r = create(&app, &order("vps-yearly", "ubuntu-22-04", "MONTHLY"), None);
    assert_eq!(r.code(), "INVALID_DURATION", "{}", r.text);
    assert_eq!(r.body["error"]["details"], json!({"duration": "MONTHLY"}));

    let mut with_coupon = order("vps-basic", "ubuntu-22-04", "MONTHLY");
    with_coupon["couponCode"] = json!("NO-SUCH-CODE");
    let r = create(&app, &with_coupon, Some("coupon-1"));
    assert_eq!(r.code(), "INVALID_COUPON", "{}", r.text);
    assert_eq!(
        r.body["error"]["details"],
        json!({"couponCode": "NO-SUCH-CODE", "reason": "NOT_FOUND"})
    );
    let again = create(&app, &with_coupon, Some("coupon-1"));
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.text, r.text, "a replayed refusal names the same");

    let missing = uuid::Uuid::new_v4().to_string();
    let r = app.get(&format!("/api/v1/orders/{missing}"), Auth::User("alice"));
    assert_eq!(r.code(), "ORDER_NOT_FOUND", "{}", r.text);
    assert_eq!(r.body["error"]["details"], json!({"orderId": missing}));
    let first = payment(&app, &missing, &json!({"status": "PAID"}), "pay-missing");
    assert_eq!(first.code(), "ORDER_NOT_FOUND", "{}", first.text);
    assert_eq!(first.body["error"]["details"], json!({"orderId": missing}));
    let again = payment(&app, &missing, &json!({"status": "PAID"}), "pay-missing");
    assert_eq!(again.text, first.text);

    let bobs = app.create_order("bob").id();
    let r = app.post_empty(
        &format!("/api/v1/orders/{bobs}/cancel"),
        Auth::User("alice"),
    );
    assert_eq!(r.code(), "ORDER_ACCESS_DENIED", "{}", r.text);
    assert_eq!(r.body["error"]["details"], json!({"orderId": bobs}));
}

#[test]
fn free_text_may_hold_newlines_and_tabs_but_no_other_control_characters() {
    let app = spawn_app();
    let id = app.create_order("alice").id();
    let pay = format!("/api/v1/internal/orders/{id}/payment-status");
    for bad in ["bell\u{7}", "escape\u{1b}[2J", "lone\rreturn", "nul\u{0}"] {
        let r = app.post_json(&pay, Auth::Admin, &json!({"status": "PAID", "notes": bad}));
        assert_eq!(r.status, 400, "{bad:?}: {}", r.text);
        assert_eq!(r.body["error"]["details"]["fields"][0]["field"], "notes");
    }
    assert_eq!(history(&app, &id).len(), 1, "refusals change nothing");

    let notes = "bank transfer\r\nref:\t42\nchecked";
    let r = app.post_json(
        &pay,
        Auth::Admin,
        &json!({"status": "PAID", "notes": notes}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    // The PAID row, not the last: the provisioner may already have added its own.
    let rows = history(&app, &id);
    let paid = rows.iter().find(|row| row["newStatus"] == "PAID").unwrap();
    assert_eq!(paid["reason"], notes);

    let other = app.create_order("alice").id();
    let cancel = format!("/api/v1/orders/{other}/cancel");
    let r = app.post_json(&cancel, Auth::User("alice"), &json!({"reason": "a\u{8}b"}));
    assert_eq!(r.status, 400, "{}", r.text);
    let r = app.post_json(
        &cancel,
        Auth::User("alice"),
        &json!({"reason": "too\tpricey\n"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        history(&app, &other).last().unwrap()["reason"],
        "too\tpricey\n"
    );
}

#[test]
fn default_history_text_is_v1s() {
    let app = spawn_app();
    let r = create(
        &app,
        &json!({"planId": "vps-basic", "imageId": "ubuntu-22-04", "duration": "MONTHLY", "couponCode": "hemat20"}),
        None,
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.id();
    assert_eq!(app.pay(&id).status, 200);
    let rows = history(&app, &id);
    assert_eq!(rows[0]["previousStatus"], "");
    assert_eq!(rows[0]["reason"], "Order created");
    assert_eq!(
        rows[0]["metadata"],
        json!({"planId": "vps-basic", "imageId": "ubuntu-22-04", "duration": "MONTHLY", "couponCode": "HEMAT20"})
    );
    let paid = rows
        .iter()
        .find(|h| h["newStatus"] == "PAID")
        .expect("PAID row");
    assert_eq!(paid["reason"], "Payment verified via admin override");
    assert_eq!(
        paid["metadata"],
        json!({"paymentMethod": "manual_override"})
    );

    let plain = app.create_order("alice").id();
    let rows = history(&app, &plain);
    assert_eq!(rows[0]["metadata"]["couponCode"], Value::Null);
}
