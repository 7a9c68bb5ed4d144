//! `vpsd import-v1` (SPEC §16, issue 25): a database shaped like the v1
//! order-service's (its Prisma schema's tables, columns and enum types, on
//! the tests' throwaway PostgreSQL) with orders in every v1 status, items,
//! tasks and history, imported by the real binary and read back over the
//! API; the PROVISIONING order's droplet is adopted by id and the PAID one
//! gets exactly one; a rerun imports nothing twice; `--dry-run` writes
//! nothing; unmappable rows are reported and the rest imported; the v1
//! database is unchanged; bad input is one line and writes nothing.

mod support;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::fake_do::{DropletScript, FakeDo};
use support::process::count;
use support::{base_config, use_fake_do, Auth, TestApp};
use vpsd::config::Config;

const BIN: &str = env!("CARGO_BIN_EXE_vpsd");

fn pg() -> &'static support::pg::PgCluster {
    support::pg::cluster()
}

fn database_of(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or_default()
}

/// Order ids by v1 status (the last is a status a later v1 added).
const PENDING: &str = "10000000-0000-4000-8000-000000000001";
const CANCELED: &str = "10000000-0000-4000-8000-000000000002";
const PAID: &str = "10000000-0000-4000-8000-000000000003";
const PROVISIONING: &str = "10000000-0000-4000-8000-000000000004";
const ACTIVE: &str = "10000000-0000-4000-8000-000000000005";
const FAILED: &str = "10000000-0000-4000-8000-000000000006";
const REFUNDED: &str = "10000000-0000-4000-8000-000000000007";
const ORPHAN_ITEM: &str = "20000000-0000-4000-8000-0000000000ff";

fn order_sql(id: &str, user: &str, status: &str, created: &str, paid: Option<&str>) -> String {
    let paid = paid.map_or("NULL".to_string(), |p| format!("'{p}'"));
    format!(
        "INSERT INTO orders VALUES ('{id}', '{user}', 'vps-basic', 'VPS Basic', 'ubuntu-22-04', \
         'Ubuntu 22.04', 'MONTHLY', 150000, 15000, 'HEMAT20', 27000, 108000, 'IDR', '{status}', \
         '{created}', '{created}', {paid});\
         INSERT INTO order_items VALUES (gen_random_uuid(), '{id}', 'PLAN', 'vps-basic', \
         'VPS Basic - 1 vCPU', 150000, 1, 150000, '{created}');\
         INSERT INTO order_items VALUES (gen_random_uuid(), '{id}', 'IMAGE', 'ubuntu-22-04', \
         'Ubuntu 22.04', 0, 1, 0, '{created}');\
         INSERT INTO status_history VALUES (gen_random_uuid(), '{id}', '', 'PENDING_PAYMENT', \
         'user:{user}', NULL, '{{\"source\":\"v1\"}}', '{created}');"
    )
}

fn history_sql(id: &str, from: &str, to: &str, actor: &str, at: &str) -> String {
    format!(
        "INSERT INTO status_history VALUES (gen_random_uuid(), '{id}', '{from}', '{to}', \
         '{actor}', 'by v1', NULL, '{at}');"
    )
}

fn task_sql(id: &str, status: &str, droplet: Option<u64>, extra: &str) -> String {
    let droplet = droplet.map_or("NULL".to_string(), |d| format!("'{d}'"));
    format!(
        "INSERT INTO provisioning_tasks (id, order_id, status, do_region, do_size, do_image, \
         droplet_id, droplet_name, droplet_status, attempts, started_at, created_at, updated_at{}) \
         VALUES (gen_random_uuid(), '{id}', '{status}', 'sgp1', 's-1vcpu-1gb', 'ubuntu-22-04-x64', \
         {droplet}, 'vps-{}', 'new', 2, '2026-11-02 10:20:00.250+00', '2026-11-02 10:19:00.125+00', \
         '2026-11-02 10:21:00.500+00'{})",
        extra.split('|').next().unwrap_or_default(),
        &id[..8],
        extra.split('|').nth(1).unwrap_or_default(),
    )
}

/// A v1 database with an order in every status, one in a status vpsd does
/// not know, and an item whose order is gone; the ids of the two droplets
/// v1 made (PROVISIONING, ACTIVE) on `fake`.
fn seed_v1(fake: &FakeDo) -> (String, u64, u64) {
    let url = pg().fresh_database();
    let db = database_of(&url).to_string();
    pg().psql(&db, support::v1::SCHEMA);
    let booting = fake.seed_droplet("vps-10000000", &["webrana"], DropletScript::new());
    let running = fake.seed_droplet("vps-10000000", &["webrana"], DropletScript::new());
    let t0 = "2026-11-02 10:15:30.123+00";
    let paid = "2026-11-02 10:18:01.456+00";
    let mut sql = vec![
        order_sql(PENDING, "alice", "PENDING_PAYMENT", t0, None),
        order_sql(
            CANCELED,
            "bob",
            "CANCELED",
            "2026-11-02 10:15:31.001+00",
            None,
        ),
        history_sql(
            CANCELED,
            "PENDING_PAYMENT",
            "CANCELED",
            "user:bob",
            "2026-11-02 10:16:00.002+00",
        ),
        order_sql(
            PAID,
            "carol",
            "PAID",
            "2026-11-02 10:15:32.002+00",
            Some(paid),
        ),
        history_sql(PAID, "PENDING_PAYMENT", "PAID", "admin", paid),
        order_sql(
            PROVISIONING,
            "dave",
            "PROVISIONING",
            "2026-11-02 10:15:33.003+00",
            Some(paid),
        ),
        history_sql(PROVISIONING, "PENDING_PAYMENT", "PAID", "admin", paid),
        history_sql(
            PROVISIONING,
            "PAID",
            "PROVISIONING",
            "system",
            "2026-11-02 10:20:00.250+00",
        ),
        task_sql(PROVISIONING, "IN_PROGRESS", Some(booting), ""),
        order_sql(
            ACTIVE,
            "erin",
            "ACTIVE",
            "2026-11-02 10:15:34.004+00",
            Some(paid),
        ),
        history_sql(ACTIVE, "PENDING_PAYMENT", "PAID", "admin:ops-1", paid),
        history_sql(
            ACTIVE,
            "PAID",
            "PROVISIONING",
            "system",
            "2026-11-02 10:20:00.250+00",
        ),
        history_sql(
            ACTIVE,
            "PROVISIONING",
            "ACTIVE",
            "system",
            "2026-11-02 10:25:07.789+00",
        ),
        task_sql(
            ACTIVE,
            "SUCCESS",
            Some(running),
            ", ipv4_public, completed_at|, '203.0.113.7', '2026-11-02 10:25:07.789+00'",
        ),
        order_sql(
            FAILED,
            "frank",
            "FAILED",
            "2026-11-02 10:15:35.005+00",
            Some(paid),
        ),
        history_sql(FAILED, "PENDING_PAYMENT", "PAID", "admin", paid),
        history_sql(
            FAILED,
            "PAID",
            "FAILED",
            "system",
            "2026-11-02 10:30:00.000+00",
        ),
        task_sql(
            FAILED,
            "FAILED",
            None,
            ", error_code, error_message|, 'DROPLET_CREATION_FAILED', 'region sgp1 is full'",
        ),
    ];
    sql.push("ALTER TYPE \"OrderStatus\" ADD VALUE 'REFUNDED'".into());
    pg().psql(&db, &sql.join(";"));
    pg().psql(
        &db,
        &order_sql(
            REFUNDED,
            "gina",
            "REFUNDED",
            "2026-11-02 10:15:36.006+00",
            Some(paid),
        ),
    );
    // A broken reference: an item whose order is gone (v1 once ran without
    // its foreign keys); replica mode skips the check as such a past did.
    pg().psql(
        &db,
        &format!(
            "SET session_replication_role = replica; INSERT INTO order_items VALUES \
             ('{ORPHAN_ITEM}', '30000000-0000-4000-8000-000000000000', 'PLAN', 'vps-basic', 'x', \
             1, 1, 1, now())"
        ),
    );
    (url, booting, running)
}

/// Every v1 table's rows, as one text per table: "only read" means equal.
fn v1_fingerprint(url: &str) -> String {
    let tables = [
        "orders",
        "order_items",
        "provisioning_tasks",
        "status_history",
    ];
    tables
        .iter()
        .map(|t| {
            pg().psql(
                database_of(url),
                &format!("SELECT count(*) || ':' || md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) FROM {t} t"),
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn import(config: &Path, url: &str, extra: &[&str]) -> (bool, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(["import-v1", "--config"])
        .arg(config)
        .args(["--database-url", url])
        .args(extra)
        .env_clear();
    if let Ok(path) = std::env::var("PATH") {
        cmd.env("PATH", path);
    }
    let out: Output = cmd.output().expect("run vpsd import-v1");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn setup() -> (tempfile::TempDir, Config, FakeDo) {
    let dir = tempfile::tempdir().expect("temp dir");
    let fake = FakeDo::start();
    let mut config = base_config(dir.path());
    config.storage.backend = vpsd::config::StorageBackend::Redb;
    use_fake_do(&mut config, &fake);
    (dir, config, fake)
}

fn order(app: &TestApp, id: &str) -> Value {
    let r = app.admin_order(id);
    assert_eq!(r.status, 200, "{id}: {}", r.body);
    r.data().clone()
}

#[test]
fn every_v1_order_reads_back_and_resumes_and_a_rerun_imports_nothing() {
    let (dir, config, fake) = setup();
    let (url, booting, running) = seed_v1(&fake);
    let before = v1_fingerprint(&url);
    let file = support::process::write_config(&config, dir.path());

    let (ok, dry, err) = import(&file, &url, &["--dry-run"]);
    assert!(ok, "dry run: {err}");
    assert_eq!(count(&dry, "to import"), 6, "{dry}");
    assert!(dry.contains("dry run: nothing written"), "{dry}");
    assert!(
        !config.storage.path.exists(),
        "the dry run made no data file"
    );

    let (ok, out, err) = import(&file, &url, &[]);
    assert!(ok, "import: {err}\n{out}");
    for status in [
        "PENDING_PAYMENT",
        "CANCELED",
        "PAID",
        "PROVISIONING",
        "ACTIVE",
        "FAILED",
    ] {
        assert_eq!(count(&out, status), 1, "{out}");
    }
    assert_eq!(count(&out, "imported"), 6, "{out}");
    assert_eq!(count(&out, "not imported"), 2, "{out}");
    assert!(
        out.contains(&format!("order {REFUNDED}: unknown status \"REFUNDED\"")),
        "{out}"
    );
    assert!(
        out.contains(ORPHAN_ITEM) && out.contains("does not exist"),
        "{out}"
    );

    let (ok, again, err) = import(&file, &url, &[]);
    assert!(ok, "rerun: {err}");
    assert_eq!(count(&again, "imported"), 0, "{again}");
    assert_eq!(count(&again, "already in vpsd (skipped)"), 6, "{again}");
    assert_eq!(v1_fingerprint(&url), before, "the v1 database is only read");

    let creates_before = creates(&fake);
    let app = support::start(config.clone(), Some(dir));
    check_fields(&app, running);
    // The reconciler carries on: the droplet v1 made is followed by its id,
    // the PAID order gets exactly one.
    for _ in 0..20 {
        app.sweep();
        let states = [PAID, PROVISIONING].map(|id| order(&app, id)["status"].clone());
        if states.iter().all(|s| s == "ACTIVE") {
            break;
        }
    }
    let adopted = order(&app, PROVISIONING);
    assert_eq!(adopted["status"], "ACTIVE", "{adopted}");
    assert_eq!(
        adopted["provisioningTask"]["dropletId"],
        booting.to_string()
    );
    assert_eq!(order(&app, PAID)["status"], "ACTIVE");
    assert_eq!(
        creates(&fake) - creates_before,
        1,
        "one create, for the PAID order"
    );
    assert!(
        app.get(&format!("/api/v1/orders/{PENDING}"), Auth::User("alice"))
            .status
            == 200
    );
}

fn creates(fake: &FakeDo) -> usize {
    fake.requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/v2/droplets")
        .count()
}

/// What the API shows of the imported orders: ids, users, prices, items,
/// statuses, history with actors and millisecond times, tasks.
fn check_fields(app: &TestApp, running: u64) {
    let pending = order(app, PENDING);
    assert_eq!(pending["userId"], "alice");
    assert_eq!(pending["status"], "PENDING_PAYMENT");
    assert_eq!(pending["pricing"]["basePrice"], 150000, "{pending}");
    assert_eq!(pending["pricing"]["couponCode"], "HEMAT20");
    assert_eq!(pending["finalPrice"], 108000);
    assert_eq!(pending["createdAt"], "2026-11-02T10:15:30.123Z");
    assert_eq!(
        pending["items"].as_array().map(Vec::len),
        Some(2),
        "{pending}"
    );
    let first = &pending["statusHistory"][0];
    assert_eq!(first["actor"], "user:alice", "{pending}");
    assert_eq!(first["previousStatus"], "");

    let active = order(app, ACTIVE);
    assert_eq!(active["status"], "ACTIVE");
    assert_eq!(
        active["activatedAt"], "2026-11-02T10:25:07.789Z",
        "{active}"
    );
    assert_eq!(active["expiresAt"], "2026-12-02T10:25:07.789Z");
    let history: Vec<(Value, Value, Value)> = active["statusHistory"]
        .as_array()
        .expect("history")
        .iter()
        .map(|h| {
            (
                h["newStatus"].clone(),
                h["actor"].clone(),
                h["createdAt"].clone(),
            )
        })
        .collect();
    assert_eq!(history.len(), 4, "{active}");
    assert_eq!(history[1].1, "admin:ops-1");
    assert_eq!(history[3].2, "2026-11-02T10:25:07.789Z");
    let task = &active["provisioningTask"];
    assert_eq!(task["dropletId"], running.to_string(), "{task}");
    assert_eq!(task["ipv4Public"], "203.0.113.7");
    assert_eq!(task["status"], "SUCCESS");

    let failed = order(app, FAILED);
    assert_eq!(
        failed["provisioningTask"]["errorCode"],
        "DROPLET_CREATION_FAILED"
    );
    assert_eq!(
        failed["provisioningTask"]["errorMessage"],
        "region sgp1 is full"
    );
    assert_eq!(
        order(app, CANCELED)["statusHistory"][1]["actor"],
        "user:bob"
    );
}

#[test]
fn bad_input_is_one_line_and_writes_nothing() {
    let (dir, config, fake) = setup();
    let file = support::process::write_config(&config, dir.path());
    let data = config.storage.path.clone();

    // Nothing listens on port 9 of 127.0.0.1.
    let (ok, out, err) = import(&file, "postgres://v1:pw-7781@127.0.0.1:9/orders", &[]);
    assert!(!ok, "{out}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("cannot reach the v1 database") && !err.contains("pw-7781"),
        "{err}"
    );

    let empty = pg().fresh_database();
    let (ok, _, err) = import(&file, &empty, &[]);
    assert!(!ok);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("is not a v1 order-service database: no table orders, order_items, provisioning_tasks, status_history"), "{err}");
    assert!(!data.exists(), "no data file was made");

    // An id the store holds for another order stops everything.
    let (url, _, _) = seed_v1(&fake);
    let (ok, out, err) = import(&file, &url, &[]);
    assert!(ok, "{err}");
    assert_eq!(count(&out, "imported"), 6);
    let db = database_of(&url);
    pg().psql(
        db,
        &format!("UPDATE orders SET user_id = 'mallory' WHERE id = '{ACTIVE}'"),
    );
    pg().psql(
        db,
        &order_sql(
            "10000000-0000-4000-8000-0000000000aa",
            "hank",
            "PENDING_PAYMENT",
            "2026-11-03 09:00:00.000+00",
            None,
        ),
    );
    let (ok, out, err) = import(&file, &url, &[]);
    assert!(!ok, "{out}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("nothing imported") && err.contains(ACTIVE),
        "{err}"
    );
    let app = support::start(config, Some(dir));
    let all = app.get("/api/v1/internal/orders?limit=100", Auth::Admin);
    assert_eq!(
        all.data().as_array().map(Vec::len),
        Some(6),
        "hank's order was not written"
    );
}

/// Into PostgreSQL (SPEC §15) as the configured store: SIGKILL in the
/// middle leaves whole orders only, and a rerun completes the import.
#[test]
fn an_interrupted_import_into_postgres_leaves_whole_orders_and_a_rerun_completes_it() {
    const N: u64 = 20_000;
    let v1 = support::v1::bulk(N as usize);
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = base_config(dir.path());
    let store = pg().fresh_database();
    config.storage.backend = vpsd::config::StorageBackend::Postgres;
    config.storage.postgres.url = Some(store.clone());
    let file = support::process::write_config(&config, dir.path());
    let orders = |db: &str| -> u64 {
        let n = pg().psql(
            db,
            "SELECT count(*) FROM pg_tables WHERE tablename = 'orders'",
        );
        if n == "0" {
            return 0;
        }
        pg().psql(db, "SELECT count(*) FROM orders")
            .parse()
            .unwrap_or(0)
    };

    let mut child = Command::new(BIN)
        .args(["import-v1", "--config"])
        .arg(&file)
        .args(["--database-url", &v1])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start import-v1");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = 0;
    while seen == 0 && Instant::now() < deadline {
        seen = orders(database_of(&store));
        if child.try_wait().expect("import-v1 state").is_some() {
            break;
        }
    }
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    let at_kill = orders(database_of(&store));
    assert!(
        at_kill > 0 && at_kill < N,
        "killed in the middle: {at_kill} of {N} orders"
    );
    let broken = pg().psql(
        database_of(&store),
        "SELECT count(*) FROM orders o WHERE (SELECT count(*) FROM order_items i WHERE i.order_id = o.id) <> 2 \
         OR (SELECT count(*) FROM order_history h WHERE h.order_id = o.id) <> 2",
    );
    assert_eq!(broken, "0", "every order written is whole");

    let (ok, out, err) = import(&file, &v1, &[]);
    assert!(ok, "{err}");
    assert_eq!(count(&out, "imported"), N - at_kill, "{out}");
    assert_eq!(count(&out, "already in vpsd (skipped)"), at_kill, "{out}");
    assert_eq!(orders(database_of(&store)), N);
    let verify = Command::new(BIN)
        .args(["verify", &store])
        .output()
        .expect("verify");
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
}
