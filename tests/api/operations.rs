//! Operations: backups that restore, verify, metrics, OpenAPI, hardening.

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{spawn_app, spawn_app_with, wait_for, Auth, TestApp};

const BIN: &str = env!("CARGO_BIN_EXE_vpsd");

fn backup(app: &TestApp) -> crate::support::Resp {
    app.post_empty("/api/v1/internal/backups", Auth::Admin)
}

fn snapshot_ids(path: &str) -> HashSet<String> {
    let store = vpsd::store::Store::open(std::path::Path::new(path)).expect("open snapshot");
    let page = store
        .list_orders(&vpsd::domain::ListQuery {
            expires_before: None,
            user: None,
            status: None,
            page: 1,
            limit: 1_000_000,
        })
        .expect("list");
    let ids = page.items.iter().map(|r| r.order.id.to_string()).collect();
    store.shutdown();
    ids
}

#[test]
fn online_backup_under_concurrent_writes_is_consistent_to_one_commit() {
    let app = spawn_app();
    for _ in 0..20 {
        app.create_order("seed");
    }
    // (sent, answered, id) of every order created while the backup runs.
    let log = std::sync::Mutex::new(Vec::new());
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (backup_sent, backup_answered, file) = std::thread::scope(|s| {
        for w in 0..4 {
            let (app, log, stop) = (&app, &log, &stop);
            s.spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let sent = Instant::now();
                    let r = app.post_json(
                        "/api/v1/orders",
                        Auth::User(&format!("writer-{w}")),
                        &json!({"planId": "vps-basic", "imageId": "ubuntu-22-04", "duration": "MONTHLY"}),
                    );
                    assert_eq!(r.status, 201);
                    log.lock().unwrap().push((sent, Instant::now(), r.id()));
                }
            });
        }
        // Until a write sent after `since` was answered (checked below).
        let a_write_since = |since: Option<Instant>| {
            wait_for(Duration::from_secs(20), || {
                let log = log.lock().unwrap();
                log.iter()
                    .any(|(sent, _, _)| since.is_none_or(|t| *sent > t))
                    .then_some(())
            })
        };
        a_write_since(None);
        let sent = Instant::now();
        let r = backup(&app);
        let answered = Instant::now();
        a_write_since(Some(answered));
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(r.status, 201, "{}", r.text);
        (
            sent,
            answered,
            r.data()["file"].as_str().unwrap().to_string(),
        )
    });
    let in_backup = snapshot_ids(&file);
    let log = log.into_inner().unwrap();
    let before: Vec<_> = log
        .iter()
        .filter(|(_, answered, _)| *answered < backup_sent)
        .collect();
    let after: Vec<_> = log
        .iter()
        .filter(|(sent, _, _)| *sent > backup_answered)
        .collect();
    assert!(
        !before.is_empty() && !after.is_empty(),
        "writes ran on both sides of the backup"
    );
    for (_, _, id) in &before {
        assert!(
            in_backup.contains(id),
            "order {id} was committed before the backup but is missing"
        );
    }
    for (_, _, id) in &after {
        assert!(
            !in_backup.contains(id),
            "order {id} was created after the backup but is in it"
        );
    }
    let report =
        vpsd::store::backup::verify(std::path::Path::new(&file)).expect("snapshot verifies");
    assert_eq!(report.orders as usize, in_backup.len());
}

#[test]
fn backup_response_and_file_permissions() {
    let app = spawn_app();
    app.create_order("alice");
    let r = backup(&app);
    assert_eq!(r.status, 201, "{}", r.text);
    let d = r.data();
    let file = d["file"].as_str().unwrap();
    assert!(file.starts_with('/'), "absolute: {file}");
    let name = std::path::Path::new(file)
        .file_name()
        .unwrap()
        .to_str()
        .unwrap();
    assert!(
        name.starts_with("vpsd-")
            && name.ends_with("Z.redb")
            && name.len() == "vpsd-20240115T100000Z.redb".len(),
        "{name}"
    );
    assert_eq!(d["orders"], 1);
    assert_eq!(
        d["bytes"].as_u64().unwrap(),
        std::fs::metadata(file).unwrap().len()
    );
    assert_eq!(d["createdAt"].as_str().unwrap().len(), 24);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(std::path::Path::new(file)), 0o600);
    assert_eq!(mode(&app.config.storage.path), 0o600);
    // Two in one second get distinct names.
    let second = backup(&app);
    assert_ne!(second.data()["file"], d["file"]);
    assert_eq!(
        app.post_empty("/api/v1/internal/backups", Auth::None)
            .code(),
        "API_KEY_MISSING"
    );
}

/// SPEC §15: `/health` names the backend and whether this instance runs the
/// background work; the one process on an embedded file always does.
#[test]
fn health_names_the_embedded_backend_and_its_background_work() {
    let app = spawn_app();
    let r = app.get("/api/v1/health", Auth::None);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.data()["backend"], "redb");
    assert_eq!(r.data()["backgroundWork"], true);
    // Every earlier field is still there, unchanged.
    for (field, value) in [("status", "ok"), ("storage", "ok"), ("cloud", "sandbox")] {
        assert_eq!(r.data()[field], value, "{}", r.text);
    }
    let doc = app.get("/api/v1/openapi.json", Auth::None).body;
    let health = &doc["components"]["schemas"]["Health"];
    for field in ["backend", "backgroundWork"] {
        assert!(
            health["required"]
                .as_array()
                .unwrap()
                .contains(&json!(field)),
            "Health requires {field}"
        );
    }
    // The refusal a PostgreSQL store gives (tests/api/pg_operations.rs) is
    // documented where it can happen.
    let codes = &doc["components"]["schemas"]["ErrorEnvelope"]["properties"]["error"]["properties"]
        ["code"]["enum"];
    assert!(codes
        .as_array()
        .unwrap()
        .contains(&json!("NOT_SUPPORTED_ON_BACKEND")));
    let refused = &doc["paths"]["/api/v1/internal/backups"]["post"]["responses"]["409"];
    assert!(
        refused.is_object(),
        "POST /internal/backups documents its 409"
    );
}

/// A backup folder that cannot be created is the operator's problem, not an
/// unavailable data file: 500, with the path kept out of the answer.
#[test]
fn backup_into_an_impossible_folder_is_an_internal_error_not_storage() {
    // A path under a regular file fails for root too, unlike permission bits.
    let blocker = tempfile::NamedTempFile::new().unwrap();
    let folder = blocker.path().join("backups");
    let app = spawn_app_with(|c| c.backup.dir = folder.clone());
    app.create_order("alice");
    let r = backup(&app);
    assert_eq!(r.status, 500, "{}", r.text);
    assert_eq!(r.code(), "INTERNAL_SERVER_ERROR");
    assert!(!r.text.contains("backups"), "{}", r.text);
    let m = app.get("/metrics", Auth::Admin).text;
    assert!(
        m.lines()
            .any(|l| l == "vpsd_backups_total{result=\"failure\"} 1"),
        "{m}"
    );
    // The data file itself is fine: orders still work.
    app.create_order("alice");
}

#[test]
fn scheduled_backups_keep_the_newest_files() {
    let app = spawn_app_with(|c| {
        c.backup.schedule = Some("* * * * * *".into());
        c.backup.keep = 2;
    });
    app.create_order("alice");
    let dir = app.config.backup.dir.clone();
    let count = || vpsd::store::backup::list_snapshots(&dir).unwrap().len();
    wait_for(Duration::from_secs(15), || (count() >= 2).then_some(()))
        .expect("two scheduled backups");
    // Let a few more runs happen: retention holds the folder at `keep`.
    let metrics_done = wait_for(Duration::from_secs(15), || {
        let m = app.get("/metrics", Auth::Admin).text;
        let runs = m
            .lines()
            .find(|l| l.starts_with("vpsd_backups_total{result=\"success\"}"))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        (runs >= 4).then_some(())
    });
    assert!(metrics_done.is_some(), "at least four scheduled runs");
    // A run counts its snapshot before it prunes the oldest, so right after
    // a count the folder may hold keep + 1 for a moment.
    wait_for(Duration::from_secs(15), || (count() == 2).then_some(()))
        .unwrap_or_else(|| panic!("retention never held the folder at 2: {}", count()));
}

#[test]
fn backup_wipe_restore_verify_restart_gives_the_same_data() {
    let app = spawn_app();
    let a = app.create_order("alice").id();
    app.pay(&a);
    app.wait_for_status(&a, &["ACTIVE"], Duration::from_secs(20));
    let b = app.create_order("bob").id();
    let before_a = app.admin_order(&a).body.clone();
    let before_b = app.admin_order(&b).body.clone();
    let file = backup(&app).data()["file"].as_str().unwrap().to_string();

    // Disaster: the daemon stops and the data file is lost.
    let data = app.config.storage.path.clone();
    let config = app.config.clone();
    let mut app = app;
    let dir = app.dir.take();
    drop(app);
    std::fs::remove_file(&data).unwrap();

    // Restore: copy the backup over the data file, verify, start.
    std::fs::copy(&file, &data).unwrap();
    let out = std::process::Command::new(BIN)
        .arg("verify")
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains("orders: 2") && stdout.trim_end().ends_with("ok"),
        "{stdout}"
    );
    let app = crate::support::start(config, dir);
    assert_eq!(app.admin_order(&a).body, before_a);
    assert_eq!(app.admin_order(&b).body, before_b);
}

#[test]
fn verify_names_a_broken_index_and_a_truncated_file() {
    let app = spawn_app();
    for user in ["alice", "bob", "carol"] {
        app.create_order(user);
    }
    let path = app.config.storage.path.clone();
    let mut app = app;
    let dir = app.dir.take();
    drop(app);
    let run = |p: &std::path::Path| {
        std::process::Command::new(BIN)
            .arg("verify")
            .arg(p)
            .output()
            .unwrap()
    };
    let clean = run(&path);
    assert!(
        clean.status.success(),
        "{}",
        String::from_utf8_lossy(&clean.stderr)
    );
    let text = String::from_utf8(clean.stdout).unwrap();
    assert_eq!(text, "orders: 3\nitems: 6\nhistory: 3\ntasks: 0\nok\n");

    // Point bob's index entry somewhere else.
    let copy = dir.as_ref().unwrap().path().join("broken.redb");
    std::fs::copy(&path, &copy).unwrap();
    {
        let db = redb::Database::create(&copy).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut index = txn.open_table(vpsd::store::tables::BY_USER).unwrap();
            index
                .insert(("bob", 2u64), uuid::Uuid::new_v4().as_u128())
                .unwrap();
        }
        txn.commit().unwrap();
    }
    let broken = run(&copy);
    assert_eq!(broken.status.code(), Some(1));
    let err = String::from_utf8_lossy(&broken.stderr);
    assert!(err.contains("orders_by_user"), "{err}");

    let truncated = dir.as_ref().unwrap().path().join("truncated.redb");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).unwrap();
    let out = run(&truncated);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.starts_with("vpsd: verify"), "{err}");
}

#[test]
fn offline_backup_refuses_while_the_daemon_runs() {
    let app = spawn_app();
    app.create_order("alice");
    let dir = tempfile::tempdir().unwrap();
    let config_path = crate::support::process::write_config(&app.config, dir.path());
    let backup_to_copy = || {
        std::process::Command::new(BIN)
            .args(["backup", "--to"])
            .arg(dir.path().join("copy.redb"))
            .arg("--config")
            .arg(&config_path)
            .env_clear()
            .output()
            .unwrap()
    };
    let out = backup_to_copy();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("locked"));
    assert!(!dir.path().join("copy.redb").exists());

    let mut app = app;
    let _data_dir = app.dir.take();
    drop(app);
    let out = backup_to_copy();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = vpsd::store::backup::verify(&dir.path().join("copy.redb")).unwrap();
    assert_eq!(report.orders, 1);
}

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
    assert!(get("vpsd_data_file_bytes") > 0.0);
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
