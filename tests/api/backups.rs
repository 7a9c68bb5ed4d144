//! File backups of the redb data file: online snapshots consistent to one
//! commit, their names and modes, scheduled runs and retention, restore and
//! `vpsd verify`, the offline `vpsd backup`. PostgreSQL has its own tools
//! (`pg_dump`, replicas; SPEC §15), so these run on redb only, but the
//! route's gate and its answer on either backend.

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{skip_on_postgres, spawn_app, spawn_app_with, wait_for, Auth, TestApp};

const BIN: &str = env!("CARGO_BIN_EXE_vpsd");

fn backup(app: &TestApp) -> crate::support::Resp {
    app.post_empty("/api/v1/internal/backups", Auth::Admin)
}

fn snapshot_ids(path: &str) -> HashSet<String> {
    let store = vpsd::store::Store::open(std::path::Path::new(path)).expect("open snapshot");
    let page = store
        .list_orders(&vpsd::domain::ListQuery {
            expires_before: None,
            user: None,
            status: None,
            page: 1,
            limit: 1_000_000,
        })
        .expect("list");
    let ids = page.items.iter().map(|r| r.order.id.to_string()).collect();
    store.shutdown();
    ids
}

#[test]
fn online_backup_under_concurrent_writes_is_consistent_to_one_commit() {
    if skip_on_postgres("an online snapshot of the redb file") {
        return;
    }
    let app = spawn_app();
    for _ in 0..20 {
        app.create_order("seed");
    }
    // (sent, answered, id) of every order created while the backup runs.
    let log = std::sync::Mutex::new(Vec::new());
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (backup_sent, backup_answered, file) = std::thread::scope(|s| {
        for w in 0..4 {
            let (app, log, stop) = (&app, &log, &stop);
            s.spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let sent = Instant::now();
                    let r = app.post_json(
                        "/api/v1/orders",
                        Auth::User(&format!("writer-{w}")),
                        &json!({"planId": "vps-basic", "imageId": "ubuntu-22-04", "duration": "MONTHLY"}),
                    );
                    assert_eq!(r.status, 201);
                    log.lock().unwrap().push((sent, Instant::now(), r.id()));
                }
            });
        }
        // Until a write sent after `since` was answered (checked below).
        let a_write_since = |since: Option<Instant>| {
            wait_for(Duration::from_secs(20), || {
                let log = log.lock().unwrap();
                log.iter()
                    .any(|(sent, _, _)| since.is_none_or(|t| *sent > t))
                    .then_some(())
            })
        };
        a_write_since(None);
        let sent = Instant::now();
        let r = backup(&app);
        let answered = Instant::now();
        a_write_since(Some(answered));
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(r.status, 201, "{}", r.text);
        (
            sent,
            answered,
            r.data()["file"].as_str().unwrap().to_string(),
        )
    });
    let in_backup = snapshot_ids(&file);
    let log = log.into_inner().unwrap();
    let before: Vec<_> = log
        .iter()
        .filter(|(_, answered, _)| *answered < backup_sent)
        .collect();
    let after: Vec<_> = log
        .iter()
        .filter(|(sent, _, _)| *sent > backup_answered)
        .collect();
    assert!(
        !before.is_empty() && !after.is_empty(),
        "writes ran on both sides of the backup"
    );
    for (_, _, id) in &before {
        assert!(
            in_backup.contains(id),
            "order {id} was committed before the backup but is missing"
        );
    }
    for (_, _, id) in &after {
        assert!(
            !in_backup.contains(id),
            "order {id} was created after the backup but is in it"
        );
    }
    let report =
        vpsd::store::backup::verify(std::path::Path::new(&file)).expect("snapshot verifies");
    assert_eq!(report.orders as usize, in_backup.len());
}

#[test]
fn backup_response_and_file_permissions() {
    if skip_on_postgres("the snapshot file's name and mode, the data file's mode") {
        return;
    }
    let app = spawn_app();
    app.create_order("alice");
    let r = backup(&app);
    assert_eq!(r.status, 201, "{}", r.text);
    let d = r.data();
    let file = d["file"].as_str().unwrap();
    assert!(file.starts_with('/'), "absolute: {file}");
    let name = std::path::Path::new(file)
        .file_name()
        .unwrap()
        .to_str()
        .unwrap();
    assert!(
        name.starts_with("vpsd-")
            && name.ends_with("Z.redb")
            && name.len() == "vpsd-20240115T100000Z.redb".len(),
        "{name}"
    );
    assert_eq!(d["orders"], 1);
    assert_eq!(
        d["bytes"].as_u64().unwrap(),
        std::fs::metadata(file).unwrap().len()
    );
    assert_eq!(d["createdAt"].as_str().unwrap().len(), 24);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(std::path::Path::new(file)), 0o600);
    assert_eq!(mode(&app.config.storage.path), 0o600);
    // Two in one second get distinct names.
    let second = backup(&app);
    assert_ne!(second.data()["file"], d["file"]);
}

/// The route is the operator's on either backend; on PostgreSQL it says the
/// database's own tools make backups (SPEC §15), having written nothing.
#[test]
fn the_backup_route_needs_the_api_key_and_answers_for_its_backend() {
    let app = spawn_app();
    app.create_order("alice");
    assert_eq!(
        app.post_empty("/api/v1/internal/backups", Auth::None)
            .code(),
        "API_KEY_MISSING"
    );
    let r = backup(&app);
    if crate::support::on_postgres() {
        assert_eq!(
            (r.status, r.code()),
            (409, "NOT_SUPPORTED_ON_BACKEND"),
            "{}",
            r.text
        );
        let folder = &app.config.backup.dir;
        let written = std::fs::read_dir(folder).map_or(0, |d| d.count());
        assert_eq!(written, 0, "nothing in {}", folder.display());
    } else {
        assert_eq!(r.status, 201, "{}", r.text);
    }
}

/// A backup folder that cannot be created is the operator's problem, not an
/// unavailable data file: 500, with the path kept out of the answer.
#[test]
fn backup_into_an_impossible_folder_is_an_internal_error_not_storage() {
    if skip_on_postgres("file backups; PostgreSQL refuses before any folder") {
        return;
    }
    // A path under a regular file fails for root too, unlike permission bits.
    let blocker = tempfile::NamedTempFile::new().unwrap();
    let folder = blocker.path().join("backups");
    let app = spawn_app_with(|c| c.backup.dir = folder.clone());
    app.create_order("alice");
    let r = backup(&app);
    assert_eq!(r.status, 500, "{}", r.text);
    assert_eq!(r.code(), "INTERNAL_SERVER_ERROR");
    assert!(!r.text.contains("backups"), "{}", r.text);
    let m = app.get("/metrics", Auth::Admin).text;
    assert!(
        m.lines()
            .any(|l| l == "vpsd_backups_total{result=\"failure\"} 1"),
        "{m}"
    );
    // The data file itself is fine: orders still work.
    app.create_order("alice");
}

#[test]
fn scheduled_backups_keep_the_newest_files() {
    if skip_on_postgres("scheduled snapshots of the redb file") {
        return;
    }
    let app = spawn_app_with(|c| {
        c.backup.schedule = Some("* * * * * *".into());
        c.backup.keep = 2;
    });
    app.create_order("alice");
    let dir = app.config.backup.dir.clone();
    let count = || vpsd::store::backup::list_snapshots(&dir).unwrap().len();
    wait_for(Duration::from_secs(15), || (count() >= 2).then_some(()))
        .expect("two scheduled backups");
    // Let a few more runs happen: retention holds the folder at `keep`.
    let metrics_done = wait_for(Duration::from_secs(15), || {
        let m = app.get("/metrics", Auth::Admin).text;
        let runs = m
            .lines()
            .find(|l| l.starts_with("vpsd_backups_total{result=\"success\"}"))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        (runs >= 4).then_some(())
    });
    assert!(metrics_done.is_some(), "at least four scheduled runs");
    // A run counts its snapshot before it prunes the oldest, so right after
    // a count the folder may hold keep + 1 for a moment.
    wait_for(Duration::from_secs(15), || (count() == 2).then_some(()))
        .unwrap_or_else(|| panic!("retention never held the folder at 2: {}", count()));
}

#[test]
fn backup_wipe_restore_verify_restart_gives_the_same_data() {
    if skip_on_postgres("restores the redb file from its snapshot") {
        return;
    }
    let app = spawn_app();
    let a = app.create_order("alice").id();
    app.pay(&a);
    app.wait_for_status(&a, &["ACTIVE"], Duration::from_secs(20));
    let b = app.create_order("bob").id();
    let before_a = app.admin_order(&a).body.clone();
    let before_b = app.admin_order(&b).body.clone();
    let file = backup(&app).data()["file"].as_str().unwrap().to_string();

    // Disaster: the daemon stops and the data file is lost.
    let data = app.config.storage.path.clone();
    let config = app.config.clone();
    let mut app = app;
    let dir = app.dir.take();
    drop(app);
    std::fs::remove_file(&data).unwrap();

    // Restore: copy the backup over the data file, verify, start.
    std::fs::copy(&file, &data).unwrap();
    let out = std::process::Command::new(BIN)
        .arg("verify")
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains("orders: 2") && stdout.trim_end().ends_with("ok"),
        "{stdout}"
    );
    let app = crate::support::start(config, dir);
    assert_eq!(app.admin_order(&a).body, before_a);
    assert_eq!(app.admin_order(&b).body, before_b);
}

#[test]
fn verify_names_a_broken_index_and_a_truncated_file() {
    if skip_on_postgres("redb table surgery and a truncated file") {
        return;
    }
    let app = spawn_app();
    for user in ["alice", "bob", "carol"] {
        app.create_order(user);
    }
    let path = app.config.storage.path.clone();
    let mut app = app;
    let dir = app.dir.take();
    drop(app);
    let run = |p: &std::path::Path| {
        std::process::Command::new(BIN)
            .arg("verify")
            .arg(p)
            .output()
            .unwrap()
    };
    let clean = run(&path);
    assert!(
        clean.status.success(),
        "{}",
        String::from_utf8_lossy(&clean.stderr)
    );
    let text = String::from_utf8(clean.stdout).unwrap();
    assert_eq!(text, "orders: 3\nitems: 6\nhistory: 3\ntasks: 0\nok\n");

    // Point bob's index entry somewhere else.
    let copy = dir.as_ref().unwrap().path().join("broken.redb");
    std::fs::copy(&path, &copy).unwrap();
    {
        let db = redb::Database::create(&copy).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut index = txn.open_table(vpsd::store::tables::BY_USER).unwrap();
            index
                .insert(("bob", 2u64), uuid::Uuid::new_v4().as_u128())
                .unwrap();
        }
        txn.commit().unwrap();
    }
    let broken = run(&copy);
    assert_eq!(broken.status.code(), Some(1));
    let err = String::from_utf8_lossy(&broken.stderr);
    assert!(err.contains("orders_by_user"), "{err}");

    let truncated = dir.as_ref().unwrap().path().join("truncated.redb");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).unwrap();
    let out = run(&truncated);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.starts_with("vpsd: verify"), "{err}");
}

#[test]
fn offline_backup_refuses_while_the_daemon_runs() {
    if skip_on_postgres("vpsd backup of the locked redb file") {
        return;
    }
    let app = spawn_app();
    app.create_order("alice");
    let dir = tempfile::tempdir().unwrap();
    let config_path = crate::support::process::write_config(&app.config, dir.path());
    let backup_to_copy = || {
        std::process::Command::new(BIN)
            .args(["backup", "--to"])
            .arg(dir.path().join("copy.redb"))
            .arg("--config")
            .arg(&config_path)
            .env_clear()
            .output()
            .unwrap()
    };
    let out = backup_to_copy();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("locked"));
    assert!(!dir.path().join("copy.redb").exists());

    let mut app = app;
    let _data_dir = app.dir.take();
    drop(app);
    let out = backup_to_copy();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = vpsd::store::backup::verify(&dir.path().join("copy.redb")).unwrap();
    assert_eq!(report.orders, 1);
}

/// SPEC §15: `/health` names the backend and whether this instance runs the
/// background work; the one process on an embedded file always does.
#[test]
fn health_names_the_embedded_backend_and_its_background_work() {
    if skip_on_postgres("names the embedded backend; pg_operations.rs checks PostgreSQL's") {
        return;
    }
    let app = spawn_app();
    let r = app.get("/api/v1/health", Auth::None);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.data()["backend"], "redb");
    assert_eq!(r.data()["backgroundWork"], true);
    // Every earlier field is still there, unchanged.
    for (field, value) in [("status", "ok"), ("storage", "ok"), ("cloud", "sandbox")] {
        assert_eq!(r.data()[field], value, "{}", r.text);
    }
    let doc = app.get("/api/v1/openapi.json", Auth::None).body;
    let health = &doc["components"]["schemas"]["Health"];
    for field in ["backend", "backgroundWork"] {
        assert!(
            health["required"]
                .as_array()
                .unwrap()
                .contains(&json!(field)),
            "Health requires {field}"
        );
    }
    // The refusal a PostgreSQL store gives (tests/api/pg_operations.rs) is
    // documented where it can happen.
    let codes = &doc["components"]["schemas"]["ErrorEnvelope"]["properties"]["error"]["properties"]
        ["code"]["enum"];
    assert!(codes
        .as_array()
        .unwrap()
        .contains(&json!("NOT_SUPPORTED_ON_BACKEND")));
    let refused = &doc["paths"]["/api/v1/internal/backups"]["post"]["responses"]["409"];
    assert!(
        refused.is_object(),
        "POST /internal/backups documents its 409"
    );
}
