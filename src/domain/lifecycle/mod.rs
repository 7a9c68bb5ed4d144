//! Every decision about an order, in one pure place (SPEC §1, §9). [`decide`]
//! takes the current record, a [`Command`], the actor, the time and the expiry
//! [`Policy`], and returns the whole [`Change`] (new order, history rows, task and
//! coupon effects, the droplet action owed, outgoing events) or a [`Refused`].
//! The store only persists a `Change`; there is no other way to change
//! `Order::status`.
//!
//! `mod.rs` holds the vocabulary, the registry of events and the dispatch;
//! each command's [`Rule`] (its row of the transition table) and its effects
//! live in one file of their own (`payment`, `cancel`, `provisioning`,
//! `suspend`, `terminate`, `renew`; `tick` for what falls due by itself;
//! `auto_renew` for the owner's stored wish, which moves nothing).
//! `draft` builds a change row by row. README "Adding a lifecycle command".

mod auto_renew;
mod cancel;
mod customer;
mod draft;
mod payment;
mod provisioning;
mod renew;
mod suspend;
mod terminate;
mod tick;

use super::expiry::Policy;
use super::order::{Actor, HistoryStatus, Order, OrderStatus, SuspendReason, TerminationReason};
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
    /// The owner or an admin asks for a droplet action (SPEC §14).
    RequestAction(Box<super::customer_action::ActionAsk>),
    /// System: a rebuild completed; the order shows its image from now on.
    Rebuilt(Box<super::customer_action::ImageChoice>),
    /// Owner: store the wish that the billing system renew by itself (SPEC
    /// §14). Allowed in every status, so not in the table (see `auto_renew`).
    SetAutoRenew { on: bool },
}

/// One event's rule, kept in the file of its command: where the event is
/// allowed, what it does there, what a refusal reports and who asks for it.
/// `Event::ALL`, [`outcome`], conflict details, the console's buttons and the
/// proptest generators all read these, so a command has no list to forget.
pub struct Rule {
    /// The statuses the event is allowed from; from any other it conflicts.
    pub from: &'static [OrderStatus],
    pub outcome: Outcome,
    /// The status a conflict reports as requested.
    pub requested: HistoryStatus,
    /// Payment events conflict as PAYMENT_STATUS_CONFLICT, the rest as
    /// ORDER_STATUS_CONFLICT.
    pub payment: bool,
    /// An operator asks for it (internal API, console); the console must
    /// offer a button for each such event (its tests check).
    pub operator: bool,
    /// What must hold beyond the status, checked once the table allows it.
    check: fn(&Draft<'_>, Event) -> Result<(), Refused>,
    /// Commands of this event with the data worth trying, for the property
    /// tests: a rule without them does not compile under test.
    #[cfg(test)]
    samples: fn(Millis) -> Vec<Command>,
}

#[cfg(test)]
impl Rule {
    /// The event's sample commands at `now`, for property tests elsewhere
    /// (the sandbox's reconciler test draws its steps from them).
    pub fn samples(&self, now: Millis) -> Vec<Command> {
        (self.samples)(now)
    }

    /// Whether the event ends the order for good.
    pub fn terminates(&self) -> bool {
        self.outcome == Outcome::MoveTo(OrderStatus::Terminated)
    }
}

/// The check of a rule that needs none beyond the status.
fn status_only(_: &Draft<'_>, _: Event) -> Result<(), Refused> {
    Ok(())
}

/// The registry: every event and the rule (in its command's file) that
/// governs it. `Event`, `Event::ALL` and `Event::rule` come from this one list.
macro_rules! events {
    ($($(#[$doc:meta])* $event:ident => $rule:path,)*) => {
        /// A command's kind: what the transition table and conflicts speak of.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Event {
            $($(#[$doc])* $event,)*
        }

        impl Event {
            pub const ALL: &'static [Event] = &[$(Event::$event,)*];

            pub fn rule(self) -> &'static Rule {
                match self {
                    $(Event::$event => &$rule,)*
                }
            }
        }
    };
}

events! {
    Paid => payment::PAID,
    PaymentFailed => payment::PAYMENT_FAILED,
    Cancel => cancel::CANCEL,
    StartProvisioning => provisioning::START,
    ProvisioningSucceeded => provisioning::SUCCEEDED,
    ProvisioningFailed => provisioning::FAILED,
    RetryProvisioning => provisioning::RETRY,
    Suspend => suspend::SUSPEND,
    Unsuspend => suspend::UNSUSPEND,
    /// The owning user's terminate: only from ACTIVE or SUSPENDED.
    TerminateByOwner => terminate::BY_OWNER,
    /// An admin's or the system's terminate: also from FAILED.
    Terminate => terminate::TERMINATE,
    Renew => renew::RENEW,
    SetExpiry => renew::SET_EXPIRY,
}

impl Event {
    /// The status the call would set, as reported in conflict details.
    pub fn requested_status(self) -> HistoryStatus {
        self.rule().requested
    }

    /// Payment events conflict as PAYMENT_STATUS_CONFLICT, the rest as ORDER_STATUS_CONFLICT.
    pub fn is_payment(self) -> bool {
        self.rule().payment
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
    /// A customer action is not admitted now (SPEC §14).
    Action(super::customer_action::ActionRefusal),
}

/// The status every accepted payment event starts from: the table allows PAID
/// and PAYMENT_FAILED from PENDING_PAYMENT only, so a payment-status answer
/// (v1's `previousStatus`, SPEC §2) names it without storing anything more.
pub const PAYMENT_FROM: OrderStatus = OrderStatus::PendingPayment;

/// The transition table, read from the rules. Anything not listed is a conflict.
pub fn outcome(from: OrderStatus, event: Event) -> Result<Outcome, Conflict> {
    let rule = event.rule();
    if rule.from.contains(&from) {
        Ok(rule.outcome)
    } else {
        Err(Conflict {
            current: from,
            event,
        })
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
    apply(&mut draft, command)?;
    Ok(draft.finish())
}

/// The table's verdict on `event` for the order as it stands, then the
/// rule's own check: the outcome to apply, or why nothing is.
fn allow(d: &Draft<'_>, event: Event) -> Result<Outcome, Refused> {
    let outcome = outcome(d.order.status, event).map_err(Refused::Status)?;
    (event.rule().check)(d, event)?;
    Ok(outcome)
}

/// Each command to its event and to the file that applies it. `Tick` is not
/// gated by the table: it decides from the order's own state what is due;
/// nor are customer actions and `SetAutoRenew`, which change no status.
fn apply(d: &mut Draft<'_>, command: Command) -> Result<(), Refused> {
    match command {
        Command::Pay { notes } => payment::pay(d, allow(d, Event::Paid)?, notes),
        Command::PaymentFailed { notes } => {
            payment::failed(d, allow(d, Event::PaymentFailed)?, notes)
        }
        Command::Cancel { reason } => cancel::cancel(d, allow(d, Event::Cancel)?, reason),
        Command::StartProvisioning => provisioning::start(d, allow(d, Event::StartProvisioning)?),
        Command::ProvisioningSucceeded { metadata } => {
            let outcome = allow(d, Event::ProvisioningSucceeded)?;
            provisioning::succeeded(d, outcome, metadata)
        }
        Command::ProvisioningFailed { message, metadata } => {
            let outcome = allow(d, Event::ProvisioningFailed)?;
            provisioning::failed(d, outcome, message, metadata)
        }
        Command::RetryProvisioning => provisioning::retry(d, allow(d, Event::RetryProvisioning)?),
        Command::Suspend { reason } => {
            allow(d, Event::Suspend)?;
            suspend::suspend(d, SuspendReason::Admin, reason)
        }
        Command::Unsuspend { reason } => {
            allow(d, Event::Unsuspend)?;
            suspend::resume(d, reason)
        }
        Command::Terminate { reason, note } => {
            allow(d, terminate::event_for(reason))?;
            terminate::terminate(d, reason, note)
        }
        Command::Renew(renewing) => {
            allow(d, Event::Renew)?;
            return renew::renew(d, renewing);
        }
        Command::SetExpiry { at, reason } => {
            allow(d, Event::SetExpiry)?;
            return renew::set_expiry(d, at, reason);
        }
        Command::Tick => tick::tick(d),
        Command::RequestAction(ask) => return customer::request(d, *ask),
        Command::Rebuilt(image) => customer::rebuilt(d, *image),
        Command::SetAutoRenew { on } => auto_renew::set(d, on),
    }
    Ok(())
}

/// The row an allowed outcome writes: a move, or an event row in place.
fn record_outcome(
    d: &mut Draft<'_>,
    outcome: Outcome,
    reason: Option<String>,
    metadata: Option<String>,
) {
    match outcome {
        Outcome::MoveTo(to) => d.move_to(to, reason, metadata),
        Outcome::RecordOnly(name) => d.record_event(name, reason, metadata),
    }
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
mod customer_tests;
#[cfg(test)]
mod rule_tests;
#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;
