//! The order state machine (SPEC §1) as one table. Every status change in vpsd goes
//! through [`apply`]; there is no other way to change `Order::status`.

use super::order::{HistoryEntry, Order, OrderStatus};
use super::time::Millis;
use uuid::Uuid;

/// Something that happens to an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Event {
    /// Admin: payment-status PAID.
    Paid,
    /// Admin: payment-status PAYMENT_FAILED. A payment event, not a status.
    PaymentFailed,
    /// Admin, or the owning user, cancels an unpaid order.
    Cancel,
    /// System: the provisioner takes the task.
    StartProvisioning,
    /// System: droplet active with a public IPv4.
    ProvisioningSucceeded,
    /// System: droplet errored, creation rejected, or timeout.
    ProvisioningFailed,
    /// Admin: retry-provisioning.
    RetryProvisioning,
}

impl Event {
    pub const ALL: [Event; 7] = [
        Event::Paid,
        Event::PaymentFailed,
        Event::Cancel,
        Event::StartProvisioning,
        Event::ProvisioningSucceeded,
        Event::ProvisioningFailed,
        Event::RetryProvisioning,
    ];

    /// The status the call would set, as reported in conflict details.
    pub fn requested_status(self) -> &'static str {
        match self {
            Event::Paid => "PAID",
            Event::PaymentFailed => "PAYMENT_FAILED",
            Event::Cancel => "CANCELED",
            Event::StartProvisioning | Event::RetryProvisioning => "PROVISIONING",
            Event::ProvisioningSucceeded => "ACTIVE",
            Event::ProvisioningFailed => "FAILED",
        }
    }

    /// Payment events conflict as PAYMENT_STATUS_CONFLICT, the rest as ORDER_STATUS_CONFLICT.
    pub fn is_payment(self) -> bool {
        matches!(self, Event::Paid | Event::PaymentFailed)
    }
}

/// What an event does from a given status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The order moves to this status.
    MoveTo(OrderStatus),
    /// The order stays; only a history row records the event (PAYMENT_FAILED).
    RecordOnly(&'static str),
}

/// The event is not allowed in the order's current status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conflict {
    pub current: OrderStatus,
    pub event: Event,
}

/// The transition table. Anything not listed is a conflict.
pub fn outcome(from: OrderStatus, event: Event) -> Result<Outcome, Conflict> {
    use Event as E;
    use OrderStatus as S;
    match (from, event) {
        (S::PendingPayment, E::Paid) => Ok(Outcome::MoveTo(S::Paid)),
        (S::PendingPayment, E::PaymentFailed) => Ok(Outcome::RecordOnly("PAYMENT_FAILED")),
        (S::PendingPayment, E::Cancel) => Ok(Outcome::MoveTo(S::Canceled)),
        (S::Paid, E::StartProvisioning) => Ok(Outcome::MoveTo(S::Provisioning)),
        (S::Provisioning, E::ProvisioningSucceeded) => Ok(Outcome::MoveTo(S::Active)),
        (S::Provisioning, E::ProvisioningFailed) => Ok(Outcome::MoveTo(S::Failed)),
        (S::Failed, E::RetryProvisioning) => Ok(Outcome::MoveTo(S::Provisioning)),
        (current, event) => Err(Conflict { current, event }),
    }
}

/// Context written into the history row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Note {
    pub actor: String,
    pub reason: Option<String>,
    /// JSON object text.
    pub metadata: Option<String>,
}

/// Applies `event` to `order` at time `now`, returning the history row that must be
/// written in the same transaction. On conflict the order is untouched.
pub fn apply(
    order: &mut Order,
    event: Event,
    note: Note,
    now: Millis,
) -> Result<HistoryEntry, Conflict> {
    let from = order.status;
    let new_status = match outcome(from, event)? {
        Outcome::MoveTo(to) => {
            order.status = to;
            if to == OrderStatus::Paid {
                order.paid_at = Some(now);
            }
            order.updated_at = now;
            to.as_str()
        }
        Outcome::RecordOnly(name) => {
            order.updated_at = now;
            name
        }
    };
    order.history_len = order.history_len.saturating_add(1);
    Ok(HistoryEntry {
        id: Uuid::new_v4(),
        previous_status: from.as_str().to_string(),
        new_status: new_status.to_string(),
        actor: note.actor,
        reason: note.reason,
        metadata: note.metadata,
        created_at: now,
    })
}

/// The first history row of every order.
pub fn first_entry(order: &mut Order, actor: String, now: Millis) -> HistoryEntry {
    order.history_len = 1;
    HistoryEntry {
        id: Uuid::new_v4(),
        previous_status: String::new(),
        new_status: OrderStatus::PendingPayment.as_str().to_string(),
        actor,
        reason: None,
        metadata: None,
        created_at: now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::order::*;
    use proptest::prelude::*;

    fn new_order() -> Order {
        test_order("u")
    }

    /// Statuses reachable from PENDING_PAYMENT by walking the table.
    fn reachable(status: OrderStatus) -> bool {
        let mut seen = vec![OrderStatus::PendingPayment];
        let mut i = 0;
        while i < seen.len() {
            for event in Event::ALL {
                if let Ok(Outcome::MoveTo(to)) = outcome(seen[i], event) {
                    if !seen.contains(&to) {
                        seen.push(to);
                    }
                }
            }
            i += 1;
        }
        seen.contains(&status)
    }

    proptest! {
        #[test]
        fn any_event_sequence_keeps_the_invariants(events in proptest::collection::vec(0usize..7, 0..40)) {
            let mut order = new_order();
            let mut history = vec![first_entry(&mut order, "user:u".into(), 0)];
            let mut ever_paid = false;
            for (i, idx) in events.into_iter().enumerate() {
                let event = Event::ALL[idx];
                let before = order.clone();
                match apply(&mut order, event, Note::default(), i as i64 + 1) {
                    Ok(row) => {
                        prop_assert!(!before.status.is_terminal(), "terminal {:?} changed by {:?}", before.status, event);
                        prop_assert_eq!(row.previous_status.as_str(), before.status.as_str());
                        if event == Event::Paid { ever_paid = true; }
                        history.push(row);
                    }
                    Err(conflict) => {
                        prop_assert_eq!(&order, &before, "a conflict must change nothing");
                        prop_assert_eq!(conflict.current, before.status);
                    }
                }
                prop_assert!(reachable(order.status));
                prop_assert_eq!(order.paid_at.is_some(), ever_paid);
                prop_assert_eq!(order.history_len as usize, history.len());
            }
            // Chain: each row starts where the last real status change ended; payment
            // events (PAYMENT_FAILED) are skipped because they change no status.
            let mut last_status = String::new();
            for row in &history {
                prop_assert_eq!(&row.previous_status, &last_status);
                if OrderStatus::parse(&row.new_status).is_some() {
                    last_status = row.new_status.clone();
                }
            }
            prop_assert_eq!(last_status.as_str(), order.status.as_str());
        }
    }

    #[test]
    fn only_the_listed_transitions_exist() {
        let mut allowed = 0;
        for from in OrderStatus::ALL {
            for event in Event::ALL {
                if outcome(*from, event).is_ok() {
                    allowed += 1;
                }
            }
        }
        assert_eq!(allowed, 7);
        assert!(outcome(OrderStatus::Active, Event::Cancel).is_err());
        assert!(outcome(OrderStatus::Paid, Event::Paid).is_err());
    }

    #[test]
    fn payment_failed_keeps_the_order_pending() {
        let mut order = new_order();
        let row = apply(&mut order, Event::PaymentFailed, Note::default(), 5).unwrap();
        assert_eq!(order.status, OrderStatus::PendingPayment);
        assert_eq!(row.previous_status, "PENDING_PAYMENT");
        assert_eq!(row.new_status, "PAYMENT_FAILED");
        assert_eq!(order.paid_at, None);
    }
}
