//! Customer actions (SPEC §14): reboot, power and rebuild, asked over the
//! API and committed on the task before the 202. Here the reconciler brings
//! one into effect on the order's account and follows it to its end.
//!
//! Exactly once in effect, like the lifecycle's actions (`actions.rs`): the
//! droplet's recent actions are read first, and an action of the asked type
//! started no earlier than the request (DigitalOcean reports whole seconds)
//! is ours, sent before a crash or a lost answer, and is followed instead of
//! being sent again. Nothing is sent while any action runs on the droplet.
//! Just before sending, the order is read again: a suspend or terminate that
//! committed meanwhile canceled the action, and it is not sent.
//! A failed attempt waits (doubling from one poll interval); after
//! `actions.max_attempts` the action is `failed` with the reason.

use super::Provisioner;
use crate::backend::store::WriteOp;
use crate::cloud::{ActionInfo, ActionStatus, Cloud, CloudError};
use crate::domain::customer_action::{ActionState, ActionType, CustomerAction, ACTION_FAILED};
use crate::domain::droplet::Droplet;
use crate::domain::lifecycle::Command;
use crate::domain::task::ProvisioningTask;
use crate::domain::time::{now_millis, Millis};
use crate::domain::OrderStatus;

/// `errorCode` when the droplet is no longer in a state the action fits.
const STATE_CHANGED: &str = "DROPLET_STATE_CONFLICT";

/// What one look at the droplet concluded.
enum Progress {
    /// In flight, or someone else's action runs: look again next sweep.
    Wait,
    /// Sent now, or found already sent: follow this provider action.
    Following(u64),
    /// In effect: the droplet as it now is.
    Done(Droplet),
    /// DigitalOcean gave up on it.
    Errored,
    /// The droplet is in no state for it any more (someone else moved it).
    Unfit(Droplet),
}

impl Provisioner {
    /// Takes the task's open customer action one step; true when a change
    /// was saved.
    pub(super) fn step_customer(&self, mut task: ProvisioningTask) -> bool {
        let now = now_millis();
        let Some(mut action) = task.open_customer_action().cloned() else {
            return false;
        };
        if action.retry_at.is_some_and(|at| now < at) {
            return false;
        }
        let (Some(account), Some(droplet_id)) = (task.do_account.clone(), task.droplet_id()) else {
            let why = "the order has no server to act on".to_string();
            action.end(ActionState::Failed, Some((ACTION_FAILED, why)), now);
            return self.save_action(task, action, Vec::new());
        };
        let Some(cloud) = self.fleet.client(&account) else {
            tracing::warn!(order_id = %task.order_id, account = %account, "a customer action is owed on an account that is not in the configuration");
            return false;
        };
        let mut commands = Vec::new();
        match self.follow_customer(&*cloud, &task, &action, droplet_id) {
            Ok(Progress::Wait) => return false,
            Ok(Progress::Following(id)) => {
                action.provider_action_id = Some(id);
                action.status = ActionState::Running;
                action.started_at.get_or_insert(now);
                action.retry_at = None;
            }
            Ok(Progress::Done(droplet)) => {
                task.droplet = Some(droplet);
                if let Some(image) = action.image.clone().filter(|_| is_rebuild(&action)) {
                    task.do_image.clone_from(&image.slug);
                    commands.push(Command::Rebuilt(Box::new(image)));
                }
                action.end(ActionState::Completed, None, now);
            }
            Ok(Progress::Errored) => {
                let why = format!("DigitalOcean reported the {} errored", action.kind);
                action.end(ActionState::Failed, Some((ACTION_FAILED, why)), now);
            }
            Ok(Progress::Unfit(droplet)) => {
                let why = format!("the server is {} now", droplet.status.as_str());
                task.droplet = Some(droplet);
                action.end(ActionState::Failed, Some((STATE_CHANGED, why)), now);
            }
            Err(e) => {
                self.note_account_trouble(&account, &e);
                self.attempt_failed(&mut action, &e, now);
            }
        }
        self.save_action(task, action, commands)
    }

    /// Reads the droplet's actions (and, when needed, the droplet) and sends
    /// the action unless it is already under way or done.
    fn follow_customer(
        &self,
        cloud: &dyn Cloud,
        task: &ProvisioningTask,
        action: &CustomerAction,
        droplet_id: u64,
    ) -> Result<Progress, CloudError> {
        let listed = cloud.droplet_actions(droplet_id)?;
        let status = match listed.iter().find(|a| is_ours(a, action)) {
            Some(ours) if action.provider_action_id != Some(ours.id) => {
                return Ok(Progress::Following(ours.id));
            }
            Some(ours) => ours.status,
            None => match action.provider_action_id {
                // Pushed out of the recent list by later actions: ask for it.
                Some(id) => cloud.get_action(id)?,
                None => return self.send_customer(cloud, task, action, droplet_id, &listed),
            },
        };
        match status {
            ActionStatus::InProgress => Ok(Progress::Wait),
            ActionStatus::Errored => Ok(Progress::Errored),
            ActionStatus::Completed => {
                // DigitalOcean can list an action completed a moment before
                // the droplet shows it: the droplet confirms.
                let droplet = cloud.get_droplet(droplet_id)?;
                if droplet.status == action.kind.target() {
                    Ok(Progress::Done(droplet))
                } else {
                    Ok(Progress::Wait)
                }
            }
        }
    }

    fn send_customer(
        &self,
        cloud: &dyn Cloud,
        task: &ProvisioningTask,
        action: &CustomerAction,
        droplet_id: u64,
        listed: &[ActionInfo],
    ) -> Result<Progress, CloudError> {
        if listed.iter().any(|a| a.status == ActionStatus::InProgress)
            || self.standing_down()
            || !self.still_open(task, action)
        {
            return Ok(Progress::Wait);
        }
        let droplet = cloud.get_droplet(droplet_id)?;
        if !action.kind.fits(droplet.status) {
            return Ok(Progress::Unfit(droplet));
        }
        let image = action.image.as_ref().map(|i| i.slug.as_str());
        Ok(Progress::Following(cloud.act(
            droplet_id,
            action.kind,
            image,
        )?))
    }

    /// Whether the stored task still holds `action` open with no lifecycle
    /// action owed: a suspend or terminate since the sweep read it canceled
    /// it, and then nothing may be sent.
    fn still_open(&self, task: &ProvisioningTask, action: &CustomerAction) -> bool {
        match self.store.get_order(task.order_id) {
            Ok(Some(record)) => {
                record.order.status == OrderStatus::Active
                    && record.task.is_some_and(|t| {
                        t.action.is_none()
                            && t.open_customer_action().is_some_and(|a| a.id == action.id)
                    })
            }
            Ok(None) => false,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the order before sending a customer action");
                false
            }
        }
    }

    /// Records a failed attempt: the next waits as the lifecycle's actions
    /// do (`actions::retry_after`); the last allowed one fails the action.
    fn attempt_failed(&self, action: &mut CustomerAction, e: &CloudError, now: Millis) {
        action.attempts = action.attempts.saturating_add(1);
        let why = format!("{} failed: {e}", action.kind);
        if action.attempts >= self.settings.action_max_attempts {
            action.end(ActionState::Failed, Some((ACTION_FAILED, why)), now);
            return;
        }
        action.retry_at = Some(super::actions::retry_after(
            now,
            self.retry_base_ms(),
            action.attempts,
        ));
        action.error_message = Some(why);
    }

    fn save_action(
        &self,
        mut task: ProvisioningTask,
        action: CustomerAction,
        commands: Vec<Command>,
    ) -> bool {
        task.customer_action = Some(action);
        let op = WriteOp::SaveTask {
            task: Box::new(task),
            commands,
        };
        super::log_save(self.store.write_blocking(op))
    }
}

fn is_rebuild(action: &CustomerAction) -> bool {
    action.kind == ActionType::Rebuild
}

/// Whether `listed` is the provider's action for `action`: known by id, or
/// (before its id was recorded) of the same type, not errored, and started
/// no earlier than the second the request was accepted in.
fn is_ours(listed: &ActionInfo, action: &CustomerAction) -> bool {
    if listed.kind != action.kind.as_str() {
        return false;
    }
    match action.provider_action_id {
        Some(id) => listed.id == id,
        None => {
            let accepted_second = action.created_at - action.created_at.rem_euclid(1000);
            listed.status != ActionStatus::Errored
                && listed.started_at.is_some_and(|at| at >= accepted_second)
        }
    }
}
