//! The registry's own checks: every rule's samples belong to its event, and
//! conflicts report the requested status and kind they always reported.

use super::test_support::new_record;
use super::*;

const DAY: Millis = 86_400_000;

/// Each rule's samples are commands of its event: decided where the table
/// forbids the event, every one is refused naming that event. This ties the
/// dispatch in `mod.rs` to the registry.
#[test]
fn every_rule_samples_its_own_event() {
    for &event in Event::ALL {
        let samples = event.rule().samples(DAY);
        assert!(!samples.is_empty(), "{event:?} has no sample command");
        let forbidden = OrderStatus::ALL
            .iter()
            .filter(|s| !event.rule().from.contains(s));
        for &status in forbidden {
            let (mut record, _) = new_record();
            record.order.status = status;
            for command in &samples {
                let refused = decide(
                    &record,
                    command.clone(),
                    &Actor::System,
                    DAY,
                    &Policy::default(),
                );
                let conflict = Conflict {
                    current: status,
                    event,
                };
                assert_eq!(refused, Err(Refused::Status(conflict)), "{command:?}");
            }
        }
    }
}

/// Conflict details as v1 reported them, read now from the rules.
#[test]
fn conflicts_report_the_requested_status() {
    use Event as E;
    use HistoryStatus as H;
    let expected = [
        (E::Paid, H::Paid, true),
        (E::PaymentFailed, H::PaymentFailed, true),
        (E::Cancel, H::Canceled, false),
        (E::StartProvisioning, H::Provisioning, false),
        (E::ProvisioningSucceeded, H::Active, false),
        (E::ProvisioningFailed, H::Failed, false),
        (E::RetryProvisioning, H::Provisioning, false),
        (E::Suspend, H::Suspended, false),
        (E::Unsuspend, H::Active, false),
        (E::TerminateByOwner, H::Terminated, false),
        (E::Terminate, H::Terminated, false),
        (E::Renew, H::Active, false),
        (E::SetExpiry, H::Active, false),
    ];
    for (event, requested, payment) in expected {
        assert_eq!(event.requested_status(), requested, "{event:?}");
        assert_eq!(event.is_payment(), payment, "{event:?}");
    }
}

/// What a rule declares is what its effects do: from every status it allows,
/// each sample is accepted and its first row is the rule's outcome (some
/// effects move the order themselves, as the sweep does; this keeps the
/// table honest about them).
#[test]
fn every_rule_does_what_it_declares() {
    for &event in Event::ALL {
        let rule = event.rule();
        let row = match rule.outcome {
            Outcome::MoveTo(to) => HistoryStatus::from(to),
            Outcome::RecordOnly(row) => row,
        };
        for &status in rule.from {
            let (mut record, _) = new_record();
            record.order.status = status;
            for command in rule.samples(DAY) {
                let decided = decide(
                    &record,
                    command.clone(),
                    &Actor::System,
                    DAY,
                    &Policy::default(),
                );
                let Ok(change) = decided else {
                    panic!("{command:?} from {status:?}: {decided:?}");
                };
                let first = &change.history[0];
                assert_eq!(first.previous_status, Some(status), "{command:?}");
                assert_eq!(first.new_status, row, "{command:?} from {status:?}");
            }
        }
    }
}
