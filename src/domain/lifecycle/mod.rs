//! Every decision about an order, in one pure place (SPEC §1, §9). [`decide`]
//! takes the current record, a [`Command`], the actor, the time and the expiry
//! [`Policy`], and returns the whole [`Change`] (new order, history rows, task and
//! coupon effects, the droplet action owed, outgoing events) or a [`Refused`].
//! The store only persists a `Change`; there is no other way to change
//! `Order::status`.
//!
//! `mod.rs` holds the vocabulary and the transition table; [`draft`] builds a
//! change row by row; [`paid_period`] holds what happens after ACTIVE (§9).

mod draft;
mod paid_period;

use super::expiry::Policy;
use super::order::{Actor, HistoryStatus, Order, OrderStatus, TerminationReason};
use super::record::OrderRecord;
use super::time::Millis;
use draft::Draft;

pub use draft::{Change, CouponEffect, EventType, OutEvent, TaskEffect};

/// v1's `reason` on an order's first history row (SPEC §12).
pub const ORDER_CREATED: &str = "Order created";
/// v1's `reason` on a PAID row when the payment system sent no notes (SPEC §12).
pub const PAID_BY_OVERRIDE: &str = "Payment verified via admin override";

/// A renewal as the payment system reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Renewing {
    /// 1-12 periods of the order's duration.
    pub periods: u32,
    /// What the payment system charged, in the currency's smallest unit.
    pub amount: u64,
    pub renewal_type: super::order::RenewalType,
    pub notes: Option<String>,
}

/// What someone asks of an order, with the data its history row records.
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
    /// Admin: ACTIVE -> SUSPENDED (ADMIN), droplet powered off.
    Suspend { reason: Option<String> },
    /// Admin: SUSPENDED -> ACTIVE, droplet powered on.
    Unsuspend { reason: Option<String> },
    /// Owner (USER_DELETED) or admin: -> TERMINATED, droplets deleted.
    Terminate {
        reason: TerminationReason,
        note: Option<String>,
    },
    /// Admin / payment system: extend `expiresAt` by whole periods.
    Renew(Renewing),
    /// Admin: set `expiresAt` to any instant.
    SetExpiry { at: Millis, reason: Option<String> },
    /// System: whatever is due now (reminders, expiry enforcement).
    Tick,
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
    Suspend,
    Unsuspend,
    /// The owning user's terminate: only from ACTIVE or SUSPENDED.
    TerminateByOwner,
    /// An admin's or the system's terminate: also from FAILED.
    Terminate,
    Renew,
    SetExpiry,
}

impl Event {
    pub const ALL: [Event; 13] = [
        Event::Paid,
        Event::PaymentFailed,
        Event::Cancel,
        Event::StartProvisioning,
        Event::ProvisioningSucceeded,
        Event::ProvisioningFailed,
        Event::RetryProvisioning,
        Event::Suspend,
        Event::Unsuspend,
        Event::TerminateByOwner,
        Event::Terminate,
        Event::Renew,
        Event::SetExpiry,
    ];

    /// The status the call would set, as reported in conflict details.
    pub fn requested_status(self) -> HistoryStatus {
        match self {
            Event::Paid => HistoryStatus::Paid,
            Event::PaymentFailed => HistoryStatus::PaymentFailed,
            Event::Cancel => HistoryStatus::Canceled,
            Event::StartProvisioning | Event::RetryProvisioning => HistoryStatus::Provisioning,
            Event::ProvisioningSucceeded | Event::Unsuspend | Event::Renew | Event::SetExpiry => {
                HistoryStatus::Active
            }
            Event::ProvisioningFailed => HistoryStatus::Failed,
            Event::Suspend => HistoryStatus::Suspended,
            Event::TerminateByOwner | Event::Terminate => HistoryStatus::Terminated,
        }
    }

    /// Payment events conflict as PAYMENT_STATUS_CONFLICT, the rest as ORDER_STATUS_CONFLICT.
    pub fn is_payment(self) -> bool {
        matches!(self, Event::Paid | Event::PaymentFailed)
    }
}

impl Command {
    /// The command's kind; `None` for `Tick`, which the table does not gate
    /// (it decides from the order's own state what, if anything, is due).
    pub fn event(&self) -> Option<Event> {
        Some(match self {
            Command::Pay { .. } => Event::Paid,
            Command::PaymentFailed { .. } => Event::PaymentFailed,
            Command::Cancel { .. } => Event::Cancel,
            Command::StartProvisioning => Event::StartProvisioning,
            Command::ProvisioningSucceeded { .. } => Event::ProvisioningSucceeded,
            Command::ProvisioningFailed { .. } => Event::ProvisioningFailed,
            Command::RetryProvisioning => Event::RetryProvisioning,
            Command::Suspend { .. } => Event::Suspend,
            Command::Unsuspend { .. } => Event::Unsuspend,
            Command::Terminate {
                reason: TerminationReason::UserDeleted,
                ..
            } => Event::TerminateByOwner,
            Command::Terminate { .. } => Event::Terminate,
            Command::Renew(_) => Event::Renew,
            Command::SetExpiry { .. } => Event::SetExpiry,
            Command::Tick => return None,
        })
    }
}

/// What an event does from a given status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The order moves to this status.
    MoveTo(OrderStatus),
    /// The order stays; only a history row records the event.
    RecordOnly(HistoryStatus),
}

/// The event is not allowed in the order's current status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conflict {
    pub current: OrderStatus,
    pub event: Event,
}

/// Why a command was refused; nothing was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Status(Conflict),
    /// Unsuspend while `expiresAt` is past and enforcement is on (ORDER_EXPIRED).
    Expired {
        expires_at: Millis,
    },
    /// The new `expiresAt` would be outside [`super::time::in_range`]; `field`
    /// is the request field that took it there (400 naming it).
    OutOfRange {
        field: &'static str,
    },
}

/// The status every accepted payment event starts from: the table allows PAID
/// and PAYMENT_FAILED from PENDING_PAYMENT only, so a payment-status answer
/// (v1's `previousStatus`, SPEC §2) names it without storing anything more.
pub const PAYMENT_FROM: OrderStatus = OrderStatus::PendingPayment;

/// The transition table. Anything not listed is a conflict.
pub fn outcome(from: OrderStatus, event: Event) -> Result<Outcome, Conflict> {
    use Event as E;
    use OrderStatus as S;
    let live = matches!(from, S::Active | S::Suspended);
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
        (S::Active, E::Suspend) => Ok(Outcome::MoveTo(S::Suspended)),
        (S::Suspended, E::Unsuspend) => Ok(Outcome::MoveTo(S::Active)),
        (_, E::TerminateByOwner) if live => Ok(Outcome::MoveTo(S::Terminated)),
        (S::Failed, E::Terminate) => Ok(Outcome::MoveTo(S::Terminated)),
        (_, E::Terminate) if live => Ok(Outcome::MoveTo(S::Terminated)),
        (_, E::Renew) if live => Ok(Outcome::RecordOnly(HistoryStatus::Renewed)),
        (_, E::SetExpiry) if live => Ok(Outcome::RecordOnly(HistoryStatus::ExpiryChanged)),
        (current, event) => Err(Conflict { current, event }),
    }
}

/// Decides `command` on `record` at `now`. On refusal nothing is decided.
pub fn decide(
    record: &OrderRecord,
    command: Command,
    actor: &Actor,
    now: Millis,
    policy: &Policy,
) -> Result<Change, Refused> {
    let mut draft = Draft::new(record, actor, now, policy);
    let Some(event) = command.event() else {
        paid_period::tick(&mut draft);
        return Ok(draft.finish());
    };
    let from = record.order.status;
    let outcome = outcome(from, event).map_err(Refused::Status)?;
    match event {
        Event::Unsuspend => paid_period::check_not_expired(&draft)?,
        Event::TerminateByOwner => paid_period::check_not_held_by_admin(&draft, event)?,
        _ => {}
    }
    paid_period::apply(&mut draft, command, outcome)?;
    Ok(draft.finish())
}

/// A new order: its first history row (`""` -> PENDING_PAYMENT) and `order.created`.
pub fn create(mut order: Order, actor: &Actor, now: Millis) -> Change {
    order.status = OrderStatus::PendingPayment;
    order.history_len = 0;
    let record = OrderRecord { order, task: None };
    let policy = Policy::default();
    let mut draft = Draft::new(&record, actor, now, &policy);
    draft.first_row();
    draft.finish()
}

#[cfg(test)]
mod tests;
