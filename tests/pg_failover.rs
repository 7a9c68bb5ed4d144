//! Failover (SPEC §15, issue 24): two real vpsd processes on one PostgreSQL
//! database; the one running the background work is killed with SIGKILL
//! while provisioning is in flight (droplets booting, one create sent and
//! unanswered). The other takes over within `takeover_seconds` and finishes:
//! every order ACTIVE, exactly one droplet per order, every event delivered
//! once per endpoint, in commit order.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::fake_do::{DropletScript, FakeDo};
use support::process::{health, leader_of, reconciler_sweeps, trouble, Daemon};
use support::receiver::{verifies, Receiver};
use support::{add_webhook, WEBHOOK_SECRET};
use support::{agent, base_config, hs256_token, now_secs, wait_for, API_KEY, SECRET};
use vpsd::config::{Config, StorageBackend};

const TAKEOVER_SECONDS: u64 = 3;
/// Orders whose droplets exist and are still booting when the leader dies.
const BOOTING: usize = 3;
/// Observations a droplet stays `new`: the dead leader's sweeps see each at
/// most a few times before the kill, so they are all still booting then.
const BOOT_OBSERVATIONS: u32 = 8;

fn instance_config(dir: &Path, url: &str, fake: &FakeDo, hooks: &[Receiver]) -> Config {
    let mut config = base_config(dir);
    config.storage.backend = StorageBackend::Postgres;
    config.storage.postgres.url = Some(url.to_string());
    config.storage.postgres.takeover_seconds = TAKEOVER_SECONDS;
    config.storage.postgres.pool_size = 4;
    support::use_fake_do(&mut config, fake);
    // The held create must still be waiting when the leader is killed.
    config.cloud.digitalocean.timeout_ms = 60_000;
    for hook in hooks {
        add_webhook(&mut config, &hook.url(), &["*"]);
    }
    config
}

fn post(url: &str, auth: (&str, &str), body: Value) -> (u16, Value) {
    let mut r = agent()
        .post(url)
        .header(auth.0, auth.1)
        .header("Content-Type", "application/json")
        .send(body.to_string())
        .expect("request");
    let status = r.status().as_u16();
    let text = r.body_mut().read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or_default())
}

fn admin_get(daemon: &Daemon, path: &str) -> Value {
    let mut r = agent()
        .get(&daemon.url(path))
        .header("X-API-Key", API_KEY)
        .call()
        .expect("request");
    serde_json::from_str(&r.body_mut().read_to_string().unwrap_or_default()).unwrap_or_default()
}

/// A new order made on `maker`, paid on `payer`: its id.
fn paid_order(maker: &Daemon, payer: &Daemon, user: &str) -> String {
    let token = hs256_token(SECRET, json!({"sub": user, "exp": now_secs() + 600}));
    let (status, created) = post(
        &maker.url("/api/v1/orders"),
        ("Authorization", &format!("Bearer {token}")),
        json!({"planId": "vps-basic", "imageId": "ubuntu-22-04", "duration": "MONTHLY"}),
    );
    assert_eq!(status, 201, "{created}");
    let id = created["data"]["id"].as_str().expect("id").to_string();
    let (status, paid) = post(
        &payer.url(&format!("/api/v1/internal/orders/{id}/payment-status")),
        ("X-API-Key", API_KEY),
        json!({"status": "PAID"}),
    );
    assert_eq!(status, 200, "{paid}");
    id
}

fn order(daemon: &Daemon, id: &str) -> Value {
    admin_get(daemon, &format!("/api/v1/internal/orders/{id}"))["data"].clone()
}

fn deliveries_total(daemon: &Daemon, query: &str) -> u64 {
    admin_get(
        daemon,
        &format!("/api/v1/internal/webhooks/deliveries?{query}"),
    )["meta"]["total"]
        .as_u64()
        .unwrap_or(u64::MAX)
}

/// Nothing waits in the outbox and each delivered event reached its
/// receiver exactly once so far: no delivery is in flight.
fn outbox_quiet(daemon: &Daemon, hooks: &[Receiver]) -> bool {
    let received: usize = hooks.iter().map(|h| h.received().len()).sum();
    deliveries_total(daemon, "status=pending&limit=1") == 0
        && deliveries_total(daemon, "status=failed&limit=1") == 0
        && deliveries_total(daemon, "status=delivered&limit=1") == received as u64
}

/// Orders with booting droplets, and one whose create DigitalOcean has
/// taken but not answered; returns their ids once the outbox is quiet.
fn provisioning_in_flight(
    fake: &FakeDo,
    leader: &Daemon,
    other: &Daemon,
    hooks: &[Receiver],
) -> Vec<String> {
    let mut ids: Vec<String> = (0..BOOTING)
        .map(|i| paid_order(other, leader, &format!("user-{i}")))
        .collect();
    assert!(fake.wait_for_count("POST", "/v2/droplets", BOOTING, Duration::from_secs(30)));
    for id in &ids {
        wait_for(Duration::from_secs(30), || {
            let o = order(other, id);
            (o["status"] == "PROVISIONING" && o["provisioningTask"]["dropletId"].is_string())
                .then_some(())
        })
        .unwrap_or_else(|| panic!("order {id} never PROVISIONING: {}", order(other, id)));
    }
    fake.hold_creates(true);
    ids.push(paid_order(leader, other, "user-held"));
    wait_for(Duration::from_secs(30), || {
        (fake.held_creates() == 1).then_some(())
    })
    .expect("the last order's create reached DigitalOcean and waits");
    wait_for(Duration::from_secs(30), || {
        outbox_quiet(other, hooks).then_some(())
    })
    .expect("every event so far delivered once");
    for id in &ids {
        let status = order(other, id)["status"].clone();
        assert_ne!(status, "ACTIVE", "order {id} finished before the kill");
    }
    ids
}

#[test]
fn sigkill_of_the_working_instance_mid_provisioning_and_the_other_finishes() {
    let fake = FakeDo::start();
    fake.set_default_script(DropletScript::new().active_after(BOOT_OBSERVATIONS));
    let hooks = [Receiver::start(), Receiver::start()];
    let url = support::pg::cluster().fresh_database();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Daemon::start(
        &instance_config(dir_a.path(), &url, &fake, &hooks),
        dir_a.path(),
    );
    let b = Daemon::start(
        &instance_config(dir_b.path(), &url, &fake, &hooks),
        dir_b.path(),
    );
    let (leader, survivor) = match leader_of(&agent(), [&a, &b]) {
        0 => (a, b),
        _ => (b, a),
    };
    let ids = provisioning_in_flight(&fake, &leader, &survivor, &hooks);
    assert_eq!(
        reconciler_sweeps(&agent(), survivor.addr),
        0,
        "a follower's turns are not counted as reconciler sweeps"
    );

    let killed_at = Instant::now();
    leader.kill9();
    // DigitalOcean answers the held create now, to a process that is gone.
    fake.release_creates();
    let http = agent();
    let took_over = wait_for(Duration::from_secs(TAKEOVER_SECONDS + 30), || {
        (health(&http, survivor.addr)["backgroundWork"] == true).then(|| killed_at.elapsed())
    })
    .expect("the survivor takes over the background work");
    assert!(
        took_over <= Duration::from_secs(TAKEOVER_SECONDS + 2),
        "takeover took {took_over:?} with takeover_seconds = {TAKEOVER_SECONDS}"
    );

    // Booting droplets need BOOT_OBSERVATIONS sweeps a second apart.
    let margin = Duration::from_secs(u64::from(BOOT_OBSERVATIONS) + 15);
    let all_active = wait_for(Duration::from_secs(TAKEOVER_SECONDS) + margin, || {
        ids.iter()
            .all(|id| order(&survivor, id)["status"] == "ACTIVE")
            .then(|| killed_at.elapsed())
    });
    let statuses: Vec<Value> = ids
        .iter()
        .map(|id| order(&survivor, id)["status"].clone())
        .collect();
    assert!(all_active.is_some(), "not all ACTIVE: {statuses:?}");
    eprintln!("takeover after {took_over:?}; every order ACTIVE {all_active:?} after the kill");
    // Once it leads, its sweeps run and are counted.
    assert!(
        reconciler_sweeps(&agent(), survivor.addr) > 0,
        "the survivor swept after taking over"
    );

    one_droplet_each(&fake, &survivor, &ids);
    wait_for(Duration::from_secs(30), || {
        outbox_quiet(&survivor, &hooks).then_some(())
    })
    .expect("the survivor delivered every event");
    every_event_once_in_commit_order(&survivor, &hooks, &ids, &url);
    let (code, logs) = survivor.terminate_with_logs();
    assert_eq!(
        code,
        Some(0),
        "the survivor stops cleanly: {}",
        trouble(&logs)
    );
}

fn one_droplet_each(fake: &FakeDo, survivor: &Daemon, ids: &[String]) {
    for id in ids {
        let droplets = fake.droplet_ids_with_tag(&format!("vpsd-order-{id}"));
        assert_eq!(droplets.len(), 1, "order {id}: droplets {droplets:?}");
        let task = order(survivor, id)["provisioningTask"].clone();
        assert_eq!(task["status"], "SUCCESS", "{task}");
        assert_eq!(task["dropletId"], droplets[0].to_string(), "{task}");
    }
    assert_eq!(
        fake.count("POST", "/v2/droplets"),
        ids.len(),
        "no second create for any order"
    );
}

/// The event a history row announces (the rows these orders have).
fn event_of(row: &Value) -> String {
    let kind = match row["newStatus"].as_str().unwrap_or("") {
        "PENDING_PAYMENT" => "created",
        "PAID" => "paid",
        "PROVISIONING" => "provisioning",
        "ACTIVE" => "active",
        other => panic!("unexpected history row {other}: {row}"),
    };
    format!("order.{kind}")
}

/// Every event reached both endpoints once, in commit order, and the
/// database's events are exactly those.
fn every_event_once_in_commit_order(
    survivor: &Daemon,
    hooks: &[Receiver],
    ids: &[String],
    url: &str,
) {
    let seen: Vec<BTreeSet<String>> = hooks
        .iter()
        .map(|hook| one_endpoint(survivor, hook, ids, url))
        .collect();
    let committed = support::pg::cluster().psql(
        url,
        "select coalesce(string_agg(id::text, ',' order by id::text), '') from webhook_events",
    );
    let committed: BTreeSet<String> = committed.split(',').map(str::to_string).collect();
    for (hook, got) in hooks.iter().zip(&seen) {
        assert_eq!(got, &committed, "{}: every committed event", hook.url());
    }
}

/// One endpoint: signed, no webhook-id twice, per order the events of its
/// history rows in their order, and as many delivered rows in the database
/// as requests received. Returns the webhook-ids received.
fn one_endpoint(survivor: &Daemon, hook: &Receiver, ids: &[String], url: &str) -> BTreeSet<String> {
    let pg = support::pg::cluster();
    let received = hook.received();
    assert!(
        received.iter().all(|r| verifies(WEBHOOK_SECRET, r)),
        "signed"
    );
    let mut by_id: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &received {
        *by_id.entry(r.id.as_str()).or_default() += 1;
    }
    let twice: Vec<_> = by_id.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "{}: received twice: {twice:?}",
        hook.url()
    );
    for id in ids {
        let history = order(survivor, id)["statusHistory"].clone();
        let expected: Vec<String> = history
            .as_array()
            .expect("history")
            .iter()
            .map(event_of)
            .collect();
        let got: Vec<String> = received
            .iter()
            .filter(|r| r.order_id() == id)
            .map(|r| r.event_type().to_string())
            .collect();
        assert_eq!(got, expected, "{}: order {id}", hook.url());
        let rows = pg.psql(
            url,
            &format!("select count(*) from order_history where order_id = '{id}'"),
        );
        assert_eq!(
            rows,
            expected.len().to_string(),
            "order {id}: history rows in the database"
        );
    }
    // The status column's case is the store's business.
    let recorded = pg.psql(
        url,
        &format!(
            "select count(*) from webhook_deliveries \
             where endpoint = '{}' and lower(status) = 'delivered'",
            hook.url()
        ),
    );
    assert_eq!(
        recorded,
        received.len().to_string(),
        "{}: delivered rows in the database",
        hook.url()
    );
    by_id.keys().map(|k| k.to_string()).collect()
}
