//! What both passes of `vpsd verify` (the orders in `verify`, the outbox in
//! `verify_outbox`) share: the error, and opening a table that an older
//! schema may not have yet. Kept apart so neither pass imports the other.

use redb::{ReadTransaction, TableDefinition};

use super::super::tables;
use super::super::{codec, OpenError};

/// Why a file failed verification. The text is what `vpsd verify` prints.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// Missing, locked, or not a redb file.
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error("redb integrity check failed (the file needed repair)")]
    NeedsRepair,
    #[error("redb integrity check failed: {0}")]
    Integrity(#[source] redb::DatabaseError),
    /// redb panicked inside its check: the file is damaged beyond its errors.
    #[error("redb integrity check failed: the file is corrupt")]
    IntegrityPanicked,
    /// A table of the list is missing or has other key or value types.
    #[error("{table} table: {source}")]
    Table {
        table: String,
        #[source]
        source: redb::Error,
    },
    /// Reading failed part-way through a check.
    #[error("{0}")]
    Read(#[from] redb::Error),
    /// The file was written by a newer vpsd.
    #[error("schema version {found} is newer than this vpsd supports ({supported})")]
    NewerSchema { found: u64, supported: u64 },
    /// A record does not decode.
    #[error("{record}: {source}")]
    Decode {
        record: String,
        #[source]
        source: codec::CodecError,
    },
    /// Rows decode but contradict each other; the text names the first one.
    #[error("{0}")]
    Inconsistent(String),
}

macro_rules! read_errors {
    ($($from:ty),*) => {$(
        impl From<$from> for VerifyError {
            fn from(e: $from) -> VerifyError {
                VerifyError::Read(e.into())
            }
        }
    )*};
}
read_errors!(redb::StorageError, redb::TableError, redb::TransactionError);

pub(super) fn inconsistent(text: String) -> VerifyError {
    VerifyError::Inconsistent(text)
}

/// Opens a table; `None` when the file predates it (an older schema).
pub(super) fn open_if_present<K: redb::Key + 'static, V: redb::Value + 'static>(
    txn: &ReadTransaction,
    table: TableDefinition<'static, K, V>,
) -> Result<Option<redb::ReadOnlyTable<K, V>>, VerifyError> {
    match txn.open_table(table) {
        Ok(t) => Ok(Some(t)),
        Err(redb::TableError::TableDoesNotExist(_)) if written_before_tables(txn)? => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Whether the file predates this build's table list (an older schema), so a
/// missing table is expected rather than damage.
pub(super) fn written_before_tables(txn: &ReadTransaction) -> Result<bool, VerifyError> {
    written_before(txn, tables::SCHEMA_VERSION)
}

/// Whether the file's schema is older than `version`.
pub(super) fn written_before(txn: &ReadTransaction, version: u64) -> Result<bool, VerifyError> {
    let meta = txn.open_table(tables::META)?;
    let stored = meta.get(tables::META_SCHEMA_VERSION)?.map(|v| v.value());
    Ok(stored.is_some_and(|v| v < version))
}
