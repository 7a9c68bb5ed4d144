//! A change under construction: rows are added in commit order, each starting
//! from the status the previous one left, and `finish` derives what follows
//! from the final state (the due time, the events).

use crate::domain::new_id;

use crate::domain::customer_action::{ActionState, CANCELED_BY_LIFECYCLE};
use crate::domain::droplet::DropletAction;
use crate::domain::expiry::{self, Policy};
use crate::domain::order::{Actor, HistoryEntry, HistoryStatus, Order, OrderStatus, MAX_FREE_TEXT};
use crate::domain::record::OrderRecord;
use crate::domain::task::{PendingAction, ProvisioningTask};
use crate::domain::time::Millis;

use super::ORDER_CREATED;

/// What happens to the provisioning task with a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskEffect {
    /// The task stays as stored (or the provisioner writes its own observation).
    Unchanged,
    /// Write this task: a PAID order's to-do, a restarted one, or a droplet
    /// action owed by the status change (durable with it).
    Write(Box<ProvisioningTask>),
}

/// What happens to a coupon redemption counted in the data file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CouponEffect {
    None,
    /// An unpaid order was cancelled: its redemption no longer counts.
    Release,
}

crate::domain::wire::wire_enum!(
    /// Events other systems are told about (SPEC §10 types). Stored by name in
    /// the outbox, so variants may be added in any place.
    text EventType {
        Created => "order.created",
        Paid => "order.paid",
        PaymentFailed => "order.payment_failed",
        Canceled => "order.canceled",
        Provisioning => "order.provisioning",
        Active => "order.active",
        Failed => "order.failed",
        Suspended => "order.suspended",
        Unsuspended => "order.unsuspended",
        Renewed => "order.renewed",
        ExpiryChanged => "order.expiry_changed",
        Expiring => "order.expiring",
        Terminated => "order.terminated",
        DropletDeleted => "order.droplet_deleted",
        ActionCompleted => "order.action_completed",
        ActionFailed => "order.action_failed",
    }
);

impl EventType {
    /// The event a history row announces; `from` tells a first activation
    /// (`order.active`) from a resumption (`order.unsuspended`).
    fn for_row(from: Option<OrderStatus>, row: HistoryStatus) -> EventType {
        match row {
            HistoryStatus::PendingPayment => EventType::Created,
            HistoryStatus::Paid => EventType::Paid,
            HistoryStatus::PaymentFailed => EventType::PaymentFailed,
            HistoryStatus::Canceled => EventType::Canceled,
            HistoryStatus::Provisioning => EventType::Provisioning,
            HistoryStatus::Active if from == Some(OrderStatus::Suspended) => EventType::Unsuspended,
            HistoryStatus::Active => EventType::Active,
            HistoryStatus::Failed => EventType::Failed,
            HistoryStatus::Suspended => EventType::Suspended,
            HistoryStatus::Terminated => EventType::Terminated,
            HistoryStatus::Renewed => EventType::Renewed,
            HistoryStatus::ExpiryChanged => EventType::ExpiryChanged,
        }
    }
}

/// `text` cut to [`MAX_FREE_TEXT`] characters. Requests are refused past it
/// at the edge; this bounds what the system writes itself (a provider's
/// error message on a FAILED row).
fn clip_free_text(text: String) -> String {
    match text.char_indices().nth(MAX_FREE_TEXT) {
        Some((end, _)) => text[..end].to_string(),
        None => text,
    }
}

/// One outgoing event of a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutEvent {
    pub kind: EventType,
    /// `order.expiring` only: seconds left until `expiresAt`.
    pub seconds_left: Option<i64>,
}

/// Everything one decision changes; persisted in one transaction or not at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The order as it must be stored (`history_len` already counts `history`).
    pub order: Order,
    /// The order's status before the change; `None` for a new order.
    pub previous_status: Option<OrderStatus>,
    /// The order's due time before the change (the `due` index key to move).
    pub previous_due: Option<Millis>,
    /// New history rows, in order; row numbers follow the stored ones.
    pub history: Vec<HistoryEntry>,
    pub task: TaskEffect,
    pub coupon: CouponEffect,
    /// What other systems are told, in commit order.
    pub events: Vec<OutEvent>,
}

pub(super) struct Draft<'a> {
    pub record: &'a OrderRecord,
    pub order: Order,
    /// The working copy of the task, when the change writes it.
    pub task: Option<ProvisioningTask>,
    pub coupon: CouponEffect,
    pub history: Vec<HistoryEntry>,
    pub events: Vec<OutEvent>,
    pub actor: &'a Actor,
    pub now: Millis,
    pub policy: &'a Policy,
}

impl<'a> Draft<'a> {
    pub fn new(
        record: &'a OrderRecord,
        actor: &'a Actor,
        now: Millis,
        policy: &'a Policy,
    ) -> Draft<'a> {
        Draft {
            record,
            order: record.order.clone(),
            task: None,
            coupon: CouponEffect::None,
            history: Vec::new(),
            events: Vec::new(),
            actor,
            now,
            policy,
        }
    }

    /// The first row of every order: `""` -> PENDING_PAYMENT, in v1's words
    /// (SPEC §12): consumers of v1 read what was ordered from this row.
    pub fn first_row(&mut self) {
        let o = &self.order;
        let metadata = serde_json::json!({
            "planId": o.plan_id,
            "imageId": o.image_id,
            "duration": o.duration.as_str(),
            "couponCode": o.pricing.coupon_code,
        })
        .to_string();
        self.row(
            None,
            HistoryStatus::PendingPayment,
            Some(ORDER_CREATED.to_string()),
            Some(metadata),
        );
    }

    /// A status change row; the order moves to `to`.
    pub fn move_to(&mut self, to: OrderStatus, reason: Option<String>, metadata: Option<String>) {
        let from = self.order.status;
        self.order.status = to;
        self.row(Some(from), HistoryStatus::from(to), reason, metadata);
    }

    /// An event row (PAYMENT_FAILED, RENEWED, EXPIRY_CHANGED): the status stays.
    pub fn record_event(
        &mut self,
        name: HistoryStatus,
        reason: Option<String>,
        metadata: Option<String>,
    ) {
        let at = self.order.status;
        self.row(Some(at), name, reason, metadata);
    }

    fn row(
        &mut self,
        previous: Option<OrderStatus>,
        new_status: HistoryStatus,
        reason: Option<String>,
        metadata: Option<String>,
    ) {
        self.order.history_len = self.order.history_len.saturating_add(1);
        self.order.updated_at = self.now;
        self.history.push(HistoryEntry {
            id: new_id(),
            previous_status: previous,
            new_status,
            actor: self.actor.clone(),
            reason: reason.map(clip_free_text),
            metadata,
            created_at: self.now,
        });
        self.events.push(OutEvent {
            kind: EventType::for_row(previous, new_status),
            seconds_left: None,
        });
    }

    /// The task this change writes, starting from the stored one.
    pub fn task_mut(&mut self) -> Option<&mut ProvisioningTask> {
        if self.task.is_none() {
            self.task = self.record.task.clone();
        }
        self.task.as_mut()
    }

    /// Owes `action` on the order's droplet, replacing any action still owed
    /// (the newest status decides what the droplet must be). The lifecycle
    /// wins over the customer (SPEC §14): an open customer action is
    /// canceled, so nothing it asked for runs after this status change.
    pub fn owe(&mut self, action: DropletAction) {
        let now = self.now;
        let status = self.order.status;
        if let Some(task) = self.task_mut() {
            if let Some(open) = task.customer_action.as_mut().filter(|a| a.status.is_open()) {
                let why = format!("canceled: the order became {}", status.as_str());
                open.end(
                    ActionState::Canceled,
                    Some((CANCELED_BY_LIFECYCLE, why)),
                    now,
                );
            }
            task.action = Some(PendingAction::new(action, now));
            task.revision += 1;
            task.updated_at = now;
        }
    }

    pub fn finish(mut self) -> Change {
        self.order.term.next_due = expiry::due_of(&self.order, self.policy);
        let previous_status =
            (self.record.order.history_len > 0).then_some(self.record.order.status);
        Change {
            order: self.order,
            previous_status,
            previous_due: self.record.order.term.next_due,
            history: self.history,
            task: self
                .task
                .map_or(TaskEffect::Unchanged, |t| TaskEffect::Write(Box::new(t))),
            coupon: self.coupon,
            events: self.events,
        }
    }
}
