//! vpsd benchmarks. Each figure is measured side by side with its baseline in
//! the same run, three times, and the median is reported (see BENCHMARKS.md).
//!
//!   cargo bench --bench vpsd_bench -- all            # everything
//!   cargo bench --bench vpsd_bench -- write|read|list|startup|backup|sweep|fleet|enforce|webhooks|actions|postgres|failover|import
//!   VPSD_BENCH_QUICK_REPAIR=true|false|when_idle cargo bench ...   # storage.quick_repair for every daemon
//!
//! The daemon under test is the real release binary in its own process; the
//! load generator is in this process, on one thread.

#[path = "parts/actions.rs"]
mod actions;
#[path = "parts/failover.rs"]
mod failover;
#[path = "parts/import.rs"]
mod import;
mod loadgen;
#[path = "parts/postgres.rs"]
mod postgres;
#[path = "../tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use support::process::Daemon;
use vpsd::domain::droplet::{Droplet, DropletStatus};
use vpsd::domain::lifecycle::Command;
use vpsd::domain::task::ProvisioningTask;
use vpsd::domain::Actor;
use vpsd::domain::ProvisioningStatus;
use vpsd::store::{QuickRepair, Store, WriteOp};

const RUNS: usize = 3;
const CONNECTIONS: usize = 64;
const WARMUP: Duration = Duration::from_secs(1);
const MEASURE: Duration = Duration::from_secs(5);

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if args.first().map(String::as_str) == Some("hello-server") {
        hello_server();
        return;
    }
    if args.first().map(String::as_str) == Some("sink-server") {
        sink_server();
        return;
    }
    let which = args.first().cloned().unwrap_or_else(|| "all".into());
    let run = |name: &str| which == "all" || which == name;
    println!("machine: {} cores, {}", num_cores(), kernel());
    if run("write") {
        bench_write();
    }
    if run("read") {
        bench_read();
    }
    if run("list") || run("startup") || run("backup") {
        bench_big_file(run("list"), run("startup"), run("backup"));
    }
    if run("sweep") {
        bench_sweep();
    }
    if run("fleet") {
        bench_fleet_sweep();
    }
    if run("enforce") {
        bench_enforce();
    }
    if run("webhooks") {
        bench_webhooks();
    }
    if run("actions") {
        actions::bench_actions();
    }
    if run("postgres") {
        postgres::bench_postgres();
    }
    if run("failover") {
        failover::bench_failover();
    }
    if run("import") {
        import::bench_import();
    }
}

/// A store of `total` ACTIVE orders of which `due` expired a second ago and
/// the rest expire in 30 days; enforcement on, no reminders (so only expiry
/// makes an order due).
fn active_store(name: &str, total: usize, due: usize) -> (Store, vpsd::domain::expiry::Policy) {
    use vpsd::domain::expiry::{due_of, Policy};
    let policy = Policy {
        enforce: true,
        remind_before_ms: Vec::new(),
        ..Policy::default()
    };
    let dir = fresh_dir(name);
    let rules = vpsd::store::Rules {
        policy: policy.clone(),
        ..Default::default()
    };
    let store = Store::open_with(&dir.join("vpsd.redb"), 32 << 20, rules).expect("open");
    let catalog = catalog();
    let now = vpsd::domain::time::now_millis();
    let mut ops = Vec::with_capacity(total);
    for i in 0..total {
        let (order, _) = sample_order(&catalog, &format!("user-{}", i % 500), i);
        let actor = Actor::User(order.user_id.clone());
        let mut change = vpsd::domain::lifecycle::create(order, &actor, now);
        let o = &mut change.order;
        o.status = vpsd::domain::OrderStatus::Active;
        o.term.activated_at = Some(now - 86_400_000);
        o.term.expires_at = Some(if i < due {
            now - 1000
        } else {
            now + 30 * 86_400_000
        });
        o.term.next_due = due_of(o, &policy);
        ops.push(WriteOp::Create {
            change: Box::new(change),
            coupon: None,
            idempotency: None,
        });
        if ops.len() == 4096 {
            store.writer().submit_all_blocking(std::mem::take(&mut ops));
        }
    }
    store.writer().submit_all_blocking(ops);
    (store, policy)
}

fn bench_enforce() {
    println!("\n## Expiry sweep: 100,000 ACTIVE orders with 1,000 due vs 1,000 all due");
    let mut big = Vec::new();
    let mut small = Vec::new();
    let mut idle = Vec::new();
    for run in 0..RUNS {
        let mut secs = [0.0f64; 3];
        let shapes = [(100_000, 1_000), (1_000, 1_000), (100_000, 0)];
        for (slot, (total, due)) in shapes.into_iter().enumerate() {
            let (store, _) = active_store("enforce", total, due);
            let provisioner = vpsd::provision::Provisioner::new(
                store.clone(),
                Arc::new(vpsd::cloud::fleet::Fleet::single(Arc::new(
                    vpsd::cloud::sandbox::Sandbox::new(Duration::ZERO),
                ))),
                sweep_settings(),
                Arc::new(vpsd::metrics::Metrics::new().expect("metrics")),
            );
            let started = Instant::now();
            let changed = provisioner.enforce_now();
            secs[slot] = started.elapsed().as_secs_f64();
            assert_eq!(changed, due, "every due order, and only those, changed");
            store.shutdown();
        }
        println!(
            "  run {}: 100k/1k due {:.3} s | 1k/1k due {:.3} s | 100k/none due {:.6} s",
            run + 1,
            secs[0],
            secs[1],
            secs[2]
        );
        big.push(secs[0]);
        small.push(secs[1]);
        idle.push(secs[2]);
    }
    let (b, s) = (median_f(&mut big), median_f(&mut small));
    let i = median_f(&mut idle);
    println!(
        "  median: 100k/1k due {b:.3} s, 1k/1k due {s:.3} s, ratio {:.2}x; 100k/none due {i:.6} s",
        b / s
    );
}

fn sweep_settings() -> vpsd::provision::Settings {
    vpsd::provision::Settings {
        max_attempts: 60,
        destroy_failed_droplets: false,
        ipv6: false,
        poll_interval: Duration::from_secs(5),
        capacity_wait: Duration::from_secs(86_400),
        account_refresh: Duration::from_secs(300),
        action_max_attempts: 10,
    }
}

fn median_f(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn work_dir() -> PathBuf {
    // On the same disk as the repository (target/), not a tmpfs.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-data");
    std::fs::create_dir_all(&dir).expect("bench dir");
    dir
}

fn fresh_dir(name: &str) -> PathBuf {
    let dir = work_dir().join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    dir
}

fn config_for(dir: &Path, data: &Path) -> vpsd::Config {
    let mut c = support::base_config(dir);
    c.storage.path = data.to_path_buf();
    // Lifecycle lines only: a log line per request would measure the logger.
    // `vpsd::app` is where builds before the http module logged them (A/B).
    c.log.level = "warn,vpsd::app=info,vpsd::http::app=info".into();
    // A/B of `storage.quick_repair` with one build: VPSD_BENCH_QUICK_REPAIR.
    if let Ok(policy) = std::env::var("VPSD_BENCH_QUICK_REPAIR") {
        c.storage.quick_repair = match policy.as_str() {
            "true" | "1" => QuickRepair::Always,
            "false" | "0" => QuickRepair::Never,
            _ => QuickRepair::WhenIdle,
        };
    }
    c
}

fn token(sub: &str) -> String {
    support::hs256_token(
        support::SECRET,
        json!({"sub": sub, "exp": support::now_secs() + 86_400}),
    )
}

fn peak_rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// CPU time (user + system) a process has used so far, in seconds; the
/// per-order cost it gives holds up on a machine shared with other work,
/// where throughput alone swings by 2x between runs.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the line, in clock ticks (100 per second).
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: Vec<f64> = after
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|t| t.parse().ok())
        .collect();
    ticks.iter().sum::<f64>() / 100.0
}

fn num_cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| format!("Linux {}", s.trim()))
        .unwrap_or_default()
}

use support::{create_op, sample_order, shipped_catalog as catalog};

/// Fills `path` with `n` orders spread over 10,000 users plus `hot` orders
/// of user `hot-user`, through the store's writer in large batches.
fn fill(path: &Path, n: usize, hot: usize) -> Vec<uuid::Uuid> {
    let store = Store::open(path).expect("open");
    let catalog = catalog();
    let started = Instant::now();
    let mut hot_ids = Vec::new();
    let mut i = 0;
    while i < n {
        let batch_end = (i + 5000).min(n);
        let ops: Vec<WriteOp> = (i..batch_end)
            .map(|k| {
                let user = if k % (n / hot.max(1)).max(1) == 0 && hot_ids.len() < hot {
                    "hot-user".to_string()
                } else {
                    format!("user-{}", k % 10_000)
                };
                let priced = sample_order(&catalog, &user, k);
                if user == "hot-user" {
                    hot_ids.push(priced.0.id);
                }
                create_op(priced)
            })
            .collect();
        for r in store.writer().submit_all_blocking(ops) {
            r.expect("stored").expect("created");
        }
        i = batch_end;
    }
    eprintln!(
        "  generated {n} orders in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    store.shutdown();
    hot_ids
}

// ---------------------------------------------------------------- write

fn bench_write() {
    println!("\n## POST /api/v1/orders (durable), {CONNECTIONS} connections: fresh file, 1M-order file, fresh with lifecycle + one webhook endpoint, 1M-order file with quick_repair = true; redb baseline");
    let large = big_file(1_000_000);
    let mut runs: Vec<[WriteRun; 4]> = Vec::new();
    let mut base_rps = Vec::new();
    let mut base_p99 = Vec::new();
    for run in 0..RUNS {
        let fresh = post_load("write", None, |_| {});
        let big = post_load("write-big", Some(&large), |_| {});
        let (mut sink, addr) = spawn_helper("sink-server");
        let full = post_load("write-full", None, |c| {
            c.lifecycle.enforce = true;
            support::add_webhook(c, &format!("http://{addr}/hook"), &["*"]);
        });
        let _ = sink.kill();
        let _ = sink.wait();
        let quick = post_load("write-big-quick", Some(&large), |c| {
            c.storage.quick_repair = QuickRepair::Always
        });
        let b = baseline_one_commit_per_insert(&fresh_dir("baseline").join("b.redb"), MEASURE);
        println!(
            "  run {}: fresh {} | 1M {} | lifecycle+webhook {} | 1M quick_repair = true {} | baseline {:.0} commits/s p99 {:.2} ms",
            run + 1,
            fresh.describe(),
            big.describe(),
            full.describe(),
            quick.describe(),
            b.per_second,
            b.p99_ms
        );
        runs.push([fresh, big, full, quick]);
        base_rps.push(b.per_second);
        base_p99.push(b.p99_ms);
    }
    let field = |i: usize, f: fn(&WriteRun) -> f64| {
        loadgen::median(runs.iter().map(|r| f(&r[i])).collect())
    };
    let (fresh, big, full) = (
        field(0, |r| r.rps),
        field(1, |r| r.rps),
        field(2, |r| r.rps),
    );
    let base = loadgen::median(base_rps);
    println!(
        "  median: fresh {fresh:.0} orders/s p99 {:.2} ms; 1M {big:.0} orders/s p99 {:.2} ms; lifecycle+webhook {full:.0} orders/s p99 {:.2} ms; baseline {base:.0} commits/s p99 {:.2} ms",
        field(0, |r| r.p99_ms),
        field(1, |r| r.p99_ms),
        field(2, |r| r.p99_ms),
        loadgen::median(base_p99)
    );
    println!(
        "  ratios: 1M / fresh {:.2}x; fresh / baseline {:.2}x; lifecycle+webhook / baseline {:.2}x; 1M quick_repair = true / 1M {:.2}x (p99 {:.2} ms); peak RSS {:.1} MB (fresh), {:.1} MB (1M), {:.1} MB (lifecycle+webhook)",
        big / fresh,
        fresh / base,
        full / base,
        field(3, |r| r.rps) / big,
        field(3, |r| r.p99_ms),
        field(0, |r| r.rss_mb),
        field(1, |r| r.rss_mb),
        field(2, |r| r.rss_mb)
    );
}

struct WriteRun {
    orders: u64,
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    rss_mb: f64,
}

impl WriteRun {
    fn describe(&self) -> String {
        format!(
            "{} orders, {:.0} orders/s p50 {:.2} ms p99 {:.2} ms",
            self.orders, self.rps, self.p50_ms, self.p99_ms
        )
    }
}

/// POST /orders from every connection, each its own user, every order with
/// a coupon: the write load all POST benches share.
fn post_load_on(daemon: &Daemon) -> loadgen::LoadReport {
    post_load_at(daemon.addr, CONNECTIONS, WARMUP, MEASURE)
}

fn post_load_at(
    addr: std::net::SocketAddr,
    connections: usize,
    warmup: Duration,
    measure: Duration,
) -> loadgen::LoadReport {
    loadgen::run(addr, connections, warmup, measure, 201, order_requests())
}

/// [`post_load_on`] at `per_second` orders in all.
fn post_load_paced(daemon: &Daemon, per_second: f64) -> loadgen::LoadReport {
    let make = order_requests();
    loadgen::run_paced(
        daemon.addr,
        CONNECTIONS,
        WARMUP,
        MEASURE,
        201,
        make,
        per_second,
    )
}

/// Each connection its own user, every order with a coupon.
fn order_requests() -> loadgen::MakeRequest {
    let tokens: Vec<String> = (0..CONNECTIONS)
        .map(|c| token(&format!("bench-{c}")))
        .collect();
    let body = r#"{"planId":"vps-basic","imageId":"ubuntu-22-04","duration":"MONTHLY","couponCode":"HEMAT20"}"#;
    Arc::new(move |conn, _| {
        loadgen::post_json(
            "/api/v1/orders",
            &[("Authorization", &format!("Bearer {}", tokens[conn]))],
            body,
        )
    })
}

/// POST /orders at full load against a daemon on a fresh file, or on a copy
/// of `seed` (so the cached big file stays as generated).
fn post_load(
    name: &str,
    seed: Option<&Path>,
    configure: impl FnOnce(&mut vpsd::Config),
) -> WriteRun {
    let dir = fresh_dir(name);
    let data = dir.join("vpsd.redb");
    if let Some(seed) = seed {
        copy_synced(seed, &data);
    }
    let mut config = config_for(&dir, &data);
    configure(&mut config);
    let daemon = Daemon::start(&config, &dir);
    let r = post_load_on(&daemon);
    assert_eq!(r.errors, 0, "{r:?}");
    let rss_mb = peak_rss_mb(daemon.child.id());
    daemon.terminate();
    let _ = std::fs::remove_dir_all(&dir);
    WriteRun {
        orders: r.requests,
        rps: r.per_second,
        p50_ms: r.p50_ms,
        p99_ms: r.p99_ms,
        rss_mb,
    }
}

/// The baseline: one redb transaction with Immediate durability per order
/// record, records of the same encoded size as vpsd's.
fn baseline_one_commit_per_insert(path: &Path, duration: Duration) -> loadgen::LoadReport {
    let _ = std::fs::remove_file(path);
    let db = redb::Database::create(path).expect("db");
    let table: redb::TableDefinition<u128, &[u8]> = redb::TableDefinition::new("orders");
    let catalog = catalog();
    let (order, _) = sample_order(&catalog, "bench", 0);
    let record = vpsd::store::codec::encode(&order);
    let end = Instant::now() + duration;
    let mut latencies = Vec::new();
    let mut key = 0u128;
    while Instant::now() < end {
        let t = Instant::now();
        let txn = db.begin_write().expect("txn");
        {
            let mut t = txn.open_table(table).expect("table");
            t.insert(key, record.as_slice()).expect("insert");
        }
        txn.commit().expect("commit");
        latencies.push(t.elapsed());
        key += 1;
    }
    latencies.sort();
    let p = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize].as_secs_f64() * 1000.0;
    loadgen::LoadReport {
        requests: latencies.len() as u64,
        errors: 0,
        per_second: latencies.len() as f64 / duration.as_secs_f64(),
        p50_ms: p(0.5),
        p99_ms: p(0.99),
    }
}

// ---------------------------------------------------------------- read

fn bench_read() {
    println!("\n## GET /api/v1/orders/{{id}}, {CONNECTIONS} connections");
    let dir = fresh_dir("read");
    let data = dir.join("vpsd.redb");
    let ids = fill(&data, 10_000, 1000);
    let hot = token("hot-user");
    // wrk, when installed, measures the same two servers beside the loadgen.
    let wrk_script = wrk_available().then(|| wrk_get_script(&dir, &ids, &hot));
    let mut vpsd_rps = Vec::new();
    let mut hello_rps = Vec::new();
    let (mut vpsd_wrk, mut hello_wrk) = (Vec::new(), Vec::new());
    let mut rss = Vec::new();
    for run in 0..RUNS {
        let daemon = Daemon::start(&config_for(&dir, &data), &dir);
        let (ids2, hot2) = (ids.clone(), hot.clone());
        let make: loadgen::MakeRequest = Arc::new(move |conn, i| {
            let id = ids2[(conn * 7919 + i as usize) % ids2.len()];
            loadgen::get(
                &format!("/api/v1/orders/{id}"),
                &[("Authorization", &format!("Bearer {hot2}"))],
            )
        });
        let r = loadgen::run(daemon.addr, CONNECTIONS, WARMUP, MEASURE, 200, make);
        assert_eq!(r.errors, 0, "{r:?}");
        let vw = wrk_script
            .as_ref()
            .map(|s| wrk_rps(daemon.addr, "/", Some(s)));
        rss.push(peak_rss_mb(daemon.child.id()));
        daemon.terminate();

        let (mut hello, addr) = spawn_hello();
        let make: loadgen::MakeRequest = Arc::new(|_, _| loadgen::get("/hello", &[]));
        let h = loadgen::run(addr, CONNECTIONS, WARMUP, MEASURE, 200, make);
        let hw = wrk_script.as_ref().map(|_| wrk_rps(addr, "/hello", None));
        let _ = hello.kill();
        let _ = hello.wait();
        let wrk_line = match (vw, hw) {
            (Some(v), Some(h)) => {
                vpsd_wrk.push(v);
                hello_wrk.push(h);
                format!(" || wrk -t2 -c{CONNECTIONS}: vpsd {v:.0} req/s | hello {h:.0} req/s")
            }
            _ => String::new(),
        };
        println!(
            "  run {}: vpsd {:.0} req/s (p50 {:.2} ms, p99 {:.2} ms) | hello-world warp {:.0} req/s{wrk_line}",
            run + 1, r.per_second, r.p50_ms, r.p99_ms, h.per_second
        );
        vpsd_rps.push(r.per_second);
        hello_rps.push(h.per_second);
    }
    let (v, h) = (loadgen::median(vpsd_rps), loadgen::median(hello_rps));
    println!(
        "  median: vpsd {v:.0} req/s; hello-world {h:.0} req/s; ratio {:.2}x; peak RSS {:.1} MB",
        v / h,
        loadgen::median(rss)
    );
    if !vpsd_wrk.is_empty() {
        let (v, h) = (loadgen::median(vpsd_wrk), loadgen::median(hello_wrk));
        println!(
            "  median (wrk): vpsd {v:.0} req/s; hello-world {h:.0} req/s; ratio {:.2}x",
            v / h
        );
    }
}

fn wrk_available() -> bool {
    std::process::Command::new("wrk")
        .arg("--version")
        .output()
        .is_ok()
}

/// A wrk script cycling through `ids` with the hot user's token.
fn wrk_get_script(dir: &Path, ids: &[uuid::Uuid], token: &str) -> PathBuf {
    let list: Vec<String> = ids.iter().map(|id| format!("\"{id}\"")).collect();
    let script = format!(
        "wrk.headers[\"Authorization\"] = \"Bearer {token}\"\n\
         local ids = {{{}}}\nlocal n = 0\n\
         request = function()\n  n = n + 1\n  \
         return wrk.format(\"GET\", \"/api/v1/orders/\" .. ids[(n % #ids) + 1])\nend\n",
        list.join(",")
    );
    let path = dir.join("get.lua");
    std::fs::write(&path, script).expect("wrk script");
    path
}

/// Requests/s of `wrk -t2 -c64 -d5s`; any non-2xx answer fails the bench.
fn wrk_rps(addr: std::net::SocketAddr, path: &str, script: Option<&PathBuf>) -> f64 {
    let mut cmd = std::process::Command::new("wrk");
    cmd.args(["-t2", &format!("-c{CONNECTIONS}")])
        .arg(format!("-d{}s", MEASURE.as_secs()));
    if let Some(script) = script {
        cmd.arg("-s").arg(script);
    }
    let out = cmd
        .arg(format!("http://{addr}{path}"))
        .output()
        .expect("wrk");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("Non-2xx"), "wrk saw errors: {text}");
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("wrk output: {text}"))
}

/// The baseline server: a warp route returning 200 bytes of JSON, in its own
/// process like the daemon.
fn hello_server() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        use warp::Filter;
        let body = format!("{{\"data\":{{\"message\":\"{}\"}}}}", "x".repeat(200 - 23));
        let route = warp::path("hello").map(move || {
            warp::http::Response::builder()
                .header("content-type", "application/json")
                .body(body.clone())
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        println!("{}", listener.local_addr().expect("addr"));
        warp::serve(route).incoming(listener).run().await;
    });
}

/// A webhook receiver as cheap as a receiver gets: `POST /hook` answers 204
/// and counts; `GET /count` tells the count. Its own process, like a real
/// receiver, so its work does not run on the load generator's thread.
fn sink_server() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        use std::sync::atomic::{AtomicU64, Ordering};
        use warp::Filter;
        let count = Arc::new(AtomicU64::new(0));
        let counted = count.clone();
        let hook = warp::post()
            .and(warp::path("hook"))
            .and(warp::body::bytes())
            .map(move |_body: bytes::Bytes| {
                counted.fetch_add(1, Ordering::Relaxed);
                warp::http::StatusCode::NO_CONTENT
            });
        let total = warp::path("count").map(move || count.load(Ordering::Relaxed).to_string());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        println!("{}", listener.local_addr().expect("addr"));
        warp::serve(hook.or(total)).incoming(listener).run().await;
    });
}

fn spawn_hello() -> (std::process::Child, std::net::SocketAddr) {
    spawn_helper("hello-server")
}

fn spawn_helper(mode: &str) -> (std::process::Child, std::net::SocketAddr) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(std::env::current_exe().expect("exe"))
        .arg(mode)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("hello server");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .expect("address");
    (child, line.trim().parse().expect("addr"))
}

// ---------------------------------------------------------------- list, startup, backup

/// Copies a cached data file and flushes the copy to disk. Left dirty in the
/// page cache, the copy's gigabyte would be written out by the daemon's first
/// fsync (which flushes the whole file) and be measured as the daemon's cost;
/// a real data file has no unwritten pages beyond its last transaction,
/// because every commit is synced.
/// SIGKILL one second into a POST load from `connections` clients.
fn kill_under_post_load(daemon: Daemon, connections: usize) {
    let addr = daemon.addr;
    let load = std::thread::spawn(move || {
        post_load_at(addr, connections, Duration::ZERO, Duration::from_secs(3))
    });
    std::thread::sleep(Duration::from_secs(1));
    daemon.kill9();
    let _ = load.join();
}

fn copy_synced(from: &Path, to: &Path) {
    std::fs::copy(from, to).expect("copy");
    std::fs::File::open(to)
        .and_then(|f| f.sync_all())
        .expect("sync the copy");
}

fn big_file(n: usize) -> PathBuf {
    let path = work_dir().join(format!("orders-{n}.redb"));
    let marker = path.with_extension("complete");
    if !marker.exists() {
        let _ = std::fs::remove_file(&path);
        fill(&path, n, 100);
        std::fs::write(&marker, b"ok").expect("marker");
    }
    // A file cached by an older build is brought to this schema once here,
    // so no measured start pays a one-time migration.
    Store::open(&path).expect("open the cached file").shutdown();
    path
}

fn bench_big_file(list: bool, startup: bool, backup: bool) {
    let small = big_file(10_000);
    let large = big_file(1_000_000);
    let size_mb = std::fs::metadata(&large)
        .map(|m| m.len() as f64 / 1e6)
        .unwrap_or(0.0);
    println!("\n## 1M-order file: {size_mb:.0} MB");
    if startup {
        let mut starts = Vec::new();
        for _ in 0..RUNS {
            let dir = fresh_dir("startup");
            let config = config_for(&dir, &large);
            let t = Instant::now();
            let daemon = Daemon::start(&config, &dir);
            let agent = support::agent();
            let mut r = agent
                .get(daemon.url("/api/v1/health"))
                .call()
                .expect("health");
            assert_eq!(r.status().as_u16(), 200);
            let _ = r.body_mut().read_to_string();
            starts.push(t.elapsed().as_secs_f64());
            daemon.terminate();
        }
        println!(
            "  start-up to first 200 (1M orders): runs {starts:.3?} s, median {:.3} s",
            loadgen::median(starts.clone())
        );
        // After SIGKILL redb must repair the file before it opens, walking
        // every page, unless the last commit recorded its allocator state
        // (`storage.quick_repair`). The default records it when the writer
        // is quiet, so: killed idle with the default, killed idle with
        // `false` (the full walk), and with the default killed under POST
        // load from one client (as fast as it goes, one request at a time)
        // and from 64 (the writer saturated, batching). Interleaved, so the
        // four are one run's figures.
        let when_idle = "quick_repair = \"when_idle\" (default)";
        let cases: [(String, QuickRepair, usize); 4] = [
            (
                format!("{when_idle}, killed idle"),
                QuickRepair::WhenIdle,
                0,
            ),
            (
                "quick_repair = false, killed idle".into(),
                QuickRepair::Never,
                0,
            ),
            (
                format!("{when_idle}, killed under POST load from 1 connection"),
                QuickRepair::WhenIdle,
                1,
            ),
            (
                format!("{when_idle}, killed under POST load from {CONNECTIONS} connections"),
                QuickRepair::WhenIdle,
                CONNECTIONS,
            ),
        ];
        let mut recoveries = [Vec::new(), Vec::new(), Vec::new(), Vec::new()];
        for _ in 0..RUNS {
            for ((_, policy, clients), times) in cases.iter().zip(recoveries.iter_mut()) {
                let dir = fresh_dir("startup-crash");
                let copy = dir.join("vpsd.redb");
                copy_synced(&large, &copy);
                let mut config = config_for(&dir, &copy);
                config.storage.quick_repair = *policy;
                let daemon = Daemon::start(&config, &dir);
                if *clients > 0 {
                    kill_under_post_load(daemon, *clients);
                } else {
                    daemon.kill9();
                }
                let t = Instant::now();
                let daemon = Daemon::start(&config, &dir);
                times.push(t.elapsed().as_secs_f64());
                daemon.terminate();
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
        for ((label, _, _), times) in cases.iter().zip(recoveries) {
            println!(
                "  start-up after SIGKILL (1M orders, {label}): runs {times:.3?} s, median {:.3} s",
                loadgen::median(times.clone())
            );
        }
    }
    if list {
        println!("\n## GET /api/v1/orders?page=1 (user with 100 orders), 16 connections");
        let mut p50_small = Vec::new();
        let mut p50_large = Vec::new();
        let mut rss = Vec::new();
        for run in 0..RUNS {
            let mut row = Vec::new();
            for (label, file) in [("10k", &small), ("1M", &large)] {
                let dir = fresh_dir("list");
                let daemon = Daemon::start(&config_for(&dir, file), &dir);
                let hot = token("hot-user");
                let make: loadgen::MakeRequest = Arc::new(move |_, _| {
                    loadgen::get(
                        "/api/v1/orders?page=1",
                        &[("Authorization", &format!("Bearer {hot}"))],
                    )
                });
                let r = loadgen::run(daemon.addr, 16, WARMUP, MEASURE, 200, make);
                assert_eq!(r.errors, 0, "{r:?}");
                if label == "1M" {
                    rss.push(peak_rss_mb(daemon.child.id()));
                    p50_large.push(r.p50_ms);
                } else {
                    p50_small.push(r.p50_ms);
                }
                row.push(format!(
                    "{label}: {:.0} req/s p50 {:.3} ms p99 {:.3} ms",
                    r.per_second, r.p50_ms, r.p99_ms
                ));
                daemon.terminate();
            }
            println!("  run {}: {}", run + 1, row.join(" | "));
        }
        let (s, l) = (loadgen::median(p50_small), loadgen::median(p50_large));
        println!("  median p50: 10k {s:.3} ms, 1M {l:.3} ms, ratio {:.2}x; peak RSS under load (1M) {:.1} MB", l / s, loadgen::median(rss));
    }
    if backup {
        println!("\n## Online backup of the 1M-order file");
        let dir = fresh_dir("backup");
        let config = config_for(&dir, &large);
        let daemon = Daemon::start(&config, &dir);
        let agent = support::agent();
        let mut secs = Vec::new();
        for run in 0..RUNS {
            let t = Instant::now();
            let mut r = agent
                .post(daemon.url("/api/v1/internal/backups"))
                .header("X-API-Key", support::API_KEY)
                .send_empty()
                .expect("backup");
            let elapsed = t.elapsed().as_secs_f64();
            let body: serde_json::Value =
                serde_json::from_str(&r.body_mut().read_to_string().unwrap_or_default())
                    .unwrap_or_default();
            let bytes = body["data"]["bytes"].as_f64().unwrap_or(0.0);
            println!(
                "  run {}: {:.2} s, {:.0} MB, {:.0} MB/s, {} orders",
                run + 1,
                elapsed,
                bytes / 1e6,
                bytes / 1e6 / elapsed,
                body["data"]["orders"]
            );
            secs.push(elapsed);
            if let Some(f) = body["data"]["file"].as_str() {
                let _ = std::fs::remove_file(f);
            }
        }
        println!(
            "  median {:.2} s ({:.0} MB/s of source file)",
            loadgen::median(secs.clone()),
            size_mb / loadgen::median(secs)
        );
        daemon.terminate();
    }
}

// ---------------------------------------------------------------- sweep

/// A task's droplet as known right after its create: the id and little else.
fn seeded_droplet(s: &support::fake_do::SeededDroplet) -> Droplet {
    Droplet {
        id: s.id,
        name: String::new(),
        status: DropletStatus::New,
        tags: vec!["vpsd".into(), s.order_tag.clone()],
        created_at: None,
        ipv4_public: None,
        ipv4_private: None,
        ipv6_public: None,
    }
}

fn bench_sweep() {
    println!(
        "\n## Reconciler sweep (fake DigitalOcean): API calls by open tasks and live droplets"
    );
    for (open, live) in [(10_000, 10_000), (10, 5_000)] {
        let mut calls = Vec::new();
        let mut secs = Vec::new();
        for run in 0..RUNS {
            let (n, elapsed, report) = sweep_once(open, live, 1);
            println!(
                "  {open} open / {live} live, run {}: {n} API calls, {elapsed:.2} s, {} tasks saved, {} finished",
                run + 1,
                report.saved,
                report.finished
            );
            calls.push(n as f64);
            secs.push(elapsed);
        }
        println!(
            "  {open} open / {live} live median: {:.0} API calls, {:.2} s",
            loadgen::median(calls),
            loadgen::median(secs)
        );
    }
}

/// SPEC §13: one sweep over 10 open tasks on one account, then spread over
/// 5; its DigitalOcean calls (the accounts' own checks run at start-up and
/// on their schedule, outside the sweep).
fn bench_fleet_sweep() {
    println!("\n## Reconciler sweep over several accounts: 10 open tasks, API calls per sweep");
    let mut extra = Vec::new();
    for run in 0..RUNS {
        let (one, _, _) = sweep_once(10, 10, 1);
        let (five, _, _) = sweep_once(10, 10, 5);
        println!(
            "  run {}: 1 account {one} calls, 5 accounts {five} calls: {:+.1} per account",
            run + 1,
            (five as f64 - one as f64) / 5.0
        );
        extra.push((five as f64 - one as f64) / 5.0);
    }
    println!(
        "  median: {:+.1} calls per account (target <= +2)",
        loadgen::median(extra)
    );
}

/// `live` vpsd droplets in the fake cloud, spread round-robin over
/// `accounts` accounts (1: the v1 single token): the first `open` belong to
/// orders still provisioning (their droplet known), the rest to ACTIVE
/// orders. One sweep; returns its DigitalOcean calls and time.
fn sweep_once(
    open: usize,
    live: usize,
    accounts: usize,
) -> (usize, f64, vpsd::provision::SweepReport) {
    let tokens: Vec<String> = (0..accounts).map(|n| format!("tok-{n}")).collect();
    let fake = if accounts == 1 {
        support::fake_do::FakeDo::start()
    } else {
        let limits: Vec<(&str, u64)> = tokens.iter().map(|t| (t.as_str(), 100_000)).collect();
        support::fake_do::FakeDo::start_accounts(&limits)
    };
    let token_of = |i: usize| {
        if accounts == 1 {
            support::fake_do::DEFAULT_TOKEN
        } else {
            tokens[i % accounts].as_str()
        }
    };
    // Round-robin, so the first `open` (the open tasks) are spread over the
    // accounts like the rest.
    let seeded: Vec<_> = (0..live)
        .flat_map(|i| fake.seed_droplets_on(token_of(i), 1, "vpsd"))
        .collect();
    let dir = fresh_dir("sweep");
    let store = Store::open(&dir.join("vpsd.redb")).expect("open");
    let catalog = catalog();
    let order_id =
        |s: &support::fake_do::SeededDroplet| uuid::Uuid::parse_str(&s.order_id).expect("uuid");
    let mut ops = Vec::new();
    for (i, s) in seeded.iter().enumerate() {
        let mut priced = sample_order(&catalog, &format!("user-{}", i % 500), i);
        priced.0.id = order_id(s);
        ops.push(create_op(priced));
    }
    store.writer().submit_all_blocking(ops);
    let pay: Vec<WriteOp> = seeded
        .iter()
        .map(|s| WriteOp::Apply {
            order_id: order_id(s),
            command: Command::Pay { notes: None },
            actor: Actor::Admin(None),
            owner: None,
            idempotency: None,
        })
        .collect();
    let paid = store.writer().submit_all_blocking(pay);
    let start: Vec<WriteOp> = paid
        .into_iter()
        .zip(&seeded)
        .enumerate()
        .map(|(i, (r, s))| {
            let record = r.expect("stored").expect("paid");
            let mut task: ProvisioningTask = record.task.expect("task");
            task.droplet = Some(seeded_droplet(s));
            task.do_account = Some(if accounts == 1 {
                "default".to_string()
            } else {
                format!("acct-{}", i % accounts)
            });
            let mut commands = vec![Command::StartProvisioning];
            if i < open {
                task.status = ProvisioningStatus::InProgress;
            } else {
                task.status = ProvisioningStatus::Success;
                commands.push(Command::ProvisioningSucceeded { metadata: None });
            }
            WriteOp::SaveTask {
                task: Box::new(task),
                commands,
            }
        })
        .collect();
    for r in store.writer().submit_all_blocking(start) {
        r.expect("stored").expect("started");
    }
    let metrics = Arc::new(vpsd::metrics::Metrics::new().expect("metrics"));
    let client = |token: &str| -> Arc<dyn vpsd::cloud::Cloud> {
        Arc::new(vpsd::cloud::digitalocean::DigitalOcean::new(
            &fake.url(),
            token,
            Duration::from_secs(30),
        ))
    };
    let fleet = Arc::new(if accounts == 1 {
        vpsd::cloud::fleet::Fleet::single(client(support::fake_do::DEFAULT_TOKEN))
    } else {
        let members = tokens
            .iter()
            .enumerate()
            .map(|(n, token)| vpsd::cloud::fleet::Member {
                name: format!("acct-{n}"),
                ..vpsd::cloud::fleet::Member::single(client(token))
            })
            .collect();
        vpsd::cloud::fleet::Fleet::new("digitalocean", members)
    });
    // The account's check belongs to start-up and its own schedule, not to
    // the sweep measured here.
    fleet.refresh_due(Duration::from_secs(300));
    let provisioner =
        vpsd::provision::Provisioner::new(store.clone(), fleet, sweep_settings(), metrics);
    fake.clear_requests();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("rt");
    let t = Instant::now();
    let report = runtime
        .block_on(async { provisioner.sweep_once().await })
        .expect("sweep");
    let elapsed = t.elapsed().as_secs_f64();
    let n = fake.requests().len();
    assert_eq!(report.open, open, "the sweep saw the open tasks");
    store.shutdown();
    (n, elapsed, report)
}

/// POST /orders with and without one fast local webhook endpoint, same run;
/// then how long the outbox takes to deliver everything committed. vpsd's
/// CPU per order is compared twice: against the plain run at full load, and
/// against a plain run paced to the webhook run's rate. Per order, a writer
/// commits fewer orders per batch at a lower rate, so the full-load ratio
/// mixes the webhooks' cost with the batching a faster run enjoys; the paced
/// one compares the same rate, work for work.
fn bench_webhooks() {
    println!("\n## POST /api/v1/orders with one local webhook endpoint vs none, {CONNECTIONS} connections");
    let mut runs = Vec::new();
    for run in 0..RUNS {
        let plain = post_orders(None, None);
        let (mut sink, addr) = spawn_helper("sink-server");
        let mut hooked = post_orders(Some(addr), None);
        hooked.sink_cpu_s = cpu_seconds(sink.id());
        let _ = sink.kill();
        let _ = sink.wait();
        let paced = post_orders(None, Some(hooked.report.per_second));
        println!(
            "  run {}: none {:.0} orders/s p99 {:.2} ms | webhook {:.0} orders/s p99 {:.2} ms, {} events delivered {:.2} s after the load began ({:.0} events/s; backlog at the end of the load {}), ratio {:.2}x | none paced to the webhook run's rate: {:.0} orders/s",
            run + 1,
            plain.report.per_second,
            plain.report.p99_ms,
            hooked.report.per_second,
            hooked.report.p99_ms,
            hooked.orders,
            hooked.drained_after.as_secs_f64(),
            hooked.drain_rate,
            hooked.backlog_at_end,
            hooked.report.per_second / plain.report.per_second,
            paced.report.per_second,
        );
        let cpu = HookCpu::of(&plain, &hooked, &paced);
        println!("         CPU per order: {}", cpu.describe());
        runs.push((plain, hooked, cpu));
    }
    let med = |f: &dyn Fn(&(PostRun, PostRun, HookCpu)) -> f64| {
        loadgen::median(runs.iter().map(f).collect())
    };
    println!(
        "  median: none {:.0} orders/s; webhook {:.0} orders/s (p99 {:.2} ms); ratio {:.2}x; delivery rate / arrival rate {:.2}x; peak RSS {:.1} MB",
        med(&|r| r.0.report.per_second),
        med(&|r| r.1.report.per_second),
        med(&|r| r.1.report.p99_ms),
        med(&|r| r.1.report.per_second / r.0.report.per_second),
        med(&|r| r.1.drain_rate / r.1.arrival_rate),
        med(&|r| r.1.rss_mb),
    );
    let median_cpu = HookCpu {
        plain: med(&|r| r.2.plain),
        hooked: med(&|r| r.2.hooked),
        sink: med(&|r| r.2.sink),
        paced: med(&|r| r.2.paced),
    };
    println!("  median CPU per order: {}", median_cpu.describe());
    println!(
        "  median ratios of vpsd's CPU per order, webhook / none: at full load {:.2}x; at the same rate {:.2}x",
        med(&|r| r.2.hooked / r.2.plain),
        med(&|r| r.2.hooked / r.2.paced),
    );
}

/// vpsd's CPU per order (µs) in one run of [`bench_webhooks`].
struct HookCpu {
    plain: f64,
    hooked: f64,
    /// The receiver's, per event.
    sink: f64,
    /// No endpoint, paced to the webhook run's rate.
    paced: f64,
}

impl HookCpu {
    fn of(plain: &PostRun, hooked: &PostRun, paced: &PostRun) -> HookCpu {
        let per_order = |cpu_s: f64, run: &PostRun| cpu_s * 1e6 / run.orders.max(1) as f64;
        HookCpu {
            plain: per_order(plain.cpu_s, plain),
            hooked: per_order(hooked.cpu_s, hooked),
            sink: per_order(hooked.sink_cpu_s, hooked),
            paced: per_order(paced.cpu_s, paced),
        }
    }

    fn describe(&self) -> String {
        format!(
            "none vpsd {:.0} us | webhook vpsd {:.0} us + receiver {:.0} us | none at the webhook run's rate vpsd {:.0} us",
            self.plain, self.hooked, self.sink, self.paced
        )
    }
}

struct PostRun {
    report: loadgen::LoadReport,
    /// Orders committed, warm-up included (each one event).
    orders: usize,
    /// Orders per second over the whole load (warm-up included).
    arrival_rate: f64,
    /// From the start of the load until the receiver had every event.
    drained_after: Duration,
    /// Events per second over that span.
    drain_rate: f64,
    backlog_at_end: usize,
    rss_mb: f64,
    /// The daemon's CPU time over the run and the drain (start-up included).
    cpu_s: f64,
    /// The receiver's, over its whole life (set by the caller).
    sink_cpu_s: f64,
}

/// POST /orders at full load, or at `pace` orders per second in all.
fn post_orders(sink: Option<std::net::SocketAddr>, pace: Option<f64>) -> PostRun {
    let dir = fresh_dir("webhooks");
    let data = dir.join("vpsd.redb");
    let mut config = config_for(&dir, &data);
    if let Some(addr) = sink {
        support::add_webhook(&mut config, &format!("http://{addr}/hook"), &["*"]);
    }
    let daemon = Daemon::start(&config, &dir);
    let began = Instant::now();
    let report = match pace {
        Some(per_second) => post_load_paced(&daemon, per_second),
        None => post_load_on(&daemon),
    };
    let load_time = began.elapsed();
    assert_eq!(report.errors, 0, "{report:?}");
    let orders = order_count(&daemon);
    let mut run = PostRun {
        report,
        orders,
        arrival_rate: orders as f64 / load_time.as_secs_f64(),
        drained_after: Duration::ZERO,
        drain_rate: 0.0,
        backlog_at_end: 0,
        rss_mb: 0.0,
        cpu_s: 0.0,
        sink_cpu_s: 0.0,
    };
    if let Some(addr) = sink {
        run.backlog_at_end = orders.saturating_sub(sink_count(addr));
        support::wait_for(Duration::from_secs(300), || {
            (sink_count(addr) >= orders).then_some(())
        })
        .expect("every event delivered");
        run.drained_after = began.elapsed();
        run.drain_rate = orders as f64 / run.drained_after.as_secs_f64();
    }
    run.rss_mb = peak_rss_mb(daemon.child.id());
    run.cpu_s = cpu_seconds(daemon.child.id());
    daemon.terminate();
    run
}

fn sink_count(addr: std::net::SocketAddr) -> usize {
    support::agent()
        .get(format!("http://{addr}/count"))
        .call()
        .ok()
        .and_then(|mut r| r.body_mut().read_to_string().ok())
        .and_then(|t| t.parse().ok())
        .unwrap_or(0)
}

fn order_count(daemon: &Daemon) -> usize {
    let mut r = support::agent()
        .get(daemon.url("/api/v1/internal/orders?limit=1"))
        .header("X-API-Key", support::API_KEY)
        .call()
        .expect("order count");
    let body: serde_json::Value =
        serde_json::from_str(&r.body_mut().read_to_string().unwrap_or_default())
            .unwrap_or_default();
    body["meta"]["total"].as_u64().unwrap_or(0) as usize
}
