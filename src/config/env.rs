//! Which environment variables set which key: the v1 service's flat names
//! beside `VPSD_*`, and, for start-up notes, where a value came from.

use figment::providers::Env;
use figment::Figment;

/// The v1 service's flat environment names and the keys they set.
pub(super) const V1_ENV: &[(&str, &str)] = &[
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
pub(super) const V1_ALIASES: &[(&str, &str)] = &[
    ("CATALOG_SERVICE_BASE_URL", "catalog.url"),
    ("DO_ACCESS_TOKEN", "cloud.digitalocean.token"),
];

/// The environment variables that can set `key`, strongest first.
pub(super) fn env_names_for(key: &str) -> Vec<String> {
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
pub(super) fn flat_env(table: &'static [(&'static str, &'static str)]) -> Env {
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

/// Where a key's value came from, for start-up notes: the environment
/// variable that set it, else the file; `None` when nothing set it (serde's
/// default applies).
pub(super) type Origin<'a> = dyn Fn(&str) -> Option<String> + 'a;

pub(super) fn origin_of(figment: &Figment, key: &str) -> Option<String> {
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
