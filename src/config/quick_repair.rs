//! `storage.quick_repair`: whether a commit records redb's allocator state so
//! the open after a crash is fast (see `store::repair` for the trade-off). A
//! plain setting, so the configuration can name it without knowing the store.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// redb's page cache unless configured (`storage.cache_mb`). redb's own
/// default, 1 GiB, would let a long-running daemon fill memory with pages.
pub const DEFAULT_CACHE_MB: u64 = 32;

/// `storage.quick_repair`: `true`, `false`, or `"when_idle"` (the default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QuickRepair {
    /// Every commit records the state (`true`).
    Always,
    /// A commit records it when nothing else is waiting to be written, and a
    /// quiet writer records it within the writer's checkpoint delay of a burst.
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
