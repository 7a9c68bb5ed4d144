//! Delivery workers: one task per endpoint reads that endpoint's queue and
//! sends what is due, a bounded number at a time, on blocking threads. Never
//! on the request path nor the writer thread: a request only commits the
//! event; a slow or dead endpoint holds its own worker and nobody else.
//!
//! Order: the queue hands out only the first pending delivery of each order,
//! so one order's events reach an endpoint in commit order (a later event
//! waits while an earlier one is retrying). Delivery is at least once: a
//! crash between a receiver's 2xx and our record of it sends that event again
//! with the same `webhook-id`, which receivers use to drop duplicates.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

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
/// The most of an endpoint's answer read (and thrown away) to keep its
/// connection; a longer answer costs that connection, nothing else.
const ANSWER_READ: u64 = 64 << 10;

/// One configured receiver, with what signs for it.
struct Endpoint {
    url: String,
    /// Keyed once; never logged.
    signer: Signer,
}

/// What every worker shares.
struct Sender {
    store: StoreHandle,
    agent: ureq::Agent,
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
    // SPEC §10: a redirect is a failure (the shared config follows none).
    let agent_config = crate::http_client::config(Duration::from_millis(config.timeout_ms))
        // One kept-alive connection per sending thread: no new TCP (or TLS)
        // handshake per event.
        .max_idle_connections_per_host(CONCURRENCY)
        .max_idle_connections(CONCURRENCY * config.endpoints.len().max(1))
        .user_agent(concat!("vpsd/", env!("CARGO_PKG_VERSION")))
        .build();
    let agent = crate::http_client::agent(agent_config);
    let sender = Arc::new(Sender {
        store: store.clone(),
        agent,
        metrics,
        retries: config.retry_schedule_seconds.len(),
    });
    config
        .endpoints
        .iter()
        .filter_map(|e| {
            let secret = WebhookSecret::parse(&e.secret).ok()?;
            let endpoint = Arc::new(Endpoint {
                url: e.url.clone(),
                signer: Signer::new(&secret),
            });
            Some(tokio::spawn(serve(sender.clone(), endpoint)))
        })
        .collect()
}

/// One attempt, run on an endpoint's own sending thread.
type Job = Box<dyn FnOnce(&Sender, &Endpoint) + Send>;

/// The endpoint's sending threads. Attempts block on the network for up to
/// `webhooks.timeout_ms`; on threads of their own, a dead endpoint cannot use
/// up the runtime's blocking pool that requests and the store rely on.
fn sending_threads(sender: &Arc<Sender>, endpoint: &Arc<Endpoint>) -> std::sync::mpsc::Sender<Job> {
    let (jobs, queue) = std::sync::mpsc::channel::<Job>();
    let queue = Arc::new(std::sync::Mutex::new(queue));
    for n in 0..CONCURRENCY {
        let (queue, sender, endpoint) = (queue.clone(), sender.clone(), endpoint.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("vpsd-webhook-{n}"))
            .spawn(move || loop {
                let next = match queue.lock() {
                    Ok(q) => q.recv(),
                    Err(_) => return,
                };
                match next {
                    Ok(job) => job(&sender, &endpoint),
                    Err(_) => return,
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start a webhook sending thread");
        }
    }
    jobs
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

/// One job per sending thread, each sending its share in turn: a wake-up
/// per thread, not per event. Returns where each share's records come back.
fn hand_out(
    pool: &std::sync::mpsc::Sender<Job>,
    mut due: Vec<(Delivery, OutboxEvent)>,
) -> Vec<tokio::sync::oneshot::Receiver<Vec<AttemptRecord>>> {
    let share = due.len().div_ceil(CONCURRENCY);
    let mut jobs = Vec::new();
    while !due.is_empty() {
        let rest = due.split_off(share.min(due.len()));
        let mine = std::mem::replace(&mut due, rest);
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |sender: &Sender, endpoint: &Endpoint| {
            let records = mine
                .iter()
                .map(|(delivery, event)| attempt(sender, endpoint, delivery, event))
                .collect::<Vec<_>>();
            let _ = reply.send(records);
        });
        if pool.send(job).is_ok() {
            jobs.push(answer);
        }
    }
    jobs
}

async fn serve(sender: Arc<Sender>, endpoint: Arc<Endpoint>) {
    let pool = sending_threads(&sender, &endpoint);
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
        let jobs = hand_out(&pool, due.due);
        // A share whose thread died is simply not recorded: it stays pending
        // and goes out again.
        let records: Vec<AttemptRecord> = futures_util::future::join_all(jobs)
            .await
            .into_iter()
            .flatten()
            .flatten()
            .collect();
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
fn attempt(
    sender: &Sender,
    endpoint: &Endpoint,
    delivery: &Delivery,
    event: &OutboxEvent,
) -> AttemptRecord {
    let body = body(event);
    let id = event.id.to_string();
    let timestamp = now_millis().div_euclid(1000).to_string();
    let signature = endpoint.signer.sign(&id, &timestamp, &body);
    let response = sender
        .agent
        .post(&endpoint.url)
        .header("content-type", "application/json")
        .header("webhook-id", &id)
        .header("webhook-timestamp", &timestamp)
        .header("webhook-signature", signature)
        .send(&body[..]);
    let outcome = match response {
        Ok(mut r) => {
            // Read to its end, a short answer lets the connection go back to
            // the pool; left unread, the next event would connect anew.
            let _ = r.body_mut().with_config().limit(ANSWER_READ).read_to_vec();
            let status = r.status().as_u16();
            if r.status().is_success() {
                AttemptOutcome::Delivered { status }
            } else {
                AttemptOutcome::Refused {
                    status: Some(status),
                    error: format!("the endpoint answered HTTP {status}"),
                }
            }
        }
        Err(e) => AttemptOutcome::Refused {
            status: None,
            error: describe(&e),
        },
    };
    note(sender, endpoint, delivery, &outcome);
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

/// Our own words for a transport failure: ureq's text can carry the URL
/// (and its credentials) or internal addresses.
fn describe(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Timeout(_) => "no response within webhooks.timeout_ms".into(),
        ureq::Error::HostNotFound => "the endpoint's host does not resolve".into(),
        ureq::Error::ConnectionFailed => "cannot connect to the endpoint".into(),
        ureq::Error::Io(io) => format!("connection failed ({})", io.kind()),
        ureq::Error::Tls(_) => "TLS failed".into(),
        _ => "the request failed".into(),
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
