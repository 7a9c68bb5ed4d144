//! The operator's commands on a PostgreSQL store (SPEC §15), for `main`:
//! `vpsd store copy --from FILE --to URL`. Each error is the one line the
//! command prints; none holds the URL's password.

use std::path::Path;

pub use crate::backend::store::pg::copy::CopyReport;

/// Copies a stopped daemon's data file (or a backup) into an empty
/// PostgreSQL database, all or nothing.
pub fn copy_file(from: &Path, to: &str) -> Result<CopyReport, String> {
    crate::backend::store::pg::copy::copy(from, to).map_err(|e| e.0)
}
