//! Record encoding: one format-version byte, then bincode (standard config).
//! bincode carries no field names, so a changed record layout must get a new
//! version byte and an explicit migration here; a record of an unknown version is
//! reported as corrupt instead of being misread.

use serde::{de::DeserializeOwned, Serialize};

/// The layout version of every record written by this build.
pub const RECORD_VERSION: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("record is empty")]
    Empty,
    #[error("record format version {0} is not supported by this vpsd")]
    UnknownVersion(u8),
    #[error("record does not decode: {0}")]
    Malformed(String),
    #[error("record has {0} trailing bytes")]
    Trailing(usize),
}

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![RECORD_VERSION];
    // Encoding plain structs of strings and integers into a Vec cannot fail;
    // an error here would be a bug in a serde derive, so it is reported as an
    // empty body that decode rejects rather than a panic.
    if bincode::serde::encode_into_std_write(value, &mut out, bincode::config::standard()).is_err()
    {
        out.truncate(1);
    }
    out
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (&version, body) = bytes.split_first().ok_or(CodecError::Empty)?;
    if version != RECORD_VERSION {
        return Err(CodecError::UnknownVersion(version));
    }
    let (value, used) = bincode::serde::decode_from_slice(body, bincode::config::standard())
        .map_err(|e| CodecError::Malformed(e.to_string()))?;
    if used != body.len() {
        return Err(CodecError::Trailing(body.len() - used));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Actor, HistoryEntry, HistoryStatus, OrderStatus};
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn history_rows_round_trip(prev in proptest::option::of(0..OrderStatus::ALL.len()), new in 0..HistoryStatus::ALL.len(), sub in ".*", reason in proptest::option::of(".*"), at in any::<i64>()) {
            let row = HistoryEntry {
                id: uuid::Uuid::new_v4(),
                previous_status: prev.map(|i| OrderStatus::ALL[i]),
                new_status: HistoryStatus::ALL[new],
                actor: Actor::User(sub),
                reason,
                metadata: None,
                created_at: at,
            };
            let back: HistoryEntry = decode(&encode(&row)).unwrap();
            prop_assert_eq!(back, row);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode::<HistoryEntry>(&bytes);
        }
    }

    #[test]
    fn unknown_versions_and_trailing_bytes_are_rejected() {
        let mut bytes = encode(&7u32);
        bytes[0] = 9;
        assert!(matches!(
            decode::<u32>(&bytes),
            Err(CodecError::UnknownVersion(9))
        ));
        let mut bytes = encode(&7u32);
        bytes.push(0);
        assert!(matches!(
            decode::<u32>(&bytes),
            Err(CodecError::Trailing(1))
        ));
    }
}
