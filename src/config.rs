//! Typed configuration: `Config.toml` (or `--config FILE`), then the v1 service's
//! flat environment names, then `VPSD_*` variables (`__` between levels), each
//! layer overriding the one before. Unknown keys are errors; every bad value is
//! reported in one line that names its key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use serde::{Deserialize, Deserializer, Serialize};

use crate::url_rules::{is_http_url, mask_url, require_https_unless_loopback};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub auth: AuthConfig,
    pub catalog: CatalogConfig,
    pub cloud: CloudConfig,
    pub provisioning: ProvisioningConfig,
    pub lifecycle: LifecycleConfig,
    pub webhooks: crate::webhooks::config::WebhooksConfig,
    pub idempotency: IdempotencyConfig,
    pub backup: BackupConfig,
    pub log: LogConfig,
    pub admin: AdminConfig,
}

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
    /// GB): see [`crate::store::repair`]. Safe to switch between runs.
    pub quick_repair: crate::store::QuickRepair,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            path: PathBuf::from("data/vpsd.redb"),
            cache_mb: crate::store::DEFAULT_CACHE_MB,
            quick_repair: crate::store::QuickRepair::WhenIdle,
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
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxConfig {
    pub boot_delay_ms: u64,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            boot_delay_ms: 3000,
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
    /// The domain's policy; durations are checked by [`Config::validate`].
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

/// The v1 service's flat environment names and the keys they set.
const V1_ENV: &[(&str, &str)] = &[
    ("INTERNAL_API_KEY", "auth.internal_api_key"),
    ("JWT_ALGORITHM", "auth.jwt_algorithm"),
    ("JWT_PUBLIC_KEY", "auth.jwt_public_key"),
    ("JWT_SECRET", "auth.jwt_secret"),
    ("DIGITALOCEAN_API_TOKEN", "cloud.digitalocean.token"),
    (
        "DIGITALOCEAN_DEFAULT_REGION",
        "cloud.digitalocean.default_region",
    ),
    ("CATALOG_SERVICE_URL", "catalog.url"),
    ("CATALOG_SERVICE_TIMEOUT_MS", "catalog.timeout_ms"),
    (
        "PROVISIONING_POLL_INTERVAL_MS",
        "provisioning.poll_interval_ms",
    ),
    ("PROVISIONING_MAX_ATTEMPTS", "provisioning.max_attempts"),
];

/// Other names v1 deployments use for the same keys. They are read before
/// [`V1_ENV`], so when both are set the primary name wins.
const V1_ALIASES: &[(&str, &str)] = &[
    ("CATALOG_SERVICE_BASE_URL", "catalog.url"),
    ("DO_ACCESS_TOKEN", "cloud.digitalocean.token"),
];

/// The environment variables that can set `key`, strongest first.
fn env_names_for(key: &str) -> Vec<String> {
    let mut names = vec![format!("VPSD_{}", key.replace('.', "__").to_uppercase())];
    for table in [V1_ENV, V1_ALIASES] {
        names.extend(
            table
                .iter()
                .filter(|(_, k)| *k == key)
                .map(|(name, _)| name.to_string()),
        );
    }
    names
}

/// Maps a table of flat names onto config keys.
fn flat_env(table: &'static [(&'static str, &'static str)]) -> Env {
    Env::raw()
        .only(&table.iter().map(|(name, _)| *name).collect::<Vec<_>>())
        .map(move |name| {
            table
                .iter()
                .find(|(n, _)| name == *n)
                .map(|(_, key)| (*key).into())
                .unwrap_or_else(|| name.into())
        })
}

/// Something start-up decided about the configuration that the operator
/// should read in the log: which catalog source and cloud provider won and
/// why, or a value vpsd adjusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub level: NoteLevel,
    /// The key the note is about, e.g. `catalog.source`.
    pub key: &'static str,
    /// The value in effect.
    pub value: String,
    /// Why, naming where the deciding values came from (never a secret).
    pub why: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoteLevel {
    Info,
    Warn,
}

impl std::fmt::Display for Note {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} = {}: {}", self.key, self.value, self.why)
    }
}

/// The reconciler's schedule has whole-second resolution.
const MIN_POLL_INTERVAL_MS: u64 = 1000;
/// 256 bits, the HMAC-SHA256 key size RFC 7518 §3.2 requires.
const MIN_HS256_SECRET_BYTES: usize = 32;
const MIN_API_KEY_CHARS: usize = 16;

/// A configuration problem, printed as one line at start-up.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `--config FILE` names no file (figment would silently skip it).
    #[error("config error: config file {} does not exist", .0.display())]
    MissingFile(PathBuf),
    /// figment could not read or type a value: its message, on one line,
    /// naming the key and the source.
    #[error("config error: {0}")]
    Extract(String),
    /// The v1 `PORT` variable is not a port number.
    #[error("config error: PORT: {0:?} is not a port number")]
    Port(String),
    /// A value that parses but makes no sense.
    #[error("config error: {key}: {problem}")]
    Invalid { key: &'static str, problem: String },
}

fn invalid(key: &'static str, problem: impl Into<String>) -> Result<(), ConfigError> {
    Err(ConfigError::Invalid {
        key,
        problem: problem.into(),
    })
}

impl Config {
    /// `explicit` is `--config FILE` (must exist); otherwise `Config.toml` in the
    /// working directory is read if present.
    pub fn load(explicit: Option<&Path>) -> Result<Config, ConfigError> {
        Config::load_with_notes(explicit).map(|(config, _)| config)
    }

    /// [`Config::load`], and what start-up should log about the result.
    pub fn load_with_notes(explicit: Option<&Path>) -> Result<(Config, Vec<Note>), ConfigError> {
        let file = match explicit {
            Some(path) => {
                if !path.is_file() {
                    return Err(ConfigError::MissingFile(path.to_path_buf()));
                }
                Toml::file_exact(path)
            }
            None => Toml::file("Config.toml"),
        };
        let figment = Figment::new()
            .merge(file)
            .merge(flat_env(V1_ALIASES))
            .merge(flat_env(V1_ENV))
            .merge(Env::prefixed("VPSD_").split("__"));
        let mut config: Config = figment
            .extract()
            .map_err(|e| ConfigError::Extract(one_line(&e)))?;
        if let Ok(port) = std::env::var("PORT") {
            config.server.bind = with_port(&config.server.bind, &port)?;
        }
        let mut notes = Vec::new();
        let origin = |key: &str| origin_of(&figment, key);
        config.choose_catalog_source(&origin, &mut notes);
        config.choose_cloud_provider(&origin, &mut notes)?;
        config.round_up_poll_interval(&mut notes);
        config.validate()?;
        Ok((config, notes))
    }

    /// A catalog URL without an explicit `catalog.source` means `http`: a v1
    /// deployment sets only `CATALOG_SERVICE_URL` and must get its catalog.
    /// "Explicit" is a value in the config file or the environment; serde's
    /// defaults are not (the shipped `Config.toml` leaves the key out for
    /// this reason).
    fn choose_catalog_source(&mut self, origin: &Origin<'_>, notes: &mut Vec<Note>) {
        let url_set = self
            .catalog
            .url
            .as_deref()
            .is_some_and(|u| !u.trim().is_empty());
        let explicit = origin("catalog.source");
        let (level, why) = match (&explicit, url_set) {
            (Some(from), true) if self.catalog.source == CatalogSource::Embedded => (
                NoteLevel::Warn,
                format!(
                    "catalog.source is set in {from}; the catalog URL from {} is not used",
                    origin("catalog.url").unwrap_or_default()
                ),
            ),
            (Some(from), _) => (NoteLevel::Info, format!("catalog.source is set in {from}")),
            (None, true) => {
                self.catalog.source = CatalogSource::Http;
                (
                    NoteLevel::Info,
                    format!(
                        "a catalog URL is set ({}) and catalog.source is not",
                        origin("catalog.url").unwrap_or_default()
                    ),
                )
            }
            (None, false) => (
                NoteLevel::Info,
                "the default: no catalog URL is configured (CATALOG_SERVICE_URL)".to_string(),
            ),
        };
        notes.push(Note {
            level,
            key: "catalog.source",
            value: format!("{:?}", self.catalog.source).to_lowercase(),
            why,
        });
    }

    /// A DigitalOcean token without an explicit `cloud.provider` means
    /// `digitalocean`; an explicit sandbox with a token is refused, because a
    /// sandbox must never run (and hand out fake IPs) where a real token was
    /// given.
    fn choose_cloud_provider(
        &mut self,
        origin: &Origin<'_>,
        notes: &mut Vec<Note>,
    ) -> Result<(), ConfigError> {
        let token_set = self
            .cloud
            .digitalocean
            .token
            .as_deref()
            .is_some_and(|t| !t.trim().is_empty());
        let token_from = || origin("cloud.digitalocean.token").unwrap_or_default();
        let why = match (origin("cloud.provider"), token_set) {
            (Some(from), true) if self.cloud.provider == CloudProvider::Sandbox => {
                return Err(ConfigError::Invalid {
                    key: "cloud.provider",
                    problem: format!(
                        "is \"sandbox\" (set in {from}) but a DigitalOcean token is configured ({}); a sandbox never runs where a real token was given: set cloud.provider = \"digitalocean\" or remove the token",
                        token_from()
                    ),
                });
            }
            (Some(from), _) => format!("cloud.provider is set in {from}"),
            (None, true) => {
                self.cloud.provider = CloudProvider::Digitalocean;
                format!(
                    "a DigitalOcean token is set ({}) and cloud.provider is not",
                    token_from()
                )
            }
            (None, false) => {
                "the default: no DigitalOcean token is configured (DIGITALOCEAN_API_TOKEN)"
                    .to_string()
            }
        };
        notes.push(Note {
            level: NoteLevel::Info,
            key: "cloud.provider",
            value: format!("{:?}", self.cloud.provider).to_lowercase(),
            why,
        });
        Ok(())
    }

    /// v1 accepted sub-second poll intervals (its own tests use 100 ms); the
    /// reconciler's schedule counts whole seconds, so such a value is raised
    /// to one second rather than stopping a v1 deployment from starting.
    fn round_up_poll_interval(&mut self, notes: &mut Vec<Note>) {
        let asked = self.provisioning.poll_interval_ms;
        if asked < MIN_POLL_INTERVAL_MS {
            self.provisioning.poll_interval_ms = MIN_POLL_INTERVAL_MS;
            notes.push(Note {
                level: NoteLevel::Warn,
                key: "provisioning.poll_interval_ms",
                value: MIN_POLL_INTERVAL_MS.to_string(),
                why: format!(
                    "{asked} is below the reconciler's one-second resolution; rounded up to {MIN_POLL_INTERVAL_MS}"
                ),
            });
        }
    }

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
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return invalid(
                "log.level",
                format!("{:?} is not a log filter", self.log.level),
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
        if self.cloud.provider == CloudProvider::Digitalocean
            && d.token.as_deref().is_none_or(|t| t.trim().is_empty())
        {
            return invalid(
                "cloud.digitalocean.token",
                "is required when cloud.provider = \"digitalocean\" (env DIGITALOCEAN_API_TOKEN)",
            );
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
        shown.webhooks = shown.webhooks.masked();
        shown.catalog.url = shown.catalog.url.as_deref().map(mask_url);
        shown.cloud.digitalocean.api_url = mask_url(&shown.cloud.digitalocean.api_url);
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
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

/// Where a key's value came from, for start-up notes: the environment
/// variable that set it, else the file; `None` when nothing set it (serde's
/// default applies).
type Origin<'a> = dyn Fn(&str) -> Option<String> + 'a;

fn origin_of(figment: &Figment, key: &str) -> Option<String> {
    figment.find_value(key).ok()?;
    let from_env = env_names_for(key)
        .into_iter()
        .find(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()));
    Some(match from_env {
        Some(name) => name,
        None => match figment.find_metadata(key).and_then(|m| m.source.as_ref()) {
            Some(source) => source.to_string(),
            None => "the configuration".to_string(),
        },
    })
}

fn with_port(bind: &str, port: &str) -> Result<String, ConfigError> {
    let port: u16 = port
        .trim()
        .parse()
        .map_err(|_| ConfigError::Port(port.to_string()))?;
    let host = match bind.parse::<SocketAddr>() {
        Ok(addr) => addr.ip().to_string(),
        Err(_) => "127.0.0.1".to_string(),
    };
    let addr: SocketAddr = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, port),
        Err(_) => SocketAddr::from(([127, 0, 0, 1], port)),
    };
    Ok(addr.to_string())
}

/// figment's message names the key and the source; keep it on one line.
/// Keys from the environment keep the variable's case (`SERVER.BODY_LIMIT`);
/// they are shown as the lower-case config key the operator looks up.
fn one_line(e: &figment::Error) -> String {
    let text = e.to_string().replace("default.", "");
    let text = match text.split_once("for key \"") {
        Some((head, tail)) => match tail.split_once('"') {
            Some((key, rest)) => format!("{head}for key \"{}\"{rest}", key.to_lowercase()),
            None => text.clone(),
        },
        None => text,
    };
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_replaces_only_the_port() {
        assert_eq!(with_port("0.0.0.0:3003", "8080").unwrap(), "0.0.0.0:8080");
        assert_eq!(with_port("127.0.0.1:1", "9").unwrap(), "127.0.0.1:9");
        assert!(with_port("127.0.0.1:1", "http").is_err());
    }

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
