//! Which storage backend the in-process apps run on (SPEC §15): the embedded
//! redb file by default, or PostgreSQL under `VPSD_TEST_BACKEND=postgres`,
//! so one API suite proves both. Each app then gets a fresh database from the
//! test binary's one throwaway cluster (`pg::cluster`).

use std::sync::OnceLock;

use vpsd::config::{Config, StorageBackend};

use super::TestApp;

/// Connections per app on PostgreSQL. The suite runs several apps at once
/// (a thread per test, and some tests start two), each with its own pool
/// plus a leadership connection: 16 each would run into the cluster's
/// `max_connections` on a machine with many cores, and a test app never
/// needs that many.
pub const TEST_POOL_SIZE: u32 = 4;

/// True when `VPSD_TEST_BACKEND=postgres`. Any value other than `redb`,
/// `postgres` or unset stops the run: a typo must not quietly test redb.
pub fn on_postgres() -> bool {
    static CHOICE: OnceLock<bool> = OnceLock::new();
    *CHOICE.get_or_init(|| match std::env::var("VPSD_TEST_BACKEND") {
        Err(_) => false,
        Ok(v) if v.is_empty() || v == "redb" => false,
        Ok(v) if v == "postgres" => true,
        Ok(other) => panic!("VPSD_TEST_BACKEND={other:?}: use redb or postgres"),
    })
}

/// For a test that is about the redb file itself (its modes, its tables, the
/// writer's injected faults, file snapshots): true, after saying so on
/// stderr, when the suite runs on PostgreSQL, so the test returns at once.
pub fn skip_on_postgres(why: &str) -> bool {
    if on_postgres() {
        eprintln!("skipped on postgres: {why}");
    }
    on_postgres()
}

/// Points `config` at the backend this run tests: on PostgreSQL a new empty
/// database (the data dir stays, for the sandbox's state and backups).
pub fn choose(config: &mut Config) {
    if on_postgres() {
        config.storage.backend = StorageBackend::Postgres;
        config.storage.postgres.url = Some(super::pg::cluster().fresh_database());
        config.storage.postgres.pool_size = TEST_POOL_SIZE;
    }
}

/// Stops `app` and checks its store the way an operator would, returning
/// the order count the check reports: `vpsd::store::backup::verify` on the
/// redb file (which needs the daemon gone: the file is locked while open),
/// `vpsd verify URL` on PostgreSQL.
pub fn verify_stopped(mut app: TestApp) -> u64 {
    let config = app.config.clone();
    let dir = app.dir.take();
    drop(app);
    let orders = match config.storage.postgres.url.as_deref() {
        Some(url) if config.storage.backend == StorageBackend::Postgres => verify_url(url),
        _ => {
            vpsd::store::backup::verify(&config.storage.path)
                .unwrap_or_else(|e| panic!("the data file verifies: {e}"))
                .orders
        }
    };
    drop(dir);
    orders
}

/// `vpsd verify URL`: it must succeed, end with `ok`, and print `orders: N`.
fn verify_url(url: &str) -> u64 {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vpsd"))
        .arg("verify")
        .arg(url)
        .env_clear()
        .output()
        .expect("run vpsd verify");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.trim_end().ends_with("ok"),
        "vpsd verify URL: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("orders: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no `orders: N` line: {stdout}"))
}

/// How many bytes the app's data takes on disk: the redb file's length, or
/// the PostgreSQL database's size; for "nothing grows" checks.
pub fn stored_bytes(app: &TestApp) -> u64 {
    match app.database() {
        Some(db) => super::pg::cluster()
            .psql(&db, "SELECT pg_database_size(current_database())")
            .parse()
            .expect("a size in bytes"),
        None => std::fs::metadata(&app.config.storage.path)
            .expect("the data file")
            .len(),
    }
}
