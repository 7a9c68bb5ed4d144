//! PostgreSQL backend (SPEC §15, issue 24): POST /orders and GET
//! /orders/{id} at 64 connections on redb, on one vpsd over PostgreSQL and on
//! two vpsd processes sharing one PostgreSQL database, in the same run, with
//! PostgreSQL's default durability; and where the time of one instance's
//! POST goes (CPU per order of vpsd and of the cluster, commits and WAL
//! flushes per order, what the server's backends were doing).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::postgres::{Client, NoTls};

use super::support::pg::PgCluster;
use super::support::process::Daemon;
use super::{
    config_for, cpu_seconds, fresh_dir, loadgen, num_cores, token, CONNECTIONS, MEASURE, RUNS,
    WARMUP,
};

/// The same body as `post_load_at`'s: every order with a coupon.
const ORDER_BODY: &str = r#"{"planId":"vps-basic","imageId":"ubuntu-22-04","duration":"MONTHLY","couponCode":"HEMAT20"}"#;
/// The same order without the coupon, whose uses every order with it counts.
const NO_COUPON_BODY: &str =
    r#"{"planId":"vps-basic","imageId":"ubuntu-22-04","duration":"MONTHLY"}"#;

/// How often the backends' states are sampled during the measured POST.
const SAMPLE_EVERY: Duration = Duration::from_millis(200);

pub fn bench_postgres() {
    println!("\n## PostgreSQL (SPEC §15): POST /api/v1/orders and GET /api/v1/orders/{{id}}, {CONNECTIONS} connections: redb | 1 vpsd on PostgreSQL (pool_size 16) | 2 vpsd on one database (32 + 32 connections)");
    let pg = super::support::pg::cluster();
    let mut stats = Client::connect(&pg.url("postgres"), NoTls).expect("stats connection");
    print_settings(pg, &mut stats);
    let mut runs = Vec::new();
    let mut waits: HashMap<String, usize> = HashMap::new();
    for run in 0..RUNS {
        let redb = redb_run();
        let (one, costs, seen) = one_instance_run(pg, &mut stats);
        let two = two_instance_run(pg);
        for (label, n) in seen {
            *waits.entry(label).or_default() += n;
        }
        let n = run + 1;
        println!("  run {n} redb:       {}", redb.describe());
        println!("  run {n} PG, 1 vpsd: {}", one.describe());
        println!("  run {n} PG, 2 vpsd: {}", two.describe());
        let per_order = costs.describe();
        println!("  run {n} PG, 1 vpsd, POST, per order: {per_order}");
        runs.push(Run {
            redb,
            one,
            two,
            costs,
        });
    }
    report(&runs);
    report_waits(&waits);
}

/// The server's settings the figures depend on; the run stops if the
/// durability is not PostgreSQL's default (the targets are for fsync on,
/// synchronous_commit on).
fn print_settings(pg: &PgCluster, stats: &mut Client) {
    let row = stats
        .query_one(
            "SELECT version(), current_setting('fsync'), current_setting('synchronous_commit'), \
             current_setting('wal_sync_method'), current_setting('full_page_writes'), \
             current_setting('shared_buffers'), current_setting('commit_delay')",
            &[],
        )
        .expect("settings");
    let v: Vec<String> = (0..row.len()).map(|i| row.get(i)).collect();
    let fs = std::process::Command::new("stat")
        .args(["-f", "-c", "%T"])
        .arg(pg.dir())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let version = v[0].split(" on ").next().unwrap_or_default();
    println!(
        "  {version}; SHOW fsync: {}, SHOW synchronous_commit: {}; wal_sync_method {}, full_page_writes {}, shared_buffers {}, commit_delay {}; cluster in {} ({fs})",
        v[1], v[2], v[3], v[4], v[5], v[6],
        pg.dir().display()
    );
    assert_eq!(
        (v[1].as_str(), v[2].as_str()),
        ("on", "on"),
        "the figures are for PostgreSQL's default durability"
    );
}

// ---------------------------------------------------------------- figures

#[derive(Clone, Copy)]
struct Load {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

impl Load {
    fn of(r: &loadgen::LoadReport) -> Load {
        assert_eq!(r.errors, 0, "{r:?}");
        Load {
            rps: r.per_second,
            p50_ms: r.p50_ms,
            p99_ms: r.p99_ms,
        }
    }

    /// Two instances' loads side by side: the rates add up; a merged
    /// percentile is not known from two reports, so the worse one is given.
    fn both(a: &loadgen::LoadReport, b: &loadgen::LoadReport) -> Load {
        let (a, b) = (Load::of(a), Load::of(b));
        Load {
            rps: a.rps + b.rps,
            p50_ms: a.p50_ms.max(b.p50_ms),
            p99_ms: a.p99_ms.max(b.p99_ms),
        }
    }

    fn describe(&self) -> String {
        format!(
            "{:.0}/s p50 {:.2} ms p99 {:.2} ms",
            self.rps, self.p50_ms, self.p99_ms
        )
    }
}

/// POST then GET on one setup.
#[derive(Clone, Copy)]
struct Pair {
    post: Load,
    get: Load,
}

impl Pair {
    fn describe(&self) -> String {
        format!(
            "POST {} | GET {}",
            self.post.describe(),
            self.get.describe()
        )
    }
}

/// Per order committed during the one-instance POST load (warm-up included).
#[derive(Clone, Copy)]
struct Costs {
    vpsd_us: f64,
    postgres_us: f64,
    loadgen_us: f64,
    /// CPU used by the three over what the machine's cores had in the time.
    busy: f64,
    commits: f64,
    /// pg_stat_wal's wal_sync, wal_write and wal_bytes (kB), when the server
    /// has them (PostgreSQL 14 to 17).
    wal: Option<[f64; 3]>,
    /// The same POST load without the coupon, on the same database (run
    /// after the costs are taken).
    no_coupon: Option<Load>,
}

impl Costs {
    fn describe(&self) -> String {
        let wal = self
            .wal
            .map_or("pg_stat_wal n/a".to_string(), |[sync, write, kb]| {
                format!("{sync:.2} WAL flushes (wal_sync), {write:.2} WAL writes, {kb:.1} kB WAL")
            });
        let plain = self.no_coupon.map_or(String::new(), |l| {
            format!("; the same POST without the coupon {}", l.describe())
        });
        format!(
            "CPU vpsd {:.0} us + postgres {:.0} us + load generator {:.0} us ({:.0}% of {} cores busy); {:.2} commits (xact_commit), {wal}{plain}",
            self.vpsd_us,
            self.postgres_us,
            self.loadgen_us,
            self.busy * 100.0,
            num_cores(),
            self.commits
        )
    }
}

struct Run {
    redb: Pair,
    one: Pair,
    two: Pair,
    costs: Costs,
}

fn report(runs: &[Run]) {
    let med = |f: &dyn Fn(&Run) -> f64| loadgen::median(runs.iter().map(f).collect());
    let load = |f: &dyn Fn(&Run) -> Load| Load {
        rps: med(&|r| f(r).rps),
        p50_ms: med(&|r| f(r).p50_ms),
        p99_ms: med(&|r| f(r).p99_ms),
    };
    let pair = |f: &dyn Fn(&Run) -> Pair| Pair {
        post: load(&|r| f(r).post),
        get: load(&|r| f(r).get),
    };
    let (redb, one, two) = (pair(&|r| r.redb), pair(&|r| r.one), pair(&|r| r.two));
    println!("  median redb:       {}", redb.describe());
    println!("  median PG, 1 vpsd: {}", one.describe());
    println!("  median PG, 2 vpsd: {}", two.describe());
    // Ratios within each run, then their median: the machine's load
    // changes between runs, less within one.
    let ratio = med;
    println!(
        "  ratios vs redb (median of each run's): PG 1 vpsd POST {:.2}x, GET {:.2}x | PG 2 vpsd POST {:.2}x, GET {:.2}x | PG 2 vpsd / 1 vpsd POST {:.2}x, GET {:.2}x",
        ratio(&|r| r.one.post.rps / r.redb.post.rps),
        ratio(&|r| r.one.get.rps / r.redb.get.rps),
        ratio(&|r| r.two.post.rps / r.redb.post.rps),
        ratio(&|r| r.two.get.rps / r.redb.get.rps),
        ratio(&|r| r.two.post.rps / r.one.post.rps),
        ratio(&|r| r.two.get.rps / r.one.get.rps),
    );
    let plain = ratio(&|r| {
        r.costs
            .no_coupon
            .map_or(f64::NAN, |l| r.one.post.rps / l.rps)
    });
    println!("  PG 1 vpsd POST with the coupon / without: {plain:.2}x");
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    let get_ratio = ratio(&|r| r.one.get.rps / r.redb.get.rps);
    println!(
        "  targets: PG 1 vpsd POST >= 1,500/s with p99 < 50 ms: {:.0}/s p99 {:.2} ms, {}; PG 1 vpsd GET >= 0.5x redb: {get_ratio:.2}x, {}",
        one.post.rps,
        one.post.p99_ms,
        verdict(one.post.rps >= 1500.0 && one.post.p99_ms < 50.0),
        verdict(get_ratio >= 0.5)
    );
    let wal = runs.iter().all(|r| r.costs.wal.is_some());
    let costs = Costs {
        vpsd_us: med(&|r| r.costs.vpsd_us),
        postgres_us: med(&|r| r.costs.postgres_us),
        loadgen_us: med(&|r| r.costs.loadgen_us),
        busy: med(&|r| r.costs.busy),
        commits: med(&|r| r.costs.commits),
        wal: wal.then(|| [0, 1, 2].map(|i| med(&|r| r.costs.wal.map_or(0.0, |w| w[i])))),
        no_coupon: Some(load(&|r| r.costs.no_coupon.expect("measured"))),
    };
    println!("  median PG, 1 vpsd, POST, per order: {}", costs.describe());
}

/// What the vpsd backends were doing, over every sample of every run.
fn report_waits(waits: &HashMap<String, usize>) {
    let total: usize = waits.values().sum();
    let mut top: Vec<(&String, &usize)> = waits.iter().collect();
    top.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let shares: Vec<String> = top
        .iter()
        .take(8)
        .map(|(label, n)| format!("{label} {:.0}%", **n as f64 * 100.0 / total.max(1) as f64))
        .collect();
    println!(
        "  PG, 1 vpsd, POST: vpsd's PostgreSQL connections, sampled every {} ms from pg_stat_activity ({total} connection-samples): {}",
        SAMPLE_EVERY.as_millis(),
        shares.join(", ")
    );
}

// ---------------------------------------------------------------- runs

/// The redb baseline: POST on a fresh file, then GET of those orders from a
/// daemon started again on the file (as the PostgreSQL runs do).
fn redb_run() -> Pair {
    let dir = fresh_dir("pg-redb");
    let data = dir.join("vpsd.redb");
    let config = config_for(&dir, &data);
    let daemon = Daemon::start(&config, &dir);
    let post = Load::of(&super::post_load_on(&daemon));
    daemon.terminate();
    let daemon = Daemon::start(&config, &dir);
    let get = get_own_orders(&daemon);
    daemon.terminate();
    let _ = std::fs::remove_dir_all(&dir);
    Pair { post, get }
}

/// One vpsd on a fresh database: POST with its costs measured, then GET
/// from a vpsd started again on the database (the first one had to stop
/// for the server's counters of its connections to be complete), then
/// POST without the coupon there.
fn one_instance_run(pg: &PgCluster, stats: &mut Client) -> (Pair, Costs, HashMap<String, usize>) {
    let url = pg.fresh_database();
    let db = database_of(&url);
    let dir = fresh_dir("pg-one");
    let config = pg_config(&dir, &url);
    let daemon = Daemon::start(&config, &dir);
    let (post, mut costs, waits) = measured_post(pg, stats, &db, daemon);
    let daemon = Daemon::start(&config, &dir);
    let get = get_own_orders(&daemon);
    let plain = post_users(daemon.addr, 0..CONNECTIONS, NO_COUPON_BODY);
    costs.no_coupon = Some(Load::of(&plain));
    daemon.terminate();
    let _ = std::fs::remove_dir_all(&dir);
    (Pair { post, get }, costs, waits)
}

/// Two vpsd on one fresh database, 32 connections each, the two load
/// generators at once on two threads. GET: each instance reads the orders
/// the other one took.
fn two_instance_run(pg: &PgCluster) -> Pair {
    let url = pg.fresh_database();
    let dirs = [fresh_dir("pg-two-a"), fresh_dir("pg-two-b")];
    let daemons: Vec<Daemon> = dirs
        .iter()
        .map(|dir| Daemon::start(&pg_config(dir, &url), dir))
        .collect();
    let (a, b) = (daemons[0].addr, daemons[1].addr);
    let half = CONNECTIONS / 2;
    let (pa, pb) = at_once(
        || post_users(a, 0..half, ORDER_BODY),
        || post_users(b, half..CONNECTIONS, ORDER_BODY),
    );
    let post = Load::both(&pa, &pb);
    let ids = Arc::new(owned_ids(a, 0..CONNECTIONS));
    let (ga, gb) = at_once(
        || get_users(a, ids.clone(), half..CONNECTIONS),
        || get_users(b, ids.clone(), 0..half),
    );
    let get = Load::both(&ga, &gb);
    let orders = order_rows(pg, &database_of(&url));
    assert!(
        orders >= pa.requests + pb.requests,
        "the orders are in PostgreSQL: {orders} rows"
    );
    for (daemon, dir) in daemons.into_iter().zip(&dirs) {
        daemon.terminate();
        let _ = std::fs::remove_dir_all(dir);
    }
    Pair { post, get }
}

fn pg_config(dir: &Path, url: &str) -> vpsd::Config {
    let mut config = config_for(dir, &dir.join("vpsd.redb"));
    config.storage.backend = vpsd::config::StorageBackend::Postgres;
    config.storage.postgres.url = Some(url.to_string());
    config
}

fn database_of(url: &str) -> String {
    url.rsplit('/').next().unwrap_or_default().to_string()
}

fn order_rows(pg: &PgCluster, db: &str) -> u64 {
    pg.psql(db, "SELECT count(*) FROM orders")
        .parse()
        .expect("a count")
}

/// Runs both loads at the same time, each on its own thread (the load
/// generator drives its connections from one thread).
fn at_once(
    a: impl FnOnce() -> loadgen::LoadReport + Send,
    b: impl FnOnce() -> loadgen::LoadReport + Send,
) -> (loadgen::LoadReport, loadgen::LoadReport) {
    std::thread::scope(|s| {
        let a = s.spawn(a);
        let b = s.spawn(b);
        (
            a.join().expect("first load"),
            b.join().expect("second load"),
        )
    })
}

// ---------------------------------------------------------------- loads

/// The Authorization header values of users `bench-{u}`, `u` in `users`.
fn bearers(users: Range<usize>) -> Vec<String> {
    users
        .map(|u| format!("Bearer {}", token(&format!("bench-{u}"))))
        .collect()
}

/// POST /orders, connection `n` as user `bench-{users.start + n}`.
fn post_users(addr: SocketAddr, users: Range<usize>, body: &'static str) -> loadgen::LoadReport {
    let bearers = bearers(users.clone());
    let make: loadgen::MakeRequest = Arc::new(move |conn, _| {
        loadgen::post_json("/api/v1/orders", &[("Authorization", &bearers[conn])], body)
    });
    loadgen::run(addr, users.len(), WARMUP, MEASURE, 201, make)
}

/// GET /orders/{id}, connection `n` as user `bench-{users.start + n}`
/// cycling through that user's orders.
fn get_users(
    addr: SocketAddr,
    ids: Arc<Vec<Vec<String>>>,
    users: Range<usize>,
) -> loadgen::LoadReport {
    let bearers = bearers(users.clone());
    let first = users.start;
    let make: loadgen::MakeRequest = Arc::new(move |conn, i| {
        let own = &ids[first + conn];
        loadgen::get(
            &format!("/api/v1/orders/{}", own[i as usize % own.len()]),
            &[("Authorization", &bearers[conn])],
        )
    });
    loadgen::run(addr, users.len(), WARMUP, MEASURE, 200, make)
}

/// GET at full load on `daemon`, each connection reading the orders its
/// user took in the POST load.
fn get_own_orders(daemon: &Daemon) -> Load {
    let ids = Arc::new(owned_ids(daemon.addr, 0..CONNECTIONS));
    Load::of(&get_users(daemon.addr, ids, 0..CONNECTIONS))
}

/// The newest 100 order ids of each user `bench-{u}`, from the API,
/// indexed by `u`.
fn owned_ids(addr: SocketAddr, users: Range<usize>) -> Vec<Vec<String>> {
    let http = super::support::agent();
    let url = format!("http://{addr}/api/v1/orders?limit=100");
    let read = |bearer: &String| -> Vec<String> {
        let mut r = http
            .get(&url)
            .header("Authorization", bearer)
            .call()
            .expect("order list");
        let text = r.body_mut().read_to_string().unwrap_or_default();
        let body: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let list = body["data"].as_array().cloned().unwrap_or_default();
        let ids: Vec<String> = list
            .iter()
            .filter_map(|o| o["id"].as_str().map(str::to_string))
            .collect();
        assert!(
            !ids.is_empty(),
            "a user of the POST load has orders: {text}"
        );
        ids
    };
    bearers(users).iter().map(read).collect()
}

// ---------------------------------------------------------------- where the time goes

/// The server's counters: commits in database `db`; the cluster's WAL
/// wal_sync, wal_write and wal_bytes in kB.
fn counters(stats: &mut Client, db: &str) -> (f64, Option<[f64; 3]>) {
    let commits = stats
        .query_one(
            "SELECT xact_commit::float8 FROM pg_stat_database WHERE datname = $1",
            &[&db],
        )
        .expect("pg_stat_database")
        .get(0);
    // pg_stat_wal has these from PostgreSQL 14 to 17 (18 moved them to
    // pg_stat_io); without them the figure is left out, not guessed.
    let wal = stats
        .query_one(
            "SELECT wal_sync::float8, wal_write::float8, wal_bytes::float8 / 1024 FROM pg_stat_wal",
            &[],
        )
        .ok()
        .map(|row| [row.get(0), row.get(1), row.get(2)]);
    (commits, wal)
}

/// CPU seconds of the cluster's server processes so far: the postmaster and
/// its children, found by parent rather than by the name `postgres`, which
/// other clusters on the machine (the tests') share.
fn cluster_cpu(pg: &PgCluster) -> f64 {
    let pid_file = pg.dir().join("data/postmaster.pid");
    let text = std::fs::read_to_string(pid_file).expect("postmaster.pid");
    let postmaster = text.lines().next().unwrap_or_default().trim().to_string();
    let mut seconds = 0.0;
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // "pid (name) state ppid ...": utime, stime, cutime and cstime are
        // fields 14 to 17 of the line, in clock ticks.
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let is_postmaster = head.split(' ').next() == Some(postmaster.as_str());
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if !is_postmaster && fields.get(1) != Some(&postmaster.as_str()) {
            continue;
        }
        // cutime and cstime: the postmaster's include every backend it
        // reaped, so one that ended during the load still counts.
        let ticks: f64 = (11..15)
            .filter_map(|i| fields.get(i).and_then(|t| t.parse::<f64>().ok()))
            .sum();
        seconds += ticks / 100.0;
    }
    seconds
}

/// POST at full load on `daemon` (one vpsd on database `db`) with the cost
/// per order of every party; stops the daemon, and waits for its server
/// connections to end, so their counters and CPU are all in.
fn measured_post(
    pg: &PgCluster,
    stats: &mut Client,
    db: &str,
    daemon: Daemon,
) -> (Load, Costs, HashMap<String, usize>) {
    let (vpsd_pid, me) = (daemon.child.id(), std::process::id());
    let orders_before = order_rows(pg, db);
    let (commits_before, wal_before) = counters(stats, db);
    let (pg_before, vpsd_before, me_before) =
        (cluster_cpu(pg), cpu_seconds(vpsd_pid), cpu_seconds(me));
    let began = Instant::now();
    let sampler = Sampler::start(pg, db);
    let report = super::post_load_on(&daemon);
    let waits = sampler.stop();
    let elapsed = began.elapsed().as_secs_f64();
    let vpsd_cpu = cpu_seconds(vpsd_pid) - vpsd_before;
    let me_cpu = cpu_seconds(me) - me_before;
    let post = Load::of(&report);
    daemon.terminate();
    super::support::wait_for(Duration::from_secs(30), || {
        let left: i64 = stats
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1",
                &[&db],
            )
            .ok()?
            .get(0);
        (left == 0).then_some(())
    })
    .expect("vpsd's connections end when it stops");
    let pg_cpu = cluster_cpu(pg) - pg_before;
    let (commits_after, wal_after) = counters(stats, db);
    let orders = order_rows(pg, db) - orders_before;
    assert!(
        orders >= report.requests,
        "the orders are in PostgreSQL: {orders} rows"
    );
    let per = |v: f64| v / orders as f64;
    let costs = Costs {
        vpsd_us: per(vpsd_cpu) * 1e6,
        postgres_us: per(pg_cpu) * 1e6,
        loadgen_us: per(me_cpu) * 1e6,
        busy: (vpsd_cpu + pg_cpu + me_cpu) / (elapsed * num_cores() as f64),
        commits: per(commits_after - commits_before),
        wal: wal_before
            .zip(wal_after)
            .map(|(b, a)| [0, 1, 2].map(|i| per(a[i] - b[i]))),
        no_coupon: None,
    };
    (post, costs, waits)
}

/// Samples what vpsd's server connections are doing (pg_stat_activity's
/// state and wait event) on its own thread and connection until stopped.
struct Sampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<HashMap<String, usize>>,
}

impl Sampler {
    fn start(pg: &PgCluster, db: &str) -> Sampler {
        let mut client = Client::connect(&pg.url("postgres"), NoTls).expect("sampler connection");
        let (stop, db) = (Arc::new(AtomicBool::new(false)), db.to_string());
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut seen: HashMap<String, usize> = HashMap::new();
            while !stopped.load(Ordering::Relaxed) {
                let rows = client
                    .query(
                        "SELECT coalesce(state, ''), coalesce(wait_event_type || ':' || wait_event, 'on CPU') \
                         FROM pg_stat_activity WHERE datname = $1 AND backend_type = 'client backend'",
                        &[&db],
                    )
                    .unwrap_or_default();
                for row in rows {
                    let (state, wait): (String, String) = (row.get(0), row.get(1));
                    *seen.entry(format!("{state} ({wait})")).or_default() += 1;
                }
                std::thread::sleep(SAMPLE_EVERY);
            }
            seen
        });
        Sampler { stop, thread }
    }

    fn stop(self) -> HashMap<String, usize> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("sampler")
    }
}
