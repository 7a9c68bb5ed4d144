//! Snapshots. redb has no backup API, and copying the live file could catch a
//! commit half-written, so a snapshot is one read transaction copied table by
//! table ([`tables::for_each`]) into a fresh redb file. The file is written
//! under a hidden name and renamed only when complete and synced, so a backup
//! folder never holds anything that looks complete but is not.
//!
//! Errors say which side failed: reading the data file ([`BackupError::ReadSnapshot`],
//! the store is unavailable) or writing the backup folder (every other
//! variant, an operator's problem that retrying the data file will not fix).

mod verify;
mod verify_common;
mod verify_outbox;

use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata};

use super::tables::{self, TableVisitor};
use super::{create_private_file, StoreError};
use crate::domain::time::{format_millis, now_millis, Millis};

#[cfg(any(test, feature = "testing"))]
pub use verify::verify;
pub use verify::{verify_showing, VerifyReport};

/// A finished snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// Absolute path of the snapshot file.
    pub path: PathBuf,
    pub bytes: u64,
    pub orders: u64,
    pub created_at: Millis,
}

/// Why a snapshot, or the retention pass after it, failed. The partial file
/// is removed before any of these is returned.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The backend keeps its data elsewhere and has its own backups
    /// (PostgreSQL: `pg_dump`, SPEC §15).
    #[error("backups of the {backend} backend are made with its own tools (pg_dump), not by vpsd")]
    NotSupported { backend: &'static str },
    /// The data file's handle is unavailable (being reopened after an I/O error).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Reading the committed state out of the data file failed.
    #[error("{0}")]
    ReadSnapshot(#[source] redb::Error),
    /// The destination cannot be made absolute (the working directory is gone).
    #[error("{}: {source}", path.display())]
    Resolve {
        path: PathBuf,
        source: std::io::Error,
    },
    /// `vpsd backup --to` never overwrites a file.
    #[error("{} already exists", path.display())]
    Exists { path: PathBuf },
    /// The destination is a root or has no file name.
    #[error("{} has no {what}", path.display())]
    BadDestination { path: PathBuf, what: &'static str },
    #[error("cannot create {}: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create {}: {source}", path.display())]
    CreateFile {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Writing the snapshot file through redb failed (e.g. the backup disk is full).
    #[error("{0}")]
    Write(#[source] redb::Error),
    #[error("cannot sync the snapshot: {0}")]
    Sync(#[source] std::io::Error),
    #[error("cannot rename the snapshot: {0}")]
    Rename(#[source] std::io::Error),
    #[error("cannot read {}: {source}", path.display())]
    ListDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot delete {}: {source}", path.display())]
    Delete {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl BackupError {
    /// True when the data file could not be read: the store is unavailable,
    /// not the backup folder.
    pub fn is_store_unavailable(&self) -> bool {
        matches!(
            self,
            BackupError::ReadSnapshot(_) | BackupError::Store(StoreError::Unavailable(_))
        )
    }
}

fn read_failed(e: impl Into<redb::Error>) -> BackupError {
    BackupError::ReadSnapshot(e.into())
}

fn write_failed(e: impl Into<redb::Error>) -> BackupError {
    BackupError::Write(e.into())
}

/// Start-up's check of the backup folder: snapshots are whole copies of the
/// data file, so a folder others can read is tightened to 0700 (SPEC §12).
/// A folder that does not exist yet is created 0700 by the first backup.
pub fn tighten_dir(dir: &Path) {
    if dir.is_dir() {
        super::tighten(dir, 0o700, "backup directory");
    }
}

fn create_dir(dir: &Path) -> Result<(), BackupError> {
    super::create_private_dir(dir).map_err(|source| BackupError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })
}

/// Writes a consistent snapshot of `db` to `dest` (which must not exist).
pub fn snapshot_to(db: &Database, dest: &Path) -> Result<SnapshotInfo, BackupError> {
    snapshot_showing(db, dest, &super::no_progress)
}

/// [`snapshot_to`], telling `progress` how many of the file's rows (all
/// tables) are copied.
pub fn snapshot_showing(
    db: &Database,
    dest: &Path,
    progress: super::Progress<'_>,
) -> Result<SnapshotInfo, BackupError> {
    let dest = std::path::absolute(dest).map_err(|source| BackupError::Resolve {
        path: dest.to_path_buf(),
        source,
    })?;
    if dest.exists() {
        return Err(BackupError::Exists { path: dest });
    }
    let bad = |what| BackupError::BadDestination {
        path: dest.clone(),
        what,
    };
    let dir = dest.parent().ok_or_else(|| bad("parent folder"))?;
    create_dir(dir)?;
    let name = dest
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| bad("file name"))?;
    let partial = dir.join(format!(".{name}.partial"));
    let _ = std::fs::remove_file(&partial);
    let result = write_snapshot(db, &partial, progress).and_then(|orders| {
        std::fs::rename(&partial, &dest).map_err(BackupError::Rename)?;
        sync_dir(dir);
        let bytes = std::fs::metadata(&dest).map(|m| m.len()).unwrap_or(0);
        Ok(SnapshotInfo {
            path: dest.clone(),
            bytes,
            orders,
            created_at: now_millis(),
        })
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

/// A snapshot in `dir` named `vpsd-YYYYMMDDTHHMMSSZ.redb` (a `-N` suffix keeps
/// names unique within a second).
pub fn snapshot_into(db: &Database, dir: &Path) -> Result<SnapshotInfo, BackupError> {
    create_dir(dir)?;
    let stamp: String = format_millis(now_millis())
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == 'T')
        .take(15)
        .collect();
    let mut path = dir.join(format!("vpsd-{stamp}Z.redb"));
    let mut n = 1;
    while path.exists() {
        path = dir.join(format!("vpsd-{stamp}Z-{n}.redb"));
        n += 1;
    }
    snapshot_to(db, &path)
}

/// Deletes the oldest snapshots in `dir` beyond the newest `keep`; returns
/// what it deleted. Only finished `vpsd-*.redb` files are considered.
pub fn prune(dir: &Path, keep: usize) -> Result<Vec<PathBuf>, BackupError> {
    let mut snapshots = list_snapshots(dir)?;
    snapshots.sort();
    let excess = snapshots.len().saturating_sub(keep);
    let mut deleted = Vec::new();
    for path in snapshots.into_iter().take(excess) {
        if let Err(source) = std::fs::remove_file(&path) {
            return Err(BackupError::Delete { path, source });
        }
        deleted.push(path);
    }
    Ok(deleted)
}

/// Finished snapshots in `dir`, unsorted.
pub fn list_snapshots(dir: &Path) -> Result<Vec<PathBuf>, BackupError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(BackupError::ListDir {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    Ok(entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("vpsd-") && n.ends_with(".redb"))
        })
        .collect())
}

/// Copies every row of every table from one read transaction into the
/// snapshot's single write transaction.
struct CopyTables<'a> {
    from: &'a redb::ReadTransaction,
    to: &'a redb::WriteTransaction,
    progress: super::Progress<'a>,
    done: u64,
    total: u64,
}

/// Counts every table's rows: the whole a backup's progress is told of.
struct SumRows<'a> {
    from: &'a redb::ReadTransaction,
    total: u64,
}

impl TableVisitor for SumRows<'_> {
    type Error = BackupError;

    fn visit<K: redb::Key + 'static, V: redb::Value + 'static>(
        &mut self,
        table: redb::TableDefinition<'static, K, V>,
    ) -> Result<(), BackupError> {
        let source = self.from.open_table(table).map_err(read_failed)?;
        self.total += source.len().map_err(read_failed)?;
        Ok(())
    }
}

impl TableVisitor for CopyTables<'_> {
    type Error = BackupError;

    fn visit<K: redb::Key + 'static, V: redb::Value + 'static>(
        &mut self,
        table: redb::TableDefinition<'static, K, V>,
    ) -> Result<(), BackupError> {
        let source = self.from.open_table(table).map_err(read_failed)?;
        let mut target = self.to.open_table(table).map_err(write_failed)?;
        for entry in source.iter().map_err(read_failed)? {
            let (k, v) = entry.map_err(read_failed)?;
            target.insert(k.value(), v.value()).map_err(write_failed)?;
            self.done += 1;
            if self.done.is_multiple_of(4096) {
                (self.progress)("copying", self.done, self.total);
            }
        }
        (self.progress)("copying", self.done, self.total);
        Ok(())
    }
}

fn write_snapshot(
    db: &Database,
    path: &Path,
    progress: super::Progress<'_>,
) -> Result<u64, BackupError> {
    create_private_file(path).map_err(|source| BackupError::CreateFile {
        path: path.to_path_buf(),
        source,
    })?;
    let read = db.begin_read().map_err(read_failed)?;
    let orders = read
        .open_table(tables::ORDERS)
        .map_err(read_failed)?
        .len()
        .map_err(read_failed)?;
    let target = Database::builder().create(path).map_err(write_failed)?;
    let write = target.begin_write().map_err(write_failed)?;
    let mut rows = SumRows {
        from: &read,
        total: 0,
    };
    tables::for_each(&mut rows)?;
    tables::for_each(&mut CopyTables {
        from: &read,
        to: &write,
        progress,
        done: 0,
        total: rows.total,
    })?;
    write.commit().map_err(write_failed)?;
    drop(target);
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(BackupError::Sync)?;
    Ok(orders)
}

/// Makes a rename durable: the directory entry is synced too.
fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Names(Vec<String>);

    impl TableVisitor for Names {
        type Error = std::convert::Infallible;
        fn visit<K: redb::Key + 'static, V: redb::Value + 'static>(
            &mut self,
            table: redb::TableDefinition<'static, K, V>,
        ) -> Result<(), Self::Error> {
            self.0.push(redb::TableHandle::name(&table).to_string());
            Ok(())
        }
    }

    #[test]
    fn every_listed_table_is_created_copied_and_verified() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data.redb");
        let store = crate::backend::store::Store::open(&data).unwrap();
        store.shutdown();
        drop(store);
        let db = crate::backend::store::open_offline(&data).unwrap();
        let info = snapshot_to(&db, &dir.path().join("copy.redb")).unwrap();
        drop(db);
        let mut names = Names(Vec::new());
        let Ok(()) = tables::for_each(&mut names);
        let report = verify(&info.path).unwrap();
        let walked: Vec<String> = report.rows.keys().cloned().collect();
        names.0.sort();
        assert_eq!(walked, names.0);
        // A new file stores its schema version and the due-index policy.
        assert_eq!(report.rows["meta"], 2);
    }
}
