//! SIGHUP reloads the embedded catalog; a broken file keeps the previous one.

mod support;

use serde_json::json;
use support::process::Daemon;
use support::{agent, base_config, hs256_token, now_secs, repo_path, SECRET};

fn order(http: &ureq::Agent, daemon: &Daemon, plan: &str) -> (u16, serde_json::Value) {
    let token = hs256_token(SECRET, json!({"sub": "alice", "exp": now_secs() + 600}));
    let mut r = http
        .post(daemon.url("/api/v1/orders"))
        .header("Authorization", format!("Bearer {token}"))
        .header("Content-Type", "application/json")
        .send(json!({"planId": plan, "imageId": "ubuntu-22-04", "duration": "MONTHLY"}).to_string())
        .unwrap();
    let status = r.status().as_u16();
    (
        status,
        serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap(),
    )
}

fn hup(daemon: &Daemon) {
    let ok = std::process::Command::new("kill")
        .arg("-HUP")
        .arg(daemon.child.id().to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

#[test]
fn sighup_reloads_the_embedded_catalog_and_keeps_it_when_the_file_is_broken() {
    let dir = tempfile::tempdir().unwrap();
    let shipped = std::fs::read_to_string(repo_path("config/catalog.toml")).unwrap();
    let catalog = dir.path().join("catalog.toml");
    std::fs::write(&catalog, &shipped).unwrap();
    let mut config = base_config(dir.path());
    config.catalog.file = catalog.clone();
    let daemon = Daemon::start(&config, dir.path());
    let http = agent();
    let (status, body) = order(&http, &daemon, "vps-mega");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("INVALID_PLAN"))
    );

    let added = format!(
        "{shipped}\n[[plans]]\nid = \"vps-mega\"\nname = \"mega\"\ndisplayName = \"VPS Mega\"\ncpu = 8\nmemoryMb = 16384\ndiskGb = 320\nsizeSlug = \"s-8vcpu-16gb\"\nprices = {{ MONTHLY = 1800000 }}\n"
    );
    std::fs::write(&catalog, added).unwrap();
    hup(&daemon);
    let created = support::wait_for(std::time::Duration::from_secs(10), || {
        let (status, body) = order(&http, &daemon, "vps-mega");
        (status == 201).then_some(body)
    })
    .expect("the new plan is orderable after SIGHUP");
    assert_eq!(created["data"]["planName"], "VPS Mega");
    assert_eq!(created["data"]["pricing"]["basePrice"], 1800000);

    // A broken file is refused and the catalog in use stays.
    std::fs::write(&catalog, "[[plans]]\nthis is not toml").unwrap();
    hup(&daemon);
    // Wait for the daemon to say it refused the file, then order again.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut refused = false;
    while !refused && std::time::Instant::now() < deadline {
        if let Ok(line) = daemon
            .logs
            .recv_timeout(std::time::Duration::from_millis(100))
        {
            refused = line.contains("catalog reload failed");
        }
    }
    assert!(refused, "the broken file was refused");
    let (status, _) = order(&http, &daemon, "vps-mega");
    assert_eq!(status, 201, "the previous catalog still serves");
    assert_eq!(daemon.terminate(), Some(0));
}

/// SPEC §13: SIGHUP re-reads the DigitalOcean accounts. Removing an account
/// a live order uses is refused (the old list stays); a list that keeps it
/// and adds one is taken.
#[test]
fn sighup_reloads_the_cloud_accounts_and_refuses_removing_one_in_use() {
    use std::time::Duration;
    use support::fake_do::FakeDo;
    use vpsd::config::accounts::AccountConfig;
    let fake = FakeDo::start_accounts(&[("tok-a", 5), ("tok-b", 5)]);
    let dir = tempfile::tempdir().unwrap();
    let mut config = base_config(dir.path());
    let account = |name: &str, token: &str| AccountConfig::named(name, Some(token.into()));
    support::use_fake_do_accounts(&mut config, &fake, vec![account("a", "tok-a")]);
    let daemon = Daemon::start(&config, dir.path());
    let http = agent();
    let (status, created) = order(&http, &daemon, "vps-basic");
    assert_eq!(status, 201);
    let id = created["data"]["id"].as_str().unwrap().to_string();
    let paid = http
        .post(daemon.url(&format!("/api/v1/internal/orders/{id}/payment-status")))
        .header("X-API-Key", support::API_KEY)
        .header("Content-Type", "application/json")
        .send(json!({"status": "PAID"}).to_string())
        .unwrap();
    assert_eq!(paid.status().as_u16(), 200);
    assert!(fake.wait_for_count("POST", "/v2/droplets", 1, Duration::from_secs(20)));

    let mut lines = Vec::new();
    // Writes the list, sends SIGHUP and returns the log line saying `outcome`.
    let mut reload = |accounts: Vec<AccountConfig>, outcome: &str| {
        config.cloud.digitalocean.accounts = accounts;
        support::process::write_config(&config, dir.path());
        hup(&daemon);
        let said = daemon.read_logs_until(&mut lines, outcome, Duration::from_secs(10));
        assert!(said, "{outcome}: {lines:?}");
        lines.last().cloned().unwrap_or_default()
    };
    let refused = "cloud accounts reload refused; keeping the previous accounts";
    let refusal = reload(vec![account("b", "tok-b")], refused);
    assert!(refusal.contains("\\\"a\\\" (1 live orders)"), "{refusal}");
    // A bad list (a duplicate name) is refused the same way, naming the key.
    let refusal = reload(vec![account("a", "tok-a"), account("a", "tok-b")], refused);
    assert!(
        refusal.contains("cloud.digitalocean.accounts[1].name"),
        "{refusal}"
    );
    let taken = reload(
        vec![account("a", "tok-a"), account("b", "tok-b")],
        "cloud accounts reloaded",
    );
    assert!(taken.contains("\\\"a\\\", \\\"b\\\""), "{taken}");
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("tok-a") || l.contains("tok-b")),
        "no token in logs"
    );
    assert_eq!(daemon.terminate(), Some(0));
}
