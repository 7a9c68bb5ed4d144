//! Idempotency keys (SPEC §2). A key is claimed in memory while its first request
//! runs (a second arrival gets 409), and the finished response is stored in the
//! data file by the same transaction as the change it describes, so a replay can
//! never disagree with what was committed. The outcome is kept as data (the
//! order record or the refusal) and rendered by the API like a fresh one. Only
//! this process writes the file (redb locks it), so an in-memory claim set is
//! enough.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::backend::store::{IdempotencyRecord, IdempotencyWrite, Maintenance, StoreHandle};
use crate::domain::replay::Replay;
use crate::domain::OrderRecord;
use crate::error::AppError;

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

/// The default of `idempotency.max_keys_per_user` (SPEC §12).
pub const DEFAULT_MAX_KEYS_PER_USER: u64 = 10_000;

/// Keys whose requests are running, and the per-caller key limit.
pub struct InFlight {
    claims: Mutex<Claims>,
    /// Live keys one scope may hold (stored plus admitted, not yet stored).
    max_keys: u64,
}

#[derive(Default)]
struct Claims {
    held: HashSet<(String, String)>,
    /// Per scope: admitted new keys whose outcome is not stored yet. Counted
    /// with the stored ones, so concurrent requests cannot overshoot the limit.
    admitted: HashMap<String, u64>,
}

/// Holds a key while its request runs; dropping it releases the key.
pub struct Claim {
    owner: Arc<InFlight>,
    id: (String, String),
    admitted: bool,
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Ok(mut claims) = self.owner.claims.lock() {
            claims.held.remove(&self.id);
            if self.admitted {
                if let Some(n) = claims.admitted.get_mut(&self.id.0) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        claims.admitted.remove(&self.id.0);
                    }
                }
            }
        }
    }
}

impl Default for InFlight {
    fn default() -> Self {
        InFlight::new(DEFAULT_MAX_KEYS_PER_USER)
    }
}

impl InFlight {
    pub fn new(max_keys: u64) -> InFlight {
        InFlight {
            claims: Mutex::new(Claims::default()),
            max_keys,
        }
    }

    fn lock(&self) -> Result<MutexGuard<'_, Claims>, AppError> {
        self.claims
            .lock()
            .map_err(|_| AppError::Internal("idempotency claims lock poisoned".into()))
    }

    /// `None` when another request holds the key.
    pub fn claim(self: &Arc<Self>, scope: &str, key: &str) -> Option<Claim> {
        let id = (scope.to_string(), key.to_string());
        let mut claims = self.claims.lock().ok()?;
        if !claims.held.insert(id.clone()) {
            return None;
        }
        Some(Claim {
            owner: self.clone(),
            id,
            admitted: false,
        })
    }

    /// Lets a request store a new key (one its caller does not hold yet) if
    /// the caller is below `idempotency.max_keys_per_user`; else 429 with
    /// the time until its oldest key ends. At the limit the caller's expired
    /// keys are removed first, so only live keys ever cause a refusal.
    pub async fn admit(
        &self,
        store: &StoreHandle,
        claim: &mut Claim,
        now: i64,
    ) -> Result<(), AppError> {
        let scope = claim.id.0.clone();
        let mut swept = false;
        loop {
            let oldest = {
                // The stored count is read under the lock, so a request that
                // commits and releases its admission in between is counted
                // once at least, never zero times.
                let mut claims = self.lock()?;
                let usage = store.idempotency_usage(&scope)?;
                let admitted = claims.admitted.get(&scope).copied().unwrap_or(0);
                if usage.stored.saturating_add(admitted) < self.max_keys {
                    *claims.admitted.entry(scope).or_default() += 1;
                    claim.admitted = true;
                    return Ok(());
                }
                usage.oldest_expiry
            };
            match oldest {
                Some(at) if at <= now && !swept => {
                    let sweep = Maintenance::SweepIdempotencyScope {
                        scope: scope.clone(),
                        now,
                    };
                    store.maintain(sweep).await?;
                    swept = true;
                }
                _ => {
                    return Err(AppError::IdempotencyKeysExhausted {
                        limit: self.max_keys,
                        retry_after_secs: retry_after_secs(oldest, now),
                    })
                }
            }
        }
    }
}

/// Seconds until the caller's oldest stored key expires, rounded up; 1 when
/// only keys still in flight fill the limit (they finish within a request).
fn retry_after_secs(oldest_expiry: Option<i64>, now: i64) -> u64 {
    oldest_expiry.map_or(1, |at| {
        let ms = u64::try_from(at.saturating_sub(now)).unwrap_or(0);
        ms.div_ceil(1000).max(1)
    })
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
    crate::backend::store::codec::encode(record).len() <= MAX_STORED_BYTES
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::error::FieldError;

    #[test]
    fn retry_after_is_the_oldest_keys_remaining_life_rounded_up() {
        assert_eq!(retry_after_secs(Some(10_001), 0), 11);
        assert_eq!(retry_after_secs(Some(5), 5), 1);
        assert_eq!(retry_after_secs(None, 0), 1);
        assert_eq!(retry_after_secs(Some(TTL_MS), 0), 86_400);
    }

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
