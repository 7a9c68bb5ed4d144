//! Typed configuration: `Config.toml` (or `--config FILE`), then the v1 service's
//! flat environment names, then `VPSD_*` variables (`__` between levels), each
//! layer overriding the one before. Unknown keys are errors; every bad value is
//! reported in one line that names its key.
//!
//! One file per concern: `sections` (the typed tables and their defaults),
//! `env` (the v1 flat names and where a value came from), `load` (figment and
//! the start-up decisions), `validate` (what serde cannot check), `error`.

pub mod accounts;
mod env;
mod error;
mod load;
mod quick_repair;
mod sections;
mod validate;

pub use error::ConfigError;
pub use load::{Note, NoteLevel};
pub use quick_repair::{QuickRepair, DEFAULT_CACHE_MB};
pub use sections::{
    ActionsConfig, AdminConfig, AuthConfig, BackupConfig, CatalogConfig, CatalogSource,
    CloudConfig, CloudProvider, ConsoleConfig, DigitalOceanConfig, IdempotencyConfig, JwtAlgorithm,
    LifecycleConfig, LogConfig, LogFormat, PostgresConfig, ProvisioningConfig, SandboxConfig,
    ServerConfig, StorageBackend, StorageConfig,
};
pub use validate::validate_cron;

use serde::{Deserialize, Serialize};

use crate::url_rules::mask_url;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub auth: AuthConfig,
    pub catalog: CatalogConfig,
    pub cloud: CloudConfig,
    pub provisioning: ProvisioningConfig,
    pub actions: ActionsConfig,
    pub lifecycle: LifecycleConfig,
    pub webhooks: crate::webhooks::config::WebhooksConfig,
    pub idempotency: IdempotencyConfig,
    pub backup: BackupConfig,
    pub log: LogConfig,
    pub admin: AdminConfig,
    pub console: ConsoleConfig,
}

impl Config {
    /// Whether `/admin/` serves the console.
    pub fn console_enabled(&self) -> bool {
        let has_key = self
            .auth
            .internal_api_key
            .as_deref()
            .is_some_and(|k| !k.is_empty());
        self.admin.enabled.unwrap_or(has_key) && has_key
    }

    /// Regions a customer may choose: the default plus the allow-list.
    pub fn allowed_regions(&self) -> Vec<String> {
        let d = &self.cloud.digitalocean;
        let mut regions = vec![d.default_region.clone()];
        for r in &d.regions {
            if !regions.contains(r) {
                regions.push(r.clone());
            }
        }
        regions
    }

    /// The effective configuration as TOML with every secret replaced by `***`.
    pub fn masked_toml(&self) -> String {
        let mut shown = self.clone();
        let mask = |v: &mut Option<String>| {
            if v.is_some() {
                *v = Some("***".into());
            }
        };
        mask(&mut shown.auth.jwt_secret);
        mask(&mut shown.auth.internal_api_key);
        mask(&mut shown.cloud.digitalocean.token);
        for account in &mut shown.cloud.digitalocean.accounts {
            mask(&mut account.token);
        }
        shown.webhooks = shown.webhooks.masked();
        shown.catalog.url = shown.catalog.url.as_deref().map(mask_url);
        shown.cloud.digitalocean.api_url = mask_url(&shown.cloud.digitalocean.api_url);
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}
