//! Delivery workers: one task per endpoint reads that endpoint's queue and
//! sends what is due, a bounded number at a time, as futures on the runtime
//! ([`super::client`]). Never on the request path nor the writer thread: a
//! request only commits the event; a slow or dead endpoint holds its own
//! worker and nobody else.
//!
//! Order: the queue hands out only the first pending delivery of each order,
//! so one order's events reach an endpoint in commit order (a later event
//! waits while an earlier one is retrying). Delivery is at least once: a
//! crash between a receiver's 2xx and our record of it sends that event again
//! with the same `webhook-id`, which receivers use to drop duplicates.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde::Serialize;

use super::client::{Signed, WebhookClient};
use super::config::WebhooksConfig;
use super::sign::{Signer, WebhookSecret};
use crate::backend::store::outbox::AttemptRecord;
use crate::backend::store::{Maintenance, StoreHandle};
use crate::domain::time::now_millis;
use crate::domain::webhook::{AttemptOutcome, Delivery, DeliveryStatus, OutboxEvent};
use crate::metrics::Metrics;
use crate::url_rules::mask_url;

/// Attempts in flight per endpoint.
const CONCURRENCY: usize = 16;
/// Deliveries handed out per pass: their results share one write, so a busy
/// endpoint costs the writer one operation per batch, not one per event.
const BATCH: usize = 256;
/// With nothing queued a worker sleeps until the writer signals; this bounds
/// the sleep anyway, so a missed signal costs at most this much.
const IDLE_RECHECK: Duration = Duration::from_secs(30);
/// How long a worker woken by a commit waits before reading its queue.
const COALESCE: Duration = Duration::from_millis(20);
/// After a storage error, before the next look.
const STORAGE_PAUSE: Duration = Duration::from_secs(1);

/// One configured receiver, with what signs for it.
struct Endpoint {
    url: String,
    uri: hyper::Uri,
    /// Keyed once; never logged.
    signer: Signer,
}

/// What every worker shares.
struct Sender {
    store: StoreHandle,
    client: WebhookClient,
    metrics: Arc<Metrics>,
    /// Failed attempts a round allows before the delivery is `failed`.
    retries: usize,
}

/// Starts one worker per configured endpoint; they run until aborted.
pub fn start(
    store: &StoreHandle,
    config: &WebhooksConfig,
    metrics: Arc<Metrics>,
) -> Vec<tokio::task::JoinHandle<()>> {
    if config.endpoints.is_empty() {
        return Vec::new();
    }
    let client = match WebhookClient::new(Duration::from_millis(config.timeout_ms), CONCURRENCY) {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, "webhooks cannot be sent; events stay queued");
            return Vec::new();
        }
    };
    let sender = Arc::new(Sender {
        store: store.clone(),
        client,
        metrics,
        retries: config.retry_schedule_seconds.len(),
    });
    config
        .endpoints
        .iter()
        .filter_map(|e| {
            // Both were checked when the configuration was read.
            let secret = WebhookSecret::parse(&e.secret).ok()?;
            let uri = e.url.parse::<hyper::Uri>().ok()?;
            let endpoint = Arc::new(Endpoint {
                url: e.url.clone(),
                uri,
                signer: Signer::new(&secret),
            });
            Some(tokio::spawn(serve(sender.clone(), endpoint)))
        })
        .collect()
}

/// On a shared database only the leading instance sends (SPEC §15): two
/// senders would deliver an event twice or out of order. Waits until the
/// leadership may have changed.
async fn until_leading(leadership: &mut tokio::sync::watch::Receiver<bool>) {
    tokio::select! {
        _ = leadership.changed() => {}
        _ = tokio::time::sleep(IDLE_RECHECK) => {}
    }
}

async fn serve(sender: Arc<Sender>, endpoint: Arc<Endpoint>) {
    let mut queued = sender.store.queued_events();
    let mut leadership = sender.store.leadership();
    loop {
        if !sender.store.leads() {
            until_leading(&mut leadership).await;
            continue;
        }
        // Marked seen before reading, so a commit after the read wakes us.
        queued.borrow_and_update();
        let now = now_millis();
        let (store, url) = (sender.store.clone(), endpoint.url.clone());
        let due = tokio::task::spawn_blocking(move || store.due_deliveries(&url, now, BATCH)).await;
        let due = match due {
            Ok(Ok(due)) => due,
            Ok(Err(e)) => {
                tracing::warn!(endpoint = %mask_url(&endpoint.url), error = %e, "cannot read the webhook queue");
                tokio::time::sleep(STORAGE_PAUSE).await;
                continue;
            }
            Err(_) => return,
        };
        if due.due.is_empty() {
            let wait = due.next_at.map_or(IDLE_RECHECK, |at| {
                Duration::from_millis(u64::try_from(at.saturating_sub(now)).unwrap_or(0))
                    .min(IDLE_RECHECK)
            });
            tokio::select! {
                changed = queued.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    // Under load commits come every few milliseconds; a
                    // short pause lets one pass take many events instead of
                    // one read and one write per commit.
                    tokio::time::sleep(COALESCE).await;
                }
                _ = tokio::time::sleep(wait) => {}
            }
            continue;
        }
        let records: Vec<AttemptRecord> = futures_util::stream::iter(due.due)
            .map(|(delivery, event)| attempt(&sender, &endpoint, delivery, event))
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        if let Err(e) = sender
            .store
            .maintain(Maintenance::RecordAttempts(records))
            .await
        {
            // Not recorded: these deliveries are still pending and go out
            // again (same webhook-id): at least once.
            tracing::warn!(error = %e, "cannot record webhook attempts");
            tokio::time::sleep(STORAGE_PAUSE).await;
        }
    }
}

/// One POST, signed; its outcome as the outbox records it.
async fn attempt(
    sender: &Sender,
    endpoint: &Endpoint,
    delivery: Delivery,
    event: OutboxEvent,
) -> AttemptRecord {
    let body = body(&event);
    let id = event.id.to_string();
    let timestamp = now_millis().div_euclid(1000).to_string();
    let signature = endpoint.signer.sign(&id, &timestamp, &body);
    let signed = Signed {
        id,
        timestamp,
        signature,
        body: body.into(),
    };
    let outcome = sender.client.post(&endpoint.uri, signed).await;
    note(sender, endpoint, &delivery, &outcome);
    AttemptRecord {
        delivery: delivery.id,
        attempts_before: delivery.attempts,
        outcome,
        // The schedule's waits count from the end of a failed attempt, so
        // a receiver never sees two attempts closer than the wait.
        at: now_millis(),
    }
}

fn note(sender: &Sender, endpoint: &Endpoint, delivery: &Delivery, outcome: &AttemptOutcome) {
    let failures = (delivery.attempts + 1).saturating_sub(delivery.round_start) as usize;
    let result = match outcome {
        AttemptOutcome::Delivered { .. } => DeliveryStatus::Delivered.as_str(),
        AttemptOutcome::Refused { .. } if failures > sender.retries => {
            DeliveryStatus::Failed.as_str()
        }
        AttemptOutcome::Refused { .. } => "retried",
    };
    sender
        .metrics
        .webhook_deliveries
        .with_label_values(&[result])
        .inc();
    if let AttemptOutcome::Refused { error, .. } = outcome {
        tracing::info!(
            endpoint = %mask_url(&endpoint.url),
            delivery = %delivery.id,
            event = delivery.event_type.as_str(),
            attempt = delivery.attempts + 1,
            error = %error,
            "webhook attempt failed"
        );
    }
}

#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    timestamp: String,
    data: Data<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Data<'a> {
    order: crate::json::OrderJson<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seconds_left: Option<i64>,
    /// `order.action_completed` / `order.action_failed` only (SPEC §14).
    #[serde(skip_serializing_if = "Option::is_none")]
    action: Option<crate::json::ActionJson<'a>>,
}

/// The action an action event is about: the task's last one, as the save
/// that ended it left it.
fn action_of(event: &OutboxEvent) -> Option<crate::json::ActionJson<'_>> {
    use crate::domain::lifecycle::EventType;
    if !matches!(
        event.kind,
        EventType::ActionCompleted | EventType::ActionFailed
    ) {
        return None;
    }
    let action = event.record.task.as_ref()?.customer_action.as_ref()?;
    Some(crate::json::action_for(crate::json::View::Operator, action))
}

/// The signed body: deterministic, so every attempt sends the same bytes.
pub fn body(event: &OutboxEvent) -> Vec<u8> {
    let body = Body {
        kind: event.kind.as_str(),
        timestamp: crate::domain::time::format_millis(event.committed_at),
        data: Data {
            order: crate::json::order_for_event(&event.record),
            seconds_left: event.seconds_left,
            action: action_of(event),
        },
    };
    serde_json::to_vec(&body).unwrap_or_default()
}
