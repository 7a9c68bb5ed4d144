//! The fleet the configuration describes (SPEC §13): one client per account,
//! each with its own token, read from the config or its `token_file` at
//! start-up and on every reload. A token that cannot be read stops start-up
//! (or the reload) with the account's key; it never falls back to another.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::digitalocean::DigitalOcean;
pub use super::fleet::Member;
use super::sandbox::Sandbox;
use super::Cloud;
use crate::config::accounts::AccountConfig;
use crate::config::{CloudProvider, Config, ConfigError};

/// `digitalocean` or `sandbox`.
pub fn provider(config: &Config) -> &'static str {
    match config.cloud.provider {
        CloudProvider::Sandbox => "sandbox",
        CloudProvider::Digitalocean => "digitalocean",
    }
}

/// Every configured account with its client. The sandbox without accounts
/// is one unlimited account, `default`.
pub fn members(config: &Config) -> Result<Vec<Member>, ConfigError> {
    match config.cloud.provider {
        CloudProvider::Sandbox => Ok(sandbox_members(config)),
        CloudProvider::Digitalocean => {
            let d = &config.cloud.digitalocean;
            let timeout = Duration::from_millis(d.timeout_ms);
            d.all_accounts()
                .iter()
                .enumerate()
                .map(|(n, account)| {
                    let key = format!("cloud.digitalocean.accounts[{n}]");
                    let token = account.resolve_token(&key)?;
                    let client: Arc<dyn Cloud> =
                        Arc::new(DigitalOcean::new(&d.api_url, &token, timeout));
                    Ok(member(account, client))
                })
                .collect()
        }
    }
}

fn sandbox_members(config: &Config) -> Vec<Member> {
    let s = &config.cloud.sandbox;
    let delay = Duration::from_millis(s.boot_delay_ms);
    let data = &config.storage.path;
    if s.accounts.is_empty() {
        let client = Sandbox::with_state_file(delay, state_file(data, None));
        return vec![Member::single(Arc::new(client))];
    }
    s.accounts
        .iter()
        .map(|account| {
            let client = Sandbox::with_state_file(delay, state_file(data, Some(&account.name)))
                .with_droplet_limit(account.droplet_limit);
            member(account, Arc::new(client))
        })
        .collect()
}

/// Beside the data file, so sandbox droplets outlive a restart; one file per
/// simulated account.
fn state_file(data: &Path, account: Option<&str>) -> PathBuf {
    let mut path = data.to_path_buf().into_os_string();
    match account {
        None => path.push(".sandbox.json"),
        Some(name) => path.push(format!(".sandbox-{name}.json")),
    }
    path.into()
}

fn member(account: &AccountConfig, client: Arc<dyn Cloud>) -> Member {
    Member {
        name: account.name.clone(),
        priority: account.priority,
        regions: account.regions.clone(),
        max_droplets: account.max_droplets,
        drain: account.drain,
        client,
    }
}

/// Accounts that live orders use but `configured` leaves out, with their
/// counts, as one refusal line; `Ok` when none.
pub fn check_removal(configured: &[String], usage: &[(String, u64)]) -> Result<(), String> {
    let missing: Vec<String> = usage
        .iter()
        .filter(|(name, n)| *n > 0 && !configured.contains(name))
        .map(|(name, n)| format!("{name:?} ({n} live orders)"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(format!(
        "cloud accounts: {} removed from the configuration while live orders still use it; put it back (drain = true retires an account)",
        missing.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removal_is_refused_only_for_accounts_in_use() {
        let usage = [("east".to_string(), 3), ("old".to_string(), 0)];
        assert_eq!(check_removal(&["east".into()], &usage), Ok(()));
        let refused = check_removal(&["west".into()], &usage).expect_err("refused");
        assert!(refused.contains("\"east\" (3 live orders)"), "{refused}");
        assert!(!refused.contains("old"), "{refused}");
    }
}
