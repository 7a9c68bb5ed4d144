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

use std::fmt;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// How long the writer waits, after a commit that did not record the state,
/// for more work before it commits once more just to record it.
pub const CHECKPOINT_AFTER: Duration = Duration::from_millis(50);

/// `storage.quick_repair`: `true`, `false`, or `"when_idle"` (the default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QuickRepair {
    /// Every commit records the state (`true`).
    Always,
    /// A commit records it when nothing else is waiting to be written, and a
    /// quiet writer records it within [`CHECKPOINT_AFTER`] of a burst.
    #[default]
    WhenIdle,
    /// Never (`false`): a crash always costs the full walk.
    Never,
}

impl QuickRepair {
    /// Whether a commit records the allocator state. `quiet`: the commit holds
    /// one job and no other waits behind it, so the writer is not saturated.
    pub fn records_state(self, quiet: bool) -> bool {
        match self {
            QuickRepair::Always => true,
            QuickRepair::WhenIdle => quiet,
            QuickRepair::Never => false,
        }
    }

    /// Whether a quiet writer commits once more to record the state.
    pub fn checkpoints(self) -> bool {
        self == QuickRepair::WhenIdle
    }
}

impl Serialize for QuickRepair {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            QuickRepair::Always => s.serialize_bool(true),
            QuickRepair::WhenIdle => s.serialize_str("when_idle"),
            QuickRepair::Never => s.serialize_bool(false),
        }
    }
}

impl<'de> Deserialize<'de> for QuickRepair {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Expect;
        impl Visitor<'_> for Expect {
            type Value = QuickRepair;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(r#"true, false or "when_idle""#)
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<QuickRepair, E> {
                Ok(if v {
                    QuickRepair::Always
                } else {
                    QuickRepair::Never
                })
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<QuickRepair, E> {
                match v {
                    "true" => Ok(QuickRepair::Always),
                    "false" => Ok(QuickRepair::Never),
                    "when_idle" => Ok(QuickRepair::WhenIdle),
                    _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
                }
            }
        }
        d.deserialize_any(Expect)
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, Serialize)]
    struct Holder {
        quick_repair: QuickRepair,
    }

    fn parse(text: &str) -> Result<QuickRepair, toml::de::Error> {
        toml::from_str::<Holder>(text).map(|h| h.quick_repair)
    }

    #[test]
    fn booleans_keep_their_old_meaning_and_when_idle_is_the_third_value() {
        assert_eq!(parse("quick_repair = true").unwrap(), QuickRepair::Always);
        assert_eq!(parse("quick_repair = false").unwrap(), QuickRepair::Never);
        assert_eq!(
            parse(r#"quick_repair = "when_idle""#).unwrap(),
            QuickRepair::WhenIdle
        );
        // Environment variables arrive as text.
        assert_eq!(
            parse(r#"quick_repair = "true""#).unwrap(),
            QuickRepair::Always
        );
        let refused = parse(r#"quick_repair = "sometimes""#).unwrap_err();
        assert!(refused.to_string().contains("when_idle"), "{refused}");
    }

    #[test]
    fn it_is_written_back_as_it_is_read() {
        for value in [
            QuickRepair::Always,
            QuickRepair::WhenIdle,
            QuickRepair::Never,
        ] {
            let text = toml::to_string(&Holder {
                quick_repair: value,
            })
            .unwrap();
            assert_eq!(parse(&text).unwrap(), value, "{text}");
        }
    }

    #[test]
    fn only_when_idle_depends_on_the_writer_being_quiet() {
        for quiet in [true, false] {
            assert!(QuickRepair::Always.records_state(quiet));
            assert!(!QuickRepair::Never.records_state(quiet));
            assert_eq!(QuickRepair::WhenIdle.records_state(quiet), quiet);
        }
        assert!(QuickRepair::WhenIdle.checkpoints());
        assert!(!QuickRepair::Always.checkpoints());
        assert!(!QuickRepair::Never.checkpoints());
    }
}
