//! The expiry sweep (SPEC §9): every order whose due time has come (a reminder,
//! a suspension or a termination under `lifecycle.*`) gets a `Tick`, decided by
//! the domain. Found through the `due` index, so a sweep costs O(due orders).

use super::Provisioner;
use crate::backend::store::WriteOp;
use crate::domain::lifecycle::Command;
use crate::domain::time::now_millis;
use crate::domain::Actor;

/// Orders ticked per group of commits; bounds memory on a large backlog.
const CHUNK: usize = 512;

impl Provisioner {
    /// Runs the expiry sweep alone, now (tests, benchmarks).
    #[cfg(any(test, feature = "testing"))]
    pub fn enforce_now(&self) -> usize {
        self.enforce_blocking()
    }

    /// Ticks every due order; returns how many changed.
    pub(super) fn enforce_blocking(&self) -> usize {
        let now = now_millis();
        let mut changed = 0;
        loop {
            let due = match self.store.due_orders(now, CHUNK) {
                Ok(due) => due,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read due orders");
                    return changed;
                }
            };
            let count = due.len();
            let ops = due
                .into_iter()
                .map(|order_id| WriteOp::Apply {
                    order_id,
                    command: Command::Tick,
                    actor: Actor::System,
                    owner: None,
                    idempotency: None,
                })
                .collect();
            for result in self.store.write_all_blocking(ops) {
                match result {
                    Ok(Ok(_)) => changed += 1,
                    Ok(Err(refused)) => tracing::warn!(?refused, "expiry tick refused"),
                    Err(e) => {
                        tracing::error!(error = %e, "expiry tick not stored");
                        return changed;
                    }
                }
            }
            // A tick moves each order's due time past `now` (or drops it), so
            // the next read starts after these; a short read is the last.
            if count < CHUNK || self.standing_down() {
                return changed;
            }
        }
    }
}
