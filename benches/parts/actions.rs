//! Customer actions (SPEC §14): how fast `POST /orders/{id}/actions` is
//! accepted under load against the sandbox, and what one action costs in
//! DigitalOcean calls against the fake.

use std::time::{Duration, Instant};

use serde_json::json;

use super::support::process::Daemon;
use super::{config_for, fresh_dir, loadgen, token, CONNECTIONS, RUNS};

/// Orders each connection asks an action of, each once: a second ask while
/// the first is open is a 409 by design, so the rate of 202s is measured
/// over one ask per order.
const ORDERS_PER_CONNECTION: usize = 60;
const MEASURE: Duration = Duration::from_secs(30);

pub fn bench_actions() {
    println!(
        "\n## POST /api/v1/orders/{{id}}/actions (reboot), {CONNECTIONS} connections, sandbox"
    );
    let mut rates = Vec::new();
    let mut p99s = Vec::new();
    let mut ratios = Vec::new();
    for run in 0..RUNS {
        let (report, refused, orders) = accepted_under_load();
        let accepted = report.requests - report.errors;
        let rate = report.per_second * accepted as f64 / report.requests.max(1) as f64;
        println!(
            "  run {}: {accepted} asks, {rate:.0} accepted (202) per second, p50 {:.2} ms, p99 {:.2} ms; {refused} answered otherwise | same daemon, POST /orders {:.0}/s: ratio {:.2}x",
            run + 1,
            report.p50_ms,
            report.p99_ms,
            orders.per_second,
            rate / orders.per_second
        );
        rates.push(rate);
        p99s.push(report.p99_ms);
        ratios.push(rate / orders.per_second);
    }
    println!(
        "  median: {:.0} actions accepted per second, p99 {:.2} ms; {:.2}x POST /orders on the same daemon",
        loadgen::median(rates),
        loadgen::median(p99s),
        loadgen::median(ratios)
    );
    let calls = calls_per_action();
    println!("  reconciler: {calls:.1} DigitalOcean calls per reboot, from request to completed (fake DO, 10 actions)");
}

/// ACTIVE orders for `CONNECTIONS` users, then every connection asks its
/// orders for a reboot in turn; returns the load, the non-202 count, and
/// then POST /orders on the same daemon (the same-run baseline).
fn accepted_under_load() -> (loadgen::LoadReport, u64, loadgen::LoadReport) {
    let dir = fresh_dir("actions");
    let data = dir.join("vpsd.redb");
    let mut config = config_for(&dir, &data);
    config.actions.cooldown_seconds = 0;
    let daemon = Daemon::start(&config, &dir);
    let http = super::support::agent();
    let mut owned: Vec<Vec<String>> = vec![Vec::new(); CONNECTIONS];
    for (conn, orders) in owned.iter_mut().enumerate() {
        let bearer = format!("Bearer {}", token(&format!("bench-{conn}")));
        for _ in 0..ORDERS_PER_CONNECTION {
            orders.push(paid_order(&http, &daemon, &bearer));
        }
    }
    wait_all_active(&http, &daemon, CONNECTIONS * ORDERS_PER_CONNECTION);
    let tokens: Vec<String> = (0..CONNECTIONS)
        .map(|c| token(&format!("bench-{c}")))
        .collect();
    let body = r#"{"type":"reboot"}"#;
    let make: loadgen::MakeRequest = std::sync::Arc::new(move |conn, i| {
        let orders = &owned[conn];
        let id = &orders[i as usize % orders.len()];
        loadgen::post_json(
            &format!("/api/v1/orders/{id}/actions"),
            &[("Authorization", &format!("Bearer {}", tokens[conn]))],
            body,
        )
    });
    let report = loadgen::run_limited(
        daemon.addr,
        CONNECTIONS,
        Duration::ZERO,
        MEASURE,
        202,
        make,
        ORDERS_PER_CONNECTION as u64,
    );
    let orders = super::post_load_at(
        daemon.addr,
        CONNECTIONS,
        Duration::from_secs(1),
        Duration::from_secs(3),
    );
    daemon.terminate();
    let _ = std::fs::remove_dir_all(&dir);
    let refused = report.errors;
    (report, refused, orders)
}

fn paid_order(http: &ureq::Agent, daemon: &Daemon, bearer: &str) -> String {
    let order = json!({"planId": "vps-basic", "imageId": "ubuntu-22-04", "duration": "MONTHLY"});
    let created = post(
        http,
        &daemon.url("/api/v1/orders"),
        ("Authorization", bearer),
        order,
    );
    let id = created["data"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let pay = daemon.url(&format!("/api/v1/internal/orders/{id}/payment-status"));
    post(
        http,
        &pay,
        ("X-API-Key", super::support::API_KEY),
        json!({"status": "PAID"}),
    );
    id
}

fn post(
    http: &ureq::Agent,
    url: &str,
    auth: (&str, &str),
    body: serde_json::Value,
) -> serde_json::Value {
    let mut r = http
        .post(url)
        .header(auth.0, auth.1)
        .header("Content-Type", "application/json")
        .send(body.to_string())
        .expect("request");
    serde_json::from_str(&r.body_mut().read_to_string().unwrap_or_default()).unwrap_or_default()
}

fn get(http: &ureq::Agent, url: &str) -> serde_json::Value {
    let mut r = http
        .get(url)
        .header("X-API-Key", super::support::API_KEY)
        .call()
        .expect("request");
    serde_json::from_str(&r.body_mut().read_to_string().unwrap_or_default()).unwrap_or_default()
}

fn wait_all_active(http: &ureq::Agent, daemon: &Daemon, n: usize) {
    let url = daemon.url("/api/v1/internal/orders?status=ACTIVE&limit=1");
    let deadline = Instant::now() + Duration::from_secs(300);
    while get(http, &url)["meta"]["total"].as_u64() != Some(n as u64) {
        assert!(Instant::now() < deadline, "orders never all ACTIVE");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Ten ACTIVE orders on the DigitalOcean fake, a reboot each; the fake's
/// requests from the first request to the last completion, per action.
fn calls_per_action() -> f64 {
    const N: usize = 10;
    let fake = super::support::fake_do::FakeDo::start();
    let dir = fresh_dir("actions-calls");
    let data = dir.join("vpsd.redb");
    let mut config = config_for(&dir, &data);
    super::support::use_fake_do(&mut config, &fake);
    config.actions.cooldown_seconds = 0;
    let daemon = Daemon::start(&config, &dir);
    let http = super::support::agent();
    let bearer = format!("Bearer {}", token("bench-calls"));
    let ids: Vec<String> = (0..N)
        .map(|_| paid_order(&http, &daemon, &bearer))
        .collect();
    wait_all_active(&http, &daemon, N);
    fake.clear_requests();
    for id in &ids {
        let url = daemon.url(&format!("/api/v1/orders/{id}/actions"));
        post(
            &http,
            &url,
            ("Authorization", &bearer),
            json!({"type": "reboot"}),
        );
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    for id in &ids {
        let url = daemon.url(&format!("/api/v1/internal/orders/{id}/actions?limit=1"));
        while get(&http, &url)["data"][0]["status"] != "completed" {
            assert!(Instant::now() < deadline, "an action never completed");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let calls = fake.requests().len();
    daemon.terminate();
    let _ = std::fs::remove_dir_all(&dir);
    calls as f64 / N as f64
}
