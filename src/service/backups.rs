//! Online snapshots: on request (POST /internal/backups) and on the
//! `backup.schedule` cron, with retention. A failure is logged and counted,
//! never fatal to the daemon.
//!
//! Only a failure to read the data file is 503 STORAGE_UNAVAILABLE: a backup
//! folder that cannot be written is the operator's to fix, not a reason for
//! clients to retry, so it is a 500 whose cause stays in the log.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::backend::store::backup::{self, BackupError};
pub use crate::backend::store::backup::{SnapshotInfo, VerifyReport};
use crate::backend::store::StoreHandle;
use crate::error::AppError;
use crate::metrics::Metrics;

pub struct BackupService {
    store: StoreHandle,
    dir: PathBuf,
    keep: usize,
    /// One snapshot at a time: a second request waits rather than doubling I/O.
    running: tokio::sync::Mutex<()>,
    metrics: Arc<Metrics>,
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
        }
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
            Err(why) => {
                self.metrics.backups.with_label_values(&["failure"]).inc();
                tracing::error!(error = %why, "backup failed");
                Err(why.into())
            }
        }
    }

    /// The scheduled run: snapshot, then keep only the newest `keep`.
    pub async fn scheduled(&self) {
        if self.snapshot().await.is_err() {
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
/// error is the one line the command prints.
pub fn backup_offline(data_file: &Path, to: &Path) -> Result<SnapshotInfo, String> {
    let db = crate::backend::store::open_offline(data_file).map_err(|e| e.to_string())?;
    backup::snapshot_to(&db, to).map_err(|e| format!("backup failed: {e}"))
}

/// `vpsd verify`: every record of a data file or snapshot decodes and every
/// index points where it should.
pub fn verify_file(file: &Path) -> Result<VerifyReport, String> {
    backup::verify(file).map_err(|problem| format!("verify {}: {problem}", file.display()))
}

impl From<BackupError> for AppError {
    fn from(e: BackupError) -> AppError {
        match e {
            BackupError::Store(e) => e.into(),
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
}
