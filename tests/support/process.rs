//! The real `vpsd` binary as a child process, for tests that kill it.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::Duration;

use vpsd::Config;

pub struct Daemon {
    pub child: Child,
    pub addr: SocketAddr,
    /// Log lines (JSON) the daemon wrote after start-up.
    pub logs: Receiver<String>,
    /// The log lines written up to and including "vpsd listening".
    pub startup: Vec<String>,
}

/// Writes `config` to `dir/vpsd.toml` for `--config`.
pub fn write_config(config: &Config, dir: &Path) -> std::path::PathBuf {
    let path = dir.join("vpsd.toml");
    std::fs::write(&path, toml::to_string(config).expect("config as TOML")).expect("write config");
    path
}

impl Daemon {
    /// Starts `vpsd serve` and waits for its "listening" line.
    pub fn start(config: &Config, dir: &Path) -> Daemon {
        Daemon::try_start(config, dir).expect("daemon starts")
    }

    pub fn try_start(config: &Config, dir: &Path) -> Result<Daemon, String> {
        let path = write_config(config, dir);
        let path = path.to_str().ok_or("config path is not UTF-8")?;
        Daemon::try_start_with(&["serve", "--config", path], dir, &[])
    }

    /// Starts the binary with `args` in `dir`, with only `env` (and JSON
    /// logs) in its environment, and waits for its "listening" line.
    pub fn try_start_with(
        args: &[&str],
        dir: &Path,
        env: &[(&str, &str)],
    ) -> Result<Daemon, String> {
        // VPSD_BIN runs another build through the same harness (A/B benchmarks).
        let binary = std::env::var_os("VPSD_BIN").map_or_else(
            || env!("CARGO_BIN_EXE_vpsd").into(),
            std::path::PathBuf::from,
        );
        let mut child = Command::new(binary)
            .args(args)
            .current_dir(dir)
            .env_clear()
            .env("VPSD_LOG__FORMAT", "json")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut seen = Vec::new();
        loop {
            let line = match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(line) => line,
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("vpsd did not start: {}", seen.join("\n")));
                }
            };
            if let Ok(json) = serde_json::from_str::<serde_json::Value>(&line) {
                if json["fields"]["message"] == "vpsd listening" {
                    let text = json["fields"]["addr"].as_str().unwrap_or_default();
                    let text = text.trim_start_matches("Some(").trim_end_matches(')');
                    let addr = text.parse().map_err(|e| format!("{text}: {e}"))?;
                    seen.push(line);
                    return Ok(Daemon {
                        child,
                        addr,
                        logs: rx,
                        startup: seen,
                    });
                }
            }
            seen.push(line);
        }
    }

    /// Reads log lines until one has `message`, at most `within`; every
    /// line read is kept in `lines`.
    pub fn read_logs_until(
        &self,
        lines: &mut Vec<String>,
        message: &str,
        within: Duration,
    ) -> bool {
        let deadline = std::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let Ok(line) = self.logs.recv_timeout(left) else {
                return false;
            };
            let found = serde_json::from_str::<serde_json::Value>(&line)
                .is_ok_and(|j| j["fields"]["message"] == message);
            lines.push(line);
            if found {
                return true;
            }
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, wait, and return the exit code with every log line written
    /// after start-up.
    pub fn terminate_with_logs(mut self) -> (Option<i32>, Vec<String>) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let code = self.child.wait().ok().and_then(|s| s.code());
        let mut lines = Vec::new();
        while let Ok(line) = self.logs.recv_timeout(Duration::from_secs(2)) {
            lines.push(line);
        }
        (code, lines)
    }

    /// SIGTERM and wait; returns the exit code.
    pub fn terminate(mut self) -> Option<i32> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        self.child.wait().ok().and_then(|s| s.code())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How a `vpsd` run that was expected to stop on its own ended.
#[derive(Debug)]
pub struct Exited {
    pub code: Option<i32>,
    /// Everything it wrote to stderr (JSON log lines and any plain line).
    pub stderr: String,
}

/// The binary [`Daemon`] runs (`VPSD_BIN` overrides it, as there).
pub fn binary_path() -> std::path::PathBuf {
    std::env::var_os("VPSD_BIN").map_or_else(
        || env!("CARGO_BIN_EXE_vpsd").into(),
        std::path::PathBuf::from,
    )
}

/// Runs `vpsd serve` on `config` (written to `dir/vpsd.toml`) with JSON logs
/// and waits for it to exit on its own, at most `within`. A daemon still
/// running then is killed and reported as an error with what it wrote: a
/// start-up that should have been refused must fail the test, never hang it.
pub fn serve_until_exit(config: &Config, dir: &Path, within: Duration) -> Result<Exited, String> {
    let path = write_config(config, dir);
    let mut child = Command::new(binary_path())
        .args(["serve", "--config"])
        .arg(&path)
        .current_dir(dir)
        .env_clear()
        .env("VPSD_LOG__FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut stderr = child.stderr.take().ok_or("no stderr")?;
    // Read on a thread: a child blocked on a full pipe would never exit.
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    let deadline = std::time::Instant::now() + within;
    let status = loop {
        match child.try_wait().map_err(|e| e.to_string())? {
            Some(status) => break Some(status),
            None if std::time::Instant::now() >= deadline => break None,
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let text = reader.join().unwrap_or_default();
    match status {
        Some(status) => Ok(Exited {
            code: status.code(),
            stderr: text,
        }),
        None => Err(format!("vpsd still running after {within:?}: {text}")),
    }
}

/// `GET /api/v1/health` of a daemon at `addr`: the `data` object, or Null
/// when it does not answer (a killed instance).
pub fn health(agent: &ureq::Agent, addr: SocketAddr) -> serde_json::Value {
    let url = format!("http://{addr}/api/v1/health");
    let Ok(mut response) = agent.get(&url).call() else {
        return serde_json::Value::Null;
    };
    let text = response.body_mut().read_to_string().unwrap_or_default();
    serde_json::from_str::<serde_json::Value>(&text)
        .map(|v| v["data"].clone())
        .unwrap_or_default()
}

/// Which of two instances on one database runs the background work (SPEC
/// §15), once exactly one says so; never both at any look.
pub fn leader_of(agent: &ureq::Agent, daemons: [&Daemon; 2]) -> usize {
    let mut last = Vec::new();
    let found = super::wait_for(Duration::from_secs(30), || {
        last = daemons.iter().map(|d| health(agent, d.addr)).collect();
        let leads: Vec<Option<bool>> = last.iter().map(|h| h["backgroundWork"].as_bool()).collect();
        assert_ne!(leads, [Some(true), Some(true)], "both run background work");
        match leads[..] {
            [Some(true), Some(false)] => Some(0),
            [Some(false), Some(true)] => Some(1),
            _ => None,
        }
    });
    found.unwrap_or_else(|| panic!("no one instance runs the background work; /health: {last:?}"))
}

/// The reconciler sweeps an instance ran: its sweep histogram's count.
pub fn reconciler_sweeps(agent: &ureq::Agent, addr: SocketAddr) -> u64 {
    let mut r = agent
        .get(format!("http://{addr}/metrics"))
        .header("X-API-Key", super::API_KEY)
        .call()
        .expect("GET /metrics");
    assert_eq!(r.status().as_u16(), 200, "GET /metrics");
    let text = r.body_mut().read_to_string().unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("vpsd_reconciler_sweep_duration_seconds_count "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// The lines of a daemon's log worth showing when a test fails: anything
/// that is not a JSON log line at INFO or below (warnings, errors, a panic
/// and its backtrace).
pub fn trouble(lines: &[String]) -> String {
    lines
        .iter()
        .filter(|line| {
            let json = serde_json::from_str::<serde_json::Value>(line).ok();
            let level = json.as_ref().and_then(|j| j["level"].as_str());
            !matches!(level, Some("INFO" | "DEBUG" | "TRACE"))
        })
        .cloned()
        .collect::<Vec<_>>()
        .join("\n")
}

/// The number after `name: ` on its own line of a command's `stdout`
/// (the counts `store copy`, `verify` and `import-v1` print).
pub fn count(stdout: &str, name: &str) -> u64 {
    let prefix = format!("{name}: ");
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no `{name}: N` line in:\n{stdout}"))
}
