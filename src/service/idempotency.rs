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
use crate::store::{IdempotencyWrite, Replay};

/// How long a stored response is replayed.
pub const TTL_MS: i64 = 24 * 60 * 60 * 1000;

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
