//! What the lifecycle's test modules share: a new order, an ACTIVE one, a
//! rule's sample command, and persisting a change as the store does.

use super::*;
use crate::domain::order::test_order;

pub(super) fn new_record() -> (OrderRecord, Vec<crate::domain::HistoryEntry>) {
    let change = create(test_order("u"), &Actor::User("u".into()), 0);
    let record = OrderRecord {
        order: change.order,
        task: None,
    };
    (record, change.history)
}

/// The first sample of `event`, for tests that need one of its commands.
pub(super) fn sample(event: Event) -> Command {
    match event.rule().samples(0).into_iter().next() {
        Some(command) => command,
        None => panic!("{event:?} has no sample command"),
    }
}

/// Persists a change the way the store does, so the next decision sees it.
pub(super) fn persist(record: &mut OrderRecord, change: &Change) {
    record.order = change.order.clone();
    if let TaskEffect::Write(task) = &change.task {
        record.task = Some((**task).clone());
    }
}

pub(super) fn active_record(now: Millis) -> OrderRecord {
    let (mut record, _) = new_record();
    let policy = Policy::default();
    for event in [
        Event::Paid,
        Event::StartProvisioning,
        Event::ProvisioningSucceeded,
    ] {
        let change = decide(&record, sample(event), &Actor::System, now, &policy).unwrap();
        persist(&mut record, &change);
    }
    record
}
