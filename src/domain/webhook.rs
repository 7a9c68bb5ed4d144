//! Events out (SPEC §10): which endpoint gets which event, and how one
//! delivery attempt moves a delivery along the retry schedule. Pure rules: the
//! outbox tables live in `store`, the HTTP calls in `webhooks`.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::lifecycle::EventType;
use super::record::OrderRecord;
use super::time::Millis;
use super::wire::wire_enum;

wire_enum!(
    /// Where a delivery stands (the admin API's `status` filter).
    text DeliveryStatus {
        Pending => "pending",
        Delivered => "delivered",
        Failed => "failed",
    }
);

/// Which event types an endpoint receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventFilter {
    All,
    Only(Vec<EventType>),
}

impl EventFilter {
    /// `["*"]` (or a list containing `"*"`) is every type; an unknown name is
    /// an error naming it, so a typo never silently drops events.
    pub fn parse(names: &[String]) -> Result<EventFilter, String> {
        if names.iter().any(|n| n == "*") {
            return Ok(EventFilter::All);
        }
        if names.is_empty() {
            return Err("an empty event list would receive nothing; use [\"*\"] for all".into());
        }
        names
            .iter()
            .map(|n| EventType::parse(n).ok_or_else(|| format!("unknown event type {n:?}")))
            .collect::<Result<Vec<_>, _>>()
            .map(EventFilter::Only)
    }

    pub fn accepts(&self, kind: EventType) -> bool {
        match self {
            EventFilter::All => true,
            EventFilter::Only(kinds) => kinds.contains(&kind),
        }
    }
}

/// A configured receiver as the outbox sees it; its URL names it (the secret
/// stays with the sender and never enters the data file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub url: String,
    pub events: EventFilter,
}

/// Where events go and how often a failing delivery is tried again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outbox {
    pub routes: Vec<Route>,
    /// Waits after the 1st, 2nd, ... failed attempt; one more failure than
    /// there are entries makes the delivery `failed`.
    pub retry_schedule_ms: Vec<Millis>,
}

impl Outbox {
    /// With no endpoint configured nothing is recorded (SPEC §10).
    pub fn routes_for(&self, kind: EventType) -> impl Iterator<Item = &Route> {
        self.routes.iter().filter(move |r| r.events.accepts(kind))
    }
}

/// An event as committed, with the order (and task) as they were right after
/// the change, so every attempt sends the same body.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEvent {
    /// The `webhook-id`: the same on every attempt and every replay.
    pub id: Uuid,
    pub kind: EventType,
    pub committed_at: Millis,
    /// `order.expiring` only.
    pub seconds_left: Option<i64>,
    pub record: OrderRecord,
    /// One delivery per endpoint that takes this type.
    pub deliveries: Vec<Uuid>,
}

impl OutboxEvent {
    /// A new event of `kind` about `record`, committed at `now`, before any
    /// delivery is added. Events carry no renewals list (SPEC §12): kept,
    /// every stored event would hold all of the order's renewals, so n
    /// renewals cost O(n²).
    pub fn new(
        kind: EventType,
        seconds_left: Option<i64>,
        record: &OrderRecord,
        now: Millis,
    ) -> OutboxEvent {
        let mut record = record.clone();
        record.order.term.renewals.clear();
        OutboxEvent {
            id: super::new_id(),
            kind,
            committed_at: now,
            seconds_left,
            record,
            deliveries: Vec::new(),
        }
    }
}

/// One event on its way to one endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub id: Uuid,
    pub event_id: Uuid,
    pub order_id: Uuid,
    pub event_type: EventType,
    pub url: String,
    pub status: DeliveryStatus,
    /// Commit order of the event; the endpoint's queue is sorted by it.
    pub seq: u64,
    pub attempts: u32,
    /// `attempts` when the current round began (creation or the last replay):
    /// each round gets the whole schedule.
    pub round_start: u32,
    pub created_at: Millis,
    pub last_attempt_at: Option<Millis>,
    pub next_attempt_at: Option<Millis>,
    pub last_response_status: Option<u16>,
    pub last_error: Option<String>,
    pub delivered_at: Option<Millis>,
}

/// Filters of the admin list (`GET /internal/webhooks/deliveries`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryQuery {
    pub status: Option<DeliveryStatus>,
    pub order_id: Option<Uuid>,
    pub page: u32,
    pub limit: u32,
}

/// One page of deliveries, newest first, and how many match in all.
#[derive(Debug, Clone, Default)]
pub struct DeliveryPage {
    pub items: Vec<Delivery>,
    pub total: u64,
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// A 2xx within the timeout.
    Delivered { status: u16 },
    /// Anything else: a non-2xx status (redirects included) or no response.
    Refused { status: Option<u16>, error: String },
}

impl Delivery {
    pub fn new(event: &OutboxEvent, url: &str, seq: u64) -> Delivery {
        Delivery {
            id: super::new_id(),
            event_id: event.id,
            order_id: event.record.order.id,
            event_type: event.kind,
            url: url.to_string(),
            status: DeliveryStatus::Pending,
            seq,
            attempts: 0,
            round_start: 0,
            created_at: event.committed_at,
            last_attempt_at: None,
            next_attempt_at: Some(event.committed_at),
            last_response_status: None,
            last_error: None,
            delivered_at: None,
        }
    }

    /// Records an attempt: delivered, retried after the schedule's next wait,
    /// or `failed` once the round's schedule is used up.
    pub fn after_attempt(&mut self, outcome: AttemptOutcome, at: Millis, schedule: &[Millis]) {
        self.attempts = self.attempts.saturating_add(1);
        self.last_attempt_at = Some(at);
        match outcome {
            AttemptOutcome::Delivered { status } => {
                self.status = DeliveryStatus::Delivered;
                self.last_response_status = Some(status);
                self.last_error = None;
                self.next_attempt_at = None;
                self.delivered_at = Some(at);
            }
            AttemptOutcome::Refused { status, error } => {
                self.last_response_status = status;
                self.last_error = Some(error);
                let failures = self.attempts.saturating_sub(self.round_start);
                match schedule.get((failures as usize).saturating_sub(1)) {
                    Some(wait) => self.next_attempt_at = Some(at.saturating_add(*wait)),
                    None => {
                        self.status = DeliveryStatus::Failed;
                        self.next_attempt_at = None;
                    }
                }
            }
        }
    }

    /// Failed without an attempt: nobody would ever send it (its endpoint is
    /// no longer configured). A replay queues it again should it come back.
    pub fn fail_unrouted(&mut self, now: Millis) {
        self.status = DeliveryStatus::Failed;
        self.next_attempt_at = None;
        self.last_error = Some("the endpoint is no longer configured".into());
        self.last_attempt_at = self.last_attempt_at.or(Some(now));
    }

    /// Queued again (same event, same `webhook-id`) with a fresh schedule.
    pub fn replay(&mut self, now: Millis) {
        self.status = DeliveryStatus::Pending;
        self.round_start = self.attempts;
        self.next_attempt_at = Some(now);
        self.delivered_at = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::order::test_order;

    fn delivery() -> Delivery {
        let event = OutboxEvent {
            id: Uuid::nil(),
            kind: EventType::Created,
            committed_at: 1_000,
            seconds_left: None,
            record: OrderRecord {
                order: test_order("alice"),
                task: None,
            },
            deliveries: Vec::new(),
        };
        Delivery::new(&event, "http://127.0.0.1:9/hook", 1)
    }

    fn refused() -> AttemptOutcome {
        AttemptOutcome::Refused {
            status: Some(500),
            error: "HTTP 500".into(),
        }
    }

    #[test]
    fn one_plus_len_schedule_attempts_then_failed_and_a_replay_gets_a_fresh_round() {
        let schedule = [5_000, 300_000];
        let mut d = delivery();
        d.after_attempt(refused(), 10, &schedule);
        assert_eq!(
            (d.status, d.next_attempt_at),
            (DeliveryStatus::Pending, Some(5_010))
        );
        d.after_attempt(refused(), 5_010, &schedule);
        assert_eq!(d.next_attempt_at, Some(305_010));
        d.after_attempt(refused(), 305_010, &schedule);
        assert_eq!(
            (d.status, d.next_attempt_at),
            (DeliveryStatus::Failed, None)
        );
        assert_eq!(d.attempts, 3);

        d.replay(400_000);
        assert_eq!(
            (d.status, d.next_attempt_at),
            (DeliveryStatus::Pending, Some(400_000))
        );
        d.after_attempt(refused(), 400_000, &schedule);
        assert_eq!(d.next_attempt_at, Some(405_000), "the schedule starts over");
        d.after_attempt(
            AttemptOutcome::Delivered { status: 204 },
            405_000,
            &schedule,
        );
        assert_eq!(d.status, DeliveryStatus::Delivered);
        assert_eq!(
            (d.delivered_at, d.last_error.as_deref()),
            (Some(405_000), None)
        );
        assert_eq!(d.attempts, 5);
    }

    #[test]
    fn an_event_carries_the_order_without_its_renewals() {
        let mut record = OrderRecord {
            order: test_order("alice"),
            task: None,
        };
        record.order.term.renewals.push(crate::domain::Renewal {
            id: Uuid::nil(),
            renewal_type: crate::domain::RenewalType::ManualRenewal,
            periods: 1,
            amount: 500,
            previous_expiry: None,
            new_expiry: 2,
            actor: crate::domain::Actor::Admin(None),
            created_at: 1,
        });
        let event = OutboxEvent::new(EventType::Renewed, None, &record, 7);
        assert!(event.record.order.term.renewals.is_empty());
        assert_eq!(event.record.order.id, record.order.id);
        assert_eq!((event.kind, event.committed_at), (EventType::Renewed, 7));
        assert!(event.deliveries.is_empty());
    }

    #[test]
    fn an_unrouted_delivery_fails_keeping_its_last_attempt_time() {
        let mut d = delivery();
        d.fail_unrouted(500);
        assert_eq!(d.status, DeliveryStatus::Failed);
        assert_eq!(d.next_attempt_at, None);
        assert_eq!(d.last_attempt_at, Some(500));
        assert_eq!(
            d.last_error.as_deref(),
            Some("the endpoint is no longer configured")
        );
        d.last_attempt_at = Some(100);
        d.fail_unrouted(900);
        assert_eq!(d.last_attempt_at, Some(100), "an earlier attempt is kept");
        d.replay(1000);
        assert_eq!(d.status, DeliveryStatus::Pending);
    }

    #[test]
    fn filters_name_known_types_only() {
        assert_eq!(EventFilter::parse(&["*".into()]), Ok(EventFilter::All));
        let only = EventFilter::parse(&["order.paid".into()]).unwrap();
        assert!(only.accepts(EventType::Paid) && !only.accepts(EventType::Created));
        assert!(EventFilter::parse(&["order.payed".into()]).is_err());
        assert!(EventFilter::parse(&[]).is_err());
    }
}
