//! The configuration's tables, one struct per `[section]`, with the defaults
//! a deployment gets when it leaves a key out.

use super::accounts::AccountConfig;
use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Listen address; `PORT` replaces only its port.
    pub bind: String,
    /// Largest accepted request body, bytes.
    pub body_limit: u64,
    /// Orders one user may create per minute; 0 turns the limit off.
    pub order_rate_limit_per_minute: u32,
    /// How long shutdown waits for in-flight requests, milliseconds.
    pub shutdown_grace_ms: u64,
    /// Origins allowed by CORS; empty turns CORS off.
    pub cors_origins: Vec<String>,
    /// A new connection, or a request whose first byte arrived, must finish
    /// sending its headers within this many milliseconds.
    pub header_timeout_ms: u64,
    /// A request body must arrive completely within this many milliseconds
    /// of the handler starting to read it.
    pub body_timeout_ms: u64,
    /// A keep-alive connection with no request in progress is closed after
    /// this many milliseconds.
    pub idle_timeout_ms: u64,
    /// Connections open at once; further clients wait (in the listen
    /// backlog) until one closes.
    pub max_connections: u32,
    /// Where operators reach vpsd (e.g. `https://vps.example.com`); an https
    /// URL marks the console's session cookie `Secure`.
    pub public_url: Option<String>,
    /// Take the client's address from the first `X-Forwarded-For` hop (for
    /// the per-address limits and the log). Only behind a proxy that sets
    /// it: otherwise any client can name any address and dodge its limit.
    pub trust_forwarded_for: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            bind: "127.0.0.1:3003".into(),
            body_limit: 65536,
            order_rate_limit_per_minute: 0,
            shutdown_grace_ms: 10_000,
            cors_origins: Vec::new(),
            header_timeout_ms: 10_000,
            body_timeout_ms: 30_000,
            idle_timeout_ms: 60_000,
            max_connections: 1024,
            public_url: None,
            trust_forwarded_for: false,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    pub path: PathBuf,
    /// redb's page cache, MiB. redb defaults to 1 GiB, which a long-running
    /// daemon would fill with pages of a large file; hot pages (recent orders,
    /// index tails) fit in far less.
    pub cache_mb: u64,
    /// Which commits also record redb's allocator state, so start-up after a
    /// crash skips redb's repair, which walks the whole file (about 1 s per
    /// GB): see the store's `repair` module. Safe to switch between runs.
    pub quick_repair: super::QuickRepair,
    /// Where orders live: the embedded redb file (`path`), or a PostgreSQL
    /// database several instances share (SPEC §15).
    pub backend: StorageBackend,
    pub postgres: PostgresConfig,
}

/// The storage backend (SPEC §15).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    /// One embedded data file: the default, and plenty for most shops.
    #[default]
    Redb,
    /// A PostgreSQL database shared by every instance of one shop.
    Postgres,
}

impl StorageBackend {
    pub fn name(self) -> &'static str {
        match self {
            StorageBackend::Redb => "redb",
            StorageBackend::Postgres => "postgres",
        }
    }
}

/// `storage.postgres`: used only when `storage.backend = "postgres"`.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostgresConfig {
    /// `postgres://user:password@host:port/database`; holds a password, so
    /// it is never logged (see the `Debug` below).
    #[serde(deserialize_with = "loose_string")]
    pub url: Option<String>,
    /// Connections for requests and the reconciler (one more is kept for
    /// leadership).
    pub pool_size: u32,
    /// How soon another instance takes over background work after the one
    /// doing it dies or loses the database.
    pub takeover_seconds: u64,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        PostgresConfig {
            url: None,
            pool_size: 16,
            takeover_seconds: 10,
        }
    }
}

impl std::fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("url", &self.url.as_ref().map(|_| "<set>"))
            .field("pool_size", &self.pool_size)
            .field("takeover_seconds", &self.takeover_seconds)
            .finish()
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            path: PathBuf::from("data/vpsd.redb"),
            cache_mb: super::DEFAULT_CACHE_MB,
            quick_repair: super::QuickRepair::WhenIdle,
            backend: StorageBackend::Redb,
            postgres: PostgresConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum JwtAlgorithm {
    #[default]
    RS256,
    ES256,
    HS256,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub jwt_algorithm: JwtAlgorithm,
    #[serde(deserialize_with = "loose_string")]
    pub jwt_public_key: Option<String>,
    pub jwt_public_key_file: Option<PathBuf>,
    #[serde(deserialize_with = "loose_string")]
    pub jwt_secret: Option<String>,
    #[serde(deserialize_with = "loose_string")]
    pub jwt_issuer: Option<String>,
    #[serde(deserialize_with = "loose_string")]
    pub jwt_audience: Option<String>,
    #[serde(deserialize_with = "loose_string")]
    pub internal_api_key: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CatalogSource {
    #[default]
    Embedded,
    Http,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CatalogConfig {
    pub source: CatalogSource,
    pub file: PathBuf,
    #[serde(deserialize_with = "loose_string")]
    pub url: Option<String>,
    pub timeout_ms: u64,
    /// Plan id -> DigitalOcean size slug, for plans the catalog gives no slug.
    pub sizes: BTreeMap<String, String>,
    pub currency: String,
}

impl Default for CatalogConfig {
    fn default() -> Self {
        CatalogConfig {
            source: CatalogSource::Embedded,
            file: PathBuf::from("config/catalog.toml"),
            url: None,
            timeout_ms: 5000,
            sizes: BTreeMap::new(),
            currency: "IDR".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CloudProvider {
    #[default]
    Sandbox,
    Digitalocean,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CloudConfig {
    pub provider: CloudProvider,
    pub digitalocean: DigitalOceanConfig,
    pub sandbox: SandboxConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DigitalOceanConfig {
    pub api_url: String,
    #[serde(deserialize_with = "loose_string")]
    pub token: Option<String>,
    pub default_region: String,
    /// Regions a customer may pick; the default region is always allowed.
    pub regions: Vec<String>,
    pub ipv6: bool,
    pub timeout_ms: u64,
    /// The accounts servers are spread over (SPEC §13); `token` above is one
    /// more, named `default`.
    pub accounts: Vec<AccountConfig>,
    /// How often each account's capacity and health are read again.
    pub account_refresh_seconds: u64,
    /// How long a paid order waits for a free slot before it fails
    /// `NO_CAPACITY`.
    pub capacity_wait_seconds: u64,
}

impl DigitalOceanConfig {
    /// Every account: the configured ones, then the v1 single token as
    /// `default`.
    pub fn all_accounts(&self) -> Vec<AccountConfig> {
        let mut all = self.accounts.clone();
        if self.token.is_some() {
            all.push(AccountConfig::single(self.token.clone()));
        }
        all
    }
}

impl Default for DigitalOceanConfig {
    fn default() -> Self {
        DigitalOceanConfig {
            api_url: "https://api.digitalocean.com".into(),
            token: None,
            default_region: "sgp1".into(),
            regions: Vec::new(),
            ipv6: false,
            timeout_ms: 15_000,
            accounts: Vec::new(),
            account_refresh_seconds: 300,
            capacity_wait_seconds: 86_400,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxConfig {
    pub boot_delay_ms: u64,
    /// Simulated accounts with droplet limits (SPEC §13); none: one
    /// unlimited account named `default`.
    pub accounts: Vec<AccountConfig>,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            boot_delay_ms: 3000,
            accounts: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProvisioningConfig {
    pub poll_interval_ms: u64,
    pub max_attempts: u32,
    pub destroy_failed_droplets: bool,
}

impl Default for ProvisioningConfig {
    fn default() -> Self {
        ProvisioningConfig {
            poll_interval_ms: 5000,
            max_attempts: 60,
            destroy_failed_droplets: false,
        }
    }
}

/// Customers' own actions on their servers (SPEC §14).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ActionsConfig {
    /// At most one customer action per order this often (admins skip it).
    pub cooldown_seconds: u64,
    /// Failed attempts before an action is `failed` with the reason.
    pub max_attempts: u32,
}

impl Default for ActionsConfig {
    fn default() -> Self {
        ActionsConfig {
            cooldown_seconds: 60,
            max_attempts: 10,
        }
    }
}

/// Where "today" is (SPEC §14): the calendar day of the internal stats.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// An IANA zone name (`UTC`, `Asia/Jakarta`); checked at start.
    pub timezone: String,
}

impl ConsoleConfig {
    /// The zone, or `None` when the name is not one (refused at start).
    pub fn zone(&self) -> Option<chrono_tz::Tz> {
        self.timezone.parse().ok()
    }
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            timezone: "UTC".into(),
        }
    }
}

/// After ACTIVE (SPEC §9): automatic expiry and the reminders before it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LifecycleConfig {
    /// Suspend and terminate automatically after `expiresAt` (default off, so a
    /// v1 deployment that switches to vpsd never loses a server it did not
    /// mean to).
    pub enforce: bool,
    /// Grace after `expiresAt` before termination, by duration name; a
    /// duration left out keeps its default (MONTHLY 1 day, others 3 days).
    pub grace_seconds: std::collections::BTreeMap<String, u64>,
    /// Reminder thresholds before `expiresAt` (`order.expiring` events).
    pub remind_before_seconds: Vec<u64>,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        LifecycleConfig {
            enforce: false,
            grace_seconds: std::collections::BTreeMap::new(),
            remind_before_seconds: vec![604_800, 259_200, 86_400, 28_800],
        }
    }
}

impl LifecycleConfig {
    /// The domain's policy; durations are checked by [`super::Config::validate`].
    pub fn policy(&self) -> crate::domain::expiry::Policy {
        let mut policy = crate::domain::expiry::Policy {
            enforce: self.enforce,
            remind_before_ms: self
                .remind_before_seconds
                .iter()
                .map(|s| seconds_to_ms(*s))
                .collect(),
            ..Default::default()
        };
        for (i, duration) in crate::domain::PlanDuration::ALL.iter().enumerate() {
            if let Some(secs) = self.grace_seconds.get(duration.as_str()) {
                policy.grace_ms[i] = seconds_to_ms(*secs);
            }
        }
        policy
    }
}

fn seconds_to_ms(secs: u64) -> i64 {
    i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

/// `Idempotency-Key`s (SPEC §2, §12).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdempotencyConfig {
    /// Live keys one user may hold (the internal API counts as one caller);
    /// beyond it, 429 until keys expire, so keys cannot fill the disk.
    pub max_keys_per_user: u64,
}

impl Default for IdempotencyConfig {
    fn default() -> Self {
        IdempotencyConfig {
            max_keys_per_user: crate::service::idempotency::DEFAULT_MAX_KEYS_PER_USER,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackupConfig {
    pub dir: PathBuf,
    /// Six-field cron (with seconds); unset means no scheduled backups.
    pub schedule: Option<String>,
    /// Scheduled snapshots to keep.
    pub keep: u32,
}

impl Default for BackupConfig {
    fn default() -> Self {
        BackupConfig {
            dir: PathBuf::from("backups"),
            schedule: None,
            keep: 7,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A tracing filter such as `info` or `vpsd=debug,warp=warn`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            // The scheduler crate narrates its own start-up at info.
            level: "info,tokio_cron_scheduler=warn".into(),
        }
    }
}

/// The operator console (SPEC §11).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Unset means on exactly when an internal API key is configured: the key
    /// is the console's password, so without one nobody could log in.
    pub enabled: Option<bool>,
    /// How long a console login lasts, seconds.
    pub session_ttl_seconds: u64,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            enabled: None,
            session_ttl_seconds: 28_800,
        }
    }
}

/// Environment variables take strings; a secret like `INTERNAL_API_KEY=12345`
/// arrives as a number, which must still be read as text.
fn loose_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Loose {
        Text(String),
        Int(i128),
        Float(f64),
        Bool(bool),
    }
    Ok(Option::<Loose>::deserialize(d)?.map(|v| match v {
        Loose::Text(s) => s,
        Loose::Int(i) => i.to_string(),
        Loose::Float(f) => f.to_string(),
        Loose::Bool(b) => b.to_string(),
    }))
}
