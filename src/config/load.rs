//! Reading the layers (file, v1 names, `VPSD_*`) with figment, and the
//! decisions start-up makes about the result, each reported as a [`Note`].

use std::net::SocketAddr;
use std::path::Path;

use figment::providers::{Env, Format, Toml};
use figment::Figment;

use super::env::{flat_env, origin_of, Origin, V1_ALIASES, V1_ENV};
use super::error::ConfigError;
use super::sections::{CatalogSource, CloudProvider};
use super::validate::MIN_POLL_INTERVAL_MS;
use super::Config;

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
}
