//! Orders, history and tasks survive a restart; the data file is exclusive;
//! a newer schema, in a file or a database, is refused.

use crate::support::{on_postgres, skip_on_postgres, spawn_app, try_start, Auth};

#[test]
fn data_survives_a_restart() {
    let app = spawn_app();
    let id = app.create_order("alice").id();
    app.pay(&id);
    let other = app.create_order("alice").id();
    let before = app.admin_order(&id).body.clone();

    let app = app.restart();
    let after = app.admin_order(&id);
    assert_eq!(after.status, 200);
    // Paying wakes the provisioner, which may move the order on (PROVISIONING,
    // ACTIVE) before or after the restart: the rows written before it must
    // come back unchanged, and history only grows.
    let rows_before = before["data"]["statusHistory"].as_array().unwrap();
    let rows_after = after.data()["statusHistory"].as_array().unwrap();
    assert!(rows_before.len() >= 2, "created and paid: {rows_before:?}");
    assert_eq!(&rows_after[..rows_before.len()], &rows_before[..]);
    assert_eq!(after.data()["pricing"], before["data"]["pricing"]);
    let list = app.get("/api/v1/orders", Auth::User("alice"));
    assert_eq!(list.body["meta"]["total"], 2);
    assert_eq!(list.data()[0]["id"], other.as_str());
    // New orders keep sorting after the old ones.
    let newest = app.create_order("alice").id();
    let list = app.get("/api/v1/orders", Auth::User("alice"));
    assert_eq!(list.data()[0]["id"], newest.as_str());
}

#[test]
fn a_data_file_in_use_is_refused() {
    if skip_on_postgres("the redb file's lock; PostgreSQL takes several instances by design") {
        return;
    }
    let app = spawn_app();
    let err = try_start(app.config.clone(), None)
        .err()
        .expect("second open refused");
    assert!(err.contains("locked"), "{err}");
}

#[test]
fn a_newer_schema_is_refused() {
    if on_postgres() {
        a_newer_schema_in_the_database_is_refused();
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vpsd.redb");
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut meta = txn.open_table(vpsd::store::tables::META).unwrap();
            meta.insert(vpsd::store::tables::META_SCHEMA_VERSION, 99u64)
                .unwrap();
        }
        txn.commit().unwrap();
    }
    let mut config = crate::support::base_config(dir.path());
    config.storage.path = path;
    let err = try_start(config, None).err().expect("refused");
    assert!(err.contains("schema version 99"), "{err}");
}

/// The same refusal on PostgreSQL: a database whose `vpsd_meta` names a
/// schema newer than this binary's stops start-up with one line, and the
/// start that was refused changed nothing.
fn a_newer_schema_in_the_database_is_refused() {
    let mut app = spawn_app();
    app.create_order("alice");
    let db = app.database().expect("a PostgreSQL database");
    let config = app.config.clone();
    let dir = app.dir.take();
    drop(app);
    let pg = crate::support::pg::cluster();
    let updated = pg.psql(
        &db,
        "UPDATE vpsd_meta SET value = 99 WHERE key = 'schema_version' RETURNING key",
    );
    assert_eq!(
        updated, "schema_version",
        "vpsd_meta keeps the schema version"
    );
    let err = try_start(config, dir).err().expect("refused");
    assert!(err.contains("schema version 99"), "{err}");
    assert!(!err.contains('\n'), "one line: {err}");
    assert_eq!(pg.psql(&db, "SELECT count(*) FROM orders"), "1");
    assert_eq!(
        pg.psql(
            &db,
            "SELECT value FROM vpsd_meta WHERE key = 'schema_version'"
        ),
        "99",
        "left as found"
    );
}
