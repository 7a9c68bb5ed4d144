//! Customer actions (SPEC §14): asked of an ACTIVE order by its owner or an
//! admin, they change no status and write no history row. The action is put
//! on the task, durable with it, for the reconciler to bring into effect;
//! the lifecycle's own droplet actions cancel it (`Draft::owe`).

use super::draft::Draft;
use super::Refused;
use crate::domain::customer_action::{admit, ActionAsk, CustomerAction, ImageChoice, Request};
use crate::domain::order::Actor;

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
