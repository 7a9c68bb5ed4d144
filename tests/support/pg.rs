//! A throwaway PostgreSQL cluster for the tests (SPEC §15): Debian's
//! `postgresql` binaries, run as the `postgres` user when the tests run as
//! root (it refuses to run as root), in a temporary directory on a free
//! port, listening on 127.0.0.1 only. One cluster per test binary; each test
//! takes a fresh database from it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// Connections the cluster accepts (see `PgCluster::start`).
pub const MAX_CONNECTIONS: u32 = 300;

pub struct PgCluster {
    dir: PathBuf,
    bin: PathBuf,
    pub port: u16,
    next_db: AtomicUsize,
}

/// The binary's one cluster, started on first use.
pub fn cluster() -> &'static PgCluster {
    static CLUSTER: OnceLock<PgCluster> = OnceLock::new();
    CLUSTER.get_or_init(PgCluster::start)
}

/// Where `initdb` and `pg_ctl` are: `pg_config --bindir`, else the newest
/// `/usr/lib/postgresql/*/bin`.
fn bin_dir() -> PathBuf {
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").exists() {
            return dir;
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    found.retain(|d| d.join("initdb").exists());
    found.sort();
    found
        .pop()
        .expect("PostgreSQL binaries (Debian's postgresql package; .ci/run installs it)")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Runs a PostgreSQL server program, as `postgres` when we are root.
fn run_pg(bin: &Path, program: &str, args: &[&str]) -> Output {
    let exe = bin.join(program);
    let mut cmd = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(&exe);
        c
    } else {
        Command::new(&exe)
    };
    let out = cmd.args(args).output().expect("run a PostgreSQL program");
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

impl PgCluster {
    fn start() -> PgCluster {
        let bin = bin_dir();
        let dir = tempfile::tempdir().expect("temp dir");
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres"])
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(status.success(), "chown the cluster directory to postgres");
        }
        let data = dir.path().join("data");
        let data_s = data.to_string_lossy().to_string();
        run_pg(
            &bin,
            "initdb",
            &[
                "-D",
                &data_s,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
            ],
        );
        let port = free_port();
        // The API suite runs a test per core at once, some with two apps,
        // each with its own pool and a leadership connection: Debian's 100
        // would run out on a machine with many cores.
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c max_connections={MAX_CONNECTIONS}",
            dir.path().display()
        );
        let log = dir.path().join("log").to_string_lossy().to_string();
        run_pg(
            &bin,
            "pg_ctl",
            &["-D", &data_s, "-l", &log, "-w", "-o", &options, "start"],
        );
        // A static is never dropped: a watchdog stops the cluster and removes
        // its directory once this test binary has exited, however it ends.
        let dir = dir.keep();
        stop_after_exit(&bin, &dir, &data_s);
        PgCluster {
            dir,
            bin,
            port,
            next_db: AtomicUsize::new(0),
        }
    }

    /// A new empty database; its connection URL.
    pub fn fresh_database(&self) -> String {
        let n = self.next_db.fetch_add(1, Ordering::SeqCst);
        let name = format!("t{}_{n}", std::process::id());
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        self.url(&name)
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Runs `sql` in `database` with psql; its unaligned output.
    pub fn psql(&self, database: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .args(["-d", database, "-q", "-v", "ON_ERROR_STOP=1", "-Atc", sql])
            .output()
            .expect("psql");
        assert!(
            out.status.success(),
            "psql {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// The cluster's directory (its log is `log` there).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// A detached shell that waits for this process to end, then stops the
/// cluster and removes its directory.
fn stop_after_exit(bin: &Path, dir: &Path, data: &str) {
    let pg_ctl = bin.join("pg_ctl");
    let as_postgres = if is_root() {
        "runuser -u postgres -- "
    } else {
        ""
    };
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; {as_postgres}{pg_ctl} -D '{data}' -m immediate stop >/dev/null 2>&1; rm -rf '{dir}'",
        pid = std::process::id(),
        pg_ctl = pg_ctl.display(),
        dir = dir.display(),
    );
    let spawned = Command::new("sh")
        .args(["-c", &script])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    assert!(spawned.is_ok(), "start the cluster's watchdog");
}
