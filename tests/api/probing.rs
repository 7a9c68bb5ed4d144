//! What probing the round-2 build found (SPEC §12 "Found by probing the
//! round-2 build"): bodies checked on every route, time kept in range,
//! nothing that grows with repetition, an admin suspension that only the
//! admin ends, and a document that says what the server does.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::receiver::Receiver;
use crate::support::{add_webhook, spawn_app, spawn_app_with, Auth, Resp, TestApp};

const WAIT: Duration = Duration::from_secs(20);

/// The fields a 400 names.
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

fn last_row(app: &TestApp, id: &str) -> Value {
    app.admin_order(id).data()["statusHistory"]
        .as_array()
        .and_then(|rows| rows.last().cloned())
        .expect("a history row")
}

fn doc(app: &TestApp) -> Value {
    let r = app.get("/api/v1/openapi.json", Auth::None);
    assert_eq!(r.status, 200);
    r.body
}

/// `schema` with one level of `$ref` resolved inside `doc`.
fn resolved<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => doc.pointer(&r[1..]).expect("a $ref into the document"),
        None => schema,
    }
}

// Bodies are checked everywhere.

#[test]
fn every_route_that_takes_a_body_refuses_unknown_fields_naming_them() {
    let app = spawn_app();
    let order = app.active_order("alice");
    let mut checked = 0;
    for (pattern, method) in vpsd::edge::routes::all_operations() {
        if method != "POST" {
            continue;
        }
        let route = vpsd::edge::routes::match_path(pattern).expect("a route").0;
        let auth = match route.access {
            vpsd::edge::routes::Access::User => Auth::User("alice"),
            _ => Auth::Admin,
        };
        let path = pattern.replace("{id}", &order);
        let r = app.post_json(&path, auth, &json!({"bogusField": 1}));
        assert_eq!(
            (r.status, r.code()),
            (400, "BAD_REQUEST"),
            "POST {pattern}: {}",
            r.text
        );
        assert!(
            named_fields(&r).contains(&"bogusField".to_string()),
            "POST {pattern} names the field: {}",
            r.text
        );
        checked += 1;
    }
    assert!(checked >= 13, "every POST route was tried ({checked})");
    // Nothing changed: the order is still ACTIVE, no backup was written.
    assert_eq!(app.admin_order(&order).data()["status"], "ACTIVE");
}

#[test]
fn the_owners_terminate_records_its_reason() {
    let app = spawn_app();
    let id = app.active_order("alice");
    let path = format!("/api/v1/orders/{id}/terminate");
    let reason = "moving to another host\nthanks";
    let r = app.post_json(&path, Auth::User("alice"), &json!({"reason": reason}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.data()["terminationReason"], "USER_DELETED");
    let row = last_row(&app, &id);
    assert_eq!(row["newStatus"], "TERMINATED");
    assert_eq!(row["reason"], reason);
    assert_eq!(row["actor"], "user:alice");
}

#[test]
fn a_reason_or_note_over_1000_characters_is_400_naming_it_and_changes_nothing() {
    let app = spawn_app();
    let id = app.active_order("alice");
    let long = "é".repeat(1001);
    let path = format!("/api/v1/orders/{id}/terminate");
    let r = app.post_json(&path, Auth::User("alice"), &json!({"reason": long}));
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(named_fields(&r), vec!["reason".to_string()]);
    for (action, body) in [
        ("suspend", json!({"reason": long})),
        ("terminate", json!({"reason": long})),
        ("renewals", json!({"amount": 1, "notes": long})),
        (
            "expiry",
            json!({"expiresAt": "2040-01-01T00:00:00Z", "reason": long}),
        ),
    ] {
        let r = app.admin_post(&id, action, body);
        assert_eq!(r.status, 400, "{action}: {}", r.text);
    }
    let r = app.admin_order(&id);
    assert_eq!(r.data()["status"], "ACTIVE");
    assert_eq!(r.data()["renewals"], json!([]));
    // Exactly 1,000 characters is kept whole.
    let fits = "é".repeat(1000);
    let r = app.post_json(&path, Auth::User("alice"), &json!({"reason": fits}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(last_row(&app, &id)["reason"], fits.as_str());
}

#[test]
fn null_where_the_document_says_string_is_what_the_server_does() {
    let app = spawn_app();
    let doc = doc(&app);
    // Every optional field of every request body: the server reads `null` as
    // absent, so the document must say nullable.
    let mut checked = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let Some(schema) = op["requestBody"]["content"]["application/json"].get("schema")
            else {
                continue;
            };
            let schema = resolved(&doc, schema);
            let required: Vec<&str> = schema["required"]
                .as_array()
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let Some(props) = schema["properties"].as_object() else {
                continue;
            };
            for (name, prop) in props {
                if required.contains(&name.as_str()) {
                    continue;
                }
                let prop = resolved(&doc, prop);
                assert_eq!(
                    prop["nullable"],
                    json!(true),
                    "{method} {path}: optional `{name}` is read as absent when null"
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 10, "{checked}");
    // And the server does read null as absent on those routes.
    let id = app.active_order("alice");
    let r = app.admin_post(
        &id,
        "renewals",
        json!({"amount": 1, "periods": null, "renewalType": null, "notes": null}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let r = app.admin_post(
        &id,
        "expiry",
        json!({"expiresAt": "2040-01-01T00:00:00Z", "reason": null}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let path = format!("/api/v1/orders/{id}/terminate");
    let r = app.post_json(&path, Auth::User("alice"), &json!({"reason": null}));
    assert_eq!(r.status, 200, "{}", r.text);
    // A required string sent as null is 400, as the document (not nullable) says.
    let r = app.admin_post(&id, "expiry", json!({"expiresAt": null}));
    assert_eq!(r.status, 400, "{}", r.text);
}

// Time stays in range.

#[test]
fn a_renewal_past_year_9999_is_400_naming_periods() {
    let hook = Receiver::start();
    let app = spawn_app_with(|c| add_webhook(c, &hook.url(), &["*"]));
    let id = app.active_order("alice");
    let last_day = "9999-12-31T00:00:00.000Z";
    let r = app.admin_post(&id, "expiry", json!({"expiresAt": last_day}));
    assert_eq!(r.status, 200, "{}", r.text);
    let before = app.admin_order(&id);
    let r = app.admin_post(&id, "renewals", json!({"periods": 1, "amount": 5}));
    assert_eq!((r.status, r.code()), (400, "BAD_REQUEST"), "{}", r.text);
    assert_eq!(named_fields(&r), vec!["periods".to_string()]);
    let after = app.admin_order(&id);
    assert_eq!(after.data()["expiresAt"], last_day);
    assert_eq!(
        after.data()["statusHistory"],
        before.data()["statusHistory"],
        "a refused renewal writes nothing"
    );
    let mine = app.get(&format!("/api/v1/orders/{id}"), Auth::User("alice"));
    assert_eq!(mine.data()["expiresAt"], last_day);
    for text in [&after.text, &mine.text] {
        assert!(!text.contains("1970-"), "{text}");
    }
    // The expiry change's own event says 9999, never 1970.
    let received = crate::support::wait_for(WAIT, || {
        let all = hook.received();
        all.iter()
            .any(|r| r.event_type() == "order.expiry_changed")
            .then_some(all)
    })
    .expect("order.expiry_changed delivered");
    for event in received {
        assert!(!String::from_utf8_lossy(&event.raw).contains("1970-"));
    }
}

#[test]
fn an_expiry_past_year_9999_is_400_naming_expires_at() {
    let app = spawn_app();
    let id = app.active_order("alice");
    let before = app.admin_order(&id);
    // 9999-12-31T23:59:59.999 one hour west of UTC is already year 10000 in UTC.
    for late in ["9999-12-31T23:59:59.999-01:00", "9999-12-31T23:30:00-00:31"] {
        let r = app.admin_post(&id, "expiry", json!({"expiresAt": late}));
        assert_eq!(
            (r.status, r.code()),
            (400, "BAD_REQUEST"),
            "{late}: {}",
            r.text
        );
        assert_eq!(named_fields(&r), vec!["expiresAt".to_string()]);
    }
    let after = app.admin_order(&id);
    assert_eq!(after.data()["expiresAt"], before.data()["expiresAt"]);
    // The last representable instant itself is fine.
    let last = "9999-12-31T23:59:59.999Z";
    let r = app.admin_post(&id, "expiry", json!({"expiresAt": last}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.data()["expiresAt"], last);
}

// Nothing grows with repetition.

#[test]
fn the_admin_detail_shows_the_50_newest_renewals_and_the_total() {
    let app = spawn_app();
    let id = app.active_order("alice");
    let mut newest = String::new();
    for day in 1..=60 {
        newest = format!("2040-{:02}-{:02}T00:00:00.000Z", 1 + day / 28, 1 + day % 28);
        let r = app.admin_post(&id, "expiry", json!({"expiresAt": newest}));
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let r = app.admin_order(&id);
    let renewals = r.data()["renewals"].as_array().unwrap();
    assert_eq!(renewals.len(), 50, "{}", r.text);
    assert_eq!(r.data()["renewalsTotal"], 60);
    assert_eq!(renewals.last().unwrap()["newExpiry"], newest.as_str());
    // Every expiry change is still a history row: those are per change by design.
    let rows = r.data()["statusHistory"].as_array().unwrap();
    assert_eq!(
        rows.iter()
            .filter(|row| row["newStatus"] == "EXPIRY_CHANGED")
            .count(),
        60
    );
}

#[test]
fn webhook_event_bodies_carry_no_renewals_list() {
    let hook = Receiver::start();
    let app = spawn_app_with(|c| add_webhook(c, &hook.url(), &["order.expiry_changed"]));
    let id = app.active_order("alice");
    for at in ["2040-01-01T00:00:00Z", "2041-01-01T00:00:00Z"] {
        let r = app.admin_post(&id, "expiry", json!({"expiresAt": at}));
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let received = hook.wait_for(2, WAIT);
    assert_eq!(received.len(), 2);
    for event in received {
        let order = &event.body["data"]["order"];
        assert_eq!(order["id"], id.as_str());
        assert!(order.get("renewals").is_none(), "{}", event.body);
        assert!(order["expiresAt"].is_string());
    }
}

// An admin suspension is the admin's to end.

#[test]
fn owner_cannot_terminate_an_admin_suspension() {
    let app = spawn_app();
    let id = app.active_order("alice");
    let r = app.admin_post(&id, "suspend", json!({"reason": "abuse report"}));
    assert_eq!(r.status, 200, "{}", r.text);
    let before = app.admin_order(&id);
    let path = format!("/api/v1/orders/{id}/terminate");
    let r = app.post_empty(&path, Auth::User("alice"));
    assert_eq!(
        (r.status, r.code()),
        (409, "ORDER_STATUS_CONFLICT"),
        "{}",
        r.text
    );
    assert_eq!(r.body["error"]["details"]["currentStatus"], "SUSPENDED");
    assert_eq!(r.body["error"]["details"]["requestedStatus"], "TERMINATED");
    let after = app.admin_order(&id);
    assert_eq!(after.data()["status"], "SUSPENDED");
    assert_eq!(
        after.data()["statusHistory"],
        before.data()["statusHistory"]
    );
    // The admin can still end it.
    let r = app.admin_post(&id, "terminate", json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
}

#[test]
fn owner_can_terminate_an_expiry_suspension() {
    let app = spawn_app_with(|c| c.lifecycle.enforce = true);
    let id = app.active_order("alice");
    let past = vpsd::domain::time::format_millis(vpsd::domain::time::now_millis() - 1000);
    let r = app.admin_post(&id, "expiry", json!({"expiresAt": past}));
    assert_eq!(r.status, 200, "{}", r.text);
    let r = crate::support::wait_for(WAIT, || {
        app.sweep();
        let r = app.admin_order(&id);
        (r.data()["status"] == "SUSPENDED").then_some(r)
    })
    .expect("suspended for expiry");
    assert_eq!(r.data()["suspendReason"], "EXPIRED");
    let path = format!("/api/v1/orders/{id}/terminate");
    let r = app.post_empty(&path, Auth::User("alice"));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.data()["status"], "TERMINATED");
}

// The document says what the server does.

#[test]
fn the_document_states_maxima_the_key_scope_and_head_on_every_get() {
    let app = spawn_app();
    let doc = doc(&app);
    let renewal = &doc["components"]["schemas"]["RenewalRequest"]["properties"];
    assert_eq!(renewal["periods"]["maximum"], 12);
    assert_eq!(renewal["amount"]["maximum"], json!(i64::MAX));
    // The server's own limits are those.
    let id = app.active_order("alice");
    for (body, ok) in [
        (json!({"amount": i64::MAX}), true),
        (json!({"amount": (i64::MAX as u64) + 1}), false),
        (json!({"amount": 1, "periods": 12}), true),
        (json!({"amount": 1, "periods": 13}), false),
    ] {
        let r = app.admin_post(&id, "renewals", body.clone());
        assert_eq!(r.status == 200, ok, "{body}: {}", r.text);
    }
    let key = doc["components"]["parameters"]["IdempotencyKey"]["description"]
        .as_str()
        .unwrap()
        .to_lowercase();
    for word in ["route", "order", "body"] {
        assert!(
            key.contains(word),
            "the key's scope names the {word}: {key}"
        );
    }
    for (pattern, method) in vpsd::edge::routes::all_operations() {
        if method != "GET" {
            continue;
        }
        let head = &doc["paths"][pattern]["head"];
        assert!(head.is_object(), "HEAD {pattern} is documented");
        assert!(
            head["responses"]["200"].is_object(),
            "HEAD {pattern} documents its 200"
        );
        let concrete = pattern.replace("{id}", &id);
        let r = app.request("HEAD", &concrete, Auth::Admin, &[], None);
        assert_ne!(r.status, 404, "HEAD {pattern}");
        assert_ne!(r.status, 405, "HEAD {pattern}");
        assert!(r.text.is_empty(), "HEAD {pattern} has no body");
    }
}

#[test]
fn the_readme_names_jwts_without_exp_among_the_v1_differences() {
    let readme = std::fs::read_to_string(crate::support::repo_path("README.md")).unwrap();
    let start = readme
        .find("**v1 compatibility")
        .expect("the README's v1 differences");
    let section = &readme[start..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    assert!(
        section.contains("without `exp`"),
        "the v1 differences name JWTs without `exp`"
    );
}
