//! Issue 13's drop-in and outbound items (SPEC §12, §3): a v1 environment gets
//! v1 behaviour, what vpsd sends out (ids, tokens, redirects, rate budget) is
//! bounded, what customers read of DigitalOcean's errors is fixed text, files
//! are private, and the real catalog-service's quirks are understood.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use vpsd::config::CatalogSource;

use crate::support::fake_catalog::{FakeCatalog, V1_IMAGE, V1_LATER_PLAN, V1_OTHER_IMAGE, V1_PLAN};
use crate::support::fake_do::{DropletScript, FakeDo};
use crate::support::process::Daemon;
use crate::support::{
    agent, hs256_token, now_secs, spawn_app_with, use_fake_do, wait_for, Auth, TestApp, API_KEY,
    SECRET,
};

/// A token in DigitalOcean's format, distinctive enough to grep logs for.
const DO_TOKEN: &str = "dop_v1_3f9c0a7e5b2d4c6e8f1a3b5c7d9e0f2a4b6c8d0e1f3a5b7c9d";

/// A JSON request to a child daemon: (status, body).
fn call(
    daemon: &Daemon,
    method: &str,
    path: &str,
    auth: (&str, &str),
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = ureq::http::Request::builder()
        .method(method)
        .uri(daemon.url(path))
        .header(auth.0, auth.1);
    let bytes = match body {
        Some(v) => {
            request = request.header("Content-Type", "application/json");
            serde_json::to_vec(&v).expect("json")
        }
        None => Vec::new(),
    };
    let mut response = agent()
        .run(request.body(bytes).expect("request"))
        .expect("HTTP round trip");
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn free_port() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port().to_string()
}

/// The environment a v1 deployment has, with `catalog_var` and `token_var`
/// naming the catalog URL and the token. The DigitalOcean URL is the only
/// vpsd name: v1 could not point its client anywhere but DigitalOcean.
fn v1_env(
    port: &str,
    catalog: &FakeCatalog,
    fake: &FakeDo,
    catalog_var: &'static str,
    token_var: &'static str,
) -> Vec<(&'static str, String)> {
    vec![
        ("PORT", port.to_string()),
        ("JWT_ALGORITHM", "HS256".into()),
        ("JWT_SECRET", SECRET.into()),
        ("INTERNAL_API_KEY", API_KEY.into()),
        (catalog_var, catalog.url()),
        (token_var, DO_TOKEN.into()),
        // v1's own tests run with 100 ms.
        ("PROVISIONING_POLL_INTERVAL_MS", "100".into()),
        ("VPSD_CLOUD__DIGITALOCEAN__API_URL", fake.url()),
    ]
}

/// Orders the fake catalog's sample plan as alice, pays, and waits for ACTIVE.
fn order_pay_and_wait_active(daemon: &Daemon, fake: &FakeDo) -> String {
    let token = hs256_token(SECRET, json!({"sub": "alice", "exp": now_secs() + 600}));
    let bearer = format!("Bearer {token}");
    let (status, body) = call(
        daemon,
        "POST",
        "/api/v1/orders",
        ("Authorization", &bearer),
        Some(json!({"planId": "plan-basic", "imageId": "img-ubuntu", "duration": "MONTHLY"})),
    );
    assert_eq!(status, 201, "{body}");
    let id = body["data"]["id"].as_str().expect("id").to_string();
    let pay = format!("/api/v1/internal/orders/{id}/payment-status");
    let (status, body) = call(
        daemon,
        "POST",
        &pay,
        ("X-API-Key", API_KEY),
        Some(json!({"status": "PAID"})),
    );
    assert_eq!(status, 200, "{body}");
    assert!(
        fake.wait_for_count("POST", "/v2/droplets", 1, Duration::from_secs(20)),
        "the DigitalOcean fake never got a create"
    );
    let admin = format!("/api/v1/internal/orders/{id}");
    let active = wait_for(Duration::from_secs(30), || {
        let (_, body) = call(daemon, "GET", &admin, ("X-API-Key", API_KEY), None);
        (body["data"]["status"] == "ACTIVE").then_some(body)
    });
    assert!(active.is_some(), "order {id} never became ACTIVE");
    id
}

fn note<'a>(lines: &'a [Value], setting: &str) -> &'a Value {
    lines
        .iter()
        .find(|l| l["fields"]["setting"] == setting)
        .unwrap_or_else(|| panic!("no start-up line about {setting}: {lines:?}"))
}

#[test]
fn a_v1_environment_gets_the_http_catalog_and_digitalocean_and_says_why() {
    for (catalog_var, token_var) in [
        ("CATALOG_SERVICE_URL", "DIGITALOCEAN_API_TOKEN"),
        ("CATALOG_SERVICE_BASE_URL", "DO_ACCESS_TOKEN"),
    ] {
        let catalog = FakeCatalog::with_sample();
        let fake = FakeDo::start_with_token(DO_TOKEN);
        fake.set_default_script(DropletScript::new().active_after(0));
        // No Config.toml in the working directory: only the environment speaks.
        let dir = tempfile::tempdir().expect("temp dir");
        let env = v1_env(&free_port(), &catalog, &fake, catalog_var, token_var);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let daemon = Daemon::try_start_with(&["serve"], dir.path(), &env)
            .unwrap_or_else(|e| panic!("{catalog_var}/{token_var}: {e}"));
        let lines: Vec<Value> = daemon
            .startup
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let source = note(&lines, "catalog.source");
        assert_eq!(source["fields"]["value"], "http", "{source}");
        assert!(
            source["fields"]["why"]
                .as_str()
                .unwrap_or("")
                .contains(catalog_var),
            "{source}"
        );
        let provider = note(&lines, "cloud.provider");
        assert_eq!(provider["fields"]["value"], "digitalocean", "{provider}");
        assert!(
            provider["fields"]["why"]
                .as_str()
                .unwrap_or("")
                .contains(token_var),
            "{provider}"
        );
        assert_eq!(
            note(&lines, "provisioning.poll_interval_ms")["level"],
            "WARN"
        );

        order_pay_and_wait_active(&daemon, &fake);
        assert!(
            catalog
                .requests()
                .iter()
                .any(|r| r.path.ends_with("/plans/plan-basic")),
            "the catalog-service was never asked"
        );
        let (code, rest) = daemon.terminate_with_logs();
        assert_eq!(code, Some(0));
        for line in lines.iter().map(Value::to_string).chain(rest) {
            assert!(!line.contains(DO_TOKEN), "token in a log line: {line}");
        }
    }
}

#[test]
fn rust_log_trace_never_opens_the_http_clients_debug_output() {
    let catalog = FakeCatalog::with_sample();
    let fake = FakeDo::start_with_token(DO_TOKEN);
    fake.set_default_script(DropletScript::new().active_after(0));
    let dir = tempfile::tempdir().expect("temp dir");
    let mut env = v1_env(
        &free_port(),
        &catalog,
        &fake,
        "CATALOG_SERVICE_URL",
        "DIGITALOCEAN_API_TOKEN",
    );
    env.push(("RUST_LOG", "trace".into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let daemon = Daemon::try_start_with(&["serve"], dir.path(), &env).expect("daemon starts");
    let startup = daemon.startup.clone();
    order_pay_and_wait_active(&daemon, &fake);
    let (_, rest) = daemon.terminate_with_logs();
    let lines: Vec<String> = startup.into_iter().chain(rest).collect();
    let clients = ["ureq", "ureq_proto", "rustls", "hyper", "hyper_util", "h2"];
    let mut own_debug = 0;
    for line in &lines {
        assert!(!line.contains(DO_TOKEN), "token in a log line: {line}");
        let Ok(json) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let target = json["target"].as_str().unwrap_or("");
        let level = json["level"].as_str().unwrap_or("");
        let verbose = level == "DEBUG" || level == "TRACE";
        let client = clients
            .iter()
            .any(|c| target == *c || target.starts_with(&format!("{c}::")));
        assert!(!(client && verbose), "HTTP client internals logged: {line}");
        if verbose && target.starts_with("vpsd") {
            own_debug += 1;
        }
    }
    assert!(own_debug > 0, "RUST_LOG=trace was not in effect: {lines:?}");
}

#[test]
fn a_rate_budget_at_or_below_the_reserve_still_provisions() {
    let fake = FakeDo::start();
    fake.set_default_script(DropletScript::new().active_after(0));
    // Five calls per two-second window: all of it at or below the old fixed
    // reserve of five, which let one tag list through per window and never a create.
    fake.set_rate_window(5, Duration::from_secs(2));
    let app = spawn_app_with(|c| use_fake_do(c, &fake));
    let id = app.create_order("alice").id();
    app.pay(&id);
    let done = app.wait_for_status(&id, &["ACTIVE", "FAILED"], Duration::from_secs(40));
    assert_eq!(done.data()["status"], "ACTIVE", "{}", done.text);
    assert_eq!(fake.count("POST", "/v2/droplets"), 1);
}

fn http_catalog_app(catalog: &FakeCatalog) -> TestApp {
    let url = catalog.url();
    spawn_app_with(move |c| {
        c.catalog.source = CatalogSource::Http;
        c.catalog.url = Some(url);
        c.catalog.timeout_ms = 2000;
        c.catalog.sizes.insert(V1_PLAN.into(), "s-1vcpu-1gb".into());
    })
}

#[test]
fn plan_and_image_ids_outside_the_pattern_are_400_before_any_catalog_call() {
    let catalog = FakeCatalog::with_sample();
    let app = http_catalog_app(&catalog);
    let long = "p".repeat(65);
    for bad in [".", "..", "a/b", "a b", "a?b", "%2e%2e", long.as_str()] {
        for field in ["planId", "imageId"] {
            let mut body =
                json!({"planId": "plan-basic", "imageId": "img-ubuntu", "duration": "MONTHLY"});
            body[field] = json!(bad);
            let r = app.post_json("/api/v1/orders", Auth::User("alice"), &body);
            assert_eq!(
                (r.status, r.code()),
                (400, "BAD_REQUEST"),
                "{field}={bad:?}: {}",
                r.text
            );
            assert_eq!(
                r.body["error"]["details"]["fields"][0]["field"], field,
                "{}",
                r.text
            );
        }
    }
    assert!(catalog.requests().is_empty(), "{:?}", catalog.requests());
    // Every character of the pattern passes it (and is encoded where it must be).
    let r = app.post_json(
        "/api/v1/orders",
        Auth::User("alice"),
        &json!({"planId": "Plan:v2.0_x-y", "imageId": "img-ubuntu", "duration": "MONTHLY"}),
    );
    assert_eq!(r.code(), "INVALID_PLAN", "{}", r.text);
    assert!(catalog
        .requests()
        .iter()
        .any(|r| r.path.ends_with("/plans/Plan%3Av2.0_x-y")));
}

#[test]
fn customers_read_a_fixed_text_for_provisioning_errors_operators_read_digitaloceans() {
    let fake = FakeDo::start();
    let leaky = "image unavailable for team db7.internal.example (token dop_v1_3f9c...)";
    fake.reject_next_create(422, "unprocessable_entity", leaky);
    let app = spawn_app_with(|c| use_fake_do(c, &fake));
    let id = app.create_order("alice").id();
    app.pay(&id);
    let admin = app.wait_for_status(&id, &["FAILED"], Duration::from_secs(20));
    let task = &admin.data()["provisioningTask"];
    assert_eq!(task["errorCode"], "DROPLET_CREATION_FAILED");
    assert!(
        task["errorMessage"]
            .as_str()
            .unwrap_or("")
            .contains("db7.internal"),
        "{task}"
    );

    let own = app.get(&format!("/api/v1/orders/{id}"), Auth::User("alice"));
    let listed = app.get("/api/v1/orders", Auth::User("alice"));
    let cancel_attempt =
        app.post_empty(&format!("/api/v1/orders/{id}/cancel"), Auth::User("alice"));
    for (what, task) in [
        ("get", &own.data()["provisioningTask"]),
        ("list", &listed.data()[0]["provisioningTask"]),
    ] {
        assert_eq!(
            task["errorCode"], "DROPLET_CREATION_FAILED",
            "{what}: {task}"
        );
        let text = task["errorMessage"].as_str().unwrap_or("");
        assert!(
            text.starts_with("The server could not be created"),
            "{what}: {text}"
        );
        assert!(
            !text.contains("db7") && !text.contains("dop_v1"),
            "{what}: {text}"
        );
    }
    assert!(
        !cancel_attempt.text.contains("db7"),
        "{}",
        cancel_attempt.text
    );
}

#[cfg(unix)]
#[test]
fn files_vpsd_writes_are_0600_and_directories_it_creates_0700() {
    if crate::support::skip_on_postgres("modes of the redb file, its folders and its snapshots") {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| {
        std::fs::metadata(p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .permissions()
            .mode()
            & 0o777
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().to_path_buf();
    let app = spawn_app_with(|c| {
        c.storage.path = root.join("state/nested/vpsd.redb");
        c.backup.dir = root.join("snapshots/daily");
    });
    let id = app.create_order("alice").id();
    app.pay(&id);
    app.wait_for_status(&id, &["ACTIVE"], Duration::from_secs(20));
    let backup = app.post_empty("/api/v1/internal/backups", Auth::Admin);
    assert_eq!(backup.status, 201, "{}", backup.text);
    let snapshot = std::path::PathBuf::from(backup.data()["file"].as_str().expect("file"));

    for d in ["state", "state/nested", "snapshots", "snapshots/daily"] {
        assert_eq!(mode(&root.join(d)), 0o700, "{d}");
    }
    let sidecar = root.join("state/nested/vpsd.redb.sandbox.json");
    for f in [root.join("state/nested/vpsd.redb"), sidecar, snapshot] {
        assert_eq!(mode(&f), 0o600, "{}", f.display());
    }
}

/// Answers every request with `307` to the same path on `target`, counting them.
fn redirector(target: String) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            let mut first = String::new();
            if reader.read_line(&mut first).is_err() {
                continue;
            }
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) == 0 || header.trim().is_empty() {
                    break;
                }
            }
            counted.fetch_add(1, Ordering::SeqCst);
            let path = first.split_whitespace().nth(1).unwrap_or("/");
            let mut stream = reader.into_inner();
            let _ = write!(
                stream,
                "HTTP/1.1 307 Temporary Redirect\r\nLocation: {target}{path}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    (url, hits)
}

#[test]
fn outbound_clients_follow_no_redirects() {
    let catalog = FakeCatalog::with_sample();
    let (catalog_hop, catalog_hits) = redirector(catalog.url());
    let app = spawn_app_with(|c| {
        c.catalog.source = CatalogSource::Http;
        c.catalog.url = Some(catalog_hop);
        c.catalog.timeout_ms = 2000;
    });
    let r = app.post_json(
        "/api/v1/orders",
        Auth::User("alice"),
        &json!({"planId": "plan-basic", "imageId": "img-ubuntu", "duration": "MONTHLY"}),
    );
    assert_eq!(
        (r.status, r.code()),
        (503, "CATALOG_SERVICE_UNAVAILABLE"),
        "{}",
        r.text
    );
    assert!(catalog_hits.load(Ordering::SeqCst) > 0);
    assert!(
        catalog.requests().is_empty(),
        "followed: {:?}",
        catalog.requests()
    );

    // The token's requests, through a redirecting "DigitalOcean".
    let fake = FakeDo::start();
    let (do_hop, do_hits) = redirector(fake.url());
    let app = spawn_app_with(|c| {
        use_fake_do(c, &fake);
        c.cloud.digitalocean.api_url = do_hop;
    });
    let id = app.create_order("alice").id();
    app.pay(&id);
    let seen = wait_for(Duration::from_secs(20), || {
        app.sweep();
        let r = app.admin_order(&id);
        (r.data()["provisioningTask"]["errorCode"] == "DIGITALOCEAN_UNAVAILABLE").then_some(r)
    });
    assert!(seen.is_some(), "{}", app.admin_order(&id).text);
    assert!(do_hits.load(Ordering::SeqCst) > 0);
    assert!(
        fake.requests().is_empty(),
        "followed: {:?}",
        fake.requests()
    );
}

fn v1_catalog_app(catalog: &FakeCatalog) -> TestApp {
    http_catalog_app(catalog)
}

/// A user id as the v1 platform issues them (the service insists on UUID v4).
const V1_USER: &str = "0b6f3c2a-4d5e-4f60-9a1b-2c3d4e5f6a7b";

fn v1_order(
    app: &TestApp,
    user: &str,
    plan: &str,
    image: &str,
    duration: &str,
    coupon: Option<&str>,
) -> crate::support::Resp {
    let mut body = json!({"planId": plan, "imageId": image, "duration": duration});
    if let Some(c) = coupon {
        body["couponCode"] = json!(c);
    }
    app.post_json("/api/v1/orders", Auth::User(user), &body)
}

fn total(app: &TestApp) -> u64 {
    app.get("/api/v1/internal/orders", Auth::Admin).body["meta"]["total"]
        .as_u64()
        .unwrap_or(u64::MAX)
}

#[test]
fn a_coupon_request_the_real_service_refuses_is_invalid_coupon_not_503() {
    let catalog = FakeCatalog::like_v1_service();
    let app = v1_catalog_app(&catalog);
    // "alice" is not a UUID: the service answers 400 to the validate body.
    let r = v1_order(&app, "alice", V1_PLAN, V1_IMAGE, "MONTHLY", Some("HEMAT20"));
    assert_eq!((r.status, r.code()), (400, "INVALID_COUPON"), "{}", r.text);
    assert_eq!(
        r.body["error"]["details"]["reason"], "CATALOG_REJECTED",
        "{}",
        r.text
    );
    assert_eq!(total(&app), 0, "nothing written");
    assert!(catalog
        .requests()
        .iter()
        .any(|r| r.path.ends_with("/coupons/validate")));
}

#[test]
fn float_prices_from_the_real_service_are_rounded_half_away_from_zero() {
    let catalog = FakeCatalog::like_v1_service();
    let app = v1_catalog_app(&catalog);
    let r = v1_order(&app, V1_USER, V1_PLAN, V1_IMAGE, "MONTHLY", Some("hemat20"));
    assert_eq!(r.status, 201, "{}", r.text);
    // 150000.0 -> 135000.4 after promo -> 135000; discount 27000.5 -> 27001.
    assert_eq!(
        r.data()["pricing"],
        json!({"basePrice": 150000, "promoDiscount": 15000, "couponCode": "HEMAT20",
               "couponDiscount": 27001, "finalPrice": 107999, "currency": "IDR"})
    );
    let annual = v1_order(&app, V1_USER, V1_PLAN, V1_IMAGE, "ANNUAL", None);
    assert_eq!(annual.status, 201, "{}", annual.text);
    assert_eq!(annual.data()["pricing"]["basePrice"], 1500001);
    assert_eq!(annual.data()["finalPrice"], 1500001);
}

#[test]
fn an_image_the_plan_does_not_list_is_invalid_image() {
    let catalog = FakeCatalog::like_v1_service();
    let app = v1_catalog_app(&catalog);
    let r = v1_order(&app, V1_USER, V1_PLAN, V1_OTHER_IMAGE, "MONTHLY", None);
    assert_eq!((r.status, r.code()), (400, "INVALID_IMAGE"), "{}", r.text);
    assert!(catalog
        .requests()
        .iter()
        .any(|r| r.path == "/api/v1/catalog/images"));
    let r = v1_order(&app, V1_USER, V1_PLAN, V1_IMAGE, "MONTHLY", None);
    assert_eq!(r.status, 201, "{}", r.text);

    // The rule alone, on a plan with whole prices and a documented shape.
    let catalog = FakeCatalog::with_sample();
    catalog.add_image(json!({"id": "img-debian", "providerSlug": "debian-12-x64",
        "displayName": "Debian 12", "isActive": true}));
    let app = v1_catalog_app(&catalog);
    // No list yet: every image is offered.
    let r = v1_order(&app, "alice", "plan-basic", "img-debian", "MONTHLY", None);
    assert_eq!(r.status, 201, "{}", r.text);
    catalog.set_plan_images("plan-basic", &["img-ubuntu"]);
    let r = v1_order(&app, "alice", "plan-basic", "img-debian", "MONTHLY", None);
    assert_eq!((r.status, r.code()), (400, "INVALID_IMAGE"), "{}", r.text);
    let r = v1_order(&app, "alice", "plan-basic", "img-ubuntu", "MONTHLY", None);
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(total(&app), 2);
}

#[test]
fn the_later_available_periods_plan_shape_is_priced() {
    let catalog = FakeCatalog::like_v1_service();
    let app = v1_catalog_app(&catalog);
    let monthly = v1_order(&app, V1_USER, V1_LATER_PLAN, V1_IMAGE, "MONTHLY", None);
    assert_eq!(monthly.status, 201, "{}", monthly.text);
    assert_eq!(
        monthly.data()["pricing"],
        json!({"basePrice": 250000, "promoDiscount": 0, "couponCode": null,
               "couponDiscount": 0, "finalPrice": 250000, "currency": "IDR"})
    );
    let annual = v1_order(&app, V1_USER, V1_LATER_PLAN, V1_IMAGE, "ANNUAL", None);
    assert_eq!(
        annual.data()["pricing"]["basePrice"],
        2500000,
        "{}",
        annual.text
    );
    let paid = app.pay(&monthly.id());
    assert_eq!(paid.data()["provisioningTask"]["doSize"], "s-2vcpu-2gb");
    for duration in ["QUARTERLY", "SEMI_ANNUAL"] {
        let r = v1_order(&app, V1_USER, V1_LATER_PLAN, V1_IMAGE, duration, None);
        assert_eq!(r.code(), "INVALID_DURATION", "{duration}");
    }
}
