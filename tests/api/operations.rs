//! Operations: metrics, OpenAPI, hardening (file backups: `backups`).

use std::collections::HashSet;
use std::time::Duration;

use serde_json::json;

use crate::support::{spawn_app, spawn_app_with, Auth};

/// `name{labels} value` lines of the Prometheus text format, by series.
pub(crate) fn parse_prometheus(text: &str) -> std::collections::HashMap<String, f64> {
    let mut out = std::collections::HashMap::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            assert!(
                line.is_empty() || line.starts_with("# HELP ") || line.starts_with("# TYPE "),
                "{line}"
            );
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line {line}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
        };
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "{line}"
        );
        out.insert(series.to_string(), value);
    }
    out
}

#[test]
fn metrics_count_a_known_sequence_of_requests() {
    let app = spawn_app();
    for _ in 0..3 {
        app.get("/api/v1/health", Auth::None);
    }
    app.create_order("alice");
    app.create_order("alice");
    app.get("/nowhere", Auth::None);
    app.post_json("/api/v1/orders", Auth::None, &json!({}));
    let r = app.get("/metrics", Auth::Admin);
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    let m = parse_prometheus(&r.text);
    let get = |k: &str| m.get(k).copied().unwrap_or_else(|| panic!("no series {k}"));
    assert_eq!(
        get(r#"vpsd_http_requests_total{method="GET",route="/api/v1/health",status="200"}"#),
        3.0
    );
    assert_eq!(
        get(r#"vpsd_http_requests_total{method="POST",route="/api/v1/orders",status="201"}"#),
        2.0
    );
    assert_eq!(
        get(r#"vpsd_http_requests_total{method="POST",route="/api/v1/orders",status="401"}"#),
        1.0
    );
    assert_eq!(
        get(r#"vpsd_http_requests_total{method="GET",route="unmatched",status="404"}"#),
        1.0
    );
    assert_eq!(
        get(r#"vpsd_http_request_duration_seconds_count{route="/api/v1/health"}"#),
        3.0
    );
    assert_eq!(get(r#"vpsd_orders{status="PENDING_PAYMENT"}"#), 2.0);
    assert_eq!(get(r#"vpsd_orders{status="ACTIVE"}"#), 0.0);
    // The data file's size is redb's: a PostgreSQL database is no file of
    // vpsd's (its size is PostgreSQL's to report).
    if !crate::support::on_postgres() {
        assert!(get("vpsd_data_file_bytes") > 0.0);
    }
    assert_eq!(get("vpsd_backup_age_seconds"), -1.0);
    assert!(m.contains_key("vpsd_reconciler_sweep_duration_seconds_count"));
    assert!(m.contains_key("vpsd_cloud_api_calls_total"));
    assert_eq!(app.get("/metrics", Auth::None).code(), "API_KEY_MISSING");

    let id = app.create_order("bob").id();
    app.pay(&id);
    app.wait_for_status(&id, &["ACTIVE"], Duration::from_secs(20));
    let m = parse_prometheus(&app.get("/metrics", Auth::Admin).text);
    assert_eq!(
        m.get(r#"vpsd_provisioning_outcomes_total{outcome="SUCCESS"}"#),
        Some(&1.0)
    );
    assert_eq!(m.get(r#"vpsd_orders{status="ACTIVE"}"#), Some(&1.0));
}

#[test]
fn openapi_lists_exactly_the_routes_the_server_answers() {
    let app = spawn_app();
    let r = app.get("/api/v1/openapi.json", Auth::None);
    assert_eq!(r.status, 200);
    let doc = r.body;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let mut documented = HashSet::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                documented.insert((path.clone(), method.to_uppercase()));
            }
        }
    }
    let served: HashSet<(String, String)> = vpsd::edge::routes::all_operations()
        .into_iter()
        .map(|(p, m)| (p.to_string(), m.to_string()))
        .collect();
    assert_eq!(documented, served);
    // And each served operation really answers (never the unknown-route 404).
    let sample = uuid::Uuid::new_v4().to_string();
    for (path, method) in &served {
        let concrete = path.replace("{id}", &sample);
        let r = app.request(method, &concrete, Auth::Admin, &[], None);
        assert_ne!(r.code(), "NOT_FOUND", "{method} {path}");
        assert_ne!(r.status, 405, "{method} {path}");
    }
    let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
    assert!(schemes.contains_key("bearerAuth") && schemes.contains_key("apiKey"));

    // A valid OpenAPI 3.0 document: it parses strictly as one, names where it
    // is served, and every `$ref` points into it.
    let parsed: openapiv3::OpenAPI =
        serde_json::from_value(doc.clone()).expect("a valid OpenAPI 3.0 document");
    assert!(!parsed.servers.is_empty(), "a servers entry");
    assert!(parsed.components.is_some());
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    for r in &refs {
        let pointer = r.strip_prefix('#').expect("local $ref");
        assert!(doc.pointer(pointer).is_some(), "dangling $ref {r}");
    }
    document_matches_real_traffic(&doc);
}

fn collect_refs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            if let Some(serde_json::Value::String(r)) = map.get("$ref") {
                out.push(r.clone());
            }
            map.values().for_each(|v| collect_refs(v, out));
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

/// An OpenAPI 3.0 schema as JSON Schema 2020-12: `nullable` becomes a null
/// alternative, and an object that lists its properties refuses others, so
/// a field the document does not declare fails too.
fn as_json_schema(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            map.values_mut().for_each(as_json_schema);
            if map.contains_key("properties") && !map.contains_key("additionalProperties") {
                map.insert("additionalProperties".into(), json!(false));
            }
            if map.remove("nullable") == Some(json!(true)) {
                let rest = serde_json::Value::Object(std::mem::take(map));
                map.insert("anyOf".into(), json!([rest, {"type": "null"}]));
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(as_json_schema),
        _ => {}
    }
}

/// A validator for `schema` (usually a `$ref`), resolved in the document's components.
pub(crate) fn validator(
    doc: &serde_json::Value,
    schema: &serde_json::Value,
) -> jsonschema::Validator {
    let mut components = doc["components"].clone();
    as_json_schema(&mut components);
    let mut schema = schema.clone();
    as_json_schema(&mut schema);
    let root = json!({"allOf": [schema], "components": components});
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(&root)
        .expect("the document's schema compiles")
}

/// The schema the document declares for `method path` answering `status`.
pub(crate) fn response_schema(
    doc: &serde_json::Value,
    method: &str,
    path: &str,
    status: u16,
) -> serde_json::Value {
    let mut response = &doc["paths"][path][method]["responses"][status.to_string()];
    if let Some(r) = response["$ref"].as_str() {
        response = doc.pointer(&r[1..]).expect("response $ref");
    }
    let schema = &response["content"]["application/json"]["schema"];
    assert!(
        schema.is_object(),
        "{method} {path} declares no {status} JSON"
    );
    schema.clone()
}

fn request_schema(doc: &serde_json::Value, method: &str, path: &str) -> serde_json::Value {
    doc["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"].clone()
}

pub(crate) fn assert_valid(v: &jsonschema::Validator, instance: &serde_json::Value, what: &str) {
    let errors: Vec<String> = v
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{what}: {errors:?}\n{instance}");
}

/// Real answers of a running daemon validate against the schemas the
/// document declares for them, and the request rules it states are the
/// server's: a body the document refuses the server refuses, and back.
fn document_matches_real_traffic(doc: &serde_json::Value) {
    let app = spawn_app_with(|c| {
        crate::support::add_webhook(c, "http://127.0.0.1:9/hook", &["order.created"])
    });
    let check = |method: &str, path: &str, r: &crate::support::Resp| {
        let v = validator(doc, &response_schema(doc, method, path, r.status));
        assert_valid(&v, &r.body, &format!("{method} {path} {}", r.status));
    };
    let orders = "/api/v1/orders";
    let body = json!({"planId": "vps-basic", "imageId": "ubuntu-22-04", "duration": "MONTHLY",
        "couponCode": "HEMAT20", "hostname": "web-1", "sshPublicKeys": [ED25519]});
    let create = validator(doc, &request_schema(doc, "post", orders));
    assert_valid(&create, &body, "create request");
    let created = app.post_json(orders, Auth::User("alice"), &body);
    assert_eq!(created.status, 201, "{}", created.text);
    check("post", orders, &created);
    let id = created.id();
    check(
        "get",
        "/api/v1/orders/{id}",
        &app.get(&format!("{orders}/{id}"), Auth::User("alice")),
    );
    check(
        "get",
        orders,
        &app.get(&format!("{orders}?page=1&limit=100"), Auth::User("alice")),
    );
    let paid = app.pay(&id);
    assert_eq!(paid.data()["previousStatus"], "PENDING_PAYMENT");
    check("post", "/api/v1/internal/orders/{id}/payment-status", &paid);
    let detail = app.admin_order(&id);
    check("get", "/api/v1/internal/orders/{id}", &detail);
    check(
        "get",
        "/api/v1/internal/orders",
        &app.get("/api/v1/internal/orders", Auth::Admin),
    );
    check(
        "get",
        "/api/v1/health",
        &app.get("/api/v1/health", Auth::None),
    );
    let deliveries = "/api/v1/internal/webhooks/deliveries";
    let listed = app.get(deliveries, Auth::Admin);
    assert!(
        !listed.data().as_array().unwrap().is_empty(),
        "{}",
        listed.text
    );
    check("get", deliveries, &listed);
    let accounts = "/api/v1/internal/cloud/accounts";
    check("get", accounts, &app.get(accounts, Auth::Admin));
    let refresh = "/api/v1/internal/cloud/accounts/{name}/refresh";
    let r = app.post_empty(&format!("{accounts}/default/refresh"), Auth::Admin);
    assert_eq!(r.status, 202, "{}", r.text);
    check("post", refresh, &r);
    let r = app.post_empty(&format!("{accounts}/nobody/refresh"), Auth::Admin);
    assert_eq!(r.status, 404, "{}", r.text);
    check("post", refresh, &r);

    // Error envelopes, as declared per operation.
    let missing = format!("{orders}/{}", uuid::Uuid::new_v4());
    let r = app.get(&missing, Auth::User("alice"));
    assert_eq!(r.status, 404);
    check("get", "/api/v1/orders/{id}", &r);
    let r = app.get(&format!("{orders}?limit=101"), Auth::User("alice"));
    assert_eq!(r.status, 400);
    check("get", orders, &r);
    let invalid = json!({"planId": "vps-mini", "imageId": "ubuntu-22-04", "duration": "MONTHLY"});
    let r = app.post_json(orders, Auth::User("alice"), &invalid);
    assert_eq!(r.code(), "INVALID_PLAN");
    check("post", orders, &r);
    let r = app.pay(&id);
    assert_eq!(r.status, 409);
    check("post", "/api/v1/internal/orders/{id}/payment-status", &r);

    // The request rules the document states are the server's own.
    let pay = validator(
        doc,
        &request_schema(doc, "post", "/api/v1/internal/orders/{id}/payment-status"),
    );
    for (notes, ok) in [
        ("line\nand\ttab", true),
        ("crlf\r\n", true),
        ("bell\u{7}", false),
        ("cr\ronly", false),
    ] {
        let body = json!({"status": "PAID", "notes": notes});
        assert_eq!(pay.is_valid(&body), ok, "document on {notes:?}");
        let fresh = app.create_order("alice").id();
        let path = format!("/api/v1/internal/orders/{fresh}/payment-status");
        let r = app.post_json(&path, Auth::Admin, &body);
        assert_eq!(r.status == 200, ok, "server on {notes:?}: {}", r.text);
    }
    for (plan, ok) in [
        ("..", false),
        (".", false),
        ("...", true),
        ("vps:basic_1.0", true),
        ("a/b", false),
    ] {
        let body = json!({"planId": plan, "imageId": "ubuntu-22-04", "duration": "MONTHLY"});
        assert_eq!(create.is_valid(&body), ok, "document on {plan:?}");
        let r = app.post_json(orders, Auth::User("alice"), &body);
        // A well-formed id the catalog does not know is INVALID_PLAN, not 400 BAD_REQUEST.
        assert_eq!(
            r.code() != "BAD_REQUEST",
            ok,
            "server on {plan:?}: {}",
            r.text
        );
    }
    let bad_key = json!({"planId": "vps-basic", "imageId": "ubuntu-22-04", "duration": "MONTHLY",
        "sshPublicKeys": ["ssh-dss AAAAB3NzaC1kc3MAAACBAP"]});
    assert!(!create.is_valid(&bad_key));
    assert_eq!(
        app.post_json(orders, Auth::User("alice"), &bad_key).status,
        400
    );
    assert_eq!(doc["servers"][0]["url"], "/");
    assert_eq!(
        doc["components"]["parameters"]["Limit"]["schema"]["maximum"],
        100
    );
    assert_eq!(
        doc["components"]["parameters"]["Page"]["schema"]["minimum"],
        1
    );
}

const ED25519: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICrc/SKQ2lxYjKAY5aGy0IyKZvZJJarimIXYH8ti5R7p alice@laptop";

#[test]
fn cors_is_off_by_default_and_follows_the_allow_list() {
    let app = spawn_app();
    let r = app.request(
        "GET",
        "/api/v1/health",
        Auth::None,
        &[("Origin", "https://shop.example")],
        None,
    );
    assert!(r.header("access-control-allow-origin").is_none());
    let app = spawn_app_with(|c| c.server.cors_origins = vec!["https://shop.example".into()]);
    let ok = app.request(
        "GET",
        "/api/v1/health",
        Auth::None,
        &[("Origin", "https://shop.example")],
        None,
    );
    assert_eq!(
        ok.header("access-control-allow-origin"),
        Some("https://shop.example")
    );
    let other = app.request(
        "GET",
        "/api/v1/health",
        Auth::None,
        &[("Origin", "https://evil.example")],
        None,
    );
    assert!(other.header("access-control-allow-origin").is_none());
    let preflight = app.request(
        "OPTIONS",
        "/api/v1/orders",
        Auth::None,
        &[("Origin", "https://shop.example")],
        None,
    );
    assert_eq!(preflight.status, 204);
}
