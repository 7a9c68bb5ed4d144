//! Stored idempotency keys and how many each caller holds (SPEC §2, §12).
//!
//! A key lives in three places, all written in the transaction that stores its
//! outcome: the record (`idempotency`), the global expiry order the hourly
//! sweep walks (`idempotency_expiry`), and the caller's own expiry order
//! (`idempotency_by_scope`), beside a count per caller in `counts`. The count
//! makes the per-caller limit one lookup, and the caller's expiry order tells
//! a refused caller when its oldest key ends and lets its expired keys be
//! removed at once, without a walk over anyone else's.
//!
//! The rule: a key counts from the commit that stores it until it is removed,
//! which happens at the hourly sweep after it expires, or earlier when its
//! caller reaches the limit (the caller's expired keys are removed first, so
//! a refusal only ever counts live keys). A key used again after it expired
//! but before its removal reuses its row and is not counted twice.

use redb::{ReadableDatabase, ReadableTable};

use super::tables::{self, count_key, CountScope};
use super::txn::{bump, Tables};
use super::{codec, storage_err, IdempotencyRecord, Store, StoreError};

/// Highest string in redb's byte order: keys are printable ASCII, scopes
/// `user:{sub}` or `internal`, so this bounds every range's upper end.
const MAX_STR: &str = "\u{10FFFF}";

/// What a caller holds: the count of its stored keys and when its oldest
/// stored key expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyUsage {
    pub stored: u64,
    pub oldest_expiry: Option<i64>,
}

impl Store {
    /// How many keys `scope` holds and when its oldest expires: two lookups.
    pub fn idempotency_usage(&self, scope: &str) -> Result<KeyUsage, StoreError> {
        let txn = self.database()?.begin_read().map_err(storage_err)?;
        let counts = txn.open_table(tables::COUNTS).map_err(storage_err)?;
        let stored = counts
            .get(count_key(CountScope::IdempotencyKeys(scope)).as_str())
            .map_err(storage_err)?
            .map_or(0, |v| v.value());
        let by_scope = txn
            .open_table(tables::IDEMPOTENCY_BY_SCOPE)
            .map_err(storage_err)?;
        let oldest_expiry = match by_scope
            .range((scope, i64::MIN, "")..=(scope, i64::MAX, MAX_STR))
            .map_err(storage_err)?
            .next()
        {
            Some(entry) => Some(entry.map_err(storage_err)?.0.value().1),
            None => None,
        };
        Ok(KeyUsage {
            stored,
            oldest_expiry,
        })
    }
}

/// Stores `record` under (scope, key), replacing an expired one that was not
/// removed yet; only a new row adds to the caller's count.
pub(crate) fn put(
    t: &mut Tables<'_>,
    scope: &str,
    key: &str,
    record: &IdempotencyRecord,
) -> Result<(), StoreError> {
    let replaced = t
        .idempotency
        .insert((scope, key), codec::encode(record).as_slice())
        .map_err(storage_err)?
        .map(|old| codec::decode::<IdempotencyRecord>(old.value()).map(|r| r.expires_at));
    match replaced {
        None => bump(t, CountScope::IdempotencyKeys(scope), 1),
        Some(Ok(at)) => {
            t.idempotency_by_scope
                .remove((scope, at, key))
                .map_err(storage_err)?;
        }
        // Counted when it was stored; its old scope entry cannot be found
        // without its expiry, and `vpsd verify` names the leftover.
        Some(Err(e)) => {
            tracing::warn!(scope, key, error = %e, "replaced an idempotency record that does not decode")
        }
    }
    t.idempotency_expiry
        .insert((record.expires_at, scope, key), ())
        .map_err(storage_err)?;
    t.idempotency_by_scope
        .insert((scope, record.expires_at, key), ())
        .map_err(storage_err)?;
    Ok(())
}

/// Deletes every key that expired at or before `now`; returns how many expiry
/// entries it consumed (the hourly sweep's count).
pub(crate) fn sweep(t: &mut Tables<'_>, now: i64) -> Result<u64, StoreError> {
    let mut expired = Vec::new();
    for entry in t
        .idempotency_expiry
        .range((i64::MIN, "", "")..=(now, MAX_STR, MAX_STR))
        .map_err(storage_err)?
    {
        let (key, _) = entry.map_err(storage_err)?;
        let (at, scope, k) = key.value();
        expired.push((at, scope.to_string(), k.to_string()));
    }
    for (at, scope, key) in &expired {
        t.idempotency_expiry
            .remove((*at, scope.as_str(), key.as_str()))
            .map_err(storage_err)?;
        // A key stored again later has a newer expiry entry; only delete a
        // record that has expired itself.
        let current = match t
            .idempotency
            .get((scope.as_str(), key.as_str()))
            .map_err(storage_err)?
        {
            Some(bytes) => codec::decode::<IdempotencyRecord>(bytes.value()).ok(),
            None => None,
        };
        if let Some(record) = current.filter(|r| r.expires_at <= now) {
            remove(t, scope, key, record.expires_at)?;
        }
    }
    Ok(expired.len() as u64)
}

/// Deletes `scope`'s keys that expired at or before `now`; returns how many.
/// Each key is removed once, so over a caller's life this costs O(1) a key.
pub(crate) fn sweep_scope(t: &mut Tables<'_>, scope: &str, now: i64) -> Result<u64, StoreError> {
    let mut expired = Vec::new();
    for entry in t
        .idempotency_by_scope
        .range((scope, i64::MIN, "")..=(scope, now, MAX_STR))
        .map_err(storage_err)?
    {
        let (key, _) = entry.map_err(storage_err)?;
        let (_, at, k) = key.value();
        expired.push((at, k.to_string()));
    }
    for (at, key) in &expired {
        let current = t
            .idempotency
            .get((scope, key.as_str()))
            .map_err(storage_err)?
            .map(|bytes| codec::decode::<IdempotencyRecord>(bytes.value()).map(|r| r.expires_at));
        match current {
            // A stale entry (see `put`): the record itself lives on.
            Some(Ok(stored)) if stored != *at => {
                t.idempotency_by_scope
                    .remove((scope, *at, key.as_str()))
                    .map_err(storage_err)?;
            }
            _ => remove(t, scope, key, *at)?,
        }
    }
    Ok(expired.len() as u64)
}

/// Removes one stored key from the record table, both expiry orders and its
/// caller's count.
fn remove(t: &mut Tables<'_>, scope: &str, key: &str, expires_at: i64) -> Result<(), StoreError> {
    if t.idempotency
        .remove((scope, key))
        .map_err(storage_err)?
        .is_some()
    {
        bump(t, CountScope::IdempotencyKeys(scope), -1);
    }
    t.idempotency_expiry
        .remove((expires_at, scope, key))
        .map_err(storage_err)?;
    t.idempotency_by_scope
        .remove((scope, expires_at, key))
        .map_err(storage_err)?;
    Ok(())
}

/// Schema 5: the per-caller expiry order and counts, built from the keys an
/// older file holds. A record that does not decode is left for `vpsd verify`
/// to name; start-up does not fail over a key.
pub(crate) fn index_existing(txn: &redb::WriteTransaction) -> Result<u64, redb::Error> {
    let mut per_scope = std::collections::BTreeMap::<String, u64>::new();
    {
        let records = txn.open_table(tables::IDEMPOTENCY)?;
        let mut by_scope = txn.open_table(tables::IDEMPOTENCY_BY_SCOPE)?;
        for entry in records.iter()? {
            let (k, v) = entry?;
            let (scope, key) = k.value();
            let Ok(record) = codec::decode::<IdempotencyRecord>(v.value()) else {
                tracing::warn!(
                    scope,
                    key,
                    "an idempotency record does not decode; not counted"
                );
                continue;
            };
            by_scope.insert((scope, record.expires_at, key), ())?;
            *per_scope.entry(scope.to_string()).or_default() += 1;
        }
    }
    let mut counts = txn.open_table(tables::COUNTS)?;
    let mut total = 0;
    for (scope, n) in per_scope {
        counts.insert(count_key(CountScope::IdempotencyKeys(&scope)).as_str(), n)?;
        total += n;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use redb::ReadableDatabase;

    use super::*;
    use crate::backend::store::{Maintenance, Replay};

    fn record(expires_at: i64) -> Box<IdempotencyRecord> {
        Box::new(IdempotencyRecord {
            fingerprint: [7; 32],
            outcome: Replay::Legacy(crate::domain::replay::LegacyReply::new(400, b"{}".to_vec())),
            expires_at,
        })
    }

    fn store_key(store: &Store, scope: &str, key: &str, expires_at: i64) {
        let work = Maintenance::StoreResponse {
            scope: scope.into(),
            key: key.into(),
            record: record(expires_at),
        };
        store.writer().maintain_blocking(work).unwrap();
    }

    /// Schema 4 kept keys without per-caller counts: opening such a file
    /// counts them, and `vpsd verify` accepts it before and after.
    #[test]
    fn an_older_files_keys_are_counted_when_it_opens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v4.redb");
        let store = Store::open(&path).unwrap();
        store_key(&store, "user:a", "k1", 5_000);
        store_key(&store, "user:a", "k2", 3_000);
        store_key(&store, "internal", "k1", 9_000);
        store.shutdown();
        drop(store);
        {
            let db = redb::Database::open(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.delete_table(tables::IDEMPOTENCY_BY_SCOPE).unwrap();
            {
                let mut counts = txn.open_table(tables::COUNTS).unwrap();
                counts.retain(|k, _| !k.starts_with("ik:")).unwrap();
                let mut meta = txn.open_table(tables::META).unwrap();
                meta.insert(tables::META_SCHEMA_VERSION, 4).unwrap();
            }
            txn.commit().unwrap();
        }
        crate::backend::store::backup::verify(&path).expect("a schema 4 file verifies");

        let store = Store::open(&path).unwrap();
        let usage = store.idempotency_usage("user:a").unwrap();
        assert_eq!((usage.stored, usage.oldest_expiry), (2, Some(3_000)));
        assert_eq!(store.idempotency_usage("internal").unwrap().stored, 1);
        assert_eq!(store.idempotency_usage("user:b").unwrap().stored, 0);
        store.shutdown();
        drop(store);
        crate::backend::store::backup::verify(&path).expect("the migrated file verifies");
    }

    /// Storing a key again, sweeping one caller and sweeping everyone keep
    /// the count, both expiry orders and the records in step.
    #[test]
    fn counts_follow_every_write_and_sweep() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.redb");
        let store = Store::open(&path).unwrap();
        store_key(&store, "user:a", "k1", 1_000);
        store_key(&store, "user:a", "k2", 2_000);
        store_key(&store, "user:b", "k1", 1_000);
        // k1 used again after it expired: the same row, a new expiry.
        store_key(&store, "user:a", "k1", 9_000);
        let usage = store.idempotency_usage("user:a").unwrap();
        assert_eq!((usage.stored, usage.oldest_expiry), (2, Some(2_000)));

        let sweep = Maintenance::SweepIdempotencyScope {
            scope: "user:a".into(),
            now: 5_000,
        };
        assert_eq!(store.writer().maintain_blocking(sweep).unwrap(), 1);
        let usage = store.idempotency_usage("user:a").unwrap();
        assert_eq!((usage.stored, usage.oldest_expiry), (1, Some(9_000)));
        assert_eq!(store.idempotency_usage("user:b").unwrap().stored, 1);

        let sweep = Maintenance::SweepIdempotency { now: 5_000 };
        store.writer().maintain_blocking(sweep).unwrap();
        assert_eq!(store.idempotency_usage("user:b").unwrap().stored, 0);
        assert!(store.idempotency("user:a", "k1").unwrap().is_some());
        store.shutdown();
        drop(store);
        crate::backend::store::backup::verify(&path).expect("consistent after sweeps");

        let db = redb::Database::open(&path).unwrap();
        let txn = db.begin_read().unwrap();
        let counts = txn.open_table(tables::COUNTS).unwrap();
        assert!(
            counts.get("ik:user:b").unwrap().is_none(),
            "a zero count is no row"
        );
    }
}
