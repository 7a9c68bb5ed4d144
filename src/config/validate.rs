//! What serde cannot check: values that parse but make no sense, each
//! refused with the key it belongs to.

use super::accounts::validate_accounts;
use std::net::SocketAddr;

use super::error::{invalid, ConfigError};
use super::sections::{CatalogSource, CloudProvider, JwtAlgorithm};
use super::Config;
use crate::url_rules::{is_http_url, mask_url, require_https_unless_loopback};

/// The reconciler's schedule has whole-second resolution.
pub(super) const MIN_POLL_INTERVAL_MS: u64 = 1000;
/// 256 bits, the HMAC-SHA256 key size RFC 7518 §3.2 requires.
const MIN_HS256_SECRET_BYTES: usize = 32;
const MIN_API_KEY_CHARS: usize = 16;

impl Config {
    /// Checks what serde cannot: values that parse but make no sense. Sections
    /// are checked in the order `Config` declares them, so when several keys
    /// are wrong the one reported does not depend on the environment.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_server()?;
        self.validate_auth()?;
        self.validate_catalog()?;
        self.validate_cloud()?;
        self.validate_provisioning()?;
        self.validate_lifecycle()?;
        if let Err((key, problem)) = self.webhooks.validate() {
            return invalid(key, problem);
        }
        if self.idempotency.max_keys_per_user == 0 {
            return invalid(
                "idempotency.max_keys_per_user",
                "must be at least 1 (0 would refuse every Idempotency-Key)",
            );
        }
        self.validate_backup()?;
        self.validate_admin()?;
        if self.console.zone().is_none() {
            return invalid(
                "console.timezone",
                format!(
                    "{:?} is not an IANA time zone name (e.g. UTC, Asia/Jakarta)",
                    self.console.timezone
                ),
            );
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return invalid(
                "log.level",
                format!("{:?} is not a log filter", self.log.level),
            );
        }
        Ok(())
    }

    /// `storage.postgres` is checked only when it is the backend: a redb
    /// deployment with a stale URL in its file still starts.
    fn validate_postgres(&self) -> Result<(), ConfigError> {
        if self.storage.backend != super::StorageBackend::Postgres {
            return Ok(());
        }
        let pg = &self.storage.postgres;
        match pg.url.as_deref() {
            None | Some("") => {
                return invalid(
                    "storage.postgres.url",
                    "is required when storage.backend = \"postgres\"",
                )
            }
            Some(url) if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) => {
                return invalid(
                    "storage.postgres.url",
                    "must start with postgres:// or postgresql://",
                )
            }
            Some(_) => {}
        }
        if !(1..=256).contains(&pg.pool_size) {
            return invalid("storage.postgres.pool_size", "must be from 1 to 256");
        }
        if !(2..=3600).contains(&pg.takeover_seconds) {
            return invalid(
                "storage.postgres.takeover_seconds",
                "must be from 2 to 3600",
            );
        }
        Ok(())
    }

    fn validate_server(&self) -> Result<(), ConfigError> {
        if self.server.bind.parse::<SocketAddr>().is_err() {
            return invalid(
                "server.bind",
                format!(
                    "{:?} is not an address like 127.0.0.1:3003",
                    self.server.bind
                ),
            );
        }
        if self.storage.cache_mb == 0 || self.storage.cache_mb > 1 << 20 {
            return invalid("storage.cache_mb", "must be from 1 to 1048576");
        }
        self.validate_postgres()?;
        if self.server.body_limit == 0 {
            return invalid("server.body_limit", "must be at least 1 byte");
        }
        for (key, ms) in [
            ("server.header_timeout_ms", self.server.header_timeout_ms),
            ("server.body_timeout_ms", self.server.body_timeout_ms),
            ("server.idle_timeout_ms", self.server.idle_timeout_ms),
        ] {
            // 0 would cut every connection at once; a day is already no limit.
            if !(1..=86_400_000).contains(&ms) {
                return invalid(key, "must be from 1 to 86400000 milliseconds");
            }
        }
        if self.server.max_connections == 0 {
            return invalid("server.max_connections", "must be at least 1");
        }
        Ok(())
    }

    /// Short secrets are guessable offline (an HS256 token is a hash of the
    /// secret) or by brute force (the API key), so they stop start-up.
    fn validate_auth(&self) -> Result<(), ConfigError> {
        let a = &self.auth;
        if a.jwt_algorithm == JwtAlgorithm::HS256 {
            if let Some(secret) = a.jwt_secret.as_deref().filter(|s| !s.is_empty()) {
                if secret.len() < MIN_HS256_SECRET_BYTES {
                    return invalid(
                        "auth.jwt_secret",
                        format!("an HS256 secret must be at least {MIN_HS256_SECRET_BYTES} bytes (env JWT_SECRET)"),
                    );
                }
            }
        }
        if let Some(key) = a.internal_api_key.as_deref().filter(|k| !k.is_empty()) {
            if key.chars().count() < MIN_API_KEY_CHARS {
                return invalid(
                    "auth.internal_api_key",
                    format!(
                        "must be at least {MIN_API_KEY_CHARS} characters (env INTERNAL_API_KEY)"
                    ),
                );
            }
        }
        Ok(())
    }

    fn validate_catalog(&self) -> Result<(), ConfigError> {
        let c = &self.catalog;
        if c.timeout_ms == 0 {
            return invalid("catalog.timeout_ms", "must be at least 1");
        }
        if c.currency.trim().is_empty() {
            return invalid("catalog.currency", "must not be empty");
        }
        if c.source == CatalogSource::Http && c.url.as_deref().is_none_or(|u| u.trim().is_empty()) {
            return invalid(
                "catalog.url",
                "is required when catalog.source = \"http\" (env CATALOG_SERVICE_URL)",
            );
        }
        if let Some(url) = &c.url {
            if !is_http_url(url) {
                return invalid(
                    "catalog.url",
                    format!("{:?} is not an http(s) URL", mask_url(url)),
                );
            }
        }
        Ok(())
    }

    fn validate_cloud(&self) -> Result<(), ConfigError> {
        let d = &self.cloud.digitalocean;
        if !is_http_url(&d.api_url) {
            return invalid(
                "cloud.digitalocean.api_url",
                format!("{:?} is not an http(s) URL", mask_url(&d.api_url)),
            );
        }
        // The token rides on every request: plain http only to this machine.
        if let Err(problem) = require_https_unless_loopback(&d.api_url) {
            return invalid("cloud.digitalocean.api_url", problem);
        }
        if d.default_region.trim().is_empty() {
            return invalid("cloud.digitalocean.default_region", "must not be empty");
        }
        if d.timeout_ms == 0 {
            return invalid("cloud.digitalocean.timeout_ms", "must be at least 1");
        }
        if d.account_refresh_seconds == 0 {
            return invalid(
                "cloud.digitalocean.account_refresh_seconds",
                "must be at least 1",
            );
        }
        validate_accounts("cloud.digitalocean.accounts", &d.all_accounts())?;
        validate_accounts("cloud.sandbox.accounts", &self.cloud.sandbox.accounts)?;
        if self.cloud.provider == CloudProvider::Digitalocean
            && d.accounts.is_empty()
            && d.token.as_deref().is_none_or(|t| t.trim().is_empty())
        {
            return invalid(
                "cloud.digitalocean.token",
                "is required when cloud.provider = \"digitalocean\" (env DIGITALOCEAN_API_TOKEN)",
            );
        }
        if self.cloud.provider == CloudProvider::Digitalocean {
            for (n, account) in d.accounts.iter().enumerate() {
                account.token_source(&format!("cloud.digitalocean.accounts[{n}]"))?;
            }
        }
        Ok(())
    }

    fn validate_provisioning(&self) -> Result<(), ConfigError> {
        // `load` rounds smaller values up; this guards configs built in code.
        if self.provisioning.poll_interval_ms < MIN_POLL_INTERVAL_MS {
            return invalid(
                "provisioning.poll_interval_ms",
                "must be at least 1000 (the reconciler's schedule counts whole seconds)",
            );
        }
        if self.actions.max_attempts == 0 {
            return invalid("actions.max_attempts", "must be at least 1");
        }
        if self.provisioning.max_attempts == 0 {
            return invalid("provisioning.max_attempts", "must be at least 1");
        }
        Ok(())
    }

    fn validate_lifecycle(&self) -> Result<(), ConfigError> {
        for name in self.lifecycle.grace_seconds.keys() {
            if crate::domain::PlanDuration::parse(name).is_none() {
                return invalid(
                    "lifecycle.grace_seconds",
                    format!("{name:?} is not a duration (MONTHLY, QUARTERLY, SEMI_ANNUAL, ANNUAL)"),
                );
            }
        }
        let ten_years = 10 * 365 * 86_400;
        let too_long = |s: &u64| *s > ten_years;
        if self.lifecycle.grace_seconds.values().any(too_long)
            || self.lifecycle.remind_before_seconds.iter().any(too_long)
        {
            return invalid("lifecycle", "periods must be at most ten years");
        }
        Ok(())
    }

    fn validate_backup(&self) -> Result<(), ConfigError> {
        if let Some(schedule) = &self.backup.schedule {
            if let Err(why) = validate_cron(schedule) {
                return invalid("backup.schedule", why);
            }
        }
        if self.backup.keep == 0 {
            return invalid("backup.keep", "must be at least 1");
        }
        Ok(())
    }

    fn validate_admin(&self) -> Result<(), ConfigError> {
        let has_key = self
            .auth
            .internal_api_key
            .as_deref()
            .is_some_and(|k| !k.is_empty());
        if self.admin.enabled == Some(true) && !has_key {
            return invalid(
                "admin.enabled",
                "the console logs in with auth.internal_api_key (env INTERNAL_API_KEY), which is not set",
            );
        }
        if !(60..=30 * 86_400).contains(&self.admin.session_ttl_seconds) {
            return invalid(
                "admin.session_ttl_seconds",
                "must be from 60 (one minute) to 2592000 (30 days)",
            );
        }
        if let Some(url) = &self.server.public_url {
            if !is_http_url(url) {
                return invalid(
                    "server.public_url",
                    format!("{url:?} is not an http(s) URL"),
                );
            }
        }
        Ok(())
    }
}

/// Six fields, seconds first, as tokio-cron-scheduler expects. Its own parse
/// errors are opaque, so check the shape here and let the parser judge the rest.
pub fn validate_cron(expr: &str) -> Result<(), String> {
    let fields = expr.split_whitespace().count();
    if fields != 6 {
        return Err(format!(
            "{expr:?} has {fields} fields; expected six (sec min hour day month weekday), e.g. \"0 0 3 * * *\""
        ));
    }
    expr.parse::<croner_check::Schedule>()
        .map(|_| ())
        .map_err(|_| format!("{expr:?} is not a valid cron expression"))
}

mod croner_check {
    //! tokio-cron-scheduler parses with `croner`; parsing here with the same
    //! crate catches a bad schedule at start-up instead of at the first tick.
    pub struct Schedule;
    impl std::str::FromStr for Schedule {
        type Err = ();
        fn from_str(s: &str) -> Result<Self, ()> {
            tokio_cron_scheduler::Job::new_async(s, |_, _| Box::pin(async {}))
                .map(|_| Schedule)
                .map_err(|_| ())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cron_needs_six_fields() {
        assert!(validate_cron("0 0 3 * * *").is_ok());
        assert!(validate_cron("0 3 * * *").is_err());
        assert!(validate_cron("a b c d e f").is_err());
    }

    #[test]
    fn a_bad_value_names_its_key() {
        let mut config = Config::default();
        config.backup.keep = 0;
        let e = config.validate().unwrap_err();
        assert!(matches!(
            e,
            ConfigError::Invalid {
                key: "backup.keep",
                ..
            }
        ));
        assert_eq!(
            e.to_string(),
            "config error: backup.keep: must be at least 1"
        );
    }

    #[test]
    fn defaults_validate() {
        Config::default().validate().unwrap();
    }
}
