//! The `vpsd` command: serve (default), backup, verify, store copy, token, config,
//! completions.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use vpsd::config::{Config, LogFormat, Note, NoteLevel};

mod progress;

#[derive(Parser)]
#[command(name = "vpsd", version, about = "VPS order & provisioning daemon")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Configuration file (default: ./Config.toml if present).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API and run the provisioner (the default).
    Serve,
    /// Print a development token signed with the HS256 secret.
    Token {
        /// The user id (`sub` claim).
        #[arg(long)]
        sub: String,
        /// Lifetime: seconds, or with a unit (90s, 15m, 1h, 1d).
        #[arg(long, default_value = "1h")]
        ttl: String,
    },
    /// Print the effective configuration, secrets masked.
    Config,
    /// Copy the data file to FILE, consistently (the daemon must be stopped;
    /// while it runs use POST /api/v1/internal/backups). Not on PostgreSQL:
    /// back that up with pg_dump.
    Backup {
        /// Where to write the snapshot (must not exist).
        #[arg(long, value_name = "FILE")]
        to: PathBuf,
    },
    /// Check a data file or backup: integrity, every table, every index entry,
    /// counts and history chains. Prints counts and `ok`, or names the problem.
    /// Given a postgres:// URL, checks that database the same way and lists
    /// every problem.
    Verify {
        /// The data file or snapshot to check, or a postgres:// URL.
        file: PathBuf,
    },
    /// Import every order of the v1 order-service's PostgreSQL database into
    /// the configured store (SPEC §16). The v1 database is only read; orders
    /// already imported are skipped; rows that cannot be mapped are listed
    /// with why, and their orders are not imported.
    #[command(name = "import-v1")]
    ImportV1 {
        /// postgres://user:password@host:port/database of the v1 service.
        #[arg(long, value_name = "URL")]
        database_url: String,
        /// Check and count everything, write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Move a store elsewhere (SPEC §15).
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
    /// Print a shell completion script (bash, zsh, fish, ...) to stdout.
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Copy a stopped daemon's data file (or a backup) into an empty
    /// PostgreSQL database, in one transaction; prints what it copied.
    Copy {
        /// The data file or snapshot (only read; a running daemon's file is
        /// refused).
        #[arg(long, value_name = "FILE")]
        from: PathBuf,
        /// postgres://user:password@host:port/database
        #[arg(long, value_name = "URL")]
        to: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // verify, store copy and completions need no configuration: they work
    // on what they are given (a packager runs completions with no config).
    match &cli.command {
        Some(Command::Verify { file }) => return verify(file),
        Some(Command::Store { command }) => return store(command),
        Some(Command::Completions { shell }) => return completions(*shell),
        _ => {}
    }
    let (config, notes) = match Config::load_with_notes(cli.config.as_deref()) {
        Ok(loaded) => loaded,
        Err(e) => return fail(&e.to_string()),
    };
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config, cli.config.clone(), &notes),
        Command::Token { sub, ttl } => {
            let minted = vpsd::parse_ttl(&ttl)
                .map_err(|e| format!("--ttl: {e}"))
                .and_then(|secs| vpsd::mint_dev_token(&config.auth, &sub, secs));
            match minted {
                Ok(token) => {
                    println!("{token}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e),
            }
        }
        Command::Config => {
            // As TOML comments, so the output stays a loadable file.
            for note in &notes {
                println!("# {note}");
            }
            print!("{}", config.masked_toml());
            ExitCode::SUCCESS
        }
        Command::Backup { to } => backup(&config, &to),
        Command::Verify { file } => verify(&file),
        Command::Store { command } => store(&command),
        Command::ImportV1 {
            database_url,
            dry_run,
        } => import_v1(&config, &database_url, dry_run),
        Command::Completions { shell } => completions(shell),
    }
}

/// The completion script for `shell`, from the same definition the binary
/// parses with (the .deb ships these). Written in one piece, so a closed
/// pipe is an error line rather than clap_complete's panic.
fn completions(shell: clap_complete::Shell) -> ExitCode {
    use std::io::Write;
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "vpsd", &mut script);
    match std::io::stdout().write_all(&script) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&format!("cannot write the completion script: {e}")),
    }
}

/// Prints per status what was imported (or would be), then every order not
/// imported with why. Fails only when nothing could be done; orders refused
/// one by one are the operator's to read, the rest is imported.
fn import_v1(config: &Config, url: &str, dry_run: bool) -> ExitCode {
    let report = match progress::shown(|p| vpsd::app::import_v1(config, url, dry_run, p)) {
        Ok(report) => report,
        Err(line) => return fail(&line),
    };
    let verb = if report.dry_run {
        "to import"
    } else {
        "imported"
    };
    for (status, n) in &report.by_status {
        println!("{status}: {n}");
    }
    println!(
        "{verb}: {} orders ({} history rows, {} items, {} tasks)",
        report.imported(),
        report.history_rows,
        report.items,
        report.tasks
    );
    println!("already in vpsd (skipped): {}", report.skipped);
    println!(
        "not imported: {}",
        report.refused.len() + report.orphans.len()
    );
    for (id, why) in &report.refused {
        println!("  order {id}: {why}");
    }
    for orphan in &report.orphans {
        println!(
            "  {} row {}: its order {} does not exist",
            orphan.table, orphan.id, orphan.order_id
        );
    }
    if report.dry_run {
        println!("dry run: nothing written");
    }
    ExitCode::SUCCESS
}

fn backup(config: &Config, to: &std::path::Path) -> ExitCode {
    match progress::shown(|p| vpsd::service::backups::backup_offline(&config.storage, to, p)) {
        Ok(info) => {
            println!("file: {}", info.path.display());
            println!("bytes: {}", info.bytes);
            println!("orders: {}", info.orders);
            ExitCode::SUCCESS
        }
        Err(line) => fail(&line),
    }
}

fn verify(file: &std::path::Path) -> ExitCode {
    use vpsd::service::store_tools::is_database_url;
    if let Some(url) = file.to_str().filter(|s| is_database_url(s)) {
        return verify_database(url);
    }
    match progress::shown(|p| vpsd::service::backups::verify_file(file, p)) {
        Ok(report) => {
            println!("orders: {}", report.orders);
            println!("items: {}", report.items);
            println!("history: {}", report.history);
            println!("tasks: {}", report.tasks);
            println!("ok");
            ExitCode::SUCCESS
        }
        Err(line) => fail(&line),
    }
}

/// `vpsd verify URL`: the counts, then `ok`, or every problem and a
/// failing exit.
fn verify_database(url: &str) -> ExitCode {
    let report = match progress::shown(|p| vpsd::service::store_tools::verify_database(url, p)) {
        Ok(report) => report,
        Err(line) => return fail(&line),
    };
    println!("database: {}", report.database);
    println!("orders: {}", report.orders);
    println!("items: {}", report.items);
    println!("history rows: {}", report.history);
    println!("tasks: {}", report.tasks);
    println!("customer actions: {}", report.actions);
    println!("idempotency keys: {}", report.keys);
    println!("coupons: {}", report.coupons);
    println!("events: {}", report.events);
    println!(
        "deliveries: {} (pending: {})",
        report.deliveries, report.pending
    );
    if report.is_clean() {
        println!("ok");
        return ExitCode::SUCCESS;
    }
    for problem in &report.problems {
        println!("problem: {problem}");
    }
    let found = report.problems.len() as u64 + report.unlisted;
    if report.unlisted > 0 {
        println!("problem: ... and {} more", report.unlisted);
    }
    fail(&format!("verify {}: {found} problem(s)", report.database))
}

fn store(command: &StoreCommand) -> ExitCode {
    let StoreCommand::Copy { from, to } = command;
    match progress::shown(|p| vpsd::service::store_tools::copy_file(from, to, p)) {
        Ok(report) => {
            println!("copied {} into {}", from.display(), report.database);
            println!("orders: {}", report.orders);
            println!("history rows: {}", report.history);
            println!("tasks: {}", report.tasks);
            println!("customer actions: {}", report.actions);
            println!("idempotency keys: {}", report.keys);
            println!("coupons: {}", report.coupons);
            println!("events: {}", report.events);
            println!(
                "deliveries: {} (pending: {})",
                report.deliveries, report.pending
            );
            ExitCode::SUCCESS
        }
        Err(line) => fail(&line),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("vpsd: {message}");
    ExitCode::FAILURE
}

/// Crates that see request bytes: at debug and trace they log headers and
/// hex dumps of what goes over the wire, Authorization included.
const HTTP_CLIENT_CRATES: &[&str] = &[
    "ureq",
    "ureq_proto",
    "rustls",
    "webpki",
    "hyper",
    "hyper_util",
    "hyper_rustls",
    "tokio_rustls",
    "h2",
    "http",
];

/// Whether `target` belongs to one of [`HTTP_CLIENT_CRATES`].
fn is_http_client(target: &str) -> bool {
    HTTP_CLIENT_CRATES.iter().any(|name| {
        target
            .strip_prefix(name)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
    })
}

fn init_logging(config: &Config) {
    use std::io::IsTerminal;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&config.log.level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // A second global filter, so no RUST_LOG directive (however specific)
    // can open the HTTP clients' debug output: tokens never reach a log.
    let cap = tracing_subscriber::filter::filter_fn(|meta| {
        !(is_http_client(meta.target()) && *meta.level() > tracing::Level::INFO)
    });
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(filter).with(cap);
    match config.log.format {
        LogFormat::Json => registry.with(fmt.json()).init(),
        LogFormat::Text => registry.with(fmt).init(),
    }
}

/// Start-up decisions about the configuration, logged once logging is up.
fn log_notes(notes: &[Note]) {
    for note in notes {
        match note.level {
            NoteLevel::Info => {
                tracing::info!(setting = note.key, value = %note.value, why = %note.why, "configuration: {note}")
            }
            NoteLevel::Warn => {
                tracing::warn!(setting = note.key, value = %note.value, why = %note.why, "configuration: {note}")
            }
        }
    }
}

fn serve(config: Config, source: Option<PathBuf>, notes: &[Note]) -> ExitCode {
    init_logging(&config);
    // Blocking work is short (reads, catalog calls): a bounded pool keeps a
    // burst from spawning hundreds of threads.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(64)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start the async runtime: {e}")),
    };
    let result = runtime.block_on(async move {
        let app = vpsd::App::build(config).await?.reload_config_from(source);
        // Only once everything is built: a failed start prints its one
        // error line and nothing else.
        log_notes(notes);
        let stop = shutdown_signal()?;
        app.run(stop).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e.to_string()),
    }
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is
/// called, not when the future is first polled: a SIGTERM that arrives right
/// after "listening" must still mean a graceful stop, not the default kill.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>, vpsd::app::StartFailure> {
    use tokio::signal::unix::{signal, SignalKind};
    let handle = |kind, name| {
        signal(kind).map_err(|source| vpsd::app::StartFailure::Signal {
            signal: name,
            source,
        })
    };
    let mut term = handle(SignalKind::terminate(), "SIGTERM")?;
    let mut int = handle(SignalKind::interrupt(), "SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}
