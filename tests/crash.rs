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
