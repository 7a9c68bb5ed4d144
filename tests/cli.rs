//! The `vpsd` binary: token, config, start-up errors, serve and SIGTERM.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_vpsd");

fn write_config(dir: &Path, extra: &str) -> std::path::PathBuf {
    let catalog = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/catalog.toml");
    let text = format!(
        r#"
[server]
bind = "127.0.0.1:0"
[storage]
path = "{data}"
[auth]
jwt_algorithm = "HS256"
jwt_secret = "cli-secret"
internal_api_key = "cli-key"
[catalog]
file = "{catalog}"
{extra}
"#,
        data = dir.join("vpsd.redb").display(),
        catalog = catalog.display(),
    );
    let path = dir.join("vpsd.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs vpsd with a clean environment (no inherited VPSD_* or v1 names).
fn vpsd(args: &[&str], env: &[(&str, &str)], cwd: &Path) -> std::process::Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).current_dir(cwd).env_clear();
    if let Ok(path) = std::env::var("PATH") {
        cmd.env("PATH", path);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run vpsd")
}

#[test]
fn token_prints_only_a_verifiable_token() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let out = vpsd(
        &[
            "token",
            "--sub",
            "alice",
            "--ttl",
            "15m",
            "--config",
            config.to_str().unwrap(),
        ],
        &[],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let token = stdout.trim_end();
    assert_eq!(stdout.lines().count(), 1);
    assert_eq!(token.split('.').count(), 3);
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.set_required_spec_claims(&["exp", "sub"]);
    let data = jsonwebtoken::decode::<serde_json::Value>(
        token,
        &jsonwebtoken::DecodingKey::from_secret(b"cli-secret"),
        &validation,
    )
    .unwrap();
    assert_eq!(data.claims["sub"], "alice");
    let ttl = data.claims["exp"].as_u64().unwrap() - data.claims["iat"].as_u64().unwrap();
    assert_eq!(ttl, 900);
}

#[test]
fn token_refuses_without_hs256() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let out = vpsd(
        &[
            "token",
            "--sub",
            "alice",
            "--config",
            config.to_str().unwrap(),
        ],
        &[("JWT_ALGORITHM", "RS256")],
        dir.path(),
    );
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("HS256"));
}

#[test]
fn config_masks_secrets_and_honours_v1_and_nested_env_names() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let out = vpsd(
        &["config", "--config", config.to_str().unwrap()],
        &[
            ("INTERNAL_API_KEY", "12345"),
            ("DIGITALOCEAN_API_TOKEN", "dop_v1_supersecret"),
            ("PROVISIONING_MAX_ATTEMPTS", "7"),
            ("PORT", "4100"),
            ("VPSD_SERVER__BODY_LIMIT", "2048"),
            ("CATALOG_SERVICE_TIMEOUT_MS", "750"),
        ],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        !text.contains("12345") && !text.contains("supersecret") && !text.contains("cli-secret"),
        "{text}"
    );
    assert!(text.contains("max_attempts = 7"), "{text}");
    assert!(text.contains("bind = \"127.0.0.1:4100\""), "{text}");
    assert!(text.contains("body_limit = 2048"), "{text}");
    assert!(text.contains("timeout_ms = 750"), "{text}");
}

#[test]
fn bad_config_is_one_line_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let cfg = config.to_str().unwrap();
    let cases = [
        (("VPSD_SERVER__BODY_LIMIT", "lots"), "body_limit"),
        (("VPSD_SERVER__COLOUR", "red"), "colour"),
        (("PORT", "http"), "PORT"),
        (
            ("PROVISIONING_POLL_INTERVAL_MS", "soon"),
            "poll_interval_ms",
        ),
        (("VPSD_BACKUP__SCHEDULE", "every day"), "backup.schedule"),
        (("VPSD_CLOUD__PROVIDER", "aws"), "provider"),
    ];
    for (env, key) in cases {
        let out = vpsd(&["config", "--config", cfg], &[env], dir.path());
        assert!(!out.status.success(), "{env:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.contains(key), "{env:?}: {err}");
    }
    let broken = write_config(dir.path(), "[catalog.extra]\nx = 1\n");
    let out = vpsd(
        &["config", "--config", broken.to_str().unwrap()],
        &[],
        dir.path(),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("extra"));
    let out = vpsd(
        &["config", "--config", "/nonexistent/vpsd.toml"],
        &[],
        dir.path(),
    );
    assert!(!out.status.success());
}

#[test]
fn serve_starts_logs_warnings_and_exits_zero_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let mut child = Command::new(BIN)
        .args(["serve", "--config", config.to_str().unwrap()])
        .current_dir(dir.path())
        .env_clear()
        .env("VPSD_LOG__FORMAT", "json")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    let addr = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("vpsd logged its address");
        let json: serde_json::Value = serde_json::from_str(&line).expect("JSON log line");
        lines.push(line.clone());
        if json["fields"]["message"] == "vpsd listening" {
            let text = json["fields"]["addr"].as_str().unwrap().to_string();
            break text
                .trim_start_matches("Some(")
                .trim_end_matches(')')
                .to_string();
        }
    };
    assert!(lines
        .iter()
        .any(|l| l.contains("WARN") && l.contains("HS256")));
    assert!(lines
        .iter()
        .any(|l| l.contains("WARN") && l.contains("sandbox")));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let health = agent
        .get(format!("http://{addr}/api/v1/health"))
        .call()
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);

    unsafe_kill(child.id(), 15);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let rest: Vec<String> = rx.try_iter().collect();
    assert!(!rest
        .iter()
        .any(|l| l.contains("cli-secret") || l.contains("cli-key")));
}

#[test]
fn start_up_errors_are_one_line_and_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    std::fs::write(dir.path().join("vpsd.redb"), vec![0x5a; 8192]).unwrap();
    let out = vpsd(
        &["serve", "--config", config.to_str().unwrap()],
        &[],
        dir.path(),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err.trim_end().lines().last().unwrap_or("");
    assert!(
        last.starts_with("vpsd: ") && last.contains("vpsd.redb"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

fn unsafe_kill(pid: u32, signal: i32) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success());
}
