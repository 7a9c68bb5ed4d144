//! Droplet actions owed after a status change (SPEC §9): power off, power on,
//! delete. The status change and the owed action committed together; here the
//! reconciler brings the action into effect and confirms it.
//!
//! Exactly once in effect: before anything else the droplet's recent actions
//! are read. While any of them runs (one of ours that a newer status change
//! superseded, or anyone's) the step waits: nothing new is sent and nothing
//! counts as done, so suspend-then-unsuspend cannot end with the droplet off.
//! Then an action already in effect counts as done; a power request sent just
//! before a crash (or answered with a 5xx after all) is found in that list and
//! followed instead of being sent again. A delete is by tag, repeated only
//! after a long silence, and harmless if repeated.
//! Failures are retried with back-off and shown as DROPLET_ACTION_FAILED; a
//! delete is never given up.

use super::Provisioner;
use crate::backend::store::WriteOp;
use crate::cloud::{ActionInfo, ActionStatus, Cloud, CloudError, PowerAction};
use crate::domain::droplet::{DropletAction, DropletStatus};
use crate::domain::task::{order_tag, PendingAction, ProvisioningError, ProvisioningTask};
use crate::domain::time::{now_millis, Millis};
use crate::domain::OrderRecord;

/// A delete not confirmed after this long is sent again (it is idempotent).
const RESEND_DELETE_AFTER_MS: Millis = 10 * 60 * 1000;
/// Back-off cap between failed attempts.
const MAX_BACKOFF_MS: Millis = 10 * 60 * 1000;

/// What one look at an owed action concluded.
enum Step {
    /// Nothing to write: in flight, or waiting out a back-off.
    Wait,
    /// The task changed (sent, confirmed, or failed): save it.
    Save(Box<ProvisioningTask>),
}

impl Provisioner {
    /// Takes every owed droplet action, and every open customer action
    /// (`customer.rs`), one step; returns how many were saved.
    pub(super) fn actions_blocking(&self) -> usize {
        let records = match self.store.pending_actions() {
            Ok(records) => records,
            Err(e) => {
                tracing::error!(error = %e, "cannot read pending droplet actions");
                return 0;
            }
        };
        let mut saved = 0;
        let mut failing = 0;
        for record in &records {
            if self.standing_down() {
                break;
            }
            let Some(task) = record.task.clone() else {
                continue;
            };
            let account = task.do_account.as_deref();
            if account.is_some_and(|a| self.backing_off(a)) || self.held_for_token(&task) {
                continue;
            }
            // The lifecycle's action first: while one is owed, no customer
            // action is admitted, and one open before was canceled.
            if task.action.is_none() {
                saved += usize::from(self.step_customer(task));
                continue;
            }
            if let Step::Save(task) = self.step_action(record, task) {
                failing += usize::from(task.action.as_ref().is_some_and(|a| a.failures > 0));
                saved += usize::from(self.save_task_only(*task));
            }
        }
        self.metrics
            .droplet_actions_pending
            .set(records.len() as i64);
        self.metrics.droplet_actions_failing.set(failing as i64);
        saved
    }

    fn step_action(&self, record: &OrderRecord, mut task: ProvisioningTask) -> Step {
        let now = now_millis();
        let Some(pending) = task.action.clone() else {
            return Step::Wait;
        };
        if pending.retry_at.is_some_and(|at| now < at) {
            return Step::Wait;
        }
        // A task never placed on an account never had a droplet: nothing to
        // power or delete.
        let Some(account) = task.do_account.clone() else {
            confirm(&mut task, pending.action.target(), now);
            return Step::Save(Box::new(task));
        };
        let Some(cloud) = self.fleet.client(&account) else {
            tracing::warn!(order_id = %task.order_id, account = %account, "a droplet action is owed on an account that is not in the configuration");
            return Step::Wait;
        };
        let cloud = &*cloud;
        let owed = pending.action;
        let result = match owed {
            DropletAction::Delete => self.step_delete(cloud, record, &mut task, pending, now),
            DropletAction::PowerOff => {
                self.step_power(cloud, &mut task, pending, PowerAction::Off, now)
            }
            DropletAction::PowerOn => {
                self.step_power(cloud, &mut task, pending, PowerAction::On, now)
            }
        };
        if matches!(&result, Ok(Step::Save(t)) if t.action.is_none() && owed == DropletAction::Delete)
        {
            // The slot opens: counted again before the next placement.
            self.fleet.mark_stale(&account);
        }
        match result {
            Ok(step) => step,
            Err(e) => {
                self.note_account_trouble(&account, &e);
                failed(&mut task, &e, now, self.retry_base_ms());
                Step::Save(Box::new(task))
            }
        }
    }

    /// Delete by tag, then follow until no droplet carries the tag.
    fn step_delete(
        &self,
        cloud: &dyn Cloud,
        record: &OrderRecord,
        task: &mut ProvisioningTask,
        mut pending: PendingAction,
        now: Millis,
    ) -> Result<Step, CloudError> {
        let tag = order_tag(&record.order.id);
        if cloud.list_by_tag(&tag)?.is_empty() {
            confirm(task, DropletStatus::Deleted, now);
            return Ok(Step::Save(Box::new(task.clone())));
        }
        let silent = pending
            .sent_at
            .is_none_or(|at| now.saturating_sub(at) > RESEND_DELETE_AFTER_MS);
        if !silent || self.standing_down() {
            return Ok(Step::Wait);
        }
        cloud.delete_by_tag(&tag)?;
        pending.sent_at = Some(now);
        sent(task, pending, now);
        Ok(Step::Save(Box::new(task.clone())))
    }

    /// Power off / on: done when the droplet reports the target status while
    /// no action runs on it. The droplet's recent actions are read before its
    /// status, so a status that matches only because an earlier action (ours,
    /// superseded by a newer status, or anyone's) has not finished yet is never
    /// taken as "already in effect", and nothing new is sent while any action
    /// runs: the last status asked for wins (SPEC §12).
    fn step_power(
        &self,
        cloud: &dyn Cloud,
        task: &mut ProvisioningTask,
        mut pending: PendingAction,
        power: PowerAction,
        now: Millis,
    ) -> Result<Step, CloudError> {
        let Some(droplet_id) = task.droplet_id() else {
            // No droplet was ever made (or it is gone): nothing to power.
            confirm(task, pending.action.target(), now);
            return Ok(Step::Save(Box::new(task.clone())));
        };
        let actions = cloud.droplet_actions(droplet_id)?;
        if let Some(running) = actions
            .iter()
            .find(|a| a.status == ActionStatus::InProgress)
        {
            if pending.action_id == Some(running.id) || !is_ours(running, power, &pending) {
                return Ok(Step::Wait);
            }
            // Sent just before a crash (or a lost answer): follow it.
            pending.action_id = Some(running.id);
        } else {
            let droplet = cloud.get_droplet(droplet_id)?;
            if droplet.status == pending.action.target() {
                task.droplet = Some(droplet);
                confirm(task, pending.action.target(), now);
                return Ok(Step::Save(Box::new(task.clone())));
            }
            // DigitalOcean can list an action completed a moment before the
            // droplet shows it: ours, if it is the newest, is waited for.
            match actions.first().filter(|a| is_ours(a, power, &pending)) {
                Some(newest) if pending.action_id == Some(newest.id) => return Ok(Step::Wait),
                Some(newest) => pending.action_id = Some(newest.id),
                None if self.standing_down() => return Ok(Step::Wait),
                None => pending.action_id = Some(cloud.power(droplet_id, power)?),
            }
        }
        pending.sent_at = Some(now);
        sent(task, pending, now);
        Ok(Step::Save(Box::new(task.clone())))
    }

    /// Failed actions wait one poll interval, doubling per failure.
    pub(super) fn retry_base_ms(&self) -> Millis {
        Millis::try_from(self.settings.poll_interval.as_millis()).unwrap_or(Millis::MAX)
    }

    /// Saves a task the reconciler changed (no order command); false when the
    /// order changed meanwhile (the next sweep reads it again).
    fn save_task_only(&self, task: ProvisioningTask) -> bool {
        let op = WriteOp::SaveTask {
            task: Box::new(task),
            commands: Vec::new(),
        };
        super::log_save(self.store.write_blocking(op))
    }
}

/// Whether `action` is the one `pending` sent (or would send): same type, not
/// errored, and started no earlier than the status change that owes it, or
/// already known by id.
fn is_ours(action: &ActionInfo, power: PowerAction, pending: &PendingAction) -> bool {
    action.kind == power.as_str()
        && action.status != ActionStatus::Errored
        && (pending.action_id == Some(action.id)
            || action
                .started_at
                .is_some_and(|at| at >= pending.requested_at))
}

fn sent(task: &mut ProvisioningTask, pending: PendingAction, now: Millis) {
    task.action = Some(PendingAction {
        failures: 0,
        retry_at: None,
        ..pending
    });
    task.updated_at = now;
}

/// The action is in effect: nothing is owed, no error shows.
fn confirm(task: &mut ProvisioningTask, status: DropletStatus, now: Millis) {
    task.action = None;
    if let Some(droplet) = task.droplet.as_mut() {
        droplet.status = status;
    }
    if task.error_code == Some(ProvisioningError::DropletActionFailed) {
        task.error_code = None;
        task.error_message = None;
    }
    task.updated_at = now;
}

/// When the attempt after the `failures`th failure may go: `base` doubled
/// per failure, capped. Customer actions (`customer.rs`) back off the same.
pub(super) fn retry_after(now: Millis, base: Millis, failures: u32) -> Millis {
    let step = base.saturating_mul(1 << failures.saturating_sub(1).min(8));
    now.saturating_add(step.min(MAX_BACKOFF_MS))
}

/// Records a failed attempt and when to try again ([`retry_after`]).
fn failed(task: &mut ProvisioningTask, e: &CloudError, now: Millis, base: Millis) {
    let Some(pending) = task.action.as_mut() else {
        return;
    };
    pending.failures = pending.failures.saturating_add(1);
    pending.retry_at = Some(retry_after(now, base, pending.failures));
    task.error_code = Some(ProvisioningError::DropletActionFailed);
    task.error_message = Some(format!("{} failed: {e}", pending.action.as_str()));
    task.updated_at = now;
}
