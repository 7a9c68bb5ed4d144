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
jwt_secret = "cli-secret-of-at-least-thirty-two-bytes"
internal_api_key = "cli-key-0123456789"
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
        &jsonwebtoken::DecodingKey::from_secret(b"cli-secret-of-at-least-thirty-two-bytes"),
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
            ("INTERNAL_API_KEY", "1234567890123456"),
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
    // Every line up to the exit, not only those the reader thread has
    // passed on yet: it ends (and the channel closes) at the pipe's end.
    let rest: Vec<String> =
        std::iter::from_fn(|| rx.recv_timeout(Duration::from_secs(10)).ok()).collect();
    assert!(!rest
        .iter()
        .any(|l| l.contains("cli-secret") || l.contains("cli-key")));
}

/// Starts `vpsd serve` with JSON logs and `env`; returns the child, the lines
/// up to "vpsd listening" and the channel of later lines.
fn serve_json(
    config: &Path,
    env: &[(&str, &str)],
    cwd: &Path,
) -> (
    std::process::Child,
    Vec<serde_json::Value>,
    std::sync::mpsc::Receiver<String>,
) {
    let mut child = Command::new(BIN)
        .args(["serve", "--config", config.to_str().unwrap()])
        .current_dir(cwd)
        .env_clear()
        .env("VPSD_LOG__FORMAT", "json")
        .envs(env.iter().copied())
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
    loop {
        let line = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("vpsd did not start: {lines:?}");
            }
        };
        let Ok(json) = serde_json::from_str::<serde_json::Value>(&line) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("not a JSON log line: {line} (after {lines:?})");
        };
        let listening = json["fields"]["message"] == "vpsd listening";
        lines.push(json);
        if listening {
            return (child, lines, rx);
        }
    }
}

#[test]
fn a_v1_poll_interval_below_a_second_is_rounded_up_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    // v1's own tests run with 100 ms.
    let (mut child, lines, _rx) = serve_json(
        &config,
        &[("PROVISIONING_POLL_INTERVAL_MS", "100")],
        dir.path(),
    );
    let warning = lines
        .iter()
        .find(|l| l["fields"]["setting"] == "provisioning.poll_interval_ms")
        .unwrap_or_else(|| panic!("no note about the poll interval: {lines:?}"));
    assert_eq!(warning["level"], "WARN");
    assert_eq!(warning["fields"]["value"], "1000");
    unsafe_kill(child.id(), 15);
    assert_eq!(child.wait().unwrap().code(), Some(0));

    let out = vpsd(
        &["config", "--config", config.to_str().unwrap()],
        &[("PROVISIONING_POLL_INTERVAL_MS", "100")],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("poll_interval_ms = 1000"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("# provisioning.poll_interval_ms = 1000")),
        "{text}"
    );
}

#[test]
fn weak_secrets_plain_http_to_digitalocean_and_a_sandbox_with_a_token_stop_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let cfg = config.to_str().unwrap();
    let cases: [(&[(&str, &str)], &str); 5] = [
        (&[("JWT_SECRET", "x")], "auth.jwt_secret"),
        (
            &[("JWT_SECRET", "thirty-one-bytes-is-one-too-few")],
            "auth.jwt_secret",
        ),
        (&[("INTERNAL_API_KEY", "k")], "auth.internal_api_key"),
        (
            &[
                ("DIGITALOCEAN_API_TOKEN", "dop_v1_token"),
                (
                    "VPSD_CLOUD__DIGITALOCEAN__API_URL",
                    "http://api.example.com",
                ),
            ],
            "cloud.digitalocean.api_url",
        ),
        (
            &[
                ("DIGITALOCEAN_API_TOKEN", "dop_v1_token"),
                ("VPSD_CLOUD__PROVIDER", "sandbox"),
            ],
            "cloud.provider",
        ),
    ];
    for (env, key) in cases {
        for command in ["config", "serve"] {
            let out = vpsd(&[command, "--config", cfg], env, dir.path());
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{command} {env:?} started: {err}");
            assert_eq!(err.trim_end().lines().count(), 1, "{err}");
            assert!(err.contains(key), "{env:?}: {err}");
            assert!(!err.contains("dop_v1_token"), "{err}");
        }
    }
    // The sandbox refusal is about a sandbox written down as such: in the file too.
    let sandbox = write_config(dir.path(), "[cloud]\nprovider = \"sandbox\"\n");
    let out = vpsd(
        &["config", "--config", sandbox.to_str().unwrap()],
        &[("DO_ACCESS_TOKEN", "dop_v1_token")],
        dir.path(),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cloud.provider"));
    // Loopback http (a local fake or proxy) and https are fine; 32 bytes are enough.
    for url in [
        "http://127.0.0.1:9",
        "http://localhost:9",
        "http://[::1]:9",
        "https://api.digitalocean.com",
    ] {
        let out = vpsd(
            &["config", "--config", cfg],
            &[
                ("VPSD_CLOUD__DIGITALOCEAN__API_URL", url),
                ("JWT_SECRET", "exactly-thirty-two-bytes-long!!!"),
            ],
            dir.path(),
        );
        assert!(
            out.status.success(),
            "{url}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn config_masks_credentials_inside_urls() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let out = vpsd(
        &["config", "--config", config.to_str().unwrap()],
        &[
            (
                "CATALOG_SERVICE_URL",
                "https://svc-user:hunter2secret@catalog.internal:3002/base",
            ),
            (
                "VPSD_CLOUD__DIGITALOCEAN__API_URL",
                "https://proxy-user:proxypass@api.digitalocean.com",
            ),
        ],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    for secret in ["hunter2secret", "svc-user", "proxypass", "proxy-user"] {
        assert!(!text.contains(secret), "{secret} shown: {text}");
    }
    assert!(
        text.contains("url = \"https://***@catalog.internal:3002/base\""),
        "{text}"
    );
    assert!(
        text.contains("api_url = \"https://***@api.digitalocean.com\""),
        "{text}"
    );
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

/// SPEC §12 "Secrets in URLs": a webhook URL's query (a receiver's token) is
/// masked like its credentials in `vpsd config`, and plain http to a host
/// other than loopback stops start-up in one line naming the key.
#[test]
fn webhook_urls_are_masked_and_must_be_https_unless_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = |url: &str| {
        format!(
            "[[webhooks.endpoints]]\nurl = \"{url}\"\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n"
        )
    };
    let https = write_config(
        dir.path(),
        &endpoint("https://hookuser:hookpw@billing.example/hooks?token=hook-t0ken-s3cret"),
    );
    let out = vpsd(
        &["config", "--config", https.to_str().unwrap()],
        &[],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    for secret in ["hook-t0ken-s3cret", "hookpw", "hookuser", "MfKQ9r8"] {
        assert!(!text.contains(secret), "{secret} shown: {text}");
    }
    assert!(
        text.contains("url = \"https://***@billing.example/hooks?***\""),
        "{text}"
    );

    let plain = write_config(
        dir.path(),
        &endpoint("http://billing.example/hooks?token=hook-t0ken-s3cret"),
    );
    for command in ["config", "serve"] {
        let out = vpsd(
            &[command, "--config", plain.to_str().unwrap()],
            &[],
            dir.path(),
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{command} started: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.contains("webhooks.endpoints.url"), "{err}");
        assert!(err.contains("https"), "{err}");
        assert!(!err.contains("hook-t0ken-s3cret"), "{err}");
    }
    // Loopback receivers (a local relay, every test's receiver) stay fine.
    for url in [
        "http://127.0.0.1:9/hook",
        "http://localhost:9/hook",
        "http://[::1]:9/hook",
    ] {
        let ok = write_config(dir.path(), &endpoint(url));
        let out = vpsd(
            &["config", "--config", ok.to_str().unwrap()],
            &[],
            dir.path(),
        );
        assert!(
            out.status.success(),
            "{url}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// SPEC §12 "Start-up tightens": a data file or backup folder that someone
/// made readable by others is 0600 / 0700 once vpsd has started, with a
/// warning naming it; a private one is left alone, without a warning.
#[test]
fn start_up_tightens_a_data_file_and_backup_dir_readable_by_others() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let backups = dir.path().join("backups");
    let config = write_config(
        dir.path(),
        &format!("[backup]\ndir = \"{}\"\n", backups.display()),
    );
    let data = dir.path().join("vpsd.redb");
    std::fs::write(&data, b"").unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::create_dir(&backups).unwrap();
    std::fs::set_permissions(&backups, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;

    let (mut child, lines, _rx) = serve_json(&config, &[], dir.path());
    unsafe_kill(child.id(), 15);
    child.wait().unwrap();
    assert_eq!(mode(&data), 0o600);
    assert_eq!(mode(&backups), 0o700);
    let warned = |what: &str, path: &Path| {
        lines.iter().any(|l| {
            l["level"] == "WARN"
                && l["fields"]["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with(what))
                && l["fields"]["path"] == path.display().to_string()
        })
    };
    assert!(warned("data file", &data), "{lines:?}");
    assert!(warned("backup directory", &backups), "{lines:?}");

    let (mut child, lines, _rx) = serve_json(&config, &[], dir.path());
    unsafe_kill(child.id(), 15);
    child.wait().unwrap();
    assert!(
        !lines
            .iter()
            .any(|l| l.to_string().contains("readable by others")),
        "{lines:?}"
    );
}

/// SPEC §13: a bad account list stops start-up with one line naming the
/// key, and `vpsd config` never shows an account's token.
#[test]
fn bad_cloud_accounts_stop_start_up_with_one_line_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "dop_v1_from_a_file\n").unwrap();
    let account = |body: &str| {
        format!("[cloud]\nprovider = \"digitalocean\"\n[[cloud.digitalocean.accounts]]\n{body}\n")
    };
    let two = |a: &str, b: &str| {
        format!(
            "[cloud]\nprovider = \"digitalocean\"\n[[cloud.digitalocean.accounts]]\n{a}\n[[cloud.digitalocean.accounts]]\n{b}\n"
        )
    };
    let cases = [
        (
            two(
                "name = \"east\"\ntoken = \"t1\"",
                "name = \"east\"\ntoken = \"t2\"",
            ),
            "cloud.digitalocean.accounts[1].name",
        ),
        (
            account("name = \"East_1\"\ntoken = \"t1\""),
            "cloud.digitalocean.accounts[0].name",
        ),
        (
            account(&"name = \"NAME\"\ntoken = \"t1\"".replace("NAME", &"a".repeat(33))),
            "cloud.digitalocean.accounts[0].name",
        ),
        (account("name = \"east\""), "cloud.digitalocean.accounts[0]"),
        (
            account(&format!(
                "name = \"east\"\ntoken = \"t1\"\ntoken_file = \"{}\"",
                token_file.display()
            )),
            "cloud.digitalocean.accounts[0]",
        ),
        (
            account("name = \"east\"\ntoken_file = \"/nonexistent/do-token\""),
            "cloud.digitalocean.accounts[0].token_file",
        ),
    ];
    for (extra, key) in cases {
        let config = write_config(dir.path(), &extra);
        let out = vpsd(
            &["serve", "--config", config.to_str().unwrap()],
            &[],
            dir.path(),
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{extra}: started");
        assert_eq!(err.trim_end().lines().count(), 1, "{extra}: {err}");
        assert!(err.contains(key), "{extra}: expected {key}: {err}");
    }
    let good = account(&format!(
        "name = \"east\"\ntoken_file = \"{}\"\n[[cloud.digitalocean.accounts]]\nname = \"west\"\ntoken = \"dop_v1_inline_secret\"",
        token_file.display()
    ));
    let config = write_config(dir.path(), &good);
    let out = vpsd(
        &["config", "--config", config.to_str().unwrap()],
        &[],
        dir.path(),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("name = \"west\""), "{text}");
    assert!(
        !text.contains("dop_v1_inline_secret") && !text.contains("dop_v1_from_a_file"),
        "{text}"
    );
}
