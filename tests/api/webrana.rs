//! What the later Webrana UIs call (SPEC §14), against the real daemon:
//! several statuses in one list filter, the caller's and the operator's
//! dashboard numbers, and the owner's auto-renew wish in every view and event.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::receiver::Receiver;
use crate::support::{add_webhook, spawn_app, spawn_app_with, Auth, Resp, TestApp};

const WAIT: Duration = Duration::from_secs(20);

fn ids(r: &Resp) -> Vec<&str> {
    assert_eq!(r.status, 200, "{}", r.text);
    r.data()
        .as_array()
        .expect("a list")
        .iter()
        .map(|o| o["id"].as_str().expect("id"))
        .collect()
}

fn total(r: &Resp) -> u64 {
    r.body["meta"]["total"].as_u64().expect("meta.total")
}

fn named_fields(r: &Resp) -> Vec<String> {
    r.body["error"]["details"]["fields"]
        .as_array()
        .map(|fields| {
            fields
                .iter()
                .filter_map(|f| f["field"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn cancel(app: &TestApp, id: &str, user: &str) {
    let r = app.post_empty(&format!("/api/v1/orders/{id}/cancel"), Auth::User(user));
    assert_eq!(r.status, 200, "{}", r.text);
}

fn final_price(app: &TestApp, id: &str) -> u64 {
    app.admin_order(id).data()["finalPrice"]
        .as_u64()
        .expect("finalPrice")
}

fn renew(app: &TestApp, id: &str, amount: u64) {
    let r = app.admin_post(id, "renewals", json!({ "amount": amount }));
    assert_eq!(r.status, 200, "{}", r.text);
}

fn patch_auto_renew(app: &TestApp, id: &str, user: &str, body: &Value) -> Resp {
    let bytes = serde_json::to_vec(body).expect("json");
    app.request(
        "PATCH",
        &format!("/api/v1/orders/{id}/auto-renew"),
        Auth::User(user),
        &[],
        Some(("application/json", &bytes)),
    )
}

#[test]
fn both_lists_take_several_statuses_newest_first_with_their_total() {
    let app = spawn_app();
    let a1 = app.create_order("alice").id();
    let a2 = app.active_order("alice");
    let a3 = app.create_order("alice").id();
    cancel(&app, &a3, "alice");
    let b1 = app.create_order("bob").id();
    let a4 = app.create_order("alice").id();
    let b2 = app.create_order("bob").id();
    cancel(&app, &b2, "bob");

    let mine = |query: &str| app.get(&format!("/api/v1/orders?{query}"), Auth::User("alice"));
    let r = mine("status=PENDING_PAYMENT,CANCELED");
    assert_eq!(ids(&r), [a4.as_str(), a3.as_str(), a1.as_str()]);
    assert_eq!(total(&r), 3);
    let r = mine("status=CANCELED,PENDING_PAYMENT&limit=2&page=2");
    assert_eq!(ids(&r), [a1.as_str()]);
    assert_eq!(
        (total(&r), r.body["meta"]["totalPages"].as_u64()),
        (3, Some(2))
    );
    let r = mine("status=ACTIVE,ACTIVE");
    assert_eq!((ids(&r), total(&r)), (vec![a2.as_str()], 1));
    let r = mine("status=ACTIVE,PENDING_PAYMENT,CANCELED");
    assert_eq!(
        ids(&r),
        [a4.as_str(), a3.as_str(), a2.as_str(), a1.as_str()]
    );

    let all = |query: &str| app.get(&format!("/api/v1/internal/orders?{query}"), Auth::Admin);
    let r = all("status=PENDING_PAYMENT,CANCELED");
    assert_eq!(
        ids(&r),
        [
            b2.as_str(),
            a4.as_str(),
            b1.as_str(),
            a3.as_str(),
            a1.as_str()
        ]
    );
    assert_eq!(total(&r), 5);
    let r = all("status=PENDING_PAYMENT,CANCELED&page=2&limit=2");
    assert_eq!((ids(&r), total(&r)), (vec![b1.as_str(), a3.as_str()], 5));
    let r = all("status=CANCELED,PENDING_PAYMENT&userId=bob");
    assert_eq!((ids(&r), total(&r)), (vec![b2.as_str(), b1.as_str()], 2));
    let r = all("status=ACTIVE,PAID");
    assert_eq!((ids(&r), total(&r)), (vec![a2.as_str()], 1));

    for bad in [
        "status=ACTIVE,NOPE",
        "status=ACTIVE,",
        "status=active",
        "status=",
    ] {
        for r in [mine(bad), all(bad)] {
            assert_eq!(
                (r.status, r.code()),
                (400, "BAD_REQUEST"),
                "{bad}: {}",
                r.text
            );
            assert_eq!(named_fields(&r), ["status"], "{bad}");
        }
    }
}

#[test]
fn each_user_sees_only_their_own_numbers() {
    let app = spawn_app();
    let active = app.active_order("alice");
    renew(&app, &active, 5_000);
    renew(&app, &active, 0);
    app.create_order("alice");
    let canceled = app.create_order("alice").id();
    cancel(&app, &canceled, "alice");
    let bobs = app.active_order("bob");
    app.create_order("bob");
    app.create_order("bob");

    let stats = |user: &str| {
        let r = app.get("/api/v1/orders/stats", Auth::User(user));
        assert_eq!(r.status, 200, "{}", r.text);
        r.body.clone()
    };
    assert_eq!(
        stats("alice"),
        json!({"data": {"activeServers": 1, "pendingOrders": 1,
            "totalSpent": final_price(&app, &active) + 5_000}})
    );
    assert_eq!(
        stats("bob"),
        json!({"data": {"activeServers": 1, "pendingOrders": 2,
            "totalSpent": final_price(&app, &bobs)}})
    );
    assert_eq!(
        stats("carol"),
        json!({"data": {"activeServers": 0, "pendingOrders": 0, "totalSpent": 0}})
    );
    // Not an order id: `/orders/stats` is its own route, with its own auth.
    let r = app.get("/api/v1/orders/stats", Auth::None);
    assert_eq!((r.status, r.code()), (401, "UNAUTHORIZED"));
    let r = app.post_empty("/api/v1/orders/stats", Auth::User("alice"));
    assert_eq!(r.status, 405, "{}", r.text);
}

#[test]
fn internal_stats_count_today_in_the_configured_zone() {
    let app = spawn_app_with(|c| c.console.timezone = "Asia/Jakarta".into());
    let zone = app.config.console.zone().expect("a zone");
    let now = vpsd::domain::time::now_millis();
    let (start, end) = vpsd::domain::stats::day_bounds(now, zone);
    assert!(start <= now && now < end);
    assert_eq!(
        (start + 7 * 3_600_000).rem_euclid(86_400_000),
        0,
        "midnight in Jakarta is 17:00 UTC"
    );
    // An order from a minute before midnight in Jakarta, paid today: its
    // payment is not in today's revenue, as it is not one of today's orders.
    let catalog = crate::support::shipped_catalog();
    let (mut order, coupon) = crate::support::sample_order(&catalog, "dave", 1);
    order.created_at = start - 60_000;
    let yesterday = order.id.to_string();
    let actor = vpsd::domain::Actor::User("dave".into());
    let change = vpsd::domain::lifecycle::create(order, &actor, start - 60_000);
    let create = vpsd::store::WriteOp::Create {
        change: Box::new(change),
        coupon,
        idempotency: None,
    };
    app.store.write_blocking(create).unwrap().unwrap();
    assert_eq!(app.pay(&yesterday).status, 200);
    app.wait_for_status(&yesterday, &["ACTIVE"], WAIT);

    let paid = app.active_order("alice");
    renew(&app, &paid, 7_000);
    app.create_order("bob");
    let canceled = app.create_order("carol").id();
    cancel(&app, &canceled, "carol");

    let r = app.get("/api/v1/internal/stats", Auth::Admin);
    assert_eq!(r.status, 200, "{}", r.text);
    let expected = json!({"data": {
        "ordersToday": 3,
        "revenueToday": final_price(&app, &paid) + 7_000,
        "pendingPayment": 1,
        "activeServers": 2,
        "byStatus": {"PENDING_PAYMENT": 1, "PAID": 0, "PROVISIONING": 0, "ACTIVE": 2,
            "FAILED": 0, "CANCELED": 1, "SUSPENDED": 0, "TERMINATED": 0},
    }});
    assert_eq!(r.body, expected);
    let r = app.get("/api/v1/internal/stats", Auth::User("alice"));
    assert_eq!((r.status, r.code()), (401, "API_KEY_MISSING"));
}

#[test]
fn a_timezone_that_is_not_one_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = crate::support::base_config(dir.path());
    assert_eq!(config.console.timezone, "UTC", "the default");
    config.validate().expect("valid");
    config.console.timezone = "Mars/Olympus".into();
    let message = config.validate().expect_err("refused").to_string();
    assert!(message.contains("console.timezone"), "{message}");
}

#[test]
fn auto_renew_is_the_owners_stored_wish_shown_everywhere() {
    let app = spawn_app();
    let id = app.create_order("alice").id();
    let user_view = |id: &str| app.get(&format!("/api/v1/orders/{id}"), Auth::User("alice"));
    assert_eq!(user_view(&id).data()["autoRenew"], false, "off by default");

    let r = patch_auto_renew(&app, &id, "alice", &json!({"autoRenew": true}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.data()["autoRenew"], true);
    assert_eq!(r.data()["status"], "PENDING_PAYMENT");
    assert_eq!(user_view(&id).data()["autoRenew"], true);
    let detail = app.admin_order(&id);
    assert_eq!(detail.data()["autoRenew"], true);
    assert_eq!(
        detail.data()["statusHistory"].as_array().map(Vec::len),
        Some(1),
        "no history row"
    );
    let listed = app.get("/api/v1/orders", Auth::User("alice"));
    assert_eq!(listed.data()[0]["autoRenew"], true);
    let listed = app.get("/api/v1/internal/orders", Auth::Admin);
    assert_eq!(listed.data()[0]["autoRenew"], true);

    // Refusals: the body first, naming the field, then the id and the owner.
    let refused = |body: &Value, field: &str| {
        let r = patch_auto_renew(&app, &id, "alice", body);
        assert_eq!(
            (r.status, r.code()),
            (400, "BAD_REQUEST"),
            "{body}: {}",
            r.text
        );
        assert_eq!(named_fields(&r), [field], "{body}");
    };
    refused(&json!({}), "autoRenew");
    refused(&json!({"autoRenew": "yes"}), "autoRenew");
    refused(&json!({"autoRenew": null}), "autoRenew");
    refused(&json!({"autoRenew": true, "chargeNow": true}), "chargeNow");
    let path = format!("/api/v1/orders/{id}/auto-renew");
    let r = app.request("PATCH", &path, Auth::User("alice"), &[], None);
    assert_eq!(
        (r.status, named_fields(&r)),
        (400, vec!["body".to_string()])
    );
    let r = app.request(
        "PATCH",
        &path,
        Auth::User("alice"),
        &[],
        Some(("text/plain", b"{\"autoRenew\": false}")),
    );
    assert_eq!((r.status, r.code()), (415, "UNSUPPORTED_MEDIA_TYPE"));
    let r = patch_auto_renew(&app, "not-a-uuid", "alice", &json!({"autoRenew": false}));
    assert_eq!((r.status, named_fields(&r)), (400, vec!["id".to_string()]));
    let r = patch_auto_renew(&app, &id, "bob", &json!({"autoRenew": false}));
    assert_eq!((r.status, r.code()), (403, "ORDER_ACCESS_DENIED"));
    let unknown = uuid::Uuid::new_v4().to_string();
    let r = patch_auto_renew(&app, &unknown, "alice", &json!({"autoRenew": false}));
    assert_eq!((r.status, r.code()), (404, "ORDER_NOT_FOUND"));
    let r = app.post_json(&path, Auth::User("alice"), &json!({"autoRenew": false}));
    assert_eq!((r.status, r.header("allow")), (405, Some("PATCH")));
    assert_eq!(
        user_view(&id).data()["autoRenew"],
        true,
        "nothing refused was stored"
    );

    // Kept across a restart; any status takes the wish, terminal ones too.
    let app = app.restart();
    let r = app.get(&format!("/api/v1/orders/{id}"), Auth::User("alice"));
    assert_eq!(r.data()["autoRenew"], true);
    cancel(&app, &id, "alice");
    let r = patch_auto_renew(&app, &id, "alice", &json!({"autoRenew": false}));
    assert_eq!((r.status, &r.data()["autoRenew"]), (200, &json!(false)));
    assert_eq!(r.data()["status"], "CANCELED");
}

#[test]
fn auto_renew_rides_on_the_events_and_the_expiry_reminder() {
    let hook = Receiver::start();
    let app = spawn_app_with(|c| {
        add_webhook(c, &hook.url(), &["*"]);
        c.lifecycle.enforce = true;
        c.lifecycle.remind_before_seconds = vec![2 * 86_400];
    });
    let id = app.active_order("alice");
    let r = patch_auto_renew(&app, &id, "alice", &json!({"autoRenew": true}));
    assert_eq!(r.status, 200, "{}", r.text);
    let soon = vpsd::domain::time::format_millis(vpsd::domain::time::now_millis() + 86_400_000);
    let r = app.admin_post(&id, "expiry", json!({ "expiresAt": soon }));
    assert_eq!(r.status, 200, "{}", r.text);
    let reminder = crate::support::wait_for(WAIT, || {
        app.sweep();
        hook.received()
            .into_iter()
            .find(|r| r.event_type() == "order.expiring")
    })
    .expect("the reminder is sent");
    assert_eq!(reminder.body["data"]["order"]["autoRenew"], true);
    let received = hook.received();
    let of = |kind: &str| {
        received
            .iter()
            .find(|r| r.event_type() == kind)
            .map(|r| r.body["data"]["order"]["autoRenew"].clone())
    };
    assert_eq!(of("order.created"), Some(json!(false)));
    assert_eq!(of("order.active"), Some(json!(false)));
    assert_eq!(of("order.expiry_changed"), Some(json!(true)));
    assert!(
        received
            .iter()
            .all(|r| r.event_type() != "order.auto_renew"),
        "the wish sends no event of its own"
    );
}
