//! After ACTIVE (SPEC §9) against the real daemon on the sandbox cloud:
//! terminate, suspend, unsuspend, renewals, expiry changes, enforcement, and
//! the droplet action each status owes, carried out by the reconciler.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{spawn_app_with, Auth, Resp, TestApp};

const WAIT: Duration = Duration::from_secs(20);

fn task(r: &Resp) -> &Value {
    &r.data()["provisioningTask"]
}

/// Sweeps until no droplet action is owed; returns the admin view.
fn settle(app: &TestApp, id: &str) -> Resp {
    crate::support::wait_for(WAIT, || {
        app.sweep();
        let r = app.admin_order(id);
        task(&r)["pendingAction"].is_null().then_some(r)
    })
    .unwrap_or_else(|| panic!("action never confirmed: {}", app.admin_order(id).text))
}

fn rows(r: &Resp) -> Vec<(String, String)> {
    r.data()["statusHistory"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["previousStatus"].as_str().unwrap().to_string(),
                h["newStatus"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn activation_sets_the_period_and_every_order_shows_the_new_fields() {
    let app = spawn_app_with(|_| {});
    let pending = app.create_order("alice");
    for field in [
        "activatedAt",
        "expiresAt",
        "suspendedAt",
        "suspendReason",
        "terminatedAt",
        "terminationReason",
    ] {
        assert!(pending.data()[field].is_null(), "{field}: {}", pending.text);
    }
    let id = app.active_order("alice");
    let r = app.admin_order(&id);
    let activated = r.data()["activatedAt"].as_str().unwrap().to_string();
    let expires = r.data()["expiresAt"].as_str().unwrap().to_string();
    let a = vpsd::domain::time::parse_rfc3339(&activated).unwrap();
    let e = vpsd::domain::time::parse_rfc3339(&expires).unwrap();
    assert_eq!(e, vpsd::domain::expiry::add_months(a, 1));
    assert_eq!(r.data()["renewals"], json!([]));
    assert!(task(&r)["pendingAction"].is_null());
}

#[test]
fn suspend_powers_off_and_unsuspend_powers_on() {
    let app = spawn_app_with(|_| {});
    let id = app.active_order("alice");
    let r = app.admin_post(&id, "suspend", json!({"reason": "abuse report"}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.data()["status"], "SUSPENDED");
    assert_eq!(r.data()["suspendReason"], "ADMIN");
    assert!(r.data()["suspendedAt"].is_string());
    assert_eq!(task(&r)["pendingAction"], "power_off");
    let r = settle(&app, &id);
    assert_eq!(task(&r)["dropletStatus"], "off");

    let again = app.admin_post(&id, "suspend", json!({}));
    assert_eq!(again.status, 409);
    assert_eq!(again.code(), "ORDER_STATUS_CONFLICT");
    assert_eq!(again.body["error"]["details"]["currentStatus"], "SUSPENDED");
    assert_eq!(
        again.body["error"]["details"]["requestedStatus"],
        "SUSPENDED"
    );

    let r = app.post_empty(
        &format!("/api/v1/internal/orders/{id}/unsuspend"),
        Auth::Admin,
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.data()["status"], "ACTIVE");
    assert!(r.data()["suspendedAt"].is_null() && r.data()["suspendReason"].is_null());
    assert_eq!(task(&r)["pendingAction"], "power_on");
    let r = settle(&app, &id);
    assert_eq!(task(&r)["dropletStatus"], "active");
    let history = rows(&r);
    assert_eq!(
        &history[history.len() - 2..],
        &[
            ("ACTIVE".to_string(), "SUSPENDED".to_string()),
            ("SUSPENDED".to_string(), "ACTIVE".to_string())
        ]
    );
    let suspended_row = &r.data()["statusHistory"][history.len() - 2];
    assert_eq!(suspended_row["reason"], "abuse report");
    assert_eq!(suspended_row["metadata"]["suspendReason"], "ADMIN");
}

#[test]
fn owners_terminate_their_own_live_orders_only() {
    let app = spawn_app_with(|_| {});
    let id = app.active_order("alice");
    let path = format!("/api/v1/orders/{id}/terminate");
    let foreign = app.post_empty(&path, Auth::User("bob"));
    assert_eq!(foreign.status, 403);
    assert_eq!(foreign.code(), "ORDER_ACCESS_DENIED");
    let unpaid = app.create_order("alice").id();
    let early = app.post_empty(
        &format!("/api/v1/orders/{unpaid}/terminate"),
        Auth::User("alice"),
    );
    assert_eq!(early.status, 409);
    assert_eq!(
        early.body["error"]["details"]["requestedStatus"],
        "TERMINATED"
    );

    let r = app.post_empty(&path, Auth::User("alice"));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.data()["status"], "TERMINATED");
    assert_eq!(r.data()["terminationReason"], "USER_DELETED");
    assert!(r.data()["terminatedAt"].is_string());
    assert!(r.data().get("statusHistory").is_none());
    let r = settle(&app, &id);
    assert_eq!(task(&r)["dropletStatus"], "deleted");
    let last = r.data()["statusHistory"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["actor"], "user:alice");
    assert_eq!(last["metadata"]["terminationReason"], "USER_DELETED");
    let twice = app.post_empty(&path, Auth::User("alice"));
    assert_eq!(twice.status, 409);
}

#[test]
fn admins_terminate_failed_orders_for_policy_violations() {
    let app = spawn_app_with(|_| {});
    let id = app.active_order("alice");
    let r = app.admin_post(
        &id,
        "terminate",
        json!({"terminationReason": "POLICY_VIOLATION", "reason": "spam"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.data()["terminationReason"], "POLICY_VIOLATION");
    let bad = app.admin_post(
        &id,
        "terminate",
        json!({"terminationReason": "USER_DELETED"}),
    );
    assert_eq!(bad.status, 400, "{}", bad.text);
}

#[test]
fn renewals_extend_by_calendar_months_and_replay_under_a_key() {
    let app = spawn_app_with(|_| {});
    let id = app.active_order("alice");
    let before = app.admin_order(&id);
    let expires = before.data()["expiresAt"].as_str().unwrap().to_string();
    let body = json!({"periods": 3, "amount": 450000, "notes": "paid by transfer"});
    let path = format!("/api/v1/internal/orders/{id}/renewals");
    let key = [("Idempotency-Key", "renew-1")];
    let bytes = serde_json::to_vec(&body).unwrap();
    let first = app.request(
        "POST",
        &path,
        Auth::Admin,
        &key,
        Some(("application/json", &bytes)),
    );
    assert_eq!(first.status, 200, "{}", first.text);
    let e = vpsd::domain::time::parse_rfc3339(&expires).unwrap();
    let new_expiry = vpsd::domain::time::format_millis(vpsd::domain::expiry::add_months(e, 3));
    assert_eq!(first.data()["expiresAt"], new_expiry.as_str());
    let replay = app.request(
        "POST",
        &path,
        Auth::Admin,
        &key,
        Some(("application/json", &bytes)),
    );
    assert_eq!(replay.text, first.text);
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));

    let r = app.admin_order(&id);
    let renewals = r.data()["renewals"].as_array().unwrap();
    assert_eq!(renewals.len(), 1, "the replay renewed nothing");
    assert_eq!(renewals[0]["renewalType"], "MANUAL_RENEWAL");
    assert_eq!(renewals[0]["periods"], 3);
    assert_eq!(renewals[0]["amount"], 450000);
    assert_eq!(renewals[0]["previousExpiry"], expires.as_str());
    let last = r.data()["statusHistory"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["previousStatus"], "ACTIVE");
    assert_eq!(last["newStatus"], "RENEWED");
    assert_eq!(last["reason"], "paid by transfer");
    assert_eq!(last["metadata"]["newExpiry"], new_expiry.as_str());

    let bad = app.admin_post(&id, "renewals", json!({"periods": 13, "amount": -1}));
    assert_eq!(bad.status, 400);
    assert_eq!(
        bad.body["error"]["details"]["fields"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn expiry_moves_both_ways_and_enforcement_suspends_then_terminates() {
    let app = spawn_app_with(|c| {
        c.lifecycle.enforce = true;
        c.lifecycle.grace_seconds.insert("MONTHLY".into(), 2);
    });
    let id = app.active_order("alice");
    let past = vpsd::domain::time::format_millis(vpsd::domain::time::now_millis() - 1000);
    let r = app.admin_post(
        &id,
        "expiry",
        json!({"expiresAt": past, "reason": "correction"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.data()["status"],
        "ACTIVE",
        "the sweep applies the rules, not the call"
    );
    let r = app.wait_for_status(&id, &["SUSPENDED"], WAIT);
    assert_eq!(r.data()["suspendReason"], "EXPIRED");
    let refused = app.post_empty(
        &format!("/api/v1/internal/orders/{id}/unsuspend"),
        Auth::Admin,
    );
    assert_eq!(refused.status, 409);
    assert_eq!(refused.code(), "ORDER_EXPIRED");
    assert!(refused.body["error"]["details"]["expiresAt"].is_string());

    // Moving expiry into the future resumes an order suspended for expiry.
    let future = vpsd::domain::time::format_millis(vpsd::domain::time::now_millis() + 86_400_000);
    let r = app.admin_post(&id, "expiry", json!({"expiresAt": future}));
    assert_eq!(r.data()["status"], "ACTIVE", "{}", r.text);
    assert_eq!(task(&r)["pendingAction"], "power_on");
    let renewals = app.admin_order(&id).data()["renewals"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(renewals.last().unwrap()["renewalType"], "ADMIN_EXTENSION");
    assert_eq!(renewals.last().unwrap()["amount"], 0);

    // Past again: suspended at once, terminated once the 2 s grace is over.
    let past = vpsd::domain::time::format_millis(vpsd::domain::time::now_millis() - 1000);
    app.admin_post(&id, "expiry", json!({"expiresAt": past}));
    let r = app.wait_for_status(&id, &["TERMINATED"], WAIT);
    assert_eq!(r.data()["terminationReason"], "EXPIRED_NO_RENEWAL");
    let r = settle(&app, &id);
    assert_eq!(task(&r)["dropletStatus"], "deleted");
    let statuses: Vec<String> = rows(&r).into_iter().map(|(_, new)| new).collect();
    assert!(statuses.ends_with(&[
        "EXPIRY_CHANGED".to_string(),
        "SUSPENDED".to_string(),
        "TERMINATED".to_string()
    ]));
}

#[test]
fn grace_zero_terminates_at_expiry_without_suspending() {
    let app = spawn_app_with(|c| {
        c.lifecycle.enforce = true;
        c.lifecycle.grace_seconds.insert("MONTHLY".into(), 0);
    });
    let id = app.active_order("alice");
    let past = vpsd::domain::time::format_millis(vpsd::domain::time::now_millis() - 1000);
    app.admin_post(&id, "expiry", json!({"expiresAt": past}));
    let r = app.wait_for_status(&id, &["TERMINATED", "SUSPENDED"], WAIT);
    assert_eq!(r.data()["status"], "TERMINATED");
    assert!(!rows(&r).iter().any(|(_, new)| new == "SUSPENDED"));
}

#[test]
fn renewing_a_suspension_for_expiry_writes_the_event_then_the_resume() {
    let app = spawn_app_with(|c| {
        c.lifecycle.enforce = true;
    });
    let id = app.active_order("alice");
    let past = vpsd::domain::time::format_millis(vpsd::domain::time::now_millis() - 1000);
    app.admin_post(&id, "expiry", json!({"expiresAt": past}));
    app.wait_for_status(&id, &["SUSPENDED"], WAIT);
    let r = app.admin_post(&id, "renewals", json!({"amount": 150000}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.data()["status"], "ACTIVE");
    let r = settle(&app, &id);
    let history = rows(&r);
    assert_eq!(
        &history[history.len() - 2..],
        &[
            ("SUSPENDED".to_string(), "RENEWED".to_string()),
            ("SUSPENDED".to_string(), "ACTIVE".to_string())
        ]
    );
    assert_eq!(task(&r)["dropletStatus"], "active");
}

#[test]
fn lists_take_the_new_statuses() {
    let app = spawn_app_with(|_| {});
    let id = app.active_order("alice");
    app.admin_post(&id, "suspend", json!({}));
    let r = app.get("/api/v1/internal/orders?status=SUSPENDED", Auth::Admin);
    assert_eq!(r.status, 200);
    assert_eq!(r.body["meta"]["total"], 1);
    let r = app.get("/api/v1/orders?status=TERMINATED", Auth::User("alice"));
    assert_eq!(r.body["meta"]["total"], 0);
}

#[test]
fn the_admin_list_finds_what_lapses_before_a_date() {
    let app = spawn_app_with(|_| {});
    let soon = app.active_order("alice");
    let later = app.active_order("bob");
    let in_two_days = vpsd::domain::time::now_millis() + 2 * 86_400_000;
    let fmt = vpsd::domain::time::format_millis;
    app.admin_post(&soon, "expiry", json!({"expiresAt": fmt(in_two_days)}));
    let week = fmt(vpsd::domain::time::now_millis() + 7 * 86_400_000);
    let r = app.get(
        &format!("/api/v1/internal/orders?expiresBefore={week}"),
        Auth::Admin,
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["meta"]["total"], 1);
    assert_eq!(r.body["data"][0]["id"], soon.as_str());
    let _ = later;
    let bad = app.get(
        "/api/v1/internal/orders?expiresBefore=tomorrow",
        Auth::Admin,
    );
    assert_eq!(bad.status, 400);
}

#[test]
fn verify_checks_the_due_index_and_the_owed_actions() {
    if crate::support::skip_on_postgres("the due index and its surgery are redb tables") {
        return;
    }
    let mut app = spawn_app_with(|c| c.lifecycle.enforce = true);
    let id = app.active_order("alice");
    app.admin_post(&id, "suspend", json!({}));
    let other = app.active_order("bob");
    app.admin_post(&other, "renewals", json!({"amount": 1}));
    let path = app.config.storage.path.clone();
    let dir = app.dir.take();
    drop(app);
    let report = vpsd::store::backup::verify(&path).expect("a consistent file verifies");
    assert_eq!(report.orders, 2);
    assert_eq!(report.rows["orders_due"], 2);
    // The power_off may or may not be carried out yet (the reconciler is
    // woken at once); either way the set matches the tasks.
    assert!(report.rows["pending_actions"] <= 1);

    // An index entry that points at no due time is reported.
    let db = redb::Database::open(&path).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut due = txn.open_table(vpsd::store::tables::DUE).unwrap();
        due.insert((1, uuid::Uuid::new_v4().as_u128()), ()).unwrap();
    }
    txn.commit().unwrap();
    drop(db);
    let err = vpsd::store::backup::verify(&path).expect_err("a stray due entry");
    assert!(err.to_string().contains("orders_due"), "{err}");
    drop(dir);
}
