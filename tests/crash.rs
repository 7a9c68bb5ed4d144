//! Crash tests: the real binary, killed with SIGKILL at the worst moments.

mod support;

use std::time::Duration;

use serde_json::json;
use support::fake_do::{DropletScript, FakeDo};
use support::process::Daemon;
use support::{agent, base_config, hs256_token, now_secs, wait_for, API_KEY, SECRET};

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

/// alice's new order, paid: the id.
fn paid_order(http: &ureq::Agent, daemon: &Daemon) -> String {
    let token = hs256_token(SECRET, json!({"sub": "alice", "exp": now_secs() + 600}));
    let (status, created) = post(
        http,
        &daemon.url("/api/v1/orders"),
        ("Authorization", &format!("Bearer {token}")),
        json!({"planId": "vps-basic", "imageId": "ubuntu-22-04", "duration": "MONTHLY"}),
    );
    assert_eq!(status, 201);
    let id = created["data"]["id"].as_str().unwrap().to_string();
    let (status, _) = post(
        http,
        &daemon.url(&format!("/api/v1/internal/orders/{id}/payment-status")),
        ("X-API-Key", API_KEY),
        json!({"status": "PAID"}),
    );
    assert_eq!(status, 200);
    id
}

/// The admin view of order `id` once it is ACTIVE after a restart.
fn active_after_restart(http: &ureq::Agent, daemon: &Daemon, id: &str) -> serde_json::Value {
    let url = daemon.url(&format!("/api/v1/internal/orders/{id}"));
    wait_for(Duration::from_secs(30), || {
        let order = get(http, &url);
        (order["data"]["status"] == "ACTIVE").then_some(order)
    })
    .expect("order became ACTIVE after the restart")
}

/// Every acknowledged order reads back after the restart.
fn assert_all_present(daemon: &Daemon, ids: &[String], context: &str) {
    let http = agent();
    for id in ids {
        let order = get(&http, &daemon.url(&format!("/api/v1/internal/orders/{id}")));
        assert_eq!(
            order["data"]["id"],
            id.as_str(),
            "{context}: acknowledged order {id} lost"
        );
    }
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
    support::use_fake_do(&mut config, &fake);
    // The held create must still be waiting when the daemon is killed.
    config.cloud.digitalocean.timeout_ms = 60_000;

    let daemon = Daemon::start(&config, dir.path());
    let http = agent();
    let id = paid_order(&http, &daemon);

    // DigitalOcean has the create; vpsd is waiting for the answer. Kill it.
    assert!(fake.wait_for_count("POST", "/v2/droplets", 1, Duration::from_secs(20)));
    daemon.kill9();
    fake.release_creates();
    fake.hold_creates(false);

    let daemon = Daemon::start(&config, dir.path());
    let active = active_after_restart(&http, &daemon, &id);
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

fn position(lines: &[String], message: &str) -> Option<usize> {
    lines.iter().position(|l| {
        serde_json::from_str::<serde_json::Value>(l)
            .is_ok_and(|j| j["fields"]["message"] == message)
    })
}

#[test]
fn sigterm_while_digitalocean_answers_a_create_records_the_droplet_before_exit() {
    let fake = FakeDo::start();
    fake.set_default_script(DropletScript::new());
    fake.hold_creates(true);
    let dir = tempfile::tempdir().unwrap();
    let mut config = base_config(dir.path());
    support::use_fake_do(&mut config, &fake);
    // The grace for requests is far shorter than DigitalOcean's timeout: the
    // create under way must be waited for by its own bound.
    config.server.shutdown_grace_ms = 300;
    config.cloud.digitalocean.timeout_ms = 30_000;

    let mut daemon = Daemon::start(&config, dir.path());
    let http = agent();
    let id = paid_order(&http, &daemon);
    assert!(fake.wait_for_count("POST", "/v2/droplets", 1, Duration::from_secs(20)));

    // DigitalOcean made the droplet and is still answering when SIGTERM comes.
    let sent = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(daemon.child.id().to_string())
        .status()
        .expect("kill");
    assert!(sent.success());
    let mut lines = Vec::new();
    assert!(daemon.read_logs_until(
        &mut lines,
        "shutting down: no new connections, finishing in-flight requests",
        Duration::from_secs(10)
    ));
    // Several times the grace: a daemon that does not wait for the call
    // closes its data file meanwhile.
    let stopped_early = daemon.read_logs_until(&mut lines, "vpsd stopped", Duration::from_secs(2));
    fake.release_creates();
    let exit = wait_for(Duration::from_secs(30), || {
        daemon.child.try_wait().ok().flatten()
    })
    .expect("vpsd exits once the answer is recorded");
    while let Ok(line) = daemon.logs.recv_timeout(Duration::from_secs(2)) {
        lines.push(line);
    }
    assert_eq!(exit.code(), Some(0));
    assert!(
        !stopped_early,
        "stopped before the create was answered: {lines:#?}"
    );
    let errors: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains(r#""level":"ERROR""#))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    let recorded = position(&lines, "droplet created").expect("the answer was handled");
    assert!(position(&lines, "vpsd stopped").is_some_and(|stopped| stopped > recorded));

    // The task holds the droplet in the file the daemon left behind.
    let droplets = fake.droplet_ids_with_tag(&format!("vpsd-order-{id}"));
    assert_eq!(droplets.len(), 1);
    let store = vpsd::store::Store::open(&config.storage.path).expect("data file");
    let record = store
        .get_order(uuid::Uuid::parse_str(&id).unwrap())
        .expect("read")
        .expect("order");
    store.shutdown();
    drop(store);
    assert_eq!(record.task.and_then(|t| t.droplet_id()), Some(droplets[0]));

    let daemon = Daemon::start(&config, dir.path());
    let url = daemon.url(&format!("/api/v1/internal/orders/{id}"));
    wait_for(Duration::from_secs(30), || {
        (get(&http, &url)["data"]["status"] == "ACTIVE").then_some(())
    })
    .expect("ACTIVE after the restart");
    assert_eq!(fake.count("POST", "/v2/droplets"), 1, "no second create");
    assert_eq!(daemon.terminate(), Some(0));
}

/// A tiny deterministic PRNG, so a failing round can be replayed from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}

fn crash_rounds() -> usize {
    std::env::var("VPSD_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10)
}

fn verify_with_binary(path: &std::path::Path) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vpsd"))
        .arg("verify")
        .arg(path)
        .output()
        .expect("vpsd verify");
    assert!(
        out.status.success(),
        "vpsd verify failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn sigkill_under_load_loses_no_acknowledged_order() {
    let rounds = crash_rounds();
    let seed = 0x5eed_1234_u64;
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let mut config = base_config(dir.path());
    // Provisioning runs through the kills against a fake DigitalOcean, which
    // also lets the test count every droplet of every order.
    let fake = FakeDo::start();
    fake.set_default_script(DropletScript::new().active_after(1));
    support::use_fake_do(&mut config, &fake);
    let mut acked_created: Vec<String> = Vec::new();
    let mut acked_paid: Vec<String> = Vec::new();
    let mut requests = 0usize;
    for round in 0..rounds {
        let daemon = Daemon::start(&config, dir.path());
        let base = format!("http://{}", daemon.addr);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let clients: Vec<_> = (0..8)
            .map(|c| {
                let base = base.clone();
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let http = client_agent();
                    let token = hs256_token(
                        SECRET,
                        json!({"sub": format!("client-{c}"), "exp": now_secs() + 600}),
                    );
                    let (mut created, mut paid, mut sent) = (Vec::new(), Vec::new(), 0usize);
                    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                        sent += 1;
                        let Ok(answer) = create_order(&http, &base, &token) else {
                            break;
                        };
                        let Some(id) = answer else { continue };
                        created.push(id.clone());
                        sent += 1;
                        let r = http
                            .post(format!("{base}/api/v1/internal/orders/{id}/payment-status"))
                            .header("X-API-Key", API_KEY)
                            .header("Content-Type", "application/json")
                            .send(r#"{"status":"PAID"}"#);
                        match r {
                            Ok(r) if r.status().as_u16() == 200 => paid.push(id),
                            Ok(_) => {}
                            Err(_) => break,
                        }
                    }
                    (created, paid, sent)
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(rng.between(150, 900)));
        daemon.kill9();
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        for client in clients {
            let (created, paid, sent) = client.join().unwrap();
            acked_created.extend(created);
            acked_paid.extend(paid);
            requests += sent;
        }
        // The file as the crash left it passes every check.
        verify_with_binary(&config.storage.path);
        // Every acknowledged change is there after a restart.
        let daemon = Daemon::start(&config, dir.path());
        assert_all_present(&daemon, &acked_created, &format!("round {round}"));
        let http = agent();
        for id in &acked_paid {
            let order = get(&http, &daemon.url(&format!("/api/v1/internal/orders/{id}")));
            let status = order["data"]["status"].as_str().unwrap_or("");
            assert!(
                ["PAID", "PROVISIONING", "ACTIVE"].contains(&status),
                "round {round}: acknowledged payment of {id} lost ({status})"
            );
            assert!(order["data"]["paidAt"].is_string());
        }
        assert_eq!(daemon.terminate(), Some(0));
    }
    // Exactly once across every kill: no order has two droplets.
    let mut droplets = 0;
    for id in &acked_created {
        let n = fake.droplet_ids_with_tag(&format!("vpsd-order-{id}")).len();
        assert!(n <= 1, "order {id} has {n} droplets");
        droplets += n;
    }
    let report = verify_with_binary(&config.storage.path);
    eprintln!(
        "crash suite: seed {seed:#x}, {rounds} SIGKILL rounds, {requests} requests, {} orders and {} payments acknowledged, all present, {droplets} droplets, none duplicated; final verify:\n{report}",
        acked_created.len(),
        acked_paid.len()
    );
    assert!(!acked_created.is_empty());
}

#[test]
fn sigkill_during_an_online_backup_leaves_no_complete_looking_half_backup() {
    let dir = tempfile::tempdir().unwrap();
    let config = base_config(dir.path());
    // A file big enough that the snapshot takes a while.
    {
        let store = vpsd::store::Store::open(&config.storage.path).unwrap();
        let catalog = support::shipped_catalog();
        let ops: Vec<vpsd::store::WriteOp> = (0..20_000)
            .map(|i| {
                support::create_op(support::sample_order(&catalog, &format!("u{}", i % 50), i))
            })
            .collect();
        for r in store.writer().submit_all_blocking(ops) {
            r.unwrap().unwrap();
        }
        store.shutdown();
    }
    let mut rng = Rng(0xbac0_0001);
    for round in 0..3 {
        let daemon = Daemon::start(&config, dir.path());
        let url = daemon.url("/api/v1/internal/backups");
        let backup = std::thread::spawn(move || {
            agent()
                .post(url)
                .header("X-API-Key", API_KEY)
                .send_empty()
                .map(|r| r.status().as_u16())
        });
        std::thread::sleep(Duration::from_millis(rng.between(5, 120)));
        daemon.kill9();
        let answered = backup.join().unwrap();
        // Anything named like a finished snapshot is one; a half-written one
        // can only be a hidden .partial file.
        for snapshot in vpsd::store::backup::list_snapshots(&config.backup.dir).unwrap() {
            let report = vpsd::store::backup::verify(&snapshot).unwrap_or_else(|e| {
                panic!(
                    "round {round}: {} looks complete but is not: {e}",
                    snapshot.display()
                )
            });
            assert_eq!(report.orders, 20_000);
        }
        for entry in std::fs::read_dir(&config.backup.dir)
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            assert!(
                name.starts_with("vpsd-") || (name.starts_with('.') && name.ends_with(".partial")),
                "{name}"
            );
        }
        let report = vpsd::store::backup::verify(&config.storage.path).expect("data file intact");
        assert_eq!(report.orders, 20_000);
        eprintln!("backup kill round {round}: backup answered {answered:?}; data file and every finished snapshot verify");
    }
    let daemon = Daemon::start(&config, dir.path());
    assert_eq!(daemon.terminate(), Some(0));
}

#[test]
fn corrupt_foreign_newer_or_locked_files_fail_start_with_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = base_config(dir.path());
    // A real data file to damage.
    let daemon = Daemon::start(&config, dir.path());
    let http = agent();
    let token = hs256_token(SECRET, json!({"sub": "alice", "exp": now_secs() + 600}));
    for _ in 0..50 {
        let (status, _) = post(
            &http,
            &daemon.url("/api/v1/orders"),
            ("Authorization", &format!("Bearer {token}")),
            json!({"planId": "vps-basic", "imageId": "ubuntu-22-04", "duration": "MONTHLY"}),
        );
        assert_eq!(status, 201);
    }
    // Locked: a second daemon on the same file while the first runs.
    let locked = Daemon::try_start(&config, dir.path())
        .err()
        .expect("refused");
    assert!(locked.contains("locked"), "{locked}");
    assert_eq!(daemon.terminate(), Some(0));
    let good = std::fs::read(&config.storage.path).unwrap();

    let mut rng = Rng(0xc0ff_ee00);
    let random: Vec<u8> = (0..65_536).map(|_| rng.next() as u8).collect();
    let newer = {
        let path = dir.path().join("newer.redb");
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut meta = txn.open_table(vpsd::store::tables::META).unwrap();
            meta.insert(vpsd::store::tables::META_SCHEMA_VERSION, 99u64)
                .unwrap();
        }
        txn.commit().unwrap();
        drop(db);
        std::fs::read(&path).unwrap()
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", good[..good.len() / 3].to_vec()),
        ("zeroed", vec![0u8; 65_536]),
        ("random bytes", random),
        ("text file", b"this is not a database\n".repeat(1000)),
        ("newer schema", newer),
    ];
    let config_path = support::process::write_config(&config, dir.path());
    for (name, bytes) in cases {
        std::fs::write(&config.storage.path, &bytes).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_vpsd"))
            .args(["serve", "--config"])
            .arg(&config_path)
            .env_clear()
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}: started on a bad file");
        assert!(
            !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
            "{name}: {stderr}"
        );
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "{name}: one line: {stderr}"
        );
        assert!(
            stderr.starts_with("vpsd: ") && stderr.contains("vpsd.redb"),
            "{name}: {stderr}"
        );
        if name == "newer schema" {
            assert!(stderr.contains("newer"), "{stderr}");
        }
        eprintln!("{name}: {}", stderr.trim_end());
    }
}

/// SIGKILL right after a suspend and a terminate were acknowledged: after the
/// restart each action is carried out, exactly once (SPEC §9).
#[test]
fn sigkill_right_after_suspend_or_terminate_still_acts_exactly_once() {
    let fake = FakeDo::start();
    fake.set_default_script(DropletScript::new().active_after(1).ip_after(1));
    fake.set_action_delay(Duration::from_millis(300));
    let dir = tempfile::tempdir().unwrap();
    let mut config = base_config(dir.path());
    support::use_fake_do(&mut config, &fake);
    let http = agent();
    let token = hs256_token(SECRET, json!({"sub": "alice", "exp": now_secs() + 600}));
    let bearer = format!("Bearer {token}");

    let daemon = Daemon::start(&config, dir.path());
    let mut ids = Vec::new();
    for _ in 0..2 {
        let body = json!({"planId": "vps-basic", "imageId": "ubuntu-22-04", "duration": "MONTHLY"});
        let (status, created) = post(
            &http,
            &daemon.url("/api/v1/orders"),
            ("Authorization", &bearer),
            body,
        );
        assert_eq!(status, 201);
        let id = created["data"]["id"].as_str().unwrap().to_string();
        let pay = daemon.url(&format!("/api/v1/internal/orders/{id}/payment-status"));
        assert_eq!(
            post(
                &http,
                &pay,
                ("X-API-Key", API_KEY),
                json!({"status": "PAID"})
            )
            .0,
            200
        );
        ids.push(id);
    }
    for id in &ids {
        let url = daemon.url(&format!("/api/v1/internal/orders/{id}"));
        wait_for(Duration::from_secs(30), || {
            (get(&http, &url)["data"]["status"] == "ACTIVE").then_some(())
        })
        .expect("active");
    }
    let droplet_of = |order: &serde_json::Value| -> u64 {
        order["data"]["provisioningTask"]["dropletId"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    };
    let suspended_droplet = droplet_of(&get(
        &http,
        &daemon.url(&format!("/api/v1/internal/orders/{}", ids[0])),
    ));
    let suspend = daemon.url(&format!("/api/v1/internal/orders/{}/suspend", ids[0]));
    assert_eq!(
        post(&http, &suspend, ("X-API-Key", API_KEY), json!({})).0,
        200
    );
    let terminate = daemon.url(&format!("/api/v1/internal/orders/{}/terminate", ids[1]));
    assert_eq!(
        post(&http, &terminate, ("X-API-Key", API_KEY), json!({})).0,
        200
    );
    daemon.kill9();

    let daemon = Daemon::start(&config, dir.path());
    for id in &ids {
        let url = daemon.url(&format!("/api/v1/internal/orders/{id}"));
        wait_for(Duration::from_secs(30), || {
            let order = get(&http, &url);
            order["data"]["provisioningTask"]["pendingAction"]
                .is_null()
                .then_some(())
        })
        .expect("the owed action was confirmed after the restart");
    }
    assert_eq!(
        fake.power_requests(suspended_droplet, "power_off").accepted,
        1
    );
    let tag = format!("vpsd-order-{}", ids[1]);
    assert_eq!(fake.delete_by_tag_requests(&tag).accepted, 1);
    assert!(fake.droplet_ids_with_tag(&tag).is_empty());
    assert_eq!(daemon.terminate(), Some(0));
}

#[test]
fn sigkill_between_commit_and_delivery_still_delivers_with_the_same_webhook_id() {
    use support::receiver::{verifies, Answer, Receiver};
    let hook = Receiver::start();
    // The first attempt is in flight (unanswered) when the daemon dies.
    hook.set_default(Answer::Hang(Duration::from_secs(120)));
    let dir = tempfile::tempdir().unwrap();
    let mut config = base_config(dir.path());
    support::add_webhook(&mut config, &hook.url(), &["order.created"]);
    config.webhooks.timeout_ms = 60_000;
    let http = agent();
    let token = hs256_token(SECRET, json!({"sub": "alice", "exp": now_secs() + 600}));

    let daemon = Daemon::start(&config, dir.path());
    let (status, created) = post(
        &http,
        &daemon.url("/api/v1/orders"),
        ("Authorization", &format!("Bearer {token}")),
        json!({"planId": "vps-basic", "imageId": "ubuntu-22-04", "duration": "MONTHLY"}),
    );
    assert_eq!(status, 201);
    let first = hook.wait_for(1, Duration::from_secs(20));
    daemon.kill9();

    hook.set_default(Answer::Status(204));
    let daemon = Daemon::start(&config, dir.path());
    let got = hook.wait_for(2, Duration::from_secs(20));
    assert_eq!(
        got[1].id, first[0].id,
        "the same webhook-id after the restart"
    );
    assert_eq!(got[1].order_id(), created["data"]["id"].as_str().unwrap());
    assert!(verifies(support::WEBHOOK_SECRET, &got[1]));
    let delivered = daemon.url("/api/v1/internal/webhooks/deliveries?status=delivered");
    wait_for(Duration::from_secs(20), || {
        (get(&http, &delivered)["meta"]["total"] == 1).then_some(())
    })
    .expect("recorded as delivered");
    assert_eq!(daemon.terminate(), Some(0));
}

/// `storage.quick_repair`: after a SIGKILL the file opens without redb's full
/// repair (the allocator state it recorded is loaded), and every acknowledged
/// order is there. `true` records it at every commit, so even a kill in the
/// middle of a burst is quick; `"when_idle"` (the default) has it recorded
/// once the burst is over, which `/metrics` shows; `false` never records it,
/// which shows the check here can tell the two apart.
#[test]
fn sigkill_with_quick_repair_reopens_without_a_full_repair_and_loses_nothing() {
    use vpsd::store::QuickRepair;
    for policy in [
        QuickRepair::Always,
        QuickRepair::WhenIdle,
        QuickRepair::Never,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut config = base_config(dir.path());
        config.storage.quick_repair = policy;
        let daemon = Daemon::start(&config, dir.path());
        let base = format!("http://{}", daemon.addr);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let clients: Vec<_> = (0..4)
            .map(|c| {
                let (base, stop, count) = (base.clone(), stop.clone(), count.clone());
                std::thread::spawn(move || create_until_stopped(&base, c, &stop, &count))
            })
            .collect();
        wait_for(Duration::from_secs(30), || {
            (count.load(std::sync::atomic::Ordering::SeqCst) >= 20).then_some(())
        });
        let acked: Vec<String> = if policy == QuickRepair::WhenIdle {
            // Killed once the burst is over and the writer says so.
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
            let acked = clients
                .into_iter()
                .flat_map(|c| c.join().unwrap())
                .collect();
            wait_for(Duration::from_secs(30), || {
                (full_repair_if_crashed(&base) == Some(false)).then_some(())
            })
            .expect("the writer records the allocator state once the burst is over");
            daemon.kill9();
            acked
        } else {
            // Killed while orders are being committed.
            daemon.kill9();
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
            clients
                .into_iter()
                .flat_map(|c| c.join().unwrap())
                .collect()
        };
        assert!(!acked.is_empty());

        assert_eq!(
            vpsd::store::repair::full_repair_needed(&config.storage.path).unwrap(),
            policy == QuickRepair::Never,
            "quick_repair = {policy:?}"
        );
        let daemon = Daemon::start(&config, dir.path());
        assert_all_present(&daemon, &acked, &format!("quick_repair = {policy:?}"));
        if policy == QuickRepair::Never {
            assert_eq!(full_repair_if_crashed(&base_url(&daemon)), Some(true));
        }
        assert_eq!(daemon.terminate(), Some(0));
        verify_with_binary(&config.storage.path);
    }
}

fn base_url(daemon: &Daemon) -> String {
    format!("http://{}", daemon.addr)
}

/// `vpsd_storage_full_repair_if_crashed` from `/metrics`.
fn full_repair_if_crashed(base: &str) -> Option<bool> {
    let mut r = agent()
        .get(format!("{base}/metrics"))
        .header("X-API-Key", API_KEY)
        .call()
        .ok()?;
    let text = r.body_mut().read_to_string().ok()?;
    let value = text
        .lines()
        .find_map(|l| l.strip_prefix("vpsd_storage_full_repair_if_crashed "))?;
    Some(value.trim() == "1")
}

/// Creates orders as client `c` until `stop`, counting each acknowledged one
/// in `count`; returns the acknowledged ids.
fn create_until_stopped(
    base: &str,
    c: usize,
    stop: &std::sync::atomic::AtomicBool,
    count: &std::sync::atomic::AtomicUsize,
) -> Vec<String> {
    let http = client_agent();
    let token = hs256_token(
        SECRET,
        json!({"sub": format!("qr-{c}"), "exp": now_secs() + 600}),
    );
    let mut created = Vec::new();
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        match create_order(&http, base, &token) {
            Ok(Some(id)) => {
                created.push(id);
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            Ok(None) => {}
            Err(_) => break,
        }
    }
    created
}

/// A load client's agent: statuses are answers, not errors, and a killed
/// daemon ends a call within 5 s.
fn client_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into()
}

/// One POST /orders: `Err` once the daemon is gone, the order's id when the
/// order was acknowledged (201), `None` for any other answer.
fn create_order(
    http: &ureq::Agent,
    base: &str,
    token: &str,
) -> Result<Option<String>, ureq::Error> {
    let mut r = http
        .post(format!("{base}/api/v1/orders"))
        .header("Authorization", format!("Bearer {token}"))
        .header("Content-Type", "application/json")
        .send(r#"{"planId":"vps-basic","imageId":"ubuntu-22-04","duration":"MONTHLY"}"#)?;
    if r.status().as_u16() != 201 {
        return Ok(None);
    }
    let text = r.body_mut().read_to_string().unwrap_or_default();
    let body: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    Ok(body["data"]["id"].as_str().map(str::to_string))
}

/// SPEC §13: the account is recorded before the create, so after a SIGKILL
/// between DigitalOcean's create and vpsd's commit the look-up by tag runs
/// on that account, even when another (preferred) account has room by then:
/// exactly one droplet.
#[test]
fn sigkill_between_create_and_commit_on_a_second_account_still_makes_one_droplet() {
    use vpsd::config::accounts::AccountConfig;
    let fake = FakeDo::start_accounts(&[("tok-a", 1), ("tok-b", 5)]);
    fake.seed_foreign("tok-a", 1);
    fake.set_default_script(DropletScript::new());
    fake.hold_creates(true);
    let dir = tempfile::tempdir().unwrap();
    let mut config = base_config(dir.path());
    let account = |name: &str, token: &str, priority| AccountConfig {
        priority,
        ..AccountConfig::named(name, Some(token.into()))
    };
    let accounts = vec![account("a", "tok-a", 1), account("b", "tok-b", 2)];
    support::use_fake_do_accounts(&mut config, &fake, accounts);
    config.cloud.digitalocean.timeout_ms = 60_000;

    let daemon = Daemon::start(&config, dir.path());
    let http = agent();
    let id = paid_order(&http, &daemon);
    // Account a is full, so b has the create; kill vpsd while it waits.
    assert!(fake.wait_for_count("POST", "/v2/droplets", 1, Duration::from_secs(20)));
    daemon.kill9();
    fake.release_creates();
    fake.hold_creates(false);
    // Account a has room now and is preferred: only the recorded account
    // keeps the order on b.
    fake.set_droplet_limit("tok-a", 5);

    let daemon = Daemon::start(&config, dir.path());
    let active = active_after_restart(&http, &daemon, &id);
    let tag = format!("vpsd-order-{id}");
    assert_eq!(fake.droplet_ids_with_tag(&tag).len(), 1);
    assert_eq!(fake.count("POST", "/v2/droplets"), 1, "no second create");
    assert_eq!(active["data"]["provisioningTask"]["doAccount"], "b");
    assert_eq!(
        (fake.droplets_of("tok-a"), fake.droplets_of("tok-b")),
        (1, 1)
    );
    assert_eq!(daemon.terminate(), Some(0));
}

/// The newest customer action of order `id` once it has ended.
fn ended_action(http: &ureq::Agent, daemon: &Daemon, id: &str) -> serde_json::Value {
    let url = daemon.url(&format!("/api/v1/internal/orders/{id}/actions?limit=1"));
    wait_for(Duration::from_secs(30), || {
        let newest = get(http, &url)["data"][0].clone();
        let open = matches!(
            newest["status"].as_str(),
            Some("pending" | "running") | None
        );
        (!open).then_some(newest)
    })
    .expect("the customer action ended after the restart")
}

#[test]
fn sigkill_after_a_customer_actions_202_or_after_digitalocean_took_it_acts_once() {
    let fake = FakeDo::start();
    fake.set_default_script(DropletScript::new().active_after(1).ip_after(1));
    fake.set_action_delay(Duration::from_millis(300));
    let dir = tempfile::tempdir().unwrap();
    let mut config = base_config(dir.path());
    support::use_fake_do(&mut config, &fake);
    config.actions.cooldown_seconds = 0;
    let http = agent();
    let token = hs256_token(SECRET, json!({"sub": "alice", "exp": now_secs() + 600}));
    let bearer = format!("Bearer {token}");

    let daemon = Daemon::start(&config, dir.path());
    let id = paid_order(&http, &daemon);
    let order = active_after_restart(&http, &daemon, &id);
    let droplet: u64 = order["data"]["provisioningTask"]["dropletId"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .expect("droplet id");
    let ask = |daemon: &Daemon, kind: &str| {
        let url = daemon.url(&format!("/api/v1/orders/{id}/actions"));
        let (status, body) = post(
            &http,
            &url,
            ("Authorization", &bearer),
            json!({"type": kind}),
        );
        assert_eq!(status, 202, "{body}");
    };

    // Killed right after the 202: the committed action survives and runs once.
    ask(&daemon, "reboot");
    daemon.kill9();
    let daemon = Daemon::start(&config, dir.path());
    assert_eq!(ended_action(&http, &daemon, &id)["status"], "completed");
    assert_eq!(fake.action_requests(droplet, "reboot").accepted, 1);

    // Killed after DigitalOcean took the action in, before vpsd heard back:
    // found on the droplet after the restart, not sent again.
    let actions_path = format!("/v2/droplets/{droplet}/actions");
    let before = fake.count("POST", &actions_path);
    fake.fail_next_droplet_actions(support::fake_do::Fault::Delay(Duration::from_secs(20)), 1);
    ask(&daemon, "power_off");
    assert!(fake.wait_for_count("POST", &actions_path, before + 1, Duration::from_secs(20)));
    daemon.kill9();
    let daemon = Daemon::start(&config, dir.path());
    let ended = ended_action(&http, &daemon, &id);
    assert_eq!(ended["status"], "completed", "{ended}");
    assert_eq!(fake.action_requests(droplet, "power_off").accepted, 1);
    assert_eq!(fake.action_requests(droplet, "power_off").received, 1);
    assert_eq!(fake.droplet_status(droplet).as_deref(), Some("off"));
    assert_eq!(daemon.terminate(), Some(0));
}
