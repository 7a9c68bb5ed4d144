//! PostgreSQL failover (SPEC §15, issue 26): two vpsd processes on one fresh
//! database with `takeover_seconds` = 3 and one paid order provisioning (its
//! droplet booting on a fake DigitalOcean, so every sweep has work), five
//! times: once the instance running the background work has swept, it is
//! SIGKILLed, and the time from the kill is measured to (a) the survivor's
//! /health saying `backgroundWork: true` (takeover) and (b) the survivor's
//! first reconciler sweep: the first rise of its
//! `vpsd_reconciler_sweep_duration_seconds_count`, which counts only sweeps
//! that ran (a follower's turn is not one; the part checks the count stays 0
//! while the survivor follows). Median of 5.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::support::fake_do::{DropletScript, FakeDo};
use super::support::pg::PgCluster;
use super::support::process::{health, leader_of, reconciler_sweeps, Daemon};
use super::support::{self, agent, wait_for, API_KEY};
use super::{config_for, fresh_dir, loadgen, token};

const RUNS: usize = 5;
/// The same as tests/pg_failover.rs.
const TAKEOVER_SECONDS: u64 = 3;
/// How often the survivor is looked at after the kill.
const POLL: Duration = Duration::from_millis(2);
/// Observations the droplet answers `new`: it boots for the whole run, so
/// the order stays PROVISIONING and every sweep observes it.
const BOOTING_FOREVER: u32 = 1_000_000;

/// One kill: seconds after it.
struct Run {
    takeover: f64,
    first_sweep: f64,
    /// How long the order had been provisioning (under the leader's sweeps)
    /// when the leader was killed, beyond the first sweep.
    hold: f64,
}

pub fn bench_failover() {
    let poll_ms = poll_interval_ms();
    println!("\n## PostgreSQL failover (SPEC §15): SIGKILL of the instance running the background work to (a) the other's takeover (/health backgroundWork) and (b) its first reconciler sweep; 2 vpsd on one database, takeover_seconds = {TAKEOVER_SECONDS}, provisioning.poll_interval_ms = {poll_ms}, one order provisioning, median of {RUNS}");
    let pg = support::pg::cluster();
    let mut runs = Vec::new();
    for n in 1..=RUNS {
        let run = failover_once(pg);
        println!(
            "  run {n}: takeover {:.3} s, first sweep of the survivor {:.3} s after the SIGKILL",
            run.takeover, run.first_sweep
        );
        runs.push(run);
    }
    report(&runs, poll_ms);
}

/// The reconciler's period in these runs (`support::use_fake_do` sets it).
fn poll_interval_ms() -> u64 {
    let fake = FakeDo::start();
    let dir = fresh_dir("failover-config");
    let config = instance_config(&dir, "postgres://unused", &fake);
    let _ = std::fs::remove_dir_all(&dir);
    config.provisioning.poll_interval_ms
}

fn report(runs: &[Run], poll_ms: u64) {
    let med = |f: &dyn Fn(&Run) -> f64| loadgen::median(runs.iter().map(f).collect());
    let max = |f: &dyn Fn(&Run) -> f64| runs.iter().map(f).fold(0.0, f64::max);
    let (takeover, first) = (med(&|r| r.takeover), med(&|r| r.first_sweep));
    println!("  median of {RUNS} (takeover_seconds = {TAKEOVER_SECONDS}): takeover {takeover:.3} s; first sweep {first:.3} s");
    let t = TAKEOVER_SECONDS as f64;
    let (worst_kill, worst_hung) = (t / 5.0, t * 3.0 / 4.0 + t / 5.0);
    println!(
        "  bound: with T = {t:.0} s a follower tries the lock every T/5; a SIGKILLed leader's connection closes at once, so the server frees the lock at once and takeover comes at the survivor's next try, <= T/5 = {worst_kill:.3} s (a hung or cut-off leader: the server ends its silent session after 3T/4, so <= {worst_hung:.3} s < T); taking over wakes the reconciler, so the first sweep follows takeover by the sweep itself (the tick, every {poll_ms} ms, is only a fallback). Measured worst of {RUNS}: takeover {:.3} s ({}), first sweep {:.3} s; first sweep after takeover: median {:.3} s",
        max(&|r| r.takeover),
        within(max(&|r| r.takeover), worst_kill),
        max(&|r| r.first_sweep),
        med(&|r| r.first_sweep - r.takeover),
    );
    let holds: Vec<String> = runs.iter().map(|r| format!("{:.3}", r.hold)).collect();
    println!(
        "  note: killed {} s after the leader's first sweep of the order (random, for the phase)",
        holds.join(", ")
    );
}

/// A few milliseconds of slack for the polling and the check's round trip.
fn within(measured: f64, bound: f64) -> &'static str {
    if measured <= bound + 0.05 {
        "within"
    } else {
        "OVER"
    }
}

fn instance_config(dir: &Path, url: &str, fake: &FakeDo) -> vpsd::Config {
    let mut config = config_for(dir, &dir.join("vpsd.redb"));
    config.storage.backend = vpsd::config::StorageBackend::Postgres;
    config.storage.postgres.url = Some(url.to_string());
    config.storage.postgres.takeover_seconds = TAKEOVER_SECONDS;
    config.storage.postgres.pool_size = 4;
    support::use_fake_do(&mut config, fake);
    config
}

/// Two instances on a fresh database, the kill, the measurement, and the
/// survivor stopped with SIGTERM.
fn failover_once(pg: &PgCluster) -> Run {
    let fake = FakeDo::start();
    fake.set_default_script(DropletScript::new().active_after(BOOTING_FOREVER));
    let url = pg.fresh_database();
    let dirs = [fresh_dir("failover-a"), fresh_dir("failover-b")];
    let a = Daemon::start(&instance_config(&dirs[0], &url, &fake), &dirs[0]);
    let b = Daemon::start(&instance_config(&dirs[1], &url, &fake), &dirs[1]);
    let http = agent();
    let (leader, survivor) = match leader_of(&http, [&a, &b]) {
        0 => (a, b),
        _ => (b, a),
    };
    provisioning_order(&http, &fake, &leader);
    // Not a wait for anything: the kill lands at a random point of the
    // survivor's lock tries (every T/5) and reconciler ticks (every second),
    // as a real one would. Killed as soon as the leader has swept, it would
    // land at nearly the same point of both in every run (both started a
    // few milliseconds before), and each run would give the same figures.
    let hold = random_hold();
    std::thread::sleep(hold);
    let count_at_kill = reconciler_sweeps(&http, survivor.addr);
    assert_eq!(
        count_at_kill, 0,
        "a follower's turns are not counted as sweeps"
    );
    let killed_at = Instant::now();
    leader.kill9();
    let (takeover, first_sweep) = measure(&http, &survivor, killed_at, count_at_kill);
    let code = survivor.terminate();
    assert_eq!(code, Some(0), "the survivor stops cleanly");
    for dir in &dirs {
        let _ = std::fs::remove_dir_all(dir);
    }
    Run {
        takeover,
        first_sweep,
        hold: hold.as_secs_f64(),
    }
}

/// Uniform in [0, 3 s): 3 s is a whole number of both periods (T/5 = 0.6 s
/// and the 1 s reconciler tick), so the kill's phase is uniform in each.
fn random_hold() -> Duration {
    use std::hash::{BuildHasher, Hasher};
    // std's per-process random keys, fresh for every RandomState: no crate.
    let bits = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    Duration::from_millis(bits % 3000)
}

/// A paid order on the leader, PROVISIONING with its droplet created and
/// booting, observed by at least one of the leader's sweeps since.
fn provisioning_order(http: &ureq::Agent, fake: &FakeDo, leader: &Daemon) {
    let bearer = format!("Bearer {}", token("failover-user"));
    let body = json!({"planId": "vps-basic", "imageId": "ubuntu-22-04", "duration": "MONTHLY"});
    let created = post(
        http,
        &leader.url("/api/v1/orders"),
        ("Authorization", &bearer),
        body,
    );
    let id = created["data"]["id"]
        .as_str()
        .expect("order id")
        .to_string();
    let paid = format!("/api/v1/internal/orders/{id}/payment-status");
    post(
        http,
        &leader.url(&paid),
        ("X-API-Key", API_KEY),
        json!({"status": "PAID"}),
    );
    let mut order = Value::Null;
    wait_for(Duration::from_secs(60), || {
        order = admin_get(http, leader, &format!("/api/v1/internal/orders/{id}"))["data"].clone();
        let booting =
            order["status"] == "PROVISIONING" && order["provisioningTask"]["dropletId"].is_string();
        // A by-id read of the droplet is an observation by a sweep after
        // the one that created it; the count shows a sweep has completed.
        let observed = fake.count("GET", "/v2/droplets/") >= 1;
        (booting && observed && reconciler_sweeps(http, leader.addr) >= 1).then_some(())
    })
    .unwrap_or_else(|| panic!("the leader never swept the booting order: {order}"));
    assert_eq!(fake.count("POST", "/v2/droplets"), 1, "one droplet created");
}

/// Polls the survivor every [`POLL`] from the kill: the seconds to its
/// takeover and to its first sweep (the first rise of its sweep count).
fn measure(http: &ureq::Agent, survivor: &Daemon, killed_at: Instant, before: u64) -> (f64, f64) {
    let limit = Duration::from_secs(TAKEOVER_SECONDS + 30);
    let mut took_over = None;
    let poll = || {
        if took_over.is_none() && health(http, survivor.addr)["backgroundWork"] == true {
            took_over = Some(killed_at.elapsed().as_secs_f64());
        }
        let swept = reconciler_sweeps(http, survivor.addr) > before;
        (swept && took_over.is_some()).then(|| (took_over, killed_at.elapsed().as_secs_f64()))
    };
    let found = every_poll(limit, poll);
    let (takeover, first) = found.unwrap_or_else(|| {
        panic!("within {limit:?} of the kill: takeover {took_over:?}, no sweep")
    });
    (takeover.expect("took over"), first)
}

/// `support::wait_for` at [`POLL`] instead of its 20 ms.
fn every_poll<T>(limit: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(POLL);
    }
}

fn post(http: &ureq::Agent, url: &str, auth: (&str, &str), body: Value) -> Value {
    let mut r = http
        .post(url)
        .header(auth.0, auth.1)
        .header("Content-Type", "application/json")
        .send(body.to_string())
        .expect("request");
    let status = r.status().as_u16();
    let text = r.body_mut().read_to_string().unwrap_or_default();
    assert!(status == 200 || status == 201, "{url}: {status} {text}");
    serde_json::from_str(&text).unwrap_or_default()
}

fn admin_get(http: &ureq::Agent, daemon: &Daemon, path: &str) -> Value {
    let mut r = http
        .get(daemon.url(path))
        .header("X-API-Key", API_KEY)
        .call()
        .expect("request");
    serde_json::from_str(&r.body_mut().read_to_string().unwrap_or_default()).unwrap_or_default()
}
