//! Idempotency keys (SPEC §2). A key is claimed in memory while its first request
//! runs (a second arrival gets 409), and the finished response is stored in the
//! data file by the same transaction as the change it describes, so a replay can
//! never disagree with what was committed. Only this process writes the file
//! (redb locks it), so an in-memory claim set is enough.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use crate::error::AppError;
use crate::store::{IdempotencyWrite, OpResult, OrderRecord, StoredResponse};

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

/// Renders a command's outcome as the HTTP response the client sees; supplied by
/// the API layer so the stored body is byte-for-byte what was sent.
pub type Renderer = Arc<dyn Fn(&Result<OrderRecord, AppError>) -> StoredResponse + Send + Sync>;

/// What a command produced: a fresh outcome, or the stored response of the
/// request that first used the key.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // built once per request and consumed at once
pub enum Reply {
    Fresh(Result<OrderRecord, AppError>),
    Replayed(StoredResponse),
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

/// Stored for 2xx and 4xx; 5xx outcomes are not stored so the client can
/// retry, and neither is 429: a rate limit passes, and replaying it for a day
/// would turn it into a permanent refusal.
pub fn storable(response: StoredResponse) -> Option<StoredResponse> {
    (response.status < 500 && response.status != 429).then_some(response)
}

/// The writer-side half: render inside the transaction and store if storable.
pub fn write_for(key: &IdempotencyKey, now: i64, render: Renderer) -> IdempotencyWrite {
    IdempotencyWrite {
        scope: key.scope.clone(),
        key: key.key.clone(),
        fingerprint: key.fingerprint,
        expires_at: now.saturating_add(TTL_MS),
        render: Box::new(move |result: &OpResult| {
            let outcome = result.clone().map_err(AppError::from);
            storable(render(&outcome))
        }),
    }
}
