//! vpsd: a VPS order & provisioning daemon.
//!
//! Data flows one way: `api` (HTTP) -> `service` (orders, catalog look-ups) ->
//! `store` (the only module that knows redb), with `domain` (pure rules) under
//! all of them. `app` wires the parts together for `main` and for the tests.

pub mod api;
pub mod app;
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
pub mod provision;
pub mod server;
pub mod service;
pub mod store;
pub mod url_rules;
pub mod webhooks;

pub use app::{App, StartError};
pub use config::Config;
