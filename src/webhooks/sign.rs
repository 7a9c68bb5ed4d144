//! Standard Webhooks signatures: `webhook-signature: v1,<base64 HMAC-SHA256
//! over "{id}.{timestamp}.{body}">`, keyed with the secret's decoded bytes.
//! Secrets are `whsec_` + base64, as the specification and its libraries
//! issue them.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// A signing secret, decoded. Its bytes never reach a log: `Debug` hides them.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(Vec<u8>);

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(whsec_…)")
    }
}

/// Why a configured secret is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("a webhook secret must start with whsec_")]
    MissingPrefix,
    #[error("a webhook secret must be base64 after whsec_")]
    NotBase64,
    #[error("a webhook secret must decode to 24 to 64 bytes")]
    BadLength,
}

impl WebhookSecret {
    /// `whsec_` + base64 of 24-64 random bytes (the specification's range).
    pub fn parse(text: &str) -> Result<WebhookSecret, SecretError> {
        let encoded = text
            .strip_prefix("whsec_")
            .ok_or(SecretError::MissingPrefix)?;
        let bytes = STANDARD
            .decode(encoded)
            .map_err(|_| SecretError::NotBase64)?;
        if !(24..=64).contains(&bytes.len()) {
            return Err(SecretError::BadLength);
        }
        Ok(WebhookSecret(bytes))
    }
}

/// The `webhook-signature` header value for one attempt.
pub fn sign(secret: &WebhookSecret, id: &str, timestamp: i64, body: &[u8]) -> String {
    Signer::new(secret).sign(id, &timestamp.to_string(), body)
}

/// HMAC-SHA256 already keyed with one endpoint's secret: keying hashes the
/// key's two padded blocks, so it is done once per endpoint and each
/// signature starts from a copy. Holds key material: no `Debug`.
#[derive(Clone)]
pub struct Signer(Option<Hmac<Sha256>>);

impl Signer {
    pub fn new(secret: &WebhookSecret) -> Signer {
        // HMAC accepts keys of any length: `new_from_slice` cannot fail here.
        Signer(Hmac::<Sha256>::new_from_slice(&secret.0).ok())
    }

    /// `v1,<base64 HMAC over "{id}.{timestamp}.{body}">`, the timestamp as
    /// the decimal text sent in `webhook-timestamp`.
    pub fn sign(&self, id: &str, timestamp: &str, body: &[u8]) -> String {
        let Some(mut mac) = self.0.clone() else {
            return String::new();
        };
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        let mut out = String::with_capacity(48);
        out.push_str("v1,");
        STANDARD.encode_string(mac.finalize().into_bytes(), &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test vector published with the Standard Webhooks specification and
    /// reproduced by its reference libraries: a receiver's library accepts
    /// exactly this.
    #[test]
    fn the_published_test_vector_reproduces_exactly() {
        let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let signature = sign(
            &secret,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn secrets_must_be_whsec_base64_of_a_sane_length() {
        assert_eq!(
            WebhookSecret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            Err(SecretError::MissingPrefix)
        );
        assert_eq!(
            WebhookSecret::parse("whsec_!!!"),
            Err(SecretError::NotBase64)
        );
        assert_eq!(
            WebhookSecret::parse("whsec_AAAA"),
            Err(SecretError::BadLength)
        );
        let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert!(!format!("{secret:?}").contains("MfKQ"));
    }

    #[test]
    fn a_changed_byte_changes_the_signature() {
        let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let a = sign(&secret, "msg_1", 1, b"{}");
        assert_ne!(a, sign(&secret, "msg_1", 2, b"{}"));
        assert_ne!(a, sign(&secret, "msg_2", 1, b"{}"));
        assert_ne!(a, sign(&secret, "msg_1", 1, b"{ }"));
    }
}
