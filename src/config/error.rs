//! The one error type of loading and checking a configuration.

use std::path::PathBuf;

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
    /// The same, for a key with an index in it (`...accounts[2].name`).
    #[error("config error: {key}: {problem}")]
    InvalidAt { key: String, problem: String },
}

pub(super) fn invalid(key: &'static str, problem: impl Into<String>) -> Result<(), ConfigError> {
    Err(ConfigError::Invalid {
        key,
        problem: problem.into(),
    })
}
