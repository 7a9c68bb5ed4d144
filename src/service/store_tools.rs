//! The operator's commands on a PostgreSQL store (SPEC §15), for `main`:
//! `vpsd store copy --from FILE --to URL` and `vpsd verify URL`. Each error
//! is the one line the command prints; none holds the URL's password.

use std::path::Path;

pub use crate::backend::store::pg::copy::CopyReport;
pub use crate::backend::store::pg::verify::PgVerifyReport;

/// Whether a `vpsd verify` argument names a database rather than a file.
pub fn is_database_url(arg: &str) -> bool {
    arg.starts_with("postgres://") || arg.starts_with("postgresql://")
}

/// Copies a stopped daemon's data file (or a backup) into an empty
/// PostgreSQL database, all or nothing.
pub fn copy_file(
    from: &Path,
    to: &str,
    progress: crate::backend::store::Progress<'_>,
) -> Result<CopyReport, String> {
    crate::backend::store::pg::copy::copy(from, to, progress).map_err(|e| e.0)
}

/// Checks a PostgreSQL store; the problems found are in the report.
pub fn verify_database(
    url: &str,
    progress: crate::backend::store::Progress<'_>,
) -> Result<PgVerifyReport, String> {
    crate::backend::store::pg::verify::verify(url, progress).map_err(|e| e.0)
}
