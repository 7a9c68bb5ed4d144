//! Auto-renew (SPEC §14): the owner's wish that the billing system renew the
//! order by itself. vpsd only stores and shows it; it never charges, and the
//! renewal, when it comes, is the billing system's `Renew` as any other.
//!
//! Not a row of the transition table: the status stays, the history gets no
//! row and no event is sent (the next event carries the order with it). It
//! is accepted in every status, as the SPEC sets no condition on a wish: on
//! an order that can no longer be renewed it is simply never acted on.

use super::draft::Draft;

pub(super) fn set(d: &mut Draft<'_>, on: bool) {
    if d.order.auto_renew != on {
        d.order.auto_renew = on;
        d.order.updated_at = d.now;
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::new_record;
    use super::super::*;

    fn set_on(record: &OrderRecord, on: bool, now: Millis) -> Change {
        let command = Command::SetAutoRenew { on };
        let actor = Actor::User("u".into());
        decide(record, command, &actor, now, &Policy::default()).expect("never refused")
    }

    #[test]
    fn the_wish_is_stored_without_a_row_an_event_or_a_move() {
        for status in OrderStatus::ALL {
            let (mut record, _) = new_record();
            record.order.status = *status;
            let change = set_on(&record, true, 50);
            assert!(change.order.auto_renew);
            assert_eq!(change.order.status, *status);
            assert_eq!(change.order.updated_at, 50);
            assert!(change.history.is_empty() && change.events.is_empty());
            assert_eq!(change.order.history_len, record.order.history_len);
            assert_eq!(change.task, TaskEffect::Unchanged);
        }
    }

    #[test]
    fn asking_for_what_is_stored_changes_nothing() {
        let (record, _) = new_record();
        let change = set_on(&record, false, 50);
        assert_eq!(change.order, record.order);
        let on = set_on(&record, true, 60);
        let record = OrderRecord {
            order: on.order,
            task: None,
        };
        assert_eq!(set_on(&record, true, 70).order.updated_at, 60);
        assert!(!set_on(&record, false, 80).order.auto_renew);
    }
}
