//! Who is calling. Users carry a JWT (only the configured algorithm is accepted);
//! internal callers carry the `X-API-Key`, compared in constant time.

use std::collections::HashSet;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use warp::http::HeaderMap;

use super::token_cache::{self, TokenCache, Validity};
use crate::config::{AuthConfig, JwtAlgorithm};
use crate::error::AppError;

/// Verifies user tokens; built once at start-up.
pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
    /// Tokens that passed, re-checked for `exp`/`nbf` at every use.
    verified: TokenCache,
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    /// Read again here (jsonwebtoken has validated them) to know until when
    /// the token may be served from [`Verified`]. Any JSON is accepted, so
    /// these fields never refuse a token jsonwebtoken accepted.
    #[serde(default)]
    exp: Option<serde_json::Value>,
    #[serde(default)]
    nbf: Option<serde_json::Value>,
}

impl Claims {
    /// `None` when a time claim is not a plain NumericDate: such a token is
    /// verified in full every time rather than cached.
    fn validity(&self) -> Option<Validity> {
        let exp = token_cache::numeric_date(self.exp.as_ref()?)?;
        let nbf = match &self.nbf {
            None => None,
            Some(v) => Some(token_cache::numeric_date(v)?),
        };
        Some(Validity { exp, nbf })
    }
}

/// Longest `sub` accepted: it becomes part of index keys and actor strings.
const MAX_SUB_LEN: usize = 255;

impl JwtVerifier {
    pub fn from_config(auth: &AuthConfig) -> Result<JwtVerifier, String> {
        let (algorithm, key) = match auth.jwt_algorithm {
            JwtAlgorithm::HS256 => {
                let secret = auth
                    .jwt_secret
                    .as_deref()
                    .filter(|s| !s.is_empty())
                    .ok_or("auth.jwt_secret: required when auth.jwt_algorithm = \"HS256\" (env JWT_SECRET)")?;
                (
                    Algorithm::HS256,
                    DecodingKey::from_secret(secret.as_bytes()),
                )
            }
            JwtAlgorithm::RS256 => {
                let pem = public_key_pem(auth)?;
                let key = DecodingKey::from_rsa_pem(pem.as_bytes()).map_err(|_| {
                    "auth.jwt_public_key: not an RSA public key in PEM format".to_string()
                })?;
                (Algorithm::RS256, key)
            }
            JwtAlgorithm::ES256 => {
                let pem = public_key_pem(auth)?;
                let key = DecodingKey::from_ec_pem(pem.as_bytes()).map_err(|_| {
                    "auth.jwt_public_key: not an EC (P-256) public key in PEM format".to_string()
                })?;
                (Algorithm::ES256, key)
            }
        };
        let mut validation = Validation::new(algorithm);
        validation.algorithms = vec![algorithm];
        validation.validate_exp = true;
        validation.validate_nbf = true;
        // Tokens are checked as their issuer wrote them: an expired token is
        // expired, with no minute of grace.
        validation.leeway = 0;
        let mut required = HashSet::from(["exp".to_string(), "sub".to_string()]);
        // A configured issuer or audience must be present, not merely not wrong.
        match &auth.jwt_issuer {
            Some(iss) => {
                validation.set_issuer(&[iss]);
                required.insert("iss".into());
            }
            None => validation.iss = None,
        }
        match &auth.jwt_audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                required.insert("aud".into());
            }
            None => validation.validate_aud = false,
        }
        validation.required_spec_claims = required;
        Ok(JwtVerifier {
            key,
            validation,
            verified: TokenCache::default(),
        })
    }

    /// The caller's user id (`sub`), or 401.
    pub fn user(&self, headers: &HeaderMap) -> Result<String, AppError> {
        let token = bearer(headers)?;
        let now = token_cache::now_secs();
        if let Some(sub) = now.and_then(|now| self.verified.get(token, now)) {
            return Ok(sub);
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| AppError::Unauthorized(describe(&e)))?;
        let claims = data.claims;
        let sub = claims.sub.as_str();
        if sub.is_empty() || sub.len() > MAX_SUB_LEN || sub.chars().any(char::is_control) {
            return Err(AppError::Unauthorized(
                "token subject is not a valid user id".into(),
            ));
        }
        if let (Some(now), Some(validity)) = (now, claims.validity()) {
            self.verified.remember(token, sub, validity, now);
        }
        Ok(claims.sub)
    }
}

/// The token of `Authorization: Bearer <token>`, or 401.
fn bearer(headers: &HeaderMap) -> Result<&str, AppError> {
    let header = headers
        .get(warp::http::header::AUTHORIZATION)
        .ok_or_else(|| AppError::Unauthorized("missing bearer token".into()))?;
    let value = header
        .to_str()
        .map_err(|_| AppError::Unauthorized("malformed Authorization header".into()))?;
    value
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| AppError::Unauthorized("missing bearer token".into()))
}

/// A short, safe reason: never the token, never key material.
fn describe(e: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind;
    match e.kind() {
        ErrorKind::ExpiredSignature => "token has expired",
        ErrorKind::ImmatureSignature => "token is not valid yet",
        ErrorKind::InvalidIssuer => "token issuer is not accepted",
        ErrorKind::InvalidAudience => "token audience is not accepted",
        ErrorKind::InvalidAlgorithm => "token algorithm is not accepted",
        ErrorKind::InvalidSignature => "token signature is invalid",
        ErrorKind::MissingRequiredClaim(_) => "token lacks a required claim",
        _ => "token is invalid",
    }
    .to_string()
}

fn public_key_pem(auth: &AuthConfig) -> Result<String, String> {
    if let Some(text) = auth
        .jwt_public_key
        .as_deref()
        .filter(|t| !t.trim().is_empty())
    {
        // .env files often carry PEM on one line with literal \n escapes.
        return Ok(if text.contains('\n') {
            text.to_string()
        } else {
            text.replace("\\n", "\n")
        });
    }
    if let Some(path) = &auth.jwt_public_key_file {
        return std::fs::read_to_string(path).map_err(|e| {
            format!(
                "auth.jwt_public_key_file: cannot read {}: {}",
                path.display(),
                e.kind()
            )
        });
    }
    Err(format!(
        "auth.jwt_public_key or auth.jwt_public_key_file: required when auth.jwt_algorithm = \"{:?}\" (env JWT_PUBLIC_KEY)",
        auth.jwt_algorithm
    ))
}

/// Checks `X-API-Key` for internal routes.
pub struct ApiKey {
    /// SHA-256 of the configured key: comparing digests keeps the comparison
    /// constant-time even when lengths differ.
    expected: Option<[u8; 32]>,
}

impl ApiKey {
    pub fn new(configured: Option<&str>) -> ApiKey {
        ApiKey {
            expected: configured.filter(|k| !k.is_empty()).map(digest),
        }
    }

    /// The request's `X-API-Key`.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), AppError> {
        let given = headers.get("x-api-key").map(|v| v.as_bytes());
        self.check_key(given.unwrap_or_default())
    }

    /// A key as typed (the console's login form) or sent: constant time,
    /// over digests; empty counts as missing.
    pub fn check_key(&self, given: &[u8]) -> Result<(), AppError> {
        let Some(expected) = &self.expected else {
            return Err(AppError::ApiKeyNotConfigured);
        };
        if given.is_empty() {
            return Err(AppError::ApiKeyMissing);
        }
        if bool::from(digest_bytes(given).ct_eq(expected)) {
            Ok(())
        } else {
            Err(AppError::ApiKeyInvalid)
        }
    }
}

fn digest(text: &str) -> [u8; 32] {
    digest_bytes(text.as_bytes())
}

fn digest_bytes(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

#[derive(Serialize)]
struct MintedClaims<'a> {
    sub: &'a str,
    iat: u64,
    exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
}

/// `vpsd token`: a development token signed with the HS256 secret.
pub fn mint_dev_token(auth: &AuthConfig, sub: &str, ttl_secs: u64) -> Result<String, String> {
    if auth.jwt_algorithm != JwtAlgorithm::HS256 {
        return Err(format!(
            "vpsd token mints HS256 development tokens only; auth.jwt_algorithm is {:?}",
            auth.jwt_algorithm
        ));
    }
    let secret = auth
        .jwt_secret
        .as_deref()
        .filter(|s| !s.is_empty())
        .ok_or("auth.jwt_secret is not set (env JWT_SECRET)")?;
    if sub.is_empty() || sub.len() > MAX_SUB_LEN || sub.chars().any(char::is_control) {
        return Err("--sub must be 1-255 printable characters".into());
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let claims = MintedClaims {
        sub,
        iat: now,
        exp: now.saturating_add(ttl_secs),
        iss: auth.jwt_issuer.as_deref(),
        aud: auth.jwt_audience.as_deref(),
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|e| format!("cannot sign the token: {e}"))
}

/// Parses `--ttl`: seconds (`3600`) or with a unit (`90s`, `15m`, `1h`, `1d`).
pub fn parse_ttl(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => text.split_at(i),
        None => (text, ""),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 3600, 90s, 15m or 1h"))?;
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "{text:?} is not a duration like 3600, 90s, 15m or 1h"
            ))
        }
    };
    match n.checked_mul(scale) {
        Some(0) | None => Err(format!("{text:?} must be a positive duration")),
        Some(secs) => Ok(secs),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_units() {
        assert_eq!(parse_ttl("90s"), Ok(90));
        assert_eq!(parse_ttl("15m"), Ok(900));
        assert_eq!(parse_ttl("1h"), Ok(3600));
        assert_eq!(parse_ttl("3600"), Ok(3600));
        assert!(parse_ttl("1w").is_err());
        assert!(parse_ttl("0").is_err());
        assert!(parse_ttl("").is_err());
    }

    #[test]
    fn api_key_codes() {
        let mut headers = HeaderMap::new();
        assert_eq!(
            ApiKey::new(None).check(&headers),
            Err(AppError::ApiKeyNotConfigured)
        );
        let key = ApiKey::new(Some("k"));
        assert_eq!(key.check(&headers), Err(AppError::ApiKeyMissing));
        headers.insert("x-api-key", "nope".parse().unwrap());
        assert_eq!(key.check(&headers), Err(AppError::ApiKeyInvalid));
        headers.insert("x-api-key", "k".parse().unwrap());
        assert_eq!(key.check(&headers), Ok(()));
    }
}
