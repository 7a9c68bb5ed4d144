//! Customer actions (SPEC §14): asked of an ACTIVE order by its owner or an
//! admin, they change no status and write no history row. The action is put
//! on the task, durable with it, for the reconciler to bring into effect;
//! the lifecycle's own droplet actions cancel it (`Draft::owe`).

use super::draft::Draft;
use super::Refused;
use crate::domain::customer_action::{
    ActionAsk, ActionRefusal, CustomerAction, ImageChoice, Request,
};
use crate::domain::droplet::DropletStatus;
use crate::domain::order::Actor;
use crate::domain::order::{Order, OrderStatus};
use crate::domain::task::ProvisioningTask;

pub(super) fn request(d: &mut Draft<'_>, ask: ActionAsk) -> Result<(), Refused> {
    let request = Request {
        kind: ask.kind,
        by_admin: matches!(d.actor, Actor::Admin(_)),
        cooldown_ms: ask.cooldown_ms,
        now: d.now,
    };
    admit(&request, &d.order, d.record.task.as_ref()).map_err(Refused::Action)?;
    let (now, order_id, by) = (d.now, d.order.id, d.actor.render());
    // An ACTIVE order always has its task: admission read the droplet's
    // state from it.
    if let Some(task) = d.task_mut() {
        let no = task.actions_len;
        task.actions_len = no.saturating_add(1);
        task.customer_action = Some(CustomerAction::new(ask, order_id, no, by, now));
        task.revision += 1;
        task.updated_at = now;
    }
    Ok(())
}

/// A completed rebuild: the order shows the new image from now on, and a
/// later re-creation would use it. The priced items stay as sold.
pub(super) fn rebuilt(d: &mut Draft<'_>, image: ImageChoice) {
    d.order.image_id = image.id;
    d.order.image_name = image.name;
    d.order.droplet.image_slug = image.slug;
    d.order.updated_at = d.now;
}

/// Whether `request` may be asked of `order` now. The task keeps the
/// order's last customer action: open, or the one the cooldown counts from.
fn admit(
    request: &Request,
    order: &Order,
    task: Option<&ProvisioningTask>,
) -> Result<(), ActionRefusal> {
    let last = task.and_then(|t| t.customer_action.as_ref());
    let Request {
        kind,
        by_admin,
        cooldown_ms,
        now,
    } = *request;
    if order.status != OrderStatus::Active {
        return Err(ActionRefusal::NotActive {
            current: order.status,
        });
    }
    if let Some(open) = last.filter(|a| a.status.is_open()) {
        return Err(ActionRefusal::InProgress {
            action_id: Some(open.id),
        });
    }
    if task.is_some_and(|t| t.action.is_some()) {
        return Err(ActionRefusal::InProgress { action_id: None });
    }
    let droplet = task
        .and_then(|t| t.droplet.as_ref())
        .map_or(DropletStatus::Unknown, |d| d.status);
    if !kind.fits(droplet) {
        return Err(ActionRefusal::DropletState { droplet });
    }
    if let Some(last) = last.filter(|_| !by_admin) {
        let ready = last.created_at.saturating_add(cooldown_ms);
        if now < ready {
            return Err(ActionRefusal::Cooldown {
                retry_after_ms: ready - now,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::customer_action::{ActionState, ActionType};
    use crate::domain::droplet::{Droplet, DropletAction};
    use crate::domain::order::test_order;
    use crate::domain::task::PendingAction;
    use crate::domain::time::Millis;
    use uuid::Uuid;

    const NOW: Millis = 1_000_000;
    const COOLDOWN: Millis = 60_000;

    fn active_with(droplet: DropletStatus) -> (Order, ProvisioningTask) {
        let mut order = test_order("u");
        order.status = OrderStatus::Active;
        let mut task = ProvisioningTask::for_paid_order(&order, NOW);
        task.droplet = Some(Droplet {
            id: 7,
            name: "vps-7".into(),
            status: droplet,
            tags: Vec::new(),
            created_at: None,
            ipv4_public: Some("203.0.113.7".into()),
            ipv4_private: None,
            ipv6_public: None,
        });
        (order, task)
    }

    fn ask(kind: ActionType) -> Request {
        Request {
            kind,
            by_admin: false,
            cooldown_ms: COOLDOWN,
            now: NOW,
        }
    }

    fn action(status: ActionState) -> CustomerAction {
        let ask = ActionAsk {
            id: Uuid::from_u128(9),
            kind: ActionType::Reboot,
            image: None,
            cooldown_ms: COOLDOWN,
        };
        let order = Uuid::from_u128(1);
        CustomerAction {
            status,
            ..CustomerAction::new(ask, order, 0, "user:u".into(), NOW - 1)
        }
    }

    /// `task` with `last` as its last customer action, asked at `at`.
    fn with_last(task: &ProvisioningTask, last: ActionState, at: Millis) -> ProvisioningTask {
        let mut task = task.clone();
        task.customer_action = Some(CustomerAction {
            created_at: at,
            ..action(last)
        });
        task
    }

    #[test]
    fn refusals_come_in_the_specs_order() {
        let (mut order, mut task) = active_with(DropletStatus::Active);
        order.status = OrderStatus::Suspended;
        task.action = Some(PendingAction::new(DropletAction::PowerOff, NOW));
        let task = with_last(&task, ActionState::Running, NOW);
        let refused = admit(&ask(ActionType::PowerOn), &order, Some(&task));
        assert_eq!(
            refused,
            Err(ActionRefusal::NotActive {
                current: OrderStatus::Suspended
            })
        );
    }

    #[test]
    fn in_progress_then_droplet_state_then_cooldown() {
        let (order, mut task) = active_with(DropletStatus::Active);
        task.action = Some(PendingAction::new(DropletAction::PowerOff, NOW));
        let running = with_last(&task, ActionState::Running, NOW);
        let refused = admit(&ask(ActionType::PowerOn), &order, Some(&running));
        let open_id = action(ActionState::Running).id;
        assert_eq!(
            refused,
            Err(ActionRefusal::InProgress {
                action_id: Some(open_id)
            })
        );
        let refused = admit(&ask(ActionType::PowerOn), &order, Some(&task));
        assert_eq!(refused, Err(ActionRefusal::InProgress { action_id: None }));
        task.action = None;
        let refused = admit(&ask(ActionType::PowerOn), &order, Some(&task));
        assert_eq!(
            refused,
            Err(ActionRefusal::DropletState {
                droplet: DropletStatus::Active
            })
        );
        let recent = with_last(&task, ActionState::Completed, NOW - 1_000);
        let refused = admit(&ask(ActionType::Reboot), &order, Some(&recent));
        assert_eq!(
            refused,
            Err(ActionRefusal::Cooldown {
                retry_after_ms: COOLDOWN - 1_000
            })
        );
        let admin = Request {
            by_admin: true,
            ..ask(ActionType::Reboot)
        };
        assert_eq!(admit(&admin, &order, Some(&recent)), Ok(()));
        let old = with_last(&task, ActionState::Completed, NOW - COOLDOWN);
        assert_eq!(admit(&ask(ActionType::Reboot), &order, Some(&old)), Ok(()));
    }
}
