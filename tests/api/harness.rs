//! The backend switch itself (`VPSD_TEST_BACKEND`, support::backend): the
//! suite's apps really run on the backend asked for, each on its own empty
//! store, many at once from the one PostgreSQL cluster, and a stopped app
//! lets go of its store.

use std::time::Duration;

use crate::support::{on_postgres, spawn_app, wait_for, Auth, TestApp};

/// Orders in the app's store, read beside the daemon: with psql from its
/// database, or from the redb store.
fn orders_in_store(app: &TestApp) -> u64 {
    match app.database() {
        Some(db) => crate::support::pg::cluster()
            .psql(&db, "SELECT count(*) FROM orders")
            .parse()
            .expect("a count"),
        None => app
            .redb()
            .expect("a redb store")
            .status_counts()
            .expect("counts")
            .iter()
            .map(|(_, n)| n)
            .sum(),
    }
}

#[test]
fn apps_run_on_the_backend_asked_for_each_on_an_empty_store() {
    let expected = if on_postgres() { "postgres" } else { "redb" };
    let first = spawn_app();
    let second = spawn_app();
    for app in [&first, &second] {
        assert_eq!(app.store.backend(), expected);
        assert_eq!(app.redb().is_some(), !on_postgres());
        assert_eq!(app.database().is_some(), on_postgres());
    }
    if on_postgres() {
        assert_ne!(first.database(), second.database());
    } else {
        assert_ne!(first.config.storage.path, second.config.storage.path);
    }
    first.create_order("alice");
    first.create_order("alice");
    second.create_order("bob");
    // What the API wrote is in this app's store and no other's.
    assert_eq!(orders_in_store(&first), 2);
    assert_eq!(orders_in_store(&second), 1);
    let listed = second.get("/api/v1/internal/orders", Auth::Admin);
    assert_eq!(listed.body["meta"]["total"], 1, "{}", listed.text);
}

/// The api binary runs a test per core at once, some with two apps, all on
/// one cluster: eight apps started together all serve, and each one
/// stopped lets go of its store (no connection left to its database; the
/// redb file opens again), so a long run does not use the cluster up.
#[test]
fn many_apps_at_once_share_the_cluster_and_let_go_when_stopped() {
    let apps: Vec<TestApp> = std::thread::scope(|s| {
        let started: Vec<_> = (0..8).map(|_| s.spawn(spawn_app)).collect();
        started
            .into_iter()
            .map(|h| h.join().expect("an app starts"))
            .collect()
    });
    for (i, app) in apps.iter().enumerate() {
        let id = app.create_order(&format!("user-{i}")).id();
        assert_eq!(app.pay(&id).status, 200);
        assert_eq!(orders_in_store(app), 1);
    }
    if on_postgres() {
        // Each app keeps to the small pool the harness gives it (plus its
        // leadership connection), well inside what the cluster accepts.
        let pg = crate::support::pg::cluster();
        let names: Vec<String> = apps.iter().filter_map(TestApp::database).collect();
        let sql = format!(
            "SELECT count(*) FROM pg_stat_activity WHERE datname IN ('{}')",
            names.join("', '")
        );
        let used: u32 = pg.psql("postgres", &sql).parse().expect("a count");
        let per_app = crate::support::backend::TEST_POOL_SIZE + 1;
        assert!(used <= 8 * per_app, "{used} connections for 8 apps");
        let limit = pg.psql("postgres", "SHOW max_connections");
        assert_eq!(limit, crate::support::pg::MAX_CONNECTIONS.to_string());
    }
    for mut app in apps {
        let config = app.config.clone();
        let database = app.database();
        let dir = app.dir.take();
        drop(app);
        match database {
            Some(db) => {
                let pg = crate::support::pg::cluster();
                let sql = format!("SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}'");
                // A server process ends a moment after its client hangs up.
                let gone = wait_for(Duration::from_secs(10), || {
                    (pg.psql("postgres", &sql) == "0").then_some(())
                });
                assert!(gone.is_some(), "connections left to {db}");
            }
            None => {
                let store = vpsd::store::Store::open(&config.storage.path)
                    .expect("the stopped app's file opens again");
                store.shutdown();
            }
        }
        drop(dir);
    }
}
