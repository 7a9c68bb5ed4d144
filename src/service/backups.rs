//! Online snapshots: on request (POST /internal/backups) and on the
//! `backup.schedule` cron, with retention. A failure is logged and counted,
//! never fatal to the daemon.
//!
//! Only a failure to read the data file is 503 STORAGE_UNAVAILABLE: a backup
//! folder that cannot be written is the operator's to fix, not a reason for
//! clients to retry, so it is a 500 whose cause stays in the log.
//!
//! On PostgreSQL (SPEC §15) vpsd takes no backups: the data is the
//! database's, backed up with its own tools (`pg_dump`, replicas). The route,
//! the console and `vpsd backup` answer NOT_SUPPORTED_ON_BACKEND, and a
//! configured `backup.schedule` is one warning, not an error every tick.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::backend::store::backup::{self, BackupError};
pub use crate::backend::store::backup::{SnapshotInfo, VerifyReport};
use crate::backend::store::StoreHandle;
pub use crate::backend::store::{no_progress, Progress};
use crate::config::{StorageBackend, StorageConfig};
use crate::error::AppError;
use crate::metrics::Metrics;

pub struct BackupService {
    store: StoreHandle,
    dir: PathBuf,
    keep: usize,
    /// One snapshot at a time: a second request waits rather than doubling I/O.
    running: tokio::sync::Mutex<()>,
    metrics: Arc<Metrics>,
    /// `backup.schedule` was said to do nothing on this backend: said once
    /// per run, whether at start-up or on the first tick.
    schedule_refused: AtomicBool,
}

impl BackupService {
    pub fn new(
        store: impl Into<StoreHandle>,
        dir: PathBuf,
        keep: usize,
        metrics: Arc<Metrics>,
    ) -> BackupService {
        BackupService {
            store: store.into(),
            dir,
            keep,
            running: tokio::sync::Mutex::new(()),
            metrics,
            schedule_refused: AtomicBool::new(false),
        }
    }

    /// The backend whose backups are its own (`postgres`), when the store is
    /// not the embedded redb file: the only data vpsd snapshots itself. The
    /// console asks before offering a button that could only fail.
    pub fn not_ours(&self) -> Option<&'static str> {
        match self.store.backend() {
            "redb" => None,
            other => Some(other),
        }
    }

    /// Whether `backup.schedule` takes snapshots on this backend. When not,
    /// one warning says so (the first call; later ones only debug), so
    /// start-up can ask before scheduling and a tick that runs anyway
    /// stays quiet.
    pub fn takes_schedule(&self) -> bool {
        let Some(backend) = self.not_ours() else {
            return true;
        };
        if self.schedule_refused.swap(true, Ordering::SeqCst) {
            tracing::debug!(
                backend,
                "scheduled backup skipped: not vpsd's on this backend"
            );
        } else {
            tracing::warn!(
                backend,
                "backup.schedule is ignored: backups on PostgreSQL are PostgreSQL's own (pg_dump, replicas); vpsd writes none"
            );
        }
        false
    }

    /// Takes a snapshot now, while the daemon keeps serving: it reads one
    /// committed state and never blocks the writer.
    pub async fn snapshot(&self) -> Result<SnapshotInfo, AppError> {
        let _one_at_a_time = self.running.lock().await;
        let store = self.store.clone();
        let dir = self.dir.clone();
        let result = tokio::task::spawn_blocking(move || store.snapshot_into(&dir))
            .await
            .map_err(|e| AppError::Internal(format!("backup task failed: {e}")))?;
        match result {
            Ok(info) => {
                self.metrics.backups.with_label_values(&["success"]).inc();
                self.metrics.backup_last_success.set(info.created_at / 1000);
                self.metrics
                    .backup_last_bytes
                    .set(i64::try_from(info.bytes).unwrap_or(i64::MAX));
                tracing::info!(file = %info.path.display(), bytes = info.bytes, orders = info.orders, "backup written");
                Ok(info)
            }
            // The operator asked the wrong tool; nothing failed, so nothing
            // is counted or logged as a failure.
            Err(BackupError::NotSupported { backend }) => Err(AppError::NotSupportedOnBackend {
                backend: backend.to_string(),
            }),
            Err(why) => {
                self.metrics.backups.with_label_values(&["failure"]).inc();
                tracing::error!(error = %why, "backup failed");
                Err(why.into())
            }
        }
    }

    /// The scheduled run: snapshot, then keep only the newest `keep`.
    pub async fn scheduled(&self) {
        if !self.takes_schedule() || self.snapshot().await.is_err() {
            return;
        }
        let dir = self.dir.clone();
        let keep = self.keep;
        match tokio::task::spawn_blocking(move || backup::prune(&dir, keep)).await {
            Ok(Ok(deleted)) => {
                for path in deleted {
                    tracing::info!(file = %path.display(), "old backup removed (backup.keep)");
                }
            }
            Ok(Err(why)) => tracing::error!(error = %why, "backup retention failed"),
            Err(e) => tracing::error!(error = %e, "backup retention failed"),
        }
    }
}

/// `vpsd backup`: a snapshot of the data file of a stopped daemon; the
/// error is the one line the command prints. On PostgreSQL it refuses
/// before touching anything: opening `storage.path` would create a file.
pub fn backup_offline(
    storage: &StorageConfig,
    to: &Path,
    progress: Progress<'_>,
) -> Result<SnapshotInfo, String> {
    if storage.backend != StorageBackend::Redb {
        let refusal = AppError::NotSupportedOnBackend {
            backend: storage.backend.name().to_string(),
        };
        return Err(refusal.to_string());
    }
    let db = crate::backend::store::open_offline(&storage.path).map_err(|e| e.to_string())?;
    backup::snapshot_showing(&db, to, progress).map_err(|e| format!("backup failed: {e}"))
}

/// `vpsd verify`: every record of a data file or snapshot decodes and every
/// index points where it should.
pub fn verify_file(file: &Path, progress: Progress<'_>) -> Result<VerifyReport, String> {
    backup::verify_showing(file, progress)
        .map_err(|problem| format!("verify {}: {problem}", file.display()))
}

impl From<BackupError> for AppError {
    fn from(e: BackupError) -> AppError {
        match e {
            BackupError::Store(e) => e.into(),
            BackupError::NotSupported { backend } => AppError::NotSupportedOnBackend {
                backend: backend.to_string(),
            },
            e if e.is_store_unavailable() => AppError::StorageUnavailable(e.to_string()),
            e => AppError::Internal(format!("backup failed: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::store::StoreError;

    #[test]
    fn only_reading_the_data_file_is_storage_unavailable() {
        let read = BackupError::ReadSnapshot(redb::StorageError::Corrupted("x".into()).into());
        assert!(matches!(
            AppError::from(read),
            AppError::StorageUnavailable(_)
        ));
        let reopening = BackupError::Store(StoreError::Unavailable("reopening".into()));
        assert!(matches!(
            AppError::from(reopening),
            AppError::StorageUnavailable(_)
        ));
        let folder = BackupError::CreateDir {
            path: "/nowhere".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotADirectory),
        };
        assert!(matches!(AppError::from(folder), AppError::Internal(_)));
        let full = BackupError::Write(
            redb::StorageError::Io(std::io::ErrorKind::StorageFull.into()).into(),
        );
        assert!(matches!(AppError::from(full), AppError::Internal(_)));
    }

    #[test]
    fn a_backend_with_its_own_backups_is_a_refusal_naming_its_tools() {
        let refused = AppError::from(BackupError::NotSupported {
            backend: "postgres",
        });
        assert_eq!(
            refused,
            AppError::NotSupportedOnBackend {
                backend: "postgres".into()
            }
        );
        let line = refused.to_string();
        assert!(
            line.contains("PostgreSQL") && line.contains("pg_dump"),
            "{line}"
        );
    }

    #[test]
    fn offline_backup_on_postgres_refuses_without_creating_the_data_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let storage = StorageConfig {
            path: dir.path().join("vpsd.redb"),
            backend: StorageBackend::Postgres,
            ..StorageConfig::default()
        };
        let to = dir.path().join("copy.redb");
        let line = backup_offline(&storage, &to, &no_progress).expect_err("refused");
        assert!(line.contains("pg_dump"), "{line}");
        assert!(!storage.path.exists() && !to.exists());
    }
}
