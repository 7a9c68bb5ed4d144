//! The few headers vpsd reads: `Idempotency-Key` (with the request's
//! fingerprint) and `X-Admin-Id`.

use serde_json::Value;
use sha2::{Digest, Sha256};
use warp::http::HeaderMap;

use crate::error::{AppError, FieldError};
use crate::service::IdempotencyKey;

/// `Idempotency-Key`: 1-255 printable ASCII characters, if sent.
pub fn idempotency_key(
    headers: &HeaderMap,
    scope: String,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<Option<IdempotencyKey>, AppError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let bytes = value.as_bytes();
    if bytes.is_empty() || bytes.len() > 255 || !bytes.iter().all(|b| (0x20..=0x7e).contains(b)) {
        return Err(AppError::invalid_fields(vec![FieldError::new(
            "Idempotency-Key",
            "must be 1-255 printable ASCII characters",
        )]));
    }
    let key = String::from_utf8_lossy(bytes).into_owned();
    Ok(Some(IdempotencyKey {
        scope,
        key,
        fingerprint: fingerprint(method, path, body),
    }))
}

/// SHA-256 over method, path and the body in canonical form (parsed and
/// re-serialised with sorted keys), so whitespace or key order do not make the
/// same request look different.
pub fn fingerprint(method: &str, path: &str, body: &[u8]) -> [u8; 32] {
    let canonical = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| serde_json::to_vec(&v).ok())
        .unwrap_or_else(|| body.to_vec());
    let mut hash = Sha256::new();
    hash.update(method.as_bytes());
    hash.update([0]);
    hash.update(path.as_bytes());
    hash.update([0]);
    hash.update(&canonical);
    hash.finalize().into()
}

/// `X-Admin-Id`: 1-64 characters of `A-Za-z0-9._@-`, if sent.
pub fn admin_id(headers: &HeaderMap) -> Result<Option<String>, AppError> {
    let Some(value) = headers.get("x-admin-id") else {
        return Ok(None);
    };
    let bytes = value.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= 64
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(b));
    if !ok {
        return Err(AppError::invalid_fields(vec![FieldError::new(
            "X-Admin-Id",
            "must be 1-64 characters of A-Z, a-z, 0-9, '.', '_', '@' and '-'",
        )]));
    }
    Ok(Some(String::from_utf8_lossy(bytes).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_ignores_whitespace_and_key_order() {
        let a = fingerprint("POST", "/x", br#"{"a":1,"b":2}"#);
        let b = fingerprint("POST", "/x", b"{ \"b\": 2, \"a\": 1 }");
        let c = fingerprint("POST", "/x", br#"{"a":1,"b":3}"#);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
