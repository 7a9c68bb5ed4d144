//! Events out (SPEC §10) against the real daemon and local receivers: what
//! arrives, in which order, signed how, retried when, and what the admin API
//! shows about it.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::receiver::{verifies, Answer, Receiver};
use crate::support::{add_webhook, spawn_app_with, Auth, Resp, TestApp, WEBHOOK_SECRET};

const WAIT: Duration = Duration::from_secs(20);

fn admin_post(app: &TestApp, id: &str, action: &str, body: Value) -> Resp {
    let r = app.post_json(
        &format!("/api/v1/internal/orders/{id}/{action}"),
        Auth::Admin,
        &body,
    );
    assert_eq!(r.status, 200, "{action}: {}", r.text);
    r
}

fn deliveries(app: &TestApp, query: &str) -> Resp {
    let r = app.get(
        &format!("/api/v1/internal/webhooks/deliveries{query}"),
        Auth::Admin,
    );
    assert_eq!(r.status, 200, "{}", r.text);
    r
}

/// Waits until the admin list with `query` has `n` rows; returns them.
fn wait_for_deliveries(app: &TestApp, query: &str, n: usize) -> Vec<Value> {
    crate::support::wait_for(WAIT, || {
        let rows = deliveries(app, query).body["data"].as_array()?.clone();
        (rows.len() == n).then_some(rows)
    })
    .unwrap_or_else(|| {
        panic!(
            "never {n} deliveries for {query}: {}",
            deliveries(app, query).text
        )
    })
}

fn types_for(received: &[crate::support::receiver::Received], order: &str) -> Vec<String> {
    received
        .iter()
        .filter(|r| r.order_id() == order)
        .map(|r| r.event_type().to_string())
        .collect()
}

#[test]
fn a_whole_order_life_arrives_once_in_commit_order_and_verifies() {
    let hook = Receiver::start();
    let app = spawn_app_with(|c| {
        add_webhook(c, &hook.url(), &["*"]);
        c.lifecycle.enforce = true;
        c.lifecycle.remind_before_seconds = vec![2 * 86_400];
    });
    let id = app.create_order("alice").id();
    assert_eq!(app.pay(&id).status, 200);
    app.wait_for_status(&id, &["ACTIVE"], WAIT);
    admin_post(&app, &id, "renewals", json!({"amount": 150000}));
    admin_post(&app, &id, "suspend", json!({"reason": "abuse report"}));
    admin_post(&app, &id, "unsuspend", json!({}));
    let soon = vpsd::domain::time::format_millis(vpsd::domain::time::now_millis() + 86_400_000);
    admin_post(&app, &id, "expiry", json!({"expiresAt": soon}));
    let expiring = hook.wait_for(8, WAIT);
    assert!(
        crate::support::wait_for(WAIT, || {
            app.sweep();
            types_for(&hook.received(), &id)
                .contains(&"order.expiring".to_string())
                .then_some(())
        })
        .is_some(),
        "no reminder: {:?}",
        types_for(&expiring, &id)
    );
    admin_post(
        &app,
        &id,
        "terminate",
        json!({"reason": "ADMIN_TERMINATED"}),
    );
    crate::support::wait_for(WAIT, || {
        app.sweep();
        types_for(&hook.received(), &id)
            .contains(&"order.droplet_deleted".to_string())
            .then_some(())
    })
    .expect("the confirmed delete is announced");

    let other = app.create_order("bob").id();
    let r = app.post_empty(&format!("/api/v1/orders/{other}/cancel"), Auth::User("bob"));
    assert_eq!(r.status, 200, "{}", r.text);
    let refused = app.create_order("carol").id();
    let r = app.post_json(
        &format!("/api/v1/internal/orders/{refused}/payment-status"),
        Auth::Admin,
        &json!({"status": "PAYMENT_FAILED"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);

    let received = hook.wait_for(15, WAIT);
    assert_eq!(
        types_for(&received, &id),
        [
            "order.created",
            "order.paid",
            "order.provisioning",
            "order.active",
            "order.renewed",
            "order.suspended",
            "order.unsuspended",
            "order.expiry_changed",
            "order.expiring",
            "order.terminated",
            "order.droplet_deleted",
        ]
    );
    assert_eq!(
        types_for(&received, &other),
        ["order.created", "order.canceled"]
    );
    assert_eq!(
        types_for(&received, &refused),
        ["order.created", "order.payment_failed"]
    );
    let ids: HashSet<&str> = received.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids.len(), received.len(), "each event once");
    for r in &received {
        assert!(
            verifies(WEBHOOK_SECRET, r),
            "signature of {}",
            r.event_type()
        );
        assert!(!verifies("whsec_c2VjcmV0LW90aGVyLXRoYW4tdGhlLW9uZQ==", r));
        assert_eq!(r.content_type, "application/json");
        let sent: i64 = r.timestamp.parse().expect("unix seconds");
        assert!((sent - vpsd::domain::time::now_millis() / 1000).abs() < 120);
        let order = &r.body["data"]["order"];
        assert!(
            order["statusHistory"].is_null(),
            "admin view without history"
        );
        // No renewals list: an event's body must not grow with them (SPEC §12).
        assert!(order.get("renewals").is_none());
        assert!(r.body["timestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')));
    }
    let active = received
        .iter()
        .find(|r| r.event_type() == "order.active")
        .unwrap();
    assert_eq!(active.body["data"]["order"]["status"], "ACTIVE");
    assert!(active.body["data"]["order"]["provisioningTask"]["ipv4Public"].is_string());
    let reminder = received
        .iter()
        .find(|r| r.event_type() == "order.expiring")
        .unwrap();
    let left = reminder.body["data"]["secondsLeft"]
        .as_i64()
        .expect("secondsLeft");
    assert!((80_000..=86_400).contains(&left), "{left}");
    assert!(received
        .iter()
        .filter(|r| r.event_type() != "order.expiring")
        .all(|r| r.body["data"]["secondsLeft"].is_null()));

    // A row turns delivered only after its receiver has answered, so the
    // last few may still be in flight when the receiver has counted them.
    wait_for_deliveries(&app, "?status=delivered&limit=100", received.len());
}

#[test]
fn a_failing_receiver_gets_the_event_on_the_retry_schedule() {
    let hook = Receiver::start();
    hook.script([Answer::Status(500), Answer::Status(503)]);
    let app = spawn_app_with(|c| {
        add_webhook(c, &hook.url(), &["order.created"]);
        c.webhooks.retry_schedule_seconds = vec![1, 2, 60];
    });
    let id = app.create_order("alice").id();
    let got = hook.wait_for(3, WAIT);
    assert!(
        got.iter().all(|r| r.id == got[0].id),
        "one webhook-id for every attempt"
    );
    assert!(
        got.iter().all(|r| r.raw == got[0].raw),
        "the same body every attempt"
    );
    let gaps = (got[1].at - got[0].at, got[2].at - got[1].at);
    assert!(gaps.0 >= Duration::from_secs(1), "{gaps:?}");
    assert!(gaps.1 >= Duration::from_secs(2), "{gaps:?}");
    let rows = wait_for_deliveries(&app, &format!("?orderId={id}&status=delivered"), 1);
    assert_eq!(rows[0]["attempts"], 3);
    assert_eq!(rows[0]["lastResponseStatus"], 204);
    assert_eq!(rows[0]["lastError"], Value::Null);
    assert!(rows[0]["deliveredAt"].is_string());
    assert_eq!(rows[0]["eventType"], "order.created");
}

#[test]
fn an_exhausted_schedule_fails_and_a_replay_delivers_with_the_same_id() {
    let hook = Receiver::start();
    hook.set_default(Answer::Status(500));
    let app = spawn_app_with(|c| {
        add_webhook(c, &hook.url(), &["order.created"]);
        c.webhooks.retry_schedule_seconds = vec![1];
    });
    let id = app.create_order("alice").id();
    let rows = wait_for_deliveries(&app, "?status=failed", 1);
    let failed = &rows[0];
    assert_eq!(failed["attempts"], 2, "1 + len(schedule) attempts");
    assert_eq!(failed["lastResponseStatus"], 500);
    assert_eq!(failed["nextAttemptAt"], Value::Null);
    assert_eq!(failed["orderId"], id.as_str());
    let first_id = hook.received()[0].id.clone();

    hook.set_default(Answer::Status(200));
    let delivery = failed["id"].as_str().unwrap();
    let r = app.post_empty(
        &format!("/api/v1/internal/webhooks/deliveries/{delivery}/replay"),
        Auth::Admin,
    );
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(r.data()["status"], "pending");
    let rows = wait_for_deliveries(&app, "?status=delivered", 1);
    assert_eq!(rows[0]["id"], delivery);
    assert_eq!(rows[0]["attempts"], 3);
    let got = hook.wait_for(3, WAIT);
    assert_eq!(got[2].id, first_id, "a replay keeps the webhook-id");
    assert!(verifies(WEBHOOK_SECRET, &got[2]));

    let missing = app.post_empty(
        &format!(
            "/api/v1/internal/webhooks/deliveries/{}/replay",
            uuid::Uuid::now_v7()
        ),
        Auth::Admin,
    );
    assert_eq!(
        (missing.status, missing.code()),
        (404, "DELIVERY_NOT_FOUND")
    );
    let bad = app.post_empty(
        "/api/v1/internal/webhooks/deliveries/not-a-uuid/replay",
        Auth::Admin,
    );
    assert_eq!(bad.status, 400);
}

#[test]
fn a_redirect_is_a_failure_and_is_not_followed() {
    let elsewhere = Receiver::start();
    let hook = Receiver::start();
    hook.set_default(Answer::Redirect(elsewhere.url()));
    let app = spawn_app_with(|c| {
        add_webhook(c, &hook.url(), &["order.created"]);
        c.webhooks.retry_schedule_seconds = vec![];
    });
    app.create_order("alice");
    let rows = wait_for_deliveries(&app, "?status=failed", 1);
    assert_eq!(rows[0]["lastResponseStatus"], 302);
    assert_eq!(rows[0]["attempts"], 1);
    assert!(elsewhere.received().is_empty(), "the redirect was followed");
}

#[test]
fn endpoints_get_only_the_events_they_filter_for() {
    let billing = Receiver::start();
    let everything = Receiver::start();
    let app = spawn_app_with(|c| {
        add_webhook(c, &billing.url(), &["order.paid", "order.canceled"]);
        add_webhook(c, &everything.url(), &["*"]);
    });
    let id = app.create_order("alice").id();
    assert_eq!(app.pay(&id).status, 200);
    let all = everything.wait_for(2, WAIT);
    let paid = billing.wait_for(1, WAIT);
    assert_eq!(paid.len(), 1);
    assert_eq!(paid[0].event_type(), "order.paid");
    assert_eq!(types_for(&all, &id)[..2], ["order.created", "order.paid"]);
    let paid_everywhere = all.iter().find(|r| r.event_type() == "order.paid").unwrap();
    assert_eq!(paid[0].id, paid_everywhere.id, "one event, one webhook-id");
}

#[test]
fn later_events_of_an_order_wait_while_an_earlier_one_is_retrying() {
    let hook = Receiver::start();
    hook.script([Answer::Status(500)]);
    let app = spawn_app_with(|c| {
        add_webhook(c, &hook.url(), &["order.created", "order.paid"]);
        c.webhooks.retry_schedule_seconds = vec![2];
    });
    let id = app.create_order("alice").id();
    hook.wait_for(1, WAIT);
    assert_eq!(app.pay(&id).status, 200);
    let got = hook.wait_for(3, WAIT);
    let types: Vec<&str> = got.iter().map(|r| r.event_type()).collect();
    assert_eq!(types, ["order.created", "order.created", "order.paid"]);
}

#[test]
fn a_hanging_endpoint_holds_up_neither_another_endpoint_nor_orders() {
    let stuck = Receiver::start();
    stuck.set_default(Answer::Hang(Duration::from_secs(60)));
    let fast = Receiver::start();
    let app = spawn_app_with(|c| {
        add_webhook(c, &stuck.url(), &["*"]);
        add_webhook(c, &fast.url(), &["*"]);
        c.webhooks.timeout_ms = 30_000;
    });
    let started = Instant::now();
    for user in ["a", "b", "c", "d", "e"] {
        let before = Instant::now();
        assert_eq!(app.create_order(user).status, 201);
        assert!(
            before.elapsed() < Duration::from_secs(5),
            "POST /orders waited for a webhook"
        );
    }
    fast.wait_for(5, WAIT);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the fast endpoint waited for the stuck one's timeout"
    );
    let stuck_rows = deliveries(&app, "?status=pending&limit=100");
    let pending_to_stuck = stuck_rows.body["data"]
        .as_array()
        .unwrap()
        .iter()
        // The fast endpoint's rows may still be pending for a moment after
        // its receiver answered (the record follows the answer): count the
        // stuck endpoint's own.
        .filter(|d| d["url"] == stuck.url().as_str() && d["attempts"] == 0)
        .count();
    assert_eq!(
        pending_to_stuck, 5,
        "the stuck endpoint has answered nothing yet"
    );
    // Its requests are in flight. Its own worker sends them: the fast
    // endpoint's five arrivals do not mean one of them has arrived yet.
    stuck.wait_for(1, WAIT);
    // The receiver goes first, so its hanging answers end now, not in 60 s.
    drop(stuck);
}

#[test]
fn a_refused_request_emits_nothing() {
    let hook = Receiver::start();
    let app = spawn_app_with(|c| {
        add_webhook(
            c,
            &hook.url(),
            &["order.paid", "order.payment_failed", "order.canceled"],
        );
    });
    let id = app.create_order("alice").id();
    assert_eq!(app.pay(&id).status, 200);
    let again = app.post_json(
        &format!("/api/v1/internal/orders/{id}/payment-status"),
        Auth::Admin,
        &json!({"status": "PAYMENT_FAILED"}),
    );
    assert_eq!(again.status, 409);
    let cancel = app.post_empty(&format!("/api/v1/orders/{id}/cancel"), Auth::User("alice"));
    assert_eq!(cancel.status, 409);
    hook.wait_for(1, WAIT);
    // Anything the refusals had queued would be in the outbox by now: the
    // admin list reads the same transaction-consistent tables.
    let all = deliveries(&app, "?limit=100");
    assert_eq!(all.body["meta"]["total"], 1, "{}", all.text);
    assert_eq!(all.body["data"][0]["eventType"], "order.paid");
}

#[test]
fn the_delivery_list_filters_pages_and_never_shows_credentials() {
    let hook = Receiver::start();
    let url = hook.url().replace("http://", "http://user:pa55@");
    let app = spawn_app_with(|c| {
        add_webhook(c, &url, &["order.created"]);
    });
    let first = app.create_order("alice").id();
    for user in ["b", "c", "d"] {
        app.create_order(user);
    }
    wait_for_deliveries(&app, "?status=delivered&limit=100", 4);
    let page = deliveries(&app, "?limit=3&page=2");
    assert_eq!(
        page.body["meta"],
        json!({"page": 2, "limit": 3, "total": 4, "totalPages": 2})
    );
    assert_eq!(page.body["data"].as_array().unwrap().len(), 1);
    assert_eq!(
        page.body["data"][0]["orderId"],
        first.as_str(),
        "newest first"
    );
    let past_end = deliveries(&app, "?page=50");
    assert_eq!(past_end.body["data"], json!([]));
    let mine = deliveries(&app, &format!("?orderId={first}"));
    assert_eq!(mine.body["meta"]["total"], 1);
    let row = &mine.body["data"][0];
    for key in [
        "id",
        "eventType",
        "orderId",
        "url",
        "status",
        "attempts",
        "lastAttemptAt",
        "nextAttemptAt",
        "lastResponseStatus",
        "lastError",
        "createdAt",
        "deliveredAt",
    ] {
        assert!(row.get(key).is_some(), "{key} missing: {row}");
    }
    assert!(!mine.text.contains("pa55"), "{}", mine.text);
    assert!(row["url"]
        .as_str()
        .unwrap()
        .starts_with("http://***@127.0.0.1"));
    assert!(!mine.text.contains(WEBHOOK_SECRET));
    assert_eq!(deliveries(&app, "?status=failed").body["meta"]["total"], 0);

    for bad in ["?status=lost", "?orderId=nope", "?limit=101", "?page=0"] {
        let r = app.get(
            &format!("/api/v1/internal/webhooks/deliveries{bad}"),
            Auth::Admin,
        );
        assert_eq!((r.status, r.code()), (400, "BAD_REQUEST"), "{bad}");
    }
    let anonymous = app.get("/api/v1/internal/webhooks/deliveries", Auth::None);
    assert_eq!(anonymous.status, 401);

    let metrics = app.get("/metrics", Auth::Admin).text;
    assert!(
        metrics.contains("vpsd_webhook_deliveries_total{result=\"delivered\"} 4"),
        "{metrics}"
    );
    assert!(metrics.contains("vpsd_webhook_deliveries_pending 0"));
    assert!(metrics.contains("vpsd_webhook_oldest_pending_age_seconds 0"));
}

#[test]
fn without_endpoints_no_event_is_recorded() {
    let app = spawn_app_with(|_| {});
    let id = app.create_order("alice").id();
    assert_eq!(app.pay(&id).status, 200);
    let all = deliveries(&app, "");
    assert_eq!(all.body["meta"]["total"], 0);
}

/// Real receivers often answer 200 with a short body. The answer is read to
/// its end, so the connection goes back to the pool: one TCP connection
/// carries one event after another, instead of a connect per event.
#[test]
fn a_receiver_answering_with_a_body_keeps_one_connection() {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let connections = Arc::new(AtomicUsize::new(0));
    let answered = Arc::new(AtomicUsize::new(0));
    {
        let (connections, answered) = (connections.clone(), answered.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                connections.fetch_add(1, Ordering::SeqCst);
                let answered = answered.clone();
                std::thread::spawn(move || {
                    let mut writer = stream.try_clone().expect("clone");
                    let mut reader = BufReader::new(stream);
                    loop {
                        let mut length = 0usize;
                        let mut line = String::new();
                        loop {
                            line.clear();
                            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                                return;
                            }
                            let header = line.trim_end().to_ascii_lowercase();
                            if header.is_empty() {
                                break;
                            }
                            if let Some(v) = header.strip_prefix("content-length:") {
                                length = v.trim().parse().unwrap_or(0);
                            }
                        }
                        let mut body = vec![0; length];
                        if reader.read_exact(&mut body).is_err() {
                            return;
                        }
                        let reply = br#"{"received":true}"#;
                        let head =
                            format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", reply.len());
                        let sent = writer
                            .write_all(head.as_bytes())
                            .and_then(|()| writer.write_all(reply));
                        if sent.is_err() {
                            return;
                        }
                        answered.fetch_add(1, Ordering::SeqCst);
                    }
                });
            }
        });
    }
    let app = spawn_app_with(|c| add_webhook(c, &url, &["order.created"]));
    for (n, user) in ["alice", "bob", "carol"].into_iter().enumerate() {
        assert_eq!(app.create_order(user).status, 201);
        crate::support::wait_for(WAIT, || (answered.load(Ordering::SeqCst) > n).then_some(()))
            .expect("the event was answered");
        // The attempt is recorded after the answer was read to its end.
        wait_for_deliveries(&app, "?status=delivered&limit=100", n + 1);
    }
    assert_eq!(
        connections.load(Ordering::SeqCst),
        1,
        "one connection for three events"
    );
}

/// SPEC §12 "Secrets in URLs": a receiver's `?token=` is a secret like its
/// password. The request still carries it; the deliveries API and the logs
/// of the real binary show the query masked.
#[test]
fn a_token_in_a_webhook_url_reaches_the_receiver_but_no_row_or_log() {
    use crate::support::process::Daemon;
    use crate::support::{agent, base_config, hs256_token, now_secs, API_KEY, SECRET};

    let hook = Receiver::start();
    hook.set_default(Answer::Status(500));
    let url = format!("{}?token=hook-t0ken-s3cret", hook.url());
    let dir = tempfile::tempdir().unwrap();
    let mut config = base_config(dir.path());
    add_webhook(&mut config, &url, &["order.created"]);
    config.webhooks.retry_schedule_seconds = vec![];
    let daemon = Daemon::start(&config, dir.path());
    let http = agent();
    let token = hs256_token(SECRET, json!({"sub": "alice", "exp": now_secs() + 600}));
    let created = http
        .post(daemon.url("/api/v1/orders"))
        .header("Authorization", &format!("Bearer {token}"))
        .send_json(json!({"planId": "vps-basic", "imageId": "ubuntu-22-04", "duration": "MONTHLY"}))
        .expect("create");
    assert_eq!(created.status().as_u16(), 201);
    hook.wait_for(1, WAIT);

    let rows = crate::support::wait_for(WAIT, || {
        let text = http
            .get(daemon.url("/api/v1/internal/webhooks/deliveries?status=failed"))
            .header("X-API-Key", API_KEY)
            .call()
            .ok()?
            .body_mut()
            .read_to_string()
            .ok()?;
        let body: Value = serde_json::from_str(&text).ok()?;
        (body["meta"]["total"] == 1).then_some(text)
    })
    .expect("the delivery fails");
    assert!(!rows.contains("hook-t0ken-s3cret"), "{rows}");
    let row: Value = serde_json::from_str(&rows).unwrap();
    assert_eq!(
        row["data"][0]["url"],
        format!("{}?***", hook.url()),
        "the query is masked, the rest kept"
    );

    let (_, logs) = daemon.terminate_with_logs();
    let failed = logs
        .iter()
        .find(|l| l.contains("webhook attempt failed"))
        .unwrap_or_else(|| panic!("no attempt logged: {logs:?}"));
    assert!(failed.contains("?***"), "{failed}");
    for line in &logs {
        assert!(!line.contains("hook-t0ken-s3cret"), "token logged: {line}");
    }
}

#[test]
fn a_customer_action_ending_is_announced_with_the_action() {
    let hook = Receiver::start();
    let app = spawn_app_with(|c| {
        add_webhook(
            c,
            &hook.url(),
            &["order.action_completed", "order.action_failed"],
        );
        c.actions.cooldown_seconds = 0;
    });
    let id = app.active_order("alice");
    let r = app.post_json(
        &format!("/api/v1/orders/{id}/actions"),
        Auth::User("alice"),
        &json!({"type": "rebuild", "imageId": "debian-12"}),
    );
    assert_eq!(r.status, 202, "{}", r.text);
    let announced = crate::support::wait_for(WAIT, || {
        app.sweep();
        let got = hook.received();
        (!got.is_empty()).then_some(got)
    })
    .expect("the rebuild's end is announced");
    assert_eq!(announced.len(), 1, "only the ending is sent, once");
    let event = &announced[0];
    assert!(verifies(WEBHOOK_SECRET, event));
    assert_eq!(event.event_type(), "order.action_completed");
    let action = &event.body["data"]["action"];
    assert_eq!(action["id"], r.data()["id"]);
    assert_eq!(
        (action["type"].as_str(), action["status"].as_str()),
        (Some("rebuild"), Some("completed"))
    );
    assert_eq!(action["imageId"], "debian-12");
    // The order in the event is as the rebuild left it.
    assert_eq!(event.body["data"]["order"]["imageId"], "debian-12");
}
