//! vpsd: a VPS order & provisioning daemon.
//!
//! Data flows one way: `http` (server, edge, api, console) -> `backend`
//! (service, provision, webhooks, and the store behind its contract), with
//! `domain` (pure rules) under all of them. Each side's internals are private
//! to it (see `backend` and `http`), so the direction is the compiler's to
//! keep. `http::app` wires the parts together for `main` and for the tests.

pub mod backend;
pub mod catalog;
pub mod cloud;
pub mod config;
pub mod domain;
pub mod error;
pub mod http;
pub mod http_client;
pub mod json;
pub mod metrics;
pub mod url_rules;

#[cfg(feature = "testing")]
pub use backend::store;
pub use backend::{provision, service, webhooks};

pub use config::Config;
pub use http::app::{self, App, StartError};
#[cfg(feature = "testing")]
pub use http::{api, console, edge, server};
pub use http::{mint_dev_token, parse_ttl};
