//! The only module that knows redb. Reads run on any thread against a snapshot;
//! every change goes through the single writer thread ([`writer`]), which batches
//! queued operations into one durable transaction (group commit). The store
//! persists; the domain decides (see [`writer`] for how the write path splits).

pub(crate) mod apply;
pub mod backup;
pub mod codec;
mod commit;
pub mod contract;
#[cfg(test)]
mod contract_tests;
pub mod idempotency;
mod migrate;
pub mod outbox;
mod persist;
pub mod pg;
pub mod read;
mod redb_txn;
pub mod repair;
pub mod tables;
mod txn;
pub mod views;
pub mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable};

use crate::domain::error::{AppError, Rejection};
use crate::domain::lifecycle::{Change, Command};
use crate::domain::task::ProvisioningTask;
use crate::domain::Actor;
pub use repair::QuickRepair;
pub use writer::Writer;

pub use crate::domain::coupon::CouponClaim;
pub use crate::domain::replay::Replay;
pub use crate::domain::OrderRecord;

/// The storage layer failed; the operation changed nothing.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The data file cannot be written or read right now (disk full, read-only,
    /// I/O error). Maps to 503 STORAGE_UNAVAILABLE.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// A record or index does not decode or point where it should. Maps to 500.
    #[error("data file inconsistent: {0}")]
    Corrupt(String),
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> AppError {
        match e {
            StoreError::Unavailable(why) => AppError::StorageUnavailable(why),
            StoreError::Corrupt(why) => AppError::Internal(why),
        }
    }
}

/// What the service, the provisioner and the webhook senders hold: a backend
/// behind the storage contract, never a particular one.
pub type StoreHandle = Arc<dyn contract::Storage>;

/// How far a long command is (`vpsd store copy`, `verify`, `backup`,
/// `import-v1`): the step, how much of it is done, of how much. Only the
/// terminal's progress bar listens; nothing depends on it.
pub type Progress<'a> = &'a dyn Fn(&'static str, u64, u64);

/// For the callers that show no progress (the API, the tests).
pub fn no_progress(_step: &'static str, _done: u64, _total: u64) {}

impl From<Store> for StoreHandle {
    fn from(store: Store) -> StoreHandle {
        Arc::new(store)
    }
}

/// The outcome of one operation inside a committed batch.
pub type OpResult = Result<OrderRecord, Rejection>;

/// What the first request under an idempotency key produced, replayed for the
/// key's lifetime.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IdempotencyRecord {
    /// SHA-256 of method, path and canonical body.
    pub fingerprint: [u8; 32],
    pub outcome: Replay,
    pub expires_at: i64,
}

/// Store this operation's outcome under an idempotency key, in its transaction
/// (only when the domain keeps it: see [`crate::domain::replay::kept_outcome`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyWrite {
    pub scope: String,
    pub key: String,
    pub fingerprint: [u8; 32],
    pub expires_at: i64,
}

/// One write, applied atomically with its history rows. Decisions are the
/// domain's ([`crate::domain::lifecycle`] and its neighbours); the writer reads
/// what they need from the database (coupon counters, the stored order and
/// task), asks, writes the answer, and assigns sequence numbers.
pub enum WriteOp {
    /// A new order (`lifecycle::create`); `seq` is assigned by the writer.
    Create {
        change: Box<Change>,
        coupon: Option<CouponClaim>,
        idempotency: Option<IdempotencyWrite>,
    },
    /// A command decided on the stored record inside the transaction.
    Apply {
        order_id: uuid::Uuid,
        command: Command,
        actor: Actor,
        /// When set, the order must belong to this user (else NotOwner).
        owner: Option<String>,
        idempotency: Option<IdempotencyWrite>,
    },
    /// The provisioner's write: the new task state and the system commands it
    /// implies, in order (e.g. start and success in one sweep). Refused with
    /// StaleTask unless the stored task's revision still equals `task.revision`.
    SaveTask {
        task: Box<ProvisioningTask>,
        commands: Vec<Command>,
    },
    /// An order brought over from another system whole (`vpsd import-v1`,
    /// SPEC §16): its status, every history row and its task as they are,
    /// announced to nobody and counting no coupon. Refused with
    /// `AlreadyStored` when the id is taken, so a rerun or a second
    /// importer never overwrites; `seq` is assigned by the writer.
    Import { change: Box<Change> },
}

/// Housekeeping writes that touch no order.
pub enum Maintenance {
    /// A response produced before any change (e.g. INVALID_PLAN) stored under its key.
    StoreResponse {
        scope: String,
        key: String,
        record: Box<IdempotencyRecord>,
    },
    /// Deletes idempotency keys that expired at or before `now`; returns how many.
    SweepIdempotency { now: i64 },
    /// The same for one caller's keys only (at its key limit).
    SweepIdempotencyScope { scope: String, now: i64 },
    /// Webhook attempts' results; returns how many were still current.
    RecordAttempts(Vec<outbox::AttemptRecord>),
    /// Queues a delivery again; returns 0 when there is no such delivery.
    ReplayDelivery { id: uuid::Uuid, now: i64 },
    /// Deletes deliveries delivered before `before` (retention).
    PruneDelivered { before: i64 },
    /// Fails pending deliveries to endpoints no longer configured.
    FailUnrouted { now: i64 },
}

/// What every decision is taken under: the expiry policy, and where events go;
/// and how each commit is made (`storage.quick_repair`, see [`begin_write`]).
#[derive(Debug, Clone, Default)]
pub struct Rules {
    pub policy: crate::domain::expiry::Policy,
    pub outbox: crate::domain::webhook::Outbox,
    pub quick_repair: QuickRepair,
}

/// A handle to the open data file: cheap to clone, shared by readers and the writer.
#[derive(Clone)]
pub struct Store {
    db: Arc<DbSlot>,
    writer: Writer,
    path: PathBuf,
    /// Bumped by the writer after each commit that queued webhook deliveries.
    events: tokio::sync::watch::Receiver<u64>,
    views: Arc<views::ViewCache>,
}

/// The open database, replaceable. After an I/O failure (disk full, I/O
/// error) redb refuses every further use of that handle, so the writer
/// reopens the file once writes can succeed again; until then every request
/// gets 503 STORAGE_UNAVAILABLE and nothing is written.
pub(crate) struct DbSlot {
    current: std::sync::RwLock<Option<Arc<Database>>>,
    path: PathBuf,
    cache_bytes: usize,
}

impl DbSlot {
    pub(crate) fn get(&self) -> Result<Arc<Database>, StoreError> {
        let current = self
            .current
            .read()
            .map_err(|_| StoreError::Unavailable("database handle lock poisoned".into()))?;
        current.clone().ok_or_else(|| {
            StoreError::Unavailable("the data file is being reopened after an I/O error".into())
        })
    }

    /// Closes the failed handle (waiting briefly for readers to let go of it)
    /// and opens the file again; redb repairs it on open.
    pub(crate) fn reopen(&self) -> Result<(), StoreError> {
        let old = match self.current.write() {
            Ok(mut slot) => slot.take(),
            Err(_) => {
                return Err(StoreError::Unavailable(
                    "database handle lock poisoned".into(),
                ))
            }
        };
        if let Some(old) = old {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            let mut old = old;
            loop {
                match Arc::try_unwrap(old) {
                    Ok(db) => {
                        drop(db);
                        break;
                    }
                    Err(still_shared) if std::time::Instant::now() < deadline => {
                        old = still_shared;
                        std::thread::sleep(std::time::Duration::from_millis(5));
                    }
                    Err(still_shared) => {
                        // A long reader (a backup) holds it: keep it, try later.
                        if let Ok(mut slot) = self.current.write() {
                            *slot = Some(still_shared);
                        }
                        return Err(StoreError::Unavailable(
                            "the data file is busy; reopening later".into(),
                        ));
                    }
                }
            }
        }
        let db = open_database(&self.path, self.cache_bytes)
            .map_err(|e| StoreError::Unavailable(e.0))?;
        tracing::warn!(path = %self.path.display(), "data file reopened after an I/O error");
        if let Ok(mut slot) = self.current.write() {
            *slot = Some(Arc::new(db));
        }
        Ok(())
    }
}

pub use crate::config::DEFAULT_CACHE_MB;

/// Opening the data file failed; the text is the one line printed at start-up.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct OpenError(pub String);

impl Store {
    /// Opens (or creates) the data file with the default page cache.
    pub fn open(path: &Path) -> Result<Store, OpenError> {
        Store::open_with_cache(path, (DEFAULT_CACHE_MB << 20) as usize)
    }

    /// Opens (or creates) the data file, checks its schema version, creates every
    /// table, and starts the writer thread.
    pub fn open_with_cache(path: &Path, cache_bytes: usize) -> Result<Store, OpenError> {
        Store::open_with(path, cache_bytes, Rules::default())
    }

    /// Opens (or creates) the data file, brings it up to this build's schema
    /// and to the expiry policy (see [`migrate`]), and starts the writer
    /// thread, which decides every change under `rules`.
    pub fn open_with(path: &Path, cache_bytes: usize, rules: Rules) -> Result<Store, OpenError> {
        let db = open_database(path, cache_bytes)?;
        init_schema(&db, path, &rules)?;
        let db = Arc::new(DbSlot {
            current: std::sync::RwLock::new(Some(Arc::new(db))),
            path: path.to_path_buf(),
            cache_bytes,
        });
        let (signal, events) = tokio::sync::watch::channel(0);
        let views = Arc::new(views::ViewCache::default());
        let writer = Writer::start(db.clone(), Arc::new(rules), signal, views.clone());
        Ok(Store {
            db,
            writer,
            path: path.to_path_buf(),
            events,
            views,
        })
    }

    /// Renderings of single orders, dropped by the writer when they change.
    pub fn views(&self) -> &views::ViewCache {
        &self.views
    }

    /// Changes whenever a commit queued webhook deliveries.
    pub fn queued_events(&self) -> tokio::sync::watch::Receiver<u64> {
        self.events.clone()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The current database handle (readers take one per query).
    pub fn database(&self) -> Result<Arc<Database>, StoreError> {
        self.db.get()
    }

    pub fn writer(&self) -> &Writer {
        &self.writer
    }

    /// Applies one operation through the group-commit writer.
    pub async fn write(&self, op: WriteOp) -> Result<OpResult, StoreError> {
        self.writer.submit(op).await
    }

    /// The same, for callers on a blocking thread (provisioner).
    pub fn write_blocking(&self, op: WriteOp) -> Result<OpResult, StoreError> {
        self.writer.submit_blocking(op)
    }

    /// Whether a crash now would make the next start walk the whole file:
    /// the last commit did not record redb's allocator state.
    pub fn full_repair_if_crashed(&self) -> bool {
        self.writer.full_repair_if_crashed()
    }

    /// Stops the writer after the queued operations and waits for it.
    pub fn shutdown(&self) {
        self.writer.shutdown();
    }
}

fn describe_open_error(path: &Path, err: redb::DatabaseError) -> OpenError {
    let shown = path.display();
    let text = match err {
        redb::DatabaseError::DatabaseAlreadyOpen => {
            format!("data file {shown} is locked: another vpsd (or tool) has it open")
        }
        redb::DatabaseError::UpgradeRequired(v) => {
            format!("data file {shown} uses redb file format {v}, which this vpsd cannot open")
        }
        redb::DatabaseError::Storage(redb::StorageError::Io(io)) => {
            format!("cannot open data file {shown}: {io}")
        }
        other => format!("data file {shown} is unreadable or corrupt: {other}"),
    };
    OpenError(text)
}

/// Creates the file with owner-only permissions before redb touches it, so the
/// orders are never readable by other local users, even for a moment.
fn open_database(path: &Path, cache_bytes: usize) -> Result<Database, OpenError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_private_dir(parent).map_err(|e| {
            OpenError(format!(
                "cannot create data directory {}: {e}",
                parent.display()
            ))
        })?;
    }
    if path.exists() {
        tighten(path, 0o600, "data file");
    } else {
        create_private_file(path)
            .map_err(|e| OpenError(format!("cannot create data file {}: {e}", path.display())))?;
    }
    // redb may panic on a file that was altered behind its back (its own docs say
    // so); a corrupt file must be one clear line, not a panic trace.
    let opened = quietly(|| Database::builder().set_cache_size(cache_bytes).create(path));
    match opened {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(err)) => Err(describe_open_error(path, err)),
        Err(_) => Err(OpenError(format!(
            "data file {} is corrupt and cannot be opened",
            path.display()
        ))),
    }
}

/// Opens an existing data file for an offline tool (`vpsd backup`): never
/// creates one, and fails clearly while a daemon holds it.
pub fn open_offline(path: &Path) -> Result<Database, OpenError> {
    if !path.is_file() {
        return Err(OpenError(format!("no data file at {}", path.display())));
    }
    match quietly(|| Database::builder().open(path)) {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(redb::DatabaseError::DatabaseAlreadyOpen)) => Err(OpenError(format!(
            "data file {} is locked: a running vpsd has it open; stop it first (POST /api/v1/internal/backups backs up while it runs)",
            path.display()
        ))),
        Ok(Err(err)) => Err(describe_open_error(path, err)),
        Err(_) => Err(OpenError(format!(
            "data file {} is corrupt and cannot be opened",
            path.display()
        ))),
    }
}

/// Runs `f`, turning a panic inside it into `Err` without the panic message
/// reaching stderr. For redb calls on files from outside (open, repair,
/// integrity check). Only this thread's panic is silenced: the hook is wrapped
/// once and consults a thread-local flag, so other threads' panics still print.
pub(crate) fn quietly<T>(f: impl FnOnce() -> T) -> std::thread::Result<T> {
    thread_local! {
        static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    static WRAP: std::sync::Once = std::sync::Once::new();
    WRAP.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(|q| q.get()) {
                previous(info);
            }
        }));
    });
    QUIET.with(|q| q.set(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    QUIET.with(|q| q.set(false));
    result
}

/// Creates `dir` and any missing parents owner-only (0700); directories that
/// already exist keep their mode (the operator chose it).
pub(crate) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Takes group and other access away from an existing file or directory
/// (SPEC §12): one that someone made readable by others (a `cp`, a restore,
/// a umask) would expose every order. Said once as a warning naming it; a
/// failure to change it is a warning too, not a reason to stay down.
pub(crate) fn tighten(path: &Path, mode: u32, what: &str) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let Ok(meta) = std::fs::metadata(path) else {
            return;
        };
        let was = meta.permissions().mode() & 0o777;
        if was & 0o077 == 0 {
            return;
        }
        match std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)) {
            Ok(()) => tracing::warn!(
                path = %path.display(),
                was = %format!("{was:04o}"),
                now = %format!("{mode:04o}"),
                "{what} was readable by others; permissions tightened"
            ),
            Err(e) => tracing::warn!(
                path = %path.display(),
                was = %format!("{was:04o}"),
                error = %e,
                "{what} is readable by others and its permissions cannot be changed"
            ),
        }
    }
    #[cfg(not(unix))]
    let _ = (path, mode, what);
}

pub(crate) fn create_private_file(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

/// Refuses files written by a newer vpsd, stamps new files, and creates every
/// table so readers never meet a missing one.
fn init_schema(db: &Database, path: &Path, rules: &Rules) -> Result<(), OpenError> {
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        OpenError(format!("data file {}: {what}: {e}", path.display()))
    };
    // Nothing else writes yet: the writer is as quiet as it gets.
    let txn = begin_write(db, rules.quick_repair.records_state(true))
        .map_err(|e| fail("cannot begin a transaction", &e))?;
    let stored = {
        let mut meta = txn
            .open_table(tables::META)
            .map_err(|e| fail("cannot open the meta table", &e))?;
        let stored = meta
            .get(tables::META_SCHEMA_VERSION)
            .map_err(|e| fail("cannot read the schema version", &e))?
            .map(|v| v.value());
        if let Some(v) = stored.filter(|v| *v > tables::SCHEMA_VERSION) {
            return Err(OpenError(format!(
                "data file {} has schema version {v}, newer than this vpsd supports ({}); upgrade vpsd",
                path.display(),
                tables::SCHEMA_VERSION
            )));
        }
        meta.insert(tables::META_SCHEMA_VERSION, tables::SCHEMA_VERSION)
            .map_err(|e| fail("cannot write the schema version", &e))?;
        // A new file has nothing to migrate.
        stored.unwrap_or(tables::SCHEMA_VERSION)
    };
    create_tables(&txn).map_err(|e| fail("cannot create tables", &e))?;
    migrate::run(&txn, stored, &rules.policy, &fail)?;
    txn.commit().map_err(|e| fail("cannot commit", &e))?;
    Ok(())
}

/// Every write transaction on the data file starts here. With
/// `records_state` the commit also records redb's allocator state and commits
/// in two phases (one more fsync), so the open after a crash loads that state
/// instead of walking every page of the file (about 1 s per GB). redb deletes
/// the record at every commit and writes it again only under the flag, so it
/// is all or nothing: the commit a crash follows must have had it (see
/// [`repair`]).
pub(crate) fn begin_write(
    db: &Database,
    records_state: bool,
) -> Result<redb::WriteTransaction, redb::TransactionError> {
    let mut txn = db.begin_write()?;
    txn.set_quick_repair(records_state);
    Ok(txn)
}

fn create_tables(txn: &redb::WriteTransaction) -> Result<(), redb::TableError> {
    struct Create<'a>(&'a redb::WriteTransaction);
    impl tables::TableVisitor for Create<'_> {
        type Error = redb::TableError;
        fn visit<K: redb::Key + 'static, V: redb::Value + 'static>(
            &mut self,
            table: redb::TableDefinition<'static, K, V>,
        ) -> Result<(), redb::TableError> {
            self.0.open_table(table).map(drop)
        }
    }
    tables::for_each(&mut Create(txn))
}

/// Is the data file readable right now? Used by `/health`.
pub fn probe(store: &Store) -> bool {
    store.database().is_ok_and(|db| {
        db.begin_read()
            .is_ok_and(|txn| txn.open_table(tables::META).is_ok())
    })
}

pub(crate) fn storage_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

pub(crate) fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}
