//! `vpsd import-v1` (SPEC §16): 100,000 v1 orders, each with two items and
//! two history rows, imported by the real binary into a fresh redb file and
//! into a fresh PostgreSQL database, three times each; the v1 database is
//! built once (the import only reads it).

use std::process::Command;
use std::time::Instant;

use super::support;

const ORDERS: usize = 100_000;

pub fn bench_import() {
    println!("\n## import-v1 (SPEC §16): {ORDERS} v1 orders with 2 items and 2 history rows each, by `vpsd import-v1`: into redb | into PostgreSQL");
    let built = Instant::now();
    let v1 = support::v1::bulk(ORDERS);
    println!(
        "  v1 database built in {:.1} s",
        built.elapsed().as_secs_f64()
    );
    let (mut redb, mut pg, mut dry) = (Vec::new(), Vec::new(), Vec::new());
    for run in 1..=3 {
        let checking = import_once(&v1, false, true);
        let into_redb = import_once(&v1, false, false);
        let into_pg = import_once(&v1, true, false);
        println!("  run {run}: redb {into_redb:.0} orders/s | PostgreSQL {into_pg:.0} orders/s | --dry-run (the first pass alone, redb) {checking:.0} orders/s");
        redb.push(into_redb);
        pg.push(into_pg);
        dry.push(checking);
    }
    let (redb, pg) = (median(redb), median(pg));
    println!("  median --dry-run: {:.0} orders/s", median(dry));
    println!(
        "  median: redb {redb:.0} orders/s ({:.0} rows/s) | PostgreSQL {pg:.0} orders/s ({:.0} rows/s); rows = order + 2 items + 2 history rows",
        redb * 5.0,
        pg * 5.0
    );
}

/// Orders per second of one whole import (start-up, both passes, close),
/// or of its first pass alone (`--dry-run`).
fn import_once(v1: &str, into_postgres: bool, dry_run: bool) -> f64 {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = support::base_config(dir.path());
    config.storage.backend = vpsd::config::StorageBackend::Redb;
    if into_postgres {
        config.storage.backend = vpsd::config::StorageBackend::Postgres;
        config.storage.postgres.url = Some(support::pg::cluster().fresh_database());
    }
    let file = support::process::write_config(&config, dir.path());
    let began = Instant::now();
    let out = Command::new(support::process::binary_path())
        .args(["import-v1", "--config"])
        .arg(&file)
        .args(["--database-url", v1])
        .args(dry_run.then_some("--dry-run"))
        .output()
        .expect("run import-v1");
    let elapsed = began.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "import-v1: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let verb = if dry_run { "to import" } else { "imported" };
    assert!(
        stdout.contains(&format!("{verb}: {ORDERS} orders")),
        "{stdout}"
    );
    ORDERS as f64 / elapsed
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
