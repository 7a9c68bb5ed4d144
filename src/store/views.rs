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
//! invalidations (`generation`), a miss hands the reader the count before it
//! opens its snapshot, and an offer is taken only if no invalidation happened
//! since.
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

impl Rendered {
    /// What it counts against [`BUDGET_BYTES`].
    fn size(&self) -> usize {
        self.body.len() + self.owner.len()
    }
}

/// What a look into the cache found.
pub enum Lookup {
    Hit(Arc<Rendered>),
    /// Render from a snapshot opened after this, then offer it with the
    /// generation given here.
    Miss {
        generation: u64,
    },
}

#[derive(Default)]
pub struct ViewCache {
    inner: Mutex<Inner>,
    /// Keeps nothing: on a database other instances write too, no commit
    /// of theirs would drop this instance's renderings (SPEC §15).
    off: bool,
}

#[derive(Default)]
struct Inner {
    generation: u64,
    bytes: usize,
    entries: HashMap<u128, Arc<Rendered>>,
}

impl ViewCache {
    /// A cache that never keeps anything: every lookup misses.
    pub fn off() -> ViewCache {
        ViewCache {
            inner: Mutex::default(),
            off: true,
        }
    }

    pub fn lookup(&self, id: u128) -> Lookup {
        let inner = self.lock();
        match inner.entries.get(&id) {
            Some(hit) => Lookup::Hit(hit.clone()),
            None => Lookup::Miss {
                generation: inner.generation,
            },
        }
    }

    /// Keeps `body` unless an order changed since the miss that gave
    /// `generation`.
    pub fn offer(&self, generation: u64, id: u128, owner: &str, body: &[u8]) {
        if self.off || body.len() > MAX_ENTRY_BYTES {
            return;
        }
        let mut inner = self.lock();
        if inner.generation != generation {
            return;
        }
        let rendered = Arc::new(Rendered {
            owner: owner.into(),
            body: body.into(),
        });
        let size = rendered.size();
        if inner.bytes + size > BUDGET_BYTES {
            inner.entries.clear();
            inner.bytes = 0;
        }
        if let Some(old) = inner.entries.insert(id, rendered) {
            inner.bytes -= old.size();
        }
        inner.bytes += size;
    }

    /// Called by the writer after a commit that changed these orders.
    pub(crate) fn invalidate(&self, ids: &[u128]) {
        let mut inner = self.lock();
        inner.generation = inner.generation.wrapping_add(1);
        for id in ids {
            if let Some(old) = inner.entries.remove(id) {
                inner.bytes -= old.size();
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

    fn miss(cache: &ViewCache, id: u128) -> u64 {
        match cache.lookup(id) {
            Lookup::Miss { generation } => generation,
            Lookup::Hit(_) => panic!("{id} is kept"),
        }
    }

    fn hit(cache: &ViewCache, id: u128) -> Arc<Rendered> {
        match cache.lookup(id) {
            Lookup::Hit(rendered) => rendered,
            Lookup::Miss { .. } => panic!("{id} is not kept"),
        }
    }

    #[test]
    fn an_offer_from_before_an_invalidation_is_refused() {
        let cache = ViewCache::default();
        let seen = miss(&cache, 7);
        cache.invalidate(&[7]);
        cache.offer(seen, 7, "alice", b"stale");
        let now = miss(&cache, 7);
        cache.offer(now, 7, "alice", b"fresh");
        assert_eq!(&*hit(&cache, 7).body, b"fresh");
    }

    #[test]
    fn invalidation_drops_only_the_changed_orders() {
        let cache = ViewCache::default();
        let g = miss(&cache, 1);
        cache.offer(g, 1, "a", b"one");
        cache.offer(g, 2, "b", b"two");
        cache.invalidate(&[1]);
        miss(&cache, 1);
        assert_eq!(&*hit(&cache, 2).owner, "b");
    }

    #[test]
    fn the_budget_holds_and_large_renderings_are_not_kept() {
        let cache = ViewCache::default();
        let g = miss(&cache, 0);
        cache.offer(g, 0, "a", &vec![b'x'; MAX_ENTRY_BYTES + 1]);
        miss(&cache, 0);
        let body = vec![b'x'; MAX_ENTRY_BYTES];
        for id in 0..(2 * BUDGET_BYTES / MAX_ENTRY_BYTES) as u128 {
            cache.offer(g, id, "a", &body);
            assert!(cache.lock().bytes <= BUDGET_BYTES);
        }
    }
}
