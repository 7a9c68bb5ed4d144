//! Rendered single-order responses, kept until the writer changes the order.
//!
//! A GET of one order spent most of its CPU beyond a bare HTTP answer on the
//! read transaction, the decode and the JSON (BENCHMARKS.md, round 4). The
//! rendered bytes are a pure function of the order and its task, and every
//! change to those goes through the writer thread, which drops the changed
//! orders here after each commit and before it answers anyone: a client that
//! saw its write acknowledged never reads the older rendering.
//!
//! A reader that rendered from a snapshot older than a commit must not put
//! that rendering back after the writer dropped it. So the cache counts
//! invalidations (`generation`), a reader notes the count before it opens its
//! snapshot, and an offer is taken only if no invalidation happened since.
//! The store knows nothing about the bytes' format; the service renders them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// Bytes kept at most. Past it the cache starts over empty: simpler than an
/// eviction order, and a refill costs one ordinary read per order.
const BUDGET_BYTES: usize = 8 << 20;
/// Larger renderings are not kept, so a few unusual orders cannot take the
/// budget from the many ordinary ones.
const MAX_ENTRY_BYTES: usize = 8 << 10;

/// One order's rendering and the user it belongs to, so a hit can still
/// refuse another user's request.
pub struct Rendered {
    pub owner: Box<str>,
    pub body: Box<[u8]>,
}

#[derive(Default)]
pub struct ViewCache {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    generation: u64,
    bytes: usize,
    entries: HashMap<u128, Arc<Rendered>>,
}

impl ViewCache {
    /// Note this before opening the snapshot a rendering will come from.
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    pub fn get(&self, id: u128) -> Option<Arc<Rendered>> {
        self.lock().entries.get(&id).cloned()
    }

    /// Keeps `body` unless an order changed since `generation` was noted.
    pub fn offer(&self, generation: u64, id: u128, owner: &str, body: &[u8]) {
        if body.len() > MAX_ENTRY_BYTES {
            return;
        }
        let mut inner = self.lock();
        if inner.generation != generation {
            return;
        }
        let size = body.len() + owner.len();
        if inner.bytes + size > BUDGET_BYTES {
            inner.entries.clear();
            inner.bytes = 0;
        }
        let rendered = Arc::new(Rendered {
            owner: owner.into(),
            body: body.into(),
        });
        if let Some(old) = inner.entries.insert(id, rendered) {
            inner.bytes -= old.body.len() + old.owner.len();
        }
        inner.bytes += size;
    }

    /// Called by the writer after a commit that changed these orders.
    pub(crate) fn invalidate(&self, ids: &[u128]) {
        let mut inner = self.lock();
        inner.generation = inner.generation.wrapping_add(1);
        for id in ids {
            if let Some(old) = inner.entries.remove(id) {
                inner.bytes -= old.body.len() + old.owner.len();
            }
        }
    }

    /// After a failed or uncertain commit: nothing kept can be trusted.
    pub(crate) fn clear(&self) {
        let mut inner = self.lock();
        inner.generation = inner.generation.wrapping_add(1);
        inner.entries.clear();
        inner.bytes = 0;
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The guarded state is valid after any panic between its statements
        // (each is a whole update of plain data), so a poisoned lock is used.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offer_from_before_an_invalidation_is_refused() {
        let cache = ViewCache::default();
        let seen = cache.generation();
        cache.invalidate(&[7]);
        cache.offer(seen, 7, "alice", b"stale");
        assert!(cache.get(7).is_none());
        cache.offer(cache.generation(), 7, "alice", b"fresh");
        assert_eq!(&*cache.get(7).map(|r| r.body.clone()).unwrap(), b"fresh");
    }

    #[test]
    fn invalidation_drops_only_the_changed_orders() {
        let cache = ViewCache::default();
        let g = cache.generation();
        cache.offer(g, 1, "a", b"one");
        cache.offer(g, 2, "b", b"two");
        cache.invalidate(&[1]);
        assert!(cache.get(1).is_none());
        assert_eq!(&*cache.get(2).unwrap().owner, "b");
    }

    #[test]
    fn the_budget_holds_and_large_renderings_are_not_kept() {
        let cache = ViewCache::default();
        let g = cache.generation();
        cache.offer(g, 0, "a", &vec![b'x'; MAX_ENTRY_BYTES + 1]);
        assert!(cache.get(0).is_none());
        let body = vec![b'x'; MAX_ENTRY_BYTES];
        for id in 0..(2 * BUDGET_BYTES / MAX_ENTRY_BYTES) as u128 {
            cache.offer(g, id, "a", &body);
            assert!(cache.lock().bytes <= BUDGET_BYTES);
        }
    }
}
