//! SPEC §15's operator surface on PostgreSQL: `/health` names the backend and
//! whether this instance runs the background work; backups are PostgreSQL's
//! own, so the online route, `vpsd backup` and a configured schedule refuse
//! and write nothing. The real binary, on a fresh database of the test
//! cluster (`support::pg`). The console's Backups page is in tests/console.rs,
//! beside the cookie-keeping client it needs.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use vpsd::config::{Config, StorageBackend};

use super::operations::{assert_valid, response_schema, validator};
use crate::support::process::{write_config, Daemon};
use crate::support::{agent, base_config, pg, wait_for, API_KEY};

const BIN: &str = env!("CARGO_BIN_EXE_vpsd");

/// The tests' config on a fresh database; its URL.
fn on_postgres(dir: &Path) -> (Config, String) {
    let url = pg::cluster().fresh_database();
    let mut config = base_config(dir);
    config.storage.backend = StorageBackend::Postgres;
    config.storage.postgres.url = Some(url.clone());
    (config, url)
}

/// Status and JSON body of a body-less request, with the API key when `key`.
fn call(daemon: &Daemon, method: &str, path: &str, key: bool) -> (u16, Value) {
    let mut request = ureq::http::Request::builder()
        .method(method)
        .uri(daemon.url(path));
    if key {
        request = request.header("X-API-Key", API_KEY);
    }
    let mut response = agent()
        .run(request.body(()).expect("request"))
        .expect("HTTP round trip");
    let text = response.body_mut().read_to_string().unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (response.status().as_u16(), body)
}

/// The files in the backup folder (none when it was never made).
fn backup_files(config: &Config) -> usize {
    std::fs::read_dir(&config.backup.dir).map_or(0, |d| d.count())
}

#[test]
fn health_names_postgres_and_the_only_instance_runs_the_background_work() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = on_postgres(dir.path());
    let daemon = Daemon::start(&config, dir.path());
    // Leadership is taken on its own connection, maybe just after listening.
    let within = Duration::from_secs(config.storage.postgres.takeover_seconds + 10);
    let (status, body) = wait_for(within, || {
        let (status, body) = call(&daemon, "GET", "/api/v1/health", false);
        (body["data"]["backgroundWork"] == true).then_some((status, body))
    })
    .expect("a single instance takes the background work");
    assert_eq!(status, 200, "{body}");
    let data = &body["data"];
    assert_eq!(data["backend"], "postgres", "{body}");
    assert_eq!(
        (&data["status"], &data["storage"]),
        (&"ok".into(), &"ok".into())
    );
    let (_, doc) = call(&daemon, "GET", "/api/v1/openapi.json", false);
    let schema = response_schema(&doc, "get", "/api/v1/health", 200);
    assert_valid(&validator(&doc, &schema), &body, "health on PostgreSQL");
}

#[test]
fn the_online_backup_is_refused_as_postgresql_s_own_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = on_postgres(dir.path());
    let daemon = Daemon::start(&config, dir.path());
    let (status, body) = call(&daemon, "POST", "/api/v1/internal/backups", true);
    assert_eq!(status, 409, "{body}");
    let error = &body["error"];
    assert_eq!(error["code"], "NOT_SUPPORTED_ON_BACKEND", "{body}");
    assert_eq!(error["details"]["backend"], "postgres", "{body}");
    let message = error["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("PostgreSQL") && message.contains("pg_dump"),
        "{message}"
    );
    let (_, doc) = call(&daemon, "GET", "/api/v1/openapi.json", false);
    let schema = response_schema(&doc, "post", "/api/v1/internal/backups", 409);
    assert_valid(&validator(&doc, &schema), &body, "the refusal");
    assert_eq!(backup_files(&config), 0);
    // Asked of the wrong tool, nothing failed: no failed backup is counted.
    let (_, metrics) = call(&daemon, "GET", "/metrics", true);
    let metrics = metrics.as_str().unwrap_or_default().to_string();
    let failed = metrics
        .lines()
        .find(|l| l.starts_with(r#"vpsd_backups_total{result="failure"}"#));
    assert!(failed.is_none_or(|l| l.ends_with(" 0")), "{failed:?}");
    // The key is still checked first.
    let (status, body) = call(&daemon, "POST", "/api/v1/internal/backups", false);
    assert_eq!(
        (status, &body["error"]["code"]),
        (401, &"API_KEY_MISSING".into())
    );
}

/// `backup.schedule` on PostgreSQL: one warning, then nothing at all (no
/// error every tick, no file).
#[test]
fn a_backup_schedule_on_postgres_is_one_warning_and_no_files() {
    let dir = tempfile::tempdir().unwrap();
    let (mut config, _) = on_postgres(dir.path());
    config.backup.schedule = Some("* * * * * *".into());
    let daemon = Daemon::start(&config, dir.path());
    let ignored = |line: &String| line.contains("backup.schedule is ignored");
    let mut lines = daemon.startup.clone();
    // Said at start-up, or at the latest on the first tick (a second).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !lines.iter().any(ignored) {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = daemon
            .logs
            .recv_timeout(left)
            .expect("the schedule warning");
        lines.push(line);
    }
    // What must not happen is an absence, so it is watched for a fixed
    // window: three more ticks of the every-second schedule.
    let window = Instant::now() + Duration::from_millis(3500);
    while let Ok(line) = daemon
        .logs
        .recv_timeout(window.saturating_duration_since(Instant::now()))
    {
        lines.push(line);
    }
    let logged: Vec<Value> = lines
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let warnings: Vec<&Value> = logged
        .iter()
        .filter(|l| {
            l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("backup.schedule is ignored"))
        })
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert_eq!(warnings[0]["level"], "WARN");
    assert!(
        warnings[0].to_string().contains("pg_dump"),
        "{}",
        warnings[0]
    );
    let errors: Vec<&Value> = logged.iter().filter(|l| l["level"] == "ERROR").collect();
    assert!(errors.is_empty(), "{errors:#?}");
    assert_eq!(backup_files(&config), 0);
}

#[test]
fn vpsd_backup_on_postgres_is_one_line_a_failure_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (config, url) = on_postgres(dir.path());
    let config_path = write_config(&config, dir.path());
    let to = dir.path().join("copy.redb");
    let out = Command::new(BIN)
        .args(["backup", "--to"])
        .arg(&to)
        .arg("--config")
        .arg(&config_path)
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].starts_with("vpsd: backups on the postgres backend are PostgreSQL")
            && lines[0].contains("pg_dump"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
    assert!(!to.exists(), "no snapshot");
    assert!(!config.storage.path.exists(), "no data file either");
    let tables = "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'";
    assert_eq!(
        pg::cluster().psql(&url, tables),
        "0",
        "the database untouched"
    );
}
