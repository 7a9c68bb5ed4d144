//! Customer actions in the lifecycle's property tests (SPEC §14): the
//! commands that ask for them, what the reconciler does between commands,
//! and the rule that the lifecycle wins.

use super::test_support::{active_record, persist};
use super::*;
use crate::domain::order::*;
use proptest::prelude::*;

/// One customer action of every type (SPEC §14), without a cooldown so the
/// sequences reach every rule.
pub(super) fn action_asks() -> Vec<Command> {
    use crate::domain::customer_action::{ActionAsk, ActionType, ImageChoice};
    ActionType::ALL
        .iter()
        .map(|&kind| {
            Command::RequestAction(Box::new(ActionAsk {
                id: crate::domain::new_id(),
                kind,
                image: (kind == ActionType::Rebuild).then(|| ImageChoice {
                    id: "debian-12".into(),
                    name: "Debian 12".into(),
                    slug: "debian-12-x64".into(),
                }),
                cooldown_ms: 0,
            }))
        })
        .collect()
}

/// What the provisioner would observe and do between commands: an ACTIVE
/// order's droplet is seen running (or as a power action left it), and an
/// open customer action is carried out (`toggle`: its droplet state).
pub(super) fn observe(record: &mut OrderRecord, now: Millis) {
    use crate::domain::customer_action::ActionState;
    let status = record.order.status;
    let Some(task) = record.task.as_mut() else {
        return;
    };
    if status == OrderStatus::Active && task.droplet.is_none() {
        task.droplet = Some(crate::domain::droplet::Droplet {
            id: 7,
            name: "vps-7".into(),
            status: crate::domain::droplet::DropletStatus::Active,
            tags: Vec::new(),
            created_at: None,
            ipv4_public: Some("203.0.113.7".into()),
            ipv4_private: None,
            ipv6_public: None,
        });
    }
    if let Some(action) = task.customer_action.as_mut().filter(|a| a.status.is_open()) {
        if let Some(droplet) = task.droplet.as_mut() {
            droplet.status = action.kind.target();
        }
        action.end(ActionState::Completed, None, now);
    }
}

/// The lifecycle wins (SPEC §14): an open customer action exists only on an
/// ACTIVE order with no lifecycle droplet action owed.
pub(super) fn assert_customer_action_allowed(record: &OrderRecord) -> Result<(), TestCaseError> {
    if let Some(task) = &record.task {
        if task.open_customer_action().is_some() {
            prop_assert_eq!(record.order.status, OrderStatus::Active);
            prop_assert!(
                task.action.is_none(),
                "a customer action beside a lifecycle one"
            );
        }
    }
    Ok(())
}

/// An ACTIVE order whose droplet is seen running.
fn active_and_observed() -> OrderRecord {
    let mut record = active_record(2);
    observe(&mut record, 3);
    record
}

proptest! {
    /// Customer actions under every lifecycle command an ACTIVE order can
    /// meet: an action is open only on an ACTIVE order with no lifecycle
    /// action owed, so a suspended or terminated server is never acted on.
    #[test]
    fn customer_actions_never_outlive_the_lifecycle(
        steps in proptest::collection::vec((any::<proptest::sample::Index>(), any::<bool>()), 1..40),
    ) {
        let mut record = active_and_observed();
        let policy = Policy::default();
        let mut asks = action_asks();
        asks.extend([
            Command::Suspend { reason: None },
            Command::Unsuspend { reason: None },
            Command::Terminate { reason: TerminationReason::AdminTerminated, note: None },
            Command::Tick,
        ]);
        let mut now = 10;
        for (pick, carry_out) in steps {
            now += 1_000;
            if carry_out {
                observe(&mut record, now);
                // The reconciler confirms what the lifecycle owed.
                if let Some(task) = record.task.as_mut() {
                    if let Some(owed) = task.action.take() {
                        if let Some(droplet) = task.droplet.as_mut() {
                            droplet.status = owed.action.target();
                        }
                    }
                }
            }
            let command = pick.get(&asks).clone();
            // A refusal is part of the game.
            if let Ok(change) = decide(&record, command, &Actor::User("u".into()), now, &policy) {
                persist(&mut record, &change);
            }
            assert_customer_action_allowed(&record)?;
        }
    }
}
