//! Which account a task's calls go to (SPEC §13): placing a new server,
//! moving it on when DigitalOcean says an account is full, and each
//! account's own back-off.

use std::time::{Duration, Instant};

use super::{log_save, Backoff, Provisioner};
use crate::cloud::fleet::NoPlace;
use crate::cloud::CloudError;
use crate::domain::fleet::Health;
use crate::domain::lifecycle::Command;
use crate::domain::task::{ProvisioningError, ProvisioningTask, Verdict};
use crate::domain::time::Millis;
use crate::domain::OrderRecord;

/// Calls on this account end for this sweep (a 429, an outage, a refused
/// token): its tasks keep their state and wait for a later sweep, while the
/// other accounts' tasks go on.
pub(super) struct Halt(pub String);

/// Where a task without an account stands after trying to place it.
pub(super) enum Placing {
    /// Placed and saved: the saved task, on this account.
    Placed(Box<ProvisioningTask>, String),
    /// Not placed, and saved as waiting (or failed after waiting too long);
    /// `finished` when it failed.
    Waiting { saved: bool, finished: bool },
}

impl NoPlace {
    fn code(self) -> ProvisioningError {
        match self {
            NoPlace::Unauthorized => ProvisioningError::DigitaloceanUnauthorized,
            NoPlace::Unavailable => ProvisioningError::DigitaloceanUnavailable,
            NoPlace::NoCapacity => ProvisioningError::NoCapacity,
        }
    }

    fn message(self, region: &str) -> String {
        match self {
            NoPlace::Unauthorized => {
                "DigitalOcean refuses the API token of every account that could take this server"
                    .into()
            }
            NoPlace::Unavailable => {
                "DigitalOcean does not answer for any account that could take this server; retrying"
                    .into()
            }
            NoPlace::NoCapacity => format!(
                "no DigitalOcean account has a free slot in {region}; waiting for one to open"
            ),
        }
    }
}

impl Provisioner {
    /// Takes a slot for the task's server. The account is saved on the task
    /// (with whatever `commands` starting it owes) before any call is made
    /// there, so after a crash the look-up by tag runs on that same account
    /// and a droplet made there is found instead of made twice.
    pub(super) fn place(
        &self,
        record: &OrderRecord,
        mut task: ProvisioningTask,
        commands: Vec<Command>,
        now: Millis,
    ) -> Placing {
        let order = &record.order;
        match self.fleet.place(&order.droplet.region, order.id) {
            Ok(account) => {
                task.place_on(account.clone());
                let op = self.prepare(task, commands, Verdict::Waiting, now);
                match self.store.write_blocking(op) {
                    Ok(Ok(saved)) => match saved.task {
                        Some(task) => Placing::Placed(Box::new(task), account),
                        None => Placing::Waiting {
                            saved: true,
                            finished: false,
                        },
                    },
                    other => {
                        log_save(other);
                        self.fleet.release(&account, order.id);
                        Placing::Waiting {
                            saved: false,
                            finished: false,
                        }
                    }
                }
            }
            Err(why) => {
                let limit = Millis::try_from(self.settings.capacity_wait.as_millis())
                    .unwrap_or(Millis::MAX);
                let message = why.message(&order.droplet.region);
                let verdict = task.wait_for_capacity(why.code(), message, now, limit);
                let finished = verdict != Verdict::Waiting;
                Placing::Waiting {
                    saved: self.save(task, commands, verdict, now),
                    finished,
                }
            }
        }
    }

    /// The task's account refuses its token: no call is made there until a
    /// reload (or a later check) says it works; the task shows why. Returns
    /// true when the task was held.
    pub(super) fn held_for_token(&self, task: &ProvisioningTask) -> bool {
        let Some(account) = task.do_account.as_deref() else {
            return false;
        };
        if self.fleet.health(account) != Some(Health::Unauthorized) {
            return false;
        }
        if task.error_code != Some(ProvisioningError::DigitaloceanUnauthorized) {
            let mut task = task.clone();
            task.note_retrying(
                ProvisioningError::DigitaloceanUnauthorized,
                format!(
                    "DigitalOcean refuses the API token of account {account}; waiting for a reload"
                ),
            );
            let now = crate::domain::time::now_millis();
            self.save(task, Vec::new(), Verdict::Waiting, now);
        }
        true
    }

    pub(super) fn backing_off(&self, account: &str) -> bool {
        match self.backoff.lock() {
            Ok(all) => all
                .get(account)
                .and_then(|b| b.until)
                .is_some_and(|t| Instant::now() < t),
            Err(_) => false,
        }
    }

    /// Any successful call ends the account's back-off streak.
    pub(super) fn cloud_ok(&self, account: &str) {
        if let Ok(mut all) = self.backoff.lock() {
            all.remove(account);
        }
    }

    /// A transient failure on `account`: wait `retry_after` (429) or an
    /// exponential multiple of the poll interval (5xx, timeouts), capped at
    /// two minutes.
    pub(super) fn cloud_trouble(&self, account: &str, retry_after: Option<Duration>) {
        if let Ok(mut all) = self.backoff.lock() {
            let b: &mut Backoff = all.entry(account.to_string()).or_default();
            b.failures = b.failures.saturating_add(1);
            let wait = retry_after.unwrap_or_else(|| {
                let factor = 1u32 << (b.failures - 1).min(5);
                (self.settings.poll_interval * factor).min(Duration::from_secs(120))
            });
            b.until = Some(Instant::now() + wait);
        }
    }

    /// Records what a failed call says of its account: a refused token or an
    /// outage stops placements there, a 429 or an outage backs the account
    /// off. Other answers concern the one droplet.
    pub(super) fn note_account_trouble(&self, account: &str, e: &CloudError) {
        match e {
            CloudError::Unauthorized(_) => self.fleet.mark_failed(account, e),
            CloudError::RateLimited { retry_after } => {
                self.cloud_trouble(account, Some(*retry_after))
            }
            CloudError::Unavailable(_) => {
                self.fleet.mark_failed(account, e);
                self.cloud_trouble(account, None);
            }
            CloudError::NotFound | CloudError::Rejected { .. } => {}
        }
    }
}

impl Provisioner {
    /// Refuses an account list that leaves out an account live orders use
    /// (SPEC §13), naming it and the count.
    pub fn check_accounts(&self, configured: &[String]) -> Result<(), String> {
        let usage = self
            .store
            .account_usage()
            .map_err(|e| format!("cannot read which accounts live orders use: {e}"))?;
        crate::cloud::accounts::check_removal(configured, &usage)
    }

    /// A reload's account list replaces the current one, unless it removes an
    /// account in use; then the current list stays. Waits for a running
    /// sweep, so no placement lands on an account as it goes.
    pub fn reconfigure(&self, members: Vec<crate::cloud::fleet::Member>) -> Result<(), String> {
        let _working = self.working.blocking_lock();
        let names: Vec<String> = members.iter().map(|m| m.name.clone()).collect();
        self.check_accounts(&names)?;
        self.fleet.replace(members);
        Ok(())
    }
}
