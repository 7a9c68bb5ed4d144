//! Every decision about an order, in one pure place (SPEC §1). [`decide`] takes the
//! current record, a [`Command`], the actor and the time, and returns the whole
//! [`Change`] (new order, history rows, task and coupon effects, outgoing events)
//! or a [`Conflict`]. The store only persists a `Change`; there is no other way
//! to change `Order::status`.

use uuid::Uuid;

use super::order::{Actor, HistoryEntry, HistoryStatus, Order, OrderStatus};
use super::record::OrderRecord;
use super::task::ProvisioningTask;
use super::time::Millis;

/// What someone asks of an order, with the data the history row records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Admin: payment-status PAID.
    Pay { notes: Option<String> },
    /// Admin: payment-status PAYMENT_FAILED. A payment event, not a status.
    PaymentFailed { notes: Option<String> },
    /// Admin, or the owning user, cancels an unpaid order.
    Cancel { reason: Option<String> },
    /// System: the provisioner takes the task.
    StartProvisioning,
    /// System: droplet active with a public IPv4. `metadata` is JSON object text.
    ProvisioningSucceeded { metadata: Option<String> },
    /// System: droplet errored, creation rejected, or timeout.
    ProvisioningFailed {
        message: String,
        metadata: Option<String>,
    },
    /// Admin: retry-provisioning.
    RetryProvisioning,
}

/// A command's kind: what the transition table and conflicts speak of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Event {
    Paid,
    PaymentFailed,
    Cancel,
    StartProvisioning,
    ProvisioningSucceeded,
    ProvisioningFailed,
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
    pub fn requested_status(self) -> HistoryStatus {
        match self {
            Event::Paid => HistoryStatus::Paid,
            Event::PaymentFailed => HistoryStatus::PaymentFailed,
            Event::Cancel => HistoryStatus::Canceled,
            Event::StartProvisioning | Event::RetryProvisioning => HistoryStatus::Provisioning,
            Event::ProvisioningSucceeded => HistoryStatus::Active,
            Event::ProvisioningFailed => HistoryStatus::Failed,
        }
    }

    /// Payment events conflict as PAYMENT_STATUS_CONFLICT, the rest as ORDER_STATUS_CONFLICT.
    pub fn is_payment(self) -> bool {
        matches!(self, Event::Paid | Event::PaymentFailed)
    }
}

impl Command {
    pub fn event(&self) -> Event {
        match self {
            Command::Pay { .. } => Event::Paid,
            Command::PaymentFailed { .. } => Event::PaymentFailed,
            Command::Cancel { .. } => Event::Cancel,
            Command::StartProvisioning => Event::StartProvisioning,
            Command::ProvisioningSucceeded { .. } => Event::ProvisioningSucceeded,
            Command::ProvisioningFailed { .. } => Event::ProvisioningFailed,
            Command::RetryProvisioning => Event::RetryProvisioning,
        }
    }

    /// The history row's `reason` and `metadata`.
    fn note(self) -> (Option<String>, Option<String>) {
        match self {
            Command::Pay { notes } | Command::PaymentFailed { notes } => (notes, None),
            Command::Cancel { reason } => (reason, None),
            Command::ProvisioningSucceeded { metadata } => (None, metadata),
            Command::ProvisioningFailed { message, metadata } => (Some(message), metadata),
            Command::StartProvisioning => (None, None),
            Command::RetryProvisioning => (Some("retry provisioning".into()), None),
        }
    }
}

/// What an event does from a given status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The order moves to this status.
    MoveTo(OrderStatus),
    /// The order stays; only a history row records the event (PAYMENT_FAILED).
    RecordOnly(HistoryStatus),
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
        (S::PendingPayment, E::PaymentFailed) => {
            Ok(Outcome::RecordOnly(HistoryStatus::PaymentFailed))
        }
        (S::PendingPayment, E::Cancel) => Ok(Outcome::MoveTo(S::Canceled)),
        (S::Paid, E::StartProvisioning) => Ok(Outcome::MoveTo(S::Provisioning)),
        (S::Provisioning, E::ProvisioningSucceeded) => Ok(Outcome::MoveTo(S::Active)),
        (S::Provisioning, E::ProvisioningFailed) => Ok(Outcome::MoveTo(S::Failed)),
        (S::Failed, E::RetryProvisioning) => Ok(Outcome::MoveTo(S::Provisioning)),
        (current, event) => Err(Conflict { current, event }),
    }
}

/// What happens to the provisioning task with a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskEffect {
    /// The task stays as stored (or the provisioner writes its own observation).
    Unchanged,
    /// Write this task: the durable to-do of a PAID order, or a restarted one.
    Write(Box<ProvisioningTask>),
}

/// What happens to a coupon redemption counted in the data file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CouponEffect {
    None,
    /// An unpaid order was cancelled: its redemption no longer counts.
    Release,
}

/// Events other systems are told about (SPEC §10 types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    Created,
    Paid,
    PaymentFailed,
    Canceled,
    Provisioning,
    Active,
    Failed,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Created => "order.created",
            EventType::Paid => "order.paid",
            EventType::PaymentFailed => "order.payment_failed",
            EventType::Canceled => "order.canceled",
            EventType::Provisioning => "order.provisioning",
            EventType::Active => "order.active",
            EventType::Failed => "order.failed",
        }
    }

    fn for_row(row: HistoryStatus) -> Option<EventType> {
        match row {
            HistoryStatus::PendingPayment => Some(EventType::Created),
            HistoryStatus::Paid => Some(EventType::Paid),
            HistoryStatus::PaymentFailed => Some(EventType::PaymentFailed),
            HistoryStatus::Canceled => Some(EventType::Canceled),
            HistoryStatus::Provisioning => Some(EventType::Provisioning),
            HistoryStatus::Active => Some(EventType::Active),
            HistoryStatus::Failed => Some(EventType::Failed),
        }
    }
}

/// Everything one decision changes; persisted in one transaction or not at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The order as it must be stored (`history_len` already counts `history`).
    pub order: Order,
    /// The order's status before the change; `None` for a new order.
    pub previous_status: Option<OrderStatus>,
    /// New history rows, in order; row numbers follow the stored ones.
    pub history: Vec<HistoryEntry>,
    pub task: TaskEffect,
    pub coupon: CouponEffect,
    /// What other systems are told, one per history row, in commit order.
    pub events: Vec<EventType>,
}

/// Decides `command` on `record` at `now`. On conflict nothing is decided.
pub fn decide(
    record: &OrderRecord,
    command: Command,
    actor: &Actor,
    now: Millis,
) -> Result<Change, Conflict> {
    let from = record.order.status;
    let event = command.event();
    let outcome = outcome(from, event)?;
    let mut order = record.order.clone();
    let row_status = match outcome {
        Outcome::MoveTo(to) => {
            order.status = to;
            if to == OrderStatus::Paid {
                order.paid_at = Some(now);
            }
            HistoryStatus::from(to)
        }
        Outcome::RecordOnly(name) => name,
    };
    order.updated_at = now;
    let (task, coupon) = effects(record, &mut order, event, now);
    let (reason, metadata) = command.note();
    let row = history_row(
        &mut order,
        Some(from),
        row_status,
        actor,
        reason,
        metadata,
        now,
    );
    Ok(Change {
        order,
        previous_status: Some(from),
        history: vec![row],
        task,
        coupon,
        events: EventType::for_row(row_status).into_iter().collect(),
    })
}

/// The task and coupon effects of an allowed event.
fn effects(
    record: &OrderRecord,
    order: &mut Order,
    event: Event,
    now: Millis,
) -> (TaskEffect, CouponEffect) {
    match event {
        Event::Paid => (
            TaskEffect::Write(Box::new(ProvisioningTask::for_paid_order(order, now))),
            CouponEffect::None,
        ),
        Event::Cancel if order.coupon_counted => {
            order.coupon_counted = false;
            (TaskEffect::Unchanged, CouponEffect::Release)
        }
        Event::RetryProvisioning => {
            let mut task = record
                .task
                .clone()
                .unwrap_or_else(|| ProvisioningTask::for_paid_order(order, now));
            task.restart(now);
            (TaskEffect::Write(Box::new(task)), CouponEffect::None)
        }
        _ => (TaskEffect::Unchanged, CouponEffect::None),
    }
}

/// The next history row of `order`, counted on it.
fn history_row(
    order: &mut Order,
    previous_status: Option<OrderStatus>,
    new_status: HistoryStatus,
    actor: &Actor,
    reason: Option<String>,
    metadata: Option<String>,
    now: Millis,
) -> HistoryEntry {
    order.history_len = order.history_len.saturating_add(1);
    HistoryEntry {
        id: Uuid::new_v4(),
        previous_status,
        new_status,
        actor: actor.clone(),
        reason,
        metadata,
        created_at: now,
    }
}

/// A new order: its first history row (`""` -> PENDING_PAYMENT) and `order.created`.
pub fn create(mut order: Order, actor: &Actor, now: Millis) -> Change {
    order.status = OrderStatus::PendingPayment;
    order.history_len = 0;
    let row = history_row(
        &mut order,
        None,
        HistoryStatus::PendingPayment,
        actor,
        None,
        None,
        now,
    );
    Change {
        order,
        previous_status: None,
        history: vec![row],
        task: TaskEffect::Unchanged,
        coupon: CouponEffect::None,
        events: vec![EventType::Created],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::order::*;
    use proptest::prelude::*;

    fn new_record() -> (OrderRecord, Vec<HistoryEntry>) {
        let change = create(test_order("u"), &Actor::User("u".into()), 0);
        let record = OrderRecord {
            order: change.order,
            task: None,
        };
        (record, change.history)
    }

    fn command(event: Event) -> Command {
        match event {
            Event::Paid => Command::Pay { notes: None },
            Event::PaymentFailed => Command::PaymentFailed { notes: None },
            Event::Cancel => Command::Cancel { reason: None },
            Event::StartProvisioning => Command::StartProvisioning,
            Event::ProvisioningSucceeded => Command::ProvisioningSucceeded { metadata: None },
            Event::ProvisioningFailed => Command::ProvisioningFailed {
                message: "x".into(),
                metadata: None,
            },
            Event::RetryProvisioning => Command::RetryProvisioning,
        }
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

    /// Persists a change the way the store does, so the next decision sees it.
    fn persist(record: &mut OrderRecord, change: &Change) {
        record.order = change.order.clone();
        if let TaskEffect::Write(task) = &change.task {
            record.task = Some((**task).clone());
        }
    }

    /// Each row starts where the last real status change ended; event rows
    /// (PAYMENT_FAILED) change no status and are skipped.
    fn assert_chain(history: &[HistoryEntry], status: OrderStatus) -> Result<(), TestCaseError> {
        let mut last: Option<OrderStatus> = None;
        for row in history {
            prop_assert_eq!(row.previous_status, last);
            if let Some(status) = row.new_status.status() {
                last = Some(status);
            }
        }
        prop_assert_eq!(last, Some(status));
        Ok(())
    }

    proptest! {
        #[test]
        fn any_command_sequence_keeps_the_invariants(events in proptest::collection::vec(0usize..7, 0..40)) {
            let (mut record, mut history) = new_record();
            let mut ever_paid = false;
            for (i, idx) in events.into_iter().enumerate() {
                let event = Event::ALL[idx];
                let before = record.order.status;
                match decide(&record, command(event), &Actor::System, i as i64 + 1) {
                    Ok(change) => {
                        prop_assert!(!before.is_terminal(), "terminal {:?} changed by {:?}", before, event);
                        prop_assert_eq!(change.history.len(), 1);
                        prop_assert_eq!(change.history[0].previous_status, Some(before));
                        prop_assert_eq!(change.events.len(), change.history.len());
                        if event == Event::Paid {
                            ever_paid = true;
                            prop_assert!(matches!(&change.task, TaskEffect::Write(t) if t.status == ProvisioningStatus::Pending));
                        }
                        persist(&mut record, &change);
                        history.extend(change.history);
                    }
                    Err(conflict) => {
                        prop_assert_eq!(conflict.current, before);
                        prop_assert_eq!(conflict.event, event);
                    }
                }
                prop_assert!(reachable(record.order.status));
                prop_assert_eq!(record.order.paid_at.is_some(), ever_paid);
                prop_assert_eq!(record.order.history_len as usize, history.len());
            }
            assert_chain(&history, record.order.status)?;
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
        let (record, _) = new_record();
        let change = decide(&record, command(Event::PaymentFailed), &Actor::System, 5).unwrap();
        assert_eq!(change.order.status, OrderStatus::PendingPayment);
        let row = &change.history[0];
        assert_eq!(row.previous_status, Some(OrderStatus::PendingPayment));
        assert_eq!(row.new_status, HistoryStatus::PaymentFailed);
        assert_eq!(change.order.paid_at, None);
        assert_eq!(change.events, vec![EventType::PaymentFailed]);
    }

    #[test]
    fn cancel_releases_a_counted_coupon() {
        let (mut record, _) = new_record();
        record.order.coupon_counted = true;
        let change = decide(&record, command(Event::Cancel), &Actor::System, 5).unwrap();
        assert_eq!(change.coupon, CouponEffect::Release);
        assert!(!change.order.coupon_counted);
    }

    #[test]
    fn retry_restarts_the_stored_task() {
        let (mut record, _) = new_record();
        record.order.status = OrderStatus::Failed;
        let mut task = ProvisioningTask::for_paid_order(&record.order, 1);
        task.status = ProvisioningStatus::Failed;
        task.attempts = 9;
        task.error_code = Some(crate::domain::task::ProvisioningError::ProvisioningTimeout);
        record.task = Some(task.clone());
        let change = decide(
            &record,
            command(Event::RetryProvisioning),
            &Actor::System,
            5,
        )
        .unwrap();
        let TaskEffect::Write(restarted) = change.task else {
            panic!("retry writes the task");
        };
        assert_eq!(restarted.id, task.id);
        assert_eq!(restarted.status, ProvisioningStatus::Pending);
        assert_eq!(restarted.attempts, 0);
        assert_eq!(restarted.error_code, None);
        assert_eq!(restarted.revision, task.revision + 1);
    }
}
