//! vpsd: a VPS order & provisioning daemon.
//!
//! Data flows one way: `api` (HTTP) -> `service` (orders, catalog look-ups) ->
//! `store` (the only module that knows redb), with `domain` (pure rules) under
//! all of them. `app` wires the parts together for `main` and for the tests.

pub mod api;
pub mod app;
pub mod backend;
pub mod catalog;
pub mod cloud;
pub mod config;
pub mod console;
pub mod domain;
pub mod edge;
pub mod error;
pub mod http_client;
pub mod json;
pub mod metrics;
pub mod server;
pub mod url_rules;

#[cfg(feature = "testing")]
pub use backend::store;
pub use backend::{provision, service, webhooks};

pub use app::{App, StartError};
pub use config::Config;
