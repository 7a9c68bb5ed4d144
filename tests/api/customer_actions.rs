//! Customers operate their own servers (SPEC §14) against the DigitalOcean
//! fake, which counts the actions that took effect per droplet and type.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::fake_do::{DropletScript, FakeDo};
use crate::support::{spawn_app_with, wait_for, Auth, Resp, TestApp};

const WAIT: Duration = Duration::from_secs(30);

fn ready() -> FakeDo {
    let fake = FakeDo::start();
    fake.set_default_script(DropletScript::new().active_after(1).ip_after(1));
    fake.set_action_delay(Duration::from_millis(200));
    fake
}

/// The daemon on `fake` with `cooldown` seconds between a customer's actions.
fn app_on(fake: &FakeDo, cooldown: u64) -> TestApp {
    spawn_app_with(|c| {
        crate::support::use_fake_do(c, fake);
        c.actions.cooldown_seconds = cooldown;
    })
}

fn active_order(app: &TestApp, user: &str) -> (String, u64) {
    let id = app.create_order(user).id();
    assert_eq!(app.pay(&id).status, 200);
    let r = app.wait_for_status(&id, &["ACTIVE"], WAIT);
    let droplet = r.data()["provisioningTask"]["dropletId"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .expect("droplet id");
    (id, droplet)
}

fn ask(app: &TestApp, user: &str, id: &str, body: Value) -> Resp {
    app.post_json(
        &format!("/api/v1/orders/{id}/actions"),
        Auth::User(user),
        &body,
    )
}

/// Sweeps until the action has ended; returns it as its owner reads it.
fn settle(app: &TestApp, user: &str, id: &str, action: &str) -> Value {
    let path = format!("/api/v1/orders/{id}/actions/{action}");
    let done = wait_for(WAIT, || {
        app.sweep();
        let r = app.get(&path, Auth::User(user));
        assert_eq!(r.status, 200, "{}", r.text);
        let status = r.data()["status"].as_str().unwrap_or("").to_string();
        (!matches!(status.as_str(), "pending" | "running")).then(|| r.data().clone())
    });
    done.unwrap_or_else(|| panic!("never ended: {}", app.get(&path, Auth::User(user)).text))
}

fn task(app: &TestApp, id: &str) -> Value {
    app.admin_order(id).data()["provisioningTask"].clone()
}

/// Every action request the fake received, of any type and droplet.
fn actions_received(fake: &FakeDo) -> usize {
    [
        "reboot",
        "power_cycle",
        "shutdown",
        "power_off",
        "power_on",
        "rebuild",
    ]
    .iter()
    .map(|k| fake.action_requests_total(k).received)
    .sum()
}

#[test]
fn every_type_takes_effect_exactly_once_and_leaves_the_droplet_as_asked() {
    let fake = ready();
    let app = app_on(&fake, 0);
    let (id, droplet) = active_order(&app, "alice");
    let steps = [
        (json!({"type": "reboot"}), "active"),
        (json!({"type": "power_cycle"}), "active"),
        (json!({"type": "shutdown"}), "off"),
        (json!({"type": "power_on"}), "active"),
        (json!({"type": "power_off"}), "off"),
        (json!({"type": "rebuild", "imageId": "debian-12"}), "active"),
    ];
    let items_before = app.admin_order(&id).data()["items"].clone();
    for (body, after) in steps {
        let kind = body["type"].as_str().unwrap_or_default().to_string();
        let r = ask(&app, "alice", &id, body);
        assert_eq!(r.status, 202, "{kind}: {}", r.text);
        assert_eq!(r.data()["status"], "pending");
        assert_eq!(r.data()["type"], kind.as_str());
        assert_eq!(r.data()["orderId"], id.as_str());
        assert_eq!(r.data()["requestedBy"], "user:alice");
        let done = settle(
            &app,
            "alice",
            &id,
            r.data()["id"].as_str().unwrap_or_default(),
        );
        assert_eq!(done["status"], "completed", "{kind}: {done}");
        assert!(done["startedAt"].is_string() && done["completedAt"].is_string());
        assert_eq!(fake.action_requests(droplet, &kind).accepted, 1, "{kind}");
        assert_eq!(
            fake.droplet_status(droplet).as_deref(),
            Some(after),
            "{kind}"
        );
        assert_eq!(task(&app, &id)["dropletStatus"], after, "{kind}");
    }
    // The rebuild: the order shows the new image, the priced items stay.
    let order = app.admin_order(&id);
    assert_eq!(order.data()["imageId"], "debian-12");
    assert_eq!(order.data()["imageName"], "Debian 12");
    assert_eq!(order.data()["items"], items_before);
    assert_eq!(order.data()["provisioningTask"]["doImage"], "debian-12-x64");
    assert_eq!(
        fake.droplet_image(droplet).as_deref(),
        Some("debian-12-x64")
    );
    assert_eq!(order.data()["status"], "ACTIVE");
    // Newest first, on the list and on the admin detail.
    let list = app.get(
        &format!("/api/v1/orders/{id}/actions?limit=2"),
        Auth::User("alice"),
    );
    assert_eq!(list.status, 200, "{}", list.text);
    assert_eq!(list.body["meta"]["total"], 6);
    let kinds: Vec<&str> = list
        .data()
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["rebuild", "power_off"]);
    let detail = order.data()["actions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(detail.len(), 6);
    assert_eq!(detail[0]["type"], "rebuild");
    assert_eq!(detail[0]["imageId"], "debian-12");
}

#[test]
fn every_refusal_has_its_code_and_details_and_sends_nothing() {
    let fake = ready();
    fake.set_action_delay(Duration::from_millis(1500));
    let app = app_on(&fake, 0);
    let (id, _) = active_order(&app, "alice");
    let unpaid = app.create_order("alice").id();

    let r = ask(&app, "mallory", &id, json!({"type": "reboot"}));
    assert_eq!(
        (r.status, r.code()),
        (403, "ORDER_ACCESS_DENIED"),
        "{}",
        r.text
    );
    let r = ask(&app, "alice", &unpaid, json!({"type": "reboot"}));
    assert_eq!(
        (r.status, r.code()),
        (409, "ORDER_STATUS_CONFLICT"),
        "{}",
        r.text
    );
    assert_eq!(
        r.body["error"]["details"]["currentStatus"],
        "PENDING_PAYMENT"
    );
    assert!(
        r.body["error"]["details"]["requestedStatus"].is_null(),
        "{}",
        r.text
    );
    let r = ask(&app, "alice", &id, json!({"type": "power_on"}));
    assert_eq!(
        (r.status, r.code()),
        (409, "DROPLET_STATE_CONFLICT"),
        "{}",
        r.text
    );
    assert_eq!(r.body["error"]["details"]["dropletStatus"], "active");

    let first = ask(&app, "alice", &id, json!({"type": "reboot"}));
    assert_eq!(first.status, 202, "{}", first.text);
    let r = ask(&app, "alice", &id, json!({"type": "power_off"}));
    assert_eq!(
        (r.status, r.code()),
        (409, "ACTION_IN_PROGRESS"),
        "{}",
        r.text
    );
    assert_eq!(r.body["error"]["details"]["actionId"], first.data()["id"]);
    // Nothing was sent for any refusal (the accepted reboot may be under way).
    assert_eq!(
        actions_received(&fake),
        fake.action_requests_total("reboot").received
    );
    settle(
        &app,
        "alice",
        &id,
        first.data()["id"].as_str().unwrap_or_default(),
    );

    // A lifecycle action owed on an ACTIVE order: unsuspend's power_on.
    assert_eq!(app.admin_post(&id, "suspend", json!({})).status, 200);
    let r = ask(&app, "alice", &id, json!({"type": "reboot"}));
    assert_eq!(
        (r.status, r.code()),
        (409, "ORDER_STATUS_CONFLICT"),
        "a suspended server stays off"
    );
    assert_eq!(app.admin_post(&id, "unsuspend", json!({})).status, 200);
    let r = ask(&app, "alice", &id, json!({"type": "reboot"}));
    assert_eq!(
        (r.status, r.code()),
        (409, "ACTION_IN_PROGRESS"),
        "{}",
        r.text
    );
    assert!(
        r.body["error"]["details"]["actionId"].is_null(),
        "{}",
        r.text
    );
    // The suspension's power off and the unsuspension's power on are the
    // lifecycle's; of the customer's asks only the first reboot was sent.
    assert_eq!(fake.action_requests_total("reboot").received, 1);
}

#[test]
fn the_cooldown_answers_429_with_retry_after_and_admins_are_not_held_by_it() {
    let fake = ready();
    let app = app_on(&fake, 60);
    let (id, droplet) = active_order(&app, "alice");
    let first = ask(&app, "alice", &id, json!({"type": "reboot"}));
    assert_eq!(first.status, 202, "{}", first.text);
    settle(
        &app,
        "alice",
        &id,
        first.data()["id"].as_str().unwrap_or_default(),
    );
    let r = app.post_empty(&format!("/api/v1/orders/{id}/reboot"), Auth::User("alice"));
    assert_eq!((r.status, r.code()), (429, "ACTION_COOLDOWN"), "{}", r.text);
    let wait: u64 = r
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!((1..=60).contains(&wait), "{wait}");
    assert_eq!(r.body["error"]["details"]["retryAfter"], wait);

    let admin = app.post_json(
        &format!("/api/v1/internal/orders/{id}/actions"),
        Auth::Admin,
        &json!({"type": "power_off"}),
    );
    assert_eq!(admin.status, 202, "{}", admin.text);
    assert_eq!(admin.data()["requestedBy"], "admin");
    let path = format!(
        "/api/v1/internal/orders/{id}/actions/{}",
        admin.data()["id"].as_str().unwrap_or_default()
    );
    let done = wait_for(WAIT, || {
        app.sweep();
        let r = app.get(&path, Auth::Admin);
        (r.data()["status"] == "completed").then_some(r)
    });
    assert!(done.is_some(), "{}", app.get(&path, Auth::Admin).text);
    assert_eq!(fake.action_requests(droplet, "reboot").accepted, 1);
    assert_eq!(fake.action_requests(droplet, "power_off").accepted, 1);
    assert_eq!(fake.droplet_status(droplet).as_deref(), Some("off"));
}

#[test]
fn a_suspend_cancels_a_pending_power_on_and_the_server_ends_off() {
    let fake = ready();
    let app = app_on(&fake, 0);
    let (id, droplet) = active_order(&app, "alice");
    let off = ask(&app, "alice", &id, json!({"type": "power_off"}));
    settle(
        &app,
        "alice",
        &id,
        off.data()["id"].as_str().unwrap_or_default(),
    );
    // The droplet refuses the power_on for a while (the reconciler backs off),
    // so the suspend below lands while it is still pending.
    fake.lock_next_droplet_actions(3);
    let on = app.post_empty(
        &format!("/api/v1/orders/{id}/power-on"),
        Auth::User("alice"),
    );
    assert_eq!(on.status, 202, "{}", on.text);
    assert_eq!(app.admin_post(&id, "suspend", json!({})).status, 200);
    let canceled = settle(
        &app,
        "alice",
        &id,
        on.data()["id"].as_str().unwrap_or_default(),
    );
    assert_eq!(canceled["status"], "canceled");
    assert_eq!(canceled["errorCode"], "CANCELED_BY_LIFECYCLE");
    assert!(canceled["errorMessage"]
        .as_str()
        .unwrap_or("")
        .contains("SUSPENDED"));
    wait_for(WAIT, || {
        app.sweep();
        task(&app, &id)["pendingAction"].is_null().then_some(())
    })
    .expect("the suspension's power off is confirmed");
    assert_eq!(fake.action_requests(droplet, "power_on").accepted, 0);
    assert_eq!(fake.droplet_status(droplet).as_deref(), Some("off"));
}

#[test]
fn a_locked_droplet_is_retried_until_the_action_completes_once() {
    let fake = ready();
    let app = app_on(&fake, 0);
    let (id, droplet) = active_order(&app, "alice");
    fake.lock_next_droplet_actions(2);
    let r = app.post_empty(&format!("/api/v1/orders/{id}/reboot"), Auth::User("alice"));
    assert_eq!(r.status, 202, "{}", r.text);
    let done = settle(
        &app,
        "alice",
        &id,
        r.data()["id"].as_str().unwrap_or_default(),
    );
    assert_eq!(done["status"], "completed", "{done}");
    let count = fake.action_requests(droplet, "reboot");
    assert_eq!((count.received, count.accepted), (3, 1));
}

#[test]
fn bad_input_is_400_naming_the_field_and_stores_nothing() {
    let fake = ready();
    let app = app_on(&fake, 0);
    let (id, _) = active_order(&app, "alice");
    let cases = [
        (json!({"type": "explode"}), "type"),
        (json!({}), "type"),
        (json!({"type": "rebuild"}), "imageId"),
        (json!({"type": "rebuild", "imageId": "centos-7"}), "imageId"),
        (
            json!({"type": "rebuild", "imageId": "no-such-image"}),
            "imageId",
        ),
        (json!({"type": "reboot", "imageId": "debian-12"}), "imageId"),
        (json!({"type": "reboot", "force": true}), "force"),
    ];
    for (body, field) in cases {
        let r = ask(&app, "alice", &id, body.clone());
        assert_eq!(r.status, 400, "{body}: {}", r.text);
        let fields = r.body["error"]["details"]["fields"].to_string();
        assert!(fields.contains(field), "{body}: {}", r.text);
    }
    let r = ask(&app, "alice", "not-a-uuid", json!({"type": "reboot"}));
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains("\"id\""), "{}", r.text);
    let r = app.get(
        &format!("/api/v1/orders/{id}/actions/nope"),
        Auth::User("alice"),
    );
    assert!(r.status == 400 && r.text.contains("actionId"), "{}", r.text);
    let list = app.get(&format!("/api/v1/orders/{id}/actions"), Auth::User("alice"));
    assert_eq!(list.body["meta"]["total"], 0, "{}", list.text);
    assert_eq!(actions_received(&fake), 0);
}

#[test]
fn an_idempotency_key_replays_the_same_action() {
    let fake = ready();
    let app = app_on(&fake, 0);
    let (id, droplet) = active_order(&app, "alice");
    let path = format!("/api/v1/orders/{id}/actions");
    let send = || {
        let body = serde_json::to_vec(&json!({"type": "reboot"})).expect("json");
        app.request(
            "POST",
            &path,
            Auth::User("alice"),
            &[("Idempotency-Key", "reboot-1")],
            Some(("application/json", &body)),
        )
    };
    let first = send();
    let again = send();
    assert_eq!(first.status, 202, "{}", first.text);
    assert_eq!((again.status, &again.text), (202, &first.text));
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    settle(
        &app,
        "alice",
        &id,
        first.data()["id"].as_str().unwrap_or_default(),
    );
    let list = app.get(&path, Auth::User("alice"));
    assert_eq!(list.body["meta"]["total"], 1);
    assert_eq!(fake.action_requests(droplet, "reboot").accepted, 1);
}

#[test]
fn an_action_that_keeps_failing_is_failed_after_max_attempts_with_the_reason() {
    let fake = ready();
    let app = spawn_app_with(|c| {
        crate::support::use_fake_do(c, &fake);
        c.actions.cooldown_seconds = 0;
        c.actions.max_attempts = 2;
    });
    let (id, droplet) = active_order(&app, "alice");
    fake.lock_next_droplet_actions(10);
    let r = app.post_empty(&format!("/api/v1/orders/{id}/reboot"), Auth::User("alice"));
    assert_eq!(r.status, 202, "{}", r.text);
    let action = r.data()["id"].as_str().unwrap_or_default().to_string();
    let seen = settle(&app, "alice", &id, &action);
    assert_eq!(seen["status"], "failed", "{seen}");
    assert_eq!(seen["errorCode"], "DROPLET_ACTION_FAILED");
    // The customer reads a fixed text; the operator reads DigitalOcean's.
    let customer_text = seen["errorMessage"].as_str().unwrap_or("").to_string();
    assert!(!customer_text.contains("locked"), "{customer_text}");
    let admin = app.get(
        &format!("/api/v1/internal/orders/{id}/actions/{action}"),
        Auth::Admin,
    );
    let reason = admin.data()["errorMessage"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(reason.contains("locked"), "{}", admin.text);
    let count = fake.action_requests(droplet, "reboot");
    assert_eq!((count.received, count.accepted), (2, 0));
    // The order itself is unharmed.
    assert_eq!(app.admin_order(&id).data()["status"], "ACTIVE");
}
