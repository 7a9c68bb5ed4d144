//! `[[cloud.digitalocean.accounts]]` and `[[cloud.sandbox.accounts]]` (SPEC
//! §13): the accounts servers are spread over. Tokens live only here (or in
//! the file a `token_file` names), never in the data file.

use serde::{Deserialize, Serialize};

use super::ConfigError;

pub use crate::domain::fleet::DEFAULT_ACCOUNT;
use crate::domain::fleet::{is_account_name, ACCOUNT_NAME_RULE};

/// One account as configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    /// `[a-z0-9-]{1,32}`; the data refers to it, so it must stay stable.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// A file holding the token (systemd credentials), read at start-up and
    /// on every reload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<std::path::PathBuf>,
    /// Lower is preferred.
    #[serde(default = "default_priority")]
    pub priority: i64,
    /// Regions it may serve; empty: any.
    #[serde(default)]
    pub regions: Vec<String>,
    /// A cap below DigitalOcean's own droplet limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_droplets: Option<u64>,
    /// No new servers; its servers keep working and can be terminated.
    #[serde(default)]
    pub drain: bool,
    /// Sandbox only: the droplet limit the simulated account reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub droplet_limit: Option<u64>,
}

fn default_priority() -> i64 {
    100
}

impl AccountConfig {
    /// The v1 deployment's one token as an account.
    pub fn single(token: Option<String>) -> AccountConfig {
        AccountConfig::named(DEFAULT_ACCOUNT, token)
    }

    /// Account `name` with `token` and every optional key at its default.
    pub fn named(name: &str, token: Option<String>) -> AccountConfig {
        AccountConfig {
            name: name.into(),
            token,
            token_file: None,
            priority: default_priority(),
            regions: Vec::new(),
            max_droplets: None,
            drain: false,
            droplet_limit: None,
        }
    }

    /// Whether exactly one of `token` and `token_file` is given (a token
    /// not blank): what can be checked before the file is read.
    pub fn token_source(&self, key: &str) -> Result<(), ConfigError> {
        match (&self.token, &self.token_file) {
            (Some(token), None) if token.trim().is_empty() => {
                Err(invalid(key, "has an empty token"))
            }
            (Some(_), None) | (None, Some(_)) => Ok(()),
            (Some(_), Some(_)) => Err(invalid(key, "has both token and token_file; keep one")),
            (None, None) => Err(invalid(key, "needs token or token_file")),
        }
    }

    /// The token, from the config or its file; a missing or empty one is an
    /// error naming the account, never a silent fallback to another token.
    pub fn resolve_token(&self, key: &str) -> Result<String, ConfigError> {
        self.token_source(key)?;
        let token = match (&self.token, &self.token_file) {
            (None, Some(path)) => {
                std::fs::read_to_string(path).map_err(|e| ConfigError::InvalidAt {
                    key: format!("{key}.token_file"),
                    problem: format!("cannot read {}: {e}", path.display()),
                })?
            }
            // `token_source` let exactly one through: here, the token.
            (token, _) => token.clone().unwrap_or_default(),
        };
        let token = token.trim().to_string();
        if token.is_empty() {
            return Err(invalid(key, "has an empty token"));
        }
        Ok(token)
    }
}

fn invalid(key: &str, problem: &str) -> ConfigError {
    ConfigError::InvalidAt {
        key: key.to_string(),
        problem: problem.to_string(),
    }
}

/// Names are unique, `[a-z0-9-]{1,32}`; caps are at least 1. `key` is the
/// list's config path, for the error line.
pub fn validate_accounts(key: &str, accounts: &[AccountConfig]) -> Result<(), ConfigError> {
    let mut seen = std::collections::BTreeSet::new();
    for (n, account) in accounts.iter().enumerate() {
        let at = format!("{key}[{n}]");
        let name = &account.name;
        if !is_account_name(name) {
            return Err(invalid(
                &format!("{at}.name"),
                &format!("{name:?} {ACCOUNT_NAME_RULE}"),
            ));
        }
        if !seen.insert(name.as_str()) {
            return Err(invalid(
                &format!("{at}.name"),
                &format!("{name:?} is configured twice"),
            ));
        }
        if account.max_droplets == Some(0) || account.droplet_limit == Some(0) {
            return Err(invalid(
                &at,
                "max_droplets and droplet_limit must be at least 1",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(name: &str) -> AccountConfig {
        AccountConfig::named(name, Some("t".into()))
    }

    #[test]
    fn names_are_checked_and_unique() {
        let key = "cloud.digitalocean.accounts";
        assert!(validate_accounts(key, &[named("eu-1"), named("us-2")]).is_ok());
        for bad in ["", "EU", "eu_1", &"a".repeat(33)] {
            let err = validate_accounts(key, &[named(bad)]).unwrap_err();
            assert!(err.to_string().contains("accounts[0].name"), "{err}");
        }
        let twice = validate_accounts(key, &[named("a"), named("a")]).unwrap_err();
        assert!(twice.to_string().contains("configured twice"), "{twice}");
    }

    #[test]
    fn a_token_comes_from_exactly_one_place_and_is_never_empty() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "dop_v1_abc\n").unwrap();
        let from_file = AccountConfig {
            token: None,
            token_file: Some(file.clone()),
            ..named("a")
        };
        assert_eq!(from_file.resolve_token("k").unwrap(), "dop_v1_abc");
        let both = AccountConfig {
            token_file: Some(file),
            ..named("a")
        };
        assert!(both.resolve_token("k").is_err());
        let none = AccountConfig {
            token: None,
            ..named("a")
        };
        assert!(none.resolve_token("k").is_err());
        let empty = AccountConfig {
            token: Some("  ".into()),
            ..named("a")
        };
        assert!(empty.resolve_token("k").is_err());
    }

    #[test]
    fn account_tokens_never_show_in_the_printed_config() {
        let mut config = crate::config::Config::default();
        config.cloud.digitalocean.token = Some("dop_v1_single".into());
        config.cloud.digitalocean.accounts = vec![AccountConfig {
            token: Some("dop_v1_secret".into()),
            ..named("eu-1")
        }];
        let shown = config.masked_toml();
        assert!(!shown.contains("dop_v1_secret") && !shown.contains("dop_v1_single"));
        assert!(shown.contains("eu-1"), "{shown}");
        let names: Vec<String> = config
            .cloud
            .digitalocean
            .all_accounts()
            .into_iter()
            .map(|a| a.name)
            .collect();
        assert_eq!(names, ["eu-1", DEFAULT_ACCOUNT]);
    }
}
