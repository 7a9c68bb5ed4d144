//! What an idempotency key replays (SPEC §2, §12): the outcome of the first
//! request as data, rendered again by the API on every replay, so a replay is
//! byte-for-byte the first response. Nothing here is HTTP: the API alone
//! turns an outcome into a status and a body.

use super::error::{AppError, Rejection};
use super::record::OrderRecord;

/// A stored outcome.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Replay {
    /// The order record or the refusal, rendered again by the API on every
    /// replay (rendering is deterministic, so a replay is byte-for-byte the
    /// first response).
    Outcome(Box<Result<OrderRecord, AppError>>),
    /// A response a vpsd before outcomes were kept as data rendered and stored
    /// (record version 1); replayed exactly as stored until its key expires.
    Legacy(LegacyReply),
}

/// A response an older vpsd stored already rendered. Opaque below the API:
/// only whether it succeeded means anything here; the API sends it back as
/// it was sent. Its layout (a `u16` then the bytes) is the stored one.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LegacyReply {
    status: u16,
    body: Vec<u8>,
}

impl LegacyReply {
    /// Wraps what a version-1 record held.
    pub fn new(status: u16, body: Vec<u8>) -> LegacyReply {
        LegacyReply { status, body }
    }

    /// Whether the first request completed (a 2xx response).
    pub fn succeeded(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The status line's code and the body, exactly as first sent: for the
    /// API to send again.
    pub fn into_sent(self) -> (u16, Vec<u8>) {
        (self.status, self.body)
    }
}

/// What an idempotency key keeps of an operation's result, or `None` when a
/// repeat might meet another answer (see [`AppError::is_replayable`]) and so
/// nothing may be stored.
///
/// Neither the SSH keys nor the renewals are rendered in a reply (renewals
/// only in the admin detail, with the history): dropping the keys (up to 64
/// KiB) and the renewals (one more per renewal) keeps a stored reply small
/// (SPEC §12: at most 16 KiB, not growing with repetition) and its replay
/// identical.
pub fn kept_outcome(result: &Result<OrderRecord, Rejection>) -> Option<Replay> {
    let mut outcome = result.clone().map_err(AppError::from);
    if let Ok(record) = &mut outcome {
        record.order.droplet.ssh_public_keys.clear();
        record.order.term.renewals.clear();
    }
    if outcome.as_ref().err().is_some_and(|e| !e.is_replayable()) {
        return None;
    }
    Some(Replay::Outcome(Box::new(outcome)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::order::test_order;

    fn record() -> OrderRecord {
        let mut order = test_order("alice");
        order.droplet.ssh_public_keys = vec!["ssh-ed25519 AAAA alice@laptop".into()];
        OrderRecord { order, task: None }
    }

    #[test]
    fn a_kept_success_drops_what_no_reply_renders() {
        let first = record();
        let Some(Replay::Outcome(kept)) = kept_outcome(&Ok(first.clone())) else {
            panic!("a success is kept");
        };
        let kept = (*kept).unwrap();
        assert!(kept.order.droplet.ssh_public_keys.is_empty());
        assert!(kept.order.term.renewals.is_empty());
        assert_eq!(kept.order.id, first.order.id);
    }

    #[test]
    fn a_refusal_is_kept_only_when_a_repeat_meets_it_again() {
        let Some(Replay::Outcome(kept)) = kept_outcome(&Err(Rejection::NotOwner)) else {
            panic!("NotOwner is replayable");
        };
        assert_eq!(*kept, Err(AppError::OrderAccessDenied));
        assert_eq!(kept_outcome(&Err(Rejection::StaleTask)), None);
    }

    #[test]
    fn a_legacy_reply_says_only_whether_it_succeeded() {
        assert!(LegacyReply::new(201, b"{}".to_vec()).succeeded());
        assert!(!LegacyReply::new(409, b"{}".to_vec()).succeeded());
        assert_eq!(
            LegacyReply::new(409, b"x".to_vec()).into_sent(),
            (409, b"x".to_vec())
        );
    }
}
