//! Creating, reading, listing and cancelling orders as a user.

use serde_json::json;

use crate::support::{spawn_app, Auth};

#[test]
fn create_snapshots_promo_and_coupon_pricing_with_items_and_first_history_row() {
    let app = spawn_app();
    let r = app.post_json(
        "/api/v1/orders",
        Auth::User("alice"),
        &json!({"planId": "vps-basic", "imageId": "ubuntu-22-04", "duration": "MONTHLY", "couponCode": "hemat20"}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let o = r.data();
    assert_eq!(o["userId"], "alice");
    assert_eq!(o["status"], "PENDING_PAYMENT");
    assert_eq!(o["planName"], "VPS Basic");
    assert_eq!(o["imageName"], "Ubuntu 22.04");
    assert_eq!(o["duration"], "MONTHLY");
    assert_eq!(
        o["pricing"],
        json!({"basePrice": 150000, "promoDiscount": 15000, "couponCode": "HEMAT20",
               "couponDiscount": 27000, "finalPrice": 108000, "currency": "IDR"})
    );
    assert_eq!(o["finalPrice"], 108000);
    assert_eq!(o["currency"], "IDR");
    assert_eq!(o["provisioningTask"], json!(null));
    assert_eq!(o["paidAt"], json!(null));
    let items = o["items"].as_array().expect("items");
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["itemType"], "PLAN");
    assert_eq!(items[0]["referenceId"], "vps-basic");
    assert_eq!(
        items[0]["description"],
        "VPS Basic - 1 vCPU, 1024MB RAM, 25GB SSD"
    );
    assert_eq!(items[0]["unitPrice"], 150000);
    assert_eq!(items[0]["quantity"], 1);
    assert_eq!(items[0]["totalPrice"], 150000);
    assert_eq!(items[1]["itemType"], "IMAGE");
    assert_eq!(items[1]["referenceId"], "ubuntu-22-04");
    assert_eq!(items[1]["description"], "Ubuntu 22.04");
    assert_eq!(items[1]["unitPrice"], 0);
    let created = o["createdAt"].as_str().expect("createdAt");
    assert_eq!(created.len(), 24, "RFC 3339 with milliseconds: {created}");
    assert!(created.ends_with('Z'));
    let id = r.id();
    assert!(uuid::Uuid::parse_str(&id).is_ok());

    let detail = app.admin_order(&id);
    let history = detail.data()["statusHistory"]
        .as_array()
        .expect("history")
        .clone();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["previousStatus"], "");
    assert_eq!(history[0]["newStatus"], "PENDING_PAYMENT");
    assert_eq!(history[0]["actor"], "user:alice");
}

/// SPEC §1: new ids are time-ordered UUID v7, so ids minted later sort later
/// (and rows created together share storage pages).
#[test]
fn new_orders_items_tasks_and_history_rows_get_time_ordered_v7_ids() {
    let app = spawn_app();
    let first = app.create_order("alice").id();
    let second = app.create_order("alice").id();
    assert_eq!(app.pay(&second).status, 200);
    let detail = app.admin_order(&second);
    let o = detail.data();
    let mut ids = vec![first.clone(), second.clone()];
    ids.extend(
        o["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|i| i["id"].as_str().expect("item id").to_string()),
    );
    ids.extend(
        o["statusHistory"]
            .as_array()
            .expect("history")
            .iter()
            .map(|h| h["id"].as_str().expect("row id").to_string()),
    );
    ids.push(
        o["provisioningTask"]["id"]
            .as_str()
            .expect("task id")
            .to_string(),
    );
    for id in &ids {
        let parsed = uuid::Uuid::parse_str(id).expect("a UUID");
        assert_eq!(parsed.get_version_num(), 7, "{id} is not v7");
    }
    let (a, b) = (
        uuid::Uuid::parse_str(&first).expect("id"),
        uuid::Uuid::parse_str(&second).expect("id"),
    );
    assert!(a < b, "the later order's id sorts after the earlier one's");
}

/// A user's GET of one order is served from rendered bytes while the order
/// is unchanged (store::views). Every change must show on the very next
/// read, whoever made it: the user, an operator, or the provisioning sweep.
#[test]
fn a_users_view_of_an_order_follows_every_change_at_once() {
    let app = spawn_app();
    let id = app.create_order("alice").id();
    let path = format!("/api/v1/orders/{id}");
    let read = |who: &str| {
        let r = app.get(&path, Auth::User(who));
        assert_eq!(r.status, 200, "{}", r.text);
        r.data().clone()
    };
    assert_eq!(read("alice")["status"], "PENDING_PAYMENT");
    assert_eq!(read("alice")["status"], "PENDING_PAYMENT", "a second read");
    let theirs = app.get(&path, Auth::User("bob"));
    assert_eq!(
        (theirs.status, theirs.code()),
        (403, "ORDER_ACCESS_DENIED"),
        "a kept rendering is still only the owner's"
    );

    assert_eq!(app.pay(&id).status, 200);
    assert_ne!(read("alice")["status"], "PENDING_PAYMENT");
    app.wait_for_status(&id, &["ACTIVE"], std::time::Duration::from_secs(20));
    let active = read("alice");
    assert_eq!(active["status"], "ACTIVE", "the sweep's change shows");
    assert!(active["provisioningTask"]["ipv4Public"].is_string());
    assert_eq!(read("alice"), active);

    let suspend = app.post_json(
        &format!("/api/v1/internal/orders/{id}/suspend"),
        Auth::Admin,
        &json!({"reason": "abuse report"}),
    );
    assert_eq!(suspend.status, 200, "{}", suspend.text);
    let suspended = read("alice");
    assert_eq!(suspended["status"], "SUSPENDED");
    assert_eq!(suspended["suspendReason"], suspend.data()["suspendReason"]);

    let expires = "2031-01-31T00:00:00.000Z";
    let moved = app.post_json(
        &format!("/api/v1/internal/orders/{id}/expiry"),
        Auth::Admin,
        &json!({"expiresAt": expires}),
    );
    assert_eq!(moved.status, 200, "{}", moved.text);
    assert_eq!(read("alice")["expiresAt"], expires);

    // An admin suspension is the admin's to end; once lifted, the owner can.
    let held = app.post_empty(&format!("{path}/terminate"), Auth::User("alice"));
    assert_eq!(held.status, 409, "{}", held.text);
    assert_eq!(read("alice")["status"], "SUSPENDED");
    let lifted = app.post_empty(
        &format!("/api/v1/internal/orders/{id}/unsuspend"),
        Auth::Admin,
    );
    assert_eq!(lifted.status, 200, "{}", lifted.text);
    assert_eq!(read("alice")["status"], "ACTIVE");
    let ended = app.post_empty(&format!("{path}/terminate"), Auth::User("alice"));
    assert_eq!(ended.status, 200, "{}", ended.text);
    assert_eq!(read("alice")["status"], "TERMINATED");
}

#[test]
fn a_user_reads_only_their_own_orders() {
    let app = spawn_app();
    let id = app.create_order("alice").id();
    let mine = app.get(&format!("/api/v1/orders/{id}"), Auth::User("alice"));
    assert_eq!(mine.status, 200);
    assert_eq!(mine.data()["id"], id.as_str());
    assert!(
        mine.data().get("statusHistory").is_none(),
        "users never see history"
    );

    let theirs = app.get(&format!("/api/v1/orders/{id}"), Auth::User("bob"));
    assert_eq!(theirs.status, 403);
    assert_eq!(theirs.code(), "ORDER_ACCESS_DENIED");

    let missing = app.get(
        &format!("/api/v1/orders/{}", uuid::Uuid::new_v4()),
        Auth::User("alice"),
    );
    assert_eq!(missing.status, 404);
    assert_eq!(missing.code(), "ORDER_NOT_FOUND");

    let bad = app.get("/api/v1/orders/not-a-uuid", Auth::User("alice"));
    assert_eq!(bad.status, 400);
    assert_eq!(bad.code(), "BAD_REQUEST");
    assert_eq!(bad.body["error"]["details"]["fields"][0]["field"], "id");
}

#[test]
fn list_pages_newest_first_with_meta_and_status_filter() {
    let app = spawn_app();
    let ids: Vec<String> = (0..5).map(|_| app.create_order("alice").id()).collect();
    app.create_order("bob");
    let cancel = app.post_empty(
        &format!("/api/v1/orders/{}/cancel", ids[1]),
        Auth::User("alice"),
    );
    assert_eq!(cancel.status, 200);

    let page1 = app.get("/api/v1/orders?page=1&limit=2", Auth::User("alice"));
    assert_eq!(page1.status, 200);
    assert_eq!(
        page1.body["meta"],
        json!({"page": 1, "limit": 2, "total": 5, "totalPages": 3})
    );
    let got: Vec<&str> = page1
        .data()
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, vec![ids[4].as_str(), ids[3].as_str()]);

    let page3 = app.get("/api/v1/orders?page=3&limit=2", Auth::User("alice"));
    let got: Vec<&str> = page3
        .data()
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, vec![ids[0].as_str()]);

    let beyond = app.get("/api/v1/orders?page=9&limit=2", Auth::User("alice"));
    assert_eq!(beyond.data().as_array().unwrap().len(), 0);
    assert_eq!(beyond.body["meta"]["total"], 5);

    let defaults = app.get("/api/v1/orders", Auth::User("alice"));
    assert_eq!(
        defaults.body["meta"],
        json!({"page": 1, "limit": 10, "total": 5, "totalPages": 1})
    );
    for o in defaults.data().as_array().unwrap() {
        assert_eq!(o["userId"], "alice");
        assert!(o.get("statusHistory").is_none());
    }

    let canceled = app.get("/api/v1/orders?status=CANCELED", Auth::User("alice"));
    assert_eq!(canceled.body["meta"]["total"], 1);
    assert_eq!(canceled.data()[0]["id"], ids[1].as_str());
    let pending = app.get("/api/v1/orders?status=PENDING_PAYMENT", Auth::User("alice"));
    assert_eq!(pending.body["meta"]["total"], 4);

    let empty = app.get("/api/v1/orders", Auth::User("carol"));
    assert_eq!(
        empty.body["meta"],
        json!({"page": 1, "limit": 10, "total": 0, "totalPages": 0})
    );

    for bad in [
        "page=0",
        "limit=0",
        "limit=1000",
        "limit=-5",
        "page=abc",
        "status=NOPE",
        "status=paid",
    ] {
        let r = app.get(&format!("/api/v1/orders?{bad}"), Auth::User("alice"));
        assert_eq!(r.status, 400, "{bad}");
        assert_eq!(r.code(), "BAD_REQUEST", "{bad}");
    }
}

#[test]
fn users_cancel_their_own_unpaid_orders_only() {
    let app = spawn_app();
    let id = app.create_order("alice").id();
    let path = format!("/api/v1/orders/{id}/cancel");

    let foreign = app.post_empty(&path, Auth::User("bob"));
    assert_eq!(foreign.status, 403);
    assert_eq!(foreign.code(), "ORDER_ACCESS_DENIED");

    // curl -X POST sends no body and no content type.
    let ok = app.post_empty(&path, Auth::User("alice"));
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert_eq!(ok.data()["status"], "CANCELED");

    let again = app.post_empty(&path, Auth::User("alice"));
    assert_eq!(again.status, 409);
    assert_eq!(again.code(), "ORDER_STATUS_CONFLICT");
    assert_eq!(
        again.body["error"]["details"],
        json!({"currentStatus": "CANCELED", "requestedStatus": "CANCELED"})
    );

    let paid_id = app.create_order("alice").id();
    app.pay(&paid_id);
    let late = app.post_empty(
        &format!("/api/v1/orders/{paid_id}/cancel"),
        Auth::User("alice"),
    );
    assert_eq!(late.status, 409);
    // The provisioner may already have moved it on; any of these is a conflict.
    let current = late.body["error"]["details"]["currentStatus"]
        .as_str()
        .unwrap();
    assert!(
        ["PAID", "PROVISIONING", "ACTIVE"].contains(&current),
        "{current}"
    );

    let history = app.admin_order(&id).data()["statusHistory"].clone();
    assert_eq!(history[1]["previousStatus"], "PENDING_PAYMENT");
    assert_eq!(history[1]["newStatus"], "CANCELED");
    assert_eq!(history[1]["actor"], "user:alice");
}

#[test]
fn validation_names_every_bad_field_and_writes_nothing() {
    let app = spawn_app();
    let r = app.post_json(
        "/api/v1/orders",
        Auth::User("alice"),
        &json!({"planId": 7, "duration": "WEEKLY", "hostname": "9bad", "colour": "red",
                "sshPublicKeys": ["not a key"]}),
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.code(), "BAD_REQUEST");
    let fields: Vec<&str> = r.body["error"]["details"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    for f in [
        "planId",
        "imageId",
        "duration",
        "hostname",
        "colour",
        "sshPublicKeys[0]",
    ] {
        assert!(fields.contains(&f), "{f} missing from {fields:?}");
    }
    let list = app.get("/api/v1/internal/orders", Auth::Admin);
    assert_eq!(list.body["meta"]["total"], 0);
}

#[test]
fn region_hostname_and_keys_are_snapshotted_for_provisioning() {
    let app = spawn_app();
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICrc/SKQ2lxYjKAY5aGy0IyKZvZJJarimIXYH8ti5R7p alice@laptop";
    let r = app.post_json(
        "/api/v1/orders",
        Auth::User("alice"),
        &json!({"planId": "vps-basic", "imageId": "ubuntu-22-04", "duration": "ANNUAL",
                "region": "nyc3", "hostname": "web-1", "sshPublicKeys": [key]}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let paid = app.pay(&r.id());
    let task = &paid.data()["provisioningTask"];
    assert_eq!(task["doRegion"], "nyc3");
    assert_eq!(task["doSize"], "s-1vcpu-1gb");
    assert_eq!(task["doImage"], "ubuntu-22-04-x64");

    let outside = app.post_json(
        "/api/v1/orders",
        Auth::User("alice"),
        &json!({"planId": "vps-basic", "imageId": "ubuntu-22-04", "duration": "MONTHLY", "region": "ams3"}),
    );
    assert_eq!(outside.status, 400);
    assert_eq!(
        outside.body["error"]["details"]["fields"][0]["field"],
        "region"
    );

    let eleven: Vec<&str> = vec![key; 11];
    let too_many = app.post_json(
        "/api/v1/orders",
        Auth::User("alice"),
        &json!({"planId": "vps-basic", "imageId": "ubuntu-22-04", "duration": "MONTHLY", "sshPublicKeys": eleven}),
    );
    assert_eq!(too_many.status, 400);
}

#[test]
fn rate_limit_caps_order_creation_per_user() {
    let app = crate::support::spawn_app_with(|c| c.server.order_rate_limit_per_minute = 2);
    app.create_order("alice");
    app.create_order("alice");
    let third = app.post_json(
        "/api/v1/orders",
        Auth::User("alice"),
        &json!({"planId": "vps-basic", "imageId": "ubuntu-22-04", "duration": "MONTHLY"}),
    );
    assert_eq!(third.status, 429);
    assert_eq!(third.code(), "RATE_LIMIT_EXCEEDED");
    let retry: u64 = third
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry));
    app.create_order("bob");
}

/// SPEC §12: a page past the end answers from the counts, for every filter.
#[test]
fn a_page_past_the_end_is_empty_with_the_true_total() {
    let app = spawn_app();
    for _ in 0..3 {
        app.create_order("alice");
    }
    for (path, auth) in [
        (
            "/api/v1/orders?page=4294967295&limit=100",
            Auth::User("alice"),
        ),
        (
            "/api/v1/orders?page=2&limit=3&status=PENDING_PAYMENT",
            Auth::User("alice"),
        ),
        ("/api/v1/internal/orders?page=99999&limit=100", Auth::Admin),
        (
            "/api/v1/internal/orders?page=99999&userId=alice",
            Auth::Admin,
        ),
        (
            "/api/v1/internal/orders?page=99999&status=PENDING_PAYMENT",
            Auth::Admin,
        ),
    ] {
        let r = app.get(path, auth);
        assert_eq!(r.status, 200, "{path}: {}", r.text);
        assert_eq!(r.body["data"], serde_json::json!([]), "{path}");
        assert_eq!(r.body["meta"]["total"], 3, "{path}");
    }
}
