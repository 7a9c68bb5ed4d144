//! Start-up refusals on PostgreSQL (SPEC §15, issue 24 "Bad input"): an
//! unreachable server, wrong credentials, a database of another
//! application, a schema newer than the binary. Each stops `vpsd serve` with
//! a non-zero exit and one clear line, and writes nothing: no vpsd table in
//! the database, no data file beside the config.

mod support;

use std::path::Path;
use std::sync::Once;
use std::time::Duration;

use serde_json::Value;
use support::process::{serve_until_exit, trouble, Daemon, Exited};
use support::{agent, base_config, hs256_token, now_secs, API_KEY, SECRET};
use vpsd::config::{Config, StorageBackend};

/// Long enough for a start-up that retries its first connection a while.
const EXIT_WITHIN: Duration = Duration::from_secs(60);

fn postgres_config(dir: &Path, url: &str) -> Config {
    let mut config = base_config(dir);
    config.storage.backend = StorageBackend::Postgres;
    config.storage.postgres.url = Some(url.to_string());
    config.storage.postgres.pool_size = 2;
    config
}

/// Runs `vpsd serve` on `url` and expects a refusal: non-zero exit, exactly
/// one line that is not a WARN/INFO log line, starting "vpsd: ", no panic,
/// no data file. Returns that line.
fn refused(url: &str) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = postgres_config(dir.path(), url);
    let Exited { code, stderr } =
        serve_until_exit(&config, dir.path(), EXIT_WITHIN).expect("vpsd refuses to start");
    assert!(
        code.is_some_and(|c| c != 0),
        "exit {code:?}, stderr: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    let errors = error_lines(&stderr);
    assert_eq!(errors.len(), 1, "one error line, got: {stderr}");
    assert!(errors[0].starts_with("vpsd: "), "{stderr}");
    assert!(
        !dir.path().join("vpsd.redb").exists(),
        "no redb data file written on the postgres backend"
    );
    errors[0].to_string()
}

/// The lines of `stderr` that are not JSON log lines at WARN or below:
/// the start-up error itself, and anything else that would read as one.
fn error_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|line| !line.trim().is_empty())
        .filter(|line| {
            let json = serde_json::from_str::<Value>(line).ok();
            let level = json.as_ref().and_then(|j| j["level"].as_str());
            !matches!(level, Some("WARN" | "INFO" | "DEBUG" | "TRACE"))
        })
        .collect()
}

/// Every table outside PostgreSQL's own schemas, with its row count and a
/// hash of its rows, and every column: equal before and after means
/// nothing was written or created.
fn fingerprint(url: &str) -> String {
    support::pg::cluster().psql(
        url,
        "select string_agg(t.table_schema || '.' || t.table_name || ':' || \
           (xpath('/row/c/text()', query_to_xml(format( \
             'select count(*) || ''/'' || md5(coalesce(string_agg(x::text, '','' order by x::text), '''')) as c from %I.%I x', \
             t.table_schema, t.table_name), false, true, '')))[1]::text, E'\\n' \
           order by t.table_schema, t.table_name) \
         || E'\\n' || (select string_agg(c.table_name || '.' || c.column_name || ' ' || c.data_type, E'\\n' \
           order by c.table_name, c.ordinal_position) from information_schema.columns c \
           where c.table_schema not in ('pg_catalog', 'information_schema')) \
         from information_schema.tables t \
         where t.table_schema not in ('pg_catalog', 'information_schema')",
    )
}

fn lower(line: &str) -> String {
    line.to_lowercase()
}

#[test]
fn an_unreachable_server_is_one_line() {
    // A port nothing listens on: bound, read, released.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let line = refused(&format!("postgres://vpsd@127.0.0.1:{port}/vpsd"));
    assert!(
        lower(&line).contains("postgres"),
        "names the backend: {line}"
    );
}

/// The test cluster trusts every local connection; this role alone must
/// give a password (SCRAM), so a wrong one is refused as on a real server.
const PASSWORD_ROLE: &str = "vpsd_with_password";

fn password_role() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let pg = support::pg::cluster();
        pg.psql(
            "postgres",
            &format!(
                "SET password_encryption = 'scram-sha-256'; \
                 CREATE ROLE {PASSWORD_ROLE} LOGIN PASSWORD 'the-right-one'"
            ),
        );
        // pg_hba.conf takes the first matching line: this one goes first.
        let hba = pg.dir().join("data").join("pg_hba.conf");
        let rules = std::fs::read_to_string(&hba).expect("read pg_hba.conf");
        let rule = format!("host all {PASSWORD_ROLE} 127.0.0.1/32 scram-sha-256\n");
        std::fs::write(&hba, format!("{rule}{rules}")).expect("write pg_hba.conf");
        assert_eq!(pg.psql("postgres", "SELECT pg_reload_conf()"), "t");
    });
}

#[test]
fn wrong_credentials_are_one_line_without_the_password() {
    password_role();
    let pg = support::pg::cluster();
    let url = pg.fresh_database();
    let database = url.rsplit('/').next().expect("database name").to_string();
    let wrong = format!(
        "postgres://{PASSWORD_ROLE}:not-the-password@127.0.0.1:{}/{database}",
        pg.port
    );
    let before = fingerprint(&url);
    let line = refused(&wrong);
    let text = lower(&line);
    assert!(
        text.contains("authentication") || text.contains("password"),
        "says the credentials were refused: {line}"
    );
    assert!(
        !line.contains("not-the-password"),
        "the password shown: {line}"
    );
    assert_eq!(fingerprint(&url), before, "nothing written");
}

#[test]
fn a_database_of_another_application_is_refused_and_left_alone() {
    let pg = support::pg::cluster();
    let url = pg.fresh_database();
    // Someone else's shop: tables named like vpsd's, with other columns.
    pg.psql(
        &url,
        "CREATE TABLE users (id serial PRIMARY KEY, email text NOT NULL); \
         CREATE TABLE orders (id serial PRIMARY KEY, user_id int REFERENCES users, total numeric); \
         INSERT INTO users (email) VALUES ('someone@example.com'); \
         INSERT INTO orders (user_id, total) VALUES (1, 42.50)",
    );
    let before = fingerprint(&url);
    let line = refused(&url);
    assert!(
        line.contains("orders") || line.contains("users"),
        "names the tables that are not vpsd's: {line}"
    );
    assert_eq!(
        fingerprint(&url),
        before,
        "nothing written, nothing created"
    );
    assert_eq!(
        pg.psql(
            &url,
            "select string_agg(table_schema || '.' || table_name, ',' order by table_name) \
             from information_schema.tables \
             where table_schema not in ('pg_catalog', 'information_schema')"
        ),
        "public.orders,public.users",
        "no vpsd table created"
    );
}

/// vpsd's schema in `url` with one order in it: a real start, then SIGTERM.
fn a_vpsd_database_with_an_order(url: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let daemon = Daemon::start(&postgres_config(dir.path(), url), dir.path());
    let token = hs256_token(
        SECRET,
        serde_json::json!({"sub": "alice", "exp": now_secs() + 600}),
    );
    let mut created = agent()
        .post(&daemon.url("/api/v1/orders"))
        .header("Authorization", &format!("Bearer {token}"))
        .header("Content-Type", "application/json")
        .send(r#"{"planId":"vps-basic","imageId":"ubuntu-22-04","duration":"MONTHLY"}"#)
        .expect("create an order");
    assert_eq!(
        created.status().as_u16(),
        201,
        "{}",
        created.body_mut().read_to_string().unwrap_or_default()
    );
    let listed = agent()
        .get(&daemon.url("/api/v1/internal/orders"))
        .header("X-API-Key", API_KEY)
        .call()
        .expect("list")
        .body_mut()
        .read_to_string()
        .unwrap_or_default();
    assert!(listed.contains("\"total\":1"), "{listed}");
    let (code, logs) = daemon.terminate_with_logs();
    assert_eq!(code, Some(0), "vpsd stops cleanly: {}", trouble(&logs));
}

#[test]
fn a_schema_newer_than_the_binary_is_one_line_and_left_alone() {
    let pg = support::pg::cluster();
    let url = pg.fresh_database();
    a_vpsd_database_with_an_order(&url);
    // A later vpsd migrated this database; this binary must not touch it.
    let stamped = pg.psql(
        &url,
        "UPDATE vpsd_meta SET value = 999 WHERE key = 'schema_version' RETURNING value",
    );
    assert_eq!(stamped, "999", "vpsd_meta has a schema_version row");
    let before = fingerprint(&url);
    let line = refused(&url);
    assert!(lower(&line).contains("schema"), "says why: {line}");
    assert_eq!(fingerprint(&url), before, "nothing written");
    assert_eq!(
        pg.psql(&url, "select count(*) from orders"),
        "1",
        "the order is still there"
    );
}
