//! One reconciler sweep (blocking: cloud calls and commits). Each open task is
//! taken one step: start it, make sure exactly one droplet exists for it, or
//! observe its droplet; then its new state is saved with the order events it
//! implies, in one transaction per task.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::place::{Halt, Placing};
use super::{log_save, Provisioner};
use crate::backend::store::WriteOp;
use crate::cloud::{ActionStatus, Cloud, CloudError, DropletSpec, LIST_PAGE_SIZE};
use crate::domain::droplet::{Droplet, DropletStatus};
use crate::domain::fleet::DEFAULT_ACCOUNT;
use crate::domain::lifecycle::Command;
use crate::domain::task::{
    cloud_init_user_data, fails_provisioning, order_tag, Observation, ProvisioningError,
    ProvisioningTask, Verdict, COMMON_TAG,
};
use crate::domain::time::{now_millis, Millis};
use crate::domain::OrderRecord;
use crate::domain::{OrderStatus, ProvisioningStatus};

/// Listing the common tag costs a call per page of every live vpsd droplet;
/// observing one by one costs a call per droplet. The droplets to observe are
/// live themselves, so they bound the count from below.
pub fn listing_is_cheaper(to_observe: usize, live_droplets: u64) -> bool {
    let live = live_droplets.max(to_observe as u64);
    let pages = live.div_ceil(LIST_PAGE_SIZE as u64).max(1);
    pages < to_observe as u64
}

/// What a sweep did, for logs, tests and benchmarks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Open tasks found.
    pub open: usize,
    /// Tasks taken a step forward and saved.
    pub saved: usize,
    /// Tasks that finished (SUCCESS or FAILED).
    pub finished: usize,
    /// Droplets created.
    pub created: usize,
    /// Some account's calls were skipped or cut short by its back-off.
    pub backed_off: bool,
    /// Due orders ticked by the expiry sweep (reminders, suspensions, terminations).
    pub ticked: usize,
    /// Droplet actions taken a step (sent, confirmed or failed).
    pub actions: usize,
}

impl Provisioner {
    pub(super) fn sweep_blocking(&self) -> SweepReport {
        let mut report = SweepReport::default();
        self.fleet.refresh_due(self.settings.account_refresh);
        let records = match self.store.open_tasks() {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot read open provisioning tasks");
                return report;
            }
        };
        report.open = records.len();
        self.fleet.sync_holds(&placed_without_droplet(&records));
        let mut halted: HashSet<String> = HashSet::new();
        let mut to_observe: BTreeMap<String, Vec<(OrderRecord, ProvisioningTask)>> =
            BTreeMap::new();
        for record in records {
            if self.standing_down() {
                return report;
            }
            let Some(task) = record.task.clone() else {
                continue;
            };
            if let Some(account) = task.do_account.as_deref() {
                if halted.contains(account) || self.backing_off(account) {
                    report.backed_off = true;
                    continue;
                }
                if self.held_for_token(&task) {
                    continue;
                }
            }
            if task.status == ProvisioningStatus::Pending || task.droplet.is_none() {
                match self.step_without_droplet(&record, task) {
                    Ok(Some((created, finished))) => {
                        report.saved += 1;
                        report.created += usize::from(created);
                        report.finished += usize::from(finished);
                    }
                    Ok(None) => {}
                    Err(Halt(account)) => {
                        report.backed_off = true;
                        halted.insert(account);
                    }
                }
            } else {
                let account = task
                    .do_account
                    .clone()
                    .unwrap_or_else(|| DEFAULT_ACCOUNT.into());
                to_observe.entry(account).or_default().push((record, task));
            }
        }
        for (account, tasks) in to_observe {
            if halted.contains(&account) {
                continue;
            }
            match self.observe_all(&account, tasks) {
                Ok((saved, finished)) => {
                    report.saved += saved;
                    report.finished += finished;
                }
                Err(Halt(_)) => report.backed_off = true,
            }
        }
        report
    }

    /// PENDING tasks (new, or after retry) and tasks whose droplet is not known
    /// yet: place the task if it has no account, then list the order's tag
    /// there, adopt or replace what is there, create if none. An account that
    /// is full moves the task to the next one in the same sweep. Returns
    /// `Some((created, finished))` when the task was saved.
    fn step_without_droplet(
        &self,
        record: &OrderRecord,
        task: ProvisioningTask,
    ) -> Result<Option<(bool, bool)>, Halt> {
        let now = now_millis();
        let (mut task, mut commands) = start(record, task, now);
        let mut created = false;
        loop {
            let account = match task.do_account.clone() {
                Some(account) => account,
                None => match self.place(record, task, std::mem::take(&mut commands), now) {
                    Placing::Placed(saved, account) => {
                        task = *saved;
                        account
                    }
                    Placing::Waiting { saved, finished } => {
                        return Ok(saved.then_some((false, finished)))
                    }
                },
            };
            let Some(client) = self.fleet.client(&account) else {
                task.note_retrying(
                    ProvisioningError::DigitaloceanUnavailable,
                    format!("account {account} is not in the configuration"),
                );
                return Ok(self
                    .save(task, commands, Verdict::Waiting, now)
                    .then_some((false, false)));
            };
            let observation = match self.find_or_create(
                &*client,
                &account,
                record,
                &mut task,
                &mut created,
            ) {
                // Shutting down: the next start takes the task up again.
                Ok(None) => return Ok(None),
                Ok(Some(obs)) => obs,
                Err(e) if e.is_droplet_limit() => {
                    // The look-up just before the create found nothing there
                    // and the create was refused: nothing exists on this
                    // account, so the order may move on.
                    tracing::info!(order_id = %record.order.id, account = %account, "account is full; placing the order on another one");
                    self.fleet.mark_full(&account);
                    self.fleet.release(&account, record.order.id);
                    task.do_account = None;
                    continue;
                }
                Err(e) => match self.classify(&account, &mut task, e, true) {
                    Some(failure) => {
                        return Ok(self
                            .save(task, commands, failure, now)
                            .then_some((created, true)));
                    }
                    None => {
                        // Transient: keep what was learned (the start, the error) and
                        // stop this account's calls; a create that may have happened
                        // is found by its tag next time.
                        self.save(task, commands, Verdict::Waiting, now);
                        return Err(Halt(account));
                    }
                },
            };
            let verdict = task.judge(&observation, self.settings.max_attempts);
            let finished = verdict != Verdict::Waiting;
            return Ok(self
                .save(task, commands, verdict, now)
                .then_some((created, finished)));
        }
    }

    /// Exactly once: whatever carries the order's tag on the task's account is
    /// adopted (or deleted first when it is off/archive or its create action
    /// errored); only when nothing usable is there is a droplet created. `None`
    /// when shutdown came during the look-up: nothing is deleted or created
    /// then, because shutdown waits for one call under way, not for a chain
    /// of them.
    fn find_or_create(
        &self,
        cloud: &dyn Cloud,
        account: &str,
        record: &OrderRecord,
        task: &mut ProvisioningTask,
        created: &mut bool,
    ) -> Result<Option<Observation>, CloudError> {
        let order = &record.order;
        let tag = order_tag(&order.id);
        let mut found = cloud.list_by_tag(&tag)?;
        self.cloud_ok(account);
        if self.standing_down() {
            return Ok(None);
        }
        found.sort_by_key(|d| d.id);
        let mut adopted: Option<(Droplet, Option<(u64, ActionStatus)>)> = None;
        for droplet in found {
            let action = cloud.find_create_action(droplet.id)?;
            let broken = fails_provisioning(droplet.status)
                || matches!(action, Some((_, ActionStatus::Errored)));
            if broken {
                tracing::info!(order_id = %order.id, droplet_id = droplet.id, status = %droplet.status, "deleting a broken droplet of this order before creating a new one");
                cloud.delete_droplet(droplet.id)?;
            } else if adopted.is_none() {
                adopted = Some((droplet, action));
            } else {
                tracing::warn!(order_id = %order.id, droplet_id = droplet.id, "more than one droplet carries this order's tag; following the oldest");
            }
        }
        if let Some((droplet, action)) = adopted {
            tracing::info!(order_id = %order.id, droplet_id = droplet.id, "adopting the droplet already tagged for this order");
            self.fleet.created(account, order.id);
            task.create_action_id = action.map(|(id, _)| id).or(task.create_action_id);
            return Ok(Some(Observation::Droplet(droplet)));
        }
        let spec = DropletSpec {
            name: order.droplet.hostname.clone(),
            region: order.droplet.region.clone(),
            size: order.droplet.size_slug.clone(),
            image: order.droplet.image_slug.clone(),
            tags: vec![COMMON_TAG.to_string(), tag],
            monitoring: true,
            ipv6: self.settings.ipv6,
            user_data: cloud_init_user_data(&order.droplet.ssh_public_keys),
        };
        let answer = cloud.create_droplet(&spec)?;
        *created = true;
        self.fleet.created(account, order.id);
        tracing::info!(order_id = %order.id, droplet_id = answer.droplet.id, account = %account, "droplet created");
        task.create_action_id = answer.create_action_id;
        Ok(Some(Observation::Droplet(answer.droplet)))
    }

    /// Observes every task on `account` whose droplet is known, the cheaper
    /// way (SPEC §8 "Sweeps"): one GET each, or the common tag listed page by
    /// page. The account's last droplet count (every droplet it holds, so at
    /// least vpsd's) sizes the listing.
    fn observe_all(
        &self,
        account: &str,
        tasks: Vec<(OrderRecord, ProvisioningTask)>,
    ) -> Result<(usize, usize), Halt> {
        let Some(cloud) = self.fleet.client(account) else {
            tracing::warn!(account = %account, tasks = tasks.len(), "tasks name an account that is not in the configuration");
            return Ok((0, 0));
        };
        let live = self.fleet.droplet_count(account);
        let listed: Option<HashMap<u64, Droplet>> = if listing_is_cheaper(tasks.len(), live) {
            match cloud.list_by_tag(COMMON_TAG) {
                Ok(droplets) => {
                    self.cloud_ok(account);
                    Some(droplets.into_iter().map(|d| (d.id, d)).collect())
                }
                Err(e) => {
                    self.classify_all(account, &tasks, e);
                    return Err(Halt(account.to_string()));
                }
            }
        } else {
            None
        };
        let now = now_millis();
        let mut ops = Vec::with_capacity(tasks.len());
        let mut finished = 0;
        let mut halted = false;
        for (_, mut task) in tasks {
            if self.standing_down() || halted {
                break;
            }
            let Some(id) = task.droplet_id() else {
                continue;
            };
            let fetched = match &listed {
                Some(map) => map.get(&id).cloned().ok_or(CloudError::NotFound),
                None => cloud.get_droplet(id),
            };
            let observation = match fetched {
                Ok(droplet) => {
                    self.cloud_ok(account);
                    self.check_create_action(&*cloud, &task, droplet)
                }
                Err(CloudError::NotFound) => Ok(Observation::NotFound),
                Err(e) => Err(e),
            };
            let verdict = match observation {
                Ok(obs) => task.judge(&obs, self.settings.max_attempts),
                Err(e) => match self.classify(account, &mut task, e, false) {
                    Some(failure) => failure,
                    None => {
                        halted = true;
                        Verdict::Waiting
                    }
                },
            };
            finished += usize::from(verdict != Verdict::Waiting);
            ops.push(self.prepare(task, Vec::new(), verdict, now));
        }
        let saved = ops.len();
        for result in self.store.write_all_blocking(ops) {
            log_save(result);
        }
        if halted {
            return Err(Halt(account.to_string()));
        }
        Ok((saved, finished))
    }

    /// A droplet still `new` whose create action errored will never boot. The
    /// action is one extra call per droplet, so it is checked only once a
    /// droplet has stayed `new` for a few observations, then every fifth: a
    /// burst of fresh droplets costs no extra calls, an errored one is still
    /// caught within a few sweeps.
    fn check_create_action(
        &self,
        cloud: &dyn Cloud,
        task: &ProvisioningTask,
        droplet: Droplet,
    ) -> Result<Observation, CloudError> {
        let observation_no = task.attempts.saturating_add(1);
        let due = observation_no >= 3 && (observation_no - 3).is_multiple_of(5);
        if droplet.status == DropletStatus::New && due {
            if let Some(action) = task.create_action_id {
                if cloud.get_action(action)? == ActionStatus::Errored {
                    return Ok(Observation::CreateActionErrored(droplet));
                }
            }
        }
        Ok(Observation::Droplet(droplet))
    }

    /// Maps a cloud error to a final verdict, or records it as transient
    /// (returning `None`): a refused token, a 429 or an outage is the
    /// account's and stops its calls for this sweep.
    fn classify(
        &self,
        account: &str,
        task: &mut ProvisioningTask,
        e: CloudError,
        creating: bool,
    ) -> Option<Verdict> {
        self.note_account_trouble(account, &e);
        let (code, message) = match e {
            CloudError::Rejected { status, message } if creating => {
                return Some(Verdict::Failed {
                    code: ProvisioningError::DropletCreationFailed,
                    message: format!("DigitalOcean rejected the droplet ({status}): {message}"),
                })
            }
            CloudError::Unauthorized(message) => (
                ProvisioningError::DigitaloceanUnauthorized,
                format!("DigitalOcean refused the API token of account {account}: {message}"),
            ),
            CloudError::RateLimited { retry_after } => (
                ProvisioningError::DigitaloceanUnavailable,
                format!(
                    "rate limited by DigitalOcean; retrying in {} s",
                    retry_after.as_secs().max(1)
                ),
            ),
            other => (
                ProvisioningError::DigitaloceanUnavailable,
                other.to_string(),
            ),
        };
        task.note_retrying(code, message);
        None
    }

    /// The common-tag listing of `account` failed: each of its tasks waits,
    /// and says why.
    fn classify_all(
        &self,
        account: &str,
        tasks: &[(OrderRecord, ProvisioningTask)],
        e: CloudError,
    ) {
        let mut ops = Vec::new();
        let now = now_millis();
        for (_, task) in tasks {
            let mut task = task.clone();
            let verdict = self
                .classify(account, &mut task, e.clone(), false)
                .unwrap_or(Verdict::Waiting);
            ops.push(self.prepare(task, Vec::new(), verdict, now));
        }
        for result in self.store.write_all_blocking(ops) {
            log_save(result);
        }
    }

    /// Saves one task now (one commit); true when it was written.
    pub(super) fn save(
        &self,
        task: ProvisioningTask,
        commands: Vec<Command>,
        verdict: Verdict,
        now: i64,
    ) -> bool {
        let op = self.prepare(task, commands, verdict, now);
        log_save(self.store.write_blocking(op))
    }

    /// Builds the write for a task's new state: concludes it, destroys a failed
    /// droplet when configured, and adds the order event the verdict implies.
    pub(super) fn prepare(
        &self,
        mut task: ProvisioningTask,
        mut commands: Vec<Command>,
        verdict: Verdict,
        now: i64,
    ) -> WriteOp {
        task.conclude(&verdict, now);
        match &verdict {
            Verdict::Waiting => {}
            Verdict::Succeeded => {
                self.record_outcome("SUCCESS");
                let droplet = task.droplet.as_ref();
                let metadata = serde_json::json!({
                    "dropletId": droplet.map(|d| d.id.to_string()),
                    "ipv4Public": droplet.and_then(|d| d.ipv4_public.as_deref()),
                });
                commands.push(Command::ProvisioningSucceeded {
                    metadata: Some(metadata.to_string()),
                });
            }
            Verdict::Failed { code, message } => {
                self.record_outcome(code.as_str());
                let mut metadata = serde_json::json!({ "errorCode": code.as_str() });
                if let Some(id) = task.droplet_id() {
                    metadata["dropletId"] = serde_json::json!(id.to_string());
                    let client = task
                        .do_account
                        .as_deref()
                        .and_then(|a| self.fleet.client(a));
                    if let (true, Some(client)) = (self.settings.destroy_failed_droplets, client) {
                        match client.delete_droplet(id) {
                            Ok(()) => metadata["dropletDestroyed"] = serde_json::json!(true),
                            Err(e) => {
                                tracing::warn!(order_id = %task.order_id, droplet_id = id, error = %e, "could not destroy the droplet of a failed task")
                            }
                        }
                    }
                }
                tracing::warn!(order_id = %task.order_id, code = code.as_str(), "provisioning failed: {message}");
                commands.push(Command::ProvisioningFailed {
                    message: message.clone(),
                    metadata: Some(metadata.to_string()),
                });
            }
        }
        WriteOp::SaveTask {
            task: Box::new(task),
            commands,
        }
    }
}

/// A PENDING task (new, or after retry) becomes IN_PROGRESS; a PAID order
/// moves to PROVISIONING with the save that follows.
fn start(
    record: &OrderRecord,
    mut task: ProvisioningTask,
    now: Millis,
) -> (ProvisioningTask, Vec<Command>) {
    let mut commands = Vec::new();
    if task.status == ProvisioningStatus::Pending {
        if record.order.status == OrderStatus::Paid {
            commands.push(Command::StartProvisioning);
        }
        task.status = ProvisioningStatus::InProgress;
        if task.started_at.is_none() || record.order.status == OrderStatus::Provisioning {
            task.started_at = Some(now);
        }
    }
    (task, commands)
}

/// Orders placed on an account whose droplet is not known yet: the slots the
/// stored tasks say are held.
fn placed_without_droplet(records: &[OrderRecord]) -> Vec<(String, uuid::Uuid)> {
    records
        .iter()
        .filter_map(|r| r.task.as_ref())
        .filter(|t| t.droplet.is_none())
        .filter_map(|t| t.do_account.clone().map(|a| (a, t.order_id)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::listing_is_cheaper;

    #[test]
    fn a_few_open_tasks_among_many_droplets_are_read_one_by_one() {
        // 10 GETs beat 25 pages of 5,000 droplets.
        assert!(!listing_is_cheaper(10, 5_000));
        // 10,000 open droplets: 50 pages instead of 10,000 GETs.
        assert!(listing_is_cheaper(10_000, 10_000));
        assert!(listing_is_cheaper(10_000, 0), "the open droplets are live");
        // One page beats two GETs; one GET ties one page and is exact.
        assert!(listing_is_cheaper(2, 150));
        assert!(!listing_is_cheaper(1, 0));
        assert!(!listing_is_cheaper(0, 100_000));
        // 12,000 live droplets: 60 pages.
        assert!(listing_is_cheaper(61, 12_000));
        assert!(!listing_is_cheaper(60, 12_000));
    }
}
