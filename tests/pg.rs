//! The PostgreSQL test cluster itself (SPEC §15): the backend's tests stand
//! on it, so it is checked on its own first.

mod support;

#[test]
fn a_throwaway_cluster_gives_each_test_its_own_database() {
    let pg = support::pg::cluster();
    let first = pg.fresh_database();
    let second = pg.fresh_database();
    assert_ne!(first, second);
    let name = |url: &str| url.rsplit('/').next().unwrap_or_default().to_string();
    let (a, b) = (name(&first), name(&second));
    assert_eq!(
        pg.psql(
            &a,
            "CREATE TABLE t (x int); INSERT INTO t VALUES (1); SELECT count(*) FROM t"
        ),
        "1"
    );
    assert_eq!(
        pg.psql(&b, "SELECT count(*) FROM pg_tables WHERE tablename = 't'"),
        "0",
        "databases are separate"
    );
    assert!(first.starts_with(&format!("postgres://postgres@127.0.0.1:{}/", pg.port)));
    assert_eq!(
        pg.psql(&a, "SHOW fsync"),
        "on",
        "default durability, as the benchmarks need"
    );
}
