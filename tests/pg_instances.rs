//! Two vpsd instances on one PostgreSQL database (SPEC §15, issue 24): every
//! route answers the same on either, conflicts between them are decided by
//! the database (the loser gets the 409 it would get on redb), and the
//! background work runs on one of them only, so a paid order gets exactly
//! one droplet however many instances see it.

mod support;

use std::sync::Barrier;
use std::time::Duration;

use serde_json::{json, Value};
use support::fake_do::FakeDo;
use support::{base_config, wait_for, Auth, Resp, TestApp};
use vpsd::config::StorageBackend;

/// Two apps on one fresh database and one fake DigitalOcean. Fields drop in
/// order: both apps stop before the fake they call goes away.
struct Pair {
    a: TestApp,
    b: TestApp,
    url: String,
    fake: FakeDo,
}

/// An app on the database at `url`, on `fake`, with background work on
/// (the scheduler polls every second).
fn instance(url: &str, fake: &FakeDo) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = base_config(dir.path());
    config.storage.backend = StorageBackend::Postgres;
    config.storage.postgres.url = Some(url.to_string());
    // Two apps per test, tests in parallel: keep the cluster's connections.
    config.storage.postgres.pool_size = 4;
    support::use_fake_do(&mut config, fake);
    support::start(config, Some(dir))
}

/// Both instances start at the same moment: the schema is created once,
/// under the advisory lock, whichever gets there first.
fn pair() -> Pair {
    let fake = FakeDo::start();
    let url = support::pg::cluster().fresh_database();
    let barrier = Barrier::new(2);
    let (a, b) = std::thread::scope(|s| {
        let start = || {
            barrier.wait();
            instance(&url, &fake)
        };
        let a = s.spawn(start);
        let b = s.spawn(start);
        (
            a.join().expect("instance A starts"),
            b.join().expect("instance B starts"),
        )
    });
    Pair { a, b, url, fake }
}

impl Pair {
    /// One value from the shared database.
    fn sql(&self, query: &str) -> String {
        support::pg::cluster().psql(&self.url, query)
    }
}

/// `f` on A and on B released together by a barrier: (A's answer, B's).
/// `f` is told which instance it runs on ("a" or "b").
fn at_once(p: &Pair, f: impl Fn(&TestApp, &str) -> Resp + Sync) -> (Resp, Resp) {
    let barrier = Barrier::new(2);
    let run = |app: &TestApp, name: &str| {
        barrier.wait();
        f(app, name)
    };
    std::thread::scope(|s| {
        let a = s.spawn(|| run(&p.a, "a"));
        let b = s.spawn(|| run(&p.b, "b"));
        (
            a.join().expect("A's request"),
            b.join().expect("B's request"),
        )
    })
}

/// Whether `app` says it runs the background work (`/health`).
fn leads(app: &TestApp) -> Option<bool> {
    let health = app.get("/api/v1/health", Auth::None);
    assert_eq!(health.status, 200, "{}", health.text);
    assert_eq!(health.data()["backend"], "postgres", "{}", health.text);
    health.data()["backgroundWork"].as_bool()
}

fn order_body(coupon: Option<&str>) -> Value {
    let mut body = json!({"planId": "vps-basic", "imageId": "ubuntu-22-04", "duration": "MONTHLY"});
    if let Some(code) = coupon {
        body["couponCode"] = json!(code);
    }
    body
}

#[test]
fn an_order_made_on_one_instance_reads_identically_on_the_other() {
    let p = pair();
    let id = p.a.create_order("alice").id();
    let user_path = format!("/api/v1/orders/{id}");
    let admin_path = format!("/api/v1/internal/orders/{id}");
    for (path, auth) in [
        (&user_path, Auth::User("alice")),
        (&admin_path, Auth::Admin),
    ] {
        let on_a = p.a.get(path, auth);
        let on_b = p.b.get(path, auth);
        assert_eq!(on_a.status, 200, "{path}: {}", on_a.text);
        assert_eq!(on_b.status, 200, "{path}: {}", on_b.text);
        assert_eq!(on_b.text, on_a.text, "{path} reads the same on both");
    }
    // The list on B has it, and the owner check holds there as on A.
    let list = p.b.get("/api/v1/orders", Auth::User("alice"));
    assert_eq!(list.status, 200, "{}", list.text);
    assert_eq!(list.body["data"][0]["id"], id.as_str(), "{}", list.text);
    let (not_a, not_b) = (
        p.a.get(&user_path, Auth::User("bob")),
        p.b.get(&user_path, Auth::User("bob")),
    );
    assert_eq!(
        (not_a.status, not_a.code()),
        (403, "ORDER_ACCESS_DENIED"),
        "{}",
        not_a.text
    );
    assert_eq!((not_b.status, not_b.text), (not_a.status, not_a.text));
}

#[test]
fn an_idempotency_key_used_on_one_instance_replays_byte_for_byte_on_the_other() {
    let p = pair();
    let body = serde_json::to_vec(&order_body(None)).expect("json");
    let post = |app: &TestApp, key: &str, body: &[u8]| {
        app.request(
            "POST",
            "/api/v1/orders",
            Auth::User("alice"),
            &[("Idempotency-Key", key)],
            Some(("application/json", body)),
        )
    };
    let first = post(&p.a, "order-on-a", &body);
    assert_eq!(first.status, 201, "{}", first.text);
    assert_ne!(first.header("idempotent-replayed"), Some("true"));
    let replayed = post(&p.b, "order-on-a", &body);
    assert_eq!(replayed.status, first.status);
    assert_eq!(
        replayed.text, first.text,
        "byte for byte the first response"
    );
    assert_eq!(replayed.header("idempotent-replayed"), Some("true"));
    // The same key with another body is refused on B as it is on one instance.
    let other = serde_json::to_vec(
        &json!({"planId": "vps-standard", "imageId": "ubuntu-22-04", "duration": "MONTHLY"}),
    )
    .expect("json");
    let reused = post(&p.b, "order-on-a", &other);
    assert_eq!(
        (reused.status, reused.code()),
        (422, "IDEMPOTENCY_KEY_REUSED"),
        "{}",
        reused.text
    );
    let total = p.a.get("/api/v1/internal/orders", Auth::Admin).body["meta"]["total"].clone();
    assert_eq!(total, 1, "one order for the key");
    assert_eq!(p.sql("select count(*) from orders"), "1");
}

#[test]
fn the_same_order_paid_on_both_at_once_is_paid_once() {
    let p = pair();
    // Several rounds: each must be decided by the database, not by timing.
    for round in 0..5 {
        let id = p.a.create_order("alice").id();
        let (on_a, on_b) = at_once(&p, |app, _| app.pay(&id));
        let mut statuses = [on_a.status, on_b.status];
        statuses.sort_unstable();
        assert_eq!(
            statuses,
            [200, 409],
            "round {round}: A {} / B {}",
            on_a.text,
            on_b.text
        );
        // The loser's answer is redb's for a second payment
        // (tests/api/payment.rs paid_twice_is_a_conflict_with_details).
        let loser = if on_a.status == 409 { &on_a } else { &on_b };
        assert_eq!(loser.code(), "PAYMENT_STATUS_CONFLICT", "{}", loser.text);
        assert_eq!(loser.body["error"]["details"]["requestedStatus"], "PAID");
        let paid_rows = p.sql(&format!(
            "select count(*) from order_history where order_id = '{id}' and to_status = 'PAID'"
        ));
        assert_eq!(paid_rows, "1", "round {round}: one PAID row");
        for app in [&p.a, &p.b] {
            let history = app.admin_order(&id).data()["statusHistory"].clone();
            let paid = history
                .as_array()
                .expect("statusHistory")
                .iter()
                .filter(|h| h["newStatus"] == "PAID")
                .count();
            assert_eq!(paid, 1, "round {round}: {history}");
        }
    }
}

#[test]
fn a_coupon_with_one_use_left_taken_on_both_at_once_is_taken_once() {
    let p = pair();
    // FLASH3 (config/catalog.toml) allows three orders overall: two are
    // taken, one is left for the race.
    let body = order_body(Some("FLASH3"));
    for user in ["early-1", "early-2"] {
        let r = p.a.post_json("/api/v1/orders", Auth::User(user), &body);
        assert_eq!(r.status, 201, "{}", r.text);
    }
    let (on_a, on_b) = at_once(&p, |app, name| {
        let user = format!("racer-{name}");
        app.post_json("/api/v1/orders", Auth::User(&user), &body)
    });
    let mut statuses = [on_a.status, on_b.status];
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 400], "A {} / B {}", on_a.text, on_b.text);
    // The refusal is the one redb gives (tests/api/admin.rs).
    let loser = if on_a.status == 400 { &on_a } else { &on_b };
    assert_eq!(loser.code(), "INVALID_COUPON", "{}", loser.text);
    assert_eq!(
        loser.body["error"]["details"]["reason"], "LIMIT_GLOBAL_REACHED",
        "{}",
        loser.text
    );
    for app in [&p.a, &p.b] {
        let total = app.get("/api/v1/internal/orders", Auth::Admin).body["meta"]["total"].clone();
        assert_eq!(total, 3, "three FLASH3 orders in all");
        let late = app.post_json("/api/v1/orders", Auth::User("late"), &body);
        assert_eq!(
            late.body["error"]["details"]["reason"], "LIMIT_GLOBAL_REACHED",
            "{}",
            late.text
        );
    }
    assert_eq!(p.sql("select count(*) from orders"), "3");
}

/// Waits until exactly one of the two leads, checking at every look that
/// never both do; returns (A leads, B leads).
fn one_leader(p: &Pair) -> (bool, bool) {
    wait_for(Duration::from_secs(30), || {
        let (a, b) = (leads(&p.a), leads(&p.b));
        assert!(
            !(a == Some(true) && b == Some(true)),
            "both instances run background work"
        );
        (a.is_some() && b.is_some() && a != b).then(|| (a == Some(true), b == Some(true)))
    })
    .expect("one of the two instances leads the background work")
}

#[test]
fn twenty_paid_orders_with_two_instances_running_get_one_droplet_each() {
    let p = pair();
    let (a_leads, b_leads) = one_leader(&p);
    // Made on one, paid on the other, read on the first: every route on both.
    let ids: Vec<String> = (0..20)
        .map(|i| {
            let (maker, payer) = if i % 2 == 0 {
                (&p.a, &p.b)
            } else {
                (&p.b, &p.a)
            };
            let id = maker.create_order(&format!("user-{i}")).id();
            let paid = payer.pay(&id);
            assert_eq!(paid.status, 200, "{}", paid.text);
            id
        })
        .collect();
    let active = wait_for(Duration::from_secs(90), || {
        let statuses: Vec<String> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let reader = if i % 2 == 0 { &p.a } else { &p.b };
                reader.admin_order(id).data()["status"]
                    .as_str()
                    .unwrap_or("")
                    .to_string()
            })
            .collect();
        statuses.iter().all(|s| s == "ACTIVE").then_some(())
    });
    let report: Vec<String> = ids
        .iter()
        .map(|id| p.b.admin_order(id).data()["status"].to_string())
        .collect();
    assert!(active.is_some(), "not every order ACTIVE: {report:?}");
    for id in &ids {
        let droplets = p.fake.droplet_ids_with_tag(&format!("vpsd-order-{id}"));
        assert_eq!(droplets.len(), 1, "order {id}: {droplets:?}");
        for app in [&p.a, &p.b] {
            let task = app.admin_order(id).data()["provisioningTask"].clone();
            assert_eq!(task["dropletId"], droplets[0].to_string(), "{task}");
        }
    }
    assert_eq!(p.fake.count("POST", "/v2/droplets"), 20, "no second create");
    // Leadership did not move while they were made (nobody died).
    assert_eq!(leads(&p.a), Some(a_leads));
    assert_eq!(leads(&p.b), Some(b_leads));
}
