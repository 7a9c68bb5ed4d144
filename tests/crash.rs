//! Crash tests: the real binary, killed with SIGKILL at the worst moments.

mod support;

use std::time::Duration;

use serde_json::json;
use support::fake_do::{DropletScript, FakeDo};
use support::process::Daemon;
use support::{agent, base_config, hs256_token, now_secs, wait_for, API_KEY, SECRET};
use vpsd::config::CloudProvider;

fn post(
    agent: &ureq::Agent,
    url: &str,
    auth: (&str, &str),
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let mut r = agent
        .post(url)
        .header(auth.0, auth.1)
        .header("Content-Type", "application/json")
        .send(body.to_string())
        .expect("request");
    let status = r.status().as_u16();
    let text = r.body_mut().read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or_default())
}

fn get(agent: &ureq::Agent, url: &str) -> serde_json::Value {
    let mut r = agent
        .get(url)
        .header("X-API-Key", API_KEY)
        .call()
        .expect("request");
    serde_json::from_str(&r.body_mut().read_to_string().unwrap_or_default()).unwrap_or_default()
}

#[test]
fn sigkill_between_the_create_and_its_commit_makes_exactly_one_droplet() {
    let fake = FakeDo::start();
    fake.set_default_script(DropletScript::new());
    fake.hold_creates(true);
    let dir = tempfile::tempdir().unwrap();
    let mut config = base_config(dir.path());
    config.cloud.provider = CloudProvider::Digitalocean;
    config.cloud.digitalocean.api_url = fake.url();
    config.cloud.digitalocean.token = Some("test-token".into());
    config.cloud.digitalocean.timeout_ms = 60_000;
    config.provisioning.poll_interval_ms = 1000;

    let daemon = Daemon::start(&config, dir.path());
    let http = agent();
    let token = hs256_token(SECRET, json!({"sub": "alice", "exp": now_secs() + 600}));
    let (status, created) = post(
        &http,
        &daemon.url("/api/v1/orders"),
        ("Authorization", &format!("Bearer {token}")),
        json!({"planId": "vps-basic", "imageId": "ubuntu-22-04", "duration": "MONTHLY"}),
    );
    assert_eq!(status, 201);
    let id = created["data"]["id"].as_str().unwrap().to_string();
    let (status, _) = post(
        &http,
        &daemon.url(&format!("/api/v1/internal/orders/{id}/payment-status")),
        ("X-API-Key", API_KEY),
        json!({"status": "PAID"}),
    );
    assert_eq!(status, 200);

    // DigitalOcean has the create; vpsd is waiting for the answer. Kill it.
    assert!(fake.wait_for_count("POST", "/v2/droplets", 1, Duration::from_secs(20)));
    daemon.kill9();
    fake.release_creates();
    fake.hold_creates(false);

    let daemon = Daemon::start(&config, dir.path());
    let url = daemon.url(&format!("/api/v1/internal/orders/{id}"));
    let active = wait_for(Duration::from_secs(30), || {
        let order = get(&http, &url);
        (order["data"]["status"] == "ACTIVE").then_some(order)
    })
    .expect("order became ACTIVE after the restart");
    assert_eq!(
        fake.droplet_ids_with_tag(&format!("vpsd-order-{id}")).len(),
        1
    );
    assert_eq!(fake.count("POST", "/v2/droplets"), 1, "no second create");
    let task = &active["data"]["provisioningTask"];
    assert_eq!(task["status"], "SUCCESS");
    assert_eq!(
        task["dropletId"].as_str().unwrap(),
        fake.droplet_ids_with_tag(&format!("vpsd-order-{id}"))[0].to_string()
    );
    assert_eq!(daemon.terminate(), Some(0));
}

#[test]
fn sigterm_finishes_the_request_in_flight_then_exits_zero_and_restarts_clean() {
    let catalog = support::fake_catalog::FakeCatalog::with_sample();
    catalog.set_delay(Duration::from_millis(1500));
    let dir = tempfile::tempdir().unwrap();
    let mut config = base_config(dir.path());
    config.catalog.source = vpsd::config::CatalogSource::Http;
    config.catalog.url = Some(catalog.url());
    config.catalog.timeout_ms = 10_000;
    let daemon = Daemon::start(&config, dir.path());
    let url = daemon.url("/api/v1/orders");
    let token = hs256_token(SECRET, json!({"sub": "alice", "exp": now_secs() + 600}));
    let in_flight = std::thread::spawn(move || {
        post(
            &agent(),
            &url,
            ("Authorization", &format!("Bearer {token}")),
            json!({"planId": "plan-basic", "imageId": "img-ubuntu", "duration": "MONTHLY"}),
        )
    });
    // The request is waiting on the slow catalog when SIGTERM arrives.
    wait_for(Duration::from_secs(10), || {
        (!catalog.requests().is_empty()).then_some(())
    })
    .expect("request reached the catalog");
    let addr = daemon.addr;
    assert_eq!(daemon.terminate(), Some(0));
    let (status, body) = in_flight.join().unwrap();
    assert_eq!(status, 201, "the in-flight request was answered: {body}");
    let id = body["data"]["id"].as_str().unwrap().to_string();
    // The port is closed once it has exited.
    assert!(std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err());

    let report = vpsd::store::backup::verify(&config.storage.path).expect("clean data file");
    assert_eq!(report.orders, 1);
    catalog.set_delay(Duration::ZERO);
    let daemon = Daemon::start(&config, dir.path());
    let order = get(
        &agent(),
        &daemon.url(&format!("/api/v1/internal/orders/{id}")),
    );
    assert_eq!(order["data"]["status"], "PENDING_PAYMENT");
    assert_eq!(daemon.terminate(), Some(0));
}
