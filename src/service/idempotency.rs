//! Idempotency keys (SPEC §2). A key is claimed in memory while its first request
//! runs (a second arrival gets 409), and the finished response is stored in the
//! data file by the same transaction as the change it describes, so a replay can
//! never disagree with what was committed. The outcome is kept as data (the
//! order record or the refusal) and rendered by the API like a fresh one. Only
//! this process writes the file (redb locks it), so an in-memory claim set is
//! enough.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use crate::domain::OrderRecord;
use crate::error::AppError;
use crate::store::{IdempotencyRecord, IdempotencyWrite, Replay};

/// How long a stored response is replayed.
pub const TTL_MS: i64 = 24 * 60 * 60 * 1000;

/// At most this many entries of `details.fields` are answered and stored
/// (SPEC §12): a body of thousands of unknown keys must not become a response,
/// and a stored record, thousands of entries long.
pub const MAX_FIELDS: usize = 20;

/// The largest refusal kept under an idempotency key, encoded (SPEC §12). With
/// [`MAX_FIELDS`] and clipped field names every refusal vpsd makes fits; one
/// that does not is answered but not kept, so a repeat is validated afresh.
pub const MAX_STORED_BYTES: usize = 16 * 1024;

/// A validated `Idempotency-Key` with its scope and the request's fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    /// `user:{sub}` or `internal`.
    pub scope: String,
    pub key: String,
    pub fingerprint: [u8; 32],
}

/// What a command produced: a fresh outcome, or the outcome of the request
/// that first used the key (the API renders both the same way).
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // built once per request and consumed at once
pub enum Reply {
    Fresh(Result<OrderRecord, AppError>),
    Replayed(Replay),
}

#[derive(Default)]
pub struct InFlight {
    keys: Mutex<HashSet<(String, String)>>,
}

/// Holds a key while its request runs; dropping it releases the key.
pub struct Claim {
    owner: Arc<InFlight>,
    id: (String, String),
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Ok(mut keys) = self.owner.keys.lock() {
            keys.remove(&self.id);
        }
    }
}

impl InFlight {
    /// `None` when another request holds the key.
    pub fn claim(self: &Arc<Self>, scope: &str, key: &str) -> Option<Claim> {
        let id = (scope.to_string(), key.to_string());
        let mut keys = self.keys.lock().ok()?;
        if !keys.insert(id.clone()) {
            return None;
        }
        Some(Claim {
            owner: self.clone(),
            id,
        })
    }
}

/// Where the writer keeps this request's outcome, in the change's transaction.
pub fn write_for(key: &IdempotencyKey, now: i64) -> IdempotencyWrite {
    IdempotencyWrite {
        scope: key.scope.clone(),
        key: key.key.clone(),
        fingerprint: key.fingerprint,
        expires_at: now.saturating_add(TTL_MS),
    }
}

/// The refusal as it is kept under a key, when it is kept at all: only a
/// replayable one, and with `details.fields` cut to what the API answers, so a
/// replay renders exactly the first response.
pub fn storable(refusal: &AppError) -> Option<AppError> {
    if !refusal.is_replayable() {
        return None;
    }
    let mut kept = refusal.clone();
    if let AppError::BadRequest { fields, .. } = &mut kept {
        fields.truncate(MAX_FIELDS);
    }
    Some(kept)
}

/// Whether `record` is small enough to keep (see [`MAX_STORED_BYTES`]).
pub fn fits(record: &IdempotencyRecord) -> bool {
    crate::store::codec::encode(record).len() <= MAX_STORED_BYTES
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::error::FieldError;

    #[test]
    fn a_refusal_is_kept_with_at_most_max_fields_and_fits() {
        let fields = (0..5000)
            .map(|i| FieldError::new(format!("k{i:063}"), "is not a known field"))
            .collect();
        let kept = storable(&AppError::invalid_fields(fields)).expect("kept");
        let AppError::BadRequest { fields, .. } = &kept else {
            panic!("{kept:?}");
        };
        assert_eq!(fields.len(), MAX_FIELDS);
        let record = IdempotencyRecord {
            fingerprint: [0; 32],
            outcome: Replay::Outcome(Box::new(Err(kept))),
            expires_at: 0,
        };
        assert!(fits(&record));
        let huge = IdempotencyRecord {
            outcome: Replay::Outcome(Box::new(Err(AppError::bad_request(
                "x".repeat(MAX_STORED_BYTES),
            )))),
            ..record
        };
        assert!(!fits(&huge));
        assert!(storable(&AppError::CatalogUnavailable("down".into())).is_none());
    }
}
