use super::customer_tests::{action_asks, assert_customer_action_allowed, observe};
use super::test_support::{active_record, new_record, persist, sample};
use super::*;
use crate::domain::droplet::DropletAction;
use crate::domain::order::*;
use crate::domain::task::{ProvisioningError, ProvisioningTask};
use proptest::prelude::*;

const DAY: Millis = 86_400_000;

/// Every event's sample commands, from the rules themselves, `Tick` and
/// `SetAutoRenew`: a new command is generated as soon as its rule is
/// registered.
fn commands(now: Millis) -> Vec<Command> {
    let mut all: Vec<Command> = Event::ALL
        .iter()
        .flat_map(|event| event.rule().samples(now))
        .collect();
    all.push(Command::Tick);
    all.extend(action_asks());
    // Outside the table (no rule), so listed by hand: a wish moves nothing.
    all.push(Command::SetAutoRenew { on: true });
    all.push(Command::SetAutoRenew { on: false });
    all
}

/// Statuses reachable from PENDING_PAYMENT by walking the table.
fn reachable(status: OrderStatus) -> bool {
    let mut seen = vec![OrderStatus::PendingPayment];
    let mut i = 0;
    while i < seen.len() {
        for &event in Event::ALL {
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

/// Each row starts where the last real status change ended; event rows
/// (PAYMENT_FAILED, RENEWED, EXPIRY_CHANGED) change no status and are skipped.
fn assert_chain(
    history: &[crate::domain::HistoryEntry],
    status: OrderStatus,
) -> Result<(), TestCaseError> {
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

/// The droplet's desired state follows the status: an action owed always
/// points where the status says the droplet must be.
fn assert_desired_droplet(record: &OrderRecord) -> Result<(), TestCaseError> {
    let owed = record
        .task
        .as_ref()
        .and_then(|t| t.action.as_ref())
        .map(|a| a.action);
    match record.order.status {
        OrderStatus::Active => {
            prop_assert!(owed.is_none() || owed == Some(DropletAction::PowerOn))
        }
        OrderStatus::Suspended => prop_assert_eq!(owed, Some(DropletAction::PowerOff)),
        OrderStatus::Terminated if record.task.is_some() => {
            prop_assert_eq!(owed, Some(DropletAction::Delete))
        }
        _ => prop_assert!(owed.is_none()),
    }
    Ok(())
}

fn policies() -> impl Strategy<Value = Policy> {
    (any::<bool>(), 0i64..3).prop_map(|(enforce, grace_days)| Policy {
        enforce,
        grace_ms: [grace_days * DAY; 4],
        ..Policy::default()
    })
}

proptest! {
    #[test]
    fn any_command_sequence_keeps_the_invariants(
        steps in proptest::collection::vec((any::<proptest::sample::Index>(), 0i64..40, any::<bool>()), 0..50),
        policy in policies(),
    ) {
        let (mut record, mut history) = new_record();
        let mut ever_paid = false;
        let mut now: Millis = 1;
        for (pick, days, carry_out) in steps {
            now += days * DAY / 4;
            if carry_out {
                observe(&mut record, now);
            }
            let before = record.order.clone();
            let command = pick.get(&commands(now)).clone();
            let paying = matches!(command, Command::Pay { .. });
            let owner_terminates = matches!(
                command,
                Command::Terminate { reason: TerminationReason::UserDeleted, .. }
            );
            let renewing = matches!(command, Command::Renew(_));
            let asking = matches!(command, Command::RequestAction(_));
            match decide(&record, command, &Actor::System, now, &policy) {
                Ok(change) => {
                    if before.status.is_terminal() {
                        prop_assert!(change.history.is_empty(), "terminal {:?} changed", before.status);
                    }
                    if let Some(row) = change.history.first() {
                        prop_assert_eq!(row.previous_status, Some(before.status));
                    }
                    if paying {
                        ever_paid = true;
                    }
                    if owner_terminates {
                        // An admin suspension is the admin's to end.
                        prop_assert_ne!(before.term.suspend_reason, Some(SuspendReason::Admin));
                    }
                    persist(&mut record, &change);
                    history.extend(change.history);
                }
                Err(Refused::Status(conflict)) => {
                    prop_assert_eq!(conflict.current, before.status);
                }
                Err(Refused::Expired { expires_at }) => {
                    prop_assert!(policy.enforce && expires_at <= now);
                    prop_assert_eq!(before.status, OrderStatus::Suspended);
                }
                Err(Refused::OutOfRange { field }) => {
                    prop_assert_eq!(field, "periods");
                    prop_assert!(renewing);
                }
                Err(Refused::Action(_)) => prop_assert!(asking),
            }
            assert_customer_action_allowed(&record)?;
            let in_range = record.order.term.expires_at.is_none_or(crate::domain::time::in_range);
            prop_assert!(in_range, "expiresAt left the representable range");
            let o = &record.order;
            prop_assert!(reachable(o.status));
            prop_assert_eq!(o.paid_at.is_some(), ever_paid);
            prop_assert_eq!(o.term.terminated_at.is_some(), o.status == OrderStatus::Terminated);
            // A terminated order keeps when it was suspended, as history does.
            if o.status == OrderStatus::Suspended {
                prop_assert!(o.term.suspended_at.is_some() && o.term.suspend_reason.is_some());
            } else if o.status != OrderStatus::Terminated {
                prop_assert!(o.term.suspended_at.is_none() && o.term.suspend_reason.is_none());
            }
            prop_assert_eq!(o.history_len as usize, history.len());
            if matches!(o.status, OrderStatus::Active | OrderStatus::Suspended) {
                prop_assert!(o.term.expires_at.is_some() && o.term.activated_at.is_some());
            } else {
                prop_assert_eq!(o.term.next_due, None);
            }
            assert_desired_droplet(&record)?;
        }
        assert_chain(&history, record.order.status)?;
    }
}

#[test]
fn only_the_listed_transitions_exist() {
    let mut allowed = 0;
    for from in OrderStatus::ALL {
        for &event in Event::ALL {
            if outcome(*from, event).is_ok() {
                allowed += 1;
            }
        }
    }
    // v1's 7, suspend, unsuspend, owner terminate x2, terminate x3, renew x2, expiry x2.
    assert_eq!(allowed, 18);
    assert!(outcome(OrderStatus::Active, Event::Cancel).is_err());
    assert!(outcome(OrderStatus::Paid, Event::Paid).is_err());
    assert!(outcome(OrderStatus::Failed, Event::TerminateByOwner).is_err());
    assert!(outcome(OrderStatus::Failed, Event::Terminate).is_ok());
}

#[test]
fn payment_failed_keeps_the_order_pending() {
    let (record, _) = new_record();
    let change = decide(
        &record,
        sample(Event::PaymentFailed),
        &Actor::System,
        5,
        &Policy::default(),
    )
    .unwrap();
    assert_eq!(change.order.status, OrderStatus::PendingPayment);
    let row = &change.history[0];
    assert_eq!(row.previous_status, Some(OrderStatus::PendingPayment));
    assert_eq!(row.new_status, HistoryStatus::PaymentFailed);
    assert_eq!(change.order.paid_at, None);
    assert_eq!(change.events[0].kind, EventType::PaymentFailed);
}

#[test]
fn cancel_releases_a_counted_coupon() {
    let (mut record, _) = new_record();
    record.order.coupon_counted = true;
    let change = decide(
        &record,
        sample(Event::Cancel),
        &Actor::System,
        5,
        &Policy::default(),
    )
    .unwrap();
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
    task.error_code = Some(ProvisioningError::ProvisioningTimeout);
    record.task = Some(task.clone());
    let change = decide(
        &record,
        sample(Event::RetryProvisioning),
        &Actor::System,
        5,
        &Policy::default(),
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

#[test]
fn activation_sets_a_calendar_month_expiry() {
    let jan31 = crate::domain::time::parse_rfc3339("2024-01-31T10:00:00Z").unwrap();
    let record = active_record(jan31);
    let term = &record.order.term;
    assert_eq!(term.activated_at, Some(jan31));
    assert_eq!(
        term.expires_at,
        crate::domain::time::parse_rfc3339("2024-02-29T10:00:00Z")
    );
}

#[test]
fn renewing_a_suspension_for_expiry_resumes_with_two_rows() {
    let policy = Policy {
        enforce: true,
        ..Policy::default()
    };
    let mut record = active_record(0);
    let expires = record.order.term.expires_at.unwrap();
    let after = expires + 1;
    let change = decide(&record, Command::Tick, &Actor::System, after, &policy).unwrap();
    assert_eq!(change.order.status, OrderStatus::Suspended);
    assert_eq!(
        change.order.term.suspend_reason,
        Some(SuspendReason::Expired)
    );
    persist(&mut record, &change);
    let refused = decide(
        &record,
        sample(Event::Unsuspend),
        &Actor::Admin(None),
        after,
        &policy,
    );
    assert_eq!(
        refused,
        Err(Refused::Expired {
            expires_at: expires
        })
    );
    let change = decide(
        &record,
        sample(Event::Renew),
        &Actor::Admin(None),
        after,
        &policy,
    )
    .unwrap();
    let rows: Vec<_> = change.history.iter().map(|r| r.new_status).collect();
    assert_eq!(rows, vec![HistoryStatus::Renewed, HistoryStatus::Active]);
    assert_eq!(
        change.history[0].previous_status,
        Some(OrderStatus::Suspended)
    );
    assert_eq!(change.order.status, OrderStatus::Active);
    assert_eq!(change.order.term.expires_at, Some(add_month(after)));
    assert_eq!(change.order.term.renewals.len(), 1);
    let TaskEffect::Write(task) = &change.task else {
        panic!("resume owes power_on");
    };
    assert_eq!(
        task.action.as_ref().map(|a| a.action),
        Some(DropletAction::PowerOn)
    );
}

/// An ACTIVE order an operator suspended at 5.
fn admin_suspended(policy: &Policy) -> OrderRecord {
    let mut record = active_record(0);
    let suspend = sample(Event::Suspend);
    let change = decide(&record, suspend, &Actor::Admin(None), 5, policy).unwrap();
    persist(&mut record, &change);
    record
}

#[test]
fn owner_cannot_terminate_an_admin_suspension() {
    let policy = Policy::default();
    let owner_terminates = sample(Event::TerminateByOwner);
    let record = admin_suspended(&policy);
    let user = Actor::User("u".into());
    let refused = decide(&record, owner_terminates.clone(), &user, 6, &policy);
    let conflict = Conflict {
        current: OrderStatus::Suspended,
        event: Event::TerminateByOwner,
    };
    assert_eq!(refused, Err(Refused::Status(conflict)));
    assert_eq!(conflict.event.requested_status(), HistoryStatus::Terminated);
    // The admin still can.
    let admin = decide(
        &record,
        sample(Event::Terminate),
        &Actor::Admin(None),
        6,
        &policy,
    )
    .unwrap();
    assert_eq!(admin.order.status, OrderStatus::Terminated);
}

#[test]
fn owner_can_terminate_an_expiry_suspension() {
    let policy = Policy {
        enforce: true,
        ..Policy::default()
    };
    let mut record = active_record(0);
    let after = record.order.term.expires_at.unwrap() + 1;
    let change = decide(&record, Command::Tick, &Actor::System, after, &policy).unwrap();
    persist(&mut record, &change);
    assert_eq!(
        record.order.term.suspend_reason,
        Some(SuspendReason::Expired)
    );
    let user = Actor::User("u".into());
    let change = decide(
        &record,
        sample(Event::TerminateByOwner),
        &user,
        after,
        &policy,
    )
    .unwrap();
    assert_eq!(change.order.status, OrderStatus::Terminated);
}

#[test]
fn a_renewal_past_year_9999_is_refused_naming_periods() {
    let policy = Policy::default();
    let mut record = active_record(0);
    let last_day = crate::domain::time::parse_rfc3339("9999-12-31T00:00:00Z").unwrap();
    let set = Command::SetExpiry {
        at: last_day,
        reason: None,
    };
    let change = decide(&record, set, &Actor::Admin(None), 5, &policy).unwrap();
    persist(&mut record, &change);
    let refused = decide(
        &record,
        sample(Event::Renew),
        &Actor::Admin(None),
        6,
        &policy,
    );
    assert_eq!(refused, Err(Refused::OutOfRange { field: "periods" }));
    let too_late = Command::SetExpiry {
        at: crate::domain::time::LATEST + 1,
        reason: None,
    };
    let refused = decide(&record, too_late, &Actor::Admin(None), 6, &policy);
    assert_eq!(refused, Err(Refused::OutOfRange { field: "expiresAt" }));
}

#[test]
fn history_text_is_kept_to_1000_characters() {
    let (mut record, _) = new_record();
    record.order.status = OrderStatus::Provisioning;
    let failed = Command::ProvisioningFailed {
        message: "é".repeat(5000),
        metadata: None,
    };
    let change = decide(&record, failed, &Actor::System, 5, &Policy::default()).unwrap();
    let reason = change.history[0].reason.as_deref().unwrap_or("");
    assert_eq!(reason.chars().count(), crate::domain::MAX_FREE_TEXT);
}

fn add_month(at: Millis) -> Millis {
    crate::domain::expiry::add_months(at, 1)
}

#[test]
fn an_admin_suspension_stays_through_a_renewal() {
    let policy = Policy::default();
    let record = admin_suspended(&policy);
    let change = decide(
        &record,
        sample(Event::Renew),
        &Actor::Admin(None),
        6,
        &policy,
    )
    .unwrap();
    assert_eq!(change.order.status, OrderStatus::Suspended);
    assert_eq!(change.history.len(), 1);
}

#[test]
fn grace_zero_terminates_at_expiry_and_reminders_fire_once() {
    let policy = Policy {
        enforce: true,
        grace_ms: [0; 4],
        ..Policy::default()
    };
    let mut record = active_record(0);
    let expires = record.order.term.expires_at.unwrap();
    let two_days_left = expires - 2 * DAY;
    let change = decide(
        &record,
        Command::Tick,
        &Actor::System,
        two_days_left,
        &policy,
    )
    .unwrap();
    let kinds: Vec<_> = change.events.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, vec![EventType::Expiring, EventType::Expiring]);
    assert_eq!(change.events[0].seconds_left, Some(2 * 86_400));
    persist(&mut record, &change);
    let again = decide(
        &record,
        Command::Tick,
        &Actor::System,
        two_days_left,
        &policy,
    )
    .unwrap();
    assert!(again.events.is_empty());
    let change = decide(&record, Command::Tick, &Actor::System, expires, &policy).unwrap();
    assert_eq!(change.order.status, OrderStatus::Terminated);
    assert_eq!(
        change.order.term.termination_reason,
        Some(TerminationReason::ExpiredNoRenewal)
    );
}

#[test]
fn payment_events_start_only_from_payment_from() {
    for from in OrderStatus::ALL {
        for event in [Event::Paid, Event::PaymentFailed] {
            assert_eq!(outcome(*from, event).is_ok(), *from == PAYMENT_FROM);
        }
    }
}

#[test]
fn default_history_text_is_v1s() {
    let (record, _) = new_record();
    let created = create(record.order.clone(), &Actor::System, 1);
    let first = &created.history[0];
    assert_eq!(first.reason.as_deref(), Some(ORDER_CREATED));
    let meta: serde_json::Value =
        serde_json::from_str(first.metadata.as_deref().unwrap_or("")).unwrap();
    assert_eq!(meta["planId"], record.order.plan_id.as_str());
    assert_eq!(meta["imageId"], record.order.image_id.as_str());
    assert_eq!(meta["duration"], record.order.duration.as_str());
    assert!(meta.get("couponCode").is_some());
    let paid = decide(
        &record,
        Command::Pay { notes: None },
        &Actor::System,
        5,
        &Policy::default(),
    )
    .unwrap();
    assert_eq!(paid.history[0].reason.as_deref(), Some(PAID_BY_OVERRIDE));
    assert_eq!(
        paid.history[0].metadata.as_deref(),
        Some(r#"{"paymentMethod":"manual_override"}"#)
    );
    let noted = Command::Pay {
        notes: Some("ref 42".into()),
    };
    let paid = decide(&record, noted, &Actor::System, 5, &Policy::default()).unwrap();
    assert_eq!(paid.history[0].reason.as_deref(), Some("ref 42"));
}
