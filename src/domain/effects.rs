//! Events a write implies that no command decides. `lifecycle::decide` turns
//! commands into changes and their events; the provisioner's own observation
//! (a saved task) can announce something too, and that rule lives here so
//! the store only asks and queues.

use super::customer_action::ActionState;
use super::lifecycle::{EventType, OutEvent};
use super::task::ProvisioningTask;

/// What saving `after` over the stored `before` announces: the droplet is
/// gone (`order.droplet_deleted`) once a save confirms the delete `before`
/// owed; a customer action open before ended (`order.action_completed` or
/// `order.action_failed`, SPEC §14). A canceled action announces nothing:
/// the status change that canceled it is the event.
pub fn task_save_events(
    before: Option<&ProvisioningTask>,
    after: Option<&ProvisioningTask>,
) -> Vec<OutEvent> {
    let (Some(before), Some(after)) = (before, after) else {
        return Vec::new();
    };
    let mut events = Vec::new();
    if after.confirms_delete(before) {
        events.push(EventType::DropletDeleted);
    }
    let was_open = before.open_customer_action().map(|a| a.id);
    match &after.customer_action {
        Some(a) if Some(a.id) == was_open && a.status == ActionState::Completed => {
            events.push(EventType::ActionCompleted)
        }
        Some(a) if Some(a.id) == was_open && a.status == ActionState::Failed => {
            events.push(EventType::ActionFailed)
        }
        _ => {}
    }
    events
        .into_iter()
        .map(|kind| OutEvent {
            kind,
            seconds_left: None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::droplet::DropletAction;
    use crate::domain::order::test_order;
    use crate::domain::task::PendingAction;

    fn owing_delete() -> ProvisioningTask {
        let mut task = ProvisioningTask::for_paid_order(&test_order("alice"), 1);
        task.action = Some(PendingAction::new(DropletAction::Delete, 1));
        task
    }

    #[test]
    fn a_save_that_settles_an_owed_delete_announces_the_droplet_deleted() {
        let before = owing_delete();
        let mut after = before.clone();
        after.action = None;
        let events = task_save_events(Some(&before), Some(&after));
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, EventType::DropletDeleted);
        assert_eq!(events[0].seconds_left, None);
    }

    #[test]
    fn other_saves_announce_nothing() {
        let before = owing_delete();
        assert!(task_save_events(Some(&before), Some(&before)).is_empty());
        assert!(task_save_events(None, Some(&before)).is_empty());
        let mut power_off = before.clone();
        power_off.action = Some(PendingAction::new(DropletAction::PowerOff, 1));
        let mut settled = power_off.clone();
        settled.action = None;
        assert!(task_save_events(Some(&power_off), Some(&settled)).is_empty());
    }
}
