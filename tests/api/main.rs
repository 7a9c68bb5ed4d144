//! Black-box tests of the HTTP API against the real daemon (see `support`).

#[path = "../support/mod.rs"]
mod support;

mod accounts;
mod admin;
mod auth;
mod backups;
mod catalog_http;
mod customer_actions;
mod dropin;
mod droplet_actions;
mod droplet_lifecycle;
mod errors;
mod faults;
mod fleet;
mod harness;
mod hostile;
mod idempotency;
mod lifecycle;
mod limits;
mod operations;
mod orders;
mod payment;
mod per_address;
mod persistence;
mod pg_operations;
mod probing;
mod provisioning;
mod v1_compat;
mod webhooks;
mod webrana;
mod write_path;
