//! When a commit records redb's allocator state (`storage.quick_repair`).
//!
//! After a crash redb opens a file in milliseconds only if the *last* commit
//! before it recorded the allocator state (two-phase commit, one more fsync,
//! and a write that grows with the file); otherwise it walks every page, about
//! 1 s per GB. Recording it on every commit cost 8–34% of the write rate on a
//! 1M-order file under full load (BENCHMARKS.md). Recording it when the writer
//! is quiet costs nothing measurable under full load (about 1% of commits
//! then record it) and gives the fast start whenever load is not saturating
//! the writer, which is nearly always.

use std::time::Duration;

pub use crate::config::QuickRepair;

/// How long the writer waits, after a commit that did not record the state,
/// for more work before it commits once more just to record it.
pub const CHECKPOINT_AFTER: Duration = Duration::from_millis(50);

/// Whether redb would walk the whole file if the process died now. Asked of
/// a copy, so the file stays as it is; redb calls the repair callback only
/// when a full repair starts, and aborting there answers without the walk.
/// For tests.
#[cfg(any(test, feature = "testing"))]
#[doc(hidden)]
pub fn full_repair_needed(path: &std::path::Path) -> std::io::Result<bool> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let copy = path.with_extension("probe");
    std::fs::copy(path, &copy)?;
    let repaired = Arc::new(AtomicBool::new(false));
    let seen = repaired.clone();
    let opened = redb::Database::builder()
        .set_repair_callback(move |session| {
            seen.store(true, Ordering::SeqCst);
            session.abort();
        })
        .create(&copy);
    let repaired = repaired.load(Ordering::SeqCst);
    let opened_cleanly = opened.is_ok();
    drop(opened);
    std::fs::remove_file(&copy)?;
    if opened_cleanly == repaired {
        return Err(std::io::Error::other(
            "the probe neither opened the copy nor was asked to repair it",
        ));
    }
    Ok(repaired)
}
